// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {IERC3156FlashBorrower} from "@openzeppelin/contracts/interfaces/IERC3156FlashBorrower.sol";
import {IERC3156FlashLender} from "@openzeppelin/contracts/interfaces/IERC3156FlashLender.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

/// @title FlashLoanPool
/// @notice An ERC-3156 flash lender for any token it holds (fee 0.09%), the
/// demo's stand-in for the Aave/Balancer/dYdX flash loans that financed the
/// Inverse, Cream, Harvest and Euler attacks. Funded by plain transfers.
contract FlashLoanPool is IERC3156FlashLender, ReentrancyGuard {
    using SafeERC20 for IERC20;

    bytes32 private constant CALLBACK_SUCCESS = keccak256("ERC3156FlashBorrower.onFlashLoan");
    uint256 public constant FEE_BPS = 9;

    event FlashLoan(address indexed receiver, address indexed token, uint256 amount, uint256 fee);

    error AmountTooLarge(uint256 amount, uint256 available);
    error CallbackFailed();

    function maxFlashLoan(address token) public view override returns (uint256) {
        return IERC20(token).balanceOf(address(this));
    }

    function flashFee(address, uint256 amount) public pure override returns (uint256) {
        return (amount * FEE_BPS + 9_999) / 10_000;
    }

    function flashLoan(IERC3156FlashBorrower receiver, address token, uint256 amount, bytes calldata data)
        external
        override
        nonReentrant
        returns (bool)
    {
        uint256 available = maxFlashLoan(token);
        if (amount > available) revert AmountTooLarge(amount, available);
        uint256 fee = flashFee(token, amount);
        IERC20(token).safeTransfer(address(receiver), amount);
        if (receiver.onFlashLoan(msg.sender, token, amount, fee, data) != CALLBACK_SUCCESS) revert CallbackFailed();
        IERC20(token).safeTransferFrom(address(receiver), address(this), amount + fee);
        emit FlashLoan(address(receiver), token, amount, fee);
        return true;
    }
}
