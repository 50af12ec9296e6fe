//! The batch file format of the Safe web app's Transaction Builder.
//!
//! The council imports the file in the app it already signs with (Apps >
//! Transaction Builder > drag and drop), reviews each call with its decoded
//! arguments, and creates one batch (a MultiSend) the owners sign.
//!
//! Format (safe-global/safe-react-apps, `apps/tx-builder/src/typings/models.ts`):
//! `{version: "1.0", chainId: string, createdAt: ms, meta: {name, description,
//! txBuilderVersion, createdFromSafeAddress, createdFromOwnerAddress, checksum},
//! transactions: [{to, value: string, data | null, contractMethod | null,
//! contractInputsValues | null}]}`. Every number is a string (the importer
//! refuses JSON numbers in `value` and the inputs). A transaction with `data`
//! is imported as raw calldata; one without is encoded by the app from
//! `contractMethod` and `contractInputsValues`, which is how the owners see the
//! function and its arguments instead of hex.
//!
//! The checksum (`lib/checksum.ts`): keccak256 of a canonical serialization
//! of the file without `meta.checksum` and with `meta.name` set to null:
//! objects as `{` + JSON array of their sorted keys + each value serialized
//! followed by `,` + `}`; arrays as `[` + elements joined by `,` + `]`; other
//! values as JSON. The app only warns when it does not match.

use alloy::dyn_abi::{DynSolType, JsonAbiExt};
use alloy::primitives::{Address, Bytes, keccak256};
use serde_json::{Map, Value, json};

use super::PlannedTx;

/// A Transaction Builder version whose format the files follow (the app
/// reads any; the field only records which one wrote a file).
pub const TX_BUILDER_VERSION: &str = "1.17.1";

/// A batch file for `txs`, executed by `safe` on `chain_id`, with its checksum.
pub fn batch_file(
    chain_id: u64,
    safe: Address,
    name: &str,
    description: &str,
    created_at_ms: u64,
    txs: &[PlannedTx],
) -> Value {
    let transactions: Vec<Value> = txs.iter().map(transaction).collect();
    let mut file = json!({
        "version": "1.0",
        "chainId": chain_id.to_string(),
        "createdAt": created_at_ms,
        "meta": {
            "name": name,
            "description": description,
            "txBuilderVersion": TX_BUILDER_VERSION,
            "createdFromSafeAddress": safe.to_checksum(None),
            "createdFromOwnerAddress": "",
        },
        "transactions": transactions,
    });
    let sum = checksum(&file);
    file["meta"]["checksum"] = Value::String(sum);
    file
}

fn transaction(tx: &PlannedTx) -> Value {
    match &tx.method {
        Some(m) => {
            let inputs: Vec<Value> = m
                .args
                .iter()
                .map(|a| json!({"internalType": a.ty, "name": a.name, "type": a.ty}))
                .collect();
            let values: Map<String, Value> = m
                .args
                .iter()
                .map(|a| (a.name.clone(), Value::String(a.value.clone())))
                .collect();
            json!({
                "to": tx.to.to_checksum(None),
                "value": "0",
                "data": null,
                "contractMethod": {"inputs": inputs, "name": m.name, "payable": false},
                "contractInputsValues": values,
            })
        }
        None => json!({
            "to": tx.to.to_checksum(None),
            "value": "0",
            "data": tx.data.to_string(),
            "contractMethod": null,
            "contractInputsValues": null,
        }),
    }
}

/// The Transaction Builder's checksum of `file` (its `meta.checksum` is ignored).
pub fn checksum(file: &Value) -> String {
    let mut copy = file.clone();
    if let Some(meta) = copy.get_mut("meta").and_then(Value::as_object_mut) {
        meta.remove("checksum");
        meta.insert("name".into(), Value::Null);
    }
    keccak256(serialize(&copy).as_bytes()).to_string()
}

/// The app's canonical serialization (`serializeJSONObject`).
fn serialize(v: &Value) -> String {
    match v {
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(serialize).collect();
            format!("[{}]", parts.join(","))
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = String::from("{");
            out.push_str(&serde_json::to_string(&keys).unwrap_or_default());
            for k in keys {
                out.push_str(&serialize(&map[k]));
                out.push(',');
            }
            out.push('}');
            out
        }
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

/// Why a batch file cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("transaction {index}: {message}")]
    Transaction { index: usize, message: String },
    #[error("the batch file is missing `{0}`")]
    Missing(&'static str),
}

/// One call of a batch file, as the Transaction Builder would send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchCall {
    pub to: Address,
    pub value: alloy::primitives::U256,
    pub data: Bytes,
}

/// Reads the calls of a batch file back the way the app does: raw `data` when
/// present, otherwise the ABI encoding of `contractMethod` with
/// `contractInputsValues`.
pub fn calls(file: &Value) -> Result<Vec<BatchCall>, BatchError> {
    let txs = file
        .get("transactions")
        .and_then(Value::as_array)
        .ok_or(BatchError::Missing("transactions"))?;
    txs.iter()
        .enumerate()
        .map(|(index, tx)| {
            let err = |message: String| BatchError::Transaction { index, message };
            let to = tx
                .get("to")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<Address>().ok())
                .ok_or_else(|| err("`to` is not an address".into()))?;
            let value = tx
                .get("value")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| err("`value` is not a decimal string".into()))?;
            if let Some(data) = tx.get("data").and_then(Value::as_str) {
                let data = data
                    .parse::<Bytes>()
                    .map_err(|e| err(format!("`data`: {e}")))?;
                return Ok(BatchCall { to, value, data });
            }
            let method = tx
                .get("contractMethod")
                .ok_or_else(|| err("neither `data` nor `contractMethod`".into()))?;
            let name = method
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| err("contractMethod has no name".into()))?;
            let inputs = method
                .get("inputs")
                .and_then(Value::as_array)
                .ok_or_else(|| err("contractMethod has no inputs".into()))?;
            let values = tx.get("contractInputsValues").and_then(Value::as_object);
            let mut types = Vec::new();
            let mut args = Vec::new();
            for input in inputs {
                let (Some(n), Some(ty)) = (
                    input.get("name").and_then(Value::as_str),
                    input.get("type").and_then(Value::as_str),
                ) else {
                    return Err(err("an input without name or type".into()));
                };
                let text = values
                    .and_then(|v| v.get(n))
                    .and_then(Value::as_str)
                    .ok_or_else(|| err(format!("no string value for input `{n}`")))?;
                let sol_ty = DynSolType::parse(ty).map_err(|e| err(format!("type `{ty}`: {e}")))?;
                args.push(
                    sol_ty
                        .coerce_str(text)
                        .map_err(|e| err(format!("`{n}` = `{text}`: {e}")))?,
                );
                types.push(format!("{ty} {n}"));
            }
            let function: alloy::json_abi::Function =
                format!("function {name}({})", types.join(", "))
                    .parse()
                    .map_err(|e| err(format!("{e}")))?;
            // Selector followed by the encoded arguments.
            let data = function
                .abi_encode_input(&args)
                .map_err(|e| err(format!("{e}")))?;
            Ok(BatchCall {
                to,
                value,
                data: data.into(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Transaction Builder's own test vector (`lib/checksum.test.js`):
    /// a file with `checksum: ''` checksums to 0x4ecbfd36...
    #[test]
    fn checksum_matches_the_transaction_builders_test_vector() {
        let file = json!({
          "version": "1.0",
          "chainId": "4",
          "createdAt": 1646321521061u64,
          "meta": {
            "name": "test batch file",
            "txBuilderVersion": "1.4.0",
            "checksum": "",
            "createdFromSafeAddress": "0xDF8a1Ce35c9a6ACE153B4e0767942f1E2291a1Aa",
            "createdFromOwnerAddress": "0x49d4450977E2c95362C13D3a31a09311E0Ea26A6",
          },
          "transactions": [
            {
              "to": "0x49d4450977E2c95362C13D3a31a09311E0Ea26A6",
              "value": "0",
              "contractMethod": {
                "inputs": [{"internalType": "address", "name": "paramAddress", "type": "address"}],
                "name": "testAddress",
                "payable": false,
              },
              "contractInputsValues": {"paramAddress": "0x49d4450977E2c95362C13D3a31a09311E0Ea26A6"},
            },
            {
              "to": "0x49d4450977E2c95362C13D3a31a09311E0Ea26A6",
              "value": "0",
              "contractMethod": {
                "inputs": [{"internalType": "bool", "name": "paramBool", "type": "bool"}],
                "name": "testBool",
                "payable": false,
              },
              "contractInputsValues": {"paramAddress": "", "paramBool": "false"},
            },
            {
              "to": "0x49d4450977E2c95362C13D3a31a09311E0Ea26A6",
              "value": "2000000000000000000",
              "data": "0x42f4579000000000000000000000000049d4450977e2c95362c13d3a31a09311e0ea26a6",
            },
          ],
        });
        // The app's addChecksum hashes the file as given (checksum '' included);
        // its validateChecksum removes the field first. Reproduce the former.
        let mut copy = file.clone();
        copy["meta"]["name"] = Value::Null;
        assert_eq!(
            keccak256(serialize(&copy).as_bytes()).to_string(),
            "0x4ecbfd364aa6759983915644e73f8bd411e85a2dc306f252a387c2728c4db64c"
        );
        // Key order does not matter.
        let reordered: Value = serde_json::from_str(&{
            let mut m = serde_json::Map::new();
            for k in ["transactions", "meta", "createdAt", "chainId", "version"] {
                m.insert(k.into(), copy[k].clone());
            }
            Value::Object(m).to_string()
        })
        .unwrap();
        assert_eq!(serialize(&reordered), serialize(&copy));
    }

    #[test]
    fn a_batch_file_validates_its_own_checksum_and_decodes_back() {
        let module: Address = "0x00000000000000000000000000000000000000aa"
            .parse()
            .unwrap();
        let tx = PlannedTx::module_call(
            module,
            "add".into(),
            crate::executor::GuardianModule::addGuardianCall {
                guardian: "0x00000000000000000000000000000000000000bb"
                    .parse()
                    .unwrap(),
            },
        );
        let raw = PlannedTx {
            to: super::super::CREATE2_DEPLOYER,
            data: Bytes::from(vec![1, 2, 3]),
            summary: "raw".into(),
            method: None,
        };
        let file = batch_file(1, module, "n", "d", 1, &[tx.clone(), raw.clone()]);
        assert_eq!(
            file["meta"]["checksum"].as_str().unwrap(),
            checksum(&file),
            "validateChecksum: recomputed without the field"
        );
        // Renaming the batch keeps the checksum (the app nulls the name).
        let mut renamed = file.clone();
        renamed["meta"]["name"] = json!("another name");
        assert_eq!(checksum(&renamed), checksum(&file));
        let back = calls(&file).unwrap();
        assert_eq!(back[0].data, tx.data);
        assert_eq!(back[0].to, module);
        assert_eq!(back[1].data, raw.data);
    }
}
