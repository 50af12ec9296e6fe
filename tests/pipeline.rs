//! The whole live pipeline on anvil: the watcher reads the vault, a policy
//! trips on a drain, the guard approves, the GuardianModule pause lands.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use alloy::providers::Provider;
use common::pipeline::{Piped, polling, until_recorded};
use common::{A_THIRD, Demo, EVERY_BLOCK, GuardedVault, mine, vault_drain};
use guardian::config::Config;
use guardian::executor::Execution;
use guardian::pipeline::Report;
use guardian::policy::compile_str;

/// The demo's configuration reading the vault's assets, and `policy` compiled against it.
fn configured(
    demo: &Demo,
    dir: &std::path::Path,
    policy: &str,
) -> (Config, guardian::policy::PolicySet) {
    let config = demo.config_with(dir, "", &demo.assets_metric());
    let policies = compile_str("policy.toml", policy, &config).unwrap_or_else(|e| panic!("{e}"));
    (config, policies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_trips_the_policy_and_the_module_pause_lands() {
    let demo = Demo::new(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, policies) = configured(&demo, dir.path(), &vault_drain(A_THIRD, "10 blocks", ""));

    // A depositor puts 900,000 units in the vault (the cap is 1,000,000).
    let vault = GuardedVault::new(demo.vault, &demo.provider);
    demo.deposit(900_000).await;

    let record = dir.path().join("live.csv");
    let mut run = Piped::start(config, policies, demo.keys(), polling(Some(record.clone())));

    // Wait until the watcher has read the healthy vault (its recording shows a
    // sample), so the drain is measured against the block before it.
    until_recorded(&record, "the watcher to read the vault", |l| {
        l.ends_with(",vault.total_assets,900000.0")
    })
    .await;
    assert!(!vault.paused().call().await.unwrap());
    demo.withdraw(450_000).await;

    let mut tripped = false;
    let landed = run
        .until_executed(|trip, pending| {
            assert_eq!(trip.policy, "vault-drain");
            assert_eq!(trip.evidence["change_pct"], -50.0);
            assert!(pending.is_none(), "a mined drain, not a pending one");
            tripped = true;
        })
        .await;
    assert!(tripped);
    assert!(matches!(landed, Execution::Landed { .. }), "{landed:?}");
    assert!(
        vault.paused().call().await.unwrap(),
        "the vault is paused on chain"
    );

    // Shutdown is clean: run returns Ok once cancelled.
    run.stop().await;

    // The recording holds the drain and replays to the same trip.
    let text = std::fs::read_to_string(&record).unwrap();
    assert!(
        text.lines()
            .any(|l| l.ends_with(",vault.total_assets,450000.0")),
        "{text}"
    );
}

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
    let (config, policies) = configured(&demo, dir.path(), EVERY_BLOCK);
    let mut run = Piped::start(config, policies, demo.keys(), polling(None));

    // Mine until the pipeline has tripped on the head block.
    let mut head = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut tripped_on = BTreeSet::new();
    while tripped_on.len() < blocks || !tripped_on.contains(&head) {
        if tripped_on.contains(&head) || head == 0 {
            mine(&demo.provider).await;
            head = demo.provider.get_block_number().await.unwrap();
        }
        match run.next(deadline, "trips").await {
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
    common::reorg(&demo.provider, 2).await;
    mine(&demo.provider).await;
    let expected: Vec<u64> = [head - 1, head]
        .into_iter()
        .filter(|b| tripped_on.contains(b))
        .collect();
    let mut named = BTreeSet::new();
    while named.len() < expected.len() {
        match run.next(deadline, "the reorg to be reported").await {
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
    mine(&demo.provider).await;
    let new_head = demo.provider.get_block_number().await.unwrap();
    loop {
        if let Report::Trip { trip, .. } = run.next(deadline, "it to keep watching").await
            && trip.block == new_head
        {
            break;
        }
    }
    run.stop().await;
}
