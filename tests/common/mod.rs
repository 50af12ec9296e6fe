//! Shared test helpers: anvil, the real Safe v1.4.1 from its npm artifacts, the
//! demo vault owned by the Safe, and the GuardianModule enabled on it.

#![allow(dead_code)]
// Generated Safe bindings take as many arguments as the Safe's functions.
#![allow(clippy::too_many_arguments)]

pub mod fault_proxy;

use std::collections::HashMap;
use std::path::PathBuf;

use alloy::network::EthereumWallet;
use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol;
use alloy::sol_types::SolCall;
use guardian::config::Config;
use guardian::executor::safe::{SafeTx, sign};
use guardian::keys::Key;

sol!(
    #[sol(rpc)]
    Safe,
    "contracts/artifacts/safe/Safe.json"
);
sol!(
    #[sol(rpc)]
    SafeProxyFactory,
    "contracts/artifacts/safe/SafeProxyFactory.json"
);
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
    GuardianModule,
    "contracts/artifacts/GuardianModule.json"
);

pub const GWEI: u128 = 1_000_000_000;
pub const SUPPLY_CAP: u64 = 1_000_000;

pub fn anvil(args: &[&str]) -> AnvilInstance {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    Anvil::at(bin).args(args.iter().copied()).spawn()
}

/// A deployed demo: a 2-of-3 Safe owning a vault, with the GuardianModule enabled.
pub struct Demo {
    pub anvil: AnvilInstance,
    /// The deployer (anvil key 0), as a provider that signs.
    pub provider: DynProvider,
    pub safe: Address,
    pub owners: Vec<Key>,
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
    ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer(anvil, i)))
        .connect_http(anvil.endpoint_url())
        .erased()
}

impl Demo {
    /// Deploys everything on a fresh anvil started with `args`. Needs automine
    /// during set-up; tests that want mining off turn it off afterwards.
    pub async fn new(args: &[&str]) -> Demo {
        let anvil = anvil(args);
        let provider = provider_for(&anvil, 0);
        let deployer = anvil.addresses()[0];
        let owners: Vec<Key> = (1..=3)
            .map(|i| key(&anvil, i, &format!("owner{i}")))
            .collect();
        let bot = key(&anvil, 4, "bot");
        let stranger = key(&anvil, 5, "stranger");

        let singleton = Safe::deploy(&provider).await.unwrap();
        let factory = SafeProxyFactory::deploy(&provider).await.unwrap();
        let setup = Safe::setupCall {
            _owners: owners.iter().map(Key::address).collect(),
            _threshold: U256::from(2),
            to: Address::ZERO,
            data: Bytes::new(),
            fallbackHandler: Address::ZERO,
            paymentToken: Address::ZERO,
            payment: U256::ZERO,
            paymentReceiver: Address::ZERO,
        }
        .abi_encode();
        let create = factory.createProxyWithNonce(*singleton.address(), setup.into(), U256::ZERO);
        let safe = create.call().await.unwrap();
        create.send().await.unwrap().get_receipt().await.unwrap();

        let token = DemoToken::deploy(&provider, "Demo USD".into(), "dUSD".into(), deployer)
            .await
            .unwrap();
        let vault = GuardedVault::deploy(&provider, *token.address(), safe, U256::from(SUPPLY_CAP))
            .await
            .unwrap();
        let module = GuardianModule::deploy(&provider, safe).await.unwrap();
        let pauser = vault.PAUSER_ROLE().call().await.unwrap();
        let (token, vault, module) = (*token.address(), *vault.address(), *module.address());

        let demo = Demo {
            provider,
            safe,
            owners,
            bot,
            stranger,
            token,
            vault,
            module,
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
        demo.safe_exec(
            demo.safe,
            Safe::enableModuleCall {
                module: demo.module,
            }
            .abi_encode(),
        )
        .await;
        for data in [
            GuardianModule::addGuardianCall {
                guardian: demo.bot.address(),
            }
            .abi_encode(),
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
        let safe = Safe::new(self.safe, &self.provider);
        let nonce = safe.nonce().call().await.unwrap();
        let tx = SafeTx::call(to, data.into(), nonce);
        let chain_id = self.provider.get_chain_id().await.unwrap();
        let sigs = sign(&self.owners[..2], &tx.hash(chain_id, self.safe))
            .await
            .unwrap();
        let receipt = self
            .provider
            .send_transaction(
                alloy::rpc::types::TransactionRequest::default()
                    .to(self.safe)
                    .input(tx.exec_calldata(sigs).into()),
            )
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
        assert!(receipt.status());
        assert!(
            receipt.decoded_log::<Safe::ExecutionSuccess>().is_some(),
            "the Safe transaction failed"
        );
    }

    /// The first anvil account mints `amount` demo tokens and deposits them in the vault.
    pub async fn deposit(&self, amount: u64) {
        let depositor = self.anvil.addresses()[0];
        let token = DemoToken::new(self.token, &self.provider);
        let vault = GuardedVault::new(self.vault, &self.provider);
        let amount = U256::from(amount);
        let mint = token.mint(depositor, amount);
        mint.send().await.unwrap().get_receipt().await.unwrap();
        let approve = token.approve(self.vault, amount);
        approve.send().await.unwrap().get_receipt().await.unwrap();
        let deposit = vault.deposit(amount, depositor);
        deposit.send().await.unwrap().get_receipt().await.unwrap();
    }

    pub async fn paused(&self) -> bool {
        GuardedVault::new(self.vault, &self.provider)
            .paused()
            .call()
            .await
            .unwrap()
    }

    pub async fn supply_cap(&self) -> U256 {
        GuardedVault::new(self.vault, &self.provider)
            .supplyCap()
            .call()
            .await
            .unwrap()
    }

    /// A configuration with one action per executor kind, all on the vault.
    /// `extra` goes into the `council` (propose) executor, `tail` at the end of the file.
    pub fn config(&self, dir: &std::path::Path, extra: &str) -> Config {
        self.config_with(dir, extra, "")
    }

    pub fn config_with(&self, dir: &std::path::Path, extra: &str, tail: &str) -> Config {
        let text = format!(
            r#"
[guardian]
mode = "enforce"

[networks.local]
chain_id = 31337
rpc = ["{rpc}"]

[keys.bot]
source = "env"
env = "UNUSED_IN_TESTS_BOT"
[keys.owner1]
source = "env"
env = "UNUSED_IN_TESTS_OWNER1"
[keys.owner2]
source = "env"
env = "UNUSED_IN_TESTS_OWNER2"
[keys.stranger]
source = "env"
env = "UNUSED_IN_TESTS_STRANGER"

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

[actions.pause-direct]
kind = "pause"
description = "pause the vault with the bot's pauser role"
target = "{vault}"
function = "pause()"
paused_getter = "paused()"
executor = "direct"

[actions.pause-hasty]
kind = "pause"
description = "pause the vault, giving up after one second"
target = "{vault}"
function = "pause()"
executor = "hasty"

[actions.pause-token-module]
kind = "pause"
description = "a pause the module was never configured to allow"
target = "{token}"
function = "pause()"
executor = "module"

[actions.pause-token-owners]
kind = "pause"
description = "a call that fails inside the Safe"
target = "{token}"
function = "pause()"
executor = "owners"

[actions.pause-stranger]
kind = "pause"
description = "pause the vault from a key without the role"
target = "{vault}"
function = "pause()"
executor = "stranger"

[actions.pause-owners]
kind = "pause"
description = "pause the vault through the Safe owners"
target = "{vault}"
function = "pause()"
paused_getter = "paused()"
executor = "owners"

[actions.pause-one-owner]
kind = "pause"
description = "pause the vault with too few owner keys"
target = "{vault}"
function = "pause()"
executor = "one-owner"

[actions.pause-module]
kind = "pause"
description = "pause the vault through the GuardianModule"
target = "{vault}"
function = "pause()"
paused_getter = "paused()"
executor = "module"

[actions.lower-cap-module]
kind = "set-parameter"
description = "lower the supply cap through the GuardianModule"
target = "{vault}"
function = "setSupplyCap(uint256)"
executor = "module"
getter = "supplyCap()"
min = 1000
max = 10000000
max_change_bps = 5000
min_delay = "1h"
value = {{ step_bps = 2500, direction = "down" }}

[actions.lower-cap-proposal]
kind = "set-parameter"
description = "propose a lower supply cap to the council"
target = "{vault}"
function = "setSupplyCap(uint256)"
executor = "council"
getter = "supplyCap()"
min = 1000
max = 10000000
max_change_bps = 5000
min_delay = "1h"
value = 500000

[actions.cut-cap-too-much]
kind = "set-parameter"
description = "a change larger than max_change_bps"
target = "{vault}"
function = "setSupplyCap(uint256)"
executor = "module"
getter = "supplyCap()"
min = 1000
max = 10000000
max_change_bps = 5000
min_delay = "1h"
value = 100000
{tail}
"#,
            rpc = self.anvil.endpoint(),
            safe = self.safe,
            module = self.module,
            vault = self.vault,
            token = self.token,
        );
        let path = dir.join("guardian.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path).unwrap_or_else(|e| panic!("{e}"))
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
