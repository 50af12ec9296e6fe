//! The journal's synchronous writes, which sit on the path from a decision to
//! its broadcast: the decision (the intent, trip + decision in one commit) and
//! each signed transaction (before `eth_sendRawTransaction`); and the per-block
//! "processed" mark, which is off the engine's path (in the guard task).
//!
//! `cargo bench --bench journal` (optionally `-- --runs N`, default 500).
//! The journal lives in a temporary folder (the machine's temp file system).

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, Bytes, U256, address};
use guardian::config::{Config, JournalConfig, JournalSync};
use guardian::decision::Trip;
use guardian::executor::{Fees, SignedTx, TxLog};
use guardian::guard::Guard;
use guardian::journal::{Journal, TripOrigin};
use guardian::policy::model::{Mode, Severity};

const VAULT: Address = address!("0x00000000000000000000000000000000000000a1");
const MODULE: Address = address!("0x00000000000000000000000000000000000000b0");

use support::Memory;

/// A configuration with one pause, `pause-vault` on [`VAULT`] through a
/// module executor, as an operator writes it.
fn config() -> Config {
    let mut text = "[guardian]\nmode = \"enforce\"\n\n[networks.local]\nchain_id = 31337\nrpc = [\"http://127.0.0.1:1\"]\n".to_string();
    text.push_str(&common::env_keys(&["bot"]));
    text.push_str(&format!(
        "\n[executors.module]\nkind = \"module\"\nmodule = \"{MODULE}\"\nkey = \"bot\"\nnetwork = \"local\"\n\n[actions.pause-vault]\nkind = \"pause\"\ndescription = \"pause\"\ntarget = \"{VAULT}\"\nfunction = \"pause()\"\npaused_getter = \"paused()\"\nexecutor = \"module\"\n"
    ));
    common::load_config("bench", &text)
}

fn percentiles(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)].as_secs_f64() * 1e3;
    (at(0.5), at(0.99))
}

async fn measure(sync: JournalSync, runs: usize) -> [(f64, f64); 3] {
    let dir = tempfile::tempdir().unwrap();
    let mut at = JournalConfig::at(dir.path().join("bench.db"));
    at.sync = sync;
    let journal = Journal::open(&at).unwrap();
    journal.bind_network("local", 31337).unwrap();
    let mut guard = Guard::new(&config());
    let (mut intent, mut signed, mut processed) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs as u64 {
        let trip = Trip {
            policy: "vault-drain".into(),
            block: i + 1,
            time_ms: (i + 1) * 1_000,
            action: "pause-vault".into(),
            severity: Severity::Critical,
            mode: Mode::Enforce,
            evidence: serde_json::json!({ "metric": "vault.total_assets", "change_pct": -50.0 })
                .into(),
            summary: "vault.total_assets moved -50% over 1 block".into(),
        };
        let decision = guard.review(&trip, &Memory).await;
        let t = Instant::now();
        journal
            .record_decision("local", TripOrigin::Block, &trip, None, &decision, None)
            .unwrap();
        intent.push(t.elapsed());
        let tx = SignedTx {
            decision_id: decision.decision_id,
            hash: B256::from(U256::from(i)),
            sender: VAULT,
            nonce: i,
            fees: Fees {
                max_fee: 30_000_000_000,
                priority_fee: 2_000_000_000,
            },
            replacement: 0,
            raw: Bytes::from(vec![0u8; 180]),
        };
        let t = Instant::now();
        journal.signed(&tx).unwrap();
        signed.push(t.elapsed());
        journal.broadcast(tx.hash, None);
        let t = Instant::now();
        journal
            .mark_processed("local", i + 1, B256::from(U256::from(i)), (i + 1) * 1_000)
            .unwrap();
        processed.push(t.elapsed());
    }
    [
        percentiles(intent),
        percentiles(signed),
        percentiles(processed),
    ]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let runs = support::arg("--runs", 500.0) as usize;
    println!("journal writes, {runs} runs each (p50 / p99, ms)");
    for (name, sync) in [("full", JournalSync::Full), ("normal", JournalSync::Normal)] {
        let [intent, signed, processed] = measure(sync, runs).await;
        println!(
            "sync = {name:<6}  decision (intent) {:.3} / {:.3}   signed tx {:.3} / {:.3}   block processed {:.3} / {:.3}",
            intent.0, intent.1, signed.0, signed.1, processed.0, processed.1
        );
    }
}
