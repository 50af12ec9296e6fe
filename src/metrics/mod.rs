//! Named metric samples and what the engine keeps of them.
//!
//! A [`Sample`] is one observation of one metric at one block: what a live
//! source emits and what a trace row holds. [`history`] keeps, per metric, just
//! the samples that the longest window over it needs, shared by every policy
//! that reads the metric. [`detectors`] holds the statistical detectors' state.

pub mod detectors;
pub mod history;

/// A metric, by index into the engine's metric table (see `PolicySet::metric_names`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetricId(pub u32);

/// One observation of one metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// The block the sample belongs to (for a pending transaction: the block it is expected in).
    pub block: u64,
    /// Unix time in milliseconds when it was observed.
    pub time_ms: u64,
    pub metric: MetricId,
    /// In human units (token amounts divided by 10^decimals) unless the metric says otherwise.
    pub value: f64,
}

/// Whether a metric name is valid in the trace format: `[A-Za-z0-9_.:-]+`.
pub fn is_valid_metric_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}
