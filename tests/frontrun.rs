//! The headline behaviour, end to end on anvil: an attack visible in the mempool
//! is seen by the watcher, its effect estimated, the policy trips, the guard
//! approves, and the pause is mined ahead of the attack in the same block.
//!
//! Nomad shape (2022): a bridge replica whose unproven messages read as proven,
//! drained by a copycat `attack()` transaction. The bridge, its configuration
//! and policy are the demo's (`guardian::demo`); here blocks are mined by hand
//! so the ordering inside one block is checked deterministically.

mod common;

use std::time::Duration;

use alloy::primitives::utils::parse_ether;
use alloy::providers::Provider;
use common::pipeline::guarding_bridge;
use common::{GWEI, anvil_bin, mine, set_automine};
use guardian::demo::{self, DemoToken, MessageReplica};
use guardian::executor::Execution;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_attack_is_paused_ahead_of_it_in_the_same_block() {
    let b = demo::deploy(&anvil_bin(), &["--order", "fees"])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let provider = &b.provider;
    let attacker = b.attacker;
    let token = DemoToken::new(b.token, provider);
    let replica = MessageReplica::new(b.replica, provider);
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("live.csv");
    // Returned once the watcher read the bridge (its recording shows the balance).
    let config_text = demo::config_text(&b);
    let full = ",bridge.balance,1000.0";
    let mut run = guarding_bridge(&b, &config_text, demo::POLICY, &record, full).await;

    // Blocks now come only when the test mines one: the attack waits in the mempool.
    set_automine(provider, false).await;
    let (attack_hash, _) = demo::send_attack(&b)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // The guardian's pause joins the attack in the mempool; then one block is mined.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status: serde_json::Value = provider
            .raw_request("txpool_status".into(), ())
            .await
            .unwrap();
        let pending = status["pending"]
            .as_str()
            .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
            .or(status["pending"].as_u64());
        if pending == Some(2) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pause never reached the mempool: {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    mine(provider).await;

    let landed = run
        .until_executed(|trip, pending| {
            assert_eq!(trip.evidence["value"], 1000.0);
            let pending = pending.expect("the trip names the pending transaction");
            assert_eq!(pending.hash, attack_hash);
            assert_eq!(pending.from, attacker);
            assert_eq!(pending.max_priority_fee_per_gas, Some(3 * GWEI));
        })
        .await;
    let Execution::Landed {
        tx: pause_hash,
        block,
        fees,
        ..
    } = landed
    else {
        panic!("expected the pause to land: {landed:?}");
    };
    let (_, attack_receipt) =
        common::pause_ahead_in_block(provider, pause_hash, attack_hash, block).await;
    assert!(
        fees.priority_fee > 3 * GWEI && fees.max_fee > 50 * GWEI,
        "outbid both fee fields: {fees:?}"
    );
    assert!(
        !attack_receipt.status(),
        "the attack reverted against the paused bridge"
    );
    assert!(replica.paused().call().await.unwrap());
    let left = token.balanceOf(*replica.address()).call().await.unwrap();
    assert_eq!(left, parse_ether("1000").unwrap(), "nothing was drained");

    run.stop().await;
}
