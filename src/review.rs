//! `guardian diff --config OLD NEW`: what changes between two `guardian.toml`
//! files, for the reviewer of a pull request, and which changes loosen the
//! guard (more power to the bot: wider bounds, shorter cooldowns, higher rate
//! limits, a less cautious mode, a new target or action) or remove something
//! a policy relies on (an action, an executor). Together with the policy
//! diff ([`crate::explain::diff`]), such changes make `diff` exit 1 unless
//! the reviewer passes `--accept-loosening`.

use std::fmt::Write;

use crate::config::{ActionDef, Config, RateLimit};
use crate::policy::Mode;
use crate::units::DisplayMillis;

/// One change, and whether it loosens or removes something.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    pub what: String,
    /// `loosened`, `removed`, `tightened`, `added` or `changed`.
    pub verdict: &'static str,
}

impl Change {
    /// Whether a reviewer must accept it explicitly.
    pub fn needs_acceptance(&self) -> bool {
        matches!(self.verdict, "loosened" | "removed")
    }
}

fn caution(mode: Mode) -> u8 {
    match mode {
        Mode::Enforce => 0,
        Mode::DryRun => 1,
        Mode::AlertOnly => 2,
    }
}

fn ms(v: u64) -> String {
    if v == 0 {
        "none".into()
    } else {
        DisplayMillis(v).to_string()
    }
}

fn rate(r: Option<RateLimit>) -> String {
    r.map_or("none".into(), |r| {
        format!("{}/{}", r.count, DisplayMillis(r.per_ms))
    })
}

/// Actions per millisecond allowed (none: unlimited).
fn allowance(r: Option<RateLimit>) -> f64 {
    r.map_or(f64::INFINITY, |r| {
        f64::from(r.count) / r.per_ms.max(1) as f64
    })
}

/// A duration limit: longer is tighter.
fn duration_change(out: &mut Vec<Change>, what: &str, old: u64, new: u64) {
    if old != new {
        out.push(Change {
            what: format!("{what}: {} -> {}", ms(old), ms(new)),
            verdict: if new < old { "loosened" } else { "tightened" },
        });
    }
}

fn rate_change(out: &mut Vec<Change>, what: &str, old: Option<RateLimit>, new: Option<RateLimit>) {
    if old != new {
        out.push(Change {
            what: format!("{what}: {} -> {}", rate(old), rate(new)),
            verdict: if allowance(new) > allowance(old) {
                "loosened"
            } else {
                "tightened"
            },
        });
    }
}

fn action_changes(out: &mut Vec<Change>, o: &ActionDef, n: &ActionDef) {
    let name = &n.name;
    let show = |a: Option<alloy::primitives::Address>| a.map_or("none".into(), |a| a.to_string());
    if o.target != n.target || o.function != n.function {
        out.push(Change {
            what: format!(
                "action `{name}`: calls {} on {} -> {} on {}",
                o.function.as_deref().unwrap_or("nothing"),
                show(o.target),
                n.function.as_deref().unwrap_or("nothing"),
                show(n.target)
            ),
            verdict: "loosened",
        });
    }
    if o.executor != n.executor {
        out.push(Change {
            what: format!(
                "action `{name}`: executor {} -> {}",
                o.executor.as_deref().unwrap_or("none"),
                n.executor.as_deref().unwrap_or("none")
            ),
            verdict: "changed",
        });
    }
    duration_change(
        out,
        &format!("action `{name}` cooldown"),
        o.cooldown_ms,
        n.cooldown_ms,
    );
    match (&o.parameter, &n.parameter) {
        (Some(a), Some(b)) => {
            if a.min != b.min || a.max != b.max {
                out.push(Change {
                    what: format!(
                        "action `{name}` bounds: [{}, {}] -> [{}, {}]",
                        a.min, a.max, b.min, b.max
                    ),
                    verdict: if b.min < a.min || b.max > a.max {
                        "loosened"
                    } else {
                        "tightened"
                    },
                });
            }
            if a.max_change_bps != b.max_change_bps {
                out.push(Change {
                    what: format!(
                        "action `{name}` max change per update: {} bps -> {} bps",
                        a.max_change_bps, b.max_change_bps
                    ),
                    verdict: if b.max_change_bps > a.max_change_bps {
                        "loosened"
                    } else {
                        "tightened"
                    },
                });
            }
            duration_change(
                out,
                &format!("action `{name}` min delay"),
                a.min_delay_ms,
                b.min_delay_ms,
            );
        }
        (None, None) => {}
        _ => out.push(Change {
            what: format!("action `{name}`: its kind changed (pause / set-parameter)"),
            verdict: "loosened",
        }),
    }
}

/// Every change from `old` to `new` that matters to the guard.
pub fn config_changes(old: &Config, new: &Config) -> Vec<Change> {
    let mut out = Vec::new();
    if old.mode != new.mode {
        out.push(Change {
            what: format!("mode: {} -> {}", old.mode, new.mode),
            verdict: if caution(new.mode) < caution(old.mode) {
                "loosened"
            } else {
                "tightened"
            },
        });
    }
    for (name, o) in &old.actions {
        match new.actions.get(name) {
            None => out.push(Change {
                what: format!("action `{name}` removed: policies naming it can no longer act"),
                verdict: "removed",
            }),
            Some(n) => action_changes(&mut out, o, n),
        }
    }
    for name in new.actions.keys().filter(|n| !old.actions.contains_key(*n)) {
        out.push(Change {
            what: format!("action `{name}` added: a new call the guard may approve"),
            verdict: "loosened",
        });
    }
    let (og, ng) = (&old.guard, &new.guard);
    duration_change(
        &mut out,
        "[guard] target_cooldown",
        og.target_cooldown_ms,
        ng.target_cooldown_ms,
    );
    rate_change(&mut out, "[guard] rate_limit", og.rate_limit, ng.rate_limit);
    rate_change(
        &mut out,
        "[guard] target_rate_limit",
        og.target_rate_limit,
        ng.target_rate_limit,
    );
    for (name, o) in &old.executors {
        match new.executors.get(name) {
            None => out.push(Change {
                what: format!("executor `{name}` removed"),
                verdict: "removed",
            }),
            Some(n) if n.kind != o.kind || n.network != o.network => out.push(Change {
                what: format!(
                    "executor `{name}`: {} -> {} (its key, Safe, module or network changed)",
                    o.kind.as_str(),
                    n.kind.as_str()
                ),
                verdict: "changed",
            }),
            Some(_) => {}
        }
    }
    for name in new
        .executors
        .keys()
        .filter(|n| !old.executors.contains_key(*n))
    {
        out.push(Change {
            what: format!("executor `{name}` added"),
            verdict: "added",
        });
    }
    out
}

/// Lines of a policy diff ([`crate::explain::diff`]) that loosen protection
/// or remove it: a removed policy, a threshold that trips later, a longer
/// cooldown, a mode that no longer sends, a rewritten condition.
pub fn policy_loosenings(diff: &str) -> Vec<String> {
    const MARKS: [&str; 6] = [
        "REMOVED ",
        "loosened",
        "(longer:",
        "now only alerts",
        "never broadcasts it",
        "condition rewritten",
    ];
    diff.lines()
        .filter(|l| MARKS.iter().any(|m| l.contains(m)))
        .map(|l| l.trim().to_string())
        .collect()
}

/// The configuration changes as text, one per line, with their verdict.
pub fn describe(changes: &[Change]) -> String {
    let mut s = String::new();
    for c in changes {
        let _ = writeln!(s, "  {:<10} {}", c.verdict.to_uppercase(), c.what);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("guardian.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path).unwrap_or_else(|e| panic!("{e}"))
    }

    const BASE: &str = r#"
[guardian]
mode = "dry-run"

[actions.pause-vault]
kind = "pause"
description = "pause"
target = "0x00000000000000000000000000000000000000aa"
function = "pause()"

[guard]
target_cooldown = "10m"
rate_limit = "5/1d"
"#;

    #[test]
    fn looser_limits_a_bolder_mode_and_a_removed_action_need_acceptance() {
        let old = config(BASE);
        let new = config(
            &BASE
                .replace("mode = \"dry-run\"", "mode = \"enforce\"")
                .replace("10m", "1m")
                .replace("5/1d", "2/1d"),
        );
        let changes = config_changes(&old, &new);
        let verdicts: Vec<(&str, &str)> = changes
            .iter()
            .map(|c| (c.what.as_str(), c.verdict))
            .collect();
        assert!(
            verdicts.contains(&("mode: dry-run -> enforce", "loosened")),
            "{verdicts:?}"
        );
        assert!(
            verdicts.contains(&("[guard] target_cooldown: 10m -> 1m", "loosened")),
            "{verdicts:?}"
        );
        assert!(
            verdicts.contains(&("[guard] rate_limit: 5/1d -> 2/1d", "tightened")),
            "{verdicts:?}"
        );
        let gone = config(&BASE.replace("[actions.pause-vault]", "[actions.pause-other]"));
        let changes = config_changes(&old, &gone);
        assert!(
            changes
                .iter()
                .any(|c| c.verdict == "removed" && c.what.contains("pause-vault"))
        );
        assert!(changes.iter().all(|c| c.what != "mode: dry-run -> dry-run"));
        assert!(config_changes(&old, &old).is_empty());
    }
}
