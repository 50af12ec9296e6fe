//! The evidence a trip carries, byte for byte, for every condition kind.
//!
//! tests/fixtures/v1/every-condition.toml plus a template, a corroborated
//! composite (`within`) and a held leaf (`for`) are fed a scripted trace that
//! makes each condition hold at some point (a drain, an outflow burst, an
//! oracle that deviates and then goes quiet, a base-fee spike). Each trip is
//! written as `simulate --json` and `simulate` print it (the evidence's text
//! form, which the journal stores, is checked against the former); the current evidence of every policy
//! closes the file. The golden file pins all of it: the trace format
//! (../shared/spec/trace-format.md) and the journal carry these bytes.
//!
//! `GUARDIAN_BLESS=1 cargo test --test evidence` rewrites the golden file.

use std::fmt::Write as _;
use std::path::Path;

use guardian::config::Config;
use guardian::decision::Trip;
use guardian::metrics::Sample;
use guardian::policy::{Engine, Mode, PolicySet, compile_str};
use guardian::replay::{trip_json, trip_line};

const EXTRA: &str = r#"
[[policy]]
id = "share-drop"
description = "a vault's share price falls 5% within 3 blocks"
severity = "critical"
action = "pause-vault"
cooldown = "20 blocks"
[policy.when]
kind = "change"
metric = "vault.share.*"
window = "3 blocks"
direction = "down"
by = "5%"

[[policy]]
id = "corroborated"
description = "the oracle deviates and outflow bursts within 2 blocks"
severity = "critical"
action = "pause-vault"
cooldown = "30 blocks"
[policy.when]
kind = "all"
within = "2 blocks"
of = [
  { kind = "deviation", metric = "oracle.eth_usd", reference = "dex.eth_usd", above = "1%" },
  { kind = "sum", metric = "vault.outflow", window = "5 blocks", op = ">", value = 1e5 },
]

[[policy]]
id = "held-low"
description = "assets under 900k for 2 blocks"
severity = "warning"
action = "pause-vault"
cooldown = "50 blocks"
[policy.when]
kind = "threshold"
for = "2 blocks"
metric = "vault.total_assets"
op = "<"
value = 9e5
"#;

fn policies() -> PolicySet {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fixture =
        std::fs::read_to_string(root.join("tests/fixtures/v1/every-condition.toml")).unwrap();
    let mut set = compile_str(
        "every-condition.toml",
        &format!("{fixture}\n{EXTRA}"),
        &Config::empty(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    set.instantiate(["vault.share.A", "vault.share.B"]);
    set
}

/// The samples of block `b` (blocks 1000..1700, 12 s apart).
fn block_rows(b: u64) -> Vec<(&'static str, f64)> {
    let i = b - 1000;
    let wobble = ((i * 7919) % 13) as f64;
    let assets = match i {
        0..150 => 1_000_000.0 + wobble * 10.0,
        150..160 => 1_000_000.0 - (i - 149) as f64 * 16_000.0,
        160..300 => 840_000.0 + wobble,
        _ => 5.0 + wobble,
    };
    let outflow = match i {
        150..160 => 60_000.0 + wobble,
        _ => wobble,
    };
    let mut rows = vec![("vault.total_assets", assets), ("vault.outflow", outflow)];
    // The oracle is silent for the first 320 blocks (stale, never sampled),
    // reads 2% high around block 1355, then is silent again from 1380.
    if (320..380).contains(&i) {
        let dex = 1800.0 + wobble;
        let skew = if (355..360).contains(&i) { 1.02 } else { 1.0 };
        rows.push(("oracle.eth_usd", dex * skew));
        rows.push(("dex.eth_usd", dex));
    }
    if (350..360).contains(&i) {
        rows.push(("vault.outflow", 50_000.0));
    }
    let fee = if (250..256).contains(&i) {
        300.0
    } else {
        20.0 + wobble / 4.0
    };
    rows.push(("chain.base_fee_gwei", fee));
    let share_b = if (500..505).contains(&i) { 0.9 } else { 1.0 };
    // Share A reads 0 near the end: its change from 0 is infinite ("inf").
    let share_a = if (690..697).contains(&i) {
        0.0
    } else {
        1.0 + wobble / 1000.0
    };
    rows.push(("vault.share.A", share_a));
    rows.push(("vault.share.B", share_b));
    rows
}

fn replay_script(engine: &mut Engine, trips: &mut Vec<Trip>) {
    for b in 1000..1700u64 {
        let time_ms = 1_700_000_000_000 + (b - 1000) * 12_000;
        for (metric, value) in block_rows(b) {
            let Some(metric) = engine.metric_id(metric) else {
                engine.on_tick(b, time_ms, &mut |t| trips.push(t));
                continue;
            };
            let sample = Sample {
                block: b,
                time_ms,
                metric,
                value,
            };
            engine.on_sample(sample, &mut |t| trips.push(t));
        }
    }
}

fn render(engine: &Engine, trips: &[Trip]) -> String {
    let mut out = String::new();
    for trip in trips {
        let _ = writeln!(out, "{}", trip_json(trip));
        let _ = writeln!(out, "{}", trip_line(trip));
        // The journal stores the evidence's text form: the same bytes.
        assert!(trip_json(trip).contains(&format!("\"evidence\":{}}}", trip.evidence)));
    }
    for (i, policy) in engine.policies().policies.iter().enumerate() {
        let now = engine
            .current_evidence(i)
            .map_or("none".to_string(), |v| v.to_string());
        let _ = writeln!(out, "current {}: {now}", policy.id);
    }
    out
}

#[test]
fn trip_evidence_of_every_condition_kind_is_unchanged() {
    let mut engine = Engine::new(policies(), Mode::Enforce);
    let mut trips = Vec::new();
    replay_script(&mut engine, &mut trips);
    let per_policy: Vec<&str> = trips.iter().map(|t| t.policy.as_str()).collect();
    for id in [
        "vault-drain",
        "everything",
        "share-drop[B]",
        "corroborated",
        "held-low",
    ] {
        assert!(per_policy.contains(&id), "{id} never tripped");
    }
    let actual = render(&engine, &trips);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/evidence-every-kind.txt");
    if std::env::var_os("GUARDIAN_BLESS").is_some() {
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (GUARDIAN_BLESS=1 creates it)", path.display()));
    for (n, (want, got)) in expected.lines().zip(actual.lines()).enumerate() {
        assert_eq!(want, got, "{}:{}", path.display(), n + 1);
    }
    assert_eq!(expected.lines().count(), actual.lines().count());
}
