// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IPriceFeed} from "../IPriceFeed.sol";
import {ConstantProductPool} from "../ConstantProductPool.sol";

/// @title SpotPriceFeed — VULNERABLE (Inverse Finance / Cream / Harvest shape)
/// @notice Presents a DEX pool's instantaneous reserve ratio as a Chainlink-style
/// feed. The incidents list records this class as "Flashloan & Price Oracle
/// Manipulation" — InverseFinance 2022-06-16 (53.2445 WBTC and 99,976.29 USDT),
/// "Price Manipulation" — CreamFinance 2021-10-27 ($130M), and "Flashloan
/// Attack" — Harvest Finance 2020-10-26 ($33.8 million). The bug: one large swap,
/// paid for with a flash loan, moves the answer arbitrarily within a single
/// transaction; there is no time-weighting and no sanity bound.
contract SpotPriceFeed is IPriceFeed {
    ConstantProductPool public immutable pool;
    /// The token being priced; the other pool token is the quote (unit of account).
    address public immutable baseToken;

    uint8 public constant override decimals = 8;

    constructor(ConstantProductPool pool_, address baseToken_) {
        pool = pool_;
        baseToken = baseToken_;
    }

    function description() external pure override returns (string memory) {
        return "spot price from a constant-product pool (manipulable)";
    }

    function latestRoundData() external view override returns (uint80, int256, uint256, uint256, uint80) {
        (uint256 baseReserve, uint256 quoteReserve) = address(pool.token0()) == baseToken
            ? (pool.reserve0(), pool.reserve1())
            : (pool.reserve1(), pool.reserve0());
        int256 answer = int256((quoteReserve * 10 ** decimals) / baseReserve);
        return (1, answer, block.timestamp, block.timestamp, 1);
    }
}
