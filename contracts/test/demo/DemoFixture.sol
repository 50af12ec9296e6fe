// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {GuardianModule} from "../../src/GuardianModule.sol";
import {ProtocolRoles} from "../../src/demo/ProtocolRoles.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {SafeTestBase} from "../utils/SafeTestBase.sol";

/// The demo protocol's owner: the real Safe, with a GuardianModule enabled and
/// one guardian bot. `_guardianPause` is the path guardian takes in production:
/// guardian key -> GuardianModule.pause -> Safe.execTransactionFromModule -> target.pause().
abstract contract DemoFixture is SafeTestBase {
    GuardianModule internal module;
    address internal guardian = address(0x6A4D);
    address internal attacker = address(0xA77AC);

    function _deployOwner() internal {
        vm.warp(1_700_000_000);
        _deploySafe();
        module = new GuardianModule(address(safe));
        _enableModule(address(module));
        _safeExec(address(module), abi.encodeCall(module.addGuardian, (guardian)));
    }

    /// The Safe's owners allow guardians to pause `target` (once per hour, at
    /// most 3 times a day).
    function _allowPause(address target) internal {
        _safeExec(
            address(module),
            abi.encodeCall(
                module.setPausePermission, (target, ProtocolRoles.pause.selector, Pausable.paused.selector, true)
            )
        );
        _safeExec(address(module), abi.encodeCall(module.setTargetLimits, (target, 1 hours, 3, 1 days)));
    }

    function _guardianPause(address target) internal {
        vm.prank(guardian);
        module.pause(target, ProtocolRoles.pause.selector);
        vm.assertTrue(Pausable(target).paused(), "target paused by the guardian");
    }
}
