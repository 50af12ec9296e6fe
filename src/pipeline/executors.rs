//! The executors of every network some action is sent on: connected before
//! anything is watched, and again when a trip needs a network that could not
//! connect.
//!
//! **Failure policy** (README, "Failure policy"): an executor whose node
//! cannot be reached, or whose key could not be loaded, is alerted loudly
//! (`/readyz` says why); watching goes on, and connecting is retried when a
//! trip needs it. Any other connection error stops the start.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::RunError;
use super::supervise::Supervisor;
use crate::config::{ActionDef, Config};
use crate::executor::{DeliveryEvent, ExecError, Executors};
use crate::journal::Journal;
use crate::keys::Key;
use crate::observe::Probe;

/// ops: how long connecting a network's executors may take (at start, and again per trip while unavailable).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// ops: how often an executor's balance and endpoints are re-checked.
pub const EXECUTOR_RECHECK: Duration = Duration::from_secs(30);

/// Every network's executors, by network name.
pub(super) struct ExecutorPool {
    connected: HashMap<String, Executors>,
    /// Networks whose executors could not connect yet, with why (for `/readyz`).
    unavailable: HashMap<String, String>,
    /// Executor name → its network.
    network_of: HashMap<String, String>,
    config: Config,
    keys: HashMap<String, Key>,
    /// Where the executors send their delivery events (for latencies).
    events: mpsc::Sender<DeliveryEvent>,
    /// Where a signed transaction is written before it is broadcast.
    tx_log: Option<Arc<Journal>>,
}

impl ExecutorPool {
    /// Connects every network some executor sends to.
    pub async fn connect(
        config: &Config,
        keys: HashMap<String, Key>,
        events: mpsc::Sender<DeliveryEvent>,
        probe: &Probe,
    ) -> Result<Self, RunError> {
        let mut pool = Self {
            connected: HashMap::new(),
            unavailable: HashMap::new(),
            network_of: HashMap::new(),
            config: config.clone(),
            keys,
            events,
            tx_log: None,
        };
        for def in config.executors.values() {
            let Some(net) = def.network.as_deref() else {
                return Err(RunError::NotRunnable(format!(
                    "executor `{}` names no `network`",
                    def.name
                )));
            };
            pool.network_of.insert(def.name.clone(), net.to_string());
            if pool.connected.contains_key(net) || pool.unavailable.contains_key(net) {
                continue;
            }
            match pool.connect_network(net).await {
                Ok(e) => {
                    pool.connected.insert(net.to_string(), e);
                }
                Err(e @ (ExecError::Rpc { .. } | ExecError::MissingKey { .. })) => {
                    tracing::error!(target: "guardian::executor", network = %net, error = %e, "executors unavailable; watching anyway, retrying on the next trip");
                    probe.executor_unavailable(net, &e.to_string());
                    pool.unavailable.insert(net.to_string(), e.to_string());
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(pool)
    }

    /// Connects `network`'s executors, within [`CONNECT_TIMEOUT`].
    async fn connect_network(&self, network: &str) -> Result<Executors, ExecError> {
        let connect =
            Executors::connect(&self.config, network, &self.keys, Some(self.events.clone()));
        tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .unwrap_or_else(|_| {
                Err(ExecError::Rpc {
                    what: "connect",
                    reason: format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
                })
            })
    }

    /// Every signed transaction is written to `journal` before it is broadcast,
    /// by the executors connected now and those connected later.
    pub fn set_tx_log(&mut self, journal: Arc<Journal>) {
        for exec in self.connected.values() {
            exec.set_tx_log(journal.clone());
        }
        self.tx_log = Some(journal);
    }

    /// The executor named `name`, with its network, if that network is connected.
    pub fn by_name(&self, name: &str) -> Option<(&str, &Executors)> {
        let net = self.network_of.get(name)?;
        Some((net.as_str(), self.connected.get(net)?))
    }

    /// The executors that send `action`, if its network is connected; a
    /// network unavailable at start is connected again first.
    pub async fn for_action(
        &mut self,
        action: Option<&ActionDef>,
        probe: &Probe,
    ) -> Option<Executors> {
        let net = action
            .and_then(|a| a.executor.as_ref())
            .and_then(|e| self.network_of.get(e))?
            .clone();
        if !self.connected.contains_key(&net) && self.unavailable.contains_key(&net) {
            self.reconnect(&net, probe).await;
        }
        self.connected.get(&net).cloned()
    }

    /// ops: an executor unavailable at start is retried when a trip needs it.
    async fn reconnect(&mut self, net: &str, probe: &Probe) {
        match self.connect_network(net).await {
            Ok(e) => {
                tracing::warn!(target: "guardian::executor", network = %net, "executors connected");
                if let Some(j) = &self.tx_log {
                    e.set_tx_log(j.clone());
                }
                self.unavailable.remove(net);
                for r in e.readiness().await {
                    probe.executor_able(&r.executor, net, r.problem.as_deref().map_or(Ok(()), Err));
                }
                self.connected.insert(net.to_string(), e);
            }
            Err(e) => probe.executor_unavailable(net, &e.to_string()),
        }
    }

    /// ops: executors that cannot act are not ready, and alerted: a key that
    /// could not be loaded, a network whose executors could not connect.
    fn mark_readiness(&self, probe: &Probe) {
        for def in self.config.executors.values() {
            let net = def.network.as_deref().unwrap_or("");
            if let Some(k) = def
                .kind
                .key_names()
                .into_iter()
                .find(|k| !self.keys.contains_key(*k))
            {
                let why = format!("key `{k}` is missing or could not be loaded");
                probe.executor_able(&def.name, net, Err(&why));
            } else if let Some(reason) = self.unavailable.get(net) {
                let why = format!("its network's executors could not connect: {reason}");
                probe.executor_able(&def.name, net, Err(&why));
            }
        }
    }

    /// ops: marks the executors that cannot act now, and starts the
    /// `readiness` stage: every [`EXECUTOR_RECHECK`] (and at once), whether
    /// each executor connected now can act; it ends on cancellation.
    pub fn watch_readiness(&self, config: &Config, probe: &Probe, stages: &mut Supervisor) {
        self.mark_readiness(probe);
        let recheck = recheck_executors(
            self.connected.clone(),
            config.actions.clone(),
            probe.clone(),
            stages.token(),
        );
        stages.spawn("readiness", async move {
            recheck.await;
            Ok(())
        });
    }
}

/// ops: every [`EXECUTOR_RECHECK`] (and at once), whether each connected
/// executor can act: an endpoint answers, the balance covers the reserve
/// (`low-balance` below twice the reserve), every pause without a getter
/// targets code. Ends on cancellation.
async fn recheck_executors(
    executors: HashMap<String, Executors>,
    actions: BTreeMap<String, ActionDef>,
    probe: Probe,
    cancel: CancellationToken,
) {
    let mut first = true;
    loop {
        for (net, exec) in &executors {
            for r in exec.readiness().await {
                probe.executor_able(&r.executor, net, r.problem.as_deref().map_or(Ok(()), Err));
                if r.low() {
                    probe.low_balance(&r.executor, net, r.balance_wei.unwrap_or(0), r.reserve_wei);
                }
            }
            if first {
                for (action, why) in exec.unobservable(&actions).await {
                    tracing::error!(target: "guardian::executor", action = %action, "{why}");
                    probe.executor_able(&format!("action {action}"), net, Err(&why));
                }
            }
        }
        first = false;
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(EXECUTOR_RECHECK) => {}
        }
    }
}
