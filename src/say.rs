//! Lines for the operator on stderr (the [`say!`](crate::say!) macro): plain
//! text, or one JSON object shaped like the JSON log lines under
//! `--log-format json`. Below every command, so any module may speak.

use std::sync::atomic::{AtomicBool, Ordering};

/// Whether operator lines go out as JSON (`--log-format json`).
static JSON_LINES: AtomicBool = AtomicBool::new(false);

/// Sets the format of every later line: JSON objects, or plain text.
pub fn set_json(json: bool) {
    JSON_LINES.store(json, Ordering::Relaxed);
}

/// Writes one operator line to stderr: as is, or as a JSON object shaped like
/// the JSON log lines (`timestamp`, `level`, `fields.message`, `target`).
pub fn line(message: &str) {
    if JSON_LINES.load(Ordering::Relaxed) {
        let level = if message.starts_with("error") {
            "ERROR"
        } else {
            "INFO"
        };
        let v = serde_json::json!({
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "level": level,
            "fields": { "message": message },
            "target": "guardian",
        });
        eprintln!("{v}");
    } else {
        eprintln!("{message}");
    }
}

/// Writes every problem of a file to stderr, then their count. As plain text
/// they are rendered the way rustc shows errors (the source line, a caret
/// under the span, the hint as `help:`), in colour only when stderr is a
/// terminal and `NO_COLOR` is unset; under `--log-format json` each problem is
/// its one-line form inside the JSON line, as before.
pub fn diagnostics(found: &crate::config::reader::Diagnostics) {
    if JSON_LINES.load(Ordering::Relaxed) {
        line(&found.to_string());
    } else {
        eprintln!("{}", found.render(stderr_wants_colour()));
    }
    line(&format!("{} problem(s) found", found.len()));
}

/// Colour on stderr: only on a terminal, and never with `NO_COLOR` set (https://no-color.org).
pub fn stderr_wants_colour() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
