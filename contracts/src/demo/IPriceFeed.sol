// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @title IPriceFeed
/// @notice The read side of a Chainlink-style price feed (the shape of
/// Chainlink's AggregatorV3Interface), which the demo lending market consumes.
/// Declared here because the Chainlink package is not a dependency.
interface IPriceFeed {
    function decimals() external view returns (uint8);

    function description() external view returns (string memory);

    function latestRoundData()
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound);
}
