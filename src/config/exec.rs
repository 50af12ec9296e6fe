//! The executing half of the configuration: `[keys.*]`, `[executors.*]`,
//! `[guard]` and the typed fields of `[actions.*]`.
//!
//! Everything here is parsed once, at load, with every problem located. Keys
//! are only *described* here (where the secret lives); reading the secret is
//! [`crate::keys`]' job, at start-up, never at load.

use std::path::PathBuf;

use alloy::primitives::{Address, U256};
use toml::de::DeValue;

use super::reader::{self, Reporter, TableReader, as_array, as_str, as_u64};
use crate::units;

/// Where a signing key lives. Never the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A 0x-prefixed 32-byte hex private key in an environment variable.
    Env { var: String },
    /// A Web3 Secret Storage v3 JSON keystore; its passphrase comes from `passphrase`.
    Keystore {
        path: PathBuf,
        passphrase: PassphraseSource,
    },
}

/// Where a keystore's passphrase lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassphraseSource {
    Env(String),
    /// A file readable by its owner only; a trailing newline is ignored.
    File(PathBuf),
}

/// A named key (`[keys.<name>]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDef {
    pub name: String,
    pub source: KeySource,
}

/// How an executor reaches the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecutorKind {
    /// The guardian key calls the target directly (it holds a pauser role).
    Eoa { key: String },
    /// The guardian holds owner keys of a Safe and executes through `execTransaction`.
    SafeOwners { safe: Address, keys: Vec<String> },
    /// The guardian key calls the GuardianModule, which executes through the Safe.
    Module { module: Address, key: String },
    /// The guardian signs a SafeTx and hands it to human co-signers.
    Propose {
        safe: Address,
        keys: Vec<String>,
        /// Folder the signed proposals are written to, as JSON.
        outbox: PathBuf,
        /// Safe Transaction Service base URL; the proposal is POSTed there when given.
        /// May carry an API key: never logged.
        service_url: Option<String>,
    },
}

impl ExecutorKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ExecutorKind::Eoa { .. } => "eoa",
            ExecutorKind::SafeOwners { .. } => "safe-owners",
            ExecutorKind::Module { .. } => "module",
            ExecutorKind::Propose { .. } => "propose",
        }
    }
    /// Every key this executor signs with.
    pub fn key_names(&self) -> Vec<&str> {
        match self {
            ExecutorKind::Eoa { key } | ExecutorKind::Module { key, .. } => vec![key.as_str()],
            ExecutorKind::SafeOwners { keys, .. } | ExecutorKind::Propose { keys, .. } => {
                keys.iter().map(String::as_str).collect()
            }
        }
    }
}

/// Delivery settings of an executor (fees, deadlines).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Highest max fee per gas the executor may offer, in wei.
    pub max_fee_cap_wei: u128,
    /// Priority fee when no attack transaction is pending, in wei.
    pub default_priority_fee_wei: u128,
    /// Give up (and alert) when the transaction is not included after this long.
    pub deadline_ms: u64,
    /// Deadline of every single RPC call (`rpc_timeout`); a read that misses it fails over.
    pub rpc_timeout_ms: u64,
    /// After landing, the effect is re-checked for this many blocks (`confirmations`);
    /// a reorg that removes it sends the action again.
    pub confirmations: u64,
    /// Least balance the sending key must hold to be ready (`reserve_eth`); `None`:
    /// enough for [`DEFAULT_RESERVE_PAUSES`] pauses at the fee cap.
    pub reserve_wei: Option<u128>,
}

/// Gas a pause is budgeted at for the default balance reserve.
pub const PAUSE_GAS_BUDGET: u128 = 150_000;
/// How many pauses at the fee cap the default balance reserve pays for.
pub const DEFAULT_RESERVE_PAUSES: u128 = 3;

impl Delivery {
    /// The balance below which the executor is not ready.
    pub fn reserve(&self) -> u128 {
        self.reserve_wei.unwrap_or_else(|| {
            self.max_fee_cap_wei
                .saturating_mul(PAUSE_GAS_BUDGET)
                .saturating_mul(DEFAULT_RESERVE_PAUSES)
        })
    }
}

impl Default for Delivery {
    fn default() -> Self {
        Self {
            max_fee_cap_wei: 500_000_000_000,
            default_priority_fee_wei: 2_000_000_000,
            deadline_ms: 60_000,
            rpc_timeout_ms: 2_000,
            confirmations: 3,
            reserve_wei: None,
        }
    }
}

/// Which network an executor uses, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorDef {
    pub name: String,
    pub kind: ExecutorKind,
    /// The network (from `[networks]`) the executor sends to; required to run live.
    pub network: Option<String>,
    pub delivery: Delivery,
    /// Broadcast-only endpoints (`broadcast = [...]`: a private relay, a
    /// builder's RPC): every signed transaction also goes there; never read
    /// from. URLs may carry API keys: never logged.
    pub broadcast: Vec<String>,
}

/// Read-modify-write for a pause function that overwrites several flags at once
/// (Compound III's `pause(bool,bool,bool,bool,bool)`): read every flag, set the
/// ones the action asks for, keep the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagsParams {
    /// One `bool` getter per argument of the pause function, in argument order.
    pub getters: Vec<String>,
    /// For each argument: whether the action sets it (true) or keeps its current value.
    pub set: Vec<bool>,
}

/// The pause-specific fields of a pause action.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PauseParams {
    /// `paused()`-style getter returning `bool`; an already-paused target is not paused again.
    pub paused_getter: Option<String>,
    pub flags: Option<FlagsParams>,
}

/// How a set-parameter action picks its new value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValuePolicy {
    /// Set exactly this value.
    Fixed(U256),
    /// Move the current value down (or up) by this many bps of itself.
    StepBps { bps: u64, down: bool },
}

/// The bounds of a set-parameter action: the same as the GuardianModule enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterParams {
    /// Getter returning the current value as `uint256`.
    pub getter: String,
    pub min: U256,
    pub max: U256,
    /// Largest change per update, in bps of the current value.
    pub max_change_bps: u64,
    /// Least time between two updates of this parameter.
    pub min_delay_ms: u64,
    pub value: ValuePolicy,
}

/// Guard-wide limits (`[guard]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GuardLimits {
    /// Least time between two actions on the same target.
    pub target_cooldown_ms: u64,
    /// At most this many approved actions per period, over all targets.
    pub rate_limit: Option<RateLimit>,
    /// At most this many approved actions per period, per target.
    pub target_rate_limit: Option<RateLimit>,
}

/// `count` actions per `per_ms` milliseconds (`"5/1h"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub count: u32,
    pub per_ms: u64,
}

pub(super) fn parse_key(
    name: &str,
    value: &reader::Value<'_>,
    base: &std::path::Path,
    r: &mut Reporter<'_>,
) -> Option<KeyDef> {
    let ctx = format!("key `{name}`");
    let mut t = TableReader::from_value(value, ctx.clone(), r)?;
    let (source, span) = t.required_string("source", r)?;
    let source = match source {
        "env" => {
            let var = t.required_string("env", r).map(|(s, _)| s.to_string());
            var.map(|var| KeySource::Env { var })
        }
        "keystore" => {
            let path = t.required_string("path", r).map(|(s, _)| base.join(s));
            let env = t.string("passphrase_env", r).map(|(s, _)| s.to_string());
            let file = t.string("passphrase_file", r).map(|(s, _)| base.join(s));
            let passphrase = match (env, file) {
                (Some(e), None) => Some(PassphraseSource::Env(e)),
                (None, Some(f)) => Some(PassphraseSource::File(f)),
                (Some(_), Some(_)) => {
                    r.error(
                        &t.span,
                        format!("{ctx} names both `passphrase_env` and `passphrase_file`"),
                        Some("keep one of them".into()),
                    );
                    None
                }
                (None, None) => {
                    r.error(
                        &t.span,
                        format!("{ctx} needs `passphrase_env` or `passphrase_file`"),
                        Some(
                            "the keystore's passphrase is never written in the configuration"
                                .into(),
                        ),
                    );
                    None
                }
            };
            match (path, passphrase) {
                (Some(path), Some(passphrase)) => Some(KeySource::Keystore { path, passphrase }),
                _ => None,
            }
        }
        other => {
            r.error(
                &span,
                format!("`{other}` is not a key source"),
                Some("one of: env, keystore (remote signers: see keys.example)".into()),
            );
            None
        }
    };
    // A key written into the configuration itself is refused outright.
    if t.entries()
        .any(|(k, _, _)| matches!(k, "key" | "private_key" | "secret" | "passphrase"))
    {
        r.error(
            &t.span,
            format!("{ctx}: secrets are never written in the configuration"),
            Some("put the key in an environment variable or a keystore file".into()),
        );
        // Mark them known so the error above is the only one reported.
        for k in ["key", "private_key", "secret", "passphrase"] {
            t.get(k);
        }
    }
    t.finish(r);
    Some(KeyDef {
        name: name.to_string(),
        source: source?,
    })
}

pub(super) fn address(
    value: &reader::Value<'_>,
    what: &str,
    r: &mut Reporter<'_>,
) -> Option<Address> {
    let s = as_str(value, what, r)?;
    match s.parse::<Address>() {
        Ok(a) => Some(a),
        Err(_) => {
            r.error(
                &value.span(),
                format!("{what}: `{s}` is not an address"),
                Some("write a 0x-prefixed 20-byte hex address".into()),
            );
            None
        }
    }
}

fn key_list(
    t: &mut TableReader<'_, '_>,
    keys: &[String],
    r: &mut Reporter<'_>,
) -> Option<Vec<String>> {
    let ctx = t.context.clone();
    let v = t.require("keys", r)?;
    let mut out = Vec::new();
    for item in as_array(v, &format!("{ctx}.keys"), r)? {
        if let Some(k) = key_name(item, &ctx, keys, r) {
            out.push(k);
        }
    }
    if out.is_empty() {
        r.error(&v.span(), format!("{ctx}.keys is empty"), None);
        return None;
    }
    Some(out)
}

fn key_name(
    value: &reader::Value<'_>,
    ctx: &str,
    keys: &[String],
    r: &mut Reporter<'_>,
) -> Option<String> {
    let s = as_str(value, &format!("{ctx}: a key name"), r)?;
    if keys.iter().any(|k| k == s) {
        Some(s.to_string())
    } else {
        let hint = match reader::did_you_mean(s, keys.iter().map(String::as_str)) {
            Some(m) => format!("did you mean `{m}`?"),
            None if keys.is_empty() => "define it under [keys.<name>] (see keys.example)".into(),
            None => format!("keys defined: {}", keys.join(", ")),
        };
        r.error(
            &value.span(),
            format!("{ctx}: unknown key `{s}`"),
            Some(hint),
        );
        None
    }
}

fn gwei(value: &reader::Value<'_>, what: &str, r: &mut Reporter<'_>) -> Option<u128> {
    let v = reader::as_number(value, what, r)?;
    if v < 0.0 {
        r.error(&value.span(), format!("{what} must be at least 0"), None);
        return None;
    }
    Some((v * 1e9).round() as u128)
}

pub(super) fn parse_executor(
    name: &str,
    value: &reader::Value<'_>,
    keys: &[String],
    networks: &[String],
    base: &std::path::Path,
    r: &mut Reporter<'_>,
) -> Option<ExecutorDef> {
    let ctx = format!("executor `{name}`");
    let mut t = TableReader::from_value(value, ctx.clone(), r)?;
    let kind = t.required_string("kind", r);
    let network = t.string("network", r).and_then(|(n, span)| {
        if networks.iter().any(|k| k == n) {
            Some(n.to_string())
        } else {
            r.error(
                &span,
                format!("{ctx}: unknown network `{n}`"),
                Some(format!("networks defined: {}", networks.join(", "))),
            );
            None
        }
    });
    let mut delivery = Delivery::default();
    if let Some(v) = t.get("max_fee_gwei")
        && let Some(w) = gwei(v, "max_fee_gwei", r)
    {
        delivery.max_fee_cap_wei = w;
    }
    if let Some(v) = t.get("priority_fee_gwei")
        && let Some(w) = gwei(v, "priority_fee_gwei", r)
    {
        delivery.default_priority_fee_wei = w;
    }
    if let Some(ms) = duration(&mut t, "deadline", r) {
        delivery.deadline_ms = ms;
    }
    parse_delivery_extras(&mut t, &mut delivery, r);
    let broadcast = broadcast_urls(&mut t, &ctx, r);
    if delivery.default_priority_fee_wei > delivery.max_fee_cap_wei {
        r.error(
            &t.span,
            format!("{ctx}: priority_fee_gwei is above max_fee_gwei"),
            None,
        );
    }
    let single_key = |t: &mut TableReader<'_, '_>, r: &mut Reporter<'_>| {
        let v = t.require("key", r)?;
        key_name(v, &ctx, keys, r)
    };
    let kind = match kind?.0 {
        "eoa" => single_key(&mut t, r).map(|key| ExecutorKind::Eoa { key }),
        "module" => {
            let module = t.require("module", r).and_then(|v| address(v, "module", r));
            let key = single_key(&mut t, r);
            Some(ExecutorKind::Module {
                module: module?,
                key: key?,
            })
        }
        "safe-owners" => {
            let safe = t.require("safe", r).and_then(|v| address(v, "safe", r));
            let keys = key_list(&mut t, keys, r);
            Some(ExecutorKind::SafeOwners {
                safe: safe?,
                keys: keys?,
            })
        }
        "propose" => {
            let safe = t.require("safe", r).and_then(|v| address(v, "safe", r));
            let keys = key_list(&mut t, keys, r);
            let outbox = t.required_string("outbox", r).map(|(s, _)| base.join(s));
            let service_url = t.string("service_url", r).and_then(|(s, span)| {
                if s.starts_with("http://") || s.starts_with("https://") {
                    Some(s.to_string())
                } else {
                    r.error(
                        &span,
                        format!("{ctx}: service_url must start with http:// or https://"),
                        None,
                    );
                    None
                }
            });
            Some(ExecutorKind::Propose {
                safe: safe?,
                keys: keys?,
                outbox: outbox?,
                service_url,
            })
        }
        other => {
            let span = t.get("kind").map(|v| v.span()).unwrap_or(t.span.clone());
            r.error(
                &span,
                format!("`{other}` is not an executor kind"),
                Some(format!("one of: {}", super::EXECUTOR_KINDS.join(", "))),
            );
            None
        }
    };
    t.finish(r);
    Some(ExecutorDef {
        name: name.to_string(),
        kind: kind?,
        network,
        delivery,
        broadcast,
    })
}

/// `rpc_timeout`, `confirmations` and `reserve_eth` of an executor.
fn parse_delivery_extras(t: &mut TableReader<'_, '_>, d: &mut Delivery, r: &mut Reporter<'_>) {
    if let Some(ms) = nonzero_duration(t, "rpc_timeout", r) {
        d.rpc_timeout_ms = ms;
    }
    if let Some(n) = t.u64("confirmations", r) {
        d.confirmations = n;
    }
    if let Some(v) = t.get("reserve_eth")
        && let Some(eth) = reader::as_number(v, "reserve_eth", r)
    {
        if eth < 0.0 {
            r.error(
                &v.span(),
                "reserve_eth must be at least 0".to_string(),
                None,
            );
        } else {
            d.reserve_wei = Some((eth * 1e18).round() as u128);
        }
    }
}

/// `broadcast = ["https://relay..."]`: http(s) URLs only.
fn broadcast_urls(t: &mut TableReader<'_, '_>, ctx: &str, r: &mut Reporter<'_>) -> Vec<String> {
    let Some(v) = t.get("broadcast") else {
        return Vec::new();
    };
    let Some(items) = as_array(v, &format!("{ctx}.broadcast"), r) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        let Some(s) = as_str(item, &format!("{ctx}.broadcast"), r) else {
            continue;
        };
        if (s.starts_with("http://") || s.starts_with("https://"))
            && s.parse::<reqwest::Url>().is_ok()
        {
            out.push(s.to_string());
        } else {
            r.error(
                &item.span(),
                format!("{ctx}.broadcast: an entry is not an http(s) URL"),
                Some("write it as \"https://relay.example/...\"".into()),
            );
        }
    }
    out
}

/// A non-negative integer as U256: a TOML integer, or a decimal or 0x-hex string for large values.
pub(super) fn as_u256(value: &reader::Value<'_>, what: &str, r: &mut Reporter<'_>) -> Option<U256> {
    let parsed = match value.get_ref() {
        DeValue::Integer(i) => u64::from_str_radix(i.as_str(), i.radix())
            .ok()
            .map(U256::from),
        DeValue::String(s) => s.replace('_', "").parse::<U256>().ok(),
        other => {
            r.error(
                &value.span(),
                format!("{what} must be a whole number, found {}", other.type_str()),
                Some("large values may be written as strings: \"1000000000000000000\"".into()),
            );
            return None;
        }
    };
    if parsed.is_none() {
        r.error(
            &value.span(),
            format!("{what} must be a whole number of at least 0"),
            None,
        );
    }
    parsed
}

/// A function signature with parentheses (`paused()`, `isSupplyPaused()`).
pub(super) fn signature(
    value: &reader::Value<'_>,
    what: &str,
    r: &mut Reporter<'_>,
) -> Option<String> {
    let s = as_str(value, what, r)?;
    if s.contains('(') && s.parse::<alloy::json_abi::Function>().is_ok() {
        Some(s.to_string())
    } else {
        r.error(
            &value.span(),
            format!("{what}: `{s}` is not a function signature"),
            Some("write it as `paused()` or `supplyCap()`".into()),
        );
        None
    }
}

/// The optional duration under `key`, in ms, with where it is written; a
/// malformed one is reported.
pub(super) fn duration_at(
    t: &mut TableReader<'_, '_>,
    key: &'static str,
    r: &mut Reporter<'_>,
) -> Option<(u64, std::ops::Range<usize>)> {
    let (text, span) = t.string(key, r)?;
    match units::parse_duration(text) {
        Ok(ms) => Some((ms, span)),
        Err(e) => {
            r.error(&span, format!("{key}: {}", e.message), Some(e.hint));
            None
        }
    }
}

/// The optional duration under `key`, in ms; a malformed one is reported.
pub(super) fn duration(
    t: &mut TableReader<'_, '_>,
    key: &'static str,
    r: &mut Reporter<'_>,
) -> Option<u64> {
    duration_at(t, key, r).map(|(ms, _)| ms)
}

/// Like [`duration`], but 0 is reported too: `{key} must be above 0`.
fn nonzero_duration(
    t: &mut TableReader<'_, '_>,
    key: &'static str,
    r: &mut Reporter<'_>,
) -> Option<u64> {
    let (ms, span) = duration_at(t, key, r)?;
    if ms == 0 {
        r.error(&span, format!("{key} must be above 0"), None);
        return None;
    }
    Some(ms)
}

pub(super) fn rate(
    t: &mut TableReader<'_, '_>,
    key: &'static str,
    r: &mut Reporter<'_>,
) -> Option<RateLimit> {
    let (text, span) = t.string(key, r)?;
    match units::parse_alarm_rate(text) {
        Ok(rate) if rate.count >= 1.0 && rate.count.fract() == 0.0 && rate.count <= 1e9 => {
            Some(RateLimit {
                count: rate.count as u32,
                per_ms: rate.per_ms,
            })
        }
        Ok(_) => {
            r.error(
                &span,
                format!("{key}: the count must be a whole number of at least 1"),
                Some("for example \"5/1h\"".into()),
            );
            None
        }
        Err(e) => {
            r.error(
                &span,
                format!("{key}: {}", e.message),
                Some("for example \"5/1h\": at most five actions an hour".into()),
            );
            None
        }
    }
}

pub(super) fn parse_guard(value: &reader::Value<'_>, r: &mut Reporter<'_>) -> GuardLimits {
    let mut limits = GuardLimits::default();
    let Some(mut t) = TableReader::from_value(value, "[guard]", r) else {
        return limits;
    };
    if let Some(ms) = duration(&mut t, "target_cooldown", r) {
        limits.target_cooldown_ms = ms;
    }
    limits.rate_limit = rate(&mut t, "rate_limit", r);
    limits.target_rate_limit = rate(&mut t, "target_rate_limit", r);
    t.finish(r);
    limits
}

/// The pause fields of an action table.
pub(super) fn parse_pause(
    t: &mut TableReader<'_, '_>,
    function: Option<&str>,
    r: &mut Reporter<'_>,
) -> PauseParams {
    let ctx = t.context.clone();
    let paused_getter = t
        .get("paused_getter")
        .and_then(|v| signature(v, "paused_getter", r));
    let flags = t.get("flags").and_then(|v| {
        let mut f = TableReader::from_value(v, format!("{ctx}.flags"), r)?;
        let getters: Vec<String> = f
            .require("getters", r)
            .and_then(|v| as_array(v, "flags.getters", r))
            .unwrap_or_default()
            .iter()
            .filter_map(|g| signature(g, "flags.getters", r))
            .collect();
        let set: Vec<bool> = f
            .require("set", r)
            .and_then(|v| as_array(v, "flags.set", r))
            .unwrap_or_default()
            .iter()
            .filter_map(|b| reader::as_bool(b, "flags.set", r))
            .collect();
        let span = f.span.clone();
        f.finish(r);
        if getters.is_empty() || getters.len() != set.len() {
            r.error(
                &span,
                format!("{ctx}.flags needs as many `set` entries as `getters`, at least one"),
                None,
            );
            return None;
        }
        if let Some(func) = function
            && let Ok(parsed) = func.parse::<alloy::json_abi::Function>()
            && (parsed.inputs.len() != getters.len()
                || parsed.inputs.iter().any(|p| p.ty != "bool"))
        {
            r.error(
                &span,
                format!(
                    "{ctx}.flags: `{func}` must take one bool per flag ({} flags)",
                    getters.len()
                ),
                None,
            );
            return None;
        }
        Some(FlagsParams { getters, set })
    });
    PauseParams {
        paused_getter,
        flags,
    }
}

/// The bounds of a set-parameter action; every missing field is reported.
pub(super) fn parse_parameter(
    t: &mut TableReader<'_, '_>,
    r: &mut Reporter<'_>,
) -> Option<ParameterParams> {
    let ctx = t.context.clone();
    let getter = t
        .require("getter", r)
        .and_then(|v| signature(v, "getter", r));
    let min = t.require("min", r).and_then(|v| as_u256(v, "min", r));
    let max = t.require("max", r).and_then(|v| as_u256(v, "max", r));
    let max_change_bps = t
        .require("max_change_bps", r)
        .and_then(|v| as_u64(v, "max_change_bps", r));
    if !t.has("min_delay") {
        r.error(
            &t.span,
            format!("{ctx} is missing `min_delay` (its bounds are enforced before sending)"),
            Some("for example min_delay = \"1h\"".into()),
        );
    }
    let min_delay_ms = duration(t, "min_delay", r);
    let value = t.require("value", r).and_then(|v| match v.get_ref() {
        DeValue::Table(_) => {
            let mut s = TableReader::from_value(v, format!("{ctx}.value"), r)?;
            let bps = s
                .require("step_bps", r)
                .and_then(|v| as_u64(v, "value.step_bps", r));
            let down = s
                .required_string("direction", r)
                .and_then(|(d, span)| match d {
                    "down" => Some(true),
                    "up" => Some(false),
                    other => {
                        r.error(
                            &span,
                            format!("`{other}` is not a direction"),
                            Some("one of: down, up".into()),
                        );
                        None
                    }
                });
            s.finish(r);
            Some(ValuePolicy::StepBps {
                bps: bps?,
                down: down?,
            })
        }
        _ => as_u256(v, "value", r).map(ValuePolicy::Fixed),
    });
    if let (Some(min), Some(max)) = (min, max)
        && min > max
    {
        r.error(&t.span, format!("{ctx}: min is above max"), None);
        return None;
    }
    let step_bps = match value {
        Some(ValuePolicy::StepBps { bps, .. }) => Some(bps),
        _ => None,
    };
    for (key, bps) in [
        ("max_change_bps", max_change_bps),
        ("value.step_bps", step_bps),
    ] {
        if let Some(bps) = bps
            && !(1..=10_000).contains(&bps)
        {
            r.error(
                &t.span,
                format!("{ctx}: {key} must be between 1 and 10000"),
                None,
            );
            return None;
        }
    }
    Some(ParameterParams {
        getter: getter?,
        min: min?,
        max: max?,
        max_change_bps: max_change_bps?,
        min_delay_ms: min_delay_ms?,
        value: value?,
    })
}

/// How old a trip may be and still be acted on (`max_trigger_age`, `act_if_late`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionTiming {
    /// A trip whose block is older than this (by the wall clock) is journaled
    /// and alerted, not acted on.
    pub max_trigger_age_ms: u64,
    /// Pauses only: act on a trip older than `max_trigger_age` all the same
    /// (journaled and alerted as late). Parameter changes are always strict.
    pub act_if_late: bool,
}

/// The default `max_trigger_age`: five minutes.
pub const DEFAULT_MAX_TRIGGER_AGE_MS: u64 = 5 * 60 * 1000;

impl Default for ActionTiming {
    fn default() -> Self {
        Self {
            max_trigger_age_ms: DEFAULT_MAX_TRIGGER_AGE_MS,
            act_if_late: false,
        }
    }
}

/// `max_trigger_age` and `act_if_late` of an action.
pub(super) fn parse_timing(
    t: &mut TableReader<'_, '_>,
    kind: Option<super::ActionKind>,
    r: &mut Reporter<'_>,
) -> ActionTiming {
    let mut timing = ActionTiming::default();
    if let Some(ms) = nonzero_duration(t, "max_trigger_age", r) {
        timing.max_trigger_age_ms = ms;
    }
    if let Some(v) = t.get("act_if_late")
        && let Some(late) = reader::as_bool(v, "act_if_late", r)
    {
        if late && kind == Some(super::ActionKind::SetParameter) {
            r.error(
                &v.span(),
                format!("{}: act_if_late is for pauses only; a parameter change is never made on a late trip", t.context),
                Some("remove act_if_late, or raise max_trigger_age".into()),
            );
        }
        timing.act_if_late = late;
    }
    timing
}

/// Words one of which a pause function's name holds (case-insensitive).
pub const PAUSE_WORDS: [&str; 6] = ["pause", "freeze", "halt", "shutdown", "suspend", "stop"];
/// Words that undo a pause: a guardian never calls them.
const UNDO_WORDS: [&str; 4] = ["unpause", "unfreeze", "resume", "unhalt"];
/// Functions no guardian action may call, whatever its kind (lowercased names).
const NEVER_CALLED: [&str; 10] = [
    "renounceownership",
    "transferownership",
    "acceptownership",
    "renouncerole",
    "grantrole",
    "revokerole",
    "upgradeto",
    "upgradetoandcall",
    "initialize",
    "selfdestruct",
];

/// Refuses at load what the guard would refuse at run time: a call that
/// undoes a pause, a function outside the action's kind, a value outside its
/// declared bounds; each located at the `function` (or the action).
pub(super) fn check_call(
    ctx: &str,
    kind: super::ActionKind,
    function: &str,
    span: &std::ops::Range<usize>,
    parameter: Option<&ParameterParams>,
    r: &mut Reporter<'_>,
) {
    let name = function
        .split('(')
        .next()
        .unwrap_or(function)
        .trim_start_matches('_')
        .to_ascii_lowercase();
    if UNDO_WORDS.iter().any(|w| name.contains(w)) {
        r.error(
            span,
            format!("{ctx} calls `{function}`, which a guardian may never call: unpausing stays with the council"),
            None,
        );
        return;
    }
    if NEVER_CALLED.contains(&name.as_str()) {
        r.error(
            span,
            format!("{ctx} calls `{function}`, which no guardian action may call (ownership, roles, upgrades)"),
            None,
        );
        return;
    }
    match kind {
        super::ActionKind::Pause if !PAUSE_WORDS.iter().any(|w| name.contains(w)) => r.error(
            span,
            format!("{ctx} is a pause, but `{function}` is not a pause function"),
            Some(format!(
                "a pause function's name holds one of: {}; a parameter change is kind = \"set-parameter\" with bounds",
                PAUSE_WORDS.join(", ")
            )),
        ),
        super::ActionKind::SetParameter if PAUSE_WORDS.iter().any(|w| name.contains(w)) => r.error(
            span,
            format!("{ctx} is a set-parameter action, but `{function}` is a pause function"),
            Some("use kind = \"pause\"".into()),
        ),
        _ => {}
    }
    if let Some(p) = parameter {
        check_bounds(ctx, p, span, r);
    }
}

/// A fixed value within `[min, max]`; a step within `max_change_bps`.
fn check_bounds(
    ctx: &str,
    p: &ParameterParams,
    span: &std::ops::Range<usize>,
    r: &mut Reporter<'_>,
) {
    match p.value {
        ValuePolicy::Fixed(v) if v < p.min || v > p.max => r.error(
            span,
            format!(
                "{ctx}: value {v} is outside the declared bounds [{}, {}]",
                p.min, p.max
            ),
            Some("the guard and the module refuse it; fix the value or the bounds".into()),
        ),
        ValuePolicy::StepBps { bps, .. } if bps > p.max_change_bps => r.error(
            span,
            format!(
                "{ctx}: value.step_bps {bps} is larger than max_change_bps {}",
                p.max_change_bps
            ),
            Some("the guard and the module refuse a larger step".into()),
        ),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    /// Both limits in basis points are held to 1..=10000 alike; the first
    /// out of range is the one reported.
    #[test]
    fn basis_points_out_of_range_are_refused() {
        let config = |max_change: u64, step: u64| {
            format!(
                "[guardian]\nmode = \"alert-only\"\n[actions.cap]\nkind = \"set-parameter\"\ndescription = \"cap\"\ntarget = \"0x0000000000000000000000000000000000000002\"\nfunction = \"setSupplyCap(uint256)\"\ngetter = \"supplyCap()\"\nmin = 0\nmax = 100\nmax_change_bps = {max_change}\nmin_delay = \"1h\"\nvalue = {{ step_bps = {step}, direction = \"down\" }}\n"
            )
        };
        assert!(Config::from_text("guardian.toml", config(5_000, 2_500)).is_ok());
        let max_change = "max_change_bps must be between 1 and 10000";
        let step = "value.step_bps must be between 1 and 10000";
        for (max_change_bps, step_bps, reported, not) in [
            (0, 2_500, max_change, step),
            (10_001, 0, max_change, step),
            (5_000, 10_001, step, max_change),
            (5_000, 0, step, max_change),
        ] {
            let err = Config::from_text("guardian.toml", config(max_change_bps, step_bps))
                .unwrap_err()
                .to_string();
            assert!(err.contains(reported), "{err}");
            assert!(!err.contains(not), "{err}");
        }
    }
}
