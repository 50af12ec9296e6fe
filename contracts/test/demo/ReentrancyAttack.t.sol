// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {ReentrantEthPool} from "../../src/demo/vulnerable/ReentrantEthPool.sol";
import {ReentrancyAttack} from "../../src/demo/attacks/ReentrancyAttack.sol";
import {DemoFixture} from "./DemoFixture.sol";

/// Curve / Vyper 2023-07 shape: several pools with a per-function reentrancy
/// lock; each is drained by re-entering addLiquidity from removeLiquidity's ETH
/// callback. Pausing a pool protects it while its siblings are drained.
contract ReentrancyAttackTest is DemoFixture {
    ReentrantEthPool[3] internal pools;
    ReentrancyAttack[3] internal attacks;
    address internal provider = address(0x1D);

    uint256 internal constant PROVIDED = 100 ether;
    uint256 internal constant ATTACKER_CAPITAL = 100 ether;

    function setUp() public {
        _deployOwner();
        string[3] memory names = ["Demo pETH pool", "Demo msETH pool", "Demo alETH pool"];
        vm.deal(provider, 3 * PROVIDED);
        vm.deal(attacker, 3 * ATTACKER_CAPITAL);
        for (uint256 i = 0; i < 3; i++) {
            pools[i] = new ReentrantEthPool(address(safe), names[i], "dLP");
            vm.prank(provider);
            pools[i].addLiquidity{value: PROVIDED}();
            _allowPause(address(pools[i]));
            vm.prank(attacker);
            attacks[i] = new ReentrancyAttack(pools[i]);
        }
    }

    function test_attack_drainsEachUnpausedPool() public {
        for (uint256 i = 0; i < 3; i++) {
            vm.prank(attacker);
            uint256 received = attacks[i].attack{value: ATTACKER_CAPITAL}();
            vm.assertGt(received, ATTACKER_CAPITAL + 99 ether, "took >99% of the provider's ETH");
            vm.assertLt(address(pools[i]).balance, 1 ether, "pool drained");
        }
        vm.assertGt(attacker.balance, 3 * ATTACKER_CAPITAL + 297 ether, "attacker profit across pools");

        // The provider's LP is now worth almost nothing.
        uint256 lp = pools[0].balanceOf(provider);
        vm.prank(provider);
        uint256 back = pools[0].removeLiquidity(lp);
        vm.assertLt(back, 1 ether, "provider lost their ETH");
    }

    function test_pausedPool_survivesWhileSiblingsAreDrained() public {
        _guardianPause(address(pools[1]));

        vm.prank(attacker);
        attacks[0].attack{value: ATTACKER_CAPITAL}();

        vm.prank(attacker);
        vm.expectRevert(Pausable.EnforcedPause.selector);
        attacks[1].attack{value: ATTACKER_CAPITAL}();

        vm.assertEq(address(pools[1]).balance, PROVIDED, "paused pool intact");
        vm.assertLt(address(pools[0]).balance, 1 ether, "unpaused pool drained");
    }

    function test_honestProvider_getsFairShare() public {
        address second = address(0x2D);
        vm.deal(second, 50 ether);
        vm.startPrank(second);
        uint256 minted = pools[0].addLiquidity{value: 50 ether}();
        vm.assertEq(minted, 50 ether, "1 LP per ETH");
        uint256 back = pools[0].removeLiquidity(minted);
        vm.stopPrank();
        vm.assertEq(back, 50 ether, "fair share back");
        vm.assertEq(pools[0].virtualPrice(), 1e18, "price unchanged");
    }

    function test_sameFunctionReentry_isBlocked() public {
        // The per-function lock does stop re-entering the *same* function.
        SameFunctionReentrant reenter = new SameFunctionReentrant(pools[0]);
        vm.deal(address(reenter), 10 ether);
        reenter.start();
        vm.assertTrue(reenter.blocked(), "reentering removeLiquidity is refused");
    }
}

/// Tries to re-enter removeLiquidity from its own ETH callback.
contract SameFunctionReentrant {
    ReentrantEthPool internal immutable pool;
    bool public blocked;

    constructor(ReentrantEthPool pool_) {
        pool = pool_;
    }

    function start() external {
        pool.addLiquidity{value: 10 ether}();
        pool.removeLiquidity(5 ether);
    }

    receive() external payable {
        if (pool.balanceOf(address(this)) > 0 && !blocked) {
            try pool.removeLiquidity(1 ether) {}
            catch (bytes memory reason) {
                blocked = bytes4(reason) == ReentrantEthPool.Reentered.selector;
            }
        }
    }
}
