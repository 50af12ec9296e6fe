//! One run of a scenario on a fresh chain, as its stages: prepare the chain
//! and protocol, start the guardian (protected runs), warm up, play the
//! script beside the benign mempool, let approved actions finish, measure,
//! stop the guardian, and report.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::consensus::Transaction as _;
use alloy::eips::Decodable2718;
use alloy::primitives::B256;
use alloy::providers::{Provider, ProviderBuilder, WsConnect};
use futures_util::StreamExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::chain::{Accounts, Chain, Node, rpc_err};
use super::protocol::{Deployed, mempool::Mempool};
use super::report::{
    DecisionReport, ExecutionReport, MempoolReport, RunReport, TripReport, TxReport, WouldSend,
};
use super::script::Played;
use super::shared::unix_ms;
use super::spec::{Action, Scenario, StepKind};
use super::{RunDir, ScenarioError};
use crate::config::Config;
use crate::executor::Execution;
use crate::keys::Key;
use crate::observe::{Probe, Telemetry};
use crate::pipeline::{self, Report, RunError, RunOptions};
use crate::policy::load_policies;
use crate::policy::model::Mode;
use crate::source::chain::redact;

/// Blocks mined between the guardian's first read and the script's start (ten-block windows need them).
const WARMUP_BLOCKS: u32 = 11;
/// Chain seconds the warm-up spans beyond its blocks (the longest window the policies use).
const WARMUP_JUMP_S: u64 = 3_600;

/// Reports from the pipeline, with the unix ms they arrived.
type Collected = Arc<Mutex<Vec<(u64, Report)>>>;
/// When the runner's own mempool subscription first saw each transaction, unix ms.
type Seen = Arc<Mutex<HashMap<B256, u64>>>;

/// One run on a fresh chain; `guardian` is the guardian's mode, or `None` for nobody watching.
pub(super) async fn run_once(
    s: &Scenario,
    node: Node<'_>,
    guardian: Option<Mode>,
) -> Result<RunReport, ScenarioError> {
    let (chain, d, mempool) = prepare(s, node).await?;
    let telemetry = Arc::new(Telemetry::new(Duration::from_secs(3_600)));
    let dir = RunDir::create(&s.name)?;
    let mut watching = match guardian {
        Some(mode) => Some(Guardian::start(s, &chain, &d, mode, &dir, &telemetry).await?),
        None => None,
    };
    chain.interval_mining(s.block_time_s).await?;
    if let Some(g) = &mut watching {
        g.wait_ready(d.ready_metric).await?;
    }
    warm_up(&chain).await?;
    let before = d.attacker_holdings(&chain).await?;
    let (played, mempool) = play(&chain, &d, s, mempool).await;
    let played = played?;
    if let Some(g) = &watching {
        g.wait_actions_done().await;
    }
    let after = d.attacker_holdings(&chain).await?;
    let paused = d.paused(&chain).await?;
    let (transactions, attacker_gas) = receipts(&chain, &played).await?;
    let gained = after - before + if d.asset.is_none() { attacker_gas } else { 0.0 };
    let (trips, decisions, executions) = match watching {
        Some(g) => g.stop(&chain, played.started_unix_ms as i64).await?,
        None => Default::default(),
    };
    // Leave an existing node as it was found: mining on every transaction.
    let _ = chain.automine().await;
    let (screened, dropped) = match guardian {
        Some(_) => telemetry.pending_counts("local"),
        None => (0, 0),
    };
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
        mempool,
        pending_screened: screened,
        pending_dropped: dropped,
    })
}

/// A chain with every account funded, the protocol deployed and seeded, and the benign mempool's accounts.
async fn prepare(
    s: &Scenario,
    node: Node<'_>,
) -> Result<(Chain, Deployed, Option<Mempool>), ScenarioError> {
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
    let mempool = if s.mempool_rate > 0.0 {
        Some(Mempool::seed(&chain, &d, s.setup.liquidity).await?)
    } else {
        None
    };
    Ok((chain, d, mempool))
}

/// Both runs let the same blocks pass before the script, so the guardian's
/// windows have history (a window needs a sample at or before its start).
/// Halfway, the clock jumps an hour, so hourly windows have history too.
async fn warm_up(chain: &Chain) -> Result<(), ScenarioError> {
    let (mut head, _) = chain.head().await?;
    for i in 0..WARMUP_BLOCKS {
        if i == WARMUP_BLOCKS / 2 {
            chain.increase_time(WARMUP_JUMP_S).await?;
        }
        head = chain.next_block(head).await?.0;
    }
    Ok(())
}

/// Plays the script while the benign mempool (if any) sends; stops the mempool when the script ends.
async fn play(
    chain: &Chain,
    d: &Deployed,
    s: &Scenario,
    mempool: Option<Mempool>,
) -> (Result<Played, ScenarioError>, MempoolReport) {
    let stop = Arc::new(AtomicBool::new(false));
    let task = mempool.map(|m| m.play_apart(s.mempool_rate, stop.clone()));
    let played = super::script::play(chain, d, s).await;
    stop.store(true, Ordering::Relaxed);
    let stats = match task {
        Some(t) => t.await.unwrap_or_default(),
        None => Default::default(),
    };
    let report = MempoolReport {
        rate: s.mempool_rate,
        sent: stats.sent,
        refused: stats.refused,
        whale_sent: stats.whale_sent,
    };
    (played, report)
}

/// Receipts of every scripted transaction, and the gas the attackers paid (in ETH).
async fn receipts(chain: &Chain, played: &Played) -> Result<(Vec<TxReport>, f64), ScenarioError> {
    let mut transactions = Vec::new();
    let mut attacker_gas = 0.0;
    for b in &played.txs {
        let receipt = chain.receipt(b.sent.hash).await?;
        if let Some(r) = &receipt
            && b.sent.kind == StepKind::Attack
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
    Ok((transactions, attacker_gas))
}

/// The guardian of a protected run: `pipeline::run` on the generated configuration,
/// with the runner's view of its reports and of the mempool.
struct Guardian {
    pipeline: Option<JoinHandle<Result<(), RunError>>>,
    /// The report sink and the mempool subscription.
    helpers: Vec<JoinHandle<()>>,
    cancel: CancellationToken,
    collected: Collected,
    seen: Seen,
    /// The guardian's recorded trace: its first row of the ready metric says it is watching.
    record: PathBuf,
}

/// What the guardian reported, sorted for the run's report.
type Reported = (Vec<TripReport>, Vec<DecisionReport>, Vec<ExecutionReport>);

impl Guardian {
    /// Writes and loads the configuration as `guardian run` does, and starts the pipeline.
    async fn start(
        s: &Scenario,
        chain: &Chain,
        d: &Deployed,
        mode: Mode,
        dir: &RunDir,
        telemetry: &Arc<Telemetry>,
    ) -> Result<Guardian, ScenarioError> {
        let config_path = dir.path().join("guardian.toml");
        std::fs::write(
            &config_path,
            d.config_text(chain, mode, s.block_time_s, &s.policies),
        )?;
        let config = Config::load(&config_path).map_err(ScenarioError::Config)?;
        let policies = load_policies(&config.policies, &config).map_err(ScenarioError::Config)?;
        let keys = HashMap::from([(
            "bot".to_string(),
            Key::local("bot", chain.accounts.bot.clone()),
        )]);
        let seen = Seen::default();
        let collected = Collected::default();
        let mut helpers = vec![watch_mempool(chain, seen.clone()).await?];
        let record = dir.path().join("guardian-trace.csv");
        let mut options = RunOptions {
            record: Some(record.clone()),
            channel_capacity: 1024,
            probe: Probe::new(telemetry.clone(), None),
            ..RunOptions::default()
        };
        // A head every 50 ms: the scenario's chain time is compressed.
        options.watcher.poll_interval = Duration::from_millis(50);
        let pipeline::Spawned {
            mut reports,
            cancel,
            task: pipeline,
        } = pipeline::spawn(config, policies, keys, options, 1024);
        let sink = collected.clone();
        helpers.push(tokio::spawn(async move {
            while let Some(r) = reports.recv().await {
                if let Ok(mut v) = sink.lock() {
                    v.push((unix_ms(), r));
                }
            }
        }));
        Ok(Guardian {
            pipeline: Some(pipeline),
            helpers,
            cancel,
            collected,
            seen,
            record,
        })
    }

    /// Waits until the guardian has read the protocol (its trace has the ready metric).
    async fn wait_ready(&mut self, ready_metric: &str) -> Result<(), ScenarioError> {
        let needle = format!(",{ready_metric},");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .contains(&needle)
        {
            let stopped = self.pipeline.as_ref().is_none_or(JoinHandle::is_finished);
            if stopped || tokio::time::Instant::now() > deadline {
                self.cancel.cancel();
                let why = match self.pipeline.take() {
                    Some(t) if t.is_finished() => match t.await {
                        Ok(Err(e)) => redact(&e.to_string()),
                        _ => "it stopped".into(),
                    },
                    _ => "it read nothing within 60 s".into(),
                };
                return Err(ScenarioError::Guardian(why));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Lets every approved action finish (its executor's own deadline bounds this; 45 s at most).
    async fn wait_actions_done(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
        loop {
            let pending = self.collected.lock().map_or(0, |v| {
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

    /// Stops the pipeline (40 s at most) and sorts what it reported; `start` is the script's start, unix ms.
    async fn stop(self, chain: &Chain, start: i64) -> Result<Reported, ScenarioError> {
        self.cancel.cancel();
        let mut failure = None;
        if let Some(task) = self.pipeline {
            match tokio::time::timeout(Duration::from_secs(40), task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => failure = Some(redact(&e.to_string())),
                Ok(Err(e)) => failure = Some(e.to_string()),
                Err(_) => failure = Some("it did not stop within 40 s".into()),
            }
        }
        for t in &self.helpers {
            t.abort();
        }
        if let Some(why) = failure {
            return Err(ScenarioError::Guardian(why));
        }
        let seen = self.seen.lock().map(|m| m.clone()).unwrap_or_default();
        let reports = self.collected.lock().map(|v| v.clone()).unwrap_or_default();
        sort_reports(chain, reports, &seen, start).await
    }
}

/// The runner's own subscription to pending transactions, to time the guardian's broadcast.
async fn watch_mempool(chain: &Chain, seen: Seen) -> Result<JoinHandle<()>, ScenarioError> {
    let ws = ProviderBuilder::new()
        .connect_ws(WsConnect::new(chain.ws.clone()))
        .await
        .map_err(rpc_err("subscribe to pending transactions"))?;
    let sub = ws
        .subscribe_pending_transactions()
        .await
        .map_err(rpc_err("subscribe to pending transactions"))?;
    Ok(tokio::spawn(async move {
        let _keep = ws;
        let mut stream = sub.into_stream();
        while let Some(h) = stream.next().await {
            if let Ok(mut m) = seen.lock() {
                m.entry(h).or_insert_with(unix_ms);
            }
        }
    }))
}

/// Trips, decisions and executions, each timed from the script's start.
async fn sort_reports(
    chain: &Chain,
    reports: Vec<(u64, Report)>,
    seen: &HashMap<B256, u64>,
    start: i64,
) -> Result<Reported, ScenarioError> {
    let (mut trips, mut decisions, mut executions) = Reported::default();
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
                .push(execution_report(chain, decision_id, execution, seen, start, at_ms).await?),
            Report::ExecutionFailed { decision_id, error } => executions.push(ExecutionReport {
                error: Some(error),
                ..ExecutionReport::bare(decision_id, "failed", at_ms)
            }),
        }
    }
    Ok((trips, decisions, executions))
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
    let seen_at = |tx: &B256| seen.get(tx).map(|t| *t as i64 - start);
    Ok(match execution {
        Execution::Landed {
            tx, block, fees, ..
        } => {
            let receipt = chain.receipt(tx).await?;
            ExecutionReport {
                tx: Some(tx.to_string()),
                block: Some(block),
                index: receipt.and_then(|r| r.transaction_index),
                seen_in_mempool_ms: seen_at(&tx),
                max_fee_gwei: Some(gwei(fees.max_fee)),
                tip_gwei: Some(gwei(fees.priority_fee)),
                ..ExecutionReport::bare(decision_id, "landed", at_ms)
            }
        }
        Execution::DryRun { tx, raw } => ExecutionReport {
            tx: Some(tx.to_string()),
            seen_in_mempool_ms: seen_at(&tx),
            would_send: would_send(&raw),
            ..ExecutionReport::bare(decision_id, "dry-run", at_ms)
        },
        Execution::Proposed { safe_tx_hash, .. } => ExecutionReport {
            tx: Some(safe_tx_hash.to_string()),
            ..ExecutionReport::bare(decision_id, "proposed", at_ms)
        },
        Execution::StoodDown { detail } => ExecutionReport {
            error: Some(detail),
            ..ExecutionReport::bare(decision_id, "stood-down", at_ms)
        },
    })
}

/// The signed transaction a dry run kept, decoded.
fn would_send(raw: &[u8]) -> Option<WouldSend> {
    let env = alloy::consensus::TxEnvelope::decode_2718(&mut &raw[..]).ok()?;
    let input = env.input();
    Some(WouldSend {
        to: env.to().map(|a| a.to_string()),
        selector: input
            .get(..4)
            .map_or("-".into(), |s| format!("0x{}", alloy::hex::encode(s))),
        calldata: format!("0x{}", alloy::hex::encode(input)),
        nonce: env.nonce(),
        gas_limit: env.gas_limit(),
    })
}
