//! Running guardian as a service: the metrics server, the alert channels, and
//! policy reloads (SIGHUP, and optionally a watch on the policy files).
//!
//! A reload validates first: the new policies are compiled against the running
//! configuration, with every problem located. On any error the running
//! policies stay, every error is logged and printed, and a `reload-failed`
//! alert is raised. Only the policies reload; a changed `guardian.toml`
//! (networks, actions, executors, channels) needs a restart.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{Probe, Telemetry, server};
use crate::alerts::{self, AlertsError, AlertsTask};
use crate::config::Config;
use crate::config::ops::DEFAULT_STALE_AFTER_MS;
use crate::policy::{PolicySet, load_policies};

/// Loads every key the executors use. A key that cannot be loaded does not stop
/// guardian (README, "Failure policy"): it is returned as an error message, to
/// be printed and alerted, and the executors that need it stay unavailable.
pub fn load_keys(
    config: &Config,
) -> (
    std::collections::HashMap<String, crate::keys::Key>,
    Vec<String>,
) {
    let mut keys = std::collections::HashMap::new();
    let mut errors = Vec::new();
    for ex in config.executors.values() {
        for name in ex.kind.key_names() {
            if keys.contains_key(name) || errors.iter().any(|(n, _)| n == name) {
                continue;
            }
            if let Some(def) = config.keys.get(name) {
                match crate::keys::load(def) {
                    Ok(k) => {
                        keys.insert(name.to_string(), k);
                    }
                    Err(e) => errors.push((name.to_string(), e.to_string())),
                }
            }
        }
    }
    (keys, errors.into_iter().map(|(_, e)| e).collect())
}

/// Why the service parts cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Alerts(#[from] AlertsError),
    #[error(
        "[observe] listen {addr}: cannot listen: {source} (is another process using the port?)"
    )]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The metrics server and alert channels of one `guardian run`.
#[derive(Debug)]
pub struct Service {
    pub probe: Probe,
    /// The address `/metrics`, `/healthz` and `/readyz` are served on, if any.
    pub listening: Option<SocketAddr>,
    alerts: Option<AlertsTask>,
    server: Option<(tokio::task::JoinHandle<()>, CancellationToken)>,
}

/// Starts what `[observe]` and `[notify]` ask for, reading channel secrets with `env`.
pub async fn start(
    config: &Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Service, ServiceError> {
    let stale_after = Duration::from_millis(
        config
            .observe
            .as_ref()
            .map_or(DEFAULT_STALE_AFTER_MS, |o| o.stale_after_ms),
    );
    let telemetry = Arc::new(Telemetry::new(stale_after));
    let (alerts, alerts_task) = if config.notify.is_empty() {
        (None, None)
    } else {
        let endpoints = alerts::endpoints(config.notify.values().cloned(), env)?;
        let (a, t) = alerts::spawn(endpoints, telemetry.clone())?;
        (Some(a), Some(t))
    };
    let probe = Probe::new(telemetry.clone(), alerts);
    let (listening, server) = match &config.observe {
        Some(o) => {
            let stop = CancellationToken::new();
            let (addr, handle) = server::serve(o.listen, telemetry, stop.clone())
                .await
                .map_err(|source| ServiceError::Listen {
                    addr: o.listen,
                    source,
                })?;
            (Some(addr), Some((handle, stop)))
        }
        None => (None, None),
    };
    Ok(Service {
        probe,
        listening,
        alerts: alerts_task,
        server,
    })
}

impl Service {
    /// Stops the server and delivers the alerts still queued (at most `grace`).
    pub async fn stop(self, grace: Duration) {
        if let Some((handle, stop)) = self.server {
            stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(2), handle).await;
        }
        if let Some(alerts) = self.alerts {
            alerts.finish(grace).await;
        }
    }
}

/// Watches for reload requests (SIGHUP; file changes when `watch_files`) until
/// `cancel`, validates the policies at `paths` and sends the good ones to `out`.
pub fn spawn_reloader(
    config: Config,
    paths: Vec<PathBuf>,
    probe: Probe,
    out: watch::Sender<PolicySet>,
    watch_files: bool,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (changed_tx, mut changed) = mpsc::channel::<()>(1);
        // Kept alive for as long as the reloader runs.
        let _watcher = if watch_files {
            match watch_paths(&paths, changed_tx.clone()) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::error!(target: "guardian::reload", error = %e, "cannot watch the policy files; reload with SIGHUP");
                    None
                }
            }
        } else {
            None
        };
        #[cfg(unix)]
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(target: "guardian::reload", error = %e, "cannot listen for SIGHUP");
                None
            }
        };
        loop {
            #[cfg(unix)]
            let hangup = async {
                match hup.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let hangup = std::future::pending::<Option<()>>();
            let why = tokio::select! {
                () = cancel.cancelled() => return,
                _ = hangup => "SIGHUP",
                Some(()) = changed.recv() => {
                    // Editors write in several steps: let them finish, then reload once.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    while changed.try_recv().is_ok() {}
                    "a policy file changed"
                }
            };
            reload(&config, &paths, &probe, &out, why);
        }
    })
}

/// Validates the policies at `paths`; sends them on if every one compiles.
pub fn reload(
    config: &Config,
    paths: &[PathBuf],
    probe: &Probe,
    out: &watch::Sender<PolicySet>,
    why: &str,
) {
    tracing::info!(target: "guardian::reload", reason = why, "reloading policies");
    // A reload that would leave a policy blind (its metric never read) is refused like a broken one.
    let loaded = load_policies(paths, config).and_then(|set| {
        crate::policy::warmup::blind_spots(&set, config)?;
        Ok(set)
    });
    match loaded {
        Ok(set) => {
            crate::say!(
                "reload ({why}): {} policies validated; switching to them",
                set.policies.len()
            );
            // The engine applies them (and counts the reload) on its next turn.
            out.send_replace(set);
        }
        Err(diagnostics) => {
            let running = out.borrow().policies.len();
            let errors: Vec<String> = diagnostics.0.iter().map(ToString::to_string).collect();
            for e in &errors {
                tracing::error!(target: "guardian::reload", error = %e, "policy reload refused");
            }
            crate::say!(
                "reload ({why}) refused; the {running} running policies stay:\n{diagnostics}\n{} problem(s) found",
                diagnostics.len()
            );
            probe.reload(running, &errors);
        }
    }
}

/// Watches the folders holding `paths`; any change under a policy path signals `changed`.
fn watch_paths(
    paths: &[PathBuf],
    changed: mpsc::Sender<()>,
) -> notify::Result<notify::RecommendedWatcher> {
    use notify::{EventKind, RecursiveMode, Watcher};
    let targets: Vec<PathBuf> = paths
        .iter()
        .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
        .collect();
    let relevant = targets.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(event.kind, EventKind::Access(_)) {
            return;
        }
        let touches = event.paths.iter().any(|p| {
            relevant
                .iter()
                .any(|t| p == t || (t.is_dir() && p.starts_with(t)))
        });
        if touches {
            // A full channel means a reload is already due.
            let _ = changed.try_send(());
        }
    })?;
    for t in &targets {
        // Editors replace files by renaming: watch the folder, not the file.
        let (dir, mode) = if t.is_dir() {
            (t.as_path(), RecursiveMode::Recursive)
        } else {
            (
                t.parent().unwrap_or(Path::new(".")),
                RecursiveMode::NonRecursive,
            )
        };
        watcher.watch(dir, mode)?;
    }
    Ok(watcher)
}
