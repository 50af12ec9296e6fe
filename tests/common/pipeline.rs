//! `guardian::pipeline::run` in a task, as the in-process tests drive it: its
//! reports on a channel, a clean stop, and waits on what it records.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use guardian::config::Config;
use guardian::decision::Trip;
use guardian::executor::Execution;
use guardian::keys::Key;
use guardian::pipeline::{self, PendingTx, Report, RunError, RunOptions};
use guardian::policy::PolicySet;
use guardian::source::chain::WatcherOptions;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The tests' options: HTTP heads polled every 50 ms, the samples recorded to `record`.
pub fn polling(record: Option<PathBuf>) -> RunOptions {
    RunOptions {
        record,
        watcher: WatcherOptions {
            poll_interval: Duration::from_millis(50),
            ..WatcherOptions::default()
        },
        channel_capacity: 256,
        ..RunOptions::default()
    }
}

/// A pipeline running in the background.
pub struct Piped {
    pub reports: mpsc::Receiver<Report>,
    pub cancel: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), RunError>>,
}

impl Piped {
    /// Starts `pipeline::run`; its reports go to a channel of 1024.
    pub fn start(
        config: Config,
        policies: PolicySet,
        keys: HashMap<String, Key>,
        options: RunOptions,
    ) -> Piped {
        let pipeline::Spawned {
            reports,
            cancel,
            task,
        } = pipeline::spawn(config, policies, keys, options, 1024);
        Piped {
            reports,
            cancel,
            task,
        }
    }

    /// The next report before `deadline`; fails with `what` otherwise, or with
    /// the pipeline's result if it stopped.
    pub async fn next(&mut self, deadline: Instant, what: &str) -> Report {
        match tokio::time::timeout_at(deadline, self.reports.recv()).await {
            Ok(Some(report)) => report,
            Ok(None) => panic!("the pipeline stopped: {:?}", (&mut self.task).await),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }

    /// Reports up to the execution of an approved action (within a minute),
    /// handing each trip to `on_trip`; fails on a refusal, a failed execution
    /// or a reorg.
    pub async fn until_executed(
        &mut self,
        mut on_trip: impl FnMut(&Trip, Option<&PendingTx>),
    ) -> Execution {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.next(deadline, "the action to be executed").await {
                Report::Trip { trip, pending } => on_trip(&trip, pending.as_ref()),
                Report::ReorgedOut { .. } => panic!("no reorg here"),
                Report::Decision {
                    approved, outcome, ..
                } => assert!(approved, "the guard refused: {outcome}"),
                Report::Executed { execution, .. } => return execution,
                Report::ExecutionFailed { error, .. } => panic!("execution failed: {error}"),
            }
        }
    }

    /// Cancels it; it must stop cleanly within 30 s.
    pub async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the pipeline stops within its bound")
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

/// The pipeline guarding the demo's bridge `b` with its bot key, the
/// configuration `config_text` and the policies `policy`, recording to
/// `record`; returned once a recorded line contains `read` (the watcher read
/// the bridge).
pub async fn guarding_bridge(
    b: &guardian::demo::Bridge,
    config_text: &str,
    policy: &str,
    record: &Path,
    read: &str,
) -> Piped {
    let config = super::load_config("guardian", config_text);
    let policies = guardian::policy::compile_str("policy.toml", policy, &config)
        .unwrap_or_else(|e| panic!("{e}"));
    let keys = HashMap::from([("bot".to_string(), Key::local("bot", b.bot.clone()))]);
    let run = Piped::start(config, policies, keys, polling(Some(record.to_path_buf())));
    until_recorded(record, "the watcher to read the bridge", |l| {
        l.contains(read)
    })
    .await;
    run
}

/// Waits (30 s at most) for a line of the recording at `record` to match `line`.
pub async fn until_recorded(record: &Path, what: &str, line: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(record)
        .unwrap_or_default()
        .lines()
        .any(&line)
    {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
