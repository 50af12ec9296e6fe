//! The sub-second path: pending transactions, filtered, simulated before they
//! are mined, their effect emitted as a metric attributed to the next block.
//!
//! For each `pending` metric, a transaction that passes its filters (to,
//! selector, value, priority fee percentile, new sender) is simulated with
//! `eth_simulateV1` on top of the latest state: the watched balance is read,
//! the transaction executed, the balance read again, all in one simulated
//! block. The metric's value is the decrease (before − after) in human units:
//! what the transaction would take out if it were mined next. A transaction
//! that would revert has an effect of 0. Nothing is estimated by heuristics:
//! the node executes the real call data.
//!
//! Each effect carries the transaction's hash, sender and fees, which an
//! executor needs to get its response ordered ahead of it.

use std::collections::HashSet;
use std::sync::Arc;

use alloy::consensus::Transaction as _;
use alloy::network::TransactionResponse as _;
use alloy::primitives::{Address, B256, Bytes, U256, address, bytes};
use alloy::rpc::client::RpcClient;
use alloy::rpc::types::{Block, Transaction};
use alloy::sol_types::SolCall;
use serde::Deserialize;
use serde_json::json;

use super::ChainError;
use super::reads::{balanceOfCall, now_ms, percentile};
use crate::config::MetricDef;
use crate::config::sources::{BalanceRead, PendingSpec, SourceSpec};
use crate::metrics::scaled_amount;

/// Where the simulation places its native-balance reader (a state override, never deployed).
pub(super) const BALANCE_READER: Address = address!("00000000000000000000000000000000000b0b00");
/// `BALANCE(calldataload(0))`, returned as one word.
pub(super) const BALANCE_READER_CODE: Bytes = bytes!("6000353160005260206000f3");

/// The estimated effect of one pending transaction on one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingEffect {
    pub metric: Arc<str>,
    /// The block the transaction is expected in (the latest head + 1).
    pub block: u64,
    /// When the transaction was seen, unix milliseconds.
    pub time_ms: u64,
    /// The watched balance's decrease if the transaction is mined, in human units.
    pub value: f64,
    /// Whether the simulated transaction succeeded (a reverting one has effect 0).
    pub succeeds: bool,
    /// The pending transaction: its hash, sender, nonce and fees.
    pub tx: PendingTxInfo,
}

/// A pending transaction as the filters, the screening and the response see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingTxInfo {
    pub hash: B256,
    pub from: Address,
    pub to: Option<Address>,
    pub nonce: u64,
    pub gas_limit: u64,
    /// EIP-1559 fee cap, or the legacy gas price.
    pub max_fee_per_gas: u128,
    /// EIP-1559 tip cap; `None` for legacy transactions.
    pub max_priority_fee_per_gas: Option<u128>,
}

impl PendingTxInfo {
    pub fn of(tx: &Transaction) -> Self {
        Self {
            hash: tx.tx_hash(),
            from: tx.from(),
            to: tx.to(),
            nonce: tx.nonce(),
            gas_limit: tx.gas_limit(),
            max_fee_per_gas: alloy::consensus::Transaction::max_fee_per_gas(tx),
            max_priority_fee_per_gas: tx.max_priority_fee_per_gas(),
        }
    }
}

/// The pending metrics of a network and what the filters remember.
#[derive(Debug)]
pub struct PendingWatch {
    specs: Vec<(Arc<str>, PendingSpec)>,
    senders: HashSet<Address>,
    /// The latest block's effective tips, sorted, for the percentile filter.
    tips: Option<(u64, Vec<u128>)>,
}

/// Senders remembered for the `new_sender` filter before the memory is reset.
const MAX_SENDERS: usize = 1 << 20;

impl PendingWatch {
    pub fn new<'a>(metrics: impl IntoIterator<Item = &'a MetricDef>) -> Self {
        let specs = metrics
            .into_iter()
            .filter_map(|m| match &m.source {
                Some(SourceSpec::Pending(p)) => Some((Arc::from(m.name.as_str()), p.clone())),
                _ => None,
            })
            .collect();
        Self {
            specs,
            senders: HashSet::new(),
            tips: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// Filters `tx` against every pending metric and simulates the matches.
    /// `head` is the latest block the watcher has read.
    pub async fn on_transaction(
        &mut self,
        client: &RpcClient,
        head: u64,
        tx: &Transaction,
    ) -> Result<Vec<PendingEffect>, ChainError> {
        let time_ms = now_ms();
        let mut effects = Vec::new();
        for i in self.matching(client, head, tx).await? {
            let (metric, spec) = &self.specs[i];
            let (value, succeeds) = simulate(client, tx, &spec.effect).await?;
            effects.push(PendingEffect {
                metric: metric.clone(),
                block: head + 1,
                time_ms,
                value,
                succeeds,
                tx: PendingTxInfo::of(tx),
            });
        }
        Ok(effects)
    }

    /// The pending metrics whose filters `tx` passes (a metric without
    /// filters takes every transaction), by index for [`Self::spec`].
    pub async fn matching(
        &mut self,
        client: &RpcClient,
        head: u64,
        tx: &Transaction,
    ) -> Result<Vec<usize>, ChainError> {
        let from = tx.from();
        let new_sender = !self.senders.contains(&from);
        if self.senders.len() >= MAX_SENDERS {
            self.senders.clear();
        }
        self.senders.insert(from);
        let mut out = Vec::new();
        for i in 0..self.specs.len() {
            if self.matches(client, head, i, tx, new_sender).await? {
                out.push(i);
            }
        }
        Ok(out)
    }

    /// Pending metric number `i`: its name and watch.
    pub fn spec(&self, i: usize) -> (&Arc<str>, &PendingSpec) {
        let (name, spec) = &self.specs[i];
        (name, spec)
    }

    /// The addresses the pending metrics name (their `to` filter, the watched balance).
    pub fn addresses(&self) -> impl Iterator<Item = Address> + '_ {
        self.specs.iter().flat_map(|(_, s)| {
            s.to.into_iter()
                .chain(s.effect.token)
                .chain([s.effect.holder])
        })
    }

    async fn matches(
        &mut self,
        client: &RpcClient,
        head: u64,
        i: usize,
        tx: &Transaction,
        new_sender: bool,
    ) -> Result<bool, ChainError> {
        let spec = &self.specs[i].1;
        if spec.to.is_some_and(|to| tx.to() != Some(to))
            || spec
                .selector
                .is_some_and(|sel| tx.input().get(..4) != Some(sel.as_slice()))
            || spec.min_value.is_some_and(|min| tx.value() < min)
            || (spec.new_sender && !new_sender)
        {
            return Ok(false);
        }
        let Some(p) = spec.min_priority_fee_percentile else {
            return Ok(true);
        };
        if self.tips.as_ref().is_none_or(|(n, _)| *n != head) {
            let block: Option<Block> = client
                .request("eth_getBlockByNumber", (format!("{head:#x}"), true))
                .await
                .map_err(ChainError::rpc("eth_getBlockByNumber"))?;
            let block = block.ok_or(ChainError::MissingBlock(head))?;
            let base_fee = block.header.base_fee_per_gas.unwrap_or(0);
            let tips = block
                .transactions
                .txns()
                .filter_map(|t| t.effective_tip_per_gas(base_fee))
                .collect();
            self.tips = Some((head, tips));
        }
        let Some((_, tips)) = self.tips.as_mut() else {
            return Ok(true);
        };
        // An empty last block sets no bar.
        let Some(bar) = percentile(tips, p) else {
            return Ok(true);
        };
        let tip = tx
            .max_priority_fee_per_gas()
            .unwrap_or_else(|| alloy::consensus::Transaction::max_fee_per_gas(tx));
        Ok(tip >= bar)
    }
}

/// A block of `eth_simulateV1`'s answer: each call's return data, status and logs.
#[derive(Debug, Deserialize)]
pub(super) struct SimulatedBlock {
    pub(super) calls: Vec<SimulatedCall>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SimulatedCall {
    pub(super) return_data: Bytes,
    pub(super) status: U256,
    #[serde(default)]
    pub(super) logs: Vec<SimulatedLog>,
}

#[derive(Debug, Deserialize)]
pub(super) struct SimulatedLog {
    pub(super) address: Address,
    pub(super) topics: Vec<B256>,
    pub(super) data: Bytes,
}

/// The simulated call of a transaction: its sender, data, value and own gas limit.
pub(super) fn tx_call(tx: &Transaction) -> serde_json::Value {
    let mut call = json!({
        "from": tx.from(),
        "data": tx.input(),
        "value": tx.value(),
        // The transaction's own gas limit: one that runs out of gas on chain does so here too.
        "gas": format!("{:#x}", tx.gas_limit()),
    });
    if let Some(to) = tx.to() {
        call["to"] = json!(to);
    }
    call
}

/// Simulates `tx` on the latest state between two reads of `effect`; returns
/// the balance's decrease in human units and whether the transaction succeeded.
pub async fn simulate(
    client: &RpcClient,
    tx: &Transaction,
    effect: &BalanceRead,
) -> Result<(f64, bool), ChainError> {
    let (reader, data, overrides): (Address, Bytes, serde_json::Value) = match effect.token {
        Some(token) => (
            token,
            balanceOfCall {
                holder: effect.holder,
            }
            .abi_encode()
            .into(),
            json!({}),
        ),
        None => (
            BALANCE_READER,
            Bytes::copy_from_slice(effect.holder.into_word().as_slice()),
            json!({ BALANCE_READER.to_string(): { "code": BALANCE_READER_CODE } }),
        ),
    };
    let read = json!({ "to": reader, "data": data });
    let call = tx_call(tx);
    let payload = json!({
        "blockStateCalls": [{ "stateOverrides": overrides, "calls": [read, call, read] }],
        "validation": false,
    });
    let blocks: Vec<SimulatedBlock> = client
        .request("eth_simulateV1", (payload, "latest"))
        .await
        .map_err(ChainError::rpc("eth_simulateV1"))?;
    let calls = blocks
        .into_iter()
        .next()
        .map(|b| b.calls)
        .filter(|c| c.len() == 3)
        .ok_or(ChainError::Simulation(
            "eth_simulateV1 returned no block of three calls",
        ))?;
    let word = |c: &SimulatedCall| -> Result<U256, ChainError> {
        if c.status.is_zero() || c.return_data.len() != 32 {
            return Err(ChainError::Simulation(
                "the balance read failed in the simulation",
            ));
        }
        Ok(U256::from_be_slice(&c.return_data))
    };
    let before = word(&calls[0])?;
    let after = word(&calls[2])?;
    let succeeds = !calls[1].status.is_zero();
    let scale = |v: U256| {
        scaled_amount(v, effect.decimals).ok_or(ChainError::Simulation("cannot scale the balance"))
    };
    let value = if after <= before {
        scale(before - after)?
    } else {
        -scale(after - before)?
    };
    Ok((value, succeeds))
}
