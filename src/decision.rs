//! A policy trip: which policy, when, what it asks for, and the evidence.
//!
//! A trip is what the engine hands down the flow. It says nothing about
//! whether the action will be sent: that is the guard's decision.

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::levels::{Mode, Severity};

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
    pub evidence: Evidence,
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

/// What a trip's evidence is written from when it is read: the engine's
/// readings (`policy::evidence::Readings`), or anything else that serializes.
pub trait Readout: erased_serde::Serialize + Send + Sync {}

impl<T: Serialize + Send + Sync> Readout for T {}

erased_serde::serialize_trait_object!(Readout);

/// A trip's evidence: the engine's readings, written as JSON only when read.
///
/// `Serialize` and `Display` (compact JSON, `{:#}` pretty) write straight from
/// the readings; dereferencing gives the JSON value, built once on first use.
/// Evidence made from a value (tests, a trip read back) is that value.
#[derive(Clone)]
pub struct Evidence {
    /// Shared: the readings are never changed, only written out.
    readings: Option<Arc<dyn Readout>>,
    /// Boxed: a trip stays small until its evidence is read.
    value: OnceLock<Box<Value>>,
}

impl Evidence {
    /// Evidence written from `readings` when it is first read.
    pub fn read_from(readings: impl Readout + 'static) -> Self {
        Self {
            readings: Some(Arc::new(readings)),
            value: OnceLock::new(),
        }
    }
}

impl From<Value> for Evidence {
    fn from(value: Value) -> Self {
        Self {
            readings: None,
            value: OnceLock::from(Box::new(value)),
        }
    }
}

impl Evidence {
    /// The evidence as a JSON value to extend (a what-if trip adds the pending
    /// transaction it was judged on): built from the readings now if it was not.
    pub fn make_mut(&mut self) -> &mut Value {
        if self.readings.is_some() || self.value.get().is_none() {
            *self = Evidence::from((**self).clone());
        }
        match self.value.get_mut() {
            Some(value) => value,
            None => unreachable!("the value was set just above"),
        }
    }
}

impl Deref for Evidence {
    type Target = Value;
    fn deref(&self) -> &Value {
        self.value.get_or_init(|| {
            Box::new(match &self.readings {
                Some(r) => serde_json::to_value(r.as_ref()).unwrap_or(Value::Null),
                None => Value::Null,
            })
        })
    }
}

impl Serialize for Evidence {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match (self.value.get(), &self.readings) {
            (None, Some(r)) => r.as_ref().serialize(s),
            _ => (**self).serialize(s),
        }
    }
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = if f.alternate() {
            serde_json::to_string_pretty(self)
        } else {
            serde_json::to_string(self)
        };
        f.write_str(&text.map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl PartialEq for Evidence {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}
