//! What a scenario run reports, for people and as JSON, and whether its
//! `expect` block held.

use std::fmt::Write as _;

use serde::Serialize;

use super::spec::{Expect, Scenario};

/// One scripted transaction, as mined.
#[derive(Debug, Clone, Serialize)]
pub struct TxReport {
    pub label: String,
    /// attack, benign or market.
    pub kind: String,
    pub from: String,
    pub hash: String,
    /// Milliseconds after the script started.
    pub broadcast_ms: u64,
    pub block: Option<u64>,
    pub index: Option<u64>,
    /// "succeeded", "reverted" or "not mined".
    pub status: String,
    pub step: String,
}

/// A policy trip.
#[derive(Debug, Clone, Serialize)]
pub struct TripReport {
    pub policy: String,
    pub action: String,
    pub block: u64,
    /// Milliseconds after the script started (the sample's time for a pending transaction).
    pub at_ms: i64,
    pub summary: String,
    /// The pending transaction it tripped on, if any.
    pub pending_tx: Option<String>,
}

/// A guard decision.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionReport {
    pub decision_id: u64,
    pub policy: String,
    pub action: String,
    pub block: u64,
    pub approved: bool,
    pub outcome: String,
    pub at_ms: i64,
}

/// What the executor did with an approved action.
#[derive(Debug, Clone, Serialize)]
pub struct ExecutionReport {
    pub decision_id: u64,
    /// "landed", "dry-run", "proposed" or "failed".
    pub result: String,
    pub tx: Option<String>,
    pub block: Option<u64>,
    pub index: Option<u64>,
    /// When the runner's own mempool subscription first saw the transaction.
    pub seen_in_mempool_ms: Option<i64>,
    pub max_fee_gwei: Option<f64>,
    pub tip_gwei: Option<f64>,
    /// Dry-run: the transaction that would have been sent.
    pub would_send: Option<WouldSend>,
    pub error: Option<String>,
    pub at_ms: i64,
}

impl ExecutionReport {
    /// A report with only its decision, result and time; the rest is filled by the caller.
    pub fn bare(decision_id: u64, result: &str, at_ms: i64) -> ExecutionReport {
        ExecutionReport {
            decision_id,
            result: result.into(),
            tx: None,
            block: None,
            index: None,
            seen_in_mempool_ms: None,
            max_fee_gwei: None,
            tip_gwei: None,
            would_send: None,
            error: None,
            at_ms,
        }
    }
}

/// A signed transaction a dry run did not broadcast.
#[derive(Debug, Clone, Serialize)]
pub struct WouldSend {
    pub to: Option<String>,
    pub selector: String,
    pub calldata: String,
    pub nonce: u64,
    pub gas_limit: u64,
}

/// A pausable contract, by the action that pauses it.
#[derive(Debug, Clone, Serialize)]
pub struct PausedTarget {
    pub action: String,
    pub target: String,
    pub paused: bool,
}

/// One run of the script: with or without the guardian.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub guardian: bool,
    /// What the attackers gained, in the protocol's asset.
    pub lost: f64,
    /// Each pause action's target and whether it read `paused() == true` at the end.
    pub paused: Vec<PausedTarget>,
    pub transactions: Vec<TxReport>,
    pub trips: Vec<TripReport>,
    pub decisions: Vec<DecisionReport>,
    pub executions: Vec<ExecutionReport>,
    /// The set-parameter actions of the run's configuration: their executions
    /// are bounded parameter changes, not pauses.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parameter_actions: Vec<String>,
    pub chain_seconds: u64,
    pub wall_ms: u64,
    /// The synthetic benign mempool: the rate asked, transactions sent and refused.
    pub mempool: MempoolReport,
    /// Pending transactions the guardian screened, and dropped unscreened (queue full).
    pub pending_screened: u64,
    pub pending_dropped: u64,
}

/// What the synthetic benign mempool sent during the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MempoolReport {
    pub rate: f64,
    pub sent: u64,
    pub refused: u64,
    pub whale_sent: bool,
}

impl RunReport {
    pub fn any_paused(&self) -> bool {
        self.paused.iter().any(|t| t.paused)
    }
    /// Pauses that landed (bounded parameter changes are not pauses).
    fn landed(&self) -> impl Iterator<Item = &ExecutionReport> {
        self.executions
            .iter()
            .filter(|e| e.result == "landed" && !self.is_parameter_change(e))
    }

    /// Whether an execution is a set-parameter action's.
    pub fn is_parameter_change(&self, e: &ExecutionReport) -> bool {
        self.decisions
            .iter()
            .find(|d| d.decision_id == e.decision_id)
            .is_some_and(|d| self.parameter_actions.contains(&d.action))
    }

    /// Parameter changes that landed.
    pub fn parameter_changes(&self) -> impl Iterator<Item = &ExecutionReport> {
        self.executions
            .iter()
            .filter(|e| e.result == "landed" && self.is_parameter_change(e))
    }
}

/// The timeline of one attack transaction in the guardian's run.
#[derive(Debug, Clone, Serialize)]
pub struct AttackTimeline {
    pub label: String,
    pub hash: String,
    pub broadcast_ms: u64,
    pub mined_block: Option<u64>,
    pub mined_index: Option<u64>,
    pub status: String,
    /// The guardian saw it pending (a trip named it) at this time.
    pub seen_pending_ms: Option<i64>,
    /// The first trip at or after its broadcast: policy, block, time.
    pub first_trip: Option<(String, u64, i64)>,
    /// The first pause that landed: seen in the mempool, block, index.
    pub pause_seen_in_mempool_ms: Option<i64>,
    pub pause_block: Option<u64>,
    pub pause_index: Option<u64>,
    /// The pause was mined in the same block as this transaction, ahead of it.
    pub pause_ahead_in_same_block: bool,
    /// The pause was mined before this transaction (earlier block, or ahead in the same one).
    pub pause_before: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExpectationResult {
    pub name: String,
    pub expected: String,
    pub actual: String,
    pub holds: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Funds {
    pub unit: String,
    pub lost_unprotected: f64,
    pub lost_protected: f64,
    /// Percent of the unprotected loss the guardian saved (`None` when nothing was at stake).
    pub saved_pct: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Compression {
    pub block_time_s: u64,
    pub gap_blocks: u32,
    pub chain_seconds: u64,
    pub wall_seconds: f64,
    /// Chain seconds per wall second.
    pub ratio: f64,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    pub scenario: String,
    pub description: String,
    pub file: String,
    pub kind: String,
    pub protocol: String,
    pub node: String,
    pub dry_run: bool,
    pub compression: Compression,
    pub funds: Funds,
    pub attacks: Vec<AttackTimeline>,
    /// `None` in dry-run (the run itself sends nothing).
    pub unprotected: Option<RunReport>,
    pub protected: RunReport,
    pub expectations: Vec<ExpectationResult>,
    pub holds: bool,
}

/// The timeline of every attack transaction in the guardian's run.
pub fn attack_timelines(run: &RunReport) -> Vec<AttackTimeline> {
    let pause = run
        .landed()
        .filter(|e| e.block.is_some())
        .min_by_key(|e| (e.block, e.index));
    run.transactions
        .iter()
        .filter(|t| t.kind == "attack")
        .map(|t| {
            let seen = run
                .trips
                .iter()
                .find(|tr| tr.pending_tx.as_deref() == Some(t.hash.as_str()))
                .map(|tr| tr.at_ms);
            let first_trip = run
                .trips
                .iter()
                .find(|tr| {
                    tr.pending_tx.as_deref() == Some(t.hash.as_str())
                        || tr.at_ms >= t.broadcast_ms as i64
                })
                .map(|tr| (tr.policy.clone(), tr.block, tr.at_ms));
            let (pb, pi) = pause.map_or((None, None), |p| (p.block, p.index));
            let before = match (pb, pi, t.block, t.index) {
                (Some(pb), Some(pi), Some(b), Some(i)) => (pb, pi) < (b, i),
                (Some(_), _, None, _) => true,
                _ => false,
            };
            AttackTimeline {
                label: t.label.clone(),
                hash: t.hash.clone(),
                broadcast_ms: t.broadcast_ms,
                mined_block: t.block,
                mined_index: t.index,
                status: t.status.clone(),
                seen_pending_ms: seen,
                first_trip,
                pause_seen_in_mempool_ms: pause.and_then(|p| p.seen_in_mempool_ms),
                pause_block: pb,
                pause_index: pi,
                pause_ahead_in_same_block: before && pb == t.block,
                pause_before: before,
            }
        })
        .collect()
}

/// Checks the expect block against the runs.
pub fn evaluate(
    expect: &Expect,
    protected: &RunReport,
    funds: &Funds,
    attacks: &[AttackTimeline],
    dry_run: bool,
) -> Vec<ExpectationResult> {
    let mut out = Vec::new();
    let would_send = protected
        .executions
        .iter()
        .filter(|e| e.result == "dry-run")
        .count();
    let paused_now = if dry_run {
        would_send > 0
    } else {
        protected.any_paused()
    };
    if let Some(want) = expect.paused {
        out.push(ExpectationResult {
            name: "paused".into(),
            expected: want.to_string(),
            actual: if dry_run {
                format!("{would_send} pause(s) would have been sent (dry-run)")
            } else {
                paused_now.to_string()
            },
            holds: paused_now == want,
        });
    }
    if let Some(min) = expect.saved_at_least_pct {
        let (actual, holds) = if dry_run {
            ("not evaluated: a dry run sends nothing".to_string(), true)
        } else {
            match funds.saved_pct {
                Some(s) => (format!("{s:.1}%"), s + 1e-9 >= min),
                None => (
                    "nothing was lost without the guardian: the attack did not work".to_string(),
                    false,
                ),
            }
        };
        out.push(ExpectationResult {
            name: "saved_at_least".into(),
            expected: format!("{min}%"),
            actual,
            holds,
        });
    }
    if let Some(want) = expect.pause_before_attack {
        let (actual, holds) = if dry_run {
            ("not evaluated: a dry run sends nothing".to_string(), true)
        } else {
            let first = attacks.iter().min_by_key(|a| a.broadcast_ms);
            let got = first.is_some_and(|a| a.pause_before);
            (
                match first {
                    Some(a) => format!(
                        "{got} (pause at {}, first attack at {})",
                        position(a.pause_block, a.pause_index),
                        position(a.mined_block, a.mined_index)
                    ),
                    None => "no attack transaction".into(),
                },
                got == want,
            )
        };
        out.push(ExpectationResult {
            name: "pause_before_attack".into(),
            expected: want.to_string(),
            actual,
            holds,
        });
    }
    if let Some(want) = expect.no_pause {
        let none = !paused_now && protected.landed().next().is_none();
        out.push(ExpectationResult {
            name: "no_pause".into(),
            expected: want.to_string(),
            actual: format!(
                "{none} ({} trip(s), {} pause(s) landed{})",
                protected.trips.len(),
                protected.landed().count(),
                if dry_run {
                    format!(", {would_send} would have been sent")
                } else {
                    String::new()
                }
            ),
            holds: none == want,
        });
    }
    out
}

fn position(block: Option<u64>, index: Option<u64>) -> String {
    match (block, index) {
        (Some(b), Some(i)) => format!("block {b} index {i}"),
        _ => "not mined".into(),
    }
}

fn ms(x: Option<i64>) -> String {
    x.map_or("-".into(), |v| format!("t+{v} ms"))
}

fn amount(x: f64) -> String {
    let s = format!("{x:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// The report for people.
pub fn render(r: &ScenarioReport, s: &Scenario) -> String {
    let mut o = String::new();
    render_head(&mut o, r);
    for run in r.unprotected.iter().chain(std::iter::once(&r.protected)) {
        render_run(&mut o, r, run);
    }
    render_attacks(&mut o, r);
    render_outcome(&mut o, r, s);
    o
}

/// What ran, where, and how time was compressed.
fn render_head(o: &mut String, r: &ScenarioReport) {
    let _ = writeln!(
        o,
        "scenario {} ({}, {} protocol) from {}",
        r.scenario, r.kind, r.protocol, r.file
    );
    let _ = writeln!(o, "  {}", r.description);
    let c = &r.compression;
    let _ = writeln!(
        o,
        "  node: {}; {} s blocks, fee-ordered; time compressed: {} s of chain time in {:.1} s of wall time ({:.0}x; {} block(s) between steps at different times){}",
        r.node,
        c.block_time_s,
        c.chain_seconds,
        c.wall_seconds,
        c.ratio,
        c.gap_blocks,
        if r.dry_run {
            "; DRY RUN: the executor signs and sends nothing"
        } else {
            ""
        }
    );
}

/// One run: what the attackers gained, what was paused, the mempool, every transaction, trip and decision.
fn render_run(o: &mut String, r: &ScenarioReport, run: &RunReport) {
    let _ = writeln!(
        o,
        "\n{}: attackers gained {} {}; paused: {}",
        if run.guardian {
            if r.dry_run {
                "with guardian (dry-run)"
            } else {
                "with guardian"
            }
        } else {
            "without guardian"
        },
        amount(run.lost),
        r.funds.unit,
        if run.any_paused() {
            run.paused
                .iter()
                .filter(|t| t.paused)
                .map(|t| t.action.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        } else {
            "nothing".into()
        }
    );
    if run.mempool.rate > 0.0 {
        let _ = writeln!(
            o,
            "  benign mempool: {:.0} tx/s asked, {} sent ({} refused){}",
            run.mempool.rate,
            run.mempool.sent,
            run.mempool.refused,
            if run.mempool.whale_sent {
                ", the whale's included"
            } else {
                ""
            }
        );
    }
    if run.guardian {
        let _ = writeln!(
            o,
            "  pending transactions screened: {} (dropped unscreened: {})",
            run.pending_screened, run.pending_dropped
        );
    }
    for t in &run.transactions {
        let _ = writeln!(
            o,
            "  t+{:<6} ms {:<7} {} {} -> {} {}",
            t.broadcast_ms,
            t.kind,
            &t.hash[..10],
            t.label,
            position(t.block, t.index),
            t.status
        );
    }
    for t in &run.trips {
        let _ = writeln!(
            o,
            "  TRIP {} -> {} at block {} ({}){}: {}",
            t.policy,
            t.action,
            t.block,
            ms(Some(t.at_ms)),
            t.pending_tx
                .as_ref()
                .map(|h| format!(" on pending {}", &h[..10]))
                .unwrap_or_default(),
            t.summary
        );
    }
    for d in &run.decisions {
        let _ = writeln!(
            o,
            "  decision {} ({} -> {}, block {}): {}",
            d.decision_id, d.policy, d.action, d.block, d.outcome
        );
    }
    render_executions(o, run);
}

/// What the executor did with each approved action.
fn render_executions(o: &mut String, run: &RunReport) {
    for e in &run.executions {
        match e.result.as_str() {
            "landed" => {
                let _ = writeln!(
                    o,
                    "  {} {} seen in the mempool {} mined at {} (max fee {:.1} gwei, tip {:.1} gwei)",
                    if run.is_parameter_change(e) {
                        "parameter change"
                    } else {
                        "pause"
                    },
                    e.tx.as_deref().map_or("-", |h| &h[..10]),
                    ms(e.seen_in_mempool_ms),
                    position(e.block, e.index),
                    e.max_fee_gwei.unwrap_or_default(),
                    e.tip_gwei.unwrap_or_default()
                );
            }
            "dry-run" => {
                if let Some(w) = &e.would_send {
                    let _ = writeln!(
                        o,
                        "  would have sent {} to {} (selector {}, nonce {}, gas {}): {}",
                        e.tx.as_deref().unwrap_or("-"),
                        w.to.as_deref().unwrap_or("-"),
                        w.selector,
                        w.nonce,
                        w.gas_limit,
                        w.calldata
                    );
                }
            }
            _ => {
                let _ = writeln!(
                    o,
                    "  decision {}: {} {}",
                    e.decision_id,
                    e.result,
                    e.error.as_deref().unwrap_or("")
                );
            }
        }
    }
}

/// Each attack transaction against the pause, in the protected run.
fn render_attacks(o: &mut String, r: &ScenarioReport) {
    if !r.attacks.is_empty() && !r.dry_run {
        let _ = writeln!(o, "\nattack timeline (with guardian):");
        for a in &r.attacks {
            let _ = writeln!(
                o,
                "  {} {}: broadcast t+{} ms, mined at {} ({}); seen pending {}; first trip {}; pause mined at {}; pause before it: {}{}",
                &a.hash[..10],
                a.label,
                a.broadcast_ms,
                position(a.mined_block, a.mined_index),
                a.status,
                ms(a.seen_pending_ms),
                a.first_trip
                    .as_ref()
                    .map_or("-".into(), |(p, b, t)| format!(
                        "{p} at block {b} (t+{t} ms)"
                    )),
                position(a.pause_block, a.pause_index),
                if a.pause_before { "yes" } else { "no" },
                if a.pause_ahead_in_same_block {
                    " (same block, ahead)"
                } else {
                    ""
                }
            );
        }
    }
}

/// The funds lost in each run and whether each expectation held.
fn render_outcome(o: &mut String, r: &ScenarioReport, s: &Scenario) {
    let f = &r.funds;
    let _ = writeln!(
        o,
        "\nfunds lost: {} {} without guardian, {} {} with it{}",
        amount(f.lost_unprotected),
        f.unit,
        amount(f.lost_protected),
        f.unit,
        f.saved_pct
            .map(|s| format!(" ({s:.1}% saved)"))
            .unwrap_or_default()
    );
    let _ = writeln!(o, "expect ({}):", s.path.display());
    for e in &r.expectations {
        let _ = writeln!(
            o,
            "  {:<20} expected {:<6} got {}  {}",
            e.name,
            e.expected,
            e.actual,
            if e.holds { "ok" } else { "FAILED" }
        );
    }
    let _ = writeln!(
        o,
        "{}",
        if r.holds {
            "expectations hold"
        } else {
            "EXPECTATIONS FAILED"
        }
    );
}
