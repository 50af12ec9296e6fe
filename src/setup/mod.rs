//! Onboarding: the GuardianModule set-up a protocol's Safe signs, and its check.
//!
//! One comparison drives both commands:
//!
//! ```text
//!  guardian.toml [setup] + module actions ──> Desired ─┐
//!                                                     ├─ diff ──> [Difference]
//!  chain (module code, Safe, views, events) ──> Actual ┘
//!        `setup verify`: print every difference, exit 1 on any
//!        `setup plan`:   turn each difference into the Safe transaction that fixes it
//! ```
//!
//! A plan against a chain where nothing exists yet ([`Actual::nothing`], or
//! `--fresh`) is the full set-up: deploy the module through the deterministic
//! CREATE2 deployment proxy, enable it on the Safe, add the guardians, grant
//! each permission with its bounds, set each target's limits. A plan against a
//! partly configured module holds only what is missing or different, so the
//! same command also updates a set-up after the configuration changed.
//!
//! Nothing here signs or sends: the transactions go to the Safe's owners as a
//! Transaction Builder batch ([`txbuilder`]).

pub mod aave;
pub mod cmd;
pub mod plan;
pub mod txbuilder;
pub mod verify;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use alloy::primitives::{Address, B256, Bytes, FixedBytes, U256, address};
use alloy::sol_types::SolCall;

use crate::config::setup::SetupDef;
use crate::config::{ActionKind, Config};
use crate::executor::GuardianModule;

/// The deterministic deployment proxy (Arachnid's CREATE2 factory), at the same
/// address on mainnet, most L2s and anvil: calldata `salt ++ initcode`.
pub const CREATE2_DEPLOYER: Address = address!("4e59b44847b379578588920ca78fbf26c0b4956c");

/// Why a set-up cannot be planned or verified. Never carries an RPC URL.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("the configuration has no [setup] section")]
    NoSetup,
    #[error("network `{0}` has no http(s) rpc endpoint to read the chain from")]
    NoEndpoint(String),
    #[error("{0}")]
    Conflict(String),
    #[error("rpc {what}: {reason}")]
    Rpc { what: String, reason: String },
    #[error("the node's chain id is {actual}, network `{network}` says {expected}")]
    WrongChain {
        network: String,
        expected: u64,
        actual: u64,
    },
    #[error("{0}")]
    CannotPlan(String),
}

/// A pause the module must allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PauseGrant {
    pub target: Address,
    pub function: String,
    pub selector: FixedBytes<4>,
    pub getter_sig: String,
    pub getter: FixedBytes<4>,
    /// The configuration's actions this grant serves.
    pub actions: Vec<String>,
}

/// A parameter setter the module must allow, with its bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterGrant {
    pub target: Address,
    pub function: String,
    pub setter: FixedBytes<4>,
    pub getter_sig: String,
    pub getter: FixedBytes<4>,
    pub min: U256,
    pub max: U256,
    pub max_change_bps: u64,
    pub min_delay_s: u64,
    pub actions: Vec<String>,
}

/// The module's limits on one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub cooldown_s: u64,
    pub max_actions: u64,
    pub period_s: u64,
}

impl fmt::Display for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cooldown {}, at most {} action(s) per {}",
            secs(self.cooldown_s),
            self.max_actions,
            secs(self.period_s)
        )
    }
}

fn secs(s: u64) -> String {
    crate::units::DisplayMillis(s.saturating_mul(1000)).to_string()
}

/// What the configuration asks the chain to hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub safe: Address,
    pub module: Address,
    pub network: String,
    pub chain_id: u64,
    pub executor: String,
    pub guardians: Vec<Address>,
    pub pauses: Vec<PauseGrant>,
    pub parameters: Vec<ParameterGrant>,
    /// Limits per target, for every target some grant names.
    pub limits: BTreeMap<Address, Limits>,
    pub salt: B256,
    pub from_block: u64,
    /// Aave V3 roles the role-holder targets need (`[setup] aave_acl_manager`).
    pub aave_roles: Vec<aave::AaveRoleGrant>,
}

fn selector(sig: &str) -> FixedBytes<4> {
    sig.parse::<alloy::json_abi::Function>()
        .map(|f| f.selector())
        .unwrap_or_default()
}

impl Desired {
    /// The set-up a loaded configuration describes. The configuration was
    /// validated at load; what is left to refuse here is two actions asking the
    /// module for different bounds on the same setter.
    pub fn from_config(config: &Config) -> Result<Desired, SetupError> {
        let setup: &SetupDef = config.setup.as_ref().ok_or(SetupError::NoSetup)?;
        let chain_id = config
            .networks
            .get(&setup.network)
            .map(|n| n.chain_id)
            .unwrap_or_default();
        let mut pauses: Vec<PauseGrant> = Vec::new();
        let mut parameters: Vec<ParameterGrant> = Vec::new();
        for action in config
            .actions
            .values()
            .filter(|a| a.executor.as_deref() == Some(setup.executor.as_str()))
        {
            let (Some(target), Some(function)) = (action.target, action.function.clone()) else {
                continue;
            };
            match action.kind {
                ActionKind::Pause => {
                    let getter_sig = action.pause.paused_getter.clone().unwrap_or_default();
                    let grant = PauseGrant {
                        target,
                        selector: selector(&function),
                        getter: selector(&getter_sig),
                        function,
                        getter_sig,
                        actions: vec![action.name.clone()],
                    };
                    match pauses
                        .iter_mut()
                        .find(|p| p.target == target && p.selector == grant.selector)
                    {
                        Some(p) if p.getter == grant.getter => p.actions.push(action.name.clone()),
                        Some(p) => {
                            return Err(SetupError::Conflict(format!(
                                "actions `{}` and `{}` pause {target} with `{}` but name different paused getters (`{}`, `{}`); the module holds one per pause function",
                                p.actions[0],
                                action.name,
                                p.function,
                                p.getter_sig,
                                grant.getter_sig
                            )));
                        }
                        None => pauses.push(grant),
                    }
                }
                ActionKind::SetParameter => {
                    let Some(p) = &action.parameter else { continue };
                    let grant = ParameterGrant {
                        target,
                        setter: selector(&function),
                        getter: selector(&p.getter),
                        function,
                        getter_sig: p.getter.clone(),
                        min: p.min,
                        max: p.max,
                        max_change_bps: p.max_change_bps,
                        min_delay_s: p.min_delay_ms.div_ceil(1000),
                        actions: vec![action.name.clone()],
                    };
                    match parameters
                        .iter_mut()
                        .find(|g| g.target == target && g.setter == grant.setter)
                    {
                        Some(g) if same_bounds(g, &grant) => g.actions.push(action.name.clone()),
                        Some(g) => {
                            return Err(SetupError::Conflict(format!(
                                "actions `{}` and `{}` move `{}` on {target} with different getters or bounds; the module holds one set of bounds per setter: make them equal",
                                g.actions[0], action.name, g.function
                            )));
                        }
                        None => parameters.push(grant),
                    }
                }
            }
        }
        let limits = pauses
            .iter()
            .map(|p| p.target)
            .chain(parameters.iter().map(|p| p.target))
            .map(|t| {
                let l = setup.limits_of(t);
                let limits = Limits {
                    cooldown_s: l.cooldown_ms.div_ceil(1000),
                    max_actions: u64::from(l.rate_limit.count),
                    period_s: l.rate_limit.per_ms.div_ceil(1000),
                };
                (t, limits)
            })
            .collect();
        let aave_roles = setup
            .aave_acl_manager
            .map(|acl| aave::desired(acl, &pauses, &parameters))
            .unwrap_or_default();
        Ok(Desired {
            aave_roles,
            safe: setup.safe,
            module: setup.module,
            network: setup.network.clone(),
            chain_id,
            executor: setup.executor.clone(),
            guardians: setup.guardians.clone(),
            pauses,
            parameters,
            limits,
            salt: setup.salt,
            from_block: setup.from_block,
        })
    }

    /// The module's creation code for this Safe (bytecode ++ constructor argument).
    pub fn init_code(&self) -> Bytes {
        module_init_code(self.safe)
    }

    /// Where the deterministic deployment proxy puts the module with this salt.
    pub fn predicted_module(&self) -> Address {
        predicted_module(self.safe, self.salt)
    }
}

fn same_bounds(a: &ParameterGrant, b: &ParameterGrant) -> bool {
    (a.getter, a.min, a.max, a.max_change_bps, a.min_delay_s)
        == (b.getter, b.min, b.max, b.max_change_bps, b.min_delay_s)
}

/// GuardianModule's creation code with `safe` as its constructor argument.
pub fn module_init_code(safe: Address) -> Bytes {
    use alloy::sol_types::SolValue;
    let mut code = GuardianModule::BYTECODE.to_vec();
    code.extend_from_slice(&safe.abi_encode());
    code.into()
}

/// The address CREATE2 through [`CREATE2_DEPLOYER`] gives the module for `safe` and `salt`.
pub fn predicted_module(safe: Address, salt: B256) -> Address {
    CREATE2_DEPLOYER.create2_from_code(salt, module_init_code(safe))
}

/// What the module holds for one pause function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PauseState {
    pub allowed: bool,
    pub getter: FixedBytes<4>,
}

/// What the module holds for one setter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParameterState {
    pub allowed: bool,
    pub getter: FixedBytes<4>,
    pub min: U256,
    pub max: U256,
    pub max_change_bps: U256,
    pub min_delay_s: U256,
}

/// Whether the code at the module's address is this guardian's GuardianModule for the Safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleCode {
    /// No contract there.
    Missing,
    /// Exactly the runtime code this GuardianModule has for the configured Safe.
    Matches,
    /// Some other contract, another version of the module, or a module for another Safe.
    Differs { safe: Option<Address> },
}

/// What the chain holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actual {
    /// Whether there is a contract at the Safe's address.
    pub safe_exists: bool,
    pub code: ModuleCode,
    pub enabled: bool,
    pub guardians: Vec<Address>,
    /// Every (target, selector) the configuration names or an event ever mentioned.
    pub pauses: BTreeMap<(Address, FixedBytes<4>), PauseState>,
    pub parameters: BTreeMap<(Address, FixedBytes<4>), ParameterState>,
    /// Limits of every target the configuration names (zeros: none set).
    pub limits: BTreeMap<Address, Limits>,
    /// Pause grants the Safe itself cannot carry out today (the module would
    /// fail): the grant's index in `Desired::pauses` and why.
    pub pause_blocked: Vec<(usize, String)>,
    /// Whether each Aave role-holder has its role.
    pub aave_roles: BTreeMap<(Address, aave::AaveRole), bool>,
}

impl Actual {
    /// A chain where neither the module nor any of its settings exist.
    pub fn nothing() -> Self {
        Self {
            safe_exists: true,
            code: ModuleCode::Missing,
            enabled: false,
            guardians: Vec::new(),
            pauses: BTreeMap::new(),
            parameters: BTreeMap::new(),
            limits: BTreeMap::new(),
            pause_blocked: Vec::new(),
            aave_roles: BTreeMap::new(),
        }
    }
}

/// One way the chain differs from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// No contract at the configured Safe address: nothing else can be checked.
    SafeMissing {
        safe: Address,
    },
    ModuleMissing {
        module: Address,
    },
    ModuleCodeDiffers {
        module: Address,
        safe: Option<Address>,
    },
    ModuleNotEnabled {
        module: Address,
    },
    GuardianMissing(Address),
    GuardianExtra(Address),
    PauseMissing(PauseGrant),
    PauseGetterDiffers {
        grant: PauseGrant,
        actual: FixedBytes<4>,
    },
    PauseExtra {
        target: Address,
        selector: FixedBytes<4>,
        getter: FixedBytes<4>,
    },
    ParameterMissing(ParameterGrant),
    ParameterDiffers {
        grant: ParameterGrant,
        actual: ParameterState,
    },
    ParameterExtra {
        target: Address,
        setter: FixedBytes<4>,
        state: ParameterState,
    },
    LimitsDiffer {
        target: Address,
        want: Limits,
        actual: Limits,
    },
    /// The Safe cannot pause the target itself (no role, no such function, a
    /// getter that fails): the module's pause would revert. Fixed outside the
    /// module (grant the Safe the role, correct the action).
    PauseNotPossible {
        grant: PauseGrant,
        reason: String,
    },
    /// An Aave role-holder lacks the EMERGENCY_ADMIN / RISK_ADMIN its actions need.
    AaveRoleMissing(aave::AaveRoleGrant),
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::SafeMissing { safe } => {
                write!(
                    f,
                    "safe: no contract at {safe} (is [setup] safe right, and the network?)"
                )
            }
            Difference::ModuleMissing { module } => {
                write!(f, "module: no contract at {module}")
            }
            Difference::ModuleCodeDiffers { module, safe } => {
                write!(
                    f,
                    "module: the code at {module} is not this guardian's GuardianModule for the configured Safe"
                )?;
                if let Some(s) = safe {
                    write!(f, " (its safe() is {s})")?;
                }
                Ok(())
            }
            Difference::ModuleNotEnabled { module } => {
                write!(f, "safe: module {module} is not enabled on the Safe")
            }
            Difference::GuardianMissing(a) => write!(f, "guardians: {a} is not a guardian"),
            Difference::GuardianExtra(a) => write!(
                f,
                "guardians: {a} is a guardian on chain but not in [setup] guardians"
            ),
            Difference::PauseMissing(g) => {
                not_allowed(f, "pause", &g.function, g.target, &g.actions)
            }
            Difference::PauseGetterDiffers { grant, actual } => write!(
                f,
                "pause {} on {}: paused getter is {actual} on chain, {} ({}) in the configuration",
                grant.function, grant.target, grant.getter, grant.getter_sig
            ),
            Difference::PauseExtra {
                target,
                selector,
                getter,
            } => write!(
                f,
                "pause {selector} on {target}: allowed on chain (paused getter {getter}) but no action of the configuration uses it"
            ),
            Difference::ParameterMissing(g) => {
                not_allowed(f, "parameter", &g.function, g.target, &g.actions)
            }
            Difference::ParameterDiffers { grant, actual } => {
                write!(f, "parameter {} on {}:", grant.function, grant.target)?;
                let mut sep = " ";
                let mut field = |f: &mut fmt::Formatter<'_>,
                                 name: &str,
                                 chain: String,
                                 config: String|
                 -> fmt::Result {
                    if chain != config {
                        write!(
                            f,
                            "{sep}{name} is {chain} on chain, {config} in the configuration"
                        )?;
                        sep = "; ";
                    }
                    Ok(())
                };
                field(
                    f,
                    "getter",
                    actual.getter.to_string(),
                    grant.getter.to_string(),
                )?;
                field(f, "min", actual.min.to_string(), grant.min.to_string())?;
                field(f, "max", actual.max.to_string(), grant.max.to_string())?;
                field(
                    f,
                    "max_change_bps",
                    actual.max_change_bps.to_string(),
                    grant.max_change_bps.to_string(),
                )?;
                field(
                    f,
                    "min_delay (s)",
                    actual.min_delay_s.to_string(),
                    grant.min_delay_s.to_string(),
                )
            }
            Difference::ParameterExtra { target, setter, .. } => write!(
                f,
                "parameter {setter} on {target}: allowed on chain but no action of the configuration uses it"
            ),
            Difference::AaveRoleMissing(g) => write!(
                f,
                "aave: {} does not hold {} in the ACLManager {} (action {})",
                g.holder,
                g.role,
                g.acl,
                g.actions.join(", ")
            ),
            Difference::PauseNotPossible { grant, reason } => write!(
                f,
                "pause {} on {}: the Safe itself cannot do it today, so the module's pause would fail: {reason}",
                grant.function, grant.target
            ),
            Difference::LimitsDiffer {
                target,
                want,
                actual,
            } => {
                if actual.max_actions == 0 {
                    write!(
                        f,
                        "limits on {target}: none set (the module refuses every action on it); want {want}"
                    )
                } else {
                    write!(
                        f,
                        "limits on {target}: {actual} on chain, {want} in the configuration"
                    )
                }
            }
        }
    }
}

/// "`kind` `function` on `target`: not allowed (action ...)", for a missing grant.
fn not_allowed(
    f: &mut fmt::Formatter<'_>,
    kind: &str,
    function: &str,
    target: Address,
    actions: &[String],
) -> fmt::Result {
    write!(
        f,
        "{kind} {function} on {target}: not allowed (action {})",
        actions.join(", ")
    )
}

/// Every difference between what the configuration wants and what the chain holds.
///
/// When the module is missing or is not the expected contract, only that is
/// reported: nothing else about it can be read or trusted.
pub fn diff(want: &Desired, actual: &Actual) -> Vec<Difference> {
    let mut out = Vec::new();
    if !actual.safe_exists {
        out.push(Difference::SafeMissing { safe: want.safe });
        return out;
    }
    match actual.code {
        ModuleCode::Missing => {
            out.push(Difference::ModuleMissing {
                module: want.module,
            });
        }
        ModuleCode::Differs { safe } => {
            out.push(Difference::ModuleCodeDiffers {
                module: want.module,
                safe,
            });
            return out;
        }
        ModuleCode::Matches => {}
    }
    if !actual.enabled {
        out.push(Difference::ModuleNotEnabled {
            module: want.module,
        });
    }
    for g in &want.guardians {
        if !actual.guardians.contains(g) {
            out.push(Difference::GuardianMissing(*g));
        }
    }
    for g in &actual.guardians {
        if !want.guardians.contains(g) {
            out.push(Difference::GuardianExtra(*g));
        }
    }
    pause_differences(want, actual, &mut out);
    parameter_differences(want, actual, &mut out);
    for g in &want.aave_roles {
        if !actual
            .aave_roles
            .get(&(g.holder, g.role))
            .copied()
            .unwrap_or(false)
        {
            out.push(Difference::AaveRoleMissing(g.clone()));
        }
    }
    for (i, reason) in &actual.pause_blocked {
        // A role-holder without its Aave role cannot pause: the missing role
        // (reported above, and granted by the plan) is the reason.
        let role_missing = |target: Address| {
            out.iter()
                .any(|d| matches!(d, Difference::AaveRoleMissing(g) if g.holder == target))
        };
        if let Some(grant) = want.pauses.get(*i)
            && !role_missing(grant.target)
        {
            out.push(Difference::PauseNotPossible {
                grant: grant.clone(),
                reason: reason.clone(),
            });
        }
    }
    for (target, want_limits) in &want.limits {
        let have = actual.limits.get(target).copied().unwrap_or(Limits {
            cooldown_s: 0,
            max_actions: 0,
            period_s: 0,
        });
        if have != *want_limits {
            out.push(Difference::LimitsDiffer {
                target: *target,
                want: *want_limits,
                actual: have,
            });
        }
    }
    out
}

/// Pause grants missing or reading back another getter, and pauses the module
/// allows that no action asks for.
fn pause_differences(want: &Desired, actual: &Actual, out: &mut Vec<Difference>) {
    for grant in &want.pauses {
        match actual.pauses.get(&(grant.target, grant.selector)) {
            Some(s) if s.allowed && s.getter == grant.getter => {}
            Some(s) if s.allowed => out.push(Difference::PauseGetterDiffers {
                grant: grant.clone(),
                actual: s.getter,
            }),
            _ => out.push(Difference::PauseMissing(grant.clone())),
        }
    }
    let wanted = want.pauses.iter().map(|g| (g.target, g.selector));
    for (target, selector, s) in allowed_extras(&actual.pauses, |s| s.allowed, wanted) {
        out.push(Difference::PauseExtra {
            target,
            selector,
            getter: s.getter,
        });
    }
}

/// Parameter grants missing or with other bounds, and setters the module
/// allows that no action asks for.
fn parameter_differences(want: &Desired, actual: &Actual, out: &mut Vec<Difference>) {
    for grant in &want.parameters {
        match actual.parameters.get(&(grant.target, grant.setter)) {
            Some(s) if s.allowed => {
                let same = s.getter == grant.getter
                    && s.min == grant.min
                    && s.max == grant.max
                    && s.max_change_bps == U256::from(grant.max_change_bps)
                    && s.min_delay_s == U256::from(grant.min_delay_s);
                if !same {
                    out.push(Difference::ParameterDiffers {
                        grant: grant.clone(),
                        actual: *s,
                    });
                }
            }
            _ => out.push(Difference::ParameterMissing(grant.clone())),
        }
    }
    let wanted = want.parameters.iter().map(|g| (g.target, g.setter));
    for (target, setter, s) in allowed_extras(&actual.parameters, |s| s.allowed, wanted) {
        out.push(Difference::ParameterExtra {
            target,
            setter,
            state: *s,
        });
    }
}

/// The permissions (target, selector) in `actual` that are allowed and not
/// `wanted`, in key order.
fn allowed_extras<S>(
    actual: &BTreeMap<(Address, FixedBytes<4>), S>,
    allowed: fn(&S) -> bool,
    wanted: impl Iterator<Item = (Address, FixedBytes<4>)>,
) -> impl Iterator<Item = (Address, FixedBytes<4>, &S)> {
    let wanted: BTreeSet<_> = wanted.collect();
    actual
        .iter()
        .filter(move |(key, s)| allowed(s) && !wanted.contains(key))
        .map(|(&(target, selector), s)| (target, selector, s))
}

/// One transaction of a plan: a call the Safe makes, with the function and
/// arguments the Transaction Builder shows the owners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedTx {
    pub to: Address,
    pub data: Bytes,
    /// What this transaction does, in a sentence.
    pub summary: String,
    /// The function and its arguments as the Transaction Builder takes them;
    /// `None` for raw calldata (the module deployment).
    pub method: Option<Method>,
}

/// A called function, by name, with its arguments as strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Method {
    pub name: String,
    pub args: Vec<Arg>,
}

/// One argument: its parameter name, Solidity type and value as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arg {
    pub name: String,
    pub ty: String,
    pub value: String,
}

impl PlannedTx {
    fn module_call(module: Address, summary: String, call: impl SolCall) -> Self {
        let data: Bytes = call.abi_encode().into();
        let method = method_of(&data);
        Self {
            to: module,
            data,
            summary,
            method,
        }
    }
}

/// The GuardianModule or Safe function `data` calls, with its named arguments as strings.
fn method_of(data: &Bytes) -> Option<Method> {
    use alloy::dyn_abi::{DynSolValue, JsonAbiExt};
    let f =
        planned_functions().find(|f| data.len() >= 4 && f.selector().as_slice() == &data[..4])?;
    let values = f.abi_decode_input(&data[4..]).ok()?;
    let args = f
        .inputs
        .iter()
        .zip(values)
        .map(|(p, v)| {
            let text = match v {
                DynSolValue::Address(a) => a.to_checksum(None),
                DynSolValue::Uint(u, _) => u.to_string(),
                DynSolValue::Bool(b) => b.to_string(),
                DynSolValue::FixedBytes(w, n) => format!("0x{}", alloy::hex::encode(&w[..n])),
                other => format!("{other:?}"),
            };
            Arg {
                name: p.name.clone(),
                ty: p.ty.clone(),
                value: text,
            }
        })
        .collect();
    Some(Method {
        name: f.name.clone(),
        args,
    })
}

/// The configuration functions a plan calls, with their parameter names (the
/// names the Transaction Builder shows). A signature that drifted from the
/// contract has another selector and is never matched.
const PLANNED_FUNCTIONS: [&str; 9] = [
    "function addGuardian(address guardian)",
    "function removeGuardian(address guardian)",
    "function setPausePermission(address target, bytes4 pauseSelector, bytes4 pausedGetter, bool allowed)",
    "function setParameterPermission(address target, bytes4 setterSelector, bytes4 getterSelector, uint256 min, uint256 max, uint256 maxChangeBps, uint256 minDelay)",
    "function removeParameterPermission(address target, bytes4 setterSelector)",
    "function setTargetLimits(address target, uint256 cooldown, uint256 maxActionsPerPeriod, uint256 period)",
    "function enableModule(address module)",
    "function addEmergencyAdmin(address admin)",
    "function addRiskAdmin(address admin)",
];

fn planned_functions() -> impl Iterator<Item = alloy::json_abi::Function> {
    PLANNED_FUNCTIONS.iter().filter_map(|s| s.parse().ok())
}

alloy::sol! {
    /// The Safe's module management (Safe v1.3.0 and v1.4.1).
    #[sol(rpc)]
    interface ISafeModules {
        function enableModule(address module) external;
        function isModuleEnabled(address module) external view returns (bool);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAFE: &str = "0x00000000000000000000000000000000000000cc";
    const VAULT: &str = "0x00000000000000000000000000000000000000bb";

    fn config(module: &str, extra: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("guardian.toml");
        let head = crate::config::test_head("http://127.0.0.1:9");
        std::fs::write(
            &path,
            format!(
                r#"
{head}
[executors.module]
kind = "module"
module = "{module}"
key = "bot"
network = "local"
[actions.pause-vault]
kind = "pause"
description = "p"
target = "{VAULT}"
function = "pause()"
paused_getter = "paused()"
executor = "module"
[actions.cap]
kind = "set-parameter"
description = "c"
target = "{VAULT}"
function = "setSupplyCap(uint256)"
executor = "module"
getter = "supplyCap()"
min = 1
max = 100
max_change_bps = 1000
min_delay = "90s"
value = 50
{extra}
[setup]
safe = "{SAFE}"
executor = "module"
guardians = ["0x00000000000000000000000000000000000000dd"]
target_cooldown = "1m"
target_rate_limit = "2/1h"
"#
            ),
        )
        .unwrap();
        Config::load(&path).unwrap_or_else(|e| panic!("{e}"))
    }

    fn predicted() -> String {
        predicted_module(SAFE.parse().unwrap(), B256::ZERO).to_string()
    }

    #[test]
    fn the_complete_plan_deploys_enables_adds_grants_and_limits_in_that_order() {
        let want = Desired::from_config(&config(&predicted(), "")).unwrap();
        assert_eq!(want.limits.len(), 1, "one target, one set of limits");
        let p = plan::plan(&want, &Actual::nothing(), false).unwrap();
        let first_words: Vec<&str> = p
            .txs
            .iter()
            .map(|t| t.summary.split_whitespace().next().unwrap())
            .collect();
        assert_eq!(
            first_words,
            ["Deploy", "Enable", "Add", "Allow", "Allow", "Limit"]
        );
        assert_eq!(p.txs[0].to, CREATE2_DEPLOYER);
        assert_eq!(&p.txs[0].data[..32], B256::ZERO.as_slice());
        assert_eq!(p.txs[1].to, want.safe);
        let limits = p.txs[5].method.as_ref().unwrap();
        let values: Vec<&str> = limits.args.iter().map(|a| a.value.as_str()).collect();
        assert_eq!(limits.name, "setTargetLimits");
        assert_eq!(&values[1..], ["60", "2", "3600"]);
        // min_delay "90s" -> 90 seconds on chain
        let param = p.txs[4].method.as_ref().unwrap();
        assert_eq!(param.args.last().unwrap().value, "90");
    }

    #[test]
    fn a_module_address_nothing_can_deploy_to_is_refused_with_the_address_to_use() {
        let want = Desired::from_config(&config("0x00000000000000000000000000000000000000aa", ""))
            .unwrap();
        let err = plan::plan(&want, &Actual::nothing(), false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("set `module = \"{}\"`", predicted())),
            "{err}"
        );
    }

    #[test]
    fn two_actions_asking_different_bounds_of_one_setter_are_a_conflict() {
        let c = config(
            &predicted(),
            &format!(
                r#"
[actions.cap2]
kind = "set-parameter"
description = "c2"
target = "{VAULT}"
function = "setSupplyCap(uint256)"
executor = "module"
getter = "supplyCap()"
min = 1
max = 200
max_change_bps = 1000
min_delay = "90s"
value = 50
"#
            ),
        );
        let err = Desired::from_config(&c).unwrap_err().to_string();
        assert!(err.contains("`cap` and `cap2`"), "{err}");
    }

    #[test]
    fn permissions_on_chain_that_no_action_uses_are_differences_and_are_removed() {
        let want = Desired::from_config(&config(&predicted(), "")).unwrap();
        let mut actual = Actual::nothing();
        actual.code = ModuleCode::Matches;
        actual.enabled = true;
        actual.guardians = want.guardians.clone();
        let other: Address = "0x00000000000000000000000000000000000000ee"
            .parse()
            .unwrap();
        let sel = FixedBytes::<4>::from([1, 2, 3, 4]);
        actual.pauses.insert(
            (other, sel),
            PauseState {
                allowed: true,
                getter: sel,
            },
        );
        for g in &want.pauses {
            actual.pauses.insert(
                (g.target, g.selector),
                PauseState {
                    allowed: true,
                    getter: g.getter,
                },
            );
        }
        for g in &want.parameters {
            actual.parameters.insert(
                (g.target, g.setter),
                ParameterState {
                    allowed: true,
                    getter: g.getter,
                    min: g.min,
                    max: g.max,
                    max_change_bps: U256::from(g.max_change_bps),
                    min_delay_s: U256::from(g.min_delay_s),
                },
            );
        }
        actual.limits = want.limits.clone();
        let d = diff(&want, &actual);
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(
            d[0].to_string()
                .contains("no action of the configuration uses it")
        );
        let p = plan::plan(&want, &actual, true).unwrap();
        assert_eq!(p.txs.len(), 1);
        let m = p.txs[0].method.as_ref().unwrap();
        assert_eq!(m.name, "setPausePermission");
        assert_eq!(m.args[3].value, "false");
    }
}
