//! Screening: every pending transaction, judged by its effect.
//!
//! ```text
//!  pending tx (subscription)
//!        │  bounded queue, highest priority first: txs to the protocol's
//!        │  contracts, then the highest tip; overflow drops the lowest (counted, alerted)
//!  prepare: the pending metrics' filters; earlier pending txs of the same
//!        │  sender with consecutive nonces (not yet mined) go first
//!  eth_simulateV1 on "latest", one simulated block:
//!        │  [pending-metric balances] [sequence…] tx [every call of the block's
//!        │  read plan] [every native balance] [pending-metric balances again]
//!  Screened: the what-if block — every per-block metric on the post-tx state
//!        │  (event metrics from the logs the sequence emitted), and each
//!        │  pending metric's effect (balance before − after)
//!        ▼
//!  WatchEvent::Screened → the engine judges it with `Engine::what_if`
//! ```
//!
//! Up to `concurrency` simulations are in flight at once. A what-if block
//! carries no block statistics (`block` kinds) and no `head_age`: those
//! describe a mined block. Nothing here is committed: the real block's
//! snapshot still arrives and is the one recorded.
//!
//! Limits: only transactions the node's mempool shows are screened (private
//! order flow is invisible); the node must answer `eth_simulateV1`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use alloy::consensus::Transaction as _;
use alloy::network::TransactionResponse as _;
use alloy::primitives::{Address, B256, Bytes, U64, U256};
use alloy::rpc::client::RpcClient;
use alloy::rpc::types::{Log, Transaction};
use alloy::sol_types::SolCall;
use serde_json::{Value, json};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::mpsc;

use super::pending::{
    BALANCE_READER, BALANCE_READER_CODE, PendingTxInfo, PendingWatch, SimulatedBlock,
    SimulatedCall, SimulatedLog, tx_call,
};
use super::reads::{Head, ReadPlan, balanceOfCall, now_ms};
use super::{ChainError, PendingFeed, WatchEvent, next_pending, pending_body, redact};
use crate::config::sources::BalanceRead;
use crate::metrics::scaled_amount;

/// How screening is tuned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScreenOptions {
    /// Pending transactions waiting to be screened, at most; beyond, the lowest priority is dropped.
    pub queue: usize,
    /// Simulations in flight at once.
    pub concurrency: usize,
}

impl Default for ScreenOptions {
    fn default() -> Self {
        Self {
            queue: 4096,
            concurrency: 4,
        }
    }
}

/// A pending transaction's what-if block: the network's metrics on the state after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Screened {
    pub tx: PendingTxInfo,
    /// Earlier pending transactions of the same sender, consecutive nonces,
    /// executed before it in the simulation (oldest first).
    pub sequence: Vec<B256>,
    /// The block it is expected in (the latest + 1).
    pub block: u64,
    /// The latest block's time, ms: the engine evaluates the what-if just after it.
    pub time_ms: u64,
    /// When it was seen and when its screening finished, unix ms.
    pub seen_ms: u64,
    pub screened_ms: u64,
    /// Whether the transaction itself succeeded in the simulation.
    pub succeeds: bool,
    /// Pending metrics' effects first, then the per-block metrics in configuration order.
    pub values: Vec<(Arc<str>, f64)>,
    /// Metrics that could not be computed on the post-transaction state, and why.
    pub failed: Vec<(Arc<str>, String)>,
}

/// A transaction waiting in the queue.
#[derive(Debug)]
struct Waiting {
    tx: Transaction,
    seen_ms: u64,
}

/// The bounded, prioritised screening queue: the protocol's transactions
/// first, then the highest tip, then the newest. Newest first because the
/// next block is what a pause can still be ordered ahead of: under a backlog
/// the oldest waiting are the likeliest to be mined already (a screening of
/// one costs a simulation and finds nothing), and the oldest of the lowest
/// priority are the ones dropped when it is full.
#[derive(Debug)]
pub struct Queue {
    items: BTreeMap<(bool, u128, u64), Waiting>,
    capacity: usize,
    arrivals: u64,
    dropped: u64,
}

impl Queue {
    pub fn new(capacity: usize) -> Self {
        Self {
            items: BTreeMap::new(),
            capacity: capacity.max(1),
            arrivals: 0,
            dropped: 0,
        }
    }

    /// Queues `tx`; `touches`: it calls one of the protocol's contracts. Returns
    /// whether something (the lowest priority, maybe `tx` itself) was dropped.
    fn push(&mut self, tx: Transaction, seen_ms: u64, touches: bool) -> bool {
        let tip = tx
            .max_priority_fee_per_gas()
            .unwrap_or_else(|| alloy::consensus::Transaction::max_fee_per_gas(&tx));
        self.arrivals += 1;
        self.items
            .insert((touches, tip, self.arrivals), Waiting { tx, seen_ms });
        if self.items.len() > self.capacity {
            self.items.pop_first();
            self.dropped += 1;
            return true;
        }
        false
    }

    fn pop(&mut self) -> Option<Waiting> {
        self.items.pop_last().map(|(_, w)| w)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Transactions dropped unscreened so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// A pending transaction remembered for the same-sender sequences.
#[derive(Debug)]
struct Remembered {
    nonce: u64,
    tx: Transaction,
    head: u64,
}

/// Blocks a pending transaction is remembered as a possible predecessor.
const SEQUENCE_BLOCKS: u64 = 3;
/// Pending transactions remembered per sender, and senders remembered.
const MAX_PER_SENDER: usize = 16;
const MAX_SENDERS: usize = 1 << 16;
/// Earlier transactions of the same sender executed before one, at most.
const MAX_SEQUENCE: usize = 3;

/// One screening ready to run: the request and how to read its answer.
#[derive(Debug)]
pub struct Job {
    tx: PendingTxInfo,
    pending_tx: Transaction,
    /// Candidate predecessors (same sender, consecutive nonces), oldest first.
    sequence: Vec<Transaction>,
    seen_ms: u64,
    head: Head,
    /// The matched pending metrics: name and the balance they watch.
    effects: Vec<(Arc<str>, BalanceRead)>,
    plan: Arc<ReadPlan>,
}

/// Screens one network's pending transactions.
#[derive(Debug)]
pub struct Screener {
    plan: Arc<ReadPlan>,
    pending: PendingWatch,
    watched: HashSet<Address>,
    senders: HashMap<Address, Vec<Remembered>>,
    /// The head `senders` was last pruned at: those with nothing newer than
    /// [`SEQUENCE_BLOCKS`] are forgotten once per head, so memory follows the
    /// pending traffic of the last few blocks, not every sender ever seen.
    pruned_at: u64,
    /// Each sender's mined nonce at the latest block: (block, nonce), read once per block.
    mined: HashMap<Address, (u64, u64)>,
    pub queue: Queue,
}

impl Screener {
    pub fn new(plan: ReadPlan, pending: PendingWatch, options: ScreenOptions) -> Self {
        let mut watched: HashSet<Address> = plan.calls().iter().map(|(to, _)| *to).collect();
        watched.extend(plan.balances().iter().copied());
        watched.extend(plan.log_filters().iter().map(|(a, _)| *a));
        watched.extend(pending.addresses());
        Self {
            plan: Arc::new(plan),
            pending,
            watched,
            senders: HashMap::new(),
            pruned_at: 0,
            mined: HashMap::new(),
            queue: Queue::new(options.queue),
        }
    }

    /// Queues a pending transaction seen when block `head` was the latest;
    /// `true` when the queue overflowed (one was dropped).
    pub fn enqueue(&mut self, tx: Transaction, seen_ms: u64, head: u64) -> bool {
        let touches = tx.to().is_some_and(|to| self.watched.contains(&to));
        self.remember(&tx, head);
        self.queue.push(tx, seen_ms, touches)
    }

    /// The next transaction to screen, prepared; `None` when the queue is empty.
    /// `latest` is the latest block's number and timestamp.
    pub async fn next_job(
        &mut self,
        client: &RpcClient,
        latest: (u64, u64),
    ) -> Option<Result<Job, ChainError>> {
        let w = self.queue.pop()?;
        Some(self.prepare(client, latest, w.tx, w.seen_ms).await)
    }

    /// Prepares the screening of `tx` on the state after block `latest`.
    pub async fn prepare(
        &mut self,
        client: &RpcClient,
        latest: (u64, u64),
        tx: Transaction,
        seen_ms: u64,
    ) -> Result<Job, ChainError> {
        let matched = self.pending.matching(client, latest.0, &tx).await?;
        let effects: Vec<(Arc<str>, BalanceRead)> = matched
            .into_iter()
            .map(|i| {
                let (name, spec) = self.pending.spec(i);
                (name.clone(), spec.effect.clone())
            })
            .collect();
        let mut sequence = self.sequence(&tx, latest.0);
        if !sequence.is_empty() {
            // Those already mined are in the latest state: not again.
            let mined = self.mined_nonce(client, tx.from(), latest.0).await?;
            sequence.retain(|t| t.nonce() >= mined);
        }
        Ok(Job {
            tx: PendingTxInfo::of(&tx),
            sequence,
            pending_tx: tx,
            seen_ms,
            head: Head {
                number: latest.0 + 1,
                hash: B256::ZERO,
                parent_hash: B256::ZERO,
                timestamp: latest.1,
                gas_used: 0,
                gas_limit: 0,
                base_fee: None,
            },
            effects,
            plan: self.plan.clone(),
        })
    }

    /// `sender`'s transaction count on the state screenings run on (`latest`),
    /// read once per sender and watcher head.
    async fn mined_nonce(
        &mut self,
        client: &RpcClient,
        sender: Address,
        latest: u64,
    ) -> Result<u64, ChainError> {
        if let Some(&(block, nonce)) = self.mined.get(&sender)
            && block == latest
        {
            return Ok(nonce);
        }
        let mined: U64 = client
            .request("eth_getTransactionCount", (sender, "latest"))
            .await
            .map_err(ChainError::rpc("eth_getTransactionCount"))?;
        if self.mined.len() >= MAX_SENDERS {
            self.mined.clear();
        }
        self.mined.insert(sender, (latest, mined.to::<u64>()));
        Ok(mined.to::<u64>())
    }

    /// Forgets, once per head, the senders with nothing pending of the last
    /// [`SEQUENCE_BLOCKS`] blocks (and all of them past [`MAX_SENDERS`]).
    fn forget_old_senders(&mut self, head: u64) {
        if head != self.pruned_at {
            self.pruned_at = head;
            self.senders
                .retain(|_, l| l.iter().any(|r| r.head + SEQUENCE_BLOCKS > head));
            // Only the latest head's nonces are ever read again.
            self.mined.retain(|_, &mut (block, _)| block >= head);
        }
        if self.senders.len() >= MAX_SENDERS {
            self.senders.clear();
        }
    }

    /// Remembers `tx` as a possible predecessor of its sender's next nonces
    /// (at enqueue, so a later nonce screened first still finds it), in
    /// place of one it replaces (same nonce); `head` is the latest block.
    fn remember(&mut self, tx: &Transaction, head: u64) {
        let (from, nonce) = (tx.from(), tx.nonce());
        self.forget_old_senders(head);
        let list = self.senders.entry(from).or_default();
        list.retain(|r| r.head + SEQUENCE_BLOCKS > head && r.nonce != nonce);
        if list.len() >= MAX_PER_SENDER {
            list.remove(0);
        }
        list.push(Remembered {
            nonce,
            tx: tx.clone(),
            head,
        });
    }

    /// The sender's earlier pending transactions with consecutive nonces just
    /// below `tx`'s (at most [`MAX_SEQUENCE`]), oldest first. Those already
    /// mined are taken out when the job runs.
    fn sequence(&self, tx: &Transaction, head: u64) -> Vec<Transaction> {
        let Some(list) = self.senders.get(&tx.from()) else {
            return Vec::new();
        };
        let mut chain = Vec::new();
        let mut want = tx.nonce();
        while want > 0 && chain.len() < MAX_SEQUENCE {
            want -= 1;
            match list
                .iter()
                .find(|r| r.nonce == want && r.head + SEQUENCE_BLOCKS > head)
            {
                Some(r) => chain.push(r.tx.clone()),
                None => break,
            }
        }
        chain.reverse();
        chain
    }
}

impl Job {
    fn payload(&self, sequence: &[Transaction]) -> Value {
        let (effects, tx) = (&self.effects, &self.pending_tx);
        let mut calls = Vec::with_capacity(
            2 * effects.len()
                + sequence.len()
                + 1
                + self.plan.calls().len()
                + self.plan.balances().len(),
        );
        let mut native = !self.plan.balances().is_empty();
        for (_, b) in effects {
            native |= b.token.is_none();
            calls.push(balance_read(b));
        }
        calls.extend(sequence.iter().chain([tx]).map(tx_call));
        calls.extend(
            self.plan
                .calls()
                .iter()
                .map(|(to, data)| json!({ "to": to, "data": data })),
        );
        calls.extend(self.plan.balances().iter().map(|holder| {
            json!({ "to": BALANCE_READER, "data": Bytes::copy_from_slice(holder.into_word().as_slice()) })
        }));
        calls.extend(effects.iter().map(|(_, b)| balance_read(b)));
        let overrides = if native {
            json!({ BALANCE_READER.to_string(): { "code": BALANCE_READER_CODE } })
        } else {
            json!({})
        };
        json!({
            "blockStateCalls": [{ "stateOverrides": overrides, "calls": calls }],
            "validation": false,
        })
    }
}

fn balance_read(b: &BalanceRead) -> Value {
    match b.token {
        Some(token) => json!({
            "to": token,
            "data": Bytes::from(balanceOfCall { holder: b.holder }.abi_encode()),
        }),
        None => json!({
            "to": BALANCE_READER,
            "data": Bytes::copy_from_slice(b.holder.into_word().as_slice()),
        }),
    }
}

impl Job {
    pub fn tx(&self) -> &PendingTxInfo {
        &self.tx
    }

    /// Runs the simulation and builds the what-if block; `None` when the
    /// transaction is already mined (or replaced): its sender's nonce on the
    /// state simulated on has passed it. `eth_simulateV1` does not check
    /// nonces (`validation: false`, so that a transaction whose predecessors
    /// guardian never saw is still screened), so a transaction screened after
    /// its block would otherwise count its effect a second time.
    pub async fn run(mut self, client: RpcClient) -> Result<Option<Screened>, ChainError> {
        let sequence = std::mem::take(&mut self.sequence);
        let payload = self.payload(&sequence);
        let sequence: Vec<B256> = sequence.iter().map(|t| t.tx_hash()).collect();
        let (blocks, mined_nonce) = self.simulate(&client, &payload).await?;
        if mined_nonce > self.tx.nonce {
            return Ok(None);
        }
        let (e, s) = (self.effects.len(), sequence.len() + 1);
        let (c, b) = (self.plan.calls().len(), self.plan.balances().len());
        let calls = blocks
            .into_iter()
            .next()
            .map(|b| b.calls)
            .filter(|calls| calls.len() == 2 * e + s + c + b)
            .ok_or(ChainError::Simulation(
                "eth_simulateV1 returned fewer calls than were sent",
            ))?;
        let succeeds = !calls[e + s - 1].status.is_zero();
        let mut values = Vec::with_capacity(e + self.plan.len());
        let mut failed = Vec::new();
        for (i, (name, read)) in self.effects.iter().enumerate() {
            match effect(&calls[i], &calls[e + s + c + b + i], read.decimals) {
                Ok(v) => values.push((name.clone(), v)),
                Err(why) => failed.push((name.clone(), why.to_string())),
            }
        }
        let emitted: Vec<&SimulatedLog> = calls[e..e + s].iter().flat_map(|c| &c.logs).collect();
        let logs: Vec<Result<Vec<Log>, String>> = self
            .plan
            .log_filters()
            .iter()
            .map(|(address, topics)| Ok(matching_logs(&emitted, *address, topics)))
            .collect();
        let reads: Vec<Result<Bytes, String>> = calls[e + s..e + s + c]
            .iter()
            .map(|call| match call.status.is_zero() {
                true => Err("the read reverted on the post-transaction state".to_string()),
                false => Ok(call.return_data.clone()),
            })
            .collect();
        let balances: Vec<Result<U256, String>> = calls[e + s + c..e + s + c + b]
            .iter()
            .map(|call| word(call).map_err(str::to_string))
            .collect();
        let snapshot = self
            .plan
            .what_if_snapshot(&self.head, &reads, &balances, &logs);
        values.extend(snapshot.values);
        failed.extend(snapshot.failed);
        Ok(Some(Screened {
            tx: self.tx,
            sequence,
            block: self.head.number,
            time_ms: self.head.timestamp.saturating_mul(1000),
            seen_ms: self.seen_ms,
            screened_ms: now_ms(),
            succeeds,
            values,
            failed,
        }))
    }

    /// The simulated block and the sender's nonce on `latest`, in one batch
    /// (one round trip, the same state as near as the node allows).
    async fn simulate(
        &self,
        client: &RpcClient,
        payload: &Value,
    ) -> Result<(Vec<SimulatedBlock>, u64), ChainError> {
        let mut batch = client.new_batch();
        let blocks = batch
            .add_call::<_, Vec<SimulatedBlock>>("eth_simulateV1", &(payload, "latest"))
            .map_err(ChainError::rpc("batch"))?;
        let nonce = batch
            .add_call::<_, U64>("eth_getTransactionCount", &(self.tx.from, "latest"))
            .map_err(ChainError::rpc("batch"))?;
        batch.send().await.map_err(ChainError::rpc("batch"))?;
        let blocks = blocks.await.map_err(ChainError::rpc("eth_simulateV1"))?;
        let nonce = nonce
            .await
            .map_err(ChainError::rpc("eth_getTransactionCount"))?;
        Ok((blocks, nonce.to::<u64>()))
    }
}

fn word(c: &SimulatedCall) -> Result<U256, &'static str> {
    if c.status.is_zero() || c.return_data.len() != 32 {
        return Err("the balance read failed in the simulation");
    }
    Ok(U256::from_be_slice(&c.return_data))
}

/// A balance's decrease between two reads, in human units (negative: it grew).
fn effect(
    before: &SimulatedCall,
    after: &SimulatedCall,
    decimals: u8,
) -> Result<f64, &'static str> {
    let (before, after) = (word(before)?, word(after)?);
    let scale = |v: U256| scaled_amount(v, decimals).ok_or("cannot scale the balance");
    if after <= before {
        scale(before - after)
    } else {
        Ok(-scale(after - before)?)
    }
}

/// The logs among `emitted` that a block's `eth_getLogs` filter would return.
fn matching_logs(
    emitted: &[&SimulatedLog],
    address: Address,
    topics: &[Option<B256>; 4],
) -> Vec<Log> {
    emitted
        .iter()
        .filter(|l| {
            l.address == address
                && topics
                    .iter()
                    .enumerate()
                    .all(|(i, t)| t.is_none_or(|t| l.topics.get(i) == Some(&t)))
        })
        .map(|l| Log {
            inner: alloy::primitives::Log::new_unchecked(
                l.address,
                l.topics.clone(),
                l.data.clone(),
            ),
            ..Log::default()
        })
        .collect()
}

/// How often, at most, dropped transactions are reported (counted every time).
const DROP_REPORT_MS: u64 = 1_000;

impl super::Watcher {
    /// Follows pending transactions (reconnecting like the heads) and screens
    /// every one; emits [`WatchEvent::Screened`] for those that succeed.
    pub(super) async fn screen_pending(
        &self,
        mut screener: Screener,
        clients: &[RpcClient],
        mut feed: PendingFeed<'_>,
    ) -> Result<(), ChainError> {
        let (out, cancel) = (feed.out, feed.cancel);
        let concurrency = self.options.screen.map_or(1, |s| s.concurrency.max(1));
        let mut drops = DropReport::default();
        let mut failures = FailureReport::default();
        while let Some((i, (provider, mut stream))) = self.subscribe_pending(&mut feed).await {
            let mut inflight = FuturesUnordered::new();
            loop {
                // Start screenings while there is room and work.
                while inflight.len() < concurrency {
                    let latest = *feed.head.borrow();
                    if latest.0 == 0 {
                        break;
                    }
                    // The healthiest read endpoint (the follower marks faults).
                    let client = &clients[self.health.preferred(0).min(clients.len() - 1)];
                    let Some(job) = screener.next_job(client, latest).await else {
                        break;
                    };
                    match job {
                        Ok(job) => inflight.push(job.run(client.clone())),
                        Err(e) => failures.failed(&self.network, &e),
                    }
                }
                let next = tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    Some(done) = inflight.next(), if !inflight.is_empty() => Next::Done(done),
                    tx = next_pending(&mut stream) => Next::Arrived(tx),
                };
                drops.flush(&self.options.probe, &self.network, &screener.queue);
                match next {
                    Next::Done(Ok(Some(screened))) => self.emit_screened(screened, out).await?,
                    // Mined before its screening ran: the block's own samples judge it.
                    Next::Done(Ok(None)) => {}
                    Next::Done(Err(e)) => failures.failed(&self.network, &e),
                    Next::Arrived(None) => break,
                    Next::Arrived(Some(tx)) => {
                        let seen_ms = now_ms();
                        let Some(tx) = pending_body(&provider, tx).await else {
                            continue;
                        };
                        if screener.enqueue(tx, seen_ms, feed.head.borrow().0) {
                            drops.dropped(&self.options.probe, &self.network, &screener.queue);
                        }
                    }
                }
            }
            tracing::warn!(target: "guardian::source::chain", network = %self.network, endpoint = i + 1, "pending-transaction subscription ended; reconnecting");
        }
        Ok(())
    }

    /// Sends a screening's what-if block down the flow (a reverting transaction changes nothing).
    async fn emit_screened(
        &self,
        screened: Screened,
        out: &mpsc::Sender<WatchEvent>,
    ) -> Result<(), ChainError> {
        self.options.probe.pending_screened(&self.network);
        for (metric, why) in &screened.failed {
            tracing::debug!(target: "guardian::source::chain", network = %self.network, tx = %screened.tx.hash, metric = &**metric, error = %redact(why), "metric not computed on the pending transaction's state");
        }
        if !screened.succeeds && screened.sequence.is_empty() {
            return Ok(());
        }
        out.send(WatchEvent::Screened(Box::new(screened)))
            .await
            .map_err(|_| ChainError::ChannelClosed)
    }
}

enum Next<D, T> {
    Done(D),
    Arrived(Option<T>),
}

/// Screenings that failed (a node without `eth_simulateV1` fails every one):
/// the first is logged with its error, then a count at most every [`FAILURE_REPORT_MS`].
#[derive(Debug, Default)]
struct FailureReport {
    unreported: u64,
    total: u64,
    last_ms: u64,
}

/// How often repeated screening failures are summarised in the log.
const FAILURE_REPORT_MS: u64 = 10_000;

impl FailureReport {
    fn failed(&mut self, network: &str, e: &ChainError) {
        self.unreported += 1;
        self.total += 1;
        let now = now_ms();
        if self.total > 1 && now.saturating_sub(self.last_ms) < FAILURE_REPORT_MS {
            return;
        }
        tracing::warn!(target: "guardian::source::chain", network, error = %redact(&e.to_string()), failed = self.unreported, failed_total = self.total, "cannot screen pending transactions (the mined blocks are still judged); repeated failures are summarised every 10 s");
        self.unreported = 0;
        self.last_ms = now;
    }
}

/// Dropped transactions since the last report, reported at most every [`DROP_REPORT_MS`].
#[derive(Debug, Default)]
struct DropReport {
    unreported: u64,
    last_ms: u64,
}

impl DropReport {
    fn dropped(&mut self, probe: &crate::observe::Probe, network: &str, queue: &Queue) {
        self.unreported += 1;
        self.flush(probe, network, queue);
    }

    /// Reports the drops not yet reported, once [`DROP_REPORT_MS`] passed since the last report.
    fn flush(&mut self, probe: &crate::observe::Probe, network: &str, queue: &Queue) {
        let now = now_ms();
        if self.unreported > 0 && now.saturating_sub(self.last_ms) >= DROP_REPORT_MS {
            probe.pending_dropped(network, self.unreported, queue.dropped(), queue.capacity);
            self.unreported = 0;
            self.last_ms = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(to: u8, tip: u64, nonce: u64) -> Transaction {
        serde_json::from_value(json!({
            "hash": B256::with_last_byte(nonce as u8), "type": "0x2", "chainId": "0x1",
            "nonce": format!("{nonce:#x}"), "gas": "0x5208",
            "maxFeePerGas": format!("{:#x}", tip * 2), "maxPriorityFeePerGas": format!("{tip:#x}"),
            "to": Address::with_last_byte(to), "value": "0x0", "input": "0x", "accessList": [],
            "r": "0x1", "s": "0x1", "yParity": "0x0", "v": "0x0",
            "from": Address::with_last_byte(0xee),
            "blockHash": null, "blockNumber": null, "transactionIndex": null
        }))
        .expect("a transaction")
    }

    fn from(sender: Address, nonce: u64) -> Transaction {
        let mut t = serde_json::to_value(tx(1, 1, nonce)).expect("json");
        t["from"] = json!(sender);
        serde_json::from_value(t).expect("a transaction")
    }

    #[test]
    fn senders_quiet_for_a_few_blocks_are_forgotten_and_sequences_still_join() {
        let mut s = Screener::new(
            ReadPlan::default(),
            PendingWatch::new([]),
            ScreenOptions::default(),
        );
        // 1,000 one-off senders at head 10: remembered for the next blocks only.
        for i in 0..1_000u64 {
            let sender = Address::from_word(B256::from(alloy::primitives::U256::from(i + 1)));
            s.enqueue(from(sender, 0), 0, 10);
        }
        assert_eq!(s.senders.len(), 1_000);
        // Nonces 0..=2 of sender 7 queued; 2 is screened first (newest) and
        // still finds 0 and 1 before it.
        let seven = Address::with_last_byte(7);
        for n in 0..3 {
            s.enqueue(from(seven, n), 0, 11);
        }
        let newest = s.queue.pop().expect("queued").tx;
        assert_eq!(newest.nonce(), 2);
        let joined = s.sequence(&newest, 12);
        assert_eq!(joined.iter().map(|t| t.nonce()).collect::<Vec<_>>(), [0, 1]);
        // Three blocks after head 10, only sender 7 (last seen at 11) is remembered.
        s.enqueue(from(seven, 3), 0, 13);
        assert_eq!(s.senders.len(), 1, "the one-off senders are forgotten");
        s.enqueue(from(Address::with_last_byte(8), 0), 0, 16);
        assert_eq!(
            s.senders.len(),
            1,
            "sender 7 too, three blocks after its last"
        );
    }

    #[test]
    fn among_equals_the_newest_is_screened_first_and_the_oldest_dropped() {
        let mut q = Queue::new(3);
        for nonce in 1..=4 {
            q.push(tx(1, 5, nonce), 0, true);
        }
        assert_eq!(q.dropped(), 1);
        let order: Vec<u64> = std::iter::from_fn(|| q.pop())
            .map(|w| w.tx.nonce())
            .collect();
        assert_eq!(order, [4, 3, 2], "nonce 1, the oldest, was dropped");
    }

    #[test]
    fn the_queue_serves_the_protocol_then_the_highest_tip_and_drops_the_lowest() {
        let mut q = Queue::new(3);
        assert!(!q.push(tx(1, 5, 1), 0, false));
        assert!(!q.push(tx(2, 1, 2), 0, true));
        assert!(!q.push(tx(3, 9, 3), 0, false));
        // Full: the lowest priority (not the protocol's, lowest tip) goes.
        assert!(q.push(tx(4, 7, 4), 0, false));
        assert_eq!(q.dropped(), 1);
        let order: Vec<u64> = std::iter::from_fn(|| q.pop())
            .map(|w| w.tx.nonce())
            .collect();
        assert_eq!(order, [2, 3, 4]);
        assert!(q.is_empty());
    }

    #[test]
    fn logs_match_a_filter_by_address_and_topics() {
        let (a, t0, t1) = (
            Address::with_last_byte(1),
            B256::with_last_byte(7),
            B256::with_last_byte(8),
        );
        let log = |address, topics: Vec<B256>| SimulatedLog {
            address,
            topics,
            data: Bytes::new(),
        };
        let emitted = [
            log(a, vec![t0, t1]),
            log(a, vec![t1]),
            log(Address::with_last_byte(2), vec![t0]),
        ];
        let refs: Vec<&SimulatedLog> = emitted.iter().collect();
        assert_eq!(
            matching_logs(&refs, a, &[Some(t0), None, None, None]).len(),
            1
        );
        assert_eq!(matching_logs(&refs, a, &[None; 4]).len(), 2);
        assert_eq!(
            matching_logs(&refs, a, &[Some(t0), Some(t0), None, None]).len(),
            0
        );
    }
}
