//! The scenario library, played on real anvil chains: every scenario in
//! `simulations/*.toml` meets its `expect` block (attacks paused with the
//! funds they state saved, benign stress never paused); `--rpc` runs the same
//! script against a node the test started; a dry run sends nothing and
//! reports the transaction it would have sent.

#[path = "common/traces.rs"]
mod traces;

use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use guardian::scenario::{self, Options, report::ScenarioReport};
use traces::root;

fn options() -> Options {
    Options {
        anvil_bin: root().join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"),
        rpc: None,
        ws: None,
        dry_run: false,
    }
}

async fn play(path: &Path, options: &Options) -> ScenarioReport {
    let s = scenario::load(path).unwrap_or_else(|e| panic!("{e}"));
    scenario::run(&s, options)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_in_simulations_meets_its_expect_block() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("simulations"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 9, "the library has its scenarios: {files:?}");
    let options = options();
    // One scenario at a time (each runs two chains side by side, each with
    // its benign mempool and, protected, the guardian screening all of it):
    // two at a time starved the screening on a 2-core machine, and a pending
    // attack was judged after its block was mined.
    let reports: Vec<(PathBuf, ScenarioReport)> = futures_util::stream::iter(files)
        .map(|f| {
            let options = options.clone();
            async move {
                let r = play(&f, &options).await;
                (f, r)
            }
        })
        .buffer_unordered(1)
        .collect()
        .await;
    let mut failed = Vec::new();
    for (f, r) in &reports {
        let s = scenario::load(f).unwrap();
        eprintln!(
            "{:<34} {:<6} lost {} {} unprotected, {} protected, saved {}; {}",
            r.scenario,
            r.kind,
            r.funds.lost_unprotected,
            r.funds.unit,
            r.funds.lost_protected,
            r.funds.saved_pct.map_or("-".into(), |p| format!("{p:.1}%")),
            if r.holds { "holds" } else { "FAILED" }
        );
        if !r.holds {
            failed.push(scenario::report::render(r, &s));
        }
        if r.kind == "attack" {
            assert!(
                r.protected.any_paused(),
                "{}: the attack was paused",
                r.scenario
            );
            assert!(
                r.funds.lost_unprotected > 0.0,
                "{}: the attack works without the guardian",
                r.scenario
            );
        } else {
            // Benign stress never trips a pause; a bounded parameter change
            // (aave-v3-utilization-stress lowers a borrow cap) is not a pause.
            assert!(
                !r.protected.any_paused()
                    && r.protected
                        .trips
                        .iter()
                        .all(|t| r.protected.parameter_actions.contains(&t.action)),
                "{}: benign stress never trips a pause",
                r.scenario
            );
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_runs_the_same_script_against_an_existing_node() {
    let anvil = alloy::node_bindings::Anvil::at(options().anvil_bin)
        .args(["--order", "fees"])
        .spawn();
    let options = Options {
        rpc: Some(anvil.endpoint()),
        ..options()
    };
    let r = play(
        &root().join("simulations/nomad-2022-copycats.toml"),
        &options,
    )
    .await;
    assert_eq!(r.node, "an existing node (--rpc)");
    assert!(r.holds, "{r:?}");
    assert_eq!(r.funds.lost_unprotected, 1_000_000.0);
    assert!(r.funds.saved_pct.unwrap() >= 90.0);
    assert!(r.protected.any_paused());
    // Both runs used the node the test started: their blocks follow each other.
    let u = r.unprotected.as_ref().unwrap();
    let last_unprotected = u.transactions.iter().filter_map(|t| t.block).max().unwrap();
    let first_protected = r
        .protected
        .transactions
        .iter()
        .filter_map(|t| t.block)
        .min()
        .unwrap();
    assert!(first_protected > last_unprotected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_sends_nothing_and_reports_the_would_be_pause() {
    let options = Options {
        dry_run: true,
        ..options()
    };
    let r = play(
        &root().join("simulations/nomad-2022-copycats.toml"),
        &options,
    )
    .await;
    assert!(r.dry_run);
    assert!(r.unprotected.is_none(), "a dry run plays once");
    assert!(!r.protected.any_paused(), "nothing was paused");
    assert!(!r.protected.trips.is_empty(), "the policy tripped");
    assert!(!r.protected.executions.is_empty());
    for e in &r.protected.executions {
        assert_eq!(e.result, "dry-run", "{e:?}");
        assert!(
            e.block.is_none() && e.seen_in_mempool_ms.is_none(),
            "never broadcast: {e:?}"
        );
        let w = e
            .would_send
            .as_ref()
            .expect("the would-be transaction is reported");
        // GuardianModule.pause(address,bytes4)
        let selector = &alloy::primitives::keccak256("pause(address,bytes4)")[..4];
        assert_eq!(w.selector, format!("0x{}", alloy::hex::encode(selector)));
        assert!(w.to.is_some());
    }
    // The attack was not stopped: the dry run reports what it took.
    assert_eq!(r.protected.lost, 1_000_000.0);
    assert!(
        r.holds,
        "paused = true holds as 'a pause would have been sent' in dry-run: {r:?}"
    );
}

#[test]
fn a_malformed_scenario_exits_1_with_its_location() {
    let dir = std::env::temp_dir().join(format!("guardian-scenario-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "[scenario]\nname = \"x\"\ndescription = \"d\"\nkind = \"attack\"\nprotocol = \"bridge\"\nblock_time = \"1\"\npolicies = [\"nope.toml\"]\n\n[[step]]\nat = \"0s\"\nkind = \"attack\"\naction = \"copycat\"\nslice = \"10%\"\n\n[expect]\npaused = true\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_guardian"))
        .args(["simulate", path.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: scenario.block_time: `1` has no unit")
            && stderr.contains("bad.toml:6:14\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: scenario.policies:") && stderr.contains("bad.toml:7:13\n"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Policies that only fail to load once the scenario's configuration exists
/// (a metric the protocol does not define) exit 1 with every problem shown as
/// `check` shows it: location, source line, caret, help.
#[test]
fn a_scenario_whose_policy_does_not_load_exits_1_with_the_problem_shown() {
    let dir = std::env::temp_dir().join(format!("guardian-scenario-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policies = std::fs::read_to_string(root().join("simulations/policies/bridge.toml"))
        .unwrap()
        .replace(
            "metric = \"bridge.pending_outflow\"",
            "metric = \"bridge.pending_outflw\"",
        );
    std::fs::write(dir.join("bridge.toml"), policies).unwrap();
    let scenario = std::fs::read_to_string(root().join("simulations/nomad-2022-copycats.toml"))
        .unwrap()
        .replace(
            "policies/bridge.toml",
            &dir.join("bridge.toml").display().to_string(),
        );
    let path = dir.join("copycats.toml");
    std::fs::write(&path, scenario).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_guardian"))
        .args(["simulate", path.to_str().unwrap(), "--dry-run", "--anvil"])
        .arg(options().anvil_bin)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("bridge.pending_outflw"), "{stderr}");
    assert!(
        stderr.contains("bridge.toml:"),
        "the file is named: {stderr}"
    );
    assert!(
        stderr.contains("metric = \"bridge.pending_outflw\""),
        "the line is shown: {stderr}"
    );
    assert!(stderr.contains("^^^"), "a caret under it: {stderr}");
    assert!(stderr.contains("problem(s) found"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_cli_prints_json_and_exits_0_when_expect_holds_and_1_when_not() {
    let bin = env!("CARGO_BIN_EXE_guardian");
    let dir = std::env::temp_dir().join(format!("guardian-scenario-exit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The whale scenario, expecting a pause that a benign withdrawal must not cause.
    let whale = std::fs::read_to_string(root().join("simulations/benign-whale-withdrawal.toml"))
        .unwrap()
        .replace(
            "policies = [\"policies/lending.toml\"]",
            &format!(
                "policies = [\"{}\"]",
                root().join("simulations/policies/lending.toml").display()
            ),
        )
        .replace("no_pause = true", "paused = true");
    let wrong = dir.join("whale-expecting-a-pause.toml");
    std::fs::write(&wrong, whale).unwrap();
    let run = |args: Vec<String>| {
        std::thread::spawn(move || {
            std::process::Command::new(bin)
                .current_dir(root())
                .args(args)
                .output()
                .unwrap()
        })
    };
    let nomad = run(vec![
        "simulate".into(),
        "simulations/nomad-2022-copycats.toml".into(),
        "--json".into(),
    ]);
    let whale = run(vec!["simulate".into(), wrong.display().to_string()]);
    let nomad = nomad.join().unwrap();
    let whale = whale.join().unwrap();

    assert_eq!(
        nomad.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&nomad.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&nomad.stdout).unwrap();
    assert_eq!(report["holds"], true);
    assert_eq!(report["funds"]["lost_unprotected"], 1_000_000.0);
    assert!(report["funds"]["saved_pct"].as_f64().unwrap() >= 90.0);
    let first = &report["attacks"][0];
    assert!(
        first["broadcast_ms"].is_u64() && first["mined_block"].is_u64(),
        "{first}"
    );
    assert_eq!(first["pause_before"], true, "{first}");
    assert!(report["compression"]["chain_seconds"].as_u64().unwrap() >= 120);

    let stdout = String::from_utf8_lossy(&whale.stdout);
    assert_eq!(whale.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("paused               expected true   got false  FAILED"),
        "{stdout}"
    );
    assert!(stdout.contains("EXPECTATIONS FAILED"), "{stdout}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unreachable_rpc_exits_2_without_printing_its_url() {
    let (code, all) = traces::guardian_cmd(&[
        "simulate",
        "simulations/nomad-2022-copycats.toml",
        "--rpc",
        "http://127.0.0.1:1/v2/SECRET-API-KEY",
    ]);
    assert_eq!(code, Some(2), "{all}");
    assert!(all.contains("read the chain id"), "{all}");
    assert!(!all.contains("SECRET-API-KEY"), "{all}");
}
