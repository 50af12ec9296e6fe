//! Front-running and end to end on anvil: 2 s blocks, fee-ordered mining, the
//! attack broadcast at a uniformly random moment in the slot.
//!
//! `cargo bench --bench frontrun` (options after `--`, or in the environment):
//!
//! - `--trials N` (`GUARDIAN_BENCH_TRIALS`, default 100): mempool-visible trials;
//! - `--mined-trials N` (`GUARDIAN_BENCH_MINED_TRIALS`, default: the same as
//!   `--trials`): mined-only trials; 0 skips that part;
//! - `--seed S` (default 1): the random offsets, reproducible;
//! - `--max-left-ms X` (`GUARDIAN_BENCH_MAX_LEFT_MS`, default 2000, the whole
//!   slot): mempool-visible attacks are broadcast uniformly in the last X ms
//!   of the slot instead, to look closely at the late end where the pause can
//!   miss the block;
//! - `--csv FILE`: one line per trial, for a closer look.
//!
//! Setup: the demo's chain and bridge (`guardian::demo::deploy` with
//! `DEMO_CHAIN`: anvil `--order fees --block-time 2`, a Nomad-shape replica
//! holding 1000 bUSD, the copycat attack contract, the guardian's key with the
//! pauser role), deployed once. Each mode runs one `guardian::pipeline::run`,
//! exactly as `guardian run` does, for all its trials; the bench has its own
//! WebSocket subscriptions to heads and pending transactions, which timestamp
//! each block's arrival and each transaction's entry into the pool.
//!
//! One trial: wait for a block, sleep a uniformly random offset in [0, 2 s),
//! broadcast the attack (signed beforehand: the clock starts right before
//! `eth_sendRawTransaction`), then wait for the guardian's pause to land.
//! Recorded: the time left before the next block's arrival at broadcast, the
//! blocks and indices of the pause and the attack, and attack broadcast →
//! pause mined (the arrival of the pause's block). Between trials the scenario
//! is re-armed on the same chain, outside the timing: the deployer (the
//! replica's admin) unpauses the replica and mints back what the attack took;
//! the guardian keeps running, as it would in production.
//!
//! - **mempool-visible**: the demo's configuration and policy (the attack's
//!   effect is estimated while it is pending); cooldown 1 block instead of 10
//!   so that consecutive trials can trip.
//! - **mined-only**: the same configuration without the pending metric, so no
//!   pending transaction is watched; the policy trips on the bridge's balance
//!   read at the attack's block, and the pause lands in a later block.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy::eips::eip2718::Encodable2718;
use alloy::network::{EthereumWallet, NetworkTransactionBuilder, TransactionBuilder};
use alloy::primitives::B256;
use alloy::primitives::utils::parse_ether;
use alloy::providers::{Provider, ProviderBuilder};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use common::pipeline::guarding_bridge;
use futures_util::StreamExt;
use guardian::demo::{self, Bridge, DemoToken, MessageReplica, ReplicaCopycatAttack};
use guardian::executor::Execution;
use guardian::pipeline::Report;
use rand08::{Rng, SeedableRng, rngs::StdRng};
use tokio::sync::watch;

const GWEI: u128 = 1_000_000_000;
const SLOT: Duration = Duration::from_secs(2);
/// Time-left buckets, upper bounds in ms (the last is open).
const BUCKETS: [(u64, &str); 8] = [
    (10, "< 10 ms"),
    (20, "10–20 ms"),
    (50, "20–50 ms"),
    (100, "50–100 ms"),
    (200, "100–200 ms"),
    (500, "200–500 ms"),
    (1000, "500–1000 ms"),
    (u64::MAX, "≥ 1000 ms"),
];

/// The mined-only policy: the bridge lost 10% or more of its tokens in a mined block.
/// Cooldown 3 blocks: the balance stays low in the attack's block and the
/// pause's block; the next trial's attack is at least three blocks later.
const MINED_POLICY: &str = r#"
[[policy]]
id = "bridge-drained"
description = "The bridge holds less than 90% of its tokens"
severity = "critical"
action = "pause-bridge"
cooldown = "3 blocks"
[policy.when]
kind = "threshold"
metric = "bridge.balance"
op = "<"
value = 900
"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Mempool,
    MinedOnly,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Mempool => "mempool-visible",
            Mode::MinedOnly => "mined-only",
        }
    }
}

/// When each block and each pending transaction reached the bench's own subscriptions.
#[derive(Clone)]
struct Arrivals {
    heads: Arc<Mutex<HashMap<u64, Instant>>>,
    pool: Arc<Mutex<HashMap<B256, Instant>>>,
    latest: watch::Receiver<u64>,
}

impl Arrivals {
    async fn start(ws: &str) -> Self {
        let provider = support::ws(ws).await;
        let mut blocks = provider
            .subscribe_blocks()
            .await
            .expect("subscribe to heads")
            .into_stream();
        let mut txs = provider
            .subscribe_pending_transactions()
            .await
            .expect("subscribe to pending transactions")
            .into_stream();
        let heads = Arc::new(Mutex::new(HashMap::new()));
        let pool = Arc::new(Mutex::new(HashMap::new()));
        let (latest_tx, latest) = watch::channel(0);
        let h = heads.clone();
        tokio::spawn(async move {
            while let Some(header) = blocks.next().await {
                h.lock().unwrap().insert(header.number, Instant::now());
                latest_tx.send_replace(header.number);
            }
        });
        let p = pool.clone();
        tokio::spawn(async move {
            // Keeps the connection open as long as the subscriptions run.
            let _provider = provider;
            while let Some(hash) = txs.next().await {
                p.lock().unwrap().insert(hash, Instant::now());
            }
        });
        Self {
            heads,
            pool,
            latest,
        }
    }

    /// Waits for the next block; returns its number and arrival.
    async fn next_head(&mut self) -> (u64, Instant) {
        self.latest.borrow_and_update();
        tokio::time::timeout(Duration::from_secs(10), self.latest.changed())
            .await
            .expect("a block within 10 s")
            .expect("the head subscription runs");
        let n = *self.latest.borrow_and_update();
        (n, self.head(n).await)
    }

    /// When block `n` arrived (waits for it, briefly, if the receipt came first).
    async fn head(&self, n: u64) -> Instant {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(t) = self.heads.lock().unwrap().get(&n) {
                return *t;
            }
            assert!(Instant::now() < deadline, "block {n} never arrived");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn pooled(&self, tx: B256) -> Option<Instant> {
        self.pool.lock().unwrap().get(&tx).copied()
    }
}

/// One trial's observations.
#[derive(Debug, Clone)]
struct Trial {
    offset_ms: f64,
    /// Arrival of the first block after the broadcast, minus the broadcast.
    left_ms: f64,
    attack_block: u64,
    attack_index: u64,
    attack_succeeded: bool,
    /// The first block after the broadcast; the attack may miss it if it raced the sealing.
    next_block: u64,
    pause_block: Option<u64>,
    pause_index: Option<u64>,
    /// Broadcast → the watcher saw the attack pending (its recorded sample's time, whole ms).
    seen_ms: Option<f64>,
    /// The attack's effect as the watcher estimated it (bUSD; 1000 is the whole bridge).
    estimate: Option<f64>,
    /// Broadcast → the guardian's trip report.
    trip_ms: Option<f64>,
    /// Broadcast → the pause entered anvil's pool (the bench's pending subscription).
    pooled_ms: Option<f64>,
    /// Broadcast → arrival of the pause's block.
    mined_ms: Option<f64>,
    failure: Option<String>,
}

impl Trial {
    fn ahead(&self) -> bool {
        self.pause_block == Some(self.attack_block)
            && self.pause_index.is_some_and(|i| i < self.attack_index)
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The time (unix ms) and value of the recording's last `bridge.pending_outflow`
/// sample attributed to a block after `head` (rows: `block,time_ms,metric,value`).
fn pending_sample(record: &Path, head: u64) -> Option<(u64, f64)> {
    let text = std::fs::read_to_string(record).ok()?;
    text.lines()
        .filter_map(|line| {
            let mut f = line.split(',');
            let (b, t, m, v) = (f.next()?, f.next()?, f.next()?, f.next()?);
            let b: u64 = b.parse().ok()?;
            (m == "bridge.pending_outflow" && b > head)
                .then(|| Some((t.parse().ok()?, v.parse().ok()?)))
                .flatten()
        })
        .next_back()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn since(t: Instant, start: Instant) -> f64 {
    if t >= start {
        ms(t - start)
    } else {
        -ms(start - t)
    }
}

async fn receipt(b: &Bridge, hash: B256) -> TransactionReceipt {
    demo::receipt_every(b, hash, Duration::from_millis(20))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Unpauses the replica and mints back what an attack took (the deployer is its admin).
async fn rearm(b: &Bridge) {
    let replica = MessageReplica::new(b.replica, &b.provider);
    let token = DemoToken::new(b.token, &b.provider);
    let full = parse_ether(demo::LIQUIDITY).expect("liquidity");
    let mut pending = Vec::new();
    if replica.paused().call().await.expect("read paused()") {
        pending.push(replica.unpause().send().await.expect("send unpause()"));
    }
    let left = token
        .balanceOf(b.replica)
        .call()
        .await
        .expect("read the bridge's balance");
    if left < full {
        pending.push(
            token
                .mint(b.replica, full - left)
                .send()
                .await
                .expect("send mint()"),
        );
    }
    for p in pending {
        let r = receipt(b, *p.tx_hash()).await;
        assert!(r.status(), "re-arming failed: {r:?}");
    }
}

/// The attack, signed with the attacker's next nonce (tip 3 gwei, fee cap 50 gwei, as the demo's).
async fn signed_attack(b: &Bridge, attacker: &EthereumWallet) -> Vec<u8> {
    let nonce = b
        .provider
        .get_transaction_count(b.attacker)
        .await
        .expect("the attacker's nonce");
    let request = TransactionRequest::default()
        .with_from(b.attacker)
        .with_to(b.attack)
        .with_input(ReplicaCopycatAttack::attackCall {}.abi_encode())
        .with_nonce(nonce)
        .with_chain_id(31337)
        .with_gas_limit(300_000)
        .with_max_priority_fee_per_gas(3 * GWEI)
        .with_max_fee_per_gas(50 * GWEI);
    request
        .build(attacker)
        .await
        .expect("sign the attack")
        .encoded_2718()
}

fn without_pending_metric(config: &str) -> String {
    let start = config
        .find("[metrics.\"bridge.pending_outflow\"]")
        .expect("the demo configuration has the pending metric");
    let end = start
        + config[start..]
            .find("[actions.")
            .expect("the demo configuration has actions after its metrics");
    format!("{}{}", &config[..start], &config[end..])
}

/// `--unfiltered` (`GUARDIAN_BENCH_UNFILTERED=1`): the pending metric without
/// its `to`/`selector` filters, so every pending transaction is screened, with
/// a benign mempool of `--mempool-rate` (default 100) transfers per second.
fn unfiltered() -> bool {
    std::env::args().any(|a| a == "--unfiltered")
        || std::env::var("GUARDIAN_BENCH_UNFILTERED").is_ok_and(|v| v == "1")
}

fn mempool_rate() -> f64 {
    let args: Vec<String> = std::env::args().collect();
    option(&args, "--mempool-rate", "GUARDIAN_BENCH_MEMPOOL_RATE").unwrap_or(100.0)
}

/// The demo configuration with the pending metric's filters removed.
fn without_pending_filters(config: &str) -> String {
    let start = config
        .find("source = { kind = \"pending\", to = ")
        .expect("the demo configuration has a filtered pending metric");
    let effect = start + config[start..].find("effect = ").expect("an effect");
    format!(
        "{}source = {{ kind = \"pending\", {}",
        &config[..start],
        &config[effect..]
    )
}

/// Benign ETH transfers among 16 fresh accounts at `rate` per second until
/// `stop`; returns (sent, refused).
async fn benign_mempool(
    url: reqwest::Url,
    rate: f64,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (u64, u64) {
    let keys: Vec<PrivateKeySigner> = (0..16).map(|_| PrivateKeySigner::random()).collect();
    let mut wallet = EthereumWallet::from(keys[0].clone());
    for k in &keys[1..] {
        wallet.register_signer(k.clone());
    }
    let p = ProviderBuilder::new()
        .wallet(wallet)
        .connect_http(url)
        .erased();
    let chain_id = p.get_chain_id().await.expect("chain id");
    for k in &keys {
        let _: serde_json::Value = p
            .raw_request(
                "anvil_setBalance".into(),
                (k.address(), parse_ether("1000").expect("literal")),
            )
            .await
            .expect("fund a mempool account");
    }
    let n = keys.len();
    let period = Duration::from_secs_f64(n as f64 / rate);
    let mut tasks = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let (p, stop, from, to) = (
            p.clone(),
            stop.clone(),
            k.address(),
            keys[(i + 1) % n].address(),
        );
        tasks.push(tokio::spawn(async move {
            let (mut sent, mut refused, mut nonce) = (0u64, 0u64, None::<u64>);
            let start = Instant::now() + period.mul_f64(i as f64 / n as f64);
            let mut j = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(w) = (start + period * j).checked_duration_since(Instant::now()) {
                    tokio::time::sleep(w).await;
                }
                j += 1;
                let current = match nonce {
                    Some(x) => x,
                    None => p.get_transaction_count(from).pending().await.unwrap_or(0),
                };
                let tx = TransactionRequest::default()
                    .with_from(from)
                    .with_to(to)
                    .with_value(parse_ether("0.001").expect("literal"))
                    .with_nonce(current)
                    .with_chain_id(chain_id)
                    .with_gas_limit(21_000)
                    .with_max_fee_per_gas(200_000_000_000)
                    .with_max_priority_fee_per_gas(1_000_000_000);
                match p.send_transaction(tx).await {
                    Ok(_) => {
                        sent += 1;
                        nonce = Some(current + 1);
                    }
                    Err(_) => {
                        refused += 1;
                        nonce = None;
                    }
                }
            }
            (sent, refused)
        }));
    }
    let mut total = (0, 0);
    for t in tasks {
        let (s, r) = t.await.unwrap_or_default();
        total = (total.0 + s, total.1 + r);
    }
    total
}

/// Runs `trials` trials of `mode` with one guardian pipeline.
async fn run_mode(
    b: &Bridge,
    mode: Mode,
    trials: usize,
    max_left: Duration,
    rng: &mut StdRng,
    arrivals: &mut Arrivals,
) -> Vec<Trial> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (config_text, policy) = match mode {
        Mode::Mempool => {
            let policy = demo::POLICY.replace("cooldown = \"10 blocks\"", "cooldown = \"1 block\"");
            assert_ne!(policy, demo::POLICY, "the demo policy's cooldown changed");
            let text = demo::config_text(b);
            if unfiltered() {
                (without_pending_filters(&text), policy)
            } else {
                (text, policy)
            }
        }
        Mode::MinedOnly => (
            without_pending_metric(&demo::config_text(b)),
            MINED_POLICY.to_string(),
        ),
    };
    let record = dir.path().join("trace.csv");
    let mut guardian = guarding_bridge(b, &config_text, &policy, &record, ",bridge.balance,").await;

    let attacker = EthereumWallet::from(PrivateKeySigner::from(b.anvil.keys()[6].clone()));
    // With --unfiltered, benign traffic runs through every trial of the mode.
    let stop_mempool = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // On a thread and runtime of its own: users' signing is not the guardian's CPU time.
    let mempool = (unfiltered() && mode == Mode::Mempool).then(|| {
        let (url, rate, stop) = (b.anvil.endpoint_url(), mempool_rate(), stop_mempool.clone());
        tokio::task::spawn_blocking(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the mempool's runtime")
                .block_on(benign_mempool(url, rate, stop))
        })
    });
    let mut out = Vec::with_capacity(trials);
    for i in 0..trials {
        rearm(b).await;
        let raw = signed_attack(b, &attacker).await;
        // Reports of the previous trial (e.g. an "already paused" decision) are not this one's.
        while guardian.reports.try_recv().is_ok() {}
        let (head, arrived) = arrivals.next_head().await;
        let earliest = SLOT.saturating_sub(max_left).as_secs_f64();
        let offset = Duration::from_secs_f64(rng.gen_range(earliest..SLOT.as_secs_f64()));
        tokio::time::sleep_until((arrived + offset).into()).await;
        let broadcast = Instant::now();
        let broadcast_unix_ms = unix_ms();
        let latest = *arrivals.latest.borrow();
        let sent = b
            .provider
            .send_raw_transaction(&raw)
            .await
            .expect("broadcast the attack");
        let attack_hash = *sent.tx_hash();

        let mut trip_at = None;
        let mut pause = None;
        let mut failure = None;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while pause.is_none() && failure.is_none() {
            let report = match tokio::time::timeout_at(deadline, guardian.reports.recv()).await {
                Ok(Some(r)) => r,
                Ok(None) => panic!("the pipeline stopped: {:?}", (&mut guardian.task).await),
                Err(_) => {
                    failure = Some("no pause within 30 s".to_string());
                    break;
                }
            };
            match report {
                Report::Trip { .. } => trip_at = trip_at.or(Some(Instant::now())),
                Report::Decision {
                    approved: false,
                    outcome,
                    ..
                } => failure = Some(format!("guard: {outcome}")),
                Report::Executed {
                    execution: Execution::Landed { tx, block, .. },
                    ..
                } => pause = Some((tx, block)),
                Report::Executed { execution, .. } => {
                    failure = Some(format!("not landed: {execution:?}"));
                }
                Report::ExecutionFailed { error, .. } => failure = Some(error),
                Report::Decision { .. } | Report::ReorgedOut { .. } => {}
            }
        }
        let attack = receipt(b, attack_hash).await;
        let attack_block = attack.block_number.expect("a mined receipt has a block");
        let next_block = latest + 1;
        let left_ms = since(arrivals.head(next_block).await, broadcast);
        let (mut pause_block, mut pause_index, mut pooled_ms, mut mined_ms) =
            (None, None, None, None);
        if let Some((tx, block)) = pause {
            let r = receipt(b, tx).await;
            pause_block = Some(block);
            pause_index = r.transaction_index;
            pooled_ms = arrivals.pooled(tx).map(|t| since(t, broadcast));
            mined_ms = Some(since(arrivals.head(block).await, broadcast));
        }
        // The watcher's recording: the pending sample (mempool-visible) it made of the attack.
        let (seen_ms, estimate) = match mode {
            // The previous trial's attack was mined before `head`; this one's is attributed after it.
            Mode::Mempool => pending_sample(&record, head).map_or((None, None), |(t, v)| {
                (Some(t as f64 - broadcast_unix_ms as f64), Some(v))
            }),
            Mode::MinedOnly => (None, None),
        };
        let trial = Trial {
            offset_ms: ms(offset),
            seen_ms,
            estimate,
            left_ms,
            attack_block,
            attack_index: attack.transaction_index.unwrap_or_default(),
            attack_succeeded: attack.status(),
            next_block,
            pause_block,
            pause_index,
            trip_ms: trip_at.map(|t| since(t, broadcast)),
            pooled_ms,
            mined_ms,
            failure,
        };
        eprintln!(
            "{} {:>3}/{trials}: head {head}, left {:>7.1} ms, attack block {} idx {} {}, pause block {:?} idx {:?}, seen {:?} ms (estimate {:?}), trip {:?} ms, pooled {:?} ms, mined {:?} ms{}",
            mode.name(),
            i + 1,
            trial.left_ms,
            trial.attack_block,
            trial.attack_index,
            if trial.attack_succeeded {
                "succeeded"
            } else {
                "reverted"
            },
            trial.pause_block,
            trial.pause_index,
            trial.seen_ms,
            trial.estimate,
            trial.trip_ms.map(|x| x.round()),
            trial.pooled_ms.map(|x| x.round()),
            trial.mined_ms.map(|x| x.round()),
            trial
                .failure
                .as_deref()
                .map(|f| format!(", failure: {f}"))
                .unwrap_or_default(),
        );
        out.push(trial);
    }
    stop_mempool.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(m) = mempool {
        let (sent, refused) = m.await.unwrap_or_default();
        println!(
            "benign mempool: {sent} transactions sent at {} tx/s asked ({refused} refused)",
            mempool_rate()
        );
    }
    guardian.stop().await;
    rearm(b).await;
    out
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn distribution(name: &str, values: impl Iterator<Item = f64>) -> String {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return format!("{name}: no data\n");
    }
    v.sort_by(f64::total_cmp);
    format!(
        "{name}: n={} p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms\n",
        v.len(),
        percentile(&v, 0.5),
        percentile(&v, 0.9),
        percentile(&v, 0.99),
        v[v.len() - 1]
    )
}

fn mempool_table(trials: &[Trial]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\nmempool-visible: pause ordered ahead of the attack in the same block, by time left before the next block at broadcast"
    );
    let _ = writeln!(
        s,
        "| time left | trials | pause ahead, same block | share | attack in a later block than the next |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|");
    let mut lower = 0u64;
    for (upper, label) in BUCKETS {
        let in_bucket: Vec<&Trial> = trials
            .iter()
            .filter(|t| {
                let l = t.left_ms.max(0.0) as u64;
                l >= lower && l < upper
            })
            .collect();
        let ahead = in_bucket.iter().filter(|t| t.ahead()).count();
        let later = in_bucket
            .iter()
            .filter(|t| t.attack_block > t.next_block)
            .count();
        let share = if in_bucket.is_empty() {
            "—".to_string()
        } else {
            format!("{:.1}%", 100.0 * ahead as f64 / in_bucket.len() as f64)
        };
        let _ = writeln!(
            s,
            "| {label} | {} | {ahead} | {share} | {later} |",
            in_bucket.len()
        );
        lower = upper;
    }
    let target: Vec<&Trial> = trials.iter().filter(|t| t.left_ms >= 200.0).collect();
    let ahead = target.iter().filter(|t| t.ahead()).count();
    let all_ahead = trials.iter().filter(|t| t.ahead()).count();
    let _ = writeln!(
        s,
        "\nwith ≥ 200 ms left: {ahead}/{} ahead ({:.1}%, target ≥ 95%); all trials: {all_ahead}/{} ({:.1}%)",
        target.len(),
        100.0 * ahead as f64 / target.len().max(1) as f64,
        trials.len(),
        100.0 * all_ahead as f64 / trials.len().max(1) as f64,
    );
    let drained = trials.iter().filter(|t| t.attack_succeeded).count();
    let failed = trials.iter().filter(|t| t.failure.is_some()).count();
    let _ = writeln!(
        s,
        "attacks that succeeded: {drained}; trials without a landed pause: {failed}"
    );
    s
}

/// When a trial reached a stage: ms after the attack's broadcast, if it did.
type Stage = fn(&Trial) -> Option<f64>;

fn latencies(mode: Mode, trials: &[Trial]) -> String {
    let mut s = format!("\n{} (n={}):\n", mode.name(), trials.len());
    if mode == Mode::Mempool && unfiltered() {
        // A screening is judged, never recorded: the trip time below includes it.
        s += "  attack broadcast -> seen pending: not recorded (screenings write no trace row; see the trip)\n";
    } else if mode == Mode::Mempool {
        s += &distribution(
            "  attack broadcast -> seen pending by the watcher (recorded time, whole ms)",
            trials.iter().filter_map(|t| t.seen_ms),
        );
    }
    let stages: [(&str, Stage); 3] = [
        ("trip reported", |t| t.trip_ms),
        ("pause in anvil's pool", |t| t.pooled_ms),
        ("pause mined (its block arrived)", |t| t.mined_ms),
    ];
    for (stage, at) in stages {
        let name = format!("  attack broadcast -> {stage}");
        s += &distribution(&name, trials.iter().filter_map(at));
    }
    let mut gaps: HashMap<i64, usize> = HashMap::new();
    for t in trials {
        if let Some(p) = t.pause_block {
            *gaps.entry(p as i64 - t.attack_block as i64).or_default() += 1;
        }
    }
    let mut gaps: Vec<_> = gaps.into_iter().collect();
    gaps.sort_unstable();
    let _ = writeln!(
        s,
        "  pause block - attack block: {}",
        gaps.iter()
            .map(|(g, n)| format!("{g:+}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    s
}

fn write_csv(path: &Path, rows: &[(Mode, Trial)]) {
    let mut text = String::from(
        "mode,offset_ms,left_ms,next_block,attack_block,attack_index,attack_succeeded,pause_block,pause_index,ahead,seen_ms,estimate,trip_ms,pooled_ms,mined_ms,failure\n",
    );
    let opt = |x: Option<f64>| x.map(|v| format!("{v:.2}")).unwrap_or_default();
    for (mode, t) in rows {
        let _ = writeln!(
            text,
            "{},{:.2},{:.2},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            mode.name(),
            t.offset_ms,
            t.left_ms,
            t.next_block,
            t.attack_block,
            t.attack_index,
            t.attack_succeeded,
            t.pause_block.map(|b| b.to_string()).unwrap_or_default(),
            t.pause_index.map(|b| b.to_string()).unwrap_or_default(),
            t.ahead(),
            opt(t.seen_ms),
            opt(t.estimate),
            opt(t.trip_ms),
            opt(t.pooled_ms),
            opt(t.mined_ms),
            t.failure.as_deref().unwrap_or("").replace(',', ";"),
        );
    }
    std::fs::write(path, text).expect("write the CSV");
}

fn option<T: std::str::FromStr>(args: &[String], flag: &str, env: &str) -> Option<T> {
    let text = match args.iter().position(|a| a == flag) {
        Some(i) => args.get(i + 1).cloned(),
        None => std::env::var(env).ok(),
    }?;
    Some(
        text.parse()
            .unwrap_or_else(|_| panic!("{flag} / {env}: `{text}` is not a valid value")),
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // The watcher's warnings (e.g. a pending transaction it could not estimate) on stderr;
    // GUARDIAN_LOG=warn adds every trip and guard decision.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GUARDIAN_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(
                    "error,guardian::source=warn,alloy_pubsub=off,alloy_transport_ws=off",
                )
            }),
        )
        .init();
    let args: Vec<String> = std::env::args().collect();
    let trials: usize = option(&args, "--trials", "GUARDIAN_BENCH_TRIALS").unwrap_or(100);
    let mined_trials: usize =
        option(&args, "--mined-trials", "GUARDIAN_BENCH_MINED_TRIALS").unwrap_or(trials);
    let seed: u64 = option(&args, "--seed", "GUARDIAN_BENCH_SEED").unwrap_or(1);
    let csv: Option<PathBuf> = option(&args, "--csv", "GUARDIAN_BENCH_CSV");
    let max_left_ms: u64 =
        option(&args, "--max-left-ms", "GUARDIAN_BENCH_MAX_LEFT_MS").unwrap_or(2000);
    assert!(
        (1..=2000).contains(&max_left_ms),
        "--max-left-ms takes 1 to 2000 (the slot is 2 s)"
    );
    let max_left = Duration::from_millis(max_left_ms);

    let anvil_bin = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    let b = demo::deploy(&anvil_bin, &demo::DEMO_CHAIN)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut arrivals = Arrivals::start(&b.anvil.ws_endpoint()).await;
    let mut rng = StdRng::seed_from_u64(seed);
    println!(
        "frontrun: anvil {} (2 s blocks, fee-ordered), {trials} mempool-visible trials (broadcast in the last {max_left_ms} ms of the slot) + {mined_trials} mined-only trials, seed {seed}",
        demo::DEMO_CHAIN.join(" ")
    );

    let mut mempool = Vec::new();
    if trials > 0 {
        mempool = run_mode(&b, Mode::Mempool, trials, max_left, &mut rng, &mut arrivals).await;
    }
    let mut mined = Vec::new();
    if mined_trials > 0 {
        mined = run_mode(
            &b,
            Mode::MinedOnly,
            mined_trials,
            SLOT,
            &mut rng,
            &mut arrivals,
        )
        .await;
    }

    let mut summary = String::new();
    if !mempool.is_empty() {
        summary += &mempool_table(&mempool);
        summary += &latencies(Mode::Mempool, &mempool);
    }
    if !mined.is_empty() {
        summary += &latencies(Mode::MinedOnly, &mined);
    }
    println!("{summary}");
    if let Some(path) = csv {
        let rows: Vec<(Mode, Trial)> = mempool
            .into_iter()
            .map(|t| (Mode::Mempool, t))
            .chain(mined.into_iter().map(|t| (Mode::MinedOnly, t)))
            .collect();
        write_csv(&path, &rows);
        println!("per-trial data: {}", path.display());
    }
}
