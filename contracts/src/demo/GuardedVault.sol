// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {ERC4626} from "@openzeppelin/contracts/token/ERC20/extensions/ERC4626.sol";
import {ProtocolRoles} from "./ProtocolRoles.sol";

/// @title GuardedVault
/// @notice The demo protocol's savings vault: an OpenZeppelin ERC4626 vault
/// owned by the protocol's Safe, with a pause and one risk parameter, the
/// supply cap (most assets the vault accepts). While paused, deposits,
/// mints, withdrawals and redemptions all revert.
contract GuardedVault is ERC4626, ProtocolRoles {
    /// Most assets the vault holds; deposits beyond it revert.
    uint256 public supplyCap;

    event SupplyCapUpdated(uint256 oldCap, uint256 newCap);

    constructor(IERC20 asset_, address admin, uint256 initialSupplyCap)
        ERC20("Guarded Vault Share", "gVAULT")
        ERC4626(asset_)
        ProtocolRoles(admin)
    {
        supplyCap = initialSupplyCap;
    }

    function setSupplyCap(uint256 newCap) external onlyRole(RISK_ADMIN_ROLE) {
        emit SupplyCapUpdated(supplyCap, newCap);
        supplyCap = newCap;
    }

    function maxDeposit(address) public view override returns (uint256) {
        if (paused()) return 0;
        uint256 assets = totalAssets();
        return assets >= supplyCap ? 0 : supplyCap - assets;
    }

    function maxMint(address receiver) public view override returns (uint256) {
        return convertToShares(maxDeposit(receiver));
    }

    function maxWithdraw(address owner) public view override returns (uint256) {
        return paused() ? 0 : super.maxWithdraw(owner);
    }

    function maxRedeem(address owner) public view override returns (uint256) {
        return paused() ? 0 : super.maxRedeem(owner);
    }

    function _deposit(address caller, address receiver, uint256 assets, uint256 shares)
        internal
        override
        whenNotPaused
    {
        super._deposit(caller, receiver, assets, shares);
    }

    function _withdraw(address caller, address receiver, address owner, uint256 assets, uint256 shares)
        internal
        override
        whenNotPaused
    {
        super._withdraw(caller, receiver, owner, assets, shares);
    }
}
