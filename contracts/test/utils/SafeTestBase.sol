// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Safe} from "@safe-global/safe-contracts/contracts/Safe.sol";
import {SafeProxyFactory} from "@safe-global/safe-contracts/contracts/proxies/SafeProxyFactory.sol";
import {Enum} from "@safe-global/safe-contracts/contracts/common/Enum.sol";
import {TestBase} from "./Vm.sol";

/// Deploys the real Safe v1.4.1 — singleton, proxy factory and fallback handler
/// taken byte for byte from the safe-contracts npm package artifacts —
/// and a 1-of-1 Safe proxy owned by `safeOwner`. Sources are imported only for
/// their types; the deployed code is the npm package's.
abstract contract SafeTestBase is TestBase {
    string internal constant SAFE_ARTIFACTS = "../node_modules/@safe-global/safe-contracts/build/artifacts/contracts/";

    address internal safeOwner = address(0x5AFE0);
    Safe internal safe;

    function _deployArtifact(string memory relativePath) internal returns (address deployed) {
        string memory json = vm.readFile(string.concat(SAFE_ARTIFACTS, relativePath));
        bytes memory code = vm.parseJsonBytes(json, ".bytecode");
        assembly {
            deployed := create(0, add(code, 0x20), mload(code))
        }
        require(deployed != address(0), "artifact deployment failed");
    }

    function _deploySafe() internal {
        address singleton = _deployArtifact("Safe.sol/Safe.json");
        SafeProxyFactory factory = SafeProxyFactory(_deployArtifact("proxies/SafeProxyFactory.sol/SafeProxyFactory.json"));
        address fallbackHandler =
            _deployArtifact("handler/CompatibilityFallbackHandler.sol/CompatibilityFallbackHandler.json");

        address[] memory owners = new address[](1);
        owners[0] = safeOwner;
        bytes memory setup = abi.encodeCall(
            Safe.setup, (owners, 1, address(0), "", fallbackHandler, address(0), 0, payable(address(0)))
        );
        safe = Safe(payable(address(factory.createProxyWithNonce(singleton, setup, 0))));
        vm.label(address(safe), "Safe");
        vm.assertEq(safe.getThreshold(), 1, "safe threshold");
        vm.assertTrue(safe.isOwner(safeOwner), "safe owner");
    }

    /// Executes `to.call(data)` as a Safe transaction signed by its single owner
    /// (the "approved by msg.sender" signature type, v = 1). Reverts if it fails.
    function _safeExec(address to, bytes memory data) internal {
        bytes memory signature = abi.encodePacked(uint256(uint160(safeOwner)), bytes32(0), uint8(1));
        vm.prank(safeOwner);
        bool ok = safe.execTransaction(
            to, 0, data, Enum.Operation.Call, 0, 0, 0, address(0), payable(address(0)), signature
        );
        require(ok, "safe transaction failed");
    }

    function _enableModule(address module) internal {
        _safeExec(address(safe), abi.encodeCall(safe.enableModule, (module)));
        vm.assertTrue(safe.isModuleEnabled(module), "module enabled");
    }
}
