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

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::alerts::{Alert, AlertKind, Alerts};
use crate::executor::Execution;
use crate::pipeline_report::Report;
use crate::policy::PolicySet;
use crate::policy::model::Severity;
pub use crate::telemetry::{self, Telemetry};

/// Where stages report what happened. Cheap to clone; a default probe does nothing.
#[derive(Debug, Clone, Default)]
pub struct Probe {
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    telemetry: Arc<Telemetry>,
    alerts: Option<Alerts>,
    /// Recent decisions, to route execution alerts to the policy's channels and join them up.
    decisions: Mutex<VecDeque<DecisionContext>>,
}

/// What an execution alert needs to know about its decision.
#[derive(Debug, Clone, Default)]
struct DecisionContext {
    decision_id: u64,
    policy: String,
    network: Option<String>,
    block: Option<u64>,
}

impl DecisionContext {
    /// `a`, joined to this decision: its id, and its policy, network and block where known.
    fn join(&self, mut a: Alert) -> Alert {
        a.policy = (!self.policy.is_empty()).then(|| self.policy.clone());
        a.network = self.network.clone();
        a.block = self.block;
        a.decision_id = Some(self.decision_id);
        a
    }
}

/// `network`, unless empty (a decision not tied to a network).
fn named(network: &str) -> Option<String> {
    (!network.is_empty()).then(|| network.to_string())
}

/// One step less severe: what a cooldown or a rate limit holds back.
fn lower(severity: Severity) -> Severity {
    match severity {
        Severity::Critical => Severity::Warning,
        Severity::Warning | Severity::Info => Severity::Info,
    }
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

    /// Updates the telemetry, if there is any.
    fn count(&self, update: impl FnOnce(&Telemetry)) {
        if let Some(i) = &self.inner {
            update(&i.telemetry);
        }
    }

    fn raise(&self, alert: Alert) {
        if let Some(a) = self.inner.as_ref().and_then(|i| i.alerts.as_ref()) {
            a.raise(alert);
        }
    }

    /// The pipeline started (or stopped) watching these networks.
    pub fn watching(&self, networks: &[String], on: bool) {
        self.count(|t| t.watching(networks, on));
    }

    /// A policy set is running (at start or after a reload): routes and the gauge.
    pub fn policies(&self, set: &PolicySet) {
        if let Some(i) = &self.inner {
            i.telemetry.policies_loaded(set.policies.len());
            i.telemetry.policy_metrics(
                (0..set.policies.len())
                    .map(|k| {
                        let names = set.policy_metric_names(k);
                        let names = names.into_iter().map(str::to_string).collect();
                        (set.policies[k].id.clone(), names)
                    })
                    .collect(),
            );
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
        self.count(|t| t.pending_sample(network));
    }

    /// A pending transaction was screened: simulated and its what-if block judged.
    pub fn pending_screened(&self, network: &str) {
        self.count(|t| t.pending_screened(network));
    }

    /// `dropped` pending transactions were dropped unscreened (`total` so far):
    /// attacks among them would be seen only once mined.
    pub fn pending_dropped(&self, network: &str, dropped: u64, total: u64, queue: usize) {
        let Some(i) = &self.inner else { return };
        i.telemetry.pending_dropped(network, dropped);
        tracing::warn!(target: "guardian::observe", network, dropped, total, queue, "screening queue full: pending transactions dropped unscreened");
        let a = Alert::new(
            AlertKind::PendingDropped,
            Severity::Warning,
            format!(
                "network {network}: {dropped} pending transactions dropped unscreened ({total} in all; queue of {queue} full); the lowest-priority ones go first, and an attack among them is seen only once mined"
            ),
            format!("pending-dropped:{network}"),
        );
        self.raise(
            a.on_network(network)
                .with_details(json!({ "dropped": dropped, "total": total, "queue": queue })),
        );
    }

    /// A metric was not read at `block`: it has no sample there, so no policy trips on it.
    pub fn read_failed(&self, network: &str, block: u64, metric: &str, why: &str) {
        if self.inner.is_none() {
            return;
        }
        let a = Alert::new(
            AlertKind::ReadFailed,
            Severity::Warning,
            format!(
                "network {network}: metric {metric} could not be read at block {block}; policies on it are not evaluated until it reads again"
            ),
            format!("read-failed:{network}:{metric}"),
        );
        self.raise(
            a.on_network(network)
                .at_block(block)
                .with_details(json!({ "metric": metric, "error": why })),
        );
    }

    /// A block's reads: which metrics have a value, which had none from any endpoint.
    pub fn metrics_read(
        &self,
        network: &str,
        values: &[(Arc<str>, f64)],
        failed: &[(Arc<str>, String)],
    ) {
        if let Some(i) = &self.inner {
            i.telemetry.metrics_read(
                network,
                values.iter().map(|(m, _)| &**m),
                failed.iter().map(|(m, why)| (&**m, why.as_str())),
            );
        }
    }

    /// Read endpoint `endpoint` (0-based) of `network` was marked unhealthy for `fault`.
    pub fn endpoint_fault(&self, network: &str, endpoint: usize, fault: &str) {
        self.count(|t| t.endpoint_fault(network, endpoint, fault));
    }

    /// A head subscription was established on `network`.
    pub fn subscribed(&self, network: &str) {
        self.count(|t| t.subscribed(network));
    }

    /// The head subscription dropped `n` heads (they are backfilled by number).
    pub fn heads_lagged(&self, network: &str, n: u64) {
        self.count(|t| t.heads_dropped(network, n));
    }

    /// The head subscription was silent for `silent_s` while the chain moved from `last` to `latest`.
    pub fn head_stalled(&self, network: &str, silent_s: f64, last: u64, latest: u64) {
        let Some(i) = &self.inner else { return };
        i.telemetry.head_stalled(network);
        let a = Alert::new(
            AlertKind::HeadStalled,
            Severity::Warning,
            format!(
                "network {network}: the head subscription was silent for {silent_s:.0} s while the chain moved from block {last} to {latest}; the missed blocks were read by polling and the subscription is re-established"
            ),
            format!("head-stalled:{network}"),
        );
        self.raise(a.on_network(network).at_block(latest).with_details(
            json!({ "silent_s": silent_s, "last_block": last, "latest_block": latest }),
        ));
    }

    /// Endpoints disagreed on a trip's values at its block hash: its action is held.
    pub fn endpoints_disagree(
        &self,
        network: &str,
        policy: &str,
        block: u64,
        details: serde_json::Value,
    ) {
        let Some(i) = &self.inner else { return };
        i.telemetry.disagreement(network);
        let a = Alert::new(
            AlertKind::EndpointsDisagree,
            Severity::Critical,
            format!(
                "network {network}: endpoints disagree on the values policy {policy} tripped on at block {block}; its action is held until they agree"
            ),
            format!("endpoints-disagree:{network}:{policy}"),
        );
        self.raise(
            a.for_policy(policy)
                .on_network(network)
                .at_block(block)
                .with_details(details),
        );
    }

    /// A trip's block was older than `max_age_s`: no action is taken on it.
    pub fn head_too_old(
        &self,
        network: &str,
        policy: &str,
        block: u64,
        age_s: f64,
        max_age_s: f64,
    ) {
        let Some(i) = &self.inner else { return };
        i.telemetry.old_head(network);
        let a = Alert::new(
            AlertKind::HeadTooOld,
            Severity::Critical,
            format!(
                "network {network}: policy {policy} tripped on block {block}, {age_s:.0} s old (the most is {max_age_s:.0} s); no action is taken on a head that old"
            ),
            format!("head-too-old:{network}:{policy}"),
        );
        self.raise(
            a.for_policy(policy)
                .on_network(network)
                .at_block(block)
                .with_details(json!({ "head_age_s": age_s, "max_head_age_s": max_age_s })),
        );
    }

    /// A JSON-RPC error or timeout while following `network` (failed over or retried).
    pub fn rpc_error(&self, network: &str) {
        self.count(|t| t.rpc_error(network));
    }

    /// Every endpoint failed a block's reads: the block is retried on the next head.
    pub fn rpc_failing(&self, network: &str, error: &str) {
        let Some(i) = &self.inner else { return };
        i.telemetry.rpc_error(network);
        let a = Alert::new(
            AlertKind::RpcFailing,
            Severity::Critical,
            format!(
                "network {network}: reads are failing on every endpoint ({error}); no samples, so no trips, until they recover"
            ),
            format!("rpc-failing:{network}"),
        );
        self.raise(
            a.on_network(network)
                .with_details(json!({ "error": error })),
        );
    }

    pub fn failover(&self, network: &str) {
        self.count(|t| t.failover(network));
    }

    pub fn reorg(&self, network: &str) {
        self.count(|t| t.reorg(network));
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
        let a = Alert::new(
            AlertKind::DataStale,
            Severity::Critical,
            format!(
                "network {network}: no new head for {age_s:.0} s (last block {block}); guardian is not seeing the chain and will not act on stale data"
            ),
            format!("stale:{network}"),
        );
        self.raise(a.on_network(network).at_block(block).with_details(
            json!({ "head_age_s": age_s, "stale_after_s": stale_after.as_secs_f64() }),
        ));
    }

    /// An executor's network cannot be reached; approved actions on it cannot be sent.
    pub fn executor_unavailable(&self, network: &str, error: &str) {
        let Some(i) = &self.inner else { return };
        i.telemetry.executor_unavailable(network);
        let a = Alert::new(
            AlertKind::ExecutorUnavailable,
            Severity::Critical,
            format!(
                "executors on network {network} are unavailable ({error}); trips needing them cannot be acted on; guardian keeps watching and retries on the next trip"
            ),
            format!("executor-unavailable:{network}"),
        );
        self.raise(
            a.on_network(network)
                .with_details(json!({ "error": error })),
        );
    }

    /// Whether an enforce executor can act: `Err(why)` (a key missing or
    /// unusable, a balance below the reserve, no endpoint answering) makes
    /// `/readyz` not ready and raises an `executor-unavailable` alert; `Ok`
    /// clears it.
    pub fn executor_able(&self, executor: &str, network: &str, able: Result<(), &str>) {
        let Some(i) = &self.inner else { return };
        i.telemetry.executor_able(executor, able.err());
        if let Err(why) = able {
            let a = Alert::new(
                AlertKind::ExecutorUnavailable,
                Severity::Critical,
                format!(
                    "executor {executor} cannot act ({why}); guardian keeps watching, but trips needing it cannot be acted on"
                ),
                format!("executor-unable:{executor}:{why}"),
            );
            self.raise(
                a.on_network(network)
                    .with_details(json!({ "executor": executor, "error": why })),
            );
        }
    }

    /// An executor's key balance is below twice its reserve: fund it before it cannot act.
    pub fn low_balance(&self, executor: &str, network: &str, balance_wei: u128, reserve_wei: u128) {
        if self.inner.is_none() {
            return;
        }
        let a = Alert::new(
            AlertKind::LowBalance,
            Severity::Warning,
            format!(
                "executor {executor}'s key holds {balance_wei} wei, less than twice its reserve of {reserve_wei} wei; below the reserve it is not ready: fund it"
            ),
            format!("low-balance:{executor}"),
        );
        self.raise(a.on_network(network).with_details(json!({ "executor": executor, "balance_wei": balance_wei.to_string(), "reserve_wei": reserve_wei.to_string() })));
    }

    /// A trip older than its action's `max_trigger_age`: journaled, not acted on.
    pub fn stale_trigger(&self, policy: &str, action: &str, block: u64, age_ms: u64, max_ms: u64) {
        if self.inner.is_none() {
            return;
        }
        let a = Alert::new(
            AlertKind::StaleTrigger,
            Severity::Warning,
            format!(
                "policy {policy} tripped on block {block}, {} s ago, older than action {action}'s max_trigger_age of {} s: not acted on (the condition is judged again on new blocks)",
                age_ms / 1000,
                max_ms / 1000
            ),
            format!("stale-trigger:{policy}:{block}"),
        );
        self.raise(a.for_policy(policy).at_block(block).with_details(
            json!({ "action": action, "age_ms": age_ms, "max_trigger_age_ms": max_ms }),
        ));
    }

    /// The pipeline stopped on `error`: guardian is no longer watching (the process exits 2).
    pub fn stopped(&self, error: &str) {
        if self.inner.is_none() {
            return;
        }
        let a = Alert::new(
            AlertKind::Stopped,
            Severity::Critical,
            format!("guardian stopped and is NOT watching: {error}"),
            format!("stopped:{}", now_ms()),
        );
        self.raise(a.with_details(json!({ "error": error })));
    }

    /// A signing key could not be loaded at start; executors that need it cannot act.
    pub fn key_unavailable(&self, error: &str) {
        if self.inner.is_none() {
            return;
        }
        let a = Alert::new(
            AlertKind::KeyUnavailable,
            Severity::Critical,
            format!(
                "a signing key could not be loaded ({error}); guardian watches and alerts, but cannot act through the executors that need it until restarted with the key"
            ),
            format!("key-unavailable:{error}"),
        );
        self.raise(a.with_details(json!({ "error": error })));
    }

    /// How long an executed action took: trip to first broadcast, broadcast to mined.
    pub fn delivery(
        &self,
        trip_to_broadcast: Option<Duration>,
        broadcast_to_mined: Option<Duration>,
    ) {
        self.count(|t| t.delivery(trip_to_broadcast, broadcast_to_mined));
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
            Alert::new(
                AlertKind::ReloadFailed,
                Severity::Warning,
                format!(
                    "policy reload refused ({} problem(s)); the {policies} running policies stay: {}",
                    errors.len(),
                    errors.first().map_or("", String::as_str)
                ),
                format!("reload-failed:{}", now_ms()),
            )
            .with_details(json!({ "errors": errors }))
        };
        self.raise(a);
    }

    /// Remembers a decision's policy, network and block, for the alerts of its execution.
    pub fn decision_context(
        &self,
        decision_id: u64,
        policy: &str,
        network: &str,
        block: Option<u64>,
    ) {
        self.remember(DecisionContext {
            decision_id,
            policy: policy.to_string(),
            network: named(network),
            block,
        });
    }

    fn remember(&self, context: DecisionContext) {
        let Some(i) = &self.inner else { return };
        if let Ok(mut d) = i.decisions.lock() {
            if d.len() >= 1024 {
                d.pop_front();
            }
            d.push_back(context);
        }
    }

    fn context_of(&self, decision_id: u64) -> DecisionContext {
        self.inner
            .as_ref()
            .and_then(|i| i.decisions.lock().ok())
            .and_then(|d| {
                d.iter()
                    .rev()
                    .find(|c| c.decision_id == decision_id)
                    .cloned()
            })
            .unwrap_or(DecisionContext {
                decision_id,
                ..DecisionContext::default()
            })
    }

    /// A trip was decided: its alert (with the decision id and network), then,
    /// if the guard refused the action, the refusal's — in that order. A
    /// refusal by a cooldown or rate limit (a policy held back, not a failure)
    /// is one severity lower than the policy's; any other refusal is critical.
    pub fn decided(
        &self,
        trip: &crate::decision::Trip,
        network: &str,
        decision: &crate::guard::Decision,
        pending: Option<alloy::primitives::B256>,
    ) {
        if self.inner.is_none() {
            return;
        }
        let decision_id = decision.decision_id;
        let context = DecisionContext {
            decision_id,
            policy: trip.policy.clone(),
            network: named(network),
            block: Some(trip.block),
        };
        self.remember(context.clone());
        let a = context.join(Alert::new(
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
        ));
        self.raise(a.with_details(json!({
            "action": trip.action,
            "mode": trip.mode.as_str(),
            "evidence": trip.evidence,
            "pending_tx": pending.map(|hash| json!({ "hash": hash })),
        })));
        let crate::guard::Outcome::Rejected(reason) = &decision.outcome else {
            return;
        };
        use crate::guard::Rejection as R;
        let held = matches!(
            reason,
            R::ActionCooldown { .. }
                | R::TargetCooldown { .. }
                | R::RateLimited
                | R::TargetRateLimited { .. }
                | R::UpdateTooSoon { .. }
        );
        let (severity, what) = if held {
            (lower(trip.severity), "held back by a guard limit")
        } else {
            (Severity::Critical, "REFUSED")
        };
        let outcome = format!("rejected: {reason}");
        let a = context.join(Alert::new(
            AlertKind::Rejected,
            severity,
            format!(
                "decision {decision_id}: policy {} tripped at block {} but action {} was NOT sent ({what}): {reason}",
                trip.policy, trip.block, trip.action
            ),
            format!("rejected:{}:{outcome}", trip.policy),
        ));
        self.raise(
            a.with_details(json!({ "action": trip.action, "outcome": outcome, "held": held })),
        );
    }

    /// A new incident a policy's cooldown held back (the engine did not trip):
    /// counted, and alerted one severity lower than the policy's, with the reason.
    pub fn held(&self, policy: &str, network: &str, block: u64, severity: Severity, reason: &str) {
        let Some(i) = &self.inner else { return };
        i.telemetry.held(policy);
        let mut a = Alert::new(
            AlertKind::Held,
            lower(severity),
            format!(
                "policy {policy}: its condition holds again at block {block}, but it did not trip: {reason}"
            ),
            format!("held:{policy}"),
        )
        .for_policy(policy)
        .at_block(block)
        .with_details(json!({ "reason": reason }));
        a.network = named(network);
        self.raise(a);
    }

    /// Whether a policy's windows hold enough history to trip; `until`: the
    /// block it can trip from, when known.
    pub fn policy_ready(&self, policy: &str, ready: bool, until: Option<u64>) {
        self.count(|t| t.policy_ready(policy, ready, until));
    }

    /// What the pipeline reports: counted, and alerted per the failure policy.
    /// Trips and refusals are alerted by [`Probe::decided`], with their decision.
    pub fn report(&self, report: &Report) {
        let Some(i) = &self.inner else { return };
        match report {
            Report::Trip { trip, .. } => {
                let head_to_trip = now_ms()
                    .checked_sub(trip.time_ms)
                    .map(Duration::from_millis);
                i.telemetry.trip(&trip.policy, head_to_trip);
            }
            Report::ReorgedOut {
                policy,
                action,
                block,
            } => {
                let a = Alert::new(
                    AlertKind::ReorgedOut,
                    Severity::Warning,
                    format!(
                        "the trip of policy {policy} (action {action}) at block {block} was decided on a block a reorg replaced"
                    ),
                    format!("reorged-out:{policy}:{block}"),
                );
                self.raise(a.for_policy(policy).at_block(*block));
            }
            Report::Decision {
                decision_id,
                policy,
                block,
                outcome,
                ..
            } => {
                // Alerted by `decided` (trip, then refusal); approvals by their execution.
                let class = outcome.split(':').next().unwrap_or(outcome.as_str());
                i.telemetry.decision(class);
                if self.context_of(*decision_id).policy.is_empty() {
                    self.decision_context(*decision_id, policy, "", Some(*block));
                }
            }
            Report::Executed {
                decision_id,
                execution,
            } => {
                let context = self.context_of(*decision_id);
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
                // Severity follows the outcome: a landed action resolves the incident;
                // a proposal still needs co-signers.
                let severity = match execution {
                    Execution::Proposed { .. } => Severity::Warning,
                    _ => Severity::Info,
                };
                let mut a = context.join(Alert::new(
                    AlertKind::Executed,
                    severity,
                    title,
                    format!("executed:{decision_id}"),
                ));
                if let Execution::Landed { block, .. } = execution {
                    a.block = Some(*block);
                }
                a.tx = match execution {
                    Execution::Landed { tx, .. } | Execution::DryRun { tx, .. } => {
                        Some(tx.to_string())
                    }
                    Execution::Proposed { safe_tx_hash, .. } => Some(safe_tx_hash.to_string()),
                    Execution::StoodDown { .. } => None,
                };
                let mut details = details;
                details["outcome"] = json!(outcome);
                self.raise(a.with_details(details));
            }
            Report::ExecutionFailed { decision_id, error } => {
                i.telemetry.execution("failed");
                let a = Alert::new(
                    AlertKind::ExecutionFailed,
                    Severity::Critical,
                    format!(
                        "decision {decision_id}: the action FAILED: {error}; guardian keeps watching, act by hand"
                    ),
                    format!("execution-failed:{decision_id}"),
                );
                let context = self.context_of(*decision_id);
                self.raise(context.join(a).with_details(json!({ "error": error })));
            }
        }
    }
}
