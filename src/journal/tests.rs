use std::future::Future;

use alloy::primitives::{Address, B256, Bytes, U256, address};

use super::*;
use crate::config::{ActionDef, ActionKind, PauseParams};
use crate::decision::Trip;
use crate::executor::{Execution, Fees, SignedTx, TxLog};
use crate::guard::{Call, ChainView, Counted, Decision, Effect, Guard, Outcome};
use crate::policy::model::Severity;

const VAULT: Address = address!("0x00000000000000000000000000000000000000a1");
const BOT: Address = address!("0x00000000000000000000000000000000000000b0");

/// A vault that is not paused, and a preflight that passes or reverts.
struct View {
    preflight: Result<(), String>,
}

impl ChainView for View {
    fn read(&self, _: Address, _: Bytes) -> impl Future<Output = Result<Bytes, String>> + Send {
        std::future::ready(Ok(Bytes::from(U256::ZERO.to_be_bytes::<32>().to_vec())))
    }
    fn preflight(
        &self,
        _: &str,
        _: &Call,
        _: &Effect,
    ) -> impl Future<Output = Result<(), String>> + Send {
        std::future::ready(self.preflight.clone())
    }
}

fn config() -> Config {
    let mut c = Config::empty();
    c.actions.insert(
        "pause-vault".into(),
        ActionDef {
            name: "pause-vault".into(),
            kind: ActionKind::Pause,
            description: "pause".into(),
            target: Some(VAULT),
            function: Some("pause()".into()),
            executor: Some("module".into()),
            cooldown_ms: 60_000,
            pause: PauseParams {
                paused_getter: Some("paused()".into()),
                ..PauseParams::default()
            },
            parameter: None,
            timing: Default::default(),
        },
    );
    c
}

fn trip(policy: &str, block: u64) -> Trip {
    Trip {
        policy: policy.into(),
        block,
        time_ms: block * 1_000,
        action: "pause-vault".into(),
        severity: Severity::Critical,
        mode: Mode::Enforce,
        evidence: serde_json::json!({ "change_pct": -50.0 }),
        summary: format!("{policy} held at block {block}"),
    }
}

async fn decide(guard: &mut Guard, t: &Trip, preflight: Result<(), String>) -> Decision {
    guard.review(t, &View { preflight }).await
}

fn signed(decision_id: u64, nonce: u64, replacement: u32) -> SignedTx {
    SignedTx {
        decision_id,
        hash: B256::repeat_byte(replacement as u8 + 1),
        sender: BOT,
        nonce,
        fees: Fees {
            max_fee: 30_000_000_000 + u128::from(replacement),
            priority_fee: 2_000_000_000,
        },
        replacement,
        raw: Bytes::from(vec![0x02, replacement as u8]),
    }
}

fn journal_at(dir: &Path) -> JournalConfig {
    JournalConfig::at(dir.join("guardian.db"))
}

#[tokio::test]
async fn a_restart_finds_the_resume_point_the_action_in_flight_and_the_guard_state() {
    let dir = tempfile::tempdir().unwrap();
    let at = journal_at(dir.path());
    let mut guard = Guard::new(&config());
    {
        let j = Journal::open(&at).unwrap();
        assert_eq!(j.bind_network("local", 31337).unwrap(), None);
        j.mark_processed("local", 41, B256::repeat_byte(41), 41_000)
            .unwrap();
        // Block 42: a trip, approved, its first transaction sent and a replacement signed.
        let t = trip("vault-drain", 42);
        let d = decide(&mut guard, &t, Ok(())).await;
        assert!(matches!(d.outcome, Outcome::Approved(_)));
        j.record_decision("local", TripOrigin::Block, &t, None, &d, None)
            .unwrap();
        j.signed(&signed(d.decision_id, 7, 0)).unwrap();
        j.broadcast(B256::repeat_byte(1), None);
        j.signed(&signed(d.decision_id, 7, 1)).unwrap();
        // A later trip in the cooldown, rejected: journaled with its reason.
        let t = trip("vault-drain-fast", 43);
        let d = decide(&mut guard, &t, Ok(())).await;
        assert!(d.rejection().is_some());
        j.record_decision(
            "local",
            TripOrigin::Pending,
            &t,
            Some(B256::repeat_byte(9)),
            &d,
            None,
        )
        .unwrap();
    } // the process dies here: nothing finished

    let j = Journal::open(&at).unwrap();
    assert_eq!(
        j.bind_network("local", 31337).unwrap(),
        Some((41, B256::repeat_byte(41)))
    );
    assert!(matches!(
        j.bind_network("local", 1),
        Err(JournalError::WrongChain {
            recorded: 31337,
            configured: 1,
            ..
        })
    ));
    // Block 42 was not marked processed, but its trip was decided: a replay must not decide it again.
    let decided = j.decided_after("local", 41).unwrap();
    assert_eq!(
        decided,
        [("vault-drain".to_string(), 42)].into_iter().collect()
    );

    let unfinished = j.unfinished().unwrap();
    assert_eq!(unfinished.len(), 1);
    let u = &unfinished[0];
    assert_eq!((u.decision_id, u.executor.as_str()), (1, "module"));
    assert!(matches!(&u.effect, Effect::Paused { getters } if getters.len() == 1));
    assert_eq!(u.txs, vec![signed(1, 7, 0), signed(1, 7, 1)]);

    // The guard is rebuilt: ids continue, the approval's cooldown holds.
    let past = j.past_decisions().unwrap();
    assert_eq!(past[0].counted, Some(Counted::Approved));
    assert_eq!(past[1].counted, None);
    let mut restored = Guard::new(&config());
    restored.restore(past);
    let d = decide(&mut restored, &trip("vault-drain", 44), Ok(())).await;
    assert_eq!(d.decision_id, 3);
    assert!(
        d.rejection()
            .is_some_and(|r| r.to_string().contains("cooldown")),
        "{d:?}"
    );

    // The in-flight action lands: its replacement was the one mined.
    j.finish(
        1,
        &Ok(Execution::Landed {
            tx: B256::repeat_byte(2),
            block: 43,
            replacements: 1,
            fees: signed(1, 7, 1).fees,
        }),
    )
    .unwrap();
    assert!(j.unfinished().unwrap().is_empty());
    let h = j.history(&HistoryFilter::default()).unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!(h[0].status, "landed");
    assert_eq!(h[0].tx_block, Some(43));
    let statuses: Vec<&str> = h[0]
        .transactions
        .iter()
        .map(|t| t.status.as_str())
        .collect();
    assert_eq!(statuses, ["replaced", "landed"]);
    assert_eq!(h[0].evidence["change_pct"], -50.0);
    assert_eq!(h[1].outcome, "rejected");
    assert_eq!(h[1].rejection.as_deref(), Some("action-cooldown"));
    assert_eq!(h[1].origin, "pending");
    assert!(h[1].pending_tx.is_some());
}

#[tokio::test]
async fn an_approval_interrupted_before_signing_neither_blocks_nor_is_followed() {
    let dir = tempfile::tempdir().unwrap();
    let at = journal_at(dir.path());
    let mut guard = Guard::new(&config());
    let j = Journal::open(&at).unwrap();
    j.bind_network("local", 31337).unwrap();
    let t = trip("vault-drain", 10);
    let d = decide(&mut guard, &t, Ok(())).await;
    j.record_decision("local", TripOrigin::Block, &t, None, &d, Some(1))
        .unwrap();
    drop(j);

    let j = Journal::open(&at).unwrap();
    assert!(
        j.unfinished().unwrap().is_empty(),
        "nothing was sent: nothing to follow"
    );
    let h = j.history(&HistoryFilter::default()).unwrap();
    assert_eq!(h[0].status, "interrupted");
    assert_eq!(h[0].replica, Some(1));
    // The cooldown does not hold back a new attempt (nothing was sent); the rate limits still count it.
    let past = j.past_decisions().unwrap();
    assert_eq!(past[0].counted, Some(Counted::RateLimits));
    let mut restored = Guard::new(&config());
    restored.restore(past);
    let d = decide(&mut restored, &trip("vault-drain", 11), Ok(())).await;
    assert!(matches!(d.outcome, Outcome::Approved(_)), "{d:?}");
}

#[tokio::test]
async fn history_filters_by_policy_status_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(&journal_at(dir.path())).unwrap();
    j.bind_network("local", 31337).unwrap();
    let mut guard = Guard::new(&config());
    for (policy, block, preflight) in [
        ("a", 1, Err("EnforcedPause()".to_string())),
        ("b", 2, Ok(())),
        ("a", 3, Err("EnforcedPause()".to_string())),
    ] {
        let t = trip(policy, block);
        let d = decide(&mut guard, &t, preflight).await;
        j.record_decision("local", TripOrigin::Block, &t, None, &d, None)
            .unwrap();
    }
    let all = j.history(&HistoryFilter::default()).unwrap();
    assert_eq!(
        all.iter().map(|e| e.decision_id).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(all[0].rejection.as_deref(), Some("preflight-reverted"));
    assert!(all[0].detail.as_deref().unwrap().contains("EnforcedPause"));
    let only = |f: HistoryFilter| -> Vec<u64> {
        j.history(&f)
            .unwrap()
            .iter()
            .map(|e| e.decision_id)
            .collect()
    };
    let policy_a = HistoryFilter {
        policy: Some("a".into()),
        ..HistoryFilter::default()
    };
    assert_eq!(only(policy_a), [1, 3]);
    let executing = HistoryFilter {
        status: Some("executing".into()),
        ..HistoryFilter::default()
    };
    assert_eq!(only(executing), [2]);
    let rejected_latest = HistoryFilter {
        status: Some("rejected".into()),
        limit: Some(1),
        ..HistoryFilter::default()
    };
    assert_eq!(only(rejected_latest), [3]);
    let future = HistoryFilter {
        since_ms: Some(all[2].recorded_ms + 60_000),
        ..HistoryFilter::default()
    };
    assert!(only(future).is_empty());
    let until = HistoryFilter {
        until_ms: Some(all[2].recorded_ms),
        ..HistoryFilter::default()
    };
    assert_eq!(only(until), [1, 2, 3]);
    // A rejection at preflight counts for the rate limits, not for cooldowns.
    let past = j.past_decisions().unwrap();
    assert_eq!(past[0].counted, Some(Counted::RateLimits));
    // A reader does not get in the writer's way.
    let reader = Journal::open_read_only(j.path()).unwrap();
    assert_eq!(reader.history(&HistoryFilter::default()).unwrap().len(), 3);
}

#[test]
fn one_writer_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let at = journal_at(dir.path());
    let first = Journal::open(&at).unwrap();
    assert!(matches!(
        Journal::open(&at),
        Err(JournalError::InUse { .. })
    ));
    // Readers are welcome.
    assert!(Journal::open_read_only(&at.path).is_ok());
    drop(first);
    assert!(Journal::open(&at).is_ok());
}
