// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {GuardianModule} from "../src/GuardianModule.sol";
import {ScriptBase} from "./ScriptVm.sol";

/// The parts of the Safe v1.4.1 interface the script uses.
interface ISafeExec {
    function nonce() external view returns (uint256);
    function getThreshold() external view returns (uint256);
    function getTransactionHash(
        address to,
        uint256 value,
        bytes calldata data,
        uint8 operation,
        uint256 safeTxGas,
        uint256 baseGas,
        uint256 gasPrice,
        address gasToken,
        address refundReceiver,
        uint256 nonce
    ) external view returns (bytes32);
    function execTransaction(
        address to,
        uint256 value,
        bytes calldata data,
        uint8 operation,
        uint256 safeTxGas,
        uint256 baseGas,
        uint256 gasPrice,
        address gasToken,
        address payable refundReceiver,
        bytes calldata signatures
    ) external payable returns (bool);
    function enableModule(address module) external;
    function isModuleEnabled(address module) external view returns (bool);
}

/// The GuardianModule set-up that `guardian setup plan` produces, performed by
/// a Safe's owners on a LOCAL chain (anvil), for tests and demos. On a real
/// network the council signs the plan's Transaction Builder batch instead:
/// this script needs the owners' private keys, which must never be gathered
/// in one place for a production Safe.
///
/// The module is deployed exactly as the plan does it (CREATE2 through the
/// deterministic deployment proxy, same salt), so it lands at the address
/// `guardian setup plan` predicts, and `guardian setup verify` accepts the
/// result when the environment matches guardian.toml's [setup].
///
/// Environment (addresses 0x-hex; lists comma-separated):
///   GUARDIAN_SAFE         the Safe
///   GUARDIAN_OWNER_KEYS   private keys of enough Safe owners for its threshold (anvil test keys)
///   GUARDIAN_GUARDIANS    guardian bot addresses
///   GUARDIAN_TARGET       the contract to pause
///   GUARDIAN_PAUSE        pause function signature (default "pause()")
///   GUARDIAN_PAUSED       paused getter signature (default "paused()")
///   GUARDIAN_COOLDOWN     target cooldown, seconds (default 0)
///   GUARDIAN_MAX_ACTIONS  actions per period (default 3)
///   GUARDIAN_PERIOD       period, seconds (default 86400)
///   GUARDIAN_SALT         CREATE2 salt (default 0)
///   optional parameter permission, all or none:
///   GUARDIAN_SETTER, GUARDIAN_GETTER (signatures), GUARDIAN_MIN, GUARDIAN_MAX,
///   GUARDIAN_MAX_CHANGE_BPS, GUARDIAN_MIN_DELAY (seconds)
///
///   forge script script/SetupGuardian.s.sol:SetupGuardian --rpc-url http://127.0.0.1:8545 \
///     --broadcast --offline --use ./solc-wrapper
contract SetupGuardian is ScriptBase {
    address internal constant CREATE2_DEPLOYER = 0x4e59b44847b379578588920cA78FbF26c0B4956C;

    ISafeExec internal safe;
    uint256[] internal ownerKeys;

    function run() external {
        safe = ISafeExec(vm.envAddress("GUARDIAN_SAFE"));
        ownerKeys = vm.envUint("GUARDIAN_OWNER_KEYS", ",");
        require(ownerKeys.length >= safe.getThreshold(), "GUARDIAN_OWNER_KEYS: fewer keys than the Safe's threshold");
        address[] memory guardians = vm.envAddress("GUARDIAN_GUARDIANS", ",");
        address target = vm.envAddress("GUARDIAN_TARGET");
        bytes32 salt = vm.envOr("GUARDIAN_SALT", bytes32(0));

        bytes memory initCode = abi.encodePacked(type(GuardianModule).creationCode, abi.encode(address(safe)));
        address module = address(
            uint160(uint256(keccak256(abi.encodePacked(bytes1(0xff), CREATE2_DEPLOYER, salt, keccak256(initCode)))))
        );

        vm.startBroadcast(ownerKeys[0]);
        if (module.code.length == 0) {
            _exec(CREATE2_DEPLOYER, abi.encodePacked(salt, initCode));
        }
        require(module.code.length > 0, "module deployment failed");
        if (!safe.isModuleEnabled(module)) {
            _exec(address(safe), abi.encodeCall(ISafeExec.enableModule, (module)));
        }
        GuardianModule m = GuardianModule(module);
        for (uint256 i = 0; i < guardians.length; i++) {
            if (!m.isGuardian(guardians[i])) {
                _exec(module, abi.encodeCall(GuardianModule.addGuardian, (guardians[i])));
            }
        }
        _exec(
            module,
            abi.encodeCall(
                GuardianModule.setPausePermission,
                (
                    target,
                    _selector(vm.envOr("GUARDIAN_PAUSE", string("pause()"))),
                    _selector(vm.envOr("GUARDIAN_PAUSED", string("paused()"))),
                    true
                )
            )
        );
        string memory setter = vm.envOr("GUARDIAN_SETTER", string(""));
        if (bytes(setter).length > 0) {
            _exec(
                module,
                abi.encodeCall(
                    GuardianModule.setParameterPermission,
                    (
                        target,
                        _selector(setter),
                        _selector(vm.envOr("GUARDIAN_GETTER", string(""))),
                        vm.envUint("GUARDIAN_MIN"),
                        vm.envUint("GUARDIAN_MAX"),
                        vm.envUint("GUARDIAN_MAX_CHANGE_BPS"),
                        vm.envUint("GUARDIAN_MIN_DELAY")
                    )
                )
            );
        }
        _exec(
            module,
            abi.encodeCall(
                GuardianModule.setTargetLimits,
                (
                    target,
                    vm.envOr("GUARDIAN_COOLDOWN", uint256(0)),
                    vm.envOr("GUARDIAN_MAX_ACTIONS", uint256(3)),
                    vm.envOr("GUARDIAN_PERIOD", uint256(1 days))
                )
            )
        );
        vm.stopBroadcast();
    }

    function _selector(string memory signature) internal pure returns (bytes4) {
        return bytes4(keccak256(bytes(signature)));
    }

    /// One Safe transaction (a plain call), signed by every owner key, the
    /// signatures sorted by owner address as the Safe requires.
    function _exec(address to, bytes memory data) internal {
        bytes32 hash = safe.getTransactionHash(to, 0, data, 0, 0, 0, 0, address(0), address(0), safe.nonce());
        uint256 n = ownerKeys.length;
        uint256[] memory keys = new uint256[](n);
        for (uint256 i = 0; i < n; i++) {
            keys[i] = ownerKeys[i];
        }
        for (uint256 i = 1; i < n; i++) {
            for (uint256 j = i; j > 0 && vm.addr(keys[j]) < vm.addr(keys[j - 1]); j--) {
                (keys[j], keys[j - 1]) = (keys[j - 1], keys[j]);
            }
        }
        bytes memory signatures;
        for (uint256 i = 0; i < n; i++) {
            (uint8 v, bytes32 r, bytes32 s) = vm.sign(keys[i], hash);
            signatures = abi.encodePacked(signatures, r, s, v);
        }
        bool ok = safe.execTransaction(to, 0, data, 0, 0, 0, 0, address(0), payable(address(0)), signatures);
        require(ok, "safe transaction failed");
    }
}
