//! `guardian run` as a service (the real binary) on the demo of
//! [`super::Demo`]: started with the demo's keys in its environment, its
//! output in a log file under the test's folder (shown when a test fails),
//! stopped with SIGTERM; and what its journal says.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use guardian::journal::{HistoryEntry, HistoryFilter, Journal};

use super::Demo;

/// Generous: the machine running the tests may be busy.
pub const WAIT: Duration = Duration::from_secs(90);

/// A `guardian run` process whose output goes to a file.
pub struct Guardian {
    pub child: Child,
    pub log: PathBuf,
}

impl Guardian {
    /// `guardian run` on `dir`'s guardian.toml and policy.toml, with `args`
    /// and `env`; its output goes to the first free `guardian-<n>.log` in `dir`.
    pub fn start(demo: &Demo, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Guardian {
        let log = (1..)
            .map(|n| dir.join(format!("guardian-{n}.log")))
            .find(|p| !p.exists())
            .unwrap();
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_guardian"))
            .arg("run")
            .arg("--config")
            .arg(dir.join("guardian.toml"))
            .arg("--policies")
            .arg(dir.join("policy.toml"))
            .args(args)
            .envs(demo.key_env())
            .env("GUARDIAN_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("the guardian binary starts");
        Guardian { child, log }
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether its output so far contains `needle`.
    pub fn said(&self, needle: &str) -> bool {
        self.output().contains(needle)
    }

    /// Fails the test (with the output) unless its output so far contains `needle`.
    pub fn assert_said(&self, needle: &str) {
        let log = self.output();
        assert!(
            log.contains(needle),
            "guardian did not say {needle:?}:\n{log}"
        );
    }

    /// Waits (see [`until`]) for its output to contain `needle`.
    pub async fn until_said(&mut self, what: &str, needle: &str) {
        let log = self.log.clone();
        until(what, &mut [self], || {
            std::fs::read_to_string(&log).is_ok_and(|t| t.contains(needle))
        })
        .await;
    }

    /// Waits for `journal` to say block `block` (or a later one) was processed.
    pub async fn until_processed(&mut self, what: &str, journal: &Path, block: u64) {
        until(what, &mut [self], || {
            processed(journal).is_some_and(|b| b >= block)
        })
        .await;
    }

    /// Waits for the first decision in `journal` to have left `executing`.
    pub async fn until_first_done(&mut self, what: &str, journal: &Path) {
        until(what, &mut [self], || {
            history(journal)
                .first()
                .is_some_and(|e| e.status != "executing")
        })
        .await;
    }

    /// Fails the test (with the process's output) unless it is still running.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("guardian exited ({status}):\n{}", self.output());
        }
    }

    /// Polls `check` every `every` until it holds; fails the test (with the
    /// output) if guardian exits or [`WAIT`] passes first.
    pub async fn until_async(
        &mut self,
        what: &str,
        every: Duration,
        mut check: impl AsyncFnMut() -> bool,
    ) {
        let deadline = Instant::now() + WAIT;
        while !check().await {
            self.assert_running();
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}:\n{}", self.output());
            }
            tokio::time::sleep(every).await;
        }
    }

    /// `kill -9`: the process ends at once, whatever it was doing.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then the exit code, within the wait bound.
    pub fn stop(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "guardian did not stop:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Guardian {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` every 100 ms until it holds; fails with `what` and the
/// guardians' output when one exits or the wait bound passes.
pub async fn until(what: &str, guardians: &mut [&mut Guardian], mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        for g in guardians.iter_mut() {
            g.assert_running();
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = guardians.iter().map(|g| g.output()).collect();
            panic!(
                "timed out waiting for {what}; output:\n{}",
                logs.join("\n-----\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// [`until`] over every guardian in `guardians`.
pub async fn until_each(what: &str, guardians: &mut [Guardian], check: impl FnMut() -> bool) {
    let mut all: Vec<&mut Guardian> = guardians.iter_mut().collect();
    until(what, &mut all, check).await;
}

/// Every decision the journal holds (none while it cannot be read).
pub fn history(journal: &Path) -> Vec<HistoryEntry> {
    Journal::open_read_only(journal)
        .and_then(|j| j.history(&HistoryFilter::default()))
        .unwrap_or_default()
}

/// The last block the journal says was processed on network `local`.
pub fn processed(journal: &Path) -> Option<u64> {
    processed_on(journal, "local")
}

pub fn processed_on(journal: &Path, network: &str) -> Option<u64> {
    Journal::open_read_only(journal)
        .ok()?
        .processed()
        .ok()?
        .into_iter()
        .find(|(n, _)| n == network)?
        .1
}
