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

/// An on-chain amount in human units: `raw / 10^decimals`, correctly rounded to
/// the nearest f64. The one place token amounts become floating point.
/// `None` when `decimals` is above 77 (no such unit).
pub fn scaled_amount(raw: alloy::primitives::U256, decimals: u8) -> Option<f64> {
    alloy::primitives::utils::format_units(raw, decimals)
        .ok()?
        .parse()
        .ok()
}

/// A signed on-chain amount (an oracle answer, an int256 return) in human units.
pub fn scaled_signed(raw: alloy::primitives::I256, decimals: u8) -> Option<f64> {
    alloy::primitives::utils::format_units(raw, decimals)
        .ok()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::{I256, U256};

    #[test]
    fn amounts_scale_exactly_then_round_once() {
        let wei = U256::from(1_395_633_240_123_456_000u128);
        assert_eq!(scaled_amount(wei, 18), Some(1.395_633_240_123_456));
        assert_eq!(scaled_amount(U256::MAX, 0), Some(1.157_920_892_373_162e77));
        assert_eq!(scaled_amount(U256::from(5u8), 1), Some(0.5));
        assert_eq!(scaled_amount(U256::from(5u8), 78), None);
        assert_eq!(
            scaled_signed(I256::try_from(-183_520_000_000i64).unwrap(), 8),
            Some(-1835.2)
        );
    }
}
