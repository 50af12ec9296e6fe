//! `propose`: sign a SafeTx and hand it to human co-signers.
//!
//! The proposal is written to the outbox as JSON in the Safe Transaction
//! Service's proposal shape (`POST /api/v1/safes/{safe}/multisig-transactions/`),
//! and POSTed there when a service URL is configured. Nothing is executed.

use std::path::{Path, PathBuf};

use alloy::primitives::{Address, B256};
use alloy::transports::http::reqwest;
use serde_json::json;

use super::safe::SafeTx;
use super::{ExecError, Execution};
use crate::keys::Key;

/// The proposal body the Safe Transaction Service takes.
pub fn body(
    tx: &SafeTx,
    safe_tx_hash: B256,
    sender: Address,
    signature: &[u8],
) -> serde_json::Value {
    json!({
        "to": tx.to.to_checksum(None),
        "value": tx.value.to_string(),
        "data": format!("0x{}", alloy::hex::encode(&tx.data)),
        "operation": tx.operation,
        "safeTxGas": tx.safeTxGas.to_string(),
        "baseGas": tx.baseGas.to_string(),
        "gasPrice": tx.gasPrice.to_string(),
        "gasToken": tx.gasToken.to_checksum(None),
        "refundReceiver": tx.refundReceiver.to_checksum(None),
        "nonce": tx.nonce.to_string(),
        "contractTransactionHash": safe_tx_hash.to_string(),
        "sender": sender.to_checksum(None),
        "signature": format!("0x{}", alloy::hex::encode(signature)),
        "origin": "guardian",
    })
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn propose(
    http: &reqwest::Client,
    chain_id: u64,
    safe: Address,
    tx: &SafeTx,
    owners: &[Key],
    outbox: &Path,
    service_url: Option<&str>,
    decision_id: u64,
    dry_run: bool,
) -> Result<Execution, ExecError> {
    let hash = tx.hash(chain_id, safe);
    let signature = super::safe::sign(owners, &hash).await?;
    let sender = owners
        .iter()
        .map(Key::address)
        .min()
        .ok_or_else(|| ExecError::Propose("no owner key".into()))?;
    let body = body(tx, hash, sender, &signature);
    std::fs::create_dir_all(outbox).map_err(|e| {
        ExecError::Propose(format!(
            "cannot create the outbox {}: {}",
            outbox.display(),
            e.kind()
        ))
    })?;
    let file: PathBuf = outbox.join(format!("{hash}.json"));
    let tmp = outbox.join(format!(".{hash}.json.tmp"));
    let text = serde_json::to_vec_pretty(&body)
        .map_err(|e| ExecError::Propose(format!("cannot encode the proposal: {e}")))?;
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &file))
        .map_err(|e| {
            ExecError::Propose(format!("cannot write {}: {}", file.display(), e.kind()))
        })?;
    tracing::info!(target: "guardian::executor", decision_id, safe_tx_hash = %hash, file = %file.display(), "proposal written to the outbox");
    let mut posted = false;
    if let Some(base) = service_url
        && !dry_run
    {
        let url = format!(
            "{}/api/v1/safes/{}/multisig-transactions/",
            base.trim_end_matches('/'),
            safe.to_checksum(None)
        );
        let resp = http
            .post(url)
            .json(&body)
            .send()
            .await
            // The URL may carry an API key: the error is reduced to its kind.
            .map_err(|e| {
                ExecError::Propose(format!(
                    "cannot reach the transaction service (connect: {}, timeout: {})",
                    e.is_connect(),
                    e.is_timeout()
                ))
            })?;
        if !resp.status().is_success() {
            return Err(ExecError::Propose(format!(
                "the transaction service answered {}; the proposal is in {}",
                resp.status(),
                file.display()
            )));
        }
        posted = true;
        tracing::info!(target: "guardian::executor", decision_id, safe_tx_hash = %hash, "proposal posted to the transaction service");
    }
    Ok(Execution::Proposed {
        safe_tx_hash: hash,
        outbox_file: file,
        posted,
    })
}
