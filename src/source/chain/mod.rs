//! The live chain watcher: follows one network's head and emits, per block, a
//! [`Snapshot`] of every per-block metric read at that block's hash.
//!
//! ```text
//!  newHeads (WebSocket)  or  polling the latest header (HTTP)
//!          │  head N
//!     follower: for every block after the last one seen, up to N, by number
//!          │  parent hash ≠ last hash?  → walk back to the common ancestor,
//!          │                              emit Reorg, re-read the new blocks
//!     ReadPlan::read: one JSON-RPC batch pinned to block N's hash
//!          │
//!     WatchEvent::Block(Snapshot)  → bounded mpsc (backpressure, never loss)
//! ```
//!
//! Beside the heads run two more tasks, sharing the same output channel:
//! - the pending path ([`pending`]): pending transactions by subscription,
//!   filtered, simulated on the latest state, their effect emitted as
//!   [`WatchEvent::Pending`] for the next block, with the tx's hash and fees;
//! - the watchdog: while no new head arrives, the `head_age` metrics again
//!   ([`WatchEvent::Stale`]), so a stalled node shows as a growing value.
//!
//! Invariants:
//! - blocks are emitted in order, each exactly once per chain it belongs to:
//!   a head that jumps (a reconnect, a slow poll) is backfilled by number, so
//!   no block is skipped;
//! - every read of block N is made at N's hash, never at "latest", so all the
//!   metrics of a snapshot describe the same state;
//! - a reorg is reported (with the blocks it replaced) before the corrected
//!   snapshots of the new chain;
//! - reads fail over between endpoints on transport errors, timeouts, JSON-RPC
//!   errors, and any answer that is not a well-formed value (`null`, empty
//!   data, a decode failure): each such metric is read again from the next
//!   healthy endpoint within the block's `read_deadline`, and is missing from
//!   the snapshot only when no endpoint answered it ([`endpoints::Health`]
//!   keeps each endpoint's health, shared with the quorum check);
//! - an endpoint more than `max_lag_blocks` behind the best is not read from;
//! - a head subscription silent for `stall_blocks` block times while the chain
//!   moved is a stall: the missed blocks are read by polling, an alert fires,
//!   and the subscription is re-established; heads the subscription dropped
//!   (`Lagged`) are counted and backfilled by number;
//! - endpoints may carry API keys: errors name an endpoint by its position,
//!   never by its URL.

pub mod endpoints;
pub mod pending;
pub mod quorum;
pub mod reads;
pub mod record;
pub mod screen;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::B256;
use alloy::providers::{Provider, ProviderBuilder, WsConnect};
use alloy::rpc::client::RpcClient;
use alloy::rpc::types::Header;
use alloy::transports::TransportError;
use futures_util::StreamExt;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, MetricDef, Network};
pub use crate::redact::redact;
pub use endpoints::{Fault, Health};
pub use pending::{PendingEffect, PendingTxInfo, PendingWatch};
pub use reads::{Head, ReadPlan, Reading, Snapshot};
pub use screen::{ScreenOptions, Screened};

/// A problem following a chain.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("network `{0}` is not defined under [networks]")]
    UnknownNetwork(String),
    #[error("network `{0}` has no `rpc` or `ws` endpoint to watch")]
    NoEndpoint(String),
    #[error(
        "network `{0}` has `pending` metrics but no `ws` endpoint: pending transactions arrive only by subscription"
    )]
    PendingNeedsWs(String),
    #[error(
        "{endpoint}: cannot connect: {source} (check that the node is up and the URL in [networks] is right)"
    )]
    Connect {
        endpoint: String,
        #[source]
        source: TransportError,
    },
    #[error("{endpoint}: `{url}` is not a valid URL")]
    BadUrl { endpoint: String, url: String },
    #[error("JSON-RPC `{method}` failed: {source}")]
    Rpc {
        method: &'static str,
        #[source]
        source: TransportError,
    },
    #[error("the node does not know block {0} (it is behind, or pruned it)")]
    MissingBlock(u64),
    #[error(
        "a reorg went deeper than the {0} blocks remembered; raise `reorg_depth` or check the node"
    )]
    ReorgTooDeep(usize),
    #[error("the receiver of the watcher's events is gone; the pipeline stopped")]
    ChannelClosed,
    #[error("JSON-RPC `{method}` timed out after {ms} ms")]
    Timeout { method: &'static str, ms: u64 },
    #[error(
        "block {0}: every metric read failed (the endpoint is failing or does not have the block)"
    )]
    AllReadsFailed(u64),
    #[error("simulating a pending transaction: {0}")]
    Simulation(&'static str),
}

impl ChainError {
    /// For `map_err`: JSON-RPC `method` failed.
    pub(crate) fn rpc(method: &'static str) -> impl FnOnce(TransportError) -> Self {
        move |source| Self::Rpc { method, source }
    }
}

/// Blocks replaced by a reorg: decisions based on them were based on a chain that no longer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reorg {
    /// The last block both chains share.
    pub common_ancestor: u64,
    /// The replaced blocks, newest first.
    pub replaced: Vec<(u64, B256)>,
}

impl Reorg {
    /// Whether block `number` of the old chain was replaced: anything decided on
    /// it (a trip at that block) was decided on a chain that no longer is.
    pub fn replaces(&self, number: u64) -> bool {
        self.replaced.iter().any(|(n, _)| *n == number)
    }
}

/// What the watcher sends down the flow.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    /// Every per-block metric of one block, in configuration order.
    Block(Snapshot),
    /// The listed blocks were reorged out; corrected snapshots follow.
    Reorg(Reorg),
    /// A pending transaction's estimated effect, attributed to the block it is expected in.
    Pending(PendingEffect),
    /// No new head for a watchdog interval: the `head_age` metrics again, for the last block.
    Stale(Stale),
    /// A pending transaction's what-if block ([`screen`]): judged, never committed or recorded.
    Screened(Box<Screened>),
}

/// The watchdog's report while no new head arrives.
#[derive(Debug, Clone, PartialEq)]
pub struct Stale {
    /// The last block read.
    pub block: u64,
    /// When the watchdog looked, unix milliseconds.
    pub time_ms: u64,
    /// Seconds since the last block's timestamp.
    pub head_age_s: f64,
    /// The `head_age` metrics this value is for.
    pub metrics: Vec<Arc<str>>,
}

impl WatchEvent {
    /// The samples this event carries, as `(block, time_ms, metric, value)`.
    pub fn samples(&self) -> impl Iterator<Item = (u64, u64, &str, f64)> {
        let (block, pending, stale) = match self {
            WatchEvent::Block(s) => (Some(s), None, None),
            WatchEvent::Reorg(_) | WatchEvent::Screened(_) => (None, None, None),
            WatchEvent::Pending(p) => (None, Some((p.block, p.time_ms, &*p.metric, p.value)), None),
            WatchEvent::Stale(s) => (None, None, Some(s)),
        };
        block
            .into_iter()
            .flat_map(|s| {
                s.values
                    .iter()
                    .map(move |(name, v)| (s.number, s.time_ms, &**name, *v))
            })
            .chain(pending)
            .chain(stale.into_iter().flat_map(|s| {
                s.metrics
                    .iter()
                    .map(move |m| (s.block, s.time_ms, &**m, s.head_age_s))
            }))
    }
}

/// Tuning of a watcher; the defaults suit a 1–12 s block chain.
#[derive(Debug, Clone)]
pub struct WatcherOptions {
    /// How often HTTP polling asks for the latest header.
    pub poll_interval: Duration,
    /// First and largest wait between reconnection attempts.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// How many recent block hashes are kept to find a reorg's common ancestor.
    pub reorg_depth: usize,
    /// Poll over HTTP even when a WebSocket endpoint is configured.
    pub force_polling: bool,
    /// A read endpoint that takes longer than this is failed over.
    pub request_timeout: Duration,
    /// How often the watchdog repeats the `head_age` metrics while no new head arrives.
    pub watchdog_interval: Duration,
    /// When polling several endpoints: one more than this many blocks behind the best is failed over.
    pub max_lag_blocks: u64,
    /// The first block to emit, backfilled by number up to the head (a restart
    /// resuming from its journal); `None`: start at the head.
    pub start_block: Option<u64>,
    /// Where heads, RPC errors, failovers, failed reads and stale heads are reported (metrics, alerts).
    pub probe: crate::observe::Probe,
    /// Screen every pending transaction ([`screen`]) on a network with `pending`
    /// metrics; `None`: only the pending metrics' filtered effects, as samples.
    pub screen: Option<ScreenOptions>,
    /// Every read of one block, across endpoints, is retried within this.
    pub read_deadline: Duration,
    /// The chain's block time; `None`: the network's `block_time`, else learned from the blocks seen.
    pub block_time: Option<Duration>,
    /// A head subscription silent for this many block times while the chain moved has stalled.
    pub stall_blocks: u32,
}

/// The block time assumed before one is configured or observed.
pub const DEFAULT_BLOCK_TIME: Duration = Duration::from_secs(12);
/// Default for [`WatcherOptions::stall_blocks`].
pub const DEFAULT_STALL_BLOCKS: u32 = 3;

impl Default for WatcherOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(500),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(10),
            reorg_depth: 128,
            force_polling: false,
            request_timeout: Duration::from_secs(3),
            watchdog_interval: Duration::from_secs(1),
            max_lag_blocks: 3,
            start_block: None,
            probe: crate::observe::Probe::default(),
            screen: Some(ScreenOptions::default()),
            read_deadline: Duration::from_secs(6),
            block_time: None,
            stall_blocks: DEFAULT_STALL_BLOCKS,
        }
    }
}

/// Follows one network and reads its per-block metrics.
#[derive(Debug)]
pub struct Watcher {
    network: String,
    rpc: Vec<String>,
    ws: Vec<String>,
    plan: ReadPlan,
    pending: PendingWatch,
    options: WatcherOptions,
    /// The read endpoints' health, shared with the quorum check ([`Watcher::health`]).
    health: Arc<Health>,
}

impl Watcher {
    /// A watcher for `network`, reading the metrics the configuration declares on it.
    pub fn new(
        config: &Config,
        network: &str,
        options: WatcherOptions,
    ) -> Result<Self, ChainError> {
        let net = config
            .networks
            .get(network)
            .ok_or_else(|| ChainError::UnknownNetwork(network.to_string()))?;
        let metrics = config
            .metrics
            .iter()
            .filter(|m| m.network.as_deref() == Some(network));
        Self::for_metrics(network, net, metrics, options)
    }

    /// A watcher for explicit endpoints and metrics.
    pub fn for_metrics<'a>(
        name: &str,
        network: &Network,
        metrics: impl IntoIterator<Item = &'a MetricDef>,
        options: WatcherOptions,
    ) -> Result<Self, ChainError> {
        if network.rpc.is_empty() && network.ws.is_empty() {
            return Err(ChainError::NoEndpoint(name.to_string()));
        }
        let metrics: Vec<&MetricDef> = metrics.into_iter().collect();
        let pending = PendingWatch::new(metrics.iter().copied());
        if !pending.is_empty() && network.ws.is_empty() {
            return Err(ChainError::PendingNeedsWs(name.to_string()));
        }
        let mut options = options;
        if options.block_time.is_none() {
            options.block_time = network.block_time_ms.map(Duration::from_millis);
        }
        if let Some(n) = network.watch.max_lag_blocks {
            options.max_lag_blocks = n;
        }
        if let Some(n) = network.watch.stall_blocks {
            options.stall_blocks = n;
        }
        if let Some(screen) = options.screen.as_mut() {
            screen.concurrency = network
                .watch
                .screen_concurrency
                .unwrap_or(screen.concurrency);
            screen.queue = network.watch.screen_queue.unwrap_or(screen.queue);
        }
        if let Some(ms) = network.watch.read_deadline_ms {
            options.read_deadline = Duration::from_millis(ms);
        }
        let endpoints = if network.rpc.is_empty() {
            network.ws.len()
        } else {
            network.rpc.len()
        };
        Ok(Self {
            network: name.to_string(),
            rpc: network.rpc.clone(),
            ws: network.ws.clone(),
            plan: ReadPlan::new(metrics.iter().copied()),
            pending,
            options,
            health: Arc::new(Health::new(endpoints)),
        })
    }

    pub fn plan(&self) -> &ReadPlan {
        &self.plan
    }

    /// The read endpoints' health, as the follower marks it.
    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    pub fn network(&self) -> &str {
        &self.network
    }

    pub fn options(&self) -> &WatcherOptions {
        &self.options
    }

    /// How long the head subscription may stay silent: `stall_blocks` block
    /// times (configured, else observed, else [`DEFAULT_BLOCK_TIME`]).
    pub fn stall_after(&self) -> Duration {
        let block = self
            .options
            .block_time
            .or_else(|| self.health.observed_block_time())
            .unwrap_or(DEFAULT_BLOCK_TIME);
        (block * self.options.stall_blocks.max(1)).max(Duration::from_millis(500))
    }

    /// The client reads go through first: the first HTTP endpoint, else the first WebSocket.
    pub async fn read_client(&self) -> Result<RpcClient, ChainError> {
        let mut clients = self.read_clients().await?;
        Ok(clients.swap_remove(0))
    }

    /// Every client reads may go through, in order of preference: the HTTP
    /// endpoints, else every WebSocket endpoint that connects now.
    pub async fn read_clients(&self) -> Result<Vec<RpcClient>, ChainError> {
        if !self.rpc.is_empty() {
            let mut clients = Vec::with_capacity(self.rpc.len());
            for (i, url) in self.rpc.iter().enumerate() {
                let parsed = url.parse().map_err(|_| ChainError::BadUrl {
                    endpoint: self.endpoint_name("rpc", i),
                    url: redact(url),
                })?;
                clients.push(RpcClient::new_http(parsed));
            }
            return Ok(clients);
        }
        // No HTTP endpoint: read over every WebSocket that connects, in order.
        let mut clients = Vec::with_capacity(self.ws.len());
        let mut first_error = None;
        for (i, url) in self.ws.iter().enumerate() {
            match RpcClient::builder().ws(ws_connect(url)).await {
                Ok(client) => clients.push(client),
                Err(source) => {
                    let e = ChainError::Connect {
                        endpoint: self.endpoint_name("ws", i),
                        source,
                    };
                    tracing::warn!(target: "guardian::source::chain", error = %redact(&e.to_string()), "skipping a read endpoint");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) if clients.is_empty() => Err(e),
            _ => Ok(clients),
        }
    }

    /// The hash of block `number` on the chain now (`None`: the node does not have it).
    pub async fn block_hash(&self, number: u64) -> Result<Option<B256>, ChainError> {
        let client = self.read_client().await?;
        let request = client
            .request::<_, Option<Header>>("eth_getBlockByNumber", (format!("{number:#x}"), false));
        match tokio::time::timeout(self.options.request_timeout, request).await {
            Err(_) => Err(ChainError::Timeout {
                method: "eth_getBlockByNumber",
                ms: self.options.request_timeout.as_millis() as u64,
            }),
            Ok(Err(source)) => Err(ChainError::Rpc {
                method: "eth_getBlockByNumber",
                source,
            }),
            Ok(Ok(header)) => Ok(header.map(|h| h.hash)),
        }
    }

    fn endpoint_name(&self, kind: &str, i: usize) -> String {
        format!("network `{}` {kind} endpoint #{}", self.network, i + 1)
    }

    /// Follows the head until `cancel` fires, sending every block's snapshot to `out`.
    ///
    /// Returns `Ok` on cancellation; an error only for what retrying cannot fix
    /// (the receiver is gone, a reorg deeper than remembered, no usable endpoint).
    pub async fn run(
        mut self,
        out: mpsc::Sender<WatchEvent>,
        cancel: CancellationToken,
    ) -> Result<(), ChainError> {
        let clients = self.read_clients().await?;
        let (head_tx, head_rx) = watch::channel((0u64, 0u64));
        let mut pending = std::mem::replace(&mut self.pending, PendingWatch::new([]));
        let mut follower = Follower {
            plan: &self.plan,
            clients: &clients,
            current: 0,
            timeout: self.options.request_timeout,
            recent: VecDeque::new(),
            depth: self.options.reorg_depth.max(1),
            out: &out,
            head: head_tx,
            start: self.options.start_block,
            probe: &self.options.probe,
            network: &self.network,
            health: &self.health,
            read_deadline: self.options.read_deadline,
        };
        let heads = async {
            if self.ws.is_empty() || self.options.force_polling {
                self.poll(&mut follower, &cancel).await
            } else {
                self.subscribe(&mut follower, &cancel).await
            }
        };
        let watchdog = self.watchdog(head_rx.clone(), &out, &cancel);
        if pending.is_empty() {
            return tokio::try_join!(heads, watchdog).map(|_| ());
        }
        // Subscribed before the first head is emitted, so no transaction sent after it is missed.
        let first = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            c = self.connect_pending(0) => c,
        };
        if let Some(screen) = self.options.screen {
            let screener = screen::Screener::new(self.plan.clone(), pending, screen);
            let feed = PendingFeed::new(self.options.reconnect_min, first, head_rx, &out, &cancel);
            let txs = self.screen_pending(screener, &clients, feed);
            return tokio::try_join!(heads, watchdog, txs).map(|_| ());
        }
        let feed = PendingFeed::new(self.options.reconnect_min, first, head_rx, &out, &cancel);
        let txs = self.watch_pending(&mut pending, &clients[0], feed);
        tokio::try_join!(heads, watchdog, txs).map(|_| ())
    }

    /// While no new head arrives, emits the `head_age` metrics every watchdog interval.
    async fn watchdog(
        &self,
        mut head: watch::Receiver<(u64, u64)>,
        out: &mpsc::Sender<WatchEvent>,
        cancel: &CancellationToken,
    ) -> Result<(), ChainError> {
        // Runs even without `head_age` metrics: a stale head is reported to the probe regardless.
        let metrics = self.plan.head_age_metrics().to_vec();
        loop {
            let changed = tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                c = tokio::time::timeout(self.options.watchdog_interval, head.changed()) => c,
            };
            match changed {
                Ok(Ok(())) => continue,
                // The follower is gone: the watcher is stopping.
                Ok(Err(_)) => return Ok(()),
                Err(_) => {}
            }
            let (block, timestamp) = *head.borrow();
            if block == 0 && timestamp == 0 {
                continue;
            }
            let time_ms = reads::now_ms();
            let age = reads::head_age_s(timestamp, time_ms);
            self.options.probe.no_new_head(&self.network, block, age);
            if metrics.is_empty() {
                continue;
            }
            tracing::warn!(target: "guardian::source::chain", network = %self.network, block, head_age_s = age, "no new head");
            out.send(WatchEvent::Stale(Stale {
                block,
                time_ms,
                head_age_s: age,
                metrics: metrics.clone(),
            }))
            .await
            .map_err(|_| ChainError::ChannelClosed)?;
        }
    }

    /// Subscribes to pending transactions on WebSocket endpoint `i`: full bodies, else hashes.
    async fn connect_pending(&self, i: usize) -> Result<PendingStream, TransportError> {
        let provider = ProviderBuilder::new()
            .connect_ws(ws_connect(&self.ws[i]))
            .await?
            .erased();
        let stream = match provider.subscribe_full_pending_transactions().await {
            Ok(sub) => Ok(sub.into_stream()),
            Err(_) => Err(provider
                .subscribe_pending_transactions()
                .await?
                .into_stream()),
        };
        Ok((provider, stream))
    }

    /// The next subscription to pending transactions, with its endpoint's
    /// index: the one made before the heads started, else the next WebSocket
    /// endpoint in turn, retried with backoff. `None` once cancelled.
    async fn subscribe_pending(
        &self,
        subs: &mut PendingFeed<'_>,
    ) -> Option<(usize, PendingStream)> {
        let cancel = subs.cancel;
        loop {
            let i = subs.attempt % self.ws.len();
            subs.attempt += 1;
            let connected = match subs.first.take() {
                Some(c) => c,
                None => tokio::select! {
                    _ = cancel.cancelled() => return None,
                    c = self.connect_pending(i) => c,
                },
            };
            match connected {
                Ok(c) => {
                    subs.backoff = self.options.reconnect_min;
                    return Some((i, c));
                }
                Err(e) => {
                    tracing::warn!(target: "guardian::source::chain", network = %self.network, endpoint = i + 1, error = %redact(&e.to_string()), retry_in_ms = subs.backoff.as_millis() as u64, "cannot subscribe to pending transactions");
                    tokio::select! {
                        _ = cancel.cancelled() => return None,
                        _ = tokio::time::sleep(subs.backoff) => {}
                    }
                    subs.backoff = (subs.backoff * 2).min(self.options.reconnect_max);
                }
            }
        }
    }

    /// Follows pending transactions (full bodies, else hashes then a fetch) and emits their effects.
    async fn watch_pending(
        &self,
        pending: &mut PendingWatch,
        client: &RpcClient,
        mut feed: PendingFeed<'_>,
    ) -> Result<(), ChainError> {
        let (out, cancel) = (feed.out, feed.cancel);
        while let Some((i, (provider, mut stream))) = self.subscribe_pending(&mut feed).await {
            loop {
                let next = tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    tx = next_pending(&mut stream) => tx,
                };
                let Some(tx) = next else { break };
                let Some(tx) = pending_body(&provider, tx).await else {
                    continue;
                };
                let (latest, _) = *feed.head.borrow();
                if latest == 0 {
                    continue;
                }
                let step = pending.on_transaction(client, latest, &tx);
                let effects = tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    r = step => r,
                };
                match effects {
                    Ok(effects) => {
                        for e in effects {
                            self.options.probe.pending_sample(&self.network);
                            out.send(WatchEvent::Pending(e))
                                .await
                                .map_err(|_| ChainError::ChannelClosed)?;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(target: "guardian::source::chain", network = %self.network, tx = %tx.inner.tx_hash(), error = %redact(&e.to_string()), "cannot estimate a pending transaction's effect");
                    }
                }
            }
            tracing::warn!(target: "guardian::source::chain", network = %self.network, endpoint = i + 1, "pending-transaction subscription ended; reconnecting");
        }
        Ok(())
    }

    async fn poll(
        &self,
        follower: &mut Follower<'_>,
        cancel: &CancellationToken,
    ) -> Result<(), ChainError> {
        let mut tick = tokio::time::interval(self.options.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = tick.tick() => {}
            }
            if !self.to_latest(follower, cancel).await? {
                return Ok(());
            }
        }
    }

    /// Reads up to the chain's latest head (after checking the endpoints'
    /// lag); a failed read is retried on the next call. `Ok(false)`: cancelled.
    async fn to_latest(
        &self,
        follower: &mut Follower<'_>,
        cancel: &CancellationToken,
    ) -> Result<bool, ChainError> {
        let step = async {
            let head = follower.latest(self.options.max_lag_blocks).await?;
            follower.advance(head).await
        };
        tokio::select! {
            _ = cancel.cancelled() => Ok(false),
            r = step => retryable(r, &self.options.probe, &self.network).map(|()| true),
        }
    }

    async fn subscribe(
        &self,
        follower: &mut Follower<'_>,
        cancel: &CancellationToken,
    ) -> Result<(), ChainError> {
        let mut backoff = self.options.reconnect_min;
        let mut attempt = 0usize;
        loop {
            let i = attempt % self.ws.len();
            attempt += 1;
            let connect = self.subscribe_heads(i);
            let connected = tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                c = connect => c,
            };
            let (_provider, mut sub) = match connected {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(target: "guardian::source::chain", network = %self.network, endpoint = i + 1, error = %redact(&e.to_string()), retry_in_ms = backoff.as_millis() as u64, "cannot subscribe to heads");
                    self.options.probe.rpc_error(&self.network);
                    if self.rpc.is_empty() {
                        tokio::select! {
                            _ = cancel.cancelled() => return Ok(()),
                            _ = tokio::time::sleep(backoff) => {}
                        }
                    } else if let Ok(stopped) =
                        tokio::time::timeout(backoff, self.poll(follower, cancel)).await
                    {
                        // The socket is down: heads come by HTTP polling until it is back.
                        // `poll` only returns when cancelled or on an error retrying cannot fix.
                        return stopped;
                    }
                    backoff = (backoff * 2).min(self.options.reconnect_max);
                    continue;
                }
            };
            backoff = self.options.reconnect_min;
            tracing::info!(target: "guardian::source::chain", network = %self.network, endpoint = i + 1, "subscribed to new heads");
            self.options.probe.subscribed(&self.network);
            // Catch up on what was mined while disconnected before waiting for the next head.
            if !self.to_latest(follower, cancel).await? {
                return Ok(());
            }
            loop {
                let next = tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    h = tokio::time::timeout(self.stall_after(), sub.recv_result()) => h,
                };
                let step = match next {
                    Ok(Ok(Ok(header))) => Step::Head(Head::from(&header)),
                    Ok(Ok(Err(e))) => Step::CatchUp(Gap::Malformed(e.to_string())),
                    Ok(Err(RecvError::Lagged(n))) => Step::CatchUp(Gap::Lagged(n)),
                    Ok(Err(RecvError::Closed)) => break,
                    Err(_) => Step::Silent,
                };
                let work = self.on_step(follower, step);
                let reconnect = tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    r = work => r,
                };
                match reconnect {
                    Ok(false) => {}
                    Ok(true) => break,
                    Err(e) => retryable(Err(e), &self.options.probe, &self.network)?,
                }
            }
            tracing::warn!(target: "guardian::source::chain", network = %self.network, endpoint = i + 1, "head subscription ended; reconnecting");
        }
    }
}

impl Watcher {
    /// A head subscription on WebSocket endpoint `i`; a socket that accepts
    /// but never answers fails after `request_timeout` instead of hanging.
    async fn subscribe_heads(&self, i: usize) -> Result<HeadSubscription, TransportError> {
        let connect = async {
            let provider = ProviderBuilder::new()
                .connect_ws(ws_connect(&self.ws[i]))
                .await?
                .erased();
            let sub = provider.subscribe_blocks().await?;
            Ok::<_, TransportError>((provider, sub))
        };
        tokio::time::timeout(self.options.request_timeout, connect)
            .await
            .unwrap_or_else(|_| {
                Err(TransportError::local_usage_str(
                    "subscribing got no answer in time",
                ))
            })
    }
}

/// A head subscription and the provider that keeps its socket open.
type HeadSubscription = (
    alloy::providers::DynProvider,
    alloy::pubsub::Subscription<Header>,
);

/// What the head subscription gave.
enum Step {
    Head(Head),
    /// Heads were lost between the last one and now: read up to the latest by number.
    CatchUp(Gap),
    /// Nothing for `stall_after`.
    Silent,
}

enum Gap {
    /// The subscription's buffer overflowed: this many heads were dropped.
    Lagged(u64),
    /// A notification that is not a header.
    Malformed(String),
}

impl Watcher {
    /// Handles one step of the head subscription; `Ok(true)`: re-establish it.
    async fn on_step(&self, follower: &mut Follower<'_>, step: Step) -> Result<bool, ChainError> {
        let probe = &self.options.probe;
        match step {
            Step::Head(head) => {
                follower.check_lag(self.options.max_lag_blocks).await;
                follower.advance(head).await?;
                Ok(false)
            }
            Step::CatchUp(gap) => {
                match &gap {
                    Gap::Lagged(n) => {
                        tracing::warn!(target: "guardian::source::chain", network = %self.network, dropped = n, "the head subscription dropped heads; backfilling by number");
                        probe.heads_lagged(&self.network, *n);
                    }
                    Gap::Malformed(e) => {
                        tracing::warn!(target: "guardian::source::chain", network = %self.network, error = %redact(e), "a head notification did not decode; reading the latest head by number");
                        probe.rpc_error(&self.network);
                    }
                }
                let head = follower.latest(self.options.max_lag_blocks).await?;
                follower.advance(head).await?;
                Ok(false)
            }
            Step::Silent => {
                // Silence alone is not a stall: the chain may have no new block.
                let head = follower.latest(self.options.max_lag_blocks).await?;
                let last = follower.last_number();
                if last.is_some_and(|l| head.number <= l) {
                    return Ok(false);
                }
                let silent = self.stall_after();
                tracing::error!(target: "guardian::source::chain", network = %self.network, silent_s = silent.as_secs_f64(), last_block = ?last, latest = head.number, "the head subscription is silent while the chain moves; polling the missed blocks and re-subscribing");
                probe.head_stalled(
                    &self.network,
                    silent.as_secs_f64(),
                    last.unwrap_or(0),
                    head.number,
                );
                follower.advance(head).await?;
                Ok(true)
            }
        }
    }
}

/// A pending-transaction subscription: full bodies, or hashes when the node only offers those.
type PendingStream = (alloy::providers::DynProvider, PendingTxs);

/// Pending transactions as the node sends them: full bodies, or hashes.
type PendingTxs = Result<
    alloy::pubsub::SubscriptionStream<alloy::rpc::types::Transaction>,
    alloy::pubsub::SubscriptionStream<B256>,
>;

/// What a follower of pending transactions works with: the latest head, where
/// its events go, when to stop, and its subscriptions (the first one, made
/// before the heads started, until it is used; the next endpoint to try; the
/// wait after a failed attempt).
struct PendingFeed<'a> {
    head: watch::Receiver<(u64, u64)>,
    out: &'a mpsc::Sender<WatchEvent>,
    cancel: &'a CancellationToken,
    first: Option<Result<PendingStream, TransportError>>,
    attempt: usize,
    backoff: Duration,
}

impl<'a> PendingFeed<'a> {
    fn new(
        backoff: Duration,
        first: Result<PendingStream, TransportError>,
        head: watch::Receiver<(u64, u64)>,
        out: &'a mpsc::Sender<WatchEvent>,
        cancel: &'a CancellationToken,
    ) -> Self {
        Self {
            head,
            out,
            cancel,
            first: Some(first),
            // The first endpoint was already tried, before the heads started.
            attempt: 1,
            backoff,
        }
    }
}

/// The next pending transaction: its body, or its hash when the node sends only hashes.
async fn next_pending(
    stream: &mut PendingTxs,
) -> Option<Result<alloy::rpc::types::Transaction, B256>> {
    match stream {
        Ok(full) => full.next().await.map(Ok),
        Err(hashes) => hashes.next().await.map(Err),
    }
}

/// A pending transaction's body, fetched by hash when only that arrived;
/// `None` when it is already gone (mined or dropped) or the node hiccupped.
async fn pending_body(
    provider: &alloy::providers::DynProvider,
    tx: Result<alloy::rpc::types::Transaction, B256>,
) -> Option<alloy::rpc::types::Transaction> {
    match tx {
        Ok(tx) => Some(tx),
        Err(hash) => provider.get_transaction_by_hash(hash).await.ok().flatten(),
    }
}

/// A WebSocket connection whose transport does not reconnect on its own: the
/// watcher reconnects itself (with backoff, rotating endpoints) and backfills.
fn ws_connect(url: &str) -> WsConnect {
    WsConnect::new(url.to_string()).with_max_retries(1)
}

/// Errors a later head retries (the node is slow, a read failed) are logged; the rest end the watcher.
fn retryable(
    r: Result<(), ChainError>,
    probe: &crate::observe::Probe,
    network: &str,
) -> Result<(), ChainError> {
    match r {
        Ok(()) => Ok(()),
        Err(e @ (ChainError::ChannelClosed | ChainError::ReorgTooDeep(_))) => Err(e),
        Err(e) => {
            let error = redact(&e.to_string());
            tracing::warn!(target: "guardian::source::chain", network, error = %error, "read failed; the next head retries from the last block read");
            probe.rpc_failing(network, &error);
            Ok(())
        }
    }
}

/// Walks the chain block by block, detecting reorgs by parent hash.
struct Follower<'a> {
    plan: &'a ReadPlan,
    /// Read endpoints in order of preference; `current` is the one in use.
    clients: &'a [RpcClient],
    current: usize,
    timeout: Duration,
    /// Recent (number, hash) of the blocks emitted, oldest first.
    recent: VecDeque<(u64, B256)>,
    depth: usize,
    out: &'a mpsc::Sender<WatchEvent>,
    /// The number and timestamp of the latest block emitted, for the pending path and the watchdog.
    head: watch::Sender<(u64, u64)>,
    /// The first block to emit when nothing was emitted yet (resuming); `None`: the head.
    start: Option<u64>,
    probe: &'a crate::observe::Probe,
    network: &'a str,
    /// Every endpoint's health, shared with the quorum check.
    health: &'a Health,
    /// How long all the reads of one block may take, across endpoints.
    read_deadline: Duration,
}

impl Follower<'_> {
    /// Marks the endpoint in use failed and moves reads to the next healthy one (logged once, here).
    fn fail_over(&mut self, error: &ChainError) {
        let from = self.current;
        self.health.mark(from, Fault::Failed);
        self.probe
            .endpoint_fault(self.network, from, Fault::Failed.as_str());
        self.current = self.health.preferred((from + 1) % self.clients.len());
        self.probe.failover(self.network);
        tracing::warn!(target: "guardian::source::chain", endpoint = from + 1, next = self.current + 1, error = %redact(&error.to_string()), "read endpoint failed; failing over");
    }

    /// Moves reads off the endpoint in use when it was marked unhealthy (lagging, outvoted).
    fn prefer_healthy(&mut self) {
        if self.clients.len() > 1 && !self.health.is_healthy(self.current) {
            let from = self.current;
            self.current = self.health.preferred(from).min(self.clients.len() - 1);
            if self.current != from {
                self.probe.failover(self.network);
                tracing::warn!(target: "guardian::source::chain", endpoint = from + 1, next = self.current + 1, "read endpoint unhealthy; reading from the next");
            }
        }
    }

    /// The number of the last block emitted.
    fn last_number(&self) -> Option<u64> {
        self.recent.back().map(|&(n, _)| n)
    }

    /// With several endpoints, asks each for its latest block number and moves
    /// reads off the one in use when it is more than `max_lag` blocks behind
    /// the best (or does not answer).
    async fn check_lag(&mut self, max_lag: u64) {
        if self.clients.len() < 2 {
            return;
        }
        // A hung endpoint must not hold every head up: it counts as lagging.
        let timeout = self.timeout.min(Duration::from_secs(1));
        let numbers = futures_util::future::join_all(self.clients.iter().map(|c| async move {
            let n: alloy::primitives::U64 =
                tokio::time::timeout(timeout, c.request("eth_blockNumber", ()))
                    .await
                    .ok()?
                    .ok()?;
            Some(n.to::<u64>())
        }))
        .await;
        // The best endpoint: the highest block, the most preferred among equals.
        let Some((best, best_i)) = numbers
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.map(|n| (n, i)))
            .min_by_key(|&(n, i)| (std::cmp::Reverse(n), i))
        else {
            return;
        };
        for (i, n) in numbers.iter().enumerate() {
            let behind = n.is_none_or(|n| n.saturating_add(max_lag) < best);
            if behind && i != best_i {
                self.health.mark(i, Fault::Lagging);
                self.probe
                    .endpoint_fault(self.network, i, Fault::Lagging.as_str());
            }
        }
        let lagging = match numbers[self.current] {
            Some(n) => n.saturating_add(max_lag) < best,
            None => true,
        };
        if lagging && best_i != self.current {
            tracing::warn!(target: "guardian::source::chain", endpoint = self.current + 1, its_block = ?numbers[self.current], best_block = best, next = best_i + 1, "read endpoint lags; failing over");
            self.probe.failover(self.network);
            self.current = best_i;
        }
    }

    /// The latest head, read after [`Follower::check_lag`] moved reads off
    /// an endpoint more than `max_lag` blocks behind.
    async fn latest(&mut self, max_lag: u64) -> Result<Head, ChainError> {
        self.check_lag(max_lag).await;
        self.header("latest").await
    }

    async fn header(&mut self, tag: &str) -> Result<Head, ChainError> {
        self.prefer_healthy();
        let mut last = None;
        for _ in 0..self.clients.len() {
            let request = self.clients[self.current]
                .request::<_, Option<Header>>("eth_getBlockByNumber", (tag, false));
            let e = match tokio::time::timeout(self.timeout, request).await {
                Err(_) => ChainError::Timeout {
                    method: "eth_getBlockByNumber",
                    ms: self.timeout.as_millis() as u64,
                },
                Ok(Err(source)) => ChainError::Rpc {
                    method: "eth_getBlockByNumber",
                    source,
                },
                Ok(Ok(Some(h))) => return Ok(Head::from(&h)),
                // A node that does not have the block yet is lagging: try another.
                Ok(Ok(None)) => ChainError::MissingBlock(
                    u64::from_str_radix(tag.trim_start_matches("0x"), 16).unwrap_or(u64::MAX),
                ),
            };
            self.probe.rpc_error(self.network);
            if self.clients.len() > 1 {
                self.fail_over(&e);
            }
            last = Some(e);
        }
        Err(last.unwrap_or(ChainError::NoEndpoint(String::new())))
    }

    /// The snapshot of `head` ([`ReadPlan::read_failover`]): every metric an
    /// endpoint did not answer with a well-formed value is read again from the
    /// next healthy one within the block's deadline.
    async fn snapshot(&mut self, head: &Head) -> Result<Snapshot, ChainError> {
        self.prefer_healthy();
        let deadline = Instant::now() + self.read_deadline;
        let read = self.plan.read_failover(
            self.clients,
            self.health,
            self.current,
            head,
            self.timeout,
            deadline,
        );
        let reading = match read.await {
            Ok(r) => r,
            Err(e) => {
                self.probe.rpc_error(self.network);
                return Err(e);
            }
        };
        for (i, why) in &reading.faults {
            self.probe.rpc_error(self.network);
            self.probe
                .endpoint_fault(self.network, *i, Fault::Failed.as_str());
            tracing::warn!(target: "guardian::source::chain", network = self.network, block = head.number, endpoint = i + 1, error = %redact(why), "read endpoint gave no well-formed value; reading from the next");
        }
        if reading.deadline_passed {
            tracing::warn!(target: "guardian::source::chain", network = self.network, block = head.number, deadline_ms = self.read_deadline.as_millis() as u64, "the block's read deadline passed before every endpoint was asked");
        }
        if reading.endpoint != self.current {
            self.probe.failover(self.network);
            self.current = reading.endpoint;
        }
        Ok(reading.snapshot)
    }

    async fn header_at(&mut self, number: u64) -> Result<Head, ChainError> {
        self.header(&format!("{number:#x}")).await
    }

    /// Emits every block after the last one emitted, up to `head`.
    async fn advance(&mut self, head: Head) -> Result<(), ChainError> {
        // A head at or below what we have: the same block again, or a reorg to a chain no longer than ours.
        if let Some(&(last, _)) = self.recent.back()
            && head.number <= last
        {
            match self.recent.iter().find(|(n, _)| *n == head.number) {
                Some((_, h)) if *h == head.hash => return Ok(()),
                _ => self.unwind().await?,
            }
        }
        self.health.observe_head(head.timestamp);
        let first = self.start.map_or(head.number, |s| s.min(head.number));
        let mut next = self.recent.back().map_or(first, |&(n, _)| n + 1);
        while next <= head.number {
            let h = if next == head.number {
                head
            } else {
                self.header_at(next).await?
            };
            if let Some(&(_, last_hash)) = self.recent.back()
                && h.parent_hash != last_hash
            {
                self.unwind().await?;
                next = self.recent.back().map_or(h.number, |&(n, _)| n + 1);
                continue;
            }
            let snapshot = self.snapshot(&h).await?;
            self.health.observe_block(h.timestamp);
            self.probe
                .metrics_read(self.network, &snapshot.values, &snapshot.failed);
            self.probe.head(
                self.network,
                h.number,
                h.timestamp,
                snapshot.values.len(),
                snapshot.failed.len(),
            );
            for (metric, why) in &snapshot.failed {
                let why = redact(why);
                tracing::warn!(target: "guardian::source::chain", block = h.number, metric = &**metric, error = %why, "metric not read at this block");
                self.probe.read_failed(self.network, h.number, metric, &why);
            }
            self.out
                .send(WatchEvent::Block(snapshot))
                .await
                .map_err(|_| ChainError::ChannelClosed)?;
            self.recent.push_back((h.number, h.hash));
            if self.recent.len() > self.depth {
                self.recent.pop_front();
            }
            self.head.send_replace((h.number, h.timestamp));
            next += 1;
        }
        Ok(())
    }

    /// Pops remembered blocks until one is still canonical, and reports the ones that are not.
    async fn unwind(&mut self) -> Result<(), ChainError> {
        let mut replaced = Vec::new();
        while let Some(&(number, hash)) = self.recent.back() {
            let canonical = match self.header_at(number).await {
                Ok(h) => Some(h.hash),
                Err(ChainError::MissingBlock(_)) => None,
                Err(e) => return Err(e),
            };
            if canonical == Some(hash) {
                break;
            }
            replaced.push((number, hash));
            self.recent.pop_back();
        }
        if self.recent.is_empty() {
            // Every block remembered was replaced. With fewer remembered than the
            // depth (right after start), the fork is just before the oldest one
            // seen: anchor there and re-read from it. Otherwise it is too deep.
            let oldest = replaced.last().map(|&(n, _)| n);
            match oldest {
                Some(n) if n > 0 && replaced.len() < self.depth => {
                    let anchor = self.header_at(n - 1).await?;
                    self.recent.push_back((anchor.number, anchor.hash));
                }
                _ => return Err(ChainError::ReorgTooDeep(self.depth)),
            }
        }
        let Some(&(common_ancestor, _)) = self.recent.back() else {
            return Err(ChainError::ReorgTooDeep(self.depth));
        };
        if replaced.is_empty() {
            return Ok(());
        }
        tracing::warn!(target: "guardian::source::chain", common_ancestor, depth = replaced.len(), "reorg: re-reading the replaced blocks");
        self.probe.reorg(self.network);
        self.out
            .send(WatchEvent::Reorg(Reorg {
                common_ancestor,
                replaced,
            }))
            .await
            .map_err(|_| ChainError::ChannelClosed)
    }
}
