//! The `[journal]` section: where `guardian run` keeps its state across
//! restarts, and how replicas of one configuration share the work.
//!
//! ```toml
//! [journal]
//! path = "state/guardian.db"   # resolved against this file's folder
//! sync = "full"                # "full" (default): each signed transaction is on disk before it is broadcast; "normal": survives a crash of the process, not of the machine
//! warmup_blocks = 64           # blocks re-read (trips suppressed) before the resume point, to refill policy windows
//! max_warmup_blocks = 20000    # at most this many: a policy needing more history says it is blind until it has it
//! replica = 0                  # only when running replicas: this process's index (0, 1, 2 ...)
//! replica_stagger = "2s"       # replica k waits k × this before sending, then re-checks the chain
//! ```
//!
//! `guardian run` in `enforce` mode refuses to start without a journal (here,
//! or `--journal`): without one a restart could send an action again.

use std::path::Path;

use super::exec::duration;
use super::reader::{self, Reporter, TableReader, as_choice, as_u64};

/// How hard journal commits are pushed to disk. Every commit survives a
/// crash of the process (`kill -9`) either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalSync {
    /// Each signed transaction (and with it every earlier record) is flushed to
    /// the disk before it is broadcast: a power cut never loses a sent
    /// transaction. Other commits are not flushed one by one; what a power cut
    /// loses of them (the last blocks marked, decisions that sent nothing) a
    /// restart derives again.
    Full,
    /// Nothing is flushed commit by commit (SQLite `synchronous = NORMAL`, WAL):
    /// a power cut may lose the last commits, sent transactions included.
    Normal,
}

/// Default for `warmup_blocks`.
pub const DEFAULT_WARMUP_BLOCKS: u64 = 64;
/// Default for `max_warmup_blocks`.
pub const DEFAULT_MAX_WARMUP_BLOCKS: u64 = 20_000;
/// Default for `replica_stagger`.
pub const DEFAULT_REPLICA_STAGGER_MS: u64 = 2_000;

/// A validated `[journal]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalConfig {
    /// The SQLite file, resolved against the configuration's folder.
    pub path: std::path::PathBuf,
    pub sync: JournalSync,
    /// Blocks before the resume point read again after a restart (their trips are not acted on).
    pub warmup_blocks: u64,
    /// The most blocks a restart re-reads, however long the policies' windows:
    /// `warmup_blocks` is raised to what the longest window needs, up to this.
    pub max_warmup_blocks: u64,
    /// This process's index among replicas of the same configuration; `None`: a single instance.
    pub replica: Option<u32>,
    /// Replica k waits k × this before sending an approved action, then re-checks the chain.
    pub replica_stagger_ms: u64,
}

impl JournalConfig {
    /// A journal at `path` with the defaults (used by `guardian run --journal`).
    pub fn at(path: impl Into<std::path::PathBuf>) -> Self {
        Self {
            path: path.into(),
            sync: JournalSync::Full,
            warmup_blocks: DEFAULT_WARMUP_BLOCKS,
            max_warmup_blocks: DEFAULT_MAX_WARMUP_BLOCKS,
            replica: None,
            replica_stagger_ms: DEFAULT_REPLICA_STAGGER_MS,
        }
    }
}

pub(super) fn parse_journal(
    value: &reader::Value<'_>,
    base: &Path,
    r: &mut Reporter<'_>,
) -> Option<JournalConfig> {
    let mut t = TableReader::from_value(value, "[journal]", r)?;
    let path = t.required_string("path", r).map(|(p, _)| base.join(p));
    let mut config = JournalConfig::at(path.clone().unwrap_or_default());
    if let Some(v) = t.get("sync") {
        config.sync = as_choice(
            v,
            "journal sync",
            &[("full", JournalSync::Full), ("normal", JournalSync::Normal)],
            r,
        )
        .unwrap_or(JournalSync::Full);
    }
    if let Some(n) = t.u64("warmup_blocks", r) {
        config.warmup_blocks = n;
    }
    if let Some(n) = t.u64("max_warmup_blocks", r) {
        config.max_warmup_blocks = n;
    }
    if let Some(v) = t.get("replica")
        && let Some(n) = as_u64(v, "replica", r)
    {
        match u32::try_from(n) {
            Ok(n) if n < 16 => config.replica = Some(n),
            _ => r.error(
                &v.span(),
                format!("replica {n} is out of range"),
                Some("number replicas 0, 1, 2 ... (at most 15)".into()),
            ),
        }
    }
    if let Some(ms) = duration(&mut t, "replica_stagger", r) {
        config.replica_stagger_ms = ms;
    }
    t.finish(r);
    path.map(|_| config)
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::super::reader::Diagnostics;
    use super::*;

    fn load(journal: &str) -> Result<Config, Diagnostics> {
        let text = format!("[guardian]\nmode = \"enforce\"\n\n[journal]\n{journal}\n");
        Config::from_text("/etc/guardian/guardian.toml", text)
    }

    #[test]
    fn the_journal_section_loads_with_its_path_beside_the_config() {
        let c = load("path = \"state/guardian.db\"").unwrap();
        assert_eq!(
            c.journal,
            Some(JournalConfig::at("/etc/guardian/state/guardian.db"))
        );
        let c = load(
            "path = \"/var/lib/guardian.db\"\nsync = \"normal\"\nwarmup_blocks = 8\nreplica = 2\nreplica_stagger = \"3s\"",
        )
        .unwrap();
        let j = c.journal.unwrap();
        assert_eq!(j.path, std::path::PathBuf::from("/var/lib/guardian.db"));
        assert_eq!(
            (j.sync, j.warmup_blocks, j.replica, j.replica_stagger_ms),
            (JournalSync::Normal, 8, Some(2), 3_000)
        );
    }

    #[test]
    fn journal_mistakes_are_located() {
        let err = load("sync = \"fast\"\nreplica = 99\nreplica_stagger = \"soon\"\npaht = \"x\"")
            .unwrap_err()
            .to_string();
        for needle in [
            "[journal] is missing `path`",
            "guardian.toml:5:8: `fast` is not a valid journal sync",
            "replica 99 is out of range",
            "replica_stagger:",
            "unknown field `paht`",
        ] {
            assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
        }
    }
}
