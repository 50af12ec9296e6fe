//! The synthetic benign mempool: ordinary users' transactions sent at a steady
//! rate while a scenario's script plays, so the guardian screens real traffic
//! around the attack and any pause it causes in a benign run is a false one.
//!
//! Its own accounts (fresh keys, funded and seeded at set-up, automine on) send,
//! round-robin, by protocol shape:
//! - every shape: ETH transfers between them;
//! - `bridge`: bUSD transfers, one whale transfer (10% of the bridge's liquidity);
//! - `donation-pool`: dUSD transfers, deposits and withdrawals of 1 dUSD, one
//!   whale withdrawal (10% of the liquidity, deposited at set-up);
//! - `lending`: dUSD transfers, supplies and withdrawals of 1 dUSD, small
//!   borrows and repayments against posted collateral, swaps of 0.01 dUSD on
//!   the DEX, one whale withdrawal (10% of the liquidity);
//! - `reentrant-pools`: adding and removing 0.01 ETH of liquidity, one whale
//!   removal (10% of pool 1).
//!
//! Liquidations are not part of the mix: a liquidation needs an underwater
//! borrower, which only a price move makes (the `benign-liquidations`
//! scenario's script sends those).
//!
//! Each account's nonce is tracked here; fees are the scripted users' (tip
//! [`USER_TIP`]). Nothing waits for receipts: the rate is what is offered.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use alloy::network::{EthereumWallet, TransactionBuilder};
use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;

use super::{
    ConstantProductPool, DemoToken, Deployed, DonationLendingPool, LendingMarket, ReentrantEthPool,
    Shape, units,
};
use crate::scenario::ScenarioError;
use crate::scenario::aave::Aave;
use crate::scenario::aave_deploy::IAavePool;
use crate::scenario::chain::{Chain, SCRIPT_MAX_FEE, USER_TIP, confirm};

/// Accounts the mempool sends from.
const ACCOUNTS: usize = 16;
/// Each account's deposit at set-up, whole tokens (or 1/100 of it in ETH for the pools).
const SEED: f64 = 200.0;
/// The whale's share of the liquidity.
const WHALE_SHARE: f64 = 0.10;
/// When, after the mempool starts, the whale moves.
const WHALE_AFTER: Duration = Duration::from_secs(1);

/// A benign call: what it is, where it goes, with what.
#[derive(Debug, Clone)]
struct Call {
    kind: &'static str,
    to: Address,
    data: Bytes,
    value: U256,
    gas: u64,
}

/// What the mempool sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MempoolStats {
    pub sent: u64,
    /// Sends the node refused (the account's nonce is then re-read).
    pub refused: u64,
    pub whale_sent: bool,
}

/// A seeded synthetic mempool, ready to play.
#[derive(Debug)]
pub struct Mempool {
    provider: DynProvider,
    /// To connect again from the mempool's own thread ([`Mempool::play_apart`]).
    wallet: EthereumWallet,
    url: alloy::transports::http::reqwest::Url,
    accounts: Vec<Address>,
    /// The ordinary mix, cycled through; `{from}` is filled per account.
    mix: Vec<Mix>,
    shape: Shape,
    whale: Option<Call>,
    chain_id: u64,
}

fn connect(wallet: &EthereumWallet, url: &alloy::transports::http::reqwest::Url) -> DynProvider {
    ProviderBuilder::new()
        .wallet(wallet.clone())
        .connect_http(url.clone())
        .erased()
}

fn call<C: SolCall>(kind: &'static str, to: Address, c: C, gas: u64) -> Call {
    Call {
        kind,
        to,
        data: c.abi_encode().into(),
        value: U256::ZERO,
        gas,
    }
}

impl Mempool {
    /// Creates and seeds the mempool's accounts on `chain` (automine must be on).
    pub async fn seed(
        chain: &Chain,
        d: &Deployed,
        liquidity: f64,
    ) -> Result<Mempool, ScenarioError> {
        let keys: Vec<PrivateKeySigner> =
            (0..ACCOUNTS).map(|_| PrivateKeySigner::random()).collect();
        let mut wallet = EthereumWallet::from(keys[0].clone());
        for k in &keys[1..] {
            wallet.register_signer(k.clone());
        }
        let url: alloy::transports::http::reqwest::Url = chain
            .http
            .parse()
            .map_err(|_| ScenarioError::BadRpc("the RPC endpoint is not a URL".into()))?;
        let provider = connect(&wallet, &url);
        let accounts: Vec<Address> = keys.iter().map(|k| k.address()).collect();
        let eth = U256::from(10_000u64) * U256::from(10u64).pow(U256::from(18u64));
        for a in &accounts {
            chain
                .control("anvil_setBalance", (*a, eth), "fund a mempool account")
                .await?;
        }
        let whale_amount = liquidity * WHALE_SHARE;
        let whale = match &d.inner {
            Shape::Bridge { token, .. } => {
                Some(seed_bridge(chain, *token, &accounts, whale_amount).await?)
            }
            shape @ (Shape::DonationPool { .. } | Shape::Lending { .. }) => {
                Some(seed_deposits(chain, &provider, shape, &accounts, whale_amount).await?)
            }
            Shape::Pools { pools, .. } => {
                Some(seed_pools(&provider, pools, &accounts, whale_amount).await?)
            }
            Shape::Aave(aave) => {
                // No whale of the mempool's own: the Aave scenarios script their
                // large withdrawals and liquidations, and one more on top of a
                // scripted withdrawal stress would be the scenario's, not ordinary traffic.
                seed_aave(chain, &provider, aave, &accounts).await?;
                None
            }
        };
        let mix = match &d.inner {
            Shape::Bridge { .. } => vec![Mix::Eth, Mix::Token],
            Shape::Lending { .. } => {
                vec![Mix::Eth, Mix::Token, Mix::Deposit, Mix::Withdraw, Mix::Swap]
            }
            Shape::Pools { .. } => vec![Mix::Eth, Mix::Deposit, Mix::Withdraw],
            Shape::DonationPool { .. } | Shape::Aave(_) => {
                vec![Mix::Eth, Mix::Token, Mix::Deposit, Mix::Withdraw]
            }
        };
        Ok(Mempool {
            provider,
            wallet,
            url,
            accounts,
            mix,
            shape: d.inner.clone(),
            whale,
            chain_id: chain.chain_id,
        })
    }

    /// [`Mempool::play`] on a thread and runtime of its own, as real users' traffic
    /// is: signing hundreds of transactions a second must not take the CPU time
    /// of the runtime the guardian runs on.
    pub fn play_apart(
        mut self,
        rate: f64,
        stop: Arc<AtomicBool>,
    ) -> tokio::task::JoinHandle<MempoolStats> {
        tokio::task::spawn_blocking(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let Ok(runtime) = runtime else {
                tracing::warn!(target: "guardian::scenario", "cannot start the mempool's runtime: no benign traffic");
                return MempoolStats::default();
            };
            runtime.block_on(async move {
                // Connections of the new runtime, not the seeding one's.
                self.provider = connect(&self.wallet, &self.url);
                self.play(rate, stop).await
            })
        })
    }

    /// Sends `rate` transactions per second until `stop` is set: each account
    /// sends its share in turn (its own nonces), all accounts at once.
    pub async fn play(self, rate: f64, stop: Arc<AtomicBool>) -> MempoolStats {
        if rate <= 0.0 {
            return MempoolStats::default();
        }
        let this = Arc::new(self);
        let n = this.accounts.len();
        let period = Duration::from_secs_f64(n as f64 / rate);
        let mut tasks = Vec::with_capacity(n);
        for i in 0..n {
            let (m, stop) = (this.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut stats = MempoolStats::default();
                let mut nonce = None;
                // Spread the accounts over the period.
                let start = Instant::now() + period.mul_f64(i as f64 / n as f64);
                let mut k = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let due = start + period.mul_f64(k as f64);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        tokio::time::sleep(wait).await;
                    }
                    // The whale (account 0) moves once, a second in.
                    let c = match &m.whale {
                        Some(w)
                            if i == 0 && !stats.whale_sent && start.elapsed() >= WHALE_AFTER =>
                        {
                            stats.whale_sent = true;
                            w.clone()
                        }
                        _ => benign(&m, i, m.mix[(k as usize + i) % m.mix.len()]),
                    };
                    m.send(i, c, &mut nonce, &mut stats).await;
                    k += 1;
                }
                stats
            }));
        }
        let mut total = MempoolStats::default();
        for t in tasks {
            if let Ok(s) = t.await {
                total.sent += s.sent;
                total.refused += s.refused;
                total.whale_sent |= s.whale_sent;
            }
        }
        total
    }

    async fn send(&self, i: usize, c: Call, nonce: &mut Option<u64>, stats: &mut MempoolStats) {
        let from = self.accounts[i];
        let n = match *nonce {
            Some(n) => n,
            None => match self.provider.get_transaction_count(from).pending().await {
                Ok(n) => n,
                Err(_) => {
                    stats.refused += 1;
                    return;
                }
            },
        };
        let tx = TransactionRequest::default()
            .with_from(from)
            .with_to(c.to)
            .with_input(c.data)
            .with_value(c.value)
            .with_nonce(n)
            .with_chain_id(self.chain_id)
            .with_gas_limit(c.gas)
            .with_max_fee_per_gas(SCRIPT_MAX_FEE)
            .with_max_priority_fee_per_gas(USER_TIP);
        match self.provider.send_transaction(tx).await {
            Ok(_) => {
                *nonce = Some(n + 1);
                stats.sent += 1;
            }
            Err(e) => {
                tracing::debug!(target: "guardian::scenario", kind = c.kind, error = %crate::source::chain::redact(&e.to_string()), "a mempool transaction was refused");
                *nonce = None;
                stats.refused += 1;
            }
        }
    }

    fn next_account(&self, i: usize) -> Address {
        self.accounts[(i + 1) % self.accounts.len()]
    }
}

fn eth_transfer(m: &Mempool, i: usize) -> Call {
    Call {
        kind: "transfer",
        to: m.next_account(i),
        data: Bytes::new(),
        value: units(0.01),
        gas: 21_000,
    }
}

fn token_transfer(m: &Mempool, i: usize) -> Call {
    let token = match &m.shape {
        Shape::Bridge { token, .. } | Shape::DonationPool { token, .. } => *token,
        Shape::Lending { usd, .. } => *usd,
        Shape::Aave(aave) => aave.reserves[AAVE_RESERVE].asset,
        Shape::Pools { .. } => return eth_transfer(m, i),
    };
    call(
        "token transfer",
        token,
        DemoToken::transferCall {
            to: m.next_account(i),
            value: units(1.0),
        },
        100_000,
    )
}

/// Every account holds its seed of bUSD, the first one the whale's share too;
/// the whale transfers its share to the second.
async fn seed_bridge(
    chain: &Chain,
    token: Address,
    accounts: &[Address],
    whale_amount: f64,
) -> Result<Call, ScenarioError> {
    let owner = DemoToken::new(token, &chain.provider);
    for a in accounts {
        confirm(owner.mint(*a, units(SEED)).send().await, "mint").await?;
    }
    let whale = units(whale_amount);
    confirm(owner.mint(accounts[0], whale).send().await, "mint").await?;
    let c = DemoToken::transferCall {
        to: accounts[1],
        value: whale,
    };
    Ok(call("whale transfer", token, c, 100_000))
}

/// Donation pool or lending market: every account holds twice its seed and
/// deposits (supplies) one seed, the first one also the whale's share, which
/// the whale withdraws.
async fn seed_deposits(
    chain: &Chain,
    users: &DynProvider,
    shape: &Shape,
    accounts: &[Address],
    whale_amount: f64,
) -> Result<Call, ScenarioError> {
    let (token, into, spenders, what) = match shape {
        Shape::Lending {
            usd, market, dex, ..
        } => (*usd, *market, vec![*market, *dex], "supply"),
        Shape::DonationPool { token, pool, .. } => (*token, *pool, vec![*pool], "deposit"),
        _ => unreachable!("only deposit shapes are seeded with deposits"),
    };
    let t = DemoToken::new(token, users);
    let owner = DemoToken::new(token, &chain.provider);
    let (pool, market) = (
        DonationLendingPool::new(into, users),
        LendingMarket::new(into, users),
    );
    for (i, a) in accounts.iter().enumerate() {
        let extra = if i == 0 { whale_amount } else { 0.0 };
        confirm(
            owner.mint(*a, units(2.0 * SEED + extra)).send().await,
            "mint",
        )
        .await?;
        for spender in &spenders {
            confirm(
                t.approve(*spender, U256::MAX).from(*a).send().await,
                "approve",
            )
            .await?;
        }
        let amount = units(SEED + extra);
        let sent = if what == "supply" {
            market.supply(amount).from(*a).send().await
        } else {
            pool.deposit(amount).from(*a).send().await
        };
        confirm(sent, what).await?;
    }
    let amount = units(whale_amount);
    Ok(if what == "supply" {
        call(
            "whale withdrawal",
            into,
            LendingMarket::withdrawCall { amount },
            300_000,
        )
    } else {
        let c = DonationLendingPool::withdrawCall { amount };
        call("whale withdrawal", into, c, 300_000)
    })
}

/// Every account adds its seed to each pool, the first one also the whale's
/// share to pool 1, of which the whale removes nine tenths.
async fn seed_pools(
    users: &DynProvider,
    pools: &[Address],
    accounts: &[Address],
    whale_amount: f64,
) -> Result<Call, ScenarioError> {
    for (i, a) in accounts.iter().enumerate() {
        for pool in pools {
            let c = ReentrantEthPool::new(*pool, users);
            let extra = if i == 0 && *pool == pools[0] {
                whale_amount
            } else {
                0.0
            };
            let add = c.addLiquidity().value(units(SEED / 100.0 + extra));
            confirm(add.from(*a).send().await, "add liquidity").await?;
        }
    }
    let c = ReentrantEthPool::new(pools[0], users);
    let lp = c
        .balanceOf(accounts[0])
        .call()
        .await
        .map_err(crate::scenario::chain::rpc_err("read the whale's LP"))?;
    let c = ReentrantEthPool::removeLiquidityCall {
        lpAmount: lp * U256::from(9) / U256::from(10),
    };
    Ok(call("whale removal", pools[0], c, 200_000))
}

/// The Aave reserve the mempool's users hold, supply and withdraw (USDX).
const AAVE_RESERVE: usize = 0;

/// Mints USDX to every account, approves the Pool and supplies a seed.
async fn seed_aave(
    chain: &Chain,
    users: &DynProvider,
    aave: &Aave,
    accounts: &[Address],
) -> Result<(), ScenarioError> {
    let asset = aave.reserves[AAVE_RESERVE].asset;
    // The users sign their own approvals and supplies (the mempool's wallet).
    let pool = IAavePool::new(aave.pool, users);
    for a in accounts {
        aave.mint(chain, AAVE_RESERVE, *a, 2.0 * SEED).await?;
        let t = DemoToken::new(asset, users);
        confirm(
            t.approve(aave.pool, U256::MAX).from(*a).send().await,
            "approve",
        )
        .await?;
        let supply = pool.supply(asset, units(SEED), *a, 0);
        // A refused seed supply leaves this user without a position (its
        // withdrawals then revert, harmlessly): said, not fatal to the scenario.
        if let Err(e) = confirm(supply.from(*a).send().await, "supply").await {
            tracing::warn!(target: "guardian::scenario", account = %a, error = %e, "a mempool user's seed supply on Aave failed; it sends the rest of the mix without a position");
        }
    }
    Ok(())
}

/// One kind of ordinary transaction in the mix; [`benign`] builds it for the shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mix {
    Eth,
    Token,
    Deposit,
    Withdraw,
    Swap,
}

/// Account `i`'s next ordinary transaction of kind `what` on the mempool's shape
/// (an ETH transfer where the shape has no such transaction).
fn benign(m: &Mempool, i: usize, what: Mix) -> Call {
    let small = units(1.0);
    match (what, &m.shape) {
        (Mix::Token, _) => token_transfer(m, i),
        (Mix::Deposit, Shape::DonationPool { pool, .. }) => {
            let c = DonationLendingPool::depositCall { amount: small };
            call("deposit", *pool, c, 300_000)
        }
        (Mix::Withdraw, Shape::DonationPool { pool, .. }) => {
            let c = DonationLendingPool::withdrawCall { amount: small };
            call("withdrawal", *pool, c, 300_000)
        }
        (Mix::Deposit, Shape::Lending { market, .. }) => {
            let c = LendingMarket::supplyCall { amount: small };
            call("deposit", *market, c, 300_000)
        }
        (Mix::Withdraw, Shape::Lending { market, .. }) => {
            let c = LendingMarket::withdrawCall { amount: small };
            call("withdrawal", *market, c, 300_000)
        }
        (Mix::Swap, Shape::Lending { usd, dex, .. }) => {
            let c = ConstantProductPool::swapCall {
                tokenIn: *usd,
                amountIn: units(0.01),
                minAmountOut: U256::ZERO,
            };
            call("swap", *dex, c, 300_000)
        }
        (Mix::Deposit, Shape::Pools { pools, .. }) => Call {
            kind: "deposit",
            to: pools[i % pools.len()],
            data: ReentrantEthPool::addLiquidityCall {}.abi_encode().into(),
            value: units(0.01),
            gas: 200_000,
        },
        (Mix::Withdraw, Shape::Pools { pools, .. }) => {
            let c = ReentrantEthPool::removeLiquidityCall {
                lpAmount: units(0.005),
            };
            call("withdrawal", pools[i % pools.len()], c, 200_000)
        }
        (Mix::Deposit, Shape::Aave(aave)) => {
            let c = IAavePool::supplyCall {
                asset: aave.reserves[AAVE_RESERVE].asset,
                amount: small,
                onBehalfOf: m.accounts[i],
                referralCode: 0,
            };
            call("deposit", aave.pool, c, 400_000)
        }
        (Mix::Withdraw, Shape::Aave(aave)) => {
            let c = IAavePool::withdrawCall {
                asset: aave.reserves[AAVE_RESERVE].asset,
                amount: small,
                to: m.accounts[i],
            };
            call("withdrawal", aave.pool, c, 400_000)
        }
        _ => eth_transfer(m, i),
    }
}
