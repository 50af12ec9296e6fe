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

use std::collections::HashMap;
use std::io::BufWriter;
use std::path::PathBuf;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::decision::Trip;
use crate::executor::delivery::Urgency;
use crate::executor::{ExecError, Execution, Executors};
use crate::guard::{Guard, Outcome};
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
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            record: None,
            watcher: WatcherOptions::default(),
            channel_capacity: 1024,
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
    for def in config.executors.values() {
        let Some(net) = def.network.as_deref() else {
            return Err(RunError::NotRunnable(format!(
                "executor `{}` names no `network`",
                def.name
            )));
        };
        if !executors.contains_key(net) {
            executors.insert(
                net.to_string(),
                Executors::connect(&config, net, &keys, None).await?,
            );
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

    let (events_tx, mut events_rx) = mpsc::channel::<WatchEvent>(options.channel_capacity);
    let (trips_tx, mut trips_rx) =
        mpsc::channel::<(Trip, Option<Urgency>)>(options.channel_capacity);
    let mut tasks: JoinSet<(&'static str, Result<(), RunError>)> = JoinSet::new();

    for net in &networks {
        let watcher = Watcher::new(&config, net, options.watcher.clone())?;
        let out = events_tx.clone();
        let token = cancel.clone();
        tasks.spawn(async move {
            (
                "watcher",
                watcher.run(out, token).await.map_err(RunError::from),
            )
        });
    }
    drop(events_tx);

    // Engine: samples in, trips out. Stops at once on cancellation.
    let mut engine = Engine::new(policies, config.mode);
    let engine_cancel = cancel.clone();
    let engine_report = report.clone();
    tasks.spawn(async move {
        let mut order = TimeOrder::default();
        // Recent trips, to name those a reorg invalidates (bounded: the watcher
        // remembers a limited reorg depth too).
        let mut recent: std::collections::VecDeque<(String, String, u64)> = std::collections::VecDeque::new();
        let result = loop {
            let event = tokio::select! {
                biased;
                () = engine_cancel.cancelled() => break Ok(()),
                event = events_rx.recv() => event,
            };
            let Some(event) = event else {
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
                _ => (None, None),
            };
            if let WatchEvent::Reorg(reorg) = &event {
                for (policy, action, block) in recent.iter().filter(|(_, _, b)| reorg.replaces(*b)) {
                    tracing::error!(target: "guardian::engine", policy = %policy, block, "a trip was decided on a block that a reorg replaced");
                    if let Some(r) = &engine_report {
                        let _ = r
                            .send(Report::ReorgedOut { policy: policy.clone(), action: action.clone(), block: *block })
                            .await;
                    }
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
            if let Some((_, rec)) = &mut recorder {
                let _ = rec.flush();
            }
            let mut gone = false;
            for trip in trips {
                tracing::warn!(target: "guardian::engine", policy = %trip.policy, block = trip.block, action = %trip.action, "policy tripped: {}", trip.summary);
                if recent.len() == 1024 {
                    recent.pop_front();
                }
                recent.push_back((trip.policy.clone(), trip.action.clone(), trip.block));
                if let Some(r) = &engine_report {
                    let _ = r.send(Report::Trip { trip: trip.clone(), pending: pending.clone() }).await;
                }
                if trips_tx.send((trip, urgency)).await.is_err() {
                    gone = true;
                    break;
                }
            }
            if gone {
                break Err(RunError::StageStopped("guard"));
            }
        };
        ("engine", result)
    });

    // Guard and executor: one decision at a time; the action in flight is finished even on shutdown.
    let mut guard = Guard::new(&config);
    let actions = config.actions.clone();
    let executor_networks: HashMap<String, String> = config
        .executors
        .values()
        .filter_map(|d| d.network.clone().map(|n| (d.name.clone(), n)))
        .collect();
    let guard_cancel = cancel.clone();
    tasks.spawn(async move {
        loop {
            let next = tokio::select! {
                biased;
                () = guard_cancel.cancelled() => return ("guard", Ok(())),
                next = trips_rx.recv() => next,
            };
            let Some((trip, urgency)) = next else {
                if guard_cancel.is_cancelled() {
                    return ("guard", Ok(()));
                }
                return ("guard", Err(RunError::StageStopped("engine")));
            };
            let network = actions
                .get(&trip.action)
                .and_then(|a| a.executor.as_ref())
                .and_then(|e| executor_networks.get(e));
            let Some(exec) = network.and_then(|n| executors.get(n)) else {
                tracing::error!(target: "guardian::guard", policy = %trip.policy, action = %trip.action, "the action has no executor on a connected network: nothing can be sent");
                if let Some(r) = &report {
                    let _ = r
                        .send(Report::Decision {
                            decision_id: 0,
                            policy: trip.policy.clone(),
                            action: trip.action.clone(),
                            block: trip.block,
                            outcome: "rejected: the action has no executor on a connected network".into(),
                            approved: false,
                        })
                        .await;
                }
                continue;
            };
            let decision = guard.review(&trip, exec).await;
            let outcome = match &decision.outcome {
                Outcome::Approved(_) => "approved".to_string(),
                Outcome::AlertOnly => "alert-only: nothing built".to_string(),
                Outcome::AlreadyDone { detail } => format!("already done: {detail}"),
                Outcome::Rejected(r) => format!("rejected: {r}"),
            };
            tracing::warn!(target: "guardian::guard", decision_id = decision.decision_id, policy = %decision.policy, block = decision.block, "decision: {outcome}");
            let decision_id = decision.decision_id;
            let approved = matches!(decision.outcome, Outcome::Approved(_));
            if let Some(r) = &report {
                let _ = r
                    .send(Report::Decision {
                        decision_id,
                        policy: decision.policy.clone(),
                        action: decision.action.clone(),
                        block: decision.block,
                        outcome,
                        approved,
                    })
                    .await;
            }
            if let Some(approved) = decision.into_approved() {
                let result = exec.execute(approved, urgency).await;
                let report_item = match result {
                    Ok(execution) => {
                        tracing::warn!(target: "guardian::executor", decision_id, "executed: {execution:?}");
                        Report::Executed { decision_id, execution }
                    }
                    Err(e) => {
                        tracing::error!(target: "guardian::executor", decision_id, "execution failed: {e}");
                        Report::ExecutionFailed { decision_id, error: e.to_string() }
                    }
                };
                if let Some(r) = &report {
                    let _ = r.send(report_item).await;
                }
            }
        }
    });

    // Supervise: the first stage to end decides.
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
