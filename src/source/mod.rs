//! Sources: where samples come from: a live chain ([`chain`]: heads, per-block
//! reads pinned to the block hash, pending transactions) or a recorded trace
//! ([`trace`]). Sources are one of the two seams where live and simulated runs
//! differ (the other is the executor).

pub mod chain;
pub mod trace;
