//! What the guardian watches on each shape: the generated `guardian.toml`'s
//! header (network, key, executor), one pause action per target, and the
//! shape's metrics as a table.

use alloy::primitives::Address;

use super::Shape;
use crate::config::text::{LocalNetwork, env_key, pause_action};
use crate::policy::model::Mode;
use crate::scenario::chain::Chain;

/// One `[metrics."name"]` entry of the generated configuration.
pub(super) struct Metric {
    pub name: String,
    pub description: &'static str,
    pub unit: &'static str,
    /// The metric's `source`, as an inline TOML table.
    pub source: String,
}

fn metric(name: &str, description: &'static str, unit: &'static str, source: String) -> Metric {
    Metric {
        name: name.to_string(),
        description,
        unit,
        source,
    }
}

/// The configuration's guardian, network, key and executor sections.
pub(super) fn header(
    chain: &Chain,
    module: Address,
    mode: Mode,
    block_time_s: u64,
    policies: &[std::path::PathBuf],
) -> String {
    let policies: Vec<String> = policies
        .iter()
        .map(|p| {
            let absolute = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
            absolute.display().to_string()
        })
        .collect();
    let network = LocalNetwork {
        policies: Some(policies),
        chain_id: chain.chain_id,
        block_time: Some(format!("{block_time_s}s")),
        ..LocalNetwork::new(mode, &[&chain.http], &[&chain.ws])
    };
    format!(
        r#"# Written by `guardian simulate` for one scenario run.
{network}{key}
[executors.module]
kind = "module"
module = "{module}"
key = "bot"
network = "local"
max_fee_gwei = 5000
deadline = "30s"
"#,
        key = env_key("bot", "GUARDIAN_SCENARIO_KEY_UNUSED"),
    )
}

/// One pause action per target, through the GuardianModule.
pub(super) fn pause_actions(t: &mut String, targets: &[(String, Address)]) {
    for (action, target) in targets {
        let description = format!("pause {target} through the GuardianModule");
        t.push_str(&pause_action(action, &description, target, "module", true));
    }
}

fn erc20(token: &Address, holder: &Address) -> String {
    format!(
        r#"{{ kind = "erc20_balance", token = "{token}", holder = "{holder}", decimals = 18 }}"#
    )
}

/// Tokens emitted by `event`'s `amount` field at `address` in the block.
fn event_sum(address: &Address, event: &str) -> String {
    format!(
        r#"{{ kind = "event_sum", address = "{address}", event = "{event}", field = "amount", decimals = 18 }}"#
    )
}

fn pending(effect: &str) -> String {
    format!(r#"{{ kind = "pending", effect = {effect} }}"#)
}

fn oracle(feed: &Address) -> String {
    format!(r#"{{ kind = "oracle_answer", feed = "{feed}", decimals = 8 }}"#)
}

/// The metrics of a shape other than Aave (whose reserves write their own).
pub(super) fn metrics(shape: &Shape) -> Vec<Metric> {
    match shape {
        Shape::Bridge { token, replica, .. } => bridge(token, replica),
        Shape::DonationPool { token, pool, .. } => donation_pool(token, pool),
        Shape::Lending {
            usd,
            market,
            feed,
            reference,
            ..
        } => lending(usd, market, feed, reference),
        Shape::Pools { pools, .. } => pools
            .iter()
            .enumerate()
            .flat_map(|(i, p)| pool(i + 1, p))
            .collect(),
        Shape::Aave(_) => Vec::new(),
    }
}

fn bridge(token: &Address, replica: &Address) -> Vec<Metric> {
    let balance = erc20(token, replica);
    let processed = "MessageProcessed(bytes32 indexed messageHash, address indexed token, address indexed recipient, uint256 amount)";
    vec![
        metric(
            "bridge.liquidity",
            "tokens the bridge holds",
            "bUSD",
            balance.clone(),
        ),
        metric(
            "bridge.outflow",
            "tokens released by processed messages in the block",
            "bUSD",
            event_sum(replica, processed),
        ),
        metric(
            "bridge.withdrawals",
            "messages processed in the block",
            "count",
            format!(r#"{{ kind = "event_count", address = "{replica}", event = "{processed}" }}"#),
        ),
        metric(
            "bridge.pending_outflow",
            "tokens a pending transaction would take out of the bridge",
            "bUSD",
            pending(&balance),
        ),
    ]
}

fn donation_pool(token: &Address, pool: &Address) -> Vec<Metric> {
    let balance = erc20(token, pool);
    vec![
        metric(
            "pool.cash",
            "tokens the pool holds",
            "dUSD",
            balance.clone(),
        ),
        metric(
            "pool.donations",
            "deposit donated to reserves in the block",
            "dUSD",
            event_sum(
                pool,
                "DonatedToReserves(address indexed account, uint256 amount)",
            ),
        ),
        metric(
            "pool.withdrawals",
            "tokens withdrawn in the block",
            "dUSD",
            event_sum(pool, "Withdrawn(address indexed account, uint256 amount)"),
        ),
        metric(
            "pool.pending_outflow",
            "tokens a pending transaction would take out of the pool",
            "dUSD",
            pending(&balance),
        ),
    ]
}

fn lending(usd: &Address, market: &Address, feed: &Address, reference: &Address) -> Vec<Metric> {
    let balance = erc20(usd, market);
    vec![
        metric(
            "market.cash",
            "debt tokens the market holds",
            "dUSD",
            balance.clone(),
        ),
        metric(
            "market.price",
            "the market's own collateral price",
            "dUSD",
            oracle(feed),
        ),
        metric(
            "market.reference_price",
            "an independent collateral price",
            "dUSD",
            oracle(reference),
        ),
        metric(
            "market.borrows",
            "debt tokens borrowed in the block",
            "dUSD",
            event_sum(market, "Borrowed(address indexed borrower, uint256 amount)"),
        ),
        metric(
            "market.withdrawals",
            "debt tokens lenders withdrew in the block",
            "dUSD",
            event_sum(market, "Withdrawn(address indexed lender, uint256 amount)"),
        ),
        metric(
            "market.pending_outflow",
            "debt tokens a pending transaction would take out of the market",
            "dUSD",
            pending(&balance),
        ),
    ]
}

/// Pool `n` (1-based) of the reentrant-pools shape.
fn pool(n: usize, pool: &Address) -> Vec<Metric> {
    let eth = format!(r#"{{ kind = "native_balance", address = "{pool}" }}"#);
    vec![
        metric(
            &format!("pool{n}.eth"),
            "ETH the pool holds",
            "ETH",
            eth.clone(),
        ),
        metric(
            &format!("pool{n}.virtual_price"),
            "ETH per LP token",
            "ETH",
            format!(
                r#"{{ kind = "call", to = "{pool}", signature = "virtualPrice()(uint256)", decimals = 18 }}"#
            ),
        ),
        metric(
            &format!("pool{n}.pending_outflow"),
            "ETH a pending transaction would take out of the pool",
            "ETH",
            pending(&eth),
        ),
    ]
}
