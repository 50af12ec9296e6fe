// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {ProtocolRoles} from "../ProtocolRoles.sol";

/// @title DonationLendingPool — VULNERABLE (Euler Finance 2023 shape)
/// @notice A single-asset lending pool with Euler-style leverage: `mint` creates
/// matching deposit and debt (a self-collateralized loan), `burn` cancels them.
/// The incidents list records EulerFinance, 2023-03-13, "Business Logic Flaw",
/// ~$200M. The flaw modelled here is the same: `donateToReserves` lets an
/// account give away deposit without checking that it stays solvent, so an
/// attacker can make its own account insolvent on purpose, then liquidate it
/// from a second account; the liquidation discount (up to 20%, growing with
/// the shortfall) hands the liquidator more deposit than the debt it takes on,
/// and the difference is withdrawn from other depositors' cash. Each round is
/// bounded by the attacker's capital (a flash loan), so draining takes a few
/// transactions — time for a guardian to pause the pool between them.
///
/// Units: deposits and debts are token amounts (no exchange rate, no interest).
contract DonationLendingPool is ProtocolRoles, ReentrancyGuard {
    using SafeERC20 for IERC20;

    uint256 public constant BPS = 10_000;
    uint256 public constant MAX_COLLATERAL_FACTOR_BPS = 9_500;
    uint256 public constant MAX_LIQUIDATION_DISCOUNT_BPS = 2_000;

    IERC20 public immutable asset;
    /// Share of a deposit that may back debt: with 9_000, leverage up to 10x.
    uint256 public collateralFactorBps;

    mapping(address => uint256) public depositOf;
    mapping(address => uint256) public debtOf;
    uint256 public totalDeposits;
    uint256 public totalDebt;
    uint256 public reserves;

    event CollateralFactorUpdated(uint256 oldValue, uint256 newValue);
    event Deposited(address indexed account, uint256 amount);
    event Withdrawn(address indexed account, uint256 amount);
    event Minted(address indexed account, uint256 amount);
    event Burned(address indexed account, uint256 amount);
    event DonatedToReserves(address indexed account, uint256 amount);
    event Liquidated(address indexed liquidator, address indexed violator, uint256 repaid, uint256 yielded);

    error CollateralFactorTooHigh(uint256 value, uint256 max);
    error InsufficientDeposit(uint256 requested, uint256 available);
    error InsufficientCash(uint256 requested, uint256 available);
    error Insolvent(address account);
    error NotLiquidatable(address account);

    constructor(address admin, IERC20 asset_, uint256 collateralFactorBps_) ProtocolRoles(admin) {
        if (collateralFactorBps_ > MAX_COLLATERAL_FACTOR_BPS) {
            revert CollateralFactorTooHigh(collateralFactorBps_, MAX_COLLATERAL_FACTOR_BPS);
        }
        asset = asset_;
        collateralFactorBps = collateralFactorBps_;
    }

    function setCollateralFactorBps(uint256 newValue) external onlyRole(RISK_ADMIN_ROLE) {
        if (newValue > MAX_COLLATERAL_FACTOR_BPS) revert CollateralFactorTooHigh(newValue, MAX_COLLATERAL_FACTOR_BPS);
        emit CollateralFactorUpdated(collateralFactorBps, newValue);
        collateralFactorBps = newValue;
    }

    function deposit(uint256 amount) external nonReentrant whenNotPaused {
        asset.safeTransferFrom(msg.sender, address(this), amount);
        depositOf[msg.sender] += amount;
        totalDeposits += amount;
        emit Deposited(msg.sender, amount);
    }

    function withdraw(uint256 amount) external nonReentrant whenNotPaused {
        _debitDeposit(msg.sender, amount);
        _requireSolvent(msg.sender);
        uint256 available = cash();
        if (amount > available) revert InsufficientCash(amount, available);
        asset.safeTransfer(msg.sender, amount);
        emit Withdrawn(msg.sender, amount);
    }

    /// Leverage: adds `amount` to both the caller's deposit and its debt.
    function mint(uint256 amount) external nonReentrant whenNotPaused {
        depositOf[msg.sender] += amount;
        totalDeposits += amount;
        debtOf[msg.sender] += amount;
        totalDebt += amount;
        _requireSolvent(msg.sender);
        emit Minted(msg.sender, amount);
    }

    /// Deleverage: cancels `amount` of the caller's debt against its deposit.
    function burn(uint256 amount) external nonReentrant whenNotPaused {
        if (amount > debtOf[msg.sender]) amount = debtOf[msg.sender];
        _debitDeposit(msg.sender, amount);
        debtOf[msg.sender] -= amount;
        totalDebt -= amount;
        emit Burned(msg.sender, amount);
    }

    /// Gives part of the caller's deposit to the pool's reserves.
    /// BUG (the Euler flaw): no solvency check afterwards.
    function donateToReserves(uint256 amount) external nonReentrant whenNotPaused {
        _debitDeposit(msg.sender, amount);
        reserves += amount;
        emit DonatedToReserves(msg.sender, amount);
    }

    /// Takes over `repayAmount` of an insolvent account's debt and receives
    /// deposit worth repayAmount / (1 - discount), where the discount is the
    /// account's shortfall (1 - health), capped at 20%.
    function liquidate(address violator, uint256 repayAmount) external nonReentrant whenNotPaused {
        uint256 health = healthBps(violator);
        if (health >= BPS) revert NotLiquidatable(violator);
        uint256 discount = BPS - health;
        if (discount > MAX_LIQUIDATION_DISCOUNT_BPS) discount = MAX_LIQUIDATION_DISCOUNT_BPS;
        if (repayAmount > debtOf[violator]) repayAmount = debtOf[violator];
        uint256 yielded = (repayAmount * BPS) / (BPS - discount);
        if (yielded > depositOf[violator]) {
            yielded = depositOf[violator];
            repayAmount = (yielded * (BPS - discount)) / BPS;
        }
        debtOf[violator] -= repayAmount;
        debtOf[msg.sender] += repayAmount;
        depositOf[violator] -= yielded;
        depositOf[msg.sender] += yielded;
        _requireSolvent(msg.sender);
        emit Liquidated(msg.sender, violator, repayAmount, yielded);
    }

    /// deposit * collateralFactor / debt, in bps; type(uint256).max without debt.
    function healthBps(address account) public view returns (uint256) {
        if (debtOf[account] == 0) return type(uint256).max;
        return (depositOf[account] * collateralFactorBps) / debtOf[account];
    }

    function cash() public view returns (uint256) {
        return asset.balanceOf(address(this));
    }

    function _debitDeposit(address account, uint256 amount) private {
        if (amount > depositOf[account]) revert InsufficientDeposit(amount, depositOf[account]);
        depositOf[account] -= amount;
        totalDeposits -= amount;
    }

    function _requireSolvent(address account) private view {
        if (healthBps(account) < BPS) revert Insolvent(account);
    }
}
