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
use crate::units::{Percent, Window};

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

/// A number a condition trips on, with its unit: two versions are judged
/// (tightened or loosened) only when their numbers share a unit.
type Level = (&'static str, f64);

fn amount_level(a: Amount) -> Level {
    match a {
        Amount::Percent(p) => ("%", p.0),
        Amount::Absolute(x) => ("", x),
    }
}

fn window_level(w: Window) -> Level {
    match w {
        Window::Blocks(b) => ("blocks", b as f64),
        Window::Millis(ms) => ("ms", ms as f64),
    }
}

/// One setting of a leaf condition, as `diff` compares two versions of it.
struct Dial {
    /// What it is, e.g. "threshold on `a`".
    what: String,
    /// Its value as the line shows it.
    shown: String,
    /// Its value as a number to judge a change by, with whether a lower
    /// value trips sooner; `None`: a change gets no verdict.
    judged: Option<(Level, bool)>,
}

impl Dial {
    fn new(what: impl Into<String>, shown: impl Display, judged: Option<(Level, bool)>) -> Self {
        Dial {
            what: what.into(),
            shown: shown.to_string(),
            judged,
        }
    }

    /// Whether going from `self` to `new` trips sooner (`Some(true)`) or later.
    fn verdict(&self, new: &Dial) -> Option<bool> {
        match (self.judged, new.judged) {
            (Some(((u1, a), lower)), Some(((u2, b), _))) if u1 == u2 => tightened(lower, a, b),
            _ => None,
        }
    }
}

/// A leaf condition as `diff` compares it: what must stay the same for two
/// versions to be compared at all (kind, metrics by name, direction, ...),
/// and its dials.
struct Dials {
    same: Vec<String>,
    dials: Vec<Dial>,
}

/// The dials of a leaf condition; `None` for a composite.
fn dials(set: &PolicySet, c: &Condition) -> Option<Dials> {
    let name = |m: MetricId| set.metric_name(m).to_string();
    let (same, dials) = match *c {
        Condition::Threshold {
            metric: m,
            comparison,
            value,
        } => {
            let lower = matches!(comparison, Comparison::Above | Comparison::AtLeast);
            let what = format!("threshold on `{}`", name(m));
            let same = vec![name(m), comparison_words(comparison).into()];
            (
                same,
                vec![Dial::new(what, value, Some((("", value), lower)))],
            )
        }
        Condition::Change {
            metric: m,
            window,
            direction,
            by,
        } => {
            let limit = Dial::new(
                format!("change of `{}`", name(m)),
                amount_words(by),
                Some((amount_level(by), true)),
            );
            let window = Dial::new(format!("change window of `{}`", name(m)), window, None);
            (
                vec![name(m), direction.as_str().into()],
                vec![limit, window],
            )
        }
        Condition::Rate {
            metric: m,
            window,
            per,
            direction,
            above,
        } => {
            let what = format!("rate limit on `{}`", name(m));
            let limit = Dial::new(what, above, Some((("", above), true)));
            let window = Dial::new(format!("rate window of `{}`", name(m)), window, None);
            let same = vec![name(m), direction.as_str().into(), per.as_str().into()];
            (same, vec![limit, window])
        }
        Condition::Sum {
            metric: m,
            window,
            comparison,
            value,
            relative_to,
        } => sum_dials(set, m, window, comparison, value, relative_to),
        Condition::Deviation {
            metric: m,
            reference,
            above,
            max_skew,
        } => deviation_dials(set, m, reference, above, max_skew),
        Condition::Stale { metric: m, after } => {
            let what = format!("staleness limit of `{}`", name(m));
            let limit = Dial::new(what, after, Some((window_level(after), true)));
            (vec![name(m)], vec![limit])
        }
        Condition::Ewma { metric, params } => {
            detector_dials(set, metric, params.direction, ewma_params(&params))
        }
        Condition::Cusum { metric, params } => {
            detector_dials(set, metric, params.direction, cusum_params(&params))
        }
        Condition::Composite { .. } => return None,
    };
    let same = std::iter::once(c.kind().to_string()).chain(same).collect();
    Some(Dials { same, dials })
}

/// A sum's limit and window: a longer window adds more up, so it trips
/// sooner for "above" limits.
fn sum_dials(
    set: &PolicySet,
    m: MetricId,
    window: Window,
    comparison: Comparison,
    value: Amount,
    relative_to: Option<MetricId>,
) -> (Vec<String>, Vec<Dial>) {
    let name = set.metric_name(m);
    let lower = matches!(comparison, Comparison::Above | Comparison::AtLeast);
    let limit = Dial::new(
        format!("sum limit on `{name}`"),
        amount_words(value),
        Some((amount_level(value), lower)),
    );
    let window = Dial::new(
        format!("sum window of `{name}`"),
        window,
        Some((window_level(window), !lower)),
    );
    let reference = relative_to.map(|r| set.metric_name(r));
    let same = vec![
        name.to_string(),
        comparison_words(comparison).into(),
        format!("{reference:?}"),
    ];
    (same, vec![limit, window])
}

/// A deviation's limit between its two metrics, and its skew.
fn deviation_dials(
    set: &PolicySet,
    m: MetricId,
    reference: MetricId,
    above: Percent,
    max_skew: Option<Window>,
) -> (Vec<String>, Vec<Dial>) {
    let (m, reference) = (set.metric_name(m), set.metric_name(reference));
    let what = format!("deviation limit between `{m}` and `{reference}`");
    let limit = Dial::new(what, above, Some((("%", above.0), true)));
    let skew = max_skew.map_or("none".to_string(), |w| w.to_string());
    let skew = Dial::new("deviation max_skew", skew, None);
    (
        vec![m.to_string(), reference.to_string()],
        vec![limit, skew],
    )
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

/// EWMA and CUSUM: the threshold on the metric, then the other parameters.
fn detector_dials(
    set: &PolicySet,
    m: MetricId,
    direction: Direction,
    params: [Param; 3],
) -> (Vec<String>, Vec<Dial>) {
    let threshold = format!("{} on `{}`", params[0].0, set.metric_name(m));
    let dials = params
        .into_iter()
        .enumerate()
        .map(|(i, (what, value, lower))| {
            let what = if i == 0 {
                threshold.clone()
            } else {
                what.to_string()
            };
            Dial::new(what, value, lower.map(|l| (("", value), l)))
        });
    let same = vec![set.metric_name(m).to_string(), direction.as_str().into()];
    (same, dials.collect())
}

/// Adds a line for a value that changed: `what: a -> b (verdict)`.
fn note(out: &mut Vec<String>, what: &str, a: impl Display, b: impl Display, t: Option<bool>) {
    let (a, b) = (a.to_string(), b.to_string());
    if a != b {
        out.push(format!("{what}: {a} -> {b} ({})", verdict(t)));
    }
}

/// A line for each dial that changed; `false` when the two are not one
/// condition to compare (another kind, metric or direction).
fn dial_changes(a: Dials, b: Dials, out: &mut Vec<String>) -> bool {
    if a.same != b.same {
        return false;
    }
    for (x, y) in a.dials.iter().zip(&b.dials) {
        note(out, &y.what, &x.shown, &y.shown, x.verdict(y));
    }
    true
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
    let compared = match (dials(old, &o.condition), dials(new, &n.condition)) {
        (Some(a), Some(b)) => dial_changes(a, b, out),
        (None, None) => composite_changes(old, &o.condition, new, &n.condition, out),
        _ => false,
    };
    if !compared {
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

/// A composite's quorum, then each child in turn; `false` when the children
/// differ in number or any pair differs in kind.
fn composite_changes(
    old: &PolicySet,
    a: &Condition,
    new: &PolicySet,
    b: &Condition,
    out: &mut Vec<String>,
) -> bool {
    let (
        Condition::Composite {
            quorum: q1,
            children: c1,
        },
        Condition::Composite {
            quorum: q2,
            children: c2,
        },
    ) = (a, b)
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
        .all(|(a, b)| same_kind_changes(old, old.node(*a), new, new.node(*b), out))
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
