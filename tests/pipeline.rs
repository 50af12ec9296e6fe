//! The whole live pipeline on anvil: the watcher reads the vault, a policy
//! trips on a drain, the guard approves, the GuardianModule pause lands.

mod common;

use std::time::Duration;

use alloy::primitives::U256;
use common::{Demo, DemoToken, GuardedVault};
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
    let token = DemoToken::new(demo.token, &demo.provider);
    let vault = GuardedVault::new(demo.vault, &demo.provider);
    let amount = U256::from(900_000);
    token
        .mint(deployer, amount)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    token
        .approve(demo.vault, amount)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    vault
        .deposit(amount, deployer)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();

    let record = dir.path().join("live.csv");
    let options = RunOptions {
        record: Some(record.clone()),
        watcher: WatcherOptions {
            poll_interval: Duration::from_millis(50),
            ..WatcherOptions::default()
        },
        channel_capacity: 64,
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
            Report::Trip(t) => {
                assert_eq!(t.policy, "vault-drain");
                assert_eq!(t.evidence["change_pct"], -50.0);
                tripped = true;
            }
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
