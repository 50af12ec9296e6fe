//! `guardian run` as a service (the real binary), on anvil, with its journal:
//! a trip's pause lands and is journaled; `kill -9` with the pause in flight,
//! then a restart that resumes, does not send again and follows the
//! transaction to its end (also when the node forgot it, or blocks pass it
//! by); a reorg while down; three replicas, one attack, exactly one pause
//! transaction; a replica standing in for one that is down, and one standing
//! down for a pause pending from the shared key.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use alloy::network::Ethereum;
use alloy::primitives::U256;
use alloy::providers::{PendingTransactionBuilder, Provider};
use alloy::sol_types::SolCall;
use common::service::{Guardian, history, processed, until, until_each};
use common::{
    A_THIRD, Demo, EVERY_BLOCK, GuardedVault, anvil_rpc, mine, set_automine, vault_drain,
};
use guardian::journal::HistoryEntry;

/// Writes guardian.toml (the demo's, reading the vault, with `journal`) and policy.toml into `dir`.
fn setup(demo: &Demo, dir: &Path, journal: &str) {
    let tail = format!("{}\n[journal]\n{journal}\n", demo.assets_metric());
    demo.config_with(dir, "", &tail);
    std::fs::write(
        dir.join("policy.toml"),
        vault_drain(A_THIRD, "10 blocks", ""),
    )
    .unwrap();
}

async fn bot_nonce(demo: &Demo) -> u64 {
    demo.provider
        .get_transaction_count(demo.bot.address())
        .await
        .unwrap()
}

/// The demo with a journal (`settings`, in file `db`), 900,000 in the
/// vault, blocks mined by hand unless `automine`, and guardian started and
/// through the block the deposit landed in.
struct Watched {
    demo: Demo,
    dir: tempfile::TempDir,
    journal: PathBuf,
    g: Guardian,
    /// The bot's nonce before guardian started.
    nonce_before: u64,
}

async fn watched(db: &str, settings: &str, automine: bool) -> Watched {
    let demo = Demo::new(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join(db);
    setup(&demo, dir.path(), settings);
    demo.deposit(900_000).await;
    if !automine {
        // From here on blocks are mined only when the test says so.
        set_automine(&demo.provider, false).await;
    }
    let funded = demo.provider.get_block_number().await.unwrap();
    let nonce_before = bot_nonce(&demo).await;
    let mut g = Guardian::start(&demo, dir.path(), &[], &[]);
    g.until_processed("the healthy vault to be read", &journal, funded)
        .await;
    Watched {
        demo,
        dir,
        journal,
        g,
        nonce_before,
    }
}

/// The attack: half the vault's assets withdrawn in one transaction, sent.
async fn drain(demo: &Demo) -> PendingTransactionBuilder<Ethereum> {
    let deployer = demo.anvil.addresses()[0];
    GuardedVault::new(demo.vault, &demo.provider)
        .withdraw(U256::from(450_000), deployer, deployer)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_a_service_a_drain_is_paused_and_journaled() {
    let Watched {
        demo,
        dir,
        journal,
        mut g,
        nonce_before,
    } = watched("guardian.db", "path = \"guardian.db\"", true).await;
    drain(&demo).await.get_receipt().await.unwrap();
    until("the pause to land and be journaled", &mut [&mut g], || {
        history(&journal).iter().any(|e| e.status == "landed")
    })
    .await;
    assert!(demo.paused().await, "the vault is paused on chain");
    assert_eq!(
        bot_nonce(&demo).await,
        nonce_before + 1,
        "one transaction sent"
    );

    let entries = history(&journal);
    assert_eq!(entries.len(), 1, "{entries:#?}");
    let e = &entries[0];
    assert_eq!(
        (e.policy.as_str(), e.action.as_str()),
        ("vault-drain", "pause-module")
    );
    assert_eq!(
        (e.outcome.as_str(), e.origin.as_str()),
        ("approved", "block")
    );
    assert_eq!(e.evidence["change_pct"], -50.0);
    assert_eq!(e.transactions.len(), 1);
    assert_eq!(e.transactions[0].status, "landed");
    assert_eq!(e.tx.as_deref(), Some(e.transactions[0].hash.as_str()));
    let receipt = demo
        .provider
        .get_transaction_receipt(e.transactions[0].hash.parse().unwrap())
        .await
        .unwrap()
        .expect("the journaled transaction is on chain");
    assert!(receipt.status());
    assert_eq!(e.tx_block, receipt.block_number);

    // `guardian history` prints the same trail, filtered and as JSON.
    let config = dir.path().join("guardian.toml");
    let history_cmd = |args: &[&str]| {
        let config = config.to_str().unwrap();
        let args: Vec<&str> = ["history", "--config", config]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        common::traces::guardian_ok(&args, &[])
    };
    let json = history_cmd(&["--json", "--policy", "vault-drain", "--since", "1h"]);
    let rows: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "{json}");
    assert_eq!(rows[0]["status"], "landed");
    assert_eq!(
        rows[0]["transactions"][0]["hash"],
        e.transactions[0].hash.as_str()
    );
    let text = history_cmd(&["--status", "landed"]);
    assert!(
        text.contains("vault-drain -> pause-module") && text.contains("-> landed"),
        "{text}"
    );
    let none = history_cmd(&["--status", "rejected"]);
    assert!(none.contains("no decisions match"), "{none}");

    assert_eq!(g.stop(), Some(0), "a clean stop on SIGTERM");
}

/// A pause left in flight: the demo with a journal (warm-up 2 blocks), the
/// vault drained with mining off, the pause sent, then `kill -9` before any
/// block includes it.
struct InFlight {
    demo: Demo,
    dir: tempfile::TempDir,
    journal: PathBuf,
    /// The block of the drain.
    drain_block: u64,
    /// The bot's nonce before guardian started.
    nonce_before: u64,
}

impl InFlight {
    /// The decision left in flight, as the journal holds it.
    fn decision(&self) -> HistoryEntry {
        history(&self.journal).swap_remove(0)
    }

    /// Starts guardian again on the same folder and waits (`what`) until it
    /// says `needle`.
    async fn restart_until_said(&self, what: &str, needle: &str) -> Guardian {
        let mut second = Guardian::start(&self.demo, self.dir.path(), &[], &[]);
        second.until_said(what, needle).await;
        second
    }
}

async fn a_pause_left_in_flight() -> InFlight {
    let Watched {
        demo,
        dir,
        journal,
        g: mut first,
        nonce_before,
    } = watched(
        "guardian.db",
        "path = \"guardian.db\"\nwarmup_blocks = 2",
        false,
    )
    .await;
    let _pending = drain(&demo).await;
    mine(&demo.provider).await;
    let drain_block = demo.provider.get_block_number().await.unwrap();
    until("the pause to be sent", &mut [&mut first], || {
        history(&journal)
            .first()
            .is_some_and(|e| e.transactions.iter().any(|t| t.status == "sent"))
    })
    .await;
    // kill -9 with the pause in the mempool.
    first.kill();
    InFlight {
        demo,
        dir,
        journal,
        drain_block,
        nonce_before,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_transaction_then_restart_follows_it_without_sending_again() {
    let InFlight {
        demo,
        dir,
        journal,
        drain_block,
        nonce_before,
    } = a_pause_left_in_flight().await;
    let before = history(&journal);
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].status, "executing");
    let in_flight = before[0].transactions[0].hash.clone();
    // The drain block may be marked processed: its trip was decided and
    // written; its action is followed from the journal, not decided again.
    let resume_after = processed(&journal).unwrap();
    assert!(
        resume_after <= drain_block,
        "{resume_after} > {drain_block}"
    );
    assert!(!demo.paused().await);
    assert_eq!(bot_nonce(&demo).await, nonce_before, "nothing mined yet");

    let record = dir.path().join("restart.csv");
    let mut second = Guardian::start(
        &demo,
        dir.path(),
        &["--record", record.to_str().unwrap()],
        &[],
    );
    // The restart follows the pause before it decides anything new.
    second
        .until_said(
            "the restart to follow the pause",
            "following an action a previous run left in flight",
        )
        .await;
    mine(&demo.provider).await;
    second
        .until_first_done("the in-flight pause to be followed to its end", &journal)
        .await;
    let after = history(&journal);
    assert_eq!(
        after.len(),
        1,
        "the drain was not decided again: {after:#?}"
    );
    let e = &after[0];
    assert_eq!(e.status, "landed", "{e:#?}");
    assert_eq!(
        e.tx.as_deref(),
        Some(in_flight.as_str()),
        "the transaction sent before the kill landed"
    );
    assert_eq!(
        e.transactions.len(),
        1,
        "no transaction sent after the restart"
    );
    assert!(demo.paused().await);
    assert_eq!(
        bot_nonce(&demo).await,
        nonce_before + 1,
        "exactly one transaction from the bot"
    );

    // No skipped block: the restart read every block from before its resume point on.
    let head = mine(&demo.provider).await;
    second
        .until_processed("the restart to read the new head", &journal, head)
        .await;
    second.assert_said("following an action a previous run left in flight");
    let log = second.output();
    assert!(
        !log.contains("approved"),
        "nothing was approved after the restart:\n{log}"
    );
    assert_eq!(second.stop(), Some(0));
    let text = std::fs::read_to_string(&record).unwrap();
    let mut blocks: Vec<u64> = text
        .lines()
        .filter(|l| l.contains(",vault.total_assets,"))
        .filter_map(|l| l.split(',').next()?.parse().ok())
        .collect();
    blocks.dedup();
    assert!(
        blocks.first().is_some_and(|b| *b <= resume_after + 1),
        "{blocks:?}"
    );
    assert!(blocks.windows(2).all(|w| w[1] == w[0] + 1), "{blocks:?}");
    assert_eq!(blocks.last(), Some(&head), "{blocks:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_one_attack_one_pause_transaction() {
    let demo = Demo::new(&[]).await;
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    for (k, dir) in dirs.iter().enumerate() {
        setup(
            &demo,
            dir.path(),
            &format!("path = \"replica.db\"\nreplica = {k}\nreplica_stagger = \"1s\""),
        );
    }
    let journals: Vec<PathBuf> = dirs.iter().map(|d| d.path().join("replica.db")).collect();
    demo.deposit(900_000).await;
    let funded = demo.provider.get_block_number().await.unwrap();
    let nonce_before = bot_nonce(&demo).await;

    let mut replicas: Vec<Guardian> = dirs
        .iter()
        .map(|d| Guardian::start(&demo, d.path(), &[], &[]))
        .collect();
    until_each(
        "every replica to read the healthy vault",
        &mut replicas,
        || {
            journals
                .iter()
                .all(|j| processed(j).is_some_and(|b| b >= funded))
        },
    )
    .await;
    drain(&demo).await.get_receipt().await.unwrap();
    let done = ["landed", "already-done", "stood-down"];
    until_each("every replica to decide and finish", &mut replicas, || {
        journals.iter().all(|j| {
            history(j)
                .iter()
                .any(|e| e.policy == "vault-drain" && e.status != "executing")
        })
    })
    .await;
    assert!(demo.paused().await);
    let decisions: Vec<HistoryEntry> = journals.iter().flat_map(|j| history(j)).collect();
    assert_eq!(
        decisions.len(),
        3,
        "one decision per replica: {decisions:#?}"
    );
    for e in &decisions {
        eprintln!(
            "replica {:?}: {} ({:?}) -> {} ({:?})",
            e.replica, e.outcome, e.detail, e.status, e.status_detail
        );
    }
    let landed: Vec<&HistoryEntry> = decisions.iter().filter(|e| e.status == "landed").collect();
    assert_eq!(
        landed.len(),
        1,
        "exactly one replica's pause landed: {decisions:#?}"
    );
    for e in &decisions {
        assert!(done.contains(&e.status.as_str()), "{e:#?}");
        assert!(
            e.status_detail
                .as_deref()
                .is_none_or(|d| !d.contains("failed")),
            "{e:#?}"
        );
    }
    let signed: usize = decisions.iter().map(|e| e.transactions.len()).sum();
    assert_eq!(signed, 1, "one transaction signed in all: {decisions:#?}");
    assert_eq!(
        bot_nonce(&demo).await,
        nonce_before + 1,
        "one pause transaction on chain"
    );

    // The others stood down without error and keep watching.
    let head = mine(&demo.provider).await;
    until_each("every replica to keep watching", &mut replicas, || {
        journals
            .iter()
            .all(|j| processed(j).is_some_and(|b| b >= head))
    })
    .await;
    for g in replicas {
        assert_eq!(g.stop(), Some(0));
    }
}

/// Replica 1 of a set (see [`watched`]), acting `stagger` after replica 0 would.
async fn replica_one(stagger: &str, automine: bool) -> Watched {
    let settings = format!("path = \"replica.db\"\nreplica = 1\nreplica_stagger = \"{stagger}\"");
    watched("replica.db", &settings, automine).await
}

/// Availability: with replica 0 down, replica 1 acts one stagger later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_acts_when_the_first_is_down() {
    let mut w = replica_one("1s", true).await;
    drain(&w.demo).await.get_receipt().await.unwrap();
    until("replica 1 to land the pause", &mut [&mut w.g], || {
        history(&w.journal).iter().any(|e| e.status == "landed")
    })
    .await;
    let entries = history(&w.journal);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].replica, Some(1));
    assert!(w.demo.paused().await);
    assert_eq!(bot_nonce(&w.demo).await, w.nonce_before + 1);
    assert_eq!(w.g.stop(), Some(0));
}

/// Replica 1 approves, and during its stagger a pause from the shared key
/// (as replica 0 would send it) is pending: replica 1 waits for it, sees the
/// effect, and stands down without signing anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_waits_for_a_pending_pause_from_the_shared_key_then_stands_down() {
    let Watched {
        demo,
        dir: _dir,
        journal,
        mut g,
        nonce_before,
    } = replica_one("5s", false).await;
    let _drain = drain(&demo).await;
    mine(&demo.provider).await;
    until(
        "replica 1 to approve (and wait its stagger)",
        &mut [&mut g],
        || {
            history(&journal)
                .first()
                .is_some_and(|e| e.status == "executing")
        },
    )
    .await;
    // "Replica 0": the bot key pauses through the module; it stays pending.
    let bot = common::provider_for(&demo.anvil, 4);
    let _other = common::GuardianModule::new(demo.module, &bot)
        .pause(demo.vault, GuardedVault::pauseCall::SELECTOR.into())
        .send()
        .await
        .unwrap();
    g.until_said(
        "replica 1 to wait for the pending pause",
        "a transaction from the shared key is pending",
    )
    .await;
    mine(&demo.provider).await;
    g.until_first_done("replica 1 to finish", &journal).await;
    let e = &history(&journal)[0];
    assert_eq!(e.status, "stood-down", "{e:#?}");
    assert!(e.transactions.is_empty(), "replica 1 signed nothing");
    assert!(demo.paused().await);
    assert_eq!(
        bot_nonce(&demo).await,
        nonce_before + 1,
        "one pause transaction"
    );
    assert_eq!(g.stop(), Some(0));
}

/// Fail closed: enforce mode without a journal does not start, and says what to add.
#[test]
fn enforce_mode_without_a_journal_refuses_to_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("guardian.toml");
    std::fs::write(
        &config,
        "[guardian]\nmode = \"enforce\"\n\n[metrics.\"vault.total_assets\"]\ndescription = \"assets\"\n\n[actions.pause-module]\nkind = \"pause\"\ndescription = \"pause\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("policy.toml"),
        vault_drain(A_THIRD, "10 blocks", ""),
    )
    .unwrap();
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_guardian"))
            .arg("run")
            .arg("--config")
            .arg(&config)
            .arg("--policies")
            .arg(dir.path().join("policy.toml"))
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("enforce mode needs a journal") && err.contains("--journal"),
        "{err}"
    );
    let out = run(&["--journal", "/nonexistent-folder/guardian.db"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("the folder /nonexistent-folder does not exist"),
        "{err}"
    );
    // history on a journal that does not exist says so.
    let out = Command::new(env!("CARGO_BIN_EXE_guardian"))
        .args(["history", "--journal"])
        .arg(dir.path().join("none.db"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no journal there"), "{err}");
}

/// A reorg while guardian is down: the restart notices that its resume block
/// was replaced and decides the trips on the re-read blocks anew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorg_while_down_has_the_re_read_blocks_decided_anew() {
    let demo = Demo::new(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("guardian.db");
    setup(
        &demo,
        dir.path(),
        "path = \"guardian.db\"\nwarmup_blocks = 3",
    );
    std::fs::write(dir.path().join("policy.toml"), EVERY_BLOCK).unwrap();
    let mut first = Guardian::start(&demo, dir.path(), &[], &[]);
    let mut head = 0;
    for _ in 0..3 {
        head = mine(&demo.provider).await;
    }
    first
        .until_processed("the head to be processed", &journal, head)
        .await;
    assert_eq!(first.stop(), Some(0));
    let last = processed(&journal).unwrap();
    let decided_on = |block: u64| {
        history(&journal)
            .iter()
            .filter(|e| e.block == block && e.origin == "block")
            .count()
    };
    assert_eq!(decided_on(last), 1);

    // While it is down, the last two blocks are replaced.
    common::reorg(&demo.provider, 2).await;
    let new_head = mine(&demo.provider).await;
    let mut second = Guardian::start(&demo, dir.path(), &[], &[]);
    second
        .until_processed("the restart to catch up", &journal, new_head)
        .await;
    second.assert_said("the chain reorganised while guardian was down");
    assert_eq!(
        decided_on(last),
        2,
        "the replaced block's trip is decided anew"
    );
    assert_eq!(decided_on(new_head), 1);
    assert_eq!(second.stop(), Some(0));
}

/// A transaction left in flight that blocks keep passing by (its fees are now
/// below the base fee): the restarted guardian signs it again with higher
/// fees, journals the replacement, and the replacement lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_replaces_an_in_flight_transaction_that_blocks_pass_by() {
    let in_flight = a_pause_left_in_flight().await;
    let (demo, journal) = (&in_flight.demo, &in_flight.journal);
    let sent = in_flight.decision().transactions.swap_remove(0);
    let max_fee: u128 = sent.max_fee_wei.parse().unwrap();

    // The base fee jumps above what the transaction offers: the next block passes it by.
    let base_fee = U256::from(max_fee * 4);
    anvil_rpc(
        &demo.provider,
        "anvil_setNextBlockBaseFeePerGas",
        (base_fee,),
    )
    .await;
    mine(&demo.provider).await;
    assert!(!demo.paused().await);

    let mut second = in_flight
        .restart_until_said(
            "the restart to follow the pause",
            "following an action a previous run left in flight",
        )
        .await;
    // Blocks pass without it until the replacement is sent.
    let every = Duration::from_millis(300);
    let replaced = async || {
        let e = &history(journal)[0];
        let replaced = e.status != "executing"
            || e.transactions
                .iter()
                .any(|t| t.replacement > 0 && t.status == "sent");
        if !replaced {
            mine(&demo.provider).await;
        }
        replaced
    };
    second
        .until_async("the replacement to be sent", every, replaced)
        .await;
    mine(&demo.provider).await;
    second
        .until_first_done("the replacement to land", journal)
        .await;
    let e = &history(journal)[0];
    assert_eq!(e.status, "landed", "{e:#?}");
    let landed = e
        .transactions
        .iter()
        .find(|t| t.status == "landed")
        .unwrap();
    assert!(landed.replacement >= 1, "{e:#?}");
    assert_eq!(e.tx.as_deref(), Some(landed.hash.as_str()));
    assert!(landed.max_fee_wei.parse::<u128>().unwrap() > max_fee);
    assert!(
        e.transactions.iter().all(|t| t.nonce == sent.nonce),
        "one nonce: {e:#?}"
    );
    assert!(demo.paused().await);
    assert_eq!(second.stop(), Some(0));
}

/// The node forgot the transaction left in flight (its mempool was lost):
/// the restart broadcasts the journaled bytes again, and that same
/// transaction lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_broadcasts_again_a_transaction_the_node_forgot() {
    let in_flight = a_pause_left_in_flight().await;
    let (demo, journal) = (&in_flight.demo, &in_flight.journal);
    let hash: alloy::primitives::B256 = in_flight.decision().transactions[0].hash.parse().unwrap();
    anvil_rpc(&demo.provider, "anvil_dropTransaction", (hash,)).await;
    assert!(
        demo.provider
            .get_transaction_by_hash(hash)
            .await
            .unwrap()
            .is_none()
    );

    let mut second = in_flight
        .restart_until_said(
            "the restart to broadcast it again",
            "the node no longer knows the transaction",
        )
        .await;
    let known = async || {
        demo.provider
            .get_transaction_by_hash(hash)
            .await
            .unwrap()
            .is_some()
    };
    let every = Duration::from_millis(100);
    second
        .until_async("the transaction to be broadcast again", every, known)
        .await;
    mine(&demo.provider).await;
    second.until_first_done("the pause to land", journal).await;
    let e = &history(journal)[0];
    assert_eq!(e.status, "landed", "{e:#?}");
    assert_eq!(
        e.tx,
        Some(hash.to_string()),
        "the very transaction sent before the kill"
    );
    assert!(demo.paused().await);
    assert_eq!(second.stop(), Some(0));
}
