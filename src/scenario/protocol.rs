//! The protocol shapes a scenario deploys, how they are seeded, what the
//! guardian watches on each, and what each scripted action sends.
//!
//! Every pausable contract is administered by the protocol's Safe; the
//! guardian's only power is `pause()` through the GuardianModule. Amounts in
//! scenario files are whole tokens (18 decimals) or ETH.
//!
//! Each stage has its file: [`deploy`] (contracts and seeding, per shape),
//! [`watch`] (the generated `guardian.toml`), [`perform`] (what a scripted
//! action sends). This file holds what they share: the deployed protocol and
//! its shape.

use std::collections::BTreeMap;

use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use alloy::sol;

use super::ScenarioError;
use super::chain::{Chain, SafeStack, rpc_err};
use super::spec::{Action, Protocol, Scenario, StepKind};

use crate::demo::DemoToken;
use crate::policy::model::Mode;

use super::shared::read;
pub use super::shared::{Sent, units, whole};

mod deploy;
#[path = "mempool.rs"]
pub mod mempool;
mod perform;
mod watch;

sol!(
    #[sol(rpc)]
    LendingMarket,
    "contracts/artifacts/LendingMarket.json"
);
sol!(
    #[sol(rpc)]
    KeeperPriceFeed,
    "contracts/artifacts/KeeperPriceFeed.json"
);
sol!(
    #[sol(rpc)]
    ConstantProductPool,
    "contracts/artifacts/ConstantProductPool.json"
);
sol!(
    #[sol(rpc)]
    FlashLoanPool,
    "contracts/artifacts/FlashLoanPool.json"
);
sol!(
    #[sol(rpc)]
    SpotPriceFeed,
    "contracts/artifacts/SpotPriceFeed.json"
);
sol!(
    #[sol(rpc)]
    DonationLendingPool,
    "contracts/artifacts/DonationLendingPool.json"
);
sol!(
    #[sol(rpc)]
    DonationAttack,
    "contracts/artifacts/DonationAttack.json"
);
sol!(
    #[sol(rpc)]
    ReentrantEthPool,
    "contracts/artifacts/ReentrantEthPool.json"
);
sol!(
    #[sol(rpc)]
    ReentrancyAttack,
    "contracts/artifacts/ReentrancyAttack.json"
);
sol!(
    #[sol(rpc)]
    SpotOracleAttack,
    "contracts/artifacts/SpotOracleAttack.json"
);

/// A deployed protocol.
#[derive(Debug, Clone)]
pub struct Deployed {
    pub protocol: Protocol,
    pub stack: SafeStack,
    /// The token the protocol holds (`None`: ETH).
    pub asset: Option<Address>,
    pub symbol: &'static str,
    /// (action name, contract) the guardian may pause.
    pub targets: Vec<(String, Address)>,
    /// The metric whose first recorded sample shows the guardian is watching.
    pub ready_metric: &'static str,
    inner: Shape,
}

impl Deployed {
    /// The set-parameter actions the generated configuration defines.
    pub fn parameter_actions(&self) -> Vec<String> {
        match &self.inner {
            Shape::Aave(_) => vec![super::aave::CAP_ACTION.to_string()],
            _ => Vec::new(),
        }
    }

    /// The Aave V3 market, for the `aave-v3` shape.
    pub fn aave(&self) -> Option<&super::aave::Aave> {
        match &self.inner {
            Shape::Aave(a) => Some(a),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
enum Shape {
    Bridge {
        token: Address,
        replica: Address,
        /// The initial escrow, in base units (slices are shares of it).
        liquidity: U256,
    },
    DonationPool {
        token: Address,
        pool: Address,
        /// Attack contract per loan (whole tokens, as text).
        attacks: BTreeMap<String, Address>,
    },
    Lending {
        usd: Address,
        dex: Address,
        market: Address,
        feed: Address,
        reference: Address,
        keeper_feed: bool,
        attacks: BTreeMap<String, Address>,
    },
    Pools {
        pools: Vec<Address>,
        attacks: Vec<Address>,
    },
    /// Real Aave V3 (see [`super::aave`]).
    Aave(Box<super::aave::Aave>),
}

impl Deployed {
    /// Deploys and seeds the scenario's protocol on `chain` (automine on).
    pub async fn deploy(chain: &Chain, s: &Scenario) -> Result<Deployed, ScenarioError> {
        let stack = SafeStack::deploy(chain).await?;
        let shape = match s.protocol {
            Protocol::Bridge => deploy::bridge(chain, &stack, &s.setup).await?,
            Protocol::DonationPool => deploy::donation_pool(chain, &stack, s).await?,
            Protocol::Lending { oracle } => deploy::lending(chain, &stack, s, oracle).await?,
            Protocol::ReentrantPools => deploy::pools(chain, &stack, &s.setup).await?,
            Protocol::AaveV3 => {
                let aave = super::aave::Aave::deploy(chain, &stack, &s.setup).await?;
                aave.seed(chain, s).await?;
                Shape::Aave(Box::new(aave))
            }
        };
        let d = Deployed::of(s.protocol, stack, shape);
        for (_, target) in &d.targets {
            d.stack.allow_pause(chain, *target).await?;
        }
        Ok(d)
    }

    /// What the runner knows of a deployed shape: its asset, pause targets and first metric.
    fn of(protocol: Protocol, stack: SafeStack, inner: Shape) -> Deployed {
        let one = |action: &str, target: &Address| vec![(action.to_string(), *target)];
        let (asset, symbol, targets, ready_metric) = match &inner {
            Shape::Bridge { token, replica, .. } => (
                Some(*token),
                "bUSD",
                one("pause-bridge", replica),
                "bridge.liquidity",
            ),
            Shape::DonationPool { token, pool, .. } => {
                (Some(*token), "dUSD", one("pause-pool", pool), "pool.cash")
            }
            Shape::Lending { usd, market, .. } => (
                Some(*usd),
                "dUSD",
                one("pause-market", market),
                "market.cash",
            ),
            Shape::Pools { pools, .. } => (
                None,
                "ETH",
                (1..=pools.len())
                    .map(|i| (format!("pause-pool{i}"), pools[i - 1]))
                    .collect(),
                "pool1.eth",
            ),
            Shape::Aave(aave) => (
                Some(aave.usdx().asset),
                "USD",
                aave.pause_targets(),
                "aave.usdx.liquidity",
            ),
        };
        Deployed {
            protocol,
            stack,
            asset,
            symbol,
            targets,
            ready_metric,
            inner,
        }
    }

    /// The guardian configuration watching this protocol, as `guardian run` reads it.
    pub fn config_text(
        &self,
        chain: &Chain,
        mode: Mode,
        block_time_s: u64,
        policies: &[std::path::PathBuf],
    ) -> String {
        let mut t = watch::header(chain, self.stack.module, mode, block_time_s, policies);
        watch::pause_actions(&mut t, &self.targets);
        match &self.inner {
            Shape::Aave(aave) => aave.config_text(&mut t),
            shape => {
                for m in watch::metrics(shape) {
                    super::shared::write_metric(&mut t, &m.name, m.description, m.unit, &m.source);
                }
            }
        }
        t
    }

    /// What the attackers hold of the protocol's asset (ETH: their balance).
    pub async fn attacker_holdings(&self, chain: &Chain) -> Result<f64, ScenarioError> {
        if let Shape::Aave(aave) = &self.inner {
            return aave.attacker_value(chain).await;
        }
        let mut total = 0.0;
        for a in &chain.accounts.attackers {
            let v = match self.asset {
                Some(token) => {
                    let t = DemoToken::new(token, &chain.provider);
                    read(
                        t.balanceOf(a.address()).call(),
                        "read an attacker's balance",
                    )
                    .await?
                }
                None => chain
                    .provider
                    .get_balance(a.address())
                    .await
                    .map_err(rpc_err("read an attacker's balance"))?,
            };
            total += whole(v);
        }
        Ok(total)
    }

    /// Which pause targets read `paused() == true`.
    pub async fn paused(
        &self,
        chain: &Chain,
    ) -> Result<Vec<super::report::PausedTarget>, ScenarioError> {
        let mut out = Vec::new();
        for (name, target) in &self.targets {
            let paused = read(
                ReentrantEthPool::new(*target, &chain.provider)
                    .paused()
                    .call(),
                "read paused()",
            )
            .await?;
            out.push(super::report::PausedTarget {
                action: name.clone(),
                target: target.to_string(),
                paused,
            });
        }
        Ok(out)
    }

    /// Sends the transactions of one scripted action; does not wait for them.
    pub async fn perform(
        &self,
        chain: &Chain,
        kind: StepKind,
        action: &Action,
    ) -> Result<Vec<Sent>, ScenarioError> {
        let step = perform::Step { chain, kind };
        let sent = match &self.inner {
            Shape::Aave(aave) => return aave.perform(chain, kind, action).await,
            Shape::Bridge {
                token,
                replica,
                liquidity,
            } => step.bridge(*token, *replica, *liquidity, action).await?,
            Shape::DonationPool { pool, attacks, .. } => {
                step.donation_pool(*pool, attacks, action).await?
            }
            Shape::Lending { .. } => step.lending(&self.inner, action).await?,
            Shape::Pools { pools, attacks } => step.pools(pools, attacks, action).await?,
        };
        sent.ok_or_else(|| ScenarioError::Chain {
            step: "play a step",
            message: format!(
                "`{}` does not apply to the {} protocol",
                action.name(),
                self.protocol.name()
            ),
        })
    }
}
