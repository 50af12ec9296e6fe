//! Decision -> signed transaction handed to the RPC, on a local anvil.
//!
//! `cargo bench --bench executor` (optionally `-- --runs N`, default 300).
//!
//! Setup: the demo of tests/common (real Safe v1.4.1, vault owned by it, bot
//! with the pauser role). Each run: a trip for `pause-direct` (eoa path) goes
//! through the guard and the executor; the clock stops when the executor
//! reports the signed transaction accepted by the node
//! (`eth_sendRawTransaction` returned). Automine is off while timing (with
//! automine, anvil mines inside `eth_sendRawTransaction`, which is not what a
//! real node does); the bench then mines the block, waits for the executor to
//! see the pause land, and unpauses the vault through the Safe, outside the timing.
//!
//! Two measurements:
//! - **without preflight round trips**: the guard reads chain state from memory
//!   (vault not paused, preflight passes), so the time is the guard's logic plus
//!   the executor: gas estimate and base fee (two concurrent local round trips),
//!   signing, and the send itself;
//! - **with preflight**: the guard reads `paused()` and simulates the exact
//!   transaction on anvil (`eth_call` on the pending block) before the executor runs.
//!
//! Then the same trip → pause-in-pool path (with preflight) through two
//! endpoints, each a fault proxy (tests/common/fault_proxy.rs) in front of
//! anvil: both healthy; `rpc[0]` refusing connections; `rpc[0]` holding every
//! answer (reads fail over after the hedge delay, the send goes to both).

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::time::{Duration, Instant};

use alloy::sol_types::SolCall;
use guardian::decision::Trip;
use guardian::executor::{DeliveryEvent, ExecError, Execution, Executors};
use guardian::guard::{Approved, Guard};
use guardian::policy::model::{Mode, Severity};
use tokio::sync::mpsc;

use support::Memory;

async fn set_automine(demo: &common::Demo, on: bool) {
    common::set_automine(&demo.provider, on).await;
}

/// Run `run`'s trip at `time_ms`: `pause-direct`, critical, enforced.
fn trip(run: usize, time_ms: u64) -> Trip {
    Trip {
        policy: "bench".into(),
        block: run as u64,
        time_ms,
        action: "pause-direct".into(),
        severity: Severity::Critical,
        mode: Mode::Enforce,
        evidence: serde_json::Value::Null.into(),
        summary: String::new(),
    }
}

/// Executes `approved` in a task; returns once the executor reports the
/// signed transaction accepted by the node, with the task.
async fn until_sent(
    exec: &Executors,
    approved: Approved,
    events: &mut mpsc::Receiver<DeliveryEvent>,
) -> tokio::task::JoinHandle<Result<Execution, ExecError>> {
    let e = exec.clone();
    let handle = tokio::spawn(async move { e.execute(approved, None).await });
    loop {
        match events.recv().await {
            Some(DeliveryEvent::Sent { .. }) => return handle,
            Some(_) => continue,
            None => panic!("event channel closed"),
        }
    }
}

/// Outside the timing: mines the block, waits for the pause to land, and
/// unpauses the vault through the Safe (automine back on).
async fn land_then_unpause(
    demo: &common::Demo,
    handle: tokio::task::JoinHandle<Result<Execution, ExecError>>,
) {
    common::mine(&demo.provider).await;
    handle
        .await
        .expect("the execution task")
        .expect("the pause lands");
    assert!(demo.paused().await);
    set_automine(demo, true).await;
    let unpause = common::GuardedVault::unpauseCall {}.abi_encode();
    demo.safe_exec(demo.vault, unpause).await;
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn report(name: &str, mut d: Vec<Duration>) {
    d.sort_unstable();
    println!(
        "{name}: n={} p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        d.len(),
        percentile(&d, 0.5).as_secs_f64() * 1e3,
        percentile(&d, 0.9).as_secs_f64() * 1e3,
        percentile(&d, 0.99).as_secs_f64() * 1e3,
        d[d.len() - 1].as_secs_f64() * 1e3,
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs = support::arg("--runs", 300.0) as usize;

    let demo = common::Demo::new(&[]).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = demo.config(dir.path(), "");
    let (tx, mut events) = mpsc::channel(1024);
    let exec = Executors::connect(&config, "local", &demo.keys(), Some(tx))
        .await
        .expect("executors connect to anvil");
    let mut without = Vec::with_capacity(runs);
    let mut with = Vec::with_capacity(runs);
    let mut time_ms = 0u64;
    for run in 0..runs * 2 {
        let preflight = run % 2 == 1;
        time_ms += 1_000;
        let trip = trip(run, time_ms);
        // A fresh guard per run: no cooldown carries over.
        let mut guard = Guard::new(&config);
        set_automine(&demo, false).await;
        let start = Instant::now();
        let decision = if preflight {
            guard.review(&trip, &exec).await
        } else {
            guard.review(&trip, &Memory).await
        };
        let approved = decision.into_approved().expect("the pause is approved");
        let handle = until_sent(&exec, approved, &mut events).await;
        let elapsed = start.elapsed();
        land_then_unpause(&demo, handle).await;
        // The first runs warm up connections and caches.
        if run >= 20 {
            if preflight {
                with.push(elapsed);
            } else {
                without.push(elapsed);
            }
        }
    }
    report(
        "decision -> signed tx accepted by anvil, no preflight round trips",
        without,
    );
    report(
        "decision -> signed tx accepted by anvil, with paused() read + preflight",
        with,
    );
    let two = (runs / 3).max(30);
    for (name, fault) in [
        ("two endpoints, both healthy", None),
        (
            "two endpoints, rpc[0] refusing connections",
            Some(common::fault_proxy::Fault::Refuse),
        ),
        (
            "two endpoints, rpc[0] holding every answer",
            Some(common::fault_proxy::Fault::Hang),
        ),
    ] {
        let d = through_two_endpoints(&demo, fault, two).await;
        report(
            &format!("trip -> pause in the pool (with preflight), {name}"),
            d,
        );
    }
}

/// `runs` trips through the guard (with preflight) and the executor connected
/// to two fault proxies in front of anvil, `rpc[0]` with `fault`: each timed
/// to the pause accepted into the pool.
async fn through_two_endpoints(
    demo: &common::Demo,
    fault: Option<common::fault_proxy::Fault>,
    runs: usize,
) -> Vec<Duration> {
    use common::fault_proxy::FaultProxy;
    let a = FaultProxy::start(&demo.anvil.endpoint()).await;
    let b = FaultProxy::start(&demo.anvil.endpoint()).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    demo.config(dir.path(), "");
    let path = dir.path().join("guardian.toml");
    let text = std::fs::read_to_string(&path).expect("the configuration");
    let text = text.replace(
        &format!("rpc = [\"{}\"]", demo.anvil.endpoint()),
        &format!("rpc = [\"{}\", \"{}\"]", a.http_url(), b.http_url()),
    );
    std::fs::write(&path, text).expect("the configuration");
    let config = guardian::config::Config::load(&path).expect("the configuration loads");
    let (tx, mut events) = mpsc::channel(1024);
    let exec = Executors::connect(&config, "local", &demo.keys(), Some(tx))
        .await
        .expect("executors connect through the proxies");
    if let Some(f) = fault {
        a.fail_all(f);
    }
    let mut out = Vec::with_capacity(runs);
    for run in 0..runs + 5 {
        let trip = trip(run, 1_000 * (run as u64 + 1));
        let mut guard = Guard::new(&config);
        set_automine(demo, false).await;
        let start = Instant::now();
        let approved = guard
            .review(&trip, &exec)
            .await
            .into_approved()
            .expect("the pause is approved");
        let handle = until_sent(&exec, approved, &mut events).await;
        let elapsed = start.elapsed();
        land_then_unpause(demo, handle).await;
        if run >= 5 {
            out.push(elapsed);
        }
    }
    out
}
