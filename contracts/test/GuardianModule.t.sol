// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {GuardianModule} from "../src/GuardianModule.sol";
import {DemoToken} from "../src/demo/DemoToken.sol";
import {GuardedVault} from "../src/demo/GuardedVault.sol";
import {ProtocolRoles} from "../src/demo/ProtocolRoles.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {SafeTestBase} from "./utils/SafeTestBase.sol";

/// Shared fixture: the real Safe v1.4.1 (1-of-1), a GuardedVault it administers,
/// and a GuardianModule enabled on it with one guardian, a pause permission and
/// a supply-cap permission on the vault, and rate limits on the vault.
abstract contract GuardianModuleFixture is SafeTestBase {
    GuardianModule internal module;
    DemoToken internal token;
    GuardedVault internal vault;

    address internal guardian = address(0x6A4D);
    address internal stranger = address(0xBAD);

    uint256 internal constant START = 1_700_000_000;
    uint256 internal constant CAP_MIN = 100_000e18;
    uint256 internal constant CAP_MAX = 2_000_000e18;
    uint256 internal constant CAP_START = 1_000_000e18;
    uint256 internal constant MAX_CHANGE_BPS = 2_000; // 20% per update
    uint256 internal constant MIN_DELAY = 1 days;
    uint256 internal constant COOLDOWN = 1 hours;
    uint256 internal constant MAX_ACTIONS = 3;
    uint256 internal constant PERIOD = 1 days;

    bytes4 internal constant PAUSE = ProtocolRoles.pause.selector;
    bytes4 internal constant UNPAUSE = ProtocolRoles.unpause.selector;
    bytes4 internal constant PAUSED = Pausable.paused.selector;
    bytes4 internal constant SET_CAP = GuardedVault.setSupplyCap.selector;
    bytes4 internal constant CAP = bytes4(keccak256("supplyCap()"));

    function setUp() public virtual {
        vm.warp(START);
        _deploySafe();
        token = new DemoToken("Demo Dollar", "dUSD", address(this));
        vault = new GuardedVault(token, address(safe), CAP_START);
        module = new GuardianModule(address(safe));
        _enableModule(address(module));

        _safeExec(address(module), abi.encodeCall(module.addGuardian, (guardian)));
        _safeExec(address(module), abi.encodeCall(module.setPausePermission, (address(vault), PAUSE, PAUSED, true)));
        _safeExec(
            address(module),
            abi.encodeCall(
                module.setParameterPermission,
                (address(vault), SET_CAP, CAP, CAP_MIN, CAP_MAX, MAX_CHANGE_BPS, MIN_DELAY)
            )
        );
        _safeExec(address(module), abi.encodeCall(module.setTargetLimits, (address(vault), COOLDOWN, MAX_ACTIONS, PERIOD)));
    }

    function _asSafe() internal {
        vm.prank(address(safe));
    }
}

contract GuardianModuleConfigTest is GuardianModuleFixture {
    function test_constructor_storesSafe() public view {
        vm.assertEq(module.safe(), address(safe), "safe");
    }

    function test_constructor_rejectsZeroSafe() public {
        vm.expectRevert(GuardianModule.ZeroAddress.selector);
        new GuardianModule(address(0));
    }

    function test_configurationThroughSafe_isReadBack() public view {
        vm.assertTrue(module.isGuardian(guardian), "guardian");
        vm.assertFalse(module.isGuardian(stranger), "stranger");
        address[] memory list = module.guardians();
        vm.assertEq(list.length, 1, "guardian count");
        vm.assertEq(list[0], guardian, "guardian listed");

        (bool allowed, bytes4 getter) = module.pausePermission(address(vault), PAUSE);
        vm.assertTrue(allowed, "pause allowed");
        vm.assertEq(bytes32(getter), bytes32(PAUSED), "paused getter");

        (bool pAllowed, bytes4 pGetter, uint256 min, uint256 max, uint256 bps, uint256 delay, uint256 last) =
            module.parameterPermission(address(vault), SET_CAP);
        vm.assertTrue(pAllowed, "param allowed");
        vm.assertEq(bytes32(pGetter), bytes32(CAP), "cap getter");
        vm.assertEq(min, CAP_MIN, "min");
        vm.assertEq(max, CAP_MAX, "max");
        vm.assertEq(bps, MAX_CHANGE_BPS, "bps");
        vm.assertEq(delay, MIN_DELAY, "delay");
        vm.assertEq(last, 0, "never updated");

        (uint256 cooldown, uint256 maxActions, uint256 period, uint256 lastAction, uint256 start, uint256 count) =
            module.targetLimits(address(vault));
        vm.assertEq(cooldown, COOLDOWN, "cooldown");
        vm.assertEq(maxActions, MAX_ACTIONS, "max actions");
        vm.assertEq(period, PERIOD, "period");
        vm.assertEq(lastAction + start + count, 0, "no action yet");
    }

    function test_everyConfigFunction_rejectsCallersOtherThanSafe() public {
        address[2] memory callers = [safeOwner, guardian];
        for (uint256 i = 0; i < callers.length; i++) {
            bytes memory err = abi.encodeWithSelector(GuardianModule.OnlySafe.selector, callers[i]);
            vm.prank(callers[i]);
            vm.expectRevert(err);
            module.addGuardian(stranger);
            vm.prank(callers[i]);
            vm.expectRevert(err);
            module.removeGuardian(guardian);
            vm.prank(callers[i]);
            vm.expectRevert(err);
            module.setPausePermission(address(vault), PAUSE, PAUSED, false);
            vm.prank(callers[i]);
            vm.expectRevert(err);
            module.setParameterPermission(address(vault), SET_CAP, CAP, 0, type(uint256).max, 10_000, 0);
            vm.prank(callers[i]);
            vm.expectRevert(err);
            module.removeParameterPermission(address(vault), SET_CAP);
            vm.prank(callers[i]);
            vm.expectRevert(err);
            module.setTargetLimits(address(vault), 0, 100, 1);
        }
    }

    function test_addGuardian_emitsAndRejectsDuplicatesAndZero() public {
        vm.expectEmit(address(module));
        emit GuardianModule.GuardianAdded(stranger);
        _safeExec(address(module), abi.encodeCall(module.addGuardian, (stranger)));
        vm.assertTrue(module.isGuardian(stranger), "added");
        vm.assertEq(module.guardians().length, 2, "two guardians");

        _asSafe();
        vm.expectRevert(abi.encodeWithSelector(GuardianModule.GuardianAlreadyAdded.selector, guardian));
        module.addGuardian(guardian);

        _asSafe();
        vm.expectRevert(GuardianModule.ZeroAddress.selector);
        module.addGuardian(address(0));
    }

    function test_removeGuardian_removesFromListAndRevokesPower() public {
        address second = address(0x5EC0);
        _safeExec(address(module), abi.encodeCall(module.addGuardian, (second)));

        vm.expectEmit(address(module));
        emit GuardianModule.GuardianRemoved(guardian);
        _safeExec(address(module), abi.encodeCall(module.removeGuardian, (guardian)));

        vm.assertFalse(module.isGuardian(guardian), "removed");
        address[] memory list = module.guardians();
        vm.assertEq(list.length, 1, "one left");
        vm.assertEq(list[0], second, "second moved into the freed slot");

        vm.prank(guardian);
        vm.expectRevert(abi.encodeWithSelector(GuardianModule.OnlyGuardian.selector, guardian));
        module.pause(address(vault), PAUSE);

        _asSafe();
        vm.expectRevert(abi.encodeWithSelector(GuardianModule.GuardianNotFound.selector, guardian));
        module.removeGuardian(guardian);
    }

    function test_setPausePermission_validates() public {
        _asSafe();
        vm.expectRevert(GuardianModule.UnpauseForbidden.selector);
        module.setPausePermission(address(vault), UNPAUSE, PAUSED, true);

        _asSafe();
        vm.expectRevert(GuardianModule.ZeroSelector.selector);
        module.setPausePermission(address(vault), bytes4(0), PAUSED, true);

        _asSafe();
        vm.expectRevert(GuardianModule.ZeroSelector.selector);
        module.setPausePermission(address(vault), PAUSE, bytes4(0), true);

        _asSafe();
        vm.expectRevert(GuardianModule.ZeroAddress.selector);
        module.setPausePermission(address(0), PAUSE, PAUSED, true);

        _asSafe();
        vm.expectRevert(abi.encodeWithSelector(GuardianModule.ForbiddenTarget.selector, address(safe)));
        module.setPausePermission(address(safe), PAUSE, PAUSED, true);

        _asSafe();
        vm.expectRevert(abi.encodeWithSelector(GuardianModule.ForbiddenTarget.selector, address(module)));
        module.setPausePermission(address(module), PAUSE, PAUSED, true);
    }

    function test_setPausePermission_revokeDeletesIt() public {
        vm.expectEmit(address(module));
        emit GuardianModule.PausePermissionSet(address(vault), PAUSE, PAUSED, false);
        _safeExec(address(module), abi.encodeCall(module.setPausePermission, (address(vault), PAUSE, PAUSED, false)));
        (bool allowed, bytes4 getter) = module.pausePermission(address(vault), PAUSE);
        vm.assertFalse(allowed, "revoked");
        vm.assertEq(bytes32(getter), bytes32(0), "cleared");

        vm.prank(guardian);
        vm.expectRevert(abi.encodeWithSelector(GuardianModule.PauseNotPermitted.selector, address(vault), PAUSE));
        module.pause(address(vault), PAUSE);
    }

    function test_setParameterPermission_validates() public {
        _asSafe();
        vm.expectRevert(GuardianModule.UnpauseForbidden.selector);
        module.setParameterPermission(address(vault), UNPAUSE, CAP, 0, 1, 100, 0);

        _asSafe();
        vm.expectRevert(GuardianModule.ZeroSelector.selector);
        module.setParameterPermission(address(vault), bytes4(0), CAP, 0, 1, 100, 0);

        _asSafe();
        vm.expectRevert(GuardianModule.ZeroSelector.selector);
        module.setParameterPermission(address(vault), SET_CAP, bytes4(0), 0, 1, 100, 0);

        _asSafe();
        vm.expectRevert(abi.encodeWithSelector(GuardianModule.InvalidBounds.selector, 2, 1));
        module.setParameterPermission(address(vault), SET_CAP, CAP, 2, 1, 100, 0);

        _asSafe();
        vm.expectRevert(abi.encodeWithSelector(GuardianModule.InvalidMaxChangeBps.selector, 0));
        module.setParameterPermission(address(vault), SET_CAP, CAP, 0, 1, 0, 0);

        _asSafe();
        vm.expectRevert(abi.encodeWithSelector(GuardianModule.InvalidMaxChangeBps.selector, 10_001));
        module.setParameterPermission(address(vault), SET_CAP, CAP, 0, 1, 10_001, 0);

        _asSafe();
        vm.expectRevert(abi.encodeWithSelector(GuardianModule.ForbiddenTarget.selector, address(safe)));
        module.setParameterPermission(address(safe), bytes4(keccak256("changeThreshold(uint256)")), bytes4(keccak256("getThreshold()")), 1, 1, 100, 0);

        _asSafe();
        vm.expectRevert(GuardianModule.ZeroAddress.selector);
        module.setParameterPermission(address(0), SET_CAP, CAP, 0, 1, 100, 0);

        uint256 tooLong = module.MAX_DURATION() + 1;
        _asSafe();
        vm.expectRevert(abi.encodeWithSelector(GuardianModule.DurationTooLong.selector, tooLong, tooLong - 1));
        module.setParameterPermission(address(vault), SET_CAP, CAP, 0, 1, 100, tooLong);
    }

    function test_setParameterPermission_emitsAndKeepsLastUpdate() public {
        vm.prank(guardian);
        module.setParameter(address(vault), SET_CAP, CAP_START + 1e18);

        vm.expectEmit(address(module));
        emit GuardianModule.ParameterPermissionSet(address(vault), SET_CAP, CAP, 1, 5, 10_000, 7);
        _safeExec(
            address(module), abi.encodeCall(module.setParameterPermission, (address(vault), SET_CAP, CAP, 1, 5, 10_000, 7))
        );
        (,, uint256 min, uint256 max, uint256 bps, uint256 delay, uint256 last) =
            module.parameterPermission(address(vault), SET_CAP);
        vm.assertEq(min, 1, "min");
        vm.assertEq(max, 5, "max");
        vm.assertEq(bps, 10_000, "bps");
        vm.assertEq(delay, 7, "delay");
        vm.assertEq(last, START, "last update survives reconfiguration");
    }

    function test_removeParameterPermission() public {
        vm.expectEmit(address(module));
        emit GuardianModule.ParameterPermissionRemoved(address(vault), SET_CAP);
        _safeExec(address(module), abi.encodeCall(module.removeParameterPermission, (address(vault), SET_CAP)));
        (bool allowed,,,,,,) = module.parameterPermission(address(vault), SET_CAP);
        vm.assertFalse(allowed, "removed");

        _asSafe();
        vm.expectRevert(
            abi.encodeWithSelector(GuardianModule.ParameterPermissionNotFound.selector, address(vault), SET_CAP)
        );
        module.removeParameterPermission(address(vault), SET_CAP);

        vm.prank(guardian);
        vm.expectRevert(abi.encodeWithSelector(GuardianModule.ParameterNotPermitted.selector, address(vault), SET_CAP));
        module.setParameter(address(vault), SET_CAP, CAP_START + 1);
    }

    function test_setTargetLimits_validatesAndEmits() public {
        _asSafe();
        vm.expectRevert(abi.encodeWithSelector(GuardianModule.InvalidTargetLimits.selector, 0, 1));
        module.setTargetLimits(address(vault), 0, 0, 1);

        _asSafe();
        vm.expectRevert(abi.encodeWithSelector(GuardianModule.InvalidTargetLimits.selector, 1, 0));
        module.setTargetLimits(address(vault), 0, 1, 0);

        _asSafe();
        vm.expectRevert(abi.encodeWithSelector(GuardianModule.ForbiddenTarget.selector, address(safe)));
        module.setTargetLimits(address(safe), 0, 1, 1);

        uint256 tooLong = module.MAX_DURATION() + 1;
        _asSafe();
        vm.expectRevert(abi.encodeWithSelector(GuardianModule.DurationTooLong.selector, tooLong, tooLong - 1));
        module.setTargetLimits(address(vault), tooLong, 1, 1);

        _asSafe();
        vm.expectRevert(abi.encodeWithSelector(GuardianModule.DurationTooLong.selector, tooLong, tooLong - 1));
        module.setTargetLimits(address(vault), 0, 1, tooLong);

        vm.expectEmit(address(module));
        emit GuardianModule.TargetLimitsSet(address(vault), 5, 6, 7);
        _safeExec(address(module), abi.encodeCall(module.setTargetLimits, (address(vault), 5, 6, 7)));
        (uint256 cooldown, uint256 maxActions, uint256 period,,,) = module.targetLimits(address(vault));
        vm.assertEq(cooldown + maxActions + period, 18, "limits stored");
    }
}

contract GuardianModulePauseTest is GuardianModuleFixture {
    function test_pause_pausesTargetThroughSafeAndEmits() public {
        vm.expectEmit(address(module));
        emit GuardianModule.PauseExecuted(guardian, address(vault), PAUSE);
        vm.prank(guardian);
        module.pause(address(vault), PAUSE);

        vm.assertTrue(vault.paused(), "vault paused");
        (,,, uint256 lastAction, uint256 start, uint256 count) = module.targetLimits(address(vault));
        vm.assertEq(lastAction, START, "last action");
        vm.assertEq(start, START, "period start");
        vm.assertEq(count, 1, "one action");
    }

    function test_pause_blocksVaultUsers() public {
        token.mint(stranger, 10e18);
        vm.prank(guardian);
        module.pause(address(vault), PAUSE);
        vm.startPrank(stranger);
        token.approve(address(vault), 10e18);
        vm.expectRevert();
        vault.deposit(10e18, stranger);
        vm.stopPrank();
        vm.assertEq(token.balanceOf(stranger), 10e18, "nothing deposited");
    }

    function test_pause_rejectsNonGuardians() public {
        address[3] memory callers = [stranger, safeOwner, address(safe)];
        for (uint256 i = 0; i < callers.length; i++) {
            vm.prank(callers[i]);
            vm.expectRevert(abi.encodeWithSelector(GuardianModule.OnlyGuardian.selector, callers[i]));
            module.pause(address(vault), PAUSE);
        }
        vm.assertFalse(vault.paused(), "not paused");
    }

    /// The vault paused by the Safe, and the guardian's next call expected to
    /// revert with `UnpauseForbidden`.
    function _pausedThenExpectUnpauseForbidden() internal {
        _safeExec(address(vault), abi.encodeCall(vault.pause, ()));
        vm.prank(guardian);
        vm.expectRevert(GuardianModule.UnpauseForbidden.selector);
    }

    function test_pause_neverCallsUnpause() public {
        _pausedThenExpectUnpauseForbidden();
        module.pause(address(vault), UNPAUSE);
        vm.assertTrue(vault.paused(), "still paused");
    }

    function test_setParameter_neverCallsUnpause() public {
        _pausedThenExpectUnpauseForbidden();
        module.setParameter(address(vault), UNPAUSE, 0);
        vm.assertTrue(vault.paused(), "still paused");
    }

    function test_pause_rejectsUnpermittedSelectorAndTarget() public {
        vm.prank(guardian);
        vm.expectRevert(abi.encodeWithSelector(GuardianModule.PauseNotPermitted.selector, address(vault), SET_CAP));
        module.pause(address(vault), SET_CAP);

        vm.prank(guardian);
        vm.expectRevert(abi.encodeWithSelector(GuardianModule.PauseNotPermitted.selector, address(token), PAUSE));
        module.pause(address(token), PAUSE);
    }

    function test_pause_rejectsAlreadyPausedTarget() public {
        _safeExec(address(vault), abi.encodeCall(vault.pause, ()));
        vm.prank(guardian);
        vm.expectRevert(abi.encodeWithSelector(GuardianModule.AlreadyPaused.selector, address(vault)));
        module.pause(address(vault), PAUSE);
    }

    function test_pause_requiresTargetLimits() public {
        GuardedVault other = new GuardedVault(token, address(safe), CAP_START);
        _safeExec(address(module), abi.encodeCall(module.setPausePermission, (address(other), PAUSE, PAUSED, true)));
        vm.prank(guardian);
        vm.expectRevert(abi.encodeWithSelector(GuardianModule.TargetLimitsNotSet.selector, address(other)));
        module.pause(address(other), PAUSE);
        vm.assertFalse(other.paused(), "not paused");
    }

    function test_pause_respectsCooldown() public {
        vm.prank(guardian);
        module.pause(address(vault), PAUSE);
        _safeExec(address(vault), abi.encodeCall(vault.unpause, ()));

        vm.warp(START + COOLDOWN - 1);
        _assertPauseHeldUntil(GuardianModule.CooldownActive.selector, START + COOLDOWN);
        vm.assertTrue(vault.paused(), "paused after cooldown");
    }

    function test_pause_respectsActionCapPerPeriod() public {
        for (uint256 i = 0; i < MAX_ACTIONS; i++) {
            vm.warp(START + i * COOLDOWN);
            vm.prank(guardian);
            module.pause(address(vault), PAUSE);
            _safeExec(address(vault), abi.encodeCall(vault.unpause, ()));
        }
        vm.warp(START + MAX_ACTIONS * COOLDOWN);
        _assertPauseHeldUntil(GuardianModule.ActionLimitReached.selector, START + PERIOD);
        (,,,, uint256 start, uint256 count) = module.targetLimits(address(vault));
        vm.assertEq(start, START + PERIOD, "new period");
        vm.assertEq(count, 1, "count restarted");
    }

    /// The guardian's pause of the vault reverts with `limit` (a cooldown or
    /// the period's cap, naming the vault and `until`) until `until`, and
    /// goes through at `until`.
    function _assertPauseHeldUntil(bytes4 limit, uint256 until) internal {
        vm.prank(guardian);
        vm.expectRevert(abi.encodeWithSelector(limit, address(vault), until));
        module.pause(address(vault), PAUSE);

        vm.warp(until);
        vm.prank(guardian);
        module.pause(address(vault), PAUSE);
    }

    function test_pause_revertsWhenTheCallDoesNotPause() public {
        // A misconfigured permission: `totalAssets()` succeeds but pauses nothing.
        bytes4 notAPause = vault.totalAssets.selector;
        _assertPauseReverts(
            notAPause, PAUSED, abi.encodeWithSelector(GuardianModule.PauseNotEffective.selector, address(vault), notAPause)
        );
    }

    function test_pause_revertsWhenSafeCallFails() public {
        // The Safe lacks PAUSER_ROLE on this vault: the inner call reverts, the
        // Safe returns false, and the module must revert rather than succeed.
        GuardedVault foreign = new GuardedVault(token, address(this), CAP_START);
        _safeExec(address(module), abi.encodeCall(module.setPausePermission, (address(foreign), PAUSE, PAUSED, true)));
        _safeExec(address(module), abi.encodeCall(module.setTargetLimits, (address(foreign), 0, 10, 1 days)));
        vm.prank(guardian);
        vm.expectRevert(abi.encodeWithSelector(GuardianModule.SafeExecutionFailed.selector, address(foreign), PAUSE));
        module.pause(address(foreign), PAUSE);
        (,,, uint256 lastAction,, uint256 count) = module.targetLimits(address(foreign));
        vm.assertEq(lastAction + count, 0, "failed action consumed no rate limit");
    }

    function test_pause_revertsWhenPausedGetterFails() public {
        bytes4 missing = bytes4(keccak256("isPaused()"));
        _assertPauseReverts(
            PAUSE, missing, abi.encodeWithSelector(GuardianModule.GetterFailed.selector, address(vault), missing)
        );

        // A getter that returns something other than a bool.
        bytes4 notBool = vault.supplyCap.selector;
        _assertPauseReverts(
            PAUSE, notBool, abi.encodeWithSelector(GuardianModule.GetterFailed.selector, address(vault), notBool)
        );
    }

    /// Permits pausing the vault with `pauseSelector`, checked by `getter`, and
    /// expects the guardian's pause to revert with `reason`.
    function _assertPauseReverts(bytes4 pauseSelector, bytes4 getter, bytes memory reason) internal {
        _safeExec(
            address(module), abi.encodeCall(module.setPausePermission, (address(vault), pauseSelector, getter, true))
        );
        vm.prank(guardian);
        vm.expectRevert(reason);
        module.pause(address(vault), pauseSelector);
    }

    function test_pause_revertsWhenModuleDisabledOnSafe() public {
        // Safe's disableModule needs the previous module in its linked list: the sentinel.
        _safeExec(address(safe), abi.encodeCall(safe.disableModule, (address(0x1), address(module))));
        vm.prank(guardian);
        vm.expectRevert(bytes("GS104"));
        module.pause(address(vault), PAUSE);
    }
}

contract GuardianModuleParameterTest is GuardianModuleFixture {
    function test_setParameter_updatesThroughSafeAndEmits() public {
        uint256 newCap = CAP_START * 12 / 10; // +20%, the largest step
        vm.expectEmit(address(module));
        emit GuardianModule.ParameterChanged(guardian, address(vault), SET_CAP, CAP_START, newCap);
        vm.prank(guardian);
        module.setParameter(address(vault), SET_CAP, newCap);

        vm.assertEq(vault.supplyCap(), newCap, "cap updated");
        (,,,,,, uint256 last) = module.parameterPermission(address(vault), SET_CAP);
        vm.assertEq(last, START, "last update");
    }

    function test_setParameter_rejectsNonGuardians() public {
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(GuardianModule.OnlyGuardian.selector, stranger));
        module.setParameter(address(vault), SET_CAP, CAP_START + 1);
    }

    function test_setParameter_rejectsUnpermittedSetter() public {
        vm.prank(guardian);
        vm.expectRevert(abi.encodeWithSelector(GuardianModule.ParameterNotPermitted.selector, address(vault), PAUSE));
        module.setParameter(address(vault), PAUSE, 1);
    }

    function test_setParameter_rejectsValuesOutOfBounds() public {
        _safeExec(address(vault), abi.encodeCall(vault.setSupplyCap, (CAP_MIN + 1)));
        vm.prank(guardian);
        vm.expectRevert(abi.encodeWithSelector(GuardianModule.ValueOutOfBounds.selector, CAP_MIN - 1, CAP_MIN, CAP_MAX));
        module.setParameter(address(vault), SET_CAP, CAP_MIN - 1);

        _safeExec(address(vault), abi.encodeCall(vault.setSupplyCap, (CAP_MAX - 1)));
        vm.prank(guardian);
        vm.expectRevert(abi.encodeWithSelector(GuardianModule.ValueOutOfBounds.selector, CAP_MAX + 1, CAP_MIN, CAP_MAX));
        module.setParameter(address(vault), SET_CAP, CAP_MAX + 1);
    }

    function test_setParameter_rejectsUnchangedValue() public {
        vm.prank(guardian);
        vm.expectRevert(abi.encodeWithSelector(GuardianModule.ValueUnchanged.selector, CAP_START));
        module.setParameter(address(vault), SET_CAP, CAP_START);
    }

    function test_setParameter_rejectsStepsLargerThanMaxChange() public {
        uint256 tooHigh = CAP_START * 12 / 10 + 1;
        vm.prank(guardian);
        vm.expectRevert(
            abi.encodeWithSelector(GuardianModule.ChangeTooLarge.selector, CAP_START, tooHigh, MAX_CHANGE_BPS)
        );
        module.setParameter(address(vault), SET_CAP, tooHigh);

        uint256 tooLow = CAP_START * 8 / 10 - 1;
        vm.prank(guardian);
        vm.expectRevert(
            abi.encodeWithSelector(GuardianModule.ChangeTooLarge.selector, CAP_START, tooLow, MAX_CHANGE_BPS)
        );
        module.setParameter(address(vault), SET_CAP, tooLow);

        vm.prank(guardian);
        module.setParameter(address(vault), SET_CAP, CAP_START * 8 / 10);
        vm.assertEq(vault.supplyCap(), CAP_START * 8 / 10, "largest decrease accepted");
    }

    function test_setParameter_cannotMoveAZeroParameter() public {
        _safeExec(
            address(module),
            abi.encodeCall(module.setParameterPermission, (address(vault), SET_CAP, CAP, 0, CAP_MAX, 10_000, 0))
        );
        _safeExec(address(vault), abi.encodeCall(vault.setSupplyCap, (0)));
        vm.prank(guardian);
        vm.expectRevert(abi.encodeWithSelector(GuardianModule.ChangeTooLarge.selector, 0, 1, 10_000));
        module.setParameter(address(vault), SET_CAP, 1);
    }

    function test_setParameter_boundsHugeValuesWithoutOverflow() public {
        uint256 huge = type(uint256).max / 3;
        _safeExec(
            address(module),
            abi.encodeCall(
                module.setParameterPermission, (address(vault), SET_CAP, CAP, 0, type(uint256).max, 10_000, 0)
            )
        );
        _safeExec(address(vault), abi.encodeCall(vault.setSupplyCap, (huge)));

        vm.prank(guardian);
        vm.expectRevert(abi.encodeWithSelector(GuardianModule.ChangeTooLarge.selector, huge, 2 * huge + 2, 10_000));
        module.setParameter(address(vault), SET_CAP, 2 * huge + 2);

        vm.prank(guardian);
        module.setParameter(address(vault), SET_CAP, 2 * huge); // +100%, the configured maximum
        vm.assertEq(vault.supplyCap(), 2 * huge, "doubled");
    }

    function test_setParameter_respectsMinDelayInEitherDirection() public {
        vm.prank(guardian);
        module.setParameter(address(vault), SET_CAP, CAP_START + 1e18);

        vm.warp(START + COOLDOWN); // target cooldown over, parameter delay not
        vm.prank(guardian);
        vm.expectRevert(
            abi.encodeWithSelector(GuardianModule.UpdateTooSoon.selector, address(vault), SET_CAP, START + MIN_DELAY)
        );
        module.setParameter(address(vault), SET_CAP, CAP_START);

        vm.warp(START + MIN_DELAY);
        vm.prank(guardian);
        module.setParameter(address(vault), SET_CAP, CAP_START);
        vm.assertEq(vault.supplyCap(), CAP_START, "moved back after the delay");
    }

    function test_setParameter_sharesTargetRateLimitWithPause() public {
        vm.prank(guardian);
        module.setParameter(address(vault), SET_CAP, CAP_START + 1e18);
        vm.prank(guardian);
        vm.expectRevert(abi.encodeWithSelector(GuardianModule.CooldownActive.selector, address(vault), START + COOLDOWN));
        module.pause(address(vault), PAUSE);
    }

    function test_setParameter_revertsWhenGetterFails() public {
        bytes4 missing = bytes4(keccak256("cap()"));
        _safeExec(
            address(module),
            abi.encodeCall(module.setParameterPermission, (address(vault), SET_CAP, missing, 0, CAP_MAX, 10_000, 0))
        );
        vm.prank(guardian);
        vm.expectRevert(abi.encodeWithSelector(GuardianModule.GetterFailed.selector, address(vault), missing));
        module.setParameter(address(vault), SET_CAP, CAP_START);
    }

    function test_setParameter_revertsWhenGetterDoesNotReflectSetter() public {
        // Misconfigured: the getter is `decimals()` (18), not `supplyCap()`.
        bytes4 wrongGetter = vault.decimals.selector;
        _safeExec(
            address(module),
            abi.encodeCall(module.setParameterPermission, (address(vault), SET_CAP, wrongGetter, 0, 100, 10_000, 0))
        );
        vm.prank(guardian);
        vm.expectRevert(
            abi.encodeWithSelector(GuardianModule.ParameterNotApplied.selector, address(vault), SET_CAP, 19, 18)
        );
        module.setParameter(address(vault), SET_CAP, 19);
        vm.assertEq(vault.supplyCap(), CAP_START, "reverted as a whole");
    }

    function test_setParameter_revertsWhenSafeCallFails() public {
        GuardedVault foreign = new GuardedVault(token, address(this), CAP_START);
        _safeExec(
            address(module),
            abi.encodeCall(module.setParameterPermission, (address(foreign), SET_CAP, CAP, 0, CAP_MAX, 10_000, 0))
        );
        _safeExec(address(module), abi.encodeCall(module.setTargetLimits, (address(foreign), 0, 10, 1 days)));
        vm.prank(guardian);
        vm.expectRevert(abi.encodeWithSelector(GuardianModule.SafeExecutionFailed.selector, address(foreign), SET_CAP));
        module.setParameter(address(foreign), SET_CAP, CAP_START + 1);
        vm.assertEq(foreign.supplyCap(), CAP_START, "unchanged");
        (,,,,,, uint256 last) = module.parameterPermission(address(foreign), SET_CAP);
        vm.assertEq(last, 0, "no update recorded");
    }

    function test_setParameter_requiresTargetLimits() public {
        GuardedVault other = new GuardedVault(token, address(safe), CAP_START);
        _safeExec(
            address(module),
            abi.encodeCall(module.setParameterPermission, (address(other), SET_CAP, CAP, 0, CAP_MAX, 10_000, 0))
        );
        vm.prank(guardian);
        vm.expectRevert(abi.encodeWithSelector(GuardianModule.TargetLimitsNotSet.selector, address(other)));
        module.setParameter(address(other), SET_CAP, CAP_START + 1);
    }

    function test_guardianHoldsNoRoleOnTheTarget() public view {
        vm.assertFalse(vault.hasRole(vault.DEFAULT_ADMIN_ROLE(), guardian), "no admin");
        vm.assertFalse(vault.hasRole(vault.PAUSER_ROLE(), address(module)), "module holds no role either");
    }

    function test_directCallsByGuardianFailWithoutRoles() public {
        bytes32 role = vault.RISK_ADMIN_ROLE();
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, guardian, role)
        );
        vm.prank(guardian);
        vault.setSupplyCap(CAP_MAX);
    }
}
