//! `guardian simulate simulations/<name>.toml`: a scenario played on a real chain,
//! once without the guardian and once with it, and the difference reported.
//!
//! ```text
//! scenario file ──spec──▶ Scenario ──▶ for each run (unprotected, protected):
//!     chain:    spawn anvil (--order fees) or connect (--rpc); fund fresh accounts
//!     protocol: deploy the Safe + GuardianModule + the protocol shape; seed users, liquidity
//!     guardian: (protected run) write its configuration, load it and its policies as
//!               `guardian run` does, start `pipeline::run` (same engine, guard, executor)
//!     script:   interval mining at the scenario's block time; timed attack, benign and
//!               market steps, with chain time compressed
//!     measure:  receipts, what the attackers gained, what is paused, every trip,
//!               decision and execution
//! ──report──▶ human or JSON, and whether the `expect` block holds
//! ```
//!
//! Invariants: the protected run goes through the same configuration loading,
//! engine, guard and executor as `guardian run`; nothing here reaches into
//! them. Both runs play the same script on identical fresh deployments.
//! A dry run plays once, with the guardian in `dry-run` mode: it signs and
//! reports what it would have sent, and broadcasts nothing.

pub mod aave;
pub mod aave_deploy;
mod aave_run;
pub mod chain;
pub mod protocol;
pub mod report;
pub mod script;
pub mod shared;
pub mod spec;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::consensus::Transaction as _;
use alloy::eips::Decodable2718;
use alloy::primitives::B256;
use alloy::providers::{Provider, ProviderBuilder, WsConnect};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::executor::Execution;
use crate::keys::Key;
use crate::pipeline::{self, Report, RunOptions};
use crate::policy::load_policies;
use crate::policy::model::Mode;
use crate::source::chain::WatcherOptions;

use chain::{Accounts, Chain, Node};
use protocol::Deployed;
use report::{
    Compression, DecisionReport, ExecutionReport, Funds, RunReport, ScenarioReport, TripReport,
    TxReport, WouldSend,
};
use spec::{Action, Scenario, ScenarioKind};

/// Problems running a scenario (a malformed scenario file is a [`crate::config::reader::Diagnostics`]).
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error(
        "anvil not found at {0}: run `npm ci` at the repository root (it installs @foundry-rs/anvil-linux-amd64), or pass --anvil"
    )]
    NoAnvil(PathBuf),
    #[error("anvil did not start: {0}")]
    Anvil(String),
    #[error("--rpc: {0}")]
    BadRpc(String),
    #[error("{step}: {message}")]
    Chain { step: &'static str, message: String },
    #[error("base-fee trace: {0}")]
    Trace(String),
    #[error("the guardian's configuration or policies did not load:\n{0}")]
    Config(String),
    #[error("the guardian stopped during the scenario: {0}")]
    Guardian(String),
    #[error("cannot write the run's files: {0}")]
    Io(#[from] std::io::Error),
}

/// How to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub anvil_bin: PathBuf,
    /// Run against this node instead of spawning anvil (it must be anvil, started with `--order fees`).
    pub rpc: Option<String>,
    /// Its WebSocket endpoint (default: the RPC URL with ws:// or wss://).
    pub ws: Option<String>,
    pub dry_run: bool,
}

/// The WebSocket endpoint of an HTTP RPC URL (anvil serves both on one port).
pub fn ws_of(http: &str) -> Result<String, ScenarioError> {
    if let Some(rest) = http.strip_prefix("http://") {
        Ok(format!("ws://{rest}"))
    } else if let Some(rest) = http.strip_prefix("https://") {
        Ok(format!("wss://{rest}"))
    } else {
        Err(ScenarioError::BadRpc(
            "the RPC URL must start with http:// or https:// (or give --ws)".into(),
        ))
    }
}

/// Runs a scenario: twice (without and with the guardian), or once in dry-run.
pub async fn run(s: &Scenario, o: &Options) -> Result<ScenarioReport, ScenarioError> {
    let (http, ws) = match &o.rpc {
        Some(http) => {
            let ws = match &o.ws {
                Some(ws) => ws.clone(),
                None => ws_of(http)?,
            };
            (Some(http.clone()), Some(ws))
        }
        None => (None, None),
    };
    let node = || match (&http, &ws) {
        (Some(h), Some(w)) => Node::Existing { http: h, ws: w },
        _ => Node::Spawn {
            anvil_bin: &o.anvil_bin,
        },
    };
    let (unprotected, protected) = if o.dry_run {
        (None, run_once(s, node(), Some(Mode::DryRun)).await?)
    } else if http.is_some() {
        // One node: one run after the other.
        let u = run_once(s, node(), None).await?;
        let p = run_once(s, node(), Some(Mode::Enforce)).await?;
        (Some(u), p)
    } else {
        let (u, p) = tokio::join!(
            run_once(s, node(), None),
            run_once(s, node(), Some(Mode::Enforce))
        );
        (Some(u?), p?)
    };
    let lost_unprotected = unprotected.as_ref().map_or(protected.lost, |u| u.lost);
    let saved_pct = (unprotected.is_some() && lost_unprotected > 1e-9)
        .then(|| (1.0 - protected.lost / lost_unprotected) * 100.0);
    let funds = Funds {
        unit: symbol(s).into(),
        lost_unprotected,
        lost_protected: protected.lost,
        saved_pct,
    };
    let attacks = report::attack_timelines(&protected);
    let expectations = report::evaluate(&s.expect, &protected, &funds, &attacks, o.dry_run);
    let holds = expectations.iter().all(|e| e.holds);
    let wall_seconds = protected.wall_ms as f64 / 1000.0;
    Ok(ScenarioReport {
        scenario: s.name.clone(),
        description: s.description.clone(),
        file: s.path.display().to_string(),
        kind: match s.kind {
            ScenarioKind::Attack => "attack",
            ScenarioKind::Benign => "benign",
        }
        .into(),
        protocol: s.protocol.name().into(),
        // Never the URL: it may carry an API key.
        node: if o.rpc.is_some() {
            "an existing node (--rpc)".into()
        } else {
            "a spawned anvil".into()
        },
        dry_run: o.dry_run,
        compression: Compression {
            block_time_s: s.block_time_s,
            gap_blocks: s.gap_blocks,
            chain_seconds: protected.chain_seconds,
            wall_seconds,
            ratio: if wall_seconds > 0.0 {
                protected.chain_seconds as f64 / wall_seconds
            } else {
                0.0
            },
        },
        funds,
        attacks,
        unprotected,
        protected,
        expectations,
        holds,
    })
}

fn symbol(s: &Scenario) -> &'static str {
    match s.protocol {
        spec::Protocol::Bridge => "bUSD",
        spec::Protocol::ReentrantPools => "ETH",
        spec::Protocol::AaveV3 => "USD",
        _ => "dUSD",
    }
}

/// A private folder for one run's configuration and recorded trace, removed when dropped.
#[derive(Debug)]
struct RunDir(PathBuf);

impl RunDir {
    fn create(name: &str) -> Result<RunDir, ScenarioError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!(
            "guardian-scenario-{name}-{}-{nanos}-{}",
            std::process::id(),
            alloy::signers::local::PrivateKeySigner::random().address()
        ));
        std::fs::create_dir_all(&path)?;
        Ok(RunDir(path))
    }
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Blocks mined between the guardian's first read and the script's start (ten-block windows need them).
const WARMUP_BLOCKS: u32 = 11;
/// Chain seconds the warm-up spans beyond its blocks (the longest window the policies use).
const WARMUP_JUMP_S: u64 = 3_600;

/// Reports from the pipeline, with the unix ms they arrived.
type Collected = Arc<Mutex<Vec<(u64, Report)>>>;

/// One run on a fresh chain; `guardian` is the guardian's mode, or `None` for nobody watching.
async fn run_once(
    s: &Scenario,
    node: Node<'_>,
    guardian: Option<Mode>,
) -> Result<RunReport, ScenarioError> {
    let senders = s
        .steps
        .iter()
        .map(|st| match st.action {
            Action::Copycat { senders, .. } => senders as usize,
            _ => 1,
        })
        .max()
        .unwrap_or(1);
    let accounts = Accounts::random(s.setup.users as usize, s.setup.borrowers as usize, senders);
    let chain = Chain::connect(node, accounts).await?;
    let d = Deployed::deploy(&chain, s).await?;

    let mempool_seeded = if s.mempool_rate > 0.0 {
        Some(protocol::mempool::Mempool::seed(&chain, &d, s.setup.liquidity).await?)
    } else {
        None
    };
    let telemetry = Arc::new(crate::observe::Telemetry::new(Duration::from_secs(3_600)));

    let dir = RunDir::create(&s.name)?;
    let cancel = CancellationToken::new();
    let collected: Collected = Arc::default();
    let mempool: Arc<Mutex<HashMap<B256, u64>>> = Arc::default();
    let mut tasks = Vec::new();
    let mut pipeline_task = None;
    let record = dir.path().join("guardian-trace.csv");
    if let Some(mode) = guardian {
        let config_path = dir.path().join("guardian.toml");
        std::fs::write(
            &config_path,
            d.config_text(&chain, mode, s.block_time_s, &s.policies),
        )?;
        let config =
            Config::load(&config_path).map_err(|e| ScenarioError::Config(e.to_string()))?;
        let policies = load_policies(&config.policies, &config)
            .map_err(|e| ScenarioError::Config(e.to_string()))?;
        let keys = HashMap::from([(
            "bot".to_string(),
            Key::local("bot", chain.accounts.bot.clone()),
        )]);
        // The runner's own view of the mempool, to time the guardian's broadcast.
        let ws = ProviderBuilder::new()
            .connect_ws(WsConnect::new(chain.ws.clone()))
            .await
            .map_err(|e| ScenarioError::Chain {
                step: "subscribe to pending transactions",
                message: crate::source::chain::redact(&e.to_string()),
            })?;
        let sub = ws
            .subscribe_pending_transactions()
            .await
            .map_err(|e| ScenarioError::Chain {
                step: "subscribe to pending transactions",
                message: crate::source::chain::redact(&e.to_string()),
            })?;
        let seen = mempool.clone();
        tasks.push(tokio::spawn(async move {
            let _keep = ws;
            let mut stream = sub.into_stream();
            while let Some(h) = stream.next().await {
                if let Ok(mut m) = seen.lock() {
                    m.entry(h).or_insert_with(shared::unix_ms);
                }
            }
        }));
        let options = RunOptions {
            record: Some(record.clone()),
            watcher: WatcherOptions {
                poll_interval: Duration::from_millis(50),
                ..WatcherOptions::default()
            },
            channel_capacity: 1024,
            probe: crate::observe::Probe::new(telemetry.clone(), None),
            ..RunOptions::default()
        };
        let (report_tx, mut reports) = mpsc::channel(1024);
        let sink = collected.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(r) = reports.recv().await {
                if let Ok(mut v) = sink.lock() {
                    v.push((shared::unix_ms(), r));
                }
            }
        }));
        pipeline_task = Some(tokio::spawn(pipeline::run(
            config,
            policies,
            keys,
            options,
            Some(report_tx),
            cancel.clone(),
        )));
    }

    chain.interval_mining(s.block_time_s).await?;
    if let Some(task) = &pipeline_task {
        // Wait until the guardian has read the protocol.
        let needle = format!(",{},", d.ready_metric);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !std::fs::read_to_string(&record)
            .unwrap_or_default()
            .contains(&needle)
        {
            if task.is_finished() || tokio::time::Instant::now() > deadline {
                cancel.cancel();
                let why = match pipeline_task.take() {
                    Some(t) if t.is_finished() => match t.await {
                        Ok(Err(e)) => crate::source::chain::redact(&e.to_string()),
                        _ => "it stopped".into(),
                    },
                    _ => "it read nothing within 60 s".into(),
                };
                return Err(ScenarioError::Guardian(why));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // Both runs let the same blocks pass before the script, so the guardian's
    // windows have history (a window needs a sample at or before its start).
    // Halfway, the clock jumps an hour, so hourly windows have history too.
    let (mut head, _) = chain.head().await?;
    for i in 0..WARMUP_BLOCKS {
        if i == WARMUP_BLOCKS / 2 {
            chain.increase_time(WARMUP_JUMP_S).await?;
        }
        head = chain.next_block(head).await?.0;
    }
    let before = d.attacker_holdings(&chain).await?;
    let stop_mempool = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mempool_task = mempool_seeded.map(|m| m.play_apart(s.mempool_rate, stop_mempool.clone()));
    let played = script::play(&chain, &d, s).await;
    stop_mempool.store(true, std::sync::atomic::Ordering::Relaxed);
    let mempool_stats = match mempool_task {
        Some(t) => t.await.unwrap_or_default(),
        None => Default::default(),
    };
    let played = played?;

    // Let every approved action finish (its executor's own deadline bounds this).
    if guardian.is_some() {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
        loop {
            let pending = collected.lock().map_or(0, |v| {
                let approved = v
                    .iter()
                    .filter(|(_, r)| matches!(r, Report::Decision { approved: true, .. }))
                    .count();
                let done = v
                    .iter()
                    .filter(|(_, r)| {
                        matches!(r, Report::Executed { .. } | Report::ExecutionFailed { .. })
                    })
                    .count();
                approved.saturating_sub(done)
            });
            if pending == 0 || tokio::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let after = d.attacker_holdings(&chain).await?;
    let paused = d.paused(&chain).await?;

    // Receipts of every scripted transaction.
    let mut transactions = Vec::new();
    let mut attacker_gas = 0.0;
    for b in &played.txs {
        let receipt = chain.receipt(b.sent.hash).await?;
        if let Some(r) = &receipt
            && b.sent.kind == spec::StepKind::Attack
        {
            attacker_gas += r.gas_used as f64 * r.effective_gas_price as f64 / 1e18;
        }
        transactions.push(TxReport {
            label: b.sent.label.clone(),
            kind: b.sent.kind.as_str().into(),
            from: b.sent.from.to_string(),
            hash: b.sent.hash.to_string(),
            broadcast_ms: b.at_ms,
            block: receipt.as_ref().and_then(|r| r.block_number),
            index: receipt.as_ref().and_then(|r| r.transaction_index),
            status: match &receipt {
                Some(r) if r.status() => "succeeded".into(),
                Some(_) => "reverted".into(),
                None => "not mined".into(),
            },
            step: b.step_origin.clone(),
        });
    }
    let gained = after - before + if d.asset.is_none() { attacker_gas } else { 0.0 };

    // Stop the guardian.
    cancel.cancel();
    let mut failure = None;
    if let Some(task) = pipeline_task {
        match tokio::time::timeout(Duration::from_secs(40), task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => failure = Some(crate::source::chain::redact(&e.to_string())),
            Ok(Err(e)) => failure = Some(e.to_string()),
            Err(_) => failure = Some("it did not stop within 40 s".into()),
        }
    }
    for t in &tasks {
        t.abort();
    }
    if let Some(why) = failure {
        return Err(ScenarioError::Guardian(why));
    }
    // Leave an existing node as it was found: mining on every transaction.
    let _ = chain.automine().await;

    let (screened, dropped) = telemetry.pending_counts("local");
    let start = played.started_unix_ms as i64;
    let seen = mempool.lock().map(|m| m.clone()).unwrap_or_default();
    let mut trips = Vec::new();
    let mut decisions = Vec::new();
    let mut executions = Vec::new();
    let reports = collected.lock().map(|v| v.clone()).unwrap_or_default();
    for (at, r) in reports {
        let at_ms = at as i64 - start;
        match r {
            Report::Trip { trip, pending } => trips.push(TripReport {
                policy: trip.policy.clone(),
                action: trip.action.clone(),
                block: trip.block,
                // When the report arrived: a trip's own time is chain time for mined
                // blocks (compressed), so it is not comparable with the wall clock.
                at_ms,
                summary: trip.summary.clone(),
                pending_tx: pending.map(|p| p.hash.to_string()),
            }),
            Report::ReorgedOut { policy, block, .. } => trips.push(TripReport {
                policy: policy.clone(),
                action: String::new(),
                block,
                at_ms,
                summary: "a reorg replaced the block this trip was decided on".into(),
                pending_tx: None,
            }),
            Report::Decision {
                decision_id,
                policy,
                action,
                block,
                outcome,
                approved,
            } => decisions.push(DecisionReport {
                decision_id,
                policy,
                action,
                block,
                approved,
                outcome,
                at_ms,
            }),
            Report::Executed {
                decision_id,
                execution,
            } => executions
                .push(execution_report(&chain, decision_id, execution, &seen, start, at_ms).await?),
            Report::ExecutionFailed { decision_id, error } => executions.push(ExecutionReport {
                decision_id,
                result: "failed".into(),
                tx: None,
                block: None,
                index: None,
                seen_in_mempool_ms: None,
                max_fee_gwei: None,
                tip_gwei: None,
                would_send: None,
                error: Some(error),
                at_ms,
            }),
        }
    }
    Ok(RunReport {
        guardian: guardian.is_some(),
        // Micro-unit precision: the balances are summed as floats.
        lost: (gained.max(0.0) * 1e6).round() / 1e6,
        paused,
        transactions,
        trips,
        decisions,
        executions,
        parameter_actions: d.parameter_actions(),
        chain_seconds: played.chain_seconds,
        wall_ms: played.wall_ms,
        mempool: report::MempoolReport {
            rate: s.mempool_rate,
            sent: mempool_stats.sent,
            refused: mempool_stats.refused,
            whale_sent: mempool_stats.whale_sent,
        },
        pending_screened: if guardian.is_some() { screened } else { 0 },
        pending_dropped: if guardian.is_some() { dropped } else { 0 },
    })
}

async fn execution_report(
    chain: &Chain,
    decision_id: u64,
    execution: Execution,
    seen: &HashMap<B256, u64>,
    start: i64,
    at_ms: i64,
) -> Result<ExecutionReport, ScenarioError> {
    let gwei = |x: u128| x as f64 / 1e9;
    Ok(match execution {
        Execution::Landed {
            tx, block, fees, ..
        } => {
            let receipt = chain.receipt(tx).await?;
            ExecutionReport {
                decision_id,
                result: "landed".into(),
                tx: Some(tx.to_string()),
                block: Some(block),
                index: receipt.and_then(|r| r.transaction_index),
                seen_in_mempool_ms: seen.get(&tx).map(|t| *t as i64 - start),
                max_fee_gwei: Some(gwei(fees.max_fee)),
                tip_gwei: Some(gwei(fees.priority_fee)),
                would_send: None,
                error: None,
                at_ms,
            }
        }
        Execution::DryRun { tx, raw } => {
            let would_send = alloy::consensus::TxEnvelope::decode_2718(&mut raw.as_ref())
                .ok()
                .map(|env| {
                    let input = env.input();
                    WouldSend {
                        to: env.to().map(|a| a.to_string()),
                        selector: input
                            .get(..4)
                            .map_or("-".into(), |s| format!("0x{}", alloy::hex::encode(s))),
                        calldata: format!("0x{}", alloy::hex::encode(input)),
                        nonce: env.nonce(),
                        gas_limit: env.gas_limit(),
                    }
                });
            ExecutionReport {
                decision_id,
                result: "dry-run".into(),
                tx: Some(tx.to_string()),
                block: None,
                index: None,
                seen_in_mempool_ms: seen.get(&tx).map(|t| *t as i64 - start),
                max_fee_gwei: None,
                tip_gwei: None,
                would_send,
                error: None,
                at_ms,
            }
        }
        Execution::Proposed { safe_tx_hash, .. } => ExecutionReport {
            decision_id,
            result: "proposed".into(),
            tx: Some(safe_tx_hash.to_string()),
            block: None,
            index: None,
            seen_in_mempool_ms: None,
            max_fee_gwei: None,
            tip_gwei: None,
            would_send: None,
            error: None,
            at_ms,
        },
        Execution::StoodDown { detail } => ExecutionReport {
            decision_id,
            result: "stood-down".into(),
            tx: None,
            block: None,
            index: None,
            seen_in_mempool_ms: None,
            max_fee_gwei: None,
            tip_gwei: None,
            would_send: None,
            error: Some(detail),
            at_ms,
        },
    })
}

/// Loads and runs a scenario file; for the CLI.
pub fn load(path: &std::path::Path) -> Result<Scenario, crate::config::reader::Diagnostics> {
    spec::load(path)
}
