//! The live watcher against a real node: anvil, spawned through alloy's
//! node-bindings, with the demo contracts deployed from their artifacts.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use alloy::node_bindings::AnvilInstance;
use alloy::primitives::{Address, utils::parse_ether};
use alloy::providers::{DynProvider, Provider};
use common::{
    DemoToken, GWEI, Market, ReplicaCopycatAttack, anvil, critical_threshold, dry_run_network,
    feed, load_config, metric, provider_with,
};
use guardian::config::Config;
use guardian::policy::{Engine, Mode, compile_str};
use guardian::source::chain::record::Recorder;
use guardian::source::chain::{Snapshot, WatchEvent, Watcher, WatcherOptions};
use guardian::source::trace::TraceReader;

/// A deployed demo: a token, a vault holding 1,000 of it, a keeper feed at 1835.2.
struct Demo {
    anvil: AnvilInstance,
    provider: DynProvider,
    owner: Address,
    alice: Address,
    token: Address,
    vault: Address,
    feed: Address,
    /// Block the feed published its first round in.
    feed_block: u64,
}

async fn demo() -> Demo {
    let anvil = anvil(&[]);
    let provider = provider_with(&anvil, &[0]);
    let (owner, alice) = (anvil.addresses()[0], anvil.addresses()[1]);
    let cap = parse_ether("1000000").unwrap();
    let fill = (parse_ether("10000").unwrap(), parse_ether("1000").unwrap());
    let market = Market::deploy(&provider, owner, cap, Some(fill), 183_520_000_000).await;
    Demo {
        anvil,
        owner,
        alice,
        token: market.token,
        vault: market.vault,
        feed: market.feed,
        feed_block: market.feed_block,
        provider,
    }
}

impl Demo {
    /// A configuration file declaring one metric of every per-block kind on network `local`.
    fn config_file(&self, name: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "guardian-watcher-{}-{name}.toml",
            std::process::id()
        ));
        std::fs::write(&path, self.config_text()).unwrap();
        path
    }

    /// The text of that configuration.
    fn config_text(&self) -> String {
        let (token, vault, feed, owner, alice) =
            (self.token, self.vault, self.feed, self.owner, self.alice);
        let transfer = "Transfer(address indexed from, address indexed to, uint256 value)";
        let call = |signature: &str, args: &str| {
            format!(
                r#"{{ kind = "call", to = "{vault}", signature = "{signature}",{args} decimals = 18 }}"#
            )
        };
        let events = |kind: &str, extra: &str| {
            format!(
                r#"{{ kind = "{kind}", address = "{token}", event = "{transfer}", topics = {{ from = "{owner}" }}{extra} }}"#
            )
        };
        let block = |stat: &str| format!(r#"{{ kind = "block", stat = "{stat}" }}"#);
        let metrics = [
            ("vault.total_assets", "assets the vault holds", call("totalAssets()(uint256)", "")),
            ("vault.total_supply", "vault shares", call("totalSupply()(uint256)", "")),
            ("vault.owner_shares", "the owner's shares", call("balanceOf(address)(uint256)", &format!(r#" args = ["{owner}"],"#))),
            ("vault.assets_per_share", "share price", r#"{ kind = "ratio", numerator = "vault.total_assets", denominator = "vault.total_supply" }"#.into()),
            ("token.vault_balance", "tokens in the vault", format!(r#"{{ kind = "erc20_balance", token = "{token}", holder = "{vault}", decimals = 18 }}"#)),
            ("alice.eth", "alice's ether", format!(r#"{{ kind = "native_balance", address = "{alice}" }}"#)),
            ("token.owner_transfers", "transfers out of the owner", events("event_count", "")),
            ("token.owner_outflow", "tokens moved out of the owner", events("event_sum", r#", field = "value", decimals = 18"#)),
            ("chain.gas_used_ratio", "gas used / limit", block("gas_used_ratio")),
            ("chain.base_fee_gwei", "base fee", block("base_fee_gwei")),
            ("chain.tx_count", "transactions", block("tx_count")),
            ("chain.tip_p50", "median priority fee", block("priority_fee_p50")),
            ("oracle.eth_usd", "feed answer", format!(r#"{{ kind = "oracle_answer", feed = "{feed}", decimals = 8 }}"#)),
            ("oracle.age", "seconds since the feed's round", format!(r#"{{ kind = "oracle_age", feed = "{feed}" }}"#)),
        ];
        let mut text = dry_run_network(&[&self.anvil.endpoint()], &[&self.anvil.ws_endpoint()]);
        for (name, description, source) in &metrics {
            text.push_str(&metric(name, description, source));
        }
        text
    }

    fn config(&self, name: &str) -> Config {
        load_config(name, &self.config_text())
    }

    /// Owner sends alice `amount` tokens with a 2 gwei tip; returns the block it was mined in.
    async fn transfer(&self, amount: &str) -> u64 {
        let token = DemoToken::new(self.token, &self.provider);
        token
            .transfer(self.alice, parse_ether(amount).unwrap())
            .max_priority_fee_per_gas(2 * GWEI)
            .max_fee_per_gas(100 * GWEI)
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap()
            .block_number
            .unwrap()
    }

    /// [`Demo::transfer`] while `run` watches: its block and that block's snapshot.
    async fn transfer_seen(&self, run: &mut Running, amount: &str) -> (u64, Snapshot) {
        let block = self.transfer(amount).await;
        let events = run.until_block(block).await;
        (block, last_block(&events).clone())
    }

    async fn mine(&self) {
        common::mine(&self.provider).await;
    }

    /// A watcher (default options) on the configuration `name`, once it sent
    /// the head it starts at.
    async fn watch(&self, name: &str) -> (Running, Snapshot) {
        start_at_head(&self.config(name), |_| {}).await
    }

    /// A watcher on the configuration `name` (options as `tune` changes
    /// them) with its WebSocket through a [`Proxy`] the test can cut, once it
    /// sent the head it starts at.
    async fn watch_behind_proxy(
        &self,
        name: &str,
        tune: impl FnOnce(&mut WatcherOptions),
    ) -> (Proxy, Running, Snapshot) {
        let proxy = Proxy::start(self.anvil.port()).await;
        let mut config = self.config(name);
        config.networks.get_mut("local").unwrap().ws =
            vec![format!("ws://127.0.0.1:{}", proxy.port)];
        let (run, first) = start_at_head(&config, tune).await;
        (proxy, run, first)
    }
}

/// A running watcher and its events.
type Running = common::Watching;

/// Starts a watcher on `config` with the default options as `tune` changes
/// them, and waits for the snapshot of the head it starts at.
async fn start_at_head(
    config: &Config,
    tune: impl FnOnce(&mut WatcherOptions),
) -> (Running, Snapshot) {
    let mut options = WatcherOptions::default();
    tune(&mut options);
    let mut run = Running::start(config, options);
    let first = run.first_block().await;
    (run, first)
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// What the watcher tests wait for.
trait Events {
    async fn next(&mut self) -> WatchEvent;
    async fn until_block(&mut self, number: u64) -> Vec<WatchEvent>;
    async fn first_block(&mut self) -> Snapshot;
    async fn blocks(&mut self, expected: std::ops::RangeInclusive<u64>) -> Vec<WatchEvent>;
}

impl Events for Running {
    async fn next(&mut self) -> WatchEvent {
        tokio::time::timeout(Duration::from_secs(20), self.events.recv())
            .await
            .expect("the watcher sent nothing within 20 s")
            .expect("the watcher stopped")
    }

    /// Events up to and including the snapshot of block `number`.
    async fn until_block(&mut self, number: u64) -> Vec<WatchEvent> {
        let mut seen = Vec::new();
        loop {
            let e = self.next().await;
            let done = matches!(&e, WatchEvent::Block(s) if s.number == number);
            seen.push(e);
            if done {
                return seen;
            }
        }
    }

    /// The first event, which must be the snapshot of the head the watcher starts at.
    async fn first_block(&mut self) -> Snapshot {
        match self.next().await {
            WatchEvent::Block(s) => s,
            other => panic!("expected the head first, got {other:?}"),
        }
    }

    /// Events up to the block `expected` ends at, which must be exactly its blocks in order.
    async fn blocks(&mut self, expected: std::ops::RangeInclusive<u64>) -> Vec<WatchEvent> {
        let events = self.until_block(*expected.end()).await;
        assert_blocks(&events, expected);
        events
    }
}

fn value(s: &Snapshot, metric: &str) -> f64 {
    s.values
        .iter()
        .find(|(m, _)| &**m == metric)
        .unwrap_or_else(|| panic!("no `{metric}` in block {}: failed {:?}", s.number, s.failed))
        .1
}

fn last_block(events: &[WatchEvent]) -> &Snapshot {
    match events.last() {
        Some(WatchEvent::Block(s)) => s,
        other => panic!("expected a block, got {other:?}"),
    }
}

#[tokio::test]
async fn every_metric_kind_reads_the_known_state_at_the_head() {
    let demo = demo().await;
    // The watcher starts at the head it finds; the transfer's block comes next.
    let (mut run, _) = demo.watch("kinds").await;
    let (block, s) = demo.transfer_seen(&mut run, "5").await;
    let s = &s;
    assert!(s.failed.is_empty(), "{:?}", s.failed);
    assert_eq!(s.values.len(), 14);

    let header = demo
        .provider
        .get_block_by_number(block.into())
        .await
        .unwrap()
        .unwrap()
        .header;
    let feed_ts = demo
        .provider
        .get_block_by_number(demo.feed_block.into())
        .await
        .unwrap()
        .unwrap()
        .header
        .timestamp;
    assert_eq!(s.hash, header.hash);
    assert_eq!(s.time_ms, header.timestamp * 1000);
    assert_eq!(value(s, "vault.total_assets"), 1000.0);
    assert_eq!(value(s, "vault.total_supply"), 1000.0);
    assert_eq!(value(s, "vault.owner_shares"), 1000.0);
    assert_eq!(value(s, "vault.assets_per_share"), 1.0);
    assert_eq!(value(s, "token.vault_balance"), 1000.0);
    assert_eq!(value(s, "alice.eth"), 10_000.0);
    assert_eq!(value(s, "token.owner_transfers"), 1.0);
    assert_eq!(value(s, "token.owner_outflow"), 5.0);
    assert_eq!(
        value(s, "chain.gas_used_ratio"),
        header.gas_used as f64 / header.gas_limit as f64
    );
    assert_eq!(
        value(s, "chain.base_fee_gwei"),
        header.base_fee_per_gas.unwrap() as f64 / 1e9
    );
    assert_eq!(value(s, "chain.tx_count"), 1.0);
    assert_eq!(value(s, "chain.tip_p50"), 2.0);
    assert_eq!(value(s, "oracle.eth_usd"), 1835.2);
    assert_eq!(value(s, "oracle.age"), (header.timestamp - feed_ts) as f64);
    run.stop().await;
}

#[tokio::test]
async fn reads_are_pinned_to_the_block_hash_not_latest() {
    let demo = demo().await;
    let config = demo.config("pinned");
    let watcher = Watcher::new(&config, "local", WatcherOptions::default()).unwrap();
    assert_eq!(watcher.plan().len(), 14);
    // One batch of 8 requests: 5 calls (the oracle's answer and age share one), one balance,
    // one log filter (the count and the sum share it) and the block's transactions.
    assert_eq!(watcher.plan().requests_per_block(), 8);
    let before = demo
        .provider
        .get_block_by_number(Default::default())
        .await
        .unwrap()
        .unwrap();
    demo.transfer("250").await;
    let client = watcher.read_client().await.unwrap();
    let old = watcher
        .plan()
        .read(&client, &(&before.header).into())
        .await
        .unwrap();
    assert_eq!(old.number, before.header.number);
    assert_eq!(value(&old, "token.owner_outflow"), 0.0);
    assert_eq!(value(&old, "vault.total_assets"), 1000.0);
    let alice = DemoToken::new(demo.token, &demo.provider)
        .balanceOf(demo.alice)
        .call()
        .await
        .unwrap();
    assert_eq!(alice, parse_ether("250").unwrap());
}

#[tokio::test]
async fn http_polling_backfills_every_block_in_order() {
    let demo = demo().await;
    let mut config = demo.config("polling");
    config.networks.get_mut("local").unwrap().ws.clear();
    let (mut run, first) = start_at_head(&config, |o| o.poll_interval = ms(50)).await;
    let mut last = 0;
    for _ in 0..5 {
        demo.mine().await;
        last = demo.transfer("1").await;
    }
    run.blocks(first.number + 1..=last).await;
    run.stop().await;
}

#[tokio::test]
async fn a_reorg_is_reported_and_the_replaced_blocks_are_read_again() {
    let demo = demo().await;
    let (mut run, _) = demo.watch("reorg").await;
    let (transfer_block, old) = demo.transfer_seen(&mut run, "7").await;
    assert_eq!(value(&old, "token.owner_outflow"), 7.0);
    demo.mine().await;
    run.until_block(transfer_block + 1).await;

    // Replace the last two blocks with empty ones, then extend the new chain.
    common::reorg(&demo.provider, 2).await;
    demo.mine().await;
    let head = demo.provider.get_block_number().await.unwrap();
    let events = run.until_block(head).await;
    let WatchEvent::Reorg(reorg) = &events[0] else {
        panic!("expected the reorg first, got {:?}", events[0]);
    };
    assert_eq!(reorg.common_ancestor, transfer_block - 1);
    assert_eq!(
        reorg.replaced.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        vec![transfer_block + 1, transfer_block]
    );
    assert_eq!(reorg.replaced[1].1, old.hash);
    let WatchEvent::Block(corrected) = &events[1] else {
        panic!("expected the re-read block, got {:?}", events[1]);
    };
    assert_eq!(corrected.number, transfer_block);
    assert_ne!(corrected.hash, old.hash);
    assert_eq!(value(corrected, "token.owner_outflow"), 0.0);
    assert_blocks(&events[1..], transfer_block..=head);
    run.stop().await;
}

/// Pauses when more than 3 tokens leave the owner in a block.
fn outflow_policy() -> String {
    let when = ["token.owner_outflow", ">", "3"];
    let description = "more than 3 tokens leave the owner in a block";
    critical_threshold("owner-outflow", description, "pause", "0 blocks", when)
}

#[tokio::test]
async fn a_recorded_live_run_replays_to_the_same_trips() {
    let demo = demo().await;
    let policies = || {
        Engine::new(
            compile_str("outflow.toml", &outflow_policy(), &Config::empty()).unwrap(),
            Mode::Enforce,
        )
    };
    let mut live = policies();
    let mut live_trips = Vec::new();
    let mut recorder = Recorder::new(Vec::new(), "recorded by tests/watcher.rs").unwrap();
    let (mut run, first) = demo.watch("record").await;
    let first = WatchEvent::Block(first);
    feed(&mut live, &first, &mut live_trips);
    recorder.record(&first).unwrap();
    let mut last = 0;
    for amount in ["1", "4", "2", "9"] {
        last = demo.transfer(amount).await;
    }
    for e in run.until_block(last).await {
        feed(&mut live, &e, &mut live_trips);
        recorder.record(&e).unwrap();
    }
    run.stop().await;
    assert_eq!(live_trips.len(), 2, "{live_trips:?}");
    assert_eq!(recorder.rows(), 14 * 5);

    let text = recorder.into_inner();
    let mut replayed = policies();
    let mut replay_trips = Vec::new();
    let mut reader = TraceReader::new(text.as_slice(), "live.csv");
    let summary =
        guardian::replay::replay(&mut reader, &mut replayed, &mut |t| replay_trips.push(t))
            .unwrap();
    assert_eq!(summary.samples_read, 14 * 5);
    assert_eq!(replay_trips, live_trips);
}

/// Pauses when a pending transaction would take more than 50 tokens out of the bridge.
fn bridge_policy() -> String {
    let when = ["bridge.pending_outflow", ">", "50"];
    let description = "a pending transaction would take more than 50 tokens out of the bridge";
    critical_threshold("bridge-drain", description, "pause", "0 blocks", when)
}

/// The demo's Nomad-style bridge of the pending-transaction tests
/// ([`guardian::demo::deploy`]): a token, a replica deployed with a zero root
/// (every unproven message is "proven", Nomad 2022) holding 1,000 tokens, and
/// a copycat attack taking all of them per call; the provider signs as the
/// owner (anvil key 0) and the attacker (key 6).
struct Bridge(guardian::demo::Bridge);

async fn bridge() -> Bridge {
    let b = guardian::demo::deploy(&common::anvil_bin(), &[]).await;
    Bridge(b.unwrap_or_else(|e| panic!("{e}")))
}

impl std::ops::Deref for Bridge {
    type Target = guardian::demo::Bridge;

    fn deref(&self) -> &guardian::demo::Bridge {
        &self.0
    }
}

impl Bridge {
    fn token(&self) -> DemoToken::DemoTokenInstance<&DynProvider> {
        DemoToken::new(self.token, &self.provider)
    }

    fn attack(&self) -> ReplicaCopycatAttack::ReplicaCopycatAttackInstance<&DynProvider> {
        ReplicaCopycatAttack::new(self.attack, &self.provider)
    }

    /// The owner mints itself a token in a transaction tipping 5 gwei (the
    /// last block before a watcher starts: the tip percentiles' reference).
    async fn tip_reference_block(&self) {
        let token = self.token();
        let mint = token.mint(self.anvil.addresses()[0], parse_ether("1").unwrap());
        let mint = mint.max_priority_fee_per_gas(5 * GWEI);
        common::mined(mint.max_fee_per_gas(100 * GWEI)).await;
    }

    /// `[guardian]`, `[networks.local]` on the WebSocket (and, `with_rpc`, HTTP) endpoint, and `metrics`.
    fn config(&self, name: &str, with_rpc: bool, metrics: &[(&str, &str, String)]) -> Config {
        let (rpc, ws) = (self.anvil.endpoint(), self.anvil.ws_endpoint());
        let rpc: &[&str] = if with_rpc { &[&rpc] } else { &[] };
        let mut text = dry_run_network(rpc, &[&ws]);
        for (metric_name, description, source) in metrics {
            text.push_str(&metric(metric_name, description, source));
        }
        load_config(name, &text)
    }

    /// A pending source's `effect`: the replica's token balance.
    fn effect(&self) -> String {
        format!(
            r#"{{ kind = "erc20_balance", token = "{}", holder = "{}", decimals = 18 }}"#,
            self.token, self.replica
        )
    }
}

#[tokio::test]
async fn a_pending_attack_is_seen_and_its_effect_estimated_before_it_is_mined() {
    let b = bridge().await;
    let (provider, attacker) = (&b.provider, b.attacker);
    let (token, attack) = (b.token(), b.attack());
    let effect = b.effect();
    let outflow = format!(
        r#"{{ kind = "pending", to = "{}", selector = "attack()", effect = {effect} }}"#,
        attack.address()
    );
    let config = b.config(
        "pending",
        true,
        &[
            ("bridge.balance", "tokens the bridge holds", effect.clone()),
            (
                "bridge.pending_outflow",
                "tokens a pending attack() would take out of the bridge",
                outflow,
            ),
        ],
    );

    let mut engine = Engine::new(
        compile_str("bridge.toml", &bridge_policy(), &Config::empty()).unwrap(),
        Mode::Enforce,
    );
    let mut trips = Vec::new();
    let (mut run, first) = start_at_head(&config, |o| o.screen = None).await;
    assert_eq!(value(&first, "bridge.balance"), 1000.0);
    feed(&mut engine, &WatchEvent::Block(first.clone()), &mut trips);

    common::set_automine(provider, false).await;
    // A transaction the filters do not match (another target), then the attack.
    let _unmatched = token
        .mint(attacker, parse_ether("1").unwrap())
        .send()
        .await
        .unwrap();
    // The demo's attack: 300,000 gas, a 3 gwei tip, a 50 gwei fee cap.
    let (hash, _) = guardian::demo::send_attack(&b).await.unwrap();

    let WatchEvent::Pending(seen) = run.next().await else {
        panic!("expected the pending attack");
    };
    // Seen and estimated while still unmined.
    assert!(
        provider
            .get_transaction_receipt(hash)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(seen.tx.hash, hash);
    assert_eq!(seen.tx.from, attacker);
    assert_eq!(&*seen.metric, "bridge.pending_outflow");
    assert_eq!(seen.block, first.number + 1);
    assert_eq!(seen.value, 1000.0);
    assert!(seen.succeeds);
    assert_eq!(seen.tx.max_priority_fee_per_gas, Some(3 * GWEI));
    assert_eq!(seen.tx.max_fee_per_gas, 50 * GWEI);
    let event = WatchEvent::Pending(seen.clone());
    feed(&mut engine, &event, &mut trips);
    assert_eq!(
        trips.len(),
        1,
        "the policy trips on the estimate: {trips:?}"
    );
    assert_eq!(trips[0].block, first.number + 1);

    // Once mined, the block's balance confirms the estimate.
    common::mine(&b.provider).await;
    let events = run.until_block(first.number + 1).await;
    assert_eq!(events.len(), 1, "no other pending effect: {events:?}");
    assert_eq!(value(last_block(&events), "bridge.balance"), 0.0);
    run.stop().await;
}

/// A TCP proxy in front of a node, which the test can cut and restore.
struct Proxy {
    port: u16,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    connections: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(target: u16) -> Proxy {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let connections = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (d, c) = (down.clone(), connections.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if d.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let conn = tokio::spawn(async move {
                    if let Ok(mut node) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut node).await;
                    }
                });
                c.lock().unwrap().push(conn);
            }
        });
        Proxy {
            port,
            down,
            connections,
            accept,
        }
    }

    /// Drops every open connection and refuses new ones.
    fn cut(&self) {
        self.down.store(true, std::sync::atomic::Ordering::SeqCst);
        for c in self.connections.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    fn restore(&self) {
        self.down.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// Reconnects within 20 to 100 ms: a restored socket is back at once.
fn quick_reconnect(o: &mut WatcherOptions) {
    o.reconnect_min = ms(20);
    o.reconnect_max = ms(100);
}

/// Checks that `events` are only blocks, numbered `expected` in order.
fn assert_blocks(events: &[WatchEvent], expected: std::ops::RangeInclusive<u64>) {
    let numbers: Vec<u64> = events
        .iter()
        .map(|e| match e {
            WatchEvent::Block(s) => s.number,
            other => panic!("expected only blocks, got {other:?}"),
        })
        .collect();
    assert_eq!(numbers, expected.collect::<Vec<_>>());
}

#[tokio::test]
async fn a_cut_websocket_reconnects_and_backfills_every_missed_block() {
    let demo = demo().await;
    let (proxy, mut run, first) = demo.watch_behind_proxy("reconnect", quick_reconnect).await;
    demo.mine().await;
    run.until_block(first.number + 1).await;

    proxy.cut();
    let mut missed = 0;
    for _ in 0..3 {
        missed = demo.transfer("1").await;
    }
    proxy.restore();
    // After the reconnect the watcher catches up on its own; one more head proves it keeps following.
    let events = run.until_block(missed).await;
    demo.mine().await;
    let mut all = events;
    all.extend(run.until_block(missed + 1).await);
    assert_blocks(&all, first.number + 2..=missed + 1);
    for e in &all[..3] {
        let WatchEvent::Block(s) = e else {
            unreachable!()
        };
        assert_eq!(
            value(s, "token.owner_outflow"),
            1.0,
            "block {} read at its own hash",
            s.number
        );
    }
    run.stop().await;
}

/// An HTTP endpoint that answers every request with 200 and a JSON-RPC error.
async fn erroring_endpoint() -> (u16, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = s.read(&mut buf).await;
                let body = r#"{"jsonrpc":"2.0","id":0,"error":{"code":-32005,"message":"limit exceeded"}}"#;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(response.as_bytes()).await;
            });
        }
    });
    (port, task)
}

/// An endpoint that accepts connections and never answers.
async fn silent_endpoint() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    (port, task)
}

#[tokio::test]
async fn erroring_and_silent_endpoints_fail_over_to_a_healthy_one() {
    let demo = demo().await;
    let (erroring, e_task) = erroring_endpoint().await;
    let (silent, s_task) = silent_endpoint().await;
    let mut config = demo.config("failover");
    let net = config.networks.get_mut("local").unwrap();
    net.ws.clear();
    net.rpc = vec![
        format!("http://127.0.0.1:{erroring}"),
        format!("http://127.0.0.1:{silent}"),
        demo.anvil.endpoint(),
    ];
    let (mut run, first) = start_at_head(&config, |o| {
        o.poll_interval = ms(50);
        o.request_timeout = ms(300);
    })
    .await;
    assert_eq!(value(&first, "vault.total_assets"), 1000.0);
    let last = demo.transfer("2").await;
    let events = run.blocks(first.number + 1..=last).await;
    assert_eq!(value(last_block(&events), "token.owner_outflow"), 2.0);
    run.stop().await;
    e_task.abort();
    s_task.abort();
}

#[tokio::test]
async fn the_watchdog_reports_a_growing_head_age_while_no_block_comes() {
    let anvil = anvil(&[]);
    let mut text = dry_run_network(&[], &[&anvil.ws_endpoint()]);
    let age = r#"{ kind = "head_age" }"#;
    text.push_str(&metric(
        "chain.head_age",
        "seconds since the latest block",
        age,
    ));
    let config = load_config("stale", &text);
    let (mut run, first) = start_at_head(&config, |o| o.watchdog_interval = ms(100)).await;
    let fresh = value(&first, "chain.head_age");
    let mut ages = Vec::new();
    let mut last_time = first.time_ms;
    for _ in 0..3 {
        let WatchEvent::Stale(stale) = run.next().await else {
            panic!("expected the watchdog while no block is mined");
        };
        assert_eq!(stale.block, first.number);
        assert!(stale.time_ms >= last_time);
        last_time = stale.time_ms;
        let samples: Vec<_> = WatchEvent::Stale(stale.clone())
            .samples()
            .map(|(b, _, m, v)| (b, m.to_string(), v))
            .collect();
        assert_eq!(
            samples,
            vec![(first.number, "chain.head_age".to_string(), stale.head_age_s)]
        );
        ages.push(stale.head_age_s);
    }
    assert!(
        fresh <= ages[0] && ages[0] <= ages[1] && ages[1] <= ages[2],
        "{fresh} {ages:?}"
    );
    run.stop().await;
}

#[tokio::test]
async fn guardian_watch_records_a_trace_that_simulate_replays() {
    let demo = demo().await;
    let dir = std::env::temp_dir().join(format!("guardian-watch-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = demo.config_file("cli");
    let trace = dir.join("live.csv");
    let policy = dir.join("outflow.toml");
    std::fs::write(&policy, outflow_policy()).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_guardian"))
        .args(["watch", "--blocks", "4", "--config"])
        .arg(&config)
        .arg("--record")
        .arg(&trace)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Each transfer is a block; the watcher stops by itself after four.
    let mut status = None;
    for _ in 0..50 {
        demo.transfer("5").await;
        if let Some(s) = child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
    }
    let status = match status {
        Some(s) => s,
        None => tokio::time::timeout(Duration::from_secs(20), child.wait())
            .await
            .unwrap()
            .unwrap(),
    };
    assert!(status.success(), "guardian watch exited with {status}");
    let text = std::fs::read_to_string(&trace).unwrap();
    assert!(
        text.starts_with("# recorded live by `guardian watch`"),
        "{text}"
    );
    assert_eq!(
        text.lines().filter(|l| !l.starts_with('#')).count(),
        1 + 14 * 4
    );

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_guardian"))
        .args(["simulate", "--json", "--trace"])
        .arg(&trace)
        .arg("--policies")
        .arg(&policy)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let trips = stdout
        .lines()
        .filter(|l| l.contains("\"policy\":\"owner-outflow\""))
        .count();
    // Every block after the first is a 5-token transfer out of the owner (> 3).
    assert!(trips >= 3, "{stdout}");
    std::fs::remove_file(&config).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_lagging_endpoint_is_failed_over_to_the_one_ahead() {
    let demo = demo().await;
    // A healthy node that is far behind: it answers everything, for an old head.
    let behind = anvil(&[]);
    let mut text = dry_run_network(&[&behind.endpoint(), &demo.anvil.endpoint()], &[]);
    let base_fee = r#"{ kind = "block", stat = "base_fee_gwei" }"#;
    text.push_str(&metric("chain.base_fee_gwei", "base fee", base_fee));
    let config = load_config("lag", &text);
    let head = demo.provider.get_block_number().await.unwrap();
    assert!(
        head > 3,
        "the demo chain must be more than max_lag_blocks ahead"
    );
    let (run, first) = start_at_head(&config, |o| o.poll_interval = ms(50)).await;
    let expected = demo
        .provider
        .get_block_by_number(first.number.into())
        .await
        .unwrap()
        .unwrap();
    assert!(first.number >= head);
    assert_eq!(first.hash, expected.header.hash);
    run.stop().await;
}

#[tokio::test]
async fn pending_filters_select_by_sender_novelty_value_and_tip_percentile() {
    let b = bridge().await;
    let attacker = b.attacker;
    let attack = b.attack();
    // The last block before the watcher starts: one transaction tipping 5 gwei.
    b.tip_reference_block().await;
    let (effect, a) = (b.effect(), attack.address());
    let pending = |filter: &str| format!("{{ kind = \"pending\", {filter}, effect = {effect} }}");
    let config = b.config(
        "filters",
        false,
        &[
            (
                "p.new_sender",
                "attacks from senders not seen before",
                pending(&format!("to = \"{a}\", new_sender = true")),
            ),
            (
                "p.with_value",
                "attacks carrying at least 1 wei",
                pending(&format!("to = \"{a}\", min_value = 1")),
            ),
            (
                "p.high_tip",
                "attacks tipping at least the last block's median",
                pending("selector = \"attack()\", min_priority_fee_percentile = 50"),
            ),
        ],
    );

    let (mut run, first) = start_at_head(&config, |o| o.screen = None).await;
    common::set_automine(&b.provider, false).await;
    let mut hashes = Vec::new();
    for tip in [3, 10] {
        let sent = attack
            .attack()
            .from(attacker)
            .gas(300_000)
            .max_priority_fee_per_gas(tip * GWEI)
            .max_fee_per_gas(100 * GWEI)
            .send()
            .await
            .unwrap();
        hashes.push(*sent.tx_hash());
    }
    // First attack: a new sender tipping below the median. Second: a known sender tipping above.
    let mut seen = Vec::new();
    for _ in 0..2 {
        let WatchEvent::Pending(p) = run.next().await else {
            panic!("expected pending effects");
        };
        assert_eq!(p.block, first.number + 1);
        assert_eq!(p.value, 1000.0);
        seen.push((p.metric.to_string(), p.tx.hash));
    }
    assert_eq!(
        seen,
        vec![
            ("p.new_sender".to_string(), hashes[0]),
            ("p.high_tip".to_string(), hashes[1]),
        ]
    );
    // Nothing else matched: the next event is the block that mines both.
    common::mine(&b.provider).await;
    let events = run.until_block(first.number + 1).await;
    assert_eq!(events.len(), 1, "{events:?}");
    run.stop().await;
}

#[tokio::test]
async fn while_the_websocket_is_down_heads_come_by_http_polling() {
    let demo = demo().await;
    let (proxy, mut run, first) = demo
        .watch_behind_proxy("ws-down", |o| {
            o.poll_interval = ms(50);
            o.reconnect_min = ms(200);
            o.reconnect_max = ms(400);
        })
        .await;
    // The socket goes down and stays down.
    proxy.cut();
    let mut last = 0;
    for _ in 0..3 {
        last = demo.transfer("1").await;
    }
    run.blocks(first.number + 1..=last).await;
    run.stop().await;
}

#[test]
fn guardian_watch_refuses_a_bad_source_with_its_location() {
    let path =
        std::env::temp_dir().join(format!("guardian-watcher-{}-bad.toml", std::process::id()));
    std::fs::write(
        &path,
        r#"[networks.local]
chain_id = 31337
ws = ["ws://127.0.0.1:1"]

[metrics."vault.total_assets"]
description = "assets"
network = "local"
source = { kind = "call", to = "0x5FbDB2315678afecb367f032d93F642f64180aa3", signature = "totalAssets()" }
"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_guardian"))
        .args(["watch", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(":8:") && stderr.contains("`totalAssets()` declares no return values"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_dead_websocket_endpoint_is_skipped_for_the_next_one() {
    let demo = demo().await;
    let dead = Proxy::start(demo.anvil.port()).await;
    dead.cut();
    let mut config = demo.config("ws-failover");
    let net = config.networks.get_mut("local").unwrap();
    net.rpc.clear();
    net.ws = vec![
        format!("ws://127.0.0.1:{}", dead.port),
        demo.anvil.ws_endpoint(),
    ];
    let (mut run, first) = start_at_head(&config, |o| o.reconnect_min = ms(20)).await;
    let last = demo.transfer("3").await;
    let events = run.blocks(first.number + 1..=last).await;
    assert_eq!(value(last_block(&events), "token.owner_outflow"), 3.0);
    run.stop().await;
}
