//! What each scripted action sends, per shape. Every function answers `None`
//! when the action does not apply to its shape (the caller says so).

use std::collections::BTreeMap;

use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use alloy::sol_types::SolValue;

use super::{
    ConstantProductPool, DonationAttack, DonationLendingPool, KeeperPriceFeed, LendingMarket,
    ReentrancyAttack, ReentrantEthPool, Shape, SpotOracleAttack,
};
use crate::demo::MessageReplica;
use crate::scenario::ScenarioError;
use crate::scenario::chain::{Chain, rpc_err};
use crate::scenario::shared::{Sent, answer, read, send_tx, units, wait_mined, whole};
use crate::scenario::spec::{Action, StepKind};

type Sends = Result<Option<Vec<Sent>>, ScenarioError>;

/// One step's transactions: the chain they go to and the step's kind (its fees).
pub(super) struct Step<'a> {
    pub chain: &'a Chain,
    pub kind: StepKind,
}

impl Step<'_> {
    fn user(&self, n: u32) -> Address {
        self.chain.accounts.users[n as usize - 1].address()
    }

    fn borrower(&self, n: u32) -> Address {
        self.chain.accounts.borrowers[n as usize - 1].address()
    }

    fn attacker(&self) -> Address {
        self.chain.accounts.attackers[0].address()
    }

    async fn send<P: Provider, C: alloy::sol_types::SolCall>(
        &self,
        call: alloy::contract::SolCallBuilder<P, C>,
        from: Address,
        gas: u64,
        label: String,
    ) -> Result<Sent, ScenarioError> {
        send_tx(call, from, gas, self.kind, label).await
    }

    /// As the Nomad copycats did: each sender calls `process` on the replica with
    /// a never-proven transfer message paying it a slice of the liquidity.
    pub async fn bridge(
        &self,
        token: Address,
        replica: Address,
        liquidity: U256,
        action: &Action,
    ) -> Sends {
        let Action::Copycat { senders, slice_pct } = action else {
            return Ok(None);
        };
        let attackers = &self.chain.accounts.attackers;
        let bps = (slice_pct * 100.0).round() as u64;
        let amount = liquidity * U256::from(bps) / U256::from(10_000);
        let contract = MessageReplica::new(replica, &self.chain.provider);
        let mut sent = Vec::new();
        for i in 0..*senders as usize {
            let who = attackers[i % attackers.len()].address();
            // A message nonce never used before: a hash of sender, time and index.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let nonce = U256::from_be_bytes(
                alloy::primitives::keccak256((who, U256::from(nanos), U256::from(i)).abi_encode())
                    .0,
            );
            let message = (1000u32, nonce, token, who, amount).abi_encode_params();
            let label = format!(
                "copycat process() of an unproven message paying {slice_pct}% of the liquidity"
            );
            sent.push(
                self.send(contract.process(message.into()), who, 300_000, label)
                    .await?,
            );
        }
        Ok(Some(sent))
    }

    pub async fn donation_pool(
        &self,
        pool: Address,
        attacks: &BTreeMap<String, Address>,
        action: &Action,
    ) -> Sends {
        let p = &self.chain.provider;
        let c = DonationLendingPool::new(pool, p);
        let sent = match action {
            Action::DonationRound { loan } => {
                let attack = DonationAttack::new(attacks[&loan.to_string()], p);
                let label = format!("donation round on a {loan} dUSD flash loan");
                self.send(attack.attack(), self.attacker(), 3_000_000, label)
                    .await?
            }
            Action::Deposit { user, amount, .. } => {
                let label = format!("user {user} deposits {amount} dUSD");
                self.send(c.deposit(units(*amount)), self.user(*user), 300_000, label)
                    .await?
            }
            Action::Withdraw { user, amount, .. } => {
                let label = format!("user {user} withdraws {amount} dUSD");
                self.send(c.withdraw(units(*amount)), self.user(*user), 300_000, label)
                    .await?
            }
            _ => return Ok(None),
        };
        Ok(Some(vec![sent]))
    }

    pub async fn lending(&self, shape: &Shape, action: &Action) -> Sends {
        let Shape::Lending {
            usd,
            dex,
            market,
            feed,
            reference,
            keeper_feed,
            attacks,
        } = shape
        else {
            return Ok(None);
        };
        let p = &self.chain.provider;
        let m = LendingMarket::new(*market, p);
        let one = |s: Sent| Ok(Some(vec![s]));
        match action {
            Action::SpotOracle { loan } => {
                let attack = SpotOracleAttack::new(attacks[&loan.to_string()], p);
                let label = format!("spot-oracle manipulation on a {loan} dUSD flash loan");
                one(self
                    .send(attack.attack(), self.attacker(), 3_000_000, label)
                    .await?)
            }
            Action::Deposit { user, amount, .. } => {
                let label = format!("lender {user} supplies {amount} dUSD");
                one(self
                    .send(m.supply(units(*amount)), self.user(*user), 300_000, label)
                    .await?)
            }
            Action::Withdraw { user, amount, .. } => {
                let label = format!("lender {user} withdraws {amount} dUSD");
                one(self
                    .send(m.withdraw(units(*amount)), self.user(*user), 300_000, label)
                    .await?)
            }
            Action::Borrow { user, amount } => {
                let label = format!("borrower {user} borrows {amount} dUSD");
                one(self
                    .send(
                        m.borrow(units(*amount)),
                        self.borrower(*user),
                        300_000,
                        label,
                    )
                    .await?)
            }
            Action::Repay { user, amount } => {
                let who = self.borrower(*user);
                let label = format!("borrower {user} repays {amount} dUSD");
                one(self
                    .send(m.repay(who, units(*amount)), who, 300_000, label)
                    .await?)
            }
            Action::Swap { user, amount } => {
                let c = ConstantProductPool::new(*dex, p);
                let label = format!("user {user} buys collateral with {amount} dUSD");
                let call = c.swap(*usd, units(*amount), U256::ZERO);
                one(self.send(call, self.user(*user), 300_000, label).await?)
            }
            Action::Liquidate => self.liquidate(*market).await.map(Some),
            Action::Price { change_pct } => {
                let mut feeds = vec![*reference];
                if *keeper_feed {
                    feeds.insert(0, *feed);
                }
                self.price(*reference, &feeds, *change_pct).await.map(Some)
            }
            Action::RoguePrice { change_pct } if *keeper_feed => {
                self.rogue_price(*feed, *change_pct).await.map(Some)
            }
            Action::BorrowAll { amount } => self.borrow_all(*market, *amount).await.map(Some),
            _ => Ok(None),
        }
    }

    /// Lenders repay half of every liquidatable borrower's debt.
    async fn liquidate(&self, market: Address) -> Result<Vec<Sent>, ScenarioError> {
        let a = &self.chain.accounts;
        let m = LendingMarket::new(market, &self.chain.provider);
        let mut sent = Vec::new();
        for (i, b) in a.borrowers.iter().enumerate() {
            let borrowed = read(m.borrowedOf(b.address()).call(), "read a borrower's debt").await?;
            let limit = read(m.borrowLimit(b.address()).call(), "read a borrow limit").await?;
            if borrowed > limit {
                let liquidator = a.users[i % a.users.len()].address();
                let label = format!(
                    "liquidation of borrower {} by lender {}",
                    i + 1,
                    i % a.users.len() + 1
                );
                let call = m.liquidate(b.address(), borrowed / U256::from(2));
                sent.push(self.send(call, liquidator, 400_000, label).await?);
            }
        }
        Ok(sent)
    }

    /// A feed's latest answer, as a price.
    async fn current_price(&self, feed: Address, what: &'static str) -> Result<f64, ScenarioError> {
        let (_, current, _, _, _) = KeeperPriceFeed::new(feed, &self.chain.provider)
            .latestRoundData()
            .call()
            .await
            .map_err(rpc_err(what))?
            .into();
        Ok(current.to_string().parse::<f64>().unwrap_or(0.0) / 1e8)
    }

    /// The market price moves: the keeper posts it on each of `feeds`.
    async fn price(
        &self,
        reference: Address,
        feeds: &[Address],
        change_pct: f64,
    ) -> Result<Vec<Sent>, ScenarioError> {
        let current = self
            .current_price(reference, "read the reference price")
            .await?;
        let next = current * (1.0 + change_pct / 100.0);
        let mut sent = Vec::new();
        for f in feeds {
            let f = KeeperPriceFeed::new(*f, &self.chain.provider);
            let call = f.updateAnswer(answer(next));
            let label = format!("keeper moves the collateral price {change_pct:+}% to {next:.2}");
            sent.push(
                self.send(call, self.chain.accounts.keeper.address(), 200_000, label)
                    .await?,
            );
        }
        Ok(sent)
    }

    /// The keeper's key is the attacker's now: it posts a price on the market's feed only.
    async fn rogue_price(
        &self,
        feed: Address,
        change_pct: f64,
    ) -> Result<Vec<Sent>, ScenarioError> {
        let current = self.current_price(feed, "read the market's price").await?;
        let next = current * (1.0 + change_pct / 100.0);
        let f = KeeperPriceFeed::new(feed, &self.chain.provider);
        let call = f.updateAnswer(answer(next));
        let label =
            format!("stolen keeper key posts {next:.2} ({change_pct:+}%) on the market's feed");
        let keeper = self.chain.accounts.keeper.address();
        Ok(vec![self.send(call, keeper, 200_000, label).await?])
    }

    /// The attacker posts collateral, then borrows all the cash its limit allows.
    async fn borrow_all(&self, market: Address, amount: f64) -> Result<Vec<Sent>, ScenarioError> {
        let m = LendingMarket::new(market, &self.chain.provider);
        let who = self.attacker();
        let label = format!("attacker posts {amount} dCOL of collateral");
        let deposit = self
            .send(m.depositCollateral(units(amount)), who, 300_000, label)
            .await?;
        // The borrow goes out once the collateral is on chain (as an attacker's
        // script would), so its simulation sees the collateral.
        wait_mined(
            self.chain,
            deposit.hash,
            "post the attacker's collateral",
            30,
        )
        .await?;
        let limit = read(m.borrowLimit(who).call(), "read the attacker's limit").await?;
        let cash = read(m.cash().call(), "read the market's cash").await?;
        // 1% of the cash left as margin: the benign mempool's withdrawals
        // mined just before the borrow would otherwise make it revert.
        let cash = cash - cash / U256::from(100u64);
        let take = if limit < cash { limit } else { cash };
        let label = format!("attacker borrows {:.0} dUSD against it", whole(take));
        let borrow = self.send(m.borrow(take), who, 400_000, label).await?;
        Ok(vec![deposit, borrow])
    }

    pub async fn pools(&self, pools: &[Address], attacks: &[Address], action: &Action) -> Sends {
        let p = &self.chain.provider;
        let sent = match action {
            Action::Reentrancy { pool, capital } => {
                let c = ReentrancyAttack::new(attacks[*pool as usize - 1], p);
                let label = format!("reentrancy attack on pool {pool} with {capital} ETH");
                let call = c.attack().value(units(*capital));
                self.send(call, self.attacker(), 3_000_000, label).await?
            }
            Action::Deposit { user, amount, pool } => {
                let n = pool.unwrap_or(1) as usize;
                let c = ReentrantEthPool::new(pools[n - 1], p);
                let label = format!("user {user} adds {amount} ETH to pool {n}");
                let call = c.addLiquidity().value(units(*amount));
                self.send(call, self.user(*user), 200_000, label).await?
            }
            Action::Withdraw { user, amount, pool } => {
                let n = pool.unwrap_or(1) as usize;
                let lp = self.lp_for(pools[n - 1], *amount).await?;
                let c = ReentrantEthPool::new(pools[n - 1], p);
                let label = format!("user {user} takes {amount} ETH out of pool {n}");
                self.send(c.removeLiquidity(lp), self.user(*user), 200_000, label)
                    .await?
            }
            _ => return Ok(None),
        };
        Ok(Some(vec![sent]))
    }

    /// The LP tokens worth `amount` ETH of `pool`.
    async fn lp_for(&self, pool: Address, amount: f64) -> Result<U256, ScenarioError> {
        let p = &self.chain.provider;
        let balance = p
            .get_balance(pool)
            .await
            .map_err(rpc_err("read a pool's ETH"))?;
        let supply = read(
            ReentrantEthPool::new(pool, p).totalSupply().call(),
            "read a pool's LP supply",
        )
        .await?;
        Ok(if balance.is_zero() {
            U256::ZERO
        } else {
            units(amount) * supply / balance
        })
    }
}
