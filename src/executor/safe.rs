//! Safe v1.4.1 transactions: the SafeTx struct, its EIP-712 hash, owner
//! signatures in the order the Safe checks them, and the `execTransaction` call.

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::sol_types::{Eip712Domain, SolStruct, eip712_domain};

use crate::keys::{Key, KeyError};

// The Safe's functions take more arguments than clippy likes; the bindings mirror them.
#[allow(clippy::too_many_arguments)]
mod bindings {
    use alloy::sol;

    sol! {
        /// The parts of the Safe v1.4.1 interface the executor uses.
        #[sol(rpc)]
        interface ISafe {
            function nonce() external view returns (uint256);
            function getThreshold() external view returns (uint256);
            function isOwner(address owner) external view returns (bool);
            function getTransactionHash(
                address to, uint256 value, bytes data, uint8 operation, uint256 safeTxGas,
                uint256 baseGas, uint256 gasPrice, address gasToken, address refundReceiver, uint256 _nonce
            ) external view returns (bytes32);
            function execTransaction(
                address to, uint256 value, bytes data, uint8 operation, uint256 safeTxGas,
                uint256 baseGas, uint256 gasPrice, address gasToken, address payable refundReceiver,
                bytes signatures
            ) external payable returns (bool success);
            event ExecutionSuccess(bytes32 indexed txHash, uint256 payment);
            event ExecutionFailure(bytes32 indexed txHash, uint256 payment);
        }

        /// The Safe's EIP-712 transaction struct (type hash 0xbb8310d4...).
        #[derive(Debug, PartialEq, Eq)]
        struct SafeTx {
            address to;
            uint256 value;
            bytes data;
            uint8 operation;
            uint256 safeTxGas;
            uint256 baseGas;
            uint256 gasPrice;
            address gasToken;
            address refundReceiver;
            uint256 nonce;
        }
    }
}
pub use bindings::{ISafe, SafeTx};

/// The Safe 1.4.1 domain: chain id and the Safe's address (no name, no version).
pub fn domain(chain_id: u64, safe: Address) -> Eip712Domain {
    eip712_domain! {
        chain_id: chain_id,
        verifying_contract: safe,
    }
}

impl SafeTx {
    /// A plain CALL of `data` on `to`, zero value, no refund: all a guardian ever asks a Safe for.
    pub fn call(to: Address, data: Bytes, nonce: U256) -> Self {
        Self {
            to,
            value: U256::ZERO,
            data,
            operation: 0,
            safeTxGas: U256::ZERO,
            baseGas: U256::ZERO,
            gasPrice: U256::ZERO,
            gasToken: Address::ZERO,
            refundReceiver: Address::ZERO,
            nonce,
        }
    }

    /// The hash owners sign (the Safe's `getTransactionHash`).
    pub fn hash(&self, chain_id: u64, safe: Address) -> B256 {
        self.eip712_signing_hash(&domain(chain_id, safe))
    }

    /// The `execTransaction` calldata carrying `signatures`.
    pub fn exec_calldata(&self, signatures: Bytes) -> Bytes {
        use alloy::sol_types::SolCall;
        ISafe::execTransactionCall {
            to: self.to,
            value: self.value,
            data: self.data.clone(),
            operation: self.operation,
            safeTxGas: self.safeTxGas,
            baseGas: self.baseGas,
            gasPrice: self.gasPrice,
            gasToken: self.gasToken,
            refundReceiver: self.refundReceiver,
            signatures,
        }
        .abi_encode()
        .into()
    }
}

/// Signs `hash` with every key and packs the signatures as the Safe checks
/// them: 65 bytes each (r, s, v with v = 27/28), in ascending owner address order.
pub async fn sign(keys: &[Key], hash: &B256) -> Result<Bytes, KeyError> {
    let mut sigs = Vec::with_capacity(keys.len());
    for key in keys {
        let sig = key.sign_hash(hash).await?;
        sigs.push((key.address(), sig.as_bytes()));
    }
    sigs.sort_by_key(|(owner, _)| *owner);
    sigs.dedup_by_key(|(owner, _)| *owner);
    Ok(sigs
        .into_iter()
        .flat_map(|(_, s)| s)
        .collect::<Vec<u8>>()
        .into())
}
