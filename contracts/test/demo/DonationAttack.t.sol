// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {DemoToken} from "../../src/demo/DemoToken.sol";
import {FlashLoanPool} from "../../src/demo/FlashLoanPool.sol";
import {DonationLendingPool} from "../../src/demo/vulnerable/DonationLendingPool.sol";
import {DonationAttack} from "../../src/demo/attacks/DonationAttack.sol";
import {DemoFixture} from "./DemoFixture.sol";

/// Euler Finance 2023-03 shape: donating deposit without a solvency check,
/// then self-liquidating at a discount, drains the pool over a few transactions.
contract DonationAttackTest is DemoFixture {
    DemoToken internal dai;
    FlashLoanPool internal flash;
    DonationLendingPool internal pool;
    DonationAttack internal attack;
    address internal victim = address(0x71C);

    uint256 internal constant VICTIM_DEPOSIT = 10_000e18;
    uint256 internal constant LOAN = 5_000e18;

    function setUp() public {
        _deployOwner();
        dai = new DemoToken("Demo Dollar", "dUSD", address(this));
        flash = new FlashLoanPool();
        dai.mint(address(flash), LOAN);
        pool = new DonationLendingPool(address(safe), dai, 9_000);
        dai.mint(victim, VICTIM_DEPOSIT);
        vm.startPrank(victim);
        dai.approve(address(pool), VICTIM_DEPOSIT);
        pool.deposit(VICTIM_DEPOSIT);
        vm.stopPrank();
        _allowPause(address(pool));
        vm.prank(attacker);
        attack = new DonationAttack(pool, flash, LOAN);
    }

    function test_oneRound_takesSixtyPercentOfTheLoanFromDepositors() public {
        vm.prank(attacker);
        uint256 profit = attack.attack();
        uint256 fee = flash.flashFee(address(dai), LOAN);
        // Violator: deposit 5k, mint 45k, donate 10k -> 40k deposit, 45k debt (health 80%).
        // Liquidator: takes 32k debt for 40k deposit, burns, withdraws 8k; repays 5k + fee.
        vm.assertEq(profit, 3_000e18 - fee, "profit of one round");
        vm.assertEq(dai.balanceOf(attacker), profit, "paid to the attacker");
        vm.assertEq(pool.cash(), VICTIM_DEPOSIT - 3_000e18, "depositors' cash taken");
        vm.assertEq(pool.reserves(), 10_000e18, "donated deposit counted as reserves");
    }

    function test_fewRounds_drainTheUnpausedPool() public {
        for (uint256 i = 0; i < 3; i++) {
            vm.prank(attacker);
            attack.attack();
        }
        vm.assertEq(pool.cash(), 1_000e18, "90% of depositors' cash gone");
        vm.assertEq(dai.balanceOf(attacker), 9_000e18 - 3 * flash.flashFee(address(dai), LOAN), "attacker profit");

        // A fourth round no longer fits in the remaining cash.
        vm.prank(attacker);
        vm.expectRevert(abi.encodeWithSelector(DonationLendingPool.InsufficientCash.selector, 8_000e18, 6_000e18));
        attack.attack();

        // The victim's claim is now worth far more than the pool holds.
        vm.prank(victim);
        vm.expectRevert(
            abi.encodeWithSelector(DonationLendingPool.InsufficientCash.selector, VICTIM_DEPOSIT, 1_000e18)
        );
        pool.withdraw(VICTIM_DEPOSIT);
    }

    function test_guardianPauseAfterFirstRound_savesTheRest() public {
        vm.prank(attacker);
        attack.attack();
        _guardianPause(address(pool));
        vm.prank(attacker);
        vm.expectRevert(Pausable.EnforcedPause.selector);
        attack.attack();
        vm.assertEq(pool.cash(), VICTIM_DEPOSIT - 3_000e18, "only the first round was lost");
    }

    function test_pausedPool_rejectsEveryUserAction() public {
        _guardianPause(address(pool));
        vm.startPrank(victim);
        vm.expectRevert(Pausable.EnforcedPause.selector);
        pool.withdraw(1);
        vm.expectRevert(Pausable.EnforcedPause.selector);
        pool.mint(1);
        vm.expectRevert(Pausable.EnforcedPause.selector);
        pool.donateToReserves(1);
        vm.stopPrank();
    }

    function test_honestLeverage_staysSolvent() public {
        address user = address(0x05E4);
        dai.mint(user, 1_000e18);
        vm.startPrank(user);
        dai.approve(address(pool), 1_000e18);
        pool.deposit(1_000e18);
        pool.mint(9_000e18); // the maximum at a 90% collateral factor
        vm.expectRevert(abi.encodeWithSelector(DonationLendingPool.Insolvent.selector, user));
        pool.mint(1);
        vm.expectRevert(abi.encodeWithSelector(DonationLendingPool.NotLiquidatable.selector, user));
        pool.liquidate(user, 1);
        pool.burn(9_000e18);
        pool.withdraw(1_000e18);
        vm.stopPrank();
        vm.assertEq(dai.balanceOf(user), 1_000e18, "got everything back");
        vm.assertEq(pool.debtOf(user), 0, "no debt left");
    }
}
