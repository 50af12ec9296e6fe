//! Recording a live run as a metric trace (`shared/spec/trace-format.md`).
//!
//! Every sample the watcher emits becomes one row, in the order emitted, so
//! replaying the file through the same policies reproduces the same trips.
//! A reorg is written as a comment naming the replaced blocks; the corrected
//! samples follow as ordinary rows.

use std::io::{self, Write};

use super::WatchEvent;
use crate::source::trace::TraceWriter;

/// Writes watcher events as trace rows.
#[derive(Debug)]
pub struct Recorder<W: Write> {
    writer: TraceWriter<W>,
    /// Rows are kept in time order: a row never goes back in time, even after a reorg.
    last_time: u64,
    rows: u64,
}

impl<W: Write> Recorder<W> {
    /// Starts a trace with a comment saying what was recorded.
    pub fn new(out: W, comment: &str) -> io::Result<Self> {
        Ok(Self {
            writer: TraceWriter::new(out, comment)?,
            last_time: 0,
            rows: 0,
        })
    }

    /// Appends the samples of `event`. A reorg's re-read blocks keep their own
    /// block timestamps unless that would go back in time, in which case the
    /// rows carry the latest time written (the trace format's order rule).
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
            let time_ms = time_ms.max(self.last_time);
            self.writer.write(block, time_ms, metric, value)?;
            self.last_time = time_ms;
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
