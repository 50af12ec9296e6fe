//! Prometheus metrics and readiness. Updates are atomic increments behind a
//! label lookup: cheap enough for the hot path (a few per block).

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

type FloatGauge = Gauge<f64, AtomicU64>;

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
}

#[derive(Debug)]
struct Health {
    watching: bool,
    stale_after: Duration,
    /// When each watched network last gave a new head.
    last_head: HashMap<String, Option<Instant>>,
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
            }),
            registry: Registry::default(),
        };
        let r = &mut registry;
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
