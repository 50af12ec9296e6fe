//! Onboarding on a real chain: `guardian setup plan` writes a Transaction
//! Builder batch; the Safe's owners execute that file (as the Safe app does:
//! one MultiSendCallOnly delegatecall, signed by two of three owners); `setup
//! verify` then accepts the module, and names every hand-made difference.
//! Also: `guardian init` output passes `guardian check`.

mod common;

use std::path::Path;
use std::process::Command;

use alloy::primitives::{Address, B256, U256};
use alloy::providers::DynProvider;
use alloy::sol;
use alloy::sol_types::SolCall;
use common::{DemoToken, GuardedVault, GuardianModule, SafeOwners};
use guardian::config::text::{LocalNetwork, env_key, pause_action};
use guardian::policy::model::Mode;
use serde_json::Value;

sol!(
    #[sol(rpc)]
    MultiSendCallOnly,
    "contracts/artifacts/safe/MultiSendCallOnly.json"
);

const GUARDIAN: &str = env!("CARGO_BIN_EXE_guardian");

struct Chain {
    anvil: alloy::node_bindings::AnvilInstance,
    provider: DynProvider,
    safe: Address,
    owners: SafeOwners,
    vault: Address,
    multisend: Address,
}

/// A demo token minted by `deployer`, and a vault of it administered by `admin` with `cap`.
async fn vault(p: &DynProvider, deployer: Address, admin: Address, cap: u64) -> Address {
    let token = DemoToken::deploy(p, "Demo USD".into(), "dUSD".into(), deployer)
        .await
        .unwrap();
    let vault = GuardedVault::deploy(p, *token.address(), admin, U256::from(cap))
        .await
        .unwrap();
    *vault.address()
}

/// A 2-of-3 Safe owning a vault, and MultiSendCallOnly; no module anywhere.
async fn chain() -> Chain {
    let anvil = common::anvil(&[]);
    let owners = common::safe_owners(&anvil).await;
    let provider = owners.provider.clone();
    let safe = owners.deploy_safe().await.unwrap();
    let vault = vault(&provider, anvil.addresses()[0], safe, 1_000_000).await;
    let multisend = MultiSendCallOnly::deploy(&provider).await.unwrap();
    Chain {
        safe,
        owners,
        vault,
        multisend: *multisend.address(),
        provider,
        anvil,
    }
}

impl Chain {
    /// What the Safe app does with an imported batch: one delegatecall to
    /// MultiSendCallOnly carrying every call of the file, all or none.
    async fn exec_batch_file(&self, file: &Value) {
        let calls = guardian::setup::txbuilder::calls(file).unwrap();
        let data = guardian::devnet::multisend_calldata(&calls);
        // operation 1: delegatecall
        let exec = self.owners.exec(self.safe, self.multisend, data, 1);
        exec.await.unwrap_or_else(|e| panic!("{e}"));
    }

    /// One module call by the Safe's owners, bypassing the plan (a hand-made change).
    async fn exec_on(&self, to: Address, data: Vec<u8>) {
        let exec = self.owners.exec(self.safe, to, data, 0);
        exec.await.unwrap_or_else(|e| panic!("{e}"));
    }

    /// The set-up planned for the module `guardian setup` predicts, guarded by
    /// anvil key 4: (that guardian, the module, the configuration's path).
    fn planned(&self, dir: &Path) -> (Address, Address, std::path::PathBuf) {
        let guardian_bot = common::signer(&self.anvil, 4).address();
        let module = guardian::setup::predicted_module(self.safe, B256::ZERO);
        (guardian_bot, module, self.config(dir, module, guardian_bot))
    }

    fn config(&self, dir: &Path, module: Address, guardian: Address) -> std::path::PathBuf {
        let rpc = self.anvil.endpoint();
        let network = LocalNetwork {
            policies: Some(vec!["policy.toml".to_string()]),
            ..LocalNetwork::new(Mode::Enforce, &[&rpc], &[])
        };
        let text = format!(
            r#"
{network}{key}
[journal]
path = "guardian.db"

[executors.module]
kind = "module"
module = "{module}"
key = "bot"
network = "local"

[metrics."vault.total_assets"]
description = "assets held by the vault"
network = "local"
source = {{ kind = "call", to = "{vault}", signature = "totalAssets()(uint256)" }}
{pause}
[actions.lower-cap]
kind = "set-parameter"
description = "lower the vault's supply cap"
target = "{vault}"
function = "setSupplyCap(uint256)"
executor = "module"
getter = "supplyCap()"
min = 1000
max = 10000000
max_change_bps = 5000
min_delay = "1h"
value = {{ step_bps = 2500, direction = "down" }}

[setup]
safe = "{safe}"
executor = "module"
guardians = ["{guardian}"]
target_cooldown = "10m"
target_rate_limit = "3/1d"
"#,
            key = env_key("bot", "GUARDIAN_TEST_BOT_KEY_UNSET"),
            pause = pause_action("pause-vault", "pause the vault", self.vault, "module", true),
            vault = self.vault,
            safe = self.safe,
        );
        std::fs::write(
            dir.join("policy.toml"),
            r#"
[[policy]]
id = "vault-empty"
description = "the vault holds nothing"
severity = "critical"
action = "pause-vault"
cooldown = "1h"
[policy.when]
kind = "threshold"
metric = "vault.total_assets"
op = "<"
value = 1
"#,
        )
        .unwrap();
        let path = dir.join("guardian.toml");
        std::fs::write(&path, text).unwrap();
        path
    }
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `guardian setup verify --config config`.
fn setup_verify(config: &str) -> Out {
    guardian(&["setup", "verify", "--config", config])
}

/// `guardian setup verify` accepts the set-up on chain.
fn assert_verified(config: &str) {
    let ok = setup_verify(config);
    assert_eq!(ok.code, 0, "{}{}", ok.stdout, ok.stderr);
    assert!(
        ok.stdout.contains("matches the configuration"),
        "{}",
        ok.stdout
    );
}

/// `guardian setup plan --config config --out out`.
fn setup_plan(config: &str, out: &str) -> Out {
    guardian(&["setup", "plan", "--config", config, "--out", out])
}

fn guardian(args: &[&str]) -> Out {
    guardian_env(args, &[])
}

fn guardian_env(args: &[&str], env: &[(&str, String)]) -> Out {
    let mut cmd = Command::new(GUARDIAN);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The fields the Transaction Builder's importer relies on, and its checksum.
fn assert_batch_format(file: &Value, chain_id: u64, safe: Address) {
    assert_eq!(file["version"], "1.0");
    assert_eq!(file["chainId"], chain_id.to_string());
    assert!(file["createdAt"].as_u64().unwrap() > 1_600_000_000_000);
    let meta = &file["meta"];
    for key in [
        "name",
        "description",
        "txBuilderVersion",
        "createdFromOwnerAddress",
    ] {
        assert!(meta[key].is_string(), "meta.{key} missing: {meta}");
    }
    assert_eq!(meta["createdFromSafeAddress"], safe.to_checksum(None));
    assert_eq!(
        meta["checksum"].as_str().unwrap(),
        guardian::setup::txbuilder::checksum(file)
    );
    let txs = file["transactions"].as_array().unwrap();
    assert!(!txs.is_empty());
    for tx in txs {
        assert!(tx["to"].as_str().unwrap().parse::<Address>().is_ok());
        // The importer refuses numbers: value and every input are strings.
        assert_eq!(tx["value"], "0");
        match tx["data"].as_str() {
            Some(data) => assert!(data.starts_with("0x")),
            None => {
                let m = &tx["contractMethod"];
                assert!(m["name"].is_string() && m["payable"] == false);
                let values = tx["contractInputsValues"].as_object().unwrap();
                for input in m["inputs"].as_array().unwrap() {
                    for k in ["internalType", "name", "type"] {
                        assert!(input[k].is_string());
                    }
                    assert!(values[input["name"].as_str().unwrap()].is_string());
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_executed_by_the_safe_owners_verifies_and_a_hand_altered_permission_fails() {
    let chain = chain().await;
    let dir = tempfile::tempdir().unwrap();
    let (guardian_bot, module, config) = chain.planned(dir.path());
    let config = config.to_str().unwrap();
    let batch = dir.path().join("batch.json");

    // Nothing deployed yet: verify names it and fails.
    let before = setup_verify(config);
    assert_eq!(before.code, 1, "{}{}", before.stdout, before.stderr);
    assert!(
        before
            .stdout
            .contains(&format!("module: no contract at {module}"))
    );
    assert!(before.stdout.contains("is not enabled on the Safe"));

    // The plan against the chain is the full set-up.
    let plan = setup_plan(config, batch.to_str().unwrap());
    assert_eq!(plan.code, 0, "{}{}", plan.stdout, plan.stderr);
    assert!(plan.stdout.contains("6 transaction(s)"), "{}", plan.stdout);
    for needle in [
        "Deploy the GuardianModule",
        "Enable the module",
        &format!("Add guardian {guardian_bot}"),
        "Allow guardians to call pause()",
        "only values from 1000 to 10000000, by at most 5000 bps",
        "cooldown 10m, at most 3 action(s) per 1d",
    ] {
        assert!(
            plan.stdout.contains(needle),
            "missing {needle:?} in\n{}",
            plan.stdout
        );
    }
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&batch).unwrap()).unwrap();
    assert_batch_format(&file, 31337, chain.safe);
    // A fresh plan (no chain read) is the same batch.
    let fresh = dir.path().join("fresh.json");
    let f = guardian(&[
        "setup",
        "plan",
        "--fresh",
        "--config",
        config,
        "--out",
        fresh.to_str().unwrap(),
    ]);
    assert_eq!(f.code, 0, "{}", f.stderr);
    let fresh: Value = serde_json::from_str(&std::fs::read_to_string(&fresh).unwrap()).unwrap();
    assert_eq!(fresh["transactions"], file["transactions"]);

    // The owners execute the file as the Safe app would.
    chain.exec_batch_file(&file).await;
    let m = GuardianModule::new(module, &chain.provider);
    assert_eq!(m.safe().call().await.unwrap(), chain.safe);
    assert_eq!(m.guardians().call().await.unwrap(), vec![guardian_bot]);

    assert_verified(config);
    let nothing = setup_plan(config, batch.to_str().unwrap());
    assert_eq!(nothing.code, 0);
    assert!(
        nothing.stdout.contains("no module transaction to sign"),
        "{}",
        nothing.stdout
    );

    // By hand: a wider max on the supply cap, and an extra guardian.
    let stranger = common::signer(&chain.anvil, 5).address();
    chain
        .exec_on(
            module,
            GuardianModule::setParameterPermissionCall {
                target: chain.vault,
                setterSelector: GuardedVault::setSupplyCapCall::SELECTOR.into(),
                getterSelector: GuardedVault::supplyCapCall::SELECTOR.into(),
                min: U256::from(1000),
                max: U256::from(99_000_000),
                maxChangeBps: U256::from(5000),
                minDelay: U256::from(3600),
            }
            .abi_encode(),
        )
        .await;
    chain
        .exec_on(
            module,
            GuardianModule::addGuardianCall { guardian: stranger }.abi_encode(),
        )
        .await;
    let bad = setup_verify(config);
    assert_eq!(bad.code, 1, "{}{}", bad.stdout, bad.stderr);
    assert!(bad.stdout.contains("2 difference(s)"), "{}", bad.stdout);
    assert!(
        bad.stdout.contains(&format!(
            "parameter setSupplyCap(uint256) on {}: max is 99000000 on chain, 10000000 in the configuration",
            chain.vault
        )),
        "{}",
        bad.stdout
    );
    assert!(
        bad.stdout.contains(&format!(
            "guardians: {stranger} is a guardian on chain but not in [setup] guardians"
        )),
        "{}",
        bad.stdout
    );

    // `run` verifies first and refuses to start on the difference (before any key is read).
    let run = guardian(&["run", "--config", config]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("not starting"), "{}", run.stderr);
    assert!(
        run.stderr.contains("max is 99000000 on chain"),
        "{}",
        run.stderr
    );

    // The plan now fixes exactly these two, and afterwards verify passes again.
    let fix = setup_plan(config, batch.to_str().unwrap());
    assert_eq!(fix.code, 0, "{}", fix.stderr);
    assert!(fix.stdout.contains("2 transaction(s)"), "{}", fix.stdout);
    assert!(fix.stdout.contains(&format!("Remove guardian {stranger}")));
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&batch).unwrap()).unwrap();
    assert_batch_format(&file, 31337, chain.safe);
    chain.exec_batch_file(&file).await;
    let ok = setup_verify(config);
    assert_eq!(ok.code, 0, "{}{}", ok.stdout, ok.stderr);

    // `run` with a key that is not a guardian refuses to start, naming it.
    let key = |i: usize| format!("0x{}", alloy::hex::encode(chain.anvil.keys()[i].to_bytes()));
    let wrong = guardian_env(
        &["run", "--config", config],
        &[("GUARDIAN_TEST_BOT_KEY_UNSET", key(5))],
    );
    assert_eq!(wrong.code, 1, "{}{}", wrong.stdout, wrong.stderr);
    assert!(
        wrong.stderr.contains(&format!(
            "has address {stranger}, which is not in [setup] guardians"
        )),
        "{}",
        wrong.stderr
    );
    // With the guardian's key, the set-up verifies and the pipeline starts.
    let mut child = Command::new(GUARDIAN)
        .args(["run", "--config", config])
        .env("GUARDIAN_TEST_BOT_KEY_UNSET", key(4))
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
        let line = line.unwrap();
        seen.push(line.clone());
        if line.contains("guardian starting") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        seen.iter().any(|l| l.contains("setup verified")),
        "{seen:?}"
    );
    assert!(
        seen.last().unwrap().contains("guardian starting"),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_tells_a_module_of_another_safe_apart() {
    let chain = chain().await;
    let dir = tempfile::tempdir().unwrap();
    // A GuardianModule deployed for another Safe (anvil key 9 as its "Safe").
    let other = GuardianModule::deploy(&chain.provider, chain.anvil.addresses()[9])
        .await
        .unwrap();
    let config = chain.config(dir.path(), *other.address(), chain.anvil.addresses()[4]);
    let out = setup_verify(config.to_str().unwrap());
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(&format!(
            "is not this guardian's GuardianModule for the configured Safe (its safe() is {})",
            chain.anvil.addresses()[9]
        )),
        "{}",
        out.stdout
    );
    let plan = guardian(&["setup", "plan", "--config", config.to_str().unwrap()]);
    assert_eq!(plan.code, 1, "{}", plan.stdout);
    assert!(
        plan.stderr.contains("No Safe transaction can fix this"),
        "{}",
        plan.stderr
    );

    // A Safe address with no contract (a typo, or the wrong network) is named as such.
    let nowhere = "0x000000000000000000000000000000000000dEaD";
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &format!("safe = \"{}\"", chain.safe),
        &format!("safe = \"{nowhere}\""),
    );
    std::fs::write(&config, text).unwrap();
    let out = setup_verify(config.to_str().unwrap());
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains(&format!("safe: no contract at {nowhere}")),
        "{}",
        out.stdout
    );
}

/// The ```toml blocks of docs/deploy.md that start with one of `starts`, in order.
fn deploy_guide_examples(starts: &[&str]) -> Vec<String> {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/deploy.md")).unwrap();
    doc.split("```toml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .filter(|b| starts.iter().any(|s| b.starts_with(s)))
        .map(str::to_string)
        .collect()
}

/// The `[setup]` example in docs/deploy.md loads as written.
#[test]
fn the_setup_example_in_the_deployment_guide_loads() {
    let blocks = deploy_guide_examples(&["[setup]"]);
    let block = blocks
        .first()
        .expect("a ```toml block starting with [setup]");
    let text = format!(
        r#"
[guardian]
mode = "dry-run"
[networks.mainnet]
chain_id = 1
rpc = ["https://rpc.example.org"]
[keys.guardian-bot]
source = "env"
env = "GUARDIAN_BOT_KEY"
[executors.module]
kind = "module"
module = "0x00000000000000000000000000000000000000aa"
key = "guardian-bot"
network = "mainnet"
{}"#,
        block
            .replace("0xYourSafe", "0x00000000000000000000000000000000000000cc")
            .replace("0xBotAddress", "0x00000000000000000000000000000000000000dd")
    );
    let config = common::load_config("guardian", &text);
    let setup = config.setup.unwrap();
    assert_eq!(setup.target_rate_limit.count, 3);
    assert!(setup.verify_before_run);
}

#[test]
fn init_output_passes_check_for_every_shape_and_plans_offline() {
    let dir = tempfile::tempdir().unwrap();
    let safe = common::INIT_SAFE;
    for shape in ["bridge", "lending", "vault", "amm"] {
        let d = dir.path().join(shape);
        let d = d.to_str().unwrap();
        let second_guardian = ["--guardian", "0x4444444444444444444444444444444444444444"];
        let init = guardian(&common::init_args(d, shape, &second_guardian));
        assert_eq!(init.code, 0, "{shape}: {}", init.stderr);
        let config = format!("{d}/guardian.toml");
        let text = std::fs::read_to_string(&config).unwrap();
        // Never a key: only where one lives.
        assert!(text.contains("source = \"keystore\"") && !text.contains("private_key"));
        assert!(std::path::Path::new(&format!("{d}/keys.example")).exists());
        // Issue 14: a metric without a source is a blind spot: `check` refuses
        // it (exit 1), naming each policy and metric still to fill in.
        let check = guardian(&["check", "--config", &config]);
        assert_eq!(check.code, 1, "{shape}: {}{}", check.stdout, check.stderr);
        // (A template policy says its pattern matches no metric yet.)
        assert!(
            check.stderr.contains("which has no `source`")
                || check
                    .stderr
                    .contains("match no metric defined under [metrics]"),
            "{shape}: {}",
            check.stderr
        );
        // The metrics whose suggested source names an address of the team's own.
        let mut placeholder = Vec::new();
        let mut current = String::new();
        for l in text.lines() {
            if let Some(name) = l
                .strip_prefix("[metrics.\"")
                .and_then(|r| r.strip_suffix("\"]"))
            {
                current = name.to_string();
            }
            if l.starts_with("# source = ") && l.contains('<') {
                placeholder.push(current.clone());
            }
        }

        // The suggested sources that need no address of the team's own are valid as written.
        let uncommented: String = text
            .lines()
            .map(|l| match l.strip_prefix("# source = ") {
                Some(src) if !src.contains('<') => format!("source = {src}"),
                _ => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert_ne!(uncommented, text, "{shape}: no source suggestion to try");
        std::fs::write(&config, &uncommented).unwrap();
        let check = guardian(&["check", "--config", &config]);
        if placeholder.is_empty() {
            assert_eq!(
                check.code, 0,
                "{shape} with sources: {}{}",
                check.stdout, check.stderr
            );
            assert!(check.stdout.contains("mode dry-run"), "{}", check.stdout);
        } else {
            // Only the metrics still waiting for the team's own address are refused.
            assert_eq!(check.code, 1, "{shape}: {}", check.stderr);
            for l in check.stderr.lines().filter(|l| l.contains(": policy `")) {
                assert!(
                    placeholder
                        .iter()
                        .any(|m| l.contains(&format!("metric `{m}`"))),
                    "{shape}: {l}"
                );
            }
        }

        // The complete set-up is planned without a chain.
        let batch = format!("{d}/batch.json");
        let plan = guardian(&[
            "setup", "plan", "--fresh", "--config", &config, "--out", &batch,
        ]);
        assert_eq!(plan.code, 0, "{shape}: {}", plan.stderr);
        // deploy, enable, two guardians, one pause (lending's two actions share pause()), limits
        assert!(
            plan.stdout.contains("6 transaction(s)"),
            "{shape}: {}",
            plan.stdout
        );
        let file: Value = serde_json::from_str(&std::fs::read_to_string(&batch).unwrap()).unwrap();
        assert_batch_format(&file, 1, safe.parse().unwrap());

        // Never overwrites.
        let again = guardian(&common::init_args(d, shape, &[]));
        assert_eq!(again.code, 2);
        assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    }
    let missing = guardian(&["init", "--no-input", "--dir", dir.path().to_str().unwrap()]);
    assert_eq!(missing.code, 2);
    assert!(
        missing
            .stderr
            .contains("missing --shape, --rpc, --safe, --target, --guardian"),
        "{}",
        missing.stderr
    );
}

/// The forge script performs the same set-up as the plan, on a local chain:
/// `setup verify` accepts its result against the same configuration.
#[tokio::test(flavor = "multi_thread")]
async fn the_forge_script_sets_up_what_verify_accepts() {
    let chain = chain().await;
    let dir = tempfile::tempdir().unwrap();
    let (guardian_bot, _module, config) = chain.planned(dir.path());
    let key = |i: usize| format!("0x{}", alloy::hex::encode(chain.anvil.keys()[i].to_bytes()));
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(format!(
        "{root}/node_modules/@foundry-rs/forge-linux-amd64/bin/forge"
    ))
    .current_dir(format!("{root}/contracts"))
    .args([
        "script",
        "script/SetupGuardian.s.sol:SetupGuardian",
        "--rpc-url",
        &chain.anvil.endpoint(),
        "--broadcast",
        "--offline",
        "--use",
        "./solc-wrapper",
    ])
    .env("GUARDIAN_SAFE", chain.safe.to_string())
    .env("GUARDIAN_OWNER_KEYS", format!("{},{}", key(1), key(2)))
    .env("GUARDIAN_GUARDIANS", guardian_bot.to_string())
    .env("GUARDIAN_TARGET", chain.vault.to_string())
    .env("GUARDIAN_COOLDOWN", "600")
    .env("GUARDIAN_MAX_ACTIONS", "3")
    .env("GUARDIAN_PERIOD", "86400")
    .env("GUARDIAN_SETTER", "setSupplyCap(uint256)")
    .env("GUARDIAN_GETTER", "supplyCap()")
    .env("GUARDIAN_MIN", "1000")
    .env("GUARDIAN_MAX", "10000000")
    .env("GUARDIAN_MAX_CHANGE_BPS", "5000")
    .env("GUARDIAN_MIN_DELAY", "3600")
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "forge script failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_verified(config.to_str().unwrap());
}

/// A target the Safe holds no pauser role on: the module's pause would fail
/// during an attack, so verify names it now (and plan flags it).
#[tokio::test(flavor = "multi_thread")]
async fn verify_names_a_target_the_safe_cannot_pause() {
    let chain = chain().await;
    let dir = tempfile::tempdir().unwrap();
    // A second vault administered by anvil key 0, not by the Safe.
    let deployer = chain.anvil.addresses()[0];
    let other = vault(&chain.provider, deployer, deployer, 1_000).await;
    let (_, _, config) = chain.planned(dir.path());
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        r#"
[actions.pause-other]
kind = "pause"
description = "pause a vault the Safe has no role on"
target = "{}"
function = "pause()"
paused_getter = "paused()"
executor = "module"
"#,
        other
    ));
    std::fs::write(&config, text).unwrap();
    let config = config.to_str().unwrap();
    let out = setup_verify(config);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(&format!(
            "pause pause() on {}: the Safe itself cannot do it today, so the module's pause would fail: pause() called by the Safe reverts: AccessControlUnauthorizedAccount",
            other
        )),
        "{}",
        out.stdout
    );
    // The vault the Safe does administer is not named.
    assert!(!out.stdout.contains(&format!(
        "pause pause() on {}: the Safe itself cannot",
        chain.vault
    )));
    let plan = setup_plan(config, dir.path().join("b.json").to_str().unwrap());
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(
        plan.stdout.contains("NEEDS ATTENTION, outside this batch"),
        "{}",
        plan.stdout
    );
}

/// The `[journal]` and `[observe]`/`[notify]` examples in docs/deploy.md load as written.
#[test]
fn the_journal_and_monitoring_examples_in_the_deployment_guide_load() {
    let blocks = deploy_guide_examples(&["[journal]", "[observe]"]);
    assert_eq!(blocks.len(), 2, "a [journal] and an [observe] example");
    let text = format!(
        "[guardian]\nmode = \"enforce\"\n[networks.mainnet]\nchain_id = 1\nrpc = [\"https://rpc.example.org\"]\n{}\n{}",
        blocks[0], blocks[1]
    );
    let config = common::load_config("guardian", &text);
    let journal = config.journal.expect("[journal]");
    assert_eq!(journal.replica, Some(1));
    assert!(config.observe.is_some());
    assert_eq!(config.notify.len(), 3);
}
