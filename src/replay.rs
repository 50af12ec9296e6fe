//! Replay (backtest): a recorded trace through the same engine the live
//! watcher feeds, trips out as they happen.

use std::io::BufRead;

use serde_json::{Map, Value, json};

use crate::decision::Trip;
use crate::metrics::{MetricId, Sample};
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
    // Traces repeat metric names: the previous row's name and id are kept.
    let mut last: (String, Option<MetricId>) = (String::new(), None);
    while let Some(row) = reader.next_row()? {
        summary.samples_read += 1;
        if summary.last_block != Some(row.block) {
            summary.blocks_read += 1;
        }
        summary.first_block.get_or_insert(row.block);
        summary.first_time_ms.get_or_insert(row.time_ms);
        summary.last_block = Some(row.block);
        summary.last_time_ms = Some(row.time_ms);
        if last.0.is_empty() || last.0 != row.metric {
            last.0.clear();
            last.0.push_str(row.metric);
            last.1 = engine.metric_id(row.metric);
        }
        let Some(metric) = last.1 else {
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
    let mut out = String::with_capacity(24);
    push_time(&mut out, ms);
    out
}

/// The first millisecond of year 10000: later times need chrono's `+YYYYY` year.
const YEAR_10000_MS: u64 = 253_402_300_800_000;

/// Appends [`format_time`]'s text. A replay formats one time per trip, so
/// years 1970-9999 are written by hand (days to a civil date, Hinnant's
/// algorithm); chrono writes the rest. The text is chrono's
/// `%Y-%m-%d %H:%M:%S%.3fZ` either way (a test compares them).
fn push_time(out: &mut String, ms: u64) {
    use std::fmt::Write as _;
    if ms >= YEAR_10000_MS {
        let _ = match chrono::DateTime::from_timestamp_millis(ms as i64) {
            Some(t) => write!(out, "{}", t.format("%Y-%m-%d %H:%M:%S%.3fZ")),
            None => write!(out, "{ms} ms"),
        };
        return;
    }
    let (days, ms_of_day) = (ms / 86_400_000, ms % 86_400_000);
    let (year, month, day) = civil_from_days(days);
    let mut text = *b"0000-00-00 00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (at..at + width).rev() {
            text[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, ms_of_day / 3_600_000);
    put(14, 2, ms_of_day / 60_000 % 60);
    put(17, 2, ms_of_day / 1000 % 60);
    put(20, 3, ms_of_day % 1000);
    out.push_str(std::str::from_utf8(&text).unwrap_or_default());
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + u64::from(month <= 2), month, day)
}

/// A trip as a human timeline entry.
pub fn trip_line(trip: &Trip) -> String {
    let parts = trip.policy.len() + trip.action.len() + trip.summary.len();
    // The fixed text, a 20-digit block, the time, severity and mode take at most 92 bytes.
    let mut out = String::with_capacity(96 + parts);
    out.push_str("block ");
    out.push_str(itoa::Buffer::new().format(trip.block));
    out.push_str("  ");
    push_time(&mut out, trip.time_ms);
    out.push_str("  TRIP ");
    out.push_str(&trip.policy);
    out.push_str(" (");
    out.push_str(trip.severity.as_str());
    out.push_str(") -> ");
    out.push_str(&trip.action);
    out.push_str(" [");
    out.push_str(trip.mode.as_str());
    out.push_str("]\n    ");
    out.push_str(&trip.summary);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_chrono_writes_them() {
        let chrono_text = |ms: u64| match chrono::DateTime::from_timestamp_millis(ms as i64) {
            Some(t) => t.format("%Y-%m-%d %H:%M:%S%.3fZ").to_string(),
            None => format!("{ms} ms"),
        };
        let mut ms = 0u64;
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let edges = [
            0,
            1,
            951_782_400_000,   // 2000-02-29
            4_107_542_400_000, // 2100-02-28
            YEAR_10000_MS - 1,
            YEAR_10000_MS,
            u64::MAX,
        ];
        for e in edges {
            assert_eq!(format_time(e), chrono_text(e), "{e}");
        }
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ms = ms.wrapping_add(x % 5_000_000_000) % (YEAR_10000_MS + 1000);
            assert_eq!(format_time(ms), chrono_text(ms), "{ms}");
        }
    }
}
