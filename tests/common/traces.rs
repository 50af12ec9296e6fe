//! What the offline tests share: the repository root, the shared data's
//! traces, and the `guardian` binary run there. Included on its own (with
//! `#[path]`) by tests that need no chain.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use guardian::decision::Trip;
use guardian::metrics::Sample;
use guardian::policy::Engine;

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/data/traces/<name>` from the repository root, or from
/// `GUARDIAN_SHARED_DATA` (a `data` folder) when the checkout lives elsewhere.
pub fn shared_trace(name: &str) -> PathBuf {
    let default = root().join("../shared/data/traces").join(name);
    match std::env::var_os("GUARDIAN_SHARED_DATA") {
        Some(dir) if !default.exists() => PathBuf::from(dir).join("traces").join(name),
        _ => default,
    }
}

/// Feeds `(block, time_ms, metric, value)` rows to `engine` in order (a
/// metric no policy reads is a tick), pushing its trips onto `trips`.
pub fn feed_rows<'a>(
    engine: &mut Engine,
    rows: impl IntoIterator<Item = (u64, u64, &'a str, f64)>,
    trips: &mut Vec<Trip>,
) {
    for (block, time_ms, metric, value) in rows {
        match engine.metric_id(metric) {
            Some(metric) => engine.on_sample(
                Sample {
                    block,
                    time_ms,
                    metric,
                    value,
                },
                &mut |t| trips.push(t),
            ),
            None => engine.on_tick(block, time_ms, &mut |t| trips.push(t)),
        }
    }
}

/// `guardian ARGS PATHS` run in the repository root; fails unless it exits 0; its stdout.
pub fn guardian_ok(args: &[&str], paths: &[&Path]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_guardian"))
        .args(args)
        .args(paths)
        .current_dir(root())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `guardian ARGS` run in the repository root, whatever its exit: its exit
/// code, and its stdout followed by its stderr.
pub fn guardian_cmd(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_guardian"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("the guardian binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}
