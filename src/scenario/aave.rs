//! The `aave-v3` protocol shape: real Aave V3 (from `@aave/core-v3`, see
//! [`super::aave_deploy`]) with three reserves, administered by the Safe, and
//! the guardian's powers given through Aave's own roles.
//!
//! ```text
//! reserves   USDX  stablecoin, $1 (Aave's MockAggregator)     LTV 75% LT 80% bonus 5%  borrow cap 2x liquidity
//!            WETH  ETH-like, $2,000 (MockAggregator)           LTV 80% LT 82.5% bonus 5%
//!            VOL   volatile collateral, keeper-pushed feed     LTV 70% LT 75% bonus 10%
//! council    the Safe: provider owner, ACL admin, POOL_ADMIN, EMERGENCY_ADMIN
//! guardian   AaveV3RoleHolder contracts the Safe granted EMERGENCY_ADMIN (pool and
//!            each reserve) and RISK_ADMIN (each reserve); only the Safe calls them,
//!            and the Safe only through the GuardianModule: pause-pool, pause-<r>,
//!            freeze-<r>, and lower-borrow-cap-usdx (max 25% a step, 1 h apart)
//! ```
//!
//! Amounts in scenario files: `liquidity` is the USDX the lenders supply
//! (they also supply WETH worth as much), `price` the VOL price in USD,
//! `collateral_per_borrower` VOL per borrower, who borrows `borrow_usage` of
//! its USDX limit.

use alloy::primitives::{Address, U256};
use alloy::sol;
use alloy::sol_types::SolCall;

use super::ScenarioError;
use super::aave_deploy::{
    self as d, IAaveAclManager, IAaveOracle, IAavePool, IAaveToken, ReserveSpec,
};
use super::chain::{Chain, GuardianModule, SafeStack, confirm, rpc_err};
use super::shared::{answer, read, units, whole};
use super::spec::{Scenario, Setup};

sol!(
    #[sol(rpc)]
    AaveV3RoleHolder,
    "contracts/artifacts/AaveV3RoleHolder.json"
);
sol!(
    #[sol(rpc)]
    AaveKeeperFeed,
    "contracts/artifacts/KeeperPriceFeed.json"
);

/// WETH's fixed price in USD.
pub const WETH_PRICE: f64 = 2_000.0;
/// Bounds the module enforces on the USDX borrow cap (the Risk Steward shape).
pub const CAP_MAX_CHANGE_BPS: u64 = 2_500;
pub const CAP_MIN_DELAY_S: u64 = 3_600;
/// The set-parameter action lowering the USDX borrow cap.
pub const CAP_ACTION: &str = "lower-borrow-cap-usdx";
/// The guardian's own step when it lowers the cap.
pub const CAP_STEP_BPS: u64 = 2_000;

/// One listed reserve.
#[derive(Debug, Clone)]
pub struct Reserve {
    pub symbol: &'static str,
    pub asset: Address,
    pub a_token: Address,
    pub debt_token: Address,
    /// The guardian's role-holder for this reserve.
    pub holder: Address,
}

/// A deployed, seeded Aave V3 market.
#[derive(Debug, Clone)]
pub struct Aave {
    /// Provider, ACL manager, pool, configurator, oracle, data provider and
    /// the linked libraries; their fields read through (`aave.pool`).
    pub core: d::Core,
    /// USDX, WETH, VOL.
    pub reserves: Vec<Reserve>,
    /// VOL's keeper-pushed feed (the AaveOracle's source) and an independent reference.
    pub feed: Address,
    pub reference: Address,
    /// Role-holder for the whole pool (`setPoolPause`).
    pub pool_holder: Address,
}

/// A market is its core plus what seeding added: the core's addresses read as the market's.
impl std::ops::Deref for Aave {
    type Target = d::Core;
    fn deref(&self) -> &d::Core {
        &self.core
    }
}

fn selector(signature: &str) -> [u8; 4] {
    let h = alloy::primitives::keccak256(signature);
    [h[0], h[1], h[2], h[3]]
}

impl Aave {
    pub fn usdx(&self) -> &Reserve {
        &self.reserves[0]
    }
    pub fn weth(&self) -> &Reserve {
        &self.reserves[1]
    }
    pub fn vol(&self) -> &Reserve {
        &self.reserves[2]
    }

    /// The three test tokens, Aave's fixed MockAggregators for USDX and WETH,
    /// and VOL's keeper feed and independent reference.
    async fn deploy_assets(
        chain: &Chain,
        setup: &Setup,
    ) -> Result<([Address; 3], [Address; 2], Vec<Address>), ScenarioError> {
        let p = &chain.provider;
        let deployer = chain.accounts.deployer.address();
        let l = d::Linker::new()?;
        let usdx = d::deploy_token(chain, &l, "USD X", "USDX").await?;
        let weth = d::deploy_token(chain, &l, "Wrapped Ether", "WETH").await?;
        let vol = d::deploy_token(chain, &l, "Volatile", "VOL").await?;
        let usdx_feed = d::deploy_fixed_feed(chain, &l, answer(1.0)).await?;
        let weth_feed = d::deploy_fixed_feed(chain, &l, answer(WETH_PRICE)).await?;
        let keeper = chain.accounts.keeper.address();
        let mut feeds = Vec::new();
        for what in ["VOL / USD", "VOL / USD reference"] {
            let f = AaveKeeperFeed::deploy(p, deployer, 8, what.into(), answer(setup.price))
                .await
                .map_err(rpc_err("deploy a keeper feed"))?;
            confirm(f.setKeeper(keeper).send().await, "set a feed's keeper").await?;
            feeds.push(*f.address());
        }
        Ok(([usdx, weth, vol], [usdx_feed, weth_feed], feeds))
    }

    /// Deploys the market, hands it to the Safe, grants the role-holders and the module's permissions.
    pub async fn deploy(
        chain: &Chain,
        stack: &SafeStack,
        setup: &Setup,
    ) -> Result<Aave, ScenarioError> {
        let p = &chain.provider;
        let ([usdx, weth, vol], [usdx_feed, weth_feed], feeds) =
            Self::deploy_assets(chain, setup).await?;
        let (core, l) =
            d::deploy_core(chain, &[usdx, weth, vol], &[usdx_feed, weth_feed, feeds[0]]).await?;
        let specs = [
            (
                usdx,
                "USDX",
                7_500,
                8_000,
                10_500,
                (setup.liquidity * 2.0) as u64,
            ),
            (weth, "WETH", 8_000, 8_250, 10_500, 0),
            (vol, "VOL", 7_000, 7_500, 11_000, 0),
        ]
        .map(
            |(asset, symbol, ltv, threshold, bonus, borrow_cap)| ReserveSpec {
                asset,
                symbol: symbol.into(),
                ltv,
                threshold,
                bonus,
                borrow_cap,
            },
        );
        let tokens = d::list_reserves(chain, &core, &l, &specs).await?;
        d::hand_over(chain, &core, stack.safe).await?;
        let holder = |asset: Address| async move {
            AaveV3RoleHolder::deploy(p, stack.safe, core.provider, asset)
                .await
                .map(|c| *c.address())
                .map_err(rpc_err("deploy an AaveV3RoleHolder"))
        };
        let pool_holder = holder(Address::ZERO).await?;
        let mut reserves = Vec::new();
        for (spec, (a_token, debt_token)) in specs.iter().zip(tokens) {
            reserves.push(Reserve {
                symbol: match spec.symbol.as_str() {
                    "USDX" => "USDX",
                    "WETH" => "WETH",
                    _ => "VOL",
                },
                asset: spec.asset,
                a_token,
                debt_token,
                holder: holder(spec.asset).await?,
            });
        }
        let aave = Aave {
            core,
            reserves,
            feed: feeds[0],
            reference: feeds[1],
            pool_holder,
        };
        aave.grant_roles(chain, stack).await?;
        aave.allow_module(chain, stack).await?;
        Ok(aave)
    }

    /// The ACL grants the council signs: EMERGENCY_ADMIN to every role-holder,
    /// RISK_ADMIN to each reserve's (what `setup plan` lists for an aave-v3 market).
    pub fn role_grants(&self) -> Vec<(Address, Vec<u8>)> {
        let mut calls = vec![(
            self.acl,
            IAaveAclManager::addEmergencyAdminCall {
                admin: self.pool_holder,
            }
            .abi_encode(),
        )];
        for r in &self.reserves {
            calls.push((
                self.acl,
                IAaveAclManager::addEmergencyAdminCall { admin: r.holder }.abi_encode(),
            ));
            calls.push((
                self.acl,
                IAaveAclManager::addRiskAdminCall { admin: r.holder }.abi_encode(),
            ));
        }
        calls
    }

    async fn grant_roles(&self, chain: &Chain, stack: &SafeStack) -> Result<(), ScenarioError> {
        for (to, data) in self.role_grants() {
            stack.exec(chain, to, data).await?;
        }
        Ok(())
    }

    /// The module's permissions beyond `pause()` (which the runner allows on every
    /// target): `freeze()` on each reserve's holder, and the bounded USDX borrow cap.
    async fn allow_module(&self, chain: &Chain, stack: &SafeStack) -> Result<(), ScenarioError> {
        for r in &self.reserves {
            stack
                .exec(
                    chain,
                    stack.module,
                    GuardianModule::setPausePermissionCall {
                        target: r.holder,
                        pauseSelector: selector("freeze()").into(),
                        pausedGetter: selector("frozen()").into(),
                        allowed: true,
                    }
                    .abi_encode(),
                )
                .await?;
        }
        stack
            .exec(
                chain,
                stack.module,
                GuardianModule::setParameterPermissionCall {
                    target: self.usdx().holder,
                    setterSelector: selector("setBorrowCap(uint256)").into(),
                    getterSelector: selector("borrowCap()").into(),
                    min: U256::from(1),
                    max: U256::from(1_000_000_000_000u64),
                    maxChangeBps: U256::from(CAP_MAX_CHANGE_BPS),
                    minDelay: U256::from(CAP_MIN_DELAY_S),
                }
                .abi_encode(),
            )
            .await
    }

    /// (action, target) pairs the guardian may `pause()`.
    pub fn pause_targets(&self) -> Vec<(String, Address)> {
        let mut t = vec![("pause-pool".to_string(), self.pool_holder)];
        for r in &self.reserves {
            t.push((format!("pause-{}", r.symbol.to_lowercase()), r.holder));
        }
        t
    }

    /// Seeds lenders (USDX and WETH), borrowers (VOL collateral, USDX debt) and the attacker's VOL.
    pub async fn seed(&self, chain: &Chain, s: &Scenario) -> Result<(), ScenarioError> {
        let p = &chain.provider;
        let a = &chain.accounts;
        let setup = &s.setup;
        let pool = IAavePool::new(self.pool, p);
        let users = f64::from(setup.users);
        let usdx_share = setup.liquidity / users;
        let weth_share = setup.liquidity / WETH_PRICE / users;
        for u in &a.users {
            let who = u.address();
            self.mint(chain, 0, who, usdx_share * 2.0).await?;
            self.mint(chain, 1, who, weth_share).await?;
            self.approve_all(chain, who).await?;
            for (i, amount) in [(0, usdx_share), (1, weth_share)] {
                confirm(
                    pool.supply(self.reserves[i].asset, units(amount), who, 0)
                        .from(who)
                        .gas(800_000)
                        .send()
                        .await,
                    "a lender supplies",
                )
                .await?;
            }
        }
        let limit = setup.collateral_per_borrower * setup.price * 0.70;
        let borrow = limit * setup.borrow_usage_pct / 100.0;
        for b in &a.borrowers {
            let who = b.address();
            self.mint(chain, 2, who, setup.collateral_per_borrower)
                .await?;
            self.mint(chain, 0, who, limit).await?;
            self.approve_all(chain, who).await?;
            confirm(
                pool.supply(
                    self.vol().asset,
                    units(setup.collateral_per_borrower),
                    who,
                    0,
                )
                .from(who)
                .gas(800_000)
                .send()
                .await,
                "a borrower supplies collateral",
            )
            .await?;
            confirm(
                pool.borrow(self.usdx().asset, units(borrow), U256::from(2), 0, who)
                    .from(who)
                    .gas(1_000_000)
                    .send()
                    .await,
                "a borrower borrows",
            )
            .await?;
        }
        for step in &s.steps {
            if let super::spec::Action::BorrowAll { amount } = step.action {
                let who = a.attackers[0].address();
                self.mint(chain, 2, who, amount).await?;
                self.approve_all(chain, who).await?;
            }
        }
        Ok(())
    }

    pub(crate) async fn mint(
        &self,
        chain: &Chain,
        reserve: usize,
        to: Address,
        amount: f64,
    ) -> Result<(), ScenarioError> {
        confirm(
            IAaveToken::new(self.reserves[reserve].asset, &chain.provider)
                .mint(to, units(amount))
                .send()
                .await,
            "mint test tokens",
        )
        .await
        .map(|_| ())
    }

    async fn approve_all(&self, chain: &Chain, who: Address) -> Result<(), ScenarioError> {
        for r in &self.reserves {
            confirm(
                IAaveToken::new(r.asset, &chain.provider)
                    .approve(self.pool, U256::MAX)
                    .from(who)
                    .send()
                    .await,
                "approve the Pool",
            )
            .await?;
        }
        Ok(())
    }

    /// What the attackers hold of the borrowable reserves, in USD at the oracle's prices.
    pub async fn attacker_value(&self, chain: &Chain) -> Result<f64, ScenarioError> {
        let oracle = IAaveOracle::new(self.oracle, &chain.provider);
        let mut total = 0.0;
        for r in &self.reserves[..2] {
            let price = read(oracle.getAssetPrice(r.asset).call(), "read an oracle price").await?;
            for a in &chain.accounts.attackers {
                let held = read(
                    IAaveToken::new(r.asset, &chain.provider)
                        .balanceOf(a.address())
                        .call(),
                    "read an attacker's balance",
                )
                .await?;
                total += whole(held) * whole(price) * 1e10;
            }
        }
        Ok(total)
    }
}
