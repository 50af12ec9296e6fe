//! What the benches share beyond tests/common: their command-line numbers,
//! quantiles, resident memory, and the 50-metric read plan the watcher and
//! screening benches measure.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use alloy::network::EthereumWallet;
use alloy::node_bindings::AnvilInstance;
use alloy::primitives::{Address, Bytes, U256, utils::parse_ether};
use alloy::providers::{DynProvider, Provider, ProviderBuilder, WsConnect};
use alloy::signers::local::PrivateKeySigner;
use guardian::guard::{Call, ChainView, Effect};

use crate::common::{DemoToken, metric, mined};

/// Chain state from memory: the vault is not paused and the preflight passes
/// (the guard's logic timed without its round trips).
pub struct Memory;

impl ChainView for Memory {
    fn read(&self, _: Address, _: Bytes) -> impl Future<Output = Result<Bytes, String>> + Send {
        std::future::ready(Ok(Bytes::from(U256::ZERO.to_be_bytes::<32>().to_vec())))
    }
    fn preflight(
        &self,
        _: &str,
        _: &Call,
        _: &Effect,
    ) -> impl Future<Output = Result<(), String>> + Send {
        std::future::ready(Ok(()))
    }
}

/// A wallet signing as anvil's first account (the owner) and as `senders`
/// fresh random accounts: (the wallet, the owner, the senders).
pub fn owner_and_senders(
    anvil: &AnvilInstance,
    senders: usize,
) -> (EthereumWallet, Address, Vec<Address>) {
    let keys: Vec<PrivateKeySigner> = (0..senders).map(|_| PrivateKeySigner::random()).collect();
    let owner_key = PrivateKeySigner::from(anvil.keys()[0].clone());
    let owner = owner_key.address();
    let mut wallet = EthereumWallet::from(owner_key);
    for k in &keys {
        wallet.register_signer(k.clone());
    }
    (wallet, owner, keys.iter().map(|k| k.address()).collect())
}

/// A provider on the WebSocket endpoint `url` (for subscriptions).
pub async fn ws(url: &str) -> DynProvider {
    ProviderBuilder::new()
        .connect_ws(WsConnect::new(url.to_string()))
        .await
        .expect("connect to anvil's WebSocket")
        .erased()
}

/// Gives each holder 100 ether and 1,000,000 of `token` (minted by its owner, `p`'s sender).
pub async fn fund_holders(p: &DynProvider, token: Address, holders: &[Address]) {
    let token = DemoToken::new(token, p);
    for h in holders {
        let _: serde_json::Value = p
            .raw_request(
                "anvil_setBalance".into(),
                (h, parse_ether("100").expect("literal")),
            )
            .await
            .expect("fund");
        mined(token.mint(*h, parse_ether("1000000").expect("literal"))).await;
    }
}

/// The number after `name` on the command line (`-- --rate 300`), or `default`.
pub fn arg(name: &str, default: f64) -> f64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(default)
}

/// The `q` quantile (nearest rank) of `samples`, sorting them; NaN when empty.
pub fn quantile(samples: &mut [f64], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_by(f64::total_cmp);
    samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1]
}

/// Prints `name: n=.. p50=.. ms p99=.. ms max=.. ms`.
pub fn report(name: &str, samples: Vec<Duration>) {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    println!(
        "{name}: n={} p50={:.2} ms p99={:.2} ms max={:.2} ms",
        ms.len(),
        quantile(&mut ms, 0.50),
        quantile(&mut ms, 0.99),
        quantile(&mut ms, 1.0)
    );
}

/// Resident set size of this process in KiB (Linux).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// 50 metrics of every per-block kind on network `local`, none sharing a read
/// except the oracle's answer and age: 20 `balanceOf` calls (`holder(0..20)`),
/// 10 ERC20 balances (`holder(20..30)`), 5 native balances (`holder(30..35)`),
/// 2 transfer counts and sums (`holder(35..37)`), 4 block statistics, the
/// oracle's answer and age, 3 vault calls, the share price and the head's age.
pub fn fifty_metrics(
    token: Address,
    vault: Address,
    feed: Address,
    holder: impl Fn(usize) -> Address,
) -> String {
    let transfer = "Transfer(address indexed from, address indexed to, uint256 value)";
    let mut t = String::new();
    let mut add = |name: String, source: String| t.push_str(&metric(&name, "bench", &source));
    for i in 0..20 {
        let args = format!("\"{}\"", holder(i));
        let source = format!(
            "{{ kind = \"call\", to = \"{token}\", signature = \"balanceOf(address)(uint256)\", args = [{args}], decimals = 18 }}"
        );
        add(format!("call.{i}"), source);
    }
    for i in 20..30 {
        let h = holder(i);
        let source = format!(
            "{{ kind = \"erc20_balance\", token = \"{token}\", holder = \"{h}\", decimals = 18 }}"
        );
        add(format!("erc20.{i}"), source);
    }
    for i in 30..35 {
        let source = format!(
            "{{ kind = \"native_balance\", address = \"{}\" }}",
            holder(i)
        );
        add(format!("native.{i}"), source);
    }
    for i in 35..37 {
        let (h, events) = (
            holder(i),
            format!("address = \"{token}\", event = \"{transfer}\""),
        );
        add(
            format!("events.count.{i}"),
            format!("{{ kind = \"event_count\", {events}, topics = {{ from = \"{h}\" }} }}"),
        );
        add(
            format!("events.sum.{i}"),
            format!(
                "{{ kind = \"event_sum\", {events}, topics = {{ to = \"{h}\" }}, field = \"value\", decimals = 18 }}"
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
        let source = format!(
            "{{ kind = \"call\", to = \"{vault}\", signature = \"{sig}\", decimals = 18 }}"
        );
        add(format!("vault.{name}"), source);
    }
    add(
        "vault.share_price".into(),
        "{ kind = \"ratio\", numerator = \"vault.assets\", denominator = \"vault.supply\" }".into(),
    );
    add("chain.head_age".into(), "{ kind = \"head_age\" }".into());
    t
}
