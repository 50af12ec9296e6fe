//! `guardian history`: the audit trail a journal holds — every trip, the
//! guard's decision on it, and the transactions sent — filtered by policy,
//! time and status, as text or one JSON object per decision.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::journal::{HistoryEntry, HistoryFilter, Journal, JournalError};

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The guardian configuration whose `[journal] path` to read.
    #[arg(long, required_unless_present = "journal")]
    pub config: Option<PathBuf>,
    /// The journal file to read (instead of the configuration's).
    #[arg(long)]
    pub journal: Option<PathBuf>,
    /// Only this policy's decisions.
    #[arg(long)]
    pub policy: Option<String>,
    /// Only decisions since then: a duration ago (`2h`), an RFC 3339 time, or unix ms.
    #[arg(long)]
    pub since: Option<String>,
    /// Only decisions until then (same forms as --since).
    #[arg(long)]
    pub until: Option<String>,
    /// Only this outcome or status: approved, alert-only, already-done, rejected,
    /// executing, landed, failed, stood-down, dry-run, proposed, interrupted.
    #[arg(long)]
    pub status: Option<String>,
    /// At most this many decisions (the latest).
    #[arg(long)]
    pub limit: Option<u64>,
    /// One JSON object per decision.
    #[arg(long)]
    pub json: bool,
}

/// Why the history cannot be printed.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error(
        "{}: no journal there (a journal is created by `guardian run` with [journal] path or --journal)", .0.display()
    )]
    NoJournal(PathBuf),
    #[error(
        "`{0}` is not a time: write a duration ago (`2h`, `30m`, `7d`), an RFC 3339 time (`2026-01-31T12:00:00Z`) or unix milliseconds"
    )]
    BadTime(String),
    #[error("--status `{given}` is not a status; use one of: {}", STATUSES.join(", "))]
    BadStatus { given: String },
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("cannot write the history: {0}")]
    Io(#[from] std::io::Error),
}

/// Every outcome and status a decision can have (what `--status` filters on).
pub const STATUSES: [&str; 11] = [
    "approved",
    "alert-only",
    "already-done",
    "rejected",
    "executing",
    "landed",
    "failed",
    "stood-down",
    "dry-run",
    "proposed",
    "interrupted",
];

/// A time bound: a duration ago, an RFC 3339 time, or unix milliseconds.
pub fn parse_time(text: &str, now_ms: u64) -> Result<u64, HistoryError> {
    let t = text.trim();
    if let Ok(ms) = t.parse::<u64>() {
        return Ok(ms);
    }
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(t) {
        return u64::try_from(at.timestamp_millis())
            .map_err(|_| HistoryError::BadTime(text.into()));
    }
    match crate::units::parse_duration(t) {
        Ok(ago) => Ok(now_ms.saturating_sub(ago)),
        Err(_) => Err(HistoryError::BadTime(text.into())),
    }
}

/// Prints the history of the journal at `path` to `out`.
pub fn print(
    path: &Path,
    filter: &HistoryFilter,
    json: bool,
    out: &mut impl Write,
) -> Result<usize, HistoryError> {
    if !path.is_file() {
        return Err(HistoryError::NoJournal(path.to_path_buf()));
    }
    let journal = Journal::open_read_only(path)?;
    let entries = journal.history(filter)?;
    if json {
        for e in &entries {
            writeln!(out, "{}", serde_json::to_string(e).unwrap_or_default())?;
        }
        return Ok(entries.len());
    }
    for (network, block) in journal.processed()? {
        match block {
            Some(b) => writeln!(out, "network {network}: processed up to block {b}")?,
            None => writeln!(out, "network {network}: no block processed yet")?,
        }
    }
    if entries.is_empty() {
        writeln!(out, "no decisions match")?;
    }
    for e in &entries {
        writeln!(out, "{}", line(e))?;
    }
    Ok(entries.len())
}

/// `guardian history`: exit 0 with the trail printed; 2 when the journal or a time cannot be read.
pub fn command(args: HistoryArgs) -> std::process::ExitCode {
    use std::process::ExitCode;
    let fail = |message: String| {
        crate::say!("error: {message}");
        ExitCode::from(2)
    };
    // A bad filter value is invalid input: exit 1, never "no decisions match".
    let invalid = |e: HistoryError| {
        crate::say!("error: {e}");
        ExitCode::from(1)
    };
    if let Some(s) = &args.status
        && !STATUSES.contains(&s.as_str())
    {
        return invalid(HistoryError::BadStatus { given: s.clone() });
    }
    let path = match (&args.journal, &args.config) {
        (Some(p), _) => p.clone(),
        (None, Some(c)) => {
            if !c.exists() {
                return fail(format!("{}: no such file", c.display()));
            }
            match crate::config::Config::load(c) {
                Ok(config) => match config.journal {
                    Some(j) => j.path,
                    None => {
                        return fail(format!(
                            "{}: the configuration has no [journal]; pass --journal <file>",
                            c.display()
                        ));
                    }
                },
                Err(d) => {
                    crate::say::diagnostics(&d);
                    return ExitCode::from(1);
                }
            }
        }
        (None, None) => return fail("give --config or --journal".into()),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let bound = |t: &Option<String>| t.as_deref().map(|t| parse_time(t, now)).transpose();
    let filter = match (bound(&args.since), bound(&args.until)) {
        (Ok(since_ms), Ok(until_ms)) => HistoryFilter {
            policy: args.policy.clone(),
            since_ms,
            until_ms,
            status: args.status.clone(),
            limit: args.limit,
        },
        (Err(e), _) | (_, Err(e)) => return invalid(e),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result = print(&path, &filter, args.json, &mut out);
    let _ = out.flush();
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => fail(e.to_string()),
    }
}

/// A wei amount from the journal as gwei ("3.375 gwei").
fn gwei(wei: &str) -> String {
    wei.parse::<u128>().map_or_else(
        |_| format!("{wei} wei"),
        |w| crate::units::DisplayGwei(w).to_string(),
    )
}

fn time(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(i64::try_from(ms).unwrap_or(i64::MAX)).map_or_else(
        || ms.to_string(),
        |t| t.format("%Y-%m-%d %H:%M:%S%.3fZ").to_string(),
    )
}

/// One decision as text: when, which policy and action, on what, the outcome,
/// what became of it, and each transaction.
fn line(e: &HistoryEntry) -> String {
    let mut s = format!(
        "{} decision {}: {} -> {} at block {} on {} ({}){}: {}",
        time(e.recorded_ms),
        e.decision_id,
        e.policy,
        e.action,
        e.block,
        e.network,
        match e.origin.as_str() {
            "block" => "mined block",
            "pending" => "pending transaction",
            "stale" => "no new head",
            other => other,
        },
        e.replica.map_or(String::new(), |r| format!(" replica {r}")),
        e.outcome,
    );
    if let Some(d) = &e.detail {
        s.push_str(&format!(" ({d})"));
    }
    if e.status != e.outcome {
        s.push_str(&format!(" -> {}", e.status));
        if let Some(d) = &e.status_detail {
            s.push_str(&format!(" ({d})"));
        }
    }
    if let (Some(tx), Some(b)) = (&e.tx, e.tx_block) {
        s.push_str(&format!(" tx {tx} in block {b}"));
    }
    s.push_str(&format!("\n    {}", e.summary));
    if let Some(p) = &e.pending_tx {
        s.push_str(&format!("\n    on pending tx {p}"));
    }
    for t in &e.transactions {
        s.push_str(&format!(
            "\n    tx {} nonce {} max fee {} tip {} replacement {}: {}",
            t.hash,
            t.nonce,
            gwei(&t.max_fee_wei),
            gwei(&t.priority_fee_wei),
            t.replacement,
            t.status
        ));
        if let Some(d) = &t.detail {
            s.push_str(&format!(" ({d})"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_durations_ago_rfc3339_or_millis() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_time("2h", now).unwrap(), now - 7_200_000);
        assert_eq!(
            parse_time("2027-01-15T08:00:00Z", now).unwrap(),
            1_800_000_000_000
        );
        assert_eq!(
            parse_time("2027-01-15T09:00:00+01:00", now).unwrap(),
            1_800_000_000_000
        );
        assert_eq!(parse_time("1700000000000", now).unwrap(), 1_700_000_000_000);
        assert!(matches!(
            parse_time("yesterday", now),
            Err(HistoryError::BadTime(_))
        ));
    }
}
