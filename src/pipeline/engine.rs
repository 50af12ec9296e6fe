//! The engine stage: watch events in, in the order they arrive; trips out, to
//! the guard stage, through the gate ([`super::gate`]).
//!
//! Invariants:
//! - **No silent loss.** Events come in and trips go out on bounded channels;
//!   a full channel makes the sender wait (backpressure), it never drops.
//! - **Same samples, same trips.** The engine sees exactly the samples the
//!   recorder writes (times clamped to stay non-decreasing, as the trace format
//!   requires), so a recorded run replays to the same trips.
//! - Policy reloads arrive already validated on a `watch` channel and replace
//!   the engine between samples; windows restart empty.
//! - After a restart, trips on re-read blocks that were decided before it
//!   ([`super::resume::Decided`]) are not handed on again; with a journal,
//!   each live block is marked processed once its trips are handed over.
//! - Cancellation stops the engine at once.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::BufWriter;
use std::ops::ControlFlow;
use std::path::PathBuf;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::gate::Gate;
use super::resume::{Decided, block_time_ms};
use super::{PendingTx, Report, Reports, RunError, ToGuard};
use crate::config::Config;
use crate::decision::Trip;
use crate::executor::delivery::Urgency;
use crate::journal::TripOrigin;
use crate::metrics::{MetricId, Sample};
use crate::observe::Probe;
use crate::policy::eval::Held;
use crate::policy::model::Mode;
use crate::policy::{Engine, PolicySet};
use crate::source::chain::record::{Recorder, TimeOrder};
use crate::source::chain::{Reorg, Screened, Snapshot, WatchEvent};

/// How many recent trips are remembered, to name those a reorg invalidates
/// (the watcher remembers a limited reorg depth too).
const RECENT_TRIPS: usize = 1024;

/// What the engine stage is given.
pub(super) struct EngineStage {
    pub engine: Engine,
    pub mode: Mode,
    pub reload: Option<watch::Receiver<PolicySet>>,
    pub events: mpsc::Receiver<(usize, WatchEvent)>,
    pub to_guard: mpsc::Sender<ToGuard>,
    pub recorder: Option<Recording>,
    /// The watched networks, by index.
    pub networks: Vec<Net>,
    pub gate: Gate,
    /// Whether processed blocks are written to a journal.
    pub journaled: bool,
    pub reports: Reports,
}

/// One watched network, as the engine sees it.
pub(super) struct Net {
    pub name: String,
    pub block_time_ms: u64,
    pub decided: Decided,
}

impl Net {
    /// Every network of `names`, with what was decided on it before a restart.
    pub fn all(config: &Config, names: &[String], decided: Vec<Decided>) -> Vec<Self> {
        names
            .iter()
            .zip(decided)
            .map(|(name, decided)| Self {
                block_time_ms: block_time_ms(config, name),
                name: name.clone(),
                decided,
            })
            .collect()
    }
}

/// The trace file every sample is recorded to (`--record`).
pub(super) struct Recording {
    path: PathBuf,
    rec: Recorder<BufWriter<File>>,
}

impl Recording {
    pub fn open(config: &Config, path: Option<&PathBuf>) -> Result<Option<Self>, RunError> {
        let Some(path) = path else { return Ok(None) };
        let error = |source| RunError::Record {
            path: path.clone(),
            source,
        };
        let file = File::create(path).map_err(error)?;
        let comment = format!("recorded by guardian run from {}", config.path.display());
        let rec = Recorder::new(BufWriter::new(file), &comment).map_err(error)?;
        Ok(Some(Self {
            path: path.clone(),
            rec,
        }))
    }
}

/// The engine stage running: what it is given and what it remembers.
struct EngineTask {
    s: EngineStage,
    order: TimeOrder,
    /// What-if trips already sent, per (network, policy), with the block they were for.
    what_if_sent: HashMap<(usize, String), u64>,
    readiness: Readiness,
    /// Recent trips (policy, action, block), to name those a reorg invalidates.
    recent: VecDeque<(String, String, u64)>,
}

impl EngineStage {
    /// Runs until cancelled (`Ok`), or until the watchers or the guard stage are gone.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), RunError> {
        let readiness = Readiness::new(self.engine.policies(), &self.reports.probe);
        let mut task = EngineTask {
            s: self,
            order: TimeOrder::default(),
            what_if_sent: HashMap::new(),
            readiness,
            recent: VecDeque::new(),
        };
        loop {
            let event = tokio::select! {
                biased;
                () = cancel.cancelled() => return Ok(()),
                set = next_reload(&mut task.s.reload) => {
                    task.reload(set);
                    continue;
                }
                event = task.s.events.recv() => event,
            };
            let Some((network, event)) = event else {
                return Err(RunError::StageStopped("watcher"));
            };
            if task.on_event(network, event).await?.is_break() {
                // On shutdown the guard stage may stop first: that is no failure.
                if cancel.is_cancelled() {
                    return Ok(());
                }
                return Err(RunError::StageStopped("guard"));
            }
        }
    }
}

impl EngineTask {
    /// ops: validated by the sender; windows restart empty under the new policies.
    fn reload(&mut self, set: PolicySet) {
        tracing::warn!(target: "guardian::engine", policies = set.policies.len(), "policies reloaded; metric windows restart from the next sample");
        let probe = &self.s.reports.probe;
        probe.policies(&set);
        probe.reload(set.policies.len(), &[]);
        self.readiness = Readiness::new(&set, probe);
        self.s.engine = Engine::new(set, self.s.mode);
    }

    /// One event: recorded, judged, its trips handed to the guard.
    /// `Break`: the guard stage is gone.
    async fn on_event(
        &mut self,
        network: usize,
        event: WatchEvent,
    ) -> Result<ControlFlow<()>, RunError> {
        if let Some(r) = &mut self.s.recorder
            && let Err(source) = r.rec.record(&event)
        {
            let path = r.path.clone();
            return Err(RunError::Record { path, source });
        }
        if let WatchEvent::Reorg(reorg) = &event {
            self.on_reorg(reorg).await;
        }
        let mut trips = self.judge(network, &event);
        if let Some(r) = &mut self.s.recorder {
            let _ = r.rec.flush();
        }
        let origin = match &event {
            WatchEvent::Pending(_) | WatchEvent::Screened(_) => TripOrigin::Pending,
            WatchEvent::Stale(_) => TripOrigin::Stale,
            _ => TripOrigin::Block,
        };
        if origin == TripOrigin::Block {
            self.drop_decided(network, &mut trips);
        }
        self.report_held(network);
        let block = match &event {
            WatchEvent::Block(snapshot) => Some(snapshot),
            _ => None,
        };
        let net = &self.s.networks[network];
        if let Some(b) = block {
            let live = net.decided.is_live(b.number);
            let at = (b.number, b.time_ms);
            (self.readiness).update(at, live, net.block_time_ms, &self.s.reports.probe);
        }
        let (urgency, pending) = urgency(&event);
        let mut gone = false;
        if let Some(b) = block {
            // Held actions this block's re-check confirms go first.
            gone |= self.release_held(network, b).await.is_break();
        }
        let handed = Handed {
            network,
            origin,
            urgency,
            pending,
        };
        gone |= self.hand_over(trips, &handed).await.is_break();
        if !gone && let Some(b) = block {
            return self.processed(network, b).await;
        }
        Ok(if gone {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        })
    }

    /// ops: the trips decided on blocks a reorg replaced are reported.
    async fn on_reorg(&mut self, reorg: &Reorg) {
        for (policy, action, block) in self.recent.iter().filter(|(_, _, b)| reorg.replaces(*b)) {
            tracing::error!(target: "guardian::engine", policy = %policy, block, "a trip was decided on a block that a reorg replaced");
            let item = Report::ReorgedOut {
                policy: policy.clone(),
                action: action.clone(),
                block: *block,
            };
            self.s.reports.emit(item).await;
        }
        self.recent.retain(|(_, _, b)| !reorg.replaces(*b));
    }

    /// The trips `event` causes: its samples through the engine, and a screened
    /// transaction's what-if block (one trip per policy and expected block).
    fn judge(&mut self, network: usize, event: &WatchEvent) -> Vec<Trip> {
        let engine = &mut self.s.engine;
        let mut trips = Vec::new();
        for (block, time_ms, name, value) in event.samples() {
            // The recorder orders times the same way, so a replay sees these samples.
            let time_ms = self.order.next(time_ms);
            if let Some(metric) = engine.metric_id(name) {
                let sample = Sample {
                    block,
                    time_ms,
                    metric,
                    value,
                };
                engine.on_sample(sample, &mut |t| trips.push(t));
            } else {
                engine.on_tick(block, time_ms, &mut |t| trips.push(t));
            }
        }
        if let WatchEvent::Screened(s) = event {
            let mut new = what_if_trips(engine, s);
            // The next pending transactions would trip it again until that block is mined.
            let sent = &mut self.what_if_sent;
            new.retain(|t| sent.insert((network, t.policy.clone()), t.block) != Some(t.block));
            trips.extend(new);
        }
        trips
    }

    /// A restart re-reads mined blocks from before its resume point: their
    /// trips were decided then, and are dropped here. Pending and watchdog
    /// trips are live, never re-reads.
    fn drop_decided(&mut self, network: usize, trips: &mut Vec<Trip>) {
        let decided = &self.s.networks[network].decided;
        let mut replayed = Vec::new();
        trips.retain(|t| {
            let Some(same_mode) = decided.before_restart(t) else {
                return true;
            };
            tracing::debug!(target: "guardian::engine", policy = %t.policy, block = t.block, "trip already decided before the restart: not decided again");
            // Decided in this mode: it holds the same incident only. Otherwise
            // (dry-run then, enforce now; or never decided) it holds nothing.
            replayed.push((t.policy.clone(), same_mode));
            false
        });
        for (policy, same_mode) in replayed {
            self.s.engine.replayed_trip(&policy, same_mode);
        }
    }

    /// ops: incidents the policies' cooldowns held back on live blocks.
    fn report_held(&mut self, network: usize) {
        let mut held = Vec::new();
        self.s.engine.drain_held(|h| held.push(h));
        let net = &self.s.networks[network];
        for h in held.iter().filter(|h| net.decided.is_live(h.block)) {
            report_held(
                &self.s.reports.probe,
                self.s.engine.policies(),
                &net.name,
                h,
            );
        }
    }

    /// Sends the gate's held actions that `block` confirms.
    async fn release_held(&mut self, network: usize, block: &Snapshot) -> ControlFlow<()> {
        let mut flow = ControlFlow::Continue(());
        for item in self.s.gate.on_block(network, block).await {
            if self.s.to_guard.send(item).await.is_err() {
                flow = ControlFlow::Break(());
            }
        }
        flow
    }

    /// Reports each trip and hands it through the gate to the guard.
    async fn hand_over(&mut self, trips: Vec<Trip>, h: &Handed) -> ControlFlow<()> {
        for trip in trips {
            tracing::warn!(target: "guardian::engine", policy = %trip.policy, block = trip.block, action = %trip.action, "policy tripped: {}", trip.summary);
            if self.recent.len() == RECENT_TRIPS {
                self.recent.pop_front();
            }
            self.recent
                .push_back((trip.policy.clone(), trip.action.clone(), trip.block));
            let report = Report::Trip {
                trip: trip.clone(),
                pending: h.pending.clone(),
            };
            self.s.reports.emit(report).await;
            let item = ToGuard::Trip {
                trip: Box::new(trip),
                urgency: h.urgency,
                network: h.network,
                origin: h.origin,
                pending: h.pending.as_ref().map(|p| p.hash),
            };
            let set = self.s.engine.policies();
            let Some(item) = self.s.gate.admit(h.network, h.origin, item, set).await else {
                continue;
            };
            if self.s.to_guard.send(item).await.is_err() {
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }

    /// With a journal, a live block whose trips were all handed over is
    /// processed once the guard has decided them.
    async fn processed(
        &mut self,
        network: usize,
        b: &Snapshot,
    ) -> Result<ControlFlow<()>, RunError> {
        if !self.s.journaled || !self.s.networks[network].decided.is_live(b.number) {
            return Ok(ControlFlow::Continue(()));
        }
        let done = ToGuard::Processed {
            network,
            block: b.number,
            hash: b.hash,
            time_ms: b.time_ms,
        };
        Ok(match self.s.to_guard.send(done).await {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(()),
        })
    }
}

/// Where a batch of trips came from, and what a response must be ordered ahead of.
struct Handed {
    network: usize,
    origin: TripOrigin,
    urgency: Option<Urgency>,
    pending: Option<PendingTx>,
}

/// ops: the next policy set to run; never resolves without a reload channel.
async fn next_reload(rx: &mut Option<watch::Receiver<PolicySet>>) -> PolicySet {
    loop {
        match rx {
            Some(r) => match r.changed().await {
                Ok(()) => return r.borrow_and_update().clone(),
                Err(_) => *rx = None,
            },
            None => std::future::pending::<()>().await,
        }
    }
}

/// The urgency and the pending transaction of a pending or screened
/// transaction's trips: a response must be ordered ahead of it.
fn urgency(event: &WatchEvent) -> (Option<Urgency>, Option<PendingTx>) {
    let tx = match event {
        WatchEvent::Pending(p) => &p.tx,
        WatchEvent::Screened(s) => &s.tx,
        _ => return (None, None),
    };
    let (max_fee, tip) = (tx.max_fee_per_gas, tx.max_priority_fee_per_gas);
    (
        Some(Urgency {
            attacker_max_fee: max_fee,
            attacker_priority_fee: tip.unwrap_or(max_fee),
        }),
        Some(PendingTx {
            hash: tx.hash,
            from: tx.from,
            max_fee_per_gas: max_fee,
            max_priority_fee_per_gas: tip,
        }),
    )
}

/// The trips a screened transaction's what-if block would cause (nothing is
/// committed), each naming the transaction, its fees and the values it changes.
fn what_if_trips(engine: &mut Engine, s: &Screened) -> Vec<Trip> {
    let samples: Vec<(MetricId, f64)> = s
        .values
        .iter()
        .filter_map(|(name, v)| engine.metric_id(name).map(|m| (m, *v)))
        .collect();
    if samples.is_empty() {
        return Vec::new();
    }
    let mut trips = engine.what_if(s.block, s.time_ms, &samples);
    let tx = &s.tx;
    for t in &mut trips {
        t.evidence.make_mut()["what_if"]["pending_tx"] = serde_json::json!({
            "hash": tx.hash, "from": tx.from, "to": tx.to, "nonce": tx.nonce,
            "max_fee_per_gas": tx.max_fee_per_gas.to_string(),
            "max_priority_fee_per_gas": tx.max_priority_fee_per_gas.map(|f| f.to_string()),
            "sequence": s.sequence, "seen_ms": s.seen_ms,
        });
        t.summary = format!(
            "if pending {} (from {}) were mined next: {}",
            tx.hash, tx.from, t.summary
        );
    }
    trips
}

/// ops: a new incident a policy's cooldown held back: counted, logged and
/// alerted one severity lower than the policy's, with the reason.
fn report_held(probe: &Probe, set: &PolicySet, network: &str, held: &Held) {
    let reason = match held.ready() {
        (Some(block), _) => format!(
            "its cooldown of {} after the trip at block {} runs until block {block}",
            held.cooldown, held.last_trip.0
        ),
        (_, Some(ms)) => format!(
            "its cooldown of {} after the trip at block {} runs until {}",
            held.cooldown,
            held.last_trip.0,
            crate::alerts::payload::iso8601(ms)
        ),
        (None, None) => format!("its cooldown of {}", held.cooldown),
    };
    tracing::warn!(target: "guardian::engine", policy = %held.policy, block = held.block, network, "policy held, not tripped: the condition holds again but {reason}");
    let severity = set
        .policies
        .iter()
        .find(|p| p.id == held.policy)
        .map_or(crate::policy::Severity::Warning, |p| p.severity);
    probe.held(&held.policy, network, held.block, severity, &reason);
}

/// ops: per policy, whether its windows hold enough history to trip; a policy
/// still blind when live blocks arrive says so, once, with the block it
/// becomes able to trip at.
struct Readiness {
    policies: Vec<(String, crate::policy::warmup::WarmUp)>,
    /// The first block (number, ms) this engine saw.
    first: Option<(u64, u64)>,
    /// Per policy: warm, and whether its blindness was announced.
    state: Vec<(bool, bool)>,
}

impl Readiness {
    fn new(set: &PolicySet, probe: &Probe) -> Self {
        let needs = crate::policy::warmup::warmups(set);
        let policies: Vec<_> = set
            .policies
            .iter()
            .map(|p| p.id.clone())
            .zip(needs)
            .collect();
        for (p, need) in &policies {
            probe.policy_ready(p, need.is_none(), None);
        }
        let state = policies.iter().map(|(_, n)| (n.is_none(), false)).collect();
        Self {
            policies,
            first: None,
            state,
        }
    }

    /// A block was processed at `at` (number, ms); `live`: not a re-read one.
    fn update(&mut self, at: (u64, u64), live: bool, block_time_ms: u64, probe: &Probe) {
        let first = *self.first.get_or_insert(at);
        for ((policy, need), (warm, announced)) in self.policies.iter().zip(&mut self.state) {
            if *warm {
                continue;
            }
            if need.covered(first, at) {
                *warm = true;
                probe.policy_ready(policy, true, None);
                if *announced {
                    tracing::warn!(target: "guardian::engine", policy = %policy, block = at.0, "policy warm: its windows are full, it can trip from now on");
                }
                continue;
            }
            if live && !*announced {
                *announced = true;
                let until = first.0.saturating_add(need.in_blocks(block_time_ms));
                probe.policy_ready(policy, false, Some(until));
                tracing::warn!(target: "guardian::engine", policy = %policy, block = at.0, until, need = %need.describe(), "policy {policy} blind until block {until}: it needs {} of history and has {} blocks", need.describe(), at.0.saturating_sub(first.0));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::pipeline::gate::NetGate;
    use crate::source::chain::Health;
    use crate::source::chain::reads::now_ms;

    const POLICY: &str = r#"
[[policy]]
id = "low"
description = "tvl below 5"
when = { kind = "threshold", metric = "tvl", op = "<", value = 5 }
severity = "critical"
action = "pause"
cooldown = "1 block"
"#;

    fn block(number: u64, tvl: f64) -> (usize, WatchEvent) {
        let snapshot = Snapshot {
            number,
            hash: alloy::primitives::B256::with_last_byte(number as u8),
            parent_hash: alloy::primitives::B256::ZERO,
            time_ms: now_ms(),
            values: vec![(Arc::from("tvl"), tvl)],
            failed: Vec::new(),
        };
        (0, WatchEvent::Block(snapshot))
    }

    /// The engine stage alone, on its channels: events in, what it hands the guard out.
    fn stage(
        decided: Decided,
    ) -> (
        EngineStage,
        mpsc::Sender<(usize, WatchEvent)>,
        mpsc::Receiver<ToGuard>,
    ) {
        let set = crate::policy::compile_str("p.toml", POLICY, &Config::empty()).unwrap();
        let (events_tx, events) = mpsc::channel(8);
        let (to_guard, out) = mpsc::channel(8);
        let net = NetGate::new("local".into(), Arc::new(Health::new(1)));
        let stage = EngineStage {
            engine: Engine::new(set, Mode::DryRun),
            mode: Mode::DryRun,
            reload: None,
            events,
            to_guard,
            recorder: None,
            networks: vec![Net {
                name: "local".into(),
                block_time_ms: 1_000,
                decided,
            }],
            gate: Gate {
                nets: vec![net],
                probe: Probe::default(),
            },
            journaled: true,
            reports: Reports::new(Probe::default(), None),
        };
        (stage, events_tx, out)
    }

    fn handed(item: Option<ToGuard>) -> String {
        match item {
            Some(ToGuard::Trip { trip, .. }) => format!("trip {} at {}", trip.policy, trip.block),
            Some(ToGuard::Processed { block, .. }) => format!("processed {block}"),
            None => "closed".into(),
        }
    }

    #[tokio::test]
    async fn a_block_that_trips_hands_the_trip_then_marks_the_block_processed() {
        let (stage, events, mut out) = stage(Decided::default());
        let cancel = CancellationToken::new();
        let task = tokio::spawn(stage.run(cancel.clone()));
        events.send(block(1, 10.0)).await.unwrap();
        events.send(block(2, 1.0)).await.unwrap();
        assert_eq!(handed(out.recv().await), "processed 1");
        assert_eq!(handed(out.recv().await), "trip low at 2");
        assert_eq!(handed(out.recv().await), "processed 2");
        // The watchers gone: the engine stops and says why.
        drop(events);
        let err = task.await.unwrap().unwrap_err();
        assert!(matches!(err, RunError::StageStopped("watcher")), "{err}");
    }

    #[tokio::test]
    async fn re_read_blocks_decided_before_a_restart_are_not_handed_on_again() {
        let mut decided = Decided::default();
        decided.through = Some(2);
        let (stage, events, mut out) = stage(decided);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(stage.run(cancel.clone()));
        for (number, tvl) in [(2, 1.0), (3, 10.0), (4, 1.0)] {
            events.send(block(number, tvl)).await.unwrap();
        }
        // Block 2 was decided and processed before the restart: nothing for it.
        assert_eq!(handed(out.recv().await), "processed 3");
        assert_eq!(handed(out.recv().await), "trip low at 4");
        assert_eq!(handed(out.recv().await), "processed 4");
        cancel.cancel();
        assert!(task.await.unwrap().is_ok());
    }
}
