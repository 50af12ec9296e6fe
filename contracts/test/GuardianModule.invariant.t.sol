// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Safe} from "@safe-global/safe-contracts/contracts/Safe.sol";
import {Enum} from "@safe-global/safe-contracts/contracts/common/Enum.sol";
import {GuardianModule} from "../src/GuardianModule.sol";
import {GuardedVault} from "../src/demo/GuardedVault.sol";
import {ProtocolRoles} from "../src/demo/ProtocolRoles.sol";
import {TestBase} from "./utils/Vm.sol";
import {GuardianModuleFixture} from "./GuardianModule.t.sol";

/// The actor forge's invariant fuzzer drives. Each step is something a
/// guardian (possibly a stolen key) or the Safe's owners might do; the handler
/// observes the vault from the outside and records any forbidden transition.
contract GuardianModuleHandler is TestBase {
    GuardianModule internal immutable module;
    GuardedVault internal immutable vault;
    Safe internal immutable safe;
    address internal immutable guardian;
    address internal immutable safeOwner;

    uint256 internal immutable capMin;
    uint256 internal immutable capMax;
    uint256 internal immutable maxChangeBps;
    uint256 internal immutable minDelay;
    uint256 internal immutable cooldown;
    uint256 internal immutable maxActions;
    uint256 internal immutable period;

    // Forbidden transitions observed (must stay zero).
    uint256 public unpausedByGuardian;
    uint256 public capOutOfBounds;
    uint256 public capStepTooLarge;
    uint256 public capUpdatedTooSoon;
    uint256 public cooldownBroken;
    uint256 public periodCapBroken;

    // Bookkeeping of successful guardian actions, as seen from outside.
    uint256 public guardianActions;
    uint256 public lastGuardianActionAt;
    uint256 public lastCapUpdateAt;
    uint256 public windowStart;
    uint256 public actionsInWindow;

    constructor(
        GuardianModule module_,
        GuardedVault vault_,
        Safe safe_,
        address guardian_,
        address safeOwner_,
        uint256[7] memory limits
    ) {
        module = module_;
        vault = vault_;
        safe = safe_;
        guardian = guardian_;
        safeOwner = safeOwner_;
        capMin = limits[0];
        capMax = limits[1];
        maxChangeBps = limits[2];
        minDelay = limits[3];
        cooldown = limits[4];
        maxActions = limits[5];
        period = limits[6];
    }

    // ---- actions ------------------------------------------------------------

    function guardianPause(uint8 selectorChoice) external {
        bytes4[4] memory selectors =
            [ProtocolRoles.pause.selector, ProtocolRoles.unpause.selector, GuardedVault.setSupplyCap.selector, bytes4(0)];
        bool pausedBefore = vault.paused();
        vm.prank(guardian);
        try module.pause(address(vault), selectors[selectorChoice % 4]) {
            _recordAction();
        } catch {}
        _checkNotUnpaused(pausedBefore);
    }

    function guardianSetCap(uint256 value, bool nearby) external {
        uint256 current = vault.supplyCap();
        if (nearby) value = current - current / 4 + value % (current / 2 + 1);
        bool pausedBefore = vault.paused();
        vm.prank(guardian);
        try module.setParameter(address(vault), GuardedVault.setSupplyCap.selector, value) {
            uint256 applied = vault.supplyCap();
            uint256 delta = applied > current ? applied - current : current - applied;
            if (delta * 10_000 > current * maxChangeBps) capStepTooLarge++;
            if (lastCapUpdateAt != 0 && block.timestamp < lastCapUpdateAt + minDelay) capUpdatedTooSoon++;
            lastCapUpdateAt = block.timestamp;
            _recordAction();
        } catch {}
        uint256 cap = vault.supplyCap();
        if (cap < capMin || cap > capMax) capOutOfBounds++;
        _checkNotUnpaused(pausedBefore);
    }

    /// A guardian tries the unpause selector through both entry points.
    function guardianTryUnpause(uint256 value) external {
        bool pausedBefore = vault.paused();
        vm.prank(guardian);
        try module.pause(address(vault), ProtocolRoles.unpause.selector) {} catch {}
        vm.prank(guardian);
        try module.setParameter(address(vault), ProtocolRoles.unpause.selector, value) {} catch {}
        _checkNotUnpaused(pausedBefore);
    }

    /// A guardian sends arbitrary calldata to the module.
    function guardianRawCall(bytes calldata data) external {
        bool pausedBefore = vault.paused();
        uint256 capBefore = vault.supplyCap();
        vm.prank(guardian);
        (bool ok,) = address(module).call(data);
        if (ok && vault.supplyCap() != capBefore) {
            // Only setParameter changes the cap; account for it like guardianSetCap does.
            uint256 applied = vault.supplyCap();
            uint256 delta = applied > capBefore ? applied - capBefore : capBefore - applied;
            if (delta * 10_000 > capBefore * maxChangeBps) capStepTooLarge++;
            if (lastCapUpdateAt != 0 && block.timestamp < lastCapUpdateAt + minDelay) capUpdatedTooSoon++;
            lastCapUpdateAt = block.timestamp;
        }
        if (ok && (vault.supplyCap() != capBefore || vault.paused() != pausedBefore)) _recordAction();
        _checkNotUnpaused(pausedBefore);
    }

    /// The Safe's owners unpause (the only legitimate way back).
    function ownersUnpause() external {
        if (!vault.paused()) return;
        _ownersExec(abi.encodeCall(vault.unpause, ()));
    }

    function passTime(uint256 secondsToPass) external {
        vm.warp(block.timestamp + secondsToPass % (2 * period));
    }

    // ---- helpers ------------------------------------------------------------

    function _ownersExec(bytes memory data) internal {
        bytes memory signature = abi.encodePacked(uint256(uint160(safeOwner)), bytes32(0), uint8(1));
        vm.prank(safeOwner);
        safe.execTransaction(
            address(vault), 0, data, Enum.Operation.Call, 0, 0, 0, address(0), payable(address(0)), signature
        );
    }

    function _checkNotUnpaused(bool pausedBefore) internal {
        if (pausedBefore && !vault.paused()) unpausedByGuardian++;
    }

    function _recordAction() internal {
        if (lastGuardianActionAt != 0 && block.timestamp < lastGuardianActionAt + cooldown) cooldownBroken++;
        lastGuardianActionAt = block.timestamp;
        guardianActions++;
        // The rule as specified: a period opens at the first action after the
        // previous one ended, and holds at most `maxActions` actions.
        if (actionsInWindow == 0 || block.timestamp >= windowStart + period) {
            windowStart = block.timestamp;
            actionsInWindow = 0;
        }
        actionsInWindow++;
        if (actionsInWindow > maxActions) periodCapBroken++;
    }
}

/// forge invariant test: across random sequences of guardian actions, owner
/// unpauses and time jumps, guardians never unpause, the cap never leaves
/// [min, max] or moves by more than maxChangeBps per update or sooner than
/// minDelay, and the per-target cooldown and action cap always hold.
contract GuardianModuleInvariantTest is GuardianModuleFixture {
    GuardianModuleHandler internal handler;

    function setUp() public override {
        super.setUp();
        handler = new GuardianModuleHandler(
            module,
            vault,
            safe,
            guardian,
            safeOwner,
            [CAP_MIN, CAP_MAX, MAX_CHANGE_BPS, MIN_DELAY, COOLDOWN, MAX_ACTIONS, PERIOD]
        );
    }

    /// forge reads this to fuzz only the handler.
    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    /// The handler really drives the module (the invariants are not vacuous):
    /// a pause, a cap step after the delay, and refused attempts in between.
    function test_handler_drivesRealActions() public {
        handler.guardianPause(0); // pause(): executes
        handler.guardianTryUnpause(0); // refused
        handler.ownersUnpause();
        handler.guardianSetCap(CAP_START * 11 / 10, false); // cooldown active: refused
        vm.assertEq(handler.guardianActions(), 1, "one action so far");
        handler.passTime(MIN_DELAY);
        handler.guardianSetCap(CAP_START * 11 / 10, false); // executes
        vm.assertEq(handler.guardianActions(), 2, "two actions");
        vm.assertEq(vault.supplyCap(), CAP_START * 11 / 10, "cap moved");
        vm.assertFalse(vault.paused(), "owners unpaused");
    }

    function invariant_guardiansNeverUnpause() public view {
        vm.assertEq(handler.unpausedByGuardian(), 0, "a guardian unpaused the vault");
    }

    function invariant_capStaysWithinBounds() public view {
        uint256 cap = vault.supplyCap();
        vm.assertTrue(cap >= CAP_MIN && cap <= CAP_MAX, "cap outside [min, max]");
        vm.assertEq(handler.capOutOfBounds(), 0, "cap left its bounds during a step");
    }

    function invariant_capMovesOneBoundedStepPerDelay() public view {
        vm.assertEq(handler.capStepTooLarge(), 0, "cap moved more than maxChangeBps");
        vm.assertEq(handler.capUpdatedTooSoon(), 0, "cap updated before minDelay");
    }

    function invariant_rateLimitsHold() public view {
        vm.assertEq(handler.cooldownBroken(), 0, "cooldown broken");
        vm.assertEq(handler.periodCapBroken(), 0, "action cap per period broken");
        (,,,,, uint256 count) = module.targetLimits(address(vault));
        vm.assertLe(count, MAX_ACTIONS, "module counted more actions than allowed");
    }

    function invariant_safeConfigurationUntouched() public view {
        vm.assertEq(safe.getThreshold(), 1, "threshold");
        vm.assertEq(safe.getOwners().length, 1, "owners");
        vm.assertTrue(module.isGuardian(guardian), "guardian set");
        vm.assertEq(module.guardians().length, 1, "guardian count");
    }
}
