//! The whole live pipeline on anvil: the watcher reads the vault, a policy
//! trips on a drain, the guard approves, the GuardianModule pause lands.

mod common;

use std::time::Duration;

use alloy::primitives::U256;
use alloy::providers::Provider;
use common::{Demo, GuardedVault};
use guardian::executor::Execution;
use guardian::pipeline::{self, Report, RunOptions};
use guardian::policy::compile_str;
use guardian::source::chain::WatcherOptions;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const POLICY: &str = r#"
[[policy]]
id = "vault-drain"
description = "Vault assets fall by a third within one block"
severity = "critical"
action = "pause-module"
cooldown = "10 blocks"
[policy.when]
kind = "change"
metric = "vault.total_assets"
window = "1 block"
direction = "down"
by = "30%"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_trips_the_policy_and_the_module_pause_lands() {
    let demo = Demo::new(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let tail = format!(
        "[metrics.\"vault.total_assets\"]\ndescription = \"assets the vault holds\"\nnetwork = \"local\"\nsource = {{ kind = \"call\", to = \"{}\", signature = \"totalAssets()(uint256)\" }}\n",
        demo.vault
    );
    let config = demo.config_with(dir.path(), "", &tail);
    let policies = compile_str("policy.toml", POLICY, &config).unwrap_or_else(|e| panic!("{e}"));

    // A depositor puts 900,000 units in the vault (the cap is 1,000,000).
    let deployer = demo.anvil.addresses()[0];
    let vault = GuardedVault::new(demo.vault, &demo.provider);
    demo.deposit(900_000).await;

    let record = dir.path().join("live.csv");
    let options = RunOptions {
        record: Some(record.clone()),
        watcher: WatcherOptions {
            poll_interval: Duration::from_millis(50),
            ..WatcherOptions::default()
        },
        channel_capacity: 64,
        ..RunOptions::default()
    };
    let (report_tx, mut reports) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let run = tokio::spawn(pipeline::run(
        config,
        policies,
        demo.keys(),
        options,
        Some(report_tx),
        cancel.clone(),
    ));

    // Wait until the watcher has read the healthy vault (its recording shows a
    // sample), so the drain is measured against the block before it.
    let seen_deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&record).unwrap_or_default();
        if text
            .lines()
            .any(|l| l.ends_with(",vault.total_assets,900000.0"))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < seen_deadline,
            "the watcher never read the vault"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!vault.paused().call().await.unwrap());
    vault
        .withdraw(U256::from(450_000), deployer, deployer)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();

    let mut tripped = false;
    let mut landed = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while landed.is_none() {
        let report = tokio::time::timeout_at(deadline, reports.recv())
            .await
            .expect("the pause should land within a minute")
            .expect("the pipeline keeps reporting while it runs");
        match report {
            Report::Trip { trip, pending } => {
                assert_eq!(trip.policy, "vault-drain");
                assert_eq!(trip.evidence["change_pct"], -50.0);
                assert!(pending.is_none(), "a mined drain, not a pending one");
                tripped = true;
            }
            Report::ReorgedOut { .. } => panic!("no reorg here"),
            Report::Decision {
                approved, outcome, ..
            } => assert!(approved, "the guard refused: {outcome}"),
            Report::Executed { execution, .. } => landed = Some(execution),
            Report::ExecutionFailed { error, .. } => panic!("execution failed: {error}"),
        }
    }
    assert!(tripped);
    assert!(
        matches!(landed, Some(Execution::Landed { .. })),
        "{landed:?}"
    );
    assert!(
        vault.paused().call().await.unwrap(),
        "the vault is paused on chain"
    );

    // Shutdown is clean: run returns Ok once cancelled.
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the pipeline stops within its bound")
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));

    // The recording holds the drain and replays to the same trip.
    let text = std::fs::read_to_string(&record).unwrap();
    assert!(
        text.lines()
            .any(|l| l.ends_with(",vault.total_assets,450000.0")),
        "{text}"
    );
}

const EVERY_BLOCK: &str = r#"
[[policy]]
id = "vault-watch"
description = "Holds whenever the vault is read: trips in every block, alert only"
severity = "info"
action = "pause-module"
cooldown = "0 blocks"
mode = "alert-only"
[policy.when]
kind = "threshold"
metric = "vault.total_assets"
op = ">="
value = 0
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trips_on_blocks_a_reorg_replaced_are_named() {
    reorg_after(4).await;
}

/// A reorg deeper than what the watcher has seen since it started (one block)
/// re-anchors instead of stopping the guardian.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reorg_right_after_start_is_survived() {
    reorg_after(1).await;
}

/// Runs the pipeline until it has tripped on `blocks` blocks, replaces the last
/// two blocks, and checks the trips on the replaced blocks it saw are named.
async fn reorg_after(blocks: usize) {
    let demo = Demo::new(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let tail = format!(
        "[metrics.\"vault.total_assets\"]\ndescription = \"assets the vault holds\"\nnetwork = \"local\"\nsource = {{ kind = \"call\", to = \"{}\", signature = \"totalAssets()(uint256)\" }}\n",
        demo.vault
    );
    let config = demo.config_with(dir.path(), "", &tail);
    let policies =
        compile_str("policy.toml", EVERY_BLOCK, &config).unwrap_or_else(|e| panic!("{e}"));
    let options = RunOptions {
        record: None,
        watcher: WatcherOptions {
            poll_interval: Duration::from_millis(50),
            ..WatcherOptions::default()
        },
        channel_capacity: 64,
        ..RunOptions::default()
    };
    let (report_tx, mut reports) = mpsc::channel(256);
    let cancel = CancellationToken::new();
    let run = tokio::spawn(pipeline::run(
        config,
        policies,
        demo.keys(),
        options,
        Some(report_tx),
        cancel.clone(),
    ));

    // Mine until the pipeline has tripped on the head block.
    let mut head = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut tripped_on = std::collections::BTreeSet::new();
    while tripped_on.len() < blocks || !tripped_on.contains(&head) {
        if tripped_on.contains(&head) || head == 0 {
            let _: serde_json::Value = demo
                .provider
                .raw_request("evm_mine".into(), ())
                .await
                .unwrap();
            head = demo.provider.get_block_number().await.unwrap();
        }
        match tokio::time::timeout_at(deadline, reports.recv())
            .await
            .expect("trips arrive")
            .unwrap()
        {
            Report::Trip { trip, .. } => {
                tripped_on.insert(trip.block);
            }
            Report::Decision { outcome, .. } => {
                assert!(outcome.starts_with("alert-only"), "{outcome}")
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    // Replace the last two blocks; the trips decided on them are named.
    let _: serde_json::Value = demo
        .provider
        .raw_request("anvil_reorg".into(), (2u64, serde_json::json!([])))
        .await
        .unwrap();
    let _: serde_json::Value = demo
        .provider
        .raw_request("evm_mine".into(), ())
        .await
        .unwrap();
    let expected: Vec<u64> = [head - 1, head]
        .into_iter()
        .filter(|b| tripped_on.contains(b))
        .collect();
    let mut named = std::collections::BTreeSet::new();
    while named.len() < expected.len() {
        let Some(report) = tokio::time::timeout_at(deadline, reports.recv())
            .await
            .expect("the reorg is reported")
        else {
            panic!("the pipeline stopped: {:?}", run.await);
        };
        match report {
            Report::ReorgedOut { policy, block, .. } => {
                assert_eq!(policy, "vault-watch");
                named.insert(block);
            }
            Report::Trip { .. } | Report::Decision { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(named.into_iter().collect::<Vec<_>>(), expected);
    // The guardian keeps watching the new chain.
    let _: serde_json::Value = demo
        .provider
        .raw_request("evm_mine".into(), ())
        .await
        .unwrap();
    let new_head = demo.provider.get_block_number().await.unwrap();
    loop {
        let Some(report) = tokio::time::timeout_at(deadline, reports.recv())
            .await
            .expect("it keeps watching")
        else {
            panic!("the pipeline stopped: {:?}", run.await);
        };
        if let Report::Trip { trip, .. } = report
            && trip.block == new_head
        {
            break;
        }
    }
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
}
