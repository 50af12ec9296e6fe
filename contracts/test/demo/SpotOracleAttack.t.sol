// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {DemoToken} from "../../src/demo/DemoToken.sol";
import {ConstantProductPool} from "../../src/demo/ConstantProductPool.sol";
import {FlashLoanPool} from "../../src/demo/FlashLoanPool.sol";
import {KeeperPriceFeed} from "../../src/demo/KeeperPriceFeed.sol";
import {LendingMarket} from "../../src/demo/LendingMarket.sol";
import {SpotPriceFeed} from "../../src/demo/vulnerable/SpotPriceFeed.sol";
import {SpotOracleAttack} from "../../src/demo/attacks/SpotOracleAttack.sol";
import {DemoFixture} from "./DemoFixture.sol";

/// Inverse Finance 2022-06 / Cream 2021-10 shape: a market priced by a DEX spot
/// price is drained in one flash-loaned transaction, unless it is paused.
contract SpotOracleAttackTest is DemoFixture {
    DemoToken internal usd;
    DemoToken internal col;
    ConstantProductPool internal dex;
    FlashLoanPool internal flash;
    LendingMarket internal market;
    SpotOracleAttack internal attack;
    address internal lender = address(0x1E4D);

    uint256 internal constant MARKET_LIQUIDITY = 50_000e18;

    function setUp() public {
        _deployOwner();
        usd = new DemoToken("Demo Dollar", "dUSD", address(this));
        col = new DemoToken("Demo Collateral", "dCOL", address(this));
        dex = new ConstantProductPool(usd, col);
        usd.mint(address(this), 1_000e18);
        col.mint(address(this), 1_000e18);
        usd.approve(address(dex), 1_000e18);
        col.approve(address(dex), 1_000e18);
        dex.addLiquidity(1_000e18, 1_000e18);

        flash = new FlashLoanPool();
        usd.mint(address(flash), 100_000e18);

        market = new LendingMarket(
            address(safe), col, usd, new SpotPriceFeed(dex, address(col)), 7_500, 1_000_000e18
        );
        _supply(market, MARKET_LIQUIDITY);
        _allowPause(address(market));

        vm.prank(attacker);
        attack = new SpotOracleAttack(market, dex, flash, 9_000e18);
    }

    function _supply(LendingMarket m, uint256 amount) internal {
        usd.mint(lender, amount);
        vm.startPrank(lender);
        usd.approve(address(m), amount);
        m.supply(amount);
        vm.stopPrank();
    }

    function test_spotFeed_readsPoolRatio() public view {
        (, int256 answer,,,) = market.priceFeed().latestRoundData();
        vm.assertEq(uint256(answer), 1e8, "1 dUSD per dCOL");
    }

    function test_attack_drainsUnpausedMarketInOneTransaction() public {
        vm.prank(attacker);
        uint256 profit = attack.attack();

        vm.assertEq(market.cash(), 0, "market cash drained");
        vm.assertEq(usd.balanceOf(attacker), profit, "profit paid to the attacker");
        vm.assertGt(profit, 40_000e18, "attacker kept most of the market's liquidity");
        vm.assertGt(market.totalBorrowed(), MARKET_LIQUIDITY - 1, "bad debt left behind");

        vm.prank(lender);
        vm.expectRevert(abi.encodeWithSelector(LendingMarket.InsufficientCash.selector, 1e18, 0));
        market.withdraw(1e18);
    }

    function test_attack_revertsOnceGuardianPausedMarket() public {
        _guardianPause(address(market));
        vm.prank(attacker);
        vm.expectRevert(Pausable.EnforcedPause.selector);
        attack.attack();
        vm.assertEq(market.cash(), MARKET_LIQUIDITY, "liquidity intact");
        vm.assertEq(usd.balanceOf(attacker), 0, "attacker gained nothing");
    }

    function test_attack_gainsNothingAgainstKeeperPricedMarket() public {
        KeeperPriceFeed feed = new KeeperPriceFeed(address(this), 8, "dCOL / dUSD", 1e8);
        LendingMarket healthy = new LendingMarket(address(safe), col, usd, feed, 7_500, 1_000_000e18);
        _supply(healthy, MARKET_LIQUIDITY);
        vm.prank(attacker);
        SpotOracleAttack attempt = new SpotOracleAttack(healthy, dex, flash, 9_000e18);

        // The attack buys ~900 dCOL, worth ~900 dUSD at the keeper's price, so it
        // can borrow ~675 dUSD and cannot repay the 9,000 dUSD flash loan.
        uint256 bought = dex.getAmountOut(address(usd), 9_000e18);
        uint256 borrowable = (bought * 7_500) / 10_000;
        uint256 owed = 9_000e18 + flash.flashFee(address(usd), 9_000e18);
        vm.expectRevert(
            abi.encodeWithSelector(
                IERC20Errors.ERC20InsufficientBalance.selector, address(attempt), borrowable, owed
            )
        );
        vm.prank(attacker);
        attempt.attack();
        vm.assertEq(healthy.cash(), MARKET_LIQUIDITY, "liquidity intact");
    }

    function test_market_lifecycleWithKeeperFeed() public {
        KeeperPriceFeed feed = new KeeperPriceFeed(address(this), 8, "dCOL / dUSD", 2e8);
        address keeper = address(0x4EE9);
        feed.setKeeper(keeper);
        LendingMarket m = new LendingMarket(address(safe), col, usd, feed, 7_500, 60_000e18);
        _supply(m, MARKET_LIQUIDITY);

        // Supply cap.
        usd.mint(lender, 20_000e18);
        vm.startPrank(lender);
        usd.approve(address(m), 20_000e18);
        vm.expectRevert(abi.encodeWithSelector(LendingMarket.SupplyCapExceeded.selector, 70_000e18, 60_000e18));
        m.supply(20_000e18);
        vm.stopPrank();

        // Borrow 75% of 100 dCOL at 2 dUSD.
        address borrower = address(0xB0B);
        col.mint(borrower, 100e18);
        vm.startPrank(borrower);
        col.approve(address(m), 100e18);
        m.depositCollateral(100e18);
        vm.assertEq(m.borrowLimit(borrower), 150e18, "limit");
        vm.expectRevert(abi.encodeWithSelector(LendingMarket.Undercollateralized.selector, 151e18, 150e18));
        m.borrow(151e18);
        m.borrow(150e18);
        vm.stopPrank();
        vm.assertEq(usd.balanceOf(borrower), 150e18, "borrowed");
        vm.assertEq(m.utilizationBps(), 30, "0.3% utilization");

        // The keeper publishes a price drop; the loan becomes liquidatable.
        vm.prank(address(0xDEAD));
        vm.expectRevert(abi.encodeWithSelector(KeeperPriceFeed.NotKeeper.selector, address(0xDEAD)));
        feed.updateAnswer(1e8);
        vm.prank(keeper);
        feed.updateAnswer(1.5e8);
        (uint80 round, int256 answer,,,) = feed.latestRoundData();
        vm.assertEq(uint256(round), 2, "second round");
        vm.assertEq(uint256(answer), 1.5e8, "new answer");

        address liquidator = address(0x11C);
        usd.mint(liquidator, 100e18);
        vm.startPrank(liquidator);
        usd.approve(address(m), 100e18);
        m.liquidate(borrower, 100e18);
        vm.stopPrank();
        // 100 dUSD * 1.05 / 1.5 = 70 dCOL seized.
        vm.assertEq(col.balanceOf(liquidator), 70e18, "seized collateral");
        vm.assertEq(m.borrowedOf(borrower), 50e18, "remaining debt");

        // Paused: borrowing stops, repaying continues.
        _allowPause(address(m));
        _guardianPause(address(m));
        vm.startPrank(borrower);
        vm.expectRevert(Pausable.EnforcedPause.selector);
        m.borrow(1e18);
        usd.approve(address(m), 50e18);
        m.repay(borrower, 50e18);
        vm.stopPrank();
        vm.assertEq(m.borrowedOf(borrower), 0, "repaid while paused");
    }

    function test_guardianTightensCollateralFactorThroughModule() public {
        _safeExec(
            address(module),
            abi.encodeCall(
                module.setParameterPermission,
                (
                    address(market),
                    LendingMarket.setCollateralFactorBps.selector,
                    bytes4(keccak256("collateralFactorBps()")),
                    5_000,
                    8_000,
                    1_000,
                    1 hours
                )
            )
        );
        vm.prank(guardian);
        module.setParameter(address(market), LendingMarket.setCollateralFactorBps.selector, 6_750);
        vm.assertEq(market.collateralFactorBps(), 6_750, "collateral factor lowered by 10%");
    }
}
