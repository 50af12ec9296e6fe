//! The guardian configuration (`guardian.toml`): networks, metric definitions,
//! actions, executors, name bindings, and where the policies are.
//!
//! Metric *definitions* (how a metric is read from a chain) live here;
//! *conditions* (what must hold) live in policy files. The same policies
//! therefore run live and on a replayed trace: on a trace, a metric is simply
//! whatever rows carry its name.
//!
//! Loading reports every problem at once (see [`reader`]). A configuration is
//! never created or completed with defaults that could act: there is no
//! default action, executor or key.

pub mod exec;
pub mod journal;
pub mod ops;
pub mod reader;
pub mod setup;
pub mod sources;
pub mod text;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::de::DeValue;

use alloy::primitives::Address;

pub use journal::{JournalConfig, JournalSync};

pub use exec::{ActionTiming, DEFAULT_MAX_TRIGGER_AGE_MS};
pub use exec::{
    Delivery, ExecutorDef, ExecutorKind, FlagsParams, GuardLimits, KeyDef, KeySource,
    ParameterParams, PassphraseSource, PauseParams, RateLimit, ValuePolicy,
};
pub use ops::{NotifyDef, NotifyKind, ObserveDef, UrlSource};

use crate::levels::Mode;
use crate::metrics::is_valid_metric_name;
use crate::units::{self, Window};
use reader::{Diagnostics, Reporter, SourceFile, TableReader, as_array, as_choice, as_str, as_u64};

/// Default for `[guardian] history_blocks`: the longest block window a policy may use.
pub const DEFAULT_HISTORY_BLOCKS: u64 = 100_000;
/// Default for `[guardian] history`: the longest time window a policy may use (30 days).
pub const DEFAULT_HISTORY_MS: u64 = 30 * 86_400_000;

/// A loaded, validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub path: PathBuf,
    /// Global mode; a policy's own mode can only make it more cautious.
    pub mode: Mode,
    /// Policy files or directories, resolved against the configuration's folder.
    pub policies: Vec<PathBuf>,
    /// Longest windows policies may use.
    pub history_blocks: u64,
    pub history_ms: u64,
    /// Policy metric name -> metric name in samples (for starter packs with placeholder names).
    pub bind: BTreeMap<String, String>,
    pub networks: BTreeMap<String, Network>,
    /// Metric definitions by name, in file order.
    pub metrics: Vec<MetricDef>,
    pub actions: BTreeMap<String, ActionDef>,
    pub executors: BTreeMap<String, ExecutorDef>,
    /// Where signing keys live (never the keys themselves).
    pub keys: BTreeMap<String, KeyDef>,
    /// Guard-wide cooldown and rate limits.
    pub guard: GuardLimits,
    /// The GuardianModule set-up the Safe signs (`guardian setup plan|verify`).
    pub setup: Option<setup::SetupDef>,
    /// Where `guardian run` keeps its state across restarts (`[journal]`).
    pub journal: Option<JournalConfig>,
    /// `[observe]`: the metrics and health endpoint, if served.
    pub observe: Option<ObserveDef>,
    /// `[notify.<name>]`: alert channels by name.
    pub notify: BTreeMap<String, NotifyDef>,
}

impl Config {
    /// A configuration with nothing defined, for replaying policies without a config file.
    /// Metric and action names in policies are then not cross-checked.
    pub fn empty() -> Self {
        Self {
            path: PathBuf::new(),
            mode: Mode::Enforce,
            policies: Vec::new(),
            history_blocks: DEFAULT_HISTORY_BLOCKS,
            history_ms: DEFAULT_HISTORY_MS,
            bind: BTreeMap::new(),
            networks: BTreeMap::new(),
            metrics: Vec::new(),
            actions: BTreeMap::new(),
            executors: BTreeMap::new(),
            keys: BTreeMap::new(),
            guard: GuardLimits::default(),
            setup: None,
            journal: None,
            observe: None,
            notify: BTreeMap::new(),
        }
    }

    /// Whether this configuration declares metrics and actions (so policies are checked against them).
    pub fn is_declarative(&self) -> bool {
        !self.path.as_os_str().is_empty()
    }

    pub fn metric(&self, name: &str) -> Option<&MetricDef> {
        self.metrics.iter().find(|m| m.name == name)
    }

    /// The sample name a policy's metric name refers to, after `[bind]`.
    pub fn bound_name<'a>(&'a self, name: &'a str) -> &'a str {
        self.bind.get(name).map(String::as_str).unwrap_or(name)
    }

    /// Loads and validates `path`, reporting every problem found.
    pub fn load(path: &Path) -> Result<Config, Diagnostics> {
        Self::from_source(&SourceFile::read(path)?)
    }

    /// Validates `text` as if it were read from `path` (relative paths in
    /// it are taken from there), reporting every problem found.
    pub fn from_text(path: impl Into<PathBuf>, text: String) -> Result<Config, Diagnostics> {
        Self::from_source(&SourceFile::new(path, text))
    }

    fn from_source(file: &SourceFile) -> Result<Config, Diagnostics> {
        let mut r = Reporter::new(file);
        let config = parse(&mut r);
        r.found
            .into_result(())
            .and(config.ok_or_else(Diagnostics::default))
    }
}

/// A chain the guardian watches.
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    pub chain_id: u64,
    /// HTTP(S) JSON-RPC endpoints, in order of preference. They may carry API keys: never log them.
    pub rpc: Vec<String>,
    /// WebSocket endpoints for head and pending-transaction subscriptions.
    pub ws: Vec<String>,
    pub block_time_ms: Option<u64>,
    /// How the watcher treats faulty endpoints on this network (issue #13).
    pub watch: WatchLimits,
}

/// Per-network limits for watching under faults; every field is optional.
///
/// ```toml
/// [networks.mainnet]
/// rpc = ["https://a…", "https://b…", "https://c…"]
/// quorum = 2                    # 2 of the 3 endpoints must agree before an action
/// quorum_tolerance = "0.01%"    # how far values at the same block hash may differ
/// max_head_age = "36s"          # no action on a block older than this
/// max_lag_blocks = 3            # an endpoint further behind the best is not read from
/// stall_blocks = 3              # a head subscription silent this many block times has stalled
/// read_deadline = "6s"          # one block's reads, across endpoints, finish within this
/// screen_concurrency = 4        # pending-transaction simulations in flight at once (1..=64)
/// screen_queue = 4096           # pending transactions waiting to be screened, at most (16..=1000000)
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WatchLimits {
    /// How many read endpoints must agree on a trip's values before its action goes ahead.
    pub quorum: Option<usize>,
    /// Relative difference allowed between endpoints' values (a fraction: 0.0001 is 0.01%).
    pub quorum_tolerance: Option<f64>,
    /// No action on a block older than this (default: four block times, at least 30 s).
    pub max_head_age_ms: Option<u64>,
    pub max_lag_blocks: Option<u64>,
    pub stall_blocks: Option<u32>,
    pub read_deadline_ms: Option<u64>,
    /// Pending-transaction simulations in flight at once (screening).
    pub screen_concurrency: Option<usize>,
    /// Pending transactions waiting to be screened, at most; beyond, the lowest priority is dropped.
    pub screen_queue: Option<usize>,
}

pub use sources::{SOURCE_KINDS, SourceSpec};

/// How a metric is read, and what it means.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricDef {
    pub name: String,
    pub description: String,
    pub unit: Option<String>,
    pub network: Option<String>,
    /// The chain read behind the metric; absent for metrics that only come from traces.
    pub source: Option<SourceSpec>,
}

/// What an action does on chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    /// Call a pause function.
    Pause,
    /// Call a parameter setter, within bounds.
    SetParameter,
}

/// A named action policies may request.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionDef {
    pub name: String,
    pub kind: ActionKind,
    pub description: String,
    /// Contract the action calls (required to run live; optional for replay-only configs).
    pub target: Option<Address>,
    /// Function signature, e.g. `pause()` or `setCollateralFactorBps(uint256)`.
    pub function: Option<String>,
    pub executor: Option<String>,
    /// Least time between two approved runs of this action.
    pub cooldown_ms: u64,
    /// Pause actions: already-paused check and read-modify-write flags.
    pub pause: PauseParams,
    /// Set-parameter actions: getter, bounds and how the new value is chosen.
    pub parameter: Option<ParameterParams>,
    /// How old a trip may be and still be acted on.
    pub timing: ActionTiming,
}

/// Executor kinds.
pub const EXECUTOR_KINDS: [&str; 4] = ["eoa", "safe-owners", "module", "propose"];

fn parse(r: &mut Reporter<'_>) -> Option<Config> {
    let doc = r.parse()?;
    let base = r
        .file
        .path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut top = TableReader::new(doc.get_ref(), doc.span(), "the configuration");
    let mut config = Config::empty();
    config.path = r.file.path.clone();

    parse_guardian(&mut top, &base, &mut config, r);
    parse_bind(&mut top, &mut config, r);
    config
        .networks
        .extend(read_entries(&mut top, "networks", r, parse_network));
    let keys = read_entries(&mut top, "keys", r, |name, value, r| {
        exec::parse_key(name, value, &base, r)
    });
    config.keys.extend(keys);
    if let Some(v) = top.get("guard") {
        config.guard = exec::parse_guard(v, r);
    }
    if let Some(v) = top.get("journal") {
        config.journal = journal::parse_journal(v, &base, r);
    }
    let keys: Vec<String> = config.keys.keys().cloned().collect();
    let networks: Vec<String> = config.networks.keys().cloned().collect();
    let executors = read_entries(&mut top, "executors", r, |name, value, r| {
        exec::parse_executor(name, value, &keys, &networks, &base, r)
    });
    config.executors.extend(executors);
    parse_metrics(&mut top, &mut config, r);
    if let Some(v) = top.get("observe") {
        config.observe = ops::parse_observe(v, r);
    }
    config
        .notify
        .extend(read_entries(&mut top, "notify", r, ops::parse_notify));
    let actions = read_entries(&mut top, "actions", r, |name, value, r| {
        parse_action(name, value, &config, r)
    });
    config.actions.extend(actions);
    if let Some(v) = top.get("setup") {
        config.setup = setup::parse_setup(v, &config, r);
    }
    top.finish(r);

    // A binding's target is checked where a policy reads it (policy::compile):
    // an entry no loaded policy uses needs no [metrics] definition.
    Some(config)
}

/// The entries of the table `[key]`, each read by `read` (which reports its
/// problems), in file order; a missing or misshapen table gives none.
fn read_entries<'a, 'i, T>(
    top: &mut TableReader<'a, 'i>,
    key: &'static str,
    r: &mut Reporter<'_>,
    mut read: impl FnMut(&str, &'a reader::Value<'i>, &mut Reporter<'_>) -> Option<T>,
) -> Vec<(String, T)> {
    let Some(table) = sub_table(top, key, r) else {
        return Vec::new();
    };
    table
        .entries()
        .filter_map(|(name, _, value)| Some((name.to_string(), read(name, value, r)?)))
        .collect()
}

/// The table `[key]`, if there is one (anything else there is reported).
fn sub_table<'a, 'i>(
    top: &mut TableReader<'a, 'i>,
    key: &'static str,
    r: &mut Reporter<'_>,
) -> Option<TableReader<'a, 'i>> {
    TableReader::from_value(top.get(key)?, format!("[{key}]"), r)
}

/// `[guardian]`: the mode (required: a configuration must say whether it
/// acts, so it fails closed), the policies, and how much history to keep.
fn parse_guardian(
    top: &mut TableReader<'_, '_>,
    base: &Path,
    config: &mut Config,
    r: &mut Reporter<'_>,
) {
    let Some(v) = top.get("guardian") else {
        r.error(
            &(0..0),
            "the configuration has no [guardian] section",
            Some(
                "add [guardian] with `mode = \"enforce\"`, `\"dry-run\"` or `\"alert-only\"`"
                    .into(),
            ),
        );
        return;
    };
    let Some(mut g) = TableReader::from_value(v, "[guardian]", r) else {
        return;
    };
    if let Some(v) = g.require("mode", r) {
        config.mode = as_choice(v, "mode", &Mode::CHOICES, r).unwrap_or(Mode::AlertOnly);
    }
    if let Some(v) = g.get("policies") {
        for item in as_array(v, "[guardian] policies", r).unwrap_or_default() {
            if let Some(p) = as_str(item, "a policy path", r) {
                config.policies.push(base.join(p));
            }
        }
    }
    if let Some(n) = g.u64("history_blocks", r) {
        config.history_blocks = n;
    }
    if let Some(ms) = exec::duration(&mut g, "history", r) {
        config.history_ms = ms;
    }
    g.finish(r);
}

/// `[bind]`: metric names templates read, bound to the configuration's.
fn parse_bind(top: &mut TableReader<'_, '_>, config: &mut Config, r: &mut Reporter<'_>) {
    let Some(b) = sub_table(top, "bind", r) else {
        return;
    };
    for (name, span, value) in b.entries() {
        let Some(target) = as_str(value, &format!("bind.\"{name}\""), r) else {
            continue;
        };
        if name.contains('*') || target.contains('*') {
            check_bound_pattern(name, target, &span, &value.span(), r);
        } else {
            check_metric_name(target, &value.span(), r);
            if !is_valid_metric_name(name) {
                r.error(&span, format!("`{name}` is not a valid metric name"), None);
            }
        }
        config.bind.insert(name.to_string(), target.to_string());
    }
}

/// Reports `name` at `span` unless it is a valid metric name.
fn check_metric_name(name: &str, span: &std::ops::Range<usize>, r: &mut Reporter<'_>) {
    if !is_valid_metric_name(name) {
        r.error(
            span,
            format!("`{name}` is not a valid metric name"),
            Some("metric names use letters, digits and _ . : -".into()),
        );
    }
}

/// `[metrics]`: every metric, then each ratio source checked against the
/// metrics it divides.
fn parse_metrics(top: &mut TableReader<'_, '_>, config: &mut Config, r: &mut Reporter<'_>) {
    let Some(metrics) = sub_table(top, "metrics", r) else {
        return;
    };
    for (name, span, value) in metrics.entries() {
        check_metric_name(name, &span, r);
        if let Some(def) = parse_metric(name, value, config, r) {
            config.metrics.push(def);
        }
    }
    for def in &config.metrics {
        let Some(spec) = &def.source else { continue };
        let Some((_, _, value)) = metrics.entries().find(|(n, _, _)| *n == def.name) else {
            continue;
        };
        // Point at the `source` value itself.
        let span = match value.get_ref() {
            DeValue::Table(t) => t.get("source").map_or(value.span(), |v| v.span()),
            _ => value.span(),
        };
        let lookup = |m: &str| {
            config
                .metric(m)
                .map(|d| (d.network.clone(), d.source.clone()))
        };
        sources::check_ratio(&def.name, def.network.as_deref(), spec, &span, lookup, r);
    }
}

/// `[bind]` between templates' patterns: both sides have exactly one `*`.
fn check_bound_pattern(
    name: &str,
    target: &str,
    name_span: &std::ops::Range<usize>,
    target_span: &std::ops::Range<usize>,
    r: &mut Reporter<'_>,
) {
    let valid = |p: &str| {
        p.matches('*').count() == 1
            && p.split('*')
                .all(|part| part.is_empty() || is_valid_metric_name(part))
    };
    let hint = Some("a pattern binds to a pattern, each with exactly one `*`, e.g. \"lending.cash.*\" = \"aave_v3.cash.*\"".to_string());
    if !valid(name) {
        r.error(
            name_span,
            format!("`{name}` is not a metric pattern"),
            hint.clone(),
        );
    }
    if !valid(target) {
        r.error(
            target_span,
            format!("`{target}` is not a metric pattern"),
            hint,
        );
    }
}

fn parse_network(name: &str, value: &reader::Value<'_>, r: &mut Reporter<'_>) -> Option<Network> {
    let ctx = format!("network `{name}`");
    let mut t = TableReader::from_value(value, ctx.clone(), r)?;
    let chain_id = t
        .require("chain_id", r)
        .and_then(|v| as_u64(v, "chain_id", r));
    let urls = |key: &'static str,
                schemes: &[&str],
                t: &mut TableReader<'_, '_>,
                r: &mut Reporter<'_>|
     -> Vec<String> {
        let mut out = Vec::new();
        if let Some(v) = t.get(key) {
            for item in as_array(v, key, r).unwrap_or_default() {
                if let Some(url) = as_str(item, key, r) {
                    if schemes.iter().any(|s| url.starts_with(s)) {
                        out.push(url.to_string());
                    } else {
                        r.error(
                            &item.span(),
                            format!(
                                "{ctx}: {key} entries must start with {}",
                                schemes.join(" or ")
                            ),
                            None,
                        );
                    }
                }
            }
        }
        out
    };
    let rpc = urls("rpc", &["http://", "https://"], &mut t, r);
    let ws = urls("ws", &["ws://", "wss://"], &mut t, r);
    if rpc.is_empty() && ws.is_empty() {
        r.error(
            &t.span,
            format!("{ctx} needs at least one `rpc` or `ws` endpoint"),
            None,
        );
    }
    let block_time_ms = exec::duration(&mut t, "block_time", r);
    let endpoints = if rpc.is_empty() { ws.len() } else { rpc.len() };
    let watch = parse_watch_limits(&ctx, endpoints, &mut t, r);
    t.finish(r);
    Some(Network {
        chain_id: chain_id?,
        rpc,
        ws,
        block_time_ms,
        watch,
    })
}

/// The [`WatchLimits`] fields of a network table.
fn parse_watch_limits(
    ctx: &str,
    endpoints: usize,
    t: &mut TableReader<'_, '_>,
    r: &mut Reporter<'_>,
) -> WatchLimits {
    let mut w = WatchLimits::default();
    if let Some(v) = t.get("quorum")
        && let Some(n) = as_u64(v, "quorum", r)
    {
        if n < 2 || n as usize > endpoints {
            r.error(
                &v.span(),
                format!("{ctx}: quorum = {n} needs between 2 and the {endpoints} read endpoint(s) listed"),
                Some("list more `rpc` endpoints, or remove `quorum` to act on one endpoint's view".into()),
            );
        } else {
            w.quorum = Some(n as usize);
        }
    }
    if let Some((text, span)) = t.string("quorum_tolerance", r) {
        match units::parse_percent(text) {
            Ok(p) if p.0 >= 0.0 => w.quorum_tolerance = Some(p.0 / 100.0),
            Ok(_) => r.error(
                &span,
                format!("{ctx}: quorum_tolerance must not be negative"),
                None,
            ),
            Err(e) => r.error(
                &span,
                format!("quorum_tolerance: {}", e.message),
                Some(e.hint),
            ),
        }
    }
    for (key, slot) in [
        ("max_head_age", &mut w.max_head_age_ms),
        ("read_deadline", &mut w.read_deadline_ms),
    ] {
        match exec::duration_at(t, key, r) {
            Some((0, span)) => r.error(&span, format!("{ctx}: {key} must be longer than 0"), None),
            Some((ms, _)) => *slot = Some(ms),
            None => {}
        }
    }
    w.max_lag_blocks = t.u64("max_lag_blocks", r);
    w.stall_blocks = bounded(t, "stall_blocks", 1..=1000, ctx, r).map(|n| n as u32);
    w.screen_concurrency = bounded(t, "screen_concurrency", 1..=64, ctx, r).map(|n| n as usize);
    w.screen_queue = bounded(t, "screen_queue", 16..=1_000_000, ctx, r).map(|n| n as usize);
    w
}

/// An optional whole number in `range`; out of it is an error naming the key and the range.
fn bounded(
    t: &mut TableReader<'_, '_>,
    key: &'static str,
    range: std::ops::RangeInclusive<u64>,
    ctx: &str,
    r: &mut Reporter<'_>,
) -> Option<u64> {
    let v = t.get(key)?;
    let n = as_u64(v, key, r)?;
    if range.contains(&n) {
        return Some(n);
    }
    let (lo, hi) = (range.start(), range.end());
    r.error(
        &v.span(),
        format!("{ctx}: {key} must be between {lo} and {hi}"),
        None,
    );
    None
}

fn parse_metric(
    name: &str,
    value: &reader::Value<'_>,
    config: &Config,
    r: &mut Reporter<'_>,
) -> Option<MetricDef> {
    let ctx = format!("metric `{name}`");
    let mut t = TableReader::from_value(value, ctx.clone(), r)?;
    let description = t
        .required_string("description", r)
        .map(|(s, _)| s.to_string());
    let unit = t.string("unit", r).map(|(s, _)| s.to_string());
    let network = t.string("network", r).and_then(|(n, span)| {
        if config.networks.contains_key(n) {
            Some(n.to_string())
        } else {
            let known: Vec<&str> = config.networks.keys().map(String::as_str).collect();
            r.error(
                &span,
                format!("{ctx}: unknown network `{n}`"),
                Some(format!("networks defined: {}", known.join(", "))),
            );
            None
        }
    });
    let source_value = t.get("source");
    let source = source_value.and_then(|v| sources::parse_source(name, v, r));
    if source_value.is_some() && network.is_none() && !t.has("network") {
        r.error(
            &t.span,
            format!("{ctx} reads from a chain (`source`) but names no `network`"),
            None,
        );
    }
    t.finish(r);
    Some(MetricDef {
        name: name.to_string(),
        description: description?,
        unit,
        network,
        source,
    })
}

fn parse_action(
    name: &str,
    value: &reader::Value<'_>,
    config: &Config,
    r: &mut Reporter<'_>,
) -> Option<ActionDef> {
    let ctx = format!("action `{name}`");
    let mut t = TableReader::from_value(value, ctx.clone(), r)?;
    let kind = t.require("kind", r).and_then(|v| {
        as_choice(
            v,
            "action kind",
            &[
                ("pause", ActionKind::Pause),
                ("set-parameter", ActionKind::SetParameter),
            ],
            r,
        )
    });
    let description = t
        .required_string("description", r)
        .map(|(s, _)| s.to_string());
    let target = t
        .string("target", r)
        .and_then(|(s, span)| match s.parse::<Address>() {
            Ok(a) => Some(a),
            Err(_) => {
                r.error(
                    &span,
                    format!("{ctx}: `{s}` is not an address"),
                    Some("write a 0x-prefixed 20-byte hex address".into()),
                );
                None
            }
        });
    let function_span = t.get("function").map(|v| v.span());
    let function = t.string("function", r).and_then(|(s, span)| {
        if s.parse::<alloy::json_abi::Function>().is_ok() && s.contains('(') {
            Some(s.to_string())
        } else {
            r.error(
                &span,
                format!("{ctx}: `{s}` is not a function signature"),
                Some("write it as `pause()` or `setSupplyCap(uint256)`".into()),
            );
            None
        }
    });
    let executor = t.string("executor", r).and_then(|(s, span)| {
        if config.executors.contains_key(s) {
            Some(s.to_string())
        } else {
            let known: Vec<&str> = config.executors.keys().map(String::as_str).collect();
            let hint = match reader::did_you_mean(s, known.iter().copied()) {
                Some(m) => format!("did you mean `{m}`?"),
                None => format!(
                    "executors defined: {}",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            };
            r.error(&span, format!("{ctx}: unknown executor `{s}`"), Some(hint));
            None
        }
    });
    let cooldown_ms = exec::duration(&mut t, "cooldown", r).unwrap_or(0);
    let pause = exec::parse_pause(&mut t, function.as_deref(), r);
    let parameter = match kind {
        Some(ActionKind::SetParameter) => exec::parse_parameter(&mut t, r),
        _ => None,
    };
    if kind == Some(ActionKind::SetParameter)
        && let Some(f) = &function
        && let Ok(parsed) = f.parse::<alloy::json_abi::Function>()
        && (parsed.inputs.len() != 1 || parsed.inputs[0].ty != "uint256")
    {
        r.error(
            &t.span,
            format!("{ctx}: a set-parameter function takes one uint256, `{f}` does not"),
            None,
        );
    }
    if kind == Some(ActionKind::Pause)
        && let Some(f) = &function
        && let Ok(parsed) = f.parse::<alloy::json_abi::Function>()
        && !parsed.inputs.is_empty()
        && pause.flags.is_none()
    {
        r.error(
            &t.span,
            format!("{ctx}: `{f}` takes arguments; describe them with `flags`"),
            Some("flags = { getters = [\"isSupplyPaused()\", ...], set = [true, ...] }".into()),
        );
    }
    let timing = exec::parse_timing(&mut t, kind, r);
    if let (Some(kind), Some(f), Some(span)) = (kind, &function, &function_span) {
        exec::check_call(&ctx, kind, f, span, parameter.as_ref(), r);
    }
    t.finish(r);
    Some(ActionDef {
        name: name.to_string(),
        kind: kind?,
        description: description?,
        target,
        function,
        executor,
        cooldown_ms,
        pause,
        parameter,
        timing,
    })
}

/// Checks a window against the history the configuration keeps.
pub fn window_fits(config: &Config, window: Window) -> Result<(), String> {
    match window {
        Window::Blocks(n) if n > config.history_blocks => Err(format!(
            "the window of {window} is longer than the history kept ({} blocks)",
            config.history_blocks
        )),
        Window::Millis(ms) if ms > config.history_ms => Err(format!(
            "the window of {window} is longer than the history kept ({})",
            units::DisplayMillis(config.history_ms)
        )),
        _ => Ok(()),
    }
}

/// The start of a configuration for unit tests: enforce mode, one local
/// network at `rpc` and one key `bot` read from the environment variable `BOT`.
#[cfg(test)]
pub(crate) fn test_head(rpc: &str) -> String {
    let network = text::LocalNetwork::new(Mode::Enforce, &[rpc], &[]);
    format!("{network}{}", text::env_key("bot", "BOT"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str) -> Result<Config, Diagnostics> {
        Config::from_text("guardian.toml", text.to_string())
    }

    #[test]
    fn a_full_config_loads() {
        let c = load_str(
            r#"
[guardian]
mode = "dry-run"
policies = ["policies/demo"]
history_blocks = 500
history = "2h"

[bind]
"bridge.withdrawals" = "nomad.attack_txs"

[networks.local]
chain_id = 31337
rpc = ["http://127.0.0.1:8545"]
block_time = "1s"

[keys.bot]
source = "env"
env = "GUARDIAN_BOT_KEY"

[executors.module]
kind = "module"
module = "0x0000000000000000000000000000000000000001"
key = "bot"
network = "local"

[metrics."nomad.attack_txs"]
description = "exploit txs per block"
unit = "count"

[metrics."vault.total_assets"]
description = "assets held"
network = "local"
source = { kind = "call", to = "0x0000000000000000000000000000000000000002", signature = "totalAssets()(uint256)" }

[actions.pause-vault]
kind = "pause"
description = "pause the vault"
target = "0x0000000000000000000000000000000000000002"
function = "pause()"
executor = "module"
"#,
        )
        .unwrap();
        assert_eq!(c.mode, Mode::DryRun);
        assert_eq!(c.history_blocks, 500);
        assert_eq!(c.history_ms, 7_200_000);
        assert_eq!(c.bound_name("bridge.withdrawals"), "nomad.attack_txs");
        assert_eq!(c.metrics.len(), 2);
        assert_eq!(c.actions["pause-vault"].executor.as_deref(), Some("module"));
    }

    #[test]
    fn every_problem_is_reported() {
        let err = load_str(
            r#"
[guardian]
mode = "enforced"
histroy = "2h"

[networks.local]
chain_id = "one"

[metrics.x]
source = { kind = "cal" }

[actions.a]
kind = "pause"
description = "x"
target = "0x12"
executor = "nobody"
"#,
        )
        .unwrap_err();
        let text = err.to_string();
        for needle in [
            "`enforced` is not a valid mode",
            "unknown field `histroy`",
            "chain_id must be a whole number",
            "needs at least one `rpc` or `ws`",
            "metric `x` is missing `description`",
            "`cal` is not a metric source kind",
            "`0x12` is not an address",
            "unknown executor `nobody`",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        assert!(err.len() >= 8);
    }

    #[test]
    fn ratios_name_per_block_metrics_of_their_network() {
        let network = text::LocalNetwork::new(Mode::DryRun, &["http://127.0.0.1:8545"], &[]);
        let base = format!(
            r#"{network}
[metrics."market.borrows"]
description = "borrowed"
network = "local"
source = {{ kind = "call", to = "0x0000000000000000000000000000000000000002", signature = "totalBorrows()(uint256)", decimals = 18 }}

[metrics."market.supply"]
description = "supplied"
network = "local"
source = {{ kind = "call", to = "0x0000000000000000000000000000000000000002", signature = "totalSupplied()(uint256)", decimals = 18 }}
"#
        );
        let ok = load_str(&format!(
            "{base}\n[metrics.\"market.utilization\"]\ndescription = \"u\"\nnetwork = \"local\"\nsource = {{ kind = \"ratio\", numerator = \"market.borrows\", denominator = \"market.supply\" }}\n"
        ))
        .unwrap();
        assert!(matches!(
            ok.metric("market.utilization")
                .and_then(|m| m.source.as_ref()),
            Some(SourceSpec::Ratio { .. })
        ));
        let err = load_str(&format!(
            "{base}\n[metrics.\"market.utilization\"]\ndescription = \"u\"\nnetwork = \"local\"\nsource = {{ kind = \"ratio\", numerator = \"market.borowed\", denominator = \"market.supply\" }}\n"
        ))
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("guardian.toml:21:10: metric `market.utilization`: the ratio's `market.borowed` is not defined"),
            "{err}"
        );
    }

    #[test]
    fn keys_example_loads_and_names_every_source() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/keys.example")).unwrap();
        // keys.example holds the [keys] part of a guardian.toml.
        let c = load_str(&format!("[guardian]\nmode = \"dry-run\"\n\n{text}")).unwrap();
        assert_eq!(c.keys.len(), 3);
        assert!(matches!(
            c.keys["guardian-bot"].source,
            KeySource::Env { ref var } if var == "GUARDIAN_BOT_KEY"
        ));
        assert!(matches!(
            c.keys["safe-owner-1"].source,
            KeySource::Keystore {
                passphrase: PassphraseSource::File(_),
                ..
            }
        ));
    }

    #[test]
    fn executors_keys_and_action_bounds_are_typed() {
        let network = text::LocalNetwork::new(Mode::Enforce, &["http://127.0.0.1:8545"], &[]);
        let c = load_str(&format!(
            r#"{network}{key_a}
[keys.b]
source = "keystore"
path = "b.json"
passphrase_env = "B_PASS"

[guard]
target_cooldown = "5m"
rate_limit = "10/1h"
target_rate_limit = "2/1h"

[executors.owners]
kind = "safe-owners"
safe = "0x0000000000000000000000000000000000000005"
keys = ["a", "b"]
network = "local"
max_fee_gwei = 100
priority_fee_gwei = 3
deadline = "30s"

[executors.council]
kind = "propose"
safe = "0x0000000000000000000000000000000000000005"
keys = ["a"]
outbox = "outbox"
service_url = "http://127.0.0.1:9/api"

[actions.pause-comet]
kind = "pause"
description = "pause supply and withdraw"
target = "0x0000000000000000000000000000000000000002"
function = "pause(bool,bool,bool,bool,bool)"
executor = "owners"
cooldown = "10m"
flags = {{ getters = ["isSupplyPaused()", "isTransferPaused()", "isWithdrawPaused()", "isAbsorbPaused()", "isBuyPaused()"], set = [true, false, true, false, false] }}

[actions.lower-cap]
kind = "set-parameter"
description = "lower the supply cap"
target = "0x0000000000000000000000000000000000000002"
function = "setSupplyCap(uint256)"
executor = "owners"
getter = "supplyCap()"
min = 0
max = "1000000000000000000000000"
max_change_bps = 5000
min_delay = "1h"
value = {{ step_bps = 2500, direction = "down" }}
"#,
            key_a = text::env_key("a", "A"),
        ))
        .unwrap();
        assert_eq!(c.guard.target_cooldown_ms, 300_000);
        assert_eq!(
            c.guard.rate_limit,
            Some(RateLimit {
                count: 10,
                per_ms: 3_600_000
            })
        );
        let owners = &c.executors["owners"];
        assert_eq!(owners.kind.key_names(), vec!["a", "b"]);
        assert_eq!(owners.delivery.max_fee_cap_wei, 100_000_000_000);
        assert_eq!(owners.delivery.deadline_ms, 30_000);
        let pause = &c.actions["pause-comet"];
        assert_eq!(pause.cooldown_ms, 600_000);
        assert_eq!(
            pause.pause.flags.as_ref().unwrap().set,
            vec![true, false, true, false, false]
        );
        let p = c.actions["lower-cap"].parameter.as_ref().unwrap();
        assert_eq!(p.max, alloy::primitives::U256::from(10u128.pow(24)));
        assert_eq!(p.min_delay_ms, 3_600_000);
        assert_eq!(
            p.value,
            ValuePolicy::StepBps {
                bps: 2500,
                down: true
            }
        );
    }

    #[test]
    fn executor_and_action_mistakes_are_located() {
        let err = load_str(
            r#"
[keys.a]
source = "env"
env = "A"
private_key = "0xabc"

[keys.b]
source = "kms"

[executors.x]
kind = "eoa"
key = "c"

[executors.y]
kind = "safe-owners"
safe = "nope"
keys = []

[actions.p]
kind = "pause"
description = "x"
function = "pause(bool)"

[actions.s]
kind = "set-parameter"
description = "x"
function = "setCap(uint256)"
getter = "cap()"
min = 10
max = 5
max_change_bps = 20000
value = -1
"#,
        )
        .unwrap_err();
        let text = err.to_string();
        for needle in [
            "secrets are never written in the configuration",
            "`kms` is not a key source",
            "unknown key `c`",
            "`nope` is not an address",
            "keys is empty",
            "takes arguments; describe them with `flags`",
            "missing `min_delay`",
            "value must be a whole number of at least 0",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        assert!(!text.contains("0xabc"));
    }

    #[test]
    fn watch_limits_load_and_bad_ones_are_located() {
        let c = load_str(
            "[guardian]\nmode = \"enforce\"\n[networks.m]\nchain_id = 1\nrpc = [\"http://a\", \"http://b\", \"http://c\"]\nquorum = 2\nquorum_tolerance = \"0.1%\"\nmax_head_age = \"36s\"\nmax_lag_blocks = 2\nstall_blocks = 4\nread_deadline = \"3s\"\n",
        )
        .unwrap_or_else(|d| panic!("{d}"));
        let w = &c.networks["m"].watch;
        assert_eq!(w.quorum, Some(2));
        assert!((w.quorum_tolerance.unwrap() - 0.001).abs() < 1e-12);
        assert_eq!(
            (
                w.max_head_age_ms,
                w.max_lag_blocks,
                w.stall_blocks,
                w.read_deadline_ms
            ),
            (Some(36_000), Some(2), Some(4), Some(3_000))
        );
        let e = load_str(
            "[guardian]\nmode = \"enforce\"\n[networks.m]\nchain_id = 1\nrpc = [\"http://a\"]\nquorum = 2\nstall_blocks = 0\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("quorum = 2 needs between 2 and the 1 read endpoint(s) listed"),
            "{e}"
        );
        assert!(e.contains("stall_blocks must be between 1 and 1000"), "{e}");
    }
}
