use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::task::{Context, Poll, Waker};

use alloy::primitives::{Address, Bytes, U256, address};
use proptest::prelude::*;

use super::*;
use crate::config::{ActionDef, GuardLimits, PauseParams};
use crate::policy::model::Severity;

/// Chain state for the guard's pure logic: answers to getters, and the preflight outcome.
/// (The executor's real implementation is tested on anvil in tests/executor.rs.)
#[derive(Default)]
struct State {
    words: HashMap<(Address, Bytes), U256>,
    preflight: Option<String>,
    preflights: RefCell<u32>,
}

impl State {
    fn set(&mut self, target: Address, sig: &str, v: U256) {
        let sel = selector_of(sig).unwrap();
        self.words
            .insert((target, Bytes::copy_from_slice(sel.as_slice())), v);
    }
}

/// The futures are ready at once: they capture owned answers, not the state.
struct View<'a>(&'a State);

impl ChainView for View<'_> {
    fn read(
        &self,
        target: Address,
        data: Bytes,
    ) -> impl Future<Output = Result<Bytes, String>> + Send {
        let r = match self.0.words.get(&(target, data)) {
            Some(v) => Ok(Bytes::from(v.to_be_bytes::<32>().to_vec())),
            None => Err("execution reverted".to_string()),
        };
        std::future::ready(r)
    }
    fn preflight(
        &self,
        _executor: &str,
        _call: &Call,
        _effect: &Effect,
    ) -> impl Future<Output = Result<(), String>> + Send {
        *self.0.preflights.borrow_mut() += 1;
        std::future::ready(match &self.0.preflight {
            Some(reason) => Err(reason.clone()),
            None => Ok(()),
        })
    }
}

fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

const VAULT: Address = address!("0x00000000000000000000000000000000000000a1");
const COMET: Address = address!("0x00000000000000000000000000000000000000c3");
const MARKET: Address = address!("0x00000000000000000000000000000000000000b2");

fn action(name: &str, kind: ActionKind, target: Address, function: &str) -> ActionDef {
    ActionDef {
        name: name.into(),
        kind,
        description: name.into(),
        target: Some(target),
        function: Some(function.into()),
        executor: Some("exec".into()),
        cooldown_ms: 0,
        pause: PauseParams::default(),
        parameter: None,
        timing: Default::default(),
    }
}

fn config(limits: GuardLimits) -> Config {
    let mut c = Config::empty();
    c.guard = limits;
    let mut pause = action("pause-vault", ActionKind::Pause, VAULT, "pause()");
    pause.pause.paused_getter = Some("paused()".into());
    pause.cooldown_ms = 60_000;
    let mut comet = action(
        "pause-comet",
        ActionKind::Pause,
        COMET,
        "pause(bool,bool,bool,bool,bool)",
    );
    comet.pause.flags = Some(FlagsParams {
        getters: [
            "isSupplyPaused()",
            "isTransferPaused()",
            "isWithdrawPaused()",
            "isAbsorbPaused()",
            "isBuyPaused()",
        ]
        .map(String::from)
        .to_vec(),
        set: vec![true, false, true, false, false],
    });
    let mut cap = action(
        "lower-cap",
        ActionKind::SetParameter,
        MARKET,
        "setSupplyCap(uint256)",
    );
    cap.parameter = Some(ParameterParams {
        getter: "supplyCap()".into(),
        min: U256::from(100),
        max: U256::from(10_000),
        max_change_bps: 5_000,
        min_delay_ms: 3_600_000,
        value: ValuePolicy::StepBps {
            bps: 2_500,
            down: true,
        },
    });
    let mut fixed = action(
        "set-cap",
        ActionKind::SetParameter,
        MARKET,
        "setBorrowCap(uint256)",
    );
    fixed.parameter = Some(ParameterParams {
        getter: "borrowCap()".into(),
        min: U256::from(100),
        max: U256::from(10_000),
        max_change_bps: 1_000,
        min_delay_ms: 0,
        value: ValuePolicy::Fixed(U256::from(900)),
    });
    let unpause = action("unpause-vault", ActionKind::Pause, VAULT, "unpause()");
    let mut replay_only = action("replay-only", ActionKind::Pause, VAULT, "pause()");
    replay_only.target = None;
    for a in [pause, comet, cap, fixed, unpause, replay_only] {
        c.actions.insert(a.name.clone(), a);
    }
    c
}

fn trip(action: &str, time_ms: u64, mode: Mode) -> Trip {
    Trip {
        policy: "p".into(),
        block: time_ms / 1000,
        time_ms,
        action: action.into(),
        severity: Severity::Critical,
        mode,
        evidence: serde_json::Value::Null.into(),
        summary: String::new(),
    }
}

fn state() -> State {
    let mut s = State::default();
    s.set(VAULT, "paused()", U256::ZERO);
    for (g, v) in [
        ("isSupplyPaused()", 0u8),
        ("isTransferPaused()", 1),
        ("isWithdrawPaused()", 0),
        ("isAbsorbPaused()", 0),
        ("isBuyPaused()", 0),
    ] {
        s.set(COMET, g, U256::from(v));
    }
    s.set(MARKET, "supplyCap()", U256::from(1_000));
    s.set(MARKET, "borrowCap()", U256::from(1_000));
    s
}

fn review(g: &mut Guard, s: &State, action: &str, t: u64) -> Decision {
    block_on(g.review(&trip(action, t, Mode::Enforce), &View(s)))
}

/// Whether `action`, tripped at `t`, is approved.
fn approves(g: &mut Guard, s: &State, action: &str, t: u64) -> bool {
    review(g, s, action, t).into_approved().is_some()
}

#[test]
fn a_pause_is_approved_with_the_configured_call() {
    let mut g = Guard::new(&config(GuardLimits::default()));
    let s = state();
    let a = review(&mut g, &s, "pause-vault", 1_000)
        .into_approved()
        .unwrap();
    assert_eq!(a.call().target, VAULT);
    assert_eq!(a.call().data.as_ref(), &[0x84, 0x56, 0xcb, 0x59]); // pause()
    assert_eq!(a.mode(), Mode::Enforce);
    assert_eq!(a.executor(), "exec");
}

#[test]
fn actions_outside_the_allow_list_are_rejected_with_the_reason() {
    let mut g = Guard::new(&config(GuardLimits::default()));
    let s = state();
    let d = review(&mut g, &s, "drain-everything", 1_000);
    assert_eq!(
        d.rejection(),
        Some(&Rejection::NotAllowed {
            action: "drain-everything".into()
        })
    );
    let d = review(&mut g, &s, "replay-only", 1_000);
    assert!(matches!(
        d.rejection(),
        Some(Rejection::Incomplete {
            missing: "target",
            ..
        })
    ));
    let d = review(&mut g, &s, "unpause-vault", 1_000);
    assert!(matches!(d.rejection(), Some(Rejection::Unpause { .. })));
    let record = serde_json::to_value(&d).unwrap();
    assert_eq!(record["outcome"]["outcome"], "rejected");
}

#[test]
fn already_paused_is_a_recorded_no_op() {
    let mut g = Guard::new(&config(GuardLimits::default()));
    let mut s = state();
    s.set(VAULT, "paused()", U256::from(1));
    let d = review(&mut g, &s, "pause-vault", 1_000);
    assert!(matches!(d.outcome, Outcome::AlreadyDone { .. }), "{d:?}");
    assert_eq!(*s.preflights.borrow(), 0);
}

#[test]
fn a_multi_flag_pause_only_adds_flags() {
    let mut g = Guard::new(&config(GuardLimits::default()));
    let s = state();
    let a = review(&mut g, &s, "pause-comet", 1_000)
        .into_approved()
        .unwrap();
    // transfer was already paused and stays paused; supply and withdraw are added.
    let args: Vec<bool> = a.call().data[4..].chunks(32).map(|w| w[31] == 1).collect();
    assert_eq!(args, vec![true, true, true, false, false]);
    let mut s = state();
    s.set(COMET, "isSupplyPaused()", U256::from(1));
    s.set(COMET, "isWithdrawPaused()", U256::from(1));
    let mut g = Guard::new(&config(GuardLimits::default()));
    let d = review(&mut g, &s, "pause-comet", 1_000);
    assert!(matches!(d.outcome, Outcome::AlreadyDone { .. }));
}

#[test]
fn parameter_changes_are_bounded_like_the_module() {
    let p = ParameterParams {
        getter: "x()".into(),
        min: U256::from(100),
        max: U256::from(10_000),
        max_change_bps: 1_000,
        min_delay_ms: 0,
        value: ValuePolicy::Fixed(U256::from(20_000)),
    };
    let r = |current: u64, value: ValuePolicy| {
        next_value(U256::from(current), &ParameterParams { value, ..p.clone() })
    };
    assert!(matches!(
        r(1_000, ValuePolicy::Fixed(U256::from(20_000))),
        Err(Rejection::OutOfBounds { .. })
    ));
    assert!(matches!(
        r(1_000, ValuePolicy::Fixed(U256::from(1_000))),
        Err(Rejection::Unchanged { .. })
    ));
    // 10% of 1000 is 100: 900 passes, 899 does not.
    assert_eq!(
        r(1_000, ValuePolicy::Fixed(U256::from(900))),
        Ok(U256::from(900))
    );
    assert!(matches!(
        r(1_000, ValuePolicy::Fixed(U256::from(899))),
        Err(Rejection::ChangeTooLarge { .. })
    ));
    // A step that would cross the minimum stops at it.
    assert_eq!(
        r(
            105,
            ValuePolicy::StepBps {
                bps: 1_000,
                down: true
            }
        ),
        Ok(U256::from(100))
    );
    // floor(x * bps / 10_000) without overflow, at the top of the range.
    assert_eq!(bps_of(U256::MAX, 10_000), U256::MAX);
    assert_eq!(bps_of(U256::from(9_999), 1), U256::ZERO);
}

#[test]
fn set_parameter_respects_min_delay_and_reads_the_current_value() {
    let mut g = Guard::new(&config(GuardLimits::default()));
    let s = state();
    let a = review(&mut g, &s, "lower-cap", 1_000)
        .into_approved()
        .unwrap();
    assert_eq!(
        a.effect(),
        &Effect::Parameter {
            getter: Call {
                target: MARKET,
                selector: selector_of("supplyCap()").unwrap(),
                data: Bytes::copy_from_slice(selector_of("supplyCap()").unwrap().as_slice()),
            },
            from: U256::from(1_000),
            value: U256::from(750),
        }
    );
    let d = review(&mut g, &s, "lower-cap", 1_000 + 3_599_999);
    assert!(matches!(
        d.rejection(),
        Some(Rejection::UpdateTooSoon {
            ready_at_ms: 3_601_000
        })
    ));
    assert!(approves(&mut g, &s, "lower-cap", 3_601_000));
}

#[test]
fn cooldowns_per_action_and_per_target() {
    let mut g = Guard::new(&config(GuardLimits {
        target_cooldown_ms: 10_000,
        ..Default::default()
    }));
    let s = state();
    assert!(approves(&mut g, &s, "pause-vault", 1_000));
    let d = review(&mut g, &s, "pause-vault", 30_000);
    assert_eq!(
        d.rejection(),
        Some(&Rejection::ActionCooldown {
            action: "pause-vault".into(),
            ready_at_ms: 61_000
        })
    );
    assert!(approves(&mut g, &s, "set-cap", 1_000));
    let d = review(&mut g, &s, "lower-cap", 5_000);
    assert_eq!(
        d.rejection(),
        Some(&Rejection::TargetCooldown {
            target: MARKET,
            ready_at_ms: 11_000
        })
    );
    assert!(approves(&mut g, &s, "lower-cap", 11_000));
    assert!(approves(&mut g, &s, "pause-vault", 61_000));
}

#[test]
fn rate_limits_global_and_per_target_follow_trip_time() {
    let mut g = Guard::new(&config(GuardLimits {
        target_cooldown_ms: 0,
        rate_limit: Some(RateLimit {
            count: 2,
            per_ms: 3_600_000,
        }),
        target_rate_limit: None,
    }));
    let s = state();
    assert!(approves(&mut g, &s, "pause-vault", 0));
    assert!(approves(&mut g, &s, "set-cap", 1));
    let d = review(&mut g, &s, "pause-comet", 2);
    assert_eq!(d.rejection(), Some(&Rejection::RateLimited));
    // One slot comes back every half hour.
    assert!(approves(&mut g, &s, "pause-comet", 1_800_001));

    let mut g = Guard::new(&config(GuardLimits {
        target_cooldown_ms: 0,
        rate_limit: None,
        target_rate_limit: Some(RateLimit {
            count: 1,
            per_ms: 3_600_000,
        }),
    }));
    assert!(approves(&mut g, &s, "set-cap", 0));
    assert_eq!(
        review(&mut g, &s, "lower-cap", 1).rejection(),
        Some(&Rejection::TargetRateLimited { target: MARKET })
    );
    // Another target is not affected.
    assert!(approves(&mut g, &s, "pause-vault", 2));
}

#[test]
fn a_reverting_preflight_is_rejected_with_its_reason() {
    let mut g = Guard::new(&config(GuardLimits::default()));
    let mut s = state();
    s.preflight = Some("CooldownActive(0xa1, 1700000000)".into());
    let d = review(&mut g, &s, "pause-vault", 1_000);
    assert_eq!(
        d.rejection(),
        Some(&Rejection::PreflightReverted {
            reason: "CooldownActive(0xa1, 1700000000)".into()
        })
    );
    // A failed preflight does not start the action's cooldown.
    s.preflight = None;
    assert!(approves(&mut g, &s, "pause-vault", 2_000));
}

#[test]
fn modes_alert_only_and_dry_run() {
    let mut g = Guard::new(&config(GuardLimits::default()));
    let s = state();
    let d = block_on(g.review(&trip("pause-vault", 1, Mode::AlertOnly), &View(&s)));
    assert!(matches!(d.outcome, Outcome::AlertOnly));
    let a = block_on(g.review(&trip("pause-vault", 2, Mode::DryRun), &View(&s)))
        .into_approved()
        .unwrap();
    assert_eq!(a.mode(), Mode::DryRun);
    // A global dry-run makes an enforce trip dry-run too.
    let mut c = config(GuardLimits::default());
    c.mode = Mode::DryRun;
    let mut g = Guard::new(&c);
    let a = review(&mut g, &s, "set-cap", 3).into_approved().unwrap();
    assert_eq!(a.mode(), Mode::DryRun);
}

const NAMES: [&str; 9] = [
    "pause-vault",
    "pause-comet",
    "lower-cap",
    "set-cap",
    "unpause-vault",
    "replay-only",
    "drain",
    "pause-vault ",
    "",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    /// 1,000 runs of 100 decisions each: the guard never approves a call
    /// outside its allow-list, never unpause, and never a parameter outside its bounds.
    #[test]
    fn never_approves_outside_the_allow_list(
        trips in proptest::collection::vec((0usize..NAMES.len(), 0u64..5_000_000, 0u8..3), 100),
        flags in proptest::collection::vec(0u8..2, 6),
        cap in 0u64..20_000,
        reverts in any::<bool>(),
        limit in proptest::option::of(1u32..4),
    ) {
        let config = config(GuardLimits {
            target_cooldown_ms: 0,
            rate_limit: limit.map(|count| RateLimit { count, per_ms: 600_000 }),
            target_rate_limit: None,
        });
        let mut g = Guard::new(&config);
        let allow = g.allow_list();
        let mut s = state();
        s.set(VAULT, "paused()", U256::from(flags[0]));
        for (g, f) in ["isSupplyPaused()", "isTransferPaused()", "isWithdrawPaused()", "isAbsorbPaused()", "isBuyPaused()"].iter().zip(&flags[1..]) {
            s.set(COMET, g, U256::from(*f));
        }
        s.set(MARKET, "supplyCap()", U256::from(cap));
        s.set(MARKET, "borrowCap()", U256::from(cap));
        if reverts { s.preflight = Some("reverted".into()); }
        let mut times: Vec<_> = trips.iter().map(|t| t.1).collect();
        times.sort_unstable();
        for ((name, _, mode), t) in trips.iter().zip(times) {
            let mode = [Mode::Enforce, Mode::DryRun, Mode::AlertOnly][*mode as usize];
            let d = block_on(g.review(&trip(NAMES[*name], t, mode), &View(&s)));
            if let Outcome::Approved(a) = &d.outcome {
                prop_assert!(!reverts);
                prop_assert!(mode != Mode::AlertOnly);
                prop_assert!(allow.contains(&(a.call().target, a.call().selector)));
                prop_assert!(a.call().data.starts_with(a.call().selector.as_slice()));
                prop_assert!(a.call().selector.0 != UNPAUSE_SELECTOR);
                let def = &config.actions[a.action()];
                prop_assert_eq!(Some(a.call().target), def.target);
                prop_assert_eq!(Some(a.call().selector), def.function.as_deref().and_then(selector_of));
                if let Effect::Parameter { from, value, .. } = a.effect() {
                    let p = def.parameter.as_ref().unwrap();
                    prop_assert!(*value >= p.min && *value <= p.max && value != from);
                    prop_assert_eq!(&a.call().data[4..], &value.to_be_bytes::<32>()[..]);
                }
            } else if d.rejection().is_none() {
                let quiet = matches!(d.outcome, Outcome::AlertOnly | Outcome::AlreadyDone { .. });
                prop_assert!(quiet, "an outcome that is neither approved, rejected nor quiet");
            }
        }
    }
}

/// After a restart the guard is rebuilt from the journal: the same decisions
/// give the same cooldowns, rate-limit counts and next decision id.
#[test]
fn restored_decisions_keep_cooldowns_rate_limits_and_ids() {
    let limits = GuardLimits {
        rate_limit: Some(RateLimit {
            count: 2,
            per_ms: 3_600_000,
        }),
        ..GuardLimits::default()
    };
    let s = state();
    let mut before = Guard::new(&config(limits));
    let first = review(&mut before, &s, "pause-vault", 1_000);
    let second = review(&mut before, &s, "lower-cap", 2_000);
    assert!(matches!(first.outcome, Outcome::Approved(_)));
    assert!(matches!(second.outcome, Outcome::Approved(_)));
    let past = [
        (first.decision_id, "pause-vault", 1_000),
        (second.decision_id, "lower-cap", 2_000),
    ]
    .map(|(decision_id, action, time_ms)| PastDecision {
        decision_id,
        action: action.into(),
        time_ms,
        mode: Mode::Enforce,
        counted: Some(Counted::Approved),
    });

    // A fresh guard would approve; the restored one knows the cooldown holds.
    let mut fresh = Guard::new(&config(limits));
    assert!(matches!(
        review(&mut fresh, &s, "pause-vault", 30_000).outcome,
        Outcome::Approved(_)
    ));
    let mut after = Guard::new(&config(limits));
    after.restore(past.clone());
    let d = review(&mut after, &s, "pause-vault", 30_000);
    assert_eq!(d.decision_id, 3, "ids continue after the journal's");
    assert_eq!(
        d.rejection(),
        Some(&Rejection::ActionCooldown {
            action: "pause-vault".into(),
            ready_at_ms: 61_000
        })
    );
    assert_eq!(
        review(&mut after, &s, "lower-cap", 3_000).rejection(),
        Some(&Rejection::UpdateTooSoon {
            ready_at_ms: 3_602_000
        })
    );
    // Both approvals count against the global limit of 2 per hour.
    assert_eq!(
        review(&mut after, &s, "set-cap", 70_000).rejection(),
        Some(&Rejection::RateLimited)
    );
    // Decisions that consumed nothing only move the id on.
    let mut quiet = Guard::new(&config(limits));
    quiet.restore([PastDecision {
        decision_id: 41,
        action: "pause-vault".into(),
        time_ms: 1_000,
        mode: Mode::Enforce,
        counted: None,
    }]);
    let d = review(&mut quiet, &s, "pause-vault", 2_000);
    assert_eq!(d.decision_id, 42);
    assert!(matches!(d.outcome, Outcome::Approved(_)));
}

/// Issue 14: cooldowns and rate limits are consumed only within the mode that
/// consumed them; a dry-run approval (nothing sent) never holds back enforce.
#[test]
fn modes_never_leak_cooldowns_or_rate_limits() {
    let limits = GuardLimits {
        target_cooldown_ms: 600_000,
        rate_limit: Some(RateLimit {
            count: 1,
            per_ms: 3_600_000,
        }),
        ..Default::default()
    };
    let s = state();
    let mut g = Guard::new(&config(limits));
    let dry = block_on(g.review(&trip("pause-vault", 1_000, Mode::DryRun), &View(&s)));
    assert_eq!(dry.into_approved().map(|a| a.mode()), Some(Mode::DryRun));
    // Within dry-run, its own cooldown holds.
    let again = block_on(g.review(&trip("pause-vault", 2_000, Mode::DryRun), &View(&s)));
    assert!(again.rejection().is_some(), "{:?}", again.outcome);
    // Enforce inherits nothing from dry-run: neither cooldown nor rate limit.
    let live = block_on(g.review(&trip("pause-vault", 3_000, Mode::Enforce), &View(&s)));
    assert_eq!(live.into_approved().map(|a| a.mode()), Some(Mode::Enforce));

    // The same after a restart: a dry-run approval in the journal holds only dry-run.
    let past = PastDecision {
        decision_id: 7,
        action: "pause-vault".into(),
        time_ms: 1_000,
        mode: Mode::DryRun,
        counted: Some(Counted::Approved),
    };
    let mut restarted = Guard::new(&config(limits));
    restarted.restore([past.clone()]);
    let d = block_on(restarted.review(&trip("pause-vault", 2_000, Mode::Enforce), &View(&s)));
    assert!(matches!(d.outcome, Outcome::Approved(_)), "{:?}", d.outcome);
    let mut dry_again = Guard::new(&config(limits));
    dry_again.restore([past]);
    let d = block_on(dry_again.review(&trip("pause-vault", 2_000, Mode::DryRun), &View(&s)));
    assert!(matches!(d.outcome, Outcome::Rejected(_)), "{:?}", d.outcome);
}

/// An approval whose execution sent nothing releases its cooldowns.
#[test]
fn an_approval_that_sent_nothing_releases_its_cooldown() {
    let mut g = Guard::new(&config(GuardLimits {
        target_cooldown_ms: 600_000,
        ..Default::default()
    }));
    let s = state();
    let first = review(&mut g, &s, "pause-vault", 1_000);
    assert!(matches!(first.outcome, Outcome::Approved(_)));
    assert!(
        review(&mut g, &s, "pause-vault", 2_000)
            .rejection()
            .is_some()
    );
    g.not_sent("pause-vault", Mode::Enforce, 1_000);
    assert!(matches!(
        review(&mut g, &s, "pause-vault", 3_000).outcome,
        Outcome::Approved(_)
    ));
}
