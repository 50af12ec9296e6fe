//! Issue 14: what the operator believes runs is what runs. The rollout of
//! docs/deploy.md, through the real binary on anvil: dry-run (a drain trips,
//! nothing is sent) → restart in enforce on the same journal → a second
//! drain inside the dry-run trip's policy cooldown and the guard's target
//! cooldown → the pause lands. Neither cooldown was consumed by anything sent,
//! so neither holds.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy::primitives::U256;
use alloy::providers::Provider;
use common::{Demo, GuardedVault};
use guardian::journal::{HistoryEntry, HistoryFilter, Journal};

const POLICY: &str = r#"
[[policy]]
id = "vault-drain"
description = "Vault assets fall by 30% within one block"
severity = "critical"
action = "pause-module"
cooldown = "50 blocks"
[policy.when]
kind = "change"
metric = "vault.total_assets"
window = "1 block"
direction = "down"
by = "30%"
"#;

/// Generous: the machine running the tests may be busy.
const WAIT: Duration = Duration::from_secs(90);

struct Guardian {
    child: Child,
    log: PathBuf,
}

impl Guardian {
    fn start(demo: &Demo, dir: &Path, n: usize) -> Guardian {
        let key = |i: usize| format!("0x{}", alloy::hex::encode(demo.anvil.keys()[i].to_bytes()));
        let log = dir.join(format!("guardian-{n}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_guardian"))
            .arg("run")
            .arg("--config")
            .arg(dir.join("guardian.toml"))
            .arg("--policies")
            .arg(dir.join("policy.toml"))
            .env("UNUSED_IN_TESTS_BOT", key(4))
            .env("UNUSED_IN_TESTS_STRANGER", key(5))
            .env("UNUSED_IN_TESTS_OWNER1", key(1))
            .env("UNUSED_IN_TESTS_OWNER2", key(2))
            .env("GUARDIAN_LOG", "info")
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("the guardian binary starts");
        Guardian { child, log }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "guardian did not stop:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Guardian {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn history(journal: &Path) -> Vec<HistoryEntry> {
    Journal::open_read_only(journal)
        .and_then(|j| j.history(&HistoryFilter::default()))
        .unwrap_or_default()
}

fn processed(journal: &Path) -> Option<u64> {
    Journal::open_read_only(journal)
        .ok()?
        .processed()
        .ok()?
        .into_iter()
        .find(|(n, _)| n == "local")?
        .1
}

async fn until(what: &str, g: &mut Guardian, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        if let Some(status) = g.child.try_wait().unwrap() {
            panic!("guardian exited ({status}):\n{}", g.output());
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; output:\n{}",
            g.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes guardian.toml in `mode` (same journal, same guard limits) and the policy.
fn configure(demo: &Demo, dir: &Path, mode: &str) {
    let tail = format!(
        "[metrics.\"vault.total_assets\"]\ndescription = \"assets the vault holds\"\nnetwork = \"local\"\nsource = {{ kind = \"call\", to = \"{}\", signature = \"totalAssets()(uint256)\" }}\n\n[guard]\ntarget_cooldown = \"10m\"\n\n[journal]\npath = \"guardian.db\"\n",
        demo.vault
    );
    demo.config_with(dir, "", &tail);
    let path = dir.join("guardian.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replacen("mode = \"enforce\"", &format!("mode = \"{mode}\""), 1);
    std::fs::write(&path, text).unwrap();
    std::fs::write(dir.join("policy.toml"), POLICY).unwrap();
}

async fn withdraw(demo: &Demo, amount: u64) -> u64 {
    let deployer = demo.anvil.addresses()[0];
    let receipt = GuardedVault::new(demo.vault, &demo.provider)
        .withdraw(U256::from(amount), deployer, deployer)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status());
    receipt.block_number.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_trip_then_enforce_restart_pauses_a_drain_inside_the_old_cooldown() {
    let demo = Demo::new(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("guardian.db");
    demo.deposit(900_000).await;
    let funded = demo.provider.get_block_number().await.unwrap();

    // 1. Dry-run: a 40% drain trips; nothing is sent.
    configure(&demo, dir.path(), "dry-run");
    let mut g = Guardian::start(&demo, dir.path(), 1);
    until("the healthy vault to be read", &mut g, || {
        processed(&journal).is_some_and(|b| b >= funded)
    })
    .await;
    let first_drain = withdraw(&demo, 360_000).await;
    until("the dry-run decision", &mut g, || {
        history(&journal).iter().any(|e| e.status == "dry-run")
    })
    .await;
    until("the drain's block to be processed", &mut g, || {
        processed(&journal).is_some_and(|b| b >= first_drain)
    })
    .await;
    assert!(!demo.paused().await, "dry-run sends nothing");
    assert_eq!(g.stop(), Some(0));

    // 2. Restart in enforce on the same journal; the restart re-reads the dry-run trip's block.
    configure(&demo, dir.path(), "enforce");
    let mut g = Guardian::start(&demo, dir.path(), 2);
    until("the restart to resume", &mut g, || {
        g_output_contains(
            &dir.path().join("guardian-2.log"),
            "resuming after the last processed block",
        )
    })
    .await;
    // 3. A second drain, 41.7% of what is left, a few blocks later: inside the
    // policy's 50-block cooldown and the guard's 10-minute target cooldown of the dry-run trip.
    let second_drain = withdraw(&demo, 225_000).await;
    assert!(second_drain < first_drain + 50, "inside the old cooldown");
    // 4. The pause lands.
    until("the pause to land", &mut g, || {
        history(&journal).iter().any(|e| e.status == "landed")
    })
    .await;
    assert!(demo.paused().await, "the vault is paused on chain");
    let entries = history(&journal);
    let landed = entries.iter().find(|e| e.status == "landed").unwrap();
    assert_eq!(landed.block, second_drain, "{entries:#?}");
    assert_eq!(landed.mode, "enforce");
    let log = g.output();
    assert!(!log.contains("in its cooldown"), "{log}");
    assert_eq!(g.stop(), Some(0));
    println!(
        "rollout: dry-run trip at block {first_drain}; enforce restart; pause landed for the drain at block {second_drain}"
    );
}

fn g_output_contains(log: &Path, needle: &str) -> bool {
    std::fs::read_to_string(log).is_ok_and(|t| t.contains(needle))
}
