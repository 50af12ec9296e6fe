//! What-if evaluation: a snapshot of the block a pending transaction would
//! make, judged by the same policies against the current windows and
//! detectors, **without committing it**.
//!
//! The snapshot's samples are appended to their metrics' histories as the next
//! block, every condition that reads them is re-evaluated, and the policies
//! above them are checked as for a mined block (hysteresis and cooldown
//! included). Then everything is put back exactly as it was: histories, node
//! truths and streaks, detector baselines, cooldowns, the clock and the
//! counters. The real block's samples still arrive later and are the ones that
//! count. A trip's evidence gains a `what_if` object with the block it was
//! evaluated as and each changed metric's value before and after.
//!
//! Staleness conditions are not re-evaluated (a what-if snapshot says nothing
//! about time passing).

use serde_json::{Map, Value};

use super::Engine;
use crate::decision::{Trip, evidence_number as num};
use crate::metrics::MetricId;
use crate::metrics::history::Entry;

impl Engine {
    /// Evaluates a what-if snapshot (`samples`, expected in block `block` at
    /// `time_ms`) and returns the trips it would cause, leaving the engine as
    /// it was. The snapshot is evaluated as the block after the newest one the
    /// engine has seen, whatever `block` says, so it never replaces a real one.
    pub fn what_if(&mut self, block: u64, time_ms: u64, samples: &[(MetricId, f64)]) -> Vec<Trip> {
        let (clock_block, clock_ms) = self.clock.unwrap_or((0, 0));
        let block = block.max(clock_block + 1);
        let time_ms = time_ms.max(clock_ms + 1);
        let saved_nodes = self.nodes.clone();
        let saved_readings = self.readings.clone();
        let saved_policies = self.policies.clone();
        let saved_clock = (self.clock, self.start);
        let saved_stats = self.stats.clone();
        let mut before = Vec::with_capacity(samples.len());
        let mut marks = Vec::with_capacity(samples.len());
        for &(metric, value) in samples {
            let h = &mut self.histories[metric.0 as usize];
            before.push(h.latest().map(|e| e.value));
            let entry = Entry {
                block,
                time_ms,
                value,
            };
            // A metric named twice keeps its first value: one sample per metric and block.
            if h.latest().is_some_and(|e| e.block >= block) {
                marks.push(None);
                continue;
            }
            marks.push(Some(h.push_speculative(entry)));
        }
        self.clock = Some((block, time_ms));
        let mut policies = Vec::new();
        for &(metric, _) in samples {
            let m = metric.0 as usize;
            for i in 0..self.by_metric[m].nodes.len() {
                let id = self.by_metric[m].nodes[i];
                self.evaluate(id, Some(metric), (block, time_ms));
            }
            policies.extend_from_slice(&self.by_metric[m].policies);
        }
        policies.sort_unstable();
        policies.dedup();
        let mut trips = Vec::new();
        for p in policies {
            self.check_policy(p, block, time_ms, &mut |t| trips.push(t));
        }
        // Undo, newest first.
        for (&(metric, _), mark) in samples.iter().zip(marks).rev() {
            if let Some(mark) = mark {
                self.histories[metric.0 as usize].retract(mark);
            }
        }
        self.nodes = saved_nodes;
        self.readings = saved_readings;
        self.policies = saved_policies;
        (self.clock, self.start) = saved_clock;
        self.stats = saved_stats;
        if !trips.is_empty() {
            let changes = self.changes(samples, &before);
            for t in &mut trips {
                t.evidence.make_mut()["what_if"] =
                    serde_json::json!({ "block": block, "changed": changes.clone() });
            }
        }
        trips
    }

    /// Each metric whose what-if value differs from its latest: `{metric: {before, after}}`.
    fn changes(&self, samples: &[(MetricId, f64)], before: &[Option<f64>]) -> Value {
        let mut out = Map::new();
        for (&(metric, after), before) in samples.iter().zip(before) {
            if *before == Some(after) {
                continue;
            }
            out.insert(
                self.set.metric_name(metric).to_string(),
                serde_json::json!({ "before": before.map_or(Value::Null, num), "after": num(after) }),
            );
        }
        Value::Object(out)
    }
}
