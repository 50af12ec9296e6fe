//! A policy trip: which policy, when, what it asks for, and the evidence.
//!
//! A trip is what the engine hands down the flow. It says nothing about
//! whether the action will be sent: that is the guard's decision.

use serde::Serialize;

use crate::policy::model::{Mode, Severity};

/// A policy whose condition held, outside its cooldown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trip {
    pub policy: String,
    pub block: u64,
    pub time_ms: u64,
    pub action: String,
    pub severity: Severity,
    /// The effective mode: the more cautious of the policy's and the configuration's.
    pub mode: Mode,
    /// The values that made the condition true: metric values, windows, thresholds, statistics.
    pub evidence: serde_json::Value,
    /// One line a person can read: what held.
    #[serde(skip)]
    pub summary: String,
}

/// A number for evidence: JSON has no infinity, so non-finite values become strings.
pub fn evidence_number(v: f64) -> serde_json::Value {
    if v.is_finite() {
        serde_json::Value::from(v)
    } else if v.is_nan() {
        serde_json::Value::from("nan")
    } else if v > 0.0 {
        serde_json::Value::from("inf")
    } else {
        serde_json::Value::from("-inf")
    }
}
