//! Observability: Prometheus metrics, health and readiness, and the probe the
//! pipeline and the watchers report through.
//!
//! The [`Probe`] is the one seam: stages call it with what happened (a head, a
//! failed read, a trip, a decision); it updates [`Telemetry`] and raises the
//! alerts the failure policy (README, "Failure policy") calls for. A default
//! `Probe` does nothing, so library users and tests that do not care pay nothing.
//! Every call is non-blocking: counters are atomics, alerts are `try_send`.

pub mod server;
pub mod service;
pub mod telemetry;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::alerts::{Alert, AlertKind, Alerts};
use crate::executor::Execution;
use crate::pipeline::Report;
use crate::policy::PolicySet;
use crate::policy::model::Severity;
pub use telemetry::Telemetry;

/// Where stages report what happened. Cheap to clone; a default probe does nothing.
#[derive(Debug, Clone, Default)]
pub struct Probe {
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    telemetry: Arc<Telemetry>,
    alerts: Option<Alerts>,
    /// Recent decision id -> policy, to route execution alerts to the policy's channels.
    decisions: Mutex<VecDeque<(u64, String)>>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Probe {
    pub fn new(telemetry: Arc<Telemetry>, alerts: Option<Alerts>) -> Self {
        Self {
            inner: Some(Arc::new(Inner {
                telemetry,
                alerts,
                decisions: Mutex::new(VecDeque::new()),
            })),
        }
    }

    pub fn telemetry(&self) -> Option<&Arc<Telemetry>> {
        self.inner.as_ref().map(|i| &i.telemetry)
    }

    fn raise(&self, alert: Alert) {
        if let Some(a) = self.inner.as_ref().and_then(|i| i.alerts.as_ref()) {
            a.raise(alert);
        }
    }

    /// The pipeline started (or stopped) watching these networks.
    pub fn watching(&self, networks: &[String], on: bool) {
        if let Some(i) = &self.inner {
            i.telemetry.watching(networks, on);
        }
    }

    /// A policy set is running (at start or after a reload): routes and the gauge.
    pub fn policies(&self, set: &PolicySet) {
        if let Some(i) = &self.inner {
            i.telemetry.policies_loaded(set.policies.len());
            if let Some(a) = &i.alerts {
                a.set_policies(set);
            }
        }
    }

    /// A block was read on `network` (`samples` values, `failed` metric reads failed).
    pub fn head(
        &self,
        network: &str,
        number: u64,
        timestamp_s: u64,
        samples: usize,
        failed: usize,
    ) {
        if let Some(i) = &self.inner {
            let age = (now_ms() as f64 / 1000.0 - timestamp_s as f64).max(0.0);
            i.telemetry.head(network, number, age, samples, failed);
        }
    }

    /// A pending transaction's effect became a sample.
    pub fn pending_sample(&self, network: &str) {
        if let Some(i) = &self.inner {
            i.telemetry.pending_sample(network);
        }
    }

    /// A pending transaction was screened: simulated and its what-if block judged.
    pub fn pending_screened(&self, network: &str) {
        if let Some(i) = &self.inner {
            i.telemetry.pending_screened(network);
        }
    }

    /// `dropped` pending transactions were dropped unscreened (`total` so far):
    /// attacks among them would be seen only once mined.
    pub fn pending_dropped(&self, network: &str, dropped: u64, total: u64, queue: usize) {
        let Some(i) = &self.inner else { return };
        i.telemetry.pending_dropped(network, dropped);
        tracing::warn!(target: "guardian::observe", network, dropped, total, queue, "screening queue full: pending transactions dropped unscreened");
        let mut a = Alert::new(
            AlertKind::PendingDropped,
            Severity::Warning,
            format!(
                "network {network}: {dropped} pending transactions dropped unscreened ({total} in all; queue of {queue} full); the lowest-priority ones go first, and an attack among them is seen only once mined"
            ),
            format!("pending-dropped:{network}"),
        );
        a.network = Some(network.to_string());
        a.details = json!({ "dropped": dropped, "total": total, "queue": queue });
        self.raise(a);
    }

    /// A metric was not read at `block`: it has no sample there, so no policy trips on it.
    pub fn read_failed(&self, network: &str, block: u64, metric: &str, why: &str) {
        if self.inner.is_none() {
            return;
        }
        let mut a = Alert::new(
            AlertKind::ReadFailed,
            Severity::Warning,
            format!(
                "network {network}: metric {metric} could not be read at block {block}; policies on it are not evaluated until it reads again"
            ),
            format!("read-failed:{network}:{metric}"),
        );
        a.network = Some(network.to_string());
        a.block = Some(block);
        a.details = json!({ "metric": metric, "error": why });
        self.raise(a);
    }

    /// A JSON-RPC error or timeout while following `network` (failed over or retried).
    pub fn rpc_error(&self, network: &str) {
        if let Some(i) = &self.inner {
            i.telemetry.rpc_error(network);
        }
    }

    /// Every endpoint failed a block's reads: the block is retried on the next head.
    pub fn rpc_failing(&self, network: &str, error: &str) {
        let Some(i) = &self.inner else { return };
        i.telemetry.rpc_error(network);
        let mut a = Alert::new(
            AlertKind::RpcFailing,
            Severity::Critical,
            format!(
                "network {network}: reads are failing on every endpoint ({error}); no samples, so no trips, until they recover"
            ),
            format!("rpc-failing:{network}"),
        );
        a.network = Some(network.to_string());
        a.details = json!({ "error": error });
        self.raise(a);
    }

    pub fn failover(&self, network: &str) {
        if let Some(i) = &self.inner {
            i.telemetry.failover(network);
        }
    }

    pub fn reorg(&self, network: &str) {
        if let Some(i) = &self.inner {
            i.telemetry.reorg(network);
        }
    }

    /// No new head on `network` since `block`, whose timestamp is `age_s` old.
    pub fn no_new_head(&self, network: &str, block: u64, age_s: f64) {
        let Some(i) = &self.inner else { return };
        i.telemetry.head_age(network, age_s);
        let stale_after = i.telemetry.stale_after();
        if age_s < stale_after.as_secs_f64() {
            return;
        }
        i.telemetry.stale(network);
        tracing::warn!(target: "guardian::observe", network, block, head_age_s = age_s, "no new head for longer than stale_after: not acting on stale data");
        let mut a = Alert::new(
            AlertKind::DataStale,
            Severity::Critical,
            format!(
                "network {network}: no new head for {age_s:.0} s (last block {block}); guardian is not seeing the chain and will not act on stale data"
            ),
            format!("stale:{network}"),
        );
        a.network = Some(network.to_string());
        a.block = Some(block);
        a.details = json!({ "head_age_s": age_s, "stale_after_s": stale_after.as_secs_f64() });
        self.raise(a);
    }

    /// An executor's network cannot be reached; approved actions on it cannot be sent.
    pub fn executor_unavailable(&self, network: &str, error: &str) {
        let Some(i) = &self.inner else { return };
        i.telemetry.executor_unavailable(network);
        let mut a = Alert::new(
            AlertKind::ExecutorUnavailable,
            Severity::Critical,
            format!(
                "executors on network {network} are unavailable ({error}); trips needing them cannot be acted on; guardian keeps watching and retries on the next trip"
            ),
            format!("executor-unavailable:{network}"),
        );
        a.network = Some(network.to_string());
        a.details = json!({ "error": error });
        self.raise(a);
    }

    /// The pipeline stopped on `error`: guardian is no longer watching (the process exits 2).
    pub fn stopped(&self, error: &str) {
        if self.inner.is_none() {
            return;
        }
        let mut a = Alert::new(
            AlertKind::Stopped,
            Severity::Critical,
            format!("guardian stopped and is NOT watching: {error}"),
            format!("stopped:{}", now_ms()),
        );
        a.details = json!({ "error": error });
        self.raise(a);
    }

    /// A signing key could not be loaded at start; executors that need it cannot act.
    pub fn key_unavailable(&self, error: &str) {
        if self.inner.is_none() {
            return;
        }
        let mut a = Alert::new(
            AlertKind::KeyUnavailable,
            Severity::Critical,
            format!(
                "a signing key could not be loaded ({error}); guardian watches and alerts, but cannot act through the executors that need it until restarted with the key"
            ),
            format!("key-unavailable:{error}"),
        );
        a.details = json!({ "error": error });
        self.raise(a);
    }

    /// How long an executed action took: trip to first broadcast, broadcast to mined.
    pub fn delivery(
        &self,
        trip_to_broadcast: Option<Duration>,
        broadcast_to_mined: Option<Duration>,
    ) {
        if let Some(i) = &self.inner {
            i.telemetry.delivery(trip_to_broadcast, broadcast_to_mined);
        }
    }

    /// A policy reload: applied (`errors` empty) or refused with every error found.
    pub fn reload(&self, policies: usize, errors: &[String]) {
        let Some(i) = &self.inner else { return };
        let a = if errors.is_empty() {
            i.telemetry.reload("applied");
            Alert::new(
                AlertKind::Reloaded,
                Severity::Info,
                format!("policies reloaded: {policies} running"),
                format!("reloaded:{}", now_ms()),
            )
        } else {
            i.telemetry.reload("rejected");
            let mut a = Alert::new(
                AlertKind::ReloadFailed,
                Severity::Warning,
                format!(
                    "policy reload refused ({} problem(s)); the {policies} running policies stay: {}",
                    errors.len(),
                    errors.first().map_or("", String::as_str)
                ),
                format!("reload-failed:{}", now_ms()),
            );
            a.details = json!({ "errors": errors });
            a
        };
        self.raise(a);
    }

    /// What the pipeline reports: counted, and alerted per the failure policy.
    pub fn report(&self, report: &Report) {
        let Some(i) = &self.inner else { return };
        let policy_of = |id: u64| {
            i.decisions
                .lock()
                .ok()
                .and_then(|d| d.iter().find(|(d, _)| *d == id).map(|(_, p)| p.clone()))
        };
        match report {
            Report::Trip { trip, pending } => {
                let head_to_trip = now_ms()
                    .checked_sub(trip.time_ms)
                    .map(Duration::from_millis);
                i.telemetry.trip(&trip.policy, head_to_trip);
                let mut a = Alert::new(
                    AlertKind::Trip,
                    trip.severity,
                    format!(
                        "policy {} tripped at block {}: {} (action {}, mode {})",
                        trip.policy,
                        trip.block,
                        trip.summary,
                        trip.action,
                        trip.mode.as_str()
                    ),
                    format!("trip:{}", trip.policy),
                );
                a.policy = Some(trip.policy.clone());
                a.block = Some(trip.block);
                a.details = json!({
                    "action": trip.action,
                    "mode": trip.mode.as_str(),
                    "evidence": trip.evidence,
                    "pending_tx": pending.as_ref().map(|p| json!({ "hash": p.hash, "from": p.from })),
                });
                self.raise(a);
            }
            Report::ReorgedOut {
                policy,
                action,
                block,
            } => {
                let mut a = Alert::new(
                    AlertKind::ReorgedOut,
                    Severity::Warning,
                    format!(
                        "the trip of policy {policy} (action {action}) at block {block} was decided on a block a reorg replaced"
                    ),
                    format!("reorged-out:{policy}:{block}"),
                );
                a.policy = Some(policy.clone());
                a.block = Some(*block);
                self.raise(a);
            }
            Report::Decision {
                decision_id,
                policy,
                action,
                block,
                outcome,
                ..
            } => {
                let class = outcome.split(':').next().unwrap_or(outcome.as_str());
                i.telemetry.decision(class);
                if let Ok(mut d) = i.decisions.lock() {
                    if d.len() >= 1024 {
                        d.pop_front();
                    }
                    d.push_back((*decision_id, policy.clone()));
                }
                // Approved decisions are followed by their execution's alert; alert-only and
                // already-done ones are covered by the trip's. A rejection is loud.
                if class == "rejected" {
                    let mut a = Alert::new(
                        AlertKind::Rejected,
                        Severity::Critical,
                        format!(
                            "decision {decision_id}: policy {policy} tripped at block {block} but action {action} was NOT sent: {outcome}"
                        ),
                        format!("rejected:{policy}:{outcome}"),
                    );
                    a.policy = Some(policy.clone());
                    a.block = Some(*block);
                    a.decision_id = Some(*decision_id);
                    a.details = json!({ "action": action, "outcome": outcome });
                    self.raise(a);
                }
            }
            Report::Executed {
                decision_id,
                execution,
            } => {
                let (outcome, title, details) = match execution {
                    Execution::Landed {
                        tx,
                        block,
                        replacements,
                        ..
                    } => (
                        "landed",
                        format!(
                            "decision {decision_id}: the action landed in block {block} (tx {tx})"
                        ),
                        json!({ "tx": tx, "block": block, "replacements": replacements }),
                    ),
                    Execution::DryRun { tx, .. } => (
                        "dry-run",
                        format!(
                            "decision {decision_id}: dry-run, transaction {tx} signed and not broadcast"
                        ),
                        json!({ "tx": tx }),
                    ),
                    Execution::Proposed {
                        safe_tx_hash,
                        posted,
                        ..
                    } => (
                        "proposed",
                        format!(
                            "decision {decision_id}: proposed to the Safe (safeTxHash {safe_tx_hash}, posted: {posted})"
                        ),
                        json!({ "safe_tx_hash": safe_tx_hash, "posted": posted }),
                    ),
                    Execution::StoodDown { detail } => (
                        "stood-down",
                        format!(
                            "decision {decision_id}: stood down, another replica or sender already acted ({detail})"
                        ),
                        json!({ "detail": detail }),
                    ),
                };
                i.telemetry.execution(outcome);
                let mut a = Alert::new(
                    AlertKind::Executed,
                    Severity::Warning,
                    title,
                    format!("executed:{decision_id}"),
                );
                a.policy = policy_of(*decision_id);
                a.decision_id = Some(*decision_id);
                a.details = details;
                self.raise(a);
            }
            Report::ExecutionFailed { decision_id, error } => {
                i.telemetry.execution("failed");
                let mut a = Alert::new(
                    AlertKind::ExecutionFailed,
                    Severity::Critical,
                    format!(
                        "decision {decision_id}: the action FAILED: {error}; guardian keeps watching, act by hand"
                    ),
                    format!("execution-failed:{decision_id}"),
                );
                a.policy = policy_of(*decision_id);
                a.decision_id = Some(*decision_id);
                a.details = json!({ "error": error });
                self.raise(a);
            }
        }
    }
}
