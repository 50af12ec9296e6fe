// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {GuardianModule} from "../src/GuardianModule.sol";
import {GuardianModuleFixture} from "./GuardianModule.t.sol";

/// Fuzz tests: whatever a guardian (or anyone else) sends, nothing outside the
/// configured permissions executes through the Safe.
contract GuardianModuleFuzzTest is GuardianModuleFixture {
    /// Snapshot of everything a guardian could conceivably want to change.
    struct World {
        bool paused;
        uint256 supplyCap;
        uint256 threshold;
        uint256 ownerCount;
        uint256 safeTokenBalance;
        uint256 guardianCount;
    }

    function _world() internal view returns (World memory w) {
        w.paused = vault.paused();
        w.supplyCap = vault.supplyCap();
        w.threshold = safe.getThreshold();
        w.ownerCount = safe.getOwners().length;
        w.safeTokenBalance = token.balanceOf(address(safe));
        w.guardianCount = module.guardians().length;
    }

    /// The next call, as the guardian, must revert: `UnpauseForbidden` for
    /// `unpause()`, else `notPermitted(target, selector)`.
    function _expectRefused(bytes4 notPermitted, address target, bytes4 selector) internal {
        vm.prank(guardian);
        if (selector == UNPAUSE) {
            vm.expectRevert(GuardianModule.UnpauseForbidden.selector);
        } else {
            vm.expectRevert(abi.encodeWithSelector(notPermitted, target, selector));
        }
    }

    function _assertSameWorld(World memory a, World memory b) internal pure {
        vm.assertEq(a.paused, b.paused, "paused changed");
        vm.assertEq(a.supplyCap, b.supplyCap, "supply cap changed");
        vm.assertEq(a.threshold, b.threshold, "threshold changed");
        vm.assertEq(a.ownerCount, b.ownerCount, "owners changed");
        vm.assertEq(a.safeTokenBalance, b.safeTokenBalance, "safe balance changed");
        vm.assertEq(a.guardianCount, b.guardianCount, "guardians changed");
    }

    /// Any pause selector other than the permitted one is refused, on any target,
    /// with the exact error, and changes nothing.
    function testFuzz_pause_onlyThePermittedSelectorExecutes(bytes4 selector, bool onSafe) public {
        vm.assume(selector != PAUSE);
        address target = onSafe ? address(safe) : address(vault);
        World memory before = _world();
        _expectRefused(GuardianModule.PauseNotPermitted.selector, target, selector);
        module.pause(target, selector);
        _assertSameWorld(before, _world());
    }

    /// Any setter other than the permitted one is refused, whatever the value.
    function testFuzz_setParameter_onlyThePermittedSetterExecutes(bytes4 selector, uint256 value, bool onSafe) public {
        vm.assume(selector != SET_CAP);
        address target = onSafe ? address(safe) : address(vault);
        World memory before = _world();
        _expectRefused(GuardianModule.ParameterNotPermitted.selector, target, selector);
        module.setParameter(target, selector, value);
        _assertSameWorld(before, _world());
    }

    /// For the permitted setter, a value executes exactly when it is inside
    /// [min, max], within maxChangeBps of the current value, different from it,
    /// and the delay since the last update has passed; otherwise nothing changes.
    function testFuzz_setParameter_executesExactlyWithinBounds(uint256 first, uint256 second, uint256 wait) public {
        wait = wait % (3 * MIN_DELAY);
        uint256[2] memory values = [first, second];
        uint256 lastUpdate = 0;
        for (uint256 i = 0; i < 2; i++) {
            if (i == 1) vm.warp(block.timestamp + wait);
            // Keep most inputs near the current value so both outcomes are explored.
            uint256 current = vault.supplyCap();
            uint256 v = values[i] % 2 == 0 ? current - current / 4 + (values[i] % (current / 2 + 1)) : values[i];
            bool timeOk = lastUpdate == 0 || block.timestamp >= lastUpdate + MIN_DELAY;
            bool cooldownOk = lastUpdate == 0 || block.timestamp >= lastUpdate + COOLDOWN;
            uint256 delta = v > current ? v - current : current - v;
            bool expected = v >= CAP_MIN && v <= CAP_MAX && v != current && delta * 10_000 <= current * MAX_CHANGE_BPS
                && timeOk && cooldownOk;

            vm.prank(guardian);
            try module.setParameter(address(vault), SET_CAP, v) {
                vm.assertTrue(expected, "a value outside the permission executed");
                vm.assertEq(vault.supplyCap(), v, "value applied");
                lastUpdate = block.timestamp;
            } catch {
                vm.assertFalse(expected, "a value inside the permission was refused");
                vm.assertEq(vault.supplyCap(), current, "refused value changed state");
            }
            uint256 cap = vault.supplyCap();
            vm.assertTrue(cap >= CAP_MIN && cap <= CAP_MAX, "cap left its bounds");
        }
    }

    /// Nobody but a guardian can execute anything, whatever they send.
    function testFuzz_nonGuardians_cannotExecute(address caller, address target, bytes4 selector, uint256 value)
        public
    {
        vm.assume(caller != guardian);
        World memory before = _world();
        vm.prank(caller);
        vm.expectRevert(abi.encodeWithSelector(GuardianModule.OnlyGuardian.selector, caller));
        module.pause(target, selector);
        vm.prank(caller);
        vm.expectRevert(abi.encodeWithSelector(GuardianModule.OnlyGuardian.selector, caller));
        module.setParameter(target, selector, value);
        _assertSameWorld(before, _world());
    }

    /// Arbitrary calldata from a guardian to the module — any function, any
    /// arguments — never unpauses the vault, never moves the cap outside its
    /// bounds or by more than one step, and never touches the Safe's owners,
    /// threshold, funds or the module's configuration.
    function testFuzz_arbitraryGuardianCalldata_staysInsidePermissions(bytes calldata data) public {
        _safeExec(address(vault), abi.encodeCall(vault.pause, ()));
        token.mint(address(safe), 1_000e18);
        World memory before = _world();

        vm.prank(guardian);
        (bool ok,) = address(module).call(data);

        World memory afterCall = _world();
        vm.assertTrue(afterCall.paused, "guardian unpaused the vault");
        uint256 delta = afterCall.supplyCap > before.supplyCap
            ? afterCall.supplyCap - before.supplyCap
            : before.supplyCap - afterCall.supplyCap;
        vm.assertLe(delta * 10_000, before.supplyCap * MAX_CHANGE_BPS, "cap moved more than one step");
        vm.assertTrue(afterCall.supplyCap >= CAP_MIN && afterCall.supplyCap <= CAP_MAX, "cap out of bounds");
        vm.assertEq(afterCall.threshold, before.threshold, "threshold changed");
        vm.assertEq(afterCall.ownerCount, before.ownerCount, "owners changed");
        vm.assertEq(afterCall.safeTokenBalance, before.safeTokenBalance, "safe funds moved");
        vm.assertEq(afterCall.guardianCount, before.guardianCount, "guardians changed");
        if (!ok) vm.assertEq(afterCall.supplyCap, before.supplyCap, "failed call changed the cap");
    }

    /// Structured version of the above: the module's two entry points with a
    /// fuzzed selector chosen among those that matter and fuzzed arguments.
    function testFuzz_guardianCalls_neverUnpauseOrEscapeBounds(uint8 which, uint8 selectorChoice, uint256 value)
        public
    {
        _safeExec(address(vault), abi.encodeCall(vault.pause, ()));
        bytes4[5] memory selectors = [PAUSE, UNPAUSE, SET_CAP, bytes4(keccak256("transfer(address,uint256)")), CAP];
        bytes4 selector = selectors[selectorChoice % selectors.length];
        vm.prank(guardian);
        if (which % 2 == 0) {
            try module.pause(address(vault), selector) {} catch {}
        } else {
            try module.setParameter(address(vault), selector, value) {} catch {}
        }
        vm.assertTrue(vault.paused(), "unpaused by a guardian");
        uint256 cap = vault.supplyCap();
        vm.assertTrue(cap >= CAP_START * 8 / 10 && cap <= CAP_START * 12 / 10, "cap escaped one step");
    }

    /// Configuring an unpause permission is refused for any target and getter.
    function testFuzz_configuration_refusesUnpause(address target, bytes4 getter, uint256 min, uint256 max) public {
        bytes memory err = abi.encodeWithSelector(GuardianModule.UnpauseForbidden.selector);
        if (target == address(0)) {
            err = abi.encodeWithSelector(GuardianModule.ZeroAddress.selector);
        } else if (target == address(safe) || target == address(module)) {
            err = abi.encodeWithSelector(GuardianModule.ForbiddenTarget.selector, target);
        } else if (getter == bytes4(0)) {
            err = abi.encodeWithSelector(GuardianModule.ZeroSelector.selector);
        }
        vm.prank(address(safe));
        vm.expectRevert(err);
        module.setPausePermission(target, UNPAUSE, getter, true);
        vm.prank(address(safe));
        vm.expectRevert(err);
        module.setParameterPermission(target, UNPAUSE, getter, min, max, 100, 0);
        (bool allowed,) = module.pausePermission(target, UNPAUSE);
        vm.assertFalse(allowed, "unpause permission stored");
        (bool pAllowed,,,,,,) = module.parameterPermission(target, UNPAUSE);
        vm.assertFalse(pAllowed, "unpause setter stored");
    }
}
