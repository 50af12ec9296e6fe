// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {IPriceFeed} from "./IPriceFeed.sol";

/// @title KeeperPriceFeed
/// @notice A Chainlink-style push feed for the demo: the owner, or a keeper the
/// owner names, publishes each new answer as a new round. Simulations move the
/// price with `updateAnswer` (e.g. a collateral crash that the guardian must
/// react to). This is the healthy oracle of the demo market.
contract KeeperPriceFeed is IPriceFeed, Ownable {
    uint8 public immutable override decimals;
    string public override description;
    address public keeper;

    uint80 private _roundId;
    int256 private _answer;
    uint256 private _updatedAt;

    event KeeperChanged(address indexed keeper);
    event AnswerUpdated(int256 indexed current, uint256 indexed roundId, uint256 updatedAt);

    error NotKeeper(address caller);
    error NonPositiveAnswer(int256 answer);

    constructor(address owner_, uint8 decimals_, string memory description_, int256 initialAnswer) Ownable(owner_) {
        decimals = decimals_;
        description = description_;
        _publish(initialAnswer);
    }

    function setKeeper(address keeper_) external onlyOwner {
        keeper = keeper_;
        emit KeeperChanged(keeper_);
    }

    function updateAnswer(int256 answer) external {
        if (msg.sender != owner() && msg.sender != keeper) revert NotKeeper(msg.sender);
        _publish(answer);
    }

    function latestRoundData() external view override returns (uint80, int256, uint256, uint256, uint80) {
        return (_roundId, _answer, _updatedAt, _updatedAt, _roundId);
    }

    /// The latest answer, as Chainlink's AggregatorInterface (what Aave's AaveOracle reads).
    function latestAnswer() external view returns (int256) {
        return _answer;
    }

    function _publish(int256 answer) private {
        if (answer <= 0) revert NonPositiveAnswer(answer);
        _roundId += 1;
        _answer = answer;
        _updatedAt = block.timestamp;
        emit AnswerUpdated(answer, _roundId, block.timestamp);
    }
}
