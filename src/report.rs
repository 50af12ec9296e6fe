//! Backtests and calibrations as self-contained HTML pages (inline SVG, no
//! outside resources): `simulate --trace … --report FILE.html` and
//! `calibrate … --report FILE.html`.
//!
//! A backtest page has one chart per condition of each policy that tripped:
//! the statistic the condition compares (in its unit) over blocks, its
//! threshold, the blocks where the policy tripped, and the blocks where the
//! trace records losses (rows of the metrics given with `--losses`, value > 0).

use std::fmt::Write as _;
use std::path::Path;

use crate::calibrate::{Calibration, Request};
use crate::metrics::Sample;
use crate::policy::model::{Amount, Condition, NodeId, PolicySet};
use crate::policy::{Engine, Mode};
use crate::source::trace::{TraceError, TraceReader};
use crate::units::Window;

/// Points kept per chart: each is the most alarming statistic in its block range.
const POINTS: usize = 1200;

/// One chart: a condition's statistic over blocks against its threshold.
#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    pub unit: String,
    /// (block, statistic) after bucketing, in block order.
    pub points: Vec<(u64, f64)>,
    pub threshold: Option<f64>,
}

/// A policy that tripped, its trips, and a chart per leaf condition.
#[derive(Debug, Clone)]
pub struct PolicyReport {
    pub id: String,
    pub description: String,
    pub trips: Vec<u64>,
    pub charts: Vec<Chart>,
}

/// What a backtest page shows.
#[derive(Debug, Clone)]
pub struct Backtest {
    pub trace: String,
    pub first_block: u64,
    pub last_block: u64,
    pub samples: u64,
    pub policies: Vec<PolicyReport>,
    /// Blocks where a loss metric had a positive sample.
    pub losses: Vec<u64>,
    pub loss_patterns: Vec<String>,
}

/// The statistic a leaf compares and its threshold, in the same unit, most alarming = largest.
/// Maps a condition's raw statistic to the charted one (largest = most alarming).
type View = fn(f64, &Condition) -> f64;

fn leaf_view(c: &Condition) -> Option<(String, Option<f64>, View)> {
    let signed = |s: f64, c: &Condition| match c {
        Condition::Change { direction, .. } | Condition::Rate { direction, .. } => {
            direction.magnitude(s)
        }
        Condition::Ewma { params, .. } => params.direction.magnitude(s),
        _ => s,
    };
    Some(match c {
        Condition::Threshold {
            value, comparison, ..
        } => (
            format!("value ({})", comparison.symbol()),
            Some(*value),
            |s, _| s,
        ),
        Condition::Change { by, direction, .. } => match by {
            Amount::Percent(p) => (
                format!("change % ({})", direction.as_str()),
                Some(p.0),
                signed,
            ),
            Amount::Absolute(a) => (format!("change ({})", direction.as_str()), Some(*a), signed),
        },
        Condition::Rate { above, per, .. } => {
            (format!("rate per {}", per.as_str()), Some(*above), signed)
        }
        Condition::Sum { value, .. } => match value {
            Amount::Percent(p) => ("sum, % of relative_to".into(), Some(p.0), |s, _| s),
            Amount::Absolute(a) => ("sum".into(), Some(*a), |s, _| s),
        },
        Condition::Deviation { above, .. } => ("deviation %".into(), Some(above.0), |s, _| s),
        Condition::Stale { after, .. } => (
            "blocks since last sample".into(),
            match after {
                Window::Blocks(n) => Some(*n as f64),
                Window::Millis(_) => None,
            },
            |s, _| s,
        ),
        Condition::Ewma { params, .. } => ("z-score (sd)".into(), Some(params.z), signed),
        Condition::Cusum { params, .. } => ("CUSUM (sd)".into(), Some(params.threshold), |s, _| s),
        Condition::Composite { .. } => return None,
    })
}

fn leaves(set: &PolicySet, id: NodeId, out: &mut Vec<NodeId>) {
    match &set.node(id).condition {
        Condition::Composite { children, .. } => {
            for c in children {
                leaves(set, *c, out);
            }
        }
        _ => out.push(id),
    }
}

fn matches_any(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| {
        if p.contains('*') {
            crate::policy::model::pattern_capture(p, name).is_some()
        } else {
            p == name
        }
    })
}

/// Replays `trace` again through a fresh engine, recording the statistics of
/// the conditions of the policies in `tripped` (policy index, trip blocks).
pub fn backtest(
    trace: &Path,
    set: &PolicySet,
    tripped: &[(usize, Vec<u64>)],
    range: (u64, u64),
    loss_patterns: &[String],
) -> Result<Backtest, TraceError> {
    let mut engine = Engine::new(set.clone(), Mode::AlertOnly);
    let mut watched: Vec<(usize, NodeId)> = Vec::new();
    for (p, _) in tripped {
        let mut ls = Vec::new();
        leaves(set, set.policies[*p].root, &mut ls);
        watched.extend(ls.into_iter().map(|l| (*p, l)));
    }
    let (first, last) = range;
    let width = ((last - first) / POINTS as u64).max(1);
    let mut series: Vec<Vec<(u64, f64)>> = vec![Vec::new(); watched.len()];
    let mut losses = Vec::new();
    let mut samples = 0;
    let mut reader = TraceReader::open(trace)?;
    while let Some(row) = reader.next_row()? {
        samples += 1;
        if matches_any(loss_patterns, row.metric)
            && row.value > 0.0
            && losses.last() != Some(&row.block)
        {
            losses.push(row.block);
        }
        let Some(metric) = engine.metric_id(row.metric) else {
            engine.on_tick(row.block, row.time_ms, &mut |_| {});
            continue;
        };
        let sample = Sample {
            block: row.block,
            time_ms: row.time_ms,
            metric,
            value: row.value,
        };
        engine.on_sample(sample, &mut |_| {});
        let bucket = first + (row.block - first) / width * width;
        for (i, (_, node)) in watched.iter().enumerate() {
            let Some(stat) = engine.node_statistic(*node) else {
                continue;
            };
            let condition = &set.node(*node).condition;
            let Some((_, _, view)) = leaf_view(condition) else {
                continue;
            };
            let v = view(stat, condition);
            if !v.is_finite() {
                continue;
            }
            match series[i].last_mut() {
                Some((b, best)) if *b == bucket => *best = best.max(v),
                _ => series[i].push((bucket, v)),
            }
        }
    }
    let policies = assemble(set, tripped, &watched, series);
    Ok(Backtest {
        trace: trace.display().to_string(),
        first_block: first,
        last_block: last,
        samples,
        policies,
        losses,
        loss_patterns: loss_patterns.to_vec(),
    })
}

/// One report per tripped policy, with a chart per watched condition.
fn assemble(
    set: &PolicySet,
    tripped: &[(usize, Vec<u64>)],
    watched: &[(usize, NodeId)],
    series: Vec<Vec<(u64, f64)>>,
) -> Vec<PolicyReport> {
    let mut policies: Vec<PolicyReport> = tripped
        .iter()
        .map(|(p, trips)| PolicyReport {
            id: set.policies[*p].id.clone(),
            description: set.policies[*p].description.clone(),
            trips: trips.clone(),
            charts: Vec::new(),
        })
        .collect();
    for ((p, node), points) in watched.iter().zip(series) {
        let condition = &set.node(*node).condition;
        let Some((unit, threshold, _)) = leaf_view(condition) else {
            continue;
        };
        let metrics: Vec<&str> = condition
            .metrics()
            .iter()
            .map(|m| set.metric_name(*m))
            .collect();
        let slot = tripped.iter().position(|(q, _)| q == p).unwrap_or(0);
        policies[slot].charts.push(Chart {
            title: format!("{} on {}", condition.kind(), metrics.join(" vs ")),
            unit,
            points,
            threshold,
        });
    }
    policies
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A linear scale from `(lo, hi)` onto `(a, b)` pixels.
fn scale(lo: f64, hi: f64, a: f64, b: f64) -> impl Fn(f64) -> f64 {
    let span = if hi > lo { hi - lo } else { 1.0 };
    move |v| a + (v - lo) / span * (b - a)
}

/// One SVG chart of a statistic over blocks, with threshold, trips and losses.
fn chart_svg(c: &Chart, trips: &[u64], losses: &[u64], x0: u64, x1: u64) -> String {
    let (w, h, l, r, t, b) = (900.0, 240.0, 70.0, 20.0, 16.0, 36.0);
    let mut lo = c
        .points
        .iter()
        .map(|p| p.1)
        .fold(f64::INFINITY, f64::min)
        .min(0.0);
    let mut hi = c
        .points
        .iter()
        .map(|p| p.1)
        .fold(f64::NEG_INFINITY, f64::max);
    if let Some(th) = c.threshold {
        lo = lo.min(th);
        hi = hi.max(th);
    }
    if !hi.is_finite() {
        hi = 1.0;
    }
    hi += (hi - lo).abs() * 0.05 + 1e-12;
    let x = scale(x0 as f64, x1.max(x0 + 1) as f64, l, w - r);
    let y = scale(lo, hi, h - b, t);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\">\n<rect x=\"{l}\" y=\"{t}\" width=\"{}\" height=\"{}\" fill=\"#fbfbfb\" stroke=\"#ccc\"/>\n",
        w - l - r,
        h - t - b
    );
    for blk in losses {
        let _ = writeln!(
            s,
            "<rect class=\"loss\" x=\"{:.1}\" y=\"{t}\" width=\"2\" height=\"{}\" fill=\"#f4a261\" opacity=\"0.6\"><title>loss at block {blk}</title></rect>",
            x(*blk as f64) - 1.0,
            h - t - b
        );
    }
    let pts: Vec<String> = c
        .points
        .iter()
        .map(|(bk, v)| format!("{:.1},{:.1}", x(*bk as f64), y(*v)))
        .collect();
    let _ = writeln!(
        s,
        "<polyline class=\"series\" fill=\"none\" stroke=\"#1d3557\" stroke-width=\"1.2\" points=\"{}\"/>",
        pts.join(" ")
    );
    if let Some(th) = c.threshold {
        let _ = writeln!(
            s,
            "<line class=\"threshold\" x1=\"{l}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#e63946\" stroke-dasharray=\"6 4\"/><text x=\"{}\" y=\"{:.1}\" font-size=\"11\" fill=\"#e63946\" text-anchor=\"end\">threshold {th}</text>",
            w - r,
            y(th),
            y(th),
            w - r - 4.0,
            y(th) - 4.0
        );
    }
    for blk in trips {
        let _ = writeln!(
            s,
            "<line class=\"trip\" x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{t}\" y2=\"{1}\" stroke=\"#d00000\" stroke-width=\"1.5\"><title>trip at block {blk}</title></line>",
            x(*blk as f64),
            h - b
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{l}\" y=\"{}\" font-size=\"11\">block {x0}</text><text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">block {x1}</text>\n<text x=\"4\" y=\"{:.1}\" font-size=\"11\">{}</text><text x=\"4\" y=\"{:.1}\" font-size=\"11\">{}</text>\n<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{}</text>\n</svg>",
        h - 8.0,
        w - r,
        h - 8.0,
        y(hi),
        fmt_num(hi),
        y(lo),
        fmt_num(lo),
        (l + w - r) / 2.0,
        h - 8.0,
        esc(&c.unit)
    );
    s
}

fn fmt_num(v: f64) -> String {
    if v.abs() >= 1e5 || (v != 0.0 && v.abs() < 1e-3) {
        format!("{v:.3e}")
    } else {
        format!("{v:.3}")
    }
}

const STYLE: &str = "body{font-family:sans-serif;margin:24px;color:#222}h1{font-size:20px}h2{font-size:17px;margin-top:28px}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}.warn{color:#b00;font-weight:bold}.legend span{margin-right:18px}";

/// Counts the charts that laid out with a size, into `body[data-rendered]` (for headless checks).
const RENDER_CHECK: &str = "<script>window.addEventListener('load',function(){var n=0;document.querySelectorAll('svg.chart polyline').forEach(function(p){var b=p.getBBox();if(b.width>0&&b.height>=0)n++;});document.body.setAttribute('data-rendered',String(n));});</script>";

/// The backtest as a self-contained HTML page.
pub fn backtest_page(bt: &Backtest) -> String {
    let mut s = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>guardian backtest: {0}</title><style>{STYLE}</style></head><body>\n<h1>Backtest of {0}</h1>\n<p>{1} rows, blocks {2}..{3}; {4} polic(ies) tripped.</p>\n<p class=\"legend\"><span style=\"color:#1d3557\">&#9632; statistic</span><span style=\"color:#e63946\">- - threshold</span><span style=\"color:#d00000\">| trip</span><span style=\"color:#f4a261\">&#9632; loss in the trace</span></p>\n",
        esc(&bt.trace),
        bt.samples,
        bt.first_block,
        bt.last_block,
        bt.policies.len()
    );
    s += &if bt.loss_patterns.is_empty() {
        "<p>No loss metrics were named (<code>--losses</code>); losses are not marked.</p>\n"
            .to_string()
    } else {
        let first = bt
            .losses
            .first()
            .map_or("none".to_string(), |b| format!("first at block {b}"));
        format!(
            "<p>Loss metrics {}: {} block(s) with losses, {first}.</p>\n",
            esc(&bt.loss_patterns.join(", ")),
            bt.losses.len()
        )
    };
    if bt.policies.is_empty() {
        s += "<p>No policy tripped on this trace.</p>\n";
    }
    for p in &bt.policies {
        let lead = match (p.trips.first(), bt.losses.first()) {
            (Some(t), Some(l)) if t >= l => {
                format!("; first trip {} block(s) after the first loss", t - l)
            }
            (Some(t), Some(l)) => format!("; first trip {} block(s) before the first loss", l - t),
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "<h2>{}</h2>\n<p>{}</p>\n<p>{} trip(s), first at block {}{lead}.</p>",
            esc(&p.id),
            esc(&p.description),
            p.trips.len(),
            p.trips.first().map_or("-".into(), |b| b.to_string())
        );
        for c in &p.charts {
            let _ = writeln!(s, "<h3>{}</h3>", esc(&c.title));
            s += &chart_svg(c, &p.trips, &bt.losses, bt.first_block, bt.last_block);
        }
    }
    s += RENDER_CHECK;
    s += "\n</body></html>\n";
    s
}

/// The calibration and its trade-off curve as a self-contained HTML page.
pub fn calibration_page(c: &Calibration, request: &Request) -> String {
    let unit = request.detector.unit();
    let mut s = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>guardian calibration: {0}</title><style>{STYLE}</style></head><body>\n<h1>Calibration of {1} on {0}</h1>\n",
        esc(&request.metric),
        request.detector.kind()
    );
    for w in &c.warnings {
        let _ = writeln!(s, "<p class=\"warn\">WARNING: {}</p>", esc(w));
    }
    let _ = writeln!(
        s,
        "<pre>{}</pre>",
        esc(&crate::calibrate::report_text(c, request))
    );
    if !c.candidates.is_empty() {
        s += "<h2>Trade-off: false alarms per 30 days against detection delay</h2>\n";
        s += &trade_off_svg(c, unit);
    }
    let _ = writeln!(
        s,
        "<h2>Generated policy</h2>\n<pre>{}</pre>",
        esc(&c.policy_toml)
    );
    s += RENDER_CHECK;
    s += "\n</body></html>\n";
    s
}

/// x: false alarms per 30 days; y: median detection delay in blocks; one labelled point per candidate.
fn trade_off_svg(c: &Calibration, unit: &str) -> String {
    let (w, h, l, r, t, b) = (900.0, 360.0, 70.0, 30.0, 20.0, 44.0);
    let pts: Vec<(f64, f64, &crate::calibrate::Candidate)> = c
        .candidates
        .iter()
        .map(|k| {
            (
                k.false_alarms_per_30d,
                k.median_delay().map_or(f64::NAN, |d| d as f64),
                k,
            )
        })
        .collect();
    let xmax = pts.iter().map(|p| p.0).fold(0.0, f64::max).max(1.0) * 1.08;
    let ymax = pts
        .iter()
        .map(|p| p.1)
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max)
        .max(1.0)
        * 1.15;
    let x = scale(0.0, xmax, l, w - r);
    let y = scale(0.0, ymax, h - b, t);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">\n<rect x=\"{l}\" y=\"{t}\" width=\"{}\" height=\"{}\" fill=\"#fbfbfb\" stroke=\"#ccc\"/>\n",
        w - l - r,
        h - t - b
    );
    let line: Vec<String> = pts
        .iter()
        .filter(|p| p.1.is_finite())
        .map(|p| format!("{:.1},{:.1}", x(p.0), y(p.1)))
        .collect();
    let _ = writeln!(
        s,
        "<polyline class=\"series\" fill=\"none\" stroke=\"#1d3557\" stroke-width=\"1.5\" points=\"{}\"/>",
        line.join(" ")
    );
    for (fx, fy, k) in &pts {
        let yy = if fy.is_finite() { y(*fy) } else { t + 8.0 };
        let color = if k.threshold == c.threshold {
            "#e63946"
        } else {
            "#1d3557"
        };
        let _ = writeln!(
            s,
            "<circle class=\"candidate\" cx=\"{:.1}\" cy=\"{yy:.1}\" r=\"4\" fill=\"{color}\"><title>threshold {} {}: {:.2} false alarms/30d, caught {}/{}</title></circle><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\">{} ({}/{})</text>",
            x(*fx),
            k.threshold,
            esc(unit),
            fx,
            k.caught,
            k.injected,
            x(*fx) + 6.0,
            yy - 6.0,
            k.threshold,
            k.caught,
            k.injected
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\">false alarms per 30 days (benign traces)</text><text x=\"12\" y=\"{}\" font-size=\"12\" transform=\"rotate(-90 12 {})\" text-anchor=\"middle\">median detection delay (blocks)</text><text x=\"{l}\" y=\"{}\" font-size=\"11\">0</text><text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{:.2}</text><text x=\"{}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{:.1}</text>\n</svg>",
        (l + w - r) / 2.0,
        h - 8.0,
        h / 2.0,
        h / 2.0,
        h - b + 14.0,
        w - r,
        h - b + 14.0,
        xmax,
        l - 4.0,
        t + 10.0,
        ymax
    );
    s
}
