//! One block's snapshot: every per-block metric read at that block's hash, in
//! one JSON-RPC batch (one round trip), decoded and scaled.
//!
//! Reads are planned once, at start: identical calls (an oracle's answer and
//! age read the same `latestRoundData()`) and identical log filters are made
//! once per block and shared.

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::consensus::Transaction as _;
use alloy::dyn_abi::{DynSolValue, EventExt, FunctionExt};
use alloy::json_abi::{Event, Function};
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::rpc::client::{RpcClient, Waiter};
use alloy::rpc::types::{Block, Header, Log};
use alloy::sol_types::SolCall;
use serde_json::json;

use super::ChainError;
use super::endpoints::{Fault, Health};
use crate::config::MetricDef;
use crate::config::sources::{BalanceRead, BlockStat, SourceSpec};
use crate::metrics::{scaled_amount, scaled_signed};

alloy::sol! {
    function balanceOf(address holder) external view returns (uint256);
    function latestRoundData() external view returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound);
}

/// The head a snapshot is read at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub number: u64,
    pub hash: B256,
    pub parent_hash: B256,
    /// Unix seconds.
    pub timestamp: u64,
    pub gas_used: u64,
    pub gas_limit: u64,
    pub base_fee: Option<u64>,
}

impl From<&Header> for Head {
    fn from(h: &Header) -> Self {
        Self {
            number: h.number,
            hash: h.hash,
            parent_hash: h.parent_hash,
            timestamp: h.timestamp,
            gas_used: h.gas_used,
            gas_limit: h.gas_limit,
            base_fee: h.base_fee_per_gas,
        }
    }
}

/// Every per-block metric of one block.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    pub number: u64,
    pub hash: B256,
    pub parent_hash: B256,
    /// The block's timestamp in milliseconds (the time of every sample in it).
    pub time_ms: u64,
    /// Metric values in configuration order. A metric whose read failed is absent.
    pub values: Vec<(Arc<str>, f64)>,
    /// Metrics that could not be read at this block, and why.
    pub failed: Vec<(Arc<str>, String)>,
}

#[derive(Debug, Clone)]
enum Read {
    Call {
        call: usize,
        function: Function,
        output: usize,
        decimals: u8,
    },
    Native {
        balance: usize,
        decimals: u8,
    },
    Erc20 {
        call: usize,
        decimals: u8,
    },
    EventCount {
        logs: usize,
    },
    EventSum {
        logs: usize,
        event: Event,
        /// Position among the indexed (true) or the body (false) fields.
        indexed: bool,
        position: usize,
        decimals: u8,
    },
    Block(BlockStat),
    OracleAnswer {
        call: usize,
        decimals: u8,
    },
    OracleAge {
        call: usize,
    },
    Ratio {
        numerator: usize,
        denominator: usize,
    },
    HeadAge,
}

/// The reads behind one network's per-block metrics, planned once.
#[derive(Debug, Clone, Default)]
pub struct ReadPlan {
    metrics: Vec<(Arc<str>, Read)>,
    calls: Vec<(Address, Bytes)>,
    balances: Vec<Address>,
    logs: Vec<(Address, [Option<B256>; 4])>,
    needs_transactions: bool,
    /// The `head_age` metrics, which the watchdog repeats between heads.
    head_age: Vec<Arc<str>>,
}

fn index_of<T: PartialEq + Clone>(list: &mut Vec<T>, item: T) -> usize {
    match list.iter().position(|x| *x == item) {
        Some(i) => i,
        None => {
            list.push(item);
            list.len() - 1
        }
    }
}

impl ReadPlan {
    /// Plans the per-block reads of `metrics` (pending and trace-only metrics are skipped).
    pub fn new<'a>(metrics: impl IntoIterator<Item = &'a MetricDef>) -> Self {
        let mut plan = ReadPlan::default();
        let mut ratios = Vec::new();
        for def in metrics {
            let Some(spec) = &def.source else { continue };
            let name: Arc<str> = Arc::from(def.name.as_str());
            let read = match spec {
                SourceSpec::Call(c) => Read::Call {
                    call: index_of(&mut plan.calls, (c.to, c.calldata.clone())),
                    function: c.function.clone(),
                    output: c.output,
                    decimals: c.decimals,
                },
                SourceSpec::NativeBalance(b) | SourceSpec::Erc20Balance(b) => plan.balance(b),
                SourceSpec::EventCount(f) => Read::EventCount {
                    logs: index_of(&mut plan.logs, (f.address, f.topics)),
                },
                SourceSpec::EventSum {
                    filter,
                    field,
                    decimals,
                } => {
                    // `field` indexes the event's inputs: checked when the configuration was loaded.
                    let input = &filter.event.inputs[*field];
                    let position = filter.event.inputs[..*field]
                        .iter()
                        .filter(|p| p.indexed == input.indexed)
                        .count();
                    Read::EventSum {
                        logs: index_of(&mut plan.logs, (filter.address, filter.topics)),
                        event: filter.event.clone(),
                        indexed: input.indexed,
                        position,
                        decimals: *decimals,
                    }
                }
                SourceSpec::Block(stat) => {
                    if matches!(
                        stat,
                        BlockStat::TxCount | BlockStat::PriorityFeePercentile(_)
                    ) {
                        plan.needs_transactions = true;
                    }
                    Read::Block(*stat)
                }
                SourceSpec::OracleAnswer { feed, decimals } => Read::OracleAnswer {
                    call: index_of(
                        &mut plan.calls,
                        (*feed, latestRoundDataCall {}.abi_encode().into()),
                    ),
                    decimals: *decimals,
                },
                SourceSpec::OracleAge { feed } => Read::OracleAge {
                    call: index_of(
                        &mut plan.calls,
                        (*feed, latestRoundDataCall {}.abi_encode().into()),
                    ),
                },
                SourceSpec::Ratio {
                    numerator,
                    denominator,
                } => {
                    ratios.push((name, numerator.clone(), denominator.clone()));
                    continue;
                }
                SourceSpec::HeadAge => {
                    plan.head_age.push(name.clone());
                    Read::HeadAge
                }
                SourceSpec::Pending(_) => continue,
            };
            plan.metrics.push((name, read));
        }
        // Ratios come after the reads they divide (the configuration checked both exist).
        for (name, num, den) in ratios {
            let find = |n: &str| plan.metrics.iter().position(|(m, _)| &**m == n);
            if let (Some(numerator), Some(denominator)) = (find(&num), find(&den)) {
                plan.metrics.push((
                    name,
                    Read::Ratio {
                        numerator,
                        denominator,
                    },
                ));
            }
        }
        plan
    }

    fn balance(&mut self, b: &BalanceRead) -> Read {
        match b.token {
            None => Read::Native {
                balance: index_of(&mut self.balances, b.holder),
                decimals: b.decimals,
            },
            Some(token) => Read::Erc20 {
                call: index_of(
                    &mut self.calls,
                    (
                        token,
                        balanceOfCall { holder: b.holder }.abi_encode().into(),
                    ),
                ),
                decimals: b.decimals,
            },
        }
    }

    /// Whether `metric` is read from an endpoint's answer (a call, balance,
    /// logs, the block's transactions, or a ratio of those), rather than from
    /// the header the block was followed by or the watcher's clock.
    pub fn from_endpoint(&self, metric: &str) -> bool {
        self.metrics.iter().any(|(name, read)| {
            &**name == metric
                && !matches!(
                    read,
                    Read::HeadAge | Read::Block(BlockStat::GasUsedRatio | BlockStat::BaseFeeGwei)
                )
        })
    }

    /// The staleness metrics (`head_age`), for the watchdog.
    pub fn head_age_metrics(&self) -> &[Arc<str>] {
        &self.head_age
    }

    /// How many metrics a snapshot carries.
    pub fn len(&self) -> usize {
        self.metrics.len()
    }

    pub fn is_empty(&self) -> bool {
        self.metrics.is_empty()
    }

    /// How many JSON-RPC requests one block's batch holds.
    pub fn requests_per_block(&self) -> usize {
        self.calls.len()
            + self.balances.len()
            + self.logs.len()
            + usize::from(self.needs_transactions)
    }

    /// Reads every metric at `head`'s hash in one batch from `client`.
    pub async fn read(&self, client: &RpcClient, head: &Head) -> Result<Snapshot, ChainError> {
        let raw = self.fetch(client, head).await?;
        Ok(self.assemble(head, raw))
    }

    /// Every metric's read at `head`'s hash from one endpoint, in plan order
    /// (ratios are left for [`ReadPlan::assemble`]).
    async fn fetch(
        &self,
        client: &RpcClient,
        head: &Head,
    ) -> Result<Vec<Result<f64, Miss>>, ChainError> {
        let at = json!({ "blockHash": head.hash });
        let mut batch = client.new_batch();
        let add = |e| ChainError::Rpc {
            method: "batch",
            source: e,
        };
        let mut calls: Vec<Waiter<Bytes>> = Vec::with_capacity(self.calls.len());
        for (to, data) in &self.calls {
            calls.push(
                batch
                    .add_call("eth_call", &(json!({ "to": to, "data": data }), &at))
                    .map_err(add)?,
            );
        }
        let mut balances: Vec<Waiter<U256>> = Vec::with_capacity(self.balances.len());
        for holder in &self.balances {
            balances.push(
                batch
                    .add_call("eth_getBalance", &(holder, &at))
                    .map_err(add)?,
            );
        }
        let mut logs: Vec<Waiter<Vec<Log>>> = Vec::with_capacity(self.logs.len());
        for (address, topics) in &self.logs {
            let filter = json!([{ "blockHash": head.hash, "address": address, "topics": topics }]);
            logs.push(batch.add_call("eth_getLogs", &filter).map_err(add)?);
        }
        let block: Option<Waiter<Option<Block>>> = if self.needs_transactions {
            Some(
                batch
                    .add_call("eth_getBlockByHash", &(head.hash, true))
                    .map_err(add)?,
            )
        } else {
            None
        };
        if self.requests_per_block() > 0 {
            batch.send().await.map_err(add)?;
        }

        let mut call_results = Vec::with_capacity(calls.len());
        for w in calls {
            call_results.push(w.await.map_err(|e| e.to_string()));
        }
        let mut balance_results = Vec::with_capacity(balances.len());
        for w in balances {
            balance_results.push(w.await.map_err(|e| e.to_string()));
        }
        let mut log_results = Vec::with_capacity(logs.len());
        for w in logs {
            log_results.push(w.await.map_err(|e| e.to_string()));
        }
        let block = match block {
            Some(w) => Some(match w.await {
                Ok(Some(b)) => Ok(b),
                Ok(None) => Err(format!(
                    "block {} ({}) is unknown to the node",
                    head.number, head.hash
                )),
                Err(e) => Err(e.to_string()),
            }),
            None => None,
        };

        Ok(self
            .metrics
            .iter()
            .map(|(_, read)| match read {
                Read::Ratio { .. } => Err(Miss::value("computed from other metrics")),
                _ => evaluate(
                    read,
                    head,
                    &call_results,
                    &balance_results,
                    &log_results,
                    block.as_ref(),
                ),
            })
            .collect())
    }

    /// The snapshot of `head` from each metric's read: ratios computed, values checked finite.
    fn assemble(&self, head: &Head, raw: Vec<Result<f64, Miss>>) -> Snapshot {
        self.snapshot_of(head, raw.into_iter().map(Some))
    }

    /// The snapshot of `head` from each metric's value (`None`: the metric is
    /// not in this snapshot): ratios computed from the values before them,
    /// values checked finite, every failure kept with its reason.
    fn snapshot_of(
        &self,
        head: &Head,
        raw: impl Iterator<Item = Option<Result<f64, Miss>>>,
    ) -> Snapshot {
        let mut snapshot = Snapshot {
            number: head.number,
            hash: head.hash,
            parent_hash: head.parent_hash,
            time_ms: head.timestamp.saturating_mul(1000),
            values: Vec::with_capacity(self.metrics.len()),
            failed: Vec::new(),
        };
        let mut by_index: Vec<Option<f64>> = Vec::with_capacity(self.metrics.len());
        for ((name, read), value) in self.metrics.iter().zip(raw) {
            let Some(value) = value else {
                by_index.push(None);
                continue;
            };
            let value = match read {
                Read::Ratio {
                    numerator,
                    denominator,
                } => match (by_index[*numerator], by_index[*denominator]) {
                    (Some(n), Some(d)) if d != 0.0 => Ok(n / d),
                    (Some(_), Some(_)) => Err("the denominator is zero".to_string()),
                    _ => Err("a read it divides failed".to_string()),
                },
                _ => value.map_err(|m| m.why),
            };
            match value {
                Ok(v) if v.is_finite() => {
                    by_index.push(Some(v));
                    snapshot.values.push((name.clone(), v));
                }
                Ok(v) => {
                    by_index.push(None);
                    snapshot
                        .failed
                        .push((name.clone(), format!("the value {v} is not finite")));
                }
                Err(e) => {
                    by_index.push(None);
                    snapshot.failed.push((name.clone(), e));
                }
            }
        }
        snapshot
    }

    /// Reads `head` from the healthiest endpoints, starting with `first`: any
    /// metric whose answer was not a well-formed value (an error envelope,
    /// `null`, empty data where a word is expected, a decode failure) is read
    /// again from the next endpoint, until every metric has a value, every
    /// endpoint was asked, or `deadline` passes (the first endpoint is always
    /// asked). Each endpoint's health is marked by how it answered. A metric is
    /// missing from the snapshot only when no endpoint answered it.
    ///
    /// An error only when no endpoint answered at all, or (with several
    /// endpoints) when every metric failed on every one of them.
    pub async fn read_failover(
        &self,
        clients: &[RpcClient],
        health: &Health,
        first: usize,
        head: &Head,
        request_timeout: Duration,
        deadline: Instant,
    ) -> Result<Reading, ChainError> {
        let mut merged: Option<(usize, Vec<Result<f64, Miss>>)> = None;
        let mut reading = Reading::default();
        let mut last = None;
        for i in health
            .order(first)
            .into_iter()
            .filter(|&i| i < clients.len())
        {
            let left = deadline.saturating_duration_since(Instant::now());
            if (merged.is_some() || last.is_some()) && left.is_zero() {
                reading.deadline_passed = true;
                break;
            }
            let wait = if left.is_zero() {
                request_timeout
            } else {
                left.min(request_timeout)
            };
            let raw = match tokio::time::timeout(wait, self.fetch(&clients[i], head)).await {
                Ok(Ok(raw)) => raw,
                Ok(Err(e)) => {
                    health.mark(i, Fault::Failed);
                    reading.faults.push((i, e.to_string()));
                    last = Some(e);
                    continue;
                }
                Err(_) => {
                    let e = ChainError::Timeout {
                        method: "batch",
                        ms: wait.as_millis() as u64,
                    };
                    health.mark(i, Fault::Failed);
                    reading.faults.push((i, e.to_string()));
                    last = Some(e);
                    continue;
                }
            };
            match raw
                .iter()
                .find_map(|r| r.as_ref().err().filter(|m| m.endpoint))
            {
                Some(m) => {
                    health.mark(i, Fault::Failed);
                    reading.faults.push((i, m.why.clone()));
                }
                None => health.ok(i),
            }
            let done = match &mut merged {
                None => {
                    let complete = !raw.iter().any(Miss::retry);
                    merged = Some((i, raw));
                    complete
                }
                Some((_, kept)) => fill(kept, raw, &mut reading.filled),
            };
            if done {
                break;
            }
        }
        let Some((endpoint, raw)) = merged else {
            return Err(last.unwrap_or(ChainError::NoEndpoint(String::new())));
        };
        let snapshot = self.assemble(head, raw);
        if clients.len() > 1 && snapshot.values.is_empty() && !snapshot.failed.is_empty() {
            return Err(ChainError::AllReadsFailed(head.number));
        }
        reading.snapshot = snapshot;
        reading.endpoint = endpoint;
        Ok(reading)
    }
}

/// Takes into `kept` every value `new` has where `kept` had an endpoint
/// failure; whether nothing is left to retry.
fn fill(kept: &mut [Result<f64, Miss>], new: Vec<Result<f64, Miss>>, filled: &mut usize) -> bool {
    for (k, n) in kept.iter_mut().zip(new) {
        if Miss::retry(k) && n.is_ok() {
            *k = n;
            *filled += 1;
        }
    }
    !kept.iter().any(Miss::retry)
}

/// What [`ReadPlan::read_failover`] read, and how the endpoints answered.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reading {
    pub snapshot: Snapshot,
    /// The endpoint whose answer the snapshot is mostly from.
    pub endpoint: usize,
    /// Endpoints that failed some or all reads, and the first reason.
    pub faults: Vec<(usize, String)>,
    /// Metric values taken from a later endpoint after an earlier one failed them.
    pub filled: usize,
    /// The block's deadline passed before every endpoint was asked.
    pub deadline_passed: bool,
}

/// Why one metric has no value from one endpoint.
#[derive(Debug, Clone, PartialEq)]
struct Miss {
    why: String,
    /// The endpoint's answer was not a well-formed value (another endpoint may
    /// answer it); otherwise the value itself cannot be had (a zero gas limit,
    /// a block without transactions).
    endpoint: bool,
}

impl Miss {
    fn value(why: impl Into<String>) -> Self {
        Self {
            why: why.into(),
            endpoint: false,
        }
    }

    fn retry(r: &Result<f64, Miss>) -> bool {
        matches!(r, Err(Miss { endpoint: true, .. }))
    }
}

impl From<String> for Miss {
    fn from(why: String) -> Self {
        Self {
            why,
            endpoint: true,
        }
    }
}

/// The reads of a what-if snapshot (see [`super::screen`]): the same calls,
/// balances and log filters as a block's batch, made inside a simulation.
impl ReadPlan {
    /// The distinct `eth_call`s of a block, as (to, calldata).
    pub fn calls(&self) -> &[(Address, Bytes)] {
        &self.calls
    }

    /// The holders whose native balance a block reads.
    pub fn balances(&self) -> &[Address] {
        &self.balances
    }

    /// The distinct log filters of a block, as (address, topics).
    pub fn log_filters(&self) -> &[(Address, [Option<B256>; 4])] {
        &self.logs
    }

    /// The snapshot of the block a pending transaction would make, from reads
    /// made on the state after it (`logs`: what it emitted, per filter).
    /// Block statistics and `head_age` describe a mined block and are left out.
    pub fn what_if_snapshot(
        &self,
        head: &Head,
        calls: &[Result<Bytes, String>],
        balances: &[Result<U256, String>],
        logs: &[Result<Vec<Log>, String>],
    ) -> Snapshot {
        let raw = self.metrics.iter().map(|(_, read)| match read {
            Read::Block(_) | Read::HeadAge => None,
            // Computed from the values before it.
            Read::Ratio { .. } => Some(Err(Miss::value("computed from other metrics"))),
            _ => Some(evaluate(read, head, calls, balances, logs, None)),
        });
        self.snapshot_of(head, raw)
    }
}

fn number(value: &DynSolValue, decimals: u8) -> Result<f64, String> {
    let scaled = match value {
        DynSolValue::Uint(u, _) => scaled_amount(*u, decimals),
        DynSolValue::Int(i, _) => scaled_signed(*i, decimals),
        DynSolValue::Bool(b) => Some(f64::from(u8::from(*b))),
        other => return Err(format!("expected a number, the call returned {other:?}")),
    };
    scaled.ok_or_else(|| format!("cannot scale by {decimals} decimals"))
}

fn evaluate(
    read: &Read,
    head: &Head,
    calls: &[Result<Bytes, String>],
    balances: &[Result<U256, String>],
    logs: &[Result<Vec<Log>, String>],
    block: Option<&Result<Block, String>>,
) -> Result<f64, Miss> {
    let call = |i: usize| calls[i].as_ref().map_err(Clone::clone);
    match read {
        Read::Call {
            call: i,
            function,
            output,
            decimals,
        } => {
            let out = function.abi_decode_output(call(*i)?).map_err(|e| {
                format!(
                    "cannot decode the return of `{}`: {e}",
                    function.signature()
                )
            })?;
            let value = out
                .get(*output)
                .ok_or_else(|| format!("the call returned no output {output}"))?;
            number(value, *decimals).map_err(Miss::value)
        }
        Read::Native { balance, decimals } => {
            let raw = balances[*balance].as_ref().map_err(Clone::clone)?;
            scaled_amount(*raw, *decimals).ok_or_else(|| Miss::value("cannot scale the balance"))
        }
        Read::Erc20 { call: i, decimals } => {
            let raw = balanceOfCall::abi_decode_returns(call(*i)?)
                .map_err(|e| format!("cannot decode balanceOf: {e}"))?;
            scaled_amount(raw, *decimals).ok_or_else(|| Miss::value("cannot scale the balance"))
        }
        Read::EventCount { logs: i } => {
            let logs = logs[*i].as_ref().map_err(Clone::clone)?;
            Ok(logs.iter().filter(|l| !l.removed).count() as f64)
        }
        Read::EventSum {
            logs: i,
            event,
            indexed,
            position,
            decimals,
        } => {
            let logs = logs[*i].as_ref().map_err(Clone::clone)?;
            let mut sum = 0.0;
            for log in logs.iter().filter(|l| !l.removed) {
                let decoded = event
                    .decode_log_parts(log.topics().iter().copied(), &log.data().data)
                    .map_err(|e| format!("cannot decode a `{}` log: {e}", event.name))?;
                let fields = if *indexed {
                    &decoded.indexed
                } else {
                    &decoded.body
                };
                let value = fields
                    .get(*position)
                    .ok_or_else(|| format!("a `{}` log lacks the summed field", event.name))?;
                sum += number(value, *decimals)?;
            }
            Ok(sum)
        }
        Read::Block(stat) => block_stat(*stat, head, block),
        Read::OracleAnswer { call: i, decimals } => {
            let round = latestRoundDataCall::abi_decode_returns(call(*i)?)
                .map_err(|e| format!("cannot decode latestRoundData: {e}"))?;
            scaled_signed(round.answer, *decimals)
                .ok_or_else(|| Miss::value("cannot scale the answer"))
        }
        Read::OracleAge { call: i } => {
            let round = latestRoundDataCall::abi_decode_returns(call(*i)?)
                .map_err(|e| format!("cannot decode latestRoundData: {e}"))?;
            let updated: u64 = round
                .updatedAt
                .try_into()
                .map_err(|_| "updatedAt does not fit in 64 bits".to_string())?;
            Ok(head.timestamp as f64 - updated as f64)
        }
        Read::Ratio { .. } => Err(Miss::value("ratios are computed from other metrics")),
        Read::HeadAge => Ok(head_age_s(head.timestamp, now_ms())),
    }
}

fn block_stat(
    stat: BlockStat,
    head: &Head,
    block: Option<&Result<Block, String>>,
) -> Result<f64, Miss> {
    match stat {
        BlockStat::GasUsedRatio if head.gas_limit == 0 => {
            Err(Miss::value("the block's gas limit is zero"))
        }
        BlockStat::GasUsedRatio => Ok(head.gas_used as f64 / head.gas_limit as f64),
        BlockStat::BaseFeeGwei => head
            .base_fee
            .map(|f| f as f64 / 1e9)
            .ok_or_else(|| Miss::value("the block has no base fee (pre-London chain)")),
        BlockStat::TxCount | BlockStat::PriorityFeePercentile(_) => {
            let block = block
                .ok_or_else(|| Miss::from("the block's transactions were not fetched".to_string()))?
                .as_ref()
                .map_err(Clone::clone)?;
            if stat == BlockStat::TxCount {
                return Ok(block.transactions.len() as f64);
            }
            let base_fee = head.base_fee.unwrap_or(0);
            let mut tips: Vec<u128> = block
                .transactions
                .txns()
                .filter_map(|tx| tx.effective_tip_per_gas(base_fee))
                .collect();
            let BlockStat::PriorityFeePercentile(p) = stat else {
                return Err(Miss::value("unreachable block statistic"));
            };
            percentile(&mut tips, p)
                .map(|tip| tip as f64 / 1e9)
                .ok_or_else(|| {
                    Miss::value("the block has no transactions to take a fee percentile of")
                })
        }
    }
}

/// Unix milliseconds by the watcher's clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Seconds from a block's timestamp to `now_ms` (0 when the block looks to be from the future).
pub fn head_age_s(timestamp: u64, now_ms: u64) -> f64 {
    (now_ms as f64 / 1000.0 - timestamp as f64).max(0.0)
}

/// Nearest-rank percentile (`p` in 0..=100) of `values`, `None` when empty.
pub fn percentile(values: &mut [u128], p: u8) -> Option<u128> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let rank = (usize::from(p) * values.len()).div_ceil(100).max(1);
    Some(values[rank.min(values.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut v = vec![5, 1, 4, 2, 3];
        assert_eq!(percentile(&mut v, 0), Some(1));
        assert_eq!(percentile(&mut v, 50), Some(3));
        assert_eq!(percentile(&mut v, 90), Some(5));
        assert_eq!(percentile(&mut v, 100), Some(5));
        assert_eq!(percentile(&mut [], 50), None);
    }
}
