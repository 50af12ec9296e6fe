//! The scenario file: parsed once, checked once, every problem located.
//!
//! A scenario names a protocol shape, how to seed it, a script of timed steps
//! and what must hold at the end (the `expect` block). The format is
//! documented in `simulations/README.md`. Unknown keys are errors; each
//! problem is reported with `file:line:column` and what to write instead.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::config::reader::{Diagnostic, Diagnostics, SourceFile};
use crate::units;

/// Attack scenarios expect a pause; benign ones expect none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScenarioKind {
    Attack,
    Benign,
}

/// The protocol shapes the runner can deploy (from `contracts/src/demo/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// A token bridge's receiving end (`MessageReplica`, zero root: the Nomad bug).
    Bridge,
    /// A leveraged lending pool with `donateToReserves` (the Euler bug).
    DonationPool,
    /// A lending market; its oracle is a keeper feed (healthy) or a DEX spot price (the Inverse/Cream bug).
    Lending { oracle: Oracle },
    /// Three ETH pools with a per-function reentrancy lock (the Curve/Vyper bug).
    ReentrantPools,
    /// Real Aave V3 from `@aave/core-v3` (USDX, WETH, VOL reserves; VOL keeper-priced).
    AaveV3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Oracle {
    Keeper,
    Spot,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Bridge => "bridge",
            Protocol::DonationPool => "donation-pool",
            Protocol::Lending { .. } => "lending",
            Protocol::ReentrantPools => "reentrant-pools",
            Protocol::AaveV3 => "aave-v3",
        }
    }
}

/// What a step is, for the report: the attacker's, ordinary users', or the market's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    Attack,
    Benign,
    Market,
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Attack => "attack",
            StepKind::Benign => "benign",
            StepKind::Market => "market",
        }
    }
}

/// One action of the script. Amounts are in whole tokens (ETH for the pools).
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// bridge: `senders` accounts each send one copycat `attack()` taking `slice` of the
    /// bridge's initial liquidity (in percent).
    Copycat { senders: u32, slice_pct: f64 },
    /// donation-pool: one Euler-shape round financed by a flash loan of `loan`.
    DonationRound { loan: f64 },
    /// lending (spot oracle): one flash-loan spot-price manipulation of `loan`.
    SpotOracle { loan: f64 },
    /// reentrant-pools: drain pool `pool` (1-based) with `capital` ETH.
    Reentrancy { pool: u32, capital: f64 },
    /// A user (1-based) supplies / deposits / adds liquidity.
    Deposit {
        user: u32,
        amount: f64,
        pool: Option<u32>,
    },
    /// A user withdraws what it supplied / deposited / its LP share.
    Withdraw {
        user: u32,
        amount: f64,
        pool: Option<u32>,
    },
    /// lending: a borrower (1-based) borrows more.
    Borrow { user: u32, amount: f64 },
    /// lending: a borrower repays.
    Repay { user: u32, amount: f64 },
    /// lending: a user buys collateral on the DEX with `amount` of the debt token.
    Swap { user: u32, amount: f64 },
    /// lending: liquidators repay half of every liquidatable borrower's debt.
    Liquidate,
    /// lending (keeper oracle): a stolen keeper key posts a price `change_pct` away on the
    /// market's feed only (the independent reference does not move).
    RoguePrice { change_pct: f64 },
    /// lending: the attacker posts `amount` of collateral and borrows all the cash its limit allows.
    BorrowAll { amount: f64 },
    /// lending: the collateral's market price moves by `change_pct`; the keeper updates the
    /// protocol's feed and the independent reference feed.
    Price { change_pct: f64 },
    /// The next `blocks` blocks' base fees follow a recorded base-fee trace
    /// (every `stride`-th block from `from_block`), in the background.
    BaseFee {
        trace: PathBuf,
        from_block: u64,
        blocks: u32,
        stride: u32,
    },
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Copycat { .. } => "copycat",
            Action::DonationRound { .. } => "donation-round",
            Action::SpotOracle { .. } => "spot-oracle",
            Action::Reentrancy { .. } => "reentrancy",
            Action::Deposit { .. } => "deposit",
            Action::Withdraw { .. } => "withdraw",
            Action::Borrow { .. } => "borrow",
            Action::Repay { .. } => "repay",
            Action::Swap { .. } => "swap",
            Action::Liquidate => "liquidate",
            Action::RoguePrice { .. } => "rogue-price",
            Action::BorrowAll { .. } => "borrow-all",
            Action::Price { .. } => "price",
            Action::BaseFee { .. } => "base-fee",
        }
    }
}

/// One timed step, after `repeat` is expanded.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Seconds of chain time since the script started.
    pub at_s: u64,
    pub kind: StepKind,
    pub action: Action,
    /// Where the step is written (`file:line`), for the report.
    pub origin: String,
}

/// What must hold at the end; absent fields are not checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expect {
    /// The protected run ended with the protocol paused (true) or not (false).
    pub paused: Option<bool>,
    /// Funds saved, in percent of what the unprotected run lost.
    pub saved_at_least_pct: Option<f64>,
    /// The pause was mined ahead of the first attack transaction.
    pub pause_before_attack: Option<bool>,
    /// Nothing was paused and no pause was sent.
    pub no_pause: Option<bool>,
}

/// Seeding: how much liquidity and how many users.
#[derive(Debug, Clone, PartialEq)]
pub struct Setup {
    /// Tokens (bridge, donation pool, lending supply) or ETH per pool.
    pub liquidity: f64,
    /// Users (lenders, depositors, liquidity providers per pool).
    pub users: u32,
    /// lending: borrowers, each posting `collateral_per_borrower` and borrowing `borrow_usage` of its limit.
    pub borrowers: u32,
    pub collateral_per_borrower: f64,
    pub borrow_usage_pct: f64,
    /// lending: the collateral's initial price in debt tokens.
    pub price: f64,
    /// lending: the DEX's debt-token reserve (the collateral side matches at `price`).
    pub dex_liquidity: f64,
    /// Tokens a flash lender holds (donation pool, spot lending).
    pub flash_liquidity: f64,
}

/// A checked scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub path: PathBuf,
    pub name: String,
    pub description: String,
    pub kind: ScenarioKind,
    pub protocol: Protocol,
    pub block_time_s: u64,
    /// Blocks mined between two steps at different times (how a gap of minutes or hours is compressed).
    pub gap_blocks: u32,
    /// Policy files, resolved against the scenario's folder.
    pub policies: Vec<PathBuf>,
    pub setup: Setup,
    pub steps: Vec<Step>,
    pub expect: Expect,
    /// Benign transactions per second the synthetic mempool sends while the script plays (0: none).
    pub mempool_rate: f64,
}

impl Scenario {
    /// Whether any step is an attack.
    pub fn has_attack(&self) -> bool {
        self.steps.iter().any(|s| s.kind == StepKind::Attack)
    }
}

// ---- raw serde mirror -------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    scenario: Spanned<RawHeader>,
    #[serde(default)]
    setup: Option<Spanned<RawSetup>>,
    #[serde(default)]
    step: Vec<Spanned<RawStep>>,
    expect: Spanned<RawExpect>,
    #[serde(default)]
    mempool: Option<Spanned<RawMempool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMempool {
    rate: Spanned<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    name: Spanned<String>,
    description: String,
    kind: Spanned<String>,
    protocol: Spanned<String>,
    #[serde(default)]
    oracle: Option<Spanned<String>>,
    block_time: Spanned<String>,
    #[serde(default)]
    gap_blocks: Option<Spanned<i64>>,
    policies: Spanned<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSetup {
    liquidity: Option<Spanned<f64>>,
    users: Option<Spanned<i64>>,
    borrowers: Option<Spanned<i64>>,
    collateral_per_borrower: Option<Spanned<f64>>,
    borrow_usage: Option<Spanned<String>>,
    price: Option<Spanned<f64>>,
    dex_liquidity: Option<Spanned<f64>>,
    flash_liquidity: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    at: Spanned<String>,
    kind: Spanned<String>,
    action: Spanned<String>,
    repeat: Option<Spanned<i64>>,
    every: Option<Spanned<String>>,
    senders: Option<Spanned<i64>>,
    slice: Option<Spanned<String>>,
    loan: Option<Spanned<f64>>,
    pool: Option<Spanned<i64>>,
    capital: Option<Spanned<f64>>,
    user: Option<Spanned<i64>>,
    amount: Option<Spanned<f64>>,
    change: Option<Spanned<String>>,
    trace: Option<Spanned<String>>,
    from_block: Option<Spanned<i64>>,
    blocks: Option<Spanned<i64>>,
    stride: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    paused: Option<bool>,
    saved_at_least: Option<Spanned<String>>,
    pause_before_attack: Option<bool>,
    no_pause: Option<bool>,
}

// ---- checking ---------------------------------------------------------------

struct Check<'f> {
    file: &'f SourceFile,
    found: Vec<Diagnostic>,
}

impl Check<'_> {
    fn error(&mut self, span: &Range<usize>, message: impl Into<String>, hint: impl Into<String>) {
        let (line, column) = self.file.location(span.start);
        let hint: String = hint.into();
        self.found.push(Diagnostic {
            file: self.file.path.clone(),
            line,
            column,
            message: message.into(),
            hint: (!hint.is_empty()).then_some(hint),
            excerpt: Some(self.file.excerpt(span)),
        });
    }

    fn line(&self, span: &Range<usize>) -> usize {
        self.file.location(span.start).0
    }

    fn positive_int(&mut self, v: &Spanned<i64>, what: &str, max: i64) -> Option<u32> {
        let n = *v.get_ref();
        if n < 1 || n > max {
            self.error(
                &v.span(),
                format!("{what} must be a whole number from 1 to {max}, found {n}"),
                "",
            );
            return None;
        }
        Some(n as u32)
    }

    fn positive_amount(&mut self, v: &Spanned<f64>, what: &str) -> Option<f64> {
        let x = *v.get_ref();
        if !(x.is_finite() && x > 0.0) {
            self.error(
                &v.span(),
                format!("{what} must be a positive amount, found {x}"),
                "",
            );
            return None;
        }
        Some(x)
    }

    fn duration_s(&mut self, v: &Spanned<String>, what: &str) -> Option<u64> {
        match units::parse_duration(v.get_ref()) {
            Ok(ms) if ms % 1000 == 0 => Some(ms / 1000),
            Ok(_) => {
                self.error(
                    &v.span(),
                    format!("{what}: `{}` is not a whole number of seconds", v.get_ref()),
                    "chain time moves in whole seconds: write \"2s\", \"5m\", \"1h\"",
                );
                None
            }
            Err(e) => {
                self.error(&v.span(), format!("{what}: {}", e.message), e.hint);
                None
            }
        }
    }

    fn percent(&mut self, v: &Spanned<String>, what: &str) -> Option<f64> {
        match units::parse_percent(v.get_ref()) {
            Ok(p) => Some(p.0),
            Err(e) => {
                self.error(&v.span(), format!("{what}: {}", e.message), e.hint);
                None
            }
        }
    }
}

/// Reads and checks a scenario file.
pub fn load(path: &Path) -> Result<Scenario, Diagnostics> {
    let file = SourceFile::read(path)?;
    parse(&file)
}

/// Checks a scenario's text; `file.path` names it in diagnostics and anchors its relative paths.
pub fn parse(file: &SourceFile) -> Result<Scenario, Diagnostics> {
    let raw = read_raw(file)?;
    let mut c = Check {
        file,
        found: Vec::new(),
    };
    let scenario_span = raw.scenario.span();
    let header = raw.scenario.into_inner();
    let name = check_name(&mut c, &header.name);
    let kind = scenario_kind(&mut c, &header.kind);
    let protocol = check_protocol(&mut c, &header);
    let block_time_s = check_block_time(&mut c, &header.block_time);
    let gap_blocks = match &header.gap_blocks {
        Some(g) => c.positive_int(g, "scenario.gap_blocks", 100),
        None => Some(2),
    };
    let base = file.path.parent().unwrap_or(Path::new("."));
    let policies = check_policies(&mut c, &header.policies, base);
    let setup = check_setup(&mut c, raw.setup.map(Spanned::into_inner), protocol);
    let mut steps = Vec::new();
    for raw_step in &raw.step {
        check_step(&mut c, raw_step, protocol, &setup, base, &mut steps);
    }
    steps.sort_by_key(|s| s.at_s);
    let mempool_rate = check_mempool(&mut c, raw.mempool.map(Spanned::into_inner));
    let expect_span = raw.expect.span();
    let expect = check_expect(&mut c, raw.expect.into_inner(), &expect_span);
    let has_attack = steps.iter().any(|s| s.kind == StepKind::Attack);
    check_script(
        &mut c,
        kind,
        &header.kind,
        &expect,
        &expect_span,
        has_attack,
    );
    if steps.is_empty() {
        c.error(
            &scenario_span,
            "the scenario has no [[step]]",
            "add the script: timed attack, benign and market steps",
        );
    }

    if !c.found.is_empty() {
        return Err(Diagnostics(c.found));
    }
    // Every Option above is Some when nothing was reported.
    let (Some(kind), Some(protocol), Some(block_time_s), Some(gap_blocks), Some(setup)) =
        (kind, protocol, block_time_s, gap_blocks, setup)
    else {
        unreachable!("a missing value was reported");
    };
    Ok(Scenario {
        path: file.path.clone(),
        name,
        description: header.description,
        kind,
        protocol,
        block_time_s,
        gap_blocks,
        policies,
        setup,
        steps,
        expect,
        mempool_rate,
    })
}

/// The file as TOML in the raw mirror; a syntax error or unknown key is the one diagnostic.
fn read_raw(file: &SourceFile) -> Result<RawFile, Diagnostics> {
    toml::from_str(&file.text).map_err(|e| {
        let (line, column) = file.location(e.span().map_or(0, |s| s.start));
        Diagnostics(vec![Diagnostic {
            file: file.path.clone(),
            line,
            column,
            message: e.message().trim().to_string(),
            hint: Some(
                "see simulations/README.md for the scenario format (sections [scenario], [setup], [[step]], [expect])"
                    .into(),
            ),
            excerpt: e.span().map(|s| file.excerpt(&s)),
        }])
    })
}

fn check_name(c: &mut Check<'_>, name: &Spanned<String>) -> String {
    let n = name.get_ref().clone();
    if n.is_empty()
        || !n
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
    {
        c.error(
            &name.span(),
            format!("scenario.name `{n}` must be letters, digits, `-` or `_`"),
            "name it after the incident it models, e.g. \"euler-2023-donation\"",
        );
    }
    n
}

fn scenario_kind(c: &mut Check<'_>, kind: &Spanned<String>) -> Option<ScenarioKind> {
    match kind.get_ref().as_str() {
        "attack" => Some(ScenarioKind::Attack),
        "benign" => Some(ScenarioKind::Benign),
        other => {
            c.error(
                &kind.span(),
                format!("scenario.kind: `{other}` is neither \"attack\" nor \"benign\""),
                "",
            );
            None
        }
    }
}

/// The protocol shape, with the lending market's oracle (which only lending takes).
fn check_protocol(c: &mut Check<'_>, header: &RawHeader) -> Option<Protocol> {
    let oracle = header
        .oracle
        .as_ref()
        .and_then(|o| match o.get_ref().as_str() {
            "keeper" => Some(Oracle::Keeper),
            "spot" => Some(Oracle::Spot),
            other => {
                c.error(
                    &o.span(),
                    format!("scenario.oracle: `{other}` is neither \"keeper\" nor \"spot\""),
                    "",
                );
                None
            }
        });
    let protocol = match header.protocol.get_ref().as_str() {
        "bridge" => Some(Protocol::Bridge),
        "donation-pool" => Some(Protocol::DonationPool),
        "lending" => Some(Protocol::Lending {
            oracle: oracle.unwrap_or(Oracle::Keeper),
        }),
        "reentrant-pools" => Some(Protocol::ReentrantPools),
        "aave-v3" => Some(Protocol::AaveV3),
        other => {
            c.error(
                &header.protocol.span(),
                format!("scenario.protocol: `{other}` is not a protocol shape the runner deploys"),
                "one of \"bridge\", \"donation-pool\", \"lending\", \"reentrant-pools\", \"aave-v3\"",
            );
            None
        }
    };
    if let (Some(o), Some(p)) = (&header.oracle, protocol)
        && !matches!(p, Protocol::Lending { .. })
    {
        c.error(
            &o.span(),
            format!(
                "scenario.oracle applies to the lending protocol, not `{}`",
                p.name()
            ),
            "remove it",
        );
    }
    protocol
}

fn check_block_time(c: &mut Check<'_>, block_time: &Spanned<String>) -> Option<u64> {
    let s = c.duration_s(block_time, "scenario.block_time")?;
    if s == 0 {
        c.error(
            &block_time.span(),
            "scenario.block_time must be at least 1s",
            "anvil mines at whole-second intervals",
        );
        return None;
    }
    Some(s)
}

/// The policy files, resolved against the scenario's folder; each must exist.
fn check_policies(
    c: &mut Check<'_>,
    policies: &Spanned<Vec<Spanned<String>>>,
    base: &Path,
) -> Vec<PathBuf> {
    if policies.get_ref().is_empty() {
        c.error(
            &policies.span(),
            "scenario.policies is empty",
            "list the policy files the guardian runs, relative to this file",
        );
    }
    let mut out = Vec::new();
    for p in policies.get_ref() {
        let resolved = base.join(p.get_ref());
        if !resolved.exists() {
            c.error(
                &p.span(),
                format!("scenario.policies: {} does not exist", resolved.display()),
                "paths are relative to the scenario file",
            );
        }
        out.push(resolved);
    }
    out
}

fn check_mempool(c: &mut Check<'_>, raw: Option<RawMempool>) -> f64 {
    let Some(m) = raw else {
        return 0.0;
    };
    let rate = *m.rate.get_ref();
    if !(0.0..=2_000.0).contains(&rate) {
        c.error(
            &m.rate.span(),
            format!("mempool.rate {rate} is not between 0 and 2000 transactions per second"),
            "the synthetic mempool's benign transactions per second, e.g. 100",
        );
    }
    rate
}

fn check_expect(c: &mut Check<'_>, raw: RawExpect, span: &Range<usize>) -> Expect {
    let saved_at_least_pct = raw.saved_at_least.as_ref().and_then(|s| {
        let pct = c.percent(s, "expect.saved_at_least")?;
        if !(0.0..=100.0).contains(&pct) {
            c.error(
                &s.span(),
                "expect.saved_at_least must be between 0% and 100%",
                "",
            );
            return None;
        }
        Some(pct)
    });
    let expect = Expect {
        paused: raw.paused,
        saved_at_least_pct,
        pause_before_attack: raw.pause_before_attack,
        no_pause: raw.no_pause,
    };
    if expect == Expect::default() {
        c.error(
            span,
            "the expect block checks nothing",
            "say what must hold: paused, saved_at_least, pause_before_attack or no_pause",
        );
    }
    if expect.no_pause == Some(true) && expect.paused == Some(true) {
        c.error(
            span,
            "expect: no_pause = true contradicts paused = true",
            "",
        );
    }
    expect
}

/// An attack scenario has an attack step and a benign one none; what `expect` asks needs it.
fn check_script(
    c: &mut Check<'_>,
    kind: Option<ScenarioKind>,
    kind_at: &Spanned<String>,
    expect: &Expect,
    expect_span: &Range<usize>,
    has_attack: bool,
) {
    if kind == Some(ScenarioKind::Attack) && !has_attack {
        c.error(
            &kind_at.span(),
            "an attack scenario needs at least one step with kind = \"attack\"",
            "",
        );
    }
    if kind == Some(ScenarioKind::Benign) && has_attack {
        c.error(
            &kind_at.span(),
            "a benign scenario has an attack step",
            "make it kind = \"attack\", or remove the attack",
        );
    }
    if (expect.saved_at_least_pct.is_some() || expect.pause_before_attack.is_some()) && !has_attack
    {
        c.error(
            expect_span,
            "saved_at_least and pause_before_attack need an attack step",
            "",
        );
    }
}

fn check_setup(
    c: &mut Check<'_>,
    raw: Option<RawSetup>,
    protocol: Option<Protocol>,
) -> Option<Setup> {
    let raw = raw.unwrap_or_default();
    let pools = protocol == Some(Protocol::ReentrantPools);
    let mut ok = true;
    let mut amount = |c: &mut Check<'_>, v: &Option<Spanned<f64>>, what: &str, default: f64| match v
    {
        Some(v) => c.positive_amount(v, what).unwrap_or_else(|| {
            ok = false;
            default
        }),
        None => default,
    };
    let liquidity = amount(
        c,
        &raw.liquidity,
        "setup.liquidity",
        if pools { 100.0 } else { 1_000_000.0 },
    );
    let collateral_per_borrower = amount(
        c,
        &raw.collateral_per_borrower,
        "setup.collateral_per_borrower",
        1_000.0,
    );
    let price = amount(c, &raw.price, "setup.price", 100.0);
    let dex_liquidity = amount(c, &raw.dex_liquidity, "setup.dex_liquidity", 10_000.0);
    let flash_liquidity = amount(
        c,
        &raw.flash_liquidity,
        "setup.flash_liquidity",
        1_000_000.0,
    );
    let users = match &raw.users {
        Some(u) => c.positive_int(u, "setup.users", 20),
        None => Some(5),
    };
    let borrowers = match &raw.borrowers {
        Some(b) if *b.get_ref() == 0 => Some(0),
        Some(b) => c.positive_int(b, "setup.borrowers", 20),
        None => Some(
            if matches!(protocol, Some(Protocol::Lending { .. } | Protocol::AaveV3)) {
                5
            } else {
                0
            },
        ),
    };
    let borrow_usage_pct = match &raw.borrow_usage {
        Some(u) => c.percent(u, "setup.borrow_usage").and_then(|p| {
            if p > 0.0 && p < 100.0 {
                Some(p)
            } else {
                c.error(
                    &u.span(),
                    "setup.borrow_usage must be above 0% and below 100%",
                    "",
                );
                None
            }
        }),
        None => Some(85.0),
    };
    if (raw.borrowers.is_some() || raw.borrow_usage.is_some() || raw.dex_liquidity.is_some())
        && protocol.is_some()
        && !matches!(protocol, Some(Protocol::Lending { .. } | Protocol::AaveV3))
        && let Some(span) = raw
            .borrowers
            .as_ref()
            .map(Spanned::span)
            .or(raw.borrow_usage.as_ref().map(Spanned::span))
            .or(raw.dex_liquidity.as_ref().map(Spanned::span))
    {
        c.error(
            &span,
            "setup: borrowers, borrow_usage and dex_liquidity apply to the lending protocol only",
            "remove them",
        );
        ok = false;
    }
    if !ok {
        return None;
    }
    Some(Setup {
        liquidity,
        users: users?,
        borrowers: borrowers?,
        collateral_per_borrower,
        borrow_usage_pct: borrow_usage_pct?,
        price,
        dex_liquidity,
        flash_liquidity,
    })
}

/// One action the script may take: the step kind it is, the protocols it
/// applies to, and the parameters it takes.
struct ActionRule {
    name: &'static str,
    kind: StepKind,
    protocols: &'static [&'static str],
    params: &'static [&'static str],
}

const LENDING: &[&str] = &["lending", "aave-v3"];
const POOLS: &[&str] = &["donation-pool", "lending", "reentrant-pools", "aave-v3"];
const EVERY_PROTOCOL: &[&str] = &[
    "bridge",
    "donation-pool",
    "lending",
    "reentrant-pools",
    "aave-v3",
];
const USER_AMOUNT: &[&str] = &["user", "amount"];

const fn rule(
    name: &'static str,
    kind: StepKind,
    protocols: &'static [&'static str],
    params: &'static [&'static str],
) -> ActionRule {
    ActionRule {
        name,
        kind,
        protocols,
        params,
    }
}

/// Every action, in the order the hints list them.
const ACTIONS: [ActionRule; 14] = [
    rule(
        "copycat",
        StepKind::Attack,
        &["bridge"],
        &["senders", "slice"],
    ),
    rule(
        "donation-round",
        StepKind::Attack,
        &["donation-pool"],
        &["loan"],
    ),
    rule("spot-oracle", StepKind::Attack, &["lending"], &["loan"]),
    rule(
        "reentrancy",
        StepKind::Attack,
        &["reentrant-pools"],
        &["pool", "capital"],
    ),
    rule("rogue-price", StepKind::Attack, LENDING, &["change"]),
    rule("borrow-all", StepKind::Attack, LENDING, &["amount"]),
    rule(
        "deposit",
        StepKind::Benign,
        POOLS,
        &["user", "amount", "pool"],
    ),
    rule(
        "withdraw",
        StepKind::Benign,
        POOLS,
        &["user", "amount", "pool"],
    ),
    rule("borrow", StepKind::Benign, LENDING, USER_AMOUNT),
    rule("repay", StepKind::Benign, LENDING, USER_AMOUNT),
    rule("swap", StepKind::Benign, &["lending"], USER_AMOUNT),
    rule("liquidate", StepKind::Benign, LENDING, &[]),
    rule("price", StepKind::Market, LENDING, &["change"]),
    rule(
        "base-fee",
        StepKind::Market,
        EVERY_PROTOCOL,
        &["trace", "from_block", "blocks", "stride"],
    ),
];

/// What checking one step needs besides the step: where it stands and what the scenario seeds.
struct StepCheck<'a> {
    raw: &'a RawStep,
    span: Range<usize>,
    name: &'static str,
    protocol: Option<Protocol>,
    setup: &'a Option<Setup>,
    base: &'a Path,
}

fn check_step(
    c: &mut Check<'_>,
    raw: &Spanned<RawStep>,
    protocol: Option<Protocol>,
    setup: &Option<Setup>,
    base: &Path,
    out: &mut Vec<Step>,
) {
    let span = raw.span();
    let origin = format!("{}:{}", c.file.path.display(), c.line(&span));
    let s = raw.get_ref();
    let at_s = c.duration_s(&s.at, "step.at");
    let kind = step_kind(c, &s.kind);
    let Some(rule) = action_rule(c, &s.action) else {
        return;
    };
    check_applies(c, s, rule, kind, protocol);
    check_params(c, s, rule);
    let step = StepCheck {
        raw: s,
        span,
        name: rule.name,
        protocol,
        setup,
        base,
    };
    let action = step.action(c);
    let (repeat, every) = repeat_every(c, s);
    if let (Some(at_s), Some(kind), Some(action), Some(repeat), Some(every)) =
        (at_s, kind, action, repeat, every)
    {
        for i in 0..u64::from(repeat) {
            out.push(Step {
                at_s: at_s + i * every,
                kind,
                action: action.clone(),
                origin: origin.clone(),
            });
        }
    }
}

fn step_kind(c: &mut Check<'_>, kind: &Spanned<String>) -> Option<StepKind> {
    match kind.get_ref().as_str() {
        "attack" => Some(StepKind::Attack),
        "benign" => Some(StepKind::Benign),
        "market" => Some(StepKind::Market),
        other => {
            c.error(
                &kind.span(),
                format!("step.kind: `{other}` is not \"attack\", \"benign\" or \"market\""),
                "",
            );
            None
        }
    }
}

fn action_rule(c: &mut Check<'_>, action: &Spanned<String>) -> Option<&'static ActionRule> {
    let name = action.get_ref().as_str();
    let found = ACTIONS.iter().find(|a| a.name == name);
    if found.is_none() {
        let names = ACTIONS.iter().map(|a| a.name);
        let hint = crate::config::reader::did_you_mean(name, names.clone())
            .map(|m| format!("did you mean `{m}`?"))
            .unwrap_or_else(|| format!("one of {}", names.collect::<Vec<_>>().join(", ")));
        c.error(
            &action.span(),
            format!("step.action: `{name}` is not an action"),
            hint,
        );
    }
    found
}

/// The step's kind is the action's, and the action applies to the protocol (and its oracle).
fn check_applies(
    c: &mut Check<'_>,
    s: &RawStep,
    rule: &ActionRule,
    kind: Option<StepKind>,
    protocol: Option<Protocol>,
) {
    let name = rule.name;
    let want = rule.kind.as_str();
    if let Some(k) = kind
        && k != rule.kind
    {
        c.error(
            &s.kind.span(),
            format!("step.kind: `{name}` is a {want} step, not {}", k.as_str()),
            format!("write kind = \"{want}\""),
        );
    }
    if let Some(p) = protocol
        && !rule.protocols.contains(&p.name())
    {
        c.error(
            &s.action.span(),
            format!(
                "step.action: `{name}` does not apply to the {} protocol",
                p.name()
            ),
            format!("it applies to: {}", rule.protocols.join(", ")),
        );
    }
    let spot = Some(Protocol::Lending {
        oracle: Oracle::Spot,
    });
    if name == "rogue-price" && protocol == spot {
        c.error(
            &s.action.span(),
            "step.action: `rogue-price` needs the lending protocol with its keeper oracle",
            "remove oracle = \"spot\" under [scenario]",
        );
    }
    if name == "spot-oracle" && protocol.is_some() && protocol != spot {
        c.error(
            &s.action.span(),
            "step.action: `spot-oracle` needs the lending protocol with oracle = \"spot\"",
            "add oracle = \"spot\" under [scenario]",
        );
    }
}

/// Every parameter given is one the action takes.
fn check_params(c: &mut Check<'_>, s: &RawStep, rule: &ActionRule) {
    let given: [(&str, Option<Range<usize>>); 12] = [
        ("senders", s.senders.as_ref().map(Spanned::span)),
        ("slice", s.slice.as_ref().map(Spanned::span)),
        ("loan", s.loan.as_ref().map(Spanned::span)),
        ("pool", s.pool.as_ref().map(Spanned::span)),
        ("capital", s.capital.as_ref().map(Spanned::span)),
        ("user", s.user.as_ref().map(Spanned::span)),
        ("amount", s.amount.as_ref().map(Spanned::span)),
        ("change", s.change.as_ref().map(Spanned::span)),
        ("trace", s.trace.as_ref().map(Spanned::span)),
        ("from_block", s.from_block.as_ref().map(Spanned::span)),
        ("blocks", s.blocks.as_ref().map(Spanned::span)),
        ("stride", s.stride.as_ref().map(Spanned::span)),
    ];
    let name = rule.name;
    for (key, span) in &given {
        if let Some(span) = span
            && !rule.params.contains(key)
        {
            c.error(
                span,
                format!("step: `{key}` does not apply to the `{name}` action"),
                if rule.params.is_empty() {
                    format!("`{name}` takes no parameters")
                } else {
                    format!("`{name}` takes: {}", rule.params.join(", "))
                },
            );
        }
    }
}

/// How many times the step runs and the seconds between runs.
fn repeat_every(c: &mut Check<'_>, s: &RawStep) -> (Option<u32>, Option<u64>) {
    let repeat = match &s.repeat {
        Some(r) => c.positive_int(r, "step.repeat", 200),
        None => Some(1),
    };
    let every = match &s.every {
        Some(e) => c.duration_s(e, "step.every"),
        None => {
            if let Some(r) = &s.repeat
                && *r.get_ref() > 1
            {
                c.error(
                    &r.span(),
                    "step.repeat needs `every` (the time between repeats)",
                    "",
                );
            }
            Some(0)
        }
    };
    (repeat, every)
}

impl StepCheck<'_> {
    /// The checked action, `None` when a problem was reported.
    fn action(&self, c: &mut Check<'_>) -> Option<Action> {
        let name = self.name;
        match name {
            "copycat" => self.copycat(c),
            "donation-round" | "spot-oracle" => {
                let loan = self.required(c, &self.raw.loan, "loan", " (tokens)")?;
                let loan = c.positive_amount(loan, "step.loan")?;
                Some(if name == "spot-oracle" {
                    Action::SpotOracle { loan }
                } else {
                    Action::DonationRound { loan }
                })
            }
            "reentrancy" => {
                let pool = self.pool_index(c, true).flatten();
                let capital = self
                    .required(c, &self.raw.capital, "capital", " (ETH)")
                    .and_then(|k| c.positive_amount(k, "step.capital"));
                pool.zip(capital)
                    .map(|(pool, capital)| Action::Reentrancy { pool, capital })
            }
            "deposit" | "withdraw" => self.deposit_or_withdraw(c),
            "borrow" | "repay" | "swap" => self.user_amount(c),
            "liquidate" => Some(Action::Liquidate),
            "borrow-all" => self.amount(c).map(|amount| Action::BorrowAll { amount }),
            "price" | "rogue-price" => self.price(c),
            _ => self.base_fee(c),
        }
    }

    /// The parameter, or an error that the action needs `key` (`note` says what it is).
    fn required<'v, T>(
        &self,
        c: &mut Check<'_>,
        v: &'v Option<Spanned<T>>,
        key: &str,
        note: &str,
    ) -> Option<&'v Spanned<T>> {
        if v.is_none() {
            let name = self.name;
            c.error(
                &self.span,
                format!("step: the `{name}` action needs `{key}`{note}"),
                "",
            );
        }
        v.as_ref()
    }

    fn user(&self, c: &mut Check<'_>, borrowers: bool) -> Option<u32> {
        let (limit, who) = match (self.setup, borrowers) {
            (Some(s), true) => (s.borrowers, "borrowers"),
            (Some(s), false) => (s.users, "users"),
            (None, true) => (u32::MAX, "borrowers"),
            (None, false) => (u32::MAX, "users"),
        };
        let u = self.required(c, &self.raw.user, "user", "")?;
        let n = c.positive_int(u, "step.user", 1_000)?;
        if n > limit {
            c.error(
                &u.span(),
                format!("step.user {n}: the scenario seeds only {limit} {who}"),
                "users are numbered from 1",
            );
            return None;
        }
        Some(n)
    }

    fn amount(&self, c: &mut Check<'_>) -> Option<f64> {
        let a = self.required(c, &self.raw.amount, "amount", "")?;
        c.positive_amount(a, "step.amount")
    }

    fn pool_index(&self, c: &mut Check<'_>, required: bool) -> Option<Option<u32>> {
        match &self.raw.pool {
            Some(p) => c.positive_int(p, "step.pool", 3).map(Some),
            None if required => {
                self.required(c, &self.raw.pool, "pool", " (1 to 3)");
                None
            }
            None => Some(None),
        }
    }

    fn copycat(&self, c: &mut Check<'_>) -> Option<Action> {
        let senders = match &self.raw.senders {
            Some(n) => c.positive_int(n, "step.senders", 50),
            None => Some(1),
        };
        let slice = self
            .required(
                c,
                &self.raw.slice,
                "slice",
                " (a percent of the bridge's liquidity)",
            )
            .and_then(|sl| {
                let p = c.percent(sl, "step.slice")?;
                if p > 0.0 && p <= 100.0 {
                    return Some(p);
                }
                c.error(
                    &sl.span(),
                    "step.slice must be above 0% and at most 100%",
                    "",
                );
                None
            });
        senders
            .zip(slice)
            .map(|(senders, slice_pct)| Action::Copycat { senders, slice_pct })
    }

    fn deposit_or_withdraw(&self, c: &mut Check<'_>) -> Option<Action> {
        let pools = self.protocol == Some(Protocol::ReentrantPools);
        let u = self.user(c, false);
        let a = self.amount(c);
        let p = self.pool_index(c, pools);
        if !pools && let Some(p) = &self.raw.pool {
            c.error(
                &p.span(),
                "step.pool applies to the reentrant-pools protocol only",
                "",
            );
        }
        let (user, amount, pool) = (u?, a?, p?);
        Some(if self.name == "deposit" {
            Action::Deposit { user, amount, pool }
        } else {
            Action::Withdraw { user, amount, pool }
        })
    }

    fn user_amount(&self, c: &mut Check<'_>) -> Option<Action> {
        let u = self.user(c, self.name != "swap");
        let a = self.amount(c);
        let (user, amount) = (u?, a?);
        Some(match self.name {
            "borrow" => Action::Borrow { user, amount },
            "repay" => Action::Repay { user, amount },
            _ => Action::Swap { user, amount },
        })
    }

    fn price(&self, c: &mut Check<'_>) -> Option<Action> {
        let Some(ch) = &self.raw.change else {
            c.error(
                &self.span,
                "step: the `price` action needs `change` (e.g. \"-3%\")",
                "",
            );
            return None;
        };
        let p = c.percent(ch, "step.change")?;
        if p > -100.0 && p != 0.0 {
            return Some(if self.name == "price" {
                Action::Price { change_pct: p }
            } else {
                Action::RoguePrice { change_pct: p }
            });
        }
        c.error(
            &ch.span(),
            "step.change must be a non-zero percent above -100%",
            "",
        );
        None
    }

    fn base_fee(&self, c: &mut Check<'_>) -> Option<Action> {
        let s = self.raw;
        let trace = self
            .required(c, &s.trace, "trace", " (a base-fee trace file)")
            .map(|t| {
                let p = self.base.join(t.get_ref());
                if !p.is_file() {
                    c.error(
                        &t.span(),
                        format!("step.trace: {} does not exist", p.display()),
                        "paths are relative to the scenario file",
                    );
                }
                p
            });
        let from_block = self
            .required(c, &s.from_block, "from_block", " (a block of the trace)")
            .and_then(|b| {
                if *b.get_ref() >= 0 {
                    return Some(*b.get_ref() as u64);
                }
                c.error(&b.span(), "step.from_block must not be negative", "");
                None
            });
        let blocks = self
            .required(c, &s.blocks, "blocks", " (how many blocks to drive)")
            .and_then(|b| c.positive_int(b, "step.blocks", 1_000));
        let stride = match &s.stride {
            Some(b) => c.positive_int(b, "step.stride", 1_000),
            None => Some(1),
        };
        Some(Action::BaseFee {
            trace: trace?,
            from_block: from_block?,
            blocks: blocks?,
            stride: stride?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Scenario, Diagnostics> {
        let dir = std::env::temp_dir().join(format!("guardian-spec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("p.toml"), "").unwrap();
        parse(&SourceFile::new(dir.join("s.toml"), text.to_string()))
    }

    const GOOD: &str = r#"
[scenario]
name = "nomad-2022"
description = "copycats"
kind = "attack"
protocol = "bridge"
block_time = "1s"
policies = ["p.toml"]

[[step]]
at = "0s"
kind = "attack"
action = "copycat"
slice = "10%"

[[step]]
at = "2m"
kind = "attack"
action = "copycat"
senders = 3
slice = "10%"
repeat = 2
every = "30s"

[expect]
paused = true
saved_at_least = "90%"
"#;

    #[test]
    fn a_good_scenario_parses_and_expands_repeats() {
        let s = parse_text(GOOD).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.name, "nomad-2022");
        assert_eq!(s.protocol, Protocol::Bridge);
        assert_eq!(s.block_time_s, 1);
        assert_eq!(s.gap_blocks, 2);
        assert_eq!(s.steps.len(), 3);
        assert_eq!(
            s.steps.iter().map(|s| s.at_s).collect::<Vec<_>>(),
            [0, 120, 150]
        );
        assert_eq!(
            s.steps[1].action,
            Action::Copycat {
                senders: 3,
                slice_pct: 10.0
            }
        );
        assert_eq!(s.expect.saved_at_least_pct, Some(90.0));
        assert!(
            s.steps[1].origin.ends_with("s.toml:16"),
            "{}",
            s.steps[1].origin
        );
        assert_eq!(s.setup.liquidity, 1_000_000.0);
    }

    fn errors(text: &str) -> String {
        parse_text(text).unwrap_err().to_string()
    }

    #[test]
    fn an_unknown_key_is_located() {
        let text = GOOD.replace("slice = \"10%\"\n\n[[step]]", "slcie = \"10%\"\n\n[[step]]");
        let e = errors(&text);
        assert!(e.contains("s.toml:14:1: unknown field `slcie`"), "{e}");
    }

    #[test]
    fn an_action_on_the_wrong_protocol_is_located_with_what_applies() {
        let text = GOOD.replacen(
            "action = \"copycat\"\nslice = \"10%\"",
            "action = \"liquidate\"",
            1,
        );
        let e = errors(&text);
        assert!(
            e.contains(
                "s.toml:13:10: step.action: `liquidate` does not apply to the bridge protocol"
            ),
            "{e}"
        );
        assert!(
            e.contains("step.kind: `liquidate` is a benign step, not attack"),
            "{e}"
        );
    }

    #[test]
    fn a_misspelt_action_suggests_the_closest() {
        let text = GOOD.replacen("action = \"copycat\"", "action = \"copycot\"", 1);
        let e = errors(&text);
        assert!(e.contains("`copycot` is not an action"), "{e}");
        assert!(e.contains("did you mean `copycat`?"), "{e}");
    }

    #[test]
    fn bad_units_and_missing_parameters_are_all_reported() {
        let text = GOOD
            .replace("at = \"2m\"", "at = \"2\"")
            .replace("slice = \"10%\"\nrepeat", "repeat")
            .replace("saved_at_least = \"90%\"", "saved_at_least = \"0.9\"");
        let e = errors(&text);
        assert!(e.contains("s.toml:17:6: step.at: `2` has no unit"), "{e}");
        assert!(e.contains("the `copycat` action needs `slice`"), "{e}");
        assert!(
            e.contains("expect.saved_at_least: `0.9` has no % or bps"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_policy_file_and_a_benign_scenario_with_an_attack_are_refused() {
        let text = GOOD
            .replace("policies = [\"p.toml\"]", "policies = [\"nope.toml\"]")
            .replace("kind = \"attack\"\nprotocol", "kind = \"benign\"\nprotocol");
        let e = errors(&text);
        assert!(e.contains("s.toml:8:13: scenario.policies:"), "{e}");
        assert!(e.contains("nope.toml does not exist"), "{e}");
        assert!(e.contains("a benign scenario has an attack step"), "{e}");
    }

    #[test]
    fn an_expect_block_that_checks_nothing_or_contradicts_itself_is_refused() {
        let text = GOOD.replace("paused = true\nsaved_at_least = \"90%\"", "");
        assert!(errors(&text).contains("the expect block checks nothing"));
        let text = GOOD.replace("paused = true", "paused = true\nno_pause = true");
        assert!(errors(&text).contains("no_pause = true contradicts paused = true"));
    }

    #[test]
    fn a_parameter_the_action_does_not_take_is_refused() {
        let text = GOOD.replacen("slice = \"10%\"", "slice = \"10%\"\nloan = 5", 1);
        let e = errors(&text);
        assert!(
            e.contains("s.toml:15:8: step: `loan` does not apply to the `copycat` action"),
            "{e}"
        );
        assert!(e.contains("`copycat` takes: senders, slice"), "{e}");
    }
}
