//! `guardian run`: the live pipeline, wired and supervised.
//!
//! ```text
//!  watch.rs            engine.rs                         act.rs
//!  one task per ──WatchEvent──▶ samples ──(Trip, urgency)──▶ guard, then executor
//!  network        bounded mpsc  → trips   bounded mpsc       (decided one at a time,
//!                                                            delivered side by side)
//!                                 │ gate.rs: head age, quorum
//!  resume.rs: where the journal says the last run stopped (read once, before any stage starts)
//!  executors.rs: the executors, connected at start and again when a trip needs them
//!  supervise.rs: the stages as named tasks; the first to end decides
//! ```
//!
//! [`run`] reads as its stages: it connects the executors, reads the journal,
//! starts the watchers, the engine and the guard-and-executor stage, and
//! supervises them. Each stage is a type or a function in its own file and
//! keeps its own invariants (see each file):
//! - **No silent loss** ([`engine`]): stages are joined by bounded channels; a
//!   full channel makes the sender wait (backpressure), it never drops.
//! - **Same samples, same trips** ([`engine`]): the engine sees exactly the
//!   samples the recorder writes, so a recorded run replays to the same trips.
//! - **Fail loudly** ([`supervise`]): if any stage ends while the pipeline was
//!   not asked to stop, every other stage is cancelled and [`run`] returns the
//!   error: a guardian that stopped watching never looks healthy.
//! - **Shutdown finishes to a safe state** ([`act`]): cancellation stops the
//!   watchers and the engine at once; the executors finish the actions in
//!   flight (their own deadlines bound how long) before the guard stage returns.
//! - Only the guard makes an [`crate::guard::Approved`]; the executor accepts
//!   nothing else ([`act`]).
//! - **Restart-safe with a journal** ([`resume`], [`act`]): the watchers resume
//!   after the last processed block, trips already decided are not decided
//!   again, an action a previous run left in flight is followed to its end
//!   before any new trip is decided, and every decision and transaction is
//!   written before it is acted on.
//! - **Observing never holds anything up.** Every [`Report`] also goes to the
//!   [`crate::observe::Probe`] (metrics: atomics; alerts: `try_send` into
//!   bounded queues, drops counted and logged). Policy reloads arrive already
//!   validated on a `watch` channel and replace the engine between samples.
//! - **Failure policy** (README, [`executors`]): an executor whose node cannot
//!   be reached, or whose key is missing, is alerted and retried per trip;
//!   watching goes on.

mod act;
mod engine;
mod executors;
mod gate;
mod resume;
mod supervise;
mod watch;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::decision::Trip;
use crate::executor::ExecError;
use crate::executor::delivery::Urgency;
use crate::guard::Guard;
use crate::journal::{JournalError, TripOrigin};
use crate::keys::Key;
use crate::observe::Probe;
use crate::policy::{Engine, PolicySet};
use crate::source::chain::{ChainError, WatcherOptions};

pub use crate::pipeline_report::{PendingTx, Report, describe_execution};
pub use executors::EXECUTOR_RECHECK;

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Record every sample to this trace file.
    pub record: Option<PathBuf>,
    pub watcher: WatcherOptions,
    /// Capacity of each channel between stages.
    pub channel_capacity: usize,
    /// Metrics, readiness and alerts (see [`crate::observe`]); the default does nothing.
    pub probe: Probe,
    /// New policy sets to run (validated by the sender); the engine swaps to the latest.
    pub reload: Option<tokio::sync::watch::Receiver<PolicySet>>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            record: None,
            watcher: WatcherOptions::default(),
            channel_capacity: 1024,
            probe: Probe::default(),
            reload: None,
        }
    }
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

/// What the engine hands the guard stage.
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

/// Where the stages say what happened: the probe (metrics, alerts) and the
/// caller of [`run`], if it listens.
#[derive(Clone)]
struct Reports {
    probe: Probe,
    caller: Option<mpsc::Sender<Report>>,
}

impl Reports {
    fn new(probe: Probe, caller: Option<mpsc::Sender<Report>>) -> Self {
        Self { probe, caller }
    }

    /// ops: sends a report to the probe and to the caller.
    async fn emit(&self, item: Report) {
        self.probe.report(&item);
        if let Some(r) = &self.caller {
            let _ = r.send(item).await;
        }
    }
}

/// A pipeline running in a task of its own: its reports, the token that
/// stops it, and the task (its result says why it ended).
#[derive(Debug)]
pub struct Spawned {
    pub reports: mpsc::Receiver<Report>,
    pub cancel: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), RunError>>,
}

/// Starts [`run`] in a task, its reports on a channel of `report_capacity`.
pub fn spawn(
    config: Config,
    policies: PolicySet,
    keys: HashMap<String, Key>,
    options: RunOptions,
    report_capacity: usize,
) -> Spawned {
    let (report_tx, reports) = mpsc::channel(report_capacity);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(run(
        config,
        policies,
        keys,
        options,
        Some(report_tx),
        cancel.clone(),
    ));
    Spawned {
        reports,
        cancel,
        task,
    }
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
    let networks = watched_networks(&config)?;
    let probe = options.probe.clone();
    // Connect every network some executor sends to, before watching anything.
    let (sent_tx, sent_rx) = mpsc::channel(256);
    let mut executors = executors::ExecutorPool::connect(&config, keys, sent_tx, &probe).await?;
    // The journal: where the last run stopped, and what it left in flight.
    let mut guard = Guard::new(&config);
    let resume = resume::Resume::load(
        &config,
        &networks,
        &options,
        &policies,
        &mut guard,
        &mut executors,
    )
    .await?;
    let recorder = engine::Recording::open(&config, options.record.as_ref())?;
    probe.policies(&policies);
    let _watching = supervise::Watching::new(probe.clone(), networks.clone());
    let mut stages = supervise::Supervisor::new(cancel.clone());
    let (events, gate) = watch::start(
        &config,
        &networks,
        &options,
        &resume.replay_from,
        &mut stages,
    )
    .await?;
    if config.mode == crate::policy::model::Mode::Enforce {
        // ops: ready means able to act: keys, balances and endpoints of enforce executors.
        executors.watch_readiness(&config, &probe, &mut stages);
    }
    let reports = Reports::new(probe, report);
    let (trips_tx, trips_rx) = mpsc::channel(options.channel_capacity);
    let engine = engine::EngineStage {
        engine: Engine::new(policies, config.mode),
        mode: config.mode,
        reload: options.reload,
        events,
        to_guard: trips_tx,
        recorder,
        networks: engine::Net::all(&config, &networks, resume.decided),
        gate,
        journaled: resume.journal.is_some(),
        reports: reports.clone(),
    };
    stages.spawn("engine", engine.run(cancel.clone()));
    let act = act::ActStage {
        guard,
        executors,
        actions: config.actions.clone(),
        trips: trips_rx,
        sent: sent_rx,
        journal: resume.journal,
        unfinished: resume.unfinished,
        networks,
        replica: act::Replica::of(&config),
        reports,
        in_flight: act::InFlight::default(),
    };
    stages.spawn("guard", act.run(cancel));
    stages.wait().await
}

/// The networks some metric is read from; at least one.
fn watched_networks(config: &Config) -> Result<Vec<String>, RunError> {
    let read_from: HashSet<&str> = config
        .metrics
        .iter()
        .filter_map(|m| m.network.as_deref())
        .collect();
    let networks: Vec<String> = (config.networks.keys())
        .filter(|n| read_from.contains(n.as_str()))
        .cloned()
        .collect();
    if networks.is_empty() {
        return Err(RunError::NotRunnable(
            "no metric reads from a network (give metrics a `network` and a `source`)".into(),
        ));
    }
    Ok(networks)
}
