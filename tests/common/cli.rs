//! The `guardian` binary, run as a user runs it.

use std::process::Command;

/// Runs the `guardian` binary with `args` from the repository root: its exit
/// code, and its stdout followed by its stderr.
pub fn guardian_cmd(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_guardian"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("the guardian binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}
