//! Property tests: the engine's incremental windows against a naive reference
//! that keeps every sample and recomputes from scratch.

use guardian::config::Config;
use guardian::metrics::Sample;
use guardian::policy::{Engine, Mode, compile_str};
use proptest::prelude::*;

#[derive(Debug, Clone, Copy)]
struct Row {
    block: u64,
    time_ms: u64,
    value: f64,
}

/// Samples whose blocks mostly advance but sometimes repeat or go back (a reorg's
/// corrected samples, never deeper than the history's reorg margin), with
/// non-decreasing times.
fn rows() -> impl Strategy<Value = Vec<Row>> {
    prop::collection::vec((-2i64..6, 0u64..30_000, -1e6f64..1e6), 1..200).prop_map(|steps| {
        let mut block: i64 = 1000;
        let mut highest: i64 = 1000;
        let depth = guardian::metrics::history::REORG_DEPTH as i64;
        let mut time = 1_000_000u64;
        steps
            .into_iter()
            .map(|(gap, dt, value)| {
                block = (block + gap).max(1000).max(highest - depth);
                highest = highest.max(block);
                time += dt;
                Row {
                    block: block as u64,
                    time_ms: time,
                    value,
                }
            })
            .collect()
    })
}

#[derive(Debug, Clone, Copy)]
enum W {
    Blocks(u64),
    Millis(u64),
}

fn window() -> impl Strategy<Value = W> {
    prop_oneof![
        (1u64..25).prop_map(W::Blocks),
        (1u64..300_000).prop_map(W::Millis)
    ]
}

fn window_text(w: W) -> String {
    match w {
        W::Blocks(n) => format!("{n} blocks"),
        W::Millis(ms) => format!("{ms}ms"),
    }
}

fn inside(w: W, e: &Row, now: &Row) -> bool {
    match w {
        W::Blocks(n) => e.block + n > now.block,
        W::Millis(ms) => e.time_ms + ms > now.time_ms,
    }
}

/// The naive history: every sample, truncated on rollback.
fn naive_histories(rows: &[Row]) -> Vec<Vec<Row>> {
    let mut kept: Vec<Row> = Vec::new();
    rows.iter()
        .map(|r| {
            while kept.last().is_some_and(|l| l.block >= r.block) {
                kept.pop();
            }
            kept.push(*r);
            kept.clone()
        })
        .collect()
}

/// Runs a policy over the rows and returns, after each sample, the evidence of its
/// condition as the engine judged it (None while it could not be judged).
fn evidence_per_sample(when: &str, rows: &[Row]) -> Vec<Option<serde_json::Value>> {
    let text = format!(
        "[[policy]]\nid = \"p\"\ndescription = \"x\"\nseverity = \"info\"\naction = \"a\"\ncooldown = \"0 blocks\"\n[policy.when]\n{when}\n"
    );
    let set = compile_str("prop.toml", &text, &Config::empty()).unwrap();
    let mut engine = Engine::new(set, Mode::AlertOnly);
    let metric = engine.metric_id("m").unwrap();
    rows.iter()
        .map(|r| {
            engine.on_sample(
                Sample {
                    block: r.block,
                    time_ms: r.time_ms,
                    metric,
                    value: r.value,
                },
                &mut |_| {},
            );
            engine.current_evidence(0)
        })
        .collect()
}

fn close(a: f64, b: f64, scale: f64) -> bool {
    (a - b).abs() <= 1e-9 * scale.max(1.0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn windowed_sum_matches_naive(rows in rows(), w in window()) {
        let when = format!("kind = \"sum\"\nmetric = \"m\"\nwindow = \"{}\"\nop = \">=\"\nvalue = 0", window_text(w));
        let got = evidence_per_sample(&when, &rows);
        for (hist, ev) in naive_histories(&rows).iter().zip(&got) {
            let now = hist.last().unwrap();
            let in_window: Vec<&Row> = hist.iter().filter(|e| inside(w, e, now)).collect();
            let expected: f64 = in_window.iter().map(|e| e.value).sum();
            let scale: f64 = in_window.iter().map(|e| e.value.abs()).sum();
            let ev = ev.as_ref().expect("a sum is always judged");
            prop_assert!(close(ev["sum"].as_f64().unwrap(), expected, scale), "sum {} vs {}", ev["sum"], expected);
            prop_assert_eq!(ev["samples"].as_u64().unwrap(), in_window.len() as u64);
        }
    }

    #[test]
    fn windowed_change_matches_naive(rows in rows(), w in window()) {
        let when = format!("kind = \"change\"\nmetric = \"m\"\nwindow = \"{}\"\ndirection = \"either\"\nby = 1", window_text(w));
        let got = evidence_per_sample(&when, &rows);
        for (hist, ev) in naive_histories(&rows).iter().zip(&got) {
            let now = hist.last().unwrap();
            let base = hist.iter().rev().find(|e| !inside(w, e, now));
            match (base, ev) {
                (None, None) => {}
                (Some(base), Some(ev)) => {
                    prop_assert_eq!(ev["from"]["block"].as_u64().unwrap(), base.block);
                    prop_assert_eq!(ev["from"]["value"].as_f64().unwrap(), base.value);
                    prop_assert_eq!(ev["change"].as_f64().unwrap(), now.value - base.value);
                }
                (base, ev) => prop_assert!(false, "base {:?} but evidence {:?}", base, ev),
            }
        }
    }

    #[test]
    fn windowed_rate_matches_naive(rows in rows(), n in 1u64..25, per_second in any::<bool>()) {
        let per = if per_second { "second" } else { "block" };
        let when = format!("kind = \"rate\"\nmetric = \"m\"\nwindow = \"{n} blocks\"\nper = \"{per}\"\ndirection = \"either\"\nabove = 1");
        let got = evidence_per_sample(&when, &rows);
        for (hist, ev) in naive_histories(&rows).iter().zip(&got) {
            let now = hist.last().unwrap();
            let base = hist.iter().rev().find(|e| e.block + n <= now.block);
            let expected = base.and_then(|b| {
                let elapsed = if per_second { (now.time_ms - b.time_ms) as f64 / 1000.0 } else { (now.block - b.block) as f64 };
                (elapsed > 0.0).then(|| (now.value - b.value) / elapsed)
            });
            match (expected, ev) {
                (None, None) => {}
                (Some(rate), Some(ev)) => prop_assert!(close(ev["rate"].as_f64().unwrap(), rate, rate.abs())),
                (expected, ev) => prop_assert!(false, "expected {:?} but evidence {:?}", expected, ev),
            }
        }
    }

    #[test]
    fn replay_is_deterministic(rows in rows(), w in window()) {
        let when = format!("kind = \"sum\"\nmetric = \"m\"\nwindow = \"{}\"\nop = \">\"\nvalue = 0", window_text(w));
        let a = evidence_per_sample(&when, &rows);
        let b = evidence_per_sample(&when, &rows);
        prop_assert_eq!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap());
    }
}
