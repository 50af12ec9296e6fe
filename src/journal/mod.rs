//! The journal: what `guardian run` has done, in a SQLite file, so a restart
//! (after a crash, `kill -9`, a reboot) picks up exactly where it stopped.
//!
//! ```text
//!  engine ──(trip, block done)──▶ guard task ──▶ journal: trip + decision   (one commit, before anything is sent)
//!                                     │
//!                                  executor ──▶ journal: signed tx           (before broadcast: TxLog::signed)
//!                                     │     ──▶ journal: sent / refused      (right after: TxLog::broadcast)
//!                                     ▼
//!                                  journal: final status (landed, failed, stood down)
//!                                  journal: last processed block             (after every trip of the block is decided)
//! ```
//!
//! What it holds: per network, the chain id and the last block whose trips
//! were all decided; every trip with its evidence; every guard decision
//! (approved, alert-only, already done, rejected with its reason); every
//! transaction (hash, sender, nonce, fees, replacement number, the signed
//! bytes, status); and, from the decisions, what the guard's cooldowns and
//! rate limits need to be rebuilt ([`Journal::past_decisions`]).
//!
//! Invariants (what a restart relies on):
//! - **Nothing is sent that is not written down first.** The decision (the
//!   intent) commits before the executor runs, each signed transaction commits
//!   before it is broadcast, and a failed write stops the send.
//! - **No skipped block.** A block is marked processed only after every trip
//!   of it was decided and written; a restart resumes right after the last
//!   marked block (backfilling by number, like a watcher reconnecting), and
//!   first re-reads `warmup_blocks` blocks before it so policy windows refill.
//! - **No trip processed twice.** Trips on blocks at or before the resume
//!   point, and trips already decided on later blocks, are dropped on replay.
//!   Unless the chain reorganised while guardian was down (the resume block's
//!   hash changed, or the node does not have it): then the re-read blocks are
//!   not the ones decided on, and their trips are decided anew (the restored
//!   cooldowns and the guard's already-done check keep an action from
//!   repeating). A reorg deeper than `warmup_blocks` is not re-read.
//! - **No action sent twice.** A decision approved but not finished is
//!   followed to its final status at start-up (its transactions are looked up
//!   by hash, broadcast again from their bytes if the node forgot them, and
//!   replaced with raised fees when a block passes them by)
//!   before any new trip is decided; the guard's cooldowns and rate limits are
//!   restored from the journal; decision ids continue after the last one.
//! - Commits are synchronous (WAL): each is in the operating system's hands
//!   before guardian goes on, so a crash of the process loses nothing. With
//!   `sync = "full"` (the default) the commit of each signed transaction is
//!   also flushed to the disk before the broadcast, and the flush carries every
//!   earlier commit with it: one flush per transaction sent, none per block or
//!   per decision (`benches/journal.rs`). Blocks without trips cost one small
//!   commit each, in the guard task, off the engine's path.
//!
//! ## Replicas
//!
//! The same configuration may run in 2–3 processes for availability. Each has
//! its own journal (`[journal] path`; SQLite is not shared between hosts, and
//! a second process opening a journal in use is refused) and
//! its index (`[journal] replica = 0, 1, 2`); they share the executor's key.
//! Exactly one transaction per decision lands, because:
//! - replica *k* waits *k* × `replica_stagger` after approving, then re-checks
//!   the chain ([`crate::executor::Executors::recheck`]): a transaction from the
//!   shared key still pending is waited for, then the effect is read (target
//!   paused, parameter set) and the exact transaction simulated again (which
//!   fails once the target is paused, the module's cooldown or limits hold, or
//!   the Safe's nonce moved); if any says "done", it records *stood down* and
//!   keeps watching — no error, no exit;
//! - the guard of a replica that decides after the effect landed says
//!   *already done* (the target's state is read before approving);
//! - should two replicas still send at once, they send from one key: when the
//!   nonce is taken by the other's transaction and the effect is on chain,
//!   the executor stands down instead of sending again with a new nonce.
//!
//! Replica 0 sends at once, so replicas cost nothing on the fast path; if it
//! is down, replica 1 acts one stagger later.
//!
//! Limits: the stagger must exceed the time a replica takes from its decision
//! to its broadcast (a few RPC round trips), or two replicas may read
//! different pending nonces and both send; the second transaction would then
//! revert on chain (the target is already paused) rather than act twice. The
//! replicas must watch the same chain through nodes that share a mempool.
//! A `propose` action interrupted by a crash is proposed again on the next
//! trip (the same SafeTx at the same Safe nonce, so co-signers see one).

mod store;

pub use store::{HistoryEntry, HistoryFilter, Journal, JournalError, TripOrigin, Unfinished};

use std::path::Path;

use crate::config::{Config, JournalConfig};
use crate::policy::model::Mode;

/// Settles the journal `guardian run` uses: `path` (from `--journal`)
/// overrides `[journal] path`. In enforce mode a journal is required: without
/// one, a restart could send an action again. The error says what to add.
pub fn require_for_run(config: &mut Config, path: Option<&Path>) -> Result<(), String> {
    if let Some(p) = path {
        match &mut config.journal {
            Some(j) => j.path = p.to_path_buf(),
            None => config.journal = Some(JournalConfig::at(p)),
        }
    }
    match &config.journal {
        None if config.mode == Mode::Enforce => Err(format!(
            "{}: enforce mode needs a journal, so that a restart never sends an action twice; add `[journal]` with `path = \"guardian.db\"` or pass --journal <file>",
            config.path.display()
        )),
        Some(j) => match j.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => Err(format!(
                "journal {}: the folder {} does not exist; create it or choose another path",
                j.path.display(),
                dir.display()
            )),
            _ => Ok(()),
        },
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
