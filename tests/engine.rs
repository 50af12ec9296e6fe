//! The policy engine, condition by condition: what trips, when, and with what evidence.

#[path = "common/traces.rs"]
mod traces;

use guardian::config::Config;
use guardian::decision::Trip;
use guardian::metrics::Sample;
use guardian::policy::{Engine, Mode, compile_str};
use traces::feed_rows;

/// Wraps a `[policy.when]` body in a policy with a zero-length cooldown in blocks.
fn policy(when: &str) -> String {
    policy_with("cooldown = \"0 blocks\"", when)
}

fn policy_with(extra: &str, when: &str) -> String {
    format!(
        "[[policy]]\nid = \"p\"\ndescription = \"test\"\nseverity = \"critical\"\naction = \"pause\"\n{extra}\n[policy.when]\n{when}\n"
    )
}

/// Runs `(block, time_ms, metric, value)` rows through the policy; returns the trips.
fn run(text: &str, rows: &[(u64, u64, &str, f64)]) -> Vec<Trip> {
    let set = compile_str("test.toml", text, &Config::empty()).unwrap_or_else(|e| panic!("{e}"));
    let mut engine = Engine::new(set, Mode::Enforce);
    let mut trips = Vec::new();
    feed_rows(&mut engine, rows.iter().copied(), &mut trips);
    trips
}

/// [`run`] with the `[policy.when]` body `when` in [`policy`].
fn trips_when(when: &str, rows: &[(u64, u64, &str, f64)]) -> Vec<Trip> {
    run(&policy(when), rows)
}

/// One sample per block, 12 s apart.
fn series(metric: &'static str, values: &[f64]) -> Vec<(u64, u64, &'static str, f64)> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| (100 + i as u64, 1_000_000 + 12_000 * i as u64, metric, *v))
        .collect()
}

fn blocks(trips: &[Trip]) -> Vec<u64> {
    trips.iter().map(|t| t.block).collect()
}

#[test]
fn threshold_compares_the_latest_value() {
    let rows = series("m", &[1.0, 5.0, 4.9, 5.0, 7.0]);
    let cases: [(&str, &str, &[u64]); 4] = [
        (">=", "5", &[101, 103, 104]),
        (">", "5", &[104]),
        ("<", "5", &[100, 102]),
        ("<=", "4.9", &[100, 102]),
    ];
    for (op, value, expected) in cases {
        let when = format!("kind = \"threshold\"\nmetric = \"m\"\nop = \"{op}\"\nvalue = {value}");
        let trips = trips_when(&when, &rows);
        assert_eq!(blocks(&trips), expected, "{op} {value}");
    }
}

#[test]
fn change_in_percent_over_blocks_waits_for_history() {
    let rows = series("tvl", &[1000.0, 1000.0, 950.0, 880.0, 900.0, 900.0]);
    let trips = trips_when(
        "kind = \"change\"\nmetric = \"tvl\"\nwindow = \"2 blocks\"\ndirection = \"down\"\nby = \"10%\"",
        &rows,
    );
    // Block 103: 880 vs 1000 two blocks earlier = -12%. Block 102 (-5%) and the
    // first two blocks (no value two blocks back) do not trip.
    assert_eq!(blocks(&trips), [103]);
    let ev = &trips[0].evidence;
    assert_eq!(ev["condition"], "change");
    assert_eq!(ev["from"]["block"], 101);
    assert_eq!(ev["from"]["value"], 1000.0);
    assert_eq!(ev["to"]["value"], 880.0);
    assert_eq!(ev["change"], -120.0);
    assert_eq!(ev["change_pct"], -12.0);
    assert_eq!(ev["threshold"], "10%");
}

#[test]
fn change_absolute_and_directions() {
    let rows = series("m", &[10.0, 20.0, 10.0]);
    let cases: [(&str, &[u64]); 3] = [("up", &[101]), ("down", &[102]), ("either", &[101, 102])];
    for (direction, expected) in cases {
        let when = format!(
            "kind = \"change\"\nmetric = \"m\"\nwindow = \"1 block\"\ndirection = \"{direction}\"\nby = 10"
        );
        let trips = trips_when(&when, &rows);
        assert_eq!(blocks(&trips), expected, "direction {direction}");
    }
}

#[test]
fn change_over_time_windows() {
    // 12 s blocks; a 30 s window starts at the newest sample at least 30 s old.
    let rows = series("m", &[100.0, 100.0, 100.0, 50.0]);
    let trips = trips_when(
        "kind = \"change\"\nmetric = \"m\"\nwindow = \"30s\"\ndirection = \"down\"\nby = \"40%\"",
        &rows,
    );
    assert_eq!(blocks(&trips), [103]);
    assert_eq!(trips[0].evidence["from"]["block"], 100);
}

#[test]
fn rate_per_block_and_per_second() {
    let rows = series("m", &[0.0, 10.0, 20.0, 60.0]);
    let per_block = policy(
        "kind = \"rate\"\nmetric = \"m\"\nwindow = \"1 block\"\nper = \"block\"\ndirection = \"up\"\nabove = 25",
    );
    assert_eq!(blocks(&run(&per_block, &rows)), [103]);
    let per_second = policy(
        "kind = \"rate\"\nmetric = \"m\"\nwindow = \"3 blocks\"\nper = \"second\"\ndirection = \"up\"\nabove = 1.5",
    );
    // Block 103 vs block 100: 60 over 36 s = 1.67/s.
    let trips = run(&per_second, &rows);
    assert_eq!(blocks(&trips), [103]);
    let rate = trips[0].evidence["rate"].as_f64().unwrap();
    assert!((rate - 60.0 / 36.0).abs() < 1e-12);
}

#[test]
fn windowed_sum_absolute() {
    let rows = series("out", &[1.0, 2.0, 3.0, 4.0, 0.0, 0.0]);
    let trips = trips_when(
        "kind = \"sum\"\nmetric = \"out\"\nwindow = \"3 blocks\"\nop = \">=\"\nvalue = 9",
        &rows,
    );
    // 2+3+4 = 9 at block 103; 3+4+0 = 7 at 104.
    assert_eq!(blocks(&trips), [103]);
    assert_eq!(trips[0].evidence["sum"], 9.0);
    assert_eq!(trips[0].evidence["samples"], 3);
    assert_eq!(trips[0].evidence["first_block"], 101);
}

#[test]
fn windowed_sum_relative_to_liquidity_is_the_erc7265_shape() {
    let mut rows = Vec::new();
    for i in 0..6u64 {
        let t = 1_000 + i * 12_000;
        rows.push((100 + i, t, "tvl", 1000.0 - 30.0 * i as f64));
        rows.push((100 + i, t, "outflow", 30.0));
    }
    let text = policy(
        "kind = \"sum\"\nmetric = \"outflow\"\nwindow = \"4 blocks\"\nop = \">\"\nvalue = \"10%\"\nrelative_to = \"tvl\"",
    );
    let trips = run(&text, &rows);
    // Four blocks of 30 = 120 against tvl 4 blocks before (1000 at block 100) = 12% at block 104.
    // At block 103 the tvl history does not reach back four blocks yet.
    assert_eq!(blocks(&trips)[0], 104);
    let ev = &trips[0].evidence;
    assert_eq!(ev["relative_to"]["metric"], "tvl");
    assert_eq!(ev["relative_to"]["value"], 1000.0);
    assert_eq!(ev["relative_to"]["sum_pct"], 12.0);
}

#[test]
fn deviation_between_two_feeds_with_skew_limit() {
    let rows = vec![
        (100, 1_000, "oracle", 100.0),
        (100, 1_000, "dex", 100.0),
        (101, 2_000, "oracle", 100.0),
        (101, 2_000, "dex", 94.0),
        (105, 6_000, "oracle", 120.0),
    ];
    let text = policy(
        "kind = \"deviation\"\nmetric = \"oracle\"\nreference = \"dex\"\nabove = \"5%\"\nmax_skew = \"2 blocks\"",
    );
    let trips = run(&text, &rows);
    // 100 vs 94 = 6.38% at block 101; at block 105 the dex sample is 4 blocks old: not judged.
    assert_eq!(blocks(&trips), [101]);
    let pct = trips[0].evidence["deviation_pct"].as_f64().unwrap();
    assert!((pct - 6.0 / 94.0 * 100.0).abs() < 1e-9);
}

#[test]
fn stale_counts_blocks_since_the_last_sample() {
    let mut rows = vec![(100, 0, "oracle", 1.0)];
    for b in 101..106 {
        rows.push((b, (b - 100) * 12_000, "heartbeat", 1.0));
    }
    let trips = run(
        &policy_with(
            "cooldown = \"100 blocks\"",
            "kind = \"stale\"\nmetric = \"oracle\"\nafter = \"3 blocks\"",
        ),
        &rows,
    );
    assert_eq!(blocks(&trips), [103]);
    assert_eq!(trips[0].evidence["age_blocks"], 3.0);
    assert_eq!(trips[0].evidence["last_sample"]["block"], 100);
}

#[test]
fn stale_by_time_for_a_metric_never_seen() {
    let rows: Vec<_> = (0..5u64)
        .map(|i| (100 + i, i * 30_000, "heartbeat", 1.0))
        .collect();
    let trips = run(
        &policy_with(
            "cooldown = \"1h\"",
            "kind = \"stale\"\nmetric = \"oracle\"\nafter = \"90s\"",
        ),
        &rows,
    );
    assert_eq!(blocks(&trips), [103]);
    assert!(trips[0].evidence["last_sample"].is_null());
}

#[test]
fn ewma_learns_a_baseline_then_flags_a_spike() {
    let mut values: Vec<f64> = (0..60)
        .map(|i| 50.0 + if i % 2 == 0 { 2.0 } else { -2.0 })
        .collect();
    values.push(200.0);
    let rows = series("fee", &values);
    let trips = trips_when(
        "kind = \"ewma\"\nmetric = \"fee\"\nhalflife = 20\nwarmup = 30\nz = 6\ndirection = \"up\"",
        &rows,
    );
    assert_eq!(blocks(&trips), [160]);
    let ev = &trips[0].evidence;
    assert!(ev["z"].as_f64().unwrap() > 6.0);
    assert!(ev["p_value"].as_f64().unwrap() < 1e-8);
}

#[test]
fn ewma_never_trips_during_warm_up() {
    let rows = series("fee", &[1.0, 1000.0, 1.0, 1e6]);
    assert!(trips_when("kind = \"ewma\"\nmetric = \"fee\"\nhalflife = 5\nwarmup = 10\nz = 3\ndirection = \"either\"", &rows).is_empty());
}

#[test]
fn cusum_catches_a_slow_shift_that_no_single_sample_shows() {
    let mut values: Vec<f64> = (0..40)
        .map(|i| 10.0 + if i % 2 == 0 { 1.0 } else { -1.0 })
        .collect();
    values.extend(std::iter::repeat_n(11.5, 30));
    let rows = series("m", &values);
    let cusum = trips_when(
        "kind = \"cusum\"\nmetric = \"m\"\nwarmup = 40\nslack = 0.5\nthreshold = 5\ndirection = \"up\"",
        &rows,
    );
    assert!(!cusum.is_empty());
    assert!(
        cusum[0].block >= 140 && cusum[0].block < 150,
        "{:?}",
        blocks(&cusum)
    );
    // A 3-sd threshold on single samples never sees it.
    let threshold = trips_when(
        "kind = \"threshold\"\nmetric = \"m\"\nop = \">\"\nvalue = 13",
        &rows,
    );
    assert!(threshold.is_empty());
}

#[test]
fn hysteresis_needs_consecutive_blocks() {
    let rows = series("m", &[9.0, 9.0, 1.0, 9.0, 9.0, 9.0, 9.0]);
    let text =
        policy("kind = \"threshold\"\nmetric = \"m\"\nop = \">\"\nvalue = 5\nfor = \"3 blocks\"");
    // True at 100, 101, reset at 102, then 103, 104, 105 -> trips at 105 and stays true at 106.
    assert_eq!(blocks(&run(&text, &rows)), [105, 106]);
    let trips = run(&text, &rows);
    assert_eq!(trips[0].evidence["held_for"], "3 consecutive blocks");
}

#[test]
fn hysteresis_in_blocks_counts_a_block_once() {
    // Two samples in the same block count as one block.
    let rows = vec![(100, 0, "m", 9.0), (100, 1, "m", 9.0), (101, 2, "m", 9.0)];
    let text =
        policy("kind = \"threshold\"\nmetric = \"m\"\nop = \">\"\nvalue = 5\nfor = \"3 blocks\"");
    assert!(run(&text, &rows).is_empty());
    let samples =
        policy("kind = \"threshold\"\nmetric = \"m\"\nop = \">\"\nvalue = 5\nfor = \"3 samples\"");
    assert_eq!(blocks(&run(&samples, &rows)), [101]);
}

#[test]
fn composites_all_any_at_least() {
    let rows = vec![
        (100, 0, "a", 1.0),
        (100, 0, "b", 1.0),
        (100, 0, "c", 0.0),
        (101, 12_000, "c", 1.0),
        (102, 24_000, "a", 0.0),
    ];
    let leaf =
        |m: &str| format!("{{ kind = \"threshold\", metric = \"{m}\", op = \">\", value = 0.5 }}");
    let of = format!("of = [{}, {}, {}]", leaf("a"), leaf("b"), leaf("c"));
    assert_eq!(
        blocks(&run(&policy(&format!("kind = \"all\"\n{of}")), &rows)),
        [101]
    );
    assert_eq!(
        blocks(&run(&policy(&format!("kind = \"any\"\n{of}")), &rows)),
        [100, 100, 100, 101, 102]
    );
    let at_least = run(
        &policy(&format!("kind = \"at_least\"\ncount = 2\n{of}")),
        &rows,
    );
    // With no cooldown, every evaluation while two hold trips (b at 100, c at 100, c at 101, a at 102).
    assert_eq!(blocks(&at_least), [100, 100, 101, 102]);
    let ev = &at_least[3].evidence;
    assert_eq!(ev["condition"], "at_least");
    assert_eq!(ev["required"], 2);
    assert_eq!(ev["held"], 2);
    assert_eq!(ev["of"][0]["holds"], false);
    assert_eq!(ev["of"][2]["holds"], true);
}

#[test]
fn cooldown_in_blocks_and_in_time() {
    let rows = series("m", &[9.0; 10]);
    let when = "kind = \"threshold\"\nmetric = \"m\"\nop = \">\"\nvalue = 5";
    assert_eq!(
        blocks(&run(&policy_with("cooldown = \"4 blocks\"", when), &rows)),
        [100, 104, 108]
    );
    // 12 s blocks, 30 s cooldown: 100 (t=0), 103 (36 s), 106, 109.
    assert_eq!(
        blocks(&run(&policy_with("cooldown = \"30s\"", when), &rows)),
        [100, 103, 106, 109]
    );
}

#[test]
fn modes_take_the_more_cautious_of_policy_and_global() {
    let text = policy_with(
        "cooldown = \"1 block\"\nmode = \"dry-run\"",
        "kind = \"threshold\"\nmetric = \"m\"\nop = \">\"\nvalue = 0",
    );
    let set = compile_str("t.toml", &text, &Config::empty()).unwrap();
    for (global, expected) in [
        (Mode::Enforce, Mode::DryRun),
        (Mode::AlertOnly, Mode::AlertOnly),
    ] {
        let mut engine = Engine::new(set.clone(), global);
        let m = engine.metric_id("m").unwrap();
        let mut modes = Vec::new();
        engine.on_sample(
            Sample {
                block: 1,
                time_ms: 0,
                metric: m,
                value: 1.0,
            },
            &mut |t| modes.push(t.mode),
        );
        assert_eq!(modes, [expected]);
    }
}

#[test]
fn a_reorged_block_is_replaced_by_its_corrected_sample() {
    let text =
        policy("kind = \"sum\"\nmetric = \"out\"\nwindow = \"3 blocks\"\nop = \">=\"\nvalue = 10");
    let rows = vec![
        (100, 0, "out", 4.0),
        (101, 1, "out", 4.0),
        // block 101 reorged: the corrected block carries 1, not 4
        (101, 2, "out", 1.0),
        (102, 3, "out", 4.0),
        (103, 4, "out", 6.0),
    ];
    // Without the correction, 100..102 would sum to 12. With it: 9 at 102, then 1+4+6 = 11 at 103.
    let trips = run(&text, &rows);
    assert_eq!(blocks(&trips), [103]);
    assert_eq!(trips[0].evidence["sum"], 11.0);
}

#[test]
fn policies_only_see_their_own_metrics() {
    let text = "[[policy]]\nid = \"a\"\ndescription = \"x\"\nseverity = \"info\"\naction = \"x\"\ncooldown = \"0 blocks\"\n[policy.when]\nkind = \"threshold\"\nmetric = \"a\"\nop = \">\"\nvalue = 0\n\n[[policy]]\nid = \"b\"\ndescription = \"x\"\nseverity = \"info\"\naction = \"x\"\ncooldown = \"0 blocks\"\n[policy.when]\nkind = \"threshold\"\nmetric = \"b\"\nop = \">\"\nvalue = 0\n";
    let trips = run(
        text,
        &[(1, 0, "a", 1.0), (1, 0, "zzz", 1.0), (2, 1, "b", 1.0)],
    );
    let ids: Vec<_> = trips.iter().map(|t| (t.policy.as_str(), t.block)).collect();
    assert_eq!(ids, [("a", 1), ("b", 2)]);
}

#[test]
fn a_sparse_outflow_leaves_the_window_on_time() {
    // Regression: the sum used to end at the outflow's own newest sample, so an
    // outflow 900 blocks old was counted again whenever liquidity was sampled,
    // and the real outflow found no liquidity value old enough to compare with.
    let text = policy(
        "kind = \"sum\"\nmetric = \"out\"\nwindow = \"10 blocks\"\nop = \">\"\nvalue = \"10%\"\nrelative_to = \"liq\"",
    );
    let rows = vec![
        (50, 50, "liq", 100.0),
        (100, 100, "out", 20.0),
        (1000, 1000, "liq", 100.0),
        (1001, 1001, "liq", 100.0),
    ];
    let trips = run(&text, &rows);
    assert_eq!(blocks(&trips), [100]);
    assert_eq!(trips[0].evidence["relative_to"]["value"], 100.0);
    assert_eq!(trips[0].evidence["relative_to"]["sum_pct"], 20.0);
}

#[test]
fn a_stale_condition_clears_when_its_metric_arrives_in_the_same_block() {
    let text = policy_with(
        "cooldown = \"0 blocks\"",
        "kind = \"all\"\nof = [{ kind = \"stale\", metric = \"oracle\", after = \"2 blocks\" }, { kind = \"threshold\", metric = \"tvl\", op = \">\", value = 0 }]",
    );
    let rows = vec![
        (100, 0, "oracle", 1.0),
        (103, 3, "hb", 1.0),
        // Block 104: the oracle answers first, then tvl; the stale part must be false by then.
        (104, 4, "oracle", 1.0),
        (104, 4, "tvl", 1.0),
    ];
    assert!(run(&text, &rows).is_empty());
}

/// Issue 14: a cooldown is never silent, and a replayed trip never silences a
/// new incident.
mod cooldowns {
    use super::*;
    use guardian::policy::eval::Held;

    const DROP: &str = "kind = \"threshold\"\nmetric = \"m\"\nop = \"<\"\nvalue = 5";

    fn engine() -> Engine {
        let text = policy_with("cooldown = \"50 blocks\"", DROP);
        let set =
            compile_str("test.toml", &text, &Config::empty()).unwrap_or_else(|e| panic!("{e}"));
        Engine::new(set, Mode::Enforce)
    }

    /// Feeds one sample at `block`; returns (trips, holds).
    fn feed(engine: &mut Engine, block: u64, value: f64) -> (Vec<u64>, Vec<Held>) {
        let metric = engine.metric_id("m").unwrap();
        let mut trips = Vec::new();
        engine.on_sample(
            Sample {
                block,
                time_ms: block * 12_000,
                metric,
                value,
            },
            &mut |t| trips.push(t.block),
        );
        let mut held = Vec::new();
        engine.drain_held(|h| held.push(h));
        (trips, held)
    }

    #[test]
    fn a_new_incident_inside_the_cooldown_is_held_counted_and_reported_once() {
        let mut e = engine();
        assert_eq!(feed(&mut e, 100, 1.0).0, [100]);
        // The same incident goes on: neither a trip nor a hold.
        assert_eq!(feed(&mut e, 101, 1.0), (vec![], vec![]));
        feed(&mut e, 102, 9.0);
        // A new incident inside the 50-block cooldown: held, reported once.
        let (trips, held) = feed(&mut e, 110, 1.0);
        assert!(trips.is_empty());
        assert_eq!(held.len(), 1);
        assert_eq!((held[0].block, held[0].last_trip.0), (110, 100));
        assert_eq!(held[0].ready(), (Some(150), None));
        assert!(feed(&mut e, 111, 1.0).1.is_empty(), "once per incident");
        assert_eq!(e.stats().held, [1]);
        // After the cooldown it trips again.
        assert_eq!(feed(&mut e, 150, 1.0).0, [150]);
    }

    #[test]
    fn a_replayed_trip_holds_its_own_incident_only() {
        let mut e = engine();
        assert_eq!(feed(&mut e, 100, 1.0).0, [100]);
        // The caller says: that trip was decided before the restart, in this mode.
        e.replayed_trip("p", true);
        assert_eq!(
            feed(&mut e, 101, 1.0),
            (vec![], vec![]),
            "same incident: decided"
        );
        feed(&mut e, 102, 9.0);
        assert_eq!(feed(&mut e, 110, 1.0).0, [110], "a new incident trips");
    }

    #[test]
    fn a_trip_replayed_from_another_mode_holds_nothing() {
        let mut e = engine();
        assert_eq!(feed(&mut e, 100, 1.0).0, [100]);
        // Decided in dry-run, now enforce: not even the same incident is held.
        e.replayed_trip("p", false);
        assert_eq!(feed(&mut e, 101, 1.0).0, [101]);
    }
}
