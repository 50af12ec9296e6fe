//! Policies in plain language: `guardian explain` and `guardian diff`.
//!
//! What a security council reads before approving a policy change: what each
//! policy watches, when it trips (with numbers and units), what it asks for,
//! and, given a trace, how it behaved. `diff` states what a change changes,
//! and whether each threshold was tightened (trips sooner) or loosened.

use std::fmt::{Display, Write as _};

use crate::config::{ActionKind, Config};
use crate::metrics::MetricId;
use crate::policy::model::{
    Amount, Comparison, Condition, CusumParams, Direction, EwmaParams, Node, NodeId, Policy,
    PolicySet, Quorum, RateUnit,
};
use crate::units::Window;

fn comparison_words(c: Comparison) -> &'static str {
    match c {
        Comparison::Above => "above",
        Comparison::AtLeast => "at least",
        Comparison::Below => "below",
        Comparison::AtMost => "at most",
    }
}

fn amount_words(a: Amount) -> String {
    match a {
        Amount::Absolute(v) => format!("{v}"),
        Amount::Percent(p) => p.to_string(),
    }
}

fn metric(set: &PolicySet, m: crate::metrics::MetricId) -> String {
    format!("`{}`", set.metric_name(m))
}

/// One sentence for a leaf condition (composites are handled by [`condition_lines`]).
fn leaf_sentence(set: &PolicySet, c: &Condition) -> String {
    match *c {
        Condition::Threshold {
            metric: m,
            comparison,
            value,
        } => {
            format!(
                "{} is {} {value}",
                metric(set, m),
                comparison_words(comparison)
            )
        }
        Condition::Change {
            metric: m,
            window,
            direction,
            by,
        } => {
            let verb = match direction {
                Direction::Up => "rises",
                Direction::Down => "falls",
                Direction::Either => "moves up or down",
            };
            let of = match by {
                Amount::Percent(_) => " of its value",
                Amount::Absolute(_) => " (in its own units) from its value",
            };
            format!(
                "{} {verb} by at least {}{of} {window} earlier",
                metric(set, m),
                amount_words(by)
            )
        }
        Condition::Rate {
            metric: m,
            window,
            per,
            direction,
            above,
        } => {
            let verb = match direction {
                Direction::Up => "rises",
                Direction::Down => "falls",
                Direction::Either => "changes",
            };
            let per = match per {
                RateUnit::PerBlock => "block",
                RateUnit::PerSecond => "second",
            };
            format!(
                "{} {verb} faster than {above} per {per}, measured over {window}",
                metric(set, m)
            )
        }
        Condition::Sum {
            metric: m,
            window,
            comparison,
            value,
            relative_to,
        } => match relative_to {
            Some(rel) => format!(
                "{} added up over the last {window} is {} {} of {} at the start of that window",
                metric(set, m),
                comparison_words(comparison),
                amount_words(value),
                metric(set, rel)
            ),
            None => format!(
                "{} added up over the last {window} is {} {}",
                metric(set, m),
                comparison_words(comparison),
                amount_words(value)
            ),
        },
        Condition::Deviation {
            metric: m,
            reference,
            above,
            max_skew,
        } => {
            let skew = match max_skew {
                Some(w) => {
                    format!(" (judged only when both were sampled within {w} of each other)")
                }
                None => String::new(),
            };
            format!(
                "{} differs from {} by at least {above}{skew}",
                metric(set, m),
                metric(set, reference)
            )
        }
        Condition::Stale { metric: m, after } => {
            format!("{} has had no new sample for {after}", metric(set, m))
        }
        Condition::Ewma { metric: m, params } => {
            let side = match params.direction {
                Direction::Up => "above",
                Direction::Down => "below",
                Direction::Either => "away from",
            };
            format!(
                "{} is at least {} standard deviations {side} its moving baseline (EWMA, half-life {} samples; the first {} samples only learn the baseline and never trip)",
                metric(set, m),
                params.z,
                params.halflife,
                params.warmup
            )
        }
        Condition::Cusum { metric: m, params } => format!(
            "{} drifts {}: its accumulated deviation from the baseline learned over the first {} samples, less {} standard deviations per sample, exceeds {} standard deviations (CUSUM; no trip during those first samples)",
            metric(set, m),
            params.direction.as_str(),
            params.warmup,
            params.slack,
            params.threshold
        ),
        Condition::Composite { .. } => String::new(),
    }
}

fn hold_suffix(node: &Node) -> String {
    match node.hold {
        Some(h) => format!(", and this has held for {h}"),
        None => String::new(),
    }
}

/// The condition under `id` as indented lines.
fn condition_lines(set: &PolicySet, id: NodeId, indent: usize, out: &mut Vec<String>) {
    let node = set.node(id);
    let pad = " ".repeat(indent);
    match &node.condition {
        Condition::Composite { quorum, children } => {
            let head = match quorum {
                Quorum::All => "all of these hold".to_string(),
                Quorum::Any => "any of these holds".to_string(),
                Quorum::AtLeast(k) => format!("at least {k} of these hold"),
            };
            out.push(format!("{pad}{head}{}:", hold_suffix(node)));
            for c in children {
                condition_lines(set, *c, indent + 2, out);
            }
        }
        leaf => out.push(format!(
            "{pad}- {}{}",
            leaf_sentence(set, leaf),
            hold_suffix(node)
        )),
    }
}

/// How a policy behaved on a trace, for `explain --trace`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceBehaviour {
    pub trace: String,
    pub trips: u64,
    pub first: Option<(u64, u64)>,
    pub last: Option<(u64, u64)>,
}

/// The plain-language statement of one policy.
pub fn explain_policy(
    set: &PolicySet,
    p: &Policy,
    config: &Config,
    behaviour: Option<&TraceBehaviour>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}  ({}, {})", p.id, p.severity.as_str(), p.origin);
    let _ = writeln!(s, "  What it is for: {}", p.description);
    let mut metrics: Vec<String> = Vec::new();
    collect_metrics(set, p.root, &mut metrics);
    let _ = writeln!(s, "  Watches: {}", metrics.join(", "));
    let mut lines = Vec::new();
    condition_lines(set, p.root, 4, &mut lines);
    let _ = writeln!(s, "  Trips when:");
    for l in lines {
        let _ = writeln!(s, "{l}");
    }
    let effective = p.mode.most_cautious(config.mode);
    let then = match effective {
        crate::policy::Mode::Enforce => "sends",
        crate::policy::Mode::DryRun => "prepares, but never broadcasts (dry-run),",
        crate::policy::Mode::AlertOnly => "only raises an alert for (alert-only)",
    };
    let _ = writeln!(s, "  Then: {then} action `{}`", p.action);
    if let Some(a) = config.actions.get(&p.action) {
        let what = match a.kind {
            ActionKind::Pause => "a pause",
            ActionKind::SetParameter => "a bounded parameter change",
        };
        let _ = write!(s, "    `{}` is {what}: {}", a.name, a.description);
        if let (Some(f), Some(t)) = (&a.function, &a.target) {
            let _ = write!(s, "; it calls {f} on {t}");
        }
        if let Some(e) = &a.executor {
            let _ = write!(s, " through executor `{e}`");
        }
        let _ = writeln!(s);
        if let (Some(acl), Some(f), Some(t)) = (
            config.setup.as_ref().and_then(|x| x.aave_acl_manager),
            &a.function,
            &a.target,
        ) && let Some(terms) = crate::setup::aave::in_aave_terms(f)
        {
            let _ = writeln!(
                s,
                "    In Aave's terms: {terms}; the role is held by the AaveV3RoleHolder {t} in the ACLManager {acl}."
            );
        }
        let _ = writeln!(
            s,
            "    This action allows only this call{}.",
            if a.kind == ActionKind::SetParameter {
                ", and only within its bounds (min, max, max change per update, min delay)"
            } else {
                ""
            }
        );
    }
    if config.is_declarative() && p.mode != effective {
        let _ = writeln!(
            s,
            "  Mode: the policy says {}, the configuration's global mode {} overrides it",
            p.mode, config.mode
        );
    } else {
        let _ = writeln!(s, "  Mode: {effective}");
    }
    let _ = writeln!(s, "  After a trip it stays quiet for {}.", p.cooldown);
    // Issue 14: say how long the policy is blind after a (cold) start.
    let index = set.policies.iter().position(|q| q.id == p.id);
    let need = index
        .map(|i| crate::policy::warmup::warmups(set)[i])
        .unwrap_or_default();
    if need.is_none() {
        let _ = writeln!(s, "  Warm-up: none, it can trip on its first sample.");
    } else {
        let _ = writeln!(
            s,
            "  Warm-up: it needs {} of history before it can trip (blind until then after a cold start; a restart with a journal re-reads it).",
            need.describe()
        );
    }
    if let Some(b) = behaviour {
        match (b.first, b.last) {
            (Some((fb, ft)), Some((lb, lt))) => {
                let _ = writeln!(
                    s,
                    "  On {}: {} trip(s), first at block {fb} ({}), last at block {lb} ({}).",
                    b.trace,
                    b.trips,
                    crate::replay::format_time(ft),
                    crate::replay::format_time(lt)
                );
            }
            _ => {
                let _ = writeln!(s, "  On {}: no trips.", b.trace);
            }
        }
    }
    s
}

fn collect_metrics(set: &PolicySet, id: NodeId, out: &mut Vec<String>) {
    let node = set.node(id);
    for m in node.condition.metrics() {
        let name = format!("`{}`", set.metric_name(m));
        if !out.contains(&name) {
            out.push(name);
        }
    }
    if let Condition::Composite { children, .. } = &node.condition {
        for c in children {
            collect_metrics(set, *c, out);
        }
    }
}

/// Whether a new threshold makes a condition trip sooner (`Some(true)`), later (`Some(false)`).
fn tightened(lower_is_tighter: bool, old: f64, new: f64) -> Option<bool> {
    if old == new {
        None
    } else {
        Some((new < old) == lower_is_tighter)
    }
}

fn verdict(t: Option<bool>) -> &'static str {
    match t {
        Some(true) => "tightened: trips sooner",
        Some(false) => "loosened: trips later",
        None => "changed",
    }
}

fn window_ms(w: Window) -> Option<u64> {
    match w {
        Window::Millis(ms) => Some(ms),
        Window::Blocks(_) => None,
    }
}

/// The conditions of two versions of a node, with the sets that name their metrics.
struct Versions<'a> {
    old: &'a PolicySet,
    new: &'a PolicySet,
    a: &'a Condition,
    b: &'a Condition,
}

impl Versions<'_> {
    /// Whether the two metric ids name the same metric.
    fn same(&self, m1: MetricId, m2: MetricId) -> bool {
        self.old.metric_name(m1) == self.new.metric_name(m2)
    }

    fn name(&self, m: MetricId) -> &str {
        self.new.metric_name(m)
    }
}

/// Adds a line for a value that changed: `what: a -> b (verdict)`.
fn note(out: &mut Vec<String>, what: &str, a: impl Display, b: impl Display, t: Option<bool>) {
    let (a, b) = (a.to_string(), b.to_string());
    if a != b {
        out.push(format!("{what}: {a} -> {b} ({})", verdict(t)));
    }
}

/// The changes between two nodes of the same kind on the same metrics, in
/// plain language; `false` when they are not of one kind (a rewrite).
fn same_kind_changes(
    old: &PolicySet,
    o: &Node,
    new: &PolicySet,
    n: &Node,
    out: &mut Vec<String>,
) -> bool {
    let v = Versions {
        old,
        new,
        a: &o.condition,
        b: &n.condition,
    };
    let kinds: [fn(&Versions, &mut Vec<String>) -> bool; 8] = [
        threshold_changes,
        change_changes,
        rate_changes,
        sum_changes,
        deviation_changes,
        stale_changes,
        detector_changes,
        composite_changes,
    ];
    if !kinds.iter().any(|same_kind| same_kind(&v, out)) {
        return false;
    }
    if o.hold != n.hold {
        let show = |h: Option<crate::units::Hold>| {
            h.map_or("no hold".to_string(), |h| format!("must hold for {h}"))
        };
        let t = match (o.hold, n.hold) {
            (Some(a), Some(b)) => tightened(true, a.count() as f64, b.count() as f64),
            (Some(_), None) => Some(true),
            (None, Some(_)) => Some(false),
            (None, None) => None,
        };
        out.push(format!(
            "hysteresis: {} -> {} ({})",
            show(o.hold),
            show(n.hold),
            verdict(t)
        ));
    }
    true
}

fn threshold_changes(v: &Versions, out: &mut Vec<String>) -> bool {
    let (
        Condition::Threshold {
            metric: m1,
            comparison: c1,
            value: v1,
        },
        Condition::Threshold {
            metric: m2,
            comparison: c2,
            value: v2,
        },
    ) = (v.a, v.b)
    else {
        return false;
    };
    if !(v.same(*m1, *m2) && c1 == c2) {
        return false;
    }
    let lower = matches!(c1, Comparison::Above | Comparison::AtLeast);
    note(
        out,
        &format!("threshold on `{}`", v.name(*m2)),
        v1,
        v2,
        tightened(lower, *v1, *v2),
    );
    true
}

fn change_changes(v: &Versions, out: &mut Vec<String>) -> bool {
    let (
        Condition::Change {
            metric: m1,
            window: w1,
            direction: d1,
            by: b1,
        },
        Condition::Change {
            metric: m2,
            window: w2,
            direction: d2,
            by: b2,
        },
    ) = (v.a, v.b)
    else {
        return false;
    };
    if !(v.same(*m1, *m2) && d1 == d2) {
        return false;
    }
    let t = match (b1, b2) {
        (Amount::Percent(x), Amount::Percent(y)) => tightened(true, x.0, y.0),
        (Amount::Absolute(x), Amount::Absolute(y)) => tightened(true, *x, *y),
        _ => None,
    };
    let name = v.name(*m2);
    note(
        out,
        &format!("change of `{name}`"),
        amount_words(*b1),
        amount_words(*b2),
        t,
    );
    note(out, &format!("change window of `{name}`"), w1, w2, None);
    true
}

fn rate_changes(v: &Versions, out: &mut Vec<String>) -> bool {
    let (
        Condition::Rate {
            metric: m1,
            window: w1,
            per: p1,
            direction: d1,
            above: a1,
        },
        Condition::Rate {
            metric: m2,
            window: w2,
            per: p2,
            direction: d2,
            above: a2,
        },
    ) = (v.a, v.b)
    else {
        return false;
    };
    if !(v.same(*m1, *m2) && d1 == d2 && p1 == p2) {
        return false;
    }
    let name = v.name(*m2);
    note(
        out,
        &format!("rate limit on `{name}`"),
        a1,
        a2,
        tightened(true, *a1, *a2),
    );
    note(out, &format!("rate window of `{name}`"), w1, w2, None);
    true
}

fn sum_changes(v: &Versions, out: &mut Vec<String>) -> bool {
    let (
        Condition::Sum {
            metric: m1,
            window: w1,
            comparison: c1,
            value: v1,
            relative_to: r1,
        },
        Condition::Sum {
            metric: m2,
            window: w2,
            comparison: c2,
            value: v2,
            relative_to: r2,
        },
    ) = (v.a, v.b)
    else {
        return false;
    };
    let same_reference = r1.map(|r| v.old.metric_name(r).to_string())
        == r2.map(|r| v.new.metric_name(r).to_string());
    if !(v.same(*m1, *m2) && c1 == c2 && same_reference) {
        return false;
    }
    let lower = matches!(c1, Comparison::Above | Comparison::AtLeast);
    let t = match (v1, v2) {
        (Amount::Percent(x), Amount::Percent(y)) => tightened(lower, x.0, y.0),
        (Amount::Absolute(x), Amount::Absolute(y)) => tightened(lower, *x, *y),
        _ => None,
    };
    let name = v.name(*m2);
    note(
        out,
        &format!("sum limit on `{name}`"),
        amount_words(*v1),
        amount_words(*v2),
        t,
    );
    let wt = match (window_ms(*w1), window_ms(*w2), w1, w2) {
        (Some(a), Some(b), _, _) => tightened(false, a as f64, b as f64),
        (None, None, Window::Blocks(a), Window::Blocks(b)) => {
            tightened(false, *a as f64, *b as f64)
        }
        _ => None,
    };
    // A longer window adds more up, so it trips sooner for "above" limits.
    let wt = if lower { wt } else { wt.map(|t| !t) };
    note(out, &format!("sum window of `{name}`"), w1, w2, wt);
    true
}

fn deviation_changes(v: &Versions, out: &mut Vec<String>) -> bool {
    let (
        Condition::Deviation {
            metric: m1,
            reference: r1,
            above: a1,
            max_skew: s1,
        },
        Condition::Deviation {
            metric: m2,
            reference: r2,
            above: a2,
            max_skew: s2,
        },
    ) = (v.a, v.b)
    else {
        return false;
    };
    if !(v.same(*m1, *m2) && v.same(*r1, *r2)) {
        return false;
    }
    note(
        out,
        &format!(
            "deviation limit between `{}` and `{}`",
            v.name(*m2),
            v.name(*r2)
        ),
        a1,
        a2,
        tightened(true, a1.0, a2.0),
    );
    let show = |s: &Option<Window>| s.map_or("none".to_string(), |w| w.to_string());
    note(out, "deviation max_skew", show(s1), show(s2), None);
    true
}

fn stale_changes(v: &Versions, out: &mut Vec<String>) -> bool {
    let (
        Condition::Stale {
            metric: m1,
            after: a1,
        },
        Condition::Stale {
            metric: m2,
            after: a2,
        },
    ) = (v.a, v.b)
    else {
        return false;
    };
    if !v.same(*m1, *m2) {
        return false;
    }
    let t = match (a1, a2) {
        (Window::Blocks(a), Window::Blocks(b)) => tightened(true, *a as f64, *b as f64),
        (Window::Millis(a), Window::Millis(b)) => tightened(true, *a as f64, *b as f64),
        _ => None,
    };
    note(
        out,
        &format!("staleness limit of `{}`", v.name(*m2)),
        a1,
        a2,
        t,
    );
    true
}

/// One parameter of a detector: what, its value, and whether a lower value
/// trips sooner (`None`: no verdict). The first is the threshold.
type Param = (&'static str, f64, Option<bool>);

fn ewma_params(p: &EwmaParams) -> [Param; 3] {
    [
        ("EWMA z threshold", p.z, Some(true)),
        ("EWMA half-life (samples)", p.halflife, None),
        ("EWMA warm-up (samples)", p.warmup.into(), None),
    ]
}

fn cusum_params(p: &CusumParams) -> [Param; 3] {
    [
        ("CUSUM threshold", p.threshold, Some(true)),
        ("CUSUM slack", p.slack, Some(true)),
        ("CUSUM warm-up (samples)", p.warmup.into(), None),
    ]
}

/// A detector's metric, direction and parameters.
fn detector(c: &Condition) -> Option<(MetricId, Direction, [Param; 3])> {
    match c {
        Condition::Ewma { metric, params } => {
            Some((*metric, params.direction, ewma_params(params)))
        }
        Condition::Cusum { metric, params } => {
            Some((*metric, params.direction, cusum_params(params)))
        }
        _ => None,
    }
}

/// EWMA and CUSUM: the threshold on the metric, then the other parameters.
fn detector_changes(v: &Versions, out: &mut Vec<String>) -> bool {
    let (Some((m1, d1, p1)), Some((m2, d2, p2))) = (detector(v.a), detector(v.b)) else {
        return false;
    };
    if p1[0].0 != p2[0].0 || !(v.same(m1, m2) && d1 == d2) {
        return false;
    }
    let threshold = format!("{} on `{}`", p2[0].0, v.name(m2));
    for (i, ((what, a, lower), (_, b, _))) in p1.into_iter().zip(p2).enumerate() {
        let what = if i == 0 { threshold.as_str() } else { what };
        note(out, what, a, b, lower.and_then(|l| tightened(l, a, b)));
    }
    true
}

/// A composite's quorum, then each child in turn; `false` when the children
/// differ in number or any pair differs in kind.
fn composite_changes(v: &Versions, out: &mut Vec<String>) -> bool {
    let (
        Condition::Composite {
            quorum: q1,
            children: c1,
        },
        Condition::Composite {
            quorum: q2,
            children: c2,
        },
    ) = (v.a, v.b)
    else {
        return false;
    };
    if c1.len() != c2.len() {
        return false;
    }
    if q1 != q2 {
        let words = |q: &Quorum| match q {
            Quorum::All => "all".to_string(),
            Quorum::Any => "any".to_string(),
            Quorum::AtLeast(k) => format!("at least {k}"),
        };
        out.push(format!(
            "composite: {} -> {} of its conditions",
            words(q1),
            words(q2)
        ));
    }
    c1.iter()
        .zip(c2)
        .all(|(a, b)| same_kind_changes(v.old, v.old.node(*a), v.new, v.new.node(*b), out))
}

/// What changed from `old` to `new`, in plain language; empty when nothing did.
pub fn diff(old: &PolicySet, new: &PolicySet) -> String {
    let mut s = String::new();
    for p in &new.policies {
        match old.policies.iter().find(|o| o.id == p.id) {
            None => {
                let _ = writeln!(
                    s,
                    "ADDED {}",
                    explain_policy(new, p, &Config::empty(), None).trim_end()
                );
                let _ = writeln!(s);
            }
            Some(o) => {
                let mut changes = Vec::new();
                if o.severity != p.severity {
                    changes.push(format!(
                        "severity: {} -> {}",
                        o.severity.as_str(),
                        p.severity.as_str()
                    ));
                }
                if o.action != p.action {
                    changes.push(format!("action: `{}` -> `{}`", o.action, p.action));
                }
                if o.mode != p.mode {
                    let effect = match p.mode {
                        crate::policy::Mode::Enforce => "now sends its action when it trips",
                        crate::policy::Mode::DryRun => {
                            "now prepares its action but never broadcasts it"
                        }
                        crate::policy::Mode::AlertOnly => "now only alerts",
                    };
                    changes.push(format!("mode: {} -> {} ({effect})", o.mode, p.mode));
                }
                if o.cooldown != p.cooldown {
                    let shorter = match (o.cooldown, p.cooldown) {
                        (Window::Blocks(a), Window::Blocks(b)) => Some(b < a),
                        (Window::Millis(a), Window::Millis(b)) => Some(b < a),
                        _ => None,
                    };
                    let effect = match shorter {
                        Some(true) => " (shorter: it may trip more often)",
                        Some(false) => " (longer: it trips less often)",
                        None => "",
                    };
                    changes.push(format!(
                        "cooldown: {} -> {}{effect}",
                        o.cooldown, p.cooldown
                    ));
                }
                if o.description != p.description {
                    changes.push(format!(
                        "description: \"{}\" -> \"{}\"",
                        o.description, p.description
                    ));
                }
                let mut cond = Vec::new();
                if same_kind_changes(old, old.node(o.root), new, new.node(p.root), &mut cond) {
                    changes.extend(cond);
                } else {
                    let mut was = Vec::new();
                    let mut now = Vec::new();
                    condition_lines(old, o.root, 6, &mut was);
                    condition_lines(new, p.root, 6, &mut now);
                    changes.push(format!(
                        "condition rewritten; it was:\n{}\n    it is now:\n{}",
                        was.join("\n"),
                        now.join("\n")
                    ));
                }
                if !changes.is_empty() {
                    let _ = writeln!(s, "CHANGED {}", p.id);
                    for c in changes {
                        let _ = writeln!(s, "    {c}");
                    }
                    let _ = writeln!(s);
                }
            }
        }
    }
    for o in &old.policies {
        if !new.policies.iter().any(|p| p.id == o.id) {
            let _ = writeln!(
                s,
                "REMOVED {} ({}): it no longer guards: {}",
                o.id,
                o.severity.as_str(),
                o.description
            );
            let _ = writeln!(s);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A policy set with one policy `p{i}` per condition in `whens`.
    fn set(whens: &[&str]) -> PolicySet {
        let mut text = String::new();
        for (i, when) in whens.iter().enumerate() {
            text.push_str(&format!(
                "[[policy]]\nid = \"p{i}\"\ndescription = \"d\"\nseverity = \"info\"\naction = \"a\"\ncooldown = \"1m\"\nwhen = {when}\n\n"
            ));
        }
        crate::policy::compile_str("p.toml", &text, &Config::empty())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn diff_states_every_kind_of_dial() {
        let pairs = [
            (
                r#"{ kind = "threshold", metric = "a", op = ">=", value = 5 }"#,
                r#"{ kind = "threshold", metric = "a", op = ">=", value = 4 }"#,
            ),
            (
                r#"{ kind = "threshold", metric = "a", op = "<", value = 5 }"#,
                r#"{ kind = "threshold", metric = "a", op = "<", value = 4 }"#,
            ),
            (
                r#"{ kind = "threshold", metric = "a", op = "<", value = 5 }"#,
                r#"{ kind = "threshold", metric = "a", op = ">", value = 5 }"#,
            ),
            (
                r#"{ kind = "threshold", metric = "a", op = "<", value = 5 }"#,
                r#"{ kind = "threshold", metric = "b", op = "<", value = 5 }"#,
            ),
            (
                r#"{ kind = "change", metric = "a", window = "5 blocks", direction = "down", by = "10%" }"#,
                r#"{ kind = "change", metric = "a", window = "10 blocks", direction = "down", by = "5%" }"#,
            ),
            (
                r#"{ kind = "change", metric = "a", window = "5 blocks", direction = "up", by = 10 }"#,
                r#"{ kind = "change", metric = "a", window = "5 blocks", direction = "up", by = 12 }"#,
            ),
            (
                r#"{ kind = "change", metric = "a", window = "5 blocks", direction = "up", by = 10 }"#,
                r#"{ kind = "change", metric = "a", window = "5 blocks", direction = "up", by = "10%" }"#,
            ),
            (
                r#"{ kind = "change", metric = "a", window = "5 blocks", direction = "up", by = 10 }"#,
                r#"{ kind = "change", metric = "a", window = "5 blocks", direction = "down", by = 10 }"#,
            ),
            (
                r#"{ kind = "rate", metric = "a", window = "90s", per = "second", direction = "up", above = 2.5 }"#,
                r#"{ kind = "rate", metric = "a", window = "60s", per = "second", direction = "up", above = 3 }"#,
            ),
            (
                r#"{ kind = "rate", metric = "a", window = "90s", per = "second", direction = "up", above = 2.5 }"#,
                r#"{ kind = "rate", metric = "a", window = "90s", per = "block", direction = "up", above = 2.5 }"#,
            ),
            (
                r#"{ kind = "sum", metric = "o", window = "1h", op = ">", value = "10%", relative_to = "a" }"#,
                r#"{ kind = "sum", metric = "o", window = "2h", op = ">", value = "5%", relative_to = "a" }"#,
            ),
            (
                r#"{ kind = "sum", metric = "o", window = "1h", op = "<", value = 5 }"#,
                r#"{ kind = "sum", metric = "o", window = "2h", op = "<", value = 3 }"#,
            ),
            (
                r#"{ kind = "sum", metric = "o", window = "10 blocks", op = ">=", value = 5 }"#,
                r#"{ kind = "sum", metric = "o", window = "5 blocks", op = ">=", value = "5%", relative_to = "a" }"#,
            ),
            (
                r#"{ kind = "sum", metric = "o", window = "10 blocks", op = "<=", value = 5 }"#,
                r#"{ kind = "sum", metric = "o", window = "5 blocks", op = "<=", value = 5 }"#,
            ),
            (
                r#"{ kind = "sum", metric = "o", window = "10 blocks", op = ">", value = 5 }"#,
                r#"{ kind = "sum", metric = "o", window = "1h", op = ">", value = 5 }"#,
            ),
            (
                r#"{ kind = "deviation", metric = "p1", reference = "p2", above = "150bps" }"#,
                r#"{ kind = "deviation", metric = "p1", reference = "p2", above = "2%", max_skew = "2 blocks" }"#,
            ),
            (
                r#"{ kind = "deviation", metric = "p1", reference = "p2", above = "2%", max_skew = "1m" }"#,
                r#"{ kind = "deviation", metric = "p1", reference = "p3", above = "2%", max_skew = "1m" }"#,
            ),
            (
                r#"{ kind = "stale", metric = "p1", after = "20 blocks" }"#,
                r#"{ kind = "stale", metric = "p1", after = "10 blocks" }"#,
            ),
            (
                r#"{ kind = "stale", metric = "p1", after = "1h" }"#,
                r#"{ kind = "stale", metric = "p1", after = "2h" }"#,
            ),
            (
                r#"{ kind = "stale", metric = "p1", after = "20 blocks" }"#,
                r#"{ kind = "stale", metric = "p1", after = "1h" }"#,
            ),
            (
                r#"{ kind = "ewma", metric = "g", halflife = 50, warmup = 100, z = 6, direction = "up" }"#,
                r#"{ kind = "ewma", metric = "g", halflife = 60, warmup = 200, z = 5, direction = "up", for = "2 samples" }"#,
            ),
            (
                r#"{ kind = "ewma", metric = "g", halflife = 50, warmup = 100, z = 6, direction = "up" }"#,
                r#"{ kind = "ewma", metric = "g", halflife = 50, warmup = 100, z = 6, direction = "down" }"#,
            ),
            (
                r#"{ kind = "cusum", metric = "g", warmup = 100, slack = 0.5, threshold = 8, direction = "up" }"#,
                r#"{ kind = "cusum", metric = "g", warmup = 50, slack = 0.25, threshold = 9, direction = "up" }"#,
            ),
            (
                r#"{ kind = "ewma", metric = "g", halflife = 50, warmup = 100, z = 6, direction = "up" }"#,
                r#"{ kind = "cusum", metric = "g", warmup = 100, slack = 0.5, threshold = 6, direction = "up" }"#,
            ),
            (
                r#"{ kind = "any", of = [{ kind = "threshold", metric = "a", op = "<", value = 1 }, { kind = "stale", metric = "a", after = "5 blocks" }] }"#,
                r#"{ kind = "at_least", count = 1, of = [{ kind = "threshold", metric = "a", op = "<", value = 2 }, { kind = "stale", metric = "a", after = "6 blocks" }] }"#,
            ),
            (
                r#"{ kind = "any", of = [{ kind = "threshold", metric = "a", op = "<", value = 1 }, { kind = "stale", metric = "a", after = "5 blocks" }] }"#,
                r#"{ kind = "all", of = [{ kind = "threshold", metric = "a", op = "<", value = 1 }] }"#,
            ),
        ];
        let (old, new): (Vec<&str>, Vec<&str>) = pairs.into_iter().unzip();
        let text = diff(&set(&old), &set(&new));
        if std::env::var_os("GUARDIAN_BLESS").is_some() {
            std::fs::write("tests/golden/diff-every-kind.txt", &text).unwrap();
        }
        assert_eq!(text, include_str!("../tests/golden/diff-every-kind.txt"));
    }
}
