//! After landing: the effect is watched until final.
//!
//! A landed action's transaction is looked for again on every new block until
//! `confirmations` blocks are built on it. If a reorg removed it and the effect
//! is gone, the same signed bytes are broadcast again to every endpoint; if
//! another transaction took the nonce meanwhile, the call is signed again at
//! the next nonce (written to the journal first). The watch ends when final,
//! at shutdown, when the executors are dropped, or after [`WATCH_LIMIT`].

use std::sync::Weak;
use std::time::{Duration, Instant};

use alloy::consensus::TxEnvelope;
use alloy::eips::eip2718::Decodable2718;

use super::{
    DeliveryEvent, ExecError, Executor, Executors, Inner, Sent, SignedTx, delivery,
    delivery::SendRefusal,
};
use crate::guard::Effect;

/// The longest a landed action is watched (a chain that stops producing blocks ends it).
pub const WATCH_LIMIT: Duration = Duration::from_secs(30 * 60);

impl Executors {
    /// Starts watching a landed transaction until it is final (see the module docs).
    pub(super) fn watch_finality(&self, ex: &Executor, effect: &Effect, tx: SignedTx, block: u64) {
        let confirmations = ex.def.delivery.confirmations;
        if confirmations == 0 {
            return;
        }
        let weak = std::sync::Arc::downgrade(&self.inner);
        let (executor, effect) = (ex.def.name.clone(), effect.clone());
        tokio::spawn(watch(weak, executor, effect, tx, block, confirmations));
    }

    /// One look: `Some(true)` final, `Some(false)` given up, `None` keep watching.
    async fn finality_step(
        &self,
        ex: &Executor,
        effect: &Effect,
        tx: &mut SignedTx,
        block: &mut u64,
        confirmations: u64,
    ) -> Result<Option<bool>, ExecError> {
        let head = self.latest_block().await?;
        if let Some(r) = self.find_receipt(&[tx.hash]).await? {
            *block = r.block_number.unwrap_or(*block);
            if head >= *block + confirmations {
                // Undone since by someone else (governance unpausing): not re-done here;
                // a new trip decides that.
                if let Err(detail) = self.verify(effect, head).await {
                    tracing::warn!(target: "guardian::executor", decision_id = tx.decision_id, tx = %tx.hash, "the transaction is final, but its effect was undone since: {detail}");
                }
                tracing::info!(target: "guardian::executor", decision_id = tx.decision_id, tx = %tx.hash, block = *block, head, "final: the effect held for {confirmations} blocks");
                self.emit(DeliveryEvent::Final {
                    decision_id: tx.decision_id,
                    tx: tx.hash,
                    block: *block,
                });
                return Ok(Some(true));
            }
            return Ok(None);
        }
        // No receipt any more: a reorg removed the block.
        if self.verify(effect, head).await.is_ok() {
            tracing::warn!(target: "guardian::executor", decision_id = tx.decision_id, tx = %tx.hash, "a reorg removed the transaction, but the effect is on chain (another transaction): nothing to send");
            return Ok(Some(true));
        }
        tracing::error!(target: "guardian::executor", decision_id = tx.decision_id, tx = %tx.hash, "a reorg removed the landed transaction and its effect: sending it again");
        self.emit(DeliveryEvent::Reorged {
            decision_id: tx.decision_id,
            tx: tx.hash,
        });
        if let Sent::Refused(SendRefusal::NonceTooLow, _) =
            self.send(ex, tx.decision_id, tx.hash, &tx.raw).await
        {
            *tx = self.resign_at_next_nonce(ex, tx).await?;
        }
        Ok(None)
    }

    /// `prev`'s call signed again at the sender's next nonce, with fresh fees,
    /// written down, then broadcast.
    async fn resign_at_next_nonce(
        &self,
        ex: &Executor,
        prev: &SignedTx,
    ) -> Result<SignedTx, ExecError> {
        use alloy::consensus::Transaction;
        let envelope =
            TxEnvelope::decode_2718(&mut prev.raw.as_ref()).map_err(|e| ExecError::Rpc {
                what: "decoding a sent transaction",
                reason: e.to_string(),
            })?;
        let to = envelope.to().ok_or(ExecError::Rpc {
            what: "decoding a sent transaction",
            reason: "it creates a contract".into(),
        })?;
        let nonce = self.next_nonce(prev.sender).await?;
        let (base, _) = self.base_fee().await?;
        let fees = delivery::initial(base, &ex.def.delivery, None);
        let next = self.resign(ex, prev, to, &envelope, fees, nonce).await?;
        if let Some(log) = self.inner.tx_log.get() {
            log.signed(&next).map_err(ExecError::Journal)?;
        }
        if let Sent::Refused(_, why) = self.send(ex, next.decision_id, next.hash, &next.raw).await {
            tracing::warn!(target: "guardian::executor", decision_id = next.decision_id, answers = %why, "sending again at the next nonce was refused; the next block tries again");
        }
        Ok(next)
    }
}

async fn watch(
    weak: Weak<Inner>,
    executor: String,
    effect: Effect,
    mut tx: SignedTx,
    mut block: u64,
    confirmations: u64,
) {
    let until = Instant::now() + WATCH_LIMIT;
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let this = Executors { inner };
        if this.inner.shutdown.is_cancelled() || Instant::now() >= until {
            return;
        }
        let poll = this.inner.poll.max(Duration::from_millis(100));
        let Ok(ex) = this.executor(&executor) else {
            return;
        };
        match this
            .finality_step(ex, &effect, &mut tx, &mut block, confirmations)
            .await
        {
            Ok(Some(_)) => return,
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(target: "guardian::executor", decision_id = tx.decision_id, error = %e, "watching the landed transaction: retrying")
            }
        }
        drop(this);
        tokio::time::sleep(poll).await;
    }
}
