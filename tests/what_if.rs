//! What-if evaluation: a pending transaction's snapshot of the next block is
//! judged by the same policies, and leaves the engine exactly as it was.

#[path = "common/traces.rs"]
mod traces;

use guardian::config::Config;
use guardian::decision::Trip;
use guardian::policy::{Engine, Mode, compile_str};
use traces::feed_rows;

const POLICIES: &str = r#"
[[policy]]
id = "cash-drop"
description = "cash falls 30% within 3 blocks"
severity = "critical"
action = "pause"
cooldown = "10 blocks"
[policy.when]
kind = "change"
metric = "cash"
window = "3 blocks"
direction = "down"
by = "30%"

[[policy]]
id = "outflow-spike"
description = "outflows far above their baseline"
severity = "critical"
action = "pause"
cooldown = "0 blocks"
[policy.when]
kind = "ewma"
metric = "outflow"
halflife = 10
z = 6
warmup = 10
direction = "up"
"#;

fn engine() -> Engine {
    let set =
        compile_str("what-if.toml", POLICIES, &Config::empty()).unwrap_or_else(|e| panic!("{e}"));
    Engine::new(set, Mode::Enforce)
}

fn feed(e: &mut Engine, block: u64, cash: f64, outflow: f64) -> Vec<Trip> {
    let mut trips = Vec::new();
    let time_ms = block * 12_000;
    let rows = [
        (block, time_ms, "cash", cash),
        (block, time_ms, "outflow", outflow),
    ];
    feed_rows(e, rows, &mut trips);
    trips
}

fn ids(trips: &[Trip]) -> Vec<(String, u64)> {
    trips.iter().map(|t| (t.policy.clone(), t.block)).collect()
}

#[test]
fn a_what_if_trip_names_the_values_before_and_after() {
    let mut e = engine();
    for b in 100..120 {
        assert!(feed(&mut e, b, 1_000.0, 1.0 + (b % 3) as f64).is_empty());
    }
    let cash = e.metric_id("cash").unwrap();
    let outflow = e.metric_id("outflow").unwrap();
    // A pending transaction that would take 60% of the cash.
    let trips = e.what_if(120, 119 * 12_000 + 300, &[(cash, 400.0), (outflow, 600.0)]);
    let policies: Vec<&str> = trips.iter().map(|t| t.policy.as_str()).collect();
    assert_eq!(policies, ["cash-drop", "outflow-spike"]);
    let changed = &trips[0].evidence["what_if"]["changed"];
    assert_eq!(changed["cash"]["before"], 1_000.0);
    assert_eq!(changed["cash"]["after"], 400.0);
    assert_eq!(trips[0].evidence["what_if"]["block"], 120);
    // A benign one trips nothing.
    assert!(
        e.what_if(120, 119 * 12_000 + 400, &[(cash, 990.0), (outflow, 2.0)])
            .is_empty()
    );
}

#[test]
fn what_if_commits_nothing() {
    // Two engines see the same blocks; one also evaluates a what-if after every block.
    let (mut plain, mut probed) = (engine(), engine());
    let cash = plain.metric_id("cash").unwrap();
    let outflow = plain.metric_id("outflow").unwrap();
    let mut what_if_trips = 0;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for block in 100..160u64 {
        // A slow drain late on, an outflow spike at 140: both engines must trip alike.
        let level = if block < 150 {
            1_000.0
        } else {
            1_000.0 - (block - 149) as f64 * 150.0
        };
        let out = if block == 140 {
            500.0
        } else {
            1.0 + (block % 4) as f64
        };
        a.extend(ids(&feed(&mut plain, block, level, out)));
        b.extend(ids(&feed(&mut probed, block, level, out)));
        // Each what-if would trip both policies (after warm-up); none of it may stick.
        what_if_trips += probed
            .what_if(
                block + 1,
                block * 12_000 + 500,
                &[(cash, 1.0), (outflow, 10_000.0)],
            )
            .len();
    }
    assert!(
        what_if_trips > 40,
        "the what-ifs tripped {what_if_trips} times"
    );
    assert_eq!(a, b, "a what-if changed what the real blocks trip");
    assert!(
        a.iter().any(|(p, _)| p == "cash-drop") && a.iter().any(|(p, _)| p == "outflow-spike"),
        "{a:?}"
    );
    assert_eq!(plain.stats(), probed.stats());
}
