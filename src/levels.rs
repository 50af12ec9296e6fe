//! The two scales a trip is graded on: its severity (info, warning,
//! critical) and its mode (enforce, dry-run, alert-only).
//!
//! Below every stage: the configuration sets a default mode, policies set
//! both, the decision carries them, the guard and alerts read them.

use std::fmt;

/// How serious a trip is; passed to alerts and the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub const CHOICES: [(&'static str, Severity); 3] = [
        ("info", Severity::Info),
        ("warning", Severity::Warning),
        ("critical", Severity::Critical),
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// What happens to a trip: acted on, only alerted, or prepared but never broadcast.
///
/// Modes are ordered from most to least permissive; where a policy and the
/// global configuration disagree, the more cautious one wins (see [`Mode::most_cautious`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// The action is sent (after the guard approves it).
    Enforce,
    /// Everything up to signing runs; nothing is broadcast.
    DryRun,
    /// Only an alert is raised; no transaction is built.
    AlertOnly,
}

impl Mode {
    pub const CHOICES: [(&'static str, Mode); 3] = [
        ("enforce", Mode::Enforce),
        ("dry-run", Mode::DryRun),
        ("alert-only", Mode::AlertOnly),
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::DryRun => "dry-run",
            Mode::AlertOnly => "alert-only",
        }
    }
    fn caution(self) -> u8 {
        match self {
            Mode::Enforce => 0,
            Mode::DryRun => 1,
            Mode::AlertOnly => 2,
        }
    }
    /// The more cautious of two modes.
    pub fn most_cautious(self, other: Mode) -> Mode {
        if other.caution() > self.caution() {
            other
        } else {
            self
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
