//! The HTML reports (`simulate --report`, `calibrate --report`) opened in a
//! real headless Chromium: the page must parse and lay out its SVG charts.
//! Skipped, with a printed reason, only when no chromium binary is installed
//! (`.ci/run` installs Debian's `chromium`).

#[path = "common/traces.rs"]
mod traces;

use std::path::{Path, PathBuf};
use std::process::Command;

use traces::{guardian_ok, shared_trace};

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// The DOM after load, as headless Chromium serialises it.
fn dump_dom(browser: &Path, page: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `data-rendered` on <body>: charts whose polyline has a laid-out size (set by the page's script).
fn rendered(dom: &str) -> usize {
    let at = dom
        .find("data-rendered=\"")
        .unwrap_or_else(|| panic!("the page's render check did not run:\n{dom}"));
    let rest = &dom[at + 15..];
    rest[..rest.find('"').unwrap()].parse().unwrap()
}

fn guardian(args: &[&str], trace: &Path) {
    let args: Vec<&str> = args.iter().copied().chain(["--trace"]).collect();
    guardian_ok(&args, &[trace]);
}

#[test]
fn backtest_and_trade_off_pages_render_their_charts_in_chromium() {
    let Some(browser) = chromium() else {
        println!(
            "SKIPPED: no chromium on PATH (apt-get install chromium); the HTML reports were not opened"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let backtest = dir.path().join("nomad.html");
    let b = backtest.display().to_string();
    guardian(
        &[
            "simulate",
            "--config",
            "simulations/traces/nomad.toml",
            "--report",
            &b,
            "--losses",
            "nomad.outflow.*",
        ],
        &shared_trace("nomad-2022-08-01-drain.csv"),
    );
    let dom = dump_dom(&browser, &backtest);
    // Two policies tripped on the drain, one condition each: two charts, both laid out.
    assert_eq!(dom.matches("<polyline").count(), 2, "{dom}");
    assert_eq!(rendered(&dom), 2);
    assert_eq!(
        dom.matches("class=\"trip\"").count(),
        12,
        "one line per trip"
    );
    assert!(dom.matches("class=\"loss\"").count() > 100, "losses marked");
    assert!(dom.contains("class=\"threshold\""));
    assert!(
        dom.contains("first trip 1 block(s) after the first loss"),
        "{dom}"
    );

    let calibration = dir.path().join("calibration.html");
    let c = calibration.display().to_string();
    guardian(
        &[
            "calibrate",
            "--metric",
            "chain.base_fee_gwei",
            "--detector",
            "change",
            "--window",
            "3 blocks",
            "--false-alarms",
            "1/1h",
            "--attack",
            "jump:100%",
            "--injections",
            "4",
            "--report",
            &c,
        ],
        &shared_trace("basefee-2022-05-13.csv"),
    );
    let dom = dump_dom(&browser, &calibration);
    assert_eq!(rendered(&dom), 1, "the trade-off curve");
    assert!(dom.matches("class=\"candidate\"").count() >= 5, "{dom}");
    assert!(dom.contains("false alarms per 30 days"));
    println!("chromium rendered the backtest (2 charts) and the trade-off curve");
}
