//! Golden tests on real traces from `../shared/data/traces/`: the Nomad drain
//! through the bridge starter pack, and a gas-spike detector calibrated on one
//! benign base-fee trace and replayed on the other three.
//!
//! Golden files live in `tests/golden/`; `GUARDIAN_BLESS=1 cargo test` rewrites
//! them after an intended change (review the diff before committing).

#[path = "common/traces.rs"]
mod traces;

use guardian::calibrate::{self, DetectorSpec, Request};
use guardian::config::Config;
use guardian::policy::model::Direction;
use guardian::policy::{Engine, Mode, compile_str};
use guardian::replay::replay;
use guardian::source::trace::TraceReader;
use guardian::units::{Window, parse_alarm_rate};
use traces::{guardian_ok, root, shared_trace};

/// Compares `actual` with the golden file, or rewrites it under GUARDIAN_BLESS=1.
fn golden(name: &str, actual: &str) {
    let path = root().join("tests/golden").join(name);
    if std::env::var_os("GUARDIAN_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with GUARDIAN_BLESS=1 to create it)",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{} differs from this run's output:\n{actual}",
        path.display()
    );
}

#[test]
fn nomad_drain_trips_the_bridge_pack_within_five_blocks() {
    let trace = shared_trace("nomad-2022-08-01-drain.csv");
    let stdout = guardian_ok(
        &[
            "simulate",
            "--config",
            "simulations/traces/nomad.toml",
            "--json",
            "--trace",
        ],
        &[&trace],
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (summary, trips) = lines.split_last().unwrap();
    // The trace-format spec: required keys on every trip line, a final summary line.
    for trip in trips {
        for key in ["policy", "block", "time_ms", "action", "evidence"] {
            assert!(trip.get(key).is_some(), "trip line without {key}: {trip}");
        }
    }
    let summary = &summary["summary"];
    assert_eq!(summary["samples_read"], 1026);
    let first_block = summary["first_block"].as_u64().unwrap();
    let first_trip = trips
        .iter()
        .find(|t| t["policy"] == "bridge-withdrawal-burst")
        .unwrap();
    let blocks_in = first_trip["block"].as_u64().unwrap() - first_block;
    assert!(blocks_in < 5, "tripped {blocks_in} blocks into the drain");
    // The drain's first block is 0 blocks in: tripped by its second block.
    assert!(blocks_in <= 1, "tripped {blocks_in} blocks into the drain");
    golden("nomad-bridge.jsonl", &stdout);
}

#[test]
fn gas_spike_detector_calibrated_on_one_benign_trace_reported_on_the_others() {
    let calibration_trace = "basefee-2022-05-13.csv";
    let others = [
        "basefee-2022-05-12-luna.csv",
        "basefee-2022-07-01.csv",
        "basefee-2023-05-03-pepe.csv",
    ];
    let mut report = String::new();
    for (name, detector, direction) in [
        (
            "ewma",
            DetectorSpec::Ewma {
                halflife: 50.0,
                warmup: 100,
            },
            Direction::Up,
        ),
        (
            "cusum",
            DetectorSpec::Cusum {
                warmup: 100,
                slack: 1.0,
            },
            Direction::Up,
        ),
    ] {
        let request = Request {
            metric: "chain.base_fee_gwei".into(),
            detector,
            direction,
            false_alarms: parse_alarm_rate("1/30d").unwrap(),
            cooldown: Window::Millis(3_600_000),
            hold: None,
            margin_pct: 0.0,
            action: "alert-gas".into(),
            attacks: Vec::new(),
            injections: 0,
            horizon_blocks: 0,
        };
        let c = calibrate::calibrate(&[shared_trace(calibration_trace)], &request).unwrap();
        // 818 samples cannot vouch for 1/30d: calibrate says so, with the rate they can.
        assert!(!c.rate_supported && c.warnings[0].contains("NOT SUPPORTED BY THE DATA"));
        assert!(c.trips <= c.allowed);
        report += &format!(
            "{name}: threshold {} from {calibration_trace} ({} samples, {} trips, {} allowed)\n",
            c.threshold, c.samples, c.trips, c.allowed
        );
        let set = compile_str("calibrated", &c.policy_toml, &Config::empty()).unwrap();
        for other in others {
            let mut engine = Engine::new(set.clone(), Mode::AlertOnly);
            let mut reader = TraceReader::open(&shared_trace(other)).unwrap();
            let mut first = Vec::new();
            let summary = replay(&mut reader, &mut engine, &mut |t| {
                if first.len() < 3 {
                    first.push(t.block);
                }
            })
            .unwrap();
            report += &format!(
                "  {other}: {} trips over {} samples, first at blocks {first:?}\n",
                summary.trips_total(),
                summary.samples_read
            );
        }
    }
    println!("{report}");
    golden("basefee-calibrated.txt", &report);
}

fn guardian_stdout(args: &[&str]) -> String {
    guardian_ok(args, &[])
}

#[test]
fn explain_states_the_starter_pack_in_plain_language() {
    golden(
        "explain-starter.txt",
        &guardian_stdout(&["explain", "policies/starter"]),
    );
}

#[test]
fn explain_reports_behaviour_on_a_trace() {
    let text = guardian_stdout(&[
        "explain",
        "--config",
        "simulations/traces/nomad.toml",
        "--trace",
        "simulations/traces/nomad-2022-08-01-drain.csv",
    ]);
    assert!(
        text.contains("11 trip(s), first at block 15259102"),
        "{text}"
    );
    golden("explain-nomad.txt", &text);
}

#[test]
fn diff_says_what_tightened_and_what_loosened() {
    let text = guardian_stdout(&[
        "diff",
        "tests/fixtures/diff/old.toml",
        "tests/fixtures/diff/new.toml",
        "--accept-loosening",
    ]);
    for needle in [
        "change of `vault.total_assets`: 30% -> 20% (tightened: trips sooner)",
        "sum limit on `vault.outflow`: 20% -> 25% (loosened: trips later)",
        "mode: alert-only -> enforce (now sends its action when it trips)",
        "ADDED share-price-drop",
        "REMOVED oracle-stale",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    golden("diff-fixture.txt", &text);
    let same = guardian_stdout(&[
        "diff",
        "tests/fixtures/diff/old.toml",
        "tests/fixtures/diff/old.toml",
    ]);
    assert_eq!(same, "no changes to any policy\n");
}

#[test]
fn starter_packs_pause_nothing_on_the_real_base_fee_days() {
    for day in [
        "basefee-2022-05-12-luna.csv",
        "basefee-2022-05-13.csv",
        "basefee-2022-07-01.csv",
        "basefee-2023-05-03-pepe.csv",
    ] {
        let trace = shared_trace(day);
        let stdout = guardian_ok(
            &[
                "simulate",
                "--policies",
                "policies/starter",
                "--json",
                "--trace",
            ],
            &[&trace],
        );
        let pauses: Vec<&str> = stdout
            .lines()
            .filter(|l| l.contains("\"policy\"") && !l.contains("\"mode\":\"alert-only\""))
            .collect();
        assert!(pauses.is_empty(), "{day}: {pauses:?}");
    }
}
