//! Live-watcher latencies on a local anvil (issue 4's performance targets):
//!
//! 1. head received → snapshot of 50 metrics complete (target p99 ≤ 50 ms):
//!    a `newHeads` subscription delivers each head; the 50-metric read plan is
//!    read at that head's hash over HTTP (one JSON-RPC batch).
//! 2. the same, end to end through `Watcher::run`: from `evm_mine` returning to
//!    the snapshot arriving on the watcher's channel.
//! 3. pending transaction received → effect metric emitted (target p99 ≤ 20 ms):
//!    a full-body pending subscription delivers each attack transaction (mining
//!    off); `PendingWatch::on_transaction` filters and simulates it.
//!
//! 4. with `-- --sustained SECONDS`: only the sustained run, 1 s blocks (anvil
//!    `--block-time 1`) with 50 metrics through `Watcher::run`, checking that no
//!    block is skipped and printing resident memory over time.
//!
//! Run with `cargo bench --bench watcher` (or `-- --sustained 600`). Prints p50/p99/max per measurement.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256, utils::parse_ether};
use alloy::providers::Provider;
use common::{
    DemoToken, Market, MessageReplica, ReplicaCopycatAttack, anvil, dry_run_network, load_config,
    metric, mined, provider_with,
};
use futures_util::StreamExt;
use guardian::config::Config;
use guardian::source::chain::{Head, PendingWatch, WatchEvent, Watcher, WatcherOptions};
use support::{fifty_metrics, report, rss_kib};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const BLOCKS: usize = 300;
const PENDING: usize = 300;

fn holder(i: usize) -> Address {
    Address::left_padding_from(&(0x1000 + i as u64).to_be_bytes())
}

/// The token, vault and feed, and the configuration of the 50 metrics on them.
/// `fill`: see [`Market::deploy`].
async fn fifty(
    anvil: &alloy::node_bindings::AnvilInstance,
    name: &str,
    fill: Option<(U256, U256)>,
) -> (Market, Config) {
    let p = provider_with(anvil, &[0]);
    let (owner, cap) = (anvil.addresses()[0], parse_ether("1000000").unwrap());
    let market = Market::deploy(&p, owner, cap, fill, 200_000_000_000).await;
    let mut text = dry_run_network(&[&anvil.endpoint()], &[&anvil.ws_endpoint()]);
    text.push_str(&fifty_metrics(
        market.token,
        market.vault,
        market.feed,
        holder,
    ));
    (market, load_config(name, &text))
}

async fn snapshots() {
    let anvil = anvil(&[]);
    let p = provider_with(&anvil, &[0]);
    // A non-empty vault, so the share price (a ratio) has a denominator.
    let assets = parse_ether("1000").expect("literal");
    let (_market, config) = fifty(&anvil, "fifty", Some((assets, assets))).await;
    let watcher = Watcher::new(&config, "local", WatcherOptions::default()).expect("watcher");
    assert_eq!(watcher.plan().len(), 50);
    println!(
        "plan: {} metrics, {} requests in one batch per block",
        watcher.plan().len(),
        watcher.plan().requests_per_block()
    );
    let client = watcher.read_client().await.expect("client");

    // 1. head received -> snapshot complete.
    let ws = support::ws(&anvil.ws_endpoint()).await;
    let mut heads = ws
        .subscribe_blocks()
        .await
        .expect("subscribe")
        .into_stream();
    let mut latencies = Vec::with_capacity(BLOCKS);
    for _ in 0..BLOCKS {
        let _: String = p.raw_request("evm_mine".into(), ()).await.expect("mine");
        let header = heads.next().await.expect("a head");
        let received = Instant::now();
        let snapshot = watcher
            .plan()
            .read(&client, &Head::from(&header))
            .await
            .expect("read");
        latencies.push(received.elapsed());
        assert!(
            snapshot
                .failed
                .iter()
                .all(|(m, _)| m.starts_with("chain.priority_fee")),
            "{:?}",
            snapshot.failed
        );
    }
    report(
        "head received -> 50-metric snapshot (ReadPlan::read, HTTP batch)",
        latencies,
    );

    // 2. end to end through the watcher.
    let (tx, mut rx) = mpsc::channel(16);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(watcher.run(tx, cancel.clone()));
    let first = match rx.recv().await {
        Some(WatchEvent::Block(s)) => s.number,
        other => panic!("expected a block, got {other:?}"),
    };
    let mut latencies = Vec::with_capacity(BLOCKS);
    for i in 1..=BLOCKS as u64 {
        let start = Instant::now();
        let _: String = p.raw_request("evm_mine".into(), ()).await.expect("mine");
        loop {
            match rx.recv().await {
                Some(WatchEvent::Block(s)) if s.number == first + i => break,
                Some(WatchEvent::Block(s)) => panic!("block {} out of order", s.number),
                Some(_) => continue,
                None => panic!("the watcher stopped"),
            }
        }
        latencies.push(start.elapsed());
    }
    cancel.cancel();
    task.await.expect("join").expect("watcher");
    report(
        "evm_mine sent -> snapshot on the watcher's channel (WS heads, end to end)",
        latencies,
    );
}

async fn pending() {
    let anvil = anvil(&[]);
    let p = provider_with(&anvil, &[0, 2]);
    let owner = anvil.addresses()[0];
    let attacker = anvil.addresses()[2];
    let token = DemoToken::deploy(&p, "Bridged".into(), "b".into(), owner)
        .await
        .expect("deploy");
    let replica = MessageReplica::deploy(&p, owner, 1000, owner, U256::ZERO, Default::default())
        .await
        .expect("deploy");
    mined(token.mint(*replica.address(), parse_ether("1000000").expect("literal"))).await;
    let attack = ReplicaCopycatAttack::deploy(
        &p,
        *replica.address(),
        *token.address(),
        parse_ether("1").expect("literal"),
    )
    .await
    .expect("deploy");
    let outflow = format!(
        "{{ kind = \"pending\", to = \"{}\", selector = \"attack()\", effect = {{ kind = \"erc20_balance\", token = \"{}\", holder = \"{}\", decimals = 18 }} }}",
        attack.address(),
        token.address(),
        replica.address()
    );
    let mut text = dry_run_network(&[&anvil.endpoint()], &[&anvil.ws_endpoint()]);
    text.push_str(&metric("bridge.pending_outflow", "bench", &outflow));
    let config = load_config("pending", &text);
    let watcher = Watcher::new(&config, "local", WatcherOptions::default()).expect("watcher");
    let client = watcher.read_client().await.expect("client");
    let mut watch = PendingWatch::new(&config.metrics);
    let head = p.get_block_number().await.expect("head");
    let _: serde_json::Value = p
        .raw_request("evm_setAutomine".into(), (false,))
        .await
        .expect("automine off");
    let ws = support::ws(&anvil.ws_endpoint()).await;
    let mut txs = ws
        .subscribe_full_pending_transactions()
        .await
        .expect("subscribe")
        .into_stream();
    let mut latencies = Vec::with_capacity(PENDING);
    for _ in 0..PENDING {
        let _sent = attack
            .attack()
            .from(attacker)
            .gas(300_000)
            .send()
            .await
            .expect("send");
        let tx = txs.next().await.expect("a pending tx");
        let received = Instant::now();
        let effects = watch
            .on_transaction(&client, head, &tx)
            .await
            .expect("estimate");
        latencies.push(received.elapsed());
        assert_eq!(effects.len(), 1);
        assert_eq!(effects[0].value, 1.0);
    }
    report(
        "pending tx received -> effect metric (filters + eth_simulateV1)",
        latencies,
    );
}

async fn sustained(seconds: u64) {
    let anvil = anvil(&["--block-time", "1"]);
    let (_market, config) = fifty(&anvil, "sustained", None).await;
    let watcher = Watcher::new(&config, "local", WatcherOptions::default()).expect("watcher");
    let (tx, mut rx) = mpsc::channel(16);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(watcher.run(tx, cancel.clone()));
    let started = Instant::now();
    let mut last: Option<u64> = None;
    let (mut blocks, mut samples, mut skipped) = (0u64, 0u64, 0u64);
    let mut rss = Vec::new();
    let mut next_report = Duration::from_secs(10);
    while started.elapsed() < Duration::from_secs(seconds) {
        match rx.recv().await {
            Some(WatchEvent::Block(s)) => {
                if let Some(prev) = last
                    && s.number != prev + 1
                {
                    skipped += s.number.saturating_sub(prev + 1);
                    println!("gap: block {} after {prev}", s.number);
                }
                last = Some(s.number);
                blocks += 1;
                samples += s.values.len() as u64;
            }
            Some(_) => {}
            None => panic!("the watcher stopped"),
        }
        if started.elapsed() >= next_report {
            rss.push((started.elapsed().as_secs(), rss_kib()));
            next_report += Duration::from_secs(60);
        }
    }
    cancel.cancel();
    task.await.expect("join").expect("watcher");
    println!(
        "sustained {seconds} s of 1 s blocks: {blocks} blocks, {samples} samples, {skipped} skipped; RSS (s, KiB): {rss:?}"
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--sustained") {
        let seconds = args
            .get(i + 1)
            .and_then(|s| s.parse().ok())
            .expect("--sustained takes a number of seconds");
        rt.block_on(sustained(seconds));
        return;
    }
    rt.block_on(async {
        snapshots().await;
        pending().await;
    });
}
