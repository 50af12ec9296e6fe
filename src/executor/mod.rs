//! Executors: how an [`Approved`] action reaches the chain.
//!
//! ```text
//!  Approved ──> eoa          key ──> target
//!           ──> safe-owners  key ──> Safe.execTransaction(target, data, owner signatures)
//!           ──> module       key ──> GuardianModule.pause / setParameter ──> Safe ──> target
//!           ──> propose      signed SafeTx ──> outbox (JSON) [──> Safe Transaction Service]
//! ```
//!
//! Invariants:
//! - an executor takes nothing but an [`Approved`], by value: it cannot be
//!   handed a call the guard did not build, nor send one approval twice;
//! - dry-run builds and signs everything and broadcasts nothing;
//! - success is judged by the chain's state afterwards (the target is paused,
//!   the parameter has its new value), and for a Safe by its
//!   `ExecutionSuccess`/`ExecutionFailure` event, never by receipt status alone;
//! - every wait has a deadline: a transaction not included in time is reported
//!   as [`ExecError::Deadline`], never waited on forever;
//! - RPC URLs may carry API keys: they are never logged or put in errors.
//!
//! The executor also implements the guard's [`ChainView`]: reads and the
//! preflight simulation of the exact transaction, from the sending account.

pub mod delivery;
pub mod propose;
pub mod safe;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::eips::BlockNumberOrTag;
use alloy::network::{Ethereum, EthereumWallet, NetworkTransactionBuilder, TransactionBuilder};
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::sol;
use alloy::sol_types::{SolCall, SolEvent, SolInterface};
use alloy::transports::{RpcError, TransportErrorKind};

use crate::config::{Config, ExecutorDef, ExecutorKind};
use crate::guard::{Approved, Call, ChainView, Effect};
use crate::keys::{Key, KeyError};
use crate::policy::model::Mode;
pub use delivery::{Fees, Urgency};
use safe::{ISafe, SafeTx};

// Generated bindings mirror the contract's functions, whatever their arity.
#[allow(clippy::too_many_arguments)]
mod module_bindings {
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug)]
        GuardianModule,
        "contracts/artifacts/GuardianModule.json"
    );
}
pub use module_bindings::GuardianModule;

sol! {
    /// Errors common pause targets revert with (OpenZeppelin 5 AccessControl and Pausable).
    #[derive(Debug)]
    interface CommonErrors {
        error AccessControlUnauthorizedAccount(address account, bytes32 neededRole);
        error EnforcedPause();
        error ExpectedPause();
        error OwnableUnauthorizedAccount(address account);
    }
}

/// Why an execution failed. Never carries an RPC URL or key material.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("executor `{0}` is not configured")]
    UnknownExecutor(String),
    #[error("executor `{executor}` needs key `{key}`, which was not loaded")]
    MissingKey { executor: String, key: String },
    #[error("executor `{executor}` names no network, or the network has no http endpoint")]
    NoEndpoint { executor: String },
    #[error(
        "executor `{executor}`: the node's chain id is {actual}, the configuration says {expected}"
    )]
    WrongChain {
        executor: String,
        expected: u64,
        actual: u64,
    },
    #[error("executor `{executor}`: {detail}")]
    Unsupported { executor: String, detail: String },
    #[error(
        "executor `{executor}`: the Safe needs {threshold} owner signatures, the executor has {have} owner keys"
    )]
    BelowThreshold {
        executor: String,
        threshold: u64,
        have: usize,
    },
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("rpc {what}: {reason}")]
    Rpc { what: &'static str, reason: String },
    #[error("the node refused the transaction: {0}")]
    Refused(String),
    #[error("fees reached the cap of {cap_wei} wei without inclusion")]
    FeeCap { cap_wei: u128 },
    #[error("not included within the {deadline_ms} ms deadline (last tx {last_tx})")]
    Deadline { deadline_ms: u64, last_tx: B256 },
    #[error("transaction {tx} reverted on chain")]
    Reverted { tx: B256 },
    #[error("the Safe reported ExecutionFailure for transaction {tx}")]
    SafeExecutionFailure { tx: B256 },
    #[error("transaction {tx} was included but its effect is not observed: {detail}")]
    EffectNotObserved { tx: B256, detail: String },
    #[error("proposal: {0}")]
    Propose(String),
    #[error("the journal could not record the signed transaction, so it was not sent: {0}")]
    Journal(String),
}

fn rpc(what: &'static str) -> impl FnOnce(RpcError<TransportErrorKind>) -> ExecError {
    move |e| ExecError::Rpc {
        what,
        reason: describe(&e),
    }
}

/// An RPC error as text without the endpoint URL (which may carry an API key).
fn describe(e: &RpcError<TransportErrorKind>) -> String {
    match e {
        RpcError::ErrorResp(p) => match p.as_revert_data() {
            Some(data) => decode_revert(&data),
            None => p.message.to_string(),
        },
        RpcError::Transport(kind) => match kind {
            TransportErrorKind::HttpError(h) => format!("http status {}", h.status),
            _ => "transport error (endpoint unreachable or closed)".to_string(),
        },
        RpcError::NullResp => "null response".to_string(),
        other => {
            let text = other.to_string();
            // Strip anything that looks like a URL.
            text.split_whitespace()
                .filter(|w| !w.contains("://"))
                .collect::<Vec<_>>()
                .join(" ")
        }
    }
}

/// Revert data decoded with the errors guardian knows: the GuardianModule's,
/// common access-control and pause errors, `Error(string)` and `Panic(uint256)`.
pub fn decode_revert(data: &[u8]) -> String {
    if let Ok(e) = GuardianModule::GuardianModuleErrors::abi_decode(data) {
        return format!("GuardianModule.{e:?}");
    }
    if let Ok(e) = CommonErrors::CommonErrorsErrors::abi_decode(data) {
        return format!("{e:?}");
    }
    if let Some(reason) = alloy::sol_types::decode_revert_reason(data) {
        return reason;
    }
    format!("reverted with data 0x{}", alloy::hex::encode(data))
}

enum Poll {
    Included(Box<TransactionReceipt>),
    NewBlock,
    Waiting,
}

/// What happened to an approved action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Execution {
    /// Included, and its effect observed on chain.
    Landed {
        tx: B256,
        block: u64,
        /// How many times the transaction was re-sent with higher fees.
        replacements: u32,
        fees: Fees,
    },
    /// Dry-run: signed, not broadcast.
    DryRun { tx: B256, raw: Bytes },
    /// `propose`: signed SafeTx written to the outbox (and posted when a service is configured).
    Proposed {
        safe_tx_hash: B256,
        outbox_file: std::path::PathBuf,
        posted: bool,
    },
    /// Nothing of ours landed, and nothing more is needed: another sender (a
    /// replica sharing the key) already got the effect on chain, or took the nonce.
    StoodDown { detail: String },
}

/// A signed transaction, as the executor is about to broadcast it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTx {
    pub decision_id: u64,
    pub hash: B256,
    pub sender: Address,
    pub nonce: u64,
    pub fees: Fees,
    /// 0 for the first transaction of a decision, then 1, 2 ... for each replacement.
    pub replacement: u32,
    /// The EIP-2718 encoding, to broadcast again if the node forgets it.
    pub raw: Bytes,
}

/// Where the executor writes each transaction down (the journal), synchronously.
///
/// `signed` is called *before* the transaction is broadcast; if it fails, the
/// transaction is not sent (a transaction nobody recorded could be sent again
/// after a restart). `broadcast` is called right after the node answered.
pub trait TxLog: Send + Sync + std::fmt::Debug {
    fn signed(&self, tx: &SignedTx) -> Result<(), String>;
    /// `refused` carries the node's reason when it did not take the transaction.
    fn broadcast(&self, hash: B256, refused: Option<&str>);
}

/// Something that happened while delivering (for alerts, telemetry and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryEvent {
    Sent {
        decision_id: u64,
        tx: B256,
        nonce: u64,
        fees: Fees,
        replacement: u32,
        /// When the node accepted it (for the trip-to-broadcast and broadcast-to-mined latencies).
        at: std::time::Instant,
    },
    NonceResynced {
        decision_id: u64,
        from: Option<u64>,
        to: u64,
    },
}

/// One configured executor, connected.
#[derive(Debug)]
struct Executor {
    def: ExecutorDef,
    /// The account that sends (and the owner keys, for Safe paths).
    sender: Key,
    owners: Vec<Key>,
    wallet: EthereumWallet,
}

/// Every executor of a configuration, on one network connection.
#[derive(Debug, Clone)]
pub struct Executors {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    provider: DynProvider,
    chain_id: u64,
    executors: HashMap<String, Executor>,
    nonces: delivery::Nonces,
    events: Option<tokio::sync::mpsc::Sender<DeliveryEvent>>,
    http: alloy::transports::http::reqwest::Client,
    /// How often to look for a receipt or a new block while waiting.
    poll: Duration,
    /// Where every signed transaction is written down before it is broadcast.
    tx_log: std::sync::OnceLock<Arc<dyn TxLog>>,
}

impl Executors {
    /// Connects every executor of `config` that uses `network` to `url`.
    /// `keys` holds the loaded keys by name; an executor whose key is missing is an error.
    pub async fn connect(
        config: &Config,
        network: &str,
        keys: &HashMap<String, Key>,
        events: Option<tokio::sync::mpsc::Sender<DeliveryEvent>>,
    ) -> Result<Self, ExecError> {
        let net = config
            .networks
            .get(network)
            .ok_or_else(|| ExecError::NoEndpoint {
                executor: network.to_string(),
            })?;
        let url = net
            .rpc
            .first()
            .and_then(|u| u.parse().ok())
            .ok_or_else(|| ExecError::NoEndpoint {
                executor: network.to_string(),
            })?;
        let provider = ProviderBuilder::new()
            .disable_recommended_fillers()
            .connect_http(url)
            .erased();
        let chain_id = provider.get_chain_id().await.map_err(rpc("eth_chainId"))?;
        if chain_id != net.chain_id {
            return Err(ExecError::WrongChain {
                executor: network.to_string(),
                expected: net.chain_id,
                actual: chain_id,
            });
        }
        let mut executors = HashMap::new();
        for (name, def) in &config.executors {
            if def.network.as_deref().is_some_and(|n| n != network) {
                continue;
            }
            let mut loaded = Vec::new();
            for k in def.kind.key_names() {
                loaded.push(keys.get(k).cloned().ok_or_else(|| ExecError::MissingKey {
                    executor: name.clone(),
                    key: k.to_string(),
                })?);
            }
            // The config refuses executors without keys; checked again here all the same.
            let sender = loaded
                .first()
                .cloned()
                .ok_or_else(|| ExecError::MissingKey {
                    executor: name.clone(),
                    key: "(none configured)".into(),
                })?;
            executors.insert(
                name.clone(),
                Executor {
                    def: def.clone(),
                    wallet: sender.wallet(),
                    sender,
                    owners: loaded,
                },
            );
        }
        let this = Self {
            inner: Arc::new(Inner {
                provider,
                chain_id,
                executors,
                nonces: delivery::Nonces::default(),
                events,
                http: alloy::transports::http::reqwest::Client::new(),
                poll: Duration::from_millis(20),
                tx_log: std::sync::OnceLock::new(),
            }),
        };
        // Nonces are read from the chain at start (and again after any error).
        for ex in this.inner.executors.values() {
            this.resync_nonce(0, ex.sender.address()).await?;
        }
        Ok(this)
    }

    pub fn chain_id(&self) -> u64 {
        self.inner.chain_id
    }

    /// Writes every transaction down in `log` before broadcasting it (set once;
    /// a second call is refused and returns `false`).
    pub fn set_tx_log(&self, log: Arc<dyn TxLog>) -> bool {
        self.inner.tx_log.set(log).is_ok()
    }

    pub fn provider(&self) -> &DynProvider {
        &self.inner.provider
    }

    fn executor(&self, name: &str) -> Result<&Executor, ExecError> {
        self.inner
            .executors
            .get(name)
            .ok_or_else(|| ExecError::UnknownExecutor(name.to_string()))
    }

    async fn resync_nonce(&self, decision_id: u64, who: Address) -> Result<u64, ExecError> {
        let before = self.inner.nonces.cached(who);
        let n = self
            .inner
            .provider
            .get_transaction_count(who)
            .pending()
            .await
            .map_err(rpc("eth_getTransactionCount"))?;
        self.inner.nonces.set(who, n);
        if before.is_some() && before != Some(n) {
            tracing::warn!(target: "guardian::executor", decision_id, account = %who, from = ?before, to = n, "nonce resynchronised from the chain");
            self.emit(DeliveryEvent::NonceResynced {
                decision_id,
                from: before,
                to: n,
            });
        }
        Ok(n)
    }

    fn emit(&self, e: DeliveryEvent) {
        if let Some(tx) = &self.inner.events {
            // Telemetry must never hold up a pause: a full channel drops the event, with a warning.
            if tx.try_send(e).is_err() {
                tracing::warn!(target: "guardian::executor", "delivery event channel full or closed");
            }
        }
    }

    /// The transaction (to, data) that carries `call` through executor `ex`.
    async fn wrap(
        &self,
        ex: &Executor,
        call: &Call,
        effect: &Effect,
    ) -> Result<(Address, Bytes), ExecError> {
        match &ex.def.kind {
            ExecutorKind::Eoa { .. } => Ok((call.target, call.data.clone())),
            ExecutorKind::Module { module, .. } => {
                let data = match effect {
                    Effect::Paused { .. } if call.data.len() == 4 => GuardianModule::pauseCall {
                        target: call.target,
                        selector: call.selector,
                    }
                    .abi_encode(),
                    Effect::Parameter { value, .. } => GuardianModule::setParameterCall {
                        target: call.target,
                        selector: call.selector,
                        newValue: *value,
                    }
                    .abi_encode(),
                    Effect::Paused { .. } => {
                        return Err(ExecError::Unsupported {
                            executor: ex.def.name.clone(),
                            detail: "the GuardianModule pauses with the selector alone; a pause with arguments needs safe-owners".into(),
                        });
                    }
                };
                Ok((*module, data.into()))
            }
            ExecutorKind::SafeOwners { safe, .. } => {
                let (tx, _) = self.safe_tx(ex, *safe, call, true).await?;
                let hash = tx.hash(self.inner.chain_id, *safe);
                let sigs = safe::sign(&ex.owners, &hash).await?;
                Ok((*safe, tx.exec_calldata(sigs)))
            }
            ExecutorKind::Propose { .. } => Err(ExecError::Unsupported {
                executor: ex.def.name.clone(),
                detail: "a proposal is not sent as a transaction".into(),
            }),
        }
    }

    /// The SafeTx for `call` at the Safe's current nonce. To execute (`execute_now`),
    /// the owner keys must reach the Safe's threshold; a proposal only needs one owner.
    async fn safe_tx(
        &self,
        ex: &Executor,
        safe: Address,
        call: &Call,
        execute_now: bool,
    ) -> Result<(SafeTx, u64), ExecError> {
        let s = ISafe::new(safe, &self.inner.provider);
        let (nonce, threshold) = tokio::try_join!(
            async {
                s.nonce().call().await.map_err(|e| ExecError::Rpc {
                    what: "Safe.nonce",
                    reason: e.to_string(),
                })
            },
            async {
                s.getThreshold().call().await.map_err(|e| ExecError::Rpc {
                    what: "Safe.getThreshold",
                    reason: e.to_string(),
                })
            },
        )?;
        let threshold = threshold.saturating_to::<u64>();
        if execute_now && (ex.owners.len() as u64) < threshold {
            return Err(ExecError::BelowThreshold {
                executor: ex.def.name.clone(),
                threshold,
                have: ex.owners.len(),
            });
        }
        Ok((
            SafeTx::call(call.target, call.data.clone(), nonce),
            threshold,
        ))
    }

    /// Sends (or, in dry-run, signs) an approved action and follows it until its
    /// effect is observed, the fee cap is reached or the deadline passes.
    pub async fn execute(
        &self,
        approved: Approved,
        urgency: Option<Urgency>,
    ) -> Result<Execution, ExecError> {
        let ex = self.executor(approved.executor())?;
        if let ExecutorKind::Propose {
            safe,
            outbox,
            service_url,
            ..
        } = &ex.def.kind
        {
            let (tx, _) = self.safe_tx(ex, *safe, approved.call(), false).await?;
            return propose::propose(
                &self.inner.http,
                self.inner.chain_id,
                *safe,
                &tx,
                &ex.owners,
                outbox,
                service_url.as_deref(),
                approved.decision_id(),
                approved.mode() == Mode::DryRun,
            )
            .await;
        }
        let (to, data) = self.wrap(ex, approved.call(), approved.effect()).await?;
        self.deliver(ex, &approved, to, data, urgency).await
    }

    async fn deliver(
        &self,
        ex: &Executor,
        approved: &Approved,
        to: Address,
        data: Bytes,
        urgency: Option<Urgency>,
    ) -> Result<Execution, ExecError> {
        let id = approved.decision_id();
        let from = ex.sender.address();
        let d = ex.def.delivery;
        let p = &self.inner.provider;
        let deadline = Instant::now() + Duration::from_millis(d.deadline_ms);
        let request = TransactionRequest::default()
            .with_from(from)
            .with_to(to)
            .with_input(data);
        let (gas, base_fee, cached) =
            tokio::join!(p.estimate_gas(request.clone()), self.base_fee(), async {
                self.inner.nonces.cached(from)
            });
        let gas = match gas {
            Ok(gas) => gas,
            Err(e) => {
                self.inner.nonces.forget(from);
                // Reverts because someone else (a replica sharing the key) got the effect first?
                if let Ok(block) = self.latest_block().await
                    && self.verify(approved.effect(), block).await.is_ok()
                {
                    tracing::info!(target: "guardian::executor", decision_id = id, "the effect is already on chain: standing down");
                    return Ok(Execution::StoodDown {
                        detail: "the effect is already on chain (the transaction would revert)"
                            .into(),
                    });
                }
                return Err(rpc("eth_estimateGas")(e));
            }
        };
        // Headroom: the state may move between the estimate and inclusion.
        let gas = gas.saturating_mul(13) / 10;
        let mut nonce = match cached {
            Some(n) => n,
            None => self.resync_nonce(id, from).await?,
        };
        let (base_fee, mut fee_block) = base_fee?;
        let mut fees = delivery::initial(base_fee, &d, urgency);
        let mut sent: Vec<B256> = Vec::new();
        let mut replacement = 0u32;
        let mut refusals = 0u32;
        loop {
            let tx = request
                .clone()
                .with_nonce(nonce)
                .with_chain_id(self.inner.chain_id)
                .with_gas_limit(gas)
                .with_max_fee_per_gas(fees.max_fee)
                .with_max_priority_fee_per_gas(fees.priority_fee);
            let envelope =
                <TransactionRequest as NetworkTransactionBuilder<Ethereum>>::build(tx, &ex.wallet)
                    .await
                    .map_err(|e| {
                        ExecError::Key(KeyError::Signing {
                            key: ex.sender.name().to_string(),
                            reason: e.to_string(),
                        })
                    })?;
            let hash = *envelope.tx_hash();
            let raw: Bytes = alloy::eips::eip2718::Encodable2718::encoded_2718(&envelope).into();
            if approved.mode() == Mode::DryRun {
                tracing::info!(target: "guardian::executor", decision_id = id, tx = %hash, "dry-run: signed, not broadcast");
                return Ok(Execution::DryRun { tx: hash, raw });
            }
            if let Some(log) = self.inner.tx_log.get() {
                log.signed(&SignedTx {
                    decision_id: id,
                    hash,
                    sender: from,
                    nonce,
                    fees,
                    replacement,
                    raw: raw.clone(),
                })
                .map_err(ExecError::Journal)?;
            }
            let answer = p.send_raw_transaction(&raw).await;
            if let Some(log) = self.inner.tx_log.get() {
                let refused = answer.as_ref().err().map(describe);
                log.broadcast(hash, refused.as_deref());
            }
            match answer {
                Ok(_) => {
                    sent.push(hash);
                    tracing::info!(target: "guardian::executor", decision_id = id, tx = %hash, nonce, max_fee = fees.max_fee, priority_fee = fees.priority_fee, replacement, "sent");
                    self.emit(DeliveryEvent::Sent {
                        decision_id: id,
                        tx: hash,
                        nonce,
                        fees,
                        replacement,
                        at: std::time::Instant::now(),
                    });
                }
                Err(e) => {
                    let reason = describe(&e);
                    refusals += 1;
                    if refusals > 8 {
                        self.inner.nonces.forget(from);
                        return Err(ExecError::Refused(reason));
                    }
                    match delivery::classify(&reason) {
                        delivery::SendRefusal::NonceTooLow => {
                            // The very same transaction (a replica signed identical bytes): follow it.
                            if reason.to_ascii_lowercase().contains("already known") {
                                sent.push(hash);
                            }
                            // One of ours may have landed meanwhile.
                            if let Some(r) = self.find_receipt(&sent).await? {
                                return self.landed(ex, approved, r, replacement, fees).await;
                            }
                            if !sent.contains(&hash) {
                                // Another sender took the nonce: if it got the effect, stand down.
                                if self
                                    .verify(approved.effect(), self.latest_block().await?)
                                    .await
                                    .is_ok()
                                {
                                    self.inner.nonces.forget(from);
                                    tracing::info!(target: "guardian::executor", decision_id = id, "the effect is already on chain: standing down");
                                    return Ok(Execution::StoodDown {
                                        detail:
                                            "the nonce was taken and the effect is already on chain"
                                                .into(),
                                    });
                                }
                                nonce = self.resync_nonce(id, from).await?;
                                continue;
                            }
                        }
                        delivery::SendRefusal::Underpriced => {
                            let (base, block) = self.base_fee().await?;
                            fee_block = block;
                            let fresh = delivery::initial(base, &d, urgency);
                            fees = delivery::bump(fees, fresh, d.max_fee_cap_wei).ok_or(
                                ExecError::FeeCap {
                                    cap_wei: d.max_fee_cap_wei,
                                },
                            )?;
                            continue;
                        }
                        delivery::SendRefusal::Other => {
                            self.inner.nonces.forget(from);
                            return Err(ExecError::Refused(reason));
                        }
                    }
                }
            }
            // Wait for inclusion; a block without it means replace.
            // Wait for inclusion; a block without it means replace. A failing read
            // (a node hiccup) is retried until the deadline, never fatal on its own.
            // Blocks are counted from the one the fees were computed on.
            let mut seen_block = fee_block;
            loop {
                match self.poll_once(&sent, &mut seen_block).await {
                    Ok(Poll::Included(r)) => {
                        return self.landed(ex, approved, *r, replacement, fees).await;
                    }
                    Ok(Poll::NewBlock) => match self.base_fee().await {
                        Ok((base, block)) => {
                            fee_block = block;
                            let fresh = delivery::initial(base, &d, urgency);
                            if let Some(next) = delivery::bump(fees, fresh, d.max_fee_cap_wei) {
                                fees = next;
                                replacement += 1;
                                break;
                            }
                            tracing::warn!(target: "guardian::executor", decision_id = id, cap_wei = d.max_fee_cap_wei, "fee cap reached: waiting without replacing");
                        }
                        Err(e) => {
                            tracing::warn!(target: "guardian::executor", decision_id = id, error = %e, "base fee read failed; retrying")
                        }
                    },
                    Ok(Poll::Waiting) => {}
                    Err(e) => {
                        tracing::warn!(target: "guardian::executor", decision_id = id, error = %e, "receipt poll failed; retrying")
                    }
                }
                if Instant::now() >= deadline {
                    self.inner.nonces.forget(from);
                    tracing::error!(target: "guardian::executor", decision_id = id, last_tx = %hash, "deadline passed without inclusion");
                    return Err(ExecError::Deadline {
                        deadline_ms: d.deadline_ms,
                        last_tx: hash,
                    });
                }
                tokio::time::sleep(self.inner.poll).await;
            }
        }
    }

    /// One look at the chain: a receipt for any of `sent`, or a block mined since the last look.
    async fn poll_once(&self, sent: &[B256], seen_block: &mut u64) -> Result<Poll, ExecError> {
        if let Some(r) = self.find_receipt(sent).await? {
            return Ok(Poll::Included(Box::new(r)));
        }
        let now = self
            .inner
            .provider
            .get_block_number()
            .await
            .map_err(rpc("eth_blockNumber"))?;
        if now <= *seen_block {
            return Ok(Poll::Waiting);
        }
        *seen_block = now;
        // A receipt may have arrived with that block.
        match self.find_receipt(sent).await? {
            Some(r) => Ok(Poll::Included(Box::new(r))),
            None => Ok(Poll::NewBlock),
        }
    }

    /// The next block's base fee, and the latest block's number it was computed from.
    async fn base_fee(&self) -> Result<(u128, u64), ExecError> {
        let block = self
            .inner
            .provider
            .get_block_by_number(BlockNumberOrTag::Latest)
            .await
            .map_err(rpc("eth_getBlockByNumber"))?
            .ok_or(ExecError::Rpc {
                what: "eth_getBlockByNumber",
                reason: "no latest block".into(),
            })?;
        let header = &block.header;
        let next = alloy::eips::eip1559::calc_next_block_base_fee(
            header.gas_used,
            header.gas_limit,
            header.base_fee_per_gas.unwrap_or(0),
            alloy::eips::eip1559::BaseFeeParams::ethereum(),
        );
        Ok((u128::from(next), header.number))
    }

    async fn find_receipt(&self, sent: &[B256]) -> Result<Option<TransactionReceipt>, ExecError> {
        for h in sent.iter().rev() {
            if let Some(r) = self
                .inner
                .provider
                .get_transaction_receipt(*h)
                .await
                .map_err(rpc("eth_getTransactionReceipt"))?
            {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    async fn landed(
        &self,
        ex: &Executor,
        approved: &Approved,
        r: TransactionReceipt,
        replacements: u32,
        fees: Fees,
    ) -> Result<Execution, ExecError> {
        let tx = r.transaction_hash;
        let block = r.block_number.unwrap_or_default();
        self.inner.nonces.set(ex.sender.address(), {
            // The nonce after the one that landed.
            self.inner
                .provider
                .get_transaction_count(ex.sender.address())
                .pending()
                .await
                .map_err(rpc("eth_getTransactionCount"))?
        });
        if !r.status() {
            return Err(ExecError::Reverted { tx });
        }
        if let ExecutorKind::SafeOwners { safe, .. } = &ex.def.kind {
            let mut success = false;
            for log in r.inner.logs() {
                if log.address() != *safe {
                    continue;
                }
                match log.topics().first() {
                    Some(t) if *t == ISafe::ExecutionFailure::SIGNATURE_HASH => {
                        return Err(ExecError::SafeExecutionFailure { tx });
                    }
                    Some(t) if *t == ISafe::ExecutionSuccess::SIGNATURE_HASH => success = true,
                    _ => {}
                }
            }
            if !success {
                return Err(ExecError::EffectNotObserved {
                    tx,
                    detail: "no ExecutionSuccess event from the Safe".into(),
                });
            }
        }
        self.verify(approved.effect(), block)
            .await
            .map_err(|detail| ExecError::EffectNotObserved { tx, detail })?;
        tracing::info!(target: "guardian::executor", decision_id = approved.decision_id(), tx = %tx, block, replacements, "landed, effect observed");
        Ok(Execution::Landed {
            tx,
            block,
            replacements,
            fees,
        })
    }

    async fn latest_block(&self) -> Result<u64, ExecError> {
        self.inner
            .provider
            .get_block_number()
            .await
            .map_err(rpc("eth_blockNumber"))
    }

    /// For replicas, just before sending: is the approved action still needed?
    ///
    /// A transaction from the same key still pending (another replica's) is
    /// waited for first, up to the executor's deadline. Then `Some(reason)` to
    /// stand down: the effect is already on chain, or the exact transaction no
    /// longer simulates (the target is paused, the module's cooldown or limits
    /// refuse it, the Safe's nonce moved under a signed SafeTx).
    pub async fn recheck(&self, approved: &Approved) -> Result<Option<String>, ExecError> {
        let ex = self.executor(approved.executor())?;
        let from = ex.sender.address();
        let deadline = Instant::now() + Duration::from_millis(ex.def.delivery.deadline_ms);
        let p = &self.inner.provider;
        let mut waited = false;
        loop {
            let (latest, pending) = tokio::try_join!(
                async {
                    p.get_transaction_count(from)
                        .latest()
                        .await
                        .map_err(rpc("eth_getTransactionCount"))
                },
                async {
                    p.get_transaction_count(from)
                        .pending()
                        .await
                        .map_err(rpc("eth_getTransactionCount"))
                },
            )?;
            if pending <= latest || Instant::now() >= deadline {
                break;
            }
            if !waited {
                waited = true;
                tracing::info!(target: "guardian::executor", decision_id = approved.decision_id(), account = %from, "a transaction from the shared key is pending: waiting for it before re-checking");
            }
            tokio::time::sleep(self.inner.poll).await;
        }
        if self
            .verify(approved.effect(), self.latest_block().await?)
            .await
            .is_ok()
        {
            return Ok(Some("the effect is already on chain".into()));
        }
        if let Err(reason) = self
            .preflight(approved.executor(), approved.call(), approved.effect())
            .await
        {
            return Ok(Some(format!(
                "the transaction no longer simulates: {reason}"
            )));
        }
        Ok(None)
    }

    /// Follows transactions a previous run sent (read back from the journal) to
    /// their final status: a receipt for one of them, judged like any other
    /// (status, then the effect), or the nonce taken by another transaction
    /// (then the effect decides: stood down, or failed). A transaction the node
    /// no longer knows is broadcast again from its recorded bytes; when a block
    /// passes without inclusion, the same transaction is signed again with fees
    /// raised as for any replacement (written down before it is broadcast).
    /// Gives up at the executor's deadline, counted from now.
    pub async fn follow(
        &self,
        executor: &str,
        effect: &Effect,
        sent: &[SignedTx],
    ) -> Result<Execution, ExecError> {
        let ex = self.executor(executor)?;
        let mut sent = sent.to_vec();
        sent.sort_by_key(|t| t.replacement);
        let Some(last) = sent.last() else {
            return Err(ExecError::Rpc {
                what: "follow",
                reason: "no transaction to follow".into(),
            });
        };
        let (decision_id, sender) = (last.decision_id, last.sender);
        let deadline_ms = ex.def.delivery.deadline_ms;
        let deadline = Instant::now() + Duration::from_millis(deadline_ms);
        let mut seen_block = None;
        let mut checked_known = false;
        loop {
            let step = self.follow_step(ex, effect, &mut sent, &mut seen_block, &mut checked_known);
            match step.await {
                Ok(Some(done)) => {
                    self.inner.nonces.forget(sender);
                    return Ok(done);
                }
                Ok(None) => {}
                Err(
                    e @ (ExecError::Reverted { .. }
                    | ExecError::EffectNotObserved { .. }
                    | ExecError::Journal(_)),
                ) => {
                    self.inner.nonces.forget(sender);
                    return Err(e);
                }
                Err(e) => {
                    tracing::warn!(target: "guardian::executor", decision_id, error = %e, "following the transaction: read failed; retrying")
                }
            }
            if Instant::now() >= deadline {
                self.inner.nonces.forget(sender);
                return Err(ExecError::Deadline {
                    deadline_ms,
                    last_tx: sent.last().map_or(B256::ZERO, |t| t.hash),
                });
            }
            tokio::time::sleep(self.inner.poll.max(Duration::from_millis(100))).await;
        }
    }

    /// One look for [`Self::follow`]: `Some` when the action has ended.
    async fn follow_step(
        &self,
        ex: &Executor,
        effect: &Effect,
        sent: &mut Vec<SignedTx>,
        seen_block: &mut Option<u64>,
        checked_known: &mut bool,
    ) -> Result<Option<Execution>, ExecError> {
        let p = &self.inner.provider;
        let hashes: Vec<B256> = sent.iter().map(|t| t.hash).collect();
        if let Some(r) = self.find_receipt(&hashes).await? {
            let tx = r.transaction_hash;
            let block = r.block_number.unwrap_or_default();
            if !r.status() {
                return Err(ExecError::Reverted { tx });
            }
            self.verify(effect, block)
                .await
                .map_err(|detail| ExecError::EffectNotObserved { tx, detail })?;
            let mined = sent.iter().find(|t| t.hash == tx);
            return Ok(Some(Execution::Landed {
                tx,
                block,
                replacements: mined.map_or(0, |t| t.replacement),
                fees: mined.map_or(
                    Fees {
                        max_fee: 0,
                        priority_fee: 0,
                    },
                    |t| t.fees,
                ),
            }));
        }
        let Some(last) = sent.last().cloned() else {
            return Ok(None);
        };
        let mined_nonce = p
            .get_transaction_count(last.sender)
            .latest()
            .await
            .map_err(rpc("eth_getTransactionCount"))?;
        if mined_nonce > last.nonce {
            // Our nonce is used, by none of ours (no receipt above; looked again
            // to close the race with a block mined in between).
            if self.find_receipt(&hashes).await?.is_some() {
                return Ok(None);
            }
            let block = self.latest_block().await?;
            return match self.verify(effect, block).await {
                Ok(()) => Ok(Some(Execution::StoodDown {
                    detail: "another transaction took the nonce; the effect is on chain".into(),
                })),
                Err(detail) => Err(ExecError::EffectNotObserved {
                    tx: last.hash,
                    detail: format!("another transaction took the nonce: {detail}"),
                }),
            };
        }
        if !*checked_known {
            *checked_known = true;
            let known = p
                .get_transaction_by_hash(last.hash)
                .await
                .map_err(rpc("eth_getTransactionByHash"))?;
            if known.is_none() {
                tracing::warn!(target: "guardian::executor", decision_id = last.decision_id, tx = %last.hash, "the node no longer knows the transaction: broadcasting it again");
                if let Err(e) = p.send_raw_transaction(&last.raw).await {
                    tracing::warn!(target: "guardian::executor", decision_id = last.decision_id, error = %describe(&e), "broadcasting again was refused");
                }
            }
        }
        let now = self.latest_block().await?;
        match seen_block {
            None => *seen_block = Some(now),
            Some(seen) if now > *seen => {
                *seen_block = Some(now);
                // Read after the block number: a receipt in any block up to `now` shows here.
                if self.find_receipt(&hashes).await?.is_some() {
                    return Ok(None);
                }
                if let Some(next) = self.resend_bumped(ex, &last).await? {
                    sent.push(next);
                }
            }
            Some(_) => {}
        }
        Ok(None)
    }

    /// `prev` (a transaction from the journal) signed again with fees raised
    /// as for a replacement, written down, then broadcast. `None` when it
    /// cannot be: another key sent it, the fee cap leaves no room, or the node
    /// refused it (the next block tries again).
    async fn resend_bumped(
        &self,
        ex: &Executor,
        prev: &SignedTx,
    ) -> Result<Option<SignedTx>, ExecError> {
        use alloy::consensus::{Transaction, TxEnvelope};
        use alloy::eips::eip2718::Decodable2718;
        if prev.sender != ex.sender.address() {
            return Ok(None);
        }
        let id = prev.decision_id;
        let envelope =
            TxEnvelope::decode_2718(&mut prev.raw.as_ref()).map_err(|e| ExecError::Rpc {
                what: "decoding a journaled transaction",
                reason: e.to_string(),
            })?;
        let Some(to) = envelope.to() else {
            return Ok(None);
        };
        let d = ex.def.delivery;
        let (base, _) = self.base_fee().await?;
        let Some(fees) = delivery::bump(
            prev.fees,
            delivery::initial(base, &d, None),
            d.max_fee_cap_wei,
        ) else {
            tracing::warn!(target: "guardian::executor", decision_id = id, cap_wei = d.max_fee_cap_wei, "fee cap reached: waiting without replacing");
            return Ok(None);
        };
        let request = TransactionRequest::default()
            .with_from(prev.sender)
            .with_to(to)
            .with_input(envelope.input().clone())
            .with_nonce(envelope.nonce())
            .with_chain_id(self.inner.chain_id)
            .with_gas_limit(envelope.gas_limit())
            .with_max_fee_per_gas(fees.max_fee)
            .with_max_priority_fee_per_gas(fees.priority_fee);
        let signed =
            <TransactionRequest as NetworkTransactionBuilder<Ethereum>>::build(request, &ex.wallet)
                .await
                .map_err(|e| {
                    ExecError::Key(KeyError::Signing {
                        key: ex.sender.name().to_string(),
                        reason: e.to_string(),
                    })
                })?;
        let next = SignedTx {
            decision_id: id,
            hash: *signed.tx_hash(),
            sender: prev.sender,
            nonce: prev.nonce,
            fees,
            replacement: prev.replacement + 1,
            raw: alloy::eips::eip2718::Encodable2718::encoded_2718(&signed).into(),
        };
        if let Some(log) = self.inner.tx_log.get() {
            log.signed(&next).map_err(ExecError::Journal)?;
        }
        let answer = self.inner.provider.send_raw_transaction(&next.raw).await;
        if let Some(log) = self.inner.tx_log.get() {
            let refused = answer.as_ref().err().map(describe);
            log.broadcast(next.hash, refused.as_deref());
        }
        match answer {
            Ok(_) => {
                tracing::info!(target: "guardian::executor", decision_id = id, tx = %next.hash, nonce = next.nonce, max_fee = fees.max_fee, priority_fee = fees.priority_fee, replacement = next.replacement, "sent (replacing a transaction from before the restart)");
                self.emit(DeliveryEvent::Sent {
                    decision_id: id,
                    tx: next.hash,
                    nonce: next.nonce,
                    fees,
                    replacement: next.replacement,
                    at: std::time::Instant::now(),
                });
                Ok(Some(next))
            }
            Err(e) => {
                tracing::warn!(target: "guardian::executor", decision_id = id, error = %describe(&e), "the replacement was refused; the next block tries again");
                Ok(None)
            }
        }
    }

    /// Reads the action's getters at `block` and checks the intended effect.
    pub async fn verify(&self, effect: &Effect, block: u64) -> Result<(), String> {
        let read = |c: &Call| {
            let req = TransactionRequest::default()
                .with_to(c.target)
                .with_input(c.data.clone());
            async move {
                self.inner
                    .provider
                    .call(req)
                    .block(block.into())
                    .await
                    .map_err(|e| describe(&e))
                    .and_then(|out| {
                        (out.len() >= 32)
                            .then(|| U256::from_be_slice(&out[..32]))
                            .ok_or_else(|| "getter returned less than a word".to_string())
                    })
            }
        };
        match effect {
            Effect::Paused { getters } => {
                for g in getters {
                    if read(g).await? != U256::from(1) {
                        return Err(format!("{} on {} is still false", g.selector, g.target));
                    }
                }
                Ok(())
            }
            Effect::Parameter { getter, value, .. } => {
                let now = read(getter).await?;
                if now == *value {
                    Ok(())
                } else {
                    Err(format!("the parameter is {now}, expected {value}"))
                }
            }
        }
    }
}

impl ChainView for Executors {
    fn read(
        &self,
        target: Address,
        data: Bytes,
    ) -> impl Future<Output = Result<Bytes, String>> + Send {
        let p = self.inner.provider.clone();
        async move {
            p.call(
                TransactionRequest::default()
                    .with_to(target)
                    .with_input(data),
            )
            .await
            .map_err(|e| describe(&e))
        }
    }

    fn preflight(
        &self,
        executor: &str,
        call: &Call,
        effect: &Effect,
    ) -> impl Future<Output = Result<(), String>> + Send {
        let this = self.clone();
        let executor = executor.to_string();
        let call = call.clone();
        let effect = effect.clone();
        async move {
            let ex = this.executor(&executor).map_err(|e| e.to_string())?;
            let (from, to, data) = match &ex.def.kind {
                // A proposal is simulated as the inner call, from the Safe itself.
                ExecutorKind::Propose { safe, .. } => (*safe, call.target, call.data.clone()),
                _ => {
                    let (to, data) = this
                        .wrap(ex, &call, &effect)
                        .await
                        .map_err(|e| e.to_string())?;
                    (ex.sender.address(), to, data)
                }
            };
            let req = TransactionRequest::default()
                .with_from(from)
                .with_to(to)
                .with_input(data);
            this.inner
                .provider
                .call(req)
                .block(BlockNumberOrTag::Pending.into())
                .await
                .map(|_| ())
                .map_err(|e| describe(&e))
        }
    }
}

/// Loads every key the configuration's executors use, from the process environment and files.
pub fn load_keys(config: &Config) -> Result<HashMap<String, Key>, KeyError> {
    let mut out = HashMap::new();
    for ex in config.executors.values() {
        for name in ex.kind.key_names() {
            if out.contains_key(name) {
                continue;
            }
            if let Some(def) = config.keys.get(name) {
                out.insert(name.to_string(), crate::keys::load(def)?);
            }
        }
    }
    Ok(out)
}
