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

use std::path::PathBuf;
use std::time::{Duration, Instant};

use alloy::network::EthereumWallet;
use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::primitives::{Address, I256, U256, utils::parse_ether};
use alloy::providers::{DynProvider, Provider, ProviderBuilder, WsConnect};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol;
use futures_util::StreamExt;
use guardian::config::Config;
use guardian::source::chain::{Head, PendingWatch, WatchEvent, Watcher, WatcherOptions};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

sol!(
    #[sol(rpc)]
    DemoToken,
    "contracts/artifacts/DemoToken.json"
);
sol!(
    #[sol(rpc)]
    GuardedVault,
    "contracts/artifacts/GuardedVault.json"
);
sol!(
    #[sol(rpc)]
    KeeperPriceFeed,
    "contracts/artifacts/KeeperPriceFeed.json"
);
sol!(
    #[sol(rpc)]
    MessageReplica,
    "contracts/artifacts/MessageReplica.json"
);
sol!(
    #[sol(rpc)]
    ReplicaCopycatAttack,
    "contracts/artifacts/ReplicaCopycatAttack.json"
);

const BLOCKS: usize = 300;
const PENDING: usize = 300;

fn anvil() -> AnvilInstance {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    Anvil::at(bin).spawn()
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort_unstable();
    let at =
        |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
    println!(
        "{name}: n={} p50={:.2} ms p99={:.2} ms max={:.2} ms",
        samples.len(),
        at(0.50).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3
    );
}

fn load(text: &str, name: &str) -> Config {
    let path =
        std::env::temp_dir().join(format!("guardian-bench-{}-{name}.toml", std::process::id()));
    std::fs::write(&path, text).expect("temp dir is writable");
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let _ = std::fs::remove_file(&path);
    config
}

fn holder(i: u64) -> Address {
    Address::left_padding_from(&(0x1000 + i).to_be_bytes())
}

/// 50 metrics of every per-block kind, none sharing a read except the oracle's answer and age.
fn fifty_metrics(anvil: &AnvilInstance, token: Address, vault: Address, feed: Address) -> String {
    let transfer = "Transfer(address indexed from, address indexed to, uint256 value)";
    let mut t = format!(
        "[networks.local]\nchain_id = 31337\nrpc = [\"{}\"]\nws = [\"{}\"]\n",
        anvil.endpoint(),
        anvil.ws_endpoint()
    );
    let mut add = |name: String, source: String| {
        t.push_str(&format!(
            "\n[metrics.\"{name}\"]\ndescription = \"bench\"\nnetwork = \"local\"\nsource = {source}\n"
        ));
    };
    for i in 0..20 {
        add(
            format!("call.{i}"),
            format!(
                "{{ kind = \"call\", to = \"{token}\", signature = \"balanceOf(address)(uint256)\", args = [\"{}\"], decimals = 18 }}",
                holder(i)
            ),
        );
    }
    for i in 20..30 {
        add(
            format!("erc20.{i}"),
            format!(
                "{{ kind = \"erc20_balance\", token = \"{token}\", holder = \"{}\", decimals = 18 }}",
                holder(i)
            ),
        );
    }
    for i in 30..35 {
        add(
            format!("native.{i}"),
            format!(
                "{{ kind = \"native_balance\", address = \"{}\" }}",
                holder(i)
            ),
        );
    }
    for i in 35..37 {
        add(
            format!("events.count.{i}"),
            format!(
                "{{ kind = \"event_count\", address = \"{token}\", event = \"{transfer}\", topics = {{ from = \"{}\" }} }}",
                holder(i)
            ),
        );
        add(
            format!("events.sum.{i}"),
            format!(
                "{{ kind = \"event_sum\", address = \"{token}\", event = \"{transfer}\", topics = {{ to = \"{}\" }}, field = \"value\", decimals = 18 }}",
                holder(i)
            ),
        );
    }
    for stat in [
        "gas_used_ratio",
        "base_fee_gwei",
        "tx_count",
        "priority_fee_p90",
    ] {
        add(
            format!("chain.{stat}"),
            format!("{{ kind = \"block\", stat = \"{stat}\" }}"),
        );
    }
    add(
        "oracle.answer".into(),
        format!("{{ kind = \"oracle_answer\", feed = \"{feed}\", decimals = 8 }}"),
    );
    add(
        "oracle.age".into(),
        format!("{{ kind = \"oracle_age\", feed = \"{feed}\" }}"),
    );
    for (name, sig) in [
        ("assets", "totalAssets()(uint256)"),
        ("supply", "totalSupply()(uint256)"),
        ("cap", "supplyCap()(uint256)"),
    ] {
        add(
            format!("vault.{name}"),
            format!(
                "{{ kind = \"call\", to = \"{vault}\", signature = \"{sig}\", decimals = 18 }}"
            ),
        );
    }
    add(
        "vault.share_price".into(),
        "{ kind = \"ratio\", numerator = \"vault.assets\", denominator = \"vault.supply\" }".into(),
    );
    add("chain.head_age".into(), "{ kind = \"head_age\" }".into());
    t
}

async fn provider(anvil: &AnvilInstance, keys: &[usize]) -> DynProvider {
    let mut wallet = EthereumWallet::from(PrivateKeySigner::from(anvil.keys()[keys[0]].clone()));
    for k in &keys[1..] {
        wallet.register_signer(PrivateKeySigner::from(anvil.keys()[*k].clone()));
    }
    ProviderBuilder::new()
        .wallet(wallet)
        .connect_http(anvil.endpoint_url())
        .erased()
}

async fn snapshots() {
    let anvil = anvil();
    let p = provider(&anvil, &[0]).await;
    let owner = anvil.addresses()[0];
    let token = DemoToken::deploy(&p, "Bench".into(), "B".into(), owner)
        .await
        .expect("deploy");
    let vault = GuardedVault::deploy(
        &p,
        *token.address(),
        owner,
        parse_ether("1000000").expect("literal"),
    )
    .await
    .expect("deploy");
    let feed = KeeperPriceFeed::deploy(
        &p,
        owner,
        8,
        "ETH / USD".into(),
        I256::try_from(200_000_000_000_i64).expect("fits"),
    )
    .await
    .expect("deploy");
    // A non-empty vault, so the share price (a ratio) has a denominator.
    let assets = parse_ether("1000").expect("literal");
    token
        .mint(owner, assets)
        .send()
        .await
        .expect("send")
        .get_receipt()
        .await
        .expect("receipt");
    token
        .approve(*vault.address(), assets)
        .send()
        .await
        .expect("send")
        .get_receipt()
        .await
        .expect("receipt");
    vault
        .deposit(assets, owner)
        .send()
        .await
        .expect("send")
        .get_receipt()
        .await
        .expect("receipt");
    let config = load(
        &fifty_metrics(&anvil, *token.address(), *vault.address(), *feed.address()),
        "fifty",
    );
    let watcher = Watcher::new(&config, "local", WatcherOptions::default()).expect("watcher");
    assert_eq!(watcher.plan().len(), 50);
    println!(
        "plan: {} metrics, {} requests in one batch per block",
        watcher.plan().len(),
        watcher.plan().requests_per_block()
    );
    let client = watcher.read_client().await.expect("client");

    // 1. head received -> snapshot complete.
    let ws = ProviderBuilder::new()
        .connect_ws(WsConnect::new(anvil.ws_endpoint()))
        .await
        .expect("ws");
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
    let anvil = anvil();
    let p = provider(&anvil, &[0, 2]).await;
    let owner = anvil.addresses()[0];
    let attacker = anvil.addresses()[2];
    let token = DemoToken::deploy(&p, "Bridged".into(), "b".into(), owner)
        .await
        .expect("deploy");
    let replica = MessageReplica::deploy(&p, owner, 1000, owner, U256::ZERO, Default::default())
        .await
        .expect("deploy");
    token
        .mint(*replica.address(), parse_ether("1000000").expect("literal"))
        .send()
        .await
        .expect("send")
        .get_receipt()
        .await
        .expect("receipt");
    let attack = ReplicaCopycatAttack::deploy(
        &p,
        *replica.address(),
        *token.address(),
        parse_ether("1").expect("literal"),
    )
    .await
    .expect("deploy");
    let text = format!(
        "[networks.local]\nchain_id = 31337\nrpc = [\"{}\"]\nws = [\"{}\"]\n\n[metrics.\"bridge.pending_outflow\"]\ndescription = \"bench\"\nnetwork = \"local\"\nsource = {{ kind = \"pending\", to = \"{}\", selector = \"attack()\", effect = {{ kind = \"erc20_balance\", token = \"{}\", holder = \"{}\", decimals = 18 }} }}\n",
        anvil.endpoint(),
        anvil.ws_endpoint(),
        attack.address(),
        token.address(),
        replica.address()
    );
    let config = load(&text, "pending");
    let watcher = Watcher::new(&config, "local", WatcherOptions::default()).expect("watcher");
    let client = watcher.read_client().await.expect("client");
    let mut watch = PendingWatch::new(&config.metrics);
    let head = p.get_block_number().await.expect("head");
    let _: serde_json::Value = p
        .raw_request("evm_setAutomine".into(), (false,))
        .await
        .expect("automine off");
    let ws = ProviderBuilder::new()
        .connect_ws(WsConnect::new(anvil.ws_endpoint()))
        .await
        .expect("ws");
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

/// Resident set size of this process in KiB (Linux).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

async fn sustained(seconds: u64) {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    let anvil = Anvil::at(bin).block_time(1).spawn();
    let p = provider(&anvil, &[0]).await;
    let owner = anvil.addresses()[0];
    let token = DemoToken::deploy(&p, "Bench".into(), "B".into(), owner)
        .await
        .expect("deploy");
    let vault = GuardedVault::deploy(
        &p,
        *token.address(),
        owner,
        parse_ether("1000000").expect("literal"),
    )
    .await
    .expect("deploy");
    let feed = KeeperPriceFeed::deploy(
        &p,
        owner,
        8,
        "ETH / USD".into(),
        I256::try_from(200_000_000_000_i64).expect("fits"),
    )
    .await
    .expect("deploy");
    let config = load(
        &fifty_metrics(&anvil, *token.address(), *vault.address(), *feed.address()),
        "sustained",
    );
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
