//! `guardian simulate simulations/<name>.toml`: a scenario played on a real chain,
//! once without the guardian and once with it, and the difference reported.
//!
//! ```text
//! scenario file ──spec──▶ Scenario ──▶ for each run (unprotected, protected):
//!     chain:    spawn anvil (--order fees) or connect (--rpc); fund fresh accounts
//!     protocol: deploy the Safe + GuardianModule + the protocol shape; seed users, liquidity
//!     guardian: (protected run) write its configuration, load it and its policies as
//!               `guardian run` does, start `pipeline::run` (same engine, guard, executor)
//!     script:   interval mining at the scenario's block time; timed attack, benign and
//!               market steps, with chain time compressed
//!     measure:  receipts, what the attackers gained, what is paused, every trip,
//!               decision and execution
//! ──report──▶ human or JSON, and whether the `expect` block holds
//! ```
//!
//! Where each stage lives: [`spec`] (the file, checked), `runner` (one run,
//! as its stages), [`chain`] (anvil, accounts, the Safe + GuardianModule),
//! [`protocol`] (per shape: `deploy`, `watch` for the generated configuration,
//! `perform` for the script's actions; the benign `mempool`), [`aave`] (real
//! Aave V3), [`script`] (time compression), [`shared`] (amounts, [`shared::Sent`],
//! sending; below the protocols and the script), [`report`].
//!
//! Invariants: the protected run goes through the same configuration loading,
//! engine, guard and executor as `guardian run`; nothing here reaches into
//! them. Both runs play the same script on identical fresh deployments.
//! A dry run plays once, with the guardian in `dry-run` mode: it signs and
//! reports what it would have sent, and broadcasts nothing.

pub mod aave;
pub mod aave_deploy;
mod aave_run;
pub mod chain;
pub mod protocol;
pub mod report;
mod runner;
pub mod script;
pub mod shared;
pub mod spec;

use std::path::PathBuf;

use crate::policy::model::Mode;

use chain::Node;
use report::{Compression, Funds, ScenarioReport};
use runner::run_once;
use spec::{Scenario, ScenarioKind};

/// Problems running a scenario (a malformed scenario file is a [`crate::config::reader::Diagnostics`]).
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error(
        "anvil not found at {0}: run `npm ci` at the repository root (it installs @foundry-rs/anvil-linux-amd64), or pass --anvil"
    )]
    NoAnvil(PathBuf),
    #[error("anvil did not start: {0}")]
    Anvil(String),
    #[error("--rpc: {0}")]
    BadRpc(String),
    #[error("{step}: {message}")]
    Chain { step: &'static str, message: String },
    #[error("base-fee trace: {0}")]
    Trace(String),
    /// Every problem found, each located; the CLI shows them as `check` does.
    #[error("the guardian's configuration or policies did not load:\n{0}")]
    Config(crate::config::reader::Diagnostics),
    #[error("the guardian stopped during the scenario: {0}")]
    Guardian(String),
    #[error("cannot write the run's files: {0}")]
    Io(#[from] std::io::Error),
}

/// How to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub anvil_bin: PathBuf,
    /// Run against this node instead of spawning anvil (it must be anvil, started with `--order fees`).
    pub rpc: Option<String>,
    /// Its WebSocket endpoint (default: the RPC URL with ws:// or wss://).
    pub ws: Option<String>,
    pub dry_run: bool,
}

/// The WebSocket endpoint of an HTTP RPC URL (anvil serves both on one port).
pub fn ws_of(http: &str) -> Result<String, ScenarioError> {
    if let Some(rest) = http.strip_prefix("http://") {
        Ok(format!("ws://{rest}"))
    } else if let Some(rest) = http.strip_prefix("https://") {
        Ok(format!("wss://{rest}"))
    } else {
        Err(ScenarioError::BadRpc(
            "the RPC URL must start with http:// or https:// (or give --ws)".into(),
        ))
    }
}

/// Runs a scenario: twice (without and with the guardian), or once in dry-run.
pub async fn run(s: &Scenario, o: &Options) -> Result<ScenarioReport, ScenarioError> {
    let (http, ws) = match &o.rpc {
        Some(http) => {
            let ws = match &o.ws {
                Some(ws) => ws.clone(),
                None => ws_of(http)?,
            };
            (Some(http.clone()), Some(ws))
        }
        None => (None, None),
    };
    let node = || match (&http, &ws) {
        (Some(h), Some(w)) => Node::Existing { http: h, ws: w },
        _ => Node::Spawn {
            anvil_bin: &o.anvil_bin,
        },
    };
    let (unprotected, protected) = if o.dry_run {
        (None, run_once(s, node(), Some(Mode::DryRun)).await?)
    } else if http.is_some() {
        // One node: one run after the other.
        let u = run_once(s, node(), None).await?;
        let p = run_once(s, node(), Some(Mode::Enforce)).await?;
        (Some(u), p)
    } else {
        let (u, p) = tokio::join!(
            run_once(s, node(), None),
            run_once(s, node(), Some(Mode::Enforce))
        );
        (Some(u?), p?)
    };
    let lost_unprotected = unprotected.as_ref().map_or(protected.lost, |u| u.lost);
    let saved_pct = (unprotected.is_some() && lost_unprotected > 1e-9)
        .then(|| (1.0 - protected.lost / lost_unprotected) * 100.0);
    let funds = Funds {
        unit: symbol(s).into(),
        lost_unprotected,
        lost_protected: protected.lost,
        saved_pct,
    };
    let attacks = report::attack_timelines(&protected);
    let expectations = report::evaluate(&s.expect, &protected, &funds, &attacks, o.dry_run);
    let holds = expectations.iter().all(|e| e.holds);
    let wall_seconds = protected.wall_ms as f64 / 1000.0;
    Ok(ScenarioReport {
        scenario: s.name.clone(),
        description: s.description.clone(),
        file: s.path.display().to_string(),
        kind: match s.kind {
            ScenarioKind::Attack => "attack",
            ScenarioKind::Benign => "benign",
        }
        .into(),
        protocol: s.protocol.name().into(),
        // Never the URL: it may carry an API key.
        node: if o.rpc.is_some() {
            "an existing node (--rpc)".into()
        } else {
            "a spawned anvil".into()
        },
        dry_run: o.dry_run,
        compression: Compression {
            block_time_s: s.block_time_s,
            gap_blocks: s.gap_blocks,
            chain_seconds: protected.chain_seconds,
            wall_seconds,
            ratio: if wall_seconds > 0.0 {
                protected.chain_seconds as f64 / wall_seconds
            } else {
                0.0
            },
        },
        funds,
        attacks,
        unprotected,
        protected,
        expectations,
        holds,
    })
}

fn symbol(s: &Scenario) -> &'static str {
    match s.protocol {
        spec::Protocol::Bridge => "bUSD",
        spec::Protocol::ReentrantPools => "ETH",
        spec::Protocol::AaveV3 => "USD",
        _ => "dUSD",
    }
}

/// A private folder for one run's configuration and recorded trace, removed when dropped.
#[derive(Debug)]
struct RunDir(PathBuf);

impl RunDir {
    fn create(name: &str) -> Result<RunDir, ScenarioError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!(
            "guardian-scenario-{name}-{}-{nanos}-{}",
            std::process::id(),
            alloy::signers::local::PrivateKeySigner::random().address()
        ));
        std::fs::create_dir_all(&path)?;
        Ok(RunDir(path))
    }
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Loads and runs a scenario file; for the CLI.
pub fn load(path: &std::path::Path) -> Result<Scenario, crate::config::reader::Diagnostics> {
    spec::load(path)
}
