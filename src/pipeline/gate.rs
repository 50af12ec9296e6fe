//! What stands between a trip and the guard on a live network (issue #13):
//! no action on a head older than `max_head_age`, and, with a `quorum`, no
//! action on values the other endpoints do not confirm at the same block hash.
//!
//! Only actions are gated: a trip whose effective mode is `enforce` and that
//! was decided on a mined block. Alerts (dry-run, alert-only) and trips on
//! pending transactions or the watchdog pass straight through. A trip whose
//! endpoints do not agree yet is held (an "endpoints disagree" alert) and
//! checked again at each of the next [`HOLD_BLOCKS`] blocks; meanwhile a trip
//! on a later block is checked on its own, so the next block can confirm.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::ToGuard;
use crate::config::Config;
use crate::journal::TripOrigin;
use crate::observe::Probe;
use crate::policy::PolicySet;
use crate::policy::model::Mode;
use crate::source::chain::quorum::{Quorum, Verdict};
use crate::source::chain::reads::now_ms;
use crate::source::chain::{ChainError, DEFAULT_BLOCK_TIME, Health, Snapshot, Watcher};

/// How many later blocks a held action waits for its endpoints to agree.
pub const HOLD_BLOCKS: u32 = 3;
/// The default `max_head_age` is four block times, and never less than this
/// (so a loaded machine does not refuse a fresh head).
pub const MIN_MAX_HEAD_AGE: Duration = Duration::from_secs(30);

/// One network's gate.
pub(super) struct NetGate {
    pub name: String,
    pub quorum: Option<Quorum>,
    /// Configured `max_head_age`; `None`: four block times (at least [`MIN_MAX_HEAD_AGE`]).
    pub max_head_age: Option<Duration>,
    pub block_time: Option<Duration>,
    pub health: Arc<Health>,
    /// The latest block's snapshot (kept only with a quorum).
    last: Option<Snapshot>,
    held: Vec<Held>,
}

/// An action waiting for its endpoints to agree.
struct Held {
    item: ToGuard,
    block: Snapshot,
    values: Vec<(Arc<str>, f64)>,
    waited: u32,
}

impl NetGate {
    pub fn new(name: String, health: Arc<Health>) -> Self {
        Self {
            name,
            quorum: None,
            max_head_age: None,
            block_time: None,
            health,
            last: None,
            held: Vec::new(),
        }
    }

    /// ops (issue #13): `watcher`'s network's gate: its `max_head_age`, and
    /// its quorum when configured.
    pub async fn for_watcher(config: &Config, watcher: &Watcher) -> Result<Self, ChainError> {
        let mut g = Self::new(watcher.network().to_string(), watcher.health());
        let Some(net) = config.networks.get(watcher.network()) else {
            return Ok(g);
        };
        g.max_head_age = net.watch.max_head_age_ms.map(Duration::from_millis);
        g.block_time = net.block_time_ms.map(Duration::from_millis);
        if let Some(need) = net.watch.quorum {
            let tolerance = net
                .watch
                .quorum_tolerance
                .unwrap_or(crate::source::chain::quorum::DEFAULT_TOLERANCE);
            g.quorum = Some(Quorum::connect(watcher, need, tolerance).await?);
        }
        Ok(g)
    }

    fn max_head_age(&self) -> Duration {
        self.max_head_age.unwrap_or_else(|| {
            let block = self
                .block_time
                .or_else(|| self.health.observed_block_time())
                .unwrap_or(DEFAULT_BLOCK_TIME);
            (block * 4).max(MIN_MAX_HEAD_AGE)
        })
    }
}

/// Every watched network's gate.
pub(super) struct Gate {
    pub nets: Vec<NetGate>,
    pub probe: Probe,
}

/// What a quorum check means for a trip.
enum Then {
    Send,
    Hold,
    Drop,
}

impl Gate {
    /// A new block on `network`: remembers it, and re-checks held actions;
    /// returns the ones its endpoints now confirm.
    pub async fn on_block(&mut self, network: usize, block: &Snapshot) -> Vec<ToGuard> {
        let Some(net) = self.nets.get_mut(network) else {
            return Vec::new();
        };
        if net.quorum.is_none() {
            return Vec::new();
        }
        net.last = Some(block.clone());
        let mut released = Vec::new();
        for mut held in std::mem::take(&mut net.held) {
            held.waited += 1;
            let then = self
                .check(network, &held.item, &held.block, &held.values)
                .await;
            let net = &mut self.nets[network];
            match then {
                Then::Send => released.push(held.item),
                Then::Drop => {}
                Then::Hold if held.waited < HOLD_BLOCKS => net.held.push(held),
                Then::Hold => {
                    if let ToGuard::Trip { trip, .. } = &held.item {
                        tracing::error!(target: "guardian::engine", network = %net.name, policy = %trip.policy, block = trip.block, waited = held.waited, "endpoints never agreed on the values this trip was decided on: its action is not taken");
                    }
                }
            }
        }
        released
    }

    /// A trip on its way to the guard: `Some` to send it now, `None` when it
    /// is held for the quorum or refused (a head too old, a minority view).
    pub async fn admit(
        &mut self,
        network: usize,
        origin: TripOrigin,
        item: ToGuard,
        set: &PolicySet,
    ) -> Option<ToGuard> {
        let ToGuard::Trip { trip, .. } = &item else {
            return Some(item);
        };
        let Some(net) = self.nets.get(network) else {
            return Some(item);
        };
        if origin != TripOrigin::Block || trip.mode != Mode::Enforce {
            return Some(item);
        }
        // The head's age is the freshness of the watcher's view of the chain:
        // the newest head it knows of. A trip on an older block read while
        // catching up (a restart's backfill) passes with a fresh head, and its
        // own age is for the action's `max_trigger_age` to judge in the guard.
        let max = net.max_head_age();
        let newest_ms = trip.time_ms.max(net.health.newest_head_ms());
        let age_ms = now_ms().saturating_sub(newest_ms);
        if u128::from(age_ms) > max.as_millis() {
            let (age, max) = (age_ms as f64 / 1000.0, max.as_secs_f64());
            tracing::error!(target: "guardian::engine", network = %net.name, policy = %trip.policy, block = trip.block, head_age_s = age, max_head_age_s = max, "trip on a head older than max_head_age: no action taken");
            self.probe
                .head_too_old(&net.name, &trip.policy, trip.block, age, max);
            return None;
        }
        let Some(quorum) = &net.quorum else {
            return Some(item);
        };
        let Some(block) = net.last.clone().filter(|b| b.number == trip.block) else {
            tracing::warn!(target: "guardian::engine", network = %net.name, policy = %trip.policy, block = trip.block, "no snapshot of the trip's block to check the quorum on: sending");
            return Some(item);
        };
        let names = set
            .policies
            .iter()
            .position(|p| p.id == trip.policy)
            .map(|k| set.policy_metric_names(k))
            .unwrap_or_default();
        let values: Vec<(Arc<str>, f64)> = block
            .values
            .iter()
            .filter(|(m, _)| names.contains(&&**m) && quorum.compares(m))
            .cloned()
            .collect();
        if values.is_empty() {
            tracing::debug!(target: "guardian::engine", policy = %trip.policy, "the trip reads no endpoint value the quorum can compare");
            return Some(item);
        }
        match self.check(network, &item, &block, &values).await {
            Then::Send => Some(item),
            Then::Drop => None,
            Then::Hold => {
                self.nets[network].held.push(Held {
                    item,
                    block,
                    values,
                    waited: 0,
                });
                None
            }
        }
    }

    /// Asks the quorum about `values` at `block`; logs and alerts what it said.
    async fn check(
        &self,
        network: usize,
        item: &ToGuard,
        block: &Snapshot,
        values: &[(Arc<str>, f64)],
    ) -> Then {
        let (net, ToGuard::Trip { trip, .. }) = (&self.nets[network], item) else {
            return Then::Send;
        };
        let Some(quorum) = &net.quorum else {
            return Then::Send;
        };
        let verdict = quorum.check(block, values).await;
        let seen: serde_json::Map<String, serde_json::Value> = values
            .iter()
            .map(|(m, v)| (m.to_string(), json!(v)))
            .collect();
        match verdict {
            Verdict::Confirmed { agree, asked } => {
                tracing::info!(target: "guardian::engine", network = %net.name, policy = %trip.policy, block = block.number, agree, asked, need = quorum.need(), "endpoints agree on the trip's values");
                Then::Send
            }
            Verdict::Outvoted {
                majority,
                minority,
                asked,
            } => {
                let majority: serde_json::Map<String, serde_json::Value> = majority
                    .iter()
                    .map(|(m, v)| (m.to_string(), json!(v)))
                    .collect();
                tracing::error!(target: "guardian::engine", network = %net.name, policy = %trip.policy, block = block.number, minority = ?minority.iter().map(|i| i + 1).collect::<Vec<_>>(), asked, "the trip's values were a minority view: the other endpoints agree on different values; no action, the outvoted endpoints are not read from");
                for &i in &minority {
                    self.probe.endpoint_fault(&net.name, i, "outvoted");
                }
                let details = json!({"block_hash": block.hash, "tripped_on": seen, "majority": majority, "outvoted_endpoints": minority.iter().map(|i| i + 1).collect::<Vec<_>>(), "asked": asked, "quorum": quorum.need(), "outcome": "dropped"});
                self.probe
                    .endpoints_disagree(&net.name, &trip.policy, block.number, details);
                Then::Drop
            }
            Verdict::Unconfirmed {
                agree,
                answered,
                asked,
            } => {
                tracing::warn!(target: "guardian::engine", network = %net.name, policy = %trip.policy, block = block.number, agree, answered, asked, need = quorum.need(), "endpoints disagree on the trip's values: its action is held");
                let details = json!({"block_hash": block.hash, "tripped_on": seen, "agree": agree, "answered": answered, "asked": asked, "quorum": quorum.need(), "outcome": "held"});
                self.probe
                    .endpoints_disagree(&net.name, &trip.policy, block.number, details);
                Then::Hold
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::Trip;
    use crate::policy::model::Severity;

    fn trip(age_ms: u64, mode: Mode) -> ToGuard {
        ToGuard::Trip {
            trip: Box::new(Trip {
                policy: "p".into(),
                block: 7,
                time_ms: now_ms() - age_ms,
                action: "pause".into(),
                severity: Severity::Critical,
                mode,
                evidence: json!({}).into(),
                summary: String::new(),
            }),
            urgency: None,
            network: 0,
            origin: TripOrigin::Block,
            pending: None,
        }
    }

    fn gate(max_head_age: Option<Duration>, block_time: Option<Duration>) -> Gate {
        let mut net = NetGate::new("local".into(), Arc::new(Health::new(1)));
        net.max_head_age = max_head_age;
        net.block_time = block_time;
        Gate {
            nets: vec![net],
            probe: Probe::default(),
        }
    }

    #[tokio::test]
    async fn no_action_on_a_head_older_than_max_head_age() {
        let set = PolicySet::default();
        let mut g = gate(Some(Duration::from_secs(10)), None);
        let fresh = g.admit(0, TripOrigin::Block, trip(1_000, Mode::Enforce), &set);
        assert!(fresh.await.is_some());
        let old = g.admit(0, TripOrigin::Block, trip(11_000, Mode::Enforce), &set);
        assert!(old.await.is_none());
        // Alerts are not actions: a dry run on the same old head passes.
        let alert = g.admit(0, TripOrigin::Block, trip(11_000, Mode::DryRun), &set);
        assert!(alert.await.is_some());
        // Pending-transaction trips carry the time they were seen, not a head's.
        let pending = g.admit(0, TripOrigin::Pending, trip(11_000, Mode::Enforce), &set);
        assert!(pending.await.is_some());
    }

    #[tokio::test]
    async fn the_default_max_head_age_is_four_block_times_at_least_thirty_seconds() {
        let set = PolicySet::default();
        let mut g = gate(None, Some(Duration::from_secs(12)));
        assert_eq!(g.nets[0].max_head_age(), Duration::from_secs(48));
        assert!(
            g.admit(0, TripOrigin::Block, trip(40_000, Mode::Enforce), &set)
                .await
                .is_some()
        );
        assert!(
            g.admit(0, TripOrigin::Block, trip(50_000, Mode::Enforce), &set)
                .await
                .is_none()
        );
        let g = gate(None, Some(Duration::from_secs(2)));
        assert_eq!(g.nets[0].max_head_age(), MIN_MAX_HEAD_AGE);
        // Learned from the blocks seen when not configured.
        let g = gate(None, None);
        for t in (1000..1200).step_by(15) {
            g.nets[0].health.observe_block(t);
        }
        assert_eq!(g.nets[0].max_head_age(), Duration::from_secs(60));
    }
}
