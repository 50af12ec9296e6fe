//! Prometheus metrics and readiness. Updates are atomic increments behind a
//! label lookup: cheap enough for the hot path (a few per block).
//!
//! Below both of its writers: [`crate::observe`] (the probe the stages report
//! through) and [`crate::alerts`] (which counts what it sends, drops and
//! suppresses); `crate::observe::Telemetry` names the same type.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NetworkLabel {
    pub network: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabel {
    pub policy: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabel {
    pub channel: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabel {
    pub network: String,
    /// 1-based position among the network's read endpoints (never the URL).
    pub endpoint: String,
    pub fault: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MetricLabel {
    pub network: String,
    pub metric: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The watching-under-faults families (issue #13), kept apart from the rest.
#[derive(Debug, Default)]
struct Watching {
    endpoint_faults: Family<EndpointLabel, Counter>,
    head_stalls: Family<NetworkLabel, Counter>,
    subscriptions: Family<NetworkLabel, Counter>,
    heads_dropped: Family<NetworkLabel, Counter>,
    disagreements: Family<NetworkLabel, Counter>,
    old_heads: Family<NetworkLabel, Counter>,
    metric_missing: Family<MetricLabel, Gauge>,
}

impl Watching {
    fn register(&self, r: &mut Registry) {
        r.register(
            "guardian_endpoint_faults",
            "Read endpoint faults, by endpoint position and fault (failed: no well-formed answer; lagging; outvoted by the quorum)",
            self.endpoint_faults.clone(),
        );
        r.register(
            "guardian_head_stalls",
            "Head subscriptions found silent while the chain moved (polled, then re-established)",
            self.head_stalls.clone(),
        );
        r.register(
            "guardian_head_subscriptions",
            "Head subscriptions established (at start and after each reconnect)",
            self.subscriptions.clone(),
        );
        r.register(
            "guardian_heads_dropped",
            "Heads the subscription dropped (broadcast lag), backfilled by number",
            self.heads_dropped.clone(),
        );
        r.register(
            "guardian_endpoint_disagreements",
            "Quorum checks where endpoints disagreed at the same block hash (the action was held)",
            self.disagreements.clone(),
        );
        r.register(
            "guardian_trips_on_old_heads",
            "Trips on a block older than max_head_age: no action was taken on them",
            self.old_heads.clone(),
        );
        r.register(
            "guardian_metric_missing",
            "1 while a metric had no value from any endpoint at the latest block read",
            self.metric_missing.clone(),
        );
    }
}

/// Every metric guardian exports, and what `/readyz` answers.
#[derive(Debug)]
pub struct Telemetry {
    registry: Registry,
    head_block: Family<NetworkLabel, Gauge>,
    head_age: Family<NetworkLabel, FloatGauge>,
    blocks: Family<NetworkLabel, Counter>,
    samples: Family<NetworkLabel, Counter>,
    read_failures: Family<NetworkLabel, Counter>,
    rpc_errors: Family<NetworkLabel, Counter>,
    failovers: Family<NetworkLabel, Counter>,
    stale: Family<NetworkLabel, Counter>,
    reorgs: Family<NetworkLabel, Counter>,
    pending_screened: Family<NetworkLabel, Counter>,
    pending_dropped: Family<NetworkLabel, Counter>,
    trips: Family<PolicyLabel, Counter>,
    held: Family<PolicyLabel, Counter>,
    policy_ready: Family<PolicyLabel, Gauge>,
    decisions: Family<OutcomeLabel, Counter>,
    executions: Family<OutcomeLabel, Counter>,
    executor_unavailable: Family<NetworkLabel, Counter>,
    head_to_trip: Histogram,
    trip_to_broadcast: Histogram,
    broadcast_to_mined: Histogram,
    alerts_sent: Family<ChannelLabel, Counter>,
    notifier_failures: Family<ChannelLabel, Counter>,
    alerts_suppressed: Family<ChannelLabel, Counter>,
    alerts_dropped: Family<ChannelLabel, Counter>,
    reloads: Family<OutcomeLabel, Counter>,
    policies: Gauge,
    ready: Gauge,
    health: Mutex<Health>,
    watching_faults: Watching,
}

#[derive(Debug)]
struct Health {
    watching: bool,
    stale_after: Duration,
    /// When each watched network last gave a new head.
    last_head: HashMap<String, Option<Instant>>,
    /// Metrics no endpoint answered at the latest block read: metric -> why.
    missing: HashMap<String, String>,
    /// Each policy's metrics, for the "no data" lines of the readiness detail.
    policy_metrics: Vec<(String, Vec<String>)>,
    /// Policies whose windows are not full yet, with the block they can trip from.
    blind: std::collections::BTreeMap<String, Option<u64>>,
    /// Executors that cannot act (key, balance, endpoints), with why.
    unable: std::collections::BTreeMap<String, String>,
}

impl Telemetry {
    /// Metrics registered; not ready until [`Telemetry::watching`] names the networks.
    pub fn new(stale_after: Duration) -> Self {
        let mut registry = Registry::default();
        let latency = || Histogram::new(exponential_buckets(0.005, 2.0, 16));
        let t = Self {
            head_block: Family::default(),
            head_age: Family::default(),
            blocks: Family::default(),
            samples: Family::default(),
            pending_screened: Family::default(),
            pending_dropped: Family::default(),
            read_failures: Family::default(),
            rpc_errors: Family::default(),
            failovers: Family::default(),
            stale: Family::default(),
            reorgs: Family::default(),
            trips: Family::default(),
            held: Family::default(),
            policy_ready: Family::default(),
            decisions: Family::default(),
            executions: Family::default(),
            executor_unavailable: Family::default(),
            head_to_trip: latency(),
            trip_to_broadcast: latency(),
            broadcast_to_mined: latency(),
            alerts_sent: Family::default(),
            notifier_failures: Family::default(),
            alerts_suppressed: Family::default(),
            alerts_dropped: Family::default(),
            reloads: Family::default(),
            policies: Gauge::default(),
            ready: Gauge::default(),
            health: Mutex::new(Health {
                watching: false,
                stale_after,
                last_head: HashMap::new(),
                missing: HashMap::new(),
                policy_metrics: Vec::new(),
                blind: std::collections::BTreeMap::new(),
                unable: std::collections::BTreeMap::new(),
            }),
            registry: Registry::default(),
            watching_faults: Watching::default(),
        };
        let r = &mut registry;
        r.register(
            "guardian_policy_held",
            "New incidents a policy's cooldown held back (the condition held again, no trip), per policy",
            t.held.clone(),
        );
        r.register(
            "guardian_policy_ready",
            "1 once a policy's windows hold the history it needs to trip (its warm-up), else 0",
            t.policy_ready.clone(),
        );
        r.register(
            "guardian_head_block",
            "Latest block read, per network",
            t.head_block.clone(),
        );
        r.register(
            "guardian_head_age_seconds",
            "Age of the latest head (now minus its timestamp), per network: the head lag",
            t.head_age.clone(),
        );
        r.register(
            "guardian_blocks_processed",
            "Blocks read and sent to the engine, per network",
            t.blocks.clone(),
        );
        r.register(
            "guardian_samples",
            "Metric samples produced, per network",
            t.samples.clone(),
        );
        r.register(
            "guardian_pending_screened",
            "Pending transactions screened (simulated, their what-if block judged), per network",
            t.pending_screened.clone(),
        );
        r.register(
            "guardian_pending_dropped",
            "Pending transactions dropped unscreened (the screening queue was full, or the block passed), per network",
            t.pending_dropped.clone(),
        );
        r.register(
            "guardian_metric_read_failures",
            "Metric reads that failed at a block (no sample, so no trip on it)",
            t.read_failures.clone(),
        );
        r.register(
            "guardian_rpc_errors",
            "JSON-RPC errors and timeouts while following a network",
            t.rpc_errors.clone(),
        );
        r.register(
            "guardian_rpc_failovers",
            "Read endpoint failovers, per network",
            t.failovers.clone(),
        );
        r.register(
            "guardian_stale_heads",
            "Watchdog reports of a head older than [observe] stale_after",
            t.stale.clone(),
        );
        r.register(
            "guardian_reorgs",
            "Reorgs seen, per network",
            t.reorgs.clone(),
        );
        r.register(
            "guardian_trips",
            "Policy trips, per policy",
            t.trips.clone(),
        );
        r.register(
            "guardian_decisions",
            "Guard decisions, by outcome (approved, alert-only, already-done, rejected)",
            t.decisions.clone(),
        );
        r.register(
            "guardian_executions",
            "Approved actions finished, by outcome (landed, dry-run, proposed, failed)",
            t.executions.clone(),
        );
        r.register(
            "guardian_executor_unavailable",
            "Times an executor's network could not be reached",
            t.executor_unavailable.clone(),
        );
        r.register(
            "guardian_head_to_trip_seconds",
            "From the sample's time (block timestamp, or when a pending tx was seen) to the trip",
            t.head_to_trip.clone(),
        );
        r.register(
            "guardian_trip_to_broadcast_seconds",
            "From the trip reaching the guard to the first broadcast of its transaction",
            t.trip_to_broadcast.clone(),
        );
        r.register(
            "guardian_broadcast_to_mined_seconds",
            "From the first broadcast to the transaction mined with its effect observed",
            t.broadcast_to_mined.clone(),
        );
        r.register(
            "guardian_alerts_sent",
            "Alerts delivered, per channel",
            t.alerts_sent.clone(),
        );
        r.register(
            "guardian_notifier_failures",
            "Alerts a channel failed to take after every retry",
            t.notifier_failures.clone(),
        );
        r.register(
            "guardian_alerts_suppressed",
            "Alerts suppressed by a channel's dedupe cooldown",
            t.alerts_suppressed.clone(),
        );
        r.register(
            "guardian_alerts_dropped",
            "Alerts dropped because a queue was full (channel `queue`: the shared queue)",
            t.alerts_dropped.clone(),
        );
        r.register(
            "guardian_policy_reloads",
            "Policy reloads, by outcome (applied, rejected)",
            t.reloads.clone(),
        );
        r.register(
            "guardian_policies_loaded",
            "Policies running",
            t.policies.clone(),
        );
        r.register(
            "guardian_ready",
            "1 while every watched network has a fresh head",
            t.ready.clone(),
        );
        t.watching_faults.register(r);
        Self { registry, ..t }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let _ = self.readiness();
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    fn net(network: &str) -> NetworkLabel {
        NetworkLabel {
            network: network.to_string(),
        }
    }

    fn channel(channel: &str) -> ChannelLabel {
        ChannelLabel {
            channel: channel.to_string(),
        }
    }

    fn outcome(outcome: &str) -> OutcomeLabel {
        OutcomeLabel {
            outcome: outcome.to_string(),
        }
    }

    /// The pipeline is watching these networks (or, with `false`, stopped watching).
    pub fn watching(&self, networks: &[String], on: bool) {
        if let Ok(mut h) = self.health.lock() {
            h.watching = on;
            if on {
                h.last_head = networks.iter().map(|n| (n.clone(), None)).collect();
            }
        }
    }

    /// `Ok` when watching and every network's last head is fresh; else why not.
    pub fn readiness(&self) -> Result<(), String> {
        let result = match self.health.lock() {
            Err(_) => Err("health state poisoned".to_string()),
            Ok(h) if !h.watching => Err("not watching".to_string()),
            Ok(h) => {
                let mut problems = Vec::new();
                let mut names: Vec<&String> = h.last_head.keys().collect();
                names.sort();
                for n in names {
                    match h.last_head[n] {
                        None => problems.push(format!("network {n}: no head yet")),
                        Some(t) if t.elapsed() > h.stale_after => problems.push(format!(
                            "network {n}: no new head for {:.0} s",
                            t.elapsed().as_secs_f64()
                        )),
                        Some(_) => {}
                    }
                }
                for (name, why) in &h.unable {
                    problems.push(format!("executor {name} cannot act: {why}"));
                }
                if problems.is_empty() {
                    Ok(())
                } else {
                    Err(problems.join("; "))
                }
            }
        };
        self.ready.set(i64::from(result.is_ok()));
        result
    }

    /// Whether an executor can act (`None`) or why not; not ready while any cannot.
    pub fn executor_able(&self, executor: &str, problem: Option<&str>) {
        if let Ok(mut h) = self.health.lock() {
            match problem {
                Some(p) => h.unable.insert(executor.to_string(), p.to_string()),
                None => h.unable.remove(executor),
            };
        }
    }

    pub fn stale_after(&self) -> Duration {
        self.health
            .lock()
            .map_or(Duration::from_secs(60), |h| h.stale_after)
    }

    pub fn head(&self, network: &str, number: u64, age_s: f64, samples: usize, failed: usize) {
        let l = Self::net(network);
        self.head_block.get_or_create(&l).set(number as i64);
        self.head_age.get_or_create(&l).set(age_s);
        self.blocks.get_or_create(&l).inc();
        self.samples.get_or_create(&l).inc_by(samples as u64);
        if failed > 0 {
            self.read_failures.get_or_create(&l).inc_by(failed as u64);
        }
        if let Ok(mut h) = self.health.lock()
            && let Some(t) = h.last_head.get_mut(network)
        {
            *t = Some(Instant::now());
        }
    }

    pub fn pending_sample(&self, network: &str) {
        self.samples.get_or_create(&Self::net(network)).inc();
    }

    pub fn pending_screened(&self, network: &str) {
        self.pending_screened
            .get_or_create(&Self::net(network))
            .inc();
    }

    /// Pending transactions screened and dropped unscreened on `network` so far.
    pub fn pending_counts(&self, network: &str) -> (u64, u64) {
        let l = Self::net(network);
        (
            self.pending_screened.get_or_create(&l).get(),
            self.pending_dropped.get_or_create(&l).get(),
        )
    }

    pub fn pending_dropped(&self, network: &str, n: u64) {
        self.pending_dropped
            .get_or_create(&Self::net(network))
            .inc_by(n);
    }

    pub fn head_age(&self, network: &str, age_s: f64) {
        self.head_age.get_or_create(&Self::net(network)).set(age_s);
    }

    pub fn stale(&self, network: &str) {
        self.stale.get_or_create(&Self::net(network)).inc();
    }

    pub fn rpc_error(&self, network: &str) {
        self.rpc_errors.get_or_create(&Self::net(network)).inc();
    }

    pub fn failover(&self, network: &str) {
        self.failovers.get_or_create(&Self::net(network)).inc();
    }

    pub fn reorg(&self, network: &str) {
        self.reorgs.get_or_create(&Self::net(network)).inc();
    }

    pub fn trip(&self, policy: &str, head_to_trip: Option<Duration>) {
        self.trips
            .get_or_create(&PolicyLabel {
                policy: policy.to_string(),
            })
            .inc();
        if let Some(d) = head_to_trip {
            self.head_to_trip.observe(d.as_secs_f64());
        }
    }

    /// A new incident held back by a policy's cooldown.
    pub fn held(&self, policy: &str) {
        self.held
            .get_or_create(&PolicyLabel {
                policy: policy.to_string(),
            })
            .inc();
    }

    /// A policy's readiness: warm (`ready`), or blind until block `until`.
    pub fn policy_ready(&self, policy: &str, ready: bool, until: Option<u64>) {
        self.policy_ready
            .get_or_create(&PolicyLabel {
                policy: policy.to_string(),
            })
            .set(i64::from(ready));
        if let Ok(mut h) = self.health.lock() {
            if ready {
                h.blind.remove(policy);
            } else {
                h.blind.insert(policy.to_string(), until);
            }
        }
    }

    /// One line per policy still warming up (blind), for `/readyz`.
    pub fn blind_policies(&self) -> Vec<String> {
        self.health.lock().map_or_else(
            |_| Vec::new(),
            |h| {
                h.blind
                    .iter()
                    .map(|(p, until)| match until {
                        Some(b) => format!("policy {p}: blind until block {b} (warming up)"),
                        None => format!("policy {p}: warming up"),
                    })
                    .collect()
            },
        )
    }

    pub fn decision(&self, outcome: &str) {
        self.decisions.get_or_create(&Self::outcome(outcome)).inc();
    }

    pub fn execution(&self, outcome: &str) {
        self.executions.get_or_create(&Self::outcome(outcome)).inc();
    }

    pub fn executor_unavailable(&self, network: &str) {
        self.executor_unavailable
            .get_or_create(&Self::net(network))
            .inc();
    }

    pub fn delivery(
        &self,
        trip_to_broadcast: Option<Duration>,
        broadcast_to_mined: Option<Duration>,
    ) {
        if let Some(d) = trip_to_broadcast {
            self.trip_to_broadcast.observe(d.as_secs_f64());
        }
        if let Some(d) = broadcast_to_mined {
            self.broadcast_to_mined.observe(d.as_secs_f64());
        }
    }

    pub fn alert_sent(&self, channel: &str) {
        self.alerts_sent
            .get_or_create(&Self::channel(channel))
            .inc();
    }

    pub fn notifier_failed(&self, channel: &str) {
        self.notifier_failures
            .get_or_create(&Self::channel(channel))
            .inc();
    }

    pub fn alert_suppressed(&self, channel: &str) {
        self.alerts_suppressed
            .get_or_create(&Self::channel(channel))
            .inc();
    }

    pub fn alert_dropped(&self, channel: &str) {
        self.alerts_dropped
            .get_or_create(&Self::channel(channel))
            .inc();
    }

    pub fn reload(&self, outcome: &str) {
        self.reloads.get_or_create(&Self::outcome(outcome)).inc();
    }

    pub fn policies_loaded(&self, n: usize) {
        self.policies.set(n as i64);
    }

    /// Which metrics each policy reads (for the readiness detail).
    pub fn policy_metrics(&self, policies: Vec<(String, Vec<String>)>) {
        if let Ok(mut h) = self.health.lock() {
            h.policy_metrics = policies;
        }
    }

    /// A block's reads: `read` have values, `failed` had none from any endpoint.
    pub fn metrics_read<'a>(
        &self,
        network: &str,
        read: impl Iterator<Item = &'a str>,
        failed: impl Iterator<Item = (&'a str, &'a str)>,
    ) {
        let Ok(mut h) = self.health.lock() else {
            return;
        };
        let label = |metric: &str| MetricLabel {
            network: network.to_string(),
            metric: metric.to_string(),
        };
        for m in read {
            if h.missing.remove(m).is_some() {
                self.watching_faults
                    .metric_missing
                    .get_or_create(&label(m))
                    .set(0);
            }
        }
        for (m, why) in failed {
            self.watching_faults
                .metric_missing
                .get_or_create(&label(m))
                .set(1);
            h.missing
                .insert(m.to_string(), why.replace(['\n', '\r'], " "));
        }
    }

    /// One line per policy reading a metric that has no data now (empty: none).
    pub fn no_data(&self) -> Vec<String> {
        let Ok(h) = self.health.lock() else {
            return Vec::new();
        };
        let mut lines = Vec::new();
        for (policy, metrics) in &h.policy_metrics {
            for m in metrics {
                if let Some(why) = h.missing.get(m) {
                    lines.push(format!(
                        "policy {policy}: no data (metric {m} was not read at the latest block: {why})"
                    ));
                }
            }
        }
        lines
    }

    pub fn endpoint_fault(&self, network: &str, endpoint: usize, fault: &str) {
        let l = EndpointLabel {
            network: network.to_string(),
            endpoint: (endpoint + 1).to_string(),
            fault: fault.to_string(),
        };
        self.watching_faults.endpoint_faults.get_or_create(&l).inc();
    }

    pub fn head_stalled(&self, network: &str) {
        self.watching_faults
            .head_stalls
            .get_or_create(&Self::net(network))
            .inc();
    }

    pub fn subscribed(&self, network: &str) {
        self.watching_faults
            .subscriptions
            .get_or_create(&Self::net(network))
            .inc();
    }

    pub fn heads_dropped(&self, network: &str, n: u64) {
        self.watching_faults
            .heads_dropped
            .get_or_create(&Self::net(network))
            .inc_by(n);
    }

    pub fn disagreement(&self, network: &str) {
        self.watching_faults
            .disagreements
            .get_or_create(&Self::net(network))
            .inc();
    }

    pub fn old_head(&self, network: &str) {
        self.watching_faults
            .old_heads
            .get_or_create(&Self::net(network))
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_exposition_names_every_family() {
        let t = Telemetry::new(Duration::from_secs(60));
        t.watching(&["local".to_string()], true);
        t.head("local", 7, 1.5, 3, 1);
        t.trip("vault-drain", Some(Duration::from_millis(20)));
        t.decision("approved");
        t.notifier_failed("ops");
        let text = t.encode();
        for needle in [
            "guardian_head_block{network=\"local\"} 7",
            "guardian_head_age_seconds{network=\"local\"} 1.5",
            "guardian_blocks_processed_total{network=\"local\"} 1",
            "guardian_samples_total{network=\"local\"} 3",
            "guardian_metric_read_failures_total{network=\"local\"} 1",
            "guardian_trips_total{policy=\"vault-drain\"} 1",
            "guardian_decisions_total{outcome=\"approved\"} 1",
            "guardian_notifier_failures_total{channel=\"ops\"} 1",
            "guardian_head_to_trip_seconds_count 1",
            "guardian_ready 1",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }

    #[test]
    fn ready_only_while_watching_with_fresh_heads() {
        let t = Telemetry::new(Duration::from_millis(500));
        assert_eq!(t.readiness(), Err("not watching".into()));
        t.watching(&["a".to_string(), "b".to_string()], true);
        assert!(
            t.readiness()
                .unwrap_err()
                .contains("network a: no head yet")
        );
        t.head("a", 1, 0.0, 0, 0);
        t.head("b", 1, 0.0, 0, 0);
        assert_eq!(t.readiness(), Ok(()));
        std::thread::sleep(Duration::from_millis(600));
        assert!(t.readiness().unwrap_err().contains("no new head"));
        t.head("a", 2, 0.0, 0, 0);
        t.head("b", 2, 0.0, 0, 0);
        assert_eq!(t.readiness(), Ok(()));
        t.watching(&[], false);
        assert_eq!(t.readiness(), Err("not watching".into()));
    }
}
