// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {ProtocolRoles} from "../ProtocolRoles.sol";

/// @title ReentrantEthPool — VULNERABLE (Curve / Vyper 2023 shape)
/// @notice An ETH liquidity pool whose LP token (this ERC20) is worth a share of
/// the pool's ETH. The incidents list records Curve, 2023-07-30, "Vyper
/// Compiler Bug && Reentrancy", ~$41M: Vyper 0.2.15–0.3.0 gave each function
/// its own storage slot for the `nonreentrant("lock")` decorator, so the lock on
/// `remove_liquidity` did not block re-entering `add_liquidity`; several pools
/// (pETH, msETH, alETH, CRV/ETH) were drained the same way. This pool has the
/// same broken lock — one flag per function — and, like the drained pools,
/// sends ETH out of `removeLiquidity` before it burns the LP tokens. During that
/// call the pool holds less ETH but the same LP supply, so LP is underpriced:
/// ETH added by re-entering `addLiquidity` mints too many LP tokens, which later
/// redeem for other providers' ETH. Deploy several to model several pools.
contract ReentrantEthPool is ERC20, ProtocolRoles {
    // BUG: one lock per function instead of one shared lock (the Vyper bug).
    bool private _addLiquidityLocked;
    bool private _removeLiquidityLocked;

    event LiquidityAdded(address indexed provider, uint256 amount, uint256 lpMinted);
    event LiquidityRemoved(address indexed provider, uint256 lpBurned, uint256 amount);

    error Reentered();
    error ZeroAmount();

    constructor(address admin, string memory name_, string memory symbol_) ERC20(name_, symbol_) ProtocolRoles(admin) {}

    modifier lockAdd() {
        if (_addLiquidityLocked) revert Reentered();
        _addLiquidityLocked = true;
        _;
        _addLiquidityLocked = false;
    }

    modifier lockRemove() {
        if (_removeLiquidityLocked) revert Reentered();
        _removeLiquidityLocked = true;
        _;
        _removeLiquidityLocked = false;
    }

    /// Adds `msg.value` ETH; mints LP at the current ETH per LP.
    function addLiquidity() external payable lockAdd whenNotPaused returns (uint256 minted) {
        if (msg.value == 0) revert ZeroAmount();
        uint256 balanceBefore = address(this).balance - msg.value;
        uint256 supply = totalSupply();
        minted = supply == 0 || balanceBefore == 0 ? msg.value : (msg.value * supply) / balanceBefore;
        _mint(msg.sender, minted);
        emit LiquidityAdded(msg.sender, msg.value, minted);
    }

    /// Burns `lpAmount` LP for its share of the pool's ETH.
    function removeLiquidity(uint256 lpAmount) external lockRemove whenNotPaused returns (uint256 amount) {
        if (lpAmount == 0) revert ZeroAmount();
        amount = (lpAmount * address(this).balance) / totalSupply();
        // BUG: interaction before effect — ETH leaves before the LP is burned.
        Address.sendValue(payable(msg.sender), amount);
        _burn(msg.sender, lpAmount);
        emit LiquidityRemoved(msg.sender, lpAmount, amount);
    }

    /// ETH per LP token, scaled by 1e18 (what integrators and guardian read).
    function virtualPrice() external view returns (uint256) {
        uint256 supply = totalSupply();
        return supply == 0 ? 1e18 : (address(this).balance * 1e18) / supply;
    }
}
