//! Calibration: choose a detector's threshold from a benign trace.
//!
//! Given a trace in which nothing should have tripped, a detector, and a
//! target false-alarm rate (`"1/30d"`), find the smallest threshold at which
//! the detector would have fired no more often than the rate allows over the
//! trace's span. Each candidate threshold is judged by compiling a real
//! policy and replaying the metric through the real engine, so what
//! calibration reports is exactly what the pasted policy will do.

use std::path::Path;

use crate::config::Config;
use crate::metrics::Sample;
use crate::policy::model::{Direction, RateUnit};
use crate::policy::{Engine, Mode, compile_str};
use crate::source::trace::{TraceError, TraceReader};
use crate::units::{AlarmRate, DisplayMillis, Window};

/// A detector to calibrate and its fixed parameters; the threshold is what calibration finds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DetectorSpec {
    /// EWMA z-score; the threshold is `z` in standard deviations.
    Ewma { halflife: f64, warmup: u32 },
    /// One-sided CUSUM; the threshold is `h` in standard deviations.
    Cusum { warmup: u32, slack: f64 },
    /// Percent change over a window; the threshold is the percent.
    Change { window: Window },
    /// Rate of change over a window; the threshold is the rate.
    Rate { window: Window, per: RateUnit },
}

/// What to calibrate.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub metric: String,
    pub detector: DetectorSpec,
    pub direction: Direction,
    pub false_alarms: AlarmRate,
    /// The policy's cooldown: alarms closer together than this count once.
    pub cooldown: Window,
    pub action: String,
}

/// The calibrated threshold and how the detector behaved at it.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    pub threshold: f64,
    /// Trips at `threshold` over the trace.
    pub trips: u64,
    /// Trips the target rate allows over the trace's span (rounded down).
    pub allowed: u64,
    pub span_ms: u64,
    pub samples: u64,
    /// The largest statistic the detector produced on the trace.
    pub max_statistic: f64,
    /// A policy with the threshold, ready to paste.
    pub policy_toml: String,
}

/// Problems calibrating.
#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    #[error(transparent)]
    Trace(#[from] TraceError),
    #[error("the trace has no samples of metric `{0}`")]
    NoSamples(String),
    #[error(
        "the trace's samples of `{metric}` span no time; calibration needs a span to turn {rate} into a count"
    )]
    NoSpan { metric: String, rate: AlarmRate },
    #[error(
        "the detector never produced a statistic on this trace (is the trace shorter than the warm-up of {0} samples?)"
    )]
    NeverJudged(u32),
    #[error("internal error: the generated policy did not compile: {0}")]
    Policy(String),
}

fn threshold_text(detector: DetectorSpec, t: f64) -> String {
    match detector {
        DetectorSpec::Change { .. } => format!("by = \"{t}%\""),
        DetectorSpec::Ewma { .. } => format!("z = {t}"),
        DetectorSpec::Cusum { .. } => format!("threshold = {t}"),
        DetectorSpec::Rate { .. } => format!("above = {t}"),
    }
}

/// The policy text for `request` at threshold `t`.
pub fn policy_text(request: &Request, t: f64, note: &str) -> String {
    let direction = request.direction.as_str();
    let metric = &request.metric;
    let threshold = threshold_text(request.detector, t);
    let body = match request.detector {
        DetectorSpec::Ewma { halflife, warmup } => format!(
            "kind = \"ewma\"\nmetric = \"{metric}\"\nhalflife = {halflife}\nwarmup = {warmup}\n{threshold}\ndirection = \"{direction}\""
        ),
        DetectorSpec::Cusum { warmup, slack } => format!(
            "kind = \"cusum\"\nmetric = \"{metric}\"\nwarmup = {warmup}\nslack = {slack}\n{threshold}\ndirection = \"{direction}\""
        ),
        DetectorSpec::Change { window } => format!(
            "kind = \"change\"\nmetric = \"{metric}\"\nwindow = \"{window}\"\ndirection = \"{direction}\"\n{threshold}"
        ),
        DetectorSpec::Rate { window, per } => format!(
            "kind = \"rate\"\nmetric = \"{metric}\"\nwindow = \"{window}\"\nper = \"{}\"\ndirection = \"{direction}\"\n{threshold}",
            per.as_str()
        ),
    };
    let kind = match request.detector {
        DetectorSpec::Ewma { .. } => "ewma",
        DetectorSpec::Cusum { .. } => "cusum",
        DetectorSpec::Change { .. } => "change",
        DetectorSpec::Rate { .. } => "rate",
    };
    let id: String = format!("{metric}-{kind}")
        .chars()
        .map(|c| if c == ':' { '-' } else { c })
        .collect();
    format!(
        "# {note}\n[[policy]]\nid = \"{id}\"\ndescription = \"{kind} detector on {metric}, calibrated for at most {} false alarms\"\nseverity = \"warning\"\naction = \"{}\"\ncooldown = \"{}\"\nmode = \"alert-only\"\n[policy.when]\n{body}\n",
        request.false_alarms, request.action, request.cooldown
    )
}

struct Runner<'a> {
    request: &'a Request,
    samples: Vec<Sample>,
}

impl Runner<'_> {
    fn engine(&self, t: f64) -> Result<Engine, CalibrateError> {
        let set = compile_str(
            "calibration",
            &policy_text(self.request, t, ""),
            &Config::empty(),
        )
        .map_err(|d| CalibrateError::Policy(d.to_string()))?;
        Ok(Engine::new(set, Mode::AlertOnly))
    }

    /// Trips at threshold `t`.
    fn trips(&self, t: f64) -> Result<u64, CalibrateError> {
        let mut engine = self.engine(t)?;
        let mut trips = 0;
        for s in &self.samples {
            engine.on_sample(*s, &mut |_| trips += 1);
        }
        Ok(trips)
    }

    /// The largest statistic in the detector's direction (never tripping).
    fn max_statistic(&self) -> Result<Option<f64>, CalibrateError> {
        let mut engine = self.engine(1e15)?;
        let root = engine.policies().policies[0].root;
        let mut max: Option<f64> = None;
        for s in &self.samples {
            engine.on_sample(*s, &mut |_| {});
            if let Some(stat) = engine.node_statistic(root) {
                let stat = match self.request.detector {
                    DetectorSpec::Cusum { .. } => stat,
                    _ => self.request.direction.magnitude(stat),
                };
                if stat.is_finite() {
                    max = Some(max.map_or(stat, |m: f64| m.max(stat)));
                }
            }
        }
        Ok(max)
    }
}

/// Rounds `x` up to three significant digits.
fn round_up_3(x: f64) -> f64 {
    if x <= 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(2 - x.log10().floor() as i32);
    let r = (x * scale).ceil() / scale;
    // Undo floating noise such as 6.2300000000000004.
    format!("{r:.6e}").parse().unwrap_or(r)
}

/// Calibrates `request` on the trace at `path`.
pub fn calibrate(path: &Path, request: &Request) -> Result<Calibration, CalibrateError> {
    let mut reader = TraceReader::open(path)?;
    let mut samples = Vec::new();
    while let Some(row) = reader.next_row()? {
        if row.metric == request.metric {
            samples.push(Sample {
                block: row.block,
                time_ms: row.time_ms,
                metric: crate::metrics::MetricId(0),
                value: row.value,
            });
        }
    }
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return Err(CalibrateError::NoSamples(request.metric.clone()));
    };
    let span_ms = last.time_ms - first.time_ms;
    if span_ms == 0 {
        return Err(CalibrateError::NoSpan {
            metric: request.metric.clone(),
            rate: request.false_alarms,
        });
    }
    let allowed = request.false_alarms.allowed_over(span_ms).floor() as u64;
    let runner = Runner { request, samples };
    let warmup = match request.detector {
        DetectorSpec::Ewma { warmup, .. } | DetectorSpec::Cusum { warmup, .. } => warmup,
        _ => 0,
    };
    let max_statistic = runner
        .max_statistic()?
        .ok_or(CalibrateError::NeverJudged(warmup))?;

    // Bisect between a threshold that fires too often and one that never fires.
    let mut hi = if max_statistic > 0.0 {
        max_statistic * (1.0 + 1e-9) + 1e-12
    } else {
        1e-12
    };
    // Thresholds must be positive; start just above zero.
    let mut lo = 1e-9;
    if runner.trips(lo)? <= allowed {
        hi = lo;
    } else {
        for _ in 0..64 {
            let mid = (lo + hi) / 2.0;
            if runner.trips(mid)? <= allowed {
                hi = mid;
            } else {
                lo = mid;
            }
        }
    }
    // Round to a number a person can read, and make sure the rounded value still holds.
    let mut threshold = round_up_3(hi);
    let mut trips = runner.trips(threshold)?;
    while trips > allowed {
        threshold = round_up_3(threshold * 1.001);
        trips = runner.trips(threshold)?;
    }
    let note = format!(
        "calibrated on {} ({} samples of {} over {}): {} trips at this threshold, {} allowed at {}",
        path.display(),
        runner.samples.len(),
        request.metric,
        DisplayMillis(span_ms),
        trips,
        allowed,
        request.false_alarms
    );
    Ok(Calibration {
        threshold,
        trips,
        allowed,
        span_ms,
        samples: runner.samples.len() as u64,
        max_statistic,
        policy_toml: policy_text(request, threshold, &note),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_goes_up_to_three_significant_digits() {
        assert_eq!(round_up_3(6.2201), 6.23);
        assert_eq!(round_up_3(6.22), 6.22);
        assert_eq!(round_up_3(12345.0), 12400.0);
        assert_eq!(round_up_3(0.0012341), 0.00124);
    }

    #[test]
    fn generated_policies_compile() {
        for detector in [
            DetectorSpec::Ewma {
                halflife: 50.0,
                warmup: 100,
            },
            DetectorSpec::Cusum {
                warmup: 100,
                slack: 0.5,
            },
            DetectorSpec::Change {
                window: Window::Blocks(10),
            },
            DetectorSpec::Rate {
                window: Window::Millis(60_000),
                per: RateUnit::PerSecond,
            },
        ] {
            let request = Request {
                metric: "chain.base_fee_gwei".into(),
                detector,
                direction: Direction::Up,
                false_alarms: crate::units::parse_alarm_rate("1/30d").unwrap(),
                cooldown: Window::Millis(3_600_000),
                action: "alert".into(),
            };
            let text = policy_text(&request, 6.5, "note");
            compile_str("generated", &text, &Config::empty())
                .unwrap_or_else(|e| panic!("{e}\n{text}"));
        }
    }
}
