//! Shared test helpers: anvil, the real Safe v1.4.1 from its npm artifacts, the
//! demo vault owned by the Safe, and the GuardianModule enabled on it.

#![allow(dead_code)]
// Generated Safe bindings take as many arguments as the Safe's functions.
#![allow(clippy::too_many_arguments)]

pub mod fault_proxy;
pub mod pipeline;
pub mod service;
pub mod traces;

use std::collections::HashMap;
use std::path::PathBuf;

use alloy::contract::{CallBuilder, CallDecoder};
use alloy::network::EthereumWallet;
use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::primitives::{Address, I256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionReceipt;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use guardian::config::Config;
use guardian::config::text::{LocalNetwork, env_key, pause_action};
use guardian::keys::Key;
use guardian::policy::model::Mode;
// Each test binary uses a different part of these.
#[allow(unused_imports)]
pub use guardian::scenario::chain::{GuardianModule, Safe, SafeOwners};

// The contracts' bindings are the library's own: the demo token (with the
// Nomad-style replica and its copycat attack), the vault of `guardian devnet`
// and the keeper feed of the scenarios.
#[allow(unused_imports)]
pub use guardian::demo::{DemoToken, MessageReplica, ReplicaCopycatAttack};
#[allow(unused_imports)]
pub use guardian::devnet::GuardedVault;
#[allow(unused_imports)]
pub use guardian::scenario::protocol::KeeperPriceFeed;

pub const GWEI: u128 = 1_000_000_000;
pub const SUPPLY_CAP: u64 = 1_000_000;

/// The anvil binary from npm (`@foundry-rs/anvil-linux-amd64`).
pub fn anvil_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
}

pub fn anvil(args: &[&str]) -> AnvilInstance {
    Anvil::at(anvil_bin()).args(args.iter().copied()).spawn()
}

/// Sends a contract call and waits for its receipt, panicking on either failing.
pub async fn mined<P: Provider, D: CallDecoder>(call: CallBuilder<P, D>) -> TransactionReceipt {
    call.send()
        .await
        .unwrap_or_else(|e| panic!("send: {e}"))
        .get_receipt()
        .await
        .unwrap_or_else(|e| panic!("receipt: {e}"))
}

/// The policy the service tests trip: `vault-drain`, critical, pausing with
/// `pause-module` when `vault.total_assets` falls by 30% within one block.
/// `extra` (whole lines) goes before `[policy.when]`.
pub fn vault_drain(description: &str, cooldown: &str, extra: &str) -> String {
    format!(
        r#"
[[policy]]
id = "vault-drain"
description = "{description}"
severity = "critical"
action = "pause-module"
cooldown = "{cooldown}"
{extra}[policy.when]
kind = "change"
metric = "vault.total_assets"
window = "1 block"
direction = "down"
by = "30%"
"#
    )
}

/// A critical `[[policy]]` `id` taking `action` whenever `metric op value`
/// holds (`when`), able to trip again after `cooldown`.
pub fn critical_threshold(
    id: &str,
    description: &str,
    action: &str,
    cooldown: &str,
    when: [&str; 3],
) -> String {
    let [metric, op, value] = when;
    format!(
        r#"
[[policy]]
id = "{id}"
description = "{description}"
severity = "critical"
action = "{action}"
cooldown = "{cooldown}"
[policy.when]
kind = "threshold"
metric = "{metric}"
op = "{op}"
value = {value}
"#
    )
}

/// [`vault_drain`]'s description in most tests.
pub const A_THIRD: &str = "Vault assets fall by a third within one block";

/// Calls anvil's JSON-RPC `method` with `params`, ignoring the answer;
/// panics naming the method if it fails.
pub async fn anvil_rpc<P>(p: &impl Provider, method: &'static str, params: P)
where
    P: serde::Serialize + Clone + std::fmt::Debug + Send + Sync + Unpin,
{
    let answer: Result<serde_json::Value, _> = p.raw_request(method.into(), params).await;
    answer.unwrap_or_else(|e| panic!("{method}: {e}"));
}

/// Mines one block (`evm_mine`); the new head's number.
pub async fn mine(p: &impl Provider) -> u64 {
    anvil_rpc(p, "evm_mine", ()).await;
    p.get_block_number().await.unwrap()
}

/// Replaces the last `depth` blocks with empty ones (`anvil_reorg`).
pub async fn reorg(p: &impl Provider, depth: u64) {
    anvil_rpc(p, "anvil_reorg", (depth, serde_json::json!([]))).await;
}

/// The receipts of `pause` and `attack`, checked to be mined in `block` with
/// the pause ordered ahead of the attack.
pub async fn pause_ahead_in_block(
    p: &impl Provider,
    pause: alloy::primitives::B256,
    attack: alloy::primitives::B256,
    block: u64,
) -> (TransactionReceipt, TransactionReceipt) {
    let receipt = |hash| async move {
        let r = p.get_transaction_receipt(hash).await.unwrap();
        r.unwrap_or_else(|| panic!("{hash} was not mined"))
    };
    let (pause, attack) = (receipt(pause).await, receipt(attack).await);
    assert_eq!(pause.block_number, Some(block), "the pause's block");
    assert_eq!(
        attack.block_number,
        Some(block),
        "the attack was mined in the same block"
    );
    assert!(
        pause.transaction_index < attack.transaction_index,
        "the pause was ordered ahead of the attack"
    );
    (pause, attack)
}

/// A watcher running in a task on network `local`, its events on a channel of 1024.
pub struct Watching {
    pub events: tokio::sync::mpsc::Receiver<guardian::source::chain::WatchEvent>,
    pub cancel: tokio_util::sync::CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), guardian::source::chain::ChainError>>,
}

impl Watching {
    pub fn start(config: &Config, options: guardian::source::chain::WatcherOptions) -> Watching {
        let watcher = guardian::source::chain::Watcher::new(config, "local", options).unwrap();
        let (tx, events) = tokio::sync::mpsc::channel(1024);
        let cancel = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(watcher.run(tx, cancel.clone()));
        Watching {
            events,
            cancel,
            task,
        }
    }

    /// Cancels it; it must end without error.
    pub async fn stop(self) {
        self.cancel.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// Turns anvil's automine on or off (off: sent transactions wait for [`mine`]).
pub async fn set_automine(p: &impl Provider, on: bool) {
    anvil_rpc(p, "evm_setAutomine", (on,)).await;
}

/// Feeds `event`'s samples to `engine` in order (a sample of a metric no
/// policy reads is a tick), pushing its trips onto `trips`.
pub fn feed(
    engine: &mut guardian::policy::Engine,
    event: &guardian::source::chain::WatchEvent,
    trips: &mut Vec<guardian::decision::Trip>,
) {
    traces::feed_rows(engine, event.samples(), trips);
}

/// The alert-only policy that trips whenever the vault is read (every block).
pub const EVERY_BLOCK: &str = r#"
[[policy]]
id = "vault-watch"
description = "Holds whenever the vault is read: trips in every block, alert only"
severity = "info"
action = "pause-module"
cooldown = "0 blocks"
mode = "alert-only"
[policy.when]
kind = "threshold"
metric = "vault.total_assets"
op = ">="
value = 0
"#;

/// A demo market without a Safe: a token, a vault of it (owned by `owner`) and
/// a keeper feed (8 decimals, "ETH / USD") published at `feed_block`.
#[derive(Debug, Clone, Copy)]
pub struct Market {
    pub token: Address,
    pub vault: Address,
    pub feed: Address,
    pub feed_block: u64,
}

impl Market {
    /// Deploys the token and the vault with `supply_cap`; with `fill`
    /// `(minted, deposited)`, mints `minted` tokens to `owner`, who deposits
    /// `deposited` of them; then deploys the feed answering `answer`, so that
    /// the head is the feed's block and moved no tokens.
    pub async fn deploy(
        p: &DynProvider,
        owner: Address,
        supply_cap: U256,
        fill: Option<(U256, U256)>,
        answer: i64,
    ) -> Market {
        let token = DemoToken::deploy(p, "Demo USD".into(), "dUSD".into(), owner)
            .await
            .unwrap_or_else(|e| panic!("deploy the token: {e}"));
        let vault = GuardedVault::deploy(p, *token.address(), owner, supply_cap)
            .await
            .unwrap_or_else(|e| panic!("deploy the vault: {e}"));
        let (token, vault) = (*token.address(), *vault.address());
        if let Some((minted, deposited)) = fill {
            mint_and_deposit(p, token, vault, owner, minted, deposited).await;
        }
        let answer = I256::try_from(answer).expect("fits");
        let feed = KeeperPriceFeed::deploy(p, owner, 8, "ETH / USD".into(), answer)
            .await
            .unwrap_or_else(|e| panic!("deploy the feed: {e}"));
        let feed_block = p.get_block_number().await.unwrap();
        Market {
            token,
            vault,
            feed: *feed.address(),
            feed_block,
        }
    }
}

/// `owner` mints `minted` tokens of `token`, approves `vault` and deposits `deposited`.
pub async fn mint_and_deposit(
    p: &DynProvider,
    token: Address,
    vault: Address,
    owner: Address,
    minted: U256,
    deposited: U256,
) {
    let (token, vault_at) = (DemoToken::new(token, p), GuardedVault::new(vault, p));
    mined(token.mint(owner, minted)).await;
    mined(token.approve(vault, deposited)).await;
    mined(vault_at.deposit(deposited, owner)).await;
}

/// Loads a configuration from `text` through a file named `name`.toml (in a
/// folder of its own, removed afterwards), as `guardian` does.
pub fn load_config(name: &str, text: &str) -> Config {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    Config::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// The Safe [`init_args`] answers with.
pub const INIT_SAFE: &str = "0x1111111111111111111111111111111111111111";

/// `guardian init --no-input` into `dir` with `--shape shape` on mainnet
/// (chain 1, https://rpc.example.org), for the Safe [`INIT_SAFE`] guarding
/// 0x22…22 with guardian 0x33…33; then the answers in `more`.
pub fn init_args<'a>(dir: &'a str, shape: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "init",
        "--no-input",
        "--dir",
        dir,
        "--shape",
        shape,
        "--network",
        "mainnet",
        "--chain-id",
        "1",
        "--rpc",
        "https://rpc.example.org",
        "--safe",
        INIT_SAFE,
        "--target",
        "0x2222222222222222222222222222222222222222",
        "--guardian",
        "0x3333333333333333333333333333333333333333",
    ];
    args.extend_from_slice(more);
    args
}

/// `[keys.NAME]` tables read from environment variables no test sets (the
/// tests hand the keys in themselves).
pub fn env_keys(names: &[&str]) -> String {
    let mut t = String::new();
    for name in names {
        let var = format!("UNUSED_IN_TESTS_{}", name.to_uppercase());
        t.push_str(&env_key(name, &var));
    }
    t
}

/// `[guardian]` in dry-run and `[networks.local]` (chain 31337) on these endpoints.
pub fn dry_run_network(rpc: &[&str], ws: &[&str]) -> String {
    network(Mode::DryRun, rpc, ws)
}

/// `[guardian]` in `mode` and `[networks.local]` (chain 31337) on these endpoints.
pub fn network(mode: Mode, rpc: &[&str], ws: &[&str]) -> String {
    LocalNetwork::new(mode, rpc, ws).to_string()
}

/// One `[metrics."name"]` table on network `local`; `source` is an inline TOML table.
pub fn metric(name: &str, description: &str, source: &str) -> String {
    format!(
        "\n[metrics.\"{name}\"]\ndescription = \"{description}\"\nnetwork = \"local\"\nsource = {source}\n"
    )
}

/// A deployed demo: a 2-of-3 Safe owning a vault, with the GuardianModule enabled.
pub struct Demo {
    pub anvil: AnvilInstance,
    /// The deployer (anvil key 0), as a provider that signs.
    pub provider: DynProvider,
    pub safe: Address,
    pub owners: Vec<Key>,
    /// Signs and sends the Safe's transactions (owners 1 and 2).
    pub safe_owners: SafeOwners,
    /// The guardian bot (anvil key 4): pauser role on the vault, guardian of the module.
    pub bot: Key,
    /// A key with no role anywhere (anvil key 5).
    pub stranger: Key,
    pub token: Address,
    pub vault: Address,
    pub module: Address,
}

fn key(anvil: &AnvilInstance, i: usize, name: &str) -> Key {
    Key::local(name, PrivateKeySigner::from(anvil.keys()[i].clone()))
}

pub fn signer(anvil: &AnvilInstance, i: usize) -> PrivateKeySigner {
    PrivateKeySigner::from(anvil.keys()[i].clone())
}

pub fn provider_for(anvil: &AnvilInstance, i: usize) -> DynProvider {
    provider_with(anvil, &[i])
}

/// A provider that signs as each of anvil's `keys` (the first is the default sender).
pub fn provider_with(anvil: &AnvilInstance, keys: &[usize]) -> DynProvider {
    let mut wallet = EthereumWallet::from(signer(anvil, keys[0]));
    for &k in &keys[1..] {
        wallet.register_signer(signer(anvil, k));
    }
    ProviderBuilder::new()
        .wallet(wallet)
        .connect_http(anvil.endpoint_url())
        .erased()
}

/// The 2-of-3 Safe owners of anvil keys 1 to 3, sending from anvil key 0.
pub async fn safe_owners(anvil: &AnvilInstance) -> SafeOwners {
    let provider = provider_for(anvil, 0);
    SafeOwners {
        chain_id: provider.get_chain_id().await.unwrap(),
        provider,
        from: anvil.addresses()[0],
        keys: (1..=3)
            .map(|i| key(anvil, i, &format!("owner{i}")))
            .collect(),
        threshold: 2,
    }
}

impl Demo {
    /// Deploys everything on a fresh anvil started with `args`. Needs automine
    /// during set-up; tests that want mining off turn it off afterwards.
    pub async fn new(args: &[&str]) -> Demo {
        let anvil = anvil(args);
        let owners = safe_owners(&anvil).await;
        let provider = owners.provider.clone();
        let deployer = anvil.addresses()[0];
        let bot = key(&anvil, 4, "bot");
        let stranger = key(&anvil, 5, "stranger");

        let safe = owners.deploy_safe().await.unwrap();
        let token = DemoToken::deploy(&provider, "Demo USD".into(), "dUSD".into(), deployer)
            .await
            .unwrap();
        let vault = GuardedVault::deploy(&provider, *token.address(), safe, U256::from(SUPPLY_CAP))
            .await
            .unwrap();
        let stack = owners.deploy_module(safe, &[bot.address()]).await.unwrap();
        let pauser = vault.PAUSER_ROLE().call().await.unwrap();
        let (token, vault) = (*token.address(), *vault.address());

        let demo = Demo {
            provider,
            safe,
            owners: owners.keys.clone(),
            safe_owners: owners,
            bot,
            stranger,
            token,
            vault,
            module: stack.module,
            anvil,
        };
        demo.safe_exec(
            demo.vault,
            GuardedVault::grantRoleCall {
                role: pauser,
                account: demo.bot.address(),
            }
            .abi_encode(),
        )
        .await;
        for data in [
            GuardianModule::setPausePermissionCall {
                target: demo.vault,
                pauseSelector: GuardedVault::pauseCall::SELECTOR.into(),
                pausedGetter: GuardedVault::pausedCall::SELECTOR.into(),
                allowed: true,
            }
            .abi_encode(),
            GuardianModule::setParameterPermissionCall {
                target: demo.vault,
                setterSelector: GuardedVault::setSupplyCapCall::SELECTOR.into(),
                getterSelector: GuardedVault::supplyCapCall::SELECTOR.into(),
                min: U256::from(1_000),
                max: U256::from(10_000_000),
                maxChangeBps: U256::from(5_000),
                minDelay: U256::from(3_600),
            }
            .abi_encode(),
            GuardianModule::setTargetLimitsCall {
                target: demo.vault,
                cooldown: U256::ZERO,
                maxActionsPerPeriod: U256::from(10),
                period: U256::from(3_600),
            }
            .abi_encode(),
        ] {
            demo.safe_exec(demo.module, data).await;
        }
        demo
    }

    /// Executes `data` on `to` through the Safe with owners 1 and 2, checking success.
    pub async fn safe_exec(&self, to: Address, data: Vec<u8>) {
        self.safe_owners
            .exec(self.safe, to, data, 0)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// The first anvil account mints `amount` demo tokens and deposits them in the vault.
    pub async fn deposit(&self, amount: u64) {
        let depositor = self.anvil.addresses()[0];
        let amount = U256::from(amount);
        let (p, token, vault) = (&self.provider, self.token, self.vault);
        mint_and_deposit(p, token, vault, depositor, amount, amount).await;
    }

    /// The first anvil account withdraws `amount` of its deposit; the receipt once mined.
    pub async fn withdraw(&self, amount: u64) -> TransactionReceipt {
        let depositor = self.anvil.addresses()[0];
        mined(
            self.vault()
                .withdraw(U256::from(amount), depositor, depositor),
        )
        .await
    }

    /// The bot's key sends 1 wei to 0x2222…22 outside guardian (taking the
    /// nonce guardian may hold); the receipt once mined.
    pub async fn bot_sends_outside(&self) -> TransactionReceipt {
        let tx = alloy::rpc::types::TransactionRequest::default()
            .to(Address::repeat_byte(0x22))
            .value(U256::from(1));
        let bot = provider_for(&self.anvil, 4);
        let pending = bot.send_transaction(tx).await.unwrap();
        pending.get_receipt().await.unwrap()
    }

    /// The vault, as the deployer's provider sees it.
    pub fn vault(&self) -> GuardedVault::GuardedVaultInstance<&DynProvider> {
        GuardedVault::new(self.vault, &self.provider)
    }

    pub async fn paused(&self) -> bool {
        self.vault().paused().call().await.unwrap()
    }

    pub async fn supply_cap(&self) -> U256 {
        self.vault().supplyCap().call().await.unwrap()
    }

    /// A configuration with one action per executor kind, all on the vault.
    /// `extra` goes into the `council` (propose) executor, `tail` at the end of the file.
    pub fn config(&self, dir: &std::path::Path, extra: &str) -> Config {
        self.config_with(dir, extra, "")
    }

    pub fn config_with(&self, dir: &std::path::Path, extra: &str, tail: &str) -> Config {
        let (vault, token) = (self.vault, self.token);
        let mut text = format!(
            r#"
{network}{keys}
[executors.direct]
kind = "eoa"
key = "bot"
network = "local"
deadline = "20s"

[executors.hasty]
kind = "eoa"
key = "bot"
network = "local"
deadline = "1s"

[executors.stranger]
kind = "eoa"
key = "stranger"
network = "local"

[executors.owners]
kind = "safe-owners"
safe = "{safe}"
keys = ["owner1", "owner2"]
network = "local"

[executors.one-owner]
kind = "safe-owners"
safe = "{safe}"
keys = ["owner1"]
network = "local"

[executors.module]
kind = "module"
module = "{module}"
key = "bot"
network = "local"

[executors.council]
kind = "propose"
safe = "{safe}"
keys = ["owner1"]
outbox = "outbox"
network = "local"
{extra}
"#,
            network = network(Mode::Enforce, &[&self.anvil.endpoint()], &[]),
            keys = env_keys(&["bot", "owner1", "owner2", "stranger"]),
            safe = self.safe,
            module = self.module,
        );
        // name, description, target, executor, whether it reads `paused()` back.
        let pauses = [
            (
                "pause-direct",
                "pause the vault with the bot's pauser role",
                vault,
                "direct",
                true,
            ),
            (
                "pause-hasty",
                "pause the vault, giving up after one second",
                vault,
                "hasty",
                false,
            ),
            (
                "pause-token-module",
                "a pause the module was never configured to allow",
                token,
                "module",
                false,
            ),
            (
                "pause-token-owners",
                "a call that fails inside the Safe",
                token,
                "owners",
                false,
            ),
            (
                "pause-stranger",
                "pause the vault from a key without the role",
                vault,
                "stranger",
                false,
            ),
            (
                "pause-owners",
                "pause the vault through the Safe owners",
                vault,
                "owners",
                true,
            ),
            (
                "pause-one-owner",
                "pause the vault with too few owner keys",
                vault,
                "one-owner",
                false,
            ),
            (
                "pause-module",
                "pause the vault through the GuardianModule",
                vault,
                "module",
                true,
            ),
        ];
        for (name, description, target, executor, getter) in pauses {
            text.push_str(&pause_action(name, description, target, executor, getter));
        }
        // name, description, executor, value: each within the same bounds on the supply cap.
        let cap_changes = [
            (
                "lower-cap-module",
                "lower the supply cap through the GuardianModule",
                "module",
                "{ step_bps = 2500, direction = \"down\" }",
            ),
            (
                "lower-cap-proposal",
                "propose a lower supply cap to the council",
                "council",
                "500000",
            ),
            (
                "cut-cap-too-much",
                "a change larger than max_change_bps",
                "module",
                "100000",
            ),
        ];
        for (name, description, executor, value) in cap_changes {
            text.push_str(&format!(
                "\n[actions.{name}]\nkind = \"set-parameter\"\ndescription = \"{description}\"\ntarget = \"{vault}\"\nfunction = \"setSupplyCap(uint256)\"\nexecutor = \"{executor}\"\ngetter = \"supplyCap()\"\nmin = 1000\nmax = 10000000\nmax_change_bps = 5000\nmin_delay = \"1h\"\nvalue = {value}\n"
            ));
        }
        text.push_str(tail);
        text.push('\n');
        let path = dir.join("guardian.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `[metrics."vault.total_assets"]`: the vault's assets, read on `local`.
    pub fn assets_metric(&self) -> String {
        format!(
            "[metrics.\"vault.total_assets\"]\ndescription = \"assets the vault holds\"\nnetwork = \"local\"\nsource = {{ kind = \"call\", to = \"{}\", signature = \"totalAssets()(uint256)\" }}\n",
            self.vault
        )
    }

    /// The hex private key of anvil account `i`.
    pub fn key_hex(&self, i: usize) -> String {
        format!("0x{}", alloy::hex::encode(self.anvil.keys()[i].to_bytes()))
    }

    /// The environment `guardian` reads the configuration's keys from (see [`env_keys`]).
    pub fn key_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("UNUSED_IN_TESTS_BOT", self.key_hex(4)),
            ("UNUSED_IN_TESTS_STRANGER", self.key_hex(5)),
            ("UNUSED_IN_TESTS_OWNER1", self.key_hex(1)),
            ("UNUSED_IN_TESTS_OWNER2", self.key_hex(2)),
        ]
    }

    pub fn keys(&self) -> HashMap<String, Key> {
        let mut keys = HashMap::new();
        keys.insert("bot".to_string(), self.bot.clone());
        keys.insert("stranger".to_string(), self.stranger.clone());
        keys.insert("owner1".to_string(), self.owners[0].clone());
        keys.insert("owner2".to_string(), self.owners[1].clone());
        keys
    }
}
