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
        format!("error: policy `broken`: cooldown: `ten minutes` is not a window\n --> {p}:6:12"),
        format!("error: `downwards` is not a valid direction\n  --> {p}:11:13"),
        format!("error: unknown field `colour` in policy `broken`.when\n  --> {p}:13:1"),
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
        "error: policy `p`: unknown action `pause-valt`",
        "typos.toml:5:10\n",
        "= help: did you mean `pause-vault`?",
        "error: policy `p`.when: unknown metric `vault.total_asets`",
        "typos.toml:9:10\n",
        "= help: did you mean `vault.total_assets`?",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

#[test]
fn check_shows_each_problem_with_its_source_line_a_caret_and_help() {
    let config = temp_file(
        "shown-guardian.toml",
        "[guardian]\nmode = \"dryrun\"\nhistroy_blocks = 10\n\n[metrics.\"vault.total_assets\"]\ndescription = \"les actifs — tous\"\n",
    );
    let out = guardian(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let mode_help = "did you mean `dry-run`? (one of: enforce, dry-run, alert-only)";
    assert_shown(
        &err,
        &config,
        (2, 8),
        "mode = \"dryrun\"",
        (8, 8),
        "`dryrun` is not a valid mode",
        Some(mode_help),
    );
    let field = "unknown field `histroy_blocks` in [guardian]";
    assert_shown(
        &err,
        &config,
        (3, 1),
        "histroy_blocks = 10",
        (1, 14),
        field,
        Some("did you mean `history_blocks`?"),
    );
    assert!(err.ends_with("\n2 problem(s) found\n"), "{err}");
    assert!(!err.contains('\x1b'), "no colour without a terminal: {err}");

    // Five problems in one policy, two of them on lines with multi-byte characters.
    let policy = temp_file(
        "shown-policy.toml",
        "[[policy]]\nid = \"brisé\"\ndescription = \"trois erreurs — été\"\nseverity = \"critique‼\"\naction = \"pause\"\ncooldown = \"dix minutes\"\n[policy.when]\nkind = \"change\"\nmetric = \"vault.tvl\"\nwindow = \"5 blocks\"\ndirection = \"downwards\"\nby = 0.1\ncolour = \"red\"\n",
    );
    let out = guardian(&["check", policy.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let id = "policy id `brisé` may only use letters, digits and _ . : -";
    assert_shown(&err, &policy, (2, 6), "id = \"brisé\"", (6, 7), id, None);
    let severity = "did you mean `critical`? (one of: info, warning, critical)";
    assert_shown(
        &err,
        &policy,
        (4, 12),
        "severity = \"critique‼\"",
        (12, 11),
        "`critique‼` is not a valid severity",
        Some(severity),
    );
    let window = "write a block count (\"5 blocks\") or a duration (\"90s\", \"10m\", \"1h\")";
    assert_shown(
        &err,
        &policy,
        (6, 12),
        "cooldown = \"dix minutes\"",
        (12, 13),
        "this policy: cooldown: `dix minutes` is not a window",
        Some(window),
    );
    let direction = "did you mean `down`? (one of: up, down, either)";
    assert_shown(
        &err,
        &policy,
        (11, 13),
        "direction = \"downwards\"",
        (13, 11),
        "`downwards` is not a valid direction",
        Some(direction),
    );
    let fields = "known fields here: by, direction, for, kind, metric, window, within";
    assert_shown(
        &err,
        &policy,
        (13, 1),
        "colour = \"red\"",
        (1, 6),
        "unknown field `colour` in this policy.when",
        Some(fields),
    );
    assert!(err.ends_with("\n5 problem(s) found\n"), "{err}");

    // Under --log-format json the same problems keep their one-line form inside the JSON line.
    let out = guardian(&["--log-format", "json", "check", policy.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let first = text(&out.stderr)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    let line: serde_json::Value = serde_json::from_str(&first).expect("a JSON line");
    let message = line["fields"]["message"].as_str().unwrap_or_default();
    let one_line = format!(
        "{}:4:12: `critique‼` is not a valid severity\n    hint: {severity}",
        policy.display()
    );
    assert!(message.contains(&one_line), "{message}");
    assert!(!message.contains(" --> "), "{message}");
}

/// The caret line under a source line numbered `line`: `width` carets from display column `column`.
fn carets(line: usize, column: usize, width: usize) -> String {
    let gutter = " ".repeat(line.to_string().len());
    format!(
        "{gutter} | {}{}\n",
        " ".repeat(column - 1),
        "^".repeat(width)
    )
}

/// Asserts `err` shows one problem as rustc does: the message, ` --> file:line:col`,
/// the source line, carets under the span (at `display_column`) and the help line.
fn assert_shown(
    err: &str,
    path: &std::path::Path,
    at: (usize, usize),
    source: &str,
    caret: (usize, usize),
    message: &str,
    help: Option<&str>,
) {
    let (line, column) = at;
    let gutter = " ".repeat(line.to_string().len());
    let help = help.map_or(String::new(), |h| {
        format!("{gutter} |\n{gutter} = help: {h}\n")
    });
    let carets = carets(line, caret.0, caret.1);
    let where_ = format!("{gutter}--> {}:{line}:{column}", path.display());
    let block =
        format!("error: {message}\n{where_}\n{gutter} |\n{line} | {source}\n{carets}{help}");
    assert!(err.contains(&block), "missing\n{block}\nin:\n{err}");
}

#[test]
fn a_problem_without_a_location_still_names_its_file() {
    // A folder given as the configuration exists but cannot be read as a file.
    let dir = std::env::temp_dir().join(format!("guardian-cli-{}/shown-dir", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = guardian(&["check", "--config", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.starts_with("error: cannot read the file: "), "{err}");
    assert!(
        err.contains(&format!("\n--> {}\n1 problem(s) found", dir.display())),
        "{err}"
    );
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
