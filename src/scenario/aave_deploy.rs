//! Real Aave V3 on a local chain, from the compiled artifacts of the pinned npm
//! package `@aave/core-v3` (1.19.3): nothing of Aave's code lives in this
//! repository. The artifacts are read from `node_modules` at run time, the
//! logic libraries deployed and linked into the Pool and PoolConfigurator as
//! Aave's own deploy scripts do (aave/aave-v3-deploy: libraries, addresses
//! provider, ACL manager, pool and configurator implementations behind the
//! provider's proxies, oracle, data provider, token implementations,
//! interest-rate strategy, `initReserves`, reserve configuration).
//!
//! Only the ABI of the functions called here is declared (`sol!` interfaces);
//! the bytecode is the package's.

// Generated bindings take as many arguments as Aave's functions.
#![allow(clippy::too_many_arguments)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionRequest;
use alloy::sol;
use alloy::sol_types::SolValue;

use super::ScenarioError;
use super::chain::{Chain, confirm};

/// The package and version every Aave deployment here comes from.
pub const AAVE_PACKAGE: &str = "@aave/core-v3";
pub const AAVE_VERSION: &str = "1.19.3";

/// Artifact paths inside the package's `artifacts/contracts/`.
const ARTIFACTS: [(&str, &str); 19] = [
    ("PoolAddressesProvider", "protocol/configuration"),
    ("ACLManager", "protocol/configuration"),
    ("Pool", "protocol/pool"),
    ("PoolConfigurator", "protocol/pool"),
    ("DefaultReserveInterestRateStrategy", "protocol/pool"),
    ("AToken", "protocol/tokenization"),
    ("StableDebtToken", "protocol/tokenization"),
    ("VariableDebtToken", "protocol/tokenization"),
    ("AaveOracle", "misc"),
    ("AaveProtocolDataProvider", "misc"),
    ("MockAggregator", "mocks/oracle/CLAggregators"),
    ("MintableERC20", "mocks/tokens"),
    ("SupplyLogic", "protocol/libraries/logic"),
    ("BorrowLogic", "protocol/libraries/logic"),
    ("LiquidationLogic", "protocol/libraries/logic"),
    ("EModeLogic", "protocol/libraries/logic"),
    ("BridgeLogic", "protocol/libraries/logic"),
    ("PoolLogic", "protocol/libraries/logic"),
    ("ConfiguratorLogic", "protocol/libraries/logic"),
];
/// FlashLoanLogic links BorrowLogic, so it is deployed after it.
const FLASH_LOAN_LOGIC: (&str, &str) = ("FlashLoanLogic", "protocol/libraries/logic");

sol! {
    #[sol(rpc)]
    interface IAaveAddressesProvider {
        function owner() external view returns (address);
        function transferOwnership(address newOwner) external;
        function setACLAdmin(address newAclAdmin) external;
        function setACLManager(address newAclManager) external;
        function setPoolImpl(address newPoolImpl) external;
        function setPoolConfiguratorImpl(address newPoolConfiguratorImpl) external;
        function setPriceOracle(address newPriceOracle) external;
        function setPoolDataProvider(address newDataProvider) external;
        function getPool() external view returns (address);
        function getPoolConfigurator() external view returns (address);
        function getACLManager() external view returns (address);
        function getACLAdmin() external view returns (address);
        function getPriceOracle() external view returns (address);
        function getPoolDataProvider() external view returns (address);
    }

    #[sol(rpc)]
    interface IAaveAclManager {
        function addPoolAdmin(address admin) external;
        function addEmergencyAdmin(address admin) external;
        function addRiskAdmin(address admin) external;
        function removePoolAdmin(address admin) external;
        function isPoolAdmin(address admin) external view returns (bool);
        function isEmergencyAdmin(address admin) external view returns (bool);
        function isRiskAdmin(address admin) external view returns (bool);
        function grantRole(bytes32 role, address account) external;
        function renounceRole(bytes32 role, address account) external;
        function hasRole(bytes32 role, address account) external view returns (bool);
    }

    struct AaveInitReserveInput {
        address aTokenImpl;
        address stableDebtTokenImpl;
        address variableDebtTokenImpl;
        uint8 underlyingAssetDecimals;
        address interestRateStrategyAddress;
        address underlyingAsset;
        address treasury;
        address incentivesController;
        string aTokenName;
        string aTokenSymbol;
        string variableDebtTokenName;
        string variableDebtTokenSymbol;
        string stableDebtTokenName;
        string stableDebtTokenSymbol;
        bytes params;
    }

    #[sol(rpc)]
    interface IAaveConfigurator {
        function initReserves(AaveInitReserveInput[] calldata input) external;
        function configureReserveAsCollateral(address asset, uint256 ltv, uint256 liquidationThreshold, uint256 liquidationBonus) external;
        function setReserveBorrowing(address asset, bool enabled) external;
        function setBorrowCap(address asset, uint256 newBorrowCap) external;
        function setSupplyCap(address asset, uint256 newSupplyCap) external;
        function setPoolPause(bool paused) external;
        function setReservePause(address asset, bool paused) external;
        function setReserveFreeze(address asset, bool freeze) external;
    }

    #[sol(rpc)]
    interface IAavePool {
        function initialize(address provider) external;
        function supply(address asset, uint256 amount, address onBehalfOf, uint16 referralCode) external;
        function withdraw(address asset, uint256 amount, address to) external returns (uint256);
        function borrow(address asset, uint256 amount, uint256 interestRateMode, uint16 referralCode, address onBehalfOf) external;
        function repay(address asset, uint256 amount, uint256 interestRateMode, address onBehalfOf) external returns (uint256);
        function liquidationCall(address collateralAsset, address debtAsset, address user, uint256 debtToCover, bool receiveAToken) external;
        function getUserAccountData(address user) external view returns (uint256 totalCollateralBase, uint256 totalDebtBase, uint256 availableBorrowsBase, uint256 currentLiquidationThreshold, uint256 ltv, uint256 healthFactor);
        function getConfiguration(address asset) external view returns (uint256 data);
        function getReservesList() external view returns (address[] memory);
        function ADDRESSES_PROVIDER() external view returns (address);
    }

    #[sol(rpc)]
    interface IAaveDataProvider {
        function getReserveTokensAddresses(address asset) external view returns (address aTokenAddress, address stableDebtTokenAddress, address variableDebtTokenAddress);
        function getPaused(address asset) external view returns (bool isPaused);
        function getReserveCaps(address asset) external view returns (uint256 borrowCap, uint256 supplyCap);
    }

    #[sol(rpc)]
    interface IAaveOracle {
        function getAssetPrice(address asset) external view returns (uint256);
    }

    #[sol(rpc)]
    interface IAaveToken {
        function mint(address account, uint256 value) external returns (bool);
        function approve(address spender, uint256 value) external returns (bool);
        function balanceOf(address account) external view returns (uint256);
        function totalSupply() external view returns (uint256);
    }
}

/// The `@aave/core-v3` package in `node_modules`: `GUARDIAN_AAVE_CORE` if set,
/// else `node_modules/@aave/core-v3` under the working directory or the crate.
pub fn package_dir() -> Result<PathBuf, ScenarioError> {
    let candidates = match std::env::var_os("GUARDIAN_AAVE_CORE") {
        Some(dir) => vec![PathBuf::from(dir)],
        None => vec![
            PathBuf::from("node_modules").join(AAVE_PACKAGE),
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("node_modules")
                .join(AAVE_PACKAGE),
        ],
    };
    for dir in &candidates {
        if dir.join("artifacts").is_dir() {
            return Ok(dir.clone());
        }
    }
    Err(ScenarioError::Chain {
        step: "find the Aave V3 artifacts",
        message: format!(
            "{AAVE_PACKAGE} not found at {}: run `npm ci` at the repository root (it installs {AAVE_PACKAGE} {AAVE_VERSION}), or set GUARDIAN_AAVE_CORE",
            candidates[0].display()
        ),
    })
}

/// One compiled contract of the package (Hardhat artifact format).
#[derive(Debug, Clone)]
pub struct Artifact {
    pub name: String,
    /// Creation code, hex without `0x`, library placeholders unlinked.
    bytecode: String,
    /// Runtime code, hex without `0x`, library placeholders unlinked.
    deployed: String,
    links: Vec<(String, Vec<usize>)>,
    deployed_links: Vec<(String, Vec<usize>)>,
}

fn artifact_err(name: &str, message: impl std::fmt::Display) -> ScenarioError {
    ScenarioError::Chain {
        step: "read an Aave V3 artifact",
        message: format!("{name}: {message}"),
    }
}

/// `linkReferences`: library name -> byte offsets of its 20-byte placeholders.
fn link_refs(v: &serde_json::Value) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    for libs in v.as_object().into_iter().flat_map(|m| m.values()) {
        for (lib, places) in libs.as_object().into_iter().flatten() {
            let starts = places
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p.get("start").and_then(serde_json::Value::as_u64))
                .map(|s| s as usize)
                .collect();
            out.push((lib.clone(), starts));
        }
    }
    out
}

impl Artifact {
    /// Reads `artifacts/contracts/<dir>/<name>.sol/<name>.json` from the package.
    pub fn load(package: &Path, name: &str) -> Result<Artifact, ScenarioError> {
        let dir = ARTIFACTS
            .iter()
            .chain(std::iter::once(&FLASH_LOAN_LOGIC))
            .find(|(n, _)| *n == name)
            .map(|(_, d)| *d)
            .ok_or_else(|| artifact_err(name, "not an artifact this deployment uses"))?;
        let path = package
            .join("artifacts/contracts")
            .join(dir)
            .join(format!("{name}.sol"))
            .join(format!("{name}.json"));
        let text = std::fs::read_to_string(&path)
            .map_err(|e| artifact_err(name, format!("{}: {e}", path.display())))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| artifact_err(name, e))?;
        let hex = |key: &str| -> Result<String, ScenarioError> {
            v.get(key)
                .and_then(serde_json::Value::as_str)
                .map(|s| s.trim_start_matches("0x").to_string())
                .ok_or_else(|| artifact_err(name, format!("no `{key}`")))
        };
        Ok(Artifact {
            name: name.to_string(),
            bytecode: hex("bytecode")?,
            deployed: hex("deployedBytecode")?,
            links: link_refs(&v["linkReferences"]),
            deployed_links: link_refs(&v["deployedLinkReferences"]),
        })
    }

    fn linked(
        &self,
        hex: &str,
        refs: &[(String, Vec<usize>)],
        libs: &BTreeMap<String, Address>,
    ) -> Result<Vec<u8>, ScenarioError> {
        let mut code = hex.to_string();
        for (lib, starts) in refs {
            let address = libs
                .get(lib)
                .ok_or_else(|| artifact_err(&self.name, format!("library {lib} not deployed")))?;
            let text = alloy::hex::encode(address.as_slice());
            for start in starts {
                let at = start * 2;
                if at + 40 > code.len() {
                    return Err(artifact_err(&self.name, "a link reference is out of range"));
                }
                code.replace_range(at..at + 40, &text);
            }
        }
        alloy::hex::decode(&code).map_err(|e| artifact_err(&self.name, e))
    }

    /// Creation code with the libraries linked.
    pub fn creation_code(
        &self,
        libs: &BTreeMap<String, Address>,
    ) -> Result<Vec<u8>, ScenarioError> {
        self.linked(&self.bytecode, &self.links, libs)
    }

    /// Runtime code with the libraries linked (immutables still zero).
    pub fn runtime_code(&self, libs: &BTreeMap<String, Address>) -> Result<Vec<u8>, ScenarioError> {
        self.linked(&self.deployed, &self.deployed_links, libs)
    }

    /// The libraries the creation code needs.
    pub fn libraries(&self) -> impl Iterator<Item = &str> {
        self.links.iter().map(|(l, _)| l.as_str())
    }
}

/// Deploys creation code plus ABI-encoded constructor arguments from the deployer.
pub async fn deploy_code(
    chain: &Chain,
    mut code: Vec<u8>,
    args: &[u8],
    what: &'static str,
) -> Result<Address, ScenarioError> {
    code.extend_from_slice(args);
    let tx = TransactionRequest::default()
        .from(chain.accounts.deployer.address())
        .with_deploy_code(code)
        .gas_limit(15_000_000);
    let receipt = chain
        .provider
        .send_transaction(tx)
        .await
        .map_err(|e| ScenarioError::Chain {
            step: what,
            message: crate::source::chain::redact(&e.to_string()),
        })?
        .get_receipt()
        .await
        .map_err(|e| ScenarioError::Chain {
            step: what,
            message: crate::source::chain::redact(&e.to_string()),
        })?;
    match receipt.contract_address {
        Some(a) if receipt.status() => Ok(a),
        _ => Err(ScenarioError::Chain {
            step: what,
            message: format!("deployment {} reverted", receipt.transaction_hash),
        }),
    }
}

/// The package's artifacts, read once per deployment, and the libraries deployed so far.
#[derive(Debug)]
pub struct Linker {
    package: PathBuf,
    pub libs: BTreeMap<String, Address>,
}

impl Linker {
    pub fn new() -> Result<Linker, ScenarioError> {
        Ok(Linker {
            package: package_dir()?,
            libs: BTreeMap::new(),
        })
    }

    pub fn artifact(&self, name: &str) -> Result<Artifact, ScenarioError> {
        Artifact::load(&self.package, name)
    }

    /// Deploys `name` with `args`, its libraries linked.
    pub async fn deploy(
        &self,
        chain: &Chain,
        name: &str,
        args: &[u8],
        what: &'static str,
    ) -> Result<Address, ScenarioError> {
        let a = self.artifact(name)?;
        deploy_code(chain, a.creation_code(&self.libs)?, args, what).await
    }

    /// Deploys the logic libraries the Pool and PoolConfigurator link.
    pub async fn deploy_libraries(&mut self, chain: &Chain) -> Result<(), ScenarioError> {
        for name in [
            "SupplyLogic",
            "BorrowLogic",
            "LiquidationLogic",
            "EModeLogic",
            "BridgeLogic",
            "PoolLogic",
            "ConfiguratorLogic",
            FLASH_LOAN_LOGIC.0,
        ] {
            let a = self.artifact(name)?;
            let at = deploy_code(
                chain,
                a.creation_code(&self.libs)?,
                &[],
                "deploy an Aave logic library",
            )
            .await?;
            self.libs.insert(name.to_string(), at);
        }
        Ok(())
    }
}

/// Ray (1e27) fractions for the interest-rate strategy.
fn ray_pct(pct: u64) -> U256 {
    U256::from(pct) * U256::from(10u64).pow(U256::from(25u64))
}

/// The market's core: provider, ACL manager, pool and configurator behind
/// their proxies, oracle (no sources yet) and data provider. The deployer is
/// the provider's owner, ACL admin and pool admin until [`hand_over`].
#[derive(Debug, Clone)]
pub struct Core {
    pub provider: Address,
    pub acl: Address,
    pub pool: Address,
    pub configurator: Address,
    pub oracle: Address,
    pub data_provider: Address,
    pub pool_impl: Address,
    /// The logic libraries linked into the Pool and PoolConfigurator.
    pub libs: BTreeMap<String, Address>,
}

/// The Pool and PoolConfigurator implementations, each initialized, set on the
/// provider (which puts them behind its proxies); returns the Pool's implementation.
async fn deploy_pool_and_configurator(
    chain: &Chain,
    l: &Linker,
    provider: Address,
) -> Result<Address, ScenarioError> {
    let ap = IAaveAddressesProvider::new(provider, &chain.provider);
    let pool_impl = initialized_impl(
        chain,
        l,
        provider,
        "Pool",
        &provider.abi_encode(),
        [
            "deploy the Aave Pool implementation",
            "initialize the Pool implementation",
        ],
    )
    .await?;
    confirm(
        ap.setPoolImpl(pool_impl).send().await,
        "set the Pool implementation",
    )
    .await?;
    let conf_impl = initialized_impl(
        chain,
        l,
        provider,
        "PoolConfigurator",
        &[],
        [
            "deploy the Aave PoolConfigurator implementation",
            "initialize the PoolConfigurator implementation",
        ],
    )
    .await?;
    confirm(
        ap.setPoolConfiguratorImpl(conf_impl).send().await,
        "set the PoolConfigurator implementation",
    )
    .await?;
    Ok(pool_impl)
}

/// Deploys the implementation `artifact` (with its constructor arguments) and,
/// as Aave's deploy scripts do, initializes the implementation itself first
/// (the Pool's and the PoolConfigurator's `initialize(provider)` share a
/// selector); the two step names say which failed.
async fn initialized_impl(
    chain: &Chain,
    l: &Linker,
    provider: Address,
    artifact: &str,
    args: &[u8],
    [deploying, initializing]: [&'static str; 2],
) -> Result<Address, ScenarioError> {
    let implementation = l.deploy(chain, artifact, args, deploying).await?;
    let pool = IAavePool::new(implementation, &chain.provider);
    confirm(pool.initialize(provider).send().await, initializing).await?;
    Ok(implementation)
}

pub async fn deploy_core(
    chain: &Chain,
    assets: &[Address],
    sources: &[Address],
) -> Result<(Core, Linker), ScenarioError> {
    let p = &chain.provider;
    let deployer = chain.accounts.deployer.address();
    let mut l = Linker::new()?;
    l.deploy_libraries(chain).await?;
    let provider = l
        .deploy(
            chain,
            "PoolAddressesProvider",
            &("Guardian Aave V3 market".to_string(), deployer).abi_encode_params(),
            "deploy the Aave PoolAddressesProvider",
        )
        .await?;
    let ap = IAaveAddressesProvider::new(provider, p);
    confirm(ap.setACLAdmin(deployer).send().await, "set the ACL admin").await?;
    let acl = l
        .deploy(
            chain,
            "ACLManager",
            &provider.abi_encode(),
            "deploy the Aave ACLManager",
        )
        .await?;
    confirm(ap.setACLManager(acl).send().await, "set the ACL manager").await?;
    let aclm = IAaveAclManager::new(acl, p);
    confirm(aclm.addPoolAdmin(deployer).send().await, "add a pool admin").await?;
    let pool_impl = deploy_pool_and_configurator(chain, &l, provider).await?;
    let oracle = l
        .deploy(
            chain,
            "AaveOracle",
            &(
                provider,
                assets.to_vec(),
                sources.to_vec(),
                Address::ZERO,
                Address::ZERO,
                U256::from(100_000_000u64),
            )
                .abi_encode_params(),
            "deploy the AaveOracle",
        )
        .await?;
    confirm(
        ap.setPriceOracle(oracle).send().await,
        "set the price oracle",
    )
    .await?;
    let data_provider = l
        .deploy(
            chain,
            "AaveProtocolDataProvider",
            &provider.abi_encode(),
            "deploy the AaveProtocolDataProvider",
        )
        .await?;
    confirm(
        ap.setPoolDataProvider(data_provider).send().await,
        "set the data provider",
    )
    .await?;
    let pool = ap.getPool().call().await.map_err(read_err)?;
    let configurator = ap.getPoolConfigurator().call().await.map_err(read_err)?;
    Ok((
        Core {
            provider,
            acl,
            pool,
            configurator,
            oracle,
            data_provider,
            pool_impl,
            libs: l.libs.clone(),
        },
        l,
    ))
}

fn read_err<E: std::fmt::Display>(e: E) -> ScenarioError {
    ScenarioError::Chain {
        step: "read the Aave market",
        message: crate::source::chain::redact(&e.to_string()),
    }
}

/// How one reserve is listed.
#[derive(Debug)]
pub struct ReserveSpec {
    pub asset: Address,
    pub symbol: String,
    /// LTV, liquidation threshold and bonus in bps (bonus 10500 = 5%).
    pub ltv: u64,
    pub threshold: u64,
    pub bonus: u64,
    /// Whole tokens; 0 = no cap.
    pub borrow_cap: u64,
}

/// AToken, StableDebtToken and VariableDebtToken implementations and one
/// interest-rate strategy, shared by every reserve.
async fn deploy_token_impls(
    chain: &Chain,
    core: &Core,
    l: &Linker,
) -> Result<(Address, Address, Address, Address), ScenarioError> {
    let pool_arg = core.pool.abi_encode();
    let a_impl = l
        .deploy(
            chain,
            "AToken",
            &pool_arg,
            "deploy the AToken implementation",
        )
        .await?;
    let s_impl = l
        .deploy(
            chain,
            "StableDebtToken",
            &pool_arg,
            "deploy the StableDebtToken implementation",
        )
        .await?;
    let v_impl = l
        .deploy(
            chain,
            "VariableDebtToken",
            &pool_arg,
            "deploy the VariableDebtToken implementation",
        )
        .await?;
    // Optimal usage 80%, base 0%, slopes 4% / 75%; the stable-rate legs as Aave's volatile-asset defaults.
    let strategy = l
        .deploy(
            chain,
            "DefaultReserveInterestRateStrategy",
            &(
                core.provider,
                ray_pct(80),
                U256::ZERO,
                ray_pct(4),
                ray_pct(75),
                ray_pct(2),
                ray_pct(75),
                ray_pct(2),
                ray_pct(5),
                ray_pct(20),
            )
                .abi_encode_params(),
            "deploy the interest-rate strategy",
        )
        .await?;
    Ok((a_impl, s_impl, v_impl, strategy))
}

/// Lists reserves (`initReserves`), one shared interest-rate strategy, each
/// reserve collateral and borrowable; returns (aToken, variable debt token) per asset.
pub async fn list_reserves(
    chain: &Chain,
    core: &Core,
    l: &Linker,
    reserves: &[ReserveSpec],
) -> Result<Vec<(Address, Address)>, ScenarioError> {
    let p = &chain.provider;
    let deployer = chain.accounts.deployer.address();
    let (a_impl, s_impl, v_impl, strategy) = deploy_token_impls(chain, core, l).await?;
    let inputs: Vec<AaveInitReserveInput> = reserves
        .iter()
        .map(|r| AaveInitReserveInput {
            aTokenImpl: a_impl,
            stableDebtTokenImpl: s_impl,
            variableDebtTokenImpl: v_impl,
            underlyingAssetDecimals: 18,
            interestRateStrategyAddress: strategy,
            underlyingAsset: r.asset,
            treasury: deployer,
            incentivesController: Address::ZERO,
            aTokenName: format!("Aave {}", r.symbol),
            aTokenSymbol: format!("a{}", r.symbol),
            variableDebtTokenName: format!("Aave Variable Debt {}", r.symbol),
            variableDebtTokenSymbol: format!("variableDebt{}", r.symbol),
            stableDebtTokenName: format!("Aave Stable Debt {}", r.symbol),
            stableDebtTokenSymbol: format!("stableDebt{}", r.symbol),
            params: Default::default(),
        })
        .collect();
    let conf = IAaveConfigurator::new(core.configurator, p);
    confirm(
        conf.initReserves(inputs).gas(12_000_000).send().await,
        "list the reserves (initReserves)",
    )
    .await?;
    let dp = IAaveDataProvider::new(core.data_provider, p);
    let mut tokens = Vec::new();
    for r in reserves {
        confirm(
            conf.configureReserveAsCollateral(
                r.asset,
                U256::from(r.ltv),
                U256::from(r.threshold),
                U256::from(r.bonus),
            )
            .send()
            .await,
            "configure a reserve as collateral",
        )
        .await?;
        confirm(
            conf.setReserveBorrowing(r.asset, true).send().await,
            "enable borrowing",
        )
        .await?;
        if r.borrow_cap > 0 {
            confirm(
                conf.setBorrowCap(r.asset, U256::from(r.borrow_cap))
                    .send()
                    .await,
                "set a borrow cap",
            )
            .await?;
        }
        let t = dp
            .getReserveTokensAddresses(r.asset)
            .call()
            .await
            .map_err(read_err)?;
        tokens.push((t.aTokenAddress, t.variableDebtTokenAddress));
    }
    Ok(tokens)
}

/// Hands the market to the council: the Safe becomes the provider's owner,
/// the ACL admin (DEFAULT_ADMIN_ROLE), a pool admin and an emergency admin;
/// the deployer keeps nothing.
pub async fn hand_over(chain: &Chain, core: &Core, safe: Address) -> Result<(), ScenarioError> {
    let p = &chain.provider;
    let deployer = chain.accounts.deployer.address();
    let acl = IAaveAclManager::new(core.acl, p);
    let ap = IAaveAddressesProvider::new(core.provider, p);
    let admin = alloy::primitives::B256::ZERO;
    let steps = [
        (
            acl.addPoolAdmin(safe).into_transaction_request(),
            "make the Safe a pool admin",
        ),
        (
            acl.addEmergencyAdmin(safe).into_transaction_request(),
            "make the Safe an emergency admin",
        ),
        (
            acl.grantRole(admin, safe).into_transaction_request(),
            "make the Safe the ACL admin",
        ),
        (
            acl.removePoolAdmin(deployer).into_transaction_request(),
            "remove the deployer's pool admin role",
        ),
        (
            acl.renounceRole(admin, deployer).into_transaction_request(),
            "the deployer renounces the ACL admin role",
        ),
        (
            ap.setACLAdmin(safe).into_transaction_request(),
            "set the Safe as ACL admin",
        ),
        (
            ap.transferOwnership(safe).into_transaction_request(),
            "transfer the provider to the Safe",
        ),
    ];
    // One after the other: each waits for the previous one's receipt.
    for (tx, what) in steps {
        confirm(p.send_transaction(tx).await.map_err(Into::into), what).await?;
    }
    Ok(())
}

/// Deploys an 18-decimal test token from the package's mocks.
pub async fn deploy_token(
    chain: &Chain,
    l: &Linker,
    name: &str,
    symbol: &str,
) -> Result<Address, ScenarioError> {
    l.deploy(
        chain,
        "MintableERC20",
        &(name.to_string(), symbol.to_string(), U256::from(18u8)).abi_encode_params(),
        "deploy a test token (MintableERC20)",
    )
    .await
}

/// Deploys Aave's MockAggregator with a fixed 8-decimal answer.
pub async fn deploy_fixed_feed(
    chain: &Chain,
    l: &Linker,
    answer: alloy::primitives::I256,
) -> Result<Address, ScenarioError> {
    l.deploy(
        chain,
        "MockAggregator",
        &answer.abi_encode(),
        "deploy a MockAggregator",
    )
    .await
}

/// Reads an account's code.
pub async fn code_at(chain: &Chain, at: Address) -> Result<Vec<u8>, ScenarioError> {
    chain
        .provider
        .get_code_at(at)
        .await
        .map(|c| c.to_vec())
        .map_err(read_err)
}
