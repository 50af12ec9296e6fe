//! Recording a live run as a metric trace (`shared/spec/trace-format.md`).
//!
//! Every sample the watcher emits becomes one row, in the order emitted, so
//! replaying the file through the same policies reproduces the same trips.
//! A reorg is written as a comment naming the replaced blocks; the corrected
//! samples follow as ordinary rows.

use std::io::{self, Write};

use super::WatchEvent;
use crate::source::trace::TraceWriter;

/// Keeps sample times non-decreasing, as the trace format requires.
///
/// A block's samples carry its timestamp; pending and watchdog samples carry
/// the time they were observed, which can be later than the next block's
/// timestamp. A sample earlier than the last one takes the last one's time.
/// The recorder applies this, and a live consumer feeding policies applies it
/// too, so the live run and the replay of its recording see the same samples.
#[derive(Debug, Clone, Copy, Default)]
pub struct TimeOrder {
    last: u64,
}

impl TimeOrder {
    /// The time to use for a sample observed at `time_ms`.
    pub fn next(&mut self, time_ms: u64) -> u64 {
        self.last = self.last.max(time_ms);
        self.last
    }
}

/// Writes watcher events as trace rows.
#[derive(Debug)]
pub struct Recorder<W: Write> {
    writer: TraceWriter<W>,
    /// Rows are kept in time order: a row never goes back in time.
    order: TimeOrder,
    rows: u64,
}

impl<W: Write> Recorder<W> {
    /// Starts a trace with a comment saying what was recorded.
    pub fn new(out: W, comment: &str) -> io::Result<Self> {
        Ok(Self {
            writer: TraceWriter::new(out, comment)?,
            order: TimeOrder::default(),
            rows: 0,
        })
    }

    /// Appends the samples of `event`, their times kept in order by [`TimeOrder`].
    pub fn record(&mut self, event: &WatchEvent) -> io::Result<()> {
        if let WatchEvent::Reorg(r) = event {
            let blocks: Vec<String> = r
                .replaced
                .iter()
                .map(|(n, h)| format!("{n} ({h})"))
                .collect();
            return self.writer.comment(&format!(
                "reorg: blocks after {} replaced: {}",
                r.common_ancestor,
                blocks.join(", ")
            ));
        }
        for (block, time_ms, metric, value) in event.samples() {
            let time_ms = self.order.next(time_ms);
            self.writer.write(block, time_ms, metric, value)?;
            self.rows += 1;
        }
        Ok(())
    }

    /// How many rows were written.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }

    pub fn into_inner(self) -> W {
        self.writer.into_inner()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_never_go_back() {
        let mut o = TimeOrder::default();
        assert_eq!([5, 3, 5, 9, 1].map(|t| o.next(t)), [5, 5, 5, 9, 9]);
    }
}
