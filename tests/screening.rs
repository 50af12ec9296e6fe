//! Screening on a real anvil: every pending transaction, unfiltered, executed
//! on the latest state with the block's reads after it (`eth_simulateV1`); the
//! what-if block judged by the same policies; same-sender sequences in order.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use alloy::node_bindings::AnvilInstance;
use alloy::primitives::{Address, B256, utils::parse_ether};
use alloy::providers::DynProvider;
use alloy::providers::Provider;
use alloy::rpc::client::RpcClient;
use alloy::rpc::types::BlockNumberOrTag;
use common::{DemoToken, GWEI, anvil, dry_run_network, load_config, metric, mined, provider_with};
use guardian::config::Config;
use guardian::metrics::{MetricId, Sample};
use guardian::policy::{Engine, Mode, compile_str};
use guardian::source::chain::screen::{ScreenOptions, Screener};
use guardian::source::chain::{
    PendingWatch, ReadPlan, Screened, WatchEvent, Watcher, WatcherOptions,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const POLICY: &str = r#"
[[policy]]
id = "treasury-drop"
description = "the treasury loses a third of its tokens within a block"
severity = "critical"
action = "pause"
cooldown = "0 blocks"
[policy.when]
kind = "change"
metric = "treasury.balance"
window = "1 block"
direction = "down"
by = "33%"
"#;

fn value(s: &Screened, metric: &str) -> f64 {
    s.values
        .iter()
        .find(|(m, _)| &**m == metric)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("{metric} not in {:?}", s.values))
}

/// A token whose treasury holds 1,000, and a configuration watching it: its
/// balance, its outflow in the block, a block statistic, and the unfiltered
/// pending metric on the same balance.
struct Treasury {
    anvil: AnvilInstance,
    provider: DynProvider,
    token: DemoToken::DemoTokenInstance<DynProvider>,
    owner: Address,
    treasury: Address,
    sink: Address,
    config: Config,
}

impl Treasury {
    async fn deploy() -> Self {
        let anvil = anvil(&[]);
        let provider = provider_with(&anvil, &[0, 1]);
        let (owner, treasury) = (anvil.addresses()[0], anvil.addresses()[1]);
        let sink = Address::with_last_byte(0x5e);
        let token = DemoToken::deploy(provider.clone(), "T".into(), "T".into(), owner)
            .await
            .unwrap();
        mined(token.mint(treasury, parse_ether("1000").unwrap())).await;
        let balance = format!(
            r#"{{ kind = "erc20_balance", token = "{}", holder = "{treasury}", decimals = 18 }}"#,
            token.address()
        );
        let transfer = "Transfer(address indexed from, address indexed to, uint256 value)";
        let outflow = format!(
            r#"{{ kind = "event_sum", address = "{}", event = "{transfer}", topics = {{ from = "{treasury}" }}, field = "value", decimals = 18 }}"#,
            token.address()
        );
        let metrics = [
            (
                "treasury.balance",
                "tokens the treasury holds",
                balance.clone(),
            ),
            (
                "treasury.outflow",
                "tokens leaving the treasury in the block",
                outflow,
            ),
            (
                "chain.gas_used",
                "a block statistic: not part of a what-if block",
                r#"{ kind = "block", stat = "gas_used_ratio" }"#.to_string(),
            ),
            (
                "treasury.pending_outflow",
                "tokens a pending transaction would take out of the treasury (no filter)",
                format!("{{ kind = \"pending\", effect = {balance} }}"),
            ),
        ];
        let mut text = dry_run_network(&[&anvil.endpoint()], &[&anvil.ws_endpoint()]);
        for (name, description, source) in &metrics {
            text.push_str(&metric(name, description, source));
        }
        let config = load_config("screening", &text);
        Self {
            anvil,
            provider,
            token,
            owner,
            treasury,
            sink,
            config,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pending_transaction_is_screened_and_a_sequence_is_one_effect() {
    let t = Treasury::deploy().await;
    let (provider, token, config) = (&t.provider, &t.token, &t.config);
    let (owner, treasury, sink) = (t.owner, t.treasury, t.sink);
    let mut engine = Engine::new(
        compile_str("p.toml", POLICY, &Config::empty()).unwrap_or_else(|e| panic!("{e}")),
        Mode::Enforce,
    );

    let watcher = Watcher::new(config, "local", WatcherOptions::default()).unwrap();
    let (tx, mut events) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(watcher.run(tx, cancel.clone()));
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(20), events.recv())
            .await
            .expect("the watcher sent nothing within 20 s")
            .expect("the watcher stopped")
    };
    let WatchEvent::Block(first) = next().await else {
        panic!("expected the head first");
    };
    for (name, v) in &first.values {
        let metric = engine.metric_id(name).unwrap_or(MetricId(0));
        if engine.metric_id(name).is_some() {
            engine.on_sample(
                Sample {
                    block: first.number,
                    time_ms: first.time_ms,
                    metric,
                    value: *v,
                },
                &mut |_| {},
            );
        }
    }

    let _: serde_json::Value = provider
        .raw_request("evm_setAutomine".into(), (false,))
        .await
        .unwrap();
    let send = async |call: alloy::rpc::types::TransactionRequest| -> B256 {
        *provider.send_transaction(call).await.unwrap().tx_hash()
    };
    use alloy::network::TransactionBuilder;
    let base = |from: Address, data: Vec<u8>, nonce: u64| {
        alloy::rpc::types::TransactionRequest::default()
            .with_from(from)
            .with_to(*token.address())
            .with_input(data)
            .with_nonce(nonce)
            .with_gas_limit(100_000)
            .with_max_fee_per_gas(50 * GWEI)
            .with_max_priority_fee_per_gas(2 * GWEI)
    };
    use alloy::sol_types::SolCall;
    let n = provider.get_transaction_count(treasury).await.unwrap();
    let owner_nonce = provider.get_transaction_count(owner).await.unwrap();
    // A benign mint by the owner; then the treasury's (stolen) key sends a pair:
    // approve itself, then `transferFrom` 950 of the treasury's 1,000 out. The
    // second reverts alone (no allowance): only as a sequence does it drain.
    let mint = DemoToken::mintCall {
        to: sink,
        amount: parse_ether("5").unwrap(),
    };
    let benign = send(base(owner, mint.abi_encode(), owner_nonce)).await;
    let approve = DemoToken::approveCall {
        spender: treasury,
        value: parse_ether("950").unwrap(),
    };
    let first_of_pair = send(base(treasury, approve.abi_encode(), n)).await;
    let drain = DemoToken::transferFromCall {
        from: treasury,
        to: sink,
        value: parse_ether("950").unwrap(),
    };
    let second_of_pair = send(base(treasury, drain.abi_encode(), n + 1)).await;

    let mut screened: HashMap<B256, Screened> = HashMap::new();
    while screened.len() < 3 {
        match next().await {
            WatchEvent::Screened(s) => {
                screened.insert(s.tx.hash, *s);
            }
            WatchEvent::Pending(p) => {
                panic!("screening emits what-if blocks, not committed samples: {p:?}")
            }
            _ => {}
        }
    }
    // Nothing mined yet: all three were seen pending.
    for h in [benign, first_of_pair, second_of_pair] {
        assert!(provider.get_transaction_receipt(h).await.unwrap().is_none());
    }
    let b = &screened[&benign];
    assert!(b.succeeds && b.sequence.is_empty());
    assert_eq!(b.block, first.number + 1);
    assert_eq!(value(b, "treasury.balance"), 1000.0);
    assert_eq!(value(b, "treasury.pending_outflow"), 0.0);
    assert_eq!(value(b, "treasury.outflow"), 0.0);
    assert!(
        b.values.iter().all(|(m, _)| &**m != "chain.gas_used"),
        "block statistics are left out"
    );

    let one = &screened[&first_of_pair];
    assert!(one.succeeds && one.sequence.is_empty());
    assert_eq!(value(one, "treasury.balance"), 1000.0);
    assert_eq!(value(one, "treasury.outflow"), 0.0);

    // The second runs after the first: the pair's effect, as one.
    let pair = &screened[&second_of_pair];
    assert_eq!(pair.sequence, vec![first_of_pair]);
    assert!(pair.succeeds);
    assert_eq!(value(pair, "treasury.pending_outflow"), 950.0);
    assert_eq!(value(pair, "treasury.balance"), 50.0);
    assert_eq!(value(pair, "treasury.outflow"), 950.0);
    assert_eq!(pair.tx.from, treasury);
    assert_eq!(pair.tx.max_priority_fee_per_gas, Some(2 * GWEI));

    // The same policy judges each: only the pair trips it.
    let judge = |engine: &mut Engine, s: &Screened| {
        let samples: Vec<(MetricId, f64)> = s
            .values
            .iter()
            .filter_map(|(n, v)| engine.metric_id(n).map(|m| (m, *v)))
            .collect();
        engine.what_if(s.block, s.time_ms, &samples)
    };
    assert!(judge(&mut engine, b).is_empty());
    assert!(judge(&mut engine, one).is_empty());
    let trips = judge(&mut engine, pair);
    assert_eq!(trips.len(), 1, "{trips:?}");
    assert_eq!(
        trips[0].evidence["what_if"]["changed"]["treasury.balance"]["before"],
        1000.0
    );
    assert_eq!(
        trips[0].evidence["what_if"]["changed"]["treasury.balance"]["after"],
        50.0
    );

    cancel.cancel();
    task.await.unwrap().unwrap();
}

/// `eth_simulateV1` does not check nonces, so a transaction screened after a
/// block mined it would count its effect twice (seen in the Aave scenarios
/// under load: a withdrawal mined 9 blocks before its screening tripped a
/// withdrawal policy). The screening reads the sender's nonce with the
/// simulation and drops a transaction whose nonce has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_mined_before_its_screening_is_not_counted_again() {
    let t = Treasury::deploy().await;
    let defs = || t.config.metrics.iter();
    let mut screener = Screener::new(
        ReadPlan::new(defs()),
        PendingWatch::new(defs()),
        ScreenOptions::default(),
    );
    let client = RpcClient::new_http(t.anvil.endpoint_url());
    let transfer = |value: &str| {
        t.token
            .transfer(t.sink, parse_ether(value).unwrap())
            .from(t.treasury)
    };
    let screen = async |screener: &mut Screener, hash: B256| {
        let tx = t
            .provider
            .get_transaction_by_hash(hash)
            .await
            .unwrap()
            .expect("the transaction is known");
        let head = t
            .provider
            .get_block_by_number(BlockNumberOrTag::Latest)
            .await
            .unwrap()
            .expect("a latest block");
        let latest = (head.header.number, head.header.timestamp);
        let job = screener.prepare(&client, latest, tx, 0).await.unwrap();
        job.run(client.clone()).await.unwrap()
    };

    // Mined at once (automine), then screened: nothing to judge.
    let mined_hash = mined(transfer("900")).await.transaction_hash;
    assert!(
        screen(&mut screener, mined_hash).await.is_none(),
        "a mined transaction must not be screened on top of its own effect"
    );

    // Still pending: screened, its effect on the state after the first.
    let _: serde_json::Value = t
        .provider
        .raw_request("evm_setAutomine".into(), (false,))
        .await
        .unwrap();
    let pending = *transfer("60").send().await.unwrap().tx_hash();
    let s = screen(&mut screener, pending)
        .await
        .expect("a pending transaction is screened");
    assert!(s.succeeds);
    assert_eq!(value(&s, "treasury.balance"), 40.0);
    assert_eq!(value(&s, "treasury.pending_outflow"), 60.0);
}
