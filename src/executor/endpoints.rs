//! Every endpoint of a network carries the pause.
//!
//! ```text
//!  read (nonce, fees, preflight, receipts) ──▶ healthiest endpoint ──(error / no answer in `hedge`)──▶ next ...
//!  broadcast (signed bytes)                ──▶ every endpoint + broadcast-only relays, at once
//! ```
//!
//! Invariants:
//! - every call has a deadline (`rpc_timeout`): an endpoint that holds its
//!   answer is abandoned, never waited on;
//! - a read fails over: an error or a slow answer starts the same read on the
//!   next endpoint, and the first answer wins; a revert is an answer (the
//!   chain's), not an endpoint fault, and is returned as is;
//! - a broadcast goes to every endpoint at once, in tasks of their own, so the
//!   slow ones keep trying after the first acceptance; the first acceptance
//!   counts, and every answer is classified ([`super::delivery::classify`]);
//! - each endpoint's health (consecutive failures, last success) is tracked
//!   and orders the reads; broadcast-only endpoints are never read from;
//! - endpoints are named by their place in the configuration (`rpc[1]`,
//!   `broadcast[0]`), never by URL: URLs may carry API keys.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use alloy::primitives::Bytes;
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::transports::{RpcError, TransportErrorKind};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use super::delivery::{SendRefusal, classify};

/// One JSON-RPC endpoint, with its health.
#[derive(Debug)]
pub struct Endpoint {
    /// Where it is in the configuration (`rpc[0]`, `broadcast[1]`): never the URL.
    pub label: String,
    provider: DynProvider,
    /// Only sent to (a private relay, a builder's RPC): never read from.
    pub send_only: bool,
    failures: AtomicU32,
    /// Milliseconds since `born` of the last success (0: none yet).
    last_ok_ms: AtomicU64,
    born: Instant,
}

/// An endpoint's health, for readiness, alerts and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub label: String,
    pub send_only: bool,
    pub consecutive_failures: u32,
    /// How long ago it last answered, if it ever did.
    pub last_ok: Option<Duration>,
}

impl Endpoint {
    fn new(label: String, url: &str, send_only: bool) -> Option<Arc<Self>> {
        let url = url.parse().ok()?;
        let provider = ProviderBuilder::new()
            .disable_recommended_fillers()
            .connect_http(url)
            .erased();
        Some(Arc::new(Self {
            label,
            provider,
            send_only,
            failures: AtomicU32::new(0),
            last_ok_ms: AtomicU64::new(0),
            born: Instant::now(),
        }))
    }

    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    fn ok(&self) {
        self.failures.store(0, Ordering::Relaxed);
        let ms = self.born.elapsed().as_millis().max(1);
        self.last_ok_ms
            .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn failed(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn health(&self) -> Health {
        let last = self.last_ok_ms.load(Ordering::Relaxed);
        Health {
            label: self.label.clone(),
            send_only: self.send_only,
            consecutive_failures: self.failures.load(Ordering::Relaxed),
            last_ok: (last > 0).then(|| {
                self.born
                    .elapsed()
                    .saturating_sub(Duration::from_millis(last))
            }),
        }
    }
}

/// What one endpoint answered to a broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The node took the transaction (or already had it).
    Accepted,
    /// The node answered with an error: classified, with its message.
    Refused(SendRefusal, String),
    /// No answer in time, a transport failure, or an HTTP error: the node may or may not have it.
    NoAnswer(String),
}

/// Every answer to one broadcast, in the order they came.
#[derive(Debug, Clone, Default)]
pub struct Broadcast {
    /// The first endpoint that accepted, if any.
    pub accepted_by: Option<String>,
    pub answers: Vec<(String, Answer)>,
}

impl Broadcast {
    /// Whether any node refused for `why`.
    pub fn any(&self, why: SendRefusal) -> bool {
        self.answers
            .iter()
            .any(|(_, a)| matches!(a, Answer::Refused(r, _) if *r == why))
    }
    /// The answers as one line, for logs and errors (labels, never URLs).
    pub fn summary(&self) -> String {
        self.answers
            .iter()
            .map(|(l, a)| match a {
                Answer::Accepted => format!("{l}: accepted"),
                Answer::Refused(_, m) | Answer::NoAnswer(m) => format!("{l}: {m}"),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The endpoints of one network (and an executor's broadcast-only ones).
#[derive(Debug, Clone)]
pub struct Endpoints {
    list: Vec<Arc<Endpoint>>,
    /// Deadline of every single call.
    pub timeout: Duration,
    /// How long a read waits on one endpoint before asking the next as well.
    pub hedge: Duration,
}

/// A read error: the chain's answer (a revert: final), or an endpoint fault (fail over).
fn is_answer(e: &RpcError<TransportErrorKind>) -> bool {
    match e {
        RpcError::ErrorResp(p) => {
            p.as_revert_data().is_some() || p.message.to_ascii_lowercase().contains("revert")
        }
        _ => false,
    }
}

impl Endpoints {
    /// `rpc` are read from and sent to; `broadcast` are only sent to. URLs that
    /// do not parse are left out (the configuration already checked them).
    pub fn new(rpc: &[String], broadcast: &[String], timeout: Duration) -> Self {
        let mut list = Vec::new();
        for (i, u) in rpc.iter().enumerate() {
            list.extend(Endpoint::new(format!("rpc[{i}]"), u, false));
        }
        for (i, u) in broadcast.iter().enumerate() {
            list.extend(Endpoint::new(format!("broadcast[{i}]"), u, true));
        }
        Self {
            list,
            timeout,
            hedge: (timeout / 4).min(Duration::from_millis(300)),
        }
    }

    /// These endpoints and `extra` (an executor's broadcast-only relays).
    pub fn with(&self, extra: &Endpoints) -> Endpoints {
        let mut out = self.clone();
        out.list.extend(extra.list.iter().cloned());
        out
    }

    pub fn is_empty(&self) -> bool {
        !self.list.iter().any(|e| !e.send_only)
    }

    pub fn health(&self) -> Vec<Health> {
        self.list.iter().map(|e| e.health()).collect()
    }

    /// The readable endpoints, healthiest first (fewest consecutive failures, then configured order).
    pub fn readable(&self) -> Vec<Arc<Endpoint>> {
        let mut r: Vec<_> = self.list.iter().filter(|e| !e.send_only).cloned().collect();
        r.sort_by_key(|e| e.failures.load(Ordering::Relaxed));
        r
    }

    /// The preferred endpoint's provider (for helpers that need one, such as contract bindings).
    pub fn preferred(&self) -> Option<DynProvider> {
        self.readable().first().map(|e| e.provider.clone())
    }

    async fn one<T, Fut>(&self, e: &Endpoint, fut: Fut) -> Result<T, RpcError<TransportErrorKind>>
    where
        Fut: Future<Output = Result<T, RpcError<TransportErrorKind>>>,
    {
        call(e, self.timeout, fut).await
    }

    /// A read, failed over and hedged: the healthiest endpoint first; on an
    /// error, or no answer within `hedge`, the next one too; the first answer
    /// wins. A revert is returned at once (every node would say the same).
    /// With every endpoint failing, the last error (as text, without URLs).
    pub async fn read<T, F, Fut>(&self, f: F) -> Result<T, ReadError>
    where
        F: Fn(DynProvider) -> Fut,
        Fut: Future<Output = Result<T, RpcError<TransportErrorKind>>>,
    {
        let order = self.readable();
        if order.is_empty() {
            return Err(ReadError::Failed("no endpoint to read from".into()));
        }
        let mut next = order.iter();
        let mut running = FuturesUnordered::new();
        let mut errors = Vec::new();
        let start = |e: &Arc<Endpoint>| {
            let e = e.clone();
            let fut = f(e.provider.clone());
            async move { (self.one(&e, fut).await, e.label.clone()) }
        };
        if let Some(e) = next.next() {
            running.push(start(e));
        }
        loop {
            let hedge = tokio::time::sleep(self.hedge);
            tokio::pin!(hedge);
            tokio::select! {
                done = running.next() => match done {
                    Some((Ok(v), _)) => return Ok(v),
                    Some((Err(e), _)) if is_answer(&e) => return Err(ReadError::Answer(e)),
                    Some((Err(e), label)) => {
                        errors.push(format!("{label}: {}", super::describe(&e)));
                        match next.next() {
                            Some(n) => running.push(start(n)),
                            None if running.is_empty() => return Err(ReadError::Failed(errors.join("; "))),
                            None => {}
                        }
                    }
                    None => return Err(ReadError::Failed(errors.join("; "))),
                },
                () = &mut hedge => {
                    if let Some(n) = next.next() {
                        running.push(start(n));
                    }
                }
            }
        }
    }

    /// The same read on every readable endpoint (within the deadline); the answers that came.
    pub async fn read_all<T, F, Fut>(&self, f: F) -> Vec<(String, Result<T, String>)>
    where
        F: Fn(DynProvider) -> Fut,
        Fut: Future<Output = Result<T, RpcError<TransportErrorKind>>>,
    {
        let all = self.readable();
        let calls = all.iter().map(|e| {
            let fut = f(e.provider.clone());
            async move {
                let r = self.one(e, fut).await.map_err(|e| super::describe(&e));
                (e.label.clone(), r)
            }
        });
        futures_util::future::join_all(calls).await
    }

    /// Sends `raw` to every endpoint at once. Returns at the first acceptance
    /// (the other sends go on in their own tasks, each within the deadline), or
    /// when every endpoint has answered or timed out.
    pub async fn broadcast(&self, raw: &Bytes) -> Broadcast {
        let (tx, mut rx) = tokio::sync::mpsc::channel(self.list.len().max(1));
        for e in &self.list {
            let (e, raw, tx, timeout) = (e.clone(), raw.clone(), tx.clone(), self.timeout);
            tokio::spawn(async move {
                let answer = match call(&e, timeout, e.provider.send_raw_transaction(&raw)).await {
                    Ok(_) => Answer::Accepted,
                    Err(err @ RpcError::ErrorResp(_)) => {
                        let m = super::describe(&err);
                        match classify(&m) {
                            SendRefusal::AlreadyKnown => Answer::Accepted,
                            class => Answer::Refused(class, m),
                        }
                    }
                    Err(err) => Answer::NoAnswer(super::describe(&err)),
                };
                let _ = tx.send((e.label.clone(), answer)).await;
            });
        }
        drop(tx);
        let mut out = Broadcast::default();
        while let Some((label, answer)) = rx.recv().await {
            let accepted = answer == Answer::Accepted;
            out.answers.push((label.clone(), answer));
            if accepted {
                out.accepted_by = Some(label);
                break;
            }
        }
        out
    }
}

/// One call on one endpoint, within `timeout`; its health updated.
async fn call<T, Fut>(
    e: &Endpoint,
    timeout: Duration,
    fut: Fut,
) -> Result<T, RpcError<TransportErrorKind>>
where
    Fut: Future<Output = Result<T, RpcError<TransportErrorKind>>>,
{
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => {
            e.ok();
            Ok(v)
        }
        Ok(Err(err)) => {
            if is_answer(&err) {
                e.ok();
            } else {
                e.failed();
            }
            Err(err)
        }
        Err(_) => {
            e.failed();
            Err(TransportErrorKind::custom_str(&format!(
                "no answer within {} ms",
                timeout.as_millis()
            )))
        }
    }
}

/// Why a failed-over read has no value.
#[derive(Debug)]
pub enum ReadError {
    /// The chain's own answer (a revert), the same on every node.
    Answer(RpcError<TransportErrorKind>),
    /// Every endpoint failed or timed out: each one's error, by label.
    Failed(String),
}

impl ReadError {
    pub fn describe(&self) -> String {
        match self {
            ReadError::Answer(e) => super::describe(e),
            ReadError::Failed(s) => s.clone(),
        }
    }
}
