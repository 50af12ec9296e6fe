//! The health of a network's read endpoints, shared by everything that reads
//! from them: the follower (one snapshot per block), the quorum check before
//! an action, and any other caller of [`super::ReadPlan::read_failover`].
//!
//! An endpoint that fails a read (a transport error, a timeout, or an answer
//! that is not a well-formed value: an error envelope, `null`, empty data
//! where a word is expected, a decode failure), that lags the others, or that
//! the other endpoints outvote, is marked unhealthy for a while; reads go to
//! the healthy ones first. Nothing here blocks: counters are atomics, the
//! unhealthy-until times sit behind a short mutex.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long one failure keeps an endpoint unhealthy; doubled per consecutive
/// failure up to [`MAX_UNHEALTHY`].
pub const FIRST_UNHEALTHY: Duration = Duration::from_secs(2);
/// The longest an endpoint is passed over before it is tried again.
pub const MAX_UNHEALTHY: Duration = Duration::from_secs(60);

/// Why an endpoint was marked unhealthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A transport error, a timeout, or an answer that is not a well-formed value.
    Failed,
    /// Its latest block is behind the others by more than the allowed lag.
    Lagging,
    /// Other endpoints agreed on different values at the same block hash.
    Outvoted,
}

impl Fault {
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Failed => "failed",
            Fault::Lagging => "lagging",
            Fault::Outvoted => "outvoted",
        }
    }
}

#[derive(Debug, Default)]
struct One {
    failures: AtomicU32,
    unhealthy_until: Mutex<Option<Instant>>,
}

/// The health of each read endpoint of one network, by position in the
/// configuration (HTTP endpoints, else WebSocket endpoints).
#[derive(Debug)]
pub struct Health {
    endpoints: Vec<One>,
    /// Observed block time in ms (an average of timestamp gaps); 0 until seen.
    block_time_ms: AtomicU64,
    last_timestamp: AtomicU64,
    /// The newest head's timestamp (unix seconds) the watcher has learnt of,
    /// also while it is still reading older blocks to catch up.
    newest_head: AtomicU64,
}

impl Health {
    pub fn new(endpoints: usize) -> Self {
        Self {
            endpoints: (0..endpoints.max(1)).map(|_| One::default()).collect(),
            block_time_ms: AtomicU64::new(0),
            last_timestamp: AtomicU64::new(0),
            newest_head: AtomicU64::new(0),
        }
    }

    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// Marks endpoint `i` unhealthy; returns how long it is passed over.
    pub fn mark(&self, i: usize, _fault: Fault) -> Duration {
        let Some(e) = self.endpoints.get(i) else {
            return Duration::ZERO;
        };
        let n = e.failures.fetch_add(1, Ordering::Relaxed).min(5);
        let wait = (FIRST_UNHEALTHY * 2u32.pow(n)).min(MAX_UNHEALTHY);
        if let Ok(mut u) = e.unhealthy_until.lock() {
            *u = Some(Instant::now() + wait);
        }
        wait
    }

    /// Endpoint `i` answered well: its failures are forgotten.
    pub fn ok(&self, i: usize) {
        if let Some(e) = self.endpoints.get(i)
            && e.failures.swap(0, Ordering::Relaxed) > 0
            && let Ok(mut u) = e.unhealthy_until.lock()
        {
            *u = None;
        }
    }

    pub fn is_healthy(&self, i: usize) -> bool {
        self.endpoints.get(i).is_some_and(|e| {
            e.unhealthy_until
                .lock()
                .map_or(true, |u| u.is_none_or(|t| Instant::now() >= t))
        })
    }

    /// Every endpoint in the order reads should try them: `first` when healthy,
    /// then the other healthy ones in configuration order, then the unhealthy
    /// ones (tried last rather than never: they may have recovered).
    pub fn order(&self, first: usize) -> Vec<usize> {
        let n = self.endpoints.len();
        let rotated = (0..n).map(|k| (first + k) % n);
        let (healthy, unhealthy): (Vec<usize>, Vec<usize>) =
            rotated.partition(|&i| self.is_healthy(i));
        healthy.into_iter().chain(unhealthy).collect()
    }

    /// The healthiest endpoint to read from when `current` is not healthy.
    pub fn preferred(&self, current: usize) -> usize {
        self.order(current).first().copied().unwrap_or(0)
    }

    /// Records the timestamp (unix seconds) of a head the chain has reached.
    pub fn observe_head(&self, timestamp: u64) {
        self.newest_head.fetch_max(timestamp, Ordering::Relaxed);
    }

    /// The newest head's time in unix milliseconds; 0 until a head was seen.
    pub fn newest_head_ms(&self) -> u64 {
        self.newest_head
            .load(Ordering::Relaxed)
            .saturating_mul(1000)
    }

    /// Records a block's timestamp (unix seconds) to learn the chain's block time.
    pub fn observe_block(&self, timestamp: u64) {
        let last = self.last_timestamp.swap(timestamp, Ordering::Relaxed);
        if last == 0 || timestamp <= last {
            return;
        }
        let gap_ms = (timestamp - last).saturating_mul(1000).min(600_000);
        let old = self.block_time_ms.load(Ordering::Relaxed);
        // An exponential average over about eight blocks.
        let new = if old == 0 {
            gap_ms
        } else {
            (old * 7 + gap_ms) / 8
        };
        self.block_time_ms.store(new.max(1), Ordering::Relaxed);
    }

    /// The observed block time, `None` until two blocks a second or more apart were seen.
    pub fn observed_block_time(&self) -> Option<Duration> {
        match self.block_time_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unhealthy_endpoints_are_tried_last_and_recover() {
        let h = Health::new(3);
        assert_eq!(h.order(0), [0, 1, 2]);
        h.mark(0, Fault::Failed);
        assert!(!h.is_healthy(0));
        assert_eq!(h.order(0), [1, 2, 0]);
        assert_eq!(h.order(2), [2, 1, 0]);
        assert_eq!(h.preferred(0), 1);
        h.ok(0);
        assert_eq!(h.order(0), [0, 1, 2]);
    }

    #[test]
    fn block_time_is_learned_from_timestamps() {
        let h = Health::new(1);
        assert_eq!(h.observed_block_time(), None);
        for t in (1000..1100).step_by(12) {
            h.observe_block(t);
        }
        assert_eq!(h.observed_block_time(), Some(Duration::from_secs(12)));
    }
}
