//! # guardian
//!
//! An autonomous protocol guardian: it watches a DeFi protocol's metrics and,
//! when a circuit-breaker policy trips, gets a guarded pause or bounded
//! parameter change on chain.
//!
//! ## The pipeline
//!
//! Data flows one way; no stage reaches back up the flow. Each stage is a
//! folder (what it does) and, live, a task wired in `src/pipeline/` (how it
//! runs); `src/pipeline/mod.rs`'s `run` starts them in that order.
//!
//! ```text
//!  chain (JSON-RPC)  or  recorded trace
//!          │
//!       source        (source/)   block heads, contract reads, logs, pending txs, trace rows
//!          │                      live: src/pipeline/watch.rs, one watcher task per network
//!          │  Sample { block, time_ms, metric, value }
//!          │  Screened: a pending tx's what-if block (source/chain/screen.rs, eth_simulateV1)
//!       metrics       (metrics/)  per-metric history, shared windows, detectors
//!          │
//!       policy        (policy/)   compiled conditions -> Engine::on_sample;
//!          │                      Engine::what_if judges a what-if block, commits nothing (policy/whatif.rs)
//!          │                      live: src/pipeline/engine.rs, the engine task (reloads, restarts);
//!          │                      src/pipeline/gate.rs holds actions on a stale head or a split quorum
//!          │  Trip { policy, block, action, evidence }
//!       decision      (decision.rs)
//!          │
//!       guard         (guard/)    allow-list, bounds, cooldowns, rate limits, preflight -> Approved
//!          │  Decision { outcome: Approved | AlertOnly | AlreadyDone | Rejected(reason) }
//!       executor      (executor/) eoa | Safe owners | Safe module | propose; fees, nonces, replacement
//!          │                      live: src/pipeline/act.rs, one decision at a time, deliveries side by side;
//!          │                      src/pipeline/executors.rs connects them (and again per trip)
//!        chain        keys (keys.rs) sign; they never reach logs, errors or argv
//!
//!  beside the flow:  src/pipeline/supervise.rs   the stages as named tasks; the first to end decides
//!                    src/pipeline/resume.rs      where the journal (journal/) says the last run stopped
//!                    src/pipeline_report.rs      what happened (Report), for the caller and observe/
//!                    observe/, alerts/, telemetry.rs   metrics, readiness, alerts: the probe stages report to
//!  below every stage: levels.rs (severity, mode), units.rs (windows, percents), redact.rs
//! ```
//!
//! Invariants the stages keep:
//! - policies are parsed and checked once, at load; every problem is reported
//!   with file, line and column ([`config::reader`]);
//! - the engine is pure and deterministic: the same samples give the same
//!   trips, bit for bit, live or replayed ([`policy::eval`]);
//! - samples are processed in the order they arrive; a trace's rows are in
//!   time order, and a malformed row stops a replay with its location;
//! - live and simulated runs share every stage except the source and the
//!   executor;
//! - only the guard constructs an [`guard::Approved`] action, and executors
//!   take nothing else: no call outside the configured allow-list is signed;
//! - every guard decision is returned with its outcome; a rejection carries its
//!   reason and is never dropped;
//! - the guard is pure: chain state reaches it through [`guard::ChainView`],
//!   which the executor implements;
//! - with a [`journal`], every decision is written before it is acted on and
//!   every transaction before it is broadcast, so a restart resumes without
//!   skipping a block, deciding a trip twice or sending an action again.
//!
//! Outside the pipeline, onboarding: [`init`] writes a starting configuration;
//! [`setup`] plans the GuardianModule set-up the protocol's Safe signs (a
//! Transaction Builder batch) and verifies it on chain, and `run` checks it
//! before starting.

/// A line for the operator on stderr: plain text, or one JSON object (like
/// every log line) under `--log-format json`.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => { $crate::say::line(&format!($($arg)*)) };
}

pub mod alerts;
pub mod calibrate;
pub mod cli;
pub mod config;
pub mod decision;
pub mod demo;
pub mod devnet;
pub mod executor;
pub mod explain;
pub mod guard;
pub mod history;
pub mod init;
pub mod journal;
pub mod keys;
pub mod levels;
pub mod metrics;
pub mod observe;
pub mod pipeline;
pub mod pipeline_report;
pub mod policy;
pub mod redact;
pub mod replay;
pub mod report;
pub mod review;
pub mod say;
pub mod scenario;
pub mod setup;
pub mod source;
pub mod telemetry;
pub mod units;
