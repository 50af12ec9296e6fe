//! Real Aave V3 (`@aave/core-v3` 1.19.3 from npm) on anvil, guarded through its
//! own roles. One deployment for the checks that can share it (the bytecode,
//! the ACL roles, the module's bounds and the pause), and one `--rpc`
//! scenario run whose report is checked against the chain it ran on.

mod common;

use std::path::PathBuf;

use alloy::primitives::{Address, B256, U256, keccak256};
use alloy::providers::Provider;
use guardian::scenario::aave::{AaveV3RoleHolder, CAP_MAX_CHANGE_BPS, CAP_MIN_DELAY_S};
use guardian::scenario::aave_deploy::{
    Artifact, IAaveAclManager, IAaveAddressesProvider, IAaveDataProvider, IAavePool, IAaveToken,
    code_at, package_dir,
};
use guardian::scenario::chain::{Accounts, Chain, GuardianModule, Node, confirm};
use guardian::scenario::protocol::Deployed;
use guardian::scenario::{self, Options};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn anvil_bin() -> PathBuf {
    root().join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
}

fn selector(signature: &str) -> [u8; 4] {
    let h = keccak256(signature);
    [h[0], h[1], h[2], h[3]]
}

async fn borrow_cap<P: Provider>(
    dp: &IAaveDataProvider::IAaveDataProviderInstance<P>,
    asset: Address,
) -> U256 {
    dp.getReserveCaps(asset).call().await.unwrap().borrowCap
}

/// Whether a call reverted with the custom error `E`.
fn reverted_with<E: alloy::sol_types::SolError, T>(r: Result<T, alloy::contract::Error>) -> bool {
    match r {
        Ok(_) => false,
        Err(e) => e.as_decoded_error::<E>().is_some(),
    }
}

/// EIP-1967 implementation slot of the provider's proxies.
const IMPLEMENTATION_SLOT: &str =
    "360894a13ba1a3210667c828492db98dca3e2076cc3735a920a3ca505d382bbc";

async fn implementation(chain: &Chain, proxy: Address) -> Address {
    let slot =
        U256::from_be_bytes(B256::from_slice(&alloy::hex::decode(IMPLEMENTATION_SLOT).unwrap()).0);
    let word = chain.provider.get_storage_at(proxy, slot).await.unwrap();
    Address::from_word(B256::from(word))
}

/// Replaces every 32-byte word holding `value` (an immutable filled at
/// construction) by zeros, as the artifact has it; returns how many there were.
fn mask_immutable(code: &mut [u8], value: Address) -> usize {
    let word = value.into_word();
    let mut n = 0;
    let mut i = 0;
    while i + 32 <= code.len() {
        if code[i..i + 32] == word[..] {
            code[i..i + 32].fill(0);
            n += 1;
            i += 32;
        } else {
            i += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_aave_v3_guarded_through_its_emergency_and_risk_roles() {
    let s = scenario::load(&root().join("simulations/aave-v3-whale-withdrawal.toml")).unwrap();
    let chain = Chain::connect(
        Node::Spawn {
            anvil_bin: &anvil_bin(),
        },
        Accounts::random(s.setup.users as usize, s.setup.borrowers as usize, 1),
    )
    .await
    .unwrap();
    let d = Deployed::deploy(&chain, &s).await.unwrap();
    let aave = d.aave().expect("an aave-v3 deployment").clone();
    let p = &chain.provider;

    // 1. The Pool's implementation is the npm artifact's runtime code, libraries linked.
    let package = package_dir().unwrap();
    let pool_artifact = Artifact::load(&package, "Pool").unwrap();
    let expected = pool_artifact.runtime_code(&aave.libs).unwrap();
    assert_eq!(implementation(&chain, aave.pool).await, aave.pool_impl);
    let mut onchain = code_at(&chain, aave.pool_impl).await.unwrap();
    // Pool has one immutable, ADDRESSES_PROVIDER: the artifact leaves it zero.
    let filled = mask_immutable(&mut onchain, aave.provider);
    assert!(
        filled >= 1,
        "the Pool's ADDRESSES_PROVIDER immutable is in its code"
    );
    assert_eq!(onchain.len(), expected.len(), "Pool runtime code length");
    assert!(
        onchain == expected,
        "the Pool's runtime code is the npm artifact's, libraries linked"
    );
    for lib in pool_artifact.libraries() {
        assert!(aave.libs.contains_key(lib), "{lib} deployed and linked");
    }
    // PoolConfigurator has no immutables: its code is the linked artifact exactly.
    let conf_impl = implementation(&chain, aave.configurator).await;
    let conf = Artifact::load(&package, "PoolConfigurator").unwrap();
    assert!(code_at(&chain, conf_impl).await.unwrap() == conf.runtime_code(&aave.libs).unwrap());
    eprintln!(
        "Pool implementation {} ({} bytes) equals @aave/core-v3 Pool deployedBytecode with {} libraries linked ({} immutable word(s) masked); PoolConfigurator {} equals its artifact exactly",
        aave.pool_impl,
        expected.len(),
        pool_artifact.libraries().count(),
        filled,
        conf_impl
    );

    // 2. The council holds the admin roles; the role-holders hold what the config allows.
    let acl = IAaveAclManager::new(aave.acl, p);
    let safe = d.stack.safe;
    let deployer = chain.accounts.deployer.address();
    assert!(acl.isPoolAdmin(safe).call().await.unwrap());
    assert!(acl.isEmergencyAdmin(safe).call().await.unwrap());
    assert!(acl.hasRole(B256::ZERO, safe).call().await.unwrap());
    assert!(!acl.isPoolAdmin(deployer).call().await.unwrap());
    assert!(!acl.hasRole(B256::ZERO, deployer).call().await.unwrap());
    let ap = IAaveAddressesProvider::new(aave.provider, p);
    assert_eq!(ap.owner().call().await.unwrap(), safe);
    assert!(acl.isEmergencyAdmin(aave.pool_holder).call().await.unwrap());
    assert!(!acl.isRiskAdmin(aave.pool_holder).call().await.unwrap());
    for r in &aave.reserves {
        assert!(acl.isEmergencyAdmin(r.holder).call().await.unwrap());
        assert!(acl.isRiskAdmin(r.holder).call().await.unwrap());
    }

    // 2b. `setup verify` reads the ACLManager; `setup plan` grants what is missing.
    setup_plan_grants_the_aave_roles(&chain, &d).await;

    // 3. Only the Safe calls a role-holder; a bot key cannot go around the module.
    let bot = chain.accounts.bot.address();
    let usdx_holder = AaveV3RoleHolder::new(aave.usdx().holder, p);
    let direct = usdx_holder
        .setBorrowCap(U256::from(1))
        .from(bot)
        .call()
        .await;
    assert!(
        reverted_with::<AaveV3RoleHolder::OnlySafe, _>(direct),
        "a direct call to the role-holder is refused"
    );

    // 4. The module bounds the borrow-cap change (Risk Steward shape) on chain.
    let module = GuardianModule::new(d.stack.module, p);
    let set_cap: alloy::primitives::FixedBytes<4> = selector("setBorrowCap(uint256)").into();
    // The bot setting the USDX borrow cap to `cap` through the module: a
    // call (what the module would answer), or sent (it must land).
    let cap_call = |cap: U256| {
        module
            .setParameter(aave.usdx().holder, set_cap, cap)
            .from(bot)
    };
    let lower_cap = async |cap: U256, what: &'static str| {
        confirm(cap_call(cap).send().await, what).await.unwrap();
    };
    let dp = IAaveDataProvider::new(aave.data_provider, p);
    let before = borrow_cap(&dp, aave.usdx().asset).await;
    assert_eq!(usdx_holder.borrowCap().call().await.unwrap(), before);
    let too_far = before * U256::from(10_000 - CAP_MAX_CHANGE_BPS - 1_000) / U256::from(10_000);
    let refused = cap_call(too_far).call().await;
    assert!(
        reverted_with::<GuardianModule::ChangeTooLarge, _>(refused),
        "a {}% step is refused by the module (max {}%)",
        (CAP_MAX_CHANGE_BPS + 1_000) / 100,
        CAP_MAX_CHANGE_BPS / 100
    );
    let step = before * U256::from(8_000) / U256::from(10_000);
    lower_cap(step, "lower the borrow cap 20%").await;
    assert_eq!(
        borrow_cap(&dp, aave.usdx().asset).await,
        step,
        "Aave's reserve configuration holds the new cap"
    );
    let again = step * U256::from(9_000) / U256::from(10_000);
    let too_soon = cap_call(again).call().await;
    assert!(
        reverted_with::<GuardianModule::UpdateTooSoon, _>(too_soon),
        "a second step within the minimum delay is refused"
    );
    common::anvil_rpc(p, "evm_increaseTime", (CAP_MIN_DELAY_S + 1,)).await;
    lower_cap(again, "lower the borrow cap after the delay").await;
    assert_eq!(borrow_cap(&dp, aave.usdx().asset).await, again);
    eprintln!(
        "USDX borrow cap {before} -> {step} -> {again} through RISK_ADMIN; a 35% step and a step within {CAP_MIN_DELAY_S} s refused on chain"
    );

    // 5. Freeze one reserve, then pause the whole pool, through EMERGENCY_ADMIN / RISK_ADMIN.
    let freeze: alloy::primitives::FixedBytes<4> = selector("freeze()").into();
    confirm(
        module
            .pause(aave.vol().holder, freeze)
            .from(bot)
            .send()
            .await,
        "freeze VOL",
    )
    .await
    .unwrap();
    let pool = IAavePool::new(aave.pool, p);
    let frozen_bit = |data: U256| data.bit(57);
    assert!(frozen_bit(
        pool.getConfiguration(aave.vol().asset)
            .call()
            .await
            .unwrap()
    ));
    assert!(!frozen_bit(
        pool.getConfiguration(aave.usdx().asset)
            .call()
            .await
            .unwrap()
    ));
    let pause: alloy::primitives::FixedBytes<4> = selector("pause()").into();
    confirm(
        module.pause(aave.pool_holder, pause).from(bot).send().await,
        "pause the pool",
    )
    .await
    .unwrap();
    for r in &aave.reserves {
        assert!(
            dp.getPaused(r.asset).call().await.unwrap(),
            "{} paused",
            r.symbol
        );
    }
    // A lender's withdrawal now reverts in the real Pool.
    let user = chain.accounts.users[0].address();
    let withdraw = pool
        .withdraw(aave.usdx().asset, U256::from(1), user)
        .from(user)
        .call()
        .await;
    assert!(withdraw.is_err(), "a paused Aave pool refuses withdrawals");
    // The module never unpauses: the selector is refused.
    let unpause = module
        .pause(aave.pool_holder, selector("unpause()").into())
        .from(bot)
        .call()
        .await;
    assert!(unpause.is_err());
}

/// A role-holder the council has not granted yet: verify names the missing
/// RISK_ADMIN (and the module permission and limits); the plan's transactions,
/// executed by the Safe, leave no difference.
async fn setup_plan_grants_the_aave_roles(chain: &Chain, d: &Deployed) {
    let aave = d.aave().unwrap();
    let p = &chain.provider;
    let extra = AaveV3RoleHolder::deploy(p, d.stack.safe, aave.provider, aave.weth().asset)
        .await
        .unwrap();
    let mut text = d.config_text(
        chain,
        guardian::policy::model::Mode::DryRun,
        1,
        &[root().join("simulations/policies/aave-v3.toml")],
    );
    text.push_str(&format!(
        r#"
[actions.freeze-weth-second-holder]
kind = "pause"
description = "freeze WETH through a second role-holder"
target = "{extra}"
function = "freeze()"
paused_getter = "frozen()"
executor = "module"

[setup]
safe = "{safe}"
executor = "module"
guardians = ["{bot}"]
target_cooldown = "0s"
target_rate_limit = "10/1h"
aave_acl_manager = "{acl}"
"#,
        extra = extra.address(),
        safe = d.stack.safe,
        bot = chain.accounts.bot.address(),
        acl = aave.acl,
    ));
    let dir = std::env::temp_dir().join(format!("guardian-aave-setup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("guardian.toml");
    std::fs::write(&path, text).unwrap();
    let config = guardian::config::Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let (want, before) = guardian::setup::verify::verify(&config).await.unwrap();
    let shown: Vec<String> = before.iter().map(ToString::to_string).collect();
    assert_eq!(before.len(), 3, "{shown:#?}");
    assert!(
        shown.iter().any(|s| s.contains("does not hold RISK_ADMIN")),
        "{shown:#?}"
    );
    assert_eq!(want.aave_roles.len(), 8, "{:#?}", want.aave_roles);
    let provider = guardian::setup::verify::connect(&config, &want)
        .await
        .unwrap();
    let actual = guardian::setup::verify::read_actual(&provider, &want)
        .await
        .unwrap();
    let plan = guardian::setup::plan::plan(&want, &actual, true).unwrap();
    assert!(plan.outside.is_empty(), "{:?}", plan.outside);
    assert!(
        plan.txs
            .iter()
            .any(|t| t.to == aave.acl && t.method.as_ref().unwrap().name == "addRiskAdmin"),
        "the plan grants RISK_ADMIN in the ACLManager"
    );
    for tx in &plan.txs {
        d.stack.exec(chain, tx.to, tx.data.to_vec()).await.unwrap();
    }
    let (_, after) = guardian::setup::verify::verify(&config).await.unwrap();
    assert!(after.is_empty(), "{after:#?}");
    assert!(
        IAaveAclManager::new(aave.acl, p)
            .isRiskAdmin(*extra.address())
            .call()
            .await
            .unwrap()
    );
    eprintln!(
        "setup verify: {} differences before ({}), none after the plan's {} Safe transaction(s)",
        before.len(),
        shown.join("; "),
        plan.txs.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A scenario played with `--rpc` against an anvil of the test's own, so
/// that both runs' deployments stay on the node to be read back.
struct Played {
    anvil: alloy::node_bindings::AnvilInstance,
    s: scenario::spec::Scenario,
    r: scenario::report::ScenarioReport,
    /// A read-only provider on that node.
    p: alloy::providers::DynProvider,
}

/// Plays `simulations/<file>` on a fresh anvil; its `expect` must hold.
async fn play_on_own_anvil(file: &str) -> Played {
    let anvil = alloy::node_bindings::Anvil::at(anvil_bin())
        .args(["--order", "fees"])
        .try_spawn()
        .unwrap();
    let s = scenario::load(&root().join("simulations").join(file)).unwrap();
    let r = scenario::run(
        &s,
        &Options {
            anvil_bin: anvil_bin(),
            rpc: Some(anvil.endpoint()),
            ws: Some(anvil.ws_endpoint()),
            dry_run: false,
        },
    )
    .await
    .unwrap();
    assert!(r.holds, "{}", scenario::report::render(&r, &s));
    let p = alloy::providers::ProviderBuilder::new()
        .connect_http(anvil.endpoint().parse().unwrap())
        .erased();
    Played { anvil, s, r, p }
}

/// The mempool-visible attack, played with `--rpc` against an anvil this test
/// started, so that both runs' deployments stay on the node: the report's
/// pause flags and losses are read back from the real Pool and tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attack_report_matches_the_chain() {
    // The node must outlive the reads below.
    let Played {
        anvil: _node, r, p, ..
    } = play_on_own_anvil("aave-v3-oracle-pump.toml").await;
    let runs = [r.unprotected.as_ref().unwrap(), &r.protected];
    for run in runs {
        // Pause flags: from each reserve's configuration in the real Pool.
        for t in &run.paused {
            let holder = AaveV3RoleHolder::new(t.target.parse().unwrap(), &p);
            let provider = holder.addressesProvider().call().await.unwrap();
            let pool = IAavePool::new(
                IAaveAddressesProvider::new(provider, &p)
                    .getPool()
                    .call()
                    .await
                    .unwrap(),
                &p,
            );
            let asset = holder.asset().call().await.unwrap();
            let assets = if asset.is_zero() {
                pool.getReservesList().call().await.unwrap()
            } else {
                vec![asset]
            };
            let mut all = true;
            for a in assets {
                all &= pool.getConfiguration(a).call().await.unwrap().bit(60);
            }
            assert_eq!(
                all,
                t.paused,
                "{} in the {} run",
                t.action,
                if run.guardian {
                    "protected"
                } else {
                    "unprotected"
                }
            );
        }
        // Losses: the attacker's USDX and WETH, priced by the AaveOracle, and the
        // reserves' liquidity held by the real aTokens.
        let attacker: Address = run
            .transactions
            .iter()
            .find(|t| t.kind == "attack" && t.label.contains("supplies"))
            .unwrap()
            .from
            .parse()
            .unwrap();
        let pool_holder = AaveV3RoleHolder::new(run.paused[0].target.parse().unwrap(), &p);
        let provider =
            IAaveAddressesProvider::new(pool_holder.addressesProvider().call().await.unwrap(), &p);
        let oracle = guardian::scenario::aave_deploy::IAaveOracle::new(
            provider.getPriceOracle().call().await.unwrap(),
            &p,
        );
        let dp = IAaveDataProvider::new(provider.getPoolDataProvider().call().await.unwrap(), &p);
        let mut value = 0.0;
        let mut liquidity = Vec::new();
        for t in &run.paused[1..3] {
            let asset = AaveV3RoleHolder::new(t.target.parse().unwrap(), &p)
                .asset()
                .call()
                .await
                .unwrap();
            let token = IAaveToken::new(asset, &p);
            let held = f64::from(token.balanceOf(attacker).call().await.unwrap()) / 1e18;
            let price = f64::from(oracle.getAssetPrice(asset).call().await.unwrap()) / 1e8;
            value += held * price;
            let a_token = dp
                .getReserveTokensAddresses(asset)
                .call()
                .await
                .unwrap()
                .aTokenAddress;
            liquidity.push(f64::from(token.balanceOf(a_token).call().await.unwrap()) / 1e18);
        }
        assert!(
            (value - run.lost).abs() < 1e-3,
            "lost {} vs the chain's {value}",
            run.lost
        );
        eprintln!(
            "{} run: attacker holds {value:.2} USD of USDX+WETH (report: {}); aUSDX holds {:.2} USDX, aWETH {:.4} WETH",
            if run.guardian {
                "protected"
            } else {
                "unprotected"
            },
            run.lost,
            liquidity[0],
            liquidity[1]
        );
        if run.guardian {
            assert!(
                liquidity[0] > 700_000.0 && liquidity[1] > 499.0,
                "the reserves kept their liquidity"
            );
        } else {
            assert!(
                liquidity[0] < 10_000.0 && liquidity[1] < 3.0,
                "the reserves were drained"
            );
        }
    }
    // The pause landed ahead of the first borrow in its block.
    let borrow = r
        .attacks
        .iter()
        .find(|a| a.label.contains("borrows") && a.label.contains("USDX"))
        .unwrap();
    assert!(borrow.pause_ahead_in_same_block, "{borrow:?}");
    assert_eq!(r.funds.saved_pct.map(|p| p.round()), Some(100.0));
}

fn guardian_cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_guardian"))
        .args(args)
        .output()
        .unwrap()
}

/// `init --shape aave-v3` writes a configuration `check` accepts; with the
/// market's ACLManager named, `setup plan` adds the ACL grants the council
/// signs and `explain` speaks Aave.
#[test]
fn init_aave_v3_plans_the_acl_grants_and_explains_in_aave_terms() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let key_source = ["--key-source", "env"];
    let init = guardian_cli(&common::init_args(d, "aave-v3", &key_source));
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let config = format!("{d}/guardian.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("getAssetPrice(address)(uint256)"));
    assert!(text.contains("# aave_acl_manager = "));
    // init leaves the metric sources for the operator to fill in (addresses
    // it cannot know): until then `check` refuses every policy as never read.
    let check = guardian_cli(&["check", "--config", &config]);
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("has no `source`"), "{stderr}");
    let acl = "0x4444444444444444444444444444444444444444";
    std::fs::write(
        &config,
        text.replace(
            "# aave_acl_manager = \"0x<ACLManager>\"",
            &format!("aave_acl_manager = \"{acl}\""),
        ),
    )
    .unwrap();
    let batch = format!("{d}/batch.json");
    let plan = guardian_cli(&[
        "setup", "plan", "--fresh", "--config", &config, "--out", &batch,
    ]);
    let out = String::from_utf8_lossy(&plan.stdout);
    assert!(
        plan.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    assert!(
        out.contains("EMERGENCY_ADMIN") && out.contains("RISK_ADMIN"),
        "{out}"
    );
    let file = std::fs::read_to_string(&batch).unwrap();
    for f in [
        "addEmergencyAdmin",
        "addRiskAdmin",
        "setParameterPermission",
    ] {
        assert!(file.contains(f), "the batch calls {f}: {file}");
    }
    let explain = guardian_cli(&["explain", "--config", &config]);
    let text = String::from_utf8_lossy(&explain.stdout);
    assert!(
        text.contains("In Aave's terms: PoolConfigurator.setReserveFreeze(asset, true)"),
        "{text}"
    );
    assert!(
        text.contains("PoolConfigurator.setBorrowCap(asset, cap)"),
        "{text}"
    );
}

/// Utilization pinned near 100%: the report's borrow-cap changes are read back
/// from the reserve's configuration in the real Pool, each at most the
/// configured step, the second only after the module's minimum delay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stress_report_matches_the_chain() {
    // The node must outlive the reads below.
    let Played {
        anvil: _node,
        s,
        r,
        p,
    } = play_on_own_anvil("aave-v3-utilization-stress.toml").await;
    let initial = s.setup.liquidity * 2.0;
    for run in [r.unprotected.as_ref().unwrap(), &r.protected] {
        let holder = run
            .paused
            .iter()
            .find(|t| t.action == "pause-usdx")
            .unwrap();
        let holder = AaveV3RoleHolder::new(holder.target.parse().unwrap(), &p);
        let provider =
            IAaveAddressesProvider::new(holder.addressesProvider().call().await.unwrap(), &p);
        let dp = IAaveDataProvider::new(provider.getPoolDataProvider().call().await.unwrap(), &p);
        let cap = borrow_cap(&dp, holder.asset().call().await.unwrap()).await;
        let changes: Vec<_> = run.parameter_changes().collect();
        let mut expected = initial;
        for _ in &changes {
            // Each step is the guardian's 20%, within the module's 25%.
            expected = (expected * 0.8).floor();
        }
        assert_eq!(cap, U256::from(expected as u64), "{} run", run.guardian);
        if !run.guardian {
            assert!(changes.is_empty());
            continue;
        }
        assert_eq!(changes.len(), 2, "two bounded steps: {changes:?}");
        let mut times = Vec::new();
        for c in &changes {
            let b = p
                .get_block_by_number(c.block.unwrap().into())
                .await
                .unwrap()
                .unwrap();
            times.push(b.header.timestamp);
        }
        assert!(
            times[1] - times[0] >= CAP_MIN_DELAY_S,
            "the second step waited the module's minimum delay: {times:?}"
        );
        // Utilization stayed above 95% between the two: the policy's 1 h cooldown (and
        // the guard's and the module's minimum delay behind it) held the second back.
        let trips = run
            .trips
            .iter()
            .filter(|t| t.action == "lower-borrow-cap-usdx")
            .count();
        eprintln!(
            "USDX borrow cap {initial} -> {cap} in {} steps {} s apart ({trips} trip(s)); unprotected stays {initial}",
            changes.len(),
            times[1] - times[0]
        );
    }
}
