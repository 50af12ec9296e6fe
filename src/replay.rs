//! Replay (backtest): a recorded trace through the same engine the live
//! watcher feeds, trips out as they happen.

use std::io::BufRead;

use serde_json::{Map, Value, json};

use crate::decision::Trip;
use crate::metrics::Sample;
use crate::policy::Engine;
use crate::source::trace::{TraceError, TraceReader};

/// What a replay read and what tripped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplaySummary {
    /// Rows read from the trace.
    pub samples_read: u64,
    /// Rows whose metric some policy reads.
    pub samples_used: u64,
    pub first_block: Option<u64>,
    pub last_block: Option<u64>,
    /// How many times the block number changed from row to row, plus one: the
    /// blocks actually read (a reorg's re-read blocks count again).
    pub blocks_read: u64,
    pub first_time_ms: Option<u64>,
    pub last_time_ms: Option<u64>,
    /// Trips per policy id, in policy order (zeros included).
    pub trips: Vec<(String, u64)>,
    /// Metrics that policies read but the trace never carried.
    pub metrics_never_seen: Vec<String>,
}

impl ReplaySummary {
    pub fn trips_total(&self) -> u64 {
        self.trips.iter().map(|(_, n)| n).sum()
    }

    /// The final `{"summary":{...}}` line of `--json` output.
    pub fn to_json(&self) -> Value {
        let trips: Map<String, Value> = self
            .trips
            .iter()
            .map(|(id, n)| (id.clone(), Value::from(*n)))
            .collect();
        json!({"summary": {
            "samples_read": self.samples_read,
            "samples_used": self.samples_used,
            "samples_ignored": self.samples_read - self.samples_used,
            "first_block": self.first_block,
            "last_block": self.last_block,
            "blocks_read": self.blocks_read,
            "first_time_ms": self.first_time_ms,
            "last_time_ms": self.last_time_ms,
            "trips_total": self.trips_total(),
            "trips": trips,
            "metrics_never_seen": self.metrics_never_seen,
        }})
    }
}

/// Replays every row of `reader` through `engine`, calling `on_trip` for each trip.
/// Stops at the first malformed row with its location; nothing is skipped.
pub fn replay<R: BufRead>(
    reader: &mut TraceReader<R>,
    engine: &mut Engine,
    on_trip: &mut impl FnMut(Trip),
) -> Result<ReplaySummary, TraceError> {
    let metric_count = engine.policies().metric_names.len();
    let mut seen = vec![false; metric_count];
    let mut summary = ReplaySummary::default();
    while let Some(row) = reader.next_row()? {
        summary.samples_read += 1;
        if summary.last_block != Some(row.block) {
            summary.blocks_read += 1;
        }
        summary.first_block.get_or_insert(row.block);
        summary.first_time_ms.get_or_insert(row.time_ms);
        summary.last_block = Some(row.block);
        summary.last_time_ms = Some(row.time_ms);
        let Some(metric) = engine.metric_id(row.metric) else {
            // No policy reads this metric, but its row still moves the clock (staleness).
            engine.on_tick(row.block, row.time_ms, on_trip);
            continue;
        };
        summary.samples_used += 1;
        seen[metric.0 as usize] = true;
        let sample = Sample {
            block: row.block,
            time_ms: row.time_ms,
            metric,
            value: row.value,
        };
        engine.on_sample(sample, on_trip);
    }
    let set = engine.policies();
    summary.trips = set
        .policies
        .iter()
        .zip(&engine.stats().trips)
        .map(|(p, n)| (p.id.clone(), *n))
        .collect();
    summary.metrics_never_seen = seen
        .iter()
        .enumerate()
        .filter(|(_, s)| !**s)
        .map(|(i, _)| set.metric_names[i].clone())
        .collect();
    Ok(summary)
}

/// Instantiates `set`'s templates over the metric names `trace` carries
/// (for replays without a configuration, whose templates have no instances
/// yet); what could not be instantiated is added to `set.warnings`.
pub fn instantiate_from_trace(
    set: &mut crate::policy::PolicySet,
    trace: &std::path::Path,
) -> Result<(), TraceError> {
    if set.templates.is_empty() || set.templates.iter().all(|t| !t.instances.is_empty()) {
        return Ok(());
    }
    let mut names = std::collections::BTreeSet::new();
    let mut reader = TraceReader::open(trace)?;
    while let Some(row) = reader.next_row()? {
        if !names.contains(row.metric) {
            names.insert(row.metric.to_string());
        }
    }
    let found = set.instantiate(names.iter().map(String::as_str));
    set.warnings.extend(found.notes);
    Ok(())
}

/// A trip as one `--json` line (trace-format spec: policy, block, time_ms, action, severity, evidence).
pub fn trip_json(trip: &Trip) -> String {
    serde_json::to_string(trip)
        .unwrap_or_else(|e| format!("{{\"error\":\"cannot encode trip: {e}\"}}"))
}

/// Unix milliseconds as `2022-08-01 21:32:13.500Z`.
pub fn format_time(ms: u64) -> String {
    match chrono::DateTime::from_timestamp_millis(ms as i64) {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S%.3fZ").to_string(),
        None => format!("{ms} ms"),
    }
}

/// A trip as a human timeline entry.
pub fn trip_line(trip: &Trip) -> String {
    format!(
        "block {}  {}  TRIP {} ({}) -> {} [{}]\n    {}",
        trip.block,
        format_time(trip.time_ms),
        trip.policy,
        trip.severity.as_str(),
        trip.action,
        trip.mode,
        trip.summary
    )
}
