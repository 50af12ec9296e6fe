// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// The forge cheatcodes the scripts use (forge-std is not available offline;
/// see test/utils/Vm.sol for the tests' set).
interface ScriptVm {
    function envAddress(string calldata name) external view returns (address);
    function envAddress(string calldata name, string calldata delim) external view returns (address[] memory);
    function envUint(string calldata name) external view returns (uint256);
    function envUint(string calldata name, string calldata delim) external view returns (uint256[] memory);
    function envOr(string calldata name, string calldata defaultValue) external view returns (string memory);
    function envOr(string calldata name, uint256 defaultValue) external view returns (uint256);
    function envOr(string calldata name, bytes32 defaultValue) external view returns (bytes32);
    function addr(uint256 privateKey) external pure returns (address);
    function sign(uint256 privateKey, bytes32 digest) external pure returns (uint8 v, bytes32 r, bytes32 s);
    function startBroadcast(uint256 privateKey) external;
    function stopBroadcast() external;
}

abstract contract ScriptBase {
    ScriptVm internal constant vm = ScriptVm(address(uint160(uint256(keccak256("hevm cheat code")))));
    /// forge runs `run()` of a contract with this flag set.
    bool public IS_SCRIPT = true;
}
