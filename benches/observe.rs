//! What observing costs the pipeline's hot path: the probe calls a watcher and
//! the engine make per block and per trip, with metrics and alert channels on.
//!
//! 1. `Probe::head` (per block per network: gauges, counters, readiness);
//! 2. `Probe::report` for a trip (counter, histogram, an alert raised);
//! 3. `Telemetry::encode` (one `/metrics` scrape).
//!
//! Alerts go to one webhook channel whose server never answers, so their queue
//! fills and raising also measures the drop path (count + log), the worst case.
//! Run with `cargo bench --bench observe`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use guardian::alerts::{self};
use guardian::config::{NotifyDef, NotifyKind, UrlSource};
use guardian::decision::Trip;
use guardian::observe::{Probe, Telemetry};
use guardian::pipeline::Report;
use guardian::policy::model::{Mode, Severity};

fn per_call(n: u32, mut f: impl FnMut(u32)) -> Duration {
    let start = Instant::now();
    for i in 0..n {
        f(i);
    }
    start.elapsed() / n
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let telemetry = Arc::new(Telemetry::new(Duration::from_secs(60)));
        let def = NotifyDef {
            name: "ops".into(),
            kind: NotifyKind::Webhook,
            url: UrlSource::Inline(format!("http://{}/hook", silent.local_addr().unwrap())),
            secret_env: None,
            routing_key_env: None,
            cooldown_ms: 0,
            retries: 0,
            timeout_ms: 60_000,
            operational: true,
        };
        let endpoints = alerts::endpoints([def], &|_| None).unwrap();
        let (alerts, task) = alerts::spawn(endpoints, telemetry.clone()).unwrap();
        let probe = Probe::new(telemetry.clone(), Some(alerts));
        probe.watching(&["mainnet".to_string()], true);

        let head = per_call(1_000_000, |i| probe.head("mainnet", u64::from(i), 1, 50, 0));
        let trip = Report::Trip {
            trip: Trip {
                policy: "vault-drain".into(),
                block: 1,
                time_ms: 0,
                action: "pause-vault".into(),
                severity: Severity::Critical,
                mode: Mode::Enforce,
                evidence: serde_json::json!({ "change_pct": -50.0 }).into(),
                summary: "vault.total_assets fell 50%".into(),
            },
            pending: None,
        };
        let trips = per_call(100_000, |_| probe.report(&trip));
        let encode = per_call(1_000, |_| {
            std::hint::black_box(telemetry.encode());
        });
        println!(
            "Probe::head (per block):          {:>8.0} ns",
            head.as_nanos() as f64
        );
        println!(
            "Probe::report(Trip) incl. alert:  {:>8.0} ns",
            trips.as_nanos() as f64
        );
        println!(
            "Telemetry::encode (/metrics):     {:>8.1} µs",
            encode.as_nanos() as f64 / 1000.0
        );
        task.finish(Duration::from_millis(100)).await;
    });
}
