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
