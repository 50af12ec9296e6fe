// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC3156FlashBorrower} from "@openzeppelin/contracts/interfaces/IERC3156FlashBorrower.sol";
import {ERC4626} from "@openzeppelin/contracts/token/ERC20/extensions/ERC4626.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {DemoToken} from "../../src/demo/DemoToken.sol";
import {GuardedVault} from "../../src/demo/GuardedVault.sol";
import {FlashLoanPool} from "../../src/demo/FlashLoanPool.sol";
import {ConstantProductPool} from "../../src/demo/ConstantProductPool.sol";
import {KeeperPriceFeed} from "../../src/demo/KeeperPriceFeed.sol";
import {DemoFixture} from "./DemoFixture.sol";

/// The healthy building blocks: the vault, its roles, the flash lender, the DEX
/// pool and the keeper feed behave as documented.
contract DemoBuildingBlocksTest is DemoFixture {
    DemoToken internal usd;
    GuardedVault internal vault;
    address internal saver = address(0x5A7E);
    address internal directPauser = address(0xD1EC7);

    function setUp() public {
        _deployOwner();
        usd = new DemoToken("Demo Dollar", "dUSD", address(this));
        vault = new GuardedVault(usd, address(safe), 1_000e18);
        usd.mint(saver, 2_000e18);
        vm.prank(saver);
        usd.approve(address(vault), type(uint256).max);
    }

    function test_vault_enforcesSupplyCap() public {
        vm.startPrank(saver);
        vault.deposit(600e18, saver);
        vm.assertEq(vault.maxDeposit(saver), 400e18, "room left under the cap");
        vm.expectRevert(abi.encodeWithSelector(ERC4626.ERC4626ExceededMaxDeposit.selector, saver, 401e18, 400e18));
        vault.deposit(401e18, saver);
        vm.stopPrank();

        _safeExec(address(vault), abi.encodeCall(vault.setSupplyCap, (2_000e18)));
        vm.prank(saver);
        vault.deposit(401e18, saver);
        vm.assertEq(vault.totalAssets(), 1_001e18, "deposited after the cap was raised");
    }

    function test_vault_pauseStopsDepositsAndWithdrawals_onlyAdminUnpauses() public {
        vm.prank(saver);
        vault.deposit(100e18, saver);

        // The Safe grants the pauser role to a guardian EOA (the direct-key path).
        bytes32 pauserRole = vault.PAUSER_ROLE();
        _safeExec(address(vault), abi.encodeCall(vault.grantRole, (pauserRole, directPauser)));
        vm.prank(directPauser);
        vault.pause();

        vm.startPrank(saver);
        vm.expectRevert(abi.encodeWithSelector(ERC4626.ERC4626ExceededMaxWithdraw.selector, saver, 1e18, 0));
        vault.withdraw(1e18, saver, saver);
        vm.expectRevert(abi.encodeWithSelector(ERC4626.ERC4626ExceededMaxDeposit.selector, saver, 1e18, 0));
        vault.deposit(1e18, saver);
        vm.stopPrank();

        bytes32 adminRole = vault.DEFAULT_ADMIN_ROLE();
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, directPauser, adminRole)
        );
        vm.prank(directPauser);
        vault.unpause();

        _safeExec(address(vault), abi.encodeCall(vault.unpause, ()));
        vm.prank(saver);
        vault.withdraw(100e18, saver, saver);
        vm.assertEq(usd.balanceOf(saver), 2_000e18, "withdrawn after the owners unpaused");
    }

    function test_vault_rolesHeldBySafe() public view {
        vm.assertTrue(vault.hasRole(vault.DEFAULT_ADMIN_ROLE(), address(safe)), "admin");
        vm.assertTrue(vault.hasRole(vault.PAUSER_ROLE(), address(safe)), "pauser");
        vm.assertTrue(vault.hasRole(vault.RISK_ADMIN_ROLE(), address(safe)), "risk admin");
        vm.assertFalse(vault.hasRole(vault.DEFAULT_ADMIN_ROLE(), address(this)), "deployer holds nothing");
    }

    function test_vault_guardianPauseThroughModule() public {
        _allowPause(address(vault));
        _guardianPause(address(vault));
        vm.assertEq(vault.maxDeposit(saver), 0, "no deposits while paused");
    }

    function test_flashLoan_chargesFeeAndRequiresRepayment() public {
        FlashLoanPool lender = new FlashLoanPool();
        usd.mint(address(lender), 1_000e18);
        vm.assertEq(lender.maxFlashLoan(address(usd)), 1_000e18, "max loan");
        vm.assertEq(lender.flashFee(address(usd), 1_000e18), 0.9e18, "0.09% fee");

        HonestBorrower honest = new HonestBorrower();
        usd.mint(address(honest), 0.9e18);
        lender.flashLoan(honest, address(usd), 1_000e18, "");
        vm.assertEq(usd.balanceOf(address(lender)), 1_000.9e18, "repaid with fee");

        vm.expectRevert(abi.encodeWithSelector(FlashLoanPool.AmountTooLarge.selector, 2_000e18, 1_000.9e18));
        lender.flashLoan(honest, address(usd), 2_000e18, "");

        DefaultingBorrower defaulting = new DefaultingBorrower();
        vm.expectRevert(FlashLoanPool.CallbackFailed.selector);
        lender.flashLoan(defaulting, address(usd), 1e18, "");
    }

    function test_dex_swapsAlongTheCurve() public {
        DemoToken col = new DemoToken("Demo Collateral", "dCOL", address(this));
        ConstantProductPool dex = new ConstantProductPool(usd, col);
        usd.mint(address(this), 1_100e18);
        col.mint(address(this), 1_000e18);
        usd.approve(address(dex), type(uint256).max);
        col.approve(address(dex), type(uint256).max);
        dex.addLiquidity(1_000e18, 1_000e18);

        uint256 quoted = dex.getAmountOut(address(usd), 100e18);
        vm.expectRevert(abi.encodeWithSelector(ConstantProductPool.InsufficientOutput.selector, quoted, quoted + 1));
        dex.swap(address(usd), 100e18, quoted + 1);
        uint256 out = dex.swap(address(usd), 100e18, quoted);
        vm.assertEq(out, quoted, "quoted amount");
        vm.assertGt(out, 90e18, "close to 1:1 for a small trade");
        vm.assertLt(out, 100e18, "but less, by fee and slippage");
        vm.assertGe(dex.reserve0() * dex.reserve1(), 1_000e18 * 1_000e18, "k never decreases");
    }

    function test_keeperFeed_rejectsNonPositiveAnswers() public {
        KeeperPriceFeed feed = new KeeperPriceFeed(address(this), 8, "dCOL / dUSD", 1e8);
        vm.expectRevert(abi.encodeWithSelector(KeeperPriceFeed.NonPositiveAnswer.selector, int256(0)));
        feed.updateAnswer(0);
        vm.assertEq(uint256(feed.decimals()), 8, "decimals");
    }
}

contract HonestBorrower is IERC3156FlashBorrower {
    function onFlashLoan(address, address token, uint256 amount, uint256 fee, bytes calldata)
        external
        returns (bytes32)
    {
        IERC20(token).approve(msg.sender, amount + fee);
        return keccak256("ERC3156FlashBorrower.onFlashLoan");
    }
}

contract DefaultingBorrower is IERC3156FlashBorrower {
    function onFlashLoan(address, address, uint256, uint256, bytes calldata) external pure returns (bytes32) {
        return bytes32(0);
    }
}
