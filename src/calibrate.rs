//! Calibration: choose a condition's threshold from benign traces, and show
//! what it costs in detection against synthetic attacks.
//!
//! Given traces in which nothing should have tripped, a condition (any kind),
//! a target false-alarm rate (`"1/30d"`) and a margin, find the smallest
//! threshold at which the condition, with its `for` and the policy's
//! cooldown, would have fired no more often than the rate allows over the
//! traces' total span, then widen it by the margin. Each candidate is judged
//! by compiling a real policy and replaying the traces through the real
//! engine, so what calibration reports is what the pasted policy will do.
//!
//! Calibration says when the data cannot support the rate asked for: a trace
//! shorter than the rate's period allows no alarm at all, so "1/30d" on a day
//! of data only means "above everything this day saw". It then reports the
//! rate the data does support (one alarm over the whole span) and marks the
//! generated policy accordingly.
//!
//! Synthetic attacks ([`Attack`]) are injected into copies of the benign
//! traces at evenly spaced blocks; for each candidate threshold the report
//! gives false alarms per 30 days (benign traces) against the share of attacks
//! caught and the detection delay in blocks: the trade-off a council picks from.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::metrics::Sample;
use crate::policy::model::{Direction, RateUnit};
use crate::policy::{Engine, Mode, compile_str};
use crate::source::trace::{TraceError, TraceReader};
use crate::units::{AlarmRate, Hold, Window};

const THIRTY_DAYS_MS: f64 = 30.0 * 86_400_000.0;
/// A score threshold no statistic reaches (written out plainly in a policy).
const NEVER: f64 = 1e15;

/// A condition to calibrate and its fixed parameters; the threshold is what calibration finds.
#[derive(Debug, Clone, PartialEq)]
pub enum DetectorSpec {
    /// `metric > value` (direction up) or `metric < value` (down); finds `value`, in the metric's units.
    Threshold,
    /// Percent change over a window; finds `by`, in percent.
    Change { window: Window },
    /// Rate of change over a window; finds `above`, in metric units per block or second.
    Rate { window: Window, per: RateUnit },
    /// Sum over a window; finds `value`, in metric units, or in percent of `relative_to`.
    Sum {
        window: Window,
        relative_to: Option<String>,
    },
    /// Deviation from a reference metric; finds `above`, in percent.
    Deviation {
        reference: String,
        max_skew: Option<Window>,
    },
    /// No sample for a while; finds `after`, in blocks.
    Stale,
    /// EWMA z-score; finds `z`, in standard deviations.
    Ewma { halflife: f64, warmup: u32 },
    /// One-sided CUSUM; finds `threshold`, in standard deviations.
    Cusum { warmup: u32, slack: f64 },
}

impl DetectorSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            DetectorSpec::Threshold => "threshold",
            DetectorSpec::Change { .. } => "change",
            DetectorSpec::Rate { .. } => "rate",
            DetectorSpec::Sum { .. } => "sum",
            DetectorSpec::Deviation { .. } => "deviation",
            DetectorSpec::Stale => "stale",
            DetectorSpec::Ewma { .. } => "ewma",
            DetectorSpec::Cusum { .. } => "cusum",
        }
    }

    /// The unit of the threshold, for every number printed.
    pub fn unit(&self) -> &'static str {
        match self {
            DetectorSpec::Threshold => "metric units",
            DetectorSpec::Change { .. } | DetectorSpec::Deviation { .. } => "%",
            DetectorSpec::Rate {
                per: RateUnit::PerBlock,
                ..
            } => "metric units/block",
            DetectorSpec::Rate { .. } => "metric units/s",
            DetectorSpec::Sum {
                relative_to: Some(_),
                ..
            } => "% of relative_to",
            DetectorSpec::Sum { .. } => "metric units (summed)",
            DetectorSpec::Stale => "blocks",
            DetectorSpec::Ewma { .. } | DetectorSpec::Cusum { .. } => "sd",
        }
    }

    fn warmup(&self) -> u32 {
        match self {
            DetectorSpec::Ewma { warmup, .. } | DetectorSpec::Cusum { warmup, .. } => *warmup,
            _ => 0,
        }
    }

    /// Whether the threshold must be a positive number (all but `threshold`).
    fn positive(&self) -> bool {
        !matches!(self, DetectorSpec::Threshold)
    }
}

/// A synthetic attack shape, injected into the calibrated metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Attack {
    /// The metric falls by `pct` percent, evenly over `blocks` blocks, and stays down.
    Drain { pct: f64, blocks: u64 },
    /// The metric is `pct` percent higher (negative: lower) for one block only.
    Jump { pct: f64 },
    /// The metric drops by `pct` percent at once and stays down (a share-price drop).
    Drop { pct: f64 },
    /// `amount` (metric units) is added to the metric in one block (an outflow burst).
    Burst { amount: f64 },
}

impl Attack {
    /// Parses `drain:30%:10`, `jump:5%`, `jump:-5%`, `drop:2%`, `burst:500000`.
    pub fn parse(text: &str) -> Result<Attack, String> {
        let parts: Vec<&str> = text.split(':').collect();
        let pct = |s: &str| -> Result<f64, String> {
            crate::units::parse_percent(s)
                .map(|p| p.0)
                .map_err(|e| format!("attack `{text}`: {e}; {}", e.hint))
        };
        let hint = "attacks: drain:<pct>%:<blocks>, jump:<pct>%, drop:<pct>%, burst:<amount>";
        match parts.as_slice() {
            ["drain", p, k] => {
                let blocks: u64 = k
                    .trim_end_matches(" blocks")
                    .parse()
                    .map_err(|_| format!("attack `{text}`: `{k}` is not a number of blocks"))?;
                if blocks == 0 {
                    return Err(format!("attack `{text}`: a drain takes at least 1 block"));
                }
                Ok(Attack::Drain {
                    pct: pct(p)?,
                    blocks,
                })
            }
            ["jump", p] => Ok(Attack::Jump { pct: pct(p)? }),
            ["drop", p] => Ok(Attack::Drop { pct: pct(p)? }),
            ["burst", a] => a
                .parse()
                .map(|amount| Attack::Burst { amount })
                .map_err(|_| format!("attack `{text}`: `{a}` is not an amount")),
            _ => Err(format!("`{text}` is not an attack ({hint})")),
        }
    }

    /// Blocks the attack takes to play out.
    pub fn blocks(&self) -> u64 {
        match self {
            Attack::Drain { blocks, .. } => *blocks,
            _ => 1,
        }
    }

    /// The attacked value of a sample `offset` blocks after the attack started.
    pub fn apply(&self, value: f64, offset: u64) -> f64 {
        match *self {
            Attack::Drain { pct, blocks } => {
                let done = ((offset + 1) as f64 / blocks as f64).min(1.0);
                value * (1.0 - pct / 100.0 * done)
            }
            Attack::Jump { pct } if offset == 0 => value * (1.0 + pct / 100.0),
            Attack::Jump { .. } => value,
            Attack::Drop { pct } => value * (1.0 - pct / 100.0),
            Attack::Burst { amount } if offset == 0 => value + amount,
            Attack::Burst { .. } => value,
        }
    }
}

impl std::fmt::Display for Attack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Attack::Drain { pct, blocks } => write!(f, "drain of {pct}% over {blocks} blocks"),
            Attack::Jump { pct } => write!(f, "one-block jump of {pct}%"),
            Attack::Drop { pct } => write!(f, "drop of {pct}% that stays"),
            Attack::Burst { amount } => write!(f, "one-block burst of +{amount} (metric units)"),
        }
    }
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
    /// The condition's `for`, if any (honoured when counting trips).
    pub hold: Option<Hold>,
    /// Added to the calibrated threshold, in percent of it (20 = 20%).
    pub margin_pct: f64,
    pub action: String,
    /// Attacks to inject into the benign traces; empty: no trade-off table.
    pub attacks: Vec<Attack>,
    /// Injections of each attack per trace.
    pub injections: u32,
    /// Blocks after an attack ends within which a trip counts as detection.
    pub horizon_blocks: u64,
}

/// One candidate threshold's benign false alarms and attack detection.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Candidate {
    /// In the detector's unit ([`DetectorSpec::unit`]).
    pub threshold: f64,
    /// Trips over the benign traces.
    pub false_alarms: u64,
    /// `false_alarms` scaled to 30 days of data.
    pub false_alarms_per_30d: f64,
    /// Attacks injected and caught within the horizon.
    pub injected: u64,
    pub caught: u64,
    /// Blocks from an attack's first block to the trip, for the caught ones, sorted.
    pub delays_blocks: Vec<u64>,
}

impl Candidate {
    pub fn median_delay(&self) -> Option<u64> {
        (!self.delays_blocks.is_empty()).then(|| self.delays_blocks[self.delays_blocks.len() / 2])
    }
    pub fn max_delay(&self) -> Option<u64> {
        self.delays_blocks.last().copied()
    }
}

/// The calibrated threshold and how the condition behaved at it.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// The threshold in the generated policy (margin included), in [`DetectorSpec::unit`].
    pub threshold: f64,
    /// The smallest threshold the benign data allows at the rate, before the margin;
    /// `None` when the benign traces never moved in the direction at all.
    pub benign_threshold: Option<f64>,
    /// Trips at `threshold` over all the traces.
    pub trips: u64,
    /// Trips the target rate allows over the traces' total span (rounded down).
    pub allowed: u64,
    pub span_ms: u64,
    pub samples: u64,
    pub traces: Vec<PathBuf>,
    /// The largest statistic the condition produced, in its direction and unit.
    pub max_statistic: Option<f64>,
    /// False: the data is too short for the rate (see `supported`).
    pub rate_supported: bool,
    /// The rate the data can vouch for: one alarm over the whole span, as `1/<span>`.
    pub supported: String,
    /// Blocks where each attack was injected (the same in every candidate).
    pub injected_at: Vec<(PathBuf, u64)>,
    /// The trade-off table, smallest threshold first (empty without attacks).
    pub candidates: Vec<Candidate>,
    /// Loud warnings (also written into the policy).
    pub warnings: Vec<String>,
    /// A policy with the threshold, ready to paste, with the trade-off table as comments.
    pub policy_toml: String,
}

/// Problems calibrating.
#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    #[error(transparent)]
    Trace(#[from] TraceError),
    #[error("no trace has samples of metric `{0}`; check the name with `head` on the trace")]
    NoSamples(String),
    #[error(
        "the traces' samples of `{metric}` span no time; calibration needs a span to turn {rate} into a count"
    )]
    NoSpan { metric: String, rate: AlarmRate },
    #[error(
        "the condition was never judged on these traces (are they shorter than the warm-up of {0} samples, or is a reference metric missing?)"
    )]
    NeverJudged(u32),
    #[error(
        "the benign traces never moved `{metric}` {direction} (largest {direction} statistic {max}): they cannot say where a threshold goes; give synthetic attacks with --attack to choose one from the trade-off"
    )]
    NeverMoved {
        metric: String,
        direction: &'static str,
        max: String,
    },
    #[error("internal error: the generated policy did not compile: {0}")]
    Policy(String),
}

/// One alarm over the whole span, rounded down to whole days, hours or minutes
/// (so it parses as a `--false-alarms` rate): `"1/39h"`.
pub fn supported_rate(span_ms: u64) -> String {
    let (d, h, m) = (86_400_000, 3_600_000, 60_000);
    if span_ms >= 2 * d {
        format!("1/{}d", span_ms / d)
    } else if span_ms >= h {
        format!("1/{}h", span_ms / h)
    } else {
        format!("1/{}m", (span_ms / m).max(1))
    }
}

/// A duration for people: `"1.53 days (131764 s)"`.
pub fn human_span(ms: u64) -> String {
    let s = ms as f64 / 1000.0;
    if s >= 86_400.0 {
        format!("{:.2} days ({:.0} s)", s / 86_400.0, s)
    } else if s >= 3_600.0 {
        format!("{:.2} hours ({:.0} s)", s / 3_600.0, s)
    } else {
        format!("{s:.0} s")
    }
}

fn threshold_text(request: &Request, t: f64) -> String {
    match &request.detector {
        DetectorSpec::Threshold => format!(
            "op = \"{}\"\nvalue = {t}",
            if request.direction == Direction::Down {
                "<"
            } else {
                ">"
            }
        ),
        DetectorSpec::Change { .. } => format!("by = \"{t}%\""),
        DetectorSpec::Ewma { .. } => format!("z = {t}"),
        DetectorSpec::Cusum { .. } => format!("threshold = {t}"),
        DetectorSpec::Rate { .. } => format!("above = {t}"),
        DetectorSpec::Sum {
            relative_to: Some(_),
            ..
        } => format!("op = \">\"\nvalue = \"{t}%\""),
        DetectorSpec::Sum { .. } => format!("op = \">\"\nvalue = {t}"),
        DetectorSpec::Deviation { .. } => format!("above = \"{t}%\""),
        DetectorSpec::Stale => format!("after = \"{} blocks\"", t.ceil().max(1.0)),
    }
}

/// The `[policy.when]` body for `request` at threshold `t`.
fn when_body(request: &Request, t: f64) -> String {
    let direction = request.direction.as_str();
    let metric = &request.metric;
    let threshold = threshold_text(request, t);
    let mut body = match &request.detector {
        DetectorSpec::Threshold | DetectorSpec::Stale => {
            format!(
                "kind = \"{}\"\nmetric = \"{metric}\"\n{threshold}",
                request.detector.kind()
            )
        }
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
        DetectorSpec::Sum {
            window,
            relative_to,
        } => {
            let rel = relative_to
                .as_ref()
                .map(|r| format!("\nrelative_to = \"{r}\""))
                .unwrap_or_default();
            format!(
                "kind = \"sum\"\nmetric = \"{metric}\"\nwindow = \"{window}\"\n{threshold}{rel}"
            )
        }
        DetectorSpec::Deviation {
            reference,
            max_skew,
        } => {
            let skew = max_skew
                .map(|w| format!("\nmax_skew = \"{w}\""))
                .unwrap_or_default();
            format!(
                "kind = \"deviation\"\nmetric = \"{metric}\"\nreference = \"{reference}\"\n{threshold}{skew}"
            )
        }
    };
    if let Some(hold) = request.hold {
        let unit = match hold {
            Hold::Blocks(_) => "blocks",
            Hold::Samples(_) => "samples",
        };
        body += &format!("\nfor = \"{} {unit}\"", hold.count());
    }
    body
}

/// The policy text for `request` at threshold `t`, `header` as leading comments.
pub fn policy_text(request: &Request, t: f64, header: &str) -> String {
    let kind = request.detector.kind();
    let metric = &request.metric;
    let id: String = format!("{metric}-{kind}")
        .chars()
        .map(|c| if c == ':' { '-' } else { c })
        .collect();
    let comments: String = header
        .lines()
        .map(|l| format!("# {l}\n").replace("# \n", "#\n"))
        .collect();
    format!(
        "{comments}[[policy]]\nid = \"{id}\"\ndescription = \"{kind} condition on {metric}, calibrated (see the comments above)\"\nseverity = \"warning\"\naction = \"{}\"\ncooldown = \"{}\"\nmode = \"alert-only\"\n[policy.when]\n{}\n",
        request.action,
        request.cooldown,
        when_body(request, t)
    )
}

/// One trace's rows that matter: the calibrated metric's and its companions'
/// samples (slot 0, 1), and every other row as a clock tick (slot `u8::MAX`).
struct TraceData {
    path: PathBuf,
    rows: Vec<(u64, u64, u8, f64)>,
    span_ms: u64,
    samples: u64,
}

fn read_trace(path: &Path, names: &[&str]) -> Result<TraceData, CalibrateError> {
    let mut reader = TraceReader::open(path)?;
    let mut rows = Vec::new();
    let mut samples = 0;
    let (mut first, mut last) = (None, 0);
    while let Some(row) = reader.next_row()? {
        let slot = names
            .iter()
            .position(|n| *n == row.metric)
            .map_or(u8::MAX, |i| i as u8);
        if slot == 0 {
            samples += 1;
            first.get_or_insert(row.time_ms);
            last = row.time_ms;
        }
        rows.push((row.block, row.time_ms, slot, row.value));
    }
    Ok(TraceData {
        path: path.to_path_buf(),
        rows,
        span_ms: first.map_or(0, |f| last - f),
        samples,
    })
}

/// The calibrated metric's score direction: larger is more alarming.
fn sign(request: &Request) -> f64 {
    match (&request.detector, request.direction) {
        (DetectorSpec::Threshold, Direction::Down) => -1.0,
        _ => 1.0,
    }
}

struct Runner<'a> {
    request: &'a Request,
    traces: Vec<TraceData>,
}

/// An attack placed in one trace: which trace, from which block.
#[derive(Clone, Copy)]
struct Injection {
    trace: usize,
    block: u64,
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

    /// The policy's threshold for score `s` (the score is the threshold with larger = more alarming).
    fn threshold_of(&self, s: f64) -> f64 {
        s * sign(self.request)
    }

    /// Replays trace `i` (with `attack` injected, if any) at score threshold `s`;
    /// calls `on_trip(block)` per trip and `on_stat(score)` after each sample
    /// of the metric. Stops after block `until`.
    fn run(
        &self,
        i: usize,
        s: f64,
        attack: Option<(Attack, u64)>,
        until: u64,
        on_trip: &mut impl FnMut(u64),
        on_stat: &mut impl FnMut(f64),
    ) -> Result<(), CalibrateError> {
        let mut engine = self.engine(self.threshold_of(s))?;
        let names = self.names();
        let ids: Vec<_> = names.iter().map(|n| engine.metric_id(n)).collect();
        let root = engine.policies().policies[0].root;
        let detector = &self.request.detector;
        for &(block, time_ms, slot, value) in &self.traces[i].rows {
            if block > until {
                break;
            }
            let id = ids.get(slot as usize).copied().flatten();
            let Some(metric) = id else {
                engine.on_tick(block, time_ms, &mut |t| on_trip(t.block));
                if let (DetectorSpec::Stale, Some(stat)) = (detector, engine.node_statistic(root)) {
                    on_stat(stat);
                }
                continue;
            };
            let value = match attack {
                Some((a, start)) if slot == 0 && block >= start => a.apply(value, block - start),
                _ => value,
            };
            let sample = Sample {
                block,
                time_ms,
                metric,
                value,
            };
            engine.on_sample(sample, &mut |t| on_trip(t.block));
            if (slot == 0 || matches!(detector, DetectorSpec::Stale))
                && let Some(stat) = engine.node_statistic(root)
            {
                let score = match detector {
                    DetectorSpec::Cusum { .. }
                    | DetectorSpec::Deviation { .. }
                    | DetectorSpec::Stale
                    | DetectorSpec::Sum { .. } => stat,
                    DetectorSpec::Threshold => stat * sign(self.request),
                    _ => self.request.direction.magnitude(stat),
                };
                if score.is_finite() {
                    on_stat(score);
                }
            }
        }
        Ok(())
    }

    fn names(&self) -> Vec<&str> {
        let mut names = vec![self.request.metric.as_str()];
        match &self.request.detector {
            DetectorSpec::Sum {
                relative_to: Some(r),
                ..
            } => names.push(r),
            DetectorSpec::Deviation { reference, .. } => names.push(reference),
            _ => {}
        }
        names
    }

    /// Benign trips over every trace at score threshold `s`.
    fn trips(&self, s: f64) -> Result<u64, CalibrateError> {
        let mut trips = 0;
        for i in 0..self.traces.len() {
            self.run(i, s, None, u64::MAX, &mut |_| trips += 1, &mut |_| {})?;
        }
        Ok(trips)
    }

    /// The largest and smallest score over every trace (never tripping).
    fn score_range(&self) -> Result<Option<(f64, f64)>, CalibrateError> {
        let mut range: Option<(f64, f64)> = None;
        let never = NEVER;
        for i in 0..self.traces.len() {
            self.run(i, never, None, u64::MAX, &mut |_| {}, &mut |s| {
                range = Some(range.map_or((s, s), |(lo, hi)| (lo.min(s), hi.max(s))));
            })?;
        }
        Ok(range)
    }
}

/// Rounds `x` up to three significant digits (toward larger scores).
fn round_up_3(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(2 - x.abs().log10().floor() as i32);
    let r = (x * scale).ceil() / scale;
    // Undo floating noise such as 6.2300000000000004.
    format!("{r:.6e}").parse().unwrap_or(r)
}

/// The smallest score threshold in `[lo, hi]` with at most `allowed` benign trips.
fn bisect(runner: &Runner<'_>, lo: f64, hi: f64, allowed: u64) -> Result<f64, CalibrateError> {
    let (mut lo, mut hi) = (lo, hi);
    if runner.trips(lo)? <= allowed {
        return Ok(lo);
    }
    for _ in 0..48 {
        let mid = (lo + hi) / 2.0;
        if runner.trips(mid)? <= allowed {
            hi = mid;
        } else {
            lo = mid;
        }
        if (hi - lo).abs() <= 1e-6 * hi.abs().max(1e-9) {
            break;
        }
    }
    let mut t = round_up_3(hi);
    while runner.trips(t)? > allowed {
        t = round_up_3(t + t.abs().max(1e-9) * 0.001);
    }
    Ok(t)
}

/// Calibrates `request` on the benign traces at `paths`.
pub fn calibrate(paths: &[PathBuf], request: &Request) -> Result<Calibration, CalibrateError> {
    let mut runner = Runner {
        request,
        traces: Vec::new(),
    };
    let names: Vec<String> = runner.names().iter().map(|s| s.to_string()).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    for p in paths {
        runner.traces.push(read_trace(p, &names)?);
    }
    runner.traces.retain(|t| t.samples > 0);
    if runner.traces.is_empty() {
        return Err(CalibrateError::NoSamples(request.metric.clone()));
    }
    let span_ms: u64 = runner.traces.iter().map(|t| t.span_ms).sum();
    if span_ms == 0 {
        return Err(CalibrateError::NoSpan {
            metric: request.metric.clone(),
            rate: request.false_alarms,
        });
    }
    let allowed_f = request.false_alarms.allowed_over(span_ms);
    let allowed = allowed_f.floor() as u64;
    let range = runner.score_range()?;
    let Some((min_score, max_score)) = range else {
        return Err(CalibrateError::NeverJudged(request.detector.warmup()));
    };
    let mut warnings = Vec::new();
    let rate_supported = allowed_f >= 1.0;
    let supported = supported_rate(span_ms);
    if !rate_supported {
        warnings.push(format!(
            "NOT SUPPORTED BY THE DATA: the traces span {} in all; the target {} allows {:.3} alarms over that, rounded down to 0, so the threshold is only 'above everything these traces saw'. This data supports at most {supported} (one false alarm over the whole span). Calibrate on at least {} of benign data to claim {}.",
            human_span(span_ms),
            request.false_alarms,
            allowed_f,
            human_span((request.false_alarms.per_ms as f64 / request.false_alarms.count.max(1e-9)) as u64),
            request.false_alarms
        ));
    }
    let benign = if request.detector.positive() && max_score <= 0.0 {
        None
    } else {
        let lo = if request.detector.positive() {
            (max_score * 1e-6).max(1e-9)
        } else {
            min_score
        };
        let hi = max_score + max_score.abs() * 1e-9 + 1e-12;
        Some(bisect(&runner, lo, hi, allowed)?)
    };
    if benign.is_none() && request.attacks.is_empty() {
        return Err(CalibrateError::NeverMoved {
            metric: request.metric.clone(),
            direction: request.direction.as_str(),
            max: format!("{max_score} {}", request.detector.unit()),
        });
    }
    finish(
        runner, request, span_ms, allowed, benign, max_score, warnings, supported,
    )
}

/// Adds the margin and the attack trade-off, and writes the policy.
#[allow(clippy::too_many_arguments)]
fn finish(
    runner: Runner<'_>,
    request: &Request,
    span_ms: u64,
    allowed: u64,
    benign: Option<f64>,
    max_score: f64,
    mut warnings: Vec<String>,
    supported: String,
) -> Result<Calibration, CalibrateError> {
    let injections = place_injections(&runner, request);
    let (mut candidates, chosen) = candidate_scores(
        &runner,
        request,
        &injections,
        benign,
        max_score,
        &mut warnings,
    )?;
    candidates.sort_by(f64::total_cmp);
    candidates.dedup();
    let table: Vec<Candidate> = candidates
        .iter()
        .map(|&s| judge(&runner, request, &injections, s, span_ms))
        .collect::<Result<_, _>>()?;
    let chosen = if benign.is_some() {
        chosen
    } else {
        best_for_detection(&table)
    };
    let trips = runner.trips(chosen)?;
    let threshold = runner.threshold_of(chosen);
    let table: Vec<Candidate> = table
        .into_iter()
        .map(|mut c| {
            c.threshold = runner.threshold_of(c.threshold);
            c
        })
        .collect();
    let mut c = Calibration {
        threshold,
        benign_threshold: benign.map(|b| runner.threshold_of(b)),
        trips,
        allowed,
        span_ms,
        samples: runner.traces.iter().map(|t| t.samples).sum(),
        traces: runner.traces.iter().map(|t| t.path.clone()).collect(),
        max_statistic: Some(runner.threshold_of(max_score)),
        rate_supported: allowed as f64 >= 1.0,
        supported,
        injected_at: injections
            .iter()
            .map(|i| (runner.traces[i.trace].path.clone(), i.block))
            .collect(),
        candidates: table,
        warnings,
        policy_toml: String::new(),
    };
    c.policy_toml = policy_text(request, threshold, &report_text(&c, request));
    Ok(c)
}

/// The score thresholds to judge against the attacks, and the chosen one
/// (the calibrated threshold plus the margin; 0 when the benign data never moved).
fn candidate_scores(
    runner: &Runner<'_>,
    request: &Request,
    injections: &[Injection],
    benign: Option<f64>,
    max_score: f64,
    warnings: &mut Vec<String>,
) -> Result<(Vec<f64>, f64), CalibrateError> {
    let mut candidates = Vec::new();
    let chosen = match benign {
        Some(b) => {
            let with_margin = round_up_3(b + b.abs() * request.margin_pct / 100.0);
            if !request.attacks.is_empty() {
                for f in [0.5, 0.75, 1.0, 1.5, 2.0, 3.0] {
                    candidates.push(round_up_3(b + b.abs() * (f - 1.0)));
                }
                candidates.push(with_margin);
            }
            with_margin
        }
        None => {
            warnings.push(format!(
                "the benign traces never moved `{}` {} (largest statistic {max_score} {}): any threshold above 0 gives no false alarm on them; the threshold below is the candidate that caught the most injected attacks soonest, not a calibration",
                request.metric,
                request.direction.as_str(),
                request.detector.unit()
            ));
            let scale = attack_scale(runner, injections)?;
            for f in [0.05, 0.1, 0.25, 0.5, 0.75, 0.9] {
                candidates.push(round_up_3(scale * f));
            }
            0.0
        }
    };
    Ok((candidates, chosen))
}

/// The candidate that caught the most attacks, then soonest, then with the largest threshold.
fn best_for_detection(table: &[Candidate]) -> f64 {
    table
        .iter()
        .max_by(|a, b| {
            a.caught
                .cmp(&b.caught)
                .then(b.median_delay().cmp(&a.median_delay()))
                .then(a.threshold.total_cmp(&b.threshold))
        })
        .map_or(0.0, |c| c.threshold)
}

/// Evenly spaced attack starts in each trace, after the warm-up and windows,
/// leaving room for the attack and the horizon before the trace ends.
fn place_injections(runner: &Runner<'_>, request: &Request) -> Vec<Injection> {
    if request.attacks.is_empty() {
        return Vec::new();
    }
    let longest = request
        .attacks
        .iter()
        .map(Attack::blocks)
        .max()
        .unwrap_or(1);
    let mut out = Vec::new();
    for (i, t) in runner.traces.iter().enumerate() {
        let blocks: Vec<u64> = t.rows.iter().filter(|r| r.2 == 0).map(|r| r.0).collect();
        let skip = (request.detector.warmup() as usize)
            .max(blocks.len() / 10)
            .min(blocks.len());
        let (Some(&first), Some(&last)) = (blocks.get(skip), blocks.last()) else {
            continue;
        };
        let end = last.saturating_sub(longest + request.horizon_blocks);
        if end <= first {
            continue;
        }
        let n = request.injections.max(1) as u64;
        for k in 0..n {
            out.push(Injection {
                trace: i,
                block: first + (end - first) * (2 * k + 1) / (2 * n),
            });
        }
    }
    out
}

/// The largest score an attack produces (for candidates when benign data never moved).
fn attack_scale(runner: &Runner<'_>, injections: &[Injection]) -> Result<f64, CalibrateError> {
    let mut scale: f64 = 0.0;
    for attack in &runner.request.attacks {
        for inj in injections {
            let until = inj.block + attack.blocks() + runner.request.horizon_blocks;
            runner.run(
                inj.trace,
                NEVER,
                Some((*attack, inj.block)),
                until,
                &mut |_| {},
                &mut |s| {
                    scale = scale.max(s);
                },
            )?;
        }
    }
    Ok(scale)
}

/// False alarms and detection at score threshold `s`.
fn judge(
    runner: &Runner<'_>,
    request: &Request,
    injections: &[Injection],
    s: f64,
    span_ms: u64,
) -> Result<Candidate, CalibrateError> {
    let false_alarms = runner.trips(s)?;
    let mut c = Candidate {
        threshold: s,
        false_alarms,
        false_alarms_per_30d: false_alarms as f64 * THIRTY_DAYS_MS / span_ms as f64,
        injected: 0,
        caught: 0,
        delays_blocks: Vec::new(),
    };
    for attack in &request.attacks {
        for inj in injections {
            let until = inj.block + attack.blocks() - 1 + request.horizon_blocks;
            let mut first: Option<u64> = None;
            runner.run(
                inj.trace,
                s,
                Some((*attack, inj.block)),
                until,
                &mut |b| {
                    if b >= inj.block && first.is_none() {
                        first = Some(b);
                    }
                },
                &mut |_| {},
            )?;
            c.injected += 1;
            if let Some(b) = first {
                c.caught += 1;
                c.delays_blocks.push(b - inj.block);
            }
        }
    }
    c.delays_blocks.sort_unstable();
    Ok(c)
}

/// The calibration written out for people (and as the policy's comments): every number with its unit.
pub fn report_text(c: &Calibration, request: &Request) -> String {
    let unit = request.detector.unit();
    let mut out = format!(
        "calibrated on {} trace(s): {}\n{} samples of {} over {} in all\ntarget {} -> {} false alarm(s) allowed over that span\n",
        c.traces.len(),
        c.traces
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        c.samples,
        request.metric,
        human_span(c.span_ms),
        request.false_alarms,
        c.allowed
    );
    for w in &c.warnings {
        out += &format!("WARNING: {w}\n");
    }
    if let Some(m) = c.max_statistic {
        out += &format!(
            "largest {} statistic on the benign traces: {m:.6} {unit}\n",
            request.direction.as_str()
        );
    }
    match c.benign_threshold {
        Some(b) => {
            out += &format!(
                "smallest threshold with at most {} trip(s): {b} {unit}; with a {}% margin: {} {unit}\n",
                c.allowed, request.margin_pct, c.threshold
            )
        }
        None => {
            out += &format!(
                "threshold from the attack trade-off: {} {unit}\n",
                c.threshold
            )
        }
    }
    out += &format!(
        "at {} {unit}: {} trip(s) on the benign traces = {:.2} false alarms per 30 days (cooldown {}{})\n",
        c.threshold,
        c.trips,
        c.trips as f64 * THIRTY_DAYS_MS / c.span_ms as f64,
        request.cooldown,
        request
            .hold
            .map(|h| format!(", for {h}"))
            .unwrap_or_default()
    );
    if !c.candidates.is_empty() {
        out += &trade_off_table(c, request);
    }
    out
}

fn trade_off_table(c: &Calibration, request: &Request) -> String {
    let attacks: Vec<String> = request.attacks.iter().map(|a| a.to_string()).collect();
    let mut out = format!(
        "\ntrade-off: attacks injected into the benign traces ({}), {} injection(s) each, detected if tripped within {} block(s) after the attack ends\n",
        attacks.join("; "),
        c.injected_at.len(),
        request.horizon_blocks
    );
    out += &format!(
        "{:>14} | {:>22} | {:>14} | {:>21} | {:>18}\n",
        format!("threshold ({})", request.detector.unit()),
        "false alarms per 30 d",
        "caught",
        "median delay (blocks)",
        "max delay (blocks)"
    );
    for cand in &c.candidates {
        let mark = if cand.threshold == c.threshold {
            " <- chosen"
        } else {
            ""
        };
        out += &format!(
            "{:>14} | {:>22.2} | {:>14} | {:>21} | {:>18}{mark}\n",
            cand.threshold,
            cand.false_alarms_per_30d,
            format!("{}/{}", cand.caught, cand.injected),
            cand.median_delay().map_or("-".into(), |d| d.to_string()),
            cand.max_delay().map_or("-".into(), |d| d.to_string()),
        );
    }
    out
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
        assert_eq!(round_up_3(-12.341), -12.3);
    }

    #[test]
    fn attacks_parse_and_shape_the_metric() {
        let drain = Attack::parse("drain:30%:10").unwrap();
        assert_eq!(drain.apply(100.0, 0), 97.0);
        assert_eq!(drain.apply(100.0, 9), 70.0);
        assert_eq!(drain.apply(100.0, 50), 70.0);
        let jump = Attack::parse("jump:5%").unwrap();
        assert_eq!((jump.apply(100.0, 0), jump.apply(100.0, 1)), (105.0, 100.0));
        assert_eq!(Attack::parse("drop:2%").unwrap().apply(100.0, 7), 98.0);
        assert_eq!(Attack::parse("burst:50").unwrap().apply(1.0, 0), 51.0);
        assert!(Attack::parse("melt:5%").is_err());
        assert!(Attack::parse("drain:5%:0").is_err());
    }

    #[test]
    fn generated_policies_compile() {
        for detector in [
            DetectorSpec::Threshold,
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
            DetectorSpec::Sum {
                window: Window::Blocks(10),
                relative_to: Some("liq".into()),
            },
            DetectorSpec::Sum {
                window: Window::Blocks(10),
                relative_to: None,
            },
            DetectorSpec::Deviation {
                reference: "ref".into(),
                max_skew: Some(Window::Blocks(2)),
            },
            DetectorSpec::Stale,
        ] {
            let hold = (!matches!(detector, DetectorSpec::Cusum { .. })).then_some(Hold::Blocks(2));
            let request = Request {
                metric: "chain.base_fee_gwei".into(),
                detector,
                direction: Direction::Up,
                false_alarms: crate::units::parse_alarm_rate("1/30d").unwrap(),
                cooldown: Window::Millis(3_600_000),
                hold,
                margin_pct: 10.0,
                action: "alert".into(),
                attacks: Vec::new(),
                injections: 5,
                horizon_blocks: 20,
            };
            let text = policy_text(&request, 6.5, "note\n\nmore");
            compile_str("generated", &text, &Config::empty())
                .unwrap_or_else(|e| panic!("{e}\n{text}"));
        }
    }
}
