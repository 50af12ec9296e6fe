//! Typed metric sources: how the live watcher reads each metric from a chain.
//!
//! A metric's `source` table is parsed here, once, at load: addresses,
//! function and event signatures, call arguments, topic filters and decimals
//! are all checked and every problem is reported with its location. The
//! watcher (`source::chain`) only ever sees these typed definitions.
//!
//! ```toml
//! source = { kind = "call", to = "0x…", signature = "balanceOf(address)(uint256)", args = ["0x…"], decimals = 18 }
//! source = { kind = "native_balance", address = "0x…" }
//! source = { kind = "erc20_balance", token = "0x…", holder = "0x…", decimals = 6 }
//! source = { kind = "event_count", address = "0x…", event = "Transfer(address indexed from, address indexed to, uint256 value)", topics = { from = "0x…" } }
//! source = { kind = "event_sum", address = "0x…", event = "…", field = "value", decimals = 18 }
//! source = { kind = "block", stat = "base_fee_gwei" }   # gas_used_ratio, tx_count, priority_fee_p50 (any pNN)
//! source = { kind = "oracle_answer", feed = "0x…", decimals = 8 }
//! source = { kind = "oracle_age", feed = "0x…" }        # seconds since the round's updatedAt
//! source = { kind = "head_age" }                       # seconds since the latest block (staleness)
//! source = { kind = "ratio", numerator = "market.borrows", denominator = "market.supply" }
//! source = { kind = "pending", effect = { kind = "erc20_balance", token = "0x…", holder = "0x…", decimals = 18 } }  # optional narrowing: to, selector, min_value, …
//! ```

use std::ops::Range;

use alloy::dyn_abi::{DynSolType, DynSolValue, JsonAbiExt, Specifier};
use alloy::json_abi::{Event, Function};
use alloy::primitives::{Address, B256, Bytes, FixedBytes, U256};
use toml::de::DeValue;

use super::reader::{self, Reporter, TableReader, Value, as_array, as_bool, as_choice, as_u64};

/// Metric source kinds the watcher knows.
pub const SOURCE_KINDS: [&str; 11] = [
    "call",
    "native_balance",
    "erc20_balance",
    "event_count",
    "event_sum",
    "block",
    "oracle_answer",
    "oracle_age",
    "ratio",
    "head_age",
    "pending",
];

/// The largest number of decimals a token amount may be scaled by.
pub const MAX_DECIMALS: u8 = 77;

/// How a metric is read from a chain.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceSpec {
    /// A view call; the selected output, scaled by `decimals`.
    Call(CallRead),
    /// The native balance of an address (18 decimals unless told).
    NativeBalance(BalanceRead),
    /// An ERC20 `balanceOf(holder)`.
    Erc20Balance(BalanceRead),
    /// How many matching logs the block holds.
    EventCount(EventFilter),
    /// The sum of one decoded field over the block's matching logs.
    EventSum {
        filter: EventFilter,
        /// Index of the field among the event's inputs.
        field: usize,
        decimals: u8,
    },
    /// A statistic of the block itself.
    Block(BlockStat),
    /// A Chainlink-style feed's `latestRoundData().answer`, scaled by `decimals`.
    OracleAnswer { feed: Address, decimals: u8 },
    /// Seconds between the block's timestamp and the feed's `updatedAt`.
    OracleAge { feed: Address },
    /// One metric of the same snapshot divided by another (e.g. utilization).
    Ratio {
        numerator: String,
        denominator: String,
    },
    /// Seconds between now (the watcher's clock) and the latest block's
    /// timestamp: read with every block, and repeated by the watchdog while no
    /// new head arrives, so a stalled node or subscription shows as a growing value.
    HeadAge,
    /// The estimated effect of matching pending transactions.
    Pending(PendingSpec),
}

impl SourceSpec {
    /// Whether the metric is read once per block (everything but `pending`).
    pub fn is_per_block(&self) -> bool {
        !matches!(self, SourceSpec::Pending(_))
    }
}

/// A contract view call.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRead {
    pub to: Address,
    pub function: Function,
    /// Selector and encoded arguments.
    pub calldata: Bytes,
    /// Which return value is the metric.
    pub output: usize,
    pub decimals: u8,
}

/// A balance: `token = None` is the native currency.
#[derive(Debug, Clone, PartialEq)]
pub struct BalanceRead {
    pub token: Option<Address>,
    pub holder: Address,
    pub decimals: u8,
}

/// Which logs of a block count.
#[derive(Debug, Clone, PartialEq)]
pub struct EventFilter {
    pub address: Address,
    pub event: Event,
    /// topic0 is the event's selector; topics 1..=3 are the indexed-field filters.
    pub topics: [Option<B256>; 4],
}

/// A statistic of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockStat {
    /// gas used / gas limit.
    GasUsedRatio,
    /// The base fee in gwei.
    BaseFeeGwei,
    /// Number of transactions.
    TxCount,
    /// The given percentile (0..=100) of the transactions' effective priority fees, in gwei.
    PriorityFeePercentile(u8),
}

/// A pending-transaction watch: which balance pending transactions drain; the
/// filters (all optional) narrow which transactions count.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingSpec {
    pub to: Option<Address>,
    pub selector: Option<FixedBytes<4>>,
    /// Minimum value in wei.
    pub min_value: Option<U256>,
    /// Only transactions whose priority fee is at or above this percentile of the last block's.
    pub min_priority_fee_percentile: Option<u8>,
    /// Only senders the watcher has not seen before.
    pub new_sender: bool,
    /// The balance whose decrease (before − after the tx) is the metric's value.
    pub effect: BalanceRead,
}

fn address(
    t: &mut TableReader<'_, '_>,
    key: &'static str,
    r: &mut Reporter<'_>,
) -> Option<Address> {
    let (text, span) = t.required_string(key, r)?;
    parse_address(text, &span, &format!("{}.{key}", t.context), r)
}

fn parse_address(
    text: &str,
    span: &Range<usize>,
    what: &str,
    r: &mut Reporter<'_>,
) -> Option<Address> {
    match text.parse::<Address>() {
        Ok(a) => Some(a),
        Err(_) => {
            r.error(
                span,
                format!("{what}: `{text}` is not an address"),
                Some("write a 0x-prefixed 20-byte hex address".into()),
            );
            None
        }
    }
}

fn decimals(t: &mut TableReader<'_, '_>, default: Option<u8>, r: &mut Reporter<'_>) -> Option<u8> {
    let what = format!("{}.decimals", t.context);
    let value = match default {
        Some(d) => match t.get("decimals") {
            Some(v) => v,
            None => return Some(d),
        },
        None => t.require("decimals", r)?,
    };
    let n = as_u64(value, &what, r)?;
    if n > u64::from(MAX_DECIMALS) {
        r.error(
            &value.span(),
            format!("{what} must be at most {MAX_DECIMALS}"),
            None,
        );
        return None;
    }
    Some(n as u8)
}

/// A TOML scalar as the text alloy's coercion reads (`"0x…"`, `12`, `true`).
fn scalar_text(value: &Value<'_>) -> Option<String> {
    match value.get_ref() {
        DeValue::String(s) => Some(s.to_string()),
        DeValue::Integer(i) => Some(
            i64::from_str_radix(i.as_str(), i.radix())
                .map(|v| v.to_string())
                .unwrap_or_else(|_| i.as_str().replace('_', "")),
        ),
        DeValue::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn coerce(
    ty: &DynSolType,
    value: &Value<'_>,
    what: &str,
    r: &mut Reporter<'_>,
) -> Option<DynSolValue> {
    let Some(text) = scalar_text(value) else {
        r.error(
            &value.span(),
            format!("{what} must be a string, a whole number or a boolean"),
            None,
        );
        return None;
    };
    match ty.coerce_str(&text) {
        Ok(v) => Some(v),
        Err(e) => {
            r.error(
                &value.span(),
                format!("{what}: `{text}` is not a valid {ty}: {e}"),
                None,
            );
            None
        }
    }
}

fn numeric_type(ty: &DynSolType) -> bool {
    matches!(
        ty,
        DynSolType::Uint(_) | DynSolType::Int(_) | DynSolType::Bool
    )
}

/// Parses `source = { … }` of metric `name`.
pub fn parse_source(name: &str, value: &Value<'_>, r: &mut Reporter<'_>) -> Option<SourceSpec> {
    let ctx = format!("metric `{name}`.source");
    let mut t = TableReader::from_value(value, ctx.clone(), r)?;
    let (kind, kind_span) = t.required_string("kind", r)?;
    let spec = match kind {
        "call" => parse_call(&mut t, r).map(SourceSpec::Call),
        "native_balance" => {
            let holder = address(&mut t, "address", r);
            let decimals = decimals(&mut t, Some(18), r);
            Some(SourceSpec::NativeBalance(BalanceRead {
                token: None,
                holder: holder?,
                decimals: decimals?,
            }))
        }
        "erc20_balance" => parse_erc20(&mut t, r).map(SourceSpec::Erc20Balance),
        "event_count" => parse_event(&mut t, false, r).map(|(f, _, _)| SourceSpec::EventCount(f)),
        "event_sum" => {
            parse_event(&mut t, true, r).map(|(filter, field, decimals)| SourceSpec::EventSum {
                filter,
                field,
                decimals,
            })
        }
        "block" => {
            let stat = t.required_string("stat", r).and_then(|(s, span)| {
                let stat = match s {
                    "gas_used_ratio" => Some(BlockStat::GasUsedRatio),
                    "base_fee_gwei" => Some(BlockStat::BaseFeeGwei),
                    "tx_count" => Some(BlockStat::TxCount),
                    _ => s
                        .strip_prefix("priority_fee_p")
                        .and_then(|p| p.parse::<u8>().ok())
                        .filter(|p| *p <= 100)
                        .map(BlockStat::PriorityFeePercentile),
                };
                if stat.is_none() {
                    r.error(
                        &span,
                        format!("{ctx}.stat: `{s}` is not a block statistic"),
                        Some("one of: gas_used_ratio, base_fee_gwei, tx_count, priority_fee_pNN (NN from 0 to 100)".into()),
                    );
                }
                stat
            });
            stat.map(SourceSpec::Block)
        }
        "oracle_answer" => {
            let feed = address(&mut t, "feed", r);
            let decimals = decimals(&mut t, None, r);
            Some(SourceSpec::OracleAnswer {
                feed: feed?,
                decimals: decimals?,
            })
        }
        "oracle_age" => address(&mut t, "feed", r).map(|feed| SourceSpec::OracleAge { feed }),
        "ratio" => {
            let numerator = t
                .required_string("numerator", r)
                .map(|(s, _)| s.to_string());
            let denominator = t
                .required_string("denominator", r)
                .map(|(s, _)| s.to_string());
            Some(SourceSpec::Ratio {
                numerator: numerator?,
                denominator: denominator?,
            })
        }
        "head_age" => Some(SourceSpec::HeadAge),
        "pending" => parse_pending(&mut t, r).map(SourceSpec::Pending),
        other => {
            let hint = reader::one_of_hint(other, &SOURCE_KINDS);
            r.error(
                &kind_span,
                format!("`{other}` is not a metric source kind"),
                Some(hint),
            );
            // The fields of an unknown kind are not checked: the kind is the problem.
            return None;
        }
    };
    t.finish(r);
    spec
}

fn parse_call(t: &mut TableReader<'_, '_>, r: &mut Reporter<'_>) -> Option<CallRead> {
    let ctx = t.context.clone();
    let to = address(t, "to", r);
    let function =
        t.required_string("signature", r)
            .and_then(|(s, span)| match Function::parse(s) {
                Ok(f) if !f.outputs.is_empty() => Some(f),
                Ok(_) => {
                    r.error(
                        &span,
                        format!("{ctx}.signature: `{s}` declares no return values"),
                        Some("write the outputs after the inputs: `totalAssets()(uint256)`".into()),
                    );
                    None
                }
                Err(_) => {
                    r.error(
                        &span,
                        format!("{ctx}.signature: `{s}` is not a function signature"),
                        Some(
                            "write it as `totalAssets()(uint256)` or `balanceOf(address)(uint256)`"
                                .into(),
                        ),
                    );
                    None
                }
            });
    let args_value = t.get("args");
    let output = match t.get("output") {
        Some(v) => as_u64(v, &format!("{ctx}.output"), r).map(|n| (n as usize, v.span())),
        None => Some((0, t.span.clone())),
    };
    let decimals = decimals(t, Some(0), r);
    let function = function?;
    let mut args = Vec::new();
    let given: &[Value<'_>] = match args_value {
        Some(v) => as_array(v, &format!("{ctx}.args"), r)?,
        None => &[],
    };
    if given.len() != function.inputs.len() {
        r.error(
            &args_value
                .map(|v| v.span())
                .unwrap_or_else(|| t.span.clone()),
            format!(
                "{ctx}: `{}` takes {} argument(s), `args` gives {}",
                function.signature(),
                function.inputs.len(),
                given.len()
            ),
            None,
        );
        return None;
    }
    let mut ok = true;
    for (i, (param, value)) in function.inputs.iter().zip(given).enumerate() {
        let what = format!("{ctx}.args[{i}]");
        match param.resolve() {
            Ok(ty) => match coerce(&ty, value, &what, r) {
                Some(v) => args.push(v),
                None => ok = false,
            },
            Err(e) => {
                r.error(&value.span(), format!("{what}: {e}"), None);
                ok = false;
            }
        }
    }
    let (output, output_span) = output?;
    match function.outputs.get(output).map(|p| p.resolve()) {
        Some(Ok(ty)) if numeric_type(&ty) => {}
        Some(_) => {
            r.error(
                &output_span,
                format!(
                    "{ctx}: output {output} of `{}` is not a number (uint, int or bool)",
                    function.full_signature()
                ),
                None,
            );
            ok = false;
        }
        None => {
            r.error(
                &output_span,
                format!(
                    "{ctx}: `{}` has {} output(s), there is no output {output}",
                    function.full_signature(),
                    function.outputs.len()
                ),
                None,
            );
            ok = false;
        }
    }
    if !ok {
        return None;
    }
    let calldata = match function.abi_encode_input(&args) {
        Ok(data) => Bytes::from(data),
        Err(e) => {
            r.error(&t.span, format!("{ctx}: cannot encode the call: {e}"), None);
            return None;
        }
    };
    Some(CallRead {
        to: to?,
        function,
        calldata,
        output,
        decimals: decimals?,
    })
}

fn parse_erc20(t: &mut TableReader<'_, '_>, r: &mut Reporter<'_>) -> Option<BalanceRead> {
    let token = address(t, "token", r);
    let holder = address(t, "holder", r);
    let decimals = decimals(t, None, r);
    Some(BalanceRead {
        token: Some(token?),
        holder: holder?,
        decimals: decimals?,
    })
}

fn parse_event(
    t: &mut TableReader<'_, '_>,
    sum: bool,
    r: &mut Reporter<'_>,
) -> Option<(EventFilter, usize, u8)> {
    let ctx = t.context.clone();
    let addr = address(t, "address", r);
    let event = t.required_string("event", r).and_then(|(s, span)| match Event::parse(s) {
        Ok(e) if !e.anonymous => Some(e),
        _ => {
            r.error(
                &span,
                format!("{ctx}.event: `{s}` is not a (non-anonymous) event signature"),
                Some("write it with names and `indexed`: `Transfer(address indexed from, address indexed to, uint256 value)`".into()),
            );
            None
        }
    });
    let topics_value = t.get("topics");
    let field = if sum {
        t.required_string("field", r)
    } else {
        None
    };
    let decimals = if sum { decimals(t, None, r) } else { Some(0) };
    let event = event?;
    let mut topics = [Some(event.selector()), None, None, None];
    let mut ok = true;
    if let Some(v) = topics_value
        && let Some(filters) = TableReader::from_value(v, format!("{ctx}.topics"), r)
    {
        for (key, key_span, value) in filters.entries() {
            let indexed: Vec<_> = event.inputs.iter().filter(|p| p.indexed).collect();
            let Some(pos) = indexed.iter().position(|p| p.name == key) else {
                let names: Vec<&str> = indexed.iter().map(|p| p.name.as_str()).collect();
                r.error(
                    &key_span,
                    format!(
                        "{ctx}.topics: `{key}` is not an indexed field of `{}`",
                        event.signature()
                    ),
                    Some(format!(
                        "indexed fields: {}",
                        if names.is_empty() {
                            "none".to_string()
                        } else {
                            names.join(", ")
                        }
                    )),
                );
                ok = false;
                continue;
            };
            let what = format!("{ctx}.topics.{key}");
            let ty = match indexed[pos].resolve() {
                Ok(ty)
                    if ty.is_dynamic()
                        || matches!(ty, DynSolType::Tuple(_) | DynSolType::FixedArray(..)) =>
                {
                    r.error(
                        &value.span(),
                        format!("{what}: filtering on a `{ty}` topic (a hash of the value) is not supported"),
                        Some("filter on a field of a value type (address, uintN, bytesN, bool)".into()),
                    );
                    ok = false;
                    continue;
                }
                Ok(ty) => ty,
                Err(e) => {
                    r.error(&value.span(), format!("{what}: {e}"), None);
                    ok = false;
                    continue;
                }
            };
            match coerce(&ty, value, &what, r) {
                Some(v) => topics[pos + 1] = Some(B256::from_slice(&v.abi_encode())),
                None => ok = false,
            }
        }
    }
    let mut field_index = 0;
    if let Some((name, span)) = field {
        match event.inputs.iter().position(|p| p.name == name) {
            Some(i) => match event.inputs[i].resolve() {
                Ok(ty) if numeric_type(&ty) => field_index = i,
                _ => {
                    r.error(
                        &span,
                        format!("{ctx}.field: `{name}` is not a number (uint, int or bool)"),
                        None,
                    );
                    ok = false;
                }
            },
            None => {
                let names: Vec<&str> = event.inputs.iter().map(|p| p.name.as_str()).collect();
                r.error(
                    &span,
                    format!(
                        "{ctx}.field: `{name}` is not a field of `{}`",
                        event.signature()
                    ),
                    Some(format!("fields: {}", names.join(", "))),
                );
                ok = false;
            }
        }
    } else if sum {
        ok = false;
    }
    if !ok {
        return None;
    }
    Some((
        EventFilter {
            address: addr?,
            event,
            topics,
        },
        field_index,
        decimals?,
    ))
}

fn percentile(value: &Value<'_>, what: &str, r: &mut Reporter<'_>) -> Option<u8> {
    let n = as_u64(value, what, r)?;
    if n > 100 {
        r.error(
            &value.span(),
            format!("{what} must be between 0 and 100"),
            None,
        );
        return None;
    }
    Some(n as u8)
}

fn parse_pending(t: &mut TableReader<'_, '_>, r: &mut Reporter<'_>) -> Option<PendingSpec> {
    let ctx = t.context.clone();
    let mut ok = true;
    let to = match t.string("to", r) {
        Some((s, span)) => {
            let a = parse_address(s, &span, &format!("{ctx}.to"), r);
            ok &= a.is_some();
            a
        }
        None => None,
    };
    let selector = match t.string("selector", r) {
        Some((s, span)) => {
            let sel = if let Some(hex) = s.strip_prefix("0x") {
                alloy::primitives::hex::decode(hex)
                    .ok()
                    .filter(|b| b.len() == 4)
                    .map(|b| FixedBytes::<4>::from_slice(&b))
            } else {
                Function::parse(s).ok().map(|f| f.selector())
            };
            if sel.is_none() {
                r.error(
                    &span,
                    format!("{ctx}.selector: `{s}` is neither a function signature nor a 4-byte hex selector"),
                    Some("write `attack()` or `0x9e5faafc`".into()),
                );
                ok = false;
            }
            sel
        }
        None => None,
    };
    let min_value = match t.get("min_value") {
        Some(v) => {
            let parsed = scalar_text(v).and_then(|s| s.parse::<U256>().ok());
            if parsed.is_none() {
                r.error(
                    &v.span(),
                    format!("{ctx}.min_value must be a whole number of wei (a number or a decimal string)"),
                    None,
                );
                ok = false;
            }
            parsed
        }
        None => None,
    };
    let min_priority_fee_percentile = match t.get("min_priority_fee_percentile") {
        Some(v) => {
            let p = percentile(v, &format!("{ctx}.min_priority_fee_percentile"), r);
            ok &= p.is_some();
            p
        }
        None => None,
    };
    let new_sender = match t.get("new_sender") {
        Some(v) => as_bool(v, &format!("{ctx}.new_sender"), r).unwrap_or_else(|| {
            ok = false;
            false
        }),
        None => false,
    };
    let effect = t.require("effect", r).and_then(|v| {
        let mut e = TableReader::from_value(v, format!("{ctx}.effect"), r)?;
        let kind = e.require("kind", r).and_then(|k| {
            as_choice(
                k,
                "effect kind",
                &[("erc20_balance", true), ("native_balance", false)],
                r,
            )
        });
        let read = match kind? {
            true => parse_erc20(&mut e, r),
            false => {
                let holder = address(&mut e, "address", r);
                let decimals = decimals(&mut e, Some(18), r);
                Some(BalanceRead {
                    token: None,
                    holder: holder?,
                    decimals: decimals?,
                })
            }
        };
        e.finish(r);
        read
    });
    // No filter: every pending transaction is screened (see `source::chain::screen`).
    if !ok {
        return None;
    }
    Some(PendingSpec {
        to,
        selector,
        min_value,
        min_priority_fee_percentile,
        new_sender,
        effect: effect?,
    })
}

/// Cross-metric checks once every metric is known: ratios name per-block metrics of the same network.
pub fn check_ratio(
    name: &str,
    network: Option<&str>,
    spec: &SourceSpec,
    span: &Range<usize>,
    lookup: impl Fn(&str) -> Option<(Option<String>, Option<SourceSpec>)>,
    r: &mut Reporter<'_>,
) {
    let SourceSpec::Ratio {
        numerator,
        denominator,
    } = spec
    else {
        return;
    };
    for part in [numerator, denominator] {
        match lookup(part) {
            Some((net, Some(s))) if s.is_per_block() && !matches!(s, SourceSpec::Ratio { .. }) => {
                if net.as_deref() != network {
                    r.error(span, format!("metric `{name}`: the ratio's `{part}` is read on another network"), None);
                }
            }
            Some(_) => r.error(
                span,
                format!("metric `{name}`: the ratio's `{part}` must be a per-block chain metric (not a ratio, a pending or a trace-only metric)"),
                None,
            ),
            None => r.error(
                span,
                format!("metric `{name}`: the ratio's `{part}` is not defined under [metrics]"),
                None,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::reader::{Diagnostics, SourceFile};
    use alloy::primitives::{address, b256};

    const VAULT: &str = "0x5FbDB2315678afecb367f032d93F642f64180aa3";

    /// Parses `source = <text>` and returns the spec or every diagnostic.
    fn parse(text: &str) -> Result<SourceSpec, Diagnostics> {
        let file = SourceFile::new("guardian.toml", format!("source = {text}\n"));
        let mut r = Reporter::new(&file);
        let doc = r.parse().expect("test TOML parses");
        let mut top = TableReader::new(doc.get_ref(), doc.span(), "test");
        let value = top.get("source").expect("test has a source");
        let spec = parse_source("m", value, &mut r);
        r.found.into_result(())?;
        Ok(spec.expect("no diagnostics means a spec"))
    }

    fn errors(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn a_call_with_arguments_encodes_its_calldata() {
        let spec = parse(&format!(
            r#"{{ kind = "call", to = "{VAULT}", signature = "balanceOf(address)(uint256)", args = ["{VAULT}"], decimals = 18 }}"#
        ))
        .unwrap();
        let SourceSpec::Call(call) = spec else {
            panic!("not a call: {spec:?}")
        };
        assert_eq!(
            call.to,
            address!("5FbDB2315678afecb367f032d93F642f64180aa3")
        );
        assert_eq!(call.decimals, 18);
        assert_eq!(&call.calldata[..4], &[0x70, 0xa0, 0x82, 0x31]);
        assert_eq!(call.calldata.len(), 36);
        assert_eq!(&call.calldata[16..36], call.to.as_slice());
    }

    #[test]
    fn call_problems_are_reported_together() {
        let text = errors(
            r#"{ kind = "call", to = "0x12", signature = "balanceOf(address)", args = [1, 2], decimals = 99, extra = 1 }"#,
        );
        for needle in [
            "`0x12` is not an address",
            "declares no return values",
            "decimals must be at most 77",
            "unknown field `extra`",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        let text = errors(&format!(
            r#"{{ kind = "call", to = "{VAULT}", signature = "balanceOf(address)(uint256)", args = ["nope"] }}"#
        ));
        assert!(
            text.contains("args[0]: `nope` is not a valid address"),
            "{text}"
        );
        let text = errors(&format!(
            r#"{{ kind = "call", to = "{VAULT}", signature = "name()(string)" }}"#
        ));
        assert!(
            text.contains("output 0 of `function name() returns (string)` is not a number"),
            "{text}"
        );
        assert!(text.starts_with("guardian.toml:1:"), "{text}");
    }

    #[test]
    fn event_filters_encode_topics_and_find_the_summed_field() {
        let spec = parse(&format!(
            r#"{{ kind = "event_sum", address = "{VAULT}", event = "Transfer(address indexed from, address indexed to, uint256 value)", topics = {{ from = "{VAULT}" }}, field = "value", decimals = 18 }}"#
        ))
        .unwrap();
        let SourceSpec::EventSum {
            filter,
            field,
            decimals,
        } = spec
        else {
            panic!("not an event sum: {spec:?}")
        };
        assert_eq!(
            filter.topics[0],
            Some(b256!(
                "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
            ))
        );
        assert_eq!(
            filter.topics[1],
            Some(b256!(
                "0000000000000000000000005fbdb2315678afecb367f032d93f642f64180aa3"
            ))
        );
        assert_eq!(filter.topics[2], None);
        assert_eq!((field, decimals), (2, 18));

        let text = errors(&format!(
            r#"{{ kind = "event_sum", address = "{VAULT}", event = "Transfer(address indexed from, address indexed to, uint256 value)", topics = {{ value = 1 }}, field = "amount" }}"#
        ));
        for needle in [
            "`value` is not an indexed field",
            "`amount` is not a field of `Transfer(address,address,uint256)`",
            "missing `decimals`",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
    }

    #[test]
    fn block_stats_and_oracles_parse() {
        assert_eq!(
            parse(r#"{ kind = "block", stat = "priority_fee_p90" }"#).unwrap(),
            SourceSpec::Block(BlockStat::PriorityFeePercentile(90))
        );
        assert_eq!(
            parse(r#"{ kind = "block", stat = "gas_used_ratio" }"#).unwrap(),
            SourceSpec::Block(BlockStat::GasUsedRatio)
        );
        assert!(
            errors(r#"{ kind = "block", stat = "priority_fee_p101" }"#)
                .contains("is not a block statistic")
        );
        assert!(matches!(
            parse(&format!(
                r#"{{ kind = "oracle_answer", feed = "{VAULT}", decimals = 8 }}"#
            ))
            .unwrap(),
            SourceSpec::OracleAnswer { decimals: 8, .. }
        ));
        assert!(
            errors(&format!(
                r#"{{ kind = "oracle_answer", feed = "{VAULT}" }}"#
            ))
            .contains("missing `decimals`")
        );
        assert!(matches!(
            parse(&format!(
                r#"{{ kind = "native_balance", address = "{VAULT}" }}"#
            ))
            .unwrap(),
            SourceSpec::NativeBalance(BalanceRead {
                token: None,
                decimals: 18,
                ..
            })
        ));
    }

    #[test]
    fn pending_watches_need_an_effect_and_may_narrow() {
        let spec = parse(&format!(
            r#"{{ kind = "pending", to = "{VAULT}", selector = "attack()", min_value = "1000", min_priority_fee_percentile = 50, new_sender = true, effect = {{ kind = "erc20_balance", token = "{VAULT}", holder = "{VAULT}", decimals = 18 }} }}"#
        ))
        .unwrap();
        let SourceSpec::Pending(p) = spec else {
            panic!("not pending: {spec:?}")
        };
        assert_eq!(p.selector, Some(FixedBytes::from([0x9e, 0x5f, 0xaa, 0xfc])));
        assert_eq!(p.min_value, Some(U256::from(1000)));
        assert_eq!(p.min_priority_fee_percentile, Some(50));
        assert!(p.new_sender);
        assert_eq!(p.effect.token, Some(p.effect.holder));

        let text =
            errors(r#"{ kind = "pending", selector = "0x1234", effect = { kind = "erc721" } }"#);
        assert!(
            text.contains("neither a function signature nor a 4-byte hex selector"),
            "{text}"
        );
        assert!(
            text.contains("`erc721` is not a valid effect kind"),
            "{text}"
        );
        // Filters are optional narrowing: without them every pending transaction counts.
        let spec = parse(&format!(
            r#"{{ kind = "pending", effect = {{ kind = "native_balance", address = "{VAULT}" }} }}"#
        ))
        .unwrap();
        let SourceSpec::Pending(p) = spec else {
            panic!("not pending: {spec:?}")
        };
        assert_eq!((p.to, p.selector, p.new_sender), (None, None, false));
    }

    #[test]
    fn unknown_kinds_suggest_the_closest() {
        let text = errors(r#"{ kind = "event_cnt" }"#);
        assert!(
            text.contains("`event_cnt` is not a metric source kind"),
            "{text}"
        );
        assert!(text.contains("did you mean `event_count`?"), "{text}");
    }
}
