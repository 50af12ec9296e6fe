//! The guard and every execution path on a real node: anvil, the real Safe
//! v1.4.1 from its npm artifacts, the demo vault owned by the Safe, and the
//! GuardianModule enabled on it.

mod common;

use std::time::Duration;

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::Provider;
use alloy::sol_types::SolCall;
use common::{Demo, GWEI, GuardedVault, Safe};
use guardian::decision::Trip;
use guardian::executor::safe::SafeTx;
use guardian::executor::{DeliveryEvent, ExecError, Execution, Executors, Urgency};
use guardian::guard::{Approved, Decision, Guard, Outcome, Rejection};
use guardian::policy::model::{Mode, Severity};
use tokio::sync::mpsc;

fn trip(action: &str, mode: Mode) -> Trip {
    Trip {
        policy: "vault-drain".into(),
        block: 1,
        time_ms: 1_000,
        action: action.into(),
        severity: Severity::Critical,
        mode,
        evidence: serde_json::Value::Null.into(),
        summary: String::new(),
    }
}

struct Setup {
    demo: Demo,
    guard: Guard,
    exec: Executors,
    events: mpsc::Receiver<DeliveryEvent>,
    _dir: tempfile::TempDir,
}

async fn setup(anvil_args: &[&str], extra: &str) -> Setup {
    let demo = Demo::new(anvil_args).await;
    let dir = tempfile::tempdir().unwrap();
    let config = demo.config(dir.path(), extra);
    let guard = Guard::new(&config);
    let (tx, events) = mpsc::channel(64);
    let exec = Executors::connect(&config, "local", &demo.keys(), Some(tx))
        .await
        .unwrap();
    Setup {
        demo,
        guard,
        exec,
        events,
        _dir: dir,
    }
}

impl Setup {
    /// The guard's decision on a trip for `action` in enforce mode.
    async fn review(&mut self, action: &str) -> Decision {
        self.guard
            .review(&trip(action, Mode::Enforce), &self.exec)
            .await
    }

    /// Reviews `action`, which must be refused at preflight with a reason containing `why`.
    async fn refused_at_preflight(&mut self, action: &str, why: &str) -> Decision {
        let d = self.review(action).await;
        match d.rejection() {
            Some(Rejection::PreflightReverted { reason }) => {
                assert!(reason.contains(why), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        d
    }

    /// The count of transactions `who` sent that are mined (or, `pending`, also in the pool).
    async fn sent_by(&self, who: Address, pending: bool) -> u64 {
        let count = self.demo.provider.get_transaction_count(who);
        let count = if pending { count.pending() } else { count };
        count.await.unwrap()
    }

    /// Turns mining off: sent transactions wait for `evm_mine`.
    async fn automine_off(&self) {
        common::set_automine(&self.demo.provider, false).await;
    }

    async fn approve(&mut self, action: &str, mode: Mode) -> Approved {
        let d = self.guard.review(&trip(action, mode), &self.exec).await;
        match d.into_approved() {
            Some(a) => a,
            None => panic!("{action} was not approved"),
        }
    }
}

/// Known answers: the SafeTx hash guardian computes equals the real Safe's
/// `getTransactionHash`, for several transactions and nonces.
#[tokio::test]
async fn safe_tx_hash_matches_the_real_safe() {
    let demo = Demo::new(&[]).await;
    let safe = Safe::new(demo.safe, &demo.provider);
    let chain_id = demo.provider.get_chain_id().await.unwrap();
    let cases = [
        SafeTx::call(
            demo.vault,
            Bytes::from(vec![0x84, 0x56, 0xcb, 0x59]),
            U256::ZERO,
        ),
        SafeTx::call(
            demo.vault,
            GuardedVault::setSupplyCapCall {
                newCap: U256::from(123_456),
            }
            .abi_encode()
            .into(),
            U256::from(7),
        ),
        SafeTx {
            value: U256::from(1),
            operation: 1,
            safeTxGas: U256::from(50_000),
            baseGas: U256::from(21_000),
            gasPrice: U256::from(3),
            gasToken: demo.token,
            refundReceiver: demo.owners[0].address(),
            ..SafeTx::call(
                Address::repeat_byte(0x11),
                Bytes::new(),
                U256::from(u64::MAX),
            )
        },
    ];
    for tx in cases {
        let expected = safe
            .getTransactionHash(
                tx.to,
                tx.value,
                tx.data.clone(),
                tx.operation,
                tx.safeTxGas,
                tx.baseGas,
                tx.gasPrice,
                tx.gasToken,
                tx.refundReceiver,
                tx.nonce,
            )
            .call()
            .await
            .unwrap();
        assert_eq!(tx.hash(chain_id, demo.safe), expected);
    }
}

#[tokio::test]
async fn eoa_pauses_the_vault_and_already_paused_is_a_no_op() {
    let mut s = setup(&[], "").await;
    let a = s.approve("pause-direct", Mode::Enforce).await;
    let landed = s.exec.execute(a, None).await.unwrap();
    assert!(
        matches!(
            landed,
            Execution::Landed {
                replacements: 0,
                ..
            }
        ),
        "{landed:?}"
    );
    assert!(s.demo.paused().await);

    let bot = s.demo.bot.address();
    let nonce = s.sent_by(bot, false).await;
    let d = s.review("pause-direct").await;
    assert!(matches!(d.outcome, Outcome::AlreadyDone { .. }), "{d:?}");
    assert_eq!(s.sent_by(bot, false).await, nonce);
}

#[tokio::test]
async fn safe_owners_pause_the_vault() {
    let mut s = setup(&[], "").await;
    // One owner key is below the 2-of-3 threshold: refused before anything is sent.
    s.refused_at_preflight("pause-one-owner", "needs 2 owner signatures")
        .await;
    let a = s.approve("pause-owners", Mode::Enforce).await;
    let landed = s.exec.execute(a, None).await.unwrap();
    assert!(matches!(landed, Execution::Landed { .. }));
    assert!(s.demo.paused().await);
}

#[tokio::test]
async fn module_pauses_and_sets_a_bounded_parameter() {
    let mut s = setup(&[], "").await;
    let a = s.approve("lower-cap-module", Mode::Enforce).await;
    s.exec.execute(a, None).await.unwrap();
    assert_eq!(
        s.demo.supply_cap().await,
        U256::from(common::SUPPLY_CAP * 3 / 4)
    );
    // The guard's own min delay refuses a second change within the hour.
    let d = s.review("lower-cap-module").await;
    assert!(
        matches!(d.rejection(), Some(Rejection::UpdateTooSoon { .. })),
        "{d:?}"
    );

    let a = s.approve("pause-module", Mode::Enforce).await;
    s.exec.execute(a, None).await.unwrap();
    assert!(s.demo.paused().await);
}

#[tokio::test]
async fn a_reverting_preflight_sends_nothing_and_says_why() {
    let mut s = setup(&[], "").await;
    let stranger = s.demo.stranger.address();
    let before = s.sent_by(stranger, false).await;
    s.refused_at_preflight("pause-stranger", "AccessControlUnauthorizedAccount")
        .await;
    assert_eq!(s.sent_by(stranger, false).await, before);
    assert!(!s.demo.paused().await);
}

/// A call the module does not permit, and a call that fails inside the Safe:
/// both refused at preflight with the reason decoded, nothing sent.
#[tokio::test]
async fn inner_failures_are_refused_at_preflight_with_the_reason_decoded() {
    let mut s = setup(&[], "").await;
    s.refused_at_preflight("pause-token-module", "PauseNotPermitted")
        .await;
    // Safe 1.4.1 reverts with GS013 when the inner call fails and safeTxGas is 0.
    let d = s.refused_at_preflight("pause-token-owners", "GS013").await;
    let record = serde_json::to_string(&d).unwrap();
    assert!(
        record.contains("preflight-reverted") && record.contains("GS013"),
        "{record}"
    );
}

#[tokio::test]
async fn dry_run_signs_and_broadcasts_nothing() {
    let mut s = setup(&[], "").await;
    let a = s.approve("pause-owners", Mode::DryRun).await;
    let owner = s.demo.owners[0].address();
    let bot_nonce = s.sent_by(owner, false).await;
    match s.exec.execute(a, None).await.unwrap() {
        Execution::DryRun { tx, raw } => {
            assert_eq!(alloy::primitives::keccak256(&raw), tx);
        }
        other => panic!("{other:?}"),
    }
    assert!(!s.demo.paused().await);
    assert_eq!(s.sent_by(owner, false).await, bot_nonce);
}

/// A local HTTP receiver stands in for the Safe Transaction Service: it checks
/// the proposal's body and that its signature is the owner's over the SafeTx hash.
#[tokio::test]
async fn propose_writes_the_outbox_and_posts_a_signed_proposal() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let body = loop {
            let mut chunk = [0u8; 4096];
            let n = conn.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed before the body");
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap();
                if body.len() >= len {
                    break (head.lines().next().unwrap().to_string(), body.to_string());
                }
            }
        };
        conn.write_all(b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        body
    });
    let mut s = setup(&[], &format!("service_url = \"{url}\"")).await;
    let a = s.approve("lower-cap-proposal", Mode::Enforce).await;
    let Execution::Proposed {
        safe_tx_hash,
        outbox_file,
        posted,
    } = s.exec.execute(a, None).await.unwrap()
    else {
        panic!("not a proposal")
    };
    assert!(posted);
    let (request_line, body) = server.await.unwrap();
    assert_eq!(
        request_line,
        format!(
            "POST /api/v1/safes/{}/multisig-transactions/ HTTP/1.1",
            s.demo.safe.to_checksum(None)
        )
    );
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(outbox_file).unwrap()).unwrap();
    assert_eq!(body, written);
    // The hash is the real Safe's, and the signature recovers to the owner.
    let safe = Safe::new(s.demo.safe, &s.demo.provider);
    let nonce = safe.nonce().call().await.unwrap();
    let expected = safe
        .getTransactionHash(
            s.demo.vault,
            U256::ZERO,
            GuardedVault::setSupplyCapCall {
                newCap: U256::from(500_000),
            }
            .abi_encode()
            .into(),
            0,
            U256::ZERO,
            U256::ZERO,
            U256::ZERO,
            Address::ZERO,
            Address::ZERO,
            nonce,
        )
        .call()
        .await
        .unwrap();
    assert_eq!(safe_tx_hash, expected);
    assert_eq!(body["contractTransactionHash"], expected.to_string());
    let sig: Bytes = body["signature"].as_str().unwrap().parse().unwrap();
    let sig = alloy::primitives::Signature::from_raw(&sig).unwrap();
    assert_eq!(
        sig.recover_address_from_prehash(&expected).unwrap(),
        s.demo.owners[0].address()
    );
    assert_eq!(body["sender"], s.demo.owners[0].address().to_checksum(None));
    assert_eq!(body["nonce"], nonce.to_string());
    // Nothing was executed.
    assert_eq!(s.demo.supply_cap().await, U256::from(common::SUPPLY_CAP));
}

/// Mining off, base fee raised above the first offer: the transaction is
/// re-sent with the same nonce and higher fees, and lands.
#[tokio::test]
async fn a_stuck_transaction_is_replaced_and_lands() {
    let mut s = setup(&[], "").await;
    let p = s.demo.provider.clone();
    s.automine_off().await;
    let a = s.approve("pause-direct", Mode::Enforce).await;
    let exec = s.exec.clone();
    let run = tokio::spawn(async move { exec.execute(a, None).await });

    let Some(DeliveryEvent::Sent {
        nonce,
        fees,
        replacement: 0,
        ..
    }) = s.events.recv().await
    else {
        panic!("no first send")
    };
    // The next block's base fee is far above the first offer: it is not included.
    let high = fees.max_fee * 3;
    p.raw_request::<_, ()>(
        "anvil_setNextBlockBaseFeePerGas".into(),
        (U256::from(high),),
    )
    .await
    .unwrap();
    common::mine(&p).await;
    let Some(DeliveryEvent::Sent {
        nonce: n2,
        fees: f2,
        replacement: 1,
        ..
    }) = s.events.recv().await
    else {
        panic!("no replacement")
    };
    assert_eq!(n2, nonce);
    assert!(f2.max_fee * 8 >= fees.max_fee * 9 && f2.priority_fee * 8 >= fees.priority_fee * 9);
    let landed = mine_and_join(&p, run).await;
    assert!(
        matches!(
            landed,
            Execution::Landed {
                replacements: 1,
                ..
            }
        ),
        "{landed:?}"
    );
    assert!(s.demo.paused().await);
}

/// Nothing is mined: the executor gives up at its deadline instead of waiting
/// forever, and reports it (the caller alerts).
#[tokio::test]
async fn delivery_gives_up_at_the_deadline() {
    let mut s = setup(&[], "").await;
    s.automine_off().await;
    let a = s.approve("pause-hasty", Mode::Enforce).await;
    let started = std::time::Instant::now();
    let err = s.exec.execute(a, None).await.unwrap_err();
    assert!(
        matches!(
            err,
            ExecError::Deadline {
                deadline_ms: 1_000,
                ..
            }
        ),
        "{err}"
    );
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(matches!(
        s.events.try_recv(),
        Ok(DeliveryEvent::Sent { .. })
    ));
    assert!(!s.demo.paused().await);
}

/// The bot's next nonce is used by an outside transaction from the same key
/// after guardian read it: the send is refused, the nonce resynchronised, and
/// the pause lands with no gap.
#[tokio::test]
async fn a_nonce_consumed_outside_is_recovered() {
    let mut s = setup(&[], "").await;
    s.demo.bot_sends_outside().await;
    let a = s.approve("pause-direct", Mode::Enforce).await;
    let landed = s.exec.execute(a, None).await.unwrap();
    assert!(matches!(landed, Execution::Landed { .. }));
    assert!(s.demo.paused().await);
    let mut resynced = false;
    while let Ok(e) = s.events.try_recv() {
        resynced |= matches!(e, DeliveryEvent::NonceResynced { .. });
    }
    assert!(resynced, "the nonce was not resynchronised");
    // No gap: the bot's pending and latest counts agree.
    let who = s.demo.bot.address();
    assert_eq!(s.sent_by(who, true).await, s.sent_by(who, false).await);
}

/// With blocks ordered by fee, a pause sent after a pending attack outbids it
/// and lands first in the same block; the attack then hits the paused vault.
#[tokio::test]
async fn a_pause_lands_ahead_of_a_pending_attack_in_the_same_block() {
    let mut s = setup(&["--order", "fees"], "").await;
    let p = s.demo.provider.clone();
    // The attacker (anvil key 6) holds tokens and has approved the vault.
    let attacker = common::provider_for(&s.demo.anvil, 6);
    let who = s.demo.anvil.addresses()[6];
    common::mined(common::DemoToken::new(s.demo.token, &p).mint(who, U256::from(1_000))).await;
    let token = common::DemoToken::new(s.demo.token, &attacker);
    common::mined(token.approve(s.demo.vault, U256::MAX)).await;
    s.automine_off().await;
    let attack_fees = Urgency {
        attacker_max_fee: 30 * GWEI,
        attacker_priority_fee: 5 * GWEI,
    };
    let attack = GuardedVault::new(s.demo.vault, &attacker)
        .deposit(U256::from(1_000), who)
        .gas(300_000)
        .max_fee_per_gas(attack_fees.attacker_max_fee)
        .max_priority_fee_per_gas(attack_fees.attacker_priority_fee)
        .send()
        .await
        .unwrap();
    let attack_hash: B256 = *attack.tx_hash();

    let a = s.approve("pause-direct", Mode::Enforce).await;
    let exec = s.exec.clone();
    let run = tokio::spawn(async move { exec.execute(a, Some(attack_fees)).await });
    let Some(DeliveryEvent::Sent { tx, fees, .. }) = s.events.recv().await else {
        panic!("no send")
    };
    assert!(fees.max_fee > attack_fees.attacker_max_fee);
    assert!(fees.priority_fee > attack_fees.attacker_priority_fee);
    let landed = mine_and_join(&p, run).await;
    let Execution::Landed { block, .. } = landed else {
        panic!("{landed:?}")
    };
    let (_, attack) = common::pause_ahead_in_block(&p, tx, attack_hash, block).await;
    assert!(!attack.status(), "the attack should hit the paused vault");
    assert!(s.demo.paused().await);
}

/// Mines a block and waits (20 s at most) for the execution running in `run`
/// to end; its result must be an execution.
async fn mine_and_join(
    p: &impl Provider,
    run: tokio::task::JoinHandle<Result<Execution, ExecError>>,
) -> Execution {
    common::mine(p).await;
    let joined = tokio::time::timeout(Duration::from_secs(20), run).await;
    joined.expect("no result within 20 s").unwrap().unwrap()
}

fn trip_at(action: &str, time_ms: u64) -> Trip {
    Trip {
        time_ms,
        ..trip(action, Mode::Enforce)
    }
}

/// On a real chain: outside the allow-list, too large a change,
/// in the target's cooldown, over the rate limit — each refused with its reason,
/// and nothing sent.
#[tokio::test]
async fn the_guard_refuses_with_reasons_on_a_real_chain() {
    let demo = Demo::new(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = demo.config_with(
        dir.path(),
        "",
        "[guard]\ntarget_cooldown = \"1m\"\nrate_limit = \"1/1h\"\n",
    );
    let mut guard = Guard::new(&config);
    let exec = Executors::connect(&config, "local", &demo.keys(), None)
        .await
        .unwrap();
    let bot = demo.bot.address();
    let before = demo.provider.get_transaction_count(bot).await.unwrap();
    let reject = |d: guardian::guard::Decision| d.rejection().cloned();

    let r = reject(guard.review(&trip_at("sweep-funds", 1_000), &exec).await);
    assert_eq!(
        r,
        Some(Rejection::NotAllowed {
            action: "sweep-funds".into()
        })
    );
    // A fixed value outside the bounds is refused at load (tests/delivery.rs, seen 9).
    let r = reject(
        guard
            .review(&trip_at("cut-cap-too-much", 1_000), &exec)
            .await,
    );
    assert!(
        matches!(
            r,
            Some(Rejection::ChangeTooLarge {
                max_change_bps: 5_000,
                ..
            })
        ),
        "{r:?}"
    );
    assert_eq!(
        demo.provider.get_transaction_count(bot).await.unwrap(),
        before
    );

    let a = guard
        .review(&trip_at("pause-direct", 1_000), &exec)
        .await
        .into_approved()
        .unwrap();
    exec.execute(a, None).await.unwrap();
    demo.safe_exec(demo.vault, GuardedVault::unpauseCall {}.abi_encode())
        .await;
    let r = reject(guard.review(&trip_at("pause-module", 30_000), &exec).await);
    assert!(
        matches!(
            r,
            Some(Rejection::TargetCooldown {
                ready_at_ms: 61_000,
                ..
            })
        ),
        "{r:?}"
    );
    let r = reject(guard.review(&trip_at("pause-module", 61_000), &exec).await);
    assert_eq!(r, Some(Rejection::RateLimited));
    assert!(!demo.paused().await);
}

/// RPC URLs carry API keys: a connection error never shows the URL.
#[tokio::test]
async fn rpc_errors_never_show_the_endpoint_url() {
    let config = common::load_config(
        "guardian",
        "[guardian]\nmode = \"enforce\"\n\n[networks.main]\nchain_id = 1\nrpc = [\"http://127.0.0.1:9/v3/CANARYAPIKEY\"]\n",
    );
    let err = Executors::connect(&config, "main", &Default::default(), None)
        .await
        .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("CANARYAPIKEY"), "{shown}");
    assert!(shown.contains("eth_chainId"), "{shown}");
}

#[tokio::test]
async fn unknown_executors_and_missing_keys_are_reported() {
    let demo = Demo::new(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = demo.config(dir.path(), "");
    let mut keys = demo.keys();
    keys.remove("owner2");
    let err = Executors::connect(&config, "local", &keys, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ExecError::MissingKey { ref key, .. } if key == "owner2"),
        "{err}"
    );
}
