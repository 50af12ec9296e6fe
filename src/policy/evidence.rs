//! A trip's evidence as readings: copied at the trip, written when asked.
//!
//! At a trip the engine copies the latest reading of each node of the
//! policy's condition ([`Seen`], fixed size, one allocation per trip, no JSON,
//! no map). [`Readings`] writes them as the evidence JSON through `Serialize`,
//! straight into whatever a consumer serializes into (a `--json` line, the
//! journal's column, an alert's details), and as the one-line summary. The
//! bytes are those the engine used to build eagerly (tests/evidence.rs pins
//! them): key order, numbers (`"nan"`, `"inf"`, `"-inf"` for non-finite ones)
//! and text.

use std::fmt::{self, Write as _};
use std::sync::Arc;

use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;

use crate::metrics::MetricId;
use crate::metrics::detectors;
use crate::units::{DisplayMillis, Window};

use super::model::{Condition, NodeId, PolicySet, Quorum};

/// What the last evaluation of a condition saw (fixed size, copied, never allocated).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Seen {
    pub block: u64,
    pub time_ms: u64,
    pub value: f64,
    /// Starting value of the window, the reference value, or the baseline mean.
    pub base: f64,
    pub base_block: u64,
    pub base_time_ms: u64,
    /// The condition's statistic: change, rate, sum, deviation %, z, CUSUM sum, age in blocks.
    pub stat: f64,
    /// A second statistic: change %, sum %, baseline sd, age in ms.
    pub stat2: f64,
    /// Samples in a sum window; whether a stale metric was ever sampled (1) or not (0).
    pub count: u64,
    /// Whether the condition had what it needs to be judged (history, both metrics, warm-up).
    pub judged: bool,
}

/// One node's state when the readings were taken.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Reading {
    pub seen: Seen,
    /// Whether the node has been evaluated at least once.
    pub evaluated: bool,
    pub truth: bool,
    /// Block and time of the latest evaluation at which the node held.
    pub last_true: Option<(u64, u64)>,
}

/// The readings of one policy's condition nodes at a trip (or now).
#[derive(Debug, Clone)]
pub struct Readings {
    set: Arc<PolicySet>,
    policy: u32,
    /// The policy's nodes by ascending id.
    ids: Arc<[NodeId]>,
    /// Their readings, in the same order.
    nodes: Box<[Reading]>,
}

impl Readings {
    /// `ids` must be every node of policy number `policy`'s condition, by
    /// ascending id, and `nodes` their readings in that order.
    pub(crate) fn new(
        set: Arc<PolicySet>,
        policy: u32,
        ids: Arc<[NodeId]>,
        nodes: Box<[Reading]>,
    ) -> Self {
        Self {
            set,
            policy,
            ids,
            nodes,
        }
    }

    fn root(&self) -> NodeId {
        self.set.policies[self.policy as usize].root
    }

    fn reading(&self, id: NodeId) -> &Reading {
        // A policy's nodes are usually numbered without gaps: look there first.
        let first = self.ids.first().map_or(0, |n| n.0);
        let at = id.0.wrapping_sub(first) as usize;
        if self.ids.get(at) == Some(&id) {
            return &self.nodes[at];
        }
        let i = self
            .ids
            .binary_search(&id)
            // Cannot fail: `Readings::new`'s only caller (`Engine::readings`) passes
            // every node of the policy's condition tree, sorted, and `id` is one of
            // them (the walk starts at `root` and follows that tree's children).
            .expect("readings hold every node of their policy");
        &self.nodes[i]
    }

    fn name(&self, m: &MetricId) -> &str {
        self.set.metric_name(*m)
    }

    /// Whether `child` of composite `parent` counted as held (`within`: held recently).
    fn holds(&self, parent: NodeId, child: NodeId) -> bool {
        let state = self.reading(child);
        match self.set.node(parent).within {
            Some(w) => {
                let seen = self.reading(parent).seen;
                recent(state.last_true, w, (seen.block, seen.time_ms))
            }
            None => state.truth,
        }
    }

    /// The evidence JSON of the condition alone (no `instance`), as a value.
    pub(crate) fn condition_value(&self) -> Value {
        let node = NodeJson {
            r: self,
            id: self.root(),
            holds: None,
            instance: None,
        };
        serde_json::to_value(node).unwrap_or(Value::Null)
    }

    /// One line a person can read: what held.
    pub fn summary(&self) -> String {
        let mut out = String::with_capacity(128);
        self.text(self.root(), &mut out);
        out
    }

    /// Appends a node's summary: a composite's holding children joined by `; and `.
    fn text(&self, id: NodeId, out: &mut String) {
        let seen = self.reading(id).seen;
        let condition = &self.set.node(id).condition;
        let Condition::Composite { children, .. } = condition else {
            // Writing to a String cannot fail.
            let _ = self.leaf_text(condition, seen, out);
            return;
        };
        let mut first = true;
        for &c in children.iter() {
            if self.reading(c).evaluated && self.holds(id, c) {
                if !first {
                    out.push_str("; and ");
                }
                first = false;
                self.text(c, out);
            }
        }
    }

    fn leaf_text(&self, condition: &Condition, seen: Seen, out: &mut String) -> fmt::Result {
        let (value, stat, base) = (Plain(seen.value), Plain(seen.stat), Plain(seen.base));
        match *condition {
            Condition::Threshold {
                metric,
                comparison,
                value: limit,
            } => write!(
                out,
                "{} = {value} {} {}",
                self.name(&metric),
                comparison.symbol(),
                Plain(limit)
            ),
            Condition::Change {
                metric,
                window,
                direction,
                by,
            } => write!(
                out,
                "{} moved {stat} ({:+.2}%) over {window}: {base} -> {value} (threshold {by} {})",
                self.name(&metric),
                seen.stat2,
                direction.as_str()
            ),
            Condition::Rate {
                metric,
                window,
                per,
                direction,
                above,
            } => write!(
                out,
                "{} changing at {stat} per {} over {window} (threshold {} {})",
                self.name(&metric),
                per.as_str(),
                Plain(above),
                direction.as_str()
            ),
            Condition::Sum {
                metric,
                window,
                comparison,
                value: limit,
                relative_to,
            } => {
                write!(out, "{} summed over {window} = {stat}", self.name(&metric))?;
                if let Some(rel) = relative_to {
                    let pct = seen.stat2;
                    write!(out, " = {pct:.2}% of {} ({base})", self.name(&rel))?;
                }
                write!(out, " {} {limit}", comparison.symbol())
            }
            _ => self.other_text(condition, seen, out),
        }
    }

    fn other_text(&self, condition: &Condition, seen: Seen, out: &mut String) -> fmt::Result {
        let (value, stat, base) = (Plain(seen.value), seen.stat, seen.base);
        match condition {
            Condition::Deviation {
                metric,
                reference,
                above,
                ..
            } => write!(
                out,
                "{} = {value} deviates {stat:.2}% from {} = {} (threshold {above})",
                self.name(metric),
                self.name(reference),
                Plain(base)
            ),
            Condition::Stale { metric, after } => {
                // A replay of a trace without the metric trips on this at
                // every cooldown's end: the plain parts are appended as they are.
                out.push_str(self.name(metric));
                out.push_str(" has had no sample for ");
                Plain(stat).push(out);
                out.push_str(" blocks / ");
                write!(out, "{} (limit {after})", DisplayMillis(seen.stat2 as u64))
            }
            Condition::Ewma { metric, params } => write!(
                out,
                "{} = {value} is {stat:.2} sd from its EWMA baseline {base:.6} (threshold {} sd {})",
                self.name(metric),
                Plain(params.z),
                params.direction.as_str()
            ),
            Condition::Cusum { metric, params } => write!(
                out,
                "{} CUSUM {} reached {stat:.2} sd (threshold {}) against baseline {base:.6}",
                self.name(metric),
                params.direction.as_str(),
                Plain(params.threshold)
            ),
            _ => Ok(()),
        }
    }
}

/// `f64`'s `{}` text (no width, precision or sign flags), written as an
/// integer when the value is a whole number below 2^53: those are exact, so
/// the float formatter would print the same digits, only slower. A replay
/// writes a summary per trip, mostly of whole numbers (ages, counts).
pub(crate) struct Plain(pub f64);

/// 2^53: every whole number below it is exact in an `f64`.
const EXACT_INTEGERS: f64 = 9_007_199_254_740_992.0;

impl Plain {
    /// The value as an integer, when it is a whole number written as one.
    fn integer(&self) -> Option<i64> {
        let v = self.0;
        let whole = v.fract() == 0.0 && v.abs() < EXACT_INTEGERS;
        (whole && !(v == 0.0 && v.is_sign_negative())).then_some(v as i64)
    }

    /// Appends the text to `out` (without the formatter for whole numbers).
    fn push(self, out: &mut String) {
        match self.integer() {
            Some(i) => out.push_str(itoa::Buffer::new().format(i)),
            None => {
                let _ = write!(out, "{}", self.0);
            }
        }
    }
}

impl fmt::Display for Plain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.integer() {
            Some(i) => f.write_str(itoa::Buffer::new().format(i)),
            None => fmt::Display::fmt(&self.0, f),
        }
    }
}

/// The trip's evidence: the condition's object, then the instance a template's policy runs for.
impl Serialize for Readings {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let policy = &self.set.policies[self.policy as usize];
        NodeJson {
            r: self,
            id: policy.root,
            holds: None,
            instance: policy.instance.as_deref(),
        }
        .serialize(s)
    }
}

/// Whether a condition last held within `window` of `now` (corroboration).
#[inline]
pub(crate) fn recent(last_true: Option<(u64, u64)>, window: Window, now: (u64, u64)) -> bool {
    match (last_true, window) {
        (None, _) => false,
        (Some((b, _)), Window::Blocks(n)) => now.0.saturating_sub(b) <= n,
        (Some((_, t)), Window::Millis(ms)) => now.1.saturating_sub(t) <= ms,
    }
}

/// A number for evidence: JSON has no infinity, so non-finite values are strings.
struct Num(f64);

impl Serialize for Num {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            v if v.is_finite() => s.serialize_f64(v),
            v if v.is_nan() => s.serialize_str("nan"),
            v if v > 0.0 => s.serialize_str("inf"),
            _ => s.serialize_str("-inf"),
        }
    }
}

/// `{"block", "time_ms", "value"}`: one end of a change or rate window.
#[derive(Serialize)]
struct Point {
    block: u64,
    time_ms: u64,
    value: Num,
}

/// `{"block", "time_ms"}`.
#[derive(Serialize)]
struct At {
    block: u64,
    time_ms: u64,
}

/// A deviation's reference reading.
#[derive(Serialize)]
struct Reference<'a> {
    metric: &'a str,
    value: Num,
    block: u64,
}

/// A relative sum's base.
#[derive(Serialize)]
struct Relative<'a> {
    metric: &'a str,
    value: Num,
    sum_pct: Num,
}

/// A composite's child that was never evaluated (no sample of its metrics yet).
#[derive(Serialize)]
struct Unevaluated<'a> {
    condition: &'static str,
    metrics: Vec<&'a str>,
    evaluated: bool,
    holds: bool,
}

/// One node's evidence object.
struct NodeJson<'a> {
    r: &'a Readings,
    id: NodeId,
    /// For a composite's child: whether it counted as held.
    holds: Option<bool>,
    /// For the top of a template instance's condition.
    instance: Option<&'a str>,
}

impl Serialize for NodeJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        let node = self.r.set.node(self.id);
        let seen = self.r.reading(self.id).seen;
        match &node.condition {
            Condition::Composite { quorum, children } => {
                let required = match quorum {
                    Quorum::All => children.len(),
                    Quorum::Any => 1,
                    Quorum::AtLeast(k) => *k as usize,
                };
                map.serialize_entry("condition", node.condition.kind())?;
                map.serialize_entry("required", &required)?;
                map.serialize_entry("held", &(seen.stat as u64))?;
                let of = Children {
                    r: self.r,
                    id: self.id,
                };
                map.serialize_entry("of", &of)?;
            }
            condition => self.r.leaf_entries(condition, seen, &mut map)?,
        }
        if let Some(hold) = node.hold {
            map.serialize_entry("held_for", &hold.to_string())?;
        }
        if let Some(holds) = self.holds {
            map.serialize_entry("holds", &holds)?;
        }
        if let Some(instance) = self.instance {
            map.serialize_entry("instance", instance)?;
        }
        map.end()
    }
}

/// A composite's `of`: each child's evidence and whether it counted.
struct Children<'a> {
    r: &'a Readings,
    id: NodeId,
}

impl Serialize for Children<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Condition::Composite { children, .. } = &self.r.set.node(self.id).condition else {
            return s.serialize_seq(Some(0))?.end();
        };
        let mut seq = s.serialize_seq(Some(children.len()))?;
        for c in children {
            if self.r.reading(*c).evaluated {
                seq.serialize_element(&NodeJson {
                    r: self.r,
                    id: *c,
                    holds: Some(self.r.holds(self.id, *c)),
                    instance: None,
                })?;
                continue;
            }
            // Never evaluated: say so rather than show a zero reading.
            let condition = &self.r.set.node(*c).condition;
            seq.serialize_element(&Unevaluated {
                condition: condition.kind(),
                metrics: condition.metrics().iter().map(|m| self.r.name(m)).collect(),
                evaluated: false,
                holds: false,
            })?;
        }
        seq.end()
    }
}

impl Readings {
    /// A leaf condition's entries, in the order the evidence has always had.
    fn leaf_entries<M: SerializeMap>(
        &self,
        condition: &Condition,
        seen: Seen,
        map: &mut M,
    ) -> Result<(), M::Error> {
        let from = Point {
            block: seen.base_block,
            time_ms: seen.base_time_ms,
            value: Num(seen.base),
        };
        let to = Point {
            block: seen.block,
            time_ms: seen.time_ms,
            value: Num(seen.value),
        };
        map.serialize_entry("condition", condition.kind())?;
        match condition {
            Condition::Threshold {
                metric,
                comparison,
                value,
            } => {
                map.serialize_entry("metric", self.name(metric))?;
                map.serialize_entry("value", &Num(seen.value))?;
                map.serialize_entry("op", comparison.symbol())?;
                map.serialize_entry("threshold", &Num(*value))?;
                map.serialize_entry("block", &seen.block)
            }
            Condition::Change {
                metric,
                window,
                direction,
                by,
            } => {
                map.serialize_entry("metric", self.name(metric))?;
                map.serialize_entry("window", &window.to_string())?;
                map.serialize_entry("direction", direction.as_str())?;
                map.serialize_entry("from", &from)?;
                map.serialize_entry("to", &to)?;
                map.serialize_entry("change", &Num(seen.stat))?;
                map.serialize_entry("change_pct", &Num(seen.stat2))?;
                map.serialize_entry("threshold", &by.to_string())
            }
            Condition::Rate {
                metric,
                window,
                per,
                direction,
                above,
            } => {
                map.serialize_entry("metric", self.name(metric))?;
                map.serialize_entry("window", &window.to_string())?;
                map.serialize_entry("per", per.as_str())?;
                map.serialize_entry("direction", direction.as_str())?;
                map.serialize_entry("rate", &Num(seen.stat))?;
                map.serialize_entry("from", &from)?;
                map.serialize_entry("to", &to)?;
                map.serialize_entry("threshold", &Num(*above))
            }
            _ => self.other_entries(condition, seen, map),
        }
    }

    fn other_entries<M: SerializeMap>(
        &self,
        condition: &Condition,
        seen: Seen,
        map: &mut M,
    ) -> Result<(), M::Error> {
        match condition {
            Condition::Sum { .. } => self.sum_entries(condition, seen, map),
            Condition::Deviation {
                metric,
                reference,
                above,
                ..
            } => {
                map.serialize_entry("metric", self.name(metric))?;
                map.serialize_entry("value", &Num(seen.value))?;
                map.serialize_entry("block", &seen.block)?;
                let reference = Reference {
                    metric: self.name(reference),
                    value: Num(seen.base),
                    block: seen.base_block,
                };
                map.serialize_entry("reference", &reference)?;
                map.serialize_entry("deviation_pct", &Num(seen.stat))?;
                map.serialize_entry("threshold", &above.to_string())
            }
            Condition::Stale { metric, after } => {
                map.serialize_entry("metric", self.name(metric))?;
                map.serialize_entry("after", &after.to_string())?;
                let last = (seen.count > 0).then_some(At {
                    block: seen.base_block,
                    time_ms: seen.base_time_ms,
                });
                map.serialize_entry("last_sample", &last)?;
                let now = At {
                    block: seen.block,
                    time_ms: seen.time_ms,
                };
                map.serialize_entry("now", &now)?;
                map.serialize_entry("age_blocks", &Num(seen.stat))?;
                map.serialize_entry("age_ms", &Num(seen.stat2))
            }
            _ => self.detector_entries(condition, seen, map),
        }
    }

    fn sum_entries<M: SerializeMap>(
        &self,
        condition: &Condition,
        seen: Seen,
        map: &mut M,
    ) -> Result<(), M::Error> {
        let Condition::Sum {
            metric,
            window,
            comparison,
            value,
            relative_to,
        } = condition
        else {
            return Ok(());
        };
        map.serialize_entry("metric", self.name(metric))?;
        map.serialize_entry("window", &window.to_string())?;
        map.serialize_entry("sum", &Num(seen.stat))?;
        map.serialize_entry("samples", &seen.count)?;
        map.serialize_entry("first_block", &seen.base_block)?;
        map.serialize_entry("block", &seen.block)?;
        map.serialize_entry("op", comparison.symbol())?;
        map.serialize_entry("threshold", &value.to_string())?;
        if let Some(rel) = relative_to {
            let relative = Relative {
                metric: self.name(rel),
                value: Num(seen.base),
                sum_pct: Num(seen.stat2),
            };
            map.serialize_entry("relative_to", &relative)?;
        }
        Ok(())
    }

    fn detector_entries<M: SerializeMap>(
        &self,
        condition: &Condition,
        seen: Seen,
        map: &mut M,
    ) -> Result<(), M::Error> {
        let (metric, direction, warmup) = match condition {
            Condition::Ewma { metric, params } => (metric, params.direction, params.warmup),
            Condition::Cusum { metric, params } => (metric, params.direction, params.warmup),
            _ => return Ok(()),
        };
        map.serialize_entry("metric", self.name(metric))?;
        map.serialize_entry("value", &Num(seen.value))?;
        map.serialize_entry("block", &seen.block)?;
        map.serialize_entry("mean", &Num(seen.base))?;
        map.serialize_entry("sd", &Num(seen.stat2))?;
        match condition {
            Condition::Ewma { params, .. } => {
                map.serialize_entry("z", &Num(seen.stat))?;
                let p = detectors::tail_probability(direction.magnitude(seen.stat));
                map.serialize_entry("p_value", &Num(p))?;
                map.serialize_entry("threshold_z", &Num(params.z))?;
                map.serialize_entry("direction", direction.as_str())?;
                map.serialize_entry("halflife", &Num(params.halflife))?;
            }
            Condition::Cusum { params, .. } => {
                map.serialize_entry("cusum", &Num(seen.stat))?;
                map.serialize_entry("slack", &Num(params.slack))?;
                map.serialize_entry("threshold", &Num(params.threshold))?;
                map.serialize_entry("direction", direction.as_str())?;
            }
            _ => {}
        }
        map.serialize_entry("warmup", &warmup)
    }
}

#[cfg(test)]
mod tests {
    use super::Plain;

    #[test]
    fn plain_numbers_are_written_as_f64_writes_them() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut values = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.5,
            1e15,
            1e16,
            9_007_199_254_740_991.0,
            9_007_199_254_740_992.0,
            -9_007_199_254_740_991.0,
            1e300,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            66.531_398_1,
        ];
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(f64::from_bits(x));
            values.push((x % 1_000_000_000) as f64);
            values.push((x >> 11) as f64 / 1e3);
        }
        for v in values {
            assert_eq!(Plain(v).to_string(), v.to_string(), "{v:?}");
            let mut pushed = String::new();
            Plain(v).push(&mut pushed);
            assert_eq!(pushed, v.to_string(), "{v:?}");
        }
    }
}
