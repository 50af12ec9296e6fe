//! Aave V3 roles in the set-up: when `[setup] aave_acl_manager` names a
//! market's ACLManager, every target of the module's actions is an
//! `AaveV3RoleHolder` (contracts/src/adapters) and must hold the Aave role its
//! functions need: `pause()` needs EMERGENCY_ADMIN (`setPoolPause` /
//! `setReservePause`); `freeze()`, `setBorrowCap(uint256)` and
//! `setSupplyCap(uint256)` need RISK_ADMIN. `setup plan` adds the ACLManager
//! grants (`addEmergencyAdmin`, `addRiskAdmin`, called by the Safe, the ACL
//! admin); `setup verify` reads `isEmergencyAdmin` / `isRiskAdmin`.

use std::collections::BTreeMap;
use std::fmt;

use alloy::eips::BlockId;
use alloy::primitives::{Address, Bytes};
use alloy::providers::DynProvider;
use alloy::sol_types::SolCall;

use super::{ParameterGrant, PauseGrant, PlannedTx, SetupError};

alloy::sol! {
    /// The ACLManager functions the set-up calls or reads (Aave V3's IACLManager).
    #[sol(rpc)]
    interface IAaveAclRoles {
        function addEmergencyAdmin(address admin) external;
        function addRiskAdmin(address admin) external;
        function isEmergencyAdmin(address admin) external view returns (bool);
        function isRiskAdmin(address admin) external view returns (bool);
    }
}

/// The Aave V3 roles a role-holder may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AaveRole {
    Emergency,
    Risk,
}

impl fmt::Display for AaveRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AaveRole::Emergency => "EMERGENCY_ADMIN",
            AaveRole::Risk => "RISK_ADMIN",
        })
    }
}

/// The role an `AaveV3RoleHolder` function needs, if it is one.
pub fn role_of(function: &str) -> Option<AaveRole> {
    match function.replace(' ', "").as_str() {
        "pause()" => Some(AaveRole::Emergency),
        "freeze()" | "setBorrowCap(uint256)" | "setSupplyCap(uint256)" => Some(AaveRole::Risk),
        _ => None,
    }
}

/// What a role-holder function does, in Aave's own terms (for `explain`).
pub fn in_aave_terms(function: &str) -> Option<&'static str> {
    Some(match function.replace(' ', "").as_str() {
        "pause()" => {
            "PoolConfigurator.setReservePause(asset, true) on the holder's reserve, or setPoolPause(true) on every reserve for a pool-wide holder (EMERGENCY_ADMIN): supply, borrow, repay, withdraw and liquidation stop until the council unpauses"
        }
        "freeze()" => {
            "PoolConfigurator.setReserveFreeze(asset, true) (RISK_ADMIN): no new supply or borrow; repay, withdraw and liquidation stay open; only the council unfreezes"
        }
        "setBorrowCap(uint256)" => {
            "PoolConfigurator.setBorrowCap(asset, cap) (RISK_ADMIN), in whole tokens, the module bounding each step and the delay between steps (Aave's Risk Steward shape); a cap of 0 would mean no cap, which the bounds forbid"
        }
        "setSupplyCap(uint256)" => {
            "PoolConfigurator.setSupplyCap(asset, cap) (RISK_ADMIN), in whole tokens, the module bounding each step and the delay between steps (Aave's Risk Steward shape); a cap of 0 would mean no cap, which the bounds forbid"
        }
        _ => return None,
    })
}

/// A role the ACLManager must grant a role-holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AaveRoleGrant {
    pub acl: Address,
    pub holder: Address,
    pub role: AaveRole,
    /// The configuration's actions that need it.
    pub actions: Vec<String>,
}

/// The grants the module's actions need on the market whose ACLManager is `acl`.
pub fn desired(
    acl: Address,
    pauses: &[PauseGrant],
    params: &[ParameterGrant],
) -> Vec<AaveRoleGrant> {
    let mut out: Vec<AaveRoleGrant> = Vec::new();
    let uses = pauses
        .iter()
        .map(|p| (p.target, p.function.as_str(), &p.actions))
        .chain(
            params
                .iter()
                .map(|p| (p.target, p.function.as_str(), &p.actions)),
        );
    for (holder, function, actions) in uses {
        let Some(role) = role_of(function) else {
            continue;
        };
        match out
            .iter_mut()
            .find(|g| g.holder == holder && g.role == role)
        {
            Some(g) => g.actions.extend(actions.iter().cloned()),
            None => out.push(AaveRoleGrant {
                acl,
                holder,
                role,
                actions: actions.clone(),
            }),
        }
    }
    out
}

/// Reads whether each holder has its role.
pub async fn read(
    provider: &DynProvider,
    grants: &[AaveRoleGrant],
    at: BlockId,
) -> Result<BTreeMap<(Address, AaveRole), bool>, SetupError> {
    let mut out = BTreeMap::new();
    for g in grants {
        let acl = IAaveAclRoles::new(g.acl, provider);
        let has = match g.role {
            AaveRole::Emergency => acl.isEmergencyAdmin(g.holder).block(at).call().await,
            AaveRole::Risk => acl.isRiskAdmin(g.holder).block(at).call().await,
        }
        .map_err(|e| SetupError::Rpc {
            what: format!("ACLManager {} is{}", g.acl, g.role),
            reason: crate::source::chain::redact(&e.to_string()),
        })?;
        out.insert((g.holder, g.role), has);
    }
    Ok(out)
}

/// The Safe transaction that grants `g`.
pub fn grant_tx(g: &AaveRoleGrant) -> PlannedTx {
    let data: Bytes = match g.role {
        AaveRole::Emergency => {
            IAaveAclRoles::addEmergencyAdminCall { admin: g.holder }.abi_encode()
        }
        AaveRole::Risk => IAaveAclRoles::addRiskAdminCall { admin: g.holder }.abi_encode(),
    }
    .into();
    let method = super::method_of(&data);
    PlannedTx {
        to: g.acl,
        data,
        summary: format!(
            "Grant Aave's {} to the role-holder {} in the ACLManager {} (action {}). The holder only acts when the Safe calls it, and the Safe only through the module, so the module's permissions and limits bound what this role is used for.",
            g.role,
            g.holder,
            g.acl,
            g.actions.join(", ")
        ),
        method,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_holder_function_needs_its_aave_role() {
        assert_eq!(role_of("pause()"), Some(AaveRole::Emergency));
        assert_eq!(role_of("freeze()"), Some(AaveRole::Risk));
        assert_eq!(role_of("setBorrowCap(uint256)"), Some(AaveRole::Risk));
        assert_eq!(role_of("setCollateralFactorBps(uint256)"), None);
        let tx = grant_tx(&AaveRoleGrant {
            acl: Address::repeat_byte(0xac),
            holder: Address::repeat_byte(0x01),
            role: AaveRole::Risk,
            actions: vec!["lower-borrow-cap".into()],
        });
        assert_eq!(tx.to, Address::repeat_byte(0xac));
        let m = tx
            .method
            .expect("a named method for the Transaction Builder");
        assert_eq!(m.name, "addRiskAdmin");
        assert_eq!(m.args[0].name, "admin");
    }
}
