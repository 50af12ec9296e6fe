//! Supervision: every stage runs as a named task; the first to end decides.
//!
//! Invariants:
//! - **Fail loudly.** If any stage ends while the pipeline was not asked to
//!   stop, every other stage is cancelled and [`Supervisor::wait`] returns the
//!   stage's error, or [`RunError::StageStopped`] naming it: a guardian that
//!   stopped watching never looks healthy.
//! - A stage that ends after cancellation is no failure: that is shutdown.
//! - `/readyz` says the networks are watched only while [`Watching`] lives,
//!   however `run` returns.

use std::future::Future;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::RunError;
use crate::observe::Probe;
use crate::source::chain::ChainError;

/// The stages of one run, as named tasks sharing one cancellation token.
pub(super) struct Supervisor {
    tasks: JoinSet<(&'static str, Result<(), RunError>)>,
    cancel: CancellationToken,
}

impl Supervisor {
    pub fn new(cancel: CancellationToken) -> Self {
        Self {
            tasks: JoinSet::new(),
            cancel,
        }
    }

    /// The token every stage stops on.
    pub fn token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Runs `stage` as a task named `name` (the name is what an error says stopped).
    pub fn spawn<F>(&mut self, name: &'static str, stage: F)
    where
        F: Future<Output = Result<(), RunError>> + Send + 'static,
    {
        self.tasks.spawn(async move { (name, stage.await) });
    }

    /// Waits for every stage. The first to end unasked (or with an error)
    /// cancels the others; its error is returned. `Ok` only after cancellation.
    pub async fn wait(mut self) -> Result<(), RunError> {
        let mut outcome = Ok(());
        while let Some(joined) = self.tasks.join_next().await {
            let (stage, result) = match joined {
                Ok(r) => r,
                // A join error (panic or abort) does not say which stage it was.
                Err(e) => ("a", Err(RunError::StagePanicked(e.to_string()))),
            };
            let failure = match result {
                Ok(()) if self.cancel.is_cancelled() => continue,
                // Stopping: a watcher can find the engine's end of its channel
                // already gone. That is the stop, not a failure.
                Err(RunError::Chain(ChainError::ChannelClosed)) if self.cancel.is_cancelled() => {
                    continue;
                }
                Ok(()) => RunError::StageStopped(stage),
                Err(e) => e,
            };
            if outcome.is_ok() {
                outcome = Err(failure);
            }
            self.cancel.cancel();
        }
        outcome
    }
}

/// ops: marks the networks as watched (for `/readyz`) until dropped.
pub(super) struct Watching(Probe, Vec<String>);

impl Watching {
    pub fn new(probe: Probe, networks: Vec<String>) -> Self {
        probe.watching(&networks, true);
        Self(probe, networks)
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.watching(&self.1, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stage_that_ends_unasked_stops_the_others_and_is_named() {
        let cancel = CancellationToken::new();
        let mut s = Supervisor::new(cancel.clone());
        let other = s.token();
        s.spawn("watcher", async move {
            other.cancelled().await;
            Ok(())
        });
        s.spawn("engine", async { Ok(()) });
        let err = s.wait().await.unwrap_err();
        assert!(matches!(err, RunError::StageStopped("engine")), "{err}");
        assert!(cancel.is_cancelled());
    }

    #[tokio::test]
    async fn the_first_error_is_returned_and_a_panic_is_one() {
        let mut s = Supervisor::new(CancellationToken::new());
        s.spawn("guard", async {
            Err(RunError::NotRunnable("first".into()))
        });
        let err = s.wait().await.unwrap_err();
        assert!(
            matches!(err, RunError::NotRunnable(ref m) if m == "first"),
            "{err}"
        );
        let mut s = Supervisor::new(CancellationToken::new());
        s.spawn("engine", async { panic!("boom") });
        assert!(matches!(s.wait().await, Err(RunError::StagePanicked(_))));
    }

    #[tokio::test]
    async fn stages_ending_on_cancellation_is_a_clean_shutdown() {
        let cancel = CancellationToken::new();
        let mut s = Supervisor::new(cancel.clone());
        for name in ["watcher", "engine", "guard"] {
            let token = s.token();
            s.spawn(name, async move {
                token.cancelled().await;
                Ok(())
            });
        }
        cancel.cancel();
        assert!(s.wait().await.is_ok());
    }
}
