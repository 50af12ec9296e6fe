//! Policy templates (one policy over a metric pattern, one instance per
//! matching metric) and corroboration (`within` on composites): compile,
//! bind, instantiate, evaluate.

#[path = "common/traces.rs"]
mod traces;

use guardian::config::Config;
use guardian::decision::Trip;
use guardian::policy::{Engine, Mode, PolicySet, compile_str};
use traces::feed_rows;

const CASH_DRAIN: &str = r#"
[[policy]]
id = "cash-drain"
description = "an asset's cash falls 30% within 3 blocks"
severity = "critical"
action = "pause"
cooldown = "0 blocks"
[policy.when]
kind = "change"
metric = "lend.cash.*"
window = "3 blocks"
direction = "down"
by = "30%"
"#;

fn run(set: PolicySet, rows: &[(u64, &str, f64)]) -> Vec<Trip> {
    let mut engine = Engine::new(set, Mode::Enforce);
    let mut trips = Vec::new();
    let rows = rows
        .iter()
        .map(|&(block, metric, value)| (block, 1_000_000 + block * 12_000, metric, value));
    feed_rows(&mut engine, rows, &mut trips);
    trips
}

fn config(text: &str) -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("guardian.toml");
    std::fs::write(&path, text).unwrap();
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    (dir, config)
}

/// The error compiling `text` (as `t.toml`) against `config`, which must fail.
fn refused(text: &str, config: &Config) -> String {
    match compile_str("t.toml", text, config) {
        Ok(_) => panic!("t.toml compiled:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_template_runs_once_per_matching_metric_with_its_own_state() {
    let mut set = compile_str("t.toml", CASH_DRAIN, &Config::empty()).unwrap();
    assert!(
        set.policies.is_empty(),
        "no instance before names are known"
    );
    let made = set.instantiate(["lend.cash.USDC", "lend.cash.WETH", "other.metric"]);
    assert_eq!(made.made, ["cash-drain[USDC]", "cash-drain[WETH]"]);
    assert!(made.notes.is_empty(), "{:?}", made.notes);
    // Instantiating again with the same names adds nothing.
    assert!(set.instantiate(["lend.cash.USDC"]).made.is_empty());
    let mut rows = Vec::new();
    for b in 0..10u64 {
        // USDC drains from block 5; WETH stays flat.
        let usdc = if b < 5 { 1000.0 } else { 500.0 };
        rows.push((b, "lend.cash.USDC", usdc));
        rows.push((b, "lend.cash.WETH", 2000.0));
    }
    let trips = run(set, &rows);
    let ids: Vec<&str> = trips.iter().map(|t| t.policy.as_str()).collect();
    assert_eq!(ids, ["cash-drain[USDC]"; 3], "{ids:?}");
    assert_eq!(trips[0].block, 5);
    assert_eq!(trips[0].evidence["metric"], "lend.cash.USDC");
    assert_eq!(trips[0].evidence["instance"], "USDC");
}

#[test]
fn patterns_bind_to_patterns_and_instances_come_from_declared_metrics() {
    let (_dir, config) = config(
        "[guardian]\nmode = \"dry-run\"\n[bind]\n\"lend.cash.*\" = \"aave.cash.*\"\n\"lend.debt.*\" = \"aave.debt.*\"\n[metrics.\"aave.cash.USDC\"]\ndescription = \"c\"\n[metrics.\"aave.cash.DAI\"]\ndescription = \"c\"\n[metrics.\"aave.debt.USDC\"]\ndescription = \"d\"\n[actions.pause]\nkind = \"pause\"\ndescription = \"p\"\n",
    );
    let text = r#"
[[policy]]
id = "cash-vs-debt"
description = "cash low against debt"
severity = "critical"
action = "pause"
cooldown = "1 block"
[policy.when]
kind = "all"
of = [
  { kind = "threshold", metric = "lend.cash.*", op = "<", value = 10 },
  { kind = "threshold", metric = "lend.debt.*", op = ">", value = 100 },
]
"#;
    let set = compile_str("t.toml", text, &config).unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<&str> = set.policies.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["cash-vs-debt[USDC]"]);
    assert_eq!(set.metric_names, ["aave.cash.USDC", "aave.debt.USDC"]);
    // DAI has cash but no debt metric: said, not silently dropped.
    assert!(
        set.warnings
            .iter()
            .any(|w| w.contains("no instance for `DAI`") && w.contains("aave.debt.DAI")),
        "{:?}",
        set.warnings
    );
}

#[test]
fn a_template_matching_no_declared_metric_is_an_error_with_a_hint() {
    let (_dir, config) = config(
        "[guardian]\nmode = \"dry-run\"\n[metrics.\"x\"]\ndescription = \"x\"\n[actions.pause]\nkind = \"pause\"\ndescription = \"p\"\n",
    );
    let err = refused(CASH_DRAIN, &config);
    assert!(
        err.contains("t.toml:2:1: policy `cash-drain`: its pattern(s) lend.cash.* match no metric defined under [metrics]"),
        "{err}"
    );
    assert!(err.contains("bind the pattern"), "{err}");
}

#[test]
fn a_bound_name_that_is_not_defined_gets_a_hint_about_its_binding() {
    let (_dir, config) = config(
        "[guardian]\nmode = \"dry-run\"\n[bind]\n\"vault.tvl\" = \"usdc.tvl\"\n[metrics.\"x\"]\ndescription = \"x\"\n[actions.pause]\nkind = \"pause\"\ndescription = \"p\"\n",
    );
    let text = "[[policy]]\nid = \"p\"\ndescription = \"d\"\nseverity = \"info\"\naction = \"pause\"\ncooldown = \"1m\"\n[policy.when]\nkind = \"threshold\"\nmetric = \"vault.tvl\"\nop = \">\"\nvalue = 1\n";
    let err = refused(text, &config);
    assert!(
        err.contains("unknown metric `vault.tvl` (bound to `usdc.tvl`)"),
        "{err}"
    );
    assert!(
        err.contains("define `usdc.tvl` under [metrics], or change the [bind] entry"),
        "{err}"
    );
    assert!(!err.contains("bind this name"), "{err}");
}

#[test]
fn bad_patterns_are_refused_where_written() {
    let text = CASH_DRAIN.replace("lend.cash.*", "lend.*.cash.*");
    let err = refused(&text, &Config::empty());
    assert!(
        err.contains(
            "t.toml:10:10: policy `cash-drain`.when: `lend.*.cash.*` is not a valid metric pattern"
        ),
        "{err}"
    );
}

const CORROBORATED: &str = r#"
[[policy]]
id = "price-jump-confirmed"
description = "a price jump confirmed by an outflow"
severity = "critical"
action = "pause"
cooldown = "0 blocks"
[policy.when]
kind = "all"
within = "WITHIN"
of = [
  { kind = "change", metric = "price", window = "1 block", direction = "up", by = "10%" },
  { kind = "threshold", metric = "outflow", op = ">", value = 100 },
]
"#;

fn corroborated(within: &str, rows: &[(u64, &str, f64)]) -> Vec<u64> {
    let set = compile_str(
        "c.toml",
        &CORROBORATED.replace("WITHIN", within),
        &Config::empty(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    run(set, rows).iter().map(|t| t.block).collect()
}

/// Blocks 0 to `blocks - 1` of `price` (100, 120 in block `jump`) and
/// `outflow` (0, 500 in block `drain`).
fn signals(blocks: u64, jump: u64, drain: u64) -> Vec<(u64, &'static str, f64)> {
    let mut rows = Vec::new();
    for b in 0..blocks {
        rows.push((b, "price", if b == jump { 120.0 } else { 100.0 }));
        rows.push((b, "outflow", if b == drain { 500.0 } else { 0.0 }));
    }
    rows
}

#[test]
fn corroboration_in_the_same_block_trips_at_once() {
    let rows = signals(6, 3, 3);
    // One-block manipulation with an outflow in the same block: tripped at block 3, no delay.
    assert_eq!(corroborated("0 blocks", &rows), [3]);
}

#[test]
fn a_lone_signal_or_one_outside_the_window_does_not_trip() {
    let rows = signals(8, 2, 5);
    // The jump (block 2) and the outflow (block 5) are 3 blocks apart.
    assert!(corroborated("0 blocks", &rows).is_empty());
    assert!(corroborated("2 blocks", &rows).is_empty());
    assert_eq!(corroborated("3 blocks", &rows), [5]);
}

#[test]
fn without_within_a_stale_truth_is_not_fresh_corroboration() {
    // The price sample that jumped is the last one: its truth lingers. With
    // `within`, it stops counting once it is older than the window.
    let rows = [
        (1, "price", 100.0),
        (2, "price", 120.0),
        (2, "outflow", 0.0),
        (6, "outflow", 500.0),
    ];
    assert!(corroborated("1 block", &rows).is_empty());
    let plain = CORROBORATED.replace("within = \"WITHIN\"\n", "");
    let set = compile_str("c.toml", &plain, &Config::empty()).unwrap();
    assert_eq!(
        run(set, &rows).iter().map(|t| t.block).collect::<Vec<_>>(),
        [6]
    );
}

#[test]
fn within_on_a_leaf_is_refused() {
    let text = CASH_DRAIN.replace("by = \"30%\"", "by = \"30%\"\nwithin = \"1 block\"");
    let err = refused(&text, &Config::empty());
    assert!(err.contains("`within` applies to composites"), "{err}");
}

#[test]
fn the_v1_fixture_still_loads() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let text =
        std::fs::read_to_string(root.join("tests/fixtures/v1/every-condition.toml")).unwrap();
    let set = compile_str("every-condition.toml", &text, &Config::empty()).unwrap();
    assert_eq!(set.policies.len(), 2);
    assert!(set.templates.is_empty());
}

fn starter(name: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(root.join("policies/starter").join(name)).unwrap()
}

/// Rows for blocks 0..30 from `f(block) -> [(metric, value)]`.
fn blocks(f: impl Fn(u64) -> Vec<(&'static str, f64)>) -> Vec<(u64, &'static str, f64)> {
    (0..30u64)
        .flat_map(|b| f(b).into_iter().map(move |(m, v)| (b, m, v)))
        .collect()
}

fn first_trip(trips: &[Trip], policy: &str) -> Option<u64> {
    trips.iter().find(|t| t.policy == policy).map(|t| t.block)
}

#[test]
fn the_vault_pack_catches_a_corroborated_share_price_fall_in_its_block() {
    let set = compile_str("vault.toml", &starter("vault.toml"), &Config::empty()).unwrap();
    // A 0.6% loss per share at block 20 with 2% of the assets withdrawn in it.
    let corroborated = blocks(|b| {
        let hit = b >= 20;
        vec![
            ("vault.share_price", if hit { 0.994 } else { 1.0 }),
            (
                "vault.total_assets",
                if hit { 980_000.0 } else { 1_000_000.0 },
            ),
            ("vault.outflow", if b == 20 { 20_000.0 } else { 0.0 }),
            ("vault.oracle_age", 10.0),
        ]
    });
    let trips = run(set.clone(), &corroborated);
    assert_eq!(
        first_trip(&trips, "vault-share-price-break"),
        Some(20),
        "+0 blocks"
    );
    // A 1.2% fall with no outflow (a strategy loss, or a bad read) waits one block.
    let alone = blocks(|b| {
        vec![
            ("vault.share_price", if b >= 20 { 0.988 } else { 1.0 }),
            ("vault.total_assets", 1_000_000.0),
            ("vault.outflow", 0.0),
            ("vault.oracle_age", 10.0),
        ]
    });
    assert_eq!(
        first_trip(&run(set, &alone), "vault-share-price-break"),
        Some(21)
    );
}

#[test]
fn the_lending_pack_catches_a_one_block_oracle_manipulation_per_asset() {
    let (_dir, config) = config(
        "[guardian]\nmode = \"dry-run\"\n\
         [metrics.\"lending.price.WETH\"]\ndescription = \"p\"\n[metrics.\"lending.reference_price.WETH\"]\ndescription = \"r\"\n\
         [metrics.\"lending.price.WBTC\"]\ndescription = \"p\"\n[metrics.\"lending.reference_price.WBTC\"]\ndescription = \"r\"\n\
         [metrics.\"lending.borrowed_usd\"]\ndescription = \"b\"\n[metrics.\"lending.liquidity_usd\"]\ndescription = \"l\"\n\
         [actions.pause-market]\nkind = \"pause\"\ndescription = \"p\"\n",
    );
    let text = starter("lending.toml");
    let first = text.find("[[policy]]").unwrap();
    let second = text[first + 10..].find("[[policy]]").unwrap() + first + 10;
    let set =
        compile_str("lending.toml", &text[..second], &config).unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<&str> = set.policies.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "lending-oracle-deviation[WBTC]",
            "lending-oracle-deviation[WETH]"
        ]
    );
    // WETH's oracle reads 20% high for block 15 only, and 5% of the liquidity is borrowed in it.
    let rows = blocks(|b| {
        vec![
            ("lending.price.WETH", if b == 15 { 3600.0 } else { 3000.0 }),
            ("lending.reference_price.WETH", 3000.0),
            ("lending.price.WBTC", 60_000.0),
            ("lending.reference_price.WBTC", 60_000.0),
            ("lending.liquidity_usd", 10_000_000.0),
            (
                "lending.borrowed_usd",
                if b == 15 { 500_000.0 } else { 1_000.0 },
            ),
        ]
    });
    let trips = run(set, &rows);
    assert_eq!(
        blocks_of(&trips),
        [("lending-oracle-deviation[WETH]".to_string(), 15)]
    );
}

fn blocks_of(trips: &[Trip]) -> Vec<(String, u64)> {
    trips.iter().map(|t| (t.policy.clone(), t.block)).collect()
}
