//! The protocol shapes a scenario deploys, how they are seeded, what the
//! guardian watches on each, and what each scripted action sends.
//!
//! Every pausable contract is administered by the protocol's Safe; the
//! guardian's only power is `pause()` through the GuardianModule. Amounts in
//! scenario files are whole tokens (18 decimals) or ETH.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use alloy::sol;

use super::ScenarioError;
use super::chain::{ATTACKER_TIP, Chain, SCRIPT_MAX_FEE, SafeStack, USER_TIP, confirm};
use super::spec::{Action, Oracle, Protocol, Scenario, StepKind};
use alloy::sol_types::SolValue;

use crate::demo::{DemoToken, MessageReplica};
use crate::policy::model::Mode;

#[path = "mempool.rs"]
pub mod mempool;

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

/// Whole tokens (18 decimals) to base units; amounts are checked positive at load.
pub fn units(x: f64) -> U256 {
    let milli = (x * 1_000.0).round() as u128;
    U256::from(milli) * U256::from(10u128.pow(15))
}

/// Base units to whole tokens.
pub fn whole(x: U256) -> f64 {
    u128::try_from(x).unwrap_or(u128::MAX) as f64 / 1e18
}

/// Price feed answers have 8 decimals.
fn answer(price: f64) -> alloy::primitives::I256 {
    alloy::primitives::I256::try_from((price * 1e8).round() as i128).unwrap_or_default()
}

fn step_err<E: std::fmt::Display>(step: &'static str) -> impl FnOnce(E) -> ScenarioError {
    move |e| ScenarioError::Chain {
        step,
        // Errors from the transport can name the endpoint, and URLs carry API keys.
        message: crate::source::chain::redact(&e.to_string()),
    }
}

/// A transaction the script sent.
#[derive(Debug, Clone)]
pub struct Sent {
    pub label: String,
    pub kind: StepKind,
    pub from: Address,
    pub hash: B256,
    /// When the node accepted it, unix milliseconds.
    pub unix_ms: u64,
}

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
        let p = &chain.provider;
        let a = &chain.accounts;
        let deployer = a.deployer.address();
        let attacker = a.attackers[0].address();
        let setup = &s.setup;
        let d = match s.protocol {
            Protocol::Bridge => {
                let token = DemoToken::deploy(p, "Bridged USD".into(), "bUSD".into(), deployer)
                    .await
                    .map_err(step_err("deploy the bridged token"))?;
                // Zero initial root: every unproven message reads as proven (the Nomad bug).
                let replica = MessageReplica::deploy(
                    p,
                    stack.safe,
                    1000,
                    deployer,
                    U256::from(1800),
                    B256::ZERO,
                )
                .await
                .map_err(step_err("deploy the bridge replica"))?;
                confirm(
                    token
                        .mint(*replica.address(), units(setup.liquidity))
                        .send()
                        .await,
                    "fund the bridge",
                )
                .await?;
                Deployed {
                    protocol: s.protocol,
                    asset: Some(*token.address()),
                    symbol: "bUSD",
                    targets: vec![("pause-bridge".into(), *replica.address())],
                    ready_metric: "bridge.liquidity",
                    inner: Shape::Bridge {
                        token: *token.address(),
                        replica: *replica.address(),
                        liquidity: units(setup.liquidity),
                    },
                    stack,
                }
            }
            Protocol::DonationPool => {
                let token = DemoToken::deploy(p, "Demo Dollar".into(), "dUSD".into(), deployer)
                    .await
                    .map_err(step_err("deploy the token"))?;
                let flash = FlashLoanPool::deploy(p)
                    .await
                    .map_err(step_err("deploy the flash lender"))?;
                confirm(
                    token
                        .mint(*flash.address(), units(setup.flash_liquidity))
                        .send()
                        .await,
                    "fund the flash lender",
                )
                .await?;
                let pool =
                    DonationLendingPool::deploy(p, stack.safe, *token.address(), U256::from(9_000))
                        .await
                        .map_err(step_err("deploy the lending pool"))?;
                let share = units(setup.liquidity / f64::from(setup.users));
                for u in &a.users {
                    confirm(
                        token.mint(u.address(), share * U256::from(2)).send().await,
                        "give a depositor tokens",
                    )
                    .await?;
                    confirm(
                        token
                            .approve(*pool.address(), U256::MAX)
                            .from(u.address())
                            .send()
                            .await,
                        "approve the pool",
                    )
                    .await?;
                    confirm(
                        pool.deposit(share).from(u.address()).send().await,
                        "deposit",
                    )
                    .await?;
                }
                let mut attacks = BTreeMap::new();
                for step in &s.steps {
                    if let Action::DonationRound { loan } = step.action
                        && !attacks.contains_key(&loan.to_string())
                    {
                        let c = DonationAttack::deploy_builder(
                            p,
                            *pool.address(),
                            *flash.address(),
                            units(loan),
                        )
                        .from(attacker)
                        .deploy()
                        .await
                        .map_err(step_err("deploy the donation attack contract"))?;
                        attacks.insert(loan.to_string(), c);
                    }
                }
                Deployed {
                    protocol: s.protocol,
                    asset: Some(*token.address()),
                    symbol: "dUSD",
                    targets: vec![("pause-pool".into(), *pool.address())],
                    ready_metric: "pool.cash",
                    inner: Shape::DonationPool {
                        token: *token.address(),
                        pool: *pool.address(),
                        attacks,
                    },
                    stack,
                }
            }
            Protocol::Lending { oracle } => {
                let usd = DemoToken::deploy(p, "Demo Dollar".into(), "dUSD".into(), deployer)
                    .await
                    .map_err(step_err("deploy the debt token"))?;
                let col = DemoToken::deploy(p, "Demo Collateral".into(), "dCOL".into(), deployer)
                    .await
                    .map_err(step_err("deploy the collateral token"))?;
                let dex = ConstantProductPool::deploy(p, *usd.address(), *col.address())
                    .await
                    .map_err(step_err("deploy the DEX pool"))?;
                let dex_usd = units(setup.dex_liquidity);
                let dex_col = units(setup.dex_liquidity / setup.price);
                confirm(usd.mint(deployer, dex_usd).send().await, "mint").await?;
                confirm(col.mint(deployer, dex_col).send().await, "mint").await?;
                confirm(
                    usd.approve(*dex.address(), U256::MAX).send().await,
                    "approve",
                )
                .await?;
                confirm(
                    col.approve(*dex.address(), U256::MAX).send().await,
                    "approve",
                )
                .await?;
                confirm(
                    dex.addLiquidity(dex_usd, dex_col).send().await,
                    "seed the DEX pool",
                )
                .await?;
                let keeper = a.keeper.address();
                let reference = KeeperPriceFeed::deploy(
                    p,
                    deployer,
                    8,
                    "dCOL / dUSD reference".into(),
                    answer(setup.price),
                )
                .await
                .map_err(step_err("deploy the reference feed"))?;
                confirm(
                    reference.setKeeper(keeper).send().await,
                    "set the reference feed's keeper",
                )
                .await?;
                let feed = match oracle {
                    Oracle::Keeper => {
                        let f = KeeperPriceFeed::deploy(
                            p,
                            deployer,
                            8,
                            "dCOL / dUSD".into(),
                            answer(setup.price),
                        )
                        .await
                        .map_err(step_err("deploy the market's feed"))?;
                        confirm(f.setKeeper(keeper).send().await, "set the feed's keeper").await?;
                        *f.address()
                    }
                    Oracle::Spot => *SpotPriceFeed::deploy(p, *dex.address(), *col.address())
                        .await
                        .map_err(step_err("deploy the spot feed"))?
                        .address(),
                };
                let market = LendingMarket::deploy(
                    p,
                    stack.safe,
                    *col.address(),
                    *usd.address(),
                    feed,
                    U256::from(7_500),
                    units(setup.liquidity * 10.0),
                )
                .await
                .map_err(step_err("deploy the lending market"))?;
                let flash = FlashLoanPool::deploy(p)
                    .await
                    .map_err(step_err("deploy the flash lender"))?;
                confirm(
                    usd.mint(*flash.address(), units(setup.flash_liquidity))
                        .send()
                        .await,
                    "fund the flash lender",
                )
                .await?;
                let share = units(setup.liquidity / f64::from(setup.users));
                for u in &a.users {
                    // Each lender supplies its share and keeps as much again in its wallet.
                    confirm(
                        usd.mint(u.address(), share * U256::from(2)).send().await,
                        "mint",
                    )
                    .await?;
                    confirm(
                        col.mint(u.address(), units(setup.collateral_per_borrower))
                            .send()
                            .await,
                        "mint",
                    )
                    .await?;
                    for spender in [*market.address(), *dex.address()] {
                        confirm(
                            usd.approve(spender, U256::MAX)
                                .from(u.address())
                                .send()
                                .await,
                            "approve",
                        )
                        .await?;
                        confirm(
                            col.approve(spender, U256::MAX)
                                .from(u.address())
                                .send()
                                .await,
                            "approve",
                        )
                        .await?;
                    }
                    confirm(
                        market.supply(share).from(u.address()).send().await,
                        "supply",
                    )
                    .await?;
                }
                let limit = setup.collateral_per_borrower * setup.price * 0.75;
                let borrow = units(limit * setup.borrow_usage_pct / 100.0);
                for b in &a.borrowers {
                    confirm(
                        col.mint(b.address(), units(setup.collateral_per_borrower))
                            .send()
                            .await,
                        "mint",
                    )
                    .await?;
                    confirm(usd.mint(b.address(), units(limit)).send().await, "mint").await?;
                    confirm(
                        col.approve(*market.address(), U256::MAX)
                            .from(b.address())
                            .send()
                            .await,
                        "approve",
                    )
                    .await?;
                    confirm(
                        usd.approve(*market.address(), U256::MAX)
                            .from(b.address())
                            .send()
                            .await,
                        "approve",
                    )
                    .await?;
                    confirm(
                        market
                            .depositCollateral(units(setup.collateral_per_borrower))
                            .from(b.address())
                            .send()
                            .await,
                        "deposit collateral",
                    )
                    .await?;
                    confirm(
                        market.borrow(borrow).from(b.address()).send().await,
                        "borrow",
                    )
                    .await?;
                }
                // An attacker who will post collateral holds it and has approved the market.
                for step in &s.steps {
                    if let Action::BorrowAll { amount } = step.action {
                        confirm(col.mint(attacker, units(amount)).send().await, "mint").await?;
                        confirm(
                            col.approve(*market.address(), U256::MAX)
                                .from(attacker)
                                .send()
                                .await,
                            "approve",
                        )
                        .await?;
                    }
                }
                let mut attacks = BTreeMap::new();
                for step in &s.steps {
                    if let Action::SpotOracle { loan } = step.action
                        && !attacks.contains_key(&loan.to_string())
                    {
                        let c = SpotOracleAttack::deploy_builder(
                            p,
                            *market.address(),
                            *dex.address(),
                            *flash.address(),
                            units(loan),
                        )
                        .from(attacker)
                        .deploy()
                        .await
                        .map_err(step_err("deploy the spot-oracle attack contract"))?;
                        attacks.insert(loan.to_string(), c);
                    }
                }
                Deployed {
                    protocol: s.protocol,
                    asset: Some(*usd.address()),
                    symbol: "dUSD",
                    targets: vec![("pause-market".into(), *market.address())],
                    ready_metric: "market.cash",
                    inner: Shape::Lending {
                        usd: *usd.address(),
                        dex: *dex.address(),
                        market: *market.address(),
                        feed,
                        reference: *reference.address(),
                        keeper_feed: oracle == Oracle::Keeper,
                        attacks,
                    },
                    stack,
                }
            }
            Protocol::ReentrantPools => {
                let mut pools = Vec::new();
                let mut attacks = Vec::new();
                let share = units(setup.liquidity / f64::from(setup.users));
                for i in 1..=3 {
                    let pool = ReentrantEthPool::deploy(
                        p,
                        stack.safe,
                        format!("Demo ETH pool {i}"),
                        format!("dLP{i}"),
                    )
                    .await
                    .map_err(step_err("deploy an ETH pool"))?;
                    for u in &a.users {
                        confirm(
                            pool.addLiquidity()
                                .value(share)
                                .from(u.address())
                                .send()
                                .await,
                            "add liquidity",
                        )
                        .await?;
                    }
                    let attack = ReentrancyAttack::deploy_builder(p, *pool.address())
                        .from(attacker)
                        .deploy()
                        .await
                        .map_err(step_err("deploy a reentrancy attack contract"))?;
                    pools.push(*pool.address());
                    attacks.push(attack);
                }
                Deployed {
                    protocol: s.protocol,
                    asset: None,
                    symbol: "ETH",
                    targets: (1..=3)
                        .map(|i| (format!("pause-pool{i}"), pools[i - 1]))
                        .collect(),
                    ready_metric: "pool1.eth",
                    inner: Shape::Pools { pools, attacks },
                    stack,
                }
            }
            Protocol::AaveV3 => {
                let aave = super::aave::Aave::deploy(chain, &stack, setup).await?;
                aave.seed(chain, s).await?;
                Deployed {
                    protocol: s.protocol,
                    asset: Some(aave.usdx().asset),
                    symbol: "USD",
                    targets: aave.pause_targets(),
                    ready_metric: "aave.usdx.liquidity",
                    inner: Shape::Aave(Box::new(aave)),
                    stack,
                }
            }
        };
        for (_, target) in &d.targets {
            d.stack.allow_pause(chain, *target).await?;
        }
        Ok(d)
    }

    /// The guardian configuration watching this protocol, as `guardian run` reads it.
    pub fn config_text(
        &self,
        chain: &Chain,
        mode: Mode,
        block_time_s: u64,
        policies: &[std::path::PathBuf],
    ) -> String {
        let policies: Vec<String> = policies
            .iter()
            .map(|p| {
                let absolute = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
                toml::Value::String(absolute.display().to_string()).to_string()
            })
            .collect();
        let mut t = format!(
            r#"# Written by `guardian simulate` for one scenario run.
[guardian]
mode = "{mode}"
policies = [{policies}]

[networks.local]
chain_id = {chain_id}
rpc = ["{http}"]
ws = ["{ws}"]
block_time = "{block_time_s}s"

[keys.bot]
source = "env"
env = "GUARDIAN_SCENARIO_KEY_UNUSED"

[executors.module]
kind = "module"
module = "{module}"
key = "bot"
network = "local"
max_fee_gwei = 5000
deadline = "30s"
"#,
            policies = policies.join(", "),
            chain_id = chain.chain_id,
            http = chain.http,
            ws = chain.ws,
            module = self.stack.module,
        );
        for (action, target) in &self.targets {
            let _ = write!(
                t,
                r#"
[actions.{action}]
kind = "pause"
description = "pause {target} through the GuardianModule"
target = "{target}"
function = "pause()"
paused_getter = "paused()"
executor = "module"
"#
            );
        }
        let erc20 = |token: &Address, holder: &Address| {
            format!(
                r#"{{ kind = "erc20_balance", token = "{token}", holder = "{holder}", decimals = 18 }}"#
            )
        };
        let mut metric = |name: &str, description: &str, unit: &str, source: String| {
            let _ = write!(
                t,
                "\n[metrics.\"{name}\"]\ndescription = \"{description}\"\nunit = \"{unit}\"\nnetwork = \"local\"\nsource = {source}\n"
            );
        };
        match &self.inner {
            Shape::Bridge { token, replica, .. } => {
                let balance = erc20(token, replica);
                let processed = "MessageProcessed(bytes32 indexed messageHash, address indexed token, address indexed recipient, uint256 amount)";
                metric(
                    "bridge.liquidity",
                    "tokens the bridge holds",
                    "bUSD",
                    balance.clone(),
                );
                metric(
                    "bridge.outflow",
                    "tokens released by processed messages in the block",
                    "bUSD",
                    format!(
                        r#"{{ kind = "event_sum", address = "{replica}", event = "{processed}", field = "amount", decimals = 18 }}"#
                    ),
                );
                metric(
                    "bridge.withdrawals",
                    "messages processed in the block",
                    "count",
                    format!(
                        r#"{{ kind = "event_count", address = "{replica}", event = "{processed}" }}"#
                    ),
                );
                metric(
                    "bridge.pending_outflow",
                    "tokens a pending transaction would take out of the bridge",
                    "bUSD",
                    format!(r#"{{ kind = "pending", effect = {balance} }}"#),
                );
            }
            Shape::DonationPool { token, pool, .. } => {
                let balance = erc20(token, pool);
                metric(
                    "pool.cash",
                    "tokens the pool holds",
                    "dUSD",
                    balance.clone(),
                );
                metric(
                    "pool.donations",
                    "deposit donated to reserves in the block",
                    "dUSD",
                    format!(
                        r#"{{ kind = "event_sum", address = "{pool}", event = "DonatedToReserves(address indexed account, uint256 amount)", field = "amount", decimals = 18 }}"#
                    ),
                );
                metric(
                    "pool.withdrawals",
                    "tokens withdrawn in the block",
                    "dUSD",
                    format!(
                        r#"{{ kind = "event_sum", address = "{pool}", event = "Withdrawn(address indexed account, uint256 amount)", field = "amount", decimals = 18 }}"#
                    ),
                );
                metric(
                    "pool.pending_outflow",
                    "tokens a pending transaction would take out of the pool",
                    "dUSD",
                    format!(r#"{{ kind = "pending", effect = {balance} }}"#),
                );
            }
            Shape::Lending {
                usd,
                market,
                feed,
                reference,
                ..
            } => {
                let balance = erc20(usd, market);
                metric(
                    "market.cash",
                    "debt tokens the market holds",
                    "dUSD",
                    balance.clone(),
                );
                metric(
                    "market.price",
                    "the market's own collateral price",
                    "dUSD",
                    format!(r#"{{ kind = "oracle_answer", feed = "{feed}", decimals = 8 }}"#),
                );
                metric(
                    "market.reference_price",
                    "an independent collateral price",
                    "dUSD",
                    format!(r#"{{ kind = "oracle_answer", feed = "{reference}", decimals = 8 }}"#),
                );
                metric(
                    "market.borrows",
                    "debt tokens borrowed in the block",
                    "dUSD",
                    format!(
                        r#"{{ kind = "event_sum", address = "{market}", event = "Borrowed(address indexed borrower, uint256 amount)", field = "amount", decimals = 18 }}"#
                    ),
                );
                metric(
                    "market.withdrawals",
                    "debt tokens lenders withdrew in the block",
                    "dUSD",
                    format!(
                        r#"{{ kind = "event_sum", address = "{market}", event = "Withdrawn(address indexed lender, uint256 amount)", field = "amount", decimals = 18 }}"#
                    ),
                );
                metric(
                    "market.pending_outflow",
                    "debt tokens a pending transaction would take out of the market",
                    "dUSD",
                    format!(r#"{{ kind = "pending", effect = {balance} }}"#),
                );
            }
            Shape::Aave(aave) => aave.config_text(&mut t),
            Shape::Pools { pools, .. } => {
                for (i, pool) in pools.iter().enumerate() {
                    let n = i + 1;
                    let eth = format!(r#"{{ kind = "native_balance", address = "{pool}" }}"#);
                    metric(
                        &format!("pool{n}.eth"),
                        "ETH the pool holds",
                        "ETH",
                        eth.clone(),
                    );
                    metric(
                        &format!("pool{n}.virtual_price"),
                        "ETH per LP token",
                        "ETH",
                        format!(
                            r#"{{ kind = "call", to = "{pool}", signature = "virtualPrice()(uint256)", decimals = 18 }}"#
                        ),
                    );
                    metric(
                        &format!("pool{n}.pending_outflow"),
                        "ETH a pending transaction would take out of the pool",
                        "ETH",
                        format!(r#"{{ kind = "pending", effect = {eth} }}"#),
                    );
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
                Some(token) => DemoToken::new(token, &chain.provider)
                    .balanceOf(a.address())
                    .call()
                    .await
                    .map_err(step_err("read an attacker's balance"))?,
                None => chain
                    .provider
                    .get_balance(a.address())
                    .await
                    .map_err(step_err("read an attacker's balance"))?,
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
            let paused = ReentrantEthPool::new(*target, &chain.provider)
                .paused()
                .call()
                .await
                .map_err(step_err("read paused()"))?;
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
        if let Shape::Aave(aave) = &self.inner {
            return aave.perform(chain, kind, action).await;
        }
        let p = &chain.provider;
        let a = &chain.accounts;
        let mut sent = Vec::new();
        let tip = if kind == StepKind::Attack {
            ATTACKER_TIP
        } else {
            USER_TIP
        };
        macro_rules! send {
            ($call:expr, $from:expr, $gas:expr, $label:expr) => {{
                let from: Address = $from;
                let pending = $call
                    .from(from)
                    .gas($gas)
                    .max_fee_per_gas(SCRIPT_MAX_FEE)
                    .max_priority_fee_per_gas(tip)
                    .send()
                    .await
                    .map_err(step_err("send a scripted transaction"))?;
                sent.push(Sent {
                    label: $label,
                    kind,
                    from,
                    hash: *pending.tx_hash(),
                    unix_ms: super::script::unix_ms(),
                });
            }};
        }
        match (&self.inner, action) {
            (
                Shape::Bridge {
                    token,
                    replica,
                    liquidity,
                },
                Action::Copycat { senders, slice_pct },
            ) => {
                // As the Nomad copycats did: call `process` on the replica with a
                // never-proven transfer message paying the sender a slice.
                let bps = (slice_pct * 100.0).round() as u64;
                let amount = *liquidity * U256::from(bps) / U256::from(10_000);
                let contract = MessageReplica::new(*replica, p);
                for i in 0..*senders as usize {
                    let who = a.attackers[i % a.attackers.len()].address();
                    // A message nonce never used before: a hash of sender, time and index.
                    let nanos = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos());
                    let nonce = U256::from_be_bytes(
                        alloy::primitives::keccak256(
                            (who, U256::from(nanos), U256::from(i)).abi_encode(),
                        )
                        .0,
                    );
                    let message = (1000u32, nonce, *token, who, amount).abi_encode_params();
                    send!(
                        contract.process(message.into()),
                        who,
                        300_000,
                        format!(
                            "copycat process() of an unproven message paying {slice_pct}% of the liquidity"
                        )
                    );
                }
            }
            (Shape::DonationPool { attacks, .. }, Action::DonationRound { loan }) => {
                let c = DonationAttack::new(attacks[&loan.to_string()], p);
                send!(
                    c.attack(),
                    a.attackers[0].address(),
                    3_000_000,
                    format!("donation round on a {loan} dUSD flash loan")
                );
            }
            (Shape::Lending { attacks, .. }, Action::SpotOracle { loan }) => {
                let c = SpotOracleAttack::new(attacks[&loan.to_string()], p);
                send!(
                    c.attack(),
                    a.attackers[0].address(),
                    3_000_000,
                    format!("spot-oracle manipulation on a {loan} dUSD flash loan")
                );
            }
            (Shape::Pools { attacks, .. }, Action::Reentrancy { pool, capital }) => {
                let c = ReentrancyAttack::new(attacks[*pool as usize - 1], p);
                send!(
                    c.attack().value(units(*capital)),
                    a.attackers[0].address(),
                    3_000_000,
                    format!("reentrancy attack on pool {pool} with {capital} ETH")
                );
            }
            (Shape::DonationPool { pool, .. }, Action::Deposit { user, amount, .. }) => {
                let c = DonationLendingPool::new(*pool, p);
                send!(
                    c.deposit(units(*amount)),
                    a.users[*user as usize - 1].address(),
                    300_000,
                    format!("user {user} deposits {amount} dUSD")
                );
            }
            (Shape::DonationPool { pool, .. }, Action::Withdraw { user, amount, .. }) => {
                let c = DonationLendingPool::new(*pool, p);
                send!(
                    c.withdraw(units(*amount)),
                    a.users[*user as usize - 1].address(),
                    300_000,
                    format!("user {user} withdraws {amount} dUSD")
                );
            }
            (Shape::Lending { market, .. }, Action::Deposit { user, amount, .. }) => {
                let c = LendingMarket::new(*market, p);
                send!(
                    c.supply(units(*amount)),
                    a.users[*user as usize - 1].address(),
                    300_000,
                    format!("lender {user} supplies {amount} dUSD")
                );
            }
            (Shape::Lending { market, .. }, Action::Withdraw { user, amount, .. }) => {
                let c = LendingMarket::new(*market, p);
                send!(
                    c.withdraw(units(*amount)),
                    a.users[*user as usize - 1].address(),
                    300_000,
                    format!("lender {user} withdraws {amount} dUSD")
                );
            }
            (Shape::Lending { market, .. }, Action::Borrow { user, amount }) => {
                let c = LendingMarket::new(*market, p);
                send!(
                    c.borrow(units(*amount)),
                    a.borrowers[*user as usize - 1].address(),
                    300_000,
                    format!("borrower {user} borrows {amount} dUSD")
                );
            }
            (Shape::Lending { market, .. }, Action::Repay { user, amount }) => {
                let c = LendingMarket::new(*market, p);
                let who = a.borrowers[*user as usize - 1].address();
                send!(
                    c.repay(who, units(*amount)),
                    who,
                    300_000,
                    format!("borrower {user} repays {amount} dUSD")
                );
            }
            (Shape::Lending { dex, usd, .. }, Action::Swap { user, amount }) => {
                let c = ConstantProductPool::new(*dex, p);
                send!(
                    c.swap(*usd, units(*amount), U256::ZERO),
                    a.users[*user as usize - 1].address(),
                    300_000,
                    format!("user {user} buys collateral with {amount} dUSD")
                );
            }
            (Shape::Lending { market, .. }, Action::Liquidate) => {
                let m = LendingMarket::new(*market, p);
                for (i, b) in a.borrowers.iter().enumerate() {
                    let borrowed = m
                        .borrowedOf(b.address())
                        .call()
                        .await
                        .map_err(step_err("read a borrower's debt"))?;
                    let limit = m
                        .borrowLimit(b.address())
                        .call()
                        .await
                        .map_err(step_err("read a borrow limit"))?;
                    if borrowed > limit {
                        let liquidator = a.users[i % a.users.len()].address();
                        send!(
                            m.liquidate(b.address(), borrowed / U256::from(2)),
                            liquidator,
                            400_000,
                            format!(
                                "liquidation of borrower {} by lender {}",
                                i + 1,
                                i % a.users.len() + 1
                            )
                        );
                    }
                }
            }
            (
                Shape::Lending {
                    feed,
                    reference,
                    keeper_feed,
                    ..
                },
                Action::Price { change_pct },
            ) => {
                let r = KeeperPriceFeed::new(*reference, p);
                let (_, current, _, _, _) = r
                    .latestRoundData()
                    .call()
                    .await
                    .map_err(step_err("read the reference price"))?
                    .into();
                let current = current.to_string().parse::<f64>().unwrap_or(0.0) / 1e8;
                let next = current * (1.0 + change_pct / 100.0);
                let mut feeds = vec![*reference];
                if *keeper_feed {
                    feeds.insert(0, *feed);
                }
                for f in feeds {
                    send!(
                        KeeperPriceFeed::new(f, p).updateAnswer(answer(next)),
                        a.keeper.address(),
                        200_000,
                        format!("keeper moves the collateral price {change_pct:+}% to {next:.2}")
                    );
                }
            }
            (
                Shape::Lending {
                    feed,
                    keeper_feed: true,
                    ..
                },
                Action::RoguePrice { change_pct },
            ) => {
                // The keeper's key is the attacker's now.
                let f = KeeperPriceFeed::new(*feed, p);
                let (_, current, _, _, _) = f
                    .latestRoundData()
                    .call()
                    .await
                    .map_err(step_err("read the market's price"))?
                    .into();
                let current = current.to_string().parse::<f64>().unwrap_or(0.0) / 1e8;
                let next = current * (1.0 + change_pct / 100.0);
                send!(
                    f.updateAnswer(answer(next)),
                    a.keeper.address(),
                    200_000,
                    format!(
                        "stolen keeper key posts {next:.2} ({change_pct:+}%) on the market's feed"
                    )
                );
            }
            (Shape::Lending { market, .. }, Action::BorrowAll { amount }) => {
                let m = LendingMarket::new(*market, p);
                let who = a.attackers[0].address();
                send!(
                    m.depositCollateral(units(*amount)),
                    who,
                    300_000,
                    format!("attacker posts {amount} dCOL of collateral")
                );
                // The borrow goes out once the collateral is on chain (as an attacker's
                // script would), so its simulation sees the collateral.
                let deposit = sent[sent.len() - 1].hash;
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
                while chain.receipt(deposit).await?.is_none() {
                    if std::time::Instant::now() > deadline {
                        return Err(ScenarioError::Chain {
                            step: "post the attacker's collateral",
                            message: format!("{deposit} not mined within 30 s"),
                        });
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(25)).await;
                }
                let limit = m
                    .borrowLimit(who)
                    .call()
                    .await
                    .map_err(step_err("read the attacker's limit"))?;
                let cash = m
                    .cash()
                    .call()
                    .await
                    .map_err(step_err("read the market's cash"))?;
                // 1% of the cash left as margin: the benign mempool's withdrawals
                // mined just before the borrow would otherwise make it revert.
                let cash = cash - cash / U256::from(100u64);
                let take = if limit < cash { limit } else { cash };
                send!(
                    m.borrow(take),
                    who,
                    400_000,
                    format!("attacker borrows {:.0} dUSD against it", whole(take))
                );
            }
            (Shape::Pools { pools, .. }, Action::Deposit { user, amount, pool }) => {
                let n = pool.unwrap_or(1) as usize;
                let c = ReentrantEthPool::new(pools[n - 1], p);
                send!(
                    c.addLiquidity().value(units(*amount)),
                    a.users[*user as usize - 1].address(),
                    200_000,
                    format!("user {user} adds {amount} ETH to pool {n}")
                );
            }
            (Shape::Pools { pools, .. }, Action::Withdraw { user, amount, pool }) => {
                let n = pool.unwrap_or(1) as usize;
                let c = ReentrantEthPool::new(pools[n - 1], p);
                let balance = p
                    .get_balance(pools[n - 1])
                    .await
                    .map_err(step_err("read a pool's ETH"))?;
                let supply = c
                    .totalSupply()
                    .call()
                    .await
                    .map_err(step_err("read a pool's LP supply"))?;
                let lp = if balance.is_zero() {
                    U256::ZERO
                } else {
                    units(*amount) * supply / balance
                };
                send!(
                    c.removeLiquidity(lp),
                    a.users[*user as usize - 1].address(),
                    200_000,
                    format!("user {user} takes {amount} ETH out of pool {n}")
                );
            }
            (_, other) => {
                return Err(ScenarioError::Chain {
                    step: "play a step",
                    message: format!(
                        "`{}` does not apply to the {} protocol",
                        other.name(),
                        self.protocol.name()
                    ),
                });
            }
        }
        Ok(sent)
    }
}
