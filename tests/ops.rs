//! Running guardian for real: the `guardian run` binary as a service on anvil,
//! with alerts received by a real local HTTP server (HMAC verified), metrics
//! scraped over HTTP, readiness, and policy reloads by SIGHUP. Plus delivery
//! retries against a real server.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::providers::Provider;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use common::{A_THIRD, Demo, vault_drain};
use guardian::alerts::delivery::{DeliveryError, Endpoint};
use guardian::alerts::payload::{SIGNATURE_HEADER, sign};
use guardian::alerts::{Alert, AlertKind};
use guardian::config::{Config, NotifyDef, NotifyKind, UrlSource};
use guardian::observe::Telemetry;
use guardian::policy::compile_str;
use guardian::policy::model::Severity;
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;

/// One request the local server received: which path, its headers, its body.
type Received = (String, HeaderMap, Bytes);

/// A real HTTP server on a free local port; answers `status(n)` to the n-th request (from 0).
struct Server {
    addr: std::net::SocketAddr,
    rx: mpsc::UnboundedReceiver<Received>,
    hits: Arc<AtomicUsize>,
    /// Everything received so far, for searching.
    seen: Vec<Received>,
}

#[derive(Clone)]
struct ServerState {
    tx: mpsc::UnboundedSender<Received>,
    hits: Arc<AtomicUsize>,
    status: Arc<dyn Fn(usize) -> u16 + Send + Sync>,
}

async fn receive(
    State(s): State<ServerState>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let n = s.hits.fetch_add(1, Ordering::SeqCst);
    let _ = s.tx.send((path, headers, body));
    StatusCode::from_u16((s.status)(n)).unwrap()
}

impl Server {
    async fn start(status: impl Fn(usize) -> u16 + Send + Sync + 'static) -> Server {
        let (tx, rx) = mpsc::unbounded_channel();
        let hits = Arc::new(AtomicUsize::new(0));
        let state = ServerState {
            tx,
            hits: hits.clone(),
            status: Arc::new(status),
        };
        let app = axum::Router::new()
            .route("/{path}", axum::routing::post(receive))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Server {
            addr,
            rx,
            hits,
            seen: Vec::new(),
        }
    }

    /// Waits for an alert of `kind` on `/hook`, which must be critical with a
    /// title saying `says`; the alert.
    async fn critical_alert(&mut self, kind: &str, says: &str) -> serde_json::Value {
        let what = format!("{kind} alert");
        let (_, _, alert) = self.wait_for("hook", &what, |v| v["kind"] == kind).await;
        assert_eq!(alert["severity"], "critical", "{alert}");
        let title = alert["title"].as_str().unwrap_or_default();
        assert!(title.contains(says), "{kind} alert title: {alert}");
        alert
    }

    /// Waits (up to 60 s) for a request on `path` whose JSON body satisfies `pred`.
    async fn wait_for(
        &mut self,
        path: &str,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> (HeaderMap, Bytes, serde_json::Value) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut checked = 0;
        loop {
            while checked < self.seen.len() {
                let (p, h, b) = &self.seen[checked];
                checked += 1;
                let v: serde_json::Value = serde_json::from_slice(b).unwrap();
                if p == path && pred(&v) {
                    return (h.clone(), b.clone(), v);
                }
            }
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(r)) => self.seen.push(r),
                _ => panic!(
                    "no {what} on /{path}; received: {:#?}",
                    self.seen
                        .iter()
                        .map(|(p, _, b)| format!("/{p} {}", String::from_utf8_lossy(b)))
                        .collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Takes in whatever has arrived so far.
    fn drain(&mut self) {
        while let Ok(r) = self.rx.try_recv() {
            self.seen.push(r);
        }
    }
}

fn alert(kind: AlertKind) -> Alert {
    let mut a = Alert::new(kind, Severity::Critical, "test alert", "k");
    a.policy = Some("p".into());
    a
}

/// Delivers a trip alert to the webhook `url` with `retries` (10 ms base backoff).
async fn deliver_trip(url: String, retries: u32) -> Result<u32, DeliveryError> {
    let client = reqwest::Client::new();
    let trip = alert(AlertKind::Trip);
    endpoint(url, retries)
        .deliver(&client, &trip, Duration::from_millis(10))
        .await
}

fn endpoint(url: String, retries: u32) -> Endpoint {
    Endpoint {
        name: "test".into(),
        kind: NotifyKind::Webhook,
        url,
        secret: Some(b"s3cret".to_vec()),
        routing_key: None,
        retries,
        timeout: Duration::from_secs(10),
    }
}

#[tokio::test]
async fn delivery_retries_server_errors_with_backoff_until_taken() {
    // 503, 503, then 200.
    let mut server = Server::start(|n| if n < 2 { 503 } else { 200 }).await;
    let attempts = deliver_trip(format!("http://{}/hook", server.addr), 4)
        .await
        .unwrap();
    assert_eq!(attempts, 3);
    assert_eq!(server.hits.load(Ordering::SeqCst), 3);
    // Every attempt carries the same signed body.
    let (h, b, v) = server.wait_for("hook", "the alert", |_| true).await;
    assert_eq!(v["kind"], "trip");
    assert_eq!(
        h.get(SIGNATURE_HEADER).unwrap().to_str().unwrap(),
        sign(b"s3cret", &b)
    );
}

#[tokio::test]
async fn a_refused_alert_is_not_retried_and_retries_are_bounded() {
    let server = Server::start(|_| 400).await;
    let err = deliver_trip(format!("http://{}/hook", server.addr), 4)
        .await
        .unwrap_err();
    assert!(matches!(err, DeliveryError::Refused(400)), "{err}");
    assert_eq!(server.hits.load(Ordering::SeqCst), 1);

    let down = Server::start(|_| 500).await;
    let err = deliver_trip(format!("http://{}/hook", down.addr), 2)
        .await
        .unwrap_err();
    assert!(
        matches!(err, DeliveryError::Exhausted { attempts: 3, .. }),
        "{err}"
    );
    assert_eq!(down.hits.load(Ordering::SeqCst), 3);

    // Nothing listening: the error never names the URL.
    let err = deliver_trip("http://127.0.0.1:1/secret-token-path".into(), 1)
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("secret-token-path"), "{err}");
    // ... and it says what went wrong.
    assert!(err.to_string().contains("onnect"), "{err}");
}

/// The drain policy, alerting on `hook` and on `dead` (nobody listens there).
fn drain() -> String {
    vault_drain(A_THIRD, "100 blocks", "notify = [\"hook\", \"dead\"]\n")
}

/// The drain policy with two mistakes: severity `urgent` (line 5) and action `pause-modul`.
fn broken() -> String {
    vault_drain(A_THIRD, "100 blocks", "notify = [\"hook\"]\n")
        .replace("\"critical\"", "\"urgent\"")
        .replace("\"pause-module\"", "\"pause-modul\"")
}

const LOW: &str = r#"
[[policy]]
id = "vault-low"
description = "Vault assets below one million"
severity = "warning"
action = "pause-module"
mode = "alert-only"
cooldown = "1000 blocks"
notify = ["hook"]
[policy.when]
kind = "threshold"
metric = "vault.total_assets"
op = "<"
value = 1000000
"#;

/// Writes the demo's guardian.toml for `guardian run` as a service: the
/// vault's assets read, a journal, /metrics on a free port (and `observe`),
/// the webhook `hook` on the local server (and `hook`), then `channels`.
/// A demo for guardian to run as a service: a hook server answering 200, and
/// a temporary directory with `policies.toml` (`policy`, its path) and a
/// `guardian.toml` reading the vault's assets, with a journal, `[observe]`
/// (plus `observe`), the webhook `hook` (plus `hook`) and `channels`.
struct Service {
    demo: Demo,
    hooks: Server,
    dir: tempfile::TempDir,
    policy: std::path::PathBuf,
}

impl Service {
    async fn start(policy: &str, observe: &str, hook: &str, channels: &str) -> Service {
        let demo = Demo::new(&[]).await;
        let hooks = Server::start(|_| 200).await;
        let dir = tempfile::tempdir().unwrap();
        let policy_path = dir.path().join("policies.toml");
        std::fs::write(&policy_path, policy).unwrap();
        let tail = format!(
            "{}\n[journal]\npath = \"guardian.db\"\n\n[observe]\nlisten = \"127.0.0.1:0\"\n{observe}\n[notify.hook]\nkind = \"webhook\"\nurl = \"http://{}/hook\"\n{hook}\n{channels}",
            demo.assets_metric(),
            hooks.addr
        );
        demo.config_with(dir.path(), "", &tail);
        Service {
            demo,
            hooks,
            dir,
            policy: policy_path,
        }
    }
}

async fn get(url: &str) -> (u16, String) {
    match reqwest::get(url).await {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
        Err(_) => (0, String::new()),
    }
}

/// The value of the sample line that starts with `series ` in a Prometheus text exposition.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Scrapes `/metrics` until `series` reaches at least `min` (60 s at most).
async fn wait_metric(base: &str, series: &str, min: f64) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, text) = get(&format!("{base}/metrics")).await;
        if sample(&text, series).is_some_and(|v| v >= min) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series} never reached {min}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits (see [`wait_until`]) for `/readyz` to answer `status` with a body containing `body`.
async fn until_readyz(base: &str, what: &str, status: u16, body: &str) {
    let url = format!("{base}/readyz");
    wait_until(what, || async {
        let (got, text) = get(&url).await;
        got == status && text.contains(body)
    })
    .await;
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

fn verify(headers: &HeaderMap, body: &[u8]) {
    let got = headers
        .get(SIGNATURE_HEADER)
        .expect("the webhook is signed")
        .to_str()
        .unwrap();
    assert_eq!(got, sign(b"hook-secret-42", body), "HMAC signature");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guardian_run_as_a_service_pauses_alerts_exports_metrics_and_reloads() {
    let channels = "[notify.chat]\nkind = \"slack\"\nurl_env = \"TEST_SLACK_URL\"\n\n[notify.dead]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:1/nobody-listens\"\nretries = 1\ntimeout = \"1s\"\n";
    let hook = "secret_env = \"TEST_HOOK_SECRET\"\ncooldown = \"1h\"\n";
    let observe = "stale_after = \"10s\"\n";
    let Service {
        demo,
        mut hooks,
        dir,
        policy,
    } = Service::start(&drain(), observe, hook, channels).await;

    // A depositor puts 900,000 units in the vault.
    demo.deposit(900_000).await;
    // A block every second from now on, so heads stay fresh.
    let _: serde_json::Value = demo
        .provider
        .raw_request("evm_setIntervalMining".into(), (1,))
        .await
        .unwrap();

    let slack_url = format!("http://{}/chat", hooks.addr);
    let mut env = demo.key_env();
    env.push(("TEST_HOOK_SECRET", "hook-secret-42".into()));
    env.push(("TEST_SLACK_URL", slack_url.clone()));
    let mut guardian = Guardian::start(&dir.path().join("guardian.toml"), &policy, &env).await;
    let (pid, base, stdout) = (guardian.pid, guardian.base.clone(), guardian.stdout.clone());
    let stderr = guardian.stderr.clone();
    let log = || stderr.lock().unwrap().join("\n");

    // Ready once watching with a fresh head; healthy.
    until_readyz(&base, "/readyz answers 200", 200, "").await;
    assert_eq!(get(&format!("{base}/healthz")).await.0, 200);
    // The healthy vault has been read.
    wait_metric(
        &base,
        "guardian_blocks_processed_total{network=\"local\"}",
        2.0,
    )
    .await;
    assert!(!demo.paused().await);

    // The drain: half the assets leave in one block.
    demo.withdraw(450_000).await;

    // The pause lands on chain.
    wait_until("the vault is paused", || demo.paused()).await;

    // The webhook received the trip and the landed execution, signed.
    let (h, b, trip) = hooks
        .wait_for("hook", "trip alert", |v| {
            v["kind"] == "trip" && v["policy"] == "vault-drain"
        })
        .await;
    verify(&h, &b);
    assert_eq!(trip["severity"], "critical");
    assert_eq!(trip["version"], 1);
    assert_eq!(trip["details"]["action"], "pause-module");
    assert_eq!(trip["details"]["evidence"]["change_pct"], -50.0);
    let (h, b, executed) = hooks
        .wait_for("hook", "executed alert", |v| v["kind"] == "executed")
        .await;
    verify(&h, &b);
    assert_eq!(executed["policy"], "vault-drain");
    assert!(
        executed["title"].as_str().unwrap().contains("landed"),
        "{executed}"
    );

    // The journal has the decision, landed, with its transaction (read while guardian runs).
    let journal =
        guardian::journal::Journal::open_read_only(&dir.path().join("guardian.db")).unwrap();
    let rows = journal
        .history(&guardian::journal::HistoryFilter::default())
        .unwrap();
    let landed: Vec<_> = rows.iter().filter(|e| e.status == "landed").collect();
    assert_eq!(landed.len(), 1, "{rows:?}");
    assert_eq!(landed[0].policy, "vault-drain");
    assert_eq!(landed[0].outcome, "approved");
    assert!(landed[0].tx.is_some(), "{rows:?}");
    drop(journal);

    // Metrics, scraped over HTTP.
    let text = wait_metric(&base, "guardian_executions_total{outcome=\"landed\"}", 1.0).await;
    for series in [
        "guardian_trips_total{policy=\"vault-drain\"}",
        "guardian_decisions_total{outcome=\"approved\"}",
        "guardian_head_to_trip_seconds_count",
        "guardian_trip_to_broadcast_seconds_count",
        "guardian_broadcast_to_mined_seconds_count",
    ] {
        assert_eq!(sample(&text, series), Some(1.0), "{series}");
    }
    assert!(sample(&text, "guardian_head_block{network=\"local\"}").unwrap() > 0.0);
    assert!(sample(&text, "guardian_samples_total{network=\"local\"}").unwrap() >= 2.0);
    assert_eq!(sample(&text, "guardian_policies_loaded"), Some(1.0));
    assert_eq!(sample(&text, "guardian_ready"), Some(1.0));
    // A channel nobody listens on fails (counted), and the pause landed all the same.
    wait_metric(
        &base,
        "guardian_notifier_failures_total{channel=\"dead\"}",
        1.0,
    )
    .await;

    // A broken policy file, reloaded by SIGHUP: refused, every error reported, old policies kept.
    std::fs::write(&policy, broken()).unwrap();
    signal(pid, "-HUP");
    let (_, b, refused) = hooks
        .wait_for("hook", "reload-failed alert", |v| {
            v["kind"] == "reload-failed"
        })
        .await;
    let errors = refused["details"]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{refused}");
    assert!(
        errors.iter().any(|e| e
            .as_str()
            .unwrap()
            .contains("policies.toml:5:12: `urgent` is not a valid severity")),
        "{refused}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.as_str().unwrap().contains("unknown action `pause-modul`")),
        "{refused}"
    );
    assert!(
        refused["title"]
            .as_str()
            .unwrap()
            .contains("the 1 running policies stay"),
        "{}",
        String::from_utf8_lossy(&b)
    );
    // Operational alerts also reach the chat channel, in Slack's shape.
    let (_, _, chat) = hooks
        .wait_for("chat", "reload-failed on the Slack channel", |v| {
            v["text"]
                .as_str()
                .is_some_and(|t| t.contains("policy reload refused"))
        })
        .await;
    assert_eq!(chat["blocks"][0]["type"], "header");
    let text = wait_metric(
        &base,
        "guardian_policy_reloads_total{outcome=\"rejected\"}",
        1.0,
    )
    .await;
    assert_eq!(sample(&text, "guardian_policies_loaded"), Some(1.0));
    assert!(
        log().contains("`urgent` is not a valid severity"),
        "the refusal is printed:\n{}",
        log()
    );
    assert!(
        guardian.child.try_wait().unwrap().is_none(),
        "still running"
    );
    until_readyz(&base, "/readyz still answers 200", 200, "").await;

    // A good policy, reloaded by SIGHUP: it takes effect on the next block.
    std::fs::write(&policy, LOW).unwrap();
    signal(pid, "-HUP");
    wait_metric(
        &base,
        "guardian_policy_reloads_total{outcome=\"applied\"}",
        1.0,
    )
    .await;
    let (h, b, low) = hooks
        .wait_for("hook", "trip of the reloaded policy", |v| {
            v["kind"] == "trip" && v["policy"] == "vault-low"
        })
        .await;
    verify(&h, &b);
    assert_eq!(low["details"]["mode"], "alert-only");
    let text = wait_metric(&base, "guardian_trips_total{policy=\"vault-low\"}", 1.0).await;
    assert_eq!(
        sample(&text, "guardian_trips_total{policy=\"vault-drain\"}"),
        Some(1.0)
    );
    // The policy routes its alerts to `hook` only: the chat channel never saw a trip.
    hooks.drain();
    assert!(
        !hooks
            .seen
            .iter()
            .any(|(p, _, b)| p == "chat" && String::from_utf8_lossy(b).contains("tripped")),
        "a trip reached a channel the policy does not name"
    );

    // JSON logs: a decision's lines carry decision_id, policy and block.
    let logs = log();
    let json_line = |start: &str| {
        logs.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| {
                v["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(start))
            })
            .unwrap_or_else(|| panic!("no `{start}` line in:\n{logs}"))
    };
    let decision_line = json_line("decision: approved");
    assert_eq!(decision_line["span"]["policy"], "vault-drain");
    assert!(
        decision_line["span"]["block"].as_u64().is_some(),
        "{decision_line}"
    );
    assert!(
        decision_line["span"]["decision_id"].as_u64().is_some(),
        "{decision_line}"
    );
    let executed_line = json_line("executed");
    assert_eq!(executed_line["span"]["policy"], "vault-drain");
    // Secrets never reach the logs.
    let bot_key = demo.key_hex(4);
    for secret in ["hook-secret-42", slack_url.as_str(), &bot_key[2..]] {
        assert!(!logs.contains(secret), "a secret in the logs: {secret}");
    }
    assert!(
        stdout
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("vault-low")),
        "the report lines go to stdout"
    );

    // The chain goes away: not ready (no fresh head), and a loud data-stale alert.
    let Demo { anvil, .. } = demo;
    drop(anvil);
    until_readyz(&base, "/readyz turns 503", 503, "").await;
    let (_, _, stale) = hooks
        .wait_for("hook", "data-stale alert", |v| v["kind"] == "data-stale")
        .await;
    assert_eq!(stale["network"], "local");
    // Still running (watching for the chain to come back) until asked to stop.
    assert!(
        guardian.child.try_wait().unwrap().is_none(),
        "still running"
    );
    guardian.terminate().await;
}

fn channel(name: &str, url: String, cooldown_ms: u64, operational: bool) -> NotifyDef {
    NotifyDef {
        name: name.into(),
        kind: NotifyKind::Webhook,
        url: UrlSource::Inline(url),
        secret_env: None,
        routing_key_env: None,
        cooldown_ms,
        retries: 0,
        timeout_ms: 2_000,
        operational,
    }
}

const TWO_POLICIES: &str = r#"
[[policy]]
id = "p1"
description = "routed to a"
severity = "critical"
action = "pause"
cooldown = "1 block"
notify = ["a"]
[policy.when]
kind = "threshold"
metric = "m"
op = ">"
value = 0

[[policy]]
id = "p2"
description = "every channel"
severity = "warning"
action = "pause"
cooldown = "1 block"
[policy.when]
kind = "threshold"
metric = "m"
op = ">"
value = 0
"#;

fn trip_of(policy: &str) -> Alert {
    let mut a = Alert::new(
        AlertKind::Trip,
        Severity::Critical,
        format!("{policy} tripped"),
        format!("trip:{policy}"),
    );
    a.policy = Some(policy.into());
    a
}

#[tokio::test]
async fn alerts_follow_the_policy_routes_and_each_channel_dedupes() {
    let mut server = Server::start(|_| 200).await;
    let telemetry = Arc::new(Telemetry::new(Duration::from_secs(60)));
    let defs = vec![
        channel("a", format!("http://{}/a", server.addr), 3_600_000, true),
        channel("b", format!("http://{}/b", server.addr), 0, false),
    ];
    let endpoints = guardian::alerts::endpoints(defs, &|_| None).unwrap();
    let (alerts, task) = guardian::alerts::spawn(endpoints, telemetry.clone()).unwrap();
    let set = compile_str("p.toml", TWO_POLICIES, &Config::empty()).unwrap();
    alerts.set_policies(&set);
    for _ in 0..3 {
        alerts.raise(trip_of("p1"));
    }
    for _ in 0..2 {
        alerts.raise(trip_of("p2"));
    }
    alerts.raise(Alert::new(
        AlertKind::DataStale,
        Severity::Critical,
        "no new head",
        "stale:local",
    ));
    task.finish(Duration::from_secs(30)).await;
    server.drain();
    let titles = |path: &str| -> Vec<String> {
        server
            .seen
            .iter()
            .filter(|(p, _, _)| p == path)
            .map(|(_, _, b)| {
                let v: serde_json::Value = serde_json::from_slice(b).unwrap();
                v["title"].as_str().unwrap().to_string()
            })
            .collect()
    };
    let mut a = titles("a");
    a.sort();
    // p1 once (a condition that stays true is sent once per cooldown), p2 once, the operational alert.
    assert_eq!(a, vec!["no new head", "p1 tripped", "p2 tripped"]);
    // b: not named by p1, no cooldown for p2, not operational.
    assert_eq!(titles("b"), vec!["p2 tripped", "p2 tripped"]);
    let text = telemetry.encode();
    assert!(
        text.contains("guardian_alerts_suppressed_total{channel=\"a\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("guardian_alerts_sent_total{channel=\"a\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("guardian_alerts_sent_total{channel=\"b\"} 2"),
        "{text}"
    );
}

#[tokio::test]
async fn raising_never_blocks_and_every_dropped_alert_is_counted() {
    // A server that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let telemetry = Arc::new(Telemetry::new(Duration::from_secs(60)));
    let defs = vec![channel(
        "slow",
        format!("http://{}/x", silent.local_addr().unwrap()),
        0,
        true,
    )];
    let endpoints = guardian::alerts::endpoints(defs, &|_| None).unwrap();
    let (alerts, task) = guardian::alerts::spawn(endpoints, telemetry.clone()).unwrap();
    let raised = 5_000;
    for i in 0..raised {
        let mut a = Alert::new(
            AlertKind::ReadFailed,
            Severity::Warning,
            "x",
            format!("k{i}"),
        );
        a.block = Some(i);
        alerts.raise(a);
    }
    // Everything returned at once; what could not be queued was counted, not lost silently.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let text = telemetry.encode();
    let dropped: f64 = ["queue", "slow"]
        .iter()
        .filter_map(|c| {
            sample(
                &text,
                &format!("guardian_alerts_dropped_total{{channel=\"{c}\"}}"),
            )
        })
        .sum();
    assert!(dropped > 0.0, "{text}");
    // Queues hold at most 1024 + 256 alerts; 8 are in flight and a few in hand.
    assert!(
        dropped >= (raised - 1024 - 256 - 16) as f64,
        "{dropped}\n{text}"
    );
    task.finish(Duration::from_millis(200)).await;
    drop(silent);
}

/// The `guardian run` binary, started as a service, its output collected.
struct Guardian {
    child: tokio::process::Child,
    pid: u32,
    /// `http://addr` of /metrics, /healthz and /readyz.
    base: String,
    stderr: Arc<Mutex<Vec<String>>>,
    stdout: Arc<Mutex<Vec<String>>>,
}

fn collect(pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let out = lines.clone();
    let mut reader = tokio::io::BufReader::new(pipe).lines();
    tokio::spawn(async move {
        while let Ok(Some(line)) = reader.next_line().await {
            out.lock().unwrap().push(line);
        }
    });
    lines
}

impl Guardian {
    /// Runs `guardian run` with JSON logs at `info` and `env`; waits for the server address.
    async fn start(
        config: &std::path::Path,
        policy: &std::path::Path,
        env: &[(&str, String)],
    ) -> Guardian {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_guardian"));
        command
            .args(["run", "--config"])
            .arg(config)
            .arg("--policies")
            .arg(policy)
            .args(["--log-format", "json"])
            .env("GUARDIAN_LOG", "info")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        let pid = child.id().unwrap();
        let stderr = collect(child.stderr.take().unwrap());
        let stdout = collect(child.stdout.take().unwrap());
        let mut base = String::new();
        let lines = stderr.clone();
        wait_until("the metrics address is printed", || {
            // Under --log-format json every line is a JSON object: the message is in fields.message.
            if let Some(b) = lines.lock().unwrap().iter().find_map(|l| {
                let message = serde_json::from_str::<serde_json::Value>(l)
                    .ok()
                    .and_then(|v| v["fields"]["message"].as_str().map(str::to_string))
                    .unwrap_or_else(|| l.clone());
                message
                    .strip_prefix("serving /metrics, /healthz and /readyz on ")
                    .map(str::to_string)
            }) {
                base = b;
            }
            let done = !base.is_empty();
            async move { done }
        })
        .await;
        Guardian {
            child,
            pid,
            base,
            stderr,
            stdout,
        }
    }

    fn log(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// SIGTERM; it must exit successfully within 30 s.
    async fn terminate(&mut self) {
        signal(self.pid, "-TERM");
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("guardian stops on SIGTERM")
            .unwrap();
        assert!(status.success(), "exit status {status}:\n{}", self.log());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_key_guardian_keeps_watching_and_alerts_loudly() {
    let policy = vault_drain(A_THIRD, "100 blocks", "");
    let Service {
        demo,
        mut hooks,
        dir,
        policy,
    } = Service::start(&policy, "", "", "").await;
    demo.deposit(900_000).await;

    // The bot's key (used by the module executor) is not in the environment.
    let mut env = demo.key_env();
    env.retain(|(var, _)| *var != "UNUSED_IN_TESTS_BOT");
    let mut guardian = Guardian::start(&dir.path().join("guardian.toml"), &policy, &env).await;
    let base = guardian.base.clone();
    hooks
        .critical_alert("key-unavailable", "UNUSED_IN_TESTS_BOT")
        .await;
    hooks
        .wait_for("hook", "executor-unavailable alert", |v| {
            v["kind"] == "executor-unavailable"
        })
        .await;
    // Watching all the same, but not ready: an enforce executor cannot act (issue #12, seen 6).
    until_readyz(
        &base,
        "/readyz answers 503 naming the executor without its key",
        503,
        "cannot act: key `bot` is missing",
    )
    .await;
    wait_metric(
        &base,
        "guardian_blocks_processed_total{network=\"local\"}",
        1.0,
    )
    .await;

    // The drain trips the policy; the pause cannot be sent, and that is loud.
    demo.withdraw(450_000).await;
    hooks
        .wait_for("hook", "trip alert", |v| v["kind"] == "trip")
        .await;
    hooks.critical_alert("rejected", "was NOT sent").await;
    let text = wait_metric(&base, "guardian_decisions_total{outcome=\"rejected\"}", 1.0).await;
    assert!(
        sample(
            &text,
            "guardian_executor_unavailable_total{network=\"local\"}"
        )
        .unwrap()
            >= 2.0,
        "{text}"
    );
    assert!(!demo.paused().await);
    assert!(
        guardian.child.try_wait().unwrap().is_none(),
        "still watching"
    );
    assert!(
        guardian
            .log()
            .contains("cannot act through the executors that need this key")
    );
    guardian.terminate().await;
}

#[tokio::test]
async fn watched_policy_files_reload_when_they_change_and_broken_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policies.toml");
    std::fs::write(&file, LOW).unwrap();
    let paths = vec![dir.path().to_path_buf()];
    let config = Config::empty();
    let initial = guardian::policy::load_policies(&paths, &config).unwrap();
    let telemetry = Arc::new(Telemetry::new(Duration::from_secs(60)));
    let probe = guardian::observe::Probe::new(telemetry.clone(), None);
    let (tx, mut rx) = tokio::sync::watch::channel(initial);
    let cancel = tokio_util::sync::CancellationToken::new();
    let reloader =
        guardian::observe::service::spawn_reloader(config, paths, probe, tx, true, cancel.clone());
    // Give the watcher a moment to be installed, then change the file until it is seen.
    let two = format!("{LOW}\n{}", LOW.replace("vault-low", "vault-low-2"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        std::fs::write(&file, &two).unwrap();
        if tokio::time::timeout(Duration::from_secs(2), rx.changed())
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the change was never picked up"
        );
    }
    let ids: Vec<String> = rx
        .borrow_and_update()
        .policies
        .iter()
        .map(|p| p.id.clone())
        .collect();
    assert_eq!(ids, vec!["vault-low", "vault-low-2"]);

    // A broken file: refused and counted; the running set is not replaced.
    std::fs::write(&file, broken()).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while sample(
        &telemetry.encode(),
        "guardian_policy_reloads_total{outcome=\"rejected\"}",
    )
    .is_none()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the broken file was never refused"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!rx.has_changed().unwrap(), "a broken set was sent on");
    cancel.cancel();
    reloader.await.unwrap();
}

#[tokio::test]
async fn pagerduty_and_discord_channels_post_their_shapes_with_secrets_from_the_environment() {
    let mut server = Server::start(|_| 202).await;
    let pager = NotifyDef {
        kind: NotifyKind::PagerDuty,
        routing_key_env: Some("TEST_PD_KEY".into()),
        ..channel("pager", format!("http://{}/pd", server.addr), 0, true)
    };
    let discord = NotifyDef {
        kind: NotifyKind::Discord,
        url: UrlSource::Env("TEST_DISCORD_URL".into()),
        ..channel("discord", String::new(), 0, true)
    };
    let discord_url = format!("http://{}/discord", server.addr);
    let env = |var: &str| match var {
        "TEST_PD_KEY" => Some("R0UT1NG".to_string()),
        "TEST_DISCORD_URL" => Some(discord_url.clone()),
        _ => None,
    };
    // A variable that is not set is named, with the channel.
    let err = guardian::alerts::endpoints([pager.clone(), discord.clone()], &|_| None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "notify channel `pager`: environment variable TEST_PD_KEY is not set (it holds the channel's PagerDuty routing key)"
    );
    let telemetry = Arc::new(Telemetry::new(Duration::from_secs(60)));
    let endpoints = guardian::alerts::endpoints([pager, discord], &env).unwrap();
    let (alerts, task) = guardian::alerts::spawn(endpoints, telemetry.clone()).unwrap();
    let mut stale = Alert::new(
        AlertKind::DataStale,
        Severity::Critical,
        "network mainnet: no new head for 75 s",
        "stale:mainnet",
    );
    stale.network = Some("mainnet".into());
    alerts.raise(stale);
    task.finish(Duration::from_secs(30)).await;
    let (_, _, pd) = server.wait_for("pd", "PagerDuty event", |_| true).await;
    assert_eq!(pd["routing_key"], "R0UT1NG");
    assert_eq!(pd["event_action"], "trigger");
    assert_eq!(pd["dedup_key"], "guardian:stale:mainnet");
    assert_eq!(pd["payload"]["severity"], "critical");
    assert_eq!(pd["payload"]["source"], "guardian/mainnet");
    assert!(
        pd["payload"]["summary"]
            .as_str()
            .unwrap()
            .contains("no new head")
    );
    let (_, _, d) = server
        .wait_for("discord", "Discord message", |_| true)
        .await;
    assert!(d["content"].as_str().unwrap().contains("no new head"));
    assert_eq!(d["embeds"][0]["title"], "guardian: data-stale");
    assert!(
        telemetry
            .encode()
            .contains("guardian_alerts_sent_total{channel=\"pager\"} 1")
    );
}

#[tokio::test]
async fn a_guardian_that_stops_says_so_before_it_exits() {
    let mut server = Server::start(|_| 200).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("guardian.toml");
    // Nothing to watch on any network: the pipeline cannot run.
    std::fs::write(
        &config,
        format!(
            r#"
[guardian]
mode = "alert-only"
policies = ["policies.toml"]

[metrics."vault.total_assets"]
description = "from traces only"

[actions.pause-module]
kind = "pause"
description = "pause"

[notify.hook]
kind = "webhook"
url = "http://{}/hook"
"#,
            server.addr
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("policies.toml"), LOW).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_guardian"))
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no metric reads from a network"),
        "{stderr}"
    );
    let cannot_run = "NOT watching: the configuration cannot run live";
    server.critical_alert("stopped", cannot_run).await;
}
