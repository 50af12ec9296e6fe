//! The policy engine: samples in, trips with evidence out.
//!
//! Invariants:
//! - **Incremental.** A sample updates only its metric's history and the
//!   conditions that read that metric (and the composites above them); other
//!   policies are not touched. Windows over one metric are kept once and
//!   shared by every policy that reads them.
//! - **Allocation-free after warm-up.** Per-sample work uses preallocated
//!   state; a trip allocates one copy of its condition nodes' readings
//!   ([`Readings`]) and its summary line. The evidence JSON is written from
//!   the readings only when a consumer reads it (see [`super::evidence`]).
//! - **Deterministic.** The same samples in the same order give the same
//!   trips, bit for bit: no clocks, no randomness, no hash-order iteration.
//! - **Conditions keep their latest truth.** A condition is re-evaluated when
//!   one of its metrics gets a sample (staleness: when the clock moves); a
//!   composite combines its children's latest truths. A condition that has
//!   never been evaluated is false.
//! - **Hysteresis** (`for`) counts consecutive evaluations in which the
//!   condition held (`samples`), or consecutive blocks (`blocks`); one false
//!   evaluation resets the count.
//! - **Cooldown.** After a trip, the policy does not trip again until its
//!   cooldown has passed, measured in blocks or in sample time. A cooldown is
//!   never silent: a new incident inside it (the condition turned false, then
//!   true again) is reported once as a [`Held`] and counted.
//! - **Replayed trips.** A trip the caller marks as a replay of one already
//!   decided ([`Engine::replayed_trip`]) holds its policy only through the same
//!   incident: once the condition turns false, the next incident trips.
//! - **Rollback.** A sample for a block at or before its metric's latest
//!   replaces that block's value and drops later ones (a reorg's corrected
//!   samples). Detector baselines, hysteresis counts and cooldowns are not
//!   rolled back.

use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde_json::Value;

use crate::decision::{Evidence, Trip};
use crate::metrics::detectors::{Cusum, Ewma};
use crate::metrics::history::{Entry, MetricHistory};
use crate::metrics::{MetricId, Sample};
use crate::units::{Percent, Window};

use super::evidence::{Reading, Readings, Seen, recent};
use super::model::{
    Amount, Comparison, Condition, Direction, Mode, NodeId, PolicySet, Quorum, RateUnit,
};

#[path = "whatif.rs"]
mod whatif;

#[derive(Debug, Clone, Default)]
enum Detector {
    #[default]
    None,
    Ewma(Ewma),
    Cusum(Cusum),
}

/// A node's evaluation state besides its [`Reading`] (kept apart, by node id,
/// so a trip copies its policy's readings in one piece).
#[derive(Debug, Clone, Default)]
struct NodeState {
    raw: bool,
    streak: u32,
    streak_block: u64,
    /// For a composite: how many of its children are true now.
    children_true: u32,
    detector: Detector,
    /// For sums: the slot in the metric's history.
    sum_slot: usize,
}

/// Nodes to evaluate (children before parents) and policies to check after an event.
#[derive(Debug, Clone, Default)]
struct Dependents {
    nodes: Vec<NodeId>,
    policies: Vec<u32>,
}

#[derive(Debug, Clone, Copy, Default)]
struct PolicyState {
    last_trip: Option<(u64, u64)>,
    /// The last trip was a replay of one decided before a restart.
    replayed: bool,
    /// The condition was false at some check since the last trip.
    cleared: bool,
    /// The current incident inside the cooldown was already reported.
    held_reported: bool,
}

/// Counters the engine keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub samples: u64,
    pub rollbacks: u64,
    pub trips: Vec<u64>,
    /// Per policy: incidents held by the policy's cooldown (not tripped).
    pub held: Vec<u64>,
}

/// A new incident a policy's cooldown held back: the condition held again
/// inside the cooldown of an earlier trip, so no trip was made.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    pub policy: String,
    pub block: u64,
    pub time_ms: u64,
    /// The trip whose cooldown holds (block, time).
    pub last_trip: (u64, u64),
    /// The policy's cooldown.
    pub cooldown: Window,
}

impl Held {
    /// When the cooldown ends: the block (cooldown in blocks) or the time in ms.
    pub fn ready(&self) -> (Option<u64>, Option<u64>) {
        match self.cooldown {
            Window::Blocks(n) => (Some(self.last_trip.0 + n), None),
            Window::Millis(ms) => (None, Some(self.last_trip.1 + ms)),
        }
    }
}

/// The policy engine.
#[derive(Debug)]
pub struct Engine {
    /// Shared with the evidence of trips (read when a consumer asks).
    set: Arc<PolicySet>,
    /// Per policy: the nodes of its condition, by ascending id.
    members: Vec<Arc<[NodeId]>>,
    global_mode: Mode,
    histories: Vec<MetricHistory>,
    nodes: Vec<NodeState>,
    /// Per node: its latest reading, truth and whether it was ever evaluated.
    readings: Vec<Reading>,
    by_metric: Vec<Dependents>,
    stale: Dependents,
    policies: Vec<PolicyState>,
    names: FxHashMap<Box<str>, MetricId>,
    /// Latest block and time seen, and the first (for staleness of never-seen metrics).
    clock: Option<(u64, u64)>,
    start: (u64, u64),
    stats: EngineStats,
    /// Holds not yet taken by [`Engine::drain_held`].
    held: Vec<Held>,
}

fn ancestors_and_self(set: &PolicySet, leaf: NodeId, out: &mut Vec<NodeId>) {
    let mut cur = Some(leaf);
    while let Some(id) = cur {
        out.push(id);
        cur = set.node(id).parent;
    }
}

/// Per policy, the nodes of its condition (root and descendants), by ascending id.
fn policy_members(set: &PolicySet, root_policy: &[Option<u32>]) -> Vec<Arc<[NodeId]>> {
    let mut members = vec![Vec::new(); set.policies.len()];
    for i in 0..set.nodes.len() {
        let mut root = NodeId(i as u32);
        while let Some(parent) = set.node(root).parent {
            root = parent;
        }
        if let Some(p) = root_policy[root.0 as usize] {
            members[p as usize].push(NodeId(i as u32));
        }
    }
    members.into_iter().map(Arc::from).collect()
}

fn finish_dependents(mut nodes: Vec<NodeId>, root_policy: &[Option<u32>]) -> Dependents {
    // Children always have larger ids than their parent (parents are reserved
    // first at compile time), so descending id order evaluates children first.
    nodes.sort_unstable_by(|a, b| b.cmp(a));
    nodes.dedup();
    let mut policies: Vec<u32> = nodes
        .iter()
        .filter_map(|n| root_policy[n.0 as usize])
        .collect();
    policies.sort_unstable();
    policies.dedup();
    Dependents { nodes, policies }
}

impl Engine {
    /// Builds an engine for `set`; `global_mode` caps every policy's mode.
    pub fn new(set: PolicySet, global_mode: Mode) -> Self {
        let metric_count = set.metric_names.len();
        let mut histories = vec![MetricHistory::default(); metric_count];
        let mut nodes = vec![NodeState::default(); set.nodes.len()];
        let mut root_policy = vec![None; set.nodes.len()];
        for (i, p) in set.policies.iter().enumerate() {
            root_policy[p.root.0 as usize] = Some(i as u32);
        }
        let mut metric_nodes: Vec<Vec<NodeId>> = vec![Vec::new(); metric_count];
        let mut stale_nodes = Vec::new();
        for (i, node) in set.nodes.iter().enumerate() {
            let id = NodeId(i as u32);
            let state = &mut nodes[i];
            match &node.condition {
                Condition::Change { metric, window, .. }
                | Condition::Rate { metric, window, .. } => {
                    histories[metric.0 as usize].require(*window);
                }
                Condition::Sum {
                    metric,
                    window,
                    relative_to,
                    ..
                } => {
                    state.sum_slot = histories[metric.0 as usize].require_sum(*window);
                    if let Some(rel) = relative_to {
                        histories[rel.0 as usize].require(*window);
                    }
                }
                Condition::Ewma { .. } => state.detector = Detector::Ewma(Ewma::default()),
                Condition::Cusum { .. } => state.detector = Detector::Cusum(Cusum::default()),
                Condition::Stale { .. } => ancestors_and_self(&set, id, &mut stale_nodes),
                _ => {}
            }
            // Every condition is re-evaluated on its metrics' samples (a stale
            // condition turns false as soon as its metric has a sample).
            for m in node.condition.metrics() {
                ancestors_and_self(&set, id, &mut metric_nodes[m.0 as usize]);
            }
        }
        let by_metric = metric_nodes
            .into_iter()
            .map(|nodes| finish_dependents(nodes, &root_policy))
            .collect();
        let stale = finish_dependents(stale_nodes, &root_policy);
        let names = set
            .metric_names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone().into_boxed_str(), MetricId(i as u32)))
            .collect();
        let stats = EngineStats {
            trips: vec![0; set.policies.len()],
            held: vec![0; set.policies.len()],
            ..EngineStats::default()
        };
        Self {
            policies: vec![PolicyState::default(); set.policies.len()],
            members: policy_members(&set, &root_policy),
            readings: vec![Reading::default(); set.nodes.len()],
            set: Arc::new(set),
            global_mode,
            histories,
            nodes,
            by_metric,
            stale,
            names,
            clock: None,
            start: (0, 0),
            stats,
            held: Vec::new(),
        }
    }

    /// Marks `policy`'s last trip as a replay of a trip already decided
    /// (a restart re-reading blocks to refill windows). Decided in the mode
    /// running now (`same_mode`): its cooldown holds only the same incident.
    /// Otherwise (another mode, or never decided) it holds nothing.
    pub fn replayed_trip(&mut self, policy: &str, same_mode: bool) {
        let Some(i) = self.set.policies.iter().position(|p| p.id == policy) else {
            return;
        };
        let state = &mut self.policies[i];
        if same_mode {
            state.replayed = true;
            // The incident in progress was decided: it is not a new one.
            state.held_reported = true;
        } else {
            *state = PolicyState::default();
        }
    }

    /// Hands over (and forgets) the incidents cooldowns held since the last call.
    pub fn drain_held(&mut self, mut f: impl FnMut(Held)) {
        for h in self.held.drain(..) {
            f(h);
        }
    }

    pub fn policies(&self) -> &PolicySet {
        &self.set
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// The id of a metric some policy reads, by its sample name.
    #[inline]
    pub fn metric_id(&self, name: &str) -> Option<MetricId> {
        self.names.get(name).copied()
    }

    /// Feeds one sample; calls `on_trip` for each policy that trips, in policy order.
    pub fn on_sample(&mut self, sample: Sample, on_trip: &mut impl FnMut(Trip)) {
        self.stats.samples += 1;
        let m = sample.metric.0 as usize;
        let entry = Entry {
            block: sample.block,
            time_ms: sample.time_ms,
            value: sample.value,
        };
        if self.histories[m].push(entry) {
            self.stats.rollbacks += 1;
        }
        let clock_moved = self.move_clock(sample.block, sample.time_ms);
        for i in 0..self.by_metric[m].nodes.len() {
            let id = self.by_metric[m].nodes[i];
            self.evaluate(id, Some(sample.metric), (sample.block, sample.time_ms));
        }
        if clock_moved && !self.stale.nodes.is_empty() {
            for i in 0..self.stale.nodes.len() {
                let id = self.stale.nodes[i];
                self.evaluate(id, None, (sample.block, sample.time_ms));
            }
            // Check the union of both policy lists once each, in policy order.
            let (mut a, mut b) = (0, 0);
            let (pa, pb) = (self.by_metric[m].policies.len(), self.stale.policies.len());
            while a < pa || b < pb {
                let next_a = self.by_metric[m].policies.get(a).copied();
                let next_b = self.stale.policies.get(b).copied();
                let p = match (next_a, next_b) {
                    (Some(x), Some(y)) if x == y => {
                        a += 1;
                        b += 1;
                        x
                    }
                    (Some(x), Some(y)) if x < y => {
                        a += 1;
                        x
                    }
                    (Some(x), None) => {
                        a += 1;
                        x
                    }
                    (_, Some(y)) => {
                        b += 1;
                        y
                    }
                    (None, None) => break,
                };
                self.check_policy(p, sample.block, sample.time_ms, on_trip);
            }
        } else {
            for i in 0..self.by_metric[m].policies.len() {
                let p = self.by_metric[m].policies[i];
                self.check_policy(p, sample.block, sample.time_ms, on_trip);
            }
        }
    }

    /// Moves the clock without a sample (a live watchdog tick); evaluates staleness.
    pub fn on_tick(&mut self, block: u64, time_ms: u64, on_trip: &mut impl FnMut(Trip)) {
        if self.move_clock(block, time_ms) {
            for i in 0..self.stale.nodes.len() {
                let id = self.stale.nodes[i];
                self.evaluate(id, None, (block, time_ms));
            }
            for i in 0..self.stale.policies.len() {
                let p = self.stale.policies[i];
                self.check_policy(p, block, time_ms, on_trip);
            }
        }
    }

    fn move_clock(&mut self, block: u64, time_ms: u64) -> bool {
        match self.clock {
            None => {
                self.clock = Some((block, time_ms));
                self.start = (block, time_ms);
                true
            }
            Some((b, t)) if block > b || time_ms > t => {
                self.clock = Some((block.max(b), time_ms.max(t)));
                true
            }
            Some(_) => false,
        }
    }

    /// Evaluates one node. `updated` is the metric whose sample triggered this
    /// evaluation (detectors observe only their own metric's samples).
    fn evaluate(&mut self, id: NodeId, updated: Option<MetricId>, at: (u64, u64)) {
        let block = at.0;
        let i = id.0 as usize;
        let node = &self.set.nodes[i];
        let raw = match &node.condition {
            Condition::Composite { quorum, children } => {
                let held = match node.within {
                    None => self.nodes[i].children_true as usize,
                    Some(w) => children
                        .iter()
                        .filter(|c| recent(self.readings[c.0 as usize].last_true, w, at))
                        .count(),
                };
                let needed = match *quorum {
                    Quorum::All => children.len(),
                    Quorum::Any => 1,
                    Quorum::AtLeast(k) => k as usize,
                };
                let seen = &mut self.readings[i].seen;
                seen.stat = held as f64;
                seen.block = block;
                seen.time_ms = at.1;
                held >= needed
            }
            condition => {
                let inputs = Inputs {
                    histories: &self.histories,
                    updated,
                    at,
                    clock: self.clock.unwrap_or_default(),
                    start: self.start,
                };
                let seen = &mut self.readings[i].seen;
                evaluate_leaf(condition, &mut self.nodes[i], seen, &inputs)
            }
        };
        let (hold, parent) = (node.hold, node.parent);
        let state = &mut self.nodes[i];
        state.raw = raw;
        let truth = match (raw, hold) {
            (false, _) => {
                state.streak = 0;
                false
            }
            (true, None) => true,
            (true, Some(h)) => {
                match h {
                    crate::units::Hold::Samples(_) => state.streak += 1,
                    crate::units::Hold::Blocks(_) => {
                        if state.streak == 0 || state.streak_block != block {
                            state.streak += 1;
                            state.streak_block = block;
                        }
                    }
                }
                state.streak >= h.count()
            }
        };
        let reading = &mut self.readings[i];
        reading.evaluated = true;
        if truth {
            reading.last_true = Some(at);
        }
        if reading.truth != truth {
            reading.truth = truth;
            if let Some(p) = parent {
                let count = &mut self.nodes[p.0 as usize].children_true;
                *count = if truth { *count + 1 } else { *count - 1 };
            }
        }
    }

    fn check_policy(&mut self, p: u32, block: u64, time_ms: u64, on_trip: &mut impl FnMut(Trip)) {
        let policy = &self.set.policies[p as usize];
        let state = &mut self.policies[p as usize];
        if !self.readings[policy.root.0 as usize].truth {
            state.cleared = true;
            state.held_reported = false;
            return;
        }
        if let Some((last_block, last_time)) = state.last_trip {
            let cooled = match policy.cooldown {
                Window::Blocks(n) => block.saturating_sub(last_block) >= n,
                Window::Millis(ms) => time_ms.saturating_sub(last_time) >= ms,
            };
            // A replayed trip's cooldown ends with its incident.
            let incident_over = state.replayed && state.cleared;
            if !(cooled || incident_over) {
                if state.cleared && !state.held_reported {
                    state.held_reported = true;
                    self.stats.held[p as usize] += 1;
                    self.held.push(Held {
                        policy: policy.id.clone(),
                        block,
                        time_ms,
                        last_trip: (last_block, last_time),
                        cooldown: policy.cooldown,
                    });
                }
                return;
            }
        }
        *state = PolicyState {
            last_trip: Some((block, time_ms)),
            ..PolicyState::default()
        };
        self.stats.trips[p as usize] += 1;
        let readings = self.readings(p as usize);
        let summary = readings.summary();
        on_trip(Trip {
            policy: policy.id.clone(),
            block,
            time_ms,
            action: policy.action.clone(),
            severity: policy.severity,
            mode: policy.mode.most_cautious(self.global_mode),
            evidence: Evidence::read_from(readings),
            summary,
        });
    }

    /// A copy of policy number `policy`'s nodes' latest readings (one
    /// allocation; the JSON and text are written from it only when asked).
    fn readings(&self, policy: usize) -> Readings {
        let ids = &self.members[policy];
        let (first, last) = match (ids.first(), ids.last()) {
            (Some(first), Some(last)) => (first.0 as usize, last.0 as usize),
            _ => (0, 0),
        };
        // Numbered without gaps (as compile numbers them): one copy of the range.
        let nodes: Box<[Reading]> = if last + 1 - first == ids.len() {
            self.readings[first..=last].into()
        } else {
            ids.iter().map(|id| self.readings[id.0 as usize]).collect()
        };
        Readings::new(Arc::clone(&self.set), policy as u32, Arc::clone(ids), nodes)
    }
}

#[inline]
fn percent_of(part: f64, whole: f64) -> f64 {
    if whole != 0.0 {
        part / whole.abs() * 100.0
    } else if part == 0.0 {
        0.0
    } else {
        part.signum() * f64::INFINITY
    }
}

/// What a leaf condition's evaluation reads besides its own state.
struct Inputs<'a> {
    histories: &'a [MetricHistory],
    /// The metric whose sample triggered the evaluation (none: the clock moved).
    updated: Option<MetricId>,
    /// The sample's (or tick's) block and time.
    at: (u64, u64),
    /// The engine's latest block and time, and its first (for staleness).
    clock: (u64, u64),
    start: (u64, u64),
}

impl Inputs<'_> {
    fn latest(&self, m: MetricId) -> Option<Entry> {
        self.histories[m.0 as usize].latest().copied()
    }

    /// A metric's latest entry and the entry starting `window` before it.
    fn window(&self, m: MetricId, window: Window) -> Option<(Entry, Entry)> {
        let h = &self.histories[m.0 as usize];
        Some((*h.latest()?, *h.window_start(window)?))
    }
}

/// The reading's latest entry.
fn set_now(seen: &mut Seen, e: &Entry) {
    seen.block = e.block;
    seen.time_ms = e.time_ms;
    seen.value = e.value;
}

/// The reading's base entry: a window's start, or the reference.
fn set_base(seen: &mut Seen, e: &Entry) {
    seen.base = e.value;
    seen.base_block = e.block;
    seen.base_time_ms = e.time_ms;
}

fn evaluate_leaf(
    condition: &Condition,
    state: &mut NodeState,
    seen: &mut Seen,
    inputs: &Inputs,
) -> bool {
    seen.judged = false;
    match *condition {
        Condition::Threshold {
            metric,
            comparison,
            value,
        } => {
            let Some(now) = inputs.latest(metric) else {
                return false;
            };
            set_now(seen, &now);
            seen.judged = true;
            comparison.holds(now.value, value)
        }
        Condition::Change {
            metric,
            window,
            direction,
            by,
        } => change_leaf(seen, inputs.window(metric, window), direction, by),
        Condition::Rate {
            metric,
            window,
            per,
            direction,
            above,
        } => rate_leaf(seen, inputs.window(metric, window), per, direction, above),
        Condition::Sum {
            metric,
            window,
            comparison,
            value,
            relative_to,
        } => {
            let limit = (comparison, value, relative_to);
            sum_leaf((state.sum_slot, seen), inputs, (metric, window), limit)
        }
        Condition::Deviation {
            metric,
            reference,
            above,
            max_skew,
        } => {
            let (Some(a), Some(b)) = (inputs.latest(metric), inputs.latest(reference)) else {
                return false;
            };
            deviation_leaf(seen, (a, b), above, max_skew)
        }
        Condition::Stale { metric, after } => stale_leaf(metric, after, seen, inputs),
        Condition::Ewma { .. } | Condition::Cusum { .. } => {
            detector_leaf(condition, state, seen, inputs)
        }
        Condition::Composite { .. } => false,
    }
}

/// A change over a window (`ends`: its latest entry and the one starting it).
fn change_leaf(
    seen: &mut Seen,
    ends: Option<(Entry, Entry)>,
    direction: Direction,
    by: Amount,
) -> bool {
    let Some((now, base)) = ends else {
        return false;
    };
    set_now(seen, &now);
    set_base(seen, &base);
    let delta = now.value - base.value;
    seen.stat = delta;
    seen.stat2 = percent_of(delta, base.value);
    seen.judged = true;
    match by {
        Amount::Absolute(a) => direction.magnitude(delta) >= a,
        Amount::Percent(p) => direction.magnitude(seen.stat2) >= p.0,
    }
}

/// A rate of change over a window (`ends` as for [`change_leaf`]).
fn rate_leaf(
    seen: &mut Seen,
    ends: Option<(Entry, Entry)>,
    per: RateUnit,
    direction: Direction,
    above: f64,
) -> bool {
    let Some((now, base)) = ends else {
        return false;
    };
    let elapsed = match per {
        RateUnit::PerBlock => (now.block - base.block) as f64,
        RateUnit::PerSecond => (now.time_ms.saturating_sub(base.time_ms)) as f64 / 1000.0,
    };
    if elapsed <= 0.0 {
        return false;
    }
    set_now(seen, &now);
    set_base(seen, &base);
    seen.stat = (now.value - base.value) / elapsed;
    seen.judged = true;
    direction.magnitude(seen.stat) >= above
}

/// A sum over a window ending at the sample being evaluated, which may belong
/// to `relative_to` and be later than this metric's newest sample.
fn sum_leaf(
    (slot, seen): (usize, &mut Seen),
    inputs: &Inputs,
    (metric, window): (MetricId, Window),
    (comparison, limit, relative_to): (Comparison, Amount, Option<MetricId>),
) -> bool {
    let (now_block, now_ms) = inputs.at;
    let h = &inputs.histories[metric.0 as usize];
    let (sum, count, first) = h.sum_at(slot, now_block, now_ms);
    seen.block = now_block;
    seen.time_ms = now_ms;
    seen.value = h.latest().map_or(0.0, |e| e.value);
    seen.stat = sum;
    seen.count = count;
    seen.base_block = first.map_or(now_block, |e| e.block);
    let p = match limit {
        Amount::Absolute(a) => {
            seen.judged = true;
            return comparison.holds(sum, a);
        }
        Amount::Percent(p) => p,
    };
    // Compile refuses a percent without `relative_to`.
    let Some(base) = relative_to.and_then(|rel| {
        inputs.histories[rel.0 as usize].window_start_at(window, now_block, now_ms)
    }) else {
        return false;
    };
    seen.base = base.value;
    seen.stat2 = percent_of(sum, base.value);
    seen.judged = true;
    comparison.holds(seen.stat2, p.0)
}

/// Two metrics' latest entries (`a` against the reference `b`), at most `max_skew` apart.
fn deviation_leaf(
    seen: &mut Seen,
    (a, b): (Entry, Entry),
    above: Percent,
    max_skew: Option<Window>,
) -> bool {
    let apart = match max_skew {
        None => false,
        Some(Window::Blocks(n)) => a.block.abs_diff(b.block) > n,
        Some(Window::Millis(ms)) => a.time_ms.abs_diff(b.time_ms) > ms,
    };
    if apart {
        return false;
    }
    set_now(seen, &a);
    set_base(seen, &b);
    seen.stat = percent_of(a.value - b.value, b.value).abs();
    seen.judged = true;
    seen.stat >= above.0
}

fn stale_leaf(metric: MetricId, after: Window, seen: &mut Seen, inputs: &Inputs) -> bool {
    let (now_block, now_time) = inputs.clock;
    let (last_block, last_time, ever) = match inputs.latest(metric) {
        Some(e) => (e.block, e.time_ms, 1),
        None => (inputs.start.0, inputs.start.1, 0),
    };
    seen.block = now_block;
    seen.time_ms = now_time;
    seen.base_block = last_block;
    seen.base_time_ms = last_time;
    seen.count = ever;
    seen.stat = now_block.saturating_sub(last_block) as f64;
    seen.stat2 = now_time.saturating_sub(last_time) as f64;
    seen.judged = true;
    match after {
        Window::Blocks(n) => now_block.saturating_sub(last_block) >= n,
        Window::Millis(ms) => now_time.saturating_sub(last_time) >= ms,
    }
}

/// EWMA and CUSUM: they observe only their own metric's samples.
fn detector_leaf(
    condition: &Condition,
    state: &mut NodeState,
    seen: &mut Seen,
    inputs: &Inputs,
) -> bool {
    let (Condition::Ewma { metric, .. } | Condition::Cusum { metric, .. }) = *condition else {
        return false;
    };
    if inputs.updated != Some(metric) {
        return state.raw;
    }
    let Some(now) = inputs.latest(metric) else {
        return false;
    };
    let reading = match (condition, &mut state.detector) {
        (Condition::Ewma { params, .. }, Detector::Ewma(d)) => d.observe(now.value, params),
        (Condition::Cusum { params, .. }, Detector::Cusum(d)) => d.observe(now.value, params),
        _ => return false,
    };
    set_now(seen, &now);
    seen.base = reading.mean;
    seen.stat2 = reading.sd;
    seen.stat = reading.statistic.unwrap_or(0.0);
    seen.judged = reading.statistic.is_some();
    reading.tripped
}

impl Engine {
    /// The evidence of policy number `policy`'s condition as of its latest
    /// evaluation, whether or not it tripped; `None` while the condition could
    /// not be judged (no history yet, warm-up). For status views and tests.
    pub fn current_evidence(&self, policy: usize) -> Option<Value> {
        let root = self.set.policies.get(policy)?.root;
        let judged = match self.set.node(root).condition {
            Condition::Composite { .. } => true,
            _ => self.readings[root.0 as usize].seen.judged,
        };
        judged.then(|| self.readings(policy).condition_value())
    }

    /// The statistic a node computed at its latest evaluation, if it could be judged
    /// (used by calibration to find the largest statistic a benign trace produces).
    pub fn node_statistic(&self, id: NodeId) -> Option<f64> {
        let seen = &self.readings[id.0 as usize].seen;
        seen.judged.then_some(match self.set.node(id).condition {
            Condition::Threshold { .. } => seen.value,
            Condition::Change {
                by: Amount::Percent(_),
                ..
            } => seen.stat2,
            Condition::Sum {
                relative_to: Some(_),
                ..
            } => seen.stat2,
            _ => seen.stat,
        })
    }
}
