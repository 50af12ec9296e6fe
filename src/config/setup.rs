//! `[setup]`: the GuardianModule set-up the protocol's Safe signs.
//!
//! The section names the Safe, the module executor whose actions the module
//! must allow, the guardian bot *addresses* (never keys) and the module's own
//! per-target limits. `guardian setup plan` turns it into Safe transactions,
//! `guardian setup verify` compares it with the chain (see [`crate::setup`]).
//!
//! Everything the module would refuse is refused here, at load, with its
//! location: a pause action without `paused_getter`, a pause function with
//! arguments, `unpause()`, a duration above the module's 365-day maximum.

use std::collections::BTreeMap;

use alloy::primitives::{Address, B256};

use super::exec::{self, RateLimit};
use super::reader::{self, Reporter, TableReader, as_array, as_bool};
use super::{ActionKind, Config, ExecutorKind};

/// The longest cooldown, period or minimum delay the module accepts (`MAX_DURATION`).
pub const MODULE_MAX_DURATION_S: u64 = 365 * 86_400;
/// `unpause()`: the module refuses it as a pause function.
pub const UNPAUSE_SELECTOR: [u8; 4] = [0x3f, 0x4b, 0xa8, 0x3a];

/// A validated `[setup]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupDef {
    /// The protocol's Safe: it configures the module and holds the roles the module uses.
    pub safe: Address,
    /// The `module` executor whose actions are granted.
    pub executor: String,
    /// The module's address (the executor's `module`).
    pub module: Address,
    /// The network the executor sends to.
    pub network: String,
    /// Guardian bot addresses the module accepts.
    pub guardians: Vec<Address>,
    /// The module's cooldown between two guardian actions on one target.
    pub target_cooldown_ms: u64,
    /// The module's cap on guardian actions per target and period.
    pub target_rate_limit: RateLimit,
    /// Targets with limits of their own (`[setup.targets."0x…"]`).
    pub targets: BTreeMap<Address, TargetLimitsDef>,
    /// CREATE2 salt when the module is deployed through the deterministic deployment proxy.
    pub salt: B256,
    /// Block the module was deployed at (or earlier): where `verify` starts reading its events.
    pub from_block: u64,
    /// Run `setup verify` before `guardian run` starts, and refuse to start on a difference.
    pub verify_before_run: bool,
    /// An Aave V3 market's ACLManager: the module's targets are `AaveV3RoleHolder`s
    /// that must hold EMERGENCY_ADMIN / RISK_ADMIN in it (see `setup::aave`).
    pub aave_acl_manager: Option<Address>,
}

/// The module's limits on one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetLimitsDef {
    pub cooldown_ms: u64,
    pub rate_limit: RateLimit,
}

impl SetupDef {
    /// The limits the module must hold for `target`.
    pub fn limits_of(&self, target: Address) -> TargetLimitsDef {
        self.targets
            .get(&target)
            .copied()
            .unwrap_or(TargetLimitsDef {
                cooldown_ms: self.target_cooldown_ms,
                rate_limit: self.target_rate_limit,
            })
    }
}

fn check_durations(
    what: &str,
    cooldown_ms: Option<u64>,
    rate: Option<RateLimit>,
    span: &std::ops::Range<usize>,
    r: &mut Reporter<'_>,
) {
    for (name, ms) in [
        ("target_cooldown", cooldown_ms),
        ("target_rate_limit's period", rate.map(|l| l.per_ms)),
    ] {
        if let Some(ms) = ms
            && ms.div_ceil(1000) > MODULE_MAX_DURATION_S
        {
            r.error(
                span,
                format!("{what} {name} is longer than the module's maximum of 365 days"),
                None,
            );
        }
    }
}

pub(super) fn parse_setup(
    value: &reader::Value<'_>,
    config: &Config,
    r: &mut Reporter<'_>,
) -> Option<SetupDef> {
    let mut t = TableReader::from_value(value, "[setup]", r)?;
    let span = t.span.clone();
    let safe = t
        .require("safe", r)
        .and_then(|v| exec::address(v, "[setup] safe", r));
    let executor = module_executor(&mut t, config, r);
    let guardians = guardians(&mut t, r);
    refuse_keys(&mut t, &span, r);
    let target_cooldown_ms =
        exec::duration(&mut t, "target_cooldown", r).unwrap_or(config.guard.target_cooldown_ms);
    let target_rate_limit = target_rate_limit(&mut t, config, &span, r);
    let salt = salt(&mut t, r);
    let from_block = t
        .get("from_block")
        .and_then(|v| reader::as_u64(v, "[setup] from_block", r))
        .unwrap_or(0);
    let verify_before_run = t
        .get("verify_before_run")
        .and_then(|v| as_bool(v, "[setup] verify_before_run", r))
        .unwrap_or(true);
    check_durations(
        "[setup]",
        Some(target_cooldown_ms),
        target_rate_limit,
        &span,
        r,
    );
    let defaults = target_rate_limit.map(|rate_limit| TargetLimitsDef {
        cooldown_ms: target_cooldown_ms,
        rate_limit,
    });
    let module_executor = executor.as_ref().map(|(name, _, _)| name.as_str());
    let targets = targets(&mut t, config, module_executor, defaults, r);
    let aave_acl_manager = t
        .get("aave_acl_manager")
        .and_then(|v| exec::address(v, "[setup] aave_acl_manager", r));
    t.finish(r);

    // Every action of the module executor must be one the module can grant.
    if let (Some((exec_name, module, _)), Some(safe)) = (&executor, safe) {
        for action in config
            .actions
            .values()
            .filter(|a| a.executor.as_deref() == Some(exec_name.as_str()))
        {
            check_action(action, safe, *module, &span, r);
        }
    }
    let (executor, module, network) = executor?;
    Some(SetupDef {
        safe: safe?,
        executor,
        module,
        network,
        guardians,
        target_cooldown_ms,
        target_rate_limit: target_rate_limit?,
        targets,
        salt: salt?,
        from_block,
        verify_before_run,
        aave_acl_manager,
    })
}

/// `executor`: the name, module and network of a `module` executor.
fn module_executor(
    t: &mut TableReader<'_, '_>,
    config: &Config,
    r: &mut Reporter<'_>,
) -> Option<(String, Address, String)> {
    t.required_string("executor", r)
        .and_then(|(name, s)| match config.executors.get(name) {
            Some(def) => match (&def.kind, &def.network) {
                (ExecutorKind::Module { module, .. }, Some(network)) => {
                    Some((name.to_string(), *module, network.clone()))
                }
                (ExecutorKind::Module { .. }, None) => {
                    r.error(
                        &s,
                        format!("[setup] executor `{name}` names no `network`"),
                        Some("the set-up is read from and planned for that network".into()),
                    );
                    None
                }
                (other, _) => {
                    r.error(
                        &s,
                        format!(
                            "[setup] executor `{name}` is of kind `{}`, not `module`",
                            other.as_str()
                        ),
                        Some("name the executor that calls the GuardianModule".into()),
                    );
                    None
                }
            },
            None => {
                let known: Vec<&str> = config
                    .executors
                    .iter()
                    .filter(|(_, d)| matches!(d.kind, ExecutorKind::Module { .. }))
                    .map(|(n, _)| n.as_str())
                    .collect();
                r.error(
                    &s,
                    format!("[setup] executor: unknown executor `{name}`"),
                    Some(if known.is_empty() {
                        "define an [executors.<name>] of kind \"module\"".into()
                    } else {
                        format!("module executors defined: {}", known.join(", "))
                    }),
                );
                None
            }
        })
}

/// `guardians`: the bot addresses, each once, none zero, at least one.
fn guardians(t: &mut TableReader<'_, '_>, r: &mut Reporter<'_>) -> Vec<Address> {
    let mut guardians = Vec::new();
    if let Some(v) = t.require("guardians", r) {
        for item in as_array(v, "[setup] guardians", r).unwrap_or_default() {
            if let Some(a) = exec::address(item, "[setup] guardians", r) {
                if guardians.contains(&a) {
                    r.error(
                        &item.span(),
                        format!("[setup] guardians: {a} is listed twice"),
                        None,
                    );
                } else if a == Address::ZERO {
                    r.error(
                        &item.span(),
                        "[setup] guardians: the zero address cannot be a guardian",
                        None,
                    );
                } else {
                    guardians.push(a);
                }
            }
        }
        if guardians.is_empty() && as_array(v, "[setup] guardians", r).is_some() {
            r.error(
                &v.span(),
                "[setup] guardians is empty",
                Some("list the address of each guardian bot key (never the key itself)".into()),
            );
        }
    }
    guardians
}

/// Keys never belong in `[setup]`: refused, and their fields taken as read.
fn refuse_keys(t: &mut TableReader<'_, '_>, span: &std::ops::Range<usize>, r: &mut Reporter<'_>) {
    if t.entries()
        .any(|(k, _, _)| matches!(k, "key" | "private_key" | "keys"))
    {
        r.error(
            span,
            "[setup] names guardians by address; keys are never written in the configuration",
            Some("list addresses under `guardians`; keys go under [keys.<name>]".into()),
        );
        for k in ["key", "private_key", "keys"] {
            t.get(k);
        }
    }
}

/// `target_rate_limit`, else `[guard] target_rate_limit`; one of them is needed.
fn target_rate_limit(
    t: &mut TableReader<'_, '_>,
    config: &Config,
    span: &std::ops::Range<usize>,
    r: &mut Reporter<'_>,
) -> Option<RateLimit> {
    if t.has("target_rate_limit") {
        exec::rate(t, "target_rate_limit", r)
    } else if let Some(rate) = config.guard.target_rate_limit {
        Some(rate)
    } else {
        r.error(
            span,
            "[setup] needs `target_rate_limit` (or [guard] target_rate_limit)",
            Some(
                "the module refuses every action on a target without limits; e.g. target_rate_limit = \"3/1d\""
                    .into(),
            ),
        );
        None
    }
}

/// `salt`: the CREATE2 salt, zero when absent.
fn salt(t: &mut TableReader<'_, '_>, r: &mut Reporter<'_>) -> Option<B256> {
    match t.string("salt", r) {
        None => Some(B256::ZERO),
        Some((s, span)) => match parse_salt(s) {
            Some(b) => Some(b),
            None => {
                r.error(
                    &span,
                    format!("[setup] salt: `{s}` is not a 32-byte hex value"),
                    Some("write it as 0x followed by up to 64 hex digits, e.g. \"0x1\"".into()),
                );
                None
            }
        },
    }
}

/// `[setup.targets."0x…"]`: each target's own limits over `defaults`; a
/// target no action of the module executor calls is refused.
fn targets(
    t: &mut TableReader<'_, '_>,
    config: &Config,
    module_executor: Option<&str>,
    defaults: Option<TargetLimitsDef>,
    r: &mut Reporter<'_>,
) -> BTreeMap<Address, TargetLimitsDef> {
    let mut targets = BTreeMap::new();
    if let Some(v) = t.get("targets")
        && let Some(tt) = TableReader::from_value(v, "[setup.targets]", r)
    {
        for (key, kspan, value) in tt.entries() {
            let Ok(target) = key.parse::<Address>() else {
                r.error(
                    &kspan,
                    format!("[setup.targets]: `{key}` is not an address"),
                    Some("name each target by its address: [setup.targets.\"0x…\"]".into()),
                );
                continue;
            };
            let ctx = format!("[setup.targets.\"{key}\"]");
            let Some(mut o) = TableReader::from_value(value, ctx.clone(), r) else {
                continue;
            };
            let cooldown = exec::duration(&mut o, "target_cooldown", r);
            let rate = if o.has("target_rate_limit") {
                exec::rate(&mut o, "target_rate_limit", r)
            } else {
                None
            };
            check_durations(&ctx, cooldown, rate, &kspan, r);
            o.finish(r);
            let used = module_executor.is_some_and(|name| {
                config
                    .actions
                    .values()
                    .any(|a| a.executor.as_deref() == Some(name) && a.target == Some(target))
            });
            if !used {
                r.error(
                    &kspan,
                    format!("{ctx}: no action of the module executor targets {target}"),
                    Some("limits are set for the targets the module's actions call".into()),
                );
            }
            if let Some(d) = defaults {
                targets.insert(
                    target,
                    TargetLimitsDef {
                        cooldown_ms: cooldown.unwrap_or(d.cooldown_ms),
                        rate_limit: rate.unwrap_or(d.rate_limit),
                    },
                );
            }
        }
    }
    targets
}

fn check_action(
    action: &super::ActionDef,
    safe: Address,
    module: Address,
    span: &std::ops::Range<usize>,
    r: &mut Reporter<'_>,
) {
    let ctx = format!("[setup]: action `{}` (executor of the module)", action.name);
    match action.target {
        None => r.error(span, format!("{ctx} has no `target`"), None),
        Some(t) if t == safe || t == module => r.error(
            span,
            format!("{ctx} targets the Safe or the module itself, which the module forbids"),
            None,
        ),
        Some(_) => {}
    }
    let Some(function) = &action.function else {
        r.error(span, format!("{ctx} has no `function`"), None);
        return;
    };
    let Ok(parsed) = function.parse::<alloy::json_abi::Function>() else {
        return;
    };
    match action.kind {
        ActionKind::Pause => {
            if !parsed.inputs.is_empty() || action.pause.flags.is_some() {
                r.error(
                    span,
                    format!("{ctx}: the module only calls pause functions without arguments, `{function}` takes some"),
                    Some("use a `safe-owners` or `propose` executor for this action".into()),
                );
            }
            if parsed.selector().0 == UNPAUSE_SELECTOR {
                r.error(
                    span,
                    format!("{ctx}: `unpause()` can never be granted to guardians"),
                    None,
                );
            }
            if action.pause.paused_getter.is_none() {
                r.error(
                    span,
                    format!("{ctx} has no `paused_getter`"),
                    Some("the module reads it before and after pausing; e.g. paused_getter = \"paused()\"".into()),
                );
            }
        }
        ActionKind::SetParameter => {
            if let Some(p) = &action.parameter
                && p.min_delay_ms.div_ceil(1000) > MODULE_MAX_DURATION_S
            {
                r.error(
                    span,
                    format!("{ctx}: min_delay is longer than the module's maximum of 365 days"),
                    None,
                );
            }
        }
    }
}

/// `0x` + up to 64 hex digits, left-padded to 32 bytes.
pub fn parse_salt(s: &str) -> Option<B256> {
    let hex = s.strip_prefix("0x")?;
    if hex.is_empty() || hex.len() > 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let padded = format!("{hex:0>64}");
    padded.parse::<B256>().ok()
}

#[cfg(test)]
mod tests {
    use super::super::reader::Diagnostics;
    use super::*;

    fn load(tail: &str) -> Result<Config, Diagnostics> {
        let head = crate::config::test_head("http://127.0.0.1:8545");
        let text = format!(
            r#"
{head}
[executors.module]
kind = "module"
module = "0x00000000000000000000000000000000000000aa"
key = "bot"
network = "local"

[executors.direct]
kind = "eoa"
key = "bot"
network = "local"
{tail}
"#
        );
        Config::from_text("guardian.toml", text)
    }

    /// A pause action the module can grant: `p`, through the module executor.
    const MODULE_PAUSE: &str = r#"
[actions.p]
kind = "pause"
description = "p"
target = "0x00000000000000000000000000000000000000bb"
function = "pause()"
paused_getter = "paused()"
executor = "module"
"#;

    /// A `[setup]` section's start: the Safe, the module executor, one guardian.
    const MODULE_SETUP: &str = r#"[setup]
safe = "0x00000000000000000000000000000000000000cc"
executor = "module"
guardians = ["0x00000000000000000000000000000000000000dd"]
"#;

    #[test]
    fn a_setup_section_loads_with_defaults_from_the_guard() {
        let c = load(&format!(
            r#"
[guard]
target_cooldown = "5m"
target_rate_limit = "2/1h"
{MODULE_PAUSE}
{MODULE_SETUP}salt = "0x2a"
"#
        ))
        .unwrap();
        let s = c.setup.unwrap();
        assert_eq!(s.target_cooldown_ms, 300_000);
        assert_eq!(s.target_rate_limit.count, 2);
        assert_eq!(s.salt, B256::with_last_byte(0x2a));
        assert_eq!(s.network, "local");
        assert!(s.verify_before_run);
        assert!(s.targets.is_empty());
    }

    #[test]
    fn a_target_may_have_limits_of_its_own() {
        let c = load(&format!(
            r#"{MODULE_PAUSE}
{MODULE_SETUP}target_cooldown = "10m"
target_rate_limit = "3/1d"

[setup.targets."0x00000000000000000000000000000000000000bb"]
target_rate_limit = "1/1d"
"#
        ))
        .unwrap();
        let s = c.setup.unwrap();
        let l = s.limits_of(
            "0x00000000000000000000000000000000000000bb"
                .parse()
                .unwrap(),
        );
        assert_eq!((l.cooldown_ms, l.rate_limit.count), (600_000, 1));
        let err = load(&format!(
            r#"{MODULE_SETUP}target_rate_limit = "3/1d"

[setup.targets."0x00000000000000000000000000000000000000ee"]
target_cooldown = "1h"

[setup.targets.vault]
target_cooldown = "1h"
"#
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("no action of the module executor targets 0x00000000000000000000000000000000000000eE"), "{err}");
        assert!(err.contains("`vault` is not an address"), "{err}");
    }

    /// Two pause actions through the module: `p` without a paused getter,
    /// `u` calling `unpause()`.
    const MODULE_PAUSES: &str = r#"
[actions.p]
kind = "pause"
description = "p"
target = "0x00000000000000000000000000000000000000bb"
function = "pause()"
executor = "module"

[actions.u]
kind = "pause"
description = "u"
target = "0x00000000000000000000000000000000000000cc"
function = "unpause()"
paused_getter = "paused()"
executor = "module"
"#;

    #[test]
    fn what_the_module_would_refuse_is_refused_at_load_with_its_location() {
        let bad_section = r#"[setup]
safe = "0x00000000000000000000000000000000000000cc"
executor = "direct"
guardians = ["0x00000000000000000000000000000000000000dd", "0x00000000000000000000000000000000000000dd"]
private_key = "0xabc"
"#;
        for (setup, needles) in [
            (
                bad_section.to_string(),
                [
                    "[setup] executor `direct` is of kind `eoa`, not `module`",
                    "listed twice",
                    "keys are never written in the configuration",
                    "needs `target_rate_limit`",
                ],
            ),
            (
                format!("{MODULE_SETUP}target_rate_limit = \"3/400d\"\n"),
                [
                    "guardian.toml:39:1: [setup]: action `p` (executor of the module) has no `paused_getter`",
                    "action `u` (executor of the module) targets the Safe or the module itself",
                    "`unpause()` can never be granted",
                    "longer than the module's maximum of 365 days",
                ],
            ),
        ] {
            let err = load(&format!("{MODULE_PAUSES}\n{setup}"))
                .unwrap_err()
                .to_string();
            for needle in needles {
                assert!(err.contains(needle), "missing {needle:?} in\n{err}");
            }
            assert!(
                !err.contains("0xabc"),
                "a key in the configuration leaked:\n{err}"
            );
        }
    }
}
