// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Enum} from "@safe-global/safe-contracts/contracts/common/Enum.sol";
import {ModuleManager} from "@safe-global/safe-contracts/contracts/base/ModuleManager.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

/// @title GuardianModule
/// @notice A Safe module that lets named guardian bots act through a protocol's
/// Safe, but only in a narrow, pre-approved way:
///   * pause a target with a pause function the Safe allowed (never unpause);
///   * move a risk parameter through an allowed setter, within [min, max], by at
///     most `maxChangeBps` of its current value per update, and no more often
///     than every `minDelay` seconds (in the manner of Aave's Risk Steward);
///   * never more often than the per-target cooldown and action cap allow.
/// The module builds every call's calldata itself (the selector alone for a
/// pause, selector + one uint256 for a setter), always as a plain CALL with zero
/// value: a guardian key cannot send value, delegatecall, or pass arbitrary data.
/// Everything is configured by the Safe itself (i.e. by its owners' threshold).
///
/// Safe's `execTransactionFromModule` does not revert when the inner call fails:
/// it returns false. The module turns that into a revert (`SafeExecutionFailed`),
/// so a guardian transaction either did exactly what it says or nothing at all.
contract GuardianModule {
    /// `unpause()`: a guardian may never call it, whatever the configuration says.
    bytes4 public constant UNPAUSE_SELECTOR = 0x3f4ba83a;
    /// Basis-points denominator: 10_000 bps = 100%.
    uint256 public constant BPS = 10_000;
    /// Longest cooldown, period or minimum delay the Safe may configure.
    uint256 public constant MAX_DURATION = 365 days;

    /// The Safe this module acts through, and the only account that configures it.
    address public immutable safe;

    struct PausePermission {
        bool allowed;
        /// View function on the target returning `bool`, true once paused.
        bytes4 pausedGetter;
    }

    struct ParameterPermission {
        bool allowed;
        /// View function on the target returning the parameter as `uint256`.
        bytes4 getter;
        uint256 min;
        uint256 max;
        /// Largest change per update, in bps of the current value.
        uint256 maxChangeBps;
        /// Seconds that must pass between two updates of this parameter.
        uint256 minDelay;
        /// Timestamp of the last update made through this module (0: never).
        uint256 lastUpdate;
    }

    struct TargetLimits {
        /// Seconds that must pass between two guardian actions on the target.
        uint256 cooldown;
        /// Most guardian actions on the target within one period.
        uint256 maxActionsPerPeriod;
        /// Length of a period in seconds; a period starts at its first action.
        uint256 period;
        /// Timestamp of the last guardian action on the target (0: never).
        uint256 lastActionAt;
        /// Start of the current period and the actions taken in it.
        uint256 periodStart;
        uint256 actionsInPeriod;
    }

    address[] private _guardians;
    /// guardian => its index in `_guardians` plus one (0: not a guardian).
    mapping(address => uint256) private _guardianSlot;
    mapping(address => mapping(bytes4 => PausePermission)) private _pausePermissions;
    mapping(address => mapping(bytes4 => ParameterPermission)) private _parameterPermissions;
    mapping(address => TargetLimits) private _targetLimits;

    // ---- configuration events -------------------------------------------------
    event GuardianAdded(address indexed guardian);
    event GuardianRemoved(address indexed guardian);
    event PausePermissionSet(address indexed target, bytes4 indexed pauseSelector, bytes4 pausedGetter, bool allowed);
    event ParameterPermissionSet(
        address indexed target,
        bytes4 indexed setterSelector,
        bytes4 getterSelector,
        uint256 min,
        uint256 max,
        uint256 maxChangeBps,
        uint256 minDelay
    );
    event ParameterPermissionRemoved(address indexed target, bytes4 indexed setterSelector);
    event TargetLimitsSet(address indexed target, uint256 cooldown, uint256 maxActionsPerPeriod, uint256 period);

    // ---- execution events -----------------------------------------------------
    event PauseExecuted(address indexed guardian, address indexed target, bytes4 indexed selector);
    event ParameterChanged(
        address indexed guardian, address indexed target, bytes4 indexed selector, uint256 oldValue, uint256 newValue
    );

    // ---- errors: who may call -------------------------------------------------
    error OnlySafe(address caller);
    error OnlyGuardian(address caller);

    // ---- errors: configuration ------------------------------------------------
    error ZeroAddress();
    error ForbiddenTarget(address target);
    error ZeroSelector();
    error UnpauseForbidden();
    error GuardianAlreadyAdded(address guardian);
    error GuardianNotFound(address guardian);
    error InvalidBounds(uint256 min, uint256 max);
    error InvalidMaxChangeBps(uint256 maxChangeBps);
    error ParameterPermissionNotFound(address target, bytes4 setterSelector);
    error InvalidTargetLimits(uint256 maxActionsPerPeriod, uint256 period);
    error DurationTooLong(uint256 duration, uint256 maxDuration);

    // ---- errors: execution ----------------------------------------------------
    error PauseNotPermitted(address target, bytes4 selector);
    error ParameterNotPermitted(address target, bytes4 selector);
    error TargetLimitsNotSet(address target);
    error CooldownActive(address target, uint256 readyAt);
    error ActionLimitReached(address target, uint256 periodEndsAt);
    error GetterFailed(address target, bytes4 getter);
    error AlreadyPaused(address target);
    error PauseNotEffective(address target, bytes4 selector);
    error ValueOutOfBounds(uint256 newValue, uint256 min, uint256 max);
    error ValueUnchanged(uint256 value);
    error ChangeTooLarge(uint256 currentValue, uint256 newValue, uint256 maxChangeBps);
    error UpdateTooSoon(address target, bytes4 selector, uint256 readyAt);
    error SafeExecutionFailed(address target, bytes4 selector);
    error ParameterNotApplied(address target, bytes4 selector, uint256 expected, uint256 actual);

    modifier onlySafe() {
        if (msg.sender != safe) revert OnlySafe(msg.sender);
        _;
    }

    modifier onlyGuardian() {
        if (_guardianSlot[msg.sender] == 0) revert OnlyGuardian(msg.sender);
        _;
    }

    /// @param safe_ The protocol's Safe. Enable this module on it afterwards
    /// (`enableModule`, a Safe owners' transaction).
    constructor(address safe_) {
        if (safe_ == address(0)) revert ZeroAddress();
        safe = safe_;
    }

    // =========================================================================
    // Configuration (only the Safe)
    // =========================================================================

    function addGuardian(address guardian) external onlySafe {
        if (guardian == address(0)) revert ZeroAddress();
        if (_guardianSlot[guardian] != 0) revert GuardianAlreadyAdded(guardian);
        _guardians.push(guardian);
        _guardianSlot[guardian] = _guardians.length;
        emit GuardianAdded(guardian);
    }

    function removeGuardian(address guardian) external onlySafe {
        uint256 slot = _guardianSlot[guardian];
        if (slot == 0) revert GuardianNotFound(guardian);
        address last = _guardians[_guardians.length - 1];
        _guardians[slot - 1] = last;
        _guardianSlot[last] = slot;
        _guardians.pop();
        delete _guardianSlot[guardian];
        emit GuardianRemoved(guardian);
    }

    /// Allows (or forbids) guardians to call `pauseSelector()` on `target`.
    /// `pausedGetter()` must return true once the target is paused; it is read
    /// before (refusing to pause twice) and after (proving the call paused it).
    function setPausePermission(address target, bytes4 pauseSelector, bytes4 pausedGetter, bool allowed)
        external
        onlySafe
    {
        _checkTarget(target);
        if (pauseSelector == bytes4(0) || pausedGetter == bytes4(0)) revert ZeroSelector();
        if (pauseSelector == UNPAUSE_SELECTOR) revert UnpauseForbidden();
        if (allowed) {
            _pausePermissions[target][pauseSelector] = PausePermission({allowed: true, pausedGetter: pausedGetter});
        } else {
            delete _pausePermissions[target][pauseSelector];
        }
        emit PausePermissionSet(target, pauseSelector, pausedGetter, allowed);
    }

    /// Allows guardians to call `setterSelector(uint256 v)` on `target` with
    /// `min <= v <= max`, `|v - current| <= current * maxChangeBps / 10_000`
    /// (so a parameter whose current value is 0 cannot be moved by guardians),
    /// and at least `minDelay` seconds after the previous update of it.
    /// Re-configuring keeps the time of the last update.
    function setParameterPermission(
        address target,
        bytes4 setterSelector,
        bytes4 getterSelector,
        uint256 min,
        uint256 max,
        uint256 maxChangeBps,
        uint256 minDelay
    ) external onlySafe {
        _checkTarget(target);
        if (setterSelector == bytes4(0) || getterSelector == bytes4(0)) revert ZeroSelector();
        if (setterSelector == UNPAUSE_SELECTOR) revert UnpauseForbidden();
        if (min > max) revert InvalidBounds(min, max);
        if (maxChangeBps == 0 || maxChangeBps > BPS) revert InvalidMaxChangeBps(maxChangeBps);
        _checkDuration(minDelay);
        ParameterPermission storage p = _parameterPermissions[target][setterSelector];
        p.allowed = true;
        p.getter = getterSelector;
        p.min = min;
        p.max = max;
        p.maxChangeBps = maxChangeBps;
        p.minDelay = minDelay;
        emit ParameterPermissionSet(target, setterSelector, getterSelector, min, max, maxChangeBps, minDelay);
    }

    function removeParameterPermission(address target, bytes4 setterSelector) external onlySafe {
        if (!_parameterPermissions[target][setterSelector].allowed) {
            revert ParameterPermissionNotFound(target, setterSelector);
        }
        delete _parameterPermissions[target][setterSelector];
        emit ParameterPermissionRemoved(target, setterSelector);
    }

    /// Rate limits for all guardian actions on `target`. Required: a target
    /// without limits accepts no guardian action at all (fail closed).
    /// Re-configuring keeps the running period and the last action time.
    function setTargetLimits(address target, uint256 cooldown, uint256 maxActionsPerPeriod, uint256 period)
        external
        onlySafe
    {
        _checkTarget(target);
        if (maxActionsPerPeriod == 0 || period == 0) revert InvalidTargetLimits(maxActionsPerPeriod, period);
        _checkDuration(cooldown);
        _checkDuration(period);
        TargetLimits storage l = _targetLimits[target];
        l.cooldown = cooldown;
        l.maxActionsPerPeriod = maxActionsPerPeriod;
        l.period = period;
        emit TargetLimitsSet(target, cooldown, maxActionsPerPeriod, period);
    }

    // =========================================================================
    // Execution (only guardians)
    // =========================================================================

    /// Calls `target.selector()` through the Safe; the target must be paused after.
    function pause(address target, bytes4 selector) external onlyGuardian {
        if (selector == UNPAUSE_SELECTOR) revert UnpauseForbidden();
        PausePermission memory p = _pausePermissions[target][selector];
        if (!p.allowed) revert PauseNotPermitted(target, selector);
        if (_readPaused(target, p.pausedGetter)) revert AlreadyPaused(target);
        _consumeRateLimit(target);

        _execute(target, selector, abi.encodeWithSelector(selector));

        if (!_readPaused(target, p.pausedGetter)) revert PauseNotEffective(target, selector);
        emit PauseExecuted(msg.sender, target, selector);
    }

    /// Calls `target.selector(newValue)` through the Safe, within the bounds of
    /// the parameter permission; the getter must return `newValue` after.
    function setParameter(address target, bytes4 selector, uint256 newValue) external onlyGuardian {
        if (selector == UNPAUSE_SELECTOR) revert UnpauseForbidden();
        ParameterPermission storage p = _parameterPermissions[target][selector];
        if (!p.allowed) revert ParameterNotPermitted(target, selector);
        if (newValue < p.min || newValue > p.max) revert ValueOutOfBounds(newValue, p.min, p.max);
        if (p.lastUpdate != 0 && block.timestamp < p.lastUpdate + p.minDelay) {
            revert UpdateTooSoon(target, selector, p.lastUpdate + p.minDelay);
        }
        bytes4 getter = p.getter;
        uint256 oldValue = _readUint(target, getter);
        if (newValue == oldValue) revert ValueUnchanged(newValue);
        uint256 delta = newValue > oldValue ? newValue - oldValue : oldValue - newValue;
        // delta * BPS <= oldValue * maxChangeBps, exactly, without overflow: for
        // an integer delta this is delta <= floor(oldValue * maxChangeBps / BPS).
        if (delta > Math.mulDiv(oldValue, p.maxChangeBps, BPS)) {
            revert ChangeTooLarge(oldValue, newValue, p.maxChangeBps);
        }
        _consumeRateLimit(target);
        p.lastUpdate = block.timestamp;

        _execute(target, selector, abi.encodeWithSelector(selector, newValue));

        uint256 applied = _readUint(target, getter);
        if (applied != newValue) revert ParameterNotApplied(target, selector, newValue, applied);
        emit ParameterChanged(msg.sender, target, selector, oldValue, newValue);
    }

    // =========================================================================
    // Views: the whole configuration can be read back
    // =========================================================================

    function isGuardian(address account) external view returns (bool) {
        return _guardianSlot[account] != 0;
    }

    function guardians() external view returns (address[] memory) {
        return _guardians;
    }

    function pausePermission(address target, bytes4 pauseSelector)
        external
        view
        returns (bool allowed, bytes4 pausedGetter)
    {
        PausePermission memory p = _pausePermissions[target][pauseSelector];
        return (p.allowed, p.pausedGetter);
    }

    function parameterPermission(address target, bytes4 setterSelector)
        external
        view
        returns (
            bool allowed,
            bytes4 getterSelector,
            uint256 min,
            uint256 max,
            uint256 maxChangeBps,
            uint256 minDelay,
            uint256 lastUpdate
        )
    {
        ParameterPermission memory p = _parameterPermissions[target][setterSelector];
        return (p.allowed, p.getter, p.min, p.max, p.maxChangeBps, p.minDelay, p.lastUpdate);
    }

    function targetLimits(address target)
        external
        view
        returns (
            uint256 cooldown,
            uint256 maxActionsPerPeriod,
            uint256 period,
            uint256 lastActionAt,
            uint256 periodStart,
            uint256 actionsInPeriod
        )
    {
        TargetLimits memory l = _targetLimits[target];
        return (l.cooldown, l.maxActionsPerPeriod, l.period, l.lastActionAt, l.periodStart, l.actionsInPeriod);
    }

    // =========================================================================
    // Internals
    // =========================================================================

    /// The Safe itself and this module are never targets: a "setter" on the
    /// Safe could be `changeThreshold(uint256)`.
    function _checkTarget(address target) private view {
        if (target == address(0)) revert ZeroAddress();
        if (target == safe || target == address(this)) revert ForbiddenTarget(target);
    }

    function _checkDuration(uint256 duration) private pure {
        if (duration > MAX_DURATION) revert DurationTooLong(duration, MAX_DURATION);
    }

    function _consumeRateLimit(address target) private {
        TargetLimits storage l = _targetLimits[target];
        if (l.maxActionsPerPeriod == 0) revert TargetLimitsNotSet(target);
        if (l.lastActionAt != 0 && block.timestamp < l.lastActionAt + l.cooldown) {
            revert CooldownActive(target, l.lastActionAt + l.cooldown);
        }
        if (l.actionsInPeriod == 0 || block.timestamp >= l.periodStart + l.period) {
            l.periodStart = block.timestamp;
            l.actionsInPeriod = 0;
        }
        if (l.actionsInPeriod >= l.maxActionsPerPeriod) revert ActionLimitReached(target, l.periodStart + l.period);
        l.actionsInPeriod += 1;
        l.lastActionAt = block.timestamp;
    }

    function _execute(address target, bytes4 selector, bytes memory data) private {
        bool ok = ModuleManager(payable(safe)).execTransactionFromModule(target, 0, data, Enum.Operation.Call);
        if (!ok) revert SafeExecutionFailed(target, selector);
    }

    function _readUint(address target, bytes4 getter) private view returns (uint256 value) {
        (bool ok, bytes memory ret) = target.staticcall(abi.encodeWithSelector(getter));
        if (!ok || ret.length != 32) revert GetterFailed(target, getter);
        value = abi.decode(ret, (uint256));
    }

    function _readPaused(address target, bytes4 getter) private view returns (bool) {
        uint256 value = _readUint(target, getter);
        if (value > 1) revert GetterFailed(target, getter);
        return value == 1;
    }
}
