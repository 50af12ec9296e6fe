// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";

/// @title ProtocolRoles
/// @notice The controls every pausable demo contract shares, so that guardian's
/// GuardianModule (or a direct pauser key) can act on all of them the same way:
///   * `pause()`            — PAUSER_ROLE (the Safe; optionally a guardian EOA);
///   * `unpause()`          — DEFAULT_ADMIN_ROLE only (the Safe's owners): a
///                            pauser can stop the protocol but never restart it;
///   * risk-parameter setters — RISK_ADMIN_ROLE (the Safe).
/// `admin` (the protocol's Safe) receives all three roles at deployment.
abstract contract ProtocolRoles is AccessControl, Pausable {
    bytes32 public constant PAUSER_ROLE = keccak256("PAUSER_ROLE");
    bytes32 public constant RISK_ADMIN_ROLE = keccak256("RISK_ADMIN_ROLE");

    constructor(address admin) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(PAUSER_ROLE, admin);
        _grantRole(RISK_ADMIN_ROLE, admin);
    }

    function pause() external onlyRole(PAUSER_ROLE) {
        _pause();
    }

    function unpause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _unpause();
    }
}
