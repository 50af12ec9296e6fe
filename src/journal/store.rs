//! The SQLite file behind the journal: schema, writes, and the reads a restart
//! and `guardian history` need.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use alloy::primitives::{Address, B256, Bytes};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::Serialize;

use crate::config::{JournalConfig, JournalSync};
use crate::decision::Trip;
use crate::executor::{Execution, Fees, SignedTx, TxLog};
use crate::guard::{Counted, Decision, Effect, Outcome, PastDecision, Rejection};
use crate::policy::model::Mode;

/// The schema this guardian writes (SQLite `user_version`).
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS networks (
    name        TEXT PRIMARY KEY,
    chain_id    INTEGER NOT NULL,
    last_block  INTEGER,
    last_hash   TEXT,
    last_time_ms INTEGER,
    updated_ms  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS trips (
    id          INTEGER PRIMARY KEY,
    network     TEXT NOT NULL,
    origin      TEXT NOT NULL,
    policy      TEXT NOT NULL,
    action      TEXT NOT NULL,
    block       INTEGER NOT NULL,
    time_ms     INTEGER NOT NULL,
    severity    TEXT NOT NULL,
    mode        TEXT NOT NULL,
    summary     TEXT NOT NULL,
    evidence    TEXT NOT NULL,
    pending_tx  TEXT,
    recorded_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS trips_by_block ON trips (network, block);
CREATE TABLE IF NOT EXISTS decisions (
    decision_id INTEGER PRIMARY KEY,
    trip_id     INTEGER NOT NULL REFERENCES trips (id),
    policy      TEXT NOT NULL,
    action      TEXT NOT NULL,
    block       INTEGER NOT NULL,
    time_ms     INTEGER NOT NULL,
    outcome     TEXT NOT NULL,
    rejection   TEXT,
    detail      TEXT,
    executor    TEXT,
    mode        TEXT,
    call        TEXT,
    effect      TEXT,
    status      TEXT NOT NULL,
    status_detail TEXT,
    tx          TEXT,
    tx_block    INTEGER,
    replica     INTEGER,
    recorded_ms INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_by_status ON decisions (status);
CREATE TABLE IF NOT EXISTS transactions (
    hash        TEXT PRIMARY KEY,
    decision_id INTEGER NOT NULL REFERENCES decisions (decision_id),
    sender      TEXT NOT NULL,
    nonce       INTEGER NOT NULL,
    max_fee     TEXT NOT NULL,
    priority_fee TEXT NOT NULL,
    replacement INTEGER NOT NULL,
    raw         BLOB NOT NULL,
    status      TEXT NOT NULL,
    detail      TEXT,
    block       INTEGER,
    recorded_ms INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS transactions_by_decision ON transactions (decision_id);
";

/// Decision status of an approved action the executor has not finished.
const EXECUTING: &str = "executing";

/// A problem with the journal file. Says which file, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {}: {source} (check the path, its folder's permissions and free space)", path.display())]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "journal {}: written by a newer guardian (schema {found}, this one knows {SCHEMA_VERSION}); run that version or give another journal path", path.display()
    )]
    NewerSchema { path: PathBuf, found: i64 },
    #[error(
        "journal {}: network `{network}` was chain id {recorded}, the configuration says {configured}; a journal follows one chain, give another journal path", path.display()
    )]
    WrongChain {
        path: PathBuf,
        network: String,
        recorded: u64,
        configured: u64,
    },
    #[error(
        "journal {}: another guardian process is using it; give each replica its own [journal] path", path.display()
    )]
    InUse { path: PathBuf },
    #[error("journal {}: cannot lock {}: {source}", path.display(), lock.display())]
    Lock {
        path: PathBuf,
        lock: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("journal {}: {what} is not valid ({detail}); the file was changed by something else than guardian", path.display())]
    Corrupt {
        path: PathBuf,
        what: &'static str,
        detail: String,
    },
}

/// Where a trip came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TripOrigin {
    /// A mined block's snapshot.
    Block,
    /// A pending transaction's estimated effect.
    Pending,
    /// The watchdog's `head_age` while no new head arrives.
    Stale,
}

impl TripOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            TripOrigin::Block => "block",
            TripOrigin::Pending => "pending",
            TripOrigin::Stale => "stale",
        }
    }
}

/// An approved action a previous run did not finish.
#[derive(Debug, Clone)]
pub struct Unfinished {
    pub decision_id: u64,
    pub policy: String,
    pub action: String,
    pub executor: String,
    pub effect: Effect,
    /// Every transaction signed for it, oldest first.
    pub txs: Vec<SignedTx>,
}

/// Filters for [`Journal::history`].
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    pub policy: Option<String>,
    /// Decisions recorded at or after this unix time (ms).
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
    /// The decision's outcome or status (`approved`, `rejected`, `landed`, `stood-down` ...).
    pub status: Option<String>,
    /// At most this many, the latest.
    pub limit: Option<u64>,
}

/// One row of the audit trail: a trip, the guard's decision, its transactions.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    pub decision_id: u64,
    pub recorded_ms: u64,
    pub policy: String,
    pub action: String,
    pub network: String,
    pub origin: String,
    pub block: u64,
    pub trip_time_ms: u64,
    pub severity: String,
    pub mode: String,
    pub summary: String,
    pub evidence: serde_json::Value,
    pub pending_tx: Option<String>,
    /// approved | alert-only | already-done | rejected
    pub outcome: String,
    /// The rejection's kind (kebab-case), when rejected.
    pub rejection: Option<String>,
    /// The rejection's reason or the already-done detail.
    pub detail: Option<String>,
    pub executor: Option<String>,
    /// executing | landed | failed | stood-down | dry-run | proposed | interrupted, or the outcome.
    pub status: String,
    pub status_detail: Option<String>,
    /// The transaction that landed, and its block.
    pub tx: Option<String>,
    pub tx_block: Option<u64>,
    pub replica: Option<u32>,
    pub transactions: Vec<HistoryTx>,
}

/// One transaction of a decision.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryTx {
    pub hash: String,
    pub sender: String,
    pub nonce: u64,
    pub max_fee_wei: String,
    pub priority_fee_wei: String,
    pub replacement: u32,
    /// signed | sent | refused | landed | replaced
    pub status: String,
    pub detail: Option<String>,
    pub block: Option<u64>,
}

/// The journal: one SQLite connection, writes committed before they return.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// `sync = "full"`: the commit of a signed transaction is flushed to the disk
    /// (`synchronous = FULL` for that commit). In WAL mode that flush also
    /// carries every earlier commit (the decision, the trip), so one flush per
    /// broadcast covers them all.
    flush_before_broadcast: bool,
    /// The writer's exclusive lock on `<path>.lock`, held while the journal is open.
    _lock: Option<std::fs::File>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// SQLite stores integers as i64; block numbers, ids and times fit.
fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn uint(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Journal {
    /// Opens (creating if needed) the journal `config` names, for this process
    /// alone: a second writer is refused (`<path>.lock`, released by the
    /// operating system when the process ends, even by `kill -9`).
    pub fn open(config: &JournalConfig) -> Result<Journal, JournalError> {
        let path = config.path.clone();
        let mut lock_path = path.clone().into_os_string();
        lock_path.push(".lock");
        let lock_path = PathBuf::from(lock_path);
        let lock_err = |source| JournalError::Lock {
            path: path.clone(),
            lock: lock_path.clone(),
            source,
        };
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(lock_err)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(JournalError::InUse { path });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(lock_err(e)),
        }
        let err = |source| JournalError::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        // WAL: readers (`guardian history`) never block the writer.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        // Every commit reaches the OS at once (it survives `kill -9`); only the
        // commit before a broadcast is also flushed to the disk (see `signed`).
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(err)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(err)?;
        if version > SCHEMA_VERSION {
            return Err(JournalError::NewerSchema {
                path,
                found: version,
            });
        }
        conn.execute_batch(SCHEMA).map_err(err)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(err)?;
        Ok(Journal {
            path,
            conn: Mutex::new(conn),
            flush_before_broadcast: config.sync == JournalSync::Full,
            _lock: Some(lock),
        })
    }

    /// Opens an existing journal to read it (`guardian history`); never writes.
    pub fn open_read_only(path: &Path) -> Result<Journal, JournalError> {
        let err = |source| JournalError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        Ok(Journal {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            flush_before_broadcast: false,
            _lock: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic mid-write rolls the SQLite transaction back; the connection stays usable.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn sql(&self, source: rusqlite::Error) -> JournalError {
        JournalError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Every row `sql` selects with `params`, each read as the tuple `T`
    /// (the lock is held only while reading).
    fn rows<T>(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<T>, JournalError>
    where
        T: for<'r> TryFrom<&'r rusqlite::Row<'r>, Error = rusqlite::Error>,
    {
        let conn = self.lock();
        let mut stmt = conn.prepare(sql).map_err(|e| self.sql(e))?;
        stmt.query_map(params, |r| T::try_from(r))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.sql(e))
    }

    fn corrupt(&self, what: &'static str, detail: impl ToString) -> JournalError {
        JournalError::Corrupt {
            path: self.path.clone(),
            what,
            detail: detail.to_string(),
        }
    }

    /// Records that `network` is chain `chain_id` (refusing a journal of
    /// another chain) and returns the last block processed on it, if any.
    pub fn bind_network(
        &self,
        network: &str,
        chain_id: u64,
    ) -> Result<Option<(u64, B256)>, JournalError> {
        let conn = self.lock();
        let row: Option<(i64, Option<i64>, Option<String>)> = conn
            .query_row(
                "SELECT chain_id, last_block, last_hash FROM networks WHERE name = ?1",
                [network],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(|e| self.sql(e))?;
        match row {
            None => {
                conn.execute(
                    "INSERT INTO networks (name, chain_id, updated_ms) VALUES (?1, ?2, ?3)",
                    params![network, int(chain_id), int(now_ms())],
                )
                .map_err(|e| self.sql(e))?;
                Ok(None)
            }
            Some((recorded, _, _)) if uint(recorded) != chain_id => Err(JournalError::WrongChain {
                path: self.path.clone(),
                network: network.to_string(),
                recorded: uint(recorded),
                configured: chain_id,
            }),
            Some((_, Some(block), Some(hash))) => {
                let hash = hash
                    .parse::<B256>()
                    .map_err(|e| self.corrupt("a block hash", e))?;
                Ok(Some((uint(block), hash)))
            }
            Some(_) => Ok(None),
        }
    }

    /// Marks `block` of `network` processed: every trip of it was decided and written.
    pub fn mark_processed(
        &self,
        network: &str,
        block: u64,
        hash: B256,
        time_ms: u64,
    ) -> Result<(), JournalError> {
        self.lock()
            .execute(
                "UPDATE networks SET last_block = ?2, last_hash = ?3, last_time_ms = ?4, updated_ms = ?5 WHERE name = ?1",
                params![network, int(block), hash.to_string(), int(time_ms), int(now_ms())],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// Writes a trip and the guard's decision on it, in one commit. For an
    /// approved action this is the intent: it is written before anything is sent.
    pub fn record_decision(
        &self,
        network: &str,
        origin: TripOrigin,
        trip: &Trip,
        pending_tx: Option<B256>,
        decision: &Decision,
        replica: Option<u32>,
    ) -> Result<(), JournalError> {
        let now = int(now_ms());
        let (outcome, rejection, detail) = match &decision.outcome {
            Outcome::Approved(_) => ("approved", None, None),
            Outcome::AlertOnly => ("alert-only", None, None),
            Outcome::AlreadyDone { detail } => ("already-done", None, Some(detail.clone())),
            Outcome::Rejected(r) => ("rejected", Some(rejection_kind(r)), Some(r.to_string())),
        };
        let (executor, mode, call, effect, status) = match &decision.outcome {
            Outcome::Approved(a) => (
                Some(a.executor().to_string()),
                Some(a.mode().as_str()),
                Some(serde_json::to_string(a.call()).map_err(|e| self.corrupt("a call", e))?),
                Some(serde_json::to_string(a.effect()).map_err(|e| self.corrupt("an effect", e))?),
                EXECUTING,
            ),
            _ => (None, None, None, None, outcome),
        };
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.sql(e))?;
        tx.execute(
            "INSERT INTO trips (network, origin, policy, action, block, time_ms, severity, mode, summary, evidence, pending_tx, recorded_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                network,
                origin.as_str(),
                trip.policy,
                trip.action,
                int(trip.block),
                int(trip.time_ms),
                trip.severity.as_str(),
                trip.mode.as_str(),
                trip.summary,
                trip.evidence.to_string(),
                pending_tx.map(|h| h.to_string()),
                now,
            ],
        )
        .map_err(|e| self.sql(e))?;
        let trip_id = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO decisions (decision_id, trip_id, policy, action, block, time_ms, outcome, rejection, detail,
                                    executor, mode, call, effect, status, replica, recorded_ms, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?16)",
            params![
                int(decision.decision_id),
                trip_id,
                decision.policy,
                decision.action,
                int(decision.block),
                int(decision.time_ms),
                outcome,
                rejection,
                detail,
                executor,
                mode,
                call,
                effect,
                status,
                replica,
                now,
            ],
        )
        .map_err(|e| self.sql(e))?;
        tx.commit().map_err(|e| self.sql(e))
    }

    /// Writes how an approved action ended.
    pub fn finish(
        &self,
        decision_id: u64,
        result: &Result<Execution, String>,
    ) -> Result<(), JournalError> {
        let (status, detail, landed): (&str, Option<String>, Option<(B256, u64)>) = match result {
            Ok(Execution::Landed { tx, block, .. }) => ("landed", None, Some((*tx, *block))),
            Ok(Execution::DryRun { tx, .. }) => {
                ("dry-run", Some(format!("signed {tx}, not sent")), None)
            }
            Ok(Execution::Proposed {
                safe_tx_hash,
                outbox_file,
                posted,
            }) => (
                "proposed",
                Some(format!(
                    "SafeTx {safe_tx_hash} in {}{}",
                    outbox_file.display(),
                    if *posted { ", posted" } else { "" }
                )),
                None,
            ),
            Ok(Execution::StoodDown { detail }) => ("stood-down", Some(detail.clone()), None),
            Err(e) => ("failed", Some(e.clone()), None),
        };
        let now = int(now_ms());
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.sql(e))?;
        tx.execute(
            "UPDATE decisions SET status = ?2, status_detail = ?3, tx = ?4, tx_block = ?5, updated_ms = ?6 WHERE decision_id = ?1",
            params![
                int(decision_id),
                status,
                detail,
                landed.map(|(h, _)| h.to_string()),
                landed.map(|(_, b)| int(b)),
                now,
            ],
        )
        .map_err(|e| self.sql(e))?;
        if let Some((hash, block)) = landed {
            tx.execute(
                "UPDATE transactions SET status = 'landed', block = ?2, updated_ms = ?3 WHERE hash = ?1",
                params![hash.to_string(), int(block), now],
            )
            .map_err(|e| self.sql(e))?;
            tx.execute(
                "UPDATE transactions SET status = 'replaced', updated_ms = ?3 WHERE decision_id = ?1 AND hash != ?2 AND status IN ('signed', 'sent')",
                params![int(decision_id), hash.to_string(), now],
            )
            .map_err(|e| self.sql(e))?;
        }
        tx.commit().map_err(|e| self.sql(e))
    }

    /// Approved actions a previous run did not finish. Those with no signed
    /// transaction were interrupted before anything was sent: they are marked
    /// `interrupted` here and not returned (a new trip decides afresh).
    pub fn unfinished(&self) -> Result<Vec<Unfinished>, JournalError> {
        type Row = (i64, String, String, Option<String>, Option<String>);
        let rows: Vec<Row> = self.rows(
            "SELECT decision_id, policy, action, executor, effect FROM decisions WHERE status = ?1 ORDER BY decision_id",
            [EXECUTING],
        )?;
        let mut out = Vec::new();
        for (id, policy, action, executor, effect) in rows {
            let decision_id = uint(id);
            let txs = self.transactions(decision_id)?;
            if txs.is_empty() {
                self.finish(
                    decision_id,
                    &Err("interrupted before any transaction was signed: nothing was sent".into()),
                )?;
                self.lock()
                    .execute(
                        "UPDATE decisions SET status = 'interrupted' WHERE decision_id = ?1",
                        [id],
                    )
                    .map_err(|e| self.sql(e))?;
                continue;
            }
            let effect: Effect = serde_json::from_str(effect.as_deref().unwrap_or_default())
                .map_err(|e| self.corrupt("an effect", e))?;
            out.push(Unfinished {
                decision_id,
                policy,
                action,
                executor: executor.unwrap_or_default(),
                effect,
                txs,
            });
        }
        Ok(out)
    }

    fn transactions(&self, decision_id: u64) -> Result<Vec<SignedTx>, JournalError> {
        type Row = (String, String, i64, String, String, i64, Vec<u8>);
        let rows: Vec<Row> = self.rows(
            "SELECT hash, sender, nonce, max_fee, priority_fee, replacement, raw FROM transactions
             WHERE decision_id = ?1 ORDER BY replacement, recorded_ms",
            [int(decision_id)],
        )?;
        rows.into_iter()
            .map(
                |(hash, sender, nonce, max_fee, priority_fee, replacement, raw)| {
                    Ok(SignedTx {
                        decision_id,
                        hash: hash
                            .parse()
                            .map_err(|e| self.corrupt("a transaction hash", e))?,
                        sender: sender
                            .parse::<Address>()
                            .map_err(|e| self.corrupt("a sender", e))?,
                        nonce: uint(nonce),
                        fees: Fees {
                            max_fee: max_fee.parse().map_err(|e| self.corrupt("a fee", e))?,
                            priority_fee: priority_fee
                                .parse()
                                .map_err(|e| self.corrupt("a fee", e))?,
                        },
                        replacement: u32::try_from(replacement).unwrap_or(0),
                        raw: Bytes::from(raw),
                    })
                },
            )
            .collect()
    }

    /// What the guard needs to rebuild its cooldowns and rate limits, and the
    /// last decision id, in decision order.
    pub fn past_decisions(&self) -> Result<Vec<PastDecision>, JournalError> {
        type Row = (i64, String, i64, String, Option<String>, String, String);
        let rows: Vec<Row> = self.rows(
            "SELECT d.decision_id, d.action, d.time_ms, d.outcome, d.rejection, d.status, COALESCE(d.mode, t.mode)
             FROM decisions d JOIN trips t ON t.id = d.trip_id ORDER BY d.decision_id",
            [],
        )?;
        Ok(rows
            .into_iter()
            .map(|(id, action, time_ms, outcome, rejection, status, mode)| {
                let counted = match (outcome.as_str(), rejection.as_deref(), status.as_str()) {
                    // Nothing was sent: the cooldown must not hold back the next attempt.
                    ("approved", _, "interrupted") => Some(Counted::RateLimits),
                    ("approved", _, _) => Some(Counted::Approved),
                    ("rejected", Some("preflight-reverted"), _) => Some(Counted::RateLimits),
                    ("rejected", Some("target-rate-limited"), _) => Some(Counted::GlobalLimit),
                    _ => None,
                };
                PastDecision {
                    decision_id: uint(id),
                    action,
                    time_ms: uint(time_ms),
                    // An unknown mode (a newer guardian's) counts as enforce: the stricter.
                    mode: Mode::CHOICES
                        .iter()
                        .find(|(n, _)| *n == mode)
                        .map_or(Mode::Enforce, |(_, m)| *m),
                    counted,
                }
            })
            .collect())
    }

    /// (policy, block) of trips on mined blocks of `network` after `block` that
    /// were already decided: replaying those blocks must not decide them again.
    pub fn decided_after(
        &self,
        network: &str,
        block: u64,
    ) -> Result<HashSet<(String, u64)>, JournalError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT t.policy, t.block FROM trips t JOIN decisions d ON d.trip_id = t.id
                 WHERE t.network = ?1 AND t.origin = 'block' AND t.block > ?2",
            )
            .map_err(|e| self.sql(e))?;
        stmt.query_map(params![network, int(block)], |r| {
            Ok((r.get::<_, String>(0)?, uint(r.get(1)?)))
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.sql(e))
    }

    /// The effective mode of each decided trip on mined blocks of `network`
    /// after `block`, by (policy, block): a restart that replays those blocks
    /// to refill windows lets a replayed trip hold its policy's cooldown only
    /// if it was decided in the mode running now (a dry-run trip never quiets
    /// an enforce run).
    pub fn decided_modes_after(
        &self,
        network: &str,
        block: u64,
    ) -> Result<std::collections::HashMap<(String, u64), Mode>, JournalError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT t.policy, t.block, COALESCE(d.mode, t.mode) FROM trips t JOIN decisions d ON d.trip_id = t.id
                 WHERE t.network = ?1 AND t.origin = 'block' AND t.block > ?2",
            )
            .map_err(|e| self.sql(e))?;
        let rows: Vec<(String, u64, String)> = stmt
            .query_map(params![network, int(block)], |r| {
                Ok((r.get(0)?, uint(r.get(1)?), r.get(2)?))
            })
            .and_then(|rows| rows.collect())
            .map_err(|e| self.sql(e))?;
        Ok(rows
            .into_iter()
            .map(|(policy, block, mode)| {
                let mode = Mode::CHOICES
                    .iter()
                    .find(|(n, _)| *n == mode)
                    .map_or(Mode::Enforce, |(_, m)| *m);
                ((policy, block), mode)
            })
            .collect())
    }

    /// The audit trail, oldest first, filtered.
    pub fn history(&self, filter: &HistoryFilter) -> Result<Vec<HistoryEntry>, JournalError> {
        let mut sql = String::from(
            "SELECT d.decision_id, d.recorded_ms, d.policy, d.action, t.network, t.origin, d.block, d.time_ms,
                    t.severity, t.mode, t.summary, t.evidence, t.pending_tx, d.outcome, d.rejection, d.detail,
                    d.executor, d.status, d.status_detail, d.tx, d.tx_block, d.replica
             FROM decisions d JOIN trips t ON t.id = d.trip_id WHERE 1 = 1",
        );
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(p) = &filter.policy {
            args.push(p.clone().into());
            sql.push_str(&format!(" AND d.policy = ?{}", args.len()));
        }
        if let Some(s) = filter.since_ms {
            args.push(int(s).into());
            sql.push_str(&format!(" AND d.recorded_ms >= ?{}", args.len()));
        }
        if let Some(u) = filter.until_ms {
            args.push(int(u).into());
            sql.push_str(&format!(" AND d.recorded_ms <= ?{}", args.len()));
        }
        if let Some(s) = &filter.status {
            args.push(s.clone().into());
            let n = args.len();
            sql.push_str(&format!(" AND (d.outcome = ?{n} OR d.status = ?{n})"));
        }
        sql.push_str(" ORDER BY d.decision_id DESC");
        if let Some(l) = filter.limit {
            sql.push_str(&format!(" LIMIT {}", int(l)));
        }
        let mut entries: Vec<HistoryEntry> = {
            let conn = self.lock();
            let mut stmt = conn.prepare(&sql).map_err(|e| self.sql(e))?;
            stmt.query_map(rusqlite::params_from_iter(args), |r| {
                let evidence: String = r.get(11)?;
                Ok(HistoryEntry {
                    decision_id: uint(r.get(0)?),
                    recorded_ms: uint(r.get(1)?),
                    policy: r.get(2)?,
                    action: r.get(3)?,
                    network: r.get(4)?,
                    origin: r.get(5)?,
                    block: uint(r.get(6)?),
                    trip_time_ms: uint(r.get(7)?),
                    severity: r.get(8)?,
                    mode: r.get(9)?,
                    summary: r.get(10)?,
                    evidence: serde_json::from_str(&evidence)
                        .unwrap_or(serde_json::Value::String(evidence)),
                    pending_tx: r.get(12)?,
                    outcome: r.get(13)?,
                    rejection: r.get(14)?,
                    detail: r.get(15)?,
                    executor: r.get(16)?,
                    status: r.get(17)?,
                    status_detail: r.get(18)?,
                    tx: r.get(19)?,
                    tx_block: r.get::<_, Option<i64>>(20)?.map(uint),
                    replica: r.get(21)?,
                    transactions: Vec::new(),
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(|e| self.sql(e))?
        };
        entries.reverse();
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT hash, sender, nonce, max_fee, priority_fee, replacement, status, detail, block
                 FROM transactions WHERE decision_id = ?1 ORDER BY replacement, recorded_ms",
            )
            .map_err(|e| self.sql(e))?;
        for e in &mut entries {
            e.transactions = stmt
                .query_map([int(e.decision_id)], |r| {
                    Ok(HistoryTx {
                        hash: r.get(0)?,
                        sender: r.get(1)?,
                        nonce: uint(r.get(2)?),
                        max_fee_wei: r.get(3)?,
                        priority_fee_wei: r.get(4)?,
                        replacement: u32::try_from(r.get::<_, i64>(5)?).unwrap_or(0),
                        status: r.get(6)?,
                        detail: r.get(7)?,
                        block: r.get::<_, Option<i64>>(8)?.map(uint),
                    })
                })
                .and_then(|rows| rows.collect())
                .map_err(|e| self.sql(e))?;
        }
        Ok(entries)
    }

    /// The last block processed per network, as (network, block).
    pub fn processed(&self) -> Result<Vec<(String, Option<u64>)>, JournalError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT name, last_block FROM networks ORDER BY name")
            .map_err(|e| self.sql(e))?;
        stmt.query_map([], |r| {
            Ok((r.get(0)?, r.get::<_, Option<i64>>(1)?.map(uint)))
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.sql(e))
    }
}

/// The rejection's kind, as its serde tag says it (`preflight-reverted` ...).
fn rejection_kind(r: &Rejection) -> String {
    serde_json::to_value(r)
        .ok()
        .and_then(|v| {
            v.get("rejection")
                .and_then(|k| k.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".into())
}

impl TxLog for Journal {
    fn signed(&self, tx: &SignedTx) -> Result<(), String> {
        let now = int(now_ms());
        let conn = self.lock();
        let set_sync = |level: &str| {
            conn.pragma_update(None, "synchronous", level)
                .map_err(|e| self.sql(e).to_string())
        };
        if self.flush_before_broadcast {
            set_sync("FULL")?;
        }
        let written = conn
            .execute(
                "INSERT OR REPLACE INTO transactions (hash, decision_id, sender, nonce, max_fee, priority_fee, replacement, raw, status, recorded_ms, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'signed', ?9, ?9)",
                params![
                    tx.hash.to_string(),
                    int(tx.decision_id),
                    tx.sender.to_string(),
                    int(tx.nonce),
                    tx.fees.max_fee.to_string(),
                    tx.fees.priority_fee.to_string(),
                    tx.replacement,
                    tx.raw.to_vec(),
                    now,
                ],
            )
            .map(|_| ())
            .map_err(|e| self.sql(e).to_string());
        if self.flush_before_broadcast {
            set_sync("NORMAL")?;
        }
        written
    }

    fn broadcast(&self, hash: B256, refused: Option<&str>) {
        let (status, detail) = match refused {
            None => ("sent", None),
            Some(reason) => ("refused", Some(reason)),
        };
        if let Err(e) = self.lock().execute(
            "UPDATE transactions SET status = ?2, detail = ?3, updated_ms = ?4 WHERE hash = ?1 AND status IN ('signed', 'refused')",
            params![hash.to_string(), status, detail, int(now_ms())],
        ) {
            // The signed row is already there: a restart still follows the transaction.
            tracing::error!(target: "guardian::journal", tx = %hash, error = %self.sql(e), "cannot record the node's answer");
        }
    }
}
