// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IPoolAddressesProvider} from "@aave/core-v3/contracts/interfaces/IPoolAddressesProvider.sol";
import {IPool} from "@aave/core-v3/contracts/interfaces/IPool.sol";
import {IPoolConfigurator} from "@aave/core-v3/contracts/interfaces/IPoolConfigurator.sol";
import {DataTypes} from "@aave/core-v3/contracts/protocol/libraries/types/DataTypes.sol";
import {ReserveConfiguration} from "@aave/core-v3/contracts/protocol/libraries/configuration/ReserveConfiguration.sol";

/// @title AaveV3RoleHolder
/// @notice The guardian's role-holder on one Aave V3 market, for one reserve or
/// for the whole pool. The council (the Safe) grants it Aave's EMERGENCY_ADMIN
/// and RISK_ADMIN in the market's ACLManager; only the Safe may call it, and the
/// Safe calls it only through the GuardianModule, whose permissions, bounds,
/// minimum delays and rate limits therefore apply to every Aave action.
///
/// Aave's emergency setters take arguments (`setPoolPause(bool)`,
/// `setReservePause(address,bool)`, `setBorrowCap(address,uint256)`); the module
/// only calls a no-argument pause function or a one-`uint256` setter. This
/// contract fixes the arguments: `pause()` can only pause, `freeze()` can only
/// freeze, `setBorrowCap(uint256)` moves this reserve's cap only, and each has a
/// getter the module checks afterwards. It never unpauses or unfreezes: that
/// stays with the council, which holds POOL_ADMIN.
contract AaveV3RoleHolder {
    using ReserveConfiguration for DataTypes.ReserveConfigurationMap;

    /// The Safe: the only caller.
    address public immutable safe;
    IPoolAddressesProvider public immutable addressesProvider;
    /// The reserve this holder acts on; zero: the whole pool (pause only).
    address public immutable asset;

    error OnlySafe(address caller);
    error ZeroAddress();
    error NoReserve();

    constructor(address safe_, IPoolAddressesProvider provider_, address asset_) {
        if (safe_ == address(0) || address(provider_) == address(0)) revert ZeroAddress();
        safe = safe_;
        addressesProvider = provider_;
        asset = asset_;
    }

    modifier onlySafe() {
        if (msg.sender != safe) revert OnlySafe(msg.sender);
        _;
    }

    modifier reserveOnly() {
        if (asset == address(0)) revert NoReserve();
        _;
    }

    /// Pauses the reserve (`setReservePause(asset, true)`) or, for the whole
    /// pool, every reserve (`setPoolPause(true)`). Needs EMERGENCY_ADMIN.
    function pause() external onlySafe {
        IPoolConfigurator configurator = IPoolConfigurator(addressesProvider.getPoolConfigurator());
        if (asset == address(0)) configurator.setPoolPause(true);
        else configurator.setReservePause(asset, true);
    }

    /// The reserve is paused; for the whole pool: every reserve is.
    function paused() external view returns (bool) {
        IPool pool = IPool(addressesProvider.getPool());
        if (asset != address(0)) return pool.getConfiguration(asset).getPaused();
        address[] memory reserves = pool.getReservesList();
        if (reserves.length == 0) return false;
        for (uint256 i = 0; i < reserves.length; i++) {
            if (!pool.getConfiguration(reserves[i]).getPaused()) return false;
        }
        return true;
    }

    /// Freezes the reserve (`setReserveFreeze(asset, true)`): no new supply or
    /// borrow, repay, withdraw and liquidation stay open. Needs RISK_ADMIN.
    function freeze() external onlySafe reserveOnly {
        IPoolConfigurator(addressesProvider.getPoolConfigurator()).setReserveFreeze(asset, true);
    }

    function frozen() external view reserveOnly returns (bool) {
        return IPool(addressesProvider.getPool()).getConfiguration(asset).getFrozen();
    }

    /// Sets the reserve's borrow cap, in whole tokens. Needs RISK_ADMIN.
    function setBorrowCap(uint256 cap) external onlySafe reserveOnly {
        IPoolConfigurator(addressesProvider.getPoolConfigurator()).setBorrowCap(asset, cap);
    }

    function borrowCap() external view reserveOnly returns (uint256) {
        return IPool(addressesProvider.getPool()).getConfiguration(asset).getBorrowCap();
    }

    /// Sets the reserve's supply cap, in whole tokens. Needs RISK_ADMIN.
    function setSupplyCap(uint256 cap) external onlySafe reserveOnly {
        IPoolConfigurator(addressesProvider.getPoolConfigurator()).setSupplyCap(asset, cap);
    }

    function supplyCap() external view reserveOnly returns (uint256) {
        return IPool(addressesProvider.getPool()).getConfiguration(asset).getSupplyCap();
    }
}
