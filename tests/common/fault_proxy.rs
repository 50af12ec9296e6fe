//! A real JSON-RPC proxy between guardian and anvil that injects faults.
//!
//! The tests and benches put one of these in front of each endpoint they give
//! guardian, then switch faults on and off while guardian runs:
//!
//! - HTTP (`http_url`): every request is read, matched against the rules, and
//!   forwarded to anvil or answered with the fault: a refused connection, a
//!   hang, a delay, an error envelope, `null`, `"0x"`, a fixed result, an HTTP
//!   status, a node that accepts the request and then answers an error, or a
//!   node lagging N blocks behind. Batches are judged element by element.
//! - WebSocket (`ws_url`): bytes are forwarded to anvil's port as they are; the
//!   faults are connection-level: refuse, stall (frames stop, the socket stays
//!   open) and drop (every open socket closed at once, to force reconnects).
//!
//! Nothing here fakes anvil: every answer that is not a fault is anvil's own.
//! Counters say how many requests of each method were seen and faulted, so a
//! test can check that a fault was really met.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What the proxy does with a request that matches a rule.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// The connection is closed at once (HTTP: before any answer; for a rule
    /// on every method, at accept, so the client sees the endpoint refuse).
    Refuse,
    /// The request is read and never answered (until the proxy is dropped).
    Hang,
    /// Forwarded to anvil after this delay.
    Delay(Duration),
    /// HTTP 200 with a JSON-RPC error object.
    Error { code: i64, message: String },
    /// HTTP 200 with `"result": null`.
    Null,
    /// HTTP 200 with `"result": "0x"` (empty data where a word is expected).
    EmptyData,
    /// HTTP 200 with this result (e.g. a zero word: a broken or lagging node).
    Result(Value),
    /// This HTTP status and a plain-text body.
    Http(u16),
    /// Forwarded to anvil (the node acts on it), then answered with the inner
    /// fault instead of anvil's answer: accept-then-error.
    Forward(Box<Fault>),
    /// Answers as a node this many blocks behind anvil's head would.
    Lag(u64),
}

impl Fault {
    /// The error envelope geth answers when its upstream is gone.
    pub fn upstream_error() -> Fault {
        Fault::Error {
            code: -32000,
            message: "upstream connect error".into(),
        }
    }

    /// A 32-byte zero word: what a broken node answers to a contract read.
    pub fn zero_word() -> Fault {
        Fault::Result(Value::String(format!("0x{}", "0".repeat(64))))
    }

    /// Accepted by the node, then answered with `inner`.
    pub fn accept_then(inner: Fault) -> Fault {
        Fault::Forward(Box::new(inner))
    }
}

#[derive(Debug)]
struct Rule {
    /// `None`: every method.
    method: Option<String>,
    fault: Fault,
    /// How many more requests it applies to; `None`: until cleared.
    remaining: Option<u64>,
}

/// Per-method counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests (batch elements) received.
    pub seen: u64,
    /// Of those, answered with a fault.
    pub faulted: u64,
}

#[derive(Debug, Default)]
struct State {
    rules: Vec<Rule>,
    counts: HashMap<String, Counts>,
}

impl State {
    /// The fault for one call, counting it; consumes a limited rule's use.
    fn judge(&mut self, method: &str) -> Option<Fault> {
        let count = self.counts.entry(method.to_string()).or_default();
        count.seen += 1;
        let i = self
            .rules
            .iter()
            .position(|r| r.method.as_deref().is_none_or(|m| m == method))?;
        let fault = self.rules[i].fault.clone();
        if let Some(n) = self.rules[i].remaining.as_mut() {
            *n -= 1;
            if *n == 0 {
                self.rules.remove(i);
            }
        }
        count.faulted += 1;
        Some(fault)
    }

    fn refuses_everything(&self) -> bool {
        self.rules
            .iter()
            .any(|r| r.method.is_none() && r.fault == Fault::Refuse)
    }
}

struct Shared {
    state: Mutex<State>,
    upstream_http: String,
    upstream_addr: String,
    client: reqwest::Client,
    ws_refuse: AtomicBool,
    ws_stall: AtomicBool,
    ws_connections: AtomicU64,
    ws_drop: watch::Sender<u64>,
    stop: CancellationToken,
}

/// A fault-injecting proxy in front of one anvil; stops when dropped.
pub struct FaultProxy {
    shared: Arc<Shared>,
    http: SocketAddr,
    ws: SocketAddr,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("http", &self.http)
            .field("ws", &self.ws)
            .finish()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.cancel();
    }
}

impl FaultProxy {
    /// Starts a proxy in front of the node at `upstream` (its HTTP URL, e.g.
    /// `anvil.endpoint()`; anvil serves WebSocket on the same port).
    pub async fn start(upstream: &str) -> FaultProxy {
        let upstream_addr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .replace("localhost", "127.0.0.1");
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            upstream_http: format!("http://{upstream_addr}"),
            upstream_addr,
            client: reqwest::Client::new(),
            ws_refuse: AtomicBool::new(false),
            ws_stall: AtomicBool::new(false),
            ws_connections: AtomicU64::new(0),
            ws_drop: watch::channel(0).0,
            stop: CancellationToken::new(),
        });
        let http_listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy's HTTP port");
        let ws_listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy's WebSocket port");
        let http = http_listener.local_addr().expect("proxy HTTP address");
        let ws = ws_listener.local_addr().expect("proxy WebSocket address");
        tokio::spawn(serve_http(http_listener, shared.clone()));
        tokio::spawn(serve_ws(ws_listener, shared.clone()));
        FaultProxy { shared, http, ws }
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.http)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.ws)
    }

    /// Every request of every method gets `fault` until [`FaultProxy::heal`].
    pub fn fail_all(&self, fault: Fault) {
        self.push(None, fault, None);
    }

    /// Requests for `method` get `fault` until [`FaultProxy::heal`].
    pub fn fail(&self, method: &str, fault: Fault) {
        self.push(Some(method), fault, None);
    }

    /// The next `times` requests for `method` get `fault`, then it heals.
    pub fn fail_times(&self, method: &str, fault: Fault, times: u64) {
        assert!(times > 0, "fail_times needs at least one request");
        self.push(Some(method), fault, Some(times));
    }

    fn push(&self, method: Option<&str>, fault: Fault, remaining: Option<u64>) {
        let rule = Rule {
            method: method.map(str::to_string),
            fault,
            remaining,
        };
        self.shared
            .state
            .lock()
            .expect("proxy state")
            .rules
            .push(rule);
    }

    /// Clears every HTTP rule and the WebSocket refuse/stall flags.
    pub fn heal(&self) {
        self.shared.state.lock().expect("proxy state").rules.clear();
        self.shared.ws_refuse.store(false, Ordering::SeqCst);
        self.shared.ws_stall.store(false, Ordering::SeqCst);
    }

    /// WebSocket connections are closed at accept while `on`.
    pub fn refuse_ws(&self, on: bool) {
        self.shared.ws_refuse.store(on, Ordering::SeqCst);
    }

    /// While `on`, open WebSockets stop forwarding frames (for good: a socket
    /// once stalled stays silent until closed) and new ones stall at once.
    pub fn stall_ws(&self, on: bool) {
        self.shared.ws_stall.store(on, Ordering::SeqCst);
    }

    /// Closes every open WebSocket now (a forced reconnect).
    pub fn drop_ws(&self) {
        self.shared.ws_drop.send_modify(|g| *g += 1);
    }

    /// WebSocket connections accepted so far.
    pub fn ws_connections(&self) -> u64 {
        self.shared.ws_connections.load(Ordering::SeqCst)
    }

    /// What the proxy saw of `method`.
    pub fn counts(&self, method: &str) -> Counts {
        let state = self.shared.state.lock().expect("proxy state");
        state.counts.get(method).copied().unwrap_or_default()
    }
}

/// The next connection on `listener`; `None` once the proxy stops.
async fn accept(listener: &TcpListener, shared: &Shared) -> Option<TcpStream> {
    loop {
        tokio::select! {
            _ = shared.stop.cancelled() => return None,
            accepted = listener.accept() => if let Ok((stream, _)) = accepted {
                return Some(stream);
            },
        }
    }
}

async fn serve_http(listener: TcpListener, shared: Arc<Shared>) {
    while let Some(stream) = accept(&listener, &shared).await {
        if shared
            .state
            .lock()
            .expect("proxy state")
            .refuses_everything()
        {
            reset(stream);
            continue;
        }
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, shared.clone()));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Closes before a byte is read or written, as a refusing endpoint does.
fn reset(stream: TcpStream) {
    drop(stream);
}

/// An `Err` makes hyper close the connection without an answer.
type Answer = Result<Response<Full<Bytes>>, Closed>;

/// The proxy closed the connection on purpose.
#[derive(Debug)]
struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("proxy: connection closed by an injected fault")
    }
}

impl std::error::Error for Closed {}

/// What one request turned into.
enum Outcome {
    Body(Value),
    Status(u16),
    Hang,
    Close,
}

async fn handle(req: Request<Incoming>, shared: Arc<Shared>) -> Answer {
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(status(400)),
    };
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return forward_raw(&shared, body).await;
    };
    match answer(&shared, request).await {
        Outcome::Body(v) => Ok(json_response(&v)),
        Outcome::Status(code) => Ok(status(code)),
        Outcome::Hang => {
            shared.stop.cancelled().await;
            Ok(status(503))
        }
        Outcome::Close => Err(Closed),
    }
}

async fn answer(shared: &Shared, request: Value) -> Outcome {
    let calls: Vec<Value> = match &request {
        Value::Array(items) => items.clone(),
        one => vec![one.clone()],
    };
    let faults: Vec<Option<Fault>> = {
        let mut state = shared.state.lock().expect("proxy state");
        calls.iter().map(|c| state.judge(method(c))).collect()
    };
    // A fault of the whole exchange wins over per-call answers.
    for fault in faults.iter().flatten() {
        match fault {
            Fault::Refuse => return Outcome::Close,
            Fault::Hang => return Outcome::Hang,
            Fault::Http(code) => return Outcome::Status(*code),
            Fault::Delay(d) => tokio::time::sleep(*d).await,
            Fault::Forward(inner) => match inner.as_ref() {
                Fault::Hang | Fault::Http(_) | Fault::Refuse => {
                    let _ = post(shared, &request).await;
                    return match inner.as_ref() {
                        Fault::Http(code) => Outcome::Status(*code),
                        Fault::Hang => Outcome::Hang,
                        _ => Outcome::Close,
                    };
                }
                _ => {}
            },
            _ => {}
        }
    }
    let mut answers = Vec::with_capacity(calls.len());
    for (call, fault) in calls.iter().zip(faults) {
        answers.push(answer_one(shared, call, fault).await);
    }
    match request {
        Value::Array(_) => Outcome::Body(Value::Array(answers)),
        _ => Outcome::Body(answers.pop().unwrap_or(Value::Null)),
    }
}

async fn answer_one(shared: &Shared, call: &Value, fault: Option<Fault>) -> Value {
    let id = call.get("id").cloned().unwrap_or(Value::Null);
    let reply = |result: Value| json!({"jsonrpc": "2.0", "id": id.clone(), "result": result});
    match fault {
        None | Some(Fault::Delay(_)) => upstream_one(shared, call).await,
        Some(Fault::Error { code, message }) => error_reply(&id, code, &message),
        Some(Fault::Null) => reply(Value::Null),
        Some(Fault::EmptyData) => reply(Value::String("0x".into())),
        Some(Fault::Result(v)) => reply(v),
        Some(Fault::Forward(inner)) => {
            let _ = upstream_one(shared, call).await;
            Box::pin(answer_one(shared, call, Some(*inner))).await
        }
        Some(Fault::Lag(n)) => lagging(shared, call, n).await,
        // Whole-exchange faults were handled by the caller.
        Some(Fault::Refuse | Fault::Hang | Fault::Http(_)) => upstream_one(shared, call).await,
    }
}

fn method(call: &Value) -> &str {
    call.get("method").and_then(Value::as_str).unwrap_or("")
}

fn error_reply(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

async fn post(shared: &Shared, body: &Value) -> Option<Value> {
    let resp = shared
        .client
        .post(&shared.upstream_http)
        .json(body)
        .send()
        .await
        .ok()?;
    resp.json::<Value>().await.ok()
}

async fn upstream_one(shared: &Shared, call: &Value) -> Value {
    let id = call.get("id").cloned().unwrap_or(Value::Null);
    match post(shared, call).await {
        Some(v) => v,
        None => error_reply(&id, -32603, "proxy: anvil did not answer"),
    }
}

async fn forward_raw(shared: &Shared, body: Bytes) -> Answer {
    let sent = shared
        .client
        .post(&shared.upstream_http)
        .header("content-type", "application/json")
        .body(body)
        .send();
    match sent.await {
        Ok(resp) => {
            let code = resp.status().as_u16();
            let bytes = resp.bytes().await.unwrap_or_default();
            let mut r = Response::new(Full::new(bytes));
            *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
            Ok(r)
        }
        Err(_) => Ok(status(502)),
    }
}

fn json_response(v: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    r.headers_mut().insert(
        "content-type",
        "application/json".parse().expect("static header"),
    );
    r
}

fn status(code: u16) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(b"proxy: injected fault")));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r
}

// --- a node N blocks behind ---------------------------------------------------

/// Methods whose block parameter is at this position.
fn block_param(method: &str) -> Option<usize> {
    match method {
        "eth_call"
        | "eth_getBalance"
        | "eth_getCode"
        | "eth_getTransactionCount"
        | "eth_estimateGas" => Some(1),
        "eth_getStorageAt" => Some(2),
        "eth_getBlockByNumber" => Some(0),
        _ => None,
    }
}

async fn upstream_head(shared: &Shared) -> Option<u64> {
    let v = post(
        shared,
        &json!({"jsonrpc":"2.0","id":0,"method":"eth_blockNumber","params":[]}),
    )
    .await?;
    hex_u64(v.get("result")?)
}

async fn number_of_hash(shared: &Shared, hash: &str) -> Option<u64> {
    let q = json!({"jsonrpc":"2.0","id":0,"method":"eth_getBlockByHash","params":[hash, false]});
    let v = post(shared, &q).await?;
    hex_u64(v.get("result")?.get("number")?)
}

fn hex_u64(v: &Value) -> Option<u64> {
    u64::from_str_radix(v.as_str()?.trim_start_matches("0x"), 16).ok()
}

async fn lagging(shared: &Shared, call: &Value, lag: u64) -> Value {
    let id = call.get("id").cloned().unwrap_or(Value::Null);
    let Some(head) = upstream_head(shared).await else {
        return error_reply(&id, -32603, "proxy: anvil did not answer");
    };
    let lagged = head.saturating_sub(lag);
    let m = method(call);
    if m == "eth_blockNumber" {
        return json!({"jsonrpc":"2.0","id":id,"result":format!("{lagged:#x}")});
    }
    if m == "eth_getBlockByHash" {
        let hash = call["params"][0].as_str().unwrap_or("");
        if number_of_hash(shared, hash)
            .await
            .is_none_or(|n| n > lagged)
        {
            return json!({"jsonrpc":"2.0","id":id,"result":null});
        }
        return upstream_one(shared, call).await;
    }
    let Some(pos) = block_param(m) else {
        return upstream_one(shared, call).await;
    };
    let mut call = call.clone();
    let param = call["params"]
        .get(pos)
        .cloned()
        .unwrap_or(Value::String("latest".into()));
    let wanted = match &param {
        Value::String(s) if s.len() == 66 => number_of_hash(shared, s).await,
        Value::Object(o) => match o.get("blockHash").and_then(Value::as_str) {
            Some(h) => number_of_hash(shared, h).await,
            None => o.get("blockNumber").and_then(hex_u64),
        },
        Value::String(s) if s.starts_with("0x") => hex_u64(&param),
        _ => {
            call["params"][pos] = Value::String(format!("{lagged:#x}"));
            return upstream_one(shared, &call).await;
        }
    };
    match wanted {
        Some(n) if n <= lagged => upstream_one(shared, &call).await,
        _ if m == "eth_getBlockByNumber" => json!({"jsonrpc":"2.0","id":id,"result":null}),
        _ => error_reply(&id, -32000, "header not found"),
    }
}

// --- WebSocket: bytes forwarded, faults per connection -------------------------

async fn serve_ws(listener: TcpListener, shared: Arc<Shared>) {
    while let Some(client) = accept(&listener, &shared).await {
        if shared.ws_refuse.load(Ordering::SeqCst) {
            reset(client);
            continue;
        }
        shared.ws_connections.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(pipe_ws(client, shared.clone()));
    }
}

async fn pipe_ws(client: TcpStream, shared: Arc<Shared>) {
    let Ok(upstream) = TcpStream::connect(&shared.upstream_addr).await else {
        reset(client);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let mut dropped = shared.ws_drop.subscribe();
    let (mut cr, mut cw) = client.into_split();
    let (mut ur, mut uw) = upstream.into_split();
    let stalled = Arc::new(AtomicBool::new(false));
    let up = copy(&mut cr, &mut uw, &shared, stalled.clone());
    let down = copy(&mut ur, &mut cw, &shared, stalled);
    tokio::select! {
        _ = shared.stop.cancelled() => {}
        _ = dropped.changed() => {}
        _ = up => {}
        _ = down => {}
    }
}

/// Copies until EOF; once the stall flag is seen, reads and discards forever.
async fn copy<R, W>(from: &mut R, to: &mut W, shared: &Shared, stalled: Arc<AtomicBool>)
where
    R: AsyncReadExt + Unpin,
    W: AsyncWriteExt + Unpin,
{
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if shared.ws_stall.load(Ordering::SeqCst) {
            stalled.store(true, Ordering::SeqCst);
        }
        if stalled.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
