//! Deploying and seeding each protocol shape on a chain with automine on: the
//! contracts, the users' and borrowers' positions, and the attack contracts
//! the script's steps will call.

use std::collections::BTreeMap;

use alloy::primitives::{Address, B256, U256};
use alloy::providers::DynProvider;

use super::{
    ConstantProductPool, DonationAttack, DonationLendingPool, FlashLoanPool, KeeperPriceFeed,
    LendingMarket, ReentrancyAttack, ReentrantEthPool, Shape, SpotOracleAttack, SpotPriceFeed,
};
use crate::demo::{DemoToken, MessageReplica};
use crate::scenario::ScenarioError;
use crate::scenario::chain::{Chain, SafeStack, confirm, rpc_err};
use crate::scenario::shared::{answer, units};
use crate::scenario::spec::{Action, Oracle, Scenario, Setup};

/// Deploys a demo token the deployer mints.
async fn token(
    chain: &Chain,
    name: &str,
    symbol: &str,
    what: &'static str,
) -> Result<Address, ScenarioError> {
    let deployer = chain.accounts.deployer.address();
    let t = DemoToken::deploy(&chain.provider, name.into(), symbol.into(), deployer)
        .await
        .map_err(rpc_err(what))?;
    Ok(*t.address())
}

/// The deployer mints `amount` of `token` to `to`.
async fn mint(
    p: &DynProvider,
    token: Address,
    to: Address,
    amount: U256,
    what: &'static str,
) -> Result<(), ScenarioError> {
    let t = DemoToken::new(token, p);
    confirm(t.mint(to, amount).send().await, what).await?;
    Ok(())
}

/// `owner` lets each of `spenders` move all it holds of each of `tokens`.
async fn approve_all(
    p: &DynProvider,
    owner: Address,
    spenders: &[Address],
    tokens: &[Address],
    what: &'static str,
) -> Result<(), ScenarioError> {
    for spender in spenders {
        for token in tokens {
            let t = DemoToken::new(*token, p);
            confirm(
                t.approve(*spender, U256::MAX).from(owner).send().await,
                what,
            )
            .await?;
        }
    }
    Ok(())
}

/// A flash lender holding `liquidity` of `token`.
async fn flash_lender(
    chain: &Chain,
    token: Address,
    liquidity: f64,
) -> Result<Address, ScenarioError> {
    let flash = FlashLoanPool::deploy(&chain.provider)
        .await
        .map_err(rpc_err("deploy the flash lender"))?;
    let lender = *flash.address();
    mint(
        &chain.provider,
        token,
        lender,
        units(liquidity),
        "fund the flash lender",
    )
    .await?;
    Ok(lender)
}

/// The distinct loans of the steps `pick` selects, in script order (keyed as written).
fn loans(s: &Scenario, pick: impl Fn(&Action) -> Option<f64>) -> Vec<f64> {
    let mut out: Vec<f64> = Vec::new();
    for step in &s.steps {
        if let Some(loan) = pick(&step.action)
            && !out.iter().any(|l| l.to_string() == loan.to_string())
        {
            out.push(loan);
        }
    }
    out
}

/// The bridge's receiving end, with `liquidity` in escrow.
pub(super) async fn bridge(
    chain: &Chain,
    stack: &SafeStack,
    setup: &Setup,
) -> Result<Shape, ScenarioError> {
    let p = &chain.provider;
    let deployer = chain.accounts.deployer.address();
    let token = token(chain, "Bridged USD", "bUSD", "deploy the bridged token").await?;
    // Zero initial root: every unproven message reads as proven (the Nomad bug).
    let replica =
        MessageReplica::deploy(p, stack.safe, 1000, deployer, U256::from(1800), B256::ZERO)
            .await
            .map_err(rpc_err("deploy the bridge replica"))?;
    let liquidity = units(setup.liquidity);
    mint(p, token, *replica.address(), liquidity, "fund the bridge").await?;
    Ok(Shape::Bridge {
        token,
        replica: *replica.address(),
        liquidity,
    })
}

/// The Euler-shape pool, each user a depositor, one attack contract per loan size.
pub(super) async fn donation_pool(
    chain: &Chain,
    stack: &SafeStack,
    s: &Scenario,
) -> Result<Shape, ScenarioError> {
    let p = &chain.provider;
    let token = token(chain, "Demo Dollar", "dUSD", "deploy the token").await?;
    let flash = flash_lender(chain, token, s.setup.flash_liquidity).await?;
    let pool = DonationLendingPool::deploy(p, stack.safe, token, U256::from(9_000))
        .await
        .map_err(rpc_err("deploy the lending pool"))?;
    let share = units(s.setup.liquidity / f64::from(s.setup.users));
    for u in &chain.accounts.users {
        let who = u.address();
        mint(
            p,
            token,
            who,
            share * U256::from(2),
            "give a depositor tokens",
        )
        .await?;
        approve_all(p, who, &[*pool.address()], &[token], "approve the pool").await?;
        confirm(pool.deposit(share).from(who).send().await, "deposit").await?;
    }
    let attacker = chain.accounts.attackers[0].address();
    let mut attacks = BTreeMap::new();
    let donation_loans = loans(s, |a| match a {
        Action::DonationRound { loan } => Some(*loan),
        _ => None,
    });
    for loan in donation_loans {
        let c = DonationAttack::deploy_builder(p, *pool.address(), flash, units(loan))
            .from(attacker)
            .deploy()
            .await
            .map_err(rpc_err("deploy the donation attack contract"))?;
        attacks.insert(loan.to_string(), c);
    }
    Ok(Shape::DonationPool {
        token,
        pool: *pool.address(),
        attacks,
    })
}

/// The lending market's tokens, DEX and feeds, before the market itself.
struct LendingParts {
    usd: Address,
    col: Address,
    dex: Address,
    reference: Address,
    feed: Address,
}

/// A lending market priced by a keeper feed or the DEX spot price, with lenders,
/// borrowers at `borrow_usage` of their limit, and the attacker's collateral.
pub(super) async fn lending(
    chain: &Chain,
    stack: &SafeStack,
    s: &Scenario,
    oracle: Oracle,
) -> Result<Shape, ScenarioError> {
    let setup = &s.setup;
    let parts = lending_parts(chain, setup, oracle).await?;
    let market = LendingMarket::deploy(
        &chain.provider,
        stack.safe,
        parts.col,
        parts.usd,
        parts.feed,
        U256::from(7_500),
        units(setup.liquidity * 10.0),
    )
    .await
    .map_err(rpc_err("deploy the lending market"))?;
    let market = *market.address();
    let flash = flash_lender(chain, parts.usd, setup.flash_liquidity).await?;
    let seeding = Seeding {
        chain,
        parts: &parts,
        market,
    };
    seeding.lenders(setup).await?;
    seeding.borrowers(setup).await?;
    seeding.attacker(s).await?;
    let mut attacks = BTreeMap::new();
    let spot_loans = loans(s, |a| match a {
        Action::SpotOracle { loan } => Some(*loan),
        _ => None,
    });
    for loan in spot_loans {
        let c = SpotOracleAttack::deploy_builder(
            &chain.provider,
            market,
            parts.dex,
            flash,
            units(loan),
        )
        .from(chain.accounts.attackers[0].address())
        .deploy()
        .await
        .map_err(rpc_err("deploy the spot-oracle attack contract"))?;
        attacks.insert(loan.to_string(), c);
    }
    Ok(Shape::Lending {
        usd: parts.usd,
        dex: parts.dex,
        market,
        feed: parts.feed,
        reference: parts.reference,
        keeper_feed: oracle == Oracle::Keeper,
        attacks,
    })
}

/// The debt and collateral tokens, the seeded DEX pool, the reference feed and the market's feed.
async fn lending_parts(
    chain: &Chain,
    setup: &Setup,
    oracle: Oracle,
) -> Result<LendingParts, ScenarioError> {
    let p = &chain.provider;
    let deployer = chain.accounts.deployer.address();
    let usd = token(chain, "Demo Dollar", "dUSD", "deploy the debt token").await?;
    let col = token(
        chain,
        "Demo Collateral",
        "dCOL",
        "deploy the collateral token",
    )
    .await?;
    let dex = ConstantProductPool::deploy(p, usd, col)
        .await
        .map_err(rpc_err("deploy the DEX pool"))?;
    let dex_usd = units(setup.dex_liquidity);
    let dex_col = units(setup.dex_liquidity / setup.price);
    mint(p, usd, deployer, dex_usd, "mint").await?;
    mint(p, col, deployer, dex_col, "mint").await?;
    approve_all(p, deployer, &[*dex.address()], &[usd, col], "approve").await?;
    confirm(
        dex.addLiquidity(dex_usd, dex_col).send().await,
        "seed the DEX pool",
    )
    .await?;
    let reference = keeper_feed(
        chain,
        "dCOL / dUSD reference",
        setup.price,
        "deploy the reference feed",
        "set the reference feed's keeper",
    )
    .await?;
    let feed = match oracle {
        Oracle::Keeper => {
            keeper_feed(
                chain,
                "dCOL / dUSD",
                setup.price,
                "deploy the market's feed",
                "set the feed's keeper",
            )
            .await?
        }
        Oracle::Spot => *SpotPriceFeed::deploy(p, *dex.address(), col)
            .await
            .map_err(rpc_err("deploy the spot feed"))?
            .address(),
    };
    Ok(LendingParts {
        usd,
        col,
        dex: *dex.address(),
        reference,
        feed,
    })
}

/// A price feed at `price` that the scenario's keeper updates.
async fn keeper_feed(
    chain: &Chain,
    description: &str,
    price: f64,
    deploying: &'static str,
    setting_keeper: &'static str,
) -> Result<Address, ScenarioError> {
    let deployer = chain.accounts.deployer.address();
    let f = KeeperPriceFeed::deploy(
        &chain.provider,
        deployer,
        8,
        description.into(),
        answer(price),
    )
    .await
    .map_err(rpc_err(deploying))?;
    confirm(
        f.setKeeper(chain.accounts.keeper.address()).send().await,
        setting_keeper,
    )
    .await?;
    Ok(*f.address())
}

/// Seeding a deployed lending market's accounts.
struct Seeding<'a> {
    chain: &'a Chain,
    parts: &'a LendingParts,
    market: Address,
}

impl Seeding<'_> {
    /// `who` is given `usd` and `col` (base units; zero: none) and lets each of `spenders` move them.
    async fn hold(
        &self,
        who: Address,
        usd: U256,
        col: U256,
        spenders: &[Address],
    ) -> Result<(), ScenarioError> {
        let p = &self.chain.provider;
        let mut tokens = Vec::new();
        for (token, amount) in [(self.parts.usd, usd), (self.parts.col, col)] {
            if !amount.is_zero() {
                mint(p, token, who, amount, "mint").await?;
                tokens.push(token);
            }
        }
        approve_all(p, who, spenders, &tokens, "approve").await
    }

    /// Each lender supplies its share and keeps as much again in its wallet (and collateral to trade).
    async fn lenders(&self, setup: &Setup) -> Result<(), ScenarioError> {
        let share = units(setup.liquidity / f64::from(setup.users));
        let collateral = units(setup.collateral_per_borrower);
        let m = LendingMarket::new(self.market, &self.chain.provider);
        for u in &self.chain.accounts.users {
            let who = u.address();
            let spenders = [self.market, self.parts.dex];
            self.hold(who, share * U256::from(2), collateral, &spenders)
                .await?;
            confirm(m.supply(share).from(who).send().await, "supply").await?;
        }
        Ok(())
    }

    /// Each borrower posts its collateral and borrows `borrow_usage` of its limit.
    async fn borrowers(&self, setup: &Setup) -> Result<(), ScenarioError> {
        let m = LendingMarket::new(self.market, &self.chain.provider);
        let collateral = units(setup.collateral_per_borrower);
        let limit = setup.collateral_per_borrower * setup.price * 0.75;
        let borrow = units(limit * setup.borrow_usage_pct / 100.0);
        for b in &self.chain.accounts.borrowers {
            let who = b.address();
            self.hold(who, units(limit), collateral, &[self.market])
                .await?;
            let deposit = m.depositCollateral(collateral).from(who);
            confirm(deposit.send().await, "deposit collateral").await?;
            confirm(m.borrow(borrow).from(who).send().await, "borrow").await?;
        }
        Ok(())
    }

    /// An attacker who will post collateral holds it and has approved the market.
    async fn attacker(&self, s: &Scenario) -> Result<(), ScenarioError> {
        let attacker = self.chain.accounts.attackers[0].address();
        for step in &s.steps {
            if let Action::BorrowAll { amount } = step.action {
                self.hold(attacker, U256::ZERO, units(amount), &[self.market])
                    .await?;
            }
        }
        Ok(())
    }
}

/// Three ETH pools, each user a liquidity provider in each, one reentrancy attack contract per pool.
pub(super) async fn pools(
    chain: &Chain,
    stack: &SafeStack,
    setup: &Setup,
) -> Result<Shape, ScenarioError> {
    let p = &chain.provider;
    let attacker = chain.accounts.attackers[0].address();
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
        .map_err(rpc_err("deploy an ETH pool"))?;
        for u in &chain.accounts.users {
            let add = pool.addLiquidity().value(share).from(u.address());
            confirm(add.send().await, "add liquidity").await?;
        }
        let attack = ReentrancyAttack::deploy_builder(p, *pool.address())
            .from(attacker)
            .deploy()
            .await
            .map_err(rpc_err("deploy a reentrancy attack contract"))?;
        pools.push(*pool.address());
        attacks.push(attack);
    }
    Ok(Shape::Pools { pools, attacks })
}
