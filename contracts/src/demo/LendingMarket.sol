// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {IPriceFeed} from "./IPriceFeed.sol";
import {ProtocolRoles} from "./ProtocolRoles.sol";

/// @title LendingMarket
/// @notice The demo protocol's lending market: lenders supply the debt token (a
/// stablecoin), borrowers post the collateral token and borrow up to
/// `collateralFactorBps` of its value, priced by a Chainlink-style feed. No
/// interest, to stay small. The protocol's Safe holds the roles:
///   * `pause()` / `unpause()` — everything except repaying stops while paused;
///   * `setCollateralFactorBps(uint256)` / `collateralFactorBps()`;
///   * `setSupplyCap(uint256)` / `supplyCap()` (most debt token lenders may supply).
/// Deployed with a KeeperPriceFeed it is the healthy market; deployed with a
/// SpotPriceFeed it is the Inverse-Finance-shaped vulnerable one (see there).
contract LendingMarket is ProtocolRoles, ReentrancyGuard {
    using SafeERC20 for IERC20;

    uint256 public constant BPS = 10_000;
    uint256 public constant MAX_COLLATERAL_FACTOR_BPS = 9_000;
    /// Bonus paid to liquidators in collateral, in bps of the repaid value.
    uint256 public constant LIQUIDATION_BONUS_BPS = 500;

    IERC20 public immutable collateralToken;
    IERC20 public immutable debtToken;
    IPriceFeed public immutable priceFeed;

    uint256 public collateralFactorBps;
    uint256 public supplyCap;

    uint256 public totalSupplied;
    uint256 public totalBorrowed;
    mapping(address => uint256) public suppliedOf;
    mapping(address => uint256) public collateralOf;
    mapping(address => uint256) public borrowedOf;

    event CollateralFactorUpdated(uint256 oldValue, uint256 newValue);
    event SupplyCapUpdated(uint256 oldValue, uint256 newValue);
    event Supplied(address indexed lender, uint256 amount);
    event Withdrawn(address indexed lender, uint256 amount);
    event CollateralDeposited(address indexed borrower, uint256 amount);
    event CollateralWithdrawn(address indexed borrower, uint256 amount);
    event Borrowed(address indexed borrower, uint256 amount);
    event Repaid(address indexed payer, address indexed borrower, uint256 amount);
    event Liquidated(address indexed liquidator, address indexed borrower, uint256 repaid, uint256 seized);

    error CollateralFactorTooHigh(uint256 value, uint256 max);
    error SupplyCapExceeded(uint256 totalAfter, uint256 cap);
    error InsufficientBalance(uint256 requested, uint256 available);
    error InsufficientCash(uint256 requested, uint256 available);
    error Undercollateralized(uint256 borrowed, uint256 limit);
    error NotLiquidatable(address borrower);
    error InvalidPrice(int256 answer);

    constructor(
        address admin,
        IERC20 collateralToken_,
        IERC20 debtToken_,
        IPriceFeed priceFeed_,
        uint256 collateralFactorBps_,
        uint256 supplyCap_
    ) ProtocolRoles(admin) {
        if (collateralFactorBps_ > MAX_COLLATERAL_FACTOR_BPS) {
            revert CollateralFactorTooHigh(collateralFactorBps_, MAX_COLLATERAL_FACTOR_BPS);
        }
        collateralToken = collateralToken_;
        debtToken = debtToken_;
        priceFeed = priceFeed_;
        collateralFactorBps = collateralFactorBps_;
        supplyCap = supplyCap_;
    }

    // ---- risk parameters (the Safe, or guardians through GuardianModule) ----

    function setCollateralFactorBps(uint256 newValue) external onlyRole(RISK_ADMIN_ROLE) {
        if (newValue > MAX_COLLATERAL_FACTOR_BPS) revert CollateralFactorTooHigh(newValue, MAX_COLLATERAL_FACTOR_BPS);
        emit CollateralFactorUpdated(collateralFactorBps, newValue);
        collateralFactorBps = newValue;
    }

    function setSupplyCap(uint256 newValue) external onlyRole(RISK_ADMIN_ROLE) {
        emit SupplyCapUpdated(supplyCap, newValue);
        supplyCap = newValue;
    }

    // ---- lenders --------------------------------------------------------------

    function supply(uint256 amount) external nonReentrant whenNotPaused {
        uint256 totalAfter = totalSupplied + amount;
        if (totalAfter > supplyCap) revert SupplyCapExceeded(totalAfter, supplyCap);
        debtToken.safeTransferFrom(msg.sender, address(this), amount);
        suppliedOf[msg.sender] += amount;
        totalSupplied = totalAfter;
        emit Supplied(msg.sender, amount);
    }

    function withdraw(uint256 amount) external nonReentrant whenNotPaused {
        if (amount > suppliedOf[msg.sender]) revert InsufficientBalance(amount, suppliedOf[msg.sender]);
        _requireCash(amount);
        suppliedOf[msg.sender] -= amount;
        totalSupplied -= amount;
        debtToken.safeTransfer(msg.sender, amount);
        emit Withdrawn(msg.sender, amount);
    }

    // ---- borrowers ------------------------------------------------------------

    function depositCollateral(uint256 amount) external nonReentrant whenNotPaused {
        collateralToken.safeTransferFrom(msg.sender, address(this), amount);
        collateralOf[msg.sender] += amount;
        emit CollateralDeposited(msg.sender, amount);
    }

    function withdrawCollateral(uint256 amount) external nonReentrant whenNotPaused {
        if (amount > collateralOf[msg.sender]) revert InsufficientBalance(amount, collateralOf[msg.sender]);
        collateralOf[msg.sender] -= amount;
        _requireHealthy(msg.sender);
        collateralToken.safeTransfer(msg.sender, amount);
        emit CollateralWithdrawn(msg.sender, amount);
    }

    function borrow(uint256 amount) external nonReentrant whenNotPaused {
        _requireCash(amount);
        borrowedOf[msg.sender] += amount;
        totalBorrowed += amount;
        _requireHealthy(msg.sender);
        debtToken.safeTransfer(msg.sender, amount);
        emit Borrowed(msg.sender, amount);
    }

    /// Repaying stays open while paused, so borrowers can always reduce risk.
    function repay(address borrower, uint256 amount) external nonReentrant {
        if (amount > borrowedOf[borrower]) amount = borrowedOf[borrower];
        debtToken.safeTransferFrom(msg.sender, address(this), amount);
        borrowedOf[borrower] -= amount;
        totalBorrowed -= amount;
        emit Repaid(msg.sender, borrower, amount);
    }

    /// Repays part of an undercollateralized loan and seizes collateral worth
    /// the repaid amount plus LIQUIDATION_BONUS_BPS, at the feed's price.
    function liquidate(address borrower, uint256 repayAmount) external nonReentrant whenNotPaused {
        if (borrowedOf[borrower] <= borrowLimit(borrower)) revert NotLiquidatable(borrower);
        if (repayAmount > borrowedOf[borrower]) repayAmount = borrowedOf[borrower];
        (uint256 price, uint256 scale) = _price();
        uint256 seized = (repayAmount * (BPS + LIQUIDATION_BONUS_BPS) * scale) / (BPS * price);
        if (seized > collateralOf[borrower]) seized = collateralOf[borrower];
        debtToken.safeTransferFrom(msg.sender, address(this), repayAmount);
        borrowedOf[borrower] -= repayAmount;
        totalBorrowed -= repayAmount;
        collateralOf[borrower] -= seized;
        collateralToken.safeTransfer(msg.sender, seized);
        emit Liquidated(msg.sender, borrower, repayAmount, seized);
    }

    // ---- views ----------------------------------------------------------------

    /// Debt tokens held by the market, available to borrow or withdraw.
    function cash() public view returns (uint256) {
        return debtToken.balanceOf(address(this));
    }

    /// Most debt `account` may have, given its collateral at the feed's price.
    function borrowLimit(address account) public view returns (uint256) {
        (uint256 price, uint256 scale) = _price();
        return (collateralOf[account] * price * collateralFactorBps) / (scale * BPS);
    }

    /// Borrowed / supplied, in bps (0 when nothing is supplied).
    function utilizationBps() external view returns (uint256) {
        return totalSupplied == 0 ? 0 : (totalBorrowed * BPS) / totalSupplied;
    }

    function _price() private view returns (uint256 price, uint256 scale) {
        (, int256 answer,,,) = priceFeed.latestRoundData();
        if (answer <= 0) revert InvalidPrice(answer);
        return (uint256(answer), 10 ** priceFeed.decimals());
    }

    function _requireHealthy(address account) private view {
        uint256 limit = borrowLimit(account);
        if (borrowedOf[account] > limit) revert Undercollateralized(borrowedOf[account], limit);
    }

    function _requireCash(uint256 amount) private view {
        uint256 available = cash();
        if (amount > available) revert InsufficientCash(amount, available);
    }
}
