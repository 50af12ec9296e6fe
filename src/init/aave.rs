//! The `aave-v3` shape of `guardian init`: metric sources on Aave V3's own
//! getters, and actions through an `AaveV3RoleHolder` (contracts/src/adapters)
//! the council grants EMERGENCY_ADMIN and RISK_ADMIN in the market's ACLManager.

use super::{STARTER_AAVE_V3, Shape};

pub(super) const NAME: &str = "aave-v3";

pub(super) const SHAPE: Shape = Shape {
    name: NAME,
    pack: STARTER_AAVE_V3,
    metrics: &[
        (
            "aave.liquidity",
            "reserve token",
            "the reserve's underlying held by its aToken (what can be borrowed or withdrawn)",
            r#"{ kind = "erc20_balance", token = "0x<reserve asset>", holder = "0x<its aToken: PoolDataProvider.getReserveTokensAddresses(asset)>", decimals = 18 }"#,
        ),
        (
            "aave.supplied",
            "reserve token",
            "the aToken's totalSupply",
            r#"{ kind = "call", to = "0x<aToken>", signature = "totalSupply()(uint256)", decimals = 18 }"#,
        ),
        (
            "aave.debt",
            "reserve token",
            "the variable debt token's totalSupply",
            r#"{ kind = "call", to = "0x<variable debt token>", signature = "totalSupply()(uint256)", decimals = 18 }"#,
        ),
        (
            "aave.utilization",
            "ratio",
            "debt / supplied (0.95 = 95%)",
            r#"{ kind = "ratio", numerator = "aave.debt", denominator = "aave.supplied" }"#,
        ),
        (
            "aave.price",
            "USD",
            "AaveOracle.getAssetPrice of the main collateral (base currency, 8 decimals on USD markets)",
            r#"{ kind = "call", to = "0x<AaveOracle: PoolAddressesProvider.getPriceOracle()>", signature = "getAssetPrice(address)(uint256)", args = ["0x<collateral asset>"], decimals = 8 }"#,
        ),
        (
            "aave.reference_price",
            "USD",
            "an independent price for the same collateral (another feed)",
            r#"{ kind = "oracle_answer", feed = "0x<independent feed>", decimals = 8 }"#,
        ),
        (
            "aave.borrows",
            "reserve token",
            "borrowed from the reserve in the block (0 when none)",
            r#"{ kind = "event_sum", address = "0x<Pool>", event = "Borrow(address indexed reserve, address user, address indexed onBehalfOf, uint256 amount, uint8 interestRateMode, uint256 borrowRate, uint16 indexed referralCode)", topics = { reserve = "0x<reserve asset>" }, field = "amount", decimals = 18 }"#,
        ),
        (
            "aave.withdrawals",
            "reserve token",
            "withdrawn from the reserve in the block (0 when none)",
            r#"{ kind = "event_sum", address = "0x<Pool>", event = "Withdraw(address indexed reserve, address indexed user, address indexed to, uint256 amount)", topics = { reserve = "0x<reserve asset>" }, field = "amount", decimals = 18 }"#,
        ),
        (
            "aave.pending_outflow",
            "reserve token",
            "what a pending transaction would take out of the reserve (every pending transaction is screened)",
            r#"{ kind = "pending", effect = { kind = "erc20_balance", token = "0x<reserve asset>", holder = "0x<aToken>", decimals = 18 } }"#,
        ),
    ],
    actions: &[(
        "pause-reserve",
        "Pause the reserve: Aave's PoolConfigurator.setReservePause(asset, true) through the role-holder (EMERGENCY_ADMIN)",
        "# target: the reserve's AaveV3RoleHolder; one deployed with asset 0 pauses the whole pool (setPoolPause)\n",
    )],
};

/// Appended to `[setup]`: the market's ACLManager, which turns on the Aave role checks.
pub(super) const SETUP_LINES: &str = r#"# The market's ACLManager (PoolAddressesProvider.getACLManager()). With it, `setup plan`
# adds the ACLManager grants the council signs (addEmergencyAdmin / addRiskAdmin for the
# role-holder) and `setup verify` reads isEmergencyAdmin / isRiskAdmin.
# aave_acl_manager = "0x<ACLManager>"
"#;

/// The freeze and bounded borrow-cap actions (RISK_ADMIN), after the pause.
pub(super) fn extra_actions(target: &str) -> String {
    format!(
        r#"
[actions.freeze-reserve]
kind = "pause"
description = "Freeze the reserve: PoolConfigurator.setReserveFreeze(asset, true) through the role-holder (RISK_ADMIN); repay, withdraw and liquidations stay open"
target = "{target}"
function = "freeze()"
paused_getter = "frozen()"
executor = "module"

[actions.lower-borrow-cap]
kind = "set-parameter"
description = "Lower the reserve's borrow cap one bounded step: PoolConfigurator.setBorrowCap(asset, cap) through the role-holder (RISK_ADMIN)"
target = "{target}"
function = "setBorrowCap(uint256)"
executor = "module"
getter = "borrowCap()"      # whole tokens, read from the reserve's configuration
min = 1                     # a cap of 0 means "no cap" in Aave: never set it
max = 1000000000000
max_change_bps = 2500       # the module refuses a larger step (Aave's Risk Steward: max change)
min_delay = "1h"            # ... or a second one sooner (Risk Steward: minimum delay)
value = {{ step_bps = 2000, direction = "down" }}
"#
    )
}
