//! Calibration against an independent count: synthetic attacks injected into
//! a real benign trace from shared data (the Ethereum base fee on 2022-05-13),
//! and calibrate's false-alarm and detection-delay figures checked against a
//! separate, plain implementation of the same condition written here.

#[path = "common/traces.rs"]
mod traces;

use std::path::Path;
use std::process::{Command, Stdio};

use guardian::calibrate::{self, Attack, CalibrateError, DetectorSpec, Request};
use guardian::policy::model::Direction;
use guardian::units::{Window, parse_alarm_rate};
use traces::shared_trace;

/// The trace's (block, time_ms, value) rows of `metric`, read with plain string splitting.
fn rows(path: &Path, metric: &str) -> Vec<(u64, u64, f64)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("block,"))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[2] == metric).then(|| {
                (
                    f[0].parse().unwrap(),
                    f[1].parse().unwrap(),
                    f[3].parse().unwrap(),
                )
            })
        })
        .collect()
}

const WINDOW: u64 = 3;
const COOLDOWN: u64 = 20;
const HORIZON: u64 = 10;

/// Trip blocks of "value rose by at least `t`% since the newest sample at or
/// before `WINDOW` blocks ago", with a cooldown of `COOLDOWN` blocks.
fn independent_trips(data: &[(u64, u64, f64)], t: f64) -> Vec<u64> {
    let mut trips: Vec<u64> = Vec::new();
    for (i, &(b, _, v)) in data.iter().enumerate() {
        let Some(&(_, _, base)) = data[..i].iter().rev().find(|r| r.0 + WINDOW <= b) else {
            continue;
        };
        let pct = (v - base) / base.abs() * 100.0;
        let cooled = trips.last().is_none_or(|last| b - last >= COOLDOWN);
        if pct >= t && cooled {
            trips.push(b);
        }
    }
    trips
}

/// The attack applied by hand: a one-block jump, or a rise that stays.
fn attacked(data: &[(u64, u64, f64)], attack: Attack, start: u64) -> Vec<(u64, u64, f64)> {
    data.iter()
        .map(|&(b, t, v)| {
            let v = match attack {
                Attack::Jump { pct } if b == start => v * (1.0 + pct / 100.0),
                Attack::Drop { pct } if b >= start => v * (1.0 - pct / 100.0),
                _ => v,
            };
            (b, t, v)
        })
        .collect()
}

fn request(false_alarms: &str, attacks: Vec<Attack>) -> Request {
    Request {
        metric: "chain.base_fee_gwei".into(),
        detector: DetectorSpec::Change {
            window: Window::Blocks(WINDOW),
        },
        direction: Direction::Up,
        false_alarms: parse_alarm_rate(false_alarms).unwrap(),
        cooldown: Window::Blocks(COOLDOWN),
        hold: None,
        margin_pct: 10.0,
        action: "alert".into(),
        attacks,
        injections: 5,
        horizon_blocks: HORIZON,
    }
}

#[test]
fn calibrate_figures_match_an_independent_count_on_a_real_benign_trace() {
    let trace = shared_trace("basefee-2022-05-13.csv");
    let attacks = vec![Attack::Jump { pct: 100.0 }, Attack::Drop { pct: -60.0 }];
    let c = calibrate::calibrate(
        std::slice::from_ref(&trace),
        &request("1/1h", attacks.clone()),
    )
    .unwrap();
    let data = rows(&trace, "chain.base_fee_gwei");
    let span_ms = data.last().unwrap().1 - data[0].1;
    assert_eq!(c.span_ms, span_ms);
    assert_eq!(c.samples, data.len() as u64);
    assert_eq!(c.allowed, (span_ms as f64 / 3_600_000.0).floor() as u64);
    assert!(c.rate_supported, "{:?}", c.warnings);
    assert_eq!(c.injected_at.len(), 5);
    assert!(c.candidates.len() >= 5, "{:?}", c.candidates);
    // The calibrated threshold holds the benign trips within the allowance, and
    // the one just below (before rounding up) would not.
    let benign = c.benign_threshold.unwrap();
    assert!(independent_trips(&data, benign).len() as u64 <= c.allowed);
    assert!(independent_trips(&data, benign * 0.999).len() as u64 > c.allowed);
    // The margin (10%) widens it, rounded up to three significant digits.
    assert!(
        c.threshold >= benign * 1.1 && c.threshold <= benign * 1.1 * 1.01,
        "{} vs {benign}",
        c.threshold
    );
    let mut report = String::new();
    for cand in &c.candidates {
        let false_alarms = independent_trips(&data, cand.threshold).len() as u64;
        assert_eq!(
            cand.false_alarms, false_alarms,
            "threshold {}",
            cand.threshold
        );
        let per_30d = false_alarms as f64 * 30.0 * 86_400_000.0 / span_ms as f64;
        assert!((cand.false_alarms_per_30d - per_30d).abs() < 1e-9);
        let mut delays = Vec::new();
        for attack in &attacks {
            for (_, start) in &c.injected_at {
                let until = start + attack.blocks() - 1 + HORIZON;
                let hit = independent_trips(&attacked(&data, *attack, *start), cand.threshold)
                    .into_iter()
                    .find(|b| b >= start && *b <= until);
                if let Some(b) = hit {
                    delays.push(b - start);
                }
            }
        }
        delays.sort_unstable();
        assert_eq!(cand.injected, 10);
        assert_eq!(
            cand.caught,
            delays.len() as u64,
            "threshold {}",
            cand.threshold
        );
        assert_eq!(cand.delays_blocks, delays, "threshold {}", cand.threshold);
        report += &format!(
            "threshold {:>7}%: {} false alarms ({:.1}/30d), caught {}/10, delays {:?}\n",
            cand.threshold, false_alarms, per_30d, cand.caught, delays
        );
    }
    println!("{report}");
    // Some candidate catches every attack, and a larger threshold catches fewer.
    assert!(c.candidates.iter().any(|k| k.caught == k.injected));
    assert!(c.candidates.last().unwrap().caught <= c.candidates[0].caught);
    assert!(c.policy_toml.contains("trade-off"), "{}", c.policy_toml);
}

#[test]
fn a_rate_the_data_cannot_support_is_said_with_the_rate_it_can() {
    let trace = shared_trace("basefee-2022-05-13.csv");
    let c = calibrate::calibrate(&[trace], &request("1/30d", Vec::new())).unwrap();
    assert!(!c.rate_supported);
    assert_eq!(c.allowed, 0);
    assert_eq!(c.supported, "1/3h");
    let warning = &c.warnings[0];
    assert!(
        warning.starts_with("NOT SUPPORTED BY THE DATA"),
        "{warning}"
    );
    assert!(warning.contains("supports at most 1/3h"), "{warning}");
    assert!(
        c.policy_toml
            .contains("# WARNING: NOT SUPPORTED BY THE DATA")
    );
    assert!(!c.policy_toml.contains("calibrated for at most 1/30d"));
}

#[test]
fn a_metric_that_never_moved_that_way_gets_no_absurd_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("rising.csv");
    let mut text = String::from("block,time_ms,metric,value\n");
    for b in 0..400u64 {
        text += &format!(
            "{},{},vault.share_price,{}\n",
            1000 + b,
            1_700_000_000_000 + b * 12_000,
            1.0 + b as f64 * 1e-5
        );
    }
    std::fs::write(&trace, text).unwrap();
    let mut r = request("1/1h", Vec::new());
    r.metric = "vault.share_price".into();
    r.direction = Direction::Down;
    let err = calibrate::calibrate(std::slice::from_ref(&trace), &r).unwrap_err();
    assert!(matches!(err, CalibrateError::NeverMoved { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("never moved `vault.share_price` down"),
        "{err}"
    );
    // With attacks, the threshold comes from the trade-off and is said to.
    r.attacks = vec![Attack::Drop { pct: 2.0 }];
    let c = calibrate::calibrate(&[trace], &r).unwrap();
    assert!(c.benign_threshold.is_none());
    assert!(c.threshold > 0.01, "threshold {}", c.threshold);
    assert!(
        c.warnings.iter().any(|w| w.contains("not a calibration")),
        "{:?}",
        c.warnings
    );
    let caught = c
        .candidates
        .iter()
        .find(|k| k.threshold == c.threshold)
        .unwrap();
    assert_eq!(caught.caught, caught.injected);
}

#[test]
fn calibrate_into_a_closed_pipe_exits_cleanly() {
    let trace = shared_trace("basefee-2022-05-13.csv");
    let mut child = Command::new(env!("CARGO_BIN_EXE_guardian"))
        .args([
            "calibrate",
            "--metric",
            "chain.base_fee_gwei",
            "--detector",
            "ewma",
            "--false-alarms",
            "1/1h",
            "--trace",
        ])
        .arg(&trace)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `| head -0`: the reader goes away before anything is written.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
