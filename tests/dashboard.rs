//! The dashboard in headless Chromium, served by a real daemon over a devnet: it loads,
//! fetches the daemon's API, and every number it shows equals `/api/status` (and
//! `/api/failures`) once the pipeline has settled. The screenshot is left at
//! `target/dashboard.png`.
//!
//! Needs Chromium: `scripts/install-chromium.sh` (run by `make test`) installs it, and
//! `NIFTY_SKIP_BROWSER=1` skips the test instead.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Duration;

mod support {
    pub mod browser;
    pub mod daemon;
    pub mod devnet;
}
use support::browser;
use support::daemon::{Daemon, NIFTY, config};

#[test]
fn the_dashboard_shows_what_the_daemon_counts() {
    if std::env::var("NIFTY_SKIP_BROWSER").is_ok_and(|v| v == "1") {
        eprintln!("skipped: NIFTY_SKIP_BROWSER=1");
        return;
    }
    let chromium = browser::chromium().unwrap_or_else(|| {
        panic!("Chromium not found: run scripts/install-chromium.sh (make test does), or set NIFTY_SKIP_BROWSER=1")
    });
    let devnet = support::devnet::start(NIFTY, 2000, 21, &[]);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config(dir.path(), Some(&devnet), true, ""));
    d.wait_settled(Duration::from_secs(90));
    // Settled on a static chain: the numbers no longer move, so the page and the API must
    // agree exactly.
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("dashboard.png");
    let page = browser::load(
        &chromium,
        &format!("{}/", d.api),
        &browser::Load {
            virtual_ms: 3_000,
            screenshot: Some(&shot),
            ..browser::Load::default()
        },
    )
    .unwrap();
    assert_eq!(
        page.state.as_deref(),
        Some("ready"),
        "console: {:?}",
        page.console
    );
    let status = d.json("/api/status");
    let failures = d.json("/api/failures");
    let shown = browser::shown_values(&page.dom);
    let want = browser::expected_values(&status, &failures);
    let mut wrong = vec![];
    for (k, v) in &want {
        match shown.get(k) {
            Some(s) if s == v => {}
            other => wrong.push(format!("{k}: shown {other:?}, API {v}")),
        }
    }
    assert!(
        wrong.is_empty(),
        "the page disagrees with the API:\n{}",
        wrong.join("\n")
    );
    assert!(want.len() >= 25, "{want:?}");
    let rows: u64 = shown["runs.count"].parse().unwrap();
    assert!(rows > 0, "recent runs are listed");
    // Nothing refused by the page's own CSP, no script errors.
    let bad: Vec<&String> = page
        .console
        .iter()
        .filter(|l| l.contains("Content Security Policy") || l.contains("Uncaught"))
        .collect();
    assert!(bad.is_empty(), "{bad:?}");
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "screenshot at {}",
        shot.display()
    );
    println!("screenshot: {}", shot.display());
}
