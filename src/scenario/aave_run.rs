//! What the guardian watches on the `aave-v3` shape, the actions it may take,
//! and what each scripted step sends to the real Aave Pool.

use std::fmt::Write as _;

use alloy::primitives::{Address, U256};

use super::ScenarioError;
use super::aave::{Aave, AaveKeeperFeed, CAP_MAX_CHANGE_BPS, CAP_MIN_DELAY_S, CAP_STEP_BPS};
use super::aave_deploy::{IAaveOracle, IAavePool, IAaveToken};
use super::chain::Chain;
use super::shared::{Sent, answer, read, send_tx, units, wait_mined, whole, write_metric};
use super::spec::{Action, StepKind};

const BORROW_EVENT: &str = "Borrow(address indexed reserve, address user, address indexed onBehalfOf, uint256 amount, uint8 interestRateMode, uint256 borrowRate, uint16 indexed referralCode)";
const WITHDRAW_EVENT: &str =
    "Withdraw(address indexed reserve, address indexed user, address indexed to, uint256 amount)";
const LIQUIDATION_EVENT: &str = "LiquidationCall(address indexed collateralAsset, address indexed debtAsset, address indexed user, uint256 debtToCover, uint256 liquidatedCollateralAmount, address liquidator, bool receiveAToken)";

fn metric(t: &mut String, name: &str, description: &str, unit: &str, source: String) {
    write_metric(t, name, description, unit, &source);
}

impl Aave {
    /// The actions and metrics of the generated `guardian.toml` (pause actions come from the runner).
    pub fn config_text(&self, t: &mut String) {
        for r in &self.reserves {
            let s = r.symbol.to_lowercase();
            let _ = write!(
                t,
                r#"
[actions.freeze-{s}]
kind = "pause"
description = "freeze the {sym} reserve (Aave setReserveFreeze through the RISK_ADMIN role-holder)"
target = "{holder}"
function = "freeze()"
paused_getter = "frozen()"
executor = "module"
"#,
                sym = r.symbol,
                holder = r.holder,
            );
        }
        let _ = write!(
            t,
            r#"
[actions.lower-borrow-cap-usdx]
kind = "set-parameter"
description = "lower the USDX borrow cap (Aave setBorrowCap through the RISK_ADMIN role-holder)"
target = "{holder}"
function = "setBorrowCap(uint256)"
executor = "module"
getter = "borrowCap()"
min = 1
max = 1000000000000
max_change_bps = {CAP_MAX_CHANGE_BPS}
min_delay = "{CAP_MIN_DELAY_S}s"
value = {{ step_bps = {CAP_STEP_BPS}, direction = "down" }}
"#,
            holder = self.usdx().holder,
        );
        for r in &self.reserves {
            self.reserve_metrics(t, r);
        }
        metric(
            t,
            "aave.vol.reference_price",
            "an independent VOL price",
            "USD",
            format!(
                r#"{{ kind = "oracle_answer", feed = "{}", decimals = 8 }}"#,
                self.reference
            ),
        );
        metric(
            t,
            "aave.usdx.borrow_cap",
            "the USDX borrow cap",
            "USDX",
            format!(
                r#"{{ kind = "call", to = "{}", signature = "borrowCap()(uint256)", decimals = 0 }}"#,
                self.usdx().holder
            ),
        );
        metric(
            t,
            "aave.liquidations",
            "liquidationCall()s in the block",
            "count",
            format!(
                r#"{{ kind = "event_count", address = "{}", event = "{LIQUIDATION_EVENT}" }}"#,
                self.pool
            ),
        );
    }

    fn reserve_metrics(&self, t: &mut String, r: &super::aave::Reserve) {
        let s = r.symbol.to_lowercase();
        let sym = r.symbol;
        let liquidity = format!(
            r#"{{ kind = "erc20_balance", token = "{}", holder = "{}", decimals = 18 }}"#,
            r.asset, r.a_token
        );
        let supply = |token: Address| {
            format!(
                r#"{{ kind = "call", to = "{token}", signature = "totalSupply()(uint256)", decimals = 18 }}"#
            )
        };
        let events = |event: &str| {
            format!(
                r#"{{ kind = "event_sum", address = "{}", event = "{event}", topics = {{ reserve = "{}" }}, field = "amount", decimals = 18 }}"#,
                self.pool, r.asset
            )
        };
        metric(
            t,
            &format!("aave.{s}.liquidity"),
            &format!("{sym} available to borrow or withdraw (held by the aToken)"),
            sym,
            liquidity.clone(),
        );
        metric(
            t,
            &format!("aave.{s}.supplied"),
            &format!("a{sym} total supply"),
            sym,
            supply(r.a_token),
        );
        metric(
            t,
            &format!("aave.{s}.debt"),
            &format!("variable debt {sym} total supply"),
            sym,
            supply(r.debt_token),
        );
        metric(
            t,
            &format!("aave.{s}.utilization"),
            &format!("{sym} debt over supply"),
            "ratio",
            format!(
                r#"{{ kind = "ratio", numerator = "aave.{s}.debt", denominator = "aave.{s}.supplied" }}"#
            ),
        );
        metric(
            t,
            &format!("aave.{s}.price"),
            &format!("the AaveOracle's {sym} price"),
            "USD",
            format!(
                r#"{{ kind = "call", to = "{}", signature = "getAssetPrice(address)(uint256)", args = ["{}"], decimals = 8 }}"#,
                self.oracle, r.asset
            ),
        );
        metric(
            t,
            &format!("aave.{s}.borrows"),
            &format!("{sym} borrowed in the block"),
            sym,
            events(BORROW_EVENT),
        );
        metric(
            t,
            &format!("aave.{s}.withdrawals"),
            &format!("{sym} withdrawn in the block"),
            sym,
            events(WITHDRAW_EVENT),
        );
        metric(
            t,
            &format!("aave.{s}.pending_outflow"),
            &format!("{sym} a pending transaction would take out of the reserve (screened)"),
            sym,
            format!(r#"{{ kind = "pending", effect = {liquidity} }}"#),
        );
    }

    /// Sends the transactions of one scripted action; does not wait for them (but
    /// `borrow-all` waits for its collateral to be mined, as an attacker's script would).
    pub async fn perform(
        &self,
        chain: &Chain,
        kind: StepKind,
        action: &Action,
    ) -> Result<Vec<Sent>, ScenarioError> {
        match action {
            Action::Deposit { .. }
            | Action::Withdraw { .. }
            | Action::Borrow { .. }
            | Action::Repay { .. } => Ok(vec![self.user_step(chain, kind, action).await?]),
            Action::Liquidate => self.liquidate(chain, kind).await,
            Action::Price { change_pct } => self.move_price(chain, kind, *change_pct, true).await,
            Action::RoguePrice { change_pct } => {
                self.move_price(chain, kind, *change_pct, false).await
            }
            Action::BorrowAll { amount } => self.borrow_all(chain, kind, *amount).await,
            other => Err(ScenarioError::Chain {
                step: "play a step",
                message: format!("`{}` does not apply to the aave-v3 protocol", other.name()),
            }),
        }
    }

    /// A lender's USDX supply or withdrawal, a borrower's USDX borrow or repayment.
    async fn user_step(
        &self,
        chain: &Chain,
        kind: StepKind,
        action: &Action,
    ) -> Result<Sent, ScenarioError> {
        let a = &chain.accounts;
        let pool = IAavePool::new(self.pool, &chain.provider);
        let usdx = self.usdx().asset;
        let variable = U256::from(2);
        let lender = |u: u32| a.users[u as usize - 1].address();
        let borrower = |u: u32| a.borrowers[u as usize - 1].address();
        match action {
            Action::Deposit { user, amount, .. } => {
                let who = lender(*user);
                let call = pool.supply(usdx, units(*amount), who, 0);
                let label = format!("lender {user} supplies {amount} USDX");
                send_tx(call, who, 600_000, kind, label).await
            }
            Action::Withdraw { user, amount, .. } => {
                let who = lender(*user);
                let call = pool.withdraw(usdx, units(*amount), who);
                let label = format!("lender {user} withdraws {amount} USDX");
                send_tx(call, who, 600_000, kind, label).await
            }
            Action::Borrow { user, amount } => {
                let who = borrower(*user);
                let call = pool.borrow(usdx, units(*amount), variable, 0, who);
                let label = format!("borrower {user} borrows {amount} USDX");
                send_tx(call, who, 1_000_000, kind, label).await
            }
            _ => {
                let Action::Repay { user, amount } = action else {
                    unreachable!("perform sends only user steps here")
                };
                let who = borrower(*user);
                let call = pool.repay(usdx, units(*amount), variable, who);
                let label = format!("borrower {user} repays {amount} USDX");
                send_tx(call, who, 600_000, kind, label).await
            }
        }
    }

    /// Liquidator bots (the lenders) call `liquidationCall` on every borrower
    /// whose health factor is below 1, for as much as the close factor allows.
    async fn liquidate(&self, chain: &Chain, kind: StepKind) -> Result<Vec<Sent>, ScenarioError> {
        let a = &chain.accounts;
        let pool = IAavePool::new(self.pool, &chain.provider);
        let one = U256::from(10u64).pow(U256::from(18u64));
        let mut sent = Vec::new();
        for (i, b) in a.borrowers.iter().enumerate() {
            let data = read(
                pool.getUserAccountData(b.address()).call(),
                "read a borrower's health factor",
            )
            .await?;
            if data.totalDebtBase.is_zero() || data.healthFactor >= one {
                continue;
            }
            let liquidator = a.users[i % a.users.len()].address();
            let call = pool.liquidationCall(
                self.vol().asset,
                self.usdx().asset,
                b.address(),
                U256::MAX,
                false,
            );
            let label = format!(
                "liquidationCall on borrower {} by lender {}",
                i + 1,
                i % a.users.len() + 1
            );
            sent.push(send_tx(call, liquidator, 1_200_000, kind, label).await?);
        }
        Ok(sent)
    }

    /// The keeper moves VOL's price: on both feeds (`market`), or, with a stolen
    /// key, on the AaveOracle's source only.
    async fn move_price(
        &self,
        chain: &Chain,
        kind: StepKind,
        change_pct: f64,
        market: bool,
    ) -> Result<Vec<Sent>, ScenarioError> {
        let next = self.reference_price(chain).await? * (1.0 + change_pct / 100.0);
        let keeper = chain.accounts.keeper.address();
        let mut sent = Vec::new();
        let feeds = if market {
            vec![self.feed, self.reference]
        } else {
            vec![self.feed]
        };
        for f in feeds {
            let feed = AaveKeeperFeed::new(f, &chain.provider);
            let call = feed.updateAnswer(answer(next));
            let label = if market {
                format!("keeper moves the VOL price {change_pct:+}% to {next:.2}")
            } else {
                format!(
                    "stolen keeper key posts {next:.2} ({change_pct:+}%) on the AaveOracle's VOL source"
                )
            };
            sent.push(send_tx(call, keeper, 200_000, kind, label).await?);
        }
        Ok(sent)
    }

    /// The attacker supplies `amount` VOL, waits for it to be mined, then borrows
    /// every other reserve (one `Pool.borrow` each).
    async fn borrow_all(
        &self,
        chain: &Chain,
        kind: StepKind,
        amount: f64,
    ) -> Result<Vec<Sent>, ScenarioError> {
        let who = chain.accounts.attackers[0].address();
        let pool = IAavePool::new(self.pool, &chain.provider);
        let call = pool.supply(self.vol().asset, units(amount), who, 0);
        let label = format!("attacker supplies {amount} VOL as collateral");
        let supply = send_tx(call, who, 600_000, kind, label).await?;
        wait_mined(chain, supply.hash, "post the attacker's collateral", 60).await?;
        let mut sent = vec![supply];
        for (symbol, asset, take) in self.borrowable(chain, who).await? {
            let call = pool.borrow(asset, take, U256::from(2), 0, who);
            let label = format!("attacker borrows {:.2} {symbol} against it", whole(take));
            sent.push(send_tx(call, who, 1_000_000, kind, label).await?);
        }
        Ok(sent)
    }

    async fn reference_price(&self, chain: &Chain) -> Result<f64, ScenarioError> {
        let (_, current, _, _, _) = read(
            AaveKeeperFeed::new(self.reference, &chain.provider)
                .latestRoundData()
                .call(),
            "read the reference price",
        )
        .await?
        .into();
        Ok(current.to_string().parse::<f64>().unwrap_or(0.0) / 1e8)
    }

    /// What `who` can borrow of USDX and WETH: each reserve's liquidity, within
    /// what its collateral allows (99.5% of both, so rounding never reverts).
    async fn borrowable(
        &self,
        chain: &Chain,
        who: Address,
    ) -> Result<Vec<(&'static str, Address, U256)>, ScenarioError> {
        let p = &chain.provider;
        let data = read(
            IAavePool::new(self.pool, p).getUserAccountData(who).call(),
            "read the attacker's borrowing power",
        )
        .await?;
        let mut power = whole(data.availableBorrowsBase) * 1e10;
        let oracle = IAaveOracle::new(self.oracle, p);
        let mut out = Vec::new();
        for r in &self.reserves[..2] {
            let liquidity = read(
                IAaveToken::new(r.asset, p).balanceOf(r.a_token).call(),
                "read a reserve's liquidity",
            )
            .await?;
            let price =
                whole(read(oracle.getAssetPrice(r.asset).call(), "read an oracle price").await?)
                    * 1e10;
            let tokens = (whole(liquidity)).min(power / price) * 0.995;
            power -= tokens * price;
            out.push((r.symbol, r.asset, units(tokens.max(0.001))));
        }
        Ok(out)
    }
}
