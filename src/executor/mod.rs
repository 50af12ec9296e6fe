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
pub mod endpoints;
pub mod finality;
pub mod propose;
pub mod safe;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::eips::{BlockId, BlockNumberOrTag};
use alloy::network::{Ethereum, EthereumWallet, NetworkTransactionBuilder, TransactionBuilder};
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::sol;
use alloy::sol_types::{SolCall, SolEvent, SolInterface};
use alloy::transports::{RpcError, TransportErrorKind};

use crate::config::{Config, ExecutorDef, ExecutorKind};
use crate::guard::{Approved, Call, ChainView, Effect};
use crate::keys::{Key, KeyError};
use crate::policy::model::Mode;
use delivery::SendRefusal;
pub use delivery::{Fees, Urgency};
pub use endpoints::{Endpoints, Health};
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
    #[error("every node refused the transaction: {0}")]
    Refused(String),
    #[error(
        "shut down while the transaction was in flight (a restart follows it from the journal)"
    )]
    ShutDown,
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

/// An RPC error as text without the endpoint URL (which may carry an API key).
fn describe(e: &RpcError<TransportErrorKind>) -> String {
    match e {
        RpcError::ErrorResp(p) => match p.as_revert_data() {
            Some(data) => decode_revert(&data),
            None => p.message.to_string(),
        },
        RpcError::Transport(kind) => match kind {
            TransportErrorKind::HttpError(h) => format!("http status {}", h.status),
            TransportErrorKind::Custom(c) if c.to_string().starts_with("no answer within") => {
                c.to_string()
            }
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

/// Whether a node took a broadcast transaction.
enum Sent {
    Taken,
    /// No node took it: the most telling refusal and every endpoint's answer.
    Refused(SendRefusal, String),
}

/// What the delivery loop does next.
enum Next {
    Done(Execution),
    /// Sign (with the attempt's current nonce and fees) and broadcast again.
    Resend,
    /// Wait for a receipt of what was sent.
    Wait,
}

/// One approved action on its way: what is being sent, and what was.
#[derive(Debug)]
struct Attempt {
    id: u64,
    from: Address,
    gas: u64,
    nonce: u64,
    fees: Fees,
    /// The block the fees were computed on.
    fee_block: u64,
    replacement: u32,
    /// Hashes a node took, oldest first, with their fees and replacement number.
    sent: Vec<B256>,
    info: Vec<(B256, Fees, u32, Bytes)>,
    deadline: Instant,
    /// Set once shutdown is asked for: the delivery stops then.
    stop_at: Option<Instant>,
    /// Broadcasts no node took, in a row (for the backoff).
    tries: u32,
    /// The sending key's lane, held while the nonce is chosen and until a
    /// node takes a transaction at it (see [`delivery::Lanes`]).
    lane: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Attempt {
    fn signed(&self, hash: B256, raw: Bytes) -> SignedTx {
        SignedTx {
            decision_id: self.id,
            hash,
            sender: self.from,
            nonce: self.nonce,
            fees: self.fees,
            replacement: self.replacement,
            raw,
        }
    }
    fn taken(&mut self, hash: B256, raw: &Bytes) {
        if !self.sent.contains(&hash) {
            self.sent.push(hash);
            self.info
                .push((hash, self.fees, self.replacement, raw.clone()));
        }
    }
    /// The transaction `tx` as signed, to send again.
    fn signed_of(&self, tx: B256) -> Option<SignedTx> {
        self.info
            .iter()
            .find(|(h, ..)| *h == tx)
            .map(|(h, f, r, raw)| SignedTx {
                decision_id: self.id,
                hash: *h,
                sender: self.from,
                nonce: self.nonce,
                fees: *f,
                replacement: *r,
                raw: raw.clone(),
            })
    }
    fn fees_of(&self, tx: B256) -> Fees {
        self.info
            .iter()
            .find(|(h, ..)| *h == tx)
            .map_or(self.fees, |(_, f, ..)| *f)
    }
    fn replacement_of(&self, tx: B256) -> u32 {
        self.info
            .iter()
            .find(|(h, ..)| *h == tx)
            .map_or(self.replacement, |(_, _, r, _)| *r)
    }
}

/// A Safe transaction's outcome from its receipt: `ExecutionSuccess`, or why not.
fn safe_outcome(r: &TransactionReceipt, safe: Address) -> Result<(), ExecError> {
    let tx = r.transaction_hash;
    let mut success = false;
    for log in r.inner.logs() {
        if log.address() != safe {
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
    if success {
        Ok(())
    } else {
        Err(ExecError::EffectNotObserved {
            tx,
            detail: "no ExecutionSuccess event from the Safe".into(),
        })
    }
}

/// Asks every endpoint its chain id: one that names another chain is a
/// configuration error; none answering is an unreachable network.
async fn check_chain(
    endpoints: &Endpoints,
    network: &str,
    expected: u64,
) -> Result<u64, ExecError> {
    let answers = endpoints
        .read_all(|p| async move { p.get_chain_id().await })
        .await;
    let mut errors = Vec::new();
    let mut ok = false;
    for (label, a) in answers {
        match a {
            Ok(id) if id == expected => ok = true,
            Ok(actual) => {
                return Err(ExecError::WrongChain {
                    executor: format!("{network} ({label})"),
                    expected,
                    actual,
                });
            }
            Err(e) => errors.push(format!("{label}: {e}")),
        }
    }
    if ok {
        if !errors.is_empty() {
            tracing::warn!(target: "guardian::executor", network, errors = %errors.join("; "), "some endpoints did not answer at start; they are retried on every send");
        }
        Ok(expected)
    } else {
        Err(ExecError::Rpc {
            what: "eth_chainId",
            reason: format!("no endpoint answered: {}", errors.join("; ")),
        })
    }
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
    /// A landed transaction's block was reorganised away and its effect is
    /// gone: it is being sent again.
    Reorged { decision_id: u64, tx: B256 },
    /// The effect held for the executor's `confirmations` blocks after landing.
    Final {
        decision_id: u64,
        tx: B256,
        block: u64,
    },
}

/// Whether one executor can act, from [`Executors::readiness`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub executor: String,
    /// Why it cannot act (no endpoint answers, balance below the reserve), if it cannot.
    pub problem: Option<String>,
    /// The sending key's balance and reserve, when read.
    pub balance_wei: Option<u128>,
    pub reserve_wei: u128,
}

impl Readiness {
    /// Below twice the reserve (but not below it): warn before it cannot act.
    pub fn low(&self) -> bool {
        self.problem.is_none()
            && self
                .balance_wei
                .is_some_and(|b| b < self.reserve_wei.saturating_mul(2))
    }
}

/// One configured executor, connected.
#[derive(Debug)]
struct Executor {
    def: ExecutorDef,
    /// The account that sends (and the owner keys, for Safe paths).
    sender: Key,
    owners: Vec<Key>,
    wallet: EthereumWallet,
    /// The network's endpoints plus this executor's broadcast-only ones: where its transactions go.
    send_to: Endpoints,
}

/// Every executor of a configuration, on one network connection.
#[derive(Debug, Clone)]
pub struct Executors {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    endpoints: Endpoints,
    chain_id: u64,
    executors: HashMap<String, Executor>,
    nonces: delivery::Nonces,
    /// Per key and per Safe: see [`delivery::Lanes`].
    lanes: delivery::Lanes,
    events: Option<tokio::sync::mpsc::Sender<DeliveryEvent>>,
    http: alloy::transports::http::reqwest::Client,
    /// How often to look for a receipt or a new block while waiting.
    poll: Duration,
    /// Where every signed transaction is written down before it is broadcast.
    tx_log: std::sync::OnceLock<Arc<dyn TxLog>>,
    /// Fires when the process shuts down: deliveries stop within [`SHUTDOWN_GRACE`].
    shutdown: tokio_util::sync::CancellationToken,
}

/// How long a delivery in flight may go on after shutdown was asked for.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

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
        let timeout = config
            .executors
            .values()
            .filter(|d| d.network.as_deref() == Some(network))
            .map(|d| d.delivery.rpc_timeout_ms)
            .min()
            .unwrap_or(crate::config::Delivery::default().rpc_timeout_ms);
        let endpoints = Endpoints::new(&net.rpc, &[], Duration::from_millis(timeout));
        if endpoints.is_empty() {
            return Err(ExecError::NoEndpoint {
                executor: network.to_string(),
            });
        }
        let chain_id = check_chain(&endpoints, network, net.chain_id).await?;
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
                    send_to: endpoints.with(&Endpoints::new(
                        &[],
                        &def.broadcast,
                        Duration::from_millis(def.delivery.rpc_timeout_ms),
                    )),
                },
            );
        }
        let this = Self {
            inner: Arc::new(Inner {
                endpoints,
                chain_id,
                executors,
                nonces: delivery::Nonces::default(),
                lanes: delivery::Lanes::default(),
                events,
                http: alloy::transports::http::reqwest::Client::new(),
                poll: Duration::from_millis(20),
                tx_log: std::sync::OnceLock::new(),
                shutdown: tokio_util::sync::CancellationToken::new(),
            }),
        };
        // Nonces are read from the chain at start (and again after any error).
        for ex in this.inner.executors.values() {
            let who = ex.sender.address();
            this.inner.nonces.set(who, this.next_nonce(who).await?);
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

    /// The healthiest endpoint's provider.
    pub fn provider(&self) -> Option<DynProvider> {
        self.inner.endpoints.preferred()
    }

    /// The network's endpoints and their health.
    pub fn endpoints(&self) -> &Endpoints {
        &self.inner.endpoints
    }

    /// Whether each sending executor can act: an endpoint answers, and its
    /// key's balance covers the reserve (`reserve_eth`, by default
    /// [`crate::config::exec::DEFAULT_RESERVE_PAUSES`] pauses at the fee cap).
    /// `propose` executors send nothing and are left out.
    pub async fn readiness(&self) -> Vec<Readiness> {
        let mut out = Vec::new();
        let mut names: Vec<&String> = self.inner.executors.keys().collect();
        names.sort();
        for name in names {
            let ex = &self.inner.executors[name];
            if matches!(ex.def.kind, ExecutorKind::Propose { .. }) {
                continue;
            }
            let who = ex.sender.address();
            let reserve = ex.def.delivery.reserve();
            let balance = self
                .read("eth_getBalance", move |p| async move {
                    p.get_balance(who).await
                })
                .await;
            let (problem, balance_wei) = match balance {
                Err(e) => (Some(format!("no endpoint answers ({e})")), None),
                Ok(b) => {
                    let b = b.saturating_to::<u128>();
                    let problem = (b < reserve).then(|| {
                        format!(
                            "key {} holds {b} wei, below the reserve of {reserve} wei",
                            ex.sender.name()
                        )
                    });
                    (problem, Some(b))
                }
            };
            out.push(Readiness {
                executor: name.clone(),
                problem,
                balance_wei,
                reserve_wei: reserve,
            });
        }
        out
    }

    /// Pause actions of these executors whose effect cannot be observed: no
    /// `paused_getter` (nor flags) and no code at the target. Each comes with why.
    pub async fn unobservable(
        &self,
        actions: &std::collections::BTreeMap<String, crate::config::ActionDef>,
    ) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (name, a) in actions {
            let ours = a
                .executor
                .as_ref()
                .is_some_and(|e| self.inner.executors.contains_key(e));
            let no_getter = a.pause.paused_getter.is_none() && a.pause.flags.is_none();
            if !ours || a.kind != crate::config::ActionKind::Pause || !no_getter {
                continue;
            }
            let Some(target) = a.target else { continue };
            if let Err(why) = self.has_code(target, None).await {
                out.push((
                    name.clone(),
                    format!("action `{name}` has no paused_getter and its effect cannot be observed: {why}"),
                ));
            }
        }
        out
    }

    /// Asks deliveries in flight to stop within [`SHUTDOWN_GRACE`] (the journal
    /// keeps what was sent; a restart follows it).
    pub fn shut_down(&self) {
        self.inner.shutdown.cancel();
    }

    /// A read, failed over across the network's endpoints, as an [`ExecError`].
    async fn read<T, F, Fut>(&self, what: &'static str, f: F) -> Result<T, ExecError>
    where
        F: Fn(DynProvider) -> Fut,
        Fut: Future<Output = Result<T, RpcError<TransportErrorKind>>>,
    {
        self.inner
            .endpoints
            .read(f)
            .await
            .map_err(|e| rpc_error(what, e))
    }

    fn executor(&self, name: &str) -> Result<&Executor, ExecError> {
        self.inner
            .executors
            .get(name)
            .ok_or_else(|| ExecError::UnknownExecutor(name.to_string()))
    }

    /// Reads `who`'s next nonce from the chain and takes it for a delivery
    /// (passing over the nonces deliveries in flight hold); a change from
    /// `before`, the nonce the delivery had, is logged and reported.
    async fn resync_nonce(
        &self,
        decision_id: u64,
        who: Address,
        before: Option<u64>,
    ) -> Result<u64, ExecError> {
        let n = self
            .inner
            .nonces
            .take_from(who, self.next_nonce(who).await?);
        if before.is_some_and(|b| b != n) {
            tracing::warn!(target: "guardian::executor", decision_id, account = %who, from = ?before, to = n, "nonce resynchronised from the chain");
            self.emit(DeliveryEvent::NonceResynced {
                decision_id,
                from: before,
                to: n,
            });
        }
        Ok(n)
    }

    /// Waits for `who`'s lane; once shutdown is asked for, a delivery that
    /// has not chosen its nonce yet stops instead (the journal keeps the
    /// approval), so shutdown never waits for one delivery after another.
    async fn enter_lane(
        &self,
        who: Address,
    ) -> Result<tokio::sync::OwnedMutexGuard<()>, ExecError> {
        tokio::select! {
            biased;
            lane = self.inner.lanes.enter(who) => Ok(lane),
            () = self.inner.shutdown.cancelled() => Err(ExecError::ShutDown),
        }
    }

    /// The next nonce of `who` for a delivery, which holds it until it ends
    /// (the caller holds the key's lane).
    async fn take_nonce(&self, decision_id: u64, who: Address) -> Result<u64, ExecError> {
        if let Some(n) = self.inner.nonces.take(who) {
            return Ok(n);
        }
        self.resync_nonce(decision_id, who, None).await
    }

    /// Attempt `a`'s nonce was taken or is ahead of the chain: a fresh one,
    /// chosen in the key's lane (entered again if a node took an earlier
    /// transaction), passing over the nonces other deliveries hold.
    async fn renew_nonce(&self, a: &mut Attempt) -> Result<u64, ExecError> {
        if a.lane.is_none() {
            a.lane = Some(self.enter_lane(a.from).await?);
        }
        self.inner.nonces.release(a.from, a.nonce);
        self.resync_nonce(a.id, a.from, Some(a.nonce)).await
    }

    /// `req` as an `eth_call` at `block` (the latest when `None`), failed over.
    async fn eth_call(
        &self,
        req: TransactionRequest,
        block: Option<BlockId>,
    ) -> Result<Bytes, endpoints::ReadError> {
        self.inner
            .endpoints
            .read(move |p| {
                let req = req.clone();
                async move {
                    match block {
                        Some(b) => p.call(req).block(b).await,
                        None => p.call(req).await,
                    }
                }
            })
            .await
    }

    /// The first word a view call returns (at `block`, or the latest), failed over.
    async fn word(
        &self,
        what: &'static str,
        to: Address,
        data: Bytes,
        block: Option<u64>,
    ) -> Result<U256, ExecError> {
        let req = TransactionRequest::default().with_to(to).with_input(data);
        let out = self
            .eth_call(req, block.map(BlockId::from))
            .await
            .map_err(|e| rpc_error(what, e))?;
        if out.len() < 32 {
            return Err(ExecError::Rpc {
                what,
                reason: format!("returned {} bytes, not a word", out.len()),
            });
        }
        Ok(U256::from_be_slice(&out[..32]))
    }

    /// The account's mined transaction count (latest block), failed over.
    async fn mined_nonce(&self, who: Address) -> Result<u64, ExecError> {
        self.read("eth_getTransactionCount", move |p| async move {
            p.get_transaction_count(who).latest().await
        })
        .await
    }

    /// The account's next nonce (pending), from whichever endpoint answers first.
    async fn next_nonce(&self, who: Address) -> Result<u64, ExecError> {
        self.read("eth_getTransactionCount", move |p| async move {
            p.get_transaction_count(who).pending().await
        })
        .await
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
        let (nonce, threshold) = tokio::try_join!(
            self.word(
                "Safe.nonce",
                safe,
                ISafe::nonceCall {}.abi_encode().into(),
                None
            ),
            self.word(
                "Safe.getThreshold",
                safe,
                ISafe::getThresholdCall {}.abi_encode().into(),
                None
            ),
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
        // A SafeTx takes the Safe's nonce when it executes: one at a time per Safe.
        let _safe_lane = match &ex.def.kind {
            ExecutorKind::SafeOwners { safe, .. } => Some(self.enter_lane(*safe).await?),
            _ => None,
        };
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
        let request = TransactionRequest::default()
            .with_from(from)
            .with_to(to)
            .with_input(data);
        let estimate = {
            let req = request.clone();
            self.read("eth_estimateGas", move |p| {
                let req = req.clone();
                async move { p.estimate_gas(req).await }
            })
        };
        let (gas, base_fee) = tokio::join!(estimate, self.base_fee());
        let gas = match gas {
            Ok(gas) => gas,
            Err(e) => return self.estimate_failed(approved, from, e).await,
        };
        let (base_fee, fee_block) = base_fee?;
        // The key's lane is held until a node takes the first transaction.
        let lane = self.enter_lane(from).await?;
        let nonce = self.take_nonce(id, from).await?;
        let mut a = Attempt {
            id,
            from,
            // Headroom: the state may move between the estimate and inclusion.
            gas: gas.saturating_mul(13) / 10,
            nonce,
            fees: delivery::initial(base_fee, &d, urgency),
            fee_block,
            replacement: 0,
            sent: Vec::new(),
            info: Vec::new(),
            deadline: Instant::now() + Duration::from_millis(d.deadline_ms),
            stop_at: None,
            tries: 0,
            lane: Some(lane),
        };
        let result = self
            .deliver_loop(ex, approved, &request, urgency, &mut a)
            .await;
        self.inner.nonces.release(from, a.nonce);
        match &result {
            Ok(Execution::Landed { .. }) => {}
            Ok(_) => self.inner.nonces.forget(from),
            Err(e) => {
                self.inner.nonces.forget(from);
                tracing::error!(target: "guardian::executor", decision_id = id, error = %e, "delivery ended without the effect");
            }
        }
        result
    }

    /// The gas estimate failed: stood down when the effect is already on chain
    /// (a replica sharing the key got there first), else the error.
    async fn estimate_failed(
        &self,
        approved: &Approved,
        from: Address,
        e: ExecError,
    ) -> Result<Execution, ExecError> {
        self.inner.nonces.forget(from);
        if let Ok(block) = self.latest_block().await
            && self.verify(approved.effect(), block).await.is_ok()
        {
            tracing::info!(target: "guardian::executor", decision_id = approved.decision_id(), "the effect is already on chain: standing down");
            return Ok(Execution::StoodDown {
                detail: "the effect is already on chain (the transaction would revert)".into(),
            });
        }
        Err(e)
    }

    /// Sign, write down, broadcast to every endpoint, wait; replace or retry
    /// until the effect lands, the deadline passes or shutdown's grace ends.
    async fn deliver_loop(
        &self,
        ex: &Executor,
        approved: &Approved,
        request: &TransactionRequest,
        urgency: Option<Urgency>,
        a: &mut Attempt,
    ) -> Result<Execution, ExecError> {
        loop {
            self.check_shutdown(a)?;
            let (hash, raw) = self.sign(ex, request, a).await?;
            if approved.mode() == Mode::DryRun {
                tracing::info!(target: "guardian::executor", decision_id = a.id, tx = %hash, "dry-run: signed, not broadcast");
                return Ok(Execution::DryRun { tx: hash, raw });
            }
            if let Some(log) = self.inner.tx_log.get() {
                log.signed(&a.signed(hash, raw.clone()))
                    .map_err(ExecError::Journal)?;
            }
            let next = match self.send(ex, a.id, hash, &raw).await {
                Sent::Taken => {
                    a.tries = 0;
                    a.taken(hash, &raw);
                    // The nonce is in a node's pool: the key's next delivery may choose.
                    a.lane = None;
                    tracing::info!(target: "guardian::executor", decision_id = a.id, tx = %hash, nonce = a.nonce, max_fee = a.fees.max_fee, priority_fee = a.fees.priority_fee, replacement = a.replacement, "sent");
                    self.emit(DeliveryEvent::Sent {
                        decision_id: a.id,
                        tx: hash,
                        nonce: a.nonce,
                        fees: a.fees,
                        replacement: a.replacement,
                        at: std::time::Instant::now(),
                    });
                    Next::Wait
                }
                Sent::Refused(class, why) => {
                    self.after_refusal(ex, approved, urgency, a, hash, class, &why)
                        .await?
                }
            };
            match next {
                Next::Done(done) => return Ok(done),
                Next::Resend => continue,
                Next::Wait => {
                    if let Some(done) = self.wait_inclusion(ex, approved, urgency, a).await? {
                        return Ok(done);
                    }
                }
            }
        }
    }

    /// `Err(ShutDown)` once shutdown was asked for and its grace has passed.
    fn check_shutdown(&self, a: &mut Attempt) -> Result<(), ExecError> {
        if self.inner.shutdown.is_cancelled() {
            let at = *a
                .stop_at
                .get_or_insert_with(|| Instant::now() + SHUTDOWN_GRACE);
            if Instant::now() >= at {
                tracing::error!(target: "guardian::executor", decision_id = a.id, "shutting down with the transaction in flight; the journal keeps it for the next start");
                return Err(ExecError::ShutDown);
            }
        }
        Ok(())
    }

    /// The transaction of attempt `a` (its nonce, gas and fees), signed.
    async fn sign(
        &self,
        ex: &Executor,
        request: &TransactionRequest,
        a: &Attempt,
    ) -> Result<(B256, Bytes), ExecError> {
        self.sign_with(ex, request.clone(), a.nonce, a.gas, a.fees)
            .await
    }

    /// `request` with `nonce`, `gas` and `fees` on this chain, signed with
    /// `ex`'s key: its hash and raw bytes.
    async fn sign_with(
        &self,
        ex: &Executor,
        request: TransactionRequest,
        nonce: u64,
        gas: u64,
        fees: Fees,
    ) -> Result<(B256, Bytes), ExecError> {
        let tx = request
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
        let raw: Bytes = alloy::eips::eip2718::Encodable2718::encoded_2718(&envelope).into();
        Ok((*envelope.tx_hash(), raw))
    }

    /// Broadcasts `raw` to every endpoint of `ex` (and its relays) and judges
    /// the answers: taken when a node accepted it, or already has it, or any
    /// node knows it by hash (an endpoint that forwarded it and then failed);
    /// refused otherwise, with the most telling reason. The journal gets what
    /// was observed: `sent` when a node took it, `refused` only when every
    /// node refused it for a known reason; nothing for errors and silence.
    async fn send(&self, ex: &Executor, id: u64, hash: B256, raw: &Bytes) -> Sent {
        let b = ex.send_to.broadcast(raw).await;
        let log = self.inner.tx_log.get();
        if let Some(by) = &b.accepted_by {
            tracing::debug!(target: "guardian::executor", decision_id = id, tx = %hash, endpoint = %by, "accepted");
            if let Some(log) = log {
                log.broadcast(hash, None);
            }
            return Sent::Taken;
        }
        let summary = b.summary();
        if self.known_anywhere(hash).await {
            tracing::warn!(target: "guardian::executor", decision_id = id, tx = %hash, answers = %summary, "no node said it accepted the transaction, but a node has it: following it");
            if let Some(log) = log {
                log.broadcast(hash, None);
            }
            return Sent::Taken;
        }
        let class = [
            SendRefusal::NonceTooLow,
            SendRefusal::Underpriced,
            SendRefusal::NonceTooHigh,
            SendRefusal::InsufficientFunds,
        ]
        .into_iter()
        .find(|c| b.any(*c))
        .unwrap_or(SendRefusal::Unknown);
        let all_refused = b
            .answers
            .iter()
            .all(|(_, a)| matches!(a, endpoints::Answer::Refused(..)));
        if all_refused
            && class != SendRefusal::Unknown
            && let Some(log) = log
        {
            log.broadcast(hash, Some(&summary));
        }
        tracing::warn!(target: "guardian::executor", decision_id = id, tx = %hash, refusal = ?class, answers = %summary, "no node took the transaction");
        Sent::Refused(class, summary)
    }

    /// Whether any endpoint knows the transaction by hash (pending or mined).
    async fn known_anywhere(&self, hash: B256) -> bool {
        self.inner
            .endpoints
            .read_all(move |p| async move { p.get_transaction_by_hash(hash).await })
            .await
            .iter()
            .any(|(_, r)| matches!(r, Ok(Some(_))))
    }

    /// What to do after no node took the transaction, by the refusal's class.
    #[allow(clippy::too_many_arguments)]
    async fn after_refusal(
        &self,
        ex: &Executor,
        approved: &Approved,
        urgency: Option<Urgency>,
        a: &mut Attempt,
        hash: B256,
        class: SendRefusal,
        why: &str,
    ) -> Result<Next, ExecError> {
        let d = ex.def.delivery;
        match class {
            SendRefusal::NonceTooLow => {
                // One of ours may have landed meanwhile.
                if let Some(r) = self.find_receipt(&a.sent).await? {
                    return self.landed(ex, approved, r, a).await.map(Next::Done);
                }
                // Another sender took the nonce: if it got the effect, stand down.
                if self
                    .verify(approved.effect(), self.latest_block().await?)
                    .await
                    .is_ok()
                {
                    tracing::info!(target: "guardian::executor", decision_id = a.id, "the effect is already on chain: standing down");
                    return Ok(Next::Done(Execution::StoodDown {
                        detail: "the nonce was taken and the effect is already on chain".into(),
                    }));
                }
                a.nonce = self.renew_nonce(a).await?;
                a.sent.clear();
                return Ok(Next::Resend);
            }
            SendRefusal::Underpriced => {
                let (base, block) = self.base_fee().await?;
                a.fee_block = block;
                match delivery::bump(
                    a.fees,
                    delivery::initial(base, &d, urgency),
                    d.max_fee_cap_wei,
                ) {
                    Some(f) => {
                        a.fees = f;
                        return Ok(Next::Resend);
                    }
                    None if !a.sent.is_empty() => return Ok(Next::Wait),
                    None => {
                        return Err(ExecError::FeeCap {
                            cap_wei: d.max_fee_cap_wei,
                        });
                    }
                }
            }
            SendRefusal::NonceTooHigh => {
                a.nonce = self.renew_nonce(a).await?;
            }
            SendRefusal::InsufficientFunds => {
                tracing::error!(target: "guardian::executor", decision_id = a.id, account = %a.from, "the key cannot pay for the transaction; retrying until the deadline (fund it)");
            }
            SendRefusal::AlreadyKnown | SendRefusal::Unknown => {}
        }
        if Instant::now() >= a.deadline {
            if !a.sent.is_empty() {
                return Ok(Next::Wait);
            }
            return Err(ExecError::Refused(format!(
                "{why} (tried {} times until the {} ms deadline; last tx {hash})",
                a.tries + 1,
                d.deadline_ms
            )));
        }
        // A receipt for an earlier transaction of ours ends it.
        if let Some(r) = self.find_receipt(&a.sent).await.ok().flatten() {
            return self.landed(ex, approved, r, a).await.map(Next::Done);
        }
        let wait =
            delivery::backoff(a.tries).min(a.deadline.saturating_duration_since(Instant::now()));
        a.tries += 1;
        tokio::time::sleep(wait).await;
        Ok(Next::Resend)
    }

    /// Waits for a receipt; `None` when a block passed without one and the
    /// fees were raised (send the replacement). Read failures are retried
    /// until the deadline, never fatal on their own.
    async fn wait_inclusion(
        &self,
        ex: &Executor,
        approved: &Approved,
        urgency: Option<Urgency>,
        a: &mut Attempt,
    ) -> Result<Option<Execution>, ExecError> {
        let d = ex.def.delivery;
        // Blocks are counted from the one the fees were computed on.
        let mut seen_block = a.fee_block;
        loop {
            match self.poll_once(&a.sent, &mut seen_block).await {
                Ok(Poll::Included(r)) => return self.landed(ex, approved, *r, a).await.map(Some),
                Ok(Poll::NewBlock) => match self.base_fee().await {
                    Ok((base, block)) => {
                        a.fee_block = block;
                        let fresh = delivery::initial(base, &d, urgency);
                        if let Some(next) = delivery::bump(a.fees, fresh, d.max_fee_cap_wei) {
                            a.fees = next;
                            a.replacement += 1;
                            return Ok(None);
                        }
                        tracing::warn!(target: "guardian::executor", decision_id = a.id, cap_wei = d.max_fee_cap_wei, "fee cap reached: waiting without replacing");
                    }
                    Err(e) => {
                        tracing::warn!(target: "guardian::executor", decision_id = a.id, error = %e, "base fee read failed; retrying")
                    }
                },
                Ok(Poll::Waiting) => {}
                Err(e) => {
                    tracing::warn!(target: "guardian::executor", decision_id = a.id, error = %e, "receipt poll failed; retrying")
                }
            }
            if Instant::now() >= a.deadline {
                let last_tx = a.sent.last().copied().unwrap_or_default();
                tracing::error!(target: "guardian::executor", decision_id = a.id, last_tx = %last_tx, "deadline passed without inclusion");
                return Err(ExecError::Deadline {
                    deadline_ms: d.deadline_ms,
                    last_tx,
                });
            }
            self.check_shutdown(a)?;
            tokio::time::sleep(self.inner.poll).await;
        }
    }

    /// One look at the chain: a receipt for any of `sent`, or a block mined since the last look.
    async fn poll_once(&self, sent: &[B256], seen_block: &mut u64) -> Result<Poll, ExecError> {
        if let Some(r) = self.find_receipt(sent).await? {
            return Ok(Poll::Included(Box::new(r)));
        }
        let now = self.latest_block().await?;
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
            .read("eth_getBlockByNumber", |p| async move {
                p.get_block_by_number(BlockNumberOrTag::Latest).await
            })
            .await?
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

    /// A receipt for any of `sent` (newest first), from whichever endpoint answers.
    async fn find_receipt(&self, sent: &[B256]) -> Result<Option<TransactionReceipt>, ExecError> {
        for h in sent.iter().rev() {
            let h = *h;
            if let Some(r) = self
                .read("eth_getTransactionReceipt", move |p| async move {
                    p.get_transaction_receipt(h).await
                })
                .await?
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
        a: &Attempt,
    ) -> Result<Execution, ExecError> {
        let tx = r.transaction_hash;
        let block = r.block_number.unwrap_or_default();
        // The next nonce is after the one that landed.
        self.inner.nonces.landed(ex.sender.address(), a.nonce);
        if !r.status() {
            return Err(ExecError::Reverted { tx });
        }
        if let ExecutorKind::SafeOwners { safe, .. } = &ex.def.kind {
            safe_outcome(&r, *safe)?;
        }
        self.verify(approved.effect(), block)
            .await
            .map_err(|detail| ExecError::EffectNotObserved { tx, detail })?;
        if matches!(approved.effect(), Effect::Paused { getters } if getters.is_empty()) {
            // No getter: the only evidence is a successful call to a contract.
            self.has_code(approved.call().target, Some(block))
                .await
                .map_err(|detail| ExecError::EffectNotObserved { tx, detail })?;
            tracing::warn!(target: "guardian::executor", decision_id = approved.decision_id(), tx = %tx, block, "landed; the action has no paused_getter, so the effect is taken from the successful call to the target's code, not observed");
        } else {
            tracing::info!(target: "guardian::executor", decision_id = approved.decision_id(), tx = %tx, block, replacements = a.replacement, "landed, effect observed");
        }
        let fees = a.fees_of(tx);
        if let Some(signed) = a.signed_of(tx) {
            self.watch_finality(ex, approved.effect(), signed, block);
        }
        Ok(Execution::Landed {
            tx,
            block,
            replacements: a.replacement_of(tx),
            fees,
        })
    }

    /// `Ok` when `target` holds code (at `block`, or the latest); a call to an
    /// address without code "succeeds" and proves nothing.
    pub async fn has_code(&self, target: Address, block: Option<u64>) -> Result<(), String> {
        let code = self
            .read("eth_getCode", move |p| async move {
                match block {
                    Some(b) => p.get_code_at(target).block_id(b.into()).await,
                    None => p.get_code_at(target).await,
                }
            })
            .await
            .map_err(|e| e.to_string())?;
        if code.is_empty() {
            Err(format!(
                "{target} has no code: a call to it succeeds without pausing anything"
            ))
        } else {
            Ok(())
        }
    }

    async fn latest_block(&self) -> Result<u64, ExecError> {
        self.read(
            "eth_blockNumber",
            |p| async move { p.get_block_number().await },
        )
        .await
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
        let mut waited = false;
        loop {
            let (latest, pending) =
                tokio::try_join!(self.mined_nonce(from), self.next_nonce(from))?;
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
        let mined_nonce = self.mined_nonce(last.sender).await?;
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
            if !self.known_anywhere(last.hash).await {
                tracing::warn!(target: "guardian::executor", decision_id = last.decision_id, tx = %last.hash, "the node no longer knows the transaction: broadcasting it again to every endpoint");
                if let Sent::Refused(_, why) =
                    self.send(ex, last.decision_id, last.hash, &last.raw).await
                {
                    tracing::warn!(target: "guardian::executor", decision_id = last.decision_id, answers = %why, "broadcasting again was refused");
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
        let next = self
            .resign(ex, prev, to, &envelope, fees, envelope.nonce())
            .await?;
        if let Some(log) = self.inner.tx_log.get() {
            log.signed(&next).map_err(ExecError::Journal)?;
        }
        match self.send(ex, id, next.hash, &next.raw).await {
            Sent::Taken => {
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
            Sent::Refused(_, why) => {
                tracing::warn!(target: "guardian::executor", decision_id = id, answers = %why, "the replacement was refused; the next block tries again");
                Ok(None)
            }
        }
    }

    /// `prev`'s call (to `to`, decoded as `envelope`) signed again with `fees` and `nonce`.
    async fn resign(
        &self,
        ex: &Executor,
        prev: &SignedTx,
        to: Address,
        envelope: &alloy::consensus::TxEnvelope,
        fees: Fees,
        nonce: u64,
    ) -> Result<SignedTx, ExecError> {
        use alloy::consensus::Transaction;
        let request = TransactionRequest::default()
            .with_from(prev.sender)
            .with_to(to)
            .with_input(envelope.input().clone());
        let (hash, raw) = self
            .sign_with(ex, request, nonce, envelope.gas_limit(), fees)
            .await?;
        Ok(SignedTx {
            decision_id: prev.decision_id,
            hash,
            sender: prev.sender,
            nonce,
            fees,
            replacement: prev.replacement + 1,
            raw,
        })
    }

    /// Reads the action's getters at `block` and checks the intended effect.
    pub async fn verify(&self, effect: &Effect, block: u64) -> Result<(), String> {
        let read = |c: &Call| {
            let (target, data) = (c.target, c.data.clone());
            async move {
                self.word("verify", target, data, Some(block))
                    .await
                    .map_err(|e| e.to_string())
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

/// A failed-over read's error, naming what was read.
fn rpc_error(what: &'static str, e: endpoints::ReadError) -> ExecError {
    ExecError::Rpc {
        what,
        reason: e.describe(),
    }
}

impl ChainView for Executors {
    fn read(
        &self,
        target: Address,
        data: Bytes,
    ) -> impl Future<Output = Result<Bytes, String>> + Send {
        let this = self.clone();
        async move {
            let req = TransactionRequest::default()
                .with_to(target)
                .with_input(data);
            this.eth_call(req, None).await.map_err(|e| e.describe())
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
            if matches!(&effect, Effect::Paused { getters } if getters.is_empty()) {
                this.has_code(call.target, None).await?;
            }
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
            this.eth_call(req, Some(BlockNumberOrTag::Pending.into()))
                .await
                .map(|_| ())
                .map_err(|e| e.describe())
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
