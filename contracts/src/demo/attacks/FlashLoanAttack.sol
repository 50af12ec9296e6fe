// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC3156FlashBorrower} from "@openzeppelin/contracts/interfaces/IERC3156FlashBorrower.sol";
import {FlashLoanPool} from "../FlashLoanPool.sol";

/// @title FlashLoanAttack — one attack round paid for with a flash loan
/// @notice What the flash-loan attacks share: `attack()` borrows `loanAmount`
/// of `_loanToken()` from `flashLender`, lets the attack `_exploit` the loan in
/// the callback, approves the repayment and sends what is left (the profit) to
/// the deployer; no profit reverts the whole transaction.
abstract contract FlashLoanAttack is IERC3156FlashBorrower {
    bytes32 private constant CALLBACK_SUCCESS = keccak256("ERC3156FlashBorrower.onFlashLoan");

    address public immutable owner;
    FlashLoanPool public immutable flashLender;
    uint256 public immutable loanAmount;

    error NotFlashLender(address caller);
    error NoProfit();

    constructor(FlashLoanPool flashLender_, uint256 loanAmount_) {
        owner = msg.sender;
        flashLender = flashLender_;
        loanAmount = loanAmount_;
    }

    function attack() external returns (uint256 profit) {
        IERC20 token = _loanToken();
        flashLender.flashLoan(this, address(token), loanAmount, "");
        profit = token.balanceOf(address(this));
        if (profit == 0) revert NoProfit();
        token.transfer(owner, profit);
    }

    function onFlashLoan(address initiator, address token, uint256 amount, uint256 fee, bytes calldata)
        external
        override
        returns (bytes32)
    {
        if (msg.sender != address(flashLender) || initiator != address(this)) revert NotFlashLender(msg.sender);
        _exploit(token, amount);
        IERC20(token).approve(address(flashLender), amount + fee);
        return CALLBACK_SUCCESS;
    }

    /// The token the attack borrows (and is paid its profit in).
    function _loanToken() internal view virtual returns (IERC20);

    /// The attack itself, holding `amount` of the borrowed `token`; it must
    /// leave at least `amount` plus the fee for the repayment.
    function _exploit(address token, uint256 amount) internal virtual;
}
