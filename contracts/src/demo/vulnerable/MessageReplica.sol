// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {ProtocolRoles} from "../ProtocolRoles.sol";

/// @title MessageReplica — VULNERABLE when deployed with a zero root (Nomad 2022 shape)
/// @notice The receiving end of a token bridge: it escrows bridged tokens and
/// releases them when a message from the remote chain is processed. A message
/// must first be proven against a Merkle root the updater committed, and the
/// root must have passed its optimistic window (`confirmAt`).
///
/// The incidents list records Nomad Bridge, 2022-08-02, "Business Logic Flaw :
/// Incorrect acceptable merkle-root checks", ~152M US$ in multiple ERC-20
/// tokens. As in Nomad's Replica, the constructor marks the initial committed
/// root as confirmed, and an unproven message's root reads as 0x00. Nomad's
/// upgrade initialized the committed root to 0x00, so every unproven message
/// looked proven against a confirmed root. Deploy this contract with
/// `initialRoot == 0` to reproduce that: then anyone can `process` any message
/// they write. Once one attacker did it, hundreds of copycats replayed the
/// transaction with their own address as recipient, each draining a slice.
contract MessageReplica is ProtocolRoles {
    using SafeERC20 for IERC20;

    /// Marks a processed message (never a real root).
    bytes32 public constant PROCESSED = bytes32(uint256(2));

    uint32 public immutable remoteDomain;
    uint256 public immutable optimisticSeconds;
    address public immutable updater;

    bytes32 public committedRoot;
    /// root => timestamp from which messages proven against it may be processed.
    mapping(bytes32 => uint256) public confirmAt;
    /// message hash => root it was proven against, or PROCESSED.
    mapping(bytes32 => bytes32) public messages;

    event RootUpdated(bytes32 indexed root, uint256 confirmAt);
    event MessageProven(bytes32 indexed messageHash, bytes32 indexed root);
    event MessageProcessed(bytes32 indexed messageHash, address indexed token, address indexed recipient, uint256 amount);

    error NotUpdater(address caller);
    error AlreadyKnown(bytes32 messageHash);
    error InvalidProof(bytes32 messageHash, bytes32 root);
    error NotProven(bytes32 messageHash);
    error WrongDomain(uint32 domain);

    constructor(address admin, uint32 remoteDomain_, address updater_, uint256 optimisticSeconds_, bytes32 initialRoot)
        ProtocolRoles(admin)
    {
        remoteDomain = remoteDomain_;
        updater = updater_;
        optimisticSeconds = optimisticSeconds_;
        committedRoot = initialRoot;
        // As Nomad's Replica.initialize: the initial root counts as confirmed.
        // With initialRoot == 0 this confirms the "root" of every unproven message.
        confirmAt[initialRoot] = 1;
    }

    /// The updater commits a new root; usable after the optimistic window.
    function update(bytes32 newRoot) external {
        if (msg.sender != updater) revert NotUpdater(msg.sender);
        committedRoot = newRoot;
        confirmAt[newRoot] = block.timestamp + optimisticSeconds;
        emit RootUpdated(newRoot, block.timestamp + optimisticSeconds);
    }

    /// Proves `message` is a leaf of `root` (OpenZeppelin sorted-pair Merkle tree
    /// over keccak256(message)).
    function prove(bytes calldata message, bytes32[] calldata proof, bytes32 root) external {
        bytes32 messageHash = keccak256(message);
        if (messages[messageHash] != bytes32(0)) revert AlreadyKnown(messageHash);
        if (!acceptableRoot(root) || !MerkleProof.verifyCalldata(proof, root, messageHash)) {
            revert InvalidProof(messageHash, root);
        }
        messages[messageHash] = root;
        emit MessageProven(messageHash, root);
    }

    /// Releases the tokens a proven message carries.
    function process(bytes calldata message) external whenNotPaused {
        bytes32 messageHash = keccak256(message);
        // BUG (Nomad): for an unproven message this reads root 0x00, which is
        // "acceptable" when the replica was deployed with initialRoot == 0.
        if (!acceptableRoot(messages[messageHash])) revert NotProven(messageHash);
        messages[messageHash] = PROCESSED;
        (uint32 origin,, address token, address recipient, uint256 amount) =
            abi.decode(message, (uint32, uint256, address, address, uint256));
        if (origin != remoteDomain) revert WrongDomain(origin);
        IERC20(token).safeTransfer(recipient, amount);
        emit MessageProcessed(messageHash, token, recipient, amount);
    }

    function acceptableRoot(bytes32 root) public view returns (bool) {
        if (root == PROCESSED) return false;
        uint256 confirmedAt = confirmAt[root];
        return confirmedAt != 0 && block.timestamp >= confirmedAt;
    }

    /// The message layout `process` expects: a token transfer from the remote chain.
    function encodeTransfer(uint256 nonce, address token, address recipient, uint256 amount)
        external
        view
        returns (bytes memory)
    {
        return abi.encode(remoteDomain, nonce, token, recipient, amount);
    }
}
