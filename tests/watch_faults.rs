//! Issue #13, "Watching under faults": each fault the issue saw, counted over
//! many rows, blocks or trials, with the figure printed.
//!
//! The trace-reader cases run on the real Nomad drain; the watcher cases run
//! on anvil behind the fault-injection proxy (`tests/common/fault_proxy.rs`).

use std::path::{Path, PathBuf};
use std::process::Command;

use guardian::config::Config;
use guardian::policy::Engine;
use guardian::replay::replay;
use guardian::source::trace::{TraceError, TraceReader};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The real Nomad trace: from `../shared/data/traces/` when present, else the
/// repository's unchanged copy of its rows (`simulations/traces/`).
fn nomad_trace() -> PathBuf {
    let shared = root().join("../shared/data/traces/nomad-2022-08-01-drain.csv");
    if shared.is_file() {
        return shared;
    }
    root().join("simulations/traces/nomad-2022-08-01-drain.csv")
}

fn nomad_engine() -> Engine {
    let config = Config::load(&root().join("simulations/traces/nomad.toml")).unwrap();
    let set = guardian::policy::load_policies(&config.policies, &config).unwrap();
    Engine::new(set, config.mode)
}

/// Replays `text`; the error's line when a row is rejected.
fn replay_text(text: &str) -> Result<guardian::replay::ReplaySummary, (u64, String)> {
    let mut reader = TraceReader::new(text.as_bytes(), "nomad.csv");
    replay(&mut reader, &mut nomad_engine(), &mut |_| {}).map_err(|e| match e {
        TraceError::Malformed { line, message, .. } => (line, message),
        TraceError::Io { .. } => (0, e.to_string()),
    })
}

/// The trace with line `line` (1-based) having its block replaced by `block`.
fn with_block(lines: &[&str], line: usize, block: u64) -> String {
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        if i + 1 == line {
            let rest = l.split_once(',').unwrap().1;
            out.push_str(&format!("{block},{rest}\n"));
        } else {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// Issue #13, seen 5: a corrupted block number in the middle of the real Nomad
/// trace (far ahead, or back in the past) is a malformed row at its line.
#[test]
fn trace_rows_with_a_block_jumping_ahead_or_going_back_are_rejected_at_their_line() {
    let text = std::fs::read_to_string(nomad_trace()).unwrap();
    let clean = replay_text(&text).unwrap();
    assert_eq!(clean.blocks_read, 672, "the drain spans 672 blocks");
    assert_eq!(
        (clean.first_block, clean.last_block),
        (Some(15_259_101), Some(15_259_772))
    );
    let lines: Vec<&str> = text.lines().collect();
    let header = lines.iter().position(|l| l.starts_with("block,")).unwrap();
    let first_block: u64 = lines[header + 1]
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let (mut trials, mut ahead, mut back) = (0, 0, 0);
    for line in (header + 3..=lines.len()).step_by(20) {
        let block: u64 = lines[line - 1].split(',').next().unwrap().parse().unwrap();
        trials += 1;
        match replay_text(&with_block(&lines, line, 1_000_000_000_000_000 + block)) {
            Err((l, m)) if l == line as u64 && m.contains("jumps") => ahead += 1,
            other => eprintln!("line {line}, block far ahead: {other:?}"),
        }
        // Two blocks before the first: more than the one block back pending samples may take.
        match replay_text(&with_block(&lines, line, first_block - 2)) {
            Err((l, m)) if l == line as u64 && m.contains("goes back") => back += 1,
            other => eprintln!("line {line}, block back to the start: {other:?}"),
        }
    }
    println!(
        "nomad trace: a block far ahead rejected at its line in {ahead}/{trials} rows, a block back in the past in {back}/{trials} rows"
    );
    assert!(trials >= 50);
    assert_eq!((ahead, back), (trials, trials));
}

/// The issue's exact example through `guardian simulate`: exit 1 and the row's location.
#[test]
fn simulate_stops_at_the_issues_corrupted_nomad_row() {
    let text = std::fs::read_to_string(nomad_trace()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let line = lines
        .iter()
        .position(|l| l.starts_with("15259107,"))
        .unwrap()
        + 1;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nomad-corrupted.csv");
    std::fs::write(&path, with_block(&lines, line, 1_000_000_015_259_107)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_guardian"))
        .args([
            "simulate",
            "--config",
            "simulations/traces/nomad.toml",
            "--trace",
        ])
        .arg(&path)
        .current_dir(root())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let at = format!("{}:{line}:1: block 1000000015259107 jumps", path.display());
    assert!(stderr.contains(&at), "{stderr}");
    // Stepping back in time is refused the same way.
    std::fs::write(&path, with_block(&lines, line + 40, 15_259_101)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_guardian"))
        .args([
            "simulate",
            "--config",
            "simulations/traces/nomad.toml",
            "--trace",
        ])
        .arg(&path)
        .current_dir(root())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(":{}:1: block 15259101 goes back", line + 40)),
        "{stderr}"
    );
}
