//! The guard-and-executor stage: one decision at a time, deliveries side by
//! side. Each trip gets a decision from the guard; an approval is executed
//! in a task of its own, so the next trip is decided (and its pause sent)
//! while the first is still landing; everything is reported and, with a
//! journal, written down first.
//!
//! Invariants:
//! - Only the guard makes an [`Approved`]; the executor accepts nothing else,
//!   and an approval (which passed preflight) needs an executor.
//! - Every trip gets a decision, even without an executor (an alert-only
//!   configuration, an action outside the allow-list, a network that cannot
//!   connect: [`NoExecutor`]); a rejection carries its reason.
//! - **Written before acted on.** The decision (for an approval: the intent)
//!   is journaled before anything is sent; an action a previous run left in
//!   flight is followed to its end before any new trip is decided.
//! - **Shutdown finishes to a safe state.** The actions in flight are
//!   finished even on shutdown: their executors are asked to stop and end
//!   within their own deadline; what they sent stays in the journal for the
//!   next start.
//! - A trip older than its action's `max_trigger_age` is refused (a late
//!   pause with `act_if_late` acts anyway); replicas stagger and stand down
//!   when another replica's action already landed.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::executors::ExecutorPool;
use super::{Report, Reports, RunError, ToGuard};
use crate::config::{ActionDef, ActionKind, Config};
use crate::decision::Trip;
use crate::executor::delivery::Urgency;
use crate::executor::{DeliveryEvent, ExecError, Execution, Executors};
use crate::guard::{Approved, Decision, Guard, Outcome};
use crate::journal::{Journal, TripOrigin, Unfinished};
use crate::levels::Mode;

/// What the guard-and-executor stage is given.
pub(super) struct ActStage {
    pub guard: Guard,
    pub executors: ExecutorPool,
    pub actions: BTreeMap<String, ActionDef>,
    pub trips: mpsc::Receiver<ToGuard>,
    /// The executors' delivery events (for latencies).
    pub sent: mpsc::Receiver<DeliveryEvent>,
    pub journal: Option<Arc<Journal>>,
    pub unfinished: Vec<Unfinished>,
    /// The watched networks, by index.
    pub networks: Vec<String>,
    pub replica: Replica,
    pub reports: Reports,
    pub in_flight: InFlight,
}

/// Approved actions on their way, each in a task of its own.
#[derive(Default)]
pub(super) struct InFlight {
    tasks: JoinSet<Delivered>,
    /// Each action being delivered, with the decision delivering it: a trip
    /// of the same action meanwhile is not sent again.
    actions: HashMap<String, u64>,
    /// When each decision's first transaction was sent (from the executors' events).
    first_sent: HashMap<u64, Instant>,
}

/// How an approved action's delivery ended, and what its follow-up needs.
struct Delivered {
    decision_id: u64,
    action: String,
    mode: Mode,
    trip_time_ms: u64,
    tripped_at: Instant,
    span: tracing::Span,
    result: Result<Execution, ExecError>,
}

/// Replicas of one configuration: replica k lets the ones before it act
/// first, then looks again (`[journal] replica`, `replica_stagger`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Replica {
    index: Option<u32>,
    stagger_ms: u64,
}

impl Replica {
    pub fn of(config: &Config) -> Self {
        Self {
            index: config.journal.as_ref().and_then(|j| j.replica),
            stagger_ms: config.journal.as_ref().map_or(0, |j| j.replica_stagger_ms),
        }
    }
}

/// A trip being decided: what its lines and timings carry.
struct Deciding<'a> {
    trip: &'a Trip,
    network: &'a str,
    /// Every line of this decision carries its policy, block and (once known) decision_id.
    span: tracing::Span,
    tripped_at: Instant,
}

impl ActStage {
    /// Follows what a previous run left in flight, then decides trips as they
    /// come until cancelled (`Ok`) or the engine is gone; the deliveries in
    /// flight are seen to their end either way.
    pub async fn run(mut self, cancel: CancellationToken) -> Result<(), RunError> {
        if self.follow_unfinished(&cancel).await?.is_break() {
            return Ok(());
        }
        loop {
            let next = tokio::select! {
                biased;
                () = cancel.cancelled() => return self.drain().await,
                Some(done) = self.in_flight.tasks.join_next(), if !self.in_flight.tasks.is_empty() => {
                    self.delivered(joined(done)).await?;
                    continue;
                }
                next = self.trips.recv() => next,
            };
            let Some(item) = next else {
                self.drain().await?;
                if cancel.is_cancelled() {
                    return Ok(());
                }
                return Err(RunError::StageStopped("engine"));
            };
            match item {
                ToGuard::Trip {
                    trip,
                    urgency,
                    network,
                    origin,
                    pending,
                } => {
                    let trip = *trip;
                    let network = self.networks.get(network).cloned().unwrap_or_default();
                    let deciding = Deciding::new(&trip, &network);
                    self.on_trip(&deciding, urgency, origin, pending, &cancel)
                        .await?;
                }
                ToGuard::Processed {
                    network,
                    block,
                    hash,
                    time_ms,
                } => {
                    if let Some(j) = &self.journal {
                        j.mark_processed(&self.networks[network], block, hash, time_ms)?;
                    }
                }
            }
        }
    }

    /// Waits for every delivery in flight (each stops on shutdown within its
    /// executor's grace) and writes down how each ended.
    async fn drain(&mut self) -> Result<(), RunError> {
        while let Some(done) = self.in_flight.tasks.join_next().await {
            self.delivered(joined(done)).await?;
        }
        Ok(())
    }

    /// What a previous run left in flight, followed to its end.
    /// `Break`: shut down with it still in flight (the journal keeps it).
    async fn follow_unfinished(
        &mut self,
        cancel: &CancellationToken,
    ) -> Result<ControlFlow<()>, RunError> {
        for u in std::mem::take(&mut self.unfinished) {
            let Some((net, exec)) = self.executors.by_name(&u.executor) else {
                tracing::error!(target: "guardian::journal", decision_id = u.decision_id, executor = %u.executor, "an action left in flight names an executor no longer configured: not followed");
                continue;
            };
            tracing::warn!(target: "guardian::journal", decision_id = u.decision_id, policy = %u.policy, txs = u.txs.len(), "following an action a previous run left in flight");
            self.reports
                .probe
                .decision_context(u.decision_id, &u.policy, net, None);
            let exec = exec.clone();
            let result =
                until_shutdown(cancel, &exec, exec.follow(&u.executor, &u.effect, &u.txs)).await;
            if matches!(result, Err(ExecError::ShutDown)) {
                return Ok(ControlFlow::Break(()));
            }
            finish(
                self.journal.as_deref(),
                &self.reports,
                u.decision_id,
                result,
            )
            .await?;
        }
        Ok(ControlFlow::Continue(()))
    }

    /// One trip: decided, written down, reported, and sent on its way if approved.
    async fn on_trip(
        &mut self,
        d: &Deciding<'_>,
        urgency: Option<Urgency>,
        origin: TripOrigin,
        pending: Option<alloy::primitives::B256>,
        cancel: &CancellationToken,
    ) -> Result<(), RunError> {
        let action = self.actions.get(&d.trip.action);
        let exec = self.executors.for_action(action, &self.reports.probe).await;
        let decision = self.decide(d, exec.as_ref()).await;
        d.span.record("decision_id", decision.decision_id);
        let outcome = self.write_down(d, origin, pending, &decision)?;
        let report = Report::Decision {
            decision_id: decision.decision_id,
            policy: decision.policy.clone(),
            action: decision.action.clone(),
            block: decision.block,
            outcome,
            approved: matches!(decision.outcome, Outcome::Approved(_)),
        };
        self.reports.emit(report).await;
        // An approval passed preflight, which only an executor can do.
        if let (Some(approved), Some(exec)) = (decision.into_approved(), exec) {
            self.execute(d, approved, exec, urgency, cancel);
        }
        Ok(())
    }

    /// The guard's decision; a trip too old for its action is refused.
    async fn decide(&mut self, d: &Deciding<'_>, exec: Option<&Executors>) -> Decision {
        let trip = d.trip;
        let late = self
            .actions
            .get(&trip.action)
            .and_then(|a| too_old(trip, a));
        let underway = self.in_flight.actions.get(&trip.action).copied();
        match (late, underway, exec) {
            (Some((age_ms, max_ms)), _, _) => {
                (self.reports.probe).stale_trigger(
                    &trip.policy,
                    &trip.action,
                    trip.block,
                    age_ms,
                    max_ms,
                );
                self.guard.refuse_late(trip, age_ms, max_ms)
            }
            (None, Some(by), _) => self.guard.underway(trip, by),
            (None, None, Some(exec)) => {
                self.guard
                    .review(trip, exec)
                    .instrument(d.span.clone())
                    .await
            }
            (None, None, None) => {
                self.guard
                    .review(trip, &NoExecutor)
                    .instrument(d.span.clone())
                    .await
            }
        }
    }

    /// Journals the decision (before anything is sent), logs it and tells the
    /// probe; returns the outcome as a person reads it.
    fn write_down(
        &self,
        d: &Deciding<'_>,
        origin: TripOrigin,
        pending: Option<alloy::primitives::B256>,
        decision: &Decision,
    ) -> Result<String, RunError> {
        let _entered = d.span.enter();
        if let Some(j) = &self.journal {
            j.record_decision(
                d.network,
                origin,
                d.trip,
                pending,
                decision,
                self.replica.index,
            )?;
        }
        let outcome = match &decision.outcome {
            Outcome::Approved(_) => "approved".to_string(),
            Outcome::AlertOnly => "alert-only: nothing built".to_string(),
            Outcome::AlreadyDone { detail } => format!("already done: {detail}"),
            Outcome::Rejected(r) => format!("rejected: {r}"),
        };
        tracing::warn!(target: "guardian::guard", decision_id = decision.decision_id, policy = %decision.policy, block = decision.block, "decision: {outcome}");
        // ops: the trip's alert carries its decision; a refusal's follows it.
        (self.reports.probe).decided(d.trip, d.network, decision, pending);
        Ok(outcome)
    }

    /// Sends an approved action on its way in a task of its own (or stands
    /// down as a later replica); [`ActStage::delivered`] takes it from there.
    fn execute(
        &mut self,
        d: &Deciding<'_>,
        approved: Approved,
        exec: Executors,
        urgency: Option<Urgency>,
        cancel: &CancellationToken,
    ) {
        let (replica, span, cancel) = (self.replica, d.span.clone(), cancel.clone());
        let (decision_id, action, mode) = (
            approved.decision_id(),
            approved.action().to_string(),
            approved.mode(),
        );
        let (trip_time_ms, tripped_at) = (d.trip.time_ms, d.tripped_at);
        self.in_flight.actions.insert(action.clone(), decision_id);
        self.in_flight.tasks.spawn(async move {
            let result = match stand_down(replica, &approved, &exec, &span).await {
                Some(detail) => {
                    tracing::warn!(target: "guardian::executor", decision_id, replica = replica.index, "stood down: {detail}");
                    Ok(Execution::StoodDown { detail })
                }
                None => {
                    let delivery = exec.execute(approved, urgency).instrument(span.clone());
                    until_shutdown(&cancel, &exec, delivery).await
                }
            };
            Delivered {
                decision_id,
                action,
                mode,
                trip_time_ms,
                tripped_at,
                span,
                result,
            }
        });
    }

    /// A delivery ended: its latencies told, the guard's cooldowns released
    /// when nothing was sent, and how it ended reported and journaled. One
    /// that shutdown stopped stays in the journal, for the next start.
    async fn delivered(&mut self, done: Delivered) -> Result<(), RunError> {
        self.in_flight.actions.remove(&done.action);
        if matches!(done.result, Err(ExecError::ShutDown)) {
            return Ok(());
        }
        let first_sent = self.delivery_times(done.decision_id, done.tripped_at, &done.result);
        if done.result.is_err() && first_sent.is_none() {
            // Nothing was sent: the cooldowns must not hold back the next attempt.
            self.guard
                .not_sent(&done.action, done.mode, done.trip_time_ms);
        }
        let journal = self.journal.as_deref();
        finish(journal, &self.reports, done.decision_id, done.result)
            .instrument(done.span)
            .await
    }

    /// ops: tells the probe how long the first send took after the trip, and
    /// how long landing took after it; returns when the first send was.
    fn delivery_times(
        &mut self,
        decision_id: u64,
        tripped_at: Instant,
        result: &Result<Execution, ExecError>,
    ) -> Option<Instant> {
        let done_at = Instant::now();
        // Every event of this execution is queued by now (the executor try_sends
        // them); those of deliveries still in flight are kept for their end.
        while let Ok(e) = self.sent.try_recv() {
            if let DeliveryEvent::Sent {
                decision_id: d, at, ..
            } = e
            {
                self.in_flight.first_sent.entry(d).or_insert(at);
            }
        }
        let first_sent = self.in_flight.first_sent.remove(&decision_id);
        let landed = matches!(result, Ok(Execution::Landed { .. }));
        self.reports.probe.delivery(
            first_sent.map(|t| t.saturating_duration_since(tripped_at)),
            first_sent
                .filter(|_| landed)
                .map(|t| done_at.saturating_duration_since(t)),
        );
        first_sent
    }
}

impl<'a> Deciding<'a> {
    fn new(trip: &'a Trip, network: &'a str) -> Self {
        let span = tracing::warn_span!(target: "guardian::guard", "decision", policy = %trip.policy, block = trip.block, decision_id = tracing::field::Empty);
        Self {
            trip,
            network,
            span,
            tripped_at: Instant::now(),
        }
    }
}

/// Replica k waits k × the stagger, then re-checks the chain: `Some` when
/// another replica's action already did the work.
async fn stand_down(
    replica: Replica,
    approved: &Approved,
    exec: &Executors,
    span: &tracing::Span,
) -> Option<String> {
    let k = replica.index?;
    if approved.mode() != Mode::Enforce {
        return None;
    }
    let wait = std::time::Duration::from_millis(replica.stagger_ms.saturating_mul(u64::from(k)));
    tokio::time::sleep(wait).await;
    match exec.recheck(approved).instrument(span.clone()).await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(target: "guardian::executor", decision_id = approved.decision_id(), error = %e, "replica re-check failed; sending");
            None
        }
    }
}

/// A delivery task's result; a panic in it goes on as the stage's own.
fn joined(done: Result<Delivered, tokio::task::JoinError>) -> Delivered {
    match done {
        Ok(d) => d,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// ops: runs a delivery; once `cancel` fires, the executor is asked to stop
/// (it ends within [`crate::executor::SHUTDOWN_GRACE`] plus one RPC deadline,
/// whatever the endpoints do; the journal keeps what was sent).
async fn until_shutdown<F>(cancel: &CancellationToken, exec: &Executors, delivery: F) -> F::Output
where
    F: Future,
{
    tokio::pin!(delivery);
    tokio::select! {
        out = &mut delivery => out,
        () = cancel.cancelled() => {
            exec.shut_down();
            delivery.await
        }
    }
}

/// A trip older than its action's `max_trigger_age` (by the wall clock, from
/// its block's time), unless the action is a pause allowed to act late:
/// `Some((age_ms, max_ms))`. After a restart the engine re-reads the missed
/// blocks in order, so a condition that still holds trips again on a recent
/// block, which is acted on; one that no longer holds (drained, then
/// refilled) does not.
fn too_old(trip: &Trip, action: &ActionDef) -> Option<(u64, u64)> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let age = now.saturating_sub(trip.time_ms);
    let max = action.timing.max_trigger_age_ms;
    if age <= max {
        return None;
    }
    if action.kind == ActionKind::Pause && action.timing.act_if_late {
        tracing::warn!(target: "guardian::guard", policy = %trip.policy, block = trip.block, age_ms = age, max_ms = max, "the trip is older than max_trigger_age; the pause acts anyway (act_if_late)");
        return None;
    }
    Some((age, max))
}

/// The chain as the guard sees it for an action with no executor on a
/// connected network: nothing can be read or simulated, so nothing is approved.
struct NoExecutor;

impl crate::guard::ChainView for NoExecutor {
    fn read(
        &self,
        _target: alloy::primitives::Address,
        _data: alloy::primitives::Bytes,
    ) -> impl Future<Output = Result<alloy::primitives::Bytes, String>> + Send {
        std::future::ready(Err(NO_EXECUTOR.to_string()))
    }
    fn preflight(
        &self,
        _executor: &str,
        _call: &crate::guard::Call,
        _effect: &crate::guard::Effect,
    ) -> impl Future<Output = Result<(), String>> + Send {
        std::future::ready(Err(NO_EXECUTOR.to_string()))
    }
}

const NO_EXECUTOR: &str = "the action has no executor on a connected network";

/// Reports and journals how an approved action ended.
async fn finish(
    journal: Option<&Journal>,
    reports: &Reports,
    decision_id: u64,
    result: Result<Execution, ExecError>,
) -> Result<(), RunError> {
    let item = match &result {
        Ok(execution) => {
            let described = super::describe_execution(execution);
            tracing::warn!(target: "guardian::executor", decision_id, "executed: {described}");
            Report::Executed {
                decision_id,
                execution: execution.clone(),
            }
        }
        Err(e) => {
            tracing::error!(target: "guardian::executor", decision_id, "execution failed: {e}");
            Report::ExecutionFailed {
                decision_id,
                error: e.to_string(),
            }
        }
    };
    let written = match journal {
        Some(j) => j.finish(decision_id, &result.map_err(|e| e.to_string())),
        None => Ok(()),
    };
    reports.emit(item).await;
    written.map_err(RunError::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::Probe;
    use crate::policy::model::{Mode, Severity};

    fn trip(action: &str) -> ToGuard {
        ToGuard::Trip {
            trip: Box::new(Trip {
                policy: "p".into(),
                block: 7,
                time_ms: crate::source::chain::reads::now_ms(),
                action: action.into(),
                severity: Severity::Critical,
                mode: Mode::Enforce,
                evidence: serde_json::json!({}).into(),
                summary: String::new(),
            }),
            urgency: None,
            network: 0,
            origin: TripOrigin::Block,
            pending: None,
        }
    }

    /// The stage alone, without a chain: no executor, so every trip gets a
    /// decision from the guard and nothing is sent.
    #[tokio::test]
    async fn every_trip_gets_a_decision_even_without_an_executor() {
        let config = Config::empty();
        let (events, sent) = mpsc::channel(8);
        let executors =
            ExecutorPool::connect(&config, Default::default(), events, &Probe::default())
                .await
                .unwrap();
        let (to_guard, trips) = mpsc::channel(8);
        let (caller, mut reports) = mpsc::channel(8);
        let stage = ActStage {
            guard: Guard::new(&config),
            executors,
            actions: config.actions.clone(),
            trips,
            sent,
            journal: None,
            unfinished: Vec::new(),
            networks: vec!["local".into()],
            replica: Replica::of(&config),
            reports: Reports::new(Probe::default(), Some(caller)),
            in_flight: InFlight::default(),
        };
        let task = tokio::spawn(stage.run(CancellationToken::new()));
        to_guard.send(trip("pause")).await.unwrap();
        let Some(Report::Decision {
            decision_id,
            approved,
            outcome,
            ..
        }) = reports.recv().await
        else {
            panic!("no decision reported");
        };
        assert_eq!(decision_id, 1);
        assert!(!approved, "{outcome}");
        assert!(outcome.starts_with("rejected"), "{outcome}");
        // The engine gone without a shutdown: the stage stops and says why.
        drop(to_guard);
        let err = task.await.unwrap().unwrap_err();
        assert!(matches!(err, RunError::StageStopped("engine")), "{err}");
    }
}
