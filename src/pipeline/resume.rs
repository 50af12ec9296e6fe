//! Where the last run stopped, read from the journal once, before any stage
//! starts (`[journal]`, see [`crate::journal`]).
//!
//! **Restart-safe.** Per network, the watcher resumes after the last processed
//! block, re-reading enough blocks before it for the policies' windows to
//! refill ([`reread_blocks`]); trips on those re-read blocks that were decided
//! then are not decided again ([`Decided`]), unless a reorg while guardian was
//! down replaced the blocks; the guard gets its past decisions back (cooldowns,
//! rate limits); and the actions a previous run left in flight are handed to
//! the guard-and-executor stage, which follows them to their end first.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::executors::ExecutorPool;
use super::{RunError, RunOptions};
use crate::config::Config;
use crate::decision::Trip;
use crate::guard::Guard;
use crate::journal::{Journal, Unfinished};
use crate::policy::PolicySet;
use crate::policy::model::Mode;
use crate::policy::warmup::WarmUp;
use crate::source::chain::Watcher;

/// What a run starts from.
pub(super) struct Resume {
    pub journal: Option<Arc<Journal>>,
    /// Per network: the first block to read, when resuming.
    pub replay_from: Vec<Option<u64>>,
    /// Per network: the trips decided before the restart.
    pub decided: Vec<Decided>,
    /// Actions a previous run left in flight.
    pub unfinished: Vec<Unfinished>,
}

/// One network's trips decided before a restart.
#[derive(Debug, Clone, Default)]
pub(super) struct Decided {
    /// The last processed block, when the blocks re-read up to it are the
    /// ones decided on (no reorg since).
    pub through: Option<u64>,
    /// (policy, block) of the trips decided after `through`.
    trips: HashSet<(String, u64)>,
    /// The mode each re-read, decided trip was decided in.
    modes: HashMap<(String, u64), Mode>,
}

impl Decided {
    /// Whether `trip`, on a mined block, was decided before the restart:
    /// `Some(same_mode)` when it was (`same_mode`: decided in the mode it has
    /// now), `None` when it is to be decided.
    pub fn before_restart(&self, trip: &Trip) -> Option<bool> {
        let key = (trip.policy.clone(), trip.block);
        let done = self.through.is_some_and(|l| trip.block <= l)
            || (!self.trips.is_empty() && self.trips.contains(&key));
        done.then(|| self.modes.get(&key) == Some(&trip.mode))
    }

    /// Whether `block` is after the resume point (or there is none): not a re-read one.
    pub fn is_live(&self, block: u64) -> bool {
        self.through.is_none_or(|l| block > l)
    }
}

impl Resume {
    /// Opens the journal, if configured, and reads where each network stopped;
    /// restores the guard's past decisions and gives the executors the journal.
    pub async fn load(
        config: &Config,
        networks: &[String],
        options: &RunOptions,
        policies: &PolicySet,
        guard: &mut Guard,
        executors: &mut ExecutorPool,
    ) -> Result<Self, RunError> {
        let mut decided = vec![Decided::default(); networks.len()];
        let Some(jc) = &config.journal else {
            return Ok(Self {
                journal: None,
                replay_from: vec![None; networks.len()],
                decided,
                unfinished: Vec::new(),
            });
        };
        let j = Arc::new(Journal::open(jc)?);
        let mut start_after = Vec::with_capacity(networks.len());
        for (net, decided) in networks.iter().zip(&mut decided) {
            start_after.push(resume_point(config, net, options, &j, decided).await?);
        }
        let unfinished = j.unfinished()?;
        guard.restore(j.past_decisions()?);
        executors.set_tx_log(j.clone());
        // Re-read as much history as the longest window needs (bounded), so a restart resumes warm.
        let needs = crate::policy::warmup::warmups(policies);
        let replay_from: Vec<Option<u64>> = networks
            .iter()
            .zip(&start_after)
            .map(|(net, last)| {
                last.map(|l| (l + 1).saturating_sub(reread_blocks(config, net, &needs)))
            })
            .collect();
        for ((net, from), d) in networks.iter().zip(&replay_from).zip(&mut decided) {
            if let (Some(from), Some(_)) = (from, d.through) {
                d.modes = j.decided_modes_after(net, from.saturating_sub(1))?;
            }
        }
        Ok(Self {
            journal: Some(j),
            replay_from,
            decided,
            unfinished,
        })
    }
}

/// The last processed block of `net`, if any; fills `decided` when the chain
/// still has that block (no reorg while guardian was down).
async fn resume_point(
    config: &Config,
    net: &str,
    options: &RunOptions,
    j: &Journal,
    decided: &mut Decided,
) -> Result<Option<u64>, RunError> {
    let chain_id = config.networks.get(net).map_or(0, |n| n.chain_id);
    let Some((block, hash)) = j.bind_network(net, chain_id)? else {
        return Ok(None);
    };
    tracing::info!(target: "guardian::journal", network = %net, block, hash = %hash, "resuming after the last processed block");
    let now = Watcher::new(config, net, options.watcher.clone())?
        .block_hash(block)
        .await;
    match now {
        Ok(Some(now)) if now == hash => {}
        // The blocks replayed may not be the ones decided on: their trips are
        // decided anew (restored cooldowns and already-done checks keep an
        // action from repeating).
        Ok(Some(now)) => {
            tracing::error!(target: "guardian::journal", network = %net, block, was = %hash, now = %now, "the chain reorganised while guardian was down: trips on the re-read blocks are decided anew");
            return Ok(Some(block));
        }
        Ok(None) => {
            tracing::warn!(target: "guardian::journal", network = %net, block, "the node does not have the resume block (it is behind): trips on the re-read blocks are decided anew");
            return Ok(Some(block));
        }
        Err(e) => {
            tracing::warn!(target: "guardian::journal", network = %net, block, error = %crate::redact::redact(&e.to_string()), "cannot check the resume block's hash; assuming no reorg");
        }
    }
    decided.through = Some(block);
    decided.trips = j.decided_after(net, block)?;
    Ok(Some(block))
}

/// ops: blocks a restart re-reads on `network` before its resume point: what
/// the policies' longest window needs, at least `warmup_blocks`, at most
/// `max_warmup_blocks`.
fn reread_blocks(config: &Config, network: &str, needs: &[WarmUp]) -> u64 {
    let Some(j) = &config.journal else { return 0 };
    let block_time = block_time_ms(config, network);
    let need = needs
        .iter()
        .map(|w| w.in_blocks(block_time))
        .max()
        .unwrap_or(0);
    // One more than the window: a change over N blocks compares with the block N before.
    need.saturating_add(1)
        .max(j.warmup_blocks)
        .min(j.max_warmup_blocks.max(j.warmup_blocks))
}

/// ops: the network's block time (`block_time`), or one second when not
/// configured: a guess on the short side re-reads more, never too little.
pub(super) fn block_time_ms(config: &Config, network: &str) -> u64 {
    config
        .networks
        .get(network)
        .and_then(|n| n.block_time_ms)
        .unwrap_or(1_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::model::Severity;

    fn trip(policy: &str, block: u64, mode: Mode) -> Trip {
        Trip {
            policy: policy.into(),
            block,
            time_ms: 0,
            action: "pause".into(),
            severity: Severity::Critical,
            mode,
            evidence: serde_json::json!({}).into(),
            summary: String::new(),
        }
    }

    #[test]
    fn trips_on_re_read_blocks_decided_before_the_restart_are_not_decided_again() {
        let mut d = Decided::default();
        // Without a resume point, every trip is decided.
        assert_eq!(d.before_restart(&trip("p", 5, Mode::Enforce)), None);
        assert!(d.is_live(5));
        d.through = Some(10);
        d.trips.insert(("p".into(), 12));
        d.modes.insert(("p".into(), 9), Mode::DryRun);
        // Up to the resume point: decided then, in dry-run (not the same mode).
        assert_eq!(d.before_restart(&trip("p", 9, Mode::Enforce)), Some(false));
        assert_eq!(d.before_restart(&trip("p", 9, Mode::DryRun)), Some(true));
        assert!(!d.is_live(10));
        // After it: only the trips the journal has.
        assert_eq!(d.before_restart(&trip("p", 12, Mode::Enforce)), Some(false));
        assert_eq!(d.before_restart(&trip("q", 12, Mode::Enforce)), None);
        assert!(d.is_live(11));
    }
}
