//! The watcher stage: one [`Watcher`] task per network (heads, per-block
//! reads pinned to the block hash, pending transactions, the stale-data
//! watchdog), its events tagged with the network on their way to the engine.
//!
//! A restart's watcher starts where [`super::resume`] says, re-reading blocks
//! before the resume point so policy windows refill; the engine does not act
//! on their trips again. Cancellation stops the watchers at once.

use tokio::sync::mpsc;

use super::gate::{Gate, NetGate};
use super::supervise::Supervisor;
use super::{RunError, RunOptions};
use crate::config::Config;
use crate::source::chain::{WatchEvent, Watcher};

/// Starts a watcher per network under `stages`; returns their events, each
/// with the index of its network, and the gate (issue #13: head-age limit and
/// quorum) over the same networks.
pub(super) async fn start(
    config: &Config,
    networks: &[String],
    options: &RunOptions,
    replay_from: &[Option<u64>],
    stages: &mut Supervisor,
) -> Result<(mpsc::Receiver<(usize, WatchEvent)>, Gate), RunError> {
    let (events_tx, events_rx) = mpsc::channel(options.channel_capacity);
    let mut gate = Gate {
        nets: Vec::with_capacity(networks.len()),
        probe: options.probe.clone(),
    };
    for (i, net) in networks.iter().enumerate() {
        let mut watcher_options = options.watcher.clone();
        watcher_options.probe = options.probe.clone();
        if let Some(from) = replay_from.get(i).copied().flatten() {
            watcher_options.start_block = Some(from);
        }
        let watcher = Watcher::new(config, net, watcher_options)?;
        gate.nets
            .push(NetGate::for_watcher(config, &watcher).await?);
        let out = tagged(i, events_tx.clone(), options.channel_capacity);
        let token = stages.token();
        stages.spawn("watcher", async move {
            watcher.run(out, token).await.map_err(RunError::from)
        });
    }
    Ok((events_rx, gate))
}

/// A sender whose events reach `events` tagged with `network`.
fn tagged(
    network: usize,
    events: mpsc::Sender<(usize, WatchEvent)>,
    capacity: usize,
) -> mpsc::Sender<WatchEvent> {
    let (out, mut tagged) = mpsc::channel::<WatchEvent>(capacity);
    tokio::spawn(async move {
        while let Some(e) = tagged.recv().await {
            if events.send((network, e)).await.is_err() {
                break;
            }
        }
    });
    out
}
