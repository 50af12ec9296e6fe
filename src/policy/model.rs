//! Compiled policies: the typed values a policy file becomes at load.
//!
//! Nothing here is parsed again after loading. Metric names are resolved to
//! [`MetricId`]s, windows and percents carry their units, and every condition
//! is a node in a flat arena (`PolicySet::nodes`) so the engine can walk them
//! without allocating.

use std::fmt;

pub use crate::levels::{Mode, Severity};
use crate::metrics::MetricId;
pub use crate::metrics::detectors::{CusumParams, Direction, EwmaParams};
use crate::units::{Hold, Percent, Window};

/// A comparison in a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Above,
    AtLeast,
    Below,
    AtMost,
}

impl Comparison {
    pub const CHOICES: [(&'static str, Comparison); 4] = [
        (">", Comparison::Above),
        (">=", Comparison::AtLeast),
        ("<", Comparison::Below),
        ("<=", Comparison::AtMost),
    ];
    #[inline]
    pub fn holds(self, left: f64, right: f64) -> bool {
        match self {
            Comparison::Above => left > right,
            Comparison::AtLeast => left >= right,
            Comparison::Below => left < right,
            Comparison::AtMost => left <= right,
        }
    }
    pub fn symbol(self) -> &'static str {
        match self {
            Comparison::Above => ">",
            Comparison::AtLeast => ">=",
            Comparison::Below => "<",
            Comparison::AtMost => "<=",
        }
    }
}

/// A size of change: an amount in the metric's units or a percent of the starting value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    Absolute(f64),
    Percent(Percent),
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Amount::Absolute(v) => write!(f, "{v}"),
            Amount::Percent(p) => write!(f, "{p}"),
        }
    }
}

crate::levels::named_enum! {
    /// Per block or per second, for rates.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum RateUnit {
        PerBlock = "block",
        PerSecond = "second",
    }
}

/// How many of a composite's conditions must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quorum {
    All,
    Any,
    AtLeast(u32),
}

/// Index of a condition node in [`PolicySet::nodes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

/// A condition, compiled.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// `metric op value`.
    Threshold {
        metric: MetricId,
        comparison: Comparison,
        value: f64,
    },
    /// The value moved by at least `by` since the start of the window.
    Change {
        metric: MetricId,
        window: Window,
        direction: Direction,
        by: Amount,
    },
    /// The change over the window divided by the blocks or seconds it took, at least `above`.
    Rate {
        metric: MetricId,
        window: Window,
        per: RateUnit,
        direction: Direction,
        above: f64,
    },
    /// Sum of the metric's samples in the window, compared to an amount or to a
    /// percent of another metric's value at the window's start (the ERC-7265 shape).
    Sum {
        metric: MetricId,
        window: Window,
        comparison: Comparison,
        value: Amount,
        relative_to: Option<MetricId>,
    },
    /// `|metric - reference| / |reference|` at least `above`.
    Deviation {
        metric: MetricId,
        reference: MetricId,
        above: Percent,
        /// Both latest samples must be at most this far apart, else the condition is not evaluated.
        max_skew: Option<Window>,
    },
    /// No sample of the metric for at least `after`.
    Stale { metric: MetricId, after: Window },
    /// EWMA z-score anomaly detector.
    Ewma {
        metric: MetricId,
        params: EwmaParams,
    },
    /// One-sided CUSUM change detector.
    Cusum {
        metric: MetricId,
        params: CusumParams,
    },
    /// `all`, `any` or `at_least = k` of the child conditions.
    Composite {
        quorum: Quorum,
        children: Vec<NodeId>,
    },
}

impl Condition {
    /// The same condition with its metric ids and child node ids mapped.
    pub fn remap(
        &self,
        mut metric: impl FnMut(MetricId) -> MetricId,
        node: impl Fn(NodeId) -> NodeId,
    ) -> Condition {
        let mut c = self.clone();
        match &mut c {
            Condition::Threshold { metric: m, .. }
            | Condition::Change { metric: m, .. }
            | Condition::Rate { metric: m, .. }
            | Condition::Stale { metric: m, .. }
            | Condition::Ewma { metric: m, .. }
            | Condition::Cusum { metric: m, .. } => *m = metric(*m),
            Condition::Sum {
                metric: m,
                relative_to,
                ..
            } => {
                *m = metric(*m);
                if let Some(r) = relative_to {
                    *r = metric(*r);
                }
            }
            Condition::Deviation {
                metric: m,
                reference,
                ..
            } => {
                *m = metric(*m);
                *reference = metric(*reference);
            }
            Condition::Composite { children, .. } => {
                for ch in children.iter_mut() {
                    *ch = node(*ch);
                }
            }
        }
        c
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Condition::Threshold { .. } => "threshold",
            Condition::Change { .. } => "change",
            Condition::Rate { .. } => "rate",
            Condition::Sum { .. } => "sum",
            Condition::Deviation { .. } => "deviation",
            Condition::Stale { .. } => "stale",
            Condition::Ewma { .. } => "ewma",
            Condition::Cusum { .. } => "cusum",
            Condition::Composite { quorum, .. } => match quorum {
                Quorum::All => "all",
                Quorum::Any => "any",
                Quorum::AtLeast(_) => "at_least",
            },
        }
    }

    /// The metrics whose samples this condition reads directly (not its children's).
    pub fn metrics(&self) -> Vec<MetricId> {
        match *self {
            Condition::Threshold { metric, .. }
            | Condition::Change { metric, .. }
            | Condition::Rate { metric, .. }
            | Condition::Stale { metric, .. }
            | Condition::Ewma { metric, .. }
            | Condition::Cusum { metric, .. } => vec![metric],
            Condition::Sum {
                metric,
                relative_to,
                ..
            } => std::iter::once(metric).chain(relative_to).collect(),
            Condition::Deviation {
                metric, reference, ..
            } => vec![metric, reference],
            Condition::Composite { .. } => Vec::new(),
        }
    }
}

/// A condition node: the condition and how long it must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub condition: Condition,
    pub hold: Option<Hold>,
    /// The node that contains this one, if any.
    pub parent: Option<NodeId>,
    /// Composites only (`within = "N blocks"`): a child counts as held if it
    /// held at an evaluation within this window of now (corroboration).
    pub within: Option<Window>,
}

/// A compiled circuit breaker.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub id: String,
    pub description: String,
    pub severity: Severity,
    /// Name of the action in the guardian configuration.
    pub action: String,
    /// After a trip, the policy does not trip again until this much has passed.
    pub cooldown: Window,
    pub mode: Mode,
    /// The top condition.
    pub root: NodeId,
    /// Where the policy was written, `file:line`.
    pub origin: String,
    /// Alert channels (`[notify.<name>]`) for this policy's alerts; `None`: every channel.
    pub notify: Option<Vec<String>>,
    /// For an instance of a template policy: what the pattern's `*` stood for.
    pub instance: Option<String>,
}

/// Every loaded policy, their condition nodes, and the metric names they use.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicySet {
    pub policies: Vec<Policy>,
    pub nodes: Vec<Node>,
    /// Metric names by [`MetricId`] (after bindings are applied).
    pub metric_names: Vec<String>,
    /// Policies over metric patterns (`lend.cash.*`), instantiated per matching
    /// metric into `policies` by [`PolicySet::instantiate`].
    pub templates: Vec<Template>,
    /// Things a person should know that are not errors (e.g. a template capture
    /// skipped because one of its metrics is missing); `check` and `simulate` print them.
    pub warnings: Vec<String>,
}

/// Metric ids at or above this refer to a template's patterns, not to `metric_names`.
pub const PATTERN_BASE: u32 = 1 << 31;

/// A policy over metric patterns, compiled once; each instance is a copy of
/// its nodes with the pattern metrics replaced by one capture's names.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// The policy as written; `root` indexes `nodes`.
    pub policy: Policy,
    /// The template's own node arena (ids and parents local to it).
    pub nodes: Vec<Node>,
    /// Bound patterns, each with one `*`; metric id `PATTERN_BASE + i` is `patterns[i]`.
    pub patterns: Vec<String>,
    /// Captures instantiated so far, in order.
    pub instances: Vec<String>,
}

/// The part of `name` a pattern's `*` stands for, if `name` matches (never empty).
pub fn pattern_capture<'a>(pattern: &str, name: &'a str) -> Option<&'a str> {
    let (prefix, suffix) = pattern.split_once('*')?;
    if name.len() > prefix.len() + suffix.len()
        && name.starts_with(prefix)
        && name.ends_with(suffix)
    {
        Some(&name[prefix.len()..name.len() - suffix.len()])
    } else {
        None
    }
}

/// What instantiating templates found: instances made, and captures skipped
/// because only some of a template's patterns had a metric.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Instantiated {
    pub made: Vec<String>,
    /// One line per skipped capture or template with no instance, for warnings.
    pub notes: Vec<String>,
}

impl PolicySet {
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0 as usize]
    }
    pub fn metric_name(&self, id: MetricId) -> &str {
        &self.metric_names[id.0 as usize]
    }
    pub fn metric_id(&self, name: &str) -> Option<MetricId> {
        self.metric_names
            .iter()
            .position(|n| n == name)
            .map(|i| MetricId(i as u32))
    }

    /// The names of every metric policy `index` reads, through all its conditions.
    pub fn policy_metric_names(&self, index: usize) -> Vec<&str> {
        let Some(policy) = self.policies.get(index) else {
            return Vec::new();
        };
        let root_of = |mut id: NodeId| {
            while let Some(p) = self.node(id).parent {
                id = p;
            }
            id
        };
        let mut names: Vec<&str> = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if root_of(NodeId(i as u32)) != policy.root {
                continue;
            }
            for m in node.condition.metrics() {
                let name = self.metric_name(m);
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        names
    }

    fn intern(&mut self, name: String) -> MetricId {
        match self.metric_id(&name) {
            Some(id) => id,
            None => {
                self.metric_names.push(name);
                MetricId(self.metric_names.len() as u32 - 1)
            }
        }
    }

    /// Instantiates every template once per capture for which each of its
    /// patterns names a metric in `names` (sample names, after `[bind]`).
    /// Captures already instantiated are skipped, so this can be called again
    /// with more names.
    pub fn instantiate<'n>(&mut self, names: impl IntoIterator<Item = &'n str>) -> Instantiated {
        let names: std::collections::BTreeSet<&str> = names.into_iter().collect();
        let mut out = Instantiated::default();
        for t in 0..self.templates.len() {
            let template = &self.templates[t];
            let mut captures = std::collections::BTreeSet::new();
            for p in &template.patterns {
                captures.extend(names.iter().filter_map(|n| pattern_capture(p, n)));
            }
            for capture in captures {
                if self.templates[t].instances.iter().any(|i| i == capture) {
                    continue;
                }
                let template = &self.templates[t];
                let missing: Vec<String> = template
                    .patterns
                    .iter()
                    .map(|p| p.replacen('*', capture, 1))
                    .filter(|n| !names.contains(n.as_str()))
                    .collect();
                if !missing.is_empty() {
                    out.notes.push(format!(
                        "template policy `{}` ({}): no instance for `{capture}`: {} has no metric",
                        template.policy.id,
                        template.policy.origin,
                        missing.join(", ")
                    ));
                    continue;
                }
                out.made.push(self.add_instance(t, capture));
            }
            let template = &self.templates[t];
            if template.instances.is_empty() {
                out.notes.push(format!(
                    "template policy `{}` ({}) matches no metric ({}): it can never trip",
                    template.policy.id,
                    template.policy.origin,
                    template.patterns.join(", ")
                ));
            }
        }
        out
    }

    /// A copy in which each template without an instance has one for the
    /// capture `*` (policy `id[*]` over the patterns themselves), so it can
    /// be listed and explained before any metric is known. Never run it.
    pub fn with_template_views(&self) -> PolicySet {
        let mut view = self.clone();
        for t in 0..view.templates.len() {
            if view.templates[t].instances.is_empty() {
                view.add_instance(t, "*");
            }
        }
        view
    }

    /// Adds template `t`'s instance for `capture`; returns the instance's policy id.
    fn add_instance(&mut self, t: usize, capture: &str) -> String {
        let template = self.templates[t].clone();
        let offset = self.nodes.len() as u32;
        let metric = |set: &mut PolicySet, m: MetricId| -> MetricId {
            match m.0.checked_sub(PATTERN_BASE) {
                Some(i) => set.intern(template.patterns[i as usize].replacen('*', capture, 1)),
                None => m,
            }
        };
        for node in &template.nodes {
            let mut node = node.clone();
            node.parent = node.parent.map(|p| NodeId(p.0 + offset));
            node.condition = node
                .condition
                .remap(|m| metric(self, m), |n| NodeId(n.0 + offset));
            self.nodes.push(node);
        }
        let id = format!("{}[{capture}]", template.policy.id);
        let mut policy = template.policy.clone();
        policy.id = id.clone();
        policy.root = NodeId(policy.root.0 + offset);
        policy.instance = Some(capture.to_string());
        self.policies.push(policy);
        self.templates[t].instances.push(capture.to_string());
        id
    }
}
