//! Issue 14: what the operator believes runs is what runs. The rollout of
//! docs/deploy.md, through the real binary on anvil: dry-run (a drain trips,
//! nothing is sent) → restart in enforce on the same journal → a second
//! drain inside the dry-run trip's policy cooldown and the guard's target
//! cooldown → the pause lands. Neither cooldown was consumed by anything sent,
//! so neither holds.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy::providers::Provider;
use common::service::{Guardian, WAIT, history, processed, processed_on, until};
use common::traces::guardian_cmd;
use common::{Demo, vault_drain};

const THIRTY_PCT: &str = "Vault assets fall by 30% within one block";

/// Writes guardian.toml in `mode` (same journal, same guard limits) and the policy.
fn configure(demo: &Demo, dir: &Path, mode: &str) {
    configure_with(
        demo,
        dir,
        mode,
        &vault_drain(THIRTY_PCT, "50 blocks", ""),
        "",
    );
}

/// The same, with other policies and `extra` appended to guardian.toml.
fn configure_with(demo: &Demo, dir: &Path, mode: &str, policy: &str, extra: &str) {
    let tail = format!(
        "{}\n[guard]\ntarget_cooldown = \"10m\"\n\n[journal]\npath = \"guardian.db\"\n{extra}\n",
        demo.assets_metric()
    );
    demo.config_with(dir, "", &tail);
    let path = dir.join("guardian.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replacen("mode = \"enforce\"", &format!("mode = \"{mode}\""), 1);
    std::fs::write(&path, text).unwrap();
    std::fs::write(dir.join("policy.toml"), policy).unwrap();
}

/// The demo with 900,000 deposited in the vault, a folder for guardian, and
/// the path of its journal there.
async fn funded() -> (Demo, tempfile::TempDir, std::path::PathBuf) {
    let demo = Demo::new(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("guardian.db");
    demo.deposit(900_000).await;
    (demo, dir, journal)
}

async fn withdraw(demo: &Demo, amount: u64) -> u64 {
    let receipt = demo.withdraw(amount).await;
    assert!(receipt.status());
    receipt.block_number.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_trip_then_enforce_restart_pauses_a_drain_inside_the_old_cooldown() {
    let (demo, dir, journal) = funded().await;
    let funded = demo.provider.get_block_number().await.unwrap();

    // 1. Dry-run: a 40% drain trips; nothing is sent.
    configure(&demo, dir.path(), "dry-run");
    let mut g = Guardian::start(&demo, dir.path(), &[], &[]);
    until("the healthy vault to be read", &mut [&mut g], || {
        processed(&journal).is_some_and(|b| b >= funded)
    })
    .await;
    let first_drain = withdraw(&demo, 360_000).await;
    until("the dry-run decision", &mut [&mut g], || {
        history(&journal).iter().any(|e| e.status == "dry-run")
    })
    .await;
    until("the drain's block to be processed", &mut [&mut g], || {
        processed(&journal).is_some_and(|b| b >= first_drain)
    })
    .await;
    assert!(!demo.paused().await, "dry-run sends nothing");
    assert_eq!(g.stop(), Some(0));

    // 2. Restart in enforce on the same journal; the restart re-reads the dry-run trip's block.
    configure(&demo, dir.path(), "enforce");
    let mut g = Guardian::start(&demo, dir.path(), &[], &[]);
    let log = g.log.clone();
    until("the restart to resume", &mut [&mut g], || {
        g_output_contains(&log, "resuming after the last processed block")
    })
    .await;
    // 3. A second drain, 41.7% of what is left, a few blocks later: inside the
    // policy's 50-block cooldown and the guard's 10-minute target cooldown of the dry-run trip.
    let second_drain = withdraw(&demo, 225_000).await;
    assert!(second_drain < first_drain + 50, "inside the old cooldown");
    // 4. The pause lands.
    until("the pause to land", &mut [&mut g], || {
        history(&journal).iter().any(|e| e.status == "landed")
    })
    .await;
    assert!(demo.paused().await, "the vault is paused on chain");
    let entries = history(&journal);
    let landed = entries.iter().find(|e| e.status == "landed").unwrap();
    assert_eq!(landed.block, second_drain, "{entries:#?}");
    assert_eq!(landed.mode, "enforce");
    let log = g.output();
    assert!(!log.contains("in its cooldown"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "no colour codes in redirected logs: {log}"
    );
    assert_eq!(g.stop(), Some(0));
    println!(
        "rollout: dry-run trip at block {first_drain}; enforce restart; pause landed for the drain at block {second_drain}"
    );
}

fn g_output_contains(log: &Path, needle: &str) -> bool {
    std::fs::read_to_string(log).is_ok_and(|t| t.contains(needle))
}

/// The address `run` serves /metrics and /readyz on, from its log.
async fn served_at(g: &mut Guardian) -> String {
    let mut addr = None;
    let log = g.log.clone();
    until("the metrics server", &mut [g], || {
        addr = std::fs::read_to_string(&log).ok().and_then(|t| {
            t.lines()
                .find_map(|l| l.split("/readyz on ").nth(1).map(|a| a.trim().to_string()))
        });
        addr.is_some()
    })
    .await;
    addr.unwrap()
}

async fn get(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

async fn mine(demo: &Demo, blocks: u64) {
    let _: serde_json::Value = demo
        .provider
        .raw_request("anvil_mine".into(), (blocks,))
        .await
        .unwrap();
}

const LONG_WINDOWS: &str = r#"
[[policy]]
id = "slow-drain"
description = "Vault assets fall by 30% within 100 blocks"
severity = "critical"
action = "pause-module"
cooldown = "10 blocks"
[policy.when]
kind = "change"
metric = "vault.total_assets"
window = "100 blocks"
direction = "down"
by = "30%"

[[policy]]
id = "very-slow-drain"
description = "Vault assets fall by 30% within 500 blocks"
severity = "warning"
action = "pause-module"
cooldown = "10 blocks"
mode = "alert-only"
[policy.when]
kind = "change"
metric = "vault.total_assets"
window = "500 blocks"
direction = "down"
by = "30%"
"#;

/// Issue 14, "long windows are blind after a restart": the restart re-reads
/// what the 100-block window needs (more than `warmup_blocks` = 64), so a drain
/// right after the restart trips; the 500-block policy is beyond
/// `max_warmup_blocks` = 200 and says it is blind, until which block, in the
/// log, /readyz and /metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_warm_and_a_policy_it_cannot_warm_says_until_when() {
    let (demo, dir, journal) = funded().await;
    configure_with(
        &demo,
        dir.path(),
        "enforce",
        LONG_WINDOWS,
        "max_warmup_blocks = 200\n\n[observe]\nlisten = \"127.0.0.1:0\"\nstale_after = \"1h\"\n",
    );
    let mut g = Guardian::start(&demo, dir.path(), &[], &[]);
    mine(&demo, 120).await;
    let head = demo.provider.get_block_number().await.unwrap();
    until("120 healthy blocks to be read", &mut [&mut g], || {
        processed(&journal).is_some_and(|b| b >= head)
    })
    .await;
    assert_eq!(g.stop(), Some(0));

    let mut g = Guardian::start(&demo, dir.path(), &[], &[]);
    let log = g.log.clone();
    let base = served_at(&mut g).await;
    until("the restart to resume", &mut [&mut g], || {
        g_output_contains(&log, "resuming after the last processed block")
    })
    .await;
    // The first live block after the re-read ones.
    mine(&demo, 1).await;
    until("the restart to catch up", &mut [&mut g], || {
        processed(&journal).is_some_and(|b| b > head)
            && g_output_contains(&log, "blind until block")
    })
    .await;
    let drain = withdraw(&demo, 360_000).await;
    until("the pause to land", &mut [&mut g], || {
        history(&journal).iter().any(|e| e.status == "landed")
    })
    .await;
    let landed = history(&journal)
        .into_iter()
        .find(|e| e.status == "landed")
        .unwrap();
    assert_eq!(
        (landed.policy.as_str(), landed.block),
        ("slow-drain", drain)
    );

    // The 500-block policy could not be warmed (200 blocks at most): it says so.
    let log = g.output();
    let line = log
        .lines()
        .find(|l| l.contains("policy very-slow-drain blind until block"))
        .unwrap_or_else(|| panic!("no blind line:\n{log}"));
    assert!(!log.contains("policy slow-drain blind"), "{log}");
    let readyz = get(&format!("{base}/readyz")).await;
    assert!(
        readyz.contains("policy very-slow-drain: blind until block"),
        "{readyz}"
    );
    assert!(!readyz.contains("policy slow-drain:"), "{readyz}");
    let metrics = get(&format!("{base}/metrics")).await;
    assert!(
        metrics.contains("guardian_policy_ready{policy=\"very-slow-drain\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("guardian_policy_ready{policy=\"slow-drain\"} 1"),
        "{metrics}"
    );
    assert_eq!(g.stop(), Some(0));
    println!("warm restart: slow-drain tripped at block {drain} right after the restart; {line}");
}

/// Issue 14, "a metric with no source passes check and run": both refuse, exit
/// 1, naming the policy's file and line.
#[test]
fn check_and_run_refuse_a_policy_whose_metric_is_never_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("guardian.toml"),
        format!(
            r#"{}
[metrics."vault.total_assets"]
description = "assets the vault holds; the source is still to be written"
network = "local"

[actions.pause-vault]
kind = "pause"
description = "pause"
"#,
            common::dry_run_network(&["http://127.0.0.1:1"], &[])
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("policy.toml"),
        vault_drain(THIRTY_PCT, "50 blocks", "").replace("pause-module", "pause-vault"),
    )
    .unwrap();
    let config = dir.path().join("guardian.toml");
    let policy = dir.path().join("policy.toml");
    for args in [vec!["check", "--config"], vec!["run", "--config"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_guardian"))
            .args(&args)
            .arg(&config)
            .arg("--policies")
            .arg(&policy)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("error: policy `vault-drain` reads metric `vault.total_assets`, which has no `source`")
                && stderr.contains(&format!("--> {}:2:1\n", policy.display())),
            "{args:?}: {stderr}"
        );
    }
}

/// A local HTTP receiver for alert channels: every POST body, in arrival order.
struct Receiver {
    addr: std::net::SocketAddr,
    seen: std::sync::Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        use axum::extract::{Path as UrlPath, State};
        type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>>;
        async fn receive(
            State(seen): State<Seen>,
            UrlPath(path): UrlPath<String>,
            body: axum::body::Bytes,
        ) -> axum::http::StatusCode {
            let v = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            seen.lock().unwrap().push((path, v));
            axum::http::StatusCode::ACCEPTED
        }
        let seen: Seen = Default::default();
        let app = axum::Router::new()
            .route("/{path}", axum::routing::post(receive))
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { addr, seen }
    }

    fn on(&self, path: &str) -> Vec<serde_json::Value> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// The drain policy with a 10-block cooldown, and an alert-only policy on low assets.
fn low_assets() -> String {
    let drain = vault_drain(THIRTY_PCT, "10 blocks", "");
    format!("{drain}{LOW_ASSETS}")
}

const LOW_ASSETS: &str = r#"
[[policy]]
id = "low-assets"
description = "Vault assets under 700,000 (alert only)"
severity = "critical"
action = "pause-module"
cooldown = "50 blocks"
mode = "alert-only"
[policy.when]
kind = "threshold"
metric = "vault.total_assets"
op = "<"
value = 700000
"#;

/// Issue 14, "alerts can't be joined": every alert names its network, policy,
/// block and decision (and the transaction once there is one); a landed pause
/// is info and resolves the PagerDuty incident its trip opened; one incident's
/// alerts arrive trip first; a new incident inside a cooldown is alerted, one
/// severity lower, with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_join_up_and_a_landed_pause_resolves_its_incident() {
    let (demo, dir, journal) = funded().await;
    let hooks = Receiver::start().await;
    let extra = format!(
        "\n[notify.hook]\nkind = \"webhook\"\nurl = \"http://{a}/hook\"\ncooldown = \"0s\"\n\n[notify.pager]\nkind = \"pagerduty\"\nurl = \"http://{a}/pd\"\nrouting_key_env = \"TEST_PD_KEY\"\ncooldown = \"0s\"\n",
        a = hooks.addr
    );
    configure_with(&demo, dir.path(), "enforce", &low_assets(), &extra);
    let funded = demo.provider.get_block_number().await.unwrap();
    let mut g = Guardian::start(&demo, dir.path(), &[], &[("TEST_PD_KEY", "R0UT1NG")]);
    until("the healthy vault to be read", &mut [&mut g], || {
        processed(&journal).is_some_and(|b| b >= funded)
    })
    .await;

    // low-assets trips (alert-only), then clears, then holds again inside its cooldown.
    let first = withdraw(&demo, 250_000).await;
    demo.deposit(250_000).await;
    let again = withdraw(&demo, 250_000).await;
    until("the held alert", &mut [&mut g], || {
        hooks.on("hook").iter().any(|a| a["kind"] == "held")
    })
    .await;
    let held = hooks
        .on("hook")
        .into_iter()
        .find(|a| a["kind"] == "held")
        .unwrap();
    assert_eq!(held["policy"], "low-assets");
    assert_eq!(
        held["severity"], "warning",
        "one lower than critical: {held}"
    );
    assert_eq!(held["network"], "local");
    assert_eq!(held["block"], again);
    let reason = held["details"]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!(
            "after the trip at block {first} runs until block {}",
            first + 50
        )),
        "{held}"
    );

    // vault-drain: a drain is paused.
    let drain = withdraw(&demo, 300_000).await;
    until("the landed alert", &mut [&mut g], || {
        hooks
            .on("hook")
            .iter()
            .any(|a| a["kind"] == "executed" && a["policy"] == "vault-drain")
    })
    .await;
    let hook = hooks.on("hook");
    let trip_at = hook
        .iter()
        .position(|a| a["kind"] == "trip" && a["policy"] == "vault-drain")
        .expect("a trip alert");
    let landed_at = hook
        .iter()
        .position(|a| a["kind"] == "executed" && a["policy"] == "vault-drain")
        .unwrap();
    assert!(
        trip_at < landed_at,
        "the trip's alert arrives first: {hook:#?}"
    );
    let (trip, landed) = (&hook[trip_at], &hook[landed_at]);
    assert_eq!(trip["network"], "local");
    assert_eq!(trip["block"], drain);
    assert!(trip["decision_id"].as_u64().is_some(), "{trip}");
    assert_eq!(trip["severity"], "critical");
    assert_eq!(landed["decision_id"], trip["decision_id"]);
    assert_eq!(landed["network"], "local");
    assert_eq!(landed["severity"], "info");
    let entry = history(&journal)
        .into_iter()
        .find(|e| e.status == "landed")
        .unwrap();
    assert_eq!(landed["block"], entry.tx_block.unwrap());
    assert_eq!(landed["tx"], entry.tx.clone().unwrap());

    // PagerDuty: the trip triggers the policy's incident, the landed pause resolves it.
    until("the PagerDuty resolve", &mut [&mut g], || {
        hooks
            .on("pd")
            .iter()
            .any(|e| e["event_action"] == "resolve")
    })
    .await;
    let pd: Vec<_> = hooks
        .on("pd")
        .into_iter()
        .filter(|e| e["dedup_key"] == "guardian:policy:vault-drain")
        .collect();
    let actions: Vec<&str> = pd
        .iter()
        .map(|e| e["event_action"].as_str().unwrap())
        .collect();
    assert_eq!(actions.first(), Some(&"trigger"), "{pd:#?}");
    assert_eq!(actions.last(), Some(&"resolve"), "{pd:#?}");
    assert!(demo.paused().await);
    assert_eq!(g.stop(), Some(0));
    println!(
        "alerts: held at block {again} (warning), trip at block {drain} (critical, decision {}), landed in block {} (info), PagerDuty {actions:?}",
        trip["decision_id"], landed["block"]
    );
}

/// A process whose stdout and stderr go to a file.
fn spawn_logged(args: &[&str], env: &[(&str, &str)], log: &Path) -> Child {
    let out = std::fs::File::create(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_guardian"))
        .args(args)
        .envs(env.iter().copied())
        .env("GUARDIAN_LOG", "info")
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .unwrap()
}

async fn wait_file(what: &str, log: &Path, needle: &str, others: &[&Path]) {
    let logs: Vec<&Path> = std::iter::once(log).chain(others.iter().copied()).collect();
    wait_until(what, &logs, || g_output_contains(log, needle)).await;
}

/// Polls `done` every 200 ms until it holds; after 240 s fails with `what`
/// and the text of `logs`.
async fn wait_until(what: &str, logs: &[&Path], mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(240);
    while !done() {
        if Instant::now() > deadline {
            let mut text = String::new();
            for p in logs {
                text.push_str(&format!(
                    "--- {}\n{}\n",
                    p.display(),
                    std::fs::read_to_string(p).unwrap_or_default()
                ));
            }
            panic!("timed out waiting for {what}:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `guardian devnet drain --dir dir --percent 40`, which must succeed; its output.
fn devnet_drain_40(dir: &str) -> String {
    let (code, out) = guardian_cmd(&["devnet", "drain", "--dir", dir, "--percent", "40"]);
    assert_eq!(code, Some(0), "{out}");
    out
}

fn terminate(child: &mut Child) -> Option<i32> {
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The rehearsal kit, used the way docs/deploy.md walks through it:
/// `guardian devnet up` → check → setup verify → run in dry-run → a drain
/// (trip, alert, nothing sent) → enforce → a drain → the pause lands, alerted
/// → `history` shows both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_devnet_rehearsal_walks_docs_deploy_md_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("rehearsal");
    let ds = d.to_str().unwrap().to_string();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let anvil = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
    );
    let devnet_log = dir.path().join("devnet.log");
    let mut devnet = spawn_logged(
        &[
            "devnet", "up", "--dir", &ds, "--port", &port, "--anvil", anvil,
        ],
        &[],
        &devnet_log,
    );
    wait_file("the devnet", &devnet_log, "devnet ready", &[]).await;
    let config = d.join("guardian.toml");
    let c = config.to_str().unwrap();
    let (code, out) = guardian_cmd(&["check", "--config", c]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = guardian_cmd(&["setup", "verify", "--config", c]);
    assert_eq!(code, Some(0), "{out}");
    let key = std::fs::read_to_string(d.join("bot.env")).unwrap();
    let key = key
        .lines()
        .find_map(|l| l.strip_prefix("GUARDIAN_BOT_KEY="))
        .unwrap()
        .to_string();
    let env = [("GUARDIAN_BOT_KEY", key.as_str())];

    // Dry-run: the drain trips and is alerted; nothing is sent.
    let run_log = dir.path().join("run-1.log");
    let mut run = spawn_logged(&["run", "--config", c], &env, &run_log);
    let journal = d.join("guardian.db");
    let others = [run_log.as_path(), devnet_log.as_path()];
    // A cold start is blind until the drain policy's 10-block window is full; it says when.
    wait_file(
        "the drain policy to warm up",
        &run_log,
        "it can trip from now on policy=vault-assets-drop",
        &others,
    )
    .await;
    let out = devnet_drain_40(&ds);
    let drained_at: u64 = out
        .split(" in block ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|b| b.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    wait_file(
        "the dry-run trip's alert",
        &devnet_log,
        "alert: critical trip (policy vault-assets-drop, network devnet",
        &others,
    )
    .await;
    wait_until("the dry-run decision in the journal", &others, || {
        history(&journal).iter().any(|e| e.status == "dry-run")
    })
    .await;
    // Let the incident end (its 10-block window pass): switching to enforce
    // while it still holds would act on it at once (no quiet period is inherited).
    wait_until("the incident's window to pass", &others, || {
        processed_on(&journal, "devnet").is_some_and(|b| b >= drained_at + 12)
    })
    .await;
    assert_eq!(terminate(&mut run), Some(0));

    // Enforce, same journal: the next drain is paused.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replacen("mode = \"dry-run\"", "mode = \"enforce\"", 1),
    )
    .unwrap();
    let run_log = dir.path().join("run-2.log");
    let mut run = spawn_logged(&["run", "--config", c], &env, &run_log);
    let others = [run_log.as_path(), devnet_log.as_path()];
    wait_file(
        "the restart",
        &run_log,
        "resuming after the last processed block",
        &others,
    )
    .await;
    devnet_drain_40(&ds);
    wait_file(
        "the landed alert",
        &devnet_log,
        "the action landed in block",
        &others,
    )
    .await;
    let alerts = std::fs::read_to_string(&devnet_log).unwrap();
    assert!(
        alerts.lines().any(|l| l
            .starts_with("alert: info executed (policy vault-assets-drop, network devnet")
            && l.contains("landed")),
        "{alerts}"
    );
    let (code, out) = guardian_cmd(&["history", "--config", c]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("-> dry-run") && out.contains("-> landed"),
        "{out}"
    );
    // The vault is paused: a further drain reverts.
    let (code, out) = guardian_cmd(&["devnet", "drain", "--dir", &ds, "--percent", "10"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("reverted") || out.contains("revert"), "{out}");
    assert_eq!(terminate(&mut run), Some(0));
    assert_eq!(terminate(&mut devnet), Some(0));
    println!(
        "devnet rehearsal: dry-run trip alerted, enforce pause landed and alerted, history shows both"
    );
}

/// Issue 14, "CLI rough edges": the same flags everywhere, `--json` where a
/// script reads the output, exit codes as the README states (1: invalid input,
/// usage errors included), validated filters, folders checked recursively,
/// `diff` over guardian.toml that fails on loosening unless accepted, JSON
/// operator lines under `--log-format json`.
#[test]
fn one_consistent_command_line() {
    // Runs guardian with `args`, which must exit with `want`; the output.
    let exits = |want: i32, args: &[&str]| {
        let (code, out) = guardian_cmd(args);
        assert_eq!(code, Some(want), "guardian {args:?}: {out}");
        out
    };
    // Usage errors and bad values are invalid input: 1. Help is 0.
    exits(1, &["check", "--bogus"]);
    exits(0, &["--help"]);
    let out = exits(
        1,
        &["history", "--journal", "nowhere.db", "--status", "landd"],
    );
    assert!(
        out.contains("`landd` is not a status; use one of: approved"),
        "{out}"
    );
    exits(
        1,
        &["history", "--journal", "nowhere.db", "--since", "yesterday"],
    );
    exits(
        1,
        &[
            "calibrate",
            "--trace",
            "nowhere.csv",
            "--metric",
            "m",
            "--detector",
            "ewma",
            "--false-alarms",
            "5%",
        ],
    );
    // `check policies` finds the packs in subfolders; --policies works like the positional form.
    let out = exits(0, &["check", "policies"]);
    assert!(out.contains("ok: 23 policies"), "{out}");
    let out = exits(
        0,
        &[
            "check",
            "--policies",
            "policies/starter/vault.toml",
            "--json",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let drop = v["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "vault-assets-drop")
        .unwrap();
    assert_eq!(drop["warm_up"]["blocks"], 10);
    let out = exits(
        0,
        &[
            "explain",
            "--policies",
            "policies/starter/vault.toml",
            "--json",
        ],
    );
    let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert!(
        first["text"].as_str().unwrap().contains("Warm-up:"),
        "{first}"
    );
    // diff: a removed policy fails the review unless accepted; --json for scripts.
    let old = "tests/fixtures/diff/old.toml";
    let new = "tests/fixtures/diff/new.toml";
    let out = exits(1, &["diff", old, new]);
    assert!(out.contains("loosen or remove protection"), "{out}");
    exits(0, &["diff", old, new, "--accept-loosening"]);
    let out = exits(0, &["diff", old, new, "--json", "--accept-loosening"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(!v["needs_acceptance"].as_array().unwrap().is_empty(), "{v}");
    exits(0, &["diff", old, old]);

    // diff --config: guardian.toml's mode, targets, bounds and limits.
    let dir = tempfile::tempdir().unwrap();
    let config = |name: &str, mode: &str, cooldown: &str, max: u64| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "[guardian]\nmode = \"{mode}\"\npolicies = [\"{root}/policies/starter/vault.toml\"]\n\n[actions.pause-vault]\nkind = \"pause\"\ndescription = \"pause\"\ntarget = \"0x00000000000000000000000000000000000000aa\"\nfunction = \"pause()\"\n\n[actions.lower-cap]\nkind = \"set-parameter\"\ndescription = \"cap\"\ntarget = \"0x00000000000000000000000000000000000000aa\"\nfunction = \"setSupplyCap(uint256)\"\ngetter = \"supplyCap()\"\nmin = 1000\nmax = {max}\nmax_change_bps = 5000\nmin_delay = \"1h\"\nvalue = 5000\n\n[guard]\ntarget_cooldown = \"{cooldown}\"\n\n[metrics.\"vault.total_assets\"]\ndescription = \"a\"\n[metrics.\"vault.share_price\"]\ndescription = \"a\"\n[metrics.\"vault.outflow\"]\ndescription = \"a\"\n[metrics.\"vault.oracle_age\"]\ndescription = \"a\"\n",
                root = env!("CARGO_MANIFEST_DIR")
            ),
        )
        .unwrap();
        path.to_str().unwrap().to_string()
    };
    let a = config("a.toml", "dry-run", "10m", 10_000_000);
    let b = config("b.toml", "enforce", "1m", 20_000_000);
    let out = exits(1, &["diff", "--config", &a, &b]);
    for line in [
        "LOOSENED   mode: dry-run -> enforce",
        "LOOSENED   [guard] target_cooldown: 10m -> 1m",
        "LOOSENED   action `lower-cap` bounds: [1000, 10000000] -> [1000, 20000000]",
    ] {
        assert!(out.contains(line), "{line}\n{out}");
    }
    exits(0, &["diff", "--config", &a, &b, "--accept-loosening"]);
    // Tightening needs no acceptance.
    exits(0, &["diff", "--config", &b, &a]);

    // --log-format json: every stderr line is a JSON object, errors included.
    let out = exits(
        2,
        &[
            "--log-format",
            "json",
            "check",
            "--config",
            &a,
            "--policies",
            "no-such-folder",
        ],
    );
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["fields"]["message"].is_string(), "{v}");
    }
}
