//! The `guardian` binary as a user runs it: exit codes and located errors.

use std::path::PathBuf;
use std::process::{Command, Output};

fn guardian(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_guardian"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the guardian binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn temp_file(name: &str, contents: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("guardian-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn check_accepts_the_shipped_policies_and_fixtures() {
    for dir in ["policies/starter", "tests/fixtures/v1"] {
        let out = guardian(&["check", dir]);
        assert_eq!(out.status.code(), Some(0), "{dir}: {}", text(&out.stderr));
        assert!(
            text(&out.stdout).starts_with("ok: "),
            "{}",
            text(&out.stdout)
        );
    }
    let out = guardian(&["check", "--config", "simulations/traces/nomad.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn check_rejects_a_broken_policy_with_every_error_located() {
    let path = temp_file(
        "broken.toml",
        r#"[[policy]]
id = "broken"
description = "three mistakes"
severity = "critical"
action = "pause"
cooldown = "ten minutes"
[policy.when]
kind = "change"
metric = "vault.tvl"
window = "5 blocks"
direction = "downwards"
by = 0.1
colour = "red"
"#,
    );
    let out = guardian(&["check", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let p = path.display();
    for needle in [
        format!("{p}:6:12: policy `broken`: cooldown: `ten minutes` is not a window"),
        format!("{p}:11:13: `downwards` is not a valid direction"),
        format!("{p}:13:1: unknown field `colour` in policy `broken`.when"),
        "3 problem(s) found".to_string(),
    ] {
        assert!(err.contains(&needle), "missing {needle:?} in:\n{err}");
    }
    // `by = 0.1` is valid: a bare number is an amount in the metric's units, never a percent.
}

#[test]
fn check_reports_unknown_metrics_and_actions_against_a_config() {
    let config = temp_file(
        "guardian.toml",
        "[guardian]\nmode = \"dry-run\"\n\n[metrics.\"vault.total_assets\"]\ndescription = \"assets\"\n\n[actions.pause-vault]\nkind = \"pause\"\ndescription = \"pause\"\n",
    );
    let policy = temp_file(
        "typos.toml",
        "[[policy]]\nid = \"p\"\ndescription = \"x\"\nseverity = \"info\"\naction = \"pause-valt\"\ncooldown = \"1m\"\n[policy.when]\nkind = \"threshold\"\nmetric = \"vault.total_asets\"\nop = \">\"\nvalue = 1\n",
    );
    let out = guardian(&[
        "check",
        "--config",
        config.to_str().unwrap(),
        policy.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    for needle in [
        ":5:10: policy `p`: unknown action `pause-valt`",
        "did you mean `pause-vault`?",
        ":9:10: policy `p`.when: unknown metric `vault.total_asets`",
        "did you mean `vault.total_assets`?",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

#[test]
fn missing_files_cannot_run() {
    let out = guardian(&["check", "no/such/dir"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no/such/dir: no such file or folder"));
    let out = guardian(&[
        "simulate",
        "--trace",
        "no-such.csv",
        "--policies",
        "policies/starter",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn simulate_stops_at_a_malformed_row_with_its_location() {
    let trace = temp_file(
        "bad.csv",
        "block,time_ms,metric,value\n1,1000,bridge.withdrawals,1\n2,2000,bridge.withdrawals,1e400\n",
    );
    let out = guardian(&[
        "simulate",
        "--trace",
        trace.to_str().unwrap(),
        "--policies",
        "policies/starter/bridge.toml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:3:27: value `1e400` is not a finite decimal number",
            trace.display()
        )),
        "{err}"
    );
}

#[test]
fn calibrate_prints_a_policy_that_checks() {
    let out = guardian(&[
        "calibrate",
        "--trace",
        "../shared/data/traces/basefee-2022-05-13.csv",
        "--metric",
        "chain.base_fee_gwei",
        "--detector",
        "ewma",
        "--false-alarms",
        "1/30d",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["threshold"].as_f64().unwrap() > 0.0);
    assert!(v["trips"].as_u64().unwrap() <= v["allowed"].as_u64().unwrap());
    let policy = temp_file("calibrated.toml", v["policy"].as_str().unwrap());
    let out = guardian(&["check", policy.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}
