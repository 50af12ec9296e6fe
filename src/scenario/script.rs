//! Plays a scenario's script on a chain that mines at the scenario's block time.
//!
//! Time compression: a step `at` a later chain time than the previous one is
//! preceded by `gap_blocks` ordinary blocks, then the chain's clock is moved
//! forward (`evm_increaseTime`) so the next block carries the step's
//! timestamp; the step's transactions are sent right after that block, early
//! in the next slot. Steps at the same time go out together.

use std::time::{Duration, Instant};

use alloy::primitives::B256;

use super::ScenarioError;
use super::chain::{Chain, GWEI};
use super::protocol::Deployed;
use super::shared::{Sent, unix_ms};
use super::spec::{Action, Scenario};
use crate::source::trace::TraceReader;

/// A scripted transaction, with when it was broadcast.
#[derive(Debug, Clone)]
pub struct Broadcast {
    pub sent: Sent,
    /// Milliseconds since the script started.
    pub at_ms: u64,
    pub step_origin: String,
}

/// What playing the script took.
#[derive(Debug, Clone)]
pub struct Played {
    pub txs: Vec<Broadcast>,
    /// Chain seconds the script spanned (first to last block).
    pub chain_seconds: u64,
    pub wall_ms: u64,
    /// Unix ms at the script's start (the reference of every `at_ms`).
    pub started_unix_ms: u64,
}

/// Base fees (wei) for `blocks` blocks: every `stride`-th row of a base-fee trace from `from_block`.
pub fn base_fees(
    path: &std::path::Path,
    from_block: u64,
    blocks: u32,
    stride: u32,
) -> Result<Vec<u128>, ScenarioError> {
    let mut reader = TraceReader::open(path).map_err(|e| ScenarioError::Trace(e.to_string()))?;
    let mut fees = Vec::new();
    let mut k = 0u64;
    while let Some(row) = reader
        .next_row()
        .map_err(|e| ScenarioError::Trace(e.to_string()))?
    {
        if row.block < from_block || row.metric != "chain.base_fee_gwei" {
            continue;
        }
        if k.is_multiple_of(u64::from(stride)) {
            fees.push((row.value * GWEI as f64) as u128);
            if fees.len() == blocks as usize {
                break;
            }
        }
        k += 1;
    }
    if fees.len() < blocks as usize {
        return Err(ScenarioError::Trace(format!(
            "{}: only {} base fees from block {from_block} (every {stride}th), {blocks} asked",
            path.display(),
            fees.len()
        )));
    }
    Ok(fees)
}

/// Plays every step; returns once every sent transaction is mined (or 60 s passed)
/// and two more blocks have followed, so the guardian has seen the end.
pub async fn play(chain: &Chain, d: &Deployed, s: &Scenario) -> Result<Played, ScenarioError> {
    let (mut head, _) = chain.head().await?;
    let (first, t0) = chain.next_block(head).await?;
    head = first;
    let start = Instant::now();
    let started_unix_ms = unix_ms();
    let mut txs = Vec::new();
    let mut last_at: Option<u64> = None;
    let mut last_sent_block = head;
    let mut background = Vec::new();
    for step in &s.steps {
        if last_at != Some(step.at_s) {
            if last_at.is_some() {
                // Let ordinary blocks pass between steps at different times.
                while head < last_sent_block + u64::from(s.gap_blocks) {
                    head = chain.next_block(head).await?.0;
                }
            }
            let (now, ts) = chain.head().await?;
            let target = t0 + step.at_s;
            if target > ts + s.block_time_s {
                chain.increase_time(target - ts - s.block_time_s).await?;
            }
            // Send early in a fresh slot: after a block newer than the head
            // just read (an older `head` may be most of a slot old already,
            // leaving a pending attack no time to be seen).
            head = chain.next_block(now.max(head)).await?.0;
            last_at = Some(step.at_s);
        }
        if let Action::BaseFee {
            trace,
            from_block,
            blocks,
            stride,
        } = &step.action
        {
            let fees = base_fees(trace, *from_block, *blocks, *stride)?;
            let provider = chain.provider.clone();
            background.push(tokio::spawn(async move {
                let mut at = 0u64;
                for fee in fees {
                    let _: Result<serde_json::Value, _> = alloy::providers::Provider::raw_request(
                        &provider,
                        "anvil_setNextBlockBaseFeePerGas".into(),
                        (alloy::primitives::U256::from(fee),),
                    )
                    .await;
                    // Wait for the block that takes it.
                    let deadline = Instant::now() + Duration::from_secs(30);
                    loop {
                        let n = alloy::providers::Provider::get_block_number(&provider)
                            .await
                            .unwrap_or(at);
                        if n > at && at != 0 {
                            at = n;
                            break;
                        }
                        if at == 0 {
                            at = n;
                        }
                        if Instant::now() > deadline {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(25)).await;
                    }
                }
            }));
            continue;
        }
        let sent = d.perform(chain, step.kind, &step.action).await?;
        last_sent_block = chain.head().await?.0;
        txs.extend(sent.into_iter().map(|sent| Broadcast {
            at_ms: sent.unix_ms.saturating_sub(started_unix_ms),
            sent,
            step_origin: step.origin.clone(),
        }));
    }
    for task in background {
        let _ = task.await;
    }
    // Wait for every transaction to be mined.
    let deadline = Instant::now() + Duration::from_secs(60);
    let hashes: Vec<B256> = txs.iter().map(|t| t.sent.hash).collect();
    for h in hashes {
        while chain.receipt(h).await?.is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let (mut last, _) = chain.head().await?;
    for _ in 0..2 {
        last = chain.next_block(last).await?.0;
    }
    let (_, t_end) = chain.head().await?;
    Ok(Played {
        txs,
        chain_seconds: t_end.saturating_sub(t0),
        wall_ms: start.elapsed().as_millis() as u64,
        started_unix_ms,
    })
}
