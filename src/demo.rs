//! The headline demo on a local chain: a Nomad-shape copycat drain, visible in
//! the mempool, stopped by a pause mined ahead of it in the same block.
//!
//! It runs the attack twice on fresh anvil chains (2 s blocks, fee-ordered
//! mining): once with nobody watching, to measure what the attack takes, and
//! once with the guardian pipeline running exactly as `guardian run` does
//! (same configuration loading, engine, guard and executor). The keys are
//! anvil's development accounts, created by anvil at start; nothing secret.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use alloy::network::{Ethereum, EthereumWallet};
use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::primitives::utils::{format_ether, parse_ether};
use alloy::primitives::{Address, U256};
use alloy::providers::{DynProvider, PendingTransactionBuilder, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol;

use crate::config::Config;
use crate::config::text::{LocalNetwork, env_key, pause_action};
use crate::executor::Execution;
use crate::keys::Key;
use crate::pipeline::{self, Report, RunOptions};
use crate::policy::compile_str;
use crate::policy::model::Mode;
use crate::source::chain::WatcherOptions;

sol!(
    #[sol(rpc)]
    DemoToken,
    "contracts/artifacts/DemoToken.json"
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

const GWEI: u128 = 1_000_000_000;

/// A token amount (18 decimals) without trailing zeros: `1000`, `12.5`.
fn tokens(x: U256) -> String {
    let text = format_ether(x);
    let text = text.trim_end_matches('0');
    text.trim_end_matches('.').to_string()
}

/// The demo's policy: what a bridge team would write for the mempool path.
pub const POLICY: &str = r#"
[[policy]]
id = "bridge-pending-drain"
description = "A pending transaction would take 10% or more of the bridge's tokens"
severity = "critical"
action = "pause-bridge"
cooldown = "10 blocks"
[policy.when]
kind = "threshold"
metric = "bridge.pending_outflow"
op = ">="
value = 100
"#;

/// Problems running the demo.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(
        "anvil not found at {0}: run `npm ci` at the repository root (it installs @foundry-rs/anvil-linux-amd64)"
    )]
    NoAnvil(PathBuf),
    #[error("anvil did not start: {0}")]
    Anvil(String),
    #[error("{step}: {message}")]
    Step { step: &'static str, message: String },
}

fn step<E: std::fmt::Display>(step: &'static str) -> impl FnOnce(E) -> DemoError {
    move |e| DemoError::Step {
        step,
        message: e.to_string(),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A bridge deployed on a fresh chain.
#[derive(Debug)]
pub struct Bridge {
    pub anvil: AnvilInstance,
    /// Signs as the deployer (anvil account 0) and as the attacker (account 6).
    pub provider: DynProvider,
    pub token: Address,
    pub replica: Address,
    /// The copycat attack contract: `attack()` drains the whole liquidity.
    pub attack: Address,
    pub attacker: Address,
    /// The guardian's key (anvil account 4), holding the replica's pauser role.
    pub bot: PrivateKeySigner,
}

/// Tokens the bridge holds, all of which one `attack()` takes.
pub const LIQUIDITY: &str = "1000";

/// Anvil arguments of the demo chain: 2 s blocks, mined in fee order.
pub const DEMO_CHAIN: [&str; 4] = ["--order", "fees", "--block-time", "2"];

/// Starts anvil with `args` and deploys the vulnerable bridge, funded, with the
/// attack contract ready and the guardian's key holding the pauser role.
pub async fn deploy(anvil_bin: &Path, args: &[&str]) -> Result<Bridge, DemoError> {
    let anvil = Anvil::at(anvil_bin)
        .args(args.iter().copied())
        .try_spawn()
        .map_err(|e| DemoError::Anvil(e.to_string()))?;
    let keys = anvil.keys();
    let deployer = PrivateKeySigner::from(keys[0].clone());
    let attacker = PrivateKeySigner::from(keys[6].clone());
    let bot = PrivateKeySigner::from(keys[4].clone());
    let mut wallet = EthereumWallet::from(deployer.clone());
    wallet.register_signer(attacker.clone());
    let provider = ProviderBuilder::new()
        .wallet(wallet)
        .connect_http(anvil.endpoint_url())
        .erased();
    let owner = deployer.address();
    let token = DemoToken::deploy(&provider, "Bridged USD".into(), "bUSD".into(), owner)
        .await
        .map_err(step("deploy the token"))?;
    // Zero initial root: every unproven message reads as proven (the Nomad bug).
    let replica = MessageReplica::deploy(
        &provider,
        owner,
        1000,
        owner,
        U256::ZERO,
        Default::default(),
    )
    .await
    .map_err(step("deploy the bridge replica"))?;
    let liquidity = parse_ether(LIQUIDITY).map_err(step("parse"))?;
    let fund = token.mint(*replica.address(), liquidity);
    mined(fund.send().await, "fund the bridge").await?;
    let attack =
        ReplicaCopycatAttack::deploy(&provider, *replica.address(), *token.address(), liquidity)
            .await
            .map_err(step("deploy the attack contract"))?;
    let pauser = replica
        .PAUSER_ROLE()
        .call()
        .await
        .map_err(step("read PAUSER_ROLE"))?;
    let grant = replica.grantRole(pauser, bot.address());
    mined(grant.send().await, "grant the guardian the pauser role").await?;
    let (token, replica, attack) = (*token.address(), *replica.address(), *attack.address());
    Ok(Bridge {
        provider,
        token,
        replica,
        attack,
        attacker: attacker.address(),
        bot,
        anvil,
    })
}

/// Waits for a set-up transaction `what` to be mined.
async fn mined(
    sent: Result<PendingTransactionBuilder<Ethereum>, alloy::contract::Error>,
    what: &'static str,
) -> Result<(), DemoError> {
    sent.map_err(step(what))?
        .get_receipt()
        .await
        .map_err(step(what))?;
    Ok(())
}

/// Sends the attack from the attacker's account (tip 3 gwei, fee cap 50 gwei);
/// returns its hash and when it was broadcast (unix ms).
pub async fn send_attack(b: &Bridge) -> Result<(alloy::primitives::B256, u64), DemoError> {
    let attack = ReplicaCopycatAttack::new(b.attack, &b.provider);
    let t = now_ms();
    let sent = attack
        .attack()
        .from(b.attacker)
        .gas(300_000)
        .max_priority_fee_per_gas(3 * GWEI)
        .max_fee_per_gas(50 * GWEI)
        .send()
        .await
        .map_err(step("broadcast the attack"))?;
    Ok((*sent.tx_hash(), t))
}

async fn balance(b: &Bridge) -> Result<U256, DemoError> {
    DemoToken::new(b.token, &b.provider)
        .balanceOf(b.replica)
        .call()
        .await
        .map_err(step("read the bridge's balance"))
}

/// Waits up to 30 s for `hash`'s receipt, asking every `poll`.
pub async fn receipt_every(
    b: &Bridge,
    hash: alloy::primitives::B256,
    poll: Duration,
) -> Result<alloy::rpc::types::TransactionReceipt, DemoError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(r) = b
            .provider
            .get_transaction_receipt(hash)
            .await
            .map_err(step("read a receipt"))?
        {
            return Ok(r);
        }
        if Instant::now() > deadline {
            return Err(DemoError::Step {
                step: "wait for a receipt",
                message: format!("{hash} not mined within 30 s"),
            });
        }
        tokio::time::sleep(poll).await;
    }
}

async fn receipt(
    b: &Bridge,
    hash: alloy::primitives::B256,
) -> Result<alloy::rpc::types::TransactionReceipt, DemoError> {
    receipt_every(b, hash, Duration::from_millis(100)).await
}

/// The guardian configuration watching `b`: the bridge's balance, the pending
/// `attack()` effect, and a pause through the guardian's own key.
pub fn config_text(b: &Bridge) -> String {
    let balance = format!(
        r#"{{ kind = "erc20_balance", token = "{}", holder = "{}", decimals = 18 }}"#,
        b.token, b.replica
    );
    let (rpc, ws) = (b.anvil.endpoint(), b.anvil.ws_endpoint());
    let network = LocalNetwork {
        block_time: Some("2s".to_string()),
        ..LocalNetwork::new(Mode::Enforce, &[&rpc], &[&ws])
    };
    format!(
        r#"{network}{key}
[executors.direct]
kind = "eoa"
key = "bot"
network = "local"
max_fee_gwei = 500
deadline = "30s"

[metrics."bridge.balance"]
description = "tokens the bridge holds"
unit = "bUSD"
network = "local"
source = {balance}

[metrics."bridge.pending_outflow"]
description = "tokens a pending attack() would take out of the bridge"
unit = "bUSD"
network = "local"
source = {{ kind = "pending", to = "{attack}", selector = "attack()", effect = {balance} }}
{pause}"#,
        key = env_key("bot", "GUARDIAN_DEMO_UNUSED"),
        attack = b.attack,
        pause = pause_action(
            "pause-bridge",
            "pause the bridge replica with the guardian's pauser role",
            b.replica,
            "direct",
            true
        ),
    )
}

/// Runs the demo and returns its story.
pub async fn run(anvil_bin: &Path) -> Result<String, DemoError> {
    if !anvil_bin.is_file() {
        return Err(DemoError::NoAnvil(anvil_bin.to_path_buf()));
    }
    let mut story = String::new();
    let _ = writeln!(
        story,
        "guardian demo: a Nomad-shape bridge drain (2022-08-01: $190M taken by copycat transactions)"
    );
    let _ = writeln!(
        story,
        "local anvil, 2 s blocks, fee-ordered mining; the bridge holds {LIQUIDITY} bUSD\n"
    );

    // 1. Unprotected.
    let b = deploy(anvil_bin, &DEMO_CHAIN).await?;
    let (hash, _) = send_attack(&b).await?;
    let r = receipt(&b, hash).await?;
    let left = balance(&b).await?;
    let total = parse_ether(LIQUIDITY).map_err(step("parse"))?;
    let lost_unprotected = total - left;
    let _ = writeln!(
        story,
        "without guardian: the attack was mined in block {} and took {} bUSD",
        r.block_number.unwrap_or_default(),
        tokens(lost_unprotected)
    );
    drop(b);

    // 2. Protected.
    let b = deploy(anvil_bin, &DEMO_CHAIN).await?;
    let dir = std::env::temp_dir().join(format!("guardian-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(step("create a temporary folder"))?;
    let config_path = dir.join("guardian.toml");
    std::fs::write(&config_path, config_text(&b)).map_err(step("write the demo configuration"))?;
    let config = Config::load(&config_path).map_err(step("load the demo configuration"))?;
    let policies = compile_str("demo-policy.toml", POLICY, &config)
        .map_err(step("compile the demo policy"))?;
    let keys = HashMap::from([("bot".to_string(), Key::local("bot", b.bot.clone()))]);
    let record = dir.join("demo-trace.csv");
    let options = RunOptions {
        record: Some(record.clone()),
        watcher: WatcherOptions {
            poll_interval: Duration::from_millis(50),
            ..WatcherOptions::default()
        },
        channel_capacity: 256,
        ..RunOptions::default()
    };
    let pipeline::Spawned {
        mut reports,
        cancel,
        task: guardian,
    } = pipeline::spawn(config, policies, keys, options, 256);

    // Wait until the guardian has read the bridge, then wait for a fresh block so
    // the attack lands at a realistic point in the slot (early: the hard case is late).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&record)
        .unwrap_or_default()
        .contains(",bridge.balance,")
    {
        if Instant::now() > deadline {
            return Err(DemoError::Step {
                step: "start the guardian",
                message: "the watcher read nothing within 30 s".into(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (hash, broadcast_ms) = send_attack(&b).await?;
    let _ = writeln!(story, "\nwith guardian:");
    let _ = writeln!(story, "  t+0 ms      attacker broadcasts attack() {hash}");
    let mut pause = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while pause.is_none() {
        let report = tokio::time::timeout_at(deadline, reports.recv())
            .await
            .map_err(step("wait for the guardian"))?
            .ok_or_else(|| DemoError::Step {
                step: "run the guardian",
                message: "the pipeline stopped".into(),
            })?;
        let t = now_ms().saturating_sub(broadcast_ms);
        match report {
            Report::ReorgedOut { .. } => {}
            Report::Trip { trip, .. } => {
                let _ = writeln!(
                    story,
                    "  t+{:<4} ms   seen pending; policy `{}` trips: {}",
                    trip.time_ms.saturating_sub(broadcast_ms),
                    trip.policy,
                    trip.summary
                );
            }
            Report::Decision { outcome, .. } => {
                let _ = writeln!(story, "  t+{t:<4} ms   guard: {outcome}");
            }
            Report::Executed { execution, .. } => pause = Some(execution),
            Report::ExecutionFailed { error, .. } => {
                return Err(DemoError::Step {
                    step: "deliver the pause",
                    message: error,
                });
            }
        }
    }
    let attack_receipt = receipt(&b, hash).await?;
    let left = balance(&b).await?;
    let lost_protected = total - left;
    cancel.cancel();
    let _ = guardian.await;
    if let Some(Execution::Landed {
        tx,
        block,
        fees,
        replacements,
    }) = &pause
    {
        let pause_receipt = receipt(&b, *tx).await?;
        let _ = writeln!(
            story,
            "  pause {tx} mined in block {block} at index {} (max fee {}, tip {}, {replacements} replacement(s))",
            pause_receipt.transaction_index.unwrap_or_default(),
            crate::units::DisplayGwei(fees.max_fee),
            crate::units::DisplayGwei(fees.priority_fee)
        );
        let _ = writeln!(
            story,
            "  attack mined in block {} at index {}: {}",
            attack_receipt.block_number.unwrap_or_default(),
            attack_receipt.transaction_index.unwrap_or_default(),
            if attack_receipt.status() {
                "succeeded"
            } else {
                "reverted (the bridge was paused)"
            }
        );
        let same_block = attack_receipt.block_number == Some(*block)
            && pause_receipt.transaction_index < attack_receipt.transaction_index;
        let _ = writeln!(
            story,
            "  pause ordered ahead of the attack in the same block: {}",
            if same_block { "yes" } else { "no" }
        );
    }
    let saved = if lost_unprotected.is_zero() {
        100.0
    } else {
        let as_f64 = |x: U256| u128::try_from(x).unwrap_or(u128::MAX) as f64;
        100.0 - as_f64(lost_protected) / as_f64(lost_unprotected) * 100.0
    };
    let _ = writeln!(
        story,
        "\nfunds lost: {} bUSD without guardian, {} bUSD with it ({saved:.1}% saved)",
        tokens(lost_unprotected),
        tokens(lost_protected)
    );
    let _ = writeln!(story, "the guardian's recorded trace: {}", record.display());
    Ok(story)
}
