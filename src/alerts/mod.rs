//! Alerts: what guardian tells people, and getting it to them without ever
//! holding up the pipeline.
//!
//! ```text
//!  pipeline / watcher (Probe) ──Alerts::raise (try_send)──▶ router ──try_send──▶ one worker per channel ──POST──▶ webhook | Slack | Discord | PagerDuty
//!                              bounded queue                 routes, dedupe       bounded queue, retries with backoff
//! ```
//!
//! Invariants:
//! - **Never blocks the pipeline.** [`Alerts::raise`] only `try_send`s; a full
//!   queue drops the alert, counts it (`guardian_alerts_dropped_total`) and logs
//!   an error — never silently. A failing channel cannot delay a pause.
//! - **Routing.** A policy's alerts (trip, rejected decision, execution result)
//!   go to the channels its `notify` list names (every channel without one);
//!   operational alerts (stale data, failing reads, executor trouble, policy
//!   reloads) go to every channel with `operational = true` (the default).
//! - **Dedupe.** Per channel, an alert whose dedupe key was sent within the
//!   channel's `cooldown` is suppressed (counted in `guardian_alerts_suppressed_total`).
//! - **Secrets.** URLs, HMAC secrets and routing keys are resolved from the
//!   environment at start and never logged; delivery errors are stripped of URLs.

pub mod delivery;
pub mod payload;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{NotifyDef, NotifyKind, UrlSource};
use crate::policy::PolicySet;
use crate::policy::model::Severity;
use crate::telemetry::Telemetry;
use delivery::{Dedupe, Endpoint};

crate::levels::named_enum! {
    /// What an alert is about.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum AlertKind {
        /// A policy tripped.
        Trip = "trip",
        /// The guard rejected a trip's action (nothing was sent).
        Rejected = "rejected",
        /// An approved action finished (landed, dry-run signed, or proposed).
        Executed = "executed",
        /// An approved action failed; guardian keeps watching.
        ExecutionFailed = "execution-failed",
        /// A trip was decided on a block a reorg replaced.
        ReorgedOut = "reorged-out",
        /// A policy's condition held again inside its cooldown: no trip (a new incident held back).
        Held = "held",
        /// No new head for longer than `[observe] stale_after`: guardian is blind on that network.
        DataStale = "data-stale",
        /// A metric could not be read at a block (it has no sample there, so no policy trips on it).
        ReadFailed = "read-failed",
        /// Reads of a whole block failed on every endpoint.
        RpcFailing = "rpc-failing",
        /// An executor's network cannot be reached, or its key is missing: approved actions cannot be sent.
        ExecutorUnavailable = "executor-unavailable",
        /// A signing key could not be loaded at start.
        KeyUnavailable = "key-unavailable",
        /// An executor's key balance is approaching its reserve (below twice the reserve).
        LowBalance = "low-balance",
        /// A trip was older than its action's `max_trigger_age`: journaled, not acted on.
        StaleTrigger = "stale-trigger",
        /// A policy reload was refused; the running policies stay.
        ReloadFailed = "reload-failed",
        /// New policies are running.
        Reloaded = "reloaded",
        /// The pipeline stopped on an error: guardian is no longer watching.
        Stopped = "stopped",
        /// Pending transactions were dropped unscreened (the screening queue overflowed).
        PendingDropped = "pending-dropped",
        /// The head subscription went silent while the chain moved: polling took over, it is re-established.
        HeadStalled = "head-stalled",
        /// Endpoints answered different values at the same block hash: the action waits for agreement.
        EndpointsDisagree = "endpoints-disagree",
        /// A trip's block was older than `max_head_age`: no action was taken on it.
        HeadTooOld = "head-too-old",
    }
}

impl AlertKind {
    /// Whether the alert is about a policy (routed by its `notify` list) rather than operations.
    pub fn is_policy_alert(self) -> bool {
        matches!(
            self,
            AlertKind::Trip
                | AlertKind::Rejected
                | AlertKind::Executed
                | AlertKind::ExecutionFailed
                | AlertKind::ReorgedOut
                | AlertKind::EndpointsDisagree
                | AlertKind::HeadTooOld
                | AlertKind::Held
        )
    }
}

/// One alert, as the generic webhook receives it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub kind: AlertKind,
    pub severity: Severity,
    pub policy: Option<String>,
    pub network: Option<String>,
    pub block: Option<u64>,
    pub decision_id: Option<u64>,
    /// The transaction (or SafeTx) hash of an executed action.
    pub tx: Option<String>,
    /// One line a person can read.
    pub title: String,
    /// Evidence, errors, transaction hashes.
    pub details: serde_json::Value,
    /// Alerts with the same key are one condition: sent once per channel cooldown.
    pub dedupe_key: String,
    /// Unix milliseconds when raised.
    pub time_ms: u64,
}

impl Alert {
    /// A new alert raised now.
    pub fn new(
        kind: AlertKind,
        severity: Severity,
        title: impl Into<String>,
        dedupe_key: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            severity,
            policy: None,
            network: None,
            block: None,
            decision_id: None,
            tx: None,
            title: title.into(),
            details: serde_json::Value::Null,
            dedupe_key: dedupe_key.into(),
            time_ms: now_ms(),
        }
    }

    /// The same alert, about `network`.
    pub fn on_network(mut self, network: &str) -> Self {
        self.network = Some(network.to_string());
        self
    }

    /// The same alert, about `block`.
    pub fn at_block(mut self, block: u64) -> Self {
        self.block = Some(block);
        self
    }

    /// The same alert, about `policy`.
    pub fn for_policy(mut self, policy: &str) -> Self {
        self.policy = Some(policy.to_string());
        self
    }

    /// The same alert, with `details` as its evidence.
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    /// Whether this alert closes its incident: an action that landed (the
    /// pause is on chain) resolves what its trip opened.
    pub fn resolves(&self) -> bool {
        self.kind == AlertKind::Executed && self.details["outcome"] == "landed"
    }

    /// The key grouping alerts into one incident (PagerDuty's `dedup_key`):
    /// every alert of a policy together, else the condition's dedupe key.
    pub fn incident_key(&self) -> String {
        match (&self.policy, self.kind.is_policy_alert()) {
            (Some(p), true) => format!("guardian:policy:{p}"),
            _ => format!("guardian:{}", self.dedupe_key),
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Why the alert channels cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    #[error(
        "notify channel `{channel}`: environment variable {var} is not set (it holds the channel's {what})"
    )]
    MissingEnv {
        channel: String,
        var: String,
        what: &'static str,
    },
    #[error("notify channel `{channel}`: the URL in {var} does not start with http:// or https://")]
    BadUrl { channel: String, var: String },
    #[error("cannot build the HTTP client for alerts: {0}")]
    Client(String),
}

/// Policy → channels, replaced on every policy (re)load.
type Routes = Arc<RwLock<HashMap<String, Option<Vec<String>>>>>;

/// The handle everything raises alerts through. Cheap to clone; never blocks.
#[derive(Debug, Clone)]
pub struct Alerts {
    tx: mpsc::Sender<Alert>,
    routes: Routes,
    telemetry: Arc<Telemetry>,
}

impl Alerts {
    /// Queues `alert` for delivery; if the queue is full it is dropped, counted and logged.
    pub fn raise(&self, alert: Alert) {
        if let Err(e) = self.tx.try_send(alert) {
            let alert = match e {
                mpsc::error::TrySendError::Full(a) | mpsc::error::TrySendError::Closed(a) => a,
            };
            self.telemetry.alert_dropped("queue");
            tracing::error!(target: "guardian::alerts", kind = alert.kind.as_str(), policy = ?alert.policy, title = %alert.title, "alert queue full or closed: alert dropped");
        }
    }

    /// Routes each policy's alerts to the channels it names.
    pub fn set_policies(&self, set: &PolicySet) {
        let routes = set
            .policies
            .iter()
            .map(|p| (p.id.clone(), p.notify.clone()))
            .collect();
        if let Ok(mut r) = self.routes.write() {
            *r = routes;
        }
    }
}

/// The running alert tasks; [`AlertsTask::finish`] flushes what is queued.
#[derive(Debug)]
pub struct AlertsTask {
    handle: tokio::task::JoinHandle<()>,
    close: CancellationToken,
}

impl AlertsTask {
    /// Stops taking alerts, delivers what is queued and in flight, waiting at most `grace`.
    pub async fn finish(self, grace: Duration) {
        self.close.cancel();
        let mut handle = self.handle;
        if tokio::time::timeout(grace, &mut handle).await.is_err() {
            tracing::error!(target: "guardian::alerts", grace_ms = grace.as_millis() as u64, "alerts still undelivered at shutdown were abandoned");
            handle.abort();
        }
    }
}

/// How many alerts wait for the router, and for each channel.
const QUEUE: usize = 1024;
const CHANNEL_QUEUE: usize = 256;
/// Deliveries in flight per channel.
const IN_FLIGHT: usize = 8;

/// Resolves each channel's URL and secrets from the environment.
pub fn endpoints(
    defs: impl IntoIterator<Item = NotifyDef>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(NotifyDef, Endpoint)>, AlertsError> {
    let mut out = Vec::new();
    for def in defs {
        let read = |var: &str, what: &'static str| {
            env(var)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| AlertsError::MissingEnv {
                    channel: def.name.clone(),
                    var: var.to_string(),
                    what,
                })
        };
        let url = match &def.url {
            UrlSource::Inline(u) => u.clone(),
            UrlSource::Env(var) => {
                let u = read(var, "URL")?;
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    return Err(AlertsError::BadUrl {
                        channel: def.name.clone(),
                        var: var.clone(),
                    });
                }
                u
            }
        };
        let secret = match &def.secret_env {
            Some(var) => Some(read(var, "HMAC secret")?.into_bytes()),
            None => None,
        };
        let routing_key = match (&def.routing_key_env, def.kind) {
            (Some(var), NotifyKind::PagerDuty) => Some(read(var, "PagerDuty routing key")?),
            _ => None,
        };
        let endpoint = Endpoint {
            name: def.name.clone(),
            kind: def.kind,
            url,
            secret,
            routing_key,
            retries: def.retries,
            timeout: Duration::from_millis(def.timeout_ms),
        };
        out.push((def, endpoint));
    }
    Ok(out)
}

/// Starts the router and one worker per channel.
pub fn spawn(
    channels: Vec<(NotifyDef, Endpoint)>,
    telemetry: Arc<Telemetry>,
) -> Result<(Alerts, AlertsTask), AlertsError> {
    let client = reqwest::Client::builder()
        .user_agent(concat!("guardian/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| AlertsError::Client(e.without_url().to_string()))?;
    let (tx, rx) = mpsc::channel(QUEUE);
    let routes: Routes = Arc::default();
    let close = CancellationToken::new();
    let alerts = Alerts {
        tx,
        routes: routes.clone(),
        telemetry: telemetry.clone(),
    };
    let handle = tokio::spawn(route(
        rx,
        channels,
        routes,
        client,
        telemetry,
        close.clone(),
    ));
    Ok((alerts, AlertsTask { handle, close }))
}

struct Channel {
    def: NotifyDef,
    dedupe: Dedupe,
    queue: mpsc::Sender<Alert>,
}

async fn route(
    mut rx: mpsc::Receiver<Alert>,
    channels: Vec<(NotifyDef, Endpoint)>,
    routes: Routes,
    client: reqwest::Client,
    telemetry: Arc<Telemetry>,
    close: CancellationToken,
) {
    let mut workers = JoinSet::new();
    let mut out: Vec<Channel> = Vec::new();
    for (def, endpoint) in channels {
        let (queue, jobs) = mpsc::channel(CHANNEL_QUEUE);
        workers.spawn(work(jobs, endpoint, client.clone(), telemetry.clone()));
        out.push(Channel {
            dedupe: Dedupe::new(Duration::from_millis(def.cooldown_ms)),
            def,
            queue,
        });
    }
    loop {
        let alert = tokio::select! {
            biased;
            a = rx.recv() => a,
            () = close.cancelled() => {
                // Take what was raised before the close, then stop.
                rx.close();
                rx.recv().await
            }
        };
        let Some(alert) = alert else { break };
        let targets: Option<Vec<String>> = match (&alert.policy, alert.kind.is_policy_alert()) {
            (Some(p), true) => routes.read().ok().and_then(|r| r.get(p).cloned()).flatten(),
            _ => None,
        };
        let now = Instant::now();
        for ch in &mut out {
            let wanted = if alert.kind.is_policy_alert() {
                targets.as_ref().is_none_or(|t| t.contains(&ch.def.name))
            } else {
                ch.def.operational
            };
            if !wanted {
                continue;
            }
            if !ch.dedupe.admit(&alert.dedupe_key, now) {
                telemetry.alert_suppressed(&ch.def.name);
                tracing::debug!(target: "guardian::alerts", channel = %ch.def.name, key = %alert.dedupe_key, "alert suppressed: sent within the channel's cooldown");
                continue;
            }
            if ch.queue.try_send(alert.clone()).is_err() {
                telemetry.alert_dropped(&ch.def.name);
                tracing::error!(target: "guardian::alerts", channel = %ch.def.name, kind = alert.kind.as_str(), title = %alert.title, "channel queue full: alert dropped");
            }
        }
    }
    // Closing the channel queues lets each worker finish what it holds.
    drop(out);
    while workers.join_next().await.is_some() {}
}

async fn work(
    mut jobs: mpsc::Receiver<Alert>,
    endpoint: Endpoint,
    client: reqwest::Client,
    telemetry: Arc<Telemetry>,
) {
    let endpoint = Arc::new(endpoint);
    let limit = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut deliveries = JoinSet::new();
    // One incident's alerts are delivered one after the other, in the order
    // raised (trip, then refusal or execution): each waits for the previous
    // delivery of its incident. Different incidents go in parallel.
    let mut last_of: HashMap<String, tokio::sync::oneshot::Receiver<()>> = HashMap::new();
    while let Some(alert) = jobs.recv().await {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            break;
        };
        let (endpoint, client, telemetry) = (endpoint.clone(), client.clone(), telemetry.clone());
        let (done, next) = tokio::sync::oneshot::channel();
        if last_of.len() >= QUEUE {
            last_of.clear();
        }
        let before = last_of.insert(alert.incident_key(), next);
        deliveries.spawn(async move {
            if let Some(before) = before {
                // Err: the previous delivery ended (its sender dropped) — go on either way.
                let _ = before.await;
            }
            let _done = done;
            let _permit = permit;
            match endpoint.deliver(&client, &alert, delivery::BACKOFF_BASE).await {
                Ok(attempts) => {
                    telemetry.alert_sent(&endpoint.name);
                    tracing::info!(target: "guardian::alerts", channel = %endpoint.name, kind = alert.kind.as_str(), attempts, "alert delivered");
                }
                Err(e) => {
                    telemetry.notifier_failed(&endpoint.name);
                    tracing::error!(target: "guardian::alerts", channel = %endpoint.name, kind = alert.kind.as_str(), title = %alert.title, error = %e, "alert not delivered");
                }
            }
        });
        // Reap finished deliveries so the set stays small.
        while deliveries.try_join_next().is_some() {}
    }
    while deliveries.join_next().await.is_some() {}
}
