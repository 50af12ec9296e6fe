//! The guard: the only way a trip becomes a transaction.
//!
//! ```text
//!  Trip ──> mode ──> allow-list ──> cooldowns ──> state (read) ──> bounds ──> rate limits ──> preflight ──> Approved
//!            │           │              │             │               │             │              │
//!         alert-only   Rejected      Rejected    AlreadyDone       Rejected      Rejected       Rejected
//! ```
//!
//! Invariants:
//! - only this module can construct an [`Approved`] (private fields, no public
//!   constructor, not `Clone`, not `Deserialize`); executors take nothing else,
//!   and take it by value, so one approval is sent at most once;
//! - an [`Approved`] call is always one the configuration allows: the target and
//!   function of a configured action, with calldata the guard built itself (the
//!   selector, plus the read-modify-write flags of a multi-flag pause or the
//!   bounded new value of a parameter) — never data from a trip;
//! - `unpause()` is never approved, whatever the configuration says;
//! - every decision is returned as a [`Decision`] with its [`Outcome`]; a
//!   rejection carries its reason and is never dropped;
//! - the guard's logic is pure: chain state comes in through [`ChainView`]
//!   (implemented by the executor), time comes from the trip. The same trips
//!   and the same chain answers give the same decisions.

mod clock;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::num::NonZeroU32;
use std::time::Duration;

use alloy::json_abi::Function;
use alloy::primitives::{Address, Bytes, FixedBytes, U256};
use alloy::sol_types::SolValue;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use serde::{Deserialize, Serialize};

use crate::config::{ActionKind, Config, FlagsParams, ParameterParams, RateLimit, ValuePolicy};
use crate::decision::Trip;
use crate::policy::model::Mode;
pub use clock::TripClock;

/// `unpause()`: never approved.
pub const UNPAUSE_SELECTOR: [u8; 4] = [0x3f, 0x4b, 0xa8, 0x3a];
/// Basis-points denominator.
pub const BPS: u64 = 10_000;

/// Chain reads the guard needs, implemented by the executor that will send.
///
/// Both calls run against the latest state, from the account that will send.
pub trait ChainView {
    /// `eth_call` of `data` on `target`; the raw return data, or why it failed.
    fn read(
        &self,
        target: Address,
        data: Bytes,
    ) -> impl Future<Output = Result<Bytes, String>> + Send;
    /// Simulates the exact transaction the executor `executor` would send for
    /// `call`; `Err` carries the decoded revert reason.
    fn preflight(
        &self,
        executor: &str,
        call: &Call,
        effect: &Effect,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// A call the guard built: target, function and calldata.
///
/// `Deserialize` only so a journal can read back what was sent (to follow it
/// after a restart); an executor never takes a `Call` alone, only an [`Approved`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    pub target: Address,
    pub selector: FixedBytes<4>,
    pub data: Bytes,
}

/// What an approved call should have done once included (checked after inclusion).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Effect {
    /// The getter returns true afterwards (or every flag set by the action is true).
    Paused { getters: Vec<Call> },
    /// The getter returns `value` afterwards.
    Parameter {
        getter: Call,
        from: U256,
        value: U256,
    },
}

/// An action the guard approved. Only the guard constructs one.
#[derive(Debug, Serialize)]
pub struct Approved {
    decision_id: u64,
    policy: String,
    action: String,
    executor: String,
    block: u64,
    time_ms: u64,
    /// Enforce (broadcast) or DryRun (everything up to signing).
    mode: Mode,
    call: Call,
    effect: Effect,
}

impl Approved {
    pub fn decision_id(&self) -> u64 {
        self.decision_id
    }
    pub fn policy(&self) -> &str {
        &self.policy
    }
    pub fn action(&self) -> &str {
        &self.action
    }
    pub fn executor(&self) -> &str {
        &self.executor
    }
    pub fn block(&self) -> u64 {
        self.block
    }
    pub fn mode(&self) -> Mode {
        self.mode
    }
    pub fn call(&self) -> &Call {
        &self.call
    }
    pub fn effect(&self) -> &Effect {
        &self.effect
    }
}

/// Why the guard refused an action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "rejection", rename_all = "kebab-case")]
pub enum Rejection {
    #[error("action `{action}` is not in the allow-list (not defined under [actions])")]
    NotAllowed { action: String },
    #[error("action `{action}` cannot run live: it names no {missing}")]
    Incomplete {
        action: String,
        missing: &'static str,
    },
    #[error("action `{action}` calls unpause(), which a guardian may never call")]
    Unpause { action: String },
    #[error("action `{action}` is in its cooldown until {}", crate::units::DisplayUnixMs(*ready_at_ms))]
    ActionCooldown { action: String, ready_at_ms: u64 },
    #[error("target {target} is in its cooldown until {}", crate::units::DisplayUnixMs(*ready_at_ms))]
    TargetCooldown { target: Address, ready_at_ms: u64 },
    #[error("the global rate limit is reached")]
    RateLimited,
    #[error("the rate limit of target {target} is reached")]
    TargetRateLimited { target: Address },
    #[error("reading {what} failed: {reason}")]
    ReadFailed { what: String, reason: String },
    #[error("new value {value} is outside [{min}, {max}]")]
    OutOfBounds { value: U256, min: U256, max: U256 },
    #[error("the parameter already has the value {value}")]
    Unchanged { value: U256 },
    #[error("changing {current} to {value} is more than {max_change_bps} bps")]
    ChangeTooLarge {
        current: U256,
        value: U256,
        max_change_bps: u64,
    },
    #[error("the parameter was updated too recently; next update at {}", crate::units::DisplayUnixMs(*ready_at_ms))]
    UpdateTooSoon { ready_at_ms: u64 },
    #[error("preflight reverted: {reason}")]
    PreflightReverted { reason: String },
    #[error(
        "the trip is {age_ms} ms old, older than the action's max_trigger_age of {max_ms} ms: not acted on"
    )]
    TooOld { age_ms: u64, max_ms: u64 },
}

/// What the guard decided for one trip.
#[derive(Debug, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    /// Send it (or, in dry-run, build and sign it).
    Approved(Box<Approved>),
    /// Alert-only mode: nothing is built.
    AlertOnly,
    /// The target is already in the requested state: no transaction.
    AlreadyDone { detail: String },
    /// Refused, with the reason.
    Rejected(Rejection),
}

/// One recorded decision.
#[derive(Debug, Serialize)]
pub struct Decision {
    pub decision_id: u64,
    pub policy: String,
    pub action: String,
    pub block: u64,
    pub time_ms: u64,
    pub outcome: Outcome,
}

impl Decision {
    /// The approved action, if any, consuming the decision.
    pub fn into_approved(self) -> Option<Approved> {
        match self.outcome {
            Outcome::Approved(a) => Some(*a),
            _ => None,
        }
    }
    /// The rejection reason, if rejected.
    pub fn rejection(&self) -> Option<&Rejection> {
        match &self.outcome {
            Outcome::Rejected(r) => Some(r),
            _ => None,
        }
    }
}

/// A decision taken before a restart, as far as cooldowns and rate limits care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastDecision {
    pub decision_id: u64,
    pub action: String,
    /// The trip's time (the guard's clock), in milliseconds.
    pub time_ms: u64,
    /// The mode it was decided in: it counts only against that mode's limits
    /// (a dry-run approval never holds back an enforce action).
    pub mode: Mode,
    /// What it consumed; `None`: nothing (alert-only, already done, refused early).
    pub counted: Option<Counted>,
}

/// What a past decision consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// Approved: cooldowns start, both rate limits count it.
    Approved,
    /// Reached preflight and was refused there: both rate limits count it.
    RateLimits,
    /// Refused by the per-target rate limit: only the global limit counted it.
    GlobalLimit,
}

/// One allowed action, compiled at start-up.
#[derive(Debug, Clone)]
struct Allowed {
    target: Address,
    selector: FixedBytes<4>,
    executor: String,
    cooldown_ms: u64,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Pause {
        paused_getter: Option<FixedBytes<4>>,
        flags: Option<(Vec<FixedBytes<4>>, Vec<bool>)>,
    },
    SetParameter {
        getter: FixedBytes<4>,
        params: ParameterParams,
    },
}

type Direct = RateLimiter<NotKeyed, InMemoryState, TripClock, NoOpMiddleware<Duration>>;
type Keyed = RateLimiter<Address, HashMapStateStore<Address>, TripClock, NoOpMiddleware<Duration>>;

/// Cooldowns and rate limits of one mode. Enforce and dry-run keep their own:
/// what dry-run approved (and never sent) never holds back what enforce sends,
/// so switching mode never inherits a quiet period.
struct Limits {
    last_action: HashMap<String, u64>,
    last_target: HashMap<Address, u64>,
    last_update: HashMap<(Address, FixedBytes<4>), u64>,
    global: Option<Direct>,
    per_target: Option<Keyed>,
}

impl Limits {
    fn new(config: &Config, clock: &TripClock) -> Self {
        Self {
            last_action: HashMap::new(),
            last_target: HashMap::new(),
            last_update: HashMap::new(),
            global: config
                .guard
                .rate_limit
                .map(|l| RateLimiter::direct_with_clock(quota(l), clock.clone())),
            per_target: config
                .guard
                .target_rate_limit
                .map(|l| RateLimiter::hashmap_with_clock(quota(l), clock.clone())),
        }
    }

    /// Starts the cooldowns of an approval at `now`.
    fn start_cooldowns(&mut self, action: &str, allowed: &Allowed, now: u64) {
        let last = |m: &mut u64| *m = (*m).max(now);
        last(self.last_action.entry(action.to_string()).or_default());
        last(self.last_target.entry(allowed.target).or_default());
        if matches!(allowed.kind, Kind::SetParameter { .. }) {
            last(
                self.last_update
                    .entry((allowed.target, allowed.selector))
                    .or_default(),
            );
        }
    }
}

/// The index of a mode's [`Limits`] (alert-only never reaches them).
fn slot(mode: Mode) -> usize {
    usize::from(mode != Mode::Enforce)
}

/// The guard's state: allow-list, cooldowns, rate limits.
pub struct Guard {
    mode: Mode,
    /// Actions that cannot run live, with what they are missing.
    incomplete: HashMap<String, &'static str>,
    allowed: BTreeMap<String, Allowed>,
    target_cooldown_ms: u64,
    /// Enforce's limits, then dry-run's.
    limits: [Limits; 2],
    clock: TripClock,
    next_id: u64,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("mode", &self.mode)
            .field("allowed", &self.allowed.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn selector_of(signature: &str) -> Option<FixedBytes<4>> {
    Function::parse(signature).ok().map(|f| f.selector())
}

fn quota(limit: RateLimit) -> Quota {
    let count = NonZeroU32::new(limit.count).unwrap_or(NonZeroU32::MIN);
    let every = Duration::from_millis(limit.per_ms) / count.get();
    // A zero period cannot come from the config (parse_alarm_rate refuses it);
    // one nanosecond keeps `with_period` total all the same.
    Quota::with_period(every.max(Duration::from_nanos(1)))
        .unwrap_or_else(|| Quota::per_second(count))
        .allow_burst(count)
}

impl Guard {
    /// Compiles the allow-list from the configuration's actions.
    pub fn new(config: &Config) -> Self {
        let clock = TripClock::default();
        let mut allowed = BTreeMap::new();
        let mut incomplete = HashMap::new();
        for (name, def) in &config.actions {
            let (Some(target), Some(function), Some(executor)) =
                (def.target, def.function.as_deref(), def.executor.as_deref())
            else {
                let missing = if def.target.is_none() {
                    "target"
                } else if def.function.is_none() {
                    "function"
                } else {
                    "executor"
                };
                incomplete.insert(name.clone(), missing);
                continue;
            };
            // Signatures were checked at load; an unparsable one is left out of the allow-list.
            let Some(selector) = selector_of(function) else {
                incomplete.insert(name.clone(), "function");
                continue;
            };
            let kind = match def.kind {
                ActionKind::Pause => Kind::Pause {
                    paused_getter: def.pause.paused_getter.as_deref().and_then(selector_of),
                    flags: def
                        .pause
                        .flags
                        .as_ref()
                        .map(|FlagsParams { getters, set }| {
                            (
                                getters.iter().filter_map(|g| selector_of(g)).collect(),
                                set.clone(),
                            )
                        }),
                },
                ActionKind::SetParameter => {
                    let Some(params) = def.parameter.clone() else {
                        incomplete.insert(name.clone(), "bounds");
                        continue;
                    };
                    let Some(getter) = selector_of(&params.getter) else {
                        incomplete.insert(name.clone(), "getter");
                        continue;
                    };
                    Kind::SetParameter { getter, params }
                }
            };
            allowed.insert(
                name.clone(),
                Allowed {
                    target,
                    selector,
                    executor: executor.to_string(),
                    cooldown_ms: def.cooldown_ms,
                    kind,
                },
            );
        }
        Self {
            mode: config.mode,
            incomplete,
            allowed,
            target_cooldown_ms: config.guard.target_cooldown_ms,
            limits: [Limits::new(config, &clock), Limits::new(config, &clock)],
            clock,
            next_id: 0,
        }
    }

    /// Restores the state decisions taken before a restart left: the next
    /// decision id continues after `past`'s, cooldowns restart from the last
    /// approvals, and the rate limiters count the same attempts again, at
    /// their trips' times — each against the limits of the mode it was decided
    /// in. Decisions on actions no longer configured are skipped.
    pub fn restore(&mut self, past: impl IntoIterator<Item = PastDecision>) {
        for p in past {
            self.next_id = self.next_id.max(p.decision_id);
            let (Some(counted), Some(allowed)) = (p.counted, self.allowed.get(&p.action)) else {
                continue;
            };
            if p.mode == Mode::AlertOnly {
                continue;
            }
            self.clock.advance_to(p.time_ms);
            let limits = &mut self.limits[slot(p.mode)];
            if let Some(g) = &limits.global {
                let _ = g.check();
            }
            if counted != Counted::GlobalLimit
                && let Some(k) = &limits.per_target
            {
                let _ = k.check_key(&allowed.target);
            }
            if counted == Counted::Approved {
                limits.start_cooldowns(&p.action, allowed, p.time_ms);
            }
        }
    }

    /// An approved action ended without anything sent (the executor failed
    /// before its first broadcast): its cooldowns no longer hold back the next
    /// attempt. The rate limits keep counting it (an attempt).
    pub fn not_sent(&mut self, action: &str, mode: Mode, approved_at_ms: u64) {
        let Some(allowed) = self.allowed.get(action) else {
            return;
        };
        let limits = &mut self.limits[slot(mode)];
        if limits.last_action.get(action) == Some(&approved_at_ms) {
            limits.last_action.remove(action);
        }
        if limits.last_target.get(&allowed.target) == Some(&approved_at_ms) {
            limits.last_target.remove(&allowed.target);
        }
        if limits.last_update.get(&(allowed.target, allowed.selector)) == Some(&approved_at_ms) {
            limits
                .last_update
                .remove(&(allowed.target, allowed.selector));
        }
    }

    /// Every (target, selector) the guard may ever approve.
    pub fn allow_list(&self) -> Vec<(Address, FixedBytes<4>)> {
        self.allowed
            .values()
            .map(|a| (a.target, a.selector))
            .collect()
    }

    /// Decides what to do about `trip`. Chain state comes from `view`.
    pub async fn review<V: ChainView>(&mut self, trip: &Trip, view: &V) -> Decision {
        self.next_id += 1;
        let decision_id = self.next_id;
        let outcome = self.decide(decision_id, trip, view).await;
        let decision = Decision {
            decision_id,
            policy: trip.policy.clone(),
            action: trip.action.clone(),
            block: trip.block,
            time_ms: trip.time_ms,
            outcome,
        };
        match &decision.outcome {
            Outcome::Approved(a) => tracing::info!(
                target: "guardian::guard", decision_id, policy = %trip.policy, block = trip.block,
                action = %trip.action, mode = a.mode.as_str(), "approved"
            ),
            Outcome::AlertOnly => tracing::warn!(
                target: "guardian::guard", decision_id, policy = %trip.policy, block = trip.block,
                action = %trip.action, "alert only: nothing sent"
            ),
            Outcome::AlreadyDone { detail } => tracing::info!(
                target: "guardian::guard", decision_id, policy = %trip.policy, block = trip.block,
                action = %trip.action, detail = %detail, "already done: no transaction"
            ),
            Outcome::Rejected(r) => tracing::warn!(
                target: "guardian::guard", decision_id, policy = %trip.policy, block = trip.block,
                action = %trip.action, reason = %r, "rejected"
            ),
        }
        decision
    }

    /// A decision for a trip too old to act on (its age by the wall clock,
    /// which the pipeline measures: the guard itself never reads the clock).
    /// Nothing is built, no cooldown starts, no rate limit counts it.
    pub fn refuse_late(&mut self, trip: &Trip, age_ms: u64, max_ms: u64) -> Decision {
        self.next_id += 1;
        tracing::warn!(
            target: "guardian::guard", decision_id = self.next_id, policy = %trip.policy, block = trip.block,
            action = %trip.action, age_ms, max_ms, "rejected: the trip is older than max_trigger_age"
        );
        self.made(
            trip,
            Outcome::Rejected(Rejection::TooOld { age_ms, max_ms }),
        )
    }

    /// A decision for a trip whose action decision `by` is still delivering
    /// (the pipeline knows what is in flight): the same transaction is not
    /// sent twice. Nothing is built, no cooldown starts, no rate limit counts it.
    pub fn underway(&mut self, trip: &Trip, by: u64) -> Decision {
        self.next_id += 1;
        let detail = format!("decision {by} is already delivering action {}", trip.action);
        tracing::info!(
            target: "guardian::guard", decision_id = self.next_id, policy = %trip.policy, block = trip.block,
            action = %trip.action, detail = %detail, "already done: no transaction"
        );
        self.made(trip, Outcome::AlreadyDone { detail })
    }

    /// The decision with the latest id for `trip`.
    fn made(&self, trip: &Trip, outcome: Outcome) -> Decision {
        Decision {
            decision_id: self.next_id,
            policy: trip.policy.clone(),
            action: trip.action.clone(),
            block: trip.block,
            time_ms: trip.time_ms,
            outcome,
        }
    }

    async fn decide<V: ChainView>(&mut self, decision_id: u64, trip: &Trip, view: &V) -> Outcome {
        let mode = trip.mode.most_cautious(self.mode);
        if mode == Mode::AlertOnly {
            return Outcome::AlertOnly;
        }
        let Some(allowed) = self.allowed.get(&trip.action).cloned() else {
            return Outcome::Rejected(match self.incomplete.get(&trip.action) {
                Some(missing) => Rejection::Incomplete {
                    action: trip.action.clone(),
                    missing,
                },
                None => Rejection::NotAllowed {
                    action: trip.action.clone(),
                },
            });
        };
        if allowed.selector.0 == UNPAUSE_SELECTOR {
            return Outcome::Rejected(Rejection::Unpause {
                action: trip.action.clone(),
            });
        }
        let now = trip.time_ms;
        let limits = &self.limits[slot(mode)];
        if let Some(&last) = limits.last_action.get(&trip.action)
            && allowed.cooldown_ms > 0
            && now < last.saturating_add(allowed.cooldown_ms)
        {
            return Outcome::Rejected(Rejection::ActionCooldown {
                action: trip.action.clone(),
                ready_at_ms: last + allowed.cooldown_ms,
            });
        }
        if let Some(&last) = limits.last_target.get(&allowed.target)
            && self.target_cooldown_ms > 0
            && now < last.saturating_add(self.target_cooldown_ms)
        {
            return Outcome::Rejected(Rejection::TargetCooldown {
                target: allowed.target,
                ready_at_ms: last + self.target_cooldown_ms,
            });
        }

        let (call, effect) = match self.build(&allowed, now, mode, view).await {
            Ok(Built::Call(call, effect)) => (call, effect),
            Ok(Built::AlreadyDone(detail)) => return Outcome::AlreadyDone { detail },
            Err(r) => return Outcome::Rejected(r),
        };

        // Rate limits count approvals that reach preflight (attempts, not only successes).
        self.clock.advance_to(now);
        let limits = &mut self.limits[slot(mode)];
        if let Some(g) = &limits.global
            && g.check().is_err()
        {
            return Outcome::Rejected(Rejection::RateLimited);
        }
        if let Some(k) = &limits.per_target
            && k.check_key(&allowed.target).is_err()
        {
            return Outcome::Rejected(Rejection::TargetRateLimited {
                target: allowed.target,
            });
        }

        if let Err(reason) = view.preflight(&allowed.executor, &call, &effect).await {
            return Outcome::Rejected(Rejection::PreflightReverted { reason });
        }

        self.limits[slot(mode)].start_cooldowns(&trip.action, &allowed, now);
        Outcome::Approved(Box::new(Approved {
            decision_id,
            policy: trip.policy.clone(),
            action: trip.action.clone(),
            executor: allowed.executor.clone(),
            block: trip.block,
            time_ms: trip.time_ms,
            mode,
            call,
            effect,
        }))
    }

    async fn build<V: ChainView>(
        &self,
        allowed: &Allowed,
        now: u64,
        mode: Mode,
        view: &V,
    ) -> Result<Built, Rejection> {
        let target = allowed.target;
        let getter_call = |selector: FixedBytes<4>| Call {
            target,
            selector,
            data: Bytes::copy_from_slice(selector.as_slice()),
        };
        match &allowed.kind {
            Kind::Pause {
                paused_getter,
                flags,
            } => {
                if let Some(getter) = paused_getter
                    && read_bool(view, target, *getter).await?
                {
                    return Ok(Built::AlreadyDone(format!(
                        "{target} is already paused (getter {getter})"
                    )));
                }
                match flags {
                    None => Ok(Built::Call(
                        getter_call(allowed.selector),
                        Effect::Paused {
                            getters: paused_getter.iter().map(|g| getter_call(*g)).collect(),
                        },
                    )),
                    Some((getters, set)) => {
                        let mut current = Vec::with_capacity(getters.len());
                        for g in getters {
                            current.push(read_bool(view, target, *g).await?);
                        }
                        if set.iter().zip(&current).all(|(s, c)| !s || *c) {
                            return Ok(Built::AlreadyDone(format!(
                                "every flag the action sets on {target} is already set"
                            )));
                        }
                        // Read-modify-write: add the action's flags, keep the others.
                        let next: Vec<bool> =
                            set.iter().zip(&current).map(|(s, c)| *s || *c).collect();
                        let mut data = allowed.selector.to_vec();
                        for flag in &next {
                            data.extend_from_slice(&flag.abi_encode());
                        }
                        let set_getters = getters
                            .iter()
                            .zip(set)
                            .filter(|(_, s)| **s)
                            .map(|(g, _)| getter_call(*g))
                            .collect();
                        Ok(Built::Call(
                            Call {
                                target,
                                selector: allowed.selector,
                                data: data.into(),
                            },
                            Effect::Paused {
                                getters: set_getters,
                            },
                        ))
                    }
                }
            }
            Kind::SetParameter { getter, params } => {
                if let Some(&last) = self.limits[slot(mode)]
                    .last_update
                    .get(&(target, allowed.selector))
                    && now < last.saturating_add(params.min_delay_ms)
                {
                    return Err(Rejection::UpdateTooSoon {
                        ready_at_ms: last + params.min_delay_ms,
                    });
                }
                let current = read_u256(view, target, *getter).await?;
                let value = next_value(current, params)?;
                let mut data = allowed.selector.to_vec();
                data.extend_from_slice(&value.abi_encode());
                Ok(Built::Call(
                    Call {
                        target,
                        selector: allowed.selector,
                        data: data.into(),
                    },
                    Effect::Parameter {
                        getter: getter_call(*getter),
                        from: current,
                        value,
                    },
                ))
            }
        }
    }
}

enum Built {
    Call(Call, Effect),
    AlreadyDone(String),
}

async fn read_word<V: ChainView>(
    view: &V,
    target: Address,
    getter: FixedBytes<4>,
) -> Result<U256, Rejection> {
    let what = format!("{getter} on {target}");
    let out = view
        .read(target, Bytes::copy_from_slice(getter.as_slice()))
        .await
        .map_err(|reason| Rejection::ReadFailed {
            what: what.clone(),
            reason,
        })?;
    if out.len() < 32 {
        return Err(Rejection::ReadFailed {
            what,
            reason: format!("returned {} bytes, expected a 32-byte word", out.len()),
        });
    }
    Ok(U256::from_be_slice(&out[..32]))
}

async fn read_bool<V: ChainView>(
    view: &V,
    target: Address,
    getter: FixedBytes<4>,
) -> Result<bool, Rejection> {
    let word = read_word(view, target, getter).await?;
    if word > U256::from(1) {
        return Err(Rejection::ReadFailed {
            what: format!("{getter} on {target}"),
            reason: "returned a word that is not a bool".into(),
        });
    }
    Ok(word == U256::from(1))
}

async fn read_u256<V: ChainView>(
    view: &V,
    target: Address,
    getter: FixedBytes<4>,
) -> Result<U256, Rejection> {
    read_word(view, target, getter).await
}

/// floor(value * bps / 10_000), exactly and without overflow.
pub fn bps_of(value: U256, bps: u64) -> U256 {
    let b = U256::from(BPS);
    let q = value / b;
    let r = value % b;
    q * U256::from(bps) + r * U256::from(bps) / b
}

/// The new value a set-parameter action asks for, checked against its bounds
/// exactly as the GuardianModule checks them.
pub fn next_value(current: U256, p: &ParameterParams) -> Result<U256, Rejection> {
    let value = match p.value {
        ValuePolicy::Fixed(v) => v,
        ValuePolicy::StepBps { bps, down } => {
            let step = bps_of(current, bps);
            let v = if down {
                current.saturating_sub(step)
            } else {
                current.saturating_add(step)
            };
            // A step is the guardian's own choice: keep it within the bounds.
            v.clamp(p.min, p.max)
        }
    };
    if value < p.min || value > p.max {
        return Err(Rejection::OutOfBounds {
            value,
            min: p.min,
            max: p.max,
        });
    }
    if value == current {
        return Err(Rejection::Unchanged { value });
    }
    let delta = if value > current {
        value - current
    } else {
        current - value
    };
    if delta > bps_of(current, p.max_change_bps) {
        return Err(Rejection::ChangeTooLarge {
            current,
            value,
            max_change_bps: p.max_change_bps,
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests;
