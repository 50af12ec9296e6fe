//! The rate limiters' clock: the time of the trip being decided, never the wall clock.
//!
//! Decisions are a pure function of the trips (and chain answers) they see, so a
//! replay gives the same rate-limit decisions as the live run, and tests drive
//! time by the trips they feed in.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A clock the guard moves to each trip's time (monotonic: it never goes back).
#[derive(Debug, Clone, Default)]
pub struct TripClock(Arc<AtomicU64>);

impl TripClock {
    /// Moves the clock to `ms` (milliseconds), unless it is already later.
    pub fn advance_to(&self, ms: u64) {
        self.0.fetch_max(ms, Ordering::SeqCst);
    }
}

impl governor::clock::Clock for TripClock {
    type Instant = Duration;
    fn now(&self) -> Duration {
        Duration::from_millis(self.0.load(Ordering::SeqCst))
    }
}
