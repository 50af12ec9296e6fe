//! Per-metric history: the samples windows need, and running windowed sums.
//!
//! Invariants:
//! - entries are in block order, one per block (a later sample for the same
//!   block replaces the earlier one; a sample for an earlier block rolls the
//!   history back to it, which is how a reorg's corrected samples arrive);
//! - the oldest entry kept is the newest one at or before the start of the
//!   longest window, measured from [`REORG_DEPTH`] blocks before the newest
//!   entry, so every window's starting value is available even after a
//!   rollback of up to that many blocks (deeper rollbacks see a shortened
//!   history);
//! - after warm-up, pushing a sample does not allocate: the deque's capacity
//!   settles at the longest window's length.

use std::collections::VecDeque;

use crate::units::Window;

/// How many blocks of extra history are kept so that a rollback (a reorg's
/// corrected samples) still finds every window complete.
pub const REORG_DEPTH: u64 = 64;

/// One kept sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Entry {
    pub block: u64,
    pub time_ms: u64,
    pub value: f64,
}

/// A running sum over one window, shared by every policy summing this metric over it.
#[derive(Debug, Clone)]
struct RunningSum {
    window: Window,
    sum: f64,
    /// Sequence number of the oldest entry inside the window.
    start_seq: u64,
    /// Updates since the sum was last recomputed exactly (bounds floating-point drift).
    updates: u64,
}

/// What [`MetricHistory::retract`] needs to undo a speculative push.
#[derive(Debug)]
pub struct Speculation {
    len: usize,
    sums: Vec<(f64, u64, u64)>,
}

/// The history of one metric.
#[derive(Debug, Clone, Default)]
pub struct MetricHistory {
    entries: VecDeque<Entry>,
    /// Sequence number of `entries[0]`.
    front_seq: u64,
    keep_blocks: u64,
    keep_ms: u64,
    sums: Vec<RunningSum>,
}

/// Whether `entry` is inside `window` ending at `now` (the newest entry).
#[inline]
fn in_window(window: Window, entry: &Entry, now: &Entry) -> bool {
    match window {
        Window::Blocks(n) => entry.block + n > now.block,
        Window::Millis(ms) => entry.time_ms + ms > now.time_ms,
    }
}

/// Whether `entry` is at or before the start of `window` ending at `now`.
#[inline]
fn at_or_before_start(window: Window, entry: &Entry, now: &Entry) -> bool {
    !in_window(window, entry, now)
}

impl MetricHistory {
    /// Asks the history to keep enough samples for `window` (its starting value included).
    pub fn require(&mut self, window: Window) {
        match window {
            Window::Blocks(n) => self.keep_blocks = self.keep_blocks.max(n),
            Window::Millis(ms) => self.keep_ms = self.keep_ms.max(ms),
        }
    }

    /// Registers a running sum over `window`; returns its slot for [`Self::sum`].
    pub fn require_sum(&mut self, window: Window) -> usize {
        self.require(window);
        if let Some(i) = self.sums.iter().position(|s| s.window == window) {
            return i;
        }
        self.sums.push(RunningSum {
            window,
            sum: 0.0,
            start_seq: self.front_seq,
            updates: 0,
        });
        self.sums.len() - 1
    }

    /// The newest sample.
    #[inline]
    pub fn latest(&self) -> Option<&Entry> {
        self.entries.back()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Records a sample. Returns `true` when it replaced or rolled back earlier entries.
    pub fn push(&mut self, entry: Entry) -> bool {
        let rolled_back = match self.entries.back() {
            Some(last) if entry.block <= last.block => {
                while self.entries.back().is_some_and(|e| e.block >= entry.block) {
                    self.entries.pop_back();
                }
                true
            }
            _ => false,
        };
        self.entries.push_back(entry);
        if rolled_back {
            self.recompute_sums();
        } else {
            self.advance_sums();
        }
        self.prune();
        rolled_back
    }

    /// Appends `entry`, which must be newer than every entry, without pruning:
    /// [`Self::retract`] with the returned mark undoes it exactly (a what-if
    /// sample that is evaluated but never committed).
    pub fn push_speculative(&mut self, entry: Entry) -> Speculation {
        debug_assert!(self.entries.back().is_none_or(|e| e.block < entry.block));
        let mark = Speculation {
            len: self.entries.len(),
            sums: self
                .sums
                .iter()
                .map(|s| (s.sum, s.start_seq, s.updates))
                .collect(),
        };
        self.entries.push_back(entry);
        self.advance_sums();
        mark
    }

    /// Undoes a [`Self::push_speculative`] (the latest one first, when several).
    pub fn retract(&mut self, mark: Speculation) {
        self.entries.truncate(mark.len);
        for (s, (sum, start_seq, updates)) in self.sums.iter_mut().zip(mark.sums) {
            s.sum = sum;
            s.start_seq = start_seq;
            s.updates = updates;
        }
    }

    fn advance_sums(&mut self) {
        let Some(now) = self.entries.back().copied() else {
            return;
        };
        let len = self.entries.len() as u64;
        for i in 0..self.sums.len() {
            let s = &mut self.sums[i];
            s.sum += now.value;
            s.updates += 1;
            while s.start_seq < self.front_seq + len {
                let e = &self.entries[(s.start_seq - self.front_seq) as usize];
                if in_window(s.window, e, &now) {
                    break;
                }
                s.sum -= e.value;
                s.start_seq += 1;
            }
            let inside = self.front_seq + len - s.start_seq;
            if s.updates > inside.max(64) {
                Self::recompute_one(&self.entries, self.front_seq, &mut self.sums[i]);
            }
        }
    }

    fn recompute_sums(&mut self) {
        for i in 0..self.sums.len() {
            Self::recompute_one(&self.entries, self.front_seq, &mut self.sums[i]);
        }
    }

    fn recompute_one(entries: &VecDeque<Entry>, front_seq: u64, s: &mut RunningSum) {
        s.updates = 0;
        let Some(now) = entries.back() else {
            s.sum = 0.0;
            s.start_seq = front_seq;
            return;
        };
        let start = entries.partition_point(|e| !in_window(s.window, e, now));
        s.start_seq = front_seq + start as u64;
        s.sum = entries.range(start..).map(|e| e.value).sum();
    }

    /// Drops entries no window can need: keeps the newest entry at or before the
    /// start of the longest block window and of the longest time window.
    fn prune(&mut self) {
        let Some(now) = self.entries.back().copied() else {
            return;
        };
        while self.entries.len() >= 2 {
            let next = &self.entries[1];
            let blocks_ok = next.block + self.keep_blocks + REORG_DEPTH <= now.block;
            let time_ok = next.time_ms + self.keep_ms <= now.time_ms;
            if !(blocks_ok && time_ok) {
                break;
            }
            self.entries.pop_front();
            self.front_seq += 1;
        }
    }

    /// The newest entry at or before the start of `window` ending at the newest
    /// entry (the value the window is measured from).
    pub fn window_start(&self, window: Window) -> Option<&Entry> {
        let now = self.entries.back()?;
        self.window_start_at(window, now.block, now.time_ms)
    }

    /// The newest entry at or before the start of `window` ending at block
    /// `now_block` / time `now_ms` (which may be later than the newest entry:
    /// a level persists until its next sample).
    pub fn window_start_at(&self, window: Window, now_block: u64, now_ms: u64) -> Option<&Entry> {
        let now = Entry {
            block: now_block,
            time_ms: now_ms,
            value: 0.0,
        };
        let inside = self
            .entries
            .partition_point(|e| at_or_before_start(window, e, &now));
        inside.checked_sub(1).map(|i| &self.entries[i])
    }

    /// The running sum in `slot` (from [`Self::require_sum`]) over the window
    /// ending at the newest entry, and how many samples it covers.
    #[inline]
    pub fn sum(&self, slot: usize) -> (f64, u64) {
        let s = &self.sums[slot];
        let count = self.front_seq + self.entries.len() as u64 - s.start_seq;
        (s.sum, count)
    }

    /// The sum in `slot` over the window ending at block `now_block` / time
    /// `now_ms`, at or after the newest entry: samples that have left the window
    /// since the newest entry are taken out (a flow with no sample in a block
    /// contributed nothing to it).
    #[inline]
    pub fn sum_at(&self, slot: usize, now_block: u64, now_ms: u64) -> (f64, u64, Option<&Entry>) {
        let s = &self.sums[slot];
        let now = Entry {
            block: now_block,
            time_ms: now_ms,
            value: 0.0,
        };
        let (mut sum, mut count) = self.sum(slot);
        let mut i = (s.start_seq - self.front_seq) as usize;
        while let Some(e) = self.entries.get(i) {
            if in_window(s.window, e, &now) {
                break;
            }
            sum -= e.value;
            count -= 1;
            i += 1;
        }
        if count == 0 {
            sum = 0.0;
        }
        (sum, count, self.entries.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(block: u64, value: f64) -> Entry {
        Entry {
            block,
            time_ms: block * 1000,
            value,
        }
    }

    /// Blocks 0 to 9 valued 1 to 10, under a 3-block sum (its slot).
    fn ten_blocks_summed_by_three() -> (MetricHistory, usize) {
        let mut h = MetricHistory::default();
        let slot = h.require_sum(Window::Blocks(3));
        for b in 0..10 {
            h.push(e(b, 1.0 + b as f64));
        }
        (h, slot)
    }

    #[test]
    fn a_speculative_push_is_retracted_exactly() {
        let (mut h, slot) = ten_blocks_summed_by_three();
        let before = (h.sum(slot), h.len(), h.latest().copied());
        let mark = h.push_speculative(e(10, 100.0));
        assert_eq!(h.sum(slot), (9.0 + 10.0 + 100.0, 3));
        assert_eq!(h.latest().unwrap().value, 100.0);
        h.retract(mark);
        assert_eq!((h.sum(slot), h.len(), h.latest().copied()), before);
    }

    #[test]
    fn window_start_is_the_value_n_blocks_ago() {
        let mut h = MetricHistory::default();
        h.require(Window::Blocks(3));
        for b in 0..10 {
            h.push(e(b, b as f64));
        }
        assert_eq!(h.window_start(Window::Blocks(3)).unwrap().block, 6);
        assert_eq!(h.window_start(Window::Blocks(1)).unwrap().block, 8);
        // A level persists: 100 blocks later, the value 3 blocks back is still the last one.
        assert_eq!(
            h.window_start_at(Window::Blocks(3), 109, 109_000)
                .unwrap()
                .block,
            9
        );
        // Only what the longest window needs is kept, plus the reorg margin.
        for b in 10..200 {
            h.push(e(b, b as f64));
        }
        assert_eq!(h.len(), 4 + REORG_DEPTH as usize);
    }

    #[test]
    fn no_window_start_during_warm_up() {
        let mut h = MetricHistory::default();
        h.require(Window::Blocks(5));
        h.push(e(10, 1.0));
        h.push(e(11, 1.0));
        assert!(h.window_start(Window::Blocks(5)).is_none());
    }

    #[test]
    fn sums_cover_the_last_n_blocks() {
        let (h, slot) = ten_blocks_summed_by_three();
        // blocks 7, 8, 9 -> 8 + 9 + 10
        assert_eq!(h.sum(slot), (27.0, 3));
        assert_eq!(h.sum_at(slot, 9, 9000).2.unwrap().block, 7);
        // Two blocks later with no new sample, only block 9 is still inside.
        let (sum, count, first) = h.sum_at(slot, 11, 11_000);
        assert_eq!((sum, count, first.unwrap().block), (10.0, 1, 9));
        assert_eq!(h.sum_at(slot, 50, 50_000).1, 0);
    }

    #[test]
    fn gaps_in_blocks_are_respected() {
        let mut h = MetricHistory::default();
        let slot = h.require_sum(Window::Blocks(3));
        h.push(e(1, 5.0));
        h.push(e(10, 2.0));
        assert_eq!(h.sum(slot), (2.0, 1));
    }

    #[test]
    fn a_sample_for_the_same_block_replaces_and_an_earlier_block_rolls_back() {
        let mut h = MetricHistory::default();
        let slot = h.require_sum(Window::Blocks(10));
        h.push(e(1, 1.0));
        h.push(e(2, 2.0));
        h.push(e(3, 3.0));
        assert!(h.push(e(3, 30.0)));
        assert_eq!(h.sum(slot), (33.0, 3));
        assert!(h.push(e(2, 20.0)));
        assert_eq!(h.sum(slot), (21.0, 2));
        assert_eq!(h.latest().unwrap().value, 20.0);
    }

    #[test]
    fn time_windows() {
        let mut h = MetricHistory::default();
        let slot = h.require_sum(Window::Millis(2500));
        for b in 0..6 {
            h.push(e(b, 1.0));
        }
        // now = 5000ms; inside: times > 2500 -> 3000, 4000, 5000
        assert_eq!(h.sum(slot).1, 3);
        assert_eq!(h.window_start(Window::Millis(2500)).unwrap().block, 2);
    }
}
