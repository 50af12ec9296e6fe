//! Screening throughput on a local anvil (issue 15's targets): every pending
//! transaction simulated with `eth_simulateV1` on the latest state, its what-if
//! block of 50 metrics judged by `Engine::what_if`.
//!
//! Set-up: anvil mining every second (`--block-time 1`, `--order fees`); a
//! token, a vault and a price feed; 50 metrics of every per-block kind plus one
//! unfiltered `pending` metric (so the watcher screens); policies on the
//! watched balances. Then, for `--seconds` (default 60):
//! - benign ERC20 transfers between 32 accounts at `--rate` per second (default 300);
//! - every 2 s an "attack": a transfer of 90% of a watched holder's balance,
//!   which a policy trips on.
//!
//! Printed: what was sent, screened and dropped; per 10 s window the screening
//! rate, pending seen → screened latency p50/p99, resident memory and the heap
//! in use (bytes allocated and not yet freed, counted by this bench's global
//! allocator: RSS also holds what the allocator keeps after a free); overall
//! seen → verdict (what-if judged) p50/p99 and seen → trip for the attacks.
//! A backlog shows as screened falling behind sent and latency growing per
//! window.
//!
//! Run with `cargo bench --bench screening [-- --rate 300 --seconds 60 --concurrency 4]`.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::alloc::System;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, U256, utils::parse_ether};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolCall;
use cap::Cap;
use common::{DemoToken, GWEI, Market, anvil, dry_run_network, load_config, metric};
use guardian::config::Config;
use guardian::metrics::MetricId;
use guardian::policy::{Engine, Mode, compile_str};
use guardian::source::chain::{ScreenOptions, WatchEvent, Watcher, WatcherOptions};
use support::{arg, fifty_metrics, fund_holders, owner_and_senders, quantile, rss_kib};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The tip of the attacks (the users' transfers pay 1 gwei).
const ATTACK_TIP: u128 = 3 * GWEI;

const SENDERS: usize = 32;

/// 50 per-block metrics (calls, balances, events, block stats, oracle, vault, ratio,
/// head age) over the senders' balances, and one unfiltered pending metric.
fn config(http: &str, ws: &str, market: &Market, holders: &[Address]) -> String {
    let mut t = dry_run_network(&[http], &[ws]);
    // Calls and ERC20 balances of holders 0 to 29; native balances and events of the first few.
    let holder = |i: usize| match i {
        0..30 => holders[i],
        30..35 => holders[i - 30],
        _ => holders[i - 35],
    };
    t.push_str(&fifty_metrics(
        market.token,
        market.vault,
        market.feed,
        holder,
    ));
    let pending = format!(
        "{{ kind = \"pending\", effect = {{ kind = \"erc20_balance\", token = \"{}\", holder = \"{}\", decimals = 18 }} }}",
        market.token, holders[0]
    );
    t.push_str(&metric("pending.outflow", "bench", &pending));
    t
}

/// A policy per watched call balance: down 50% within 2 blocks.
fn policies(n: usize) -> String {
    let mut p = String::new();
    for i in 0..n {
        p.push_str(&format!(
            "[[policy]]\nid = \"drop-{i}\"\ndescription = \"bench\"\nseverity = \"critical\"\naction = \"pause\"\ncooldown = \"0 blocks\"\n[policy.when]\nkind = \"change\"\nmetric = \"call.{i}\"\nwindow = \"2 blocks\"\ndirection = \"down\"\nby = \"50%\"\n\n"
        ));
    }
    p
}

/// Sends a call to `to` from `from` at `nonce`, tipping `tip` wei; its hash if the node took it.
async fn send(
    p: &DynProvider,
    from: Address,
    to: Address,
    data: Vec<u8>,
    nonce: u64,
    tip: u128,
) -> Option<alloy::primitives::B256> {
    let tx = TransactionRequest::default()
        .with_from(from)
        .with_to(to)
        .with_input(data)
        .with_nonce(nonce)
        .with_chain_id(31337)
        .with_gas_limit(100_000)
        .with_max_fee_per_gas(1_000 * GWEI)
        .with_max_priority_fee_per_gas(tip);
    Some(*p.send_transaction(tx).await.ok()?.tx_hash())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rate = arg("--rate", 300.0);
    let seconds = arg("--seconds", 60.0) as u64;
    let concurrency = arg("--concurrency", 4.0) as usize;
    let anvil = anvil(&["--block-time", "1", "--order", "fees"]);
    let (wallet, owner, holders) = owner_and_senders(&anvil, SENDERS);
    let load_wallet = wallet.clone();
    let p = ProviderBuilder::new()
        .wallet(wallet)
        .connect_http(anvil.endpoint_url())
        .erased();
    let assets = parse_ether("1000").expect("literal");
    let cap = parse_ether("1000000").expect("literal");
    let market = Market::deploy(&p, owner, cap, Some((assets, assets)), 200_000_000_000).await;
    fund_holders(&p, market.token, &holders).await;

    let text = config(&anvil.endpoint(), &anvil.ws_endpoint(), &market, &holders);
    let config = load_config("screening", &text);
    let options = WatcherOptions {
        screen: Some(ScreenOptions {
            queue: 4096,
            concurrency,
        }),
        ..WatcherOptions::default()
    };
    let watcher = Watcher::new(&config, "local", options).expect("watcher");
    println!(
        "plan: {} per-block metrics ({} requests per block) + 1 pending metric; screening concurrency {concurrency}; target {rate} tx/s for {seconds} s",
        watcher.plan().len(),
        watcher.plan().requests_per_block()
    );
    let set = compile_str("bench.toml", &policies(20), &Config::empty())
        .unwrap_or_else(|e| panic!("{e}"));
    let mut engine = Engine::new(set, Mode::Enforce);
    let (tx, mut rx) = mpsc::channel(4096);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(watcher.run(tx, cancel.clone()));
    // Warm up: a few blocks so the windows have history.
    let mut blocks = 0;
    while blocks < 3 {
        if let Some(WatchEvent::Block(s)) = rx.recv().await {
            feed_block(&mut engine, &s);
            blocks += 1;
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let attacks = Arc::new(std::sync::Mutex::new(Vec::new()));
    // The users' traffic runs on a thread and runtime of its own (as it would
    // on their machines): signing must not take the guardian's CPU time.
    let (url, token_address) = (anvil.endpoint_url(), market.token);
    let load_holders = holders.clone();
    let (load_stop, load_sent, load_attacks) = (stop.clone(), sent.clone(), attacks.clone());
    let sender = tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("the load's runtime");
        runtime.block_on(async move {
            let p = ProviderBuilder::new()
                .wallet(load_wallet)
                .connect_http(url)
                .erased();
            load(
                p,
                token_address,
                load_holders,
                rate,
                load_stop,
                load_sent,
                load_attacks,
            )
            .await
        })
    });

    let started = Instant::now();
    let mut window = (Instant::now(), 0u64, Vec::<f64>::new());
    let (mut screened, mut verdicts, mut trips_at) =
        (0u64, Millis::new(), std::collections::HashMap::new());
    let (mut screened_attacks, mut benign_trips) = (std::collections::HashSet::new(), 0u64);
    let (mut rss, mut heap) = (Vec::new(), Vec::new());
    println!("window  sent/s  screened/s  seen->screened p50/p99 ms  rss MiB  heap MiB");
    while started.elapsed() < Duration::from_secs(seconds) + Duration::from_secs(3) {
        if started.elapsed() >= Duration::from_secs(seconds) {
            stop.store(true, Ordering::Relaxed);
        }
        let event = tokio::select! {
            e = rx.recv() => e,
            _ = tokio::time::sleep(Duration::from_millis(200)) => None,
        };
        match event {
            Some(WatchEvent::Block(s)) => feed_block(&mut engine, &s),
            Some(WatchEvent::Screened(s)) => {
                screened += 1;
                window.1 += 1;
                window
                    .2
                    .push(s.screened_ms.saturating_sub(s.seen_ms) as f64);
                let samples: Vec<(MetricId, f64)> = s
                    .values
                    .iter()
                    .filter_map(|(n, v)| engine.metric_id(n).map(|m| (m, *v)))
                    .collect();
                let trips = engine.what_if(s.block, s.time_ms, &samples);
                let verdict = now_ms().saturating_sub(s.seen_ms);
                verdicts.add(verdict);
                // Attacks pay ATTACK_TIP, the users' transfers 1 gwei. Only the
                // attacks are kept by hash: a set of every benign hash would
                // grow the bench's own memory for the whole run.
                if s.tx.max_priority_fee_per_gas == Some(ATTACK_TIP) {
                    screened_attacks.insert(s.tx.hash);
                    if !trips.is_empty() {
                        trips_at.entry(s.tx.hash).or_insert(verdict as f64);
                    }
                } else if !trips.is_empty() {
                    // A victim's drop mined in the last 2 blocks is still in the
                    // window: a benign transfer's what-if trips on it too.
                    benign_trips += 1;
                }
            }
            _ => {}
        }
        if window.0.elapsed() >= Duration::from_secs(10) {
            let secs = window.0.elapsed().as_secs_f64();
            let (mem, live) = (rss_kib(), heap_kib());
            rss.push(mem);
            heap.push(live);
            println!(
                "{:>4} s  {:>6.0}  {:>10.0}  {:>8.1} / {:<8.1}  {:>7.1}  {:>8.1}",
                started.elapsed().as_secs(),
                sent.swap(0, Ordering::Relaxed) as f64 / secs,
                window.1 as f64 / secs,
                quantile(&mut window.2, 0.5),
                quantile(&mut window.2, 0.99),
                mem as f64 / 1024.0,
                live as f64 / 1024.0
            );
            window = (Instant::now(), 0, Vec::new());
        }
    }
    stop.store(true, Ordering::Relaxed);
    let total_sent = sender.await.expect("sender");
    cancel.cancel();
    let _ = task.await;
    let attacks = attacks.lock().map(|a| a.clone()).unwrap_or_default();
    let mut attack_latency: Vec<f64> = attacks
        .iter()
        .filter_map(|h| trips_at.get(h).copied())
        .collect();
    println!(
        "sent {total_sent} pending transactions ({:.0}/s); screened {screened} (what-if blocks emitted; reverting ones are not); {benign_trips} benign ones tripped (a drop mined within the policies' 2-block window)",
        total_sent as f64 / seconds as f64
    );
    println!(
        "pending seen -> verdict (simulated and judged by Engine::what_if): n={} p50={:.1} ms p99={:.1} ms max={:.1} ms",
        verdicts.count(),
        verdicts.quantile(0.5),
        verdicts.quantile(0.99),
        verdicts.max
    );
    println!(
        "attacks: {} sent, {} screened (an attack mined before its screening is not), {} tripped; pending seen -> trip p50={:.1} ms p99={:.1} ms",
        attacks.len(),
        attacks
            .iter()
            .filter(|h| screened_attacks.contains(*h))
            .count(),
        attack_latency.len(),
        quantile(&mut attack_latency.clone(), 0.5),
        quantile(&mut attack_latency, 0.99)
    );
    println!(
        "resident memory per 10 s window, MiB: {:?}",
        rss.iter().map(|k| k / 1024).collect::<Vec<_>>()
    );
    println!(
        "heap in use per 10 s window, MiB: {:?}",
        heap.iter().map(|k| k / 1024).collect::<Vec<_>>()
    );
}

/// Counts of whole milliseconds, in one allocation made up front: the bench
/// keeps its latencies without growing, so the memory it prints is the
/// screening's. Values past the last bucket count in it; `max` is exact.
struct Millis {
    counts: Vec<u32>,
    max: u64,
}

impl Millis {
    const BUCKETS: usize = 60_001;

    fn new() -> Self {
        Self {
            counts: vec![0; Self::BUCKETS],
            max: 0,
        }
    }

    fn add(&mut self, ms: u64) {
        self.counts[(ms as usize).min(Self::BUCKETS - 1)] += 1;
        self.max = self.max.max(ms);
    }

    fn count(&self) -> u64 {
        self.counts.iter().map(|&c| u64::from(c)).sum()
    }

    /// The smallest value at or below which a share `q` of the counts lie.
    fn quantile(&self, q: f64) -> f64 {
        let want = ((self.count() as f64 * q).ceil() as u64).max(1);
        let mut seen = 0;
        for (ms, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= want {
                return ms as f64;
            }
        }
        f64::NAN
    }
}

/// The system allocator, counting the bytes allocated and not yet freed, so
/// the bench can tell memory the program holds from memory the allocator
/// keeps (which RSS also counts).
#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

/// The heap in use, KiB.
fn heap_kib() -> u64 {
    (ALLOCATOR.allocated() / 1024) as u64
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn feed_block(engine: &mut Engine, s: &guardian::source::chain::Snapshot) {
    for (name, v) in &s.values {
        if let Some(metric) = engine.metric_id(name) {
            engine.on_sample(
                guardian::metrics::Sample {
                    block: s.number,
                    time_ms: s.time_ms,
                    metric,
                    value: *v,
                },
                &mut |_| {},
            );
        }
    }
}

/// Sends benign transfers at `rate` (12 accounts in parallel, each its own
/// nonces), and every 2 s an attack (90% of a watched holder's tokens out);
/// returns how many were sent.
async fn load(
    p: DynProvider,
    token: Address,
    holders: Vec<Address>,
    rate: f64,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    attacks: Arc<std::sync::Mutex<Vec<alloy::primitives::B256>>>,
) -> u64 {
    let senders: Vec<usize> = (20..32).collect();
    let period = Duration::from_secs_f64(senders.len() as f64 / rate);
    let mut tasks = Vec::new();
    for (j, &i) in senders.iter().enumerate() {
        let (p, stop, sent, holders) = (p.clone(), stop.clone(), sent.clone(), holders.clone());
        tasks.push(tokio::spawn(async move {
            let start = Instant::now() + period.mul_f64(j as f64 / 12.0);
            let (mut k, mut total, mut nonce) = (0u32, 0u64, None::<u64>);
            while !stop.load(Ordering::Relaxed) {
                if let Some(wait) = (start + period * k).checked_duration_since(Instant::now()) {
                    tokio::time::sleep(wait).await;
                }
                k += 1;
                let to = holders[(k as usize * 7 + j) % holders.len()];
                let data = DemoToken::transferCall {
                    to,
                    value: parse_ether("1").expect("literal"),
                }
                .abi_encode();
                let n = match nonce {
                    Some(n) => n,
                    None => p
                        .get_transaction_count(holders[i])
                        .pending()
                        .await
                        .unwrap_or(0),
                };
                if send(&p, holders[i], token, data, n, GWEI).await.is_some() {
                    nonce = Some(n + 1);
                    total += 1;
                    sent.fetch_add(1, Ordering::Relaxed);
                } else {
                    nonce = None;
                }
            }
            total
        }));
    }
    let mut total = 0;
    let mut victim = 0usize;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_secs(2)).await;
        // Drain 90% of one of the first 20 holders (each a `call.i` metric with a policy).
        let from = holders[victim % 20];
        victim += 1;
        let balance = DemoToken::new(token, &p)
            .balanceOf(from)
            .call()
            .await
            .unwrap_or_default();
        let data = DemoToken::transferCall {
            to: holders[31],
            value: balance * U256::from(9) / U256::from(10),
        }
        .abi_encode();
        let Ok(nonce) = p.get_transaction_count(from).pending().await else {
            continue;
        };
        if let Some(hash) = send(&p, from, token, data, nonce, ATTACK_TIP).await {
            if let Ok(mut a) = attacks.lock() {
                a.push(hash);
            }
            total += 1;
            sent.fetch_add(1, Ordering::Relaxed);
        }
    }
    for t in tasks {
        total += t.await.unwrap_or_default();
    }
    total
}
