//! `guardian run`: the live pipeline, wired and supervised.
//!
//! ```text
//! watcher (one task per network) ──WatchEvent──▶ engine task ──(Trip, urgency)──▶ guard + executor task
//!                      bounded mpsc                              bounded mpsc
//! ```
//!
//! Invariants:
//! - **No silent loss.** Stages are joined by bounded channels; a full channel
//!   makes the sender wait (backpressure), it never drops.
//! - **Same samples, same trips.** The engine sees exactly the samples the
//!   recorder writes (times clamped to stay non-decreasing, as the trace format
//!   requires), so a recorded run replays to the same trips.
//! - **Fail loudly.** If any stage ends while the pipeline was not asked to stop,
//!   every other stage is cancelled and [`run`] returns the error: a guardian
//!   that stopped watching never looks healthy.
//! - **Shutdown finishes to a safe state.** Cancellation stops the watchers and
//!   the engine at once; the executor finishes the action in flight (its own
//!   deadline bounds how long) before the guard task returns.
//! - Only the guard makes an [`crate::guard::Approved`]; the executor accepts
//!   nothing else.
//! - **Restart-safe with a journal** (`[journal]`, see [`crate::journal`]): the
//!   watchers resume after the last processed block, trips already decided
//!   are not decided again, an action a previous run left in flight is
//!   followed to its end before any new trip is decided, and every decision
//!   and transaction is written before it is acted on.
//! - **Observing never holds anything up.** Every report also goes to the
//!   [`crate::observe::Probe`] (metrics: atomics; alerts: `try_send` into
//!   bounded queues, drops counted and logged). Policy reloads arrive already
//!   validated on a `watch` channel and replace the engine between samples.
//! - **Failure policy** (README): an executor whose node cannot be reached, or
//!   whose key is missing, is alerted and retried per trip; watching goes on.

mod gate;

use std::collections::{HashMap, HashSet};
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::Config;
use crate::decision::Trip;
use crate::executor::delivery::Urgency;
use crate::executor::{ExecError, Execution, Executors};
use crate::guard::{Guard, Outcome};
use crate::journal::{Journal, JournalError, TripOrigin};
use crate::keys::Key;
use crate::metrics::Sample;
use crate::policy::{Engine, PolicySet};
use crate::source::chain::record::{Recorder, TimeOrder};
use crate::source::chain::{ChainError, WatchEvent, Watcher, WatcherOptions};

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Record every sample to this trace file.
    pub record: Option<PathBuf>,
    pub watcher: WatcherOptions,
    /// Capacity of each channel between stages.
    pub channel_capacity: usize,
    /// Metrics, readiness and alerts (see [`crate::observe`]); the default does nothing.
    pub probe: crate::observe::Probe,
    /// New policy sets to run (validated by the sender); the engine swaps to the latest.
    pub reload: Option<tokio::sync::watch::Receiver<PolicySet>>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            record: None,
            watcher: WatcherOptions::default(),
            channel_capacity: 1024,
            probe: crate::observe::Probe::default(),
            reload: None,
        }
    }
}

/// The pending transaction a trip was decided on (its estimated effect tripped the policy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingTx {
    pub hash: alloy::primitives::B256,
    pub from: alloy::primitives::Address,
    pub max_fee_per_gas: u128,
    pub max_priority_fee_per_gas: Option<u128>,
}

/// What the pipeline did, for the operator's log and for tests.
#[derive(Debug, Clone)]
pub enum Report {
    /// A policy tripped; `pending` names the pending transaction it tripped on, if any.
    Trip {
        trip: Trip,
        pending: Option<PendingTx>,
    },
    /// A reorg replaced the block a trip was decided on: that decision was
    /// based on a chain that no longer is.
    ReorgedOut {
        policy: String,
        action: String,
        block: u64,
    },
    /// The guard's decision on a trip: approved, alert-only, already done or rejected.
    Decision {
        decision_id: u64,
        policy: String,
        action: String,
        block: u64,
        outcome: String,
        approved: bool,
    },
    /// The executor finished an approved action.
    Executed {
        decision_id: u64,
        execution: Execution,
    },
    /// The executor could not finish an approved action.
    ExecutionFailed { decision_id: u64, error: String },
}

/// The urgency and the pending transaction of a screened transaction's trips:
/// a response must be ordered ahead of it.
fn screened_urgency(s: &crate::source::chain::Screened) -> (Option<Urgency>, Option<PendingTx>) {
    let tx = &s.tx;
    (
        Some(Urgency {
            attacker_max_fee: tx.max_fee_per_gas,
            attacker_priority_fee: tx.max_priority_fee_per_gas.unwrap_or(tx.max_fee_per_gas),
        }),
        Some(PendingTx {
            hash: tx.hash,
            from: tx.from,
            max_fee_per_gas: tx.max_fee_per_gas,
            max_priority_fee_per_gas: tx.max_priority_fee_per_gas,
        }),
    )
}

/// The trips a screened transaction's what-if block would cause (nothing is
/// committed), each naming the transaction, its fees and the values it changes.
fn what_if_trips(
    engine: &mut Engine,
    s: &crate::source::chain::Screened,
) -> Vec<crate::decision::Trip> {
    let samples: Vec<(crate::metrics::MetricId, f64)> = s
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

/// Why the pipeline stopped without being asked to.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the configuration cannot run live: {0}")]
    NotRunnable(String),
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error(transparent)]
    Executor(#[from] ExecError),
    #[error("cannot record to {path}: {source}")]
    Record {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the {0} stage stopped unexpectedly; guardian is not watching, so it exits")]
    StageStopped(&'static str),
    #[error("a pipeline stage panicked: {0}")]
    StagePanicked(String),
    #[error(
        "{0}; guardian stops rather than act without a record (a restart resumes from the journal)"
    )]
    Journal(#[from] JournalError),
}

/// ops: how long connecting a network's executors may take (at start, and again per trip while unavailable).
const EXECUTOR_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// ops: sends a report to the probe (metrics, alerts) and to the caller, if any.
async fn emit(report: Option<&mpsc::Sender<Report>>, probe: &crate::observe::Probe, item: Report) {
    probe.report(&item);
    if let Some(r) = report {
        let _ = r.send(item).await;
    }
}

/// ops: the next policy set to run; never resolves without a reload channel.
async fn next_reload(rx: &mut Option<tokio::sync::watch::Receiver<PolicySet>>) -> PolicySet {
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

/// ops: marks the pipeline as not watching (for `/readyz`) however `run` returns.
struct NotWatching(crate::observe::Probe, Vec<String>);

impl Drop for NotWatching {
    fn drop(&mut self) {
        self.0.watching(&self.1, false);
    }
}

/// What the engine hands the guard task.
enum ToGuard {
    Trip {
        trip: Box<Trip>,
        urgency: Option<Urgency>,
        /// Index into the watched networks.
        network: usize,
        origin: TripOrigin,
        pending: Option<alloy::primitives::B256>,
    },
    /// Every trip of this block was handed over before this: once they are
    /// decided, the block is processed (written to the journal).
    Processed {
        network: usize,
        block: u64,
        hash: alloy::primitives::B256,
        time_ms: u64,
    },
}

/// Runs the pipeline until `cancel` fires (returns `Ok`) or a stage fails (returns the error).
pub async fn run(
    config: Config,
    policies: PolicySet,
    keys: HashMap<String, Key>,
    options: RunOptions,
    report: Option<mpsc::Sender<Report>>,
    cancel: CancellationToken,
) -> Result<(), RunError> {
    let networks: Vec<String> = config
        .networks
        .keys()
        .filter(|n| {
            config
                .metrics
                .iter()
                .any(|m| m.network.as_deref() == Some(n.as_str()))
        })
        .cloned()
        .collect();
    if networks.is_empty() {
        return Err(RunError::NotRunnable(
            "no metric reads from a network (give metrics a `network` and a `source`)".into(),
        ));
    }
    // Connect every network some executor sends to, before watching anything.
    let mut executors: HashMap<String, Executors> = HashMap::new();
    // ops: networks whose executors could not connect yet; the executors' delivery events (for latencies).
    let mut unavailable: HashSet<String> = HashSet::new();
    // ops: why each unavailable network's executors could not connect (for /readyz).
    let mut unavailable_why: HashMap<String, String> = HashMap::new();
    let (sent_tx, mut sent_rx) = mpsc::channel::<crate::executor::DeliveryEvent>(256);
    for def in config.executors.values() {
        let Some(net) = def.network.as_deref() else {
            return Err(RunError::NotRunnable(format!(
                "executor `{}` names no `network`",
                def.name
            )));
        };
        if !executors.contains_key(net) && !unavailable.contains(net) {
            let connect = Executors::connect(&config, net, &keys, Some(sent_tx.clone()));
            let connected = tokio::time::timeout(EXECUTOR_CONNECT_TIMEOUT, connect)
                .await
                .unwrap_or_else(|_| {
                    Err(ExecError::Rpc {
                        what: "connect",
                        reason: format!(
                            "no answer within {} s",
                            EXECUTOR_CONNECT_TIMEOUT.as_secs()
                        ),
                    })
                });
            match connected {
                Ok(e) => {
                    executors.insert(net.to_string(), e);
                }
                // ops: an unreachable node or a key that could not be loaded: alert loudly,
                // keep watching, retry when a trip needs it (README, "Failure policy").
                Err(e @ (ExecError::Rpc { .. } | ExecError::MissingKey { .. })) => {
                    tracing::error!(target: "guardian::executor", network = %net, error = %e, "executors unavailable; watching anyway, retrying on the next trip");
                    options.probe.executor_unavailable(net, &e.to_string());
                    unavailable_why.insert(net.to_string(), e.to_string());
                    unavailable.insert(net.to_string());
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    // The journal: where the last run stopped, and what it left in flight.
    let mut guard = Guard::new(&config);
    // Per network: the block to resume after (its trips were decided), and
    // whether trips on replayed blocks are known decided (not after a reorg).
    let mut start_after: Vec<Option<u64>> = vec![None; networks.len()];
    let mut resume: Vec<Option<u64>> = vec![None; networks.len()];
    let mut decided: Vec<HashSet<(String, u64)>> = vec![HashSet::new(); networks.len()];
    let mut unfinished = Vec::new();
    let journal = match &config.journal {
        Some(jc) => {
            let j = Arc::new(Journal::open(jc)?);
            for (i, net) in networks.iter().enumerate() {
                let chain_id = config.networks.get(net).map_or(0, |n| n.chain_id);
                if let Some((block, hash)) = j.bind_network(net, chain_id)? {
                    tracing::info!(target: "guardian::journal", network = %net, block, hash = %hash, "resuming after the last processed block");
                    start_after[i] = Some(block);
                    match Watcher::new(&config, net, options.watcher.clone())?
                        .block_hash(block)
                        .await
                    {
                        Ok(Some(now)) if now == hash => {
                            resume[i] = Some(block);
                            decided[i] = j.decided_after(net, block)?;
                        }
                        // The blocks replayed may not be the ones decided on: their trips are
                        // decided anew (restored cooldowns and already-done checks keep an
                        // action from repeating).
                        Ok(Some(now)) => {
                            tracing::error!(target: "guardian::journal", network = %net, block, was = %hash, now = %now, "the chain reorganised while guardian was down: trips on the re-read blocks are decided anew");
                        }
                        Ok(None) => {
                            tracing::warn!(target: "guardian::journal", network = %net, block, "the node does not have the resume block (it is behind): trips on the re-read blocks are decided anew");
                        }
                        Err(e) => {
                            tracing::warn!(target: "guardian::journal", network = %net, block, error = %crate::source::chain::redact(&e.to_string()), "cannot check the resume block's hash; assuming no reorg");
                            resume[i] = Some(block);
                            decided[i] = j.decided_after(net, block)?;
                        }
                    }
                }
            }
            unfinished = j.unfinished()?;
            guard.restore(j.past_decisions()?);
            for exec in executors.values() {
                exec.set_tx_log(j.clone());
            }
            Some(j)
        }
        None => None,
    };
    let replica = config.journal.as_ref().and_then(|j| j.replica);
    let stagger = config.journal.as_ref().map_or(0, |j| j.replica_stagger_ms);
    // Re-read as much history as the longest window needs (bounded), so a restart resumes warm.
    let needs = crate::policy::warmup::warmups(&policies);
    let replay_from: Vec<Option<u64>> = networks
        .iter()
        .zip(&start_after)
        .map(|(net, last)| {
            last.map(|l| (l + 1).saturating_sub(reread_blocks(&config, net, &needs)))
        })
        .collect();
    // The mode each replayed, already-decided trip was decided in.
    let mut decided_modes = vec![HashMap::new(); networks.len()];
    if let Some(j) = &journal {
        for (i, net) in networks.iter().enumerate() {
            if let (Some(from), Some(_)) = (replay_from[i], resume[i]) {
                decided_modes[i] = j.decided_modes_after(net, from.saturating_sub(1))?;
            }
        }
    }

    let mut recorder = match &options.record {
        Some(path) => {
            let file = std::fs::File::create(path).map_err(|source| RunError::Record {
                path: path.clone(),
                source,
            })?;
            let comment = format!("recorded by guardian run from {}", config.path.display());
            Some((
                path.clone(),
                Recorder::new(BufWriter::new(file), &comment).map_err(|source| {
                    RunError::Record {
                        path: path.clone(),
                        source,
                    }
                })?,
            ))
        }
        None => None,
    };

    let (events_tx, mut events_rx) = mpsc::channel::<(usize, WatchEvent)>(options.channel_capacity);
    let (trips_tx, mut trips_rx) = mpsc::channel::<ToGuard>(options.channel_capacity);
    let mut tasks: JoinSet<(&'static str, Result<(), RunError>)> = JoinSet::new();

    let probe = options.probe.clone();
    probe.policies(&policies);
    probe.watching(&networks, true);
    // ops (issue #13): the head-age limit and quorum check before an action.
    let mut gate = gate::Gate {
        nets: Vec::with_capacity(networks.len()),
        probe: probe.clone(),
    };
    for (i, net) in networks.iter().enumerate() {
        let mut watcher_options = options.watcher.clone();
        watcher_options.probe = probe.clone();
        if let Some(from) = replay_from[i] {
            // Re-read blocks before the resume point so policy windows refill;
            // the engine does not act on their trips again.
            watcher_options.start_block = Some(from);
        }
        let watcher = Watcher::new(&config, net, watcher_options)?;
        gate.nets.push(net_gate(&config, &watcher).await?);
        // Each watcher's events are tagged with its network on the way to the engine.
        let (out, mut tagged) = mpsc::channel::<WatchEvent>(options.channel_capacity);
        let events = events_tx.clone();
        tokio::spawn(async move {
            while let Some(e) = tagged.recv().await {
                if events.send((i, e)).await.is_err() {
                    break;
                }
            }
        });
        let token = cancel.clone();
        tasks.spawn(async move {
            (
                "watcher",
                watcher.run(out, token).await.map_err(RunError::from),
            )
        });
    }
    drop(events_tx);

    // ops: ready means able to act: keys, balances and endpoints of enforce executors.
    if config.mode == crate::policy::model::Mode::Enforce {
        mark_missing_keys(&config, &keys, &probe);
        for def in config.executors.values() {
            if let Some(n) = def.network.as_deref().filter(|n| unavailable.contains(*n))
                && def.kind.key_names().iter().all(|k| keys.contains_key(*k))
            {
                let why = format!(
                    "its network's executors could not connect: {}",
                    unavailable_why.get(n).map_or("", String::as_str)
                );
                probe.executor_able(&def.name, n, Err(&why));
            }
        }
        let (execs, token, p) = (executors.clone(), cancel.clone(), probe.clone());
        let actions = config.actions.clone();
        tasks.spawn(async move {
            recheck_executors(execs, actions, p, token).await;
            ("readiness", Ok(()))
        });
    }

    // Engine: samples in, trips out. Stops at once on cancellation.
    let mut engine = Engine::new(policies, config.mode);
    let engine_cancel = cancel.clone();
    let engine_report = report.clone();
    let journaled = journal.is_some();
    let engine_probe = probe.clone();
    let mut reload = options.reload.clone();
    let mode = config.mode;
    let engine_networks = networks.clone();
    let block_times: Vec<u64> = networks.iter().map(|n| block_time_ms(&config, n)).collect();
    tasks.spawn(async move {
        let mut order = TimeOrder::default();
        // What-if trips already sent, per (network, policy), with the block they were for.
        let mut what_if_sent: HashMap<(usize, String), u64> = HashMap::new();
        let mut readiness = Readiness::new(engine.policies(), &engine_probe);
        // Recent trips, to name those a reorg invalidates (bounded: the watcher
        // remembers a limited reorg depth too).
        let mut recent: std::collections::VecDeque<(String, String, u64)> = std::collections::VecDeque::new();
        let result = loop {
            let event = tokio::select! {
                biased;
                () = engine_cancel.cancelled() => break Ok(()),
                set = next_reload(&mut reload) => {
                    // ops: validated by the sender; windows restart empty under the new policies.
                    tracing::warn!(target: "guardian::engine", policies = set.policies.len(), "policies reloaded; metric windows restart from the next sample");
                    engine_probe.policies(&set);
                    engine_probe.reload(set.policies.len(), &[]);
                    readiness = Readiness::new(&set, &engine_probe);
                    engine = Engine::new(set, mode);
                    continue;
                }
                event = events_rx.recv() => event,
            };
            let Some((network, event)) = event else {
                break Err(RunError::StageStopped("watcher"));
            };
            if let Some((path, rec)) = &mut recorder
                && let Err(source) = rec.record(&event)
            {
                break Err(RunError::Record { path: path.clone(), source });
            }
            let (urgency, pending) = match &event {
                WatchEvent::Pending(p) => (
                    Some(Urgency {
                        attacker_max_fee: p.max_fee_per_gas,
                        attacker_priority_fee: p.max_priority_fee_per_gas.unwrap_or(p.max_fee_per_gas),
                    }),
                    Some(PendingTx {
                        hash: p.tx_hash,
                        from: p.from,
                        max_fee_per_gas: p.max_fee_per_gas,
                        max_priority_fee_per_gas: p.max_priority_fee_per_gas,
                    }),
                ),
                WatchEvent::Screened(s) => screened_urgency(s),
                _ => (None, None),
            };
            if let WatchEvent::Reorg(reorg) = &event {
                for (policy, action, block) in recent.iter().filter(|(_, _, b)| reorg.replaces(*b)) {
                    tracing::error!(target: "guardian::engine", policy = %policy, block, "a trip was decided on a block that a reorg replaced");
                    emit(engine_report.as_ref(), &engine_probe, Report::ReorgedOut { policy: policy.clone(), action: action.clone(), block: *block }).await;
                }
                recent.retain(|(_, _, b)| !reorg.replaces(*b));
            }
            let mut trips = Vec::new();
            for (block, time_ms, name, value) in event.samples() {
                // The recorder orders times the same way, so a replay sees these samples.
                let time_ms = order.next(time_ms);
                if let Some(metric) = engine.metric_id(name) {
                    engine.on_sample(Sample { block, time_ms, metric, value }, &mut |t| trips.push(t));
                } else {
                    engine.on_tick(block, time_ms, &mut |t| trips.push(t));
                }
            }
            if let WatchEvent::Screened(s) = &event {
                let mut new = what_if_trips(&mut engine, s);
                // One what-if trip per policy and expected block: the next pending
                // transactions would trip it again until that block is mined.
                new.retain(|t| what_if_sent.insert((network, t.policy.clone()), t.block) != Some(t.block));
                trips.extend(new);
            }
            if let Some((_, rec)) = &mut recorder {
                let _ = rec.flush();
            }
            let origin = match &event {
                WatchEvent::Pending(_) | WatchEvent::Screened(_) => TripOrigin::Pending,
                WatchEvent::Stale(_) => TripOrigin::Stale,
                _ => TripOrigin::Block,
            };
            // A restart replays mined blocks from before its resume point: their trips
            // were decided then. Pending and watchdog trips are live, never replays.
            let last = resume[network];
            let mut replayed = Vec::new();
            trips.retain(|t| {
                let done = origin == TripOrigin::Block
                    && (last.is_some_and(|l| t.block <= l)
                        || (!decided[network].is_empty()
                            && decided[network].contains(&(t.policy.clone(), t.block))));
                if done {
                    tracing::debug!(target: "guardian::engine", policy = %t.policy, block = t.block, "trip already decided before the restart: not decided again");
                    // Decided in this mode: it holds the same incident only. Otherwise
                    // (dry-run then, enforce now; or never decided) it holds nothing.
                    let same = decided_modes[network].get(&(t.policy.clone(), t.block)) == Some(&t.mode);
                    replayed.push((t.policy.clone(), same));
                }
                !done
            });
            for (policy, same_mode) in replayed {
                engine.replayed_trip(&policy, same_mode);
            }
            let network_name = engine_networks.get(network).map_or("", String::as_str);
            let live = |block: u64| last.is_none_or(|l| block > l);
            let mut held = Vec::new();
            engine.drain_held(|h| held.push(h));
            for h in held.iter().filter(|h| live(h.block)) {
                report_held(&engine_probe, engine.policies(), network_name, h);
            }
            if let WatchEvent::Block(snapshot) = &event {
                let at = (snapshot.number, snapshot.time_ms);
                readiness.update(at, live(snapshot.number), block_times[network], &engine_probe);
            }
            let mut gone = false;
            if let WatchEvent::Block(snapshot) = &event {
                // Held actions this block's re-check confirms go first.
                for item in gate.on_block(network, snapshot).await {
                    if trips_tx.send(item).await.is_err() {
                        gone = true;
                    }
                }
            }
            for trip in trips {
                tracing::warn!(target: "guardian::engine", policy = %trip.policy, block = trip.block, action = %trip.action, "policy tripped: {}", trip.summary);
                if recent.len() == 1024 {
                    recent.pop_front();
                }
                recent.push_back((trip.policy.clone(), trip.action.clone(), trip.block));
                emit(engine_report.as_ref(), &engine_probe, Report::Trip { trip: trip.clone(), pending: pending.clone() }).await;
                let item = ToGuard::Trip {
                    trip: Box::new(trip),
                    urgency,
                    network,
                    origin,
                    pending: pending.as_ref().map(|p| p.hash),
                };
                let Some(item) = gate.admit(network, origin, item, engine.policies()).await else {
                    continue;
                };
                if trips_tx.send(item).await.is_err() {
                    gone = true;
                    break;
                }
            }
            if journaled
                && !gone
                && let WatchEvent::Block(snapshot) = &event
                && last.is_none_or(|l| snapshot.number > l)
            {
                let done = ToGuard::Processed {
                    network,
                    block: snapshot.number,
                    hash: snapshot.hash,
                    time_ms: snapshot.time_ms,
                };
                gone = trips_tx.send(done).await.is_err();
            }
            if gone {
                // On shutdown the guard task may stop first: that is no failure.
                if engine_cancel.is_cancelled() {
                    break Ok(());
                }
                break Err(RunError::StageStopped("guard"));
            }
        };
        ("engine", result)
    });

    // Guard and executor: one decision at a time; the action in flight is finished even on shutdown.
    let actions = config.actions.clone();
    let executor_networks: HashMap<String, String> = config
        .executors
        .values()
        .filter_map(|d| d.network.clone().map(|n| (d.name.clone(), n)))
        .collect();
    let guard_cancel = cancel.clone();
    let network_names = networks.clone();
    let guard_probe = probe.clone();
    let reconnect = (config.clone(), keys, sent_tx);
    let tx_log = journal.clone();
    tasks.spawn(async move {
        // First, what a previous run left in flight: followed to its end before any new decision.
        for u in unfinished {
            let Some(exec) = executor_networks.get(&u.executor).and_then(|n| executors.get(n)) else {
                tracing::error!(target: "guardian::journal", decision_id = u.decision_id, executor = %u.executor, "an action left in flight names an executor no longer configured: not followed");
                continue;
            };
            tracing::warn!(target: "guardian::journal", decision_id = u.decision_id, policy = %u.policy, txs = u.txs.len(), "following an action a previous run left in flight");
            let net = executor_networks.get(&u.executor).map_or("", String::as_str);
            guard_probe.decision_context(u.decision_id, &u.policy, net, None);
            let result = until_shutdown(&guard_cancel, exec, exec.follow(&u.executor, &u.effect, &u.txs)).await;
            if matches!(result, Err(ExecError::ShutDown)) {
                // ops: left in flight: the journal keeps it for the next start.
                return ("guard", Ok(()));
            }
            if let Err(e) = finish(journal.as_deref(), report.as_ref(), &guard_probe, u.decision_id, result).await {
                return ("guard", Err(e));
            }
        }
        loop {
            let next = tokio::select! {
                biased;
                () = guard_cancel.cancelled() => return ("guard", Ok(())),
                next = trips_rx.recv() => next,
            };
            let Some(item) = next else {
                if guard_cancel.is_cancelled() {
                    return ("guard", Ok(()));
                }
                return ("guard", Err(RunError::StageStopped("engine")));
            };
            let (trip, urgency, network, origin, pending_tx) = match item {
                ToGuard::Trip { trip, urgency, network, origin, pending } => (*trip, urgency, network, origin, pending),
                ToGuard::Processed { network, block, hash, time_ms } => {
                    if let Some(j) = &journal
                        && let Err(e) = j.mark_processed(&network_names[network], block, hash, time_ms)
                    {
                        return ("guard", Err(e.into()));
                    }
                    continue;
                }
            };
            let network_name = network_names.get(network).map_or("", String::as_str);
            let tripped_at = std::time::Instant::now();
            // ops: every line of this decision carries its policy, block and (once known) decision_id.
            let span = tracing::warn_span!(target: "guardian::guard", "decision", policy = %trip.policy, block = trip.block, decision_id = tracing::field::Empty);
            let exec_network = actions
                .get(&trip.action)
                .and_then(|a| a.executor.as_ref())
                .and_then(|e| executor_networks.get(e));
            if let Some(n) = exec_network
                && !executors.contains_key(n)
                && unavailable.contains(n)
            {
                // ops: an executor unavailable at start is retried when a trip needs it.
                let (config, keys, sent_tx) = &reconnect;
                let connect = Executors::connect(config, n, keys, Some(sent_tx.clone()));
                match tokio::time::timeout(EXECUTOR_CONNECT_TIMEOUT, connect).await {
                    Ok(Ok(e)) => {
                        tracing::warn!(target: "guardian::executor", network = %n, "executors connected");
                        if let Some(j) = &tx_log {
                            e.set_tx_log(j.clone());
                        }
                        unavailable.remove(n);
                        for r in e.readiness().await {
                            guard_probe.executor_able(&r.executor, n, r.problem.as_deref().map_or(Ok(()), Err));
                        }
                        executors.insert(n.clone(), e);
                    }
                    Ok(Err(e)) => guard_probe.executor_unavailable(n, &e.to_string()),
                    Err(_) => guard_probe.executor_unavailable(n, "connecting got no answer within 10 s"),
                }
            }
            let exec = exec_network.and_then(|n| executors.get(n));
            let late = actions.get(&trip.action).and_then(|a| too_old(&trip, a));
            // Without an executor (an alert-only configuration, an action not in the
            // allow-list, an executor that cannot connect) the guard still decides, and
            // every trip gets a decision.
            let decision = match (late, exec) {
                (Some((age_ms, max_ms)), _) => {
                    guard_probe.stale_trigger(&trip.policy, &trip.action, trip.block, age_ms, max_ms);
                    guard.refuse_late(&trip, age_ms, max_ms)
                }
                (None, Some(exec)) => guard.review(&trip, exec).instrument(span.clone()).await,
                (None, None) => guard.review(&trip, &NoExecutor).instrument(span.clone()).await,
            };
            span.record("decision_id", decision.decision_id);
            let entered = span.enter();
            // The decision (for an approval: the intent) is written before anything is sent.
            if let Some(j) = &journal
                && let Err(e) = j.record_decision(network_name, origin, &trip, pending_tx, &decision, replica)
            {
                return ("guard", Err(e.into()));
            }
            let outcome = match &decision.outcome {
                Outcome::Approved(_) => "approved".to_string(),
                Outcome::AlertOnly => "alert-only: nothing built".to_string(),
                Outcome::AlreadyDone { detail } => format!("already done: {detail}"),
                Outcome::Rejected(r) => format!("rejected: {r}"),
            };
            tracing::warn!(target: "guardian::guard", decision_id = decision.decision_id, policy = %decision.policy, block = decision.block, "decision: {outcome}");
            let decision_id = decision.decision_id;
            let approved = matches!(decision.outcome, Outcome::Approved(_));
            // ops: the trip's alert carries its decision; a refusal's follows it.
            guard_probe.decided(&trip, network_name, &decision, pending_tx);
            drop(entered);
            emit(report.as_ref(), &guard_probe, Report::Decision {
                decision_id,
                policy: decision.policy.clone(),
                action: decision.action.clone(),
                block: decision.block,
                outcome,
                approved,
            })
            .await;
            // An approval passed preflight, which only an executor can do.
            if let (Some(approved), Some(exec)) = (decision.into_approved(), exec) {
                let (approved_action, approved_mode) = (approved.action().to_string(), approved.mode());
                // Replicas: replica k lets the ones before it act first, then looks again.
                let mut stood_down = None;
                if let Some(k) = replica
                    && approved.mode() == crate::policy::model::Mode::Enforce
                {
                    let wait = std::time::Duration::from_millis(stagger.saturating_mul(u64::from(k)));
                    tokio::time::sleep(wait).await;
                    match exec.recheck(&approved).instrument(span.clone()).await {
                        Ok(Some(detail)) => stood_down = Some(detail),
                        Ok(None) => {}
                        Err(e) => tracing::warn!(target: "guardian::executor", decision_id, error = %e, "replica re-check failed; sending"),
                    }
                }
                let result = match stood_down {
                    Some(detail) => {
                        tracing::warn!(target: "guardian::executor", decision_id, replica, "stood down: {detail}");
                        Ok(Execution::StoodDown { detail })
                    }
                    None => until_shutdown(&guard_cancel, exec, exec.execute(approved, urgency).instrument(span.clone())).await,
                };
                if matches!(result, Err(ExecError::ShutDown)) {
                    // ops: left in flight: the journal keeps it, and the next start follows it.
                    return ("guard", Ok(()));
                }
                let done_at = std::time::Instant::now();
                // Every event of this execution is queued by now (the executor try_sends them).
                let mut first_sent = None;
                while let Ok(e) = sent_rx.try_recv() {
                    if let crate::executor::DeliveryEvent::Sent { decision_id: d, at, .. } = e
                        && d == decision_id
                    {
                        first_sent = first_sent.or(Some(at));
                    }
                }
                guard_probe.delivery(
                    first_sent.map(|t| t.saturating_duration_since(tripped_at)),
                    first_sent.filter(|_| matches!(result, Ok(Execution::Landed { .. }))).map(|t| done_at.saturating_duration_since(t)),
                );
                if result.is_err() && first_sent.is_none() {
                    // Nothing was sent: the cooldowns must not hold back the next attempt.
                    guard.not_sent(&approved_action, approved_mode, trip.time_ms);
                }
                let _entered = span.enter();
                if let Err(e) = finish(journal.as_deref(), report.as_ref(), &guard_probe, decision_id, result).await {
                    return ("guard", Err(e));
                }
            }
        }
    });

    // Supervise: the first stage to end decides.
    let _not_watching = NotWatching(probe, networks);
    let mut outcome = Ok(());
    while let Some(joined) = tasks.join_next().await {
        let (stage, result) = match joined {
            Ok(r) => r,
            // A join error (panic or abort) does not say which stage it was.
            Err(e) => ("a", Err(RunError::StagePanicked(e.to_string()))),
        };
        match result {
            Ok(()) if cancel.is_cancelled() => {}
            Ok(()) => {
                if outcome.is_ok() {
                    outcome = Err(RunError::StageStopped(stage));
                }
                cancel.cancel();
            }
            Err(e) => {
                if outcome.is_ok() {
                    outcome = Err(e);
                }
                cancel.cancel();
            }
        }
    }
    outcome
}

/// ops (issue #13): a network's gate: its `max_head_age`, and its quorum when configured.
async fn net_gate(config: &Config, watcher: &Watcher) -> Result<gate::NetGate, RunError> {
    let mut g = gate::NetGate::new(watcher.network().to_string(), watcher.health());
    let Some(net) = config.networks.get(watcher.network()) else {
        return Ok(g);
    };
    g.max_head_age = net
        .watch
        .max_head_age_ms
        .map(std::time::Duration::from_millis);
    g.block_time = net.block_time_ms.map(std::time::Duration::from_millis);
    if let Some(need) = net.watch.quorum {
        let tolerance = net
            .watch
            .quorum_tolerance
            .unwrap_or(crate::source::chain::quorum::DEFAULT_TOLERANCE);
        g.quorum =
            Some(crate::source::chain::quorum::Quorum::connect(watcher, need, tolerance).await?);
    }
    Ok(g)
}

/// ops: runs a delivery; once `cancel` fires, the executor is asked to stop
/// (it ends within [`crate::executor::SHUTDOWN_GRACE`] plus one RPC deadline,
/// whatever the endpoints do; the journal keeps what was sent).
async fn until_shutdown<F>(cancel: &CancellationToken, exec: &Executors, delivery: F) -> F::Output
where
    F: std::future::Future,
{
    tokio::pin!(delivery);
    tokio::select! {
        out = &mut delivery => out,
        () = cancel.cancelled() => {
            exec.shut_down();
            delivery.await
        }
    }
}

/// A trip older than its action's `max_trigger_age` (by the wall clock, from
/// its block's time), unless the action is a pause allowed to act late:
/// `Some((age_ms, max_ms))`. After a restart the engine re-reads the missed
/// blocks in order, so a condition that still holds trips again on a recent
/// block, which is acted on; one that no longer holds (drained, then
/// refilled) does not.
fn too_old(trip: &Trip, action: &crate::config::ActionDef) -> Option<(u64, u64)> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let age = now.saturating_sub(trip.time_ms);
    let max = action.timing.max_trigger_age_ms;
    if age <= max {
        return None;
    }
    if action.kind == crate::config::ActionKind::Pause && action.timing.act_if_late {
        tracing::warn!(target: "guardian::guard", policy = %trip.policy, block = trip.block, age_ms = age, max_ms = max, "the trip is older than max_trigger_age; the pause acts anyway (act_if_late)");
        return None;
    }
    Some((age, max))
}

/// ops: executors whose key could not be loaded cannot act: not ready, alerted.
fn mark_missing_keys(config: &Config, keys: &HashMap<String, Key>, probe: &crate::observe::Probe) {
    for def in config.executors.values() {
        if let Some(k) = def
            .kind
            .key_names()
            .into_iter()
            .find(|k| !keys.contains_key(*k))
        {
            let why = format!("key `{k}` is missing or could not be loaded");
            probe.executor_able(&def.name, def.network.as_deref().unwrap_or(""), Err(&why));
        }
    }
}

/// ops: how often an executor's balance and endpoints are re-checked.
pub const EXECUTOR_RECHECK: std::time::Duration = std::time::Duration::from_secs(30);

/// ops: every [`EXECUTOR_RECHECK`] (and at once), whether each connected
/// executor can act: an endpoint answers, the balance covers the reserve
/// (`low-balance` below twice the reserve), every pause without a getter
/// targets code. Ends on cancellation.
async fn recheck_executors(
    executors: HashMap<String, Executors>,
    actions: std::collections::BTreeMap<String, crate::config::ActionDef>,
    probe: crate::observe::Probe,
    cancel: CancellationToken,
) {
    let mut first = true;
    loop {
        for (net, exec) in &executors {
            for r in exec.readiness().await {
                probe.executor_able(&r.executor, net, r.problem.as_deref().map_or(Ok(()), Err));
                if r.low() {
                    probe.low_balance(&r.executor, net, r.balance_wei.unwrap_or(0), r.reserve_wei);
                }
            }
            if first {
                for (action, why) in exec.unobservable(&actions).await {
                    tracing::error!(target: "guardian::executor", action = %action, "{why}");
                    probe.executor_able(&format!("action {action}"), net, Err(&why));
                }
            }
        }
        first = false;
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(EXECUTOR_RECHECK) => {}
        }
    }
}

/// The chain as the guard sees it for an action with no executor on a
/// connected network: nothing can be read or simulated, so nothing is approved.
struct NoExecutor;

impl crate::guard::ChainView for NoExecutor {
    fn read(
        &self,
        _target: alloy::primitives::Address,
        _data: alloy::primitives::Bytes,
    ) -> impl Future<Output = Result<alloy::primitives::Bytes, String>> + Send {
        std::future::ready(Err(NO_EXECUTOR.to_string()))
    }
    fn preflight(
        &self,
        _executor: &str,
        _call: &crate::guard::Call,
        _effect: &crate::guard::Effect,
    ) -> impl Future<Output = Result<(), String>> + Send {
        std::future::ready(Err(NO_EXECUTOR.to_string()))
    }
}

const NO_EXECUTOR: &str = "the action has no executor on a connected network";

/// Reports and journals how an approved action ended.
async fn finish(
    journal: Option<&Journal>,
    report: Option<&mpsc::Sender<Report>>,
    probe: &crate::observe::Probe,
    decision_id: u64,
    result: Result<Execution, ExecError>,
) -> Result<(), RunError> {
    let item = match &result {
        Ok(execution) => {
            tracing::warn!(target: "guardian::executor", decision_id, "executed: {}", describe_execution(execution));
            Report::Executed {
                decision_id,
                execution: execution.clone(),
            }
        }
        Err(e) => {
            tracing::error!(target: "guardian::executor", decision_id, "execution failed: {e}");
            Report::ExecutionFailed {
                decision_id,
                error: e.to_string(),
            }
        }
    };
    let written = match journal {
        Some(j) => j.finish(decision_id, &result.map_err(|e| e.to_string())),
        None => Ok(()),
    };
    emit(report, probe, item).await;
    written.map_err(RunError::from)
}

/// ops: blocks a restart re-reads on `network` before its resume point: what
/// the policies' longest window needs, at least `warmup_blocks`, at most
/// `max_warmup_blocks`.
fn reread_blocks(config: &Config, network: &str, needs: &[crate::policy::warmup::WarmUp]) -> u64 {
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
fn block_time_ms(config: &Config, network: &str) -> u64 {
    config
        .networks
        .get(network)
        .and_then(|n| n.block_time_ms)
        .unwrap_or(1_000)
}

/// ops: a new incident a policy's cooldown held back: counted, logged and
/// alerted one severity lower than the policy's, with the reason.
fn report_held(
    probe: &crate::observe::Probe,
    set: &PolicySet,
    network: &str,
    held: &crate::policy::eval::Held,
) {
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
    fn new(set: &PolicySet, probe: &crate::observe::Probe) -> Self {
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
    fn update(
        &mut self,
        at: (u64, u64),
        live: bool,
        block_time_ms: u64,
        probe: &crate::observe::Probe,
    ) {
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

/// ops: an execution as a person reads it: what happened, the transaction,
/// fees in gwei.
pub fn describe_execution(execution: &Execution) -> String {
    match execution {
        Execution::Landed {
            tx,
            block,
            replacements,
            fees,
        } => format!(
            "landed in block {block}, transaction {tx} (max fee {}, tip {}, {replacements} replacement{})",
            crate::units::DisplayGwei(fees.max_fee),
            crate::units::DisplayGwei(fees.priority_fee),
            if *replacements == 1 { "" } else { "s" }
        ),
        Execution::DryRun { tx, .. } => {
            format!("dry-run: transaction {tx} signed, not broadcast")
        }
        Execution::Proposed {
            safe_tx_hash,
            outbox_file,
            posted,
        } => format!(
            "proposed: SafeTx {safe_tx_hash} written to {}{}",
            outbox_file.display(),
            if *posted {
                " and posted to the Safe service"
            } else {
                ""
            }
        ),
        Execution::StoodDown { detail } => format!("stood down: {detail}"),
    }
}
