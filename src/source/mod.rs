//! Sources: where samples come from. Today, recorded traces; the live chain
//! watcher joins here. Sources are one of the two seams where live and
//! simulated runs differ (the other is the executor).

pub mod chain;
pub mod trace;
