//! What every protocol shape shares: amounts in whole tokens, the record of a
//! sent transaction ([`Sent`]), the one way a script step sends (explicit gas,
//! the step's fees), and how a metric is written into the generated
//! configuration.
//!
//! Below the protocol shapes and the script that plays them: both take these
//! from here, so neither imports the other back.

use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alloy::primitives::{Address, B256, I256, U256};

use super::ScenarioError;
use super::chain::{ATTACKER_TIP, Chain, SCRIPT_MAX_FEE, USER_TIP, rpc_err};
use super::spec::StepKind;

/// A transaction the script sent.
#[derive(Debug, Clone)]
pub struct Sent {
    pub label: String,
    pub kind: StepKind,
    pub from: Address,
    pub hash: B256,
    /// When the node accepted it, unix milliseconds.
    pub unix_ms: u64,
}

/// Whole tokens (18 decimals) to base units; amounts are checked positive at load.
pub fn units(x: f64) -> U256 {
    let milli = (x * 1_000.0).round() as u128;
    U256::from(milli) * U256::from(10u128.pow(15))
}

/// Base units to whole tokens.
pub fn whole(x: U256) -> f64 {
    u128::try_from(x).unwrap_or(u128::MAX) as f64 / 1e18
}

/// A price as a feed answers it (8 decimals).
pub fn answer(price: f64) -> I256 {
    I256::try_from((price * 1e8).round() as i128).unwrap_or_default()
}

/// Awaits a contract read (a `.call()`), naming `what` was read if it fails.
pub async fn read<T, E: std::fmt::Display>(
    call: impl std::future::IntoFuture<Output = Result<T, E>>,
    what: &'static str,
) -> Result<T, ScenarioError> {
    call.await.map_err(rpc_err(what))
}

/// The wall clock, unix milliseconds.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The tip a step's transactions pay: attackers outbid ordinary users.
pub fn tip(kind: StepKind) -> u128 {
    if kind == StepKind::Attack {
        ATTACKER_TIP
    } else {
        USER_TIP
    }
}

/// Sends one scripted transaction with explicit gas and the step's fees; does not wait for it.
pub async fn send_tx<P: alloy::providers::Provider, C: alloy::sol_types::SolCall>(
    call: alloy::contract::SolCallBuilder<P, C>,
    from: Address,
    gas: u64,
    kind: StepKind,
    label: String,
) -> Result<Sent, ScenarioError> {
    let pending = call
        .from(from)
        .gas(gas)
        .max_fee_per_gas(SCRIPT_MAX_FEE)
        .max_priority_fee_per_gas(tip(kind))
        .send()
        .await
        .map_err(rpc_err("send a scripted transaction"))?;
    Ok(Sent {
        label,
        kind,
        from,
        hash: *pending.tx_hash(),
        unix_ms: unix_ms(),
    })
}

/// Waits until `hash` is mined, at most `within_s` seconds (`step` names it in the error).
pub async fn wait_mined(
    chain: &Chain,
    hash: B256,
    step: &'static str,
    within_s: u64,
) -> Result<(), ScenarioError> {
    let deadline = Instant::now() + Duration::from_secs(within_s);
    while chain.receipt(hash).await?.is_none() {
        if Instant::now() > deadline {
            return Err(ScenarioError::Chain {
                step,
                message: format!("{hash} not mined within {within_s} s"),
            });
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Ok(())
}

/// Appends one `[metrics."name"]` table, on the local network, to a generated configuration.
pub fn write_metric(t: &mut String, name: &str, description: &str, unit: &str, source: &str) {
    let _ = write!(
        t,
        "\n[metrics.\"{name}\"]\ndescription = \"{description}\"\nunit = \"{unit}\"\nnetwork = \"local\"\nsource = {source}\n"
    );
}
