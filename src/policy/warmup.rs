//! How much history each policy needs before it can trip: its warm-up.
//!
//! A policy is blind until its longest window is full and its detectors have
//! learnt their baselines. The need is computed once from the compiled
//! conditions: windows in blocks or time, detector warm-ups in samples (one
//! sample per block for metrics read from a chain). `explain` states it,
//! `run` re-reads that much history on a restart (bounded by
//! `[journal] max_warmup_blocks`) and says which policies stay blind, and
//! until which block.

use crate::units::Window;

use super::model::{Condition, PolicySet};

/// History a policy needs: the larger of `blocks` and `millis` decides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WarmUp {
    /// Blocks of history (block windows, detector warm-ups counted in samples).
    pub blocks: u64,
    /// Time of history (time windows), in milliseconds.
    pub millis: u64,
}

impl WarmUp {
    /// Whether the policy can trip on its first sample.
    pub fn is_none(&self) -> bool {
        self.blocks == 0 && self.millis == 0
    }

    /// Blocks to re-read to cover the need, at `block_time_ms` per block.
    pub fn in_blocks(&self, block_time_ms: u64) -> u64 {
        let from_time = self.millis.div_ceil(block_time_ms.max(1));
        self.blocks.max(from_time)
    }

    /// Whether history from `first` (block, ms) to `now` covers the need.
    pub fn covered(&self, first: (u64, u64), now: (u64, u64)) -> bool {
        now.0.saturating_sub(first.0) >= self.blocks && now.1.saturating_sub(first.1) >= self.millis
    }

    /// "300 blocks", "1h", "300 blocks and 1h", or "none".
    pub fn describe(&self) -> String {
        let blocks = (self.blocks > 0).then(|| {
            format!(
                "{} block{}",
                self.blocks,
                if self.blocks == 1 { "" } else { "s" }
            )
        });
        let time = (self.millis > 0).then(|| crate::units::DisplayMillis(self.millis).to_string());
        match (blocks, time) {
            (Some(b), Some(t)) => format!("{b} and {t}"),
            (Some(b), None) => b,
            (None, Some(t)) => t,
            (None, None) => "none".to_string(),
        }
    }

    fn add_window(&mut self, window: Window) {
        match window {
            Window::Blocks(n) => self.blocks = self.blocks.max(n),
            Window::Millis(ms) => self.millis = self.millis.max(ms),
        }
    }
}

/// Each policy's warm-up, in policy order.
pub fn warmups(set: &PolicySet) -> Vec<WarmUp> {
    let mut out = vec![WarmUp::default(); set.policies.len()];
    for (i, node) in set.nodes.iter().enumerate() {
        // The policy this node belongs to: walk up to the root.
        let mut root = i;
        while let Some(parent) = set.nodes[root].parent {
            root = parent.0 as usize;
        }
        let Some(p) = set.policies.iter().position(|p| p.root.0 as usize == root) else {
            continue;
        };
        let need = &mut out[p];
        match &node.condition {
            Condition::Change { window, .. }
            | Condition::Rate { window, .. }
            | Condition::Sum { window, .. } => need.add_window(*window),
            Condition::Ewma { params, .. } => {
                need.blocks = need.blocks.max(u64::from(params.warmup))
            }
            Condition::Cusum { params, .. } => {
                need.blocks = need.blocks.max(u64::from(params.warmup));
            }
            _ => {}
        }
    }
    out
}

/// The metrics a policy reads, each once, in metric order.
pub fn policy_metrics(set: &PolicySet, policy: usize) -> Vec<crate::metrics::MetricId> {
    let root = set.policies[policy].root;
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(id) = stack.pop() {
        let node = set.node(id);
        out.extend(node.condition.metrics());
        if let Condition::Composite { children, .. } = &node.condition {
            stack.extend(children.iter().copied());
        }
    }
    out.sort_unstable_by_key(|m| m.0);
    out.dedup();
    out
}

/// Blind spots a live run would have: every policy reading a metric that
/// `config` defines without a `source` (or without a `network`) can never
/// trip. One problem per policy and metric, at the policy's `file:line`.
/// A configuration without networks (trace replay only) has none.
pub fn blind_spots(
    set: &PolicySet,
    config: &crate::config::Config,
) -> Result<(), crate::config::reader::Diagnostics> {
    let mut problems = crate::config::reader::Diagnostics::default();
    if config.networks.is_empty() {
        return Ok(());
    }
    for (i, policy) in set.policies.iter().enumerate() {
        for m in policy_metrics(set, i) {
            let name = set.metric_name(m);
            let Some(def) = config.metric(name) else {
                continue;
            };
            let missing = if def.source.is_none() {
                "no `source`"
            } else if def.network.is_none() {
                "no `network`"
            } else {
                continue;
            };
            let (file, line) = policy
                .origin
                .rsplit_once(':')
                .map_or((policy.origin.as_str(), 0), |(f, l)| {
                    (f, l.parse().unwrap_or(0))
                });
            problems.0.push(crate::config::reader::Diagnostic {
                file: file.into(),
                line,
                column: 1,
                message: format!(
                    "policy `{}` reads metric `{name}`, which has {missing} in {}: it is never read, so the policy can never trip",
                    policy.id,
                    config.path.display()
                ),
                hint: Some(format!(
                    "give [metrics.\"{name}\"] a `source` and a `network`, or [bind] the policy's name to a metric that has them"
                )),
                excerpt: None,
            });
        }
    }
    problems.into_result(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_window_and_detector_warm_up_decide() {
        let text = r#"
[[policy]]
id = "fast"
description = "one block"
severity = "critical"
action = "pause"
cooldown = "1 block"
[policy.when]
kind = "change"
metric = "tvl"
window = "1 block"
direction = "down"
by = "30%"

[[policy]]
id = "slow"
description = "an hour, or an anomaly"
severity = "warning"
action = "pause"
cooldown = "1 block"
[policy.when]
kind = "any"
of = [
  { kind = "change", metric = "tvl", window = "1h", direction = "down", by = "20%" },
  { kind = "change", metric = "tvl", window = "300 blocks", direction = "down", by = "20%" },
]

[[policy]]
id = "level"
description = "a threshold needs no history"
severity = "info"
action = "pause"
cooldown = "1 block"
[policy.when]
kind = "threshold"
metric = "tvl"
op = "<"
value = 5
"#;
        let set = crate::policy::compile_str("p.toml", text, &crate::config::Config::empty())
            .unwrap_or_else(|e| panic!("{e:?}"));
        let w = warmups(&set);
        assert_eq!(
            w[0],
            WarmUp {
                blocks: 1,
                millis: 0
            }
        );
        assert_eq!(
            w[1],
            WarmUp {
                blocks: 300,
                millis: 3_600_000
            }
        );
        assert!(w[2].is_none());
        assert_eq!(w[1].in_blocks(12_000), 300);
        assert_eq!(w[1].in_blocks(1_000), 3_600);
        assert_eq!(w[1].describe(), "300 blocks and 1h");
        assert!(!w[1].covered((100, 0), (399, 4_000_000)));
        assert!(w[1].covered((100, 0), (400, 3_600_000)));
    }
}
