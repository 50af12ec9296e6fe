//! The chain a scenario runs on: a spawned anvil (fee-ordered) or an existing
//! node (`--rpc`), its accounts, mining mode and clock, and the protocol's
//! Safe with the GuardianModule enabled.
//!
//! Every account is a fresh random key funded with `anvil_setBalance`, so the
//! same code runs on a spawned anvil and on an anvil fork a team started.
//! Set-up runs with automine (fast); the script runs with interval mining at
//! the scenario's block time. Time compression uses `evm_increaseTime`.

// Generated Safe bindings take as many arguments as the Safe's functions.
#![allow(clippy::too_many_arguments)]

use std::path::Path;
use std::time::Duration;

use alloy::network::{Ethereum, EthereumWallet};
use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::{DynProvider, PendingTransactionBuilder, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionReceipt;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol;
use alloy::sol_types::SolCall;

use super::ScenarioError;
use crate::executor::safe::{SafeTx, sign};
use crate::keys::Key;

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
    GuardianModule,
    "contracts/artifacts/GuardianModule.json"
);

pub const GWEI: u128 = 1_000_000_000;

/// Fee cap of every scripted transaction: generous, so a base-fee spike never strands one.
pub const SCRIPT_MAX_FEE: u128 = 2_000 * GWEI;
/// Tip of ordinary users' transactions.
pub const USER_TIP: u128 = GWEI;
/// Tip of the attackers' transactions (above the users', as searchers pay).
pub const ATTACKER_TIP: u128 = 3 * GWEI;

/// Every key the scenario uses.
#[derive(Debug, Clone)]
pub struct Accounts {
    pub deployer: PrivateKeySigner,
    /// Updates the keeper price feeds.
    pub keeper: PrivateKeySigner,
    /// The guardian's key: a guardian of the module.
    pub bot: PrivateKeySigner,
    /// The Safe's owners (2 of 3 sign).
    pub owners: Vec<PrivateKeySigner>,
    pub users: Vec<PrivateKeySigner>,
    pub borrowers: Vec<PrivateKeySigner>,
    pub attackers: Vec<PrivateKeySigner>,
}

impl Accounts {
    pub fn random(users: usize, borrowers: usize, attackers: usize) -> Self {
        let n = |k: usize| (0..k).map(|_| PrivateKeySigner::random()).collect();
        Self {
            deployer: PrivateKeySigner::random(),
            keeper: PrivateKeySigner::random(),
            bot: PrivateKeySigner::random(),
            owners: n(3),
            users: n(users),
            borrowers: n(borrowers),
            attackers: n(attackers.max(1)),
        }
    }

    fn all(&self) -> impl Iterator<Item = &PrivateKeySigner> {
        [&self.deployer, &self.keeper, &self.bot]
            .into_iter()
            .chain(&self.owners)
            .chain(&self.users)
            .chain(&self.borrowers)
            .chain(&self.attackers)
    }
}

/// A connected chain with every account funded.
#[derive(Debug)]
pub struct Chain {
    /// Kept alive while the chain is used; `None` with `--rpc`.
    pub anvil: Option<AnvilInstance>,
    pub http: String,
    pub ws: String,
    /// Signs as any account of `accounts` (`.from(address)` picks which).
    pub provider: DynProvider,
    pub accounts: Accounts,
    pub chain_id: u64,
}

/// Where the chain comes from.
#[derive(Debug, Clone)]
pub enum Node<'a> {
    Spawn { anvil_bin: &'a Path },
    Existing { http: &'a str, ws: &'a str },
}

/// Maps a node's error to the step it failed, with any URL stripped.
pub fn rpc_err<E: std::fmt::Display>(step: &'static str) -> impl FnOnce(E) -> ScenarioError {
    move |e| ScenarioError::Chain {
        step,
        // Errors from the transport can name the endpoint, and URLs carry API keys.
        message: crate::source::chain::redact(&e.to_string()),
    }
}

impl Chain {
    pub async fn connect(node: Node<'_>, accounts: Accounts) -> Result<Chain, ScenarioError> {
        let (anvil, http, ws) = match node {
            Node::Spawn { anvil_bin } => {
                if !anvil_bin.is_file() {
                    return Err(ScenarioError::NoAnvil(anvil_bin.to_path_buf()));
                }
                let anvil = Anvil::at(anvil_bin)
                    .args(["--order", "fees"])
                    .try_spawn()
                    .map_err(|e| ScenarioError::Anvil(e.to_string()))?;
                let (http, ws) = (anvil.endpoint(), anvil.ws_endpoint());
                (Some(anvil), http, ws)
            }
            Node::Existing { http, ws } => (None, http.to_string(), ws.to_string()),
        };
        let mut wallet = EthereumWallet::from(accounts.deployer.clone());
        for s in accounts.all() {
            wallet.register_signer(s.clone());
        }
        let url = http
            .parse()
            .map_err(|_| ScenarioError::BadRpc("the RPC endpoint is not a URL".into()))?;
        let provider = ProviderBuilder::new()
            .wallet(wallet)
            .connect_http(url)
            .erased();
        let chain_id = provider
            .get_chain_id()
            .await
            .map_err(rpc_err("read the chain id"))?;
        let chain = Chain {
            anvil,
            http,
            ws,
            provider,
            accounts,
            chain_id,
        };
        // Set-up runs with automine: each transaction is mined as it arrives.
        chain.automine().await?;
        let balance = U256::from(10_000u64) * U256::from(10u64).pow(U256::from(18u64));
        for s in chain.accounts.all() {
            let step = "fund an account (anvil_setBalance; the node must be anvil)";
            chain
                .control("anvil_setBalance", (s.address(), balance), step)
                .await?;
        }
        Ok(chain)
    }

    /// Sends a node-control request whose answer does not matter (anvil's
    /// `evm_*` and `anvil_*` methods); `step` names it in the error.
    pub(super) async fn control<P>(
        &self,
        method: &'static str,
        params: P,
        step: &'static str,
    ) -> Result<(), ScenarioError>
    where
        P: serde::Serialize + Clone + std::fmt::Debug + Send + Sync + Unpin + 'static,
    {
        let _: serde_json::Value = self
            .provider
            .raw_request(method.into(), params)
            .await
            .map_err(rpc_err(step))?;
        Ok(())
    }

    pub async fn automine(&self) -> Result<(), ScenarioError> {
        self.control("evm_setAutomine", (true,), "turn automine on")
            .await
    }

    /// Mines a block every `seconds`, transactions ordered by fee (`--order fees`).
    pub async fn interval_mining(&self, seconds: u64) -> Result<(), ScenarioError> {
        self.control("evm_setIntervalMining", (seconds,), "set interval mining")
            .await
    }

    /// Moves the chain's clock forward (time compression).
    pub async fn increase_time(&self, seconds: u64) -> Result<(), ScenarioError> {
        let step = "move the clock (evm_increaseTime)";
        self.control("evm_increaseTime", (seconds,), step).await
    }

    pub async fn set_next_base_fee(&self, wei: u128) -> Result<(), ScenarioError> {
        let params = (U256::from(wei),);
        let step = "set the next block's base fee";
        self.control("anvil_setNextBlockBaseFeePerGas", params, step)
            .await
    }

    /// The latest block's number and timestamp.
    pub async fn head(&self) -> Result<(u64, u64), ScenarioError> {
        let block = self
            .provider
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await
            .map_err(rpc_err("read the latest block"))?
            .ok_or(ScenarioError::Chain {
                step: "read the latest block",
                message: "the node has no latest block".into(),
            })?;
        Ok((block.header.number, block.header.timestamp))
    }

    /// Waits for a block after `after`; returns its number and timestamp.
    pub async fn next_block(&self, after: u64) -> Result<(u64, u64), ScenarioError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let head = self.head().await?;
            if head.0 > after {
                return Ok(head);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(ScenarioError::Chain {
                    step: "wait for a block",
                    message: format!("no block after {after} within 60 s: is the node mining?"),
                });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn receipt(
        &self,
        hash: alloy::primitives::B256,
    ) -> Result<Option<TransactionReceipt>, ScenarioError> {
        self.provider
            .get_transaction_receipt(hash)
            .await
            .map_err(rpc_err("read a receipt"))
    }
}

/// Waits for a set-up transaction and checks it succeeded.
pub async fn confirm(
    sent: Result<PendingTransactionBuilder<Ethereum>, alloy::contract::Error>,
    what: &'static str,
) -> Result<TransactionReceipt, ScenarioError> {
    let receipt = sent
        .map_err(rpc_err(what))?
        .get_receipt()
        .await
        .map_err(rpc_err(what))?;
    if !receipt.status() {
        return Err(ScenarioError::Chain {
            step: what,
            message: format!("transaction {} reverted", receipt.transaction_hash),
        });
    }
    Ok(receipt)
}

/// The owners of a Safe and the way to the chain: the one place that deploys
/// a Safe (v1.4.1, from its npm artifacts) with the GuardianModule and
/// executes transactions through it, for the scenarios, `devnet` and the
/// tests alike.
#[derive(Debug, Clone)]
pub struct SafeOwners {
    /// A provider that signs as `from`.
    pub provider: DynProvider,
    /// Sends the deployments and each `execTransaction`.
    pub from: Address,
    pub chain_id: u64,
    /// Every owner of the Safe; the first `threshold` sign.
    pub keys: Vec<Key>,
    pub threshold: usize,
}

impl SafeOwners {
    /// The 2-of-3 owners of a scenario's chain, sending from its deployer.
    pub fn of(chain: &Chain) -> SafeOwners {
        let keys = chain.accounts.owners.iter().enumerate();
        SafeOwners {
            provider: chain.provider.clone(),
            from: chain.accounts.deployer.address(),
            chain_id: chain.chain_id,
            keys: keys
                .map(|(i, s)| Key::local(format!("owner{}", i + 1), s.clone()))
                .collect(),
            threshold: 2,
        }
    }

    /// Deploys the Safe singleton and proxy factory, and a Safe of these owners.
    pub async fn deploy_safe(&self) -> Result<Address, ScenarioError> {
        let p = &self.provider;
        let singleton = Safe::deploy(p)
            .await
            .map_err(rpc_err("deploy the Safe singleton"))?;
        let factory = SafeProxyFactory::deploy(p)
            .await
            .map_err(rpc_err("deploy the Safe proxy factory"))?;
        let setup = Safe::setupCall {
            _owners: self.keys.iter().map(Key::address).collect(),
            _threshold: U256::from(self.threshold),
            to: Address::ZERO,
            data: Bytes::new(),
            fallbackHandler: Address::ZERO,
            paymentToken: Address::ZERO,
            payment: U256::ZERO,
            paymentReceiver: Address::ZERO,
        }
        .abi_encode();
        let create = factory
            .createProxyWithNonce(*singleton.address(), setup.into(), U256::ZERO)
            .from(self.from);
        let safe = create
            .call()
            .await
            .map_err(rpc_err("create the protocol's Safe"))?;
        confirm(create.send().await, "create the protocol's Safe").await?;
        Ok(safe)
    }

    /// Deploys the GuardianModule for `safe`, enables it and adds `guardians`,
    /// each through the Safe.
    pub async fn deploy_module(
        &self,
        safe: Address,
        guardians: &[Address],
    ) -> Result<SafeStack, ScenarioError> {
        let module = GuardianModule::deploy(&self.provider, safe)
            .await
            .map_err(rpc_err("deploy the GuardianModule"))?;
        let stack = SafeStack {
            safe,
            module: *module.address(),
        };
        let enable = Safe::enableModuleCall {
            module: stack.module,
        };
        self.exec(safe, safe, enable.abi_encode(), 0).await?;
        for &guardian in guardians {
            let add = GuardianModule::addGuardianCall { guardian };
            self.exec(safe, stack.module, add.abi_encode(), 0).await?;
        }
        Ok(stack)
    }

    /// Executes `data` on `to` through `safe` with `operation` (0 call, 1
    /// delegatecall), signed by the first `threshold` owners; an error unless
    /// the Safe reports success.
    pub async fn exec(
        &self,
        safe: Address,
        to: Address,
        data: Vec<u8>,
        operation: u8,
    ) -> Result<TransactionReceipt, ScenarioError> {
        let nonce = Safe::new(safe, &self.provider)
            .nonce()
            .call()
            .await
            .map_err(rpc_err("read the Safe's nonce"))?;
        let mut tx = SafeTx::call(to, data.into(), nonce);
        tx.operation = operation;
        let sigs = sign(&self.keys[..self.threshold], &tx.hash(self.chain_id, safe))
            .await
            .map_err(rpc_err("sign a Safe transaction"))?;
        let receipt = self
            .provider
            .send_transaction(
                alloy::rpc::types::TransactionRequest::default()
                    .from(self.from)
                    .to(safe)
                    .input(tx.exec_calldata(sigs).into()),
            )
            .await
            .map_err(rpc_err("execute a Safe transaction"))?
            .get_receipt()
            .await
            .map_err(rpc_err("execute a Safe transaction"))?;
        if !receipt.status() || receipt.decoded_log::<Safe::ExecutionSuccess>().is_none() {
            return Err(ScenarioError::Chain {
                step: "execute a Safe transaction",
                message: format!("the Safe transaction {} failed", receipt.transaction_hash),
            });
        }
        Ok(receipt)
    }
}

/// The protocol's Safe (2 of 3 owners) with the GuardianModule enabled and the bot a guardian.
#[derive(Debug, Clone)]
pub struct SafeStack {
    pub safe: Address,
    pub module: Address,
}

impl SafeStack {
    pub async fn deploy(chain: &Chain) -> Result<SafeStack, ScenarioError> {
        let owners = SafeOwners::of(chain);
        let safe = owners.deploy_safe().await?;
        owners
            .deploy_module(safe, &[chain.accounts.bot.address()])
            .await
    }

    /// Deploys the Safe singleton and factory, and a 2-of-3 Safe of the chain's owners.
    pub async fn deploy_safe(chain: &Chain) -> Result<Address, ScenarioError> {
        SafeOwners::of(chain).deploy_safe().await
    }

    /// Lets the guardians pause `target` (`pause()`, checked by `paused()`) through the module.
    pub async fn allow_pause(&self, chain: &Chain, target: Address) -> Result<(), ScenarioError> {
        let pause: [u8; 4] = alloy::primitives::keccak256("pause()")[..4]
            .try_into()
            .unwrap_or_default();
        let paused: [u8; 4] = alloy::primitives::keccak256("paused()")[..4]
            .try_into()
            .unwrap_or_default();
        self.exec(
            chain,
            self.module,
            GuardianModule::setPausePermissionCall {
                target,
                pauseSelector: pause.into(),
                pausedGetter: paused.into(),
                allowed: true,
            }
            .abi_encode(),
        )
        .await?;
        self.exec(
            chain,
            self.module,
            GuardianModule::setTargetLimitsCall {
                target,
                cooldown: U256::ZERO,
                maxActionsPerPeriod: U256::from(10),
                period: U256::from(3_600),
            }
            .abi_encode(),
        )
        .await
    }

    /// Executes `data` on `to` through the Safe, signed by two owners.
    pub async fn exec(
        &self,
        chain: &Chain,
        to: Address,
        data: Vec<u8>,
    ) -> Result<(), ScenarioError> {
        self.exec_as(chain, to, data, 0).await
    }

    /// The same with a Safe operation: 0 call, 1 delegatecall (a MultiSend batch).
    pub async fn exec_as(
        &self,
        chain: &Chain,
        to: Address,
        data: Vec<u8>,
        operation: u8,
    ) -> Result<(), ScenarioError> {
        let owners = SafeOwners::of(chain);
        owners.exec(self.safe, to, data, operation).await?;
        Ok(())
    }
}
