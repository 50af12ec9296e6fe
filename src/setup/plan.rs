//! `guardian setup plan`: the Safe transactions that turn the chain's state
//! into the configured set-up, and the summary the council reads before signing.

use std::fmt::Write as _;

use alloy::primitives::{Address, Bytes, FixedBytes, U256};

use super::{
    Actual, CREATE2_DEPLOYER, Desired, Difference, ISafeModules, PlannedTx, SetupError, diff,
};
use crate::executor::GuardianModule;

/// A plan: its transactions in execution order, and what it was computed against.
#[derive(Debug, Clone)]
pub struct Plan {
    pub desired: Desired,
    pub txs: Vec<PlannedTx>,
    /// The differences the transactions fix (empty: nothing to do).
    pub differences: Vec<Difference>,
    /// Differences no module transaction fixes, to be fixed outside this batch.
    pub outside: Vec<String>,
    /// Whether the plan was computed against the chain (false: assuming nothing exists).
    pub read_chain: bool,
}

/// The transactions that fix `actual` into `want`, in an order that executes:
/// deploy, enable, guardians, permissions, limits, removals.
pub fn plan(want: &Desired, actual: &Actual, read_chain: bool) -> Result<Plan, SetupError> {
    let differences = diff(want, actual);
    let mut txs = Vec::new();
    let mut removals = Vec::new();
    let mut outside = Vec::new();
    let m = want.module;
    for d in &differences {
        match d {
            Difference::ModuleMissing { module } => {
                let predicted = want.predicted_module();
                if *module != predicted {
                    let what = if read_chain {
                        format!("there is no contract at the module address {module}")
                    } else {
                        format!(
                            "--fresh plans the module's deployment, but the module address {module} is not where this batch would deploy it (for a module already deployed, plan without --fresh)"
                        )
                    };
                    return Err(SetupError::CannotPlan(format!(
                        "{what}. To deploy the module in this batch, set `module = \"{predicted}\"` in executor `{}` (the address the deterministic deployment proxy gives it for this Safe and [setup] salt {}); or deploy it yourself and put its address there",
                        want.executor, want.salt
                    )));
                }
                let mut data = want.salt.to_vec();
                data.extend_from_slice(&want.init_code());
                txs.push(PlannedTx {
                    to: CREATE2_DEPLOYER,
                    data: Bytes::from(data),
                    summary: format!(
                        "Deploy the GuardianModule for Safe {} at {predicted}, through the deterministic deployment proxy {CREATE2_DEPLOYER} (CREATE2, salt {}). Its code is this guardian's contracts/artifacts/GuardianModule.json; `guardian setup verify` compares the deployed code with it.",
                        want.safe, want.salt
                    ),
                    method: None,
                });
            }
            Difference::SafeMissing { .. } => {
                return Err(SetupError::CannotPlan(format!(
                    "{d}: a plan is a batch of Safe transactions, so it needs the Safe"
                )));
            }
            Difference::ModuleCodeDiffers { .. } => {
                return Err(SetupError::CannotPlan(format!(
                    "{d}. No Safe transaction can fix this: point executor `{}` at a GuardianModule deployed for Safe {}, or at an address with no code yet (set `module = \"{}\"` to have this plan deploy one)",
                    want.executor,
                    want.safe,
                    want.predicted_module()
                )));
            }
            Difference::ModuleNotEnabled { module } => {
                let data: Bytes = alloy::sol_types::SolCall::abi_encode(
                    &ISafeModules::enableModuleCall { module: *module },
                )
                .into();
                let method = super::method_of(&data);
                txs.push(PlannedTx {
                    to: want.safe,
                    data,
                    summary: format!(
                        "Enable the module {module} on the Safe (the Safe calls itself: `enableModule`). From then on the module can execute calls through the Safe, within the permissions below."
                    ),
                    method,
                });
            }
            Difference::GuardianMissing(g) => txs.push(PlannedTx::module_call(
                m,
                format!(
                    "Add guardian {g}: the address of the key executor `{}` signs with. It may then request the actions below, nothing else.",
                    want.executor
                ),
                GuardianModule::addGuardianCall { guardian: *g },
            )),
            Difference::GuardianExtra(g) => removals.push(PlannedTx::module_call(
                m,
                format!("Remove guardian {g}: it is not in [setup] guardians."),
                GuardianModule::removeGuardianCall { guardian: *g },
            )),
            Difference::PauseMissing(grant) | Difference::PauseGetterDiffers { grant, .. } => {
                txs.push(PlannedTx::module_call(
                    m,
                    format!(
                        "Allow guardians to call {} on {} (action {}); the module checks {} reads true afterwards. Only unpausing undoes it, and only the Safe can unpause.",
                        grant.function,
                        grant.target,
                        grant.actions.join(", "),
                        grant.getter_sig
                    ),
                    pause_permission(grant.target, grant.selector, grant.getter, true),
                ))
            }
            Difference::PauseExtra {
                target,
                selector,
                getter,
            } => removals.push(PlannedTx::module_call(
                m,
                format!(
                    "Forbid pause function {selector} on {target}: allowed on chain, but no action of the configuration uses it."
                ),
                pause_permission(*target, *selector, *getter, false),
            )),
            Difference::ParameterMissing(g) | Difference::ParameterDiffers { grant: g, .. } => {
                txs.push(PlannedTx::module_call(
                    m,
                    format!(
                        "Allow guardians to call {} on {} (action {}): only values from {} to {}, by at most {} bps ({}%) of the current value ({}) per change, at most once every {}.",
                        g.function,
                        g.target,
                        g.actions.join(", "),
                        g.min,
                        g.max,
                        g.max_change_bps,
                        g.max_change_bps as f64 / 100.0,
                        g.getter_sig,
                        super::secs(g.min_delay_s)
                    ),
                    GuardianModule::setParameterPermissionCall {
                        target: g.target,
                        setterSelector: g.setter,
                        getterSelector: g.getter,
                        min: g.min,
                        max: g.max,
                        maxChangeBps: U256::from(g.max_change_bps),
                        minDelay: U256::from(g.min_delay_s),
                    },
                ))
            }
            Difference::ParameterExtra { target, setter, .. } => {
                removals.push(PlannedTx::module_call(
                    m,
                    format!(
                        "Remove the permission for setter {setter} on {target}: no action of the configuration uses it."
                    ),
                    GuardianModule::removeParameterPermissionCall {
                        target: *target,
                        setterSelector: *setter,
                    },
                ))
            }
            Difference::PauseNotPossible { .. } => outside.push(d.to_string()),
            Difference::AaveRoleMissing(g) => txs.push(super::aave::grant_tx(g)),
            Difference::LimitsDiffer { target, want: l, .. } => {
                txs.push(PlannedTx::module_call(
                    m,
                    format!(
                        "Limit guardian actions on {target}: {l}. Pauses and parameter changes on it share these limits."
                    ),
                    GuardianModule::setTargetLimitsCall {
                        target: *target,
                        cooldown: U256::from(l.cooldown_s),
                        maxActionsPerPeriod: U256::from(l.max_actions),
                        period: U256::from(l.period_s),
                    },
                ))
            }
        }
    }
    txs.extend(removals);
    Ok(Plan {
        desired: want.clone(),
        txs,
        differences,
        outside,
        read_chain,
    })
}

impl Plan {
    /// The text the council reads: what the batch does, transaction by
    /// transaction, and what the guardians can and cannot do afterwards.
    pub fn summary(&self, batch_file: Option<&std::path::Path>) -> String {
        let d = &self.desired;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "GuardianModule set-up for Safe {} on network `{}` (chain id {})",
            d.safe, d.network, d.chain_id
        );
        let _ = writeln!(s, "module: {} (executor `{}`)", d.module, d.executor);
        let _ = writeln!(
            s,
            "planned against: {}",
            if self.read_chain {
                "the chain's current state (only what is missing or different)"
            } else {
                "nothing deployed yet (--fresh: the complete set-up)"
            }
        );
        if !self.outside.is_empty() {
            let _ = writeln!(s, "\nNEEDS ATTENTION, outside this batch:");
            for o in &self.outside {
                let _ = writeln!(s, "  - {o}");
            }
        }
        if self.txs.is_empty() {
            let _ = writeln!(
                s,
                "\nno module transaction to sign: the module already matches the configuration"
            );
            return s;
        }
        let _ = writeln!(
            s,
            "\n{} transaction(s), executed by the Safe in this order, all or none (one batch):",
            self.txs.len()
        );
        for (i, tx) in self.txs.iter().enumerate() {
            let _ = writeln!(s, "\n{:>3}. {}", i + 1, tx.summary);
            match &tx.method {
                Some(m) => {
                    let list: Vec<String> = m
                        .args
                        .iter()
                        .map(|a| format!("{}={}", a.name, a.value))
                        .collect();
                    let _ = writeln!(s, "     call {} {}({})", tx.to, m.name, list.join(", "));
                }
                None => {
                    let _ = writeln!(
                        s,
                        "     call {} with {} bytes of data (salt ++ creation code)",
                        tx.to,
                        tx.data.len()
                    );
                }
            }
        }
        let _ = writeln!(
            s,
            "\nAfter this batch, a guardian key (even a stolen one) can only:"
        );
        for p in &d.pauses {
            let _ = writeln!(s, "  - call {} on {}", p.function, p.target);
        }
        for p in &d.parameters {
            let _ = writeln!(
                s,
                "  - move {} on {} within [{}, {}], {} bps per change, once per {}",
                p.function,
                p.target,
                p.min,
                p.max,
                p.max_change_bps,
                super::secs(p.min_delay_s)
            );
        }
        for (t, l) in &d.limits {
            let _ = writeln!(
                s,
                "  - and on {t} no more than: {l} (pauses and parameter changes together)"
            );
        }
        let _ = writeln!(
            s,
            "It can never unpause, move funds, send ETH, delegatecall, pass its own calldata, or change the Safe or the module."
        );
        if let Some(path) = batch_file {
            let _ = writeln!(
                s,
                "\nbatch file: {} (Safe web app > Apps > Transaction Builder > drag and drop the file; check each transaction against this summary, then create the batch and collect the owners' signatures)",
                path.display()
            );
        }
        let _ = writeln!(
            s,
            "afterwards: `guardian setup verify --config <guardian.toml>` must report no difference"
        );
        s
    }
}

/// The module call that allows (or forbids) guardians to call `selector` on
/// `target`, checked afterwards by `getter`.
fn pause_permission(
    target: Address,
    selector: FixedBytes<4>,
    getter: FixedBytes<4>,
    allowed: bool,
) -> GuardianModule::setPausePermissionCall {
    GuardianModule::setPausePermissionCall {
        target,
        pauseSelector: selector,
        pausedGetter: getter,
        allowed,
    }
}

/// The batch file's address fields are checksummed, as the Safe app writes them.
pub fn checksum(a: Address) -> String {
    a.to_checksum(None)
}
