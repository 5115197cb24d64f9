//! The dashboard page on its own, in headless Chromium: served with fixture API answers
//! (under a path prefix, as behind a reverse proxy), every number it shows read back from
//! its DOM and compared with the fixture, API text that looks like markup shown as text,
//! and a failed refresh shown as stale with the last data kept. Screenshots are left in
//! `target/dashboard-fixture*.png` for people to look at.
//!
//! Needs Chromium: `scripts/install-chromium.sh` (run by `make test`) installs it, and
//! `NIFTY_SKIP_BROWSER=1` skips these tests instead.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/browser.rs"]
mod browser;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

/// Looks like markup; the page must show it as text (a token URI or a failure reason can be
/// anything a contract's deployer likes).
const HOSTILE: &str = "<img src=x onerror=alert(1)>";
/// A source name that needs escaping inside an attribute.
const QUOTED: &str = r#"quote"amp&name"#;
/// The daemon's clock in the fixture.
const NOW_MS: u64 = 1_763_900_000_000;

fn run(id: u64, job: &str, ago_s: u64, outcome: &str, reason: Option<&str>) -> Value {
    let started = NOW_MS - ago_s * 1000;
    let duration = (outcome != "running").then_some(1_534 + id * 211);
    json!({
        "id": id, "job": job, "started_ms": started,
        "ended_ms": duration.map(|d| started + d),
        "outcome": outcome, "reason": reason,
        "pages": id % 4, "items": id * 1_200, "errors": id % 3, "duration_ms": duration,
    })
}

fn status_fixture() -> Value {
    // An hour of samples every 10 s, with a stretch where the daemon recorded nothing.
    let mut history = Vec::new();
    let (mut tokens, mut linked, mut pins, mut pinned) = (10_000u64, 5_000u64, 12_000u64, 9_000u64);
    for i in 0..360u64 {
        tokens += 80 + (i * 37) % 90;
        linked += 60 + (i * 13) % 50;
        pins += 70 + (i * 29) % 60;
        pinned += 50 + (i * 17) % 70;
        if (120..135).contains(&i) {
            continue;
        }
        history.push(json!({
            "t_ms": NOW_MS - 3_600_000 + i * 10_000,
            "tokens": tokens, "linked": linked, "pins": pins, "pins_pinned": pinned,
        }));
    }
    let source = |name: &str, cursor: Value, head: Value, end: Value, lag: Value, tokens: u64| {
        json!({
            "name": name, "kind": null, "enabled": null, "cursor": cursor,
            "snapshot": 12_010, "head": head, "end": end, "lag": lag, "tokens": tokens,
            "updated_ms": NOW_MS - 20_000,
        })
    };
    json!({
        "data_dir": "/var/lib/nifty", "schema_version": 3, "disk_bytes": 123_456_789u64,
        "tokens": 50_000,
        // content_parse_failed is absent: the page shows 0.
        "tokens_by_status": {
            "linked": 40_000, "parsed": 2_000, "queued": 100, "no_uri": 900,
            "uri_parse_failed": 1_000, "content_fetch_failed": 6_000,
        },
        "tokens_by_source": {"devnet": 48_000, "backfill/demo": 2_000},
        "contracts": 40,
        "pins": 61_000,
        // wanted is absent.
        "pins_by_status": {"pinned": 60_000, "pinning": 500, "queued": 300, "retrying": 180, "failed": 20},
        "outbox": {"analyse": 100, "pin": 150},
        "failures": {"fetch.http_404": 3_000, "fetch.timeout": 2_000, "pin.pin_error": 20},
        "sources": [
            {"name": "devnet", "kind": "graph", "enabled": true,
             "cursor": {"block": 12_000, "id": "0xabc_17"}, "snapshot": 12_010, "head": 12_030,
             "end": null, "lag": 30, "tokens": 48_000, "updated_ms": NOW_MS - 4_000},
            {"name": QUOTED, "kind": "graph", "enabled": false,
             "cursor": {"block": 18_234_567, "id": ""}, "snapshot": 19_000_000, "head": 19_000_012,
             "end": null, "lag": 765_445, "tokens": 0, "updated_ms": NOW_MS - 3 * 86_400_000},
            // Never polled: no cursor, no head, no lag.
            {"name": HOSTILE, "kind": null, "enabled": null, "cursor": null, "snapshot": null,
             "head": null, "end": null, "lag": null, "tokens": 0, "updated_ms": null},
            source("backfill/demo", json!({"block": 1_000, "id": ""}), json!(12_030), json!(9_000), Value::Null, 0),
            source("backfill/demo/00000", json!({"block": 3_001, "id": ""}), json!(12_030), json!(3_000), Value::Null, 900),
            source("backfill/demo/00001", json!({"block": 4_500, "id": "0x1_4"}), json!(12_030), json!(6_000), Value::Null, 400),
            source("backfill/demo/00002", json!({"block": 9_001, "id": ""}), json!(12_030), json!(9_000), Value::Null, 700),
        ],
        "daemon": {
            "version": "0.1.0", "started_ms": NOW_MS - 3 * 3_600_000 - 125_000, "now_ms": NOW_MS,
            "jobs": [
                {"job": "scrape/devnet", "schedule": "*/5 * * * * *", "budget_secs": 4, "running": true,
                 "last": run(40, "scrape/devnet", 6, "completed", None)},
                {"job": "analyse", "schedule": "*/10 * * * * *", "budget_secs": 8, "running": false,
                 "last": run(39, "analyse", 12, "budget_spent", None)},
                {"job": "pin", "schedule": "0 * * * * *", "budget_secs": 50, "running": false,
                 "last": run(38, "pin", 50, "failed", Some("cluster unavailable: http_503"))},
                {"job": "follow", "schedule": "0 */15 * * * *", "budget_secs": 600, "running": false,
                 "last": null},
            ],
        },
        "history": history,
    })
}

fn runs_fixture() -> Value {
    let outcomes: [(&str, Option<&str>); 7] = [
        ("running", None),
        ("completed", None),
        ("budget_spent", None),
        ("skipped", Some("previous run still going")),
        ("interrupted", Some("shutdown")),
        ("failed", Some("cluster unavailable: http_503")),
        ("failed", Some(HOSTILE)),
    ];
    let jobs = ["scrape/devnet", "analyse", "pin", "follow", "backfill/demo"];
    let runs: Vec<Value> = (0..14u64)
        .map(|i| {
            let (outcome, reason) = outcomes[i as usize % outcomes.len()];
            run(
                40 - i,
                jobs[i as usize % jobs.len()],
                2 + i * 47,
                outcome,
                reason,
            )
        })
        .collect();
    json!({ "runs": runs })
}

fn failures_fixture() -> Value {
    json!({
        "since_ms": null, "tokens": 50_000, "tokens_by_status": {}, "pins_by_status": {},
        "failures": [
            {"stage": "fetch", "reason": "http_404", "count": 3_000,
             "examples": ["0x5fbdb2315678afecb367f032d93f642f64180aa3_12"]},
            {"stage": "fetch", "reason": "timeout", "count": 2_000, "examples": ["0x5fbd_13", "0x5fbd_14"]},
            {"stage": "parse", "reason": HOSTILE, "count": 1_000, "examples": [HOSTILE]},
            {"stage": "uri", "reason": "unsupported_scheme", "count": 999, "examples": []},
            {"stage": "pin", "reason": "pin_error", "count": 20, "examples": ["0xdeadbeef_1"]},
        ],
    })
}

/// What the page must show, by the test contract's keys, worked out from the fixtures.
fn expected(status: &Value, runs: &Value, failures: &Value) -> BTreeMap<String, String> {
    let mut want = browser::expected_values(status, failures);
    let shown_runs = runs["runs"].as_array().unwrap().len().min(20);
    want.insert("runs.count".to_owned(), shown_runs.to_string());
    want
}

/// Keys whose value is null in the fixture: shown with a `data-k` but no `data-v`.
fn expected_nulls(status: &Value) -> BTreeSet<String> {
    let mut nulls = BTreeSet::new();
    for s in status["sources"].as_array().unwrap() {
        let name = s["name"].as_str().unwrap();
        for (key, v) in [
            ("cursor_block", &s["cursor"]["block"]),
            ("head", &s["head"]),
            ("lag", &s["lag"]),
            ("tokens", &s["tokens"]),
        ] {
            if v.is_null() {
                nulls.insert(format!("sources.{name}.{key}"));
            }
        }
    }
    nulls
}

fn json_response(body: &Arc<String>) -> Response {
    (
        [(CONTENT_TYPE, "application/json")],
        body.as_str().to_owned(),
    )
        .into_response()
}

/// The dashboard and the three API reads. With `fail_after`, `api/status` answers 503
/// after that many successful reads.
fn site(fail_after: Option<usize>) -> Router {
    let status = Arc::new(status_fixture().to_string());
    let runs = Arc::new(runs_fixture().to_string());
    let failures = Arc::new(failures_fixture().to_string());
    let reads = Arc::new(AtomicUsize::new(0));
    Router::new()
        .route(
            "/api/status",
            get(move || async move {
                let n = reads.fetch_add(1, Ordering::SeqCst);
                if fail_after.is_some_and(|limit| n >= limit) {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("store busy: {HOSTILE}"),
                    )
                        .into_response()
                } else {
                    json_response(&status)
                }
            }),
        )
        .route(
            "/api/runs",
            get(move || async move { json_response(&runs) }),
        )
        .route(
            "/api/failures",
            get(move || async move { json_response(&failures) }),
        )
        .merge(nifty::api::dashboard::routes())
}

/// An HTTP server on 127.0.0.1 in a thread of its own, stopped when dropped.
struct Server {
    base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(app: Router) -> Server {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Server {
            base: format!("http://{addr}"),
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Chromium, or `None` (with a note) when `NIFTY_SKIP_BROWSER=1`; fails the test otherwise.
fn chromium_or_skip() -> Option<PathBuf> {
    if std::env::var("NIFTY_SKIP_BROWSER").is_ok_and(|v| v == "1") {
        eprintln!("skipped: NIFTY_SKIP_BROWSER=1");
        return None;
    }
    match browser::chromium() {
        Some(p) => Some(p),
        None => panic!(
            "Chromium not found (NIFTY_CHROMIUM, /usr/bin/chromium, or chromium on PATH): \
             run scripts/install-chromium.sh (make test does), or set NIFTY_SKIP_BROWSER=1 to skip"
        ),
    }
}

/// The start of a DOM, for failure messages (an error page embeds kilobytes of base64).
fn excerpt(dom: &str) -> &str {
    let end = dom.char_indices().nth(1_500).map_or(dom.len(), |(i, _)| i);
    &dom[..end]
}

/// `target/<name>`: where people look for the screenshots.
fn target_file(name: &str) -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join(name)
}

/// The checks every rendering of the fixture must pass: each number as the fixture has it,
/// null numbers without a value, no key twice, markup in API text shown as text, and no
/// script error or CSP refusal on the console.
fn check_page(page: &browser::Page, what: &str) {
    let (status, runs, failures) = (status_fixture(), runs_fixture(), failures_fixture());
    let shown = browser::shown(&page.dom);
    let mut seen = BTreeSet::new();
    for s in &shown {
        assert!(
            seen.insert(s.key.clone()),
            "{what}: data-k {:?} shown twice",
            s.key
        );
    }
    let want = expected(&status, &runs, &failures);
    let got = browser::shown_values(&page.dom);
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    let wrong: Vec<_> = want
        .iter()
        .filter_map(|(k, v)| got.get(k).filter(|g| *g != v).map(|g| (k, v, g)))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && wrong.is_empty(),
        "{what}: missing {missing:?}\nunexpected {extra:?}\nwrong (key, want, got) {wrong:?}"
    );
    for key in expected_nulls(&status) {
        let s = shown.iter().find(|s| s.key == key);
        assert!(
            s.is_some_and(|s| s.value.is_none()),
            "{what}: {key} is null: want an element with no data-v, got {s:?}"
        );
    }

    // The hostile strings arrive as text (escaped in the serialization), never as elements.
    let tags = browser::start_tags(&page.dom);
    assert!(
        !tags.iter().any(|(t, _)| t == "img"),
        "{what}: API text became an <img> element"
    );
    let as_text = "&lt;img src=x onerror=alert(1)&gt;";
    assert!(
        page.dom.matches(as_text).count() >= 3,
        "{what}: the hostile source name, reason and example should each show as text"
    );
    assert!(
        page.dom.contains("quote\"amp&amp;name"),
        "{what}: quoted source name not shown"
    );

    let bad: Vec<_> = page
        .console
        .iter()
        .filter(|l| l.contains("Uncaught") || l.contains("Refused") || l.contains("Error"))
        .collect();
    assert!(bad.is_empty(), "{what}: console errors: {bad:#?}");
}

#[test]
fn page_shows_every_number_and_api_text_as_text() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    // Behind a path prefix, as under a reverse proxy: the page must use relative URLs.
    let server = Server::start(Router::new().nest("/nifty/", site(None)));
    let url = format!("{}/nifty/", server.base);
    let shot = target_file("dashboard-fixture.png");
    let page = browser::load(
        &chromium,
        &url,
        &browser::Load {
            screenshot: Some(&shot),
            ..browser::Load::default()
        },
    )
    .unwrap();
    eprintln!(
        "wide: {} Chromium runs in {:?}; screenshot {}",
        page.runs,
        page.elapsed,
        shot.display()
    );
    assert_eq!(
        page.state.as_deref(),
        Some("ready"),
        "page never got ready: {}",
        excerpt(&page.dom)
    );
    let renders = browser::body_attr(&page.dom, "data-renders").and_then(|r| r.parse::<u32>().ok());
    assert!(renders.is_some_and(|r| r >= 1), "data-renders: {renders:?}");
    check_page(&page, "wide");
    // Live, not stale; the daemon's version in the header.
    assert!(
        page.dom.contains(r#"data-live="live""#),
        "not shown as live"
    );
    assert!(page.dom.contains("v0.1.0"), "version not shown");
    assert!(
        std::fs::metadata(&shot).is_ok_and(|m| m.len() > 10_000),
        "no screenshot at {}",
        shot.display()
    );
}

#[test]
fn page_fits_a_narrow_window_and_a_dark_scheme() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let server = Server::start(Router::new().nest("/nifty/", site(None)));
    let url = format!("{}/nifty/", server.base);
    for (name, width, dark) in [
        ("dashboard-fixture-narrow.png", 400, false),
        ("dashboard-fixture-dark.png", 1440, true),
    ] {
        let shot = target_file(name);
        let page = browser::load(
            &chromium,
            &url,
            &browser::Load {
                width,
                height: 900,
                dark,
                screenshot: Some(&shot),
                ..browser::Load::default()
            },
        )
        .unwrap();
        eprintln!("{name}: {} Chromium runs in {:?}", page.runs, page.elapsed);
        assert_eq!(
            page.state.as_deref(),
            Some("ready"),
            "{name}: page never got ready: {}",
            excerpt(&page.dom)
        );
        check_page(&page, name);
        assert!(
            std::fs::metadata(&shot).is_ok_and(|m| m.len() > 10_000),
            "no screenshot at {}",
            shot.display()
        );
    }
}

#[test]
fn a_failed_refresh_keeps_the_last_data_and_says_stale() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    // The first read succeeds; from the next refresh (5 s later) the daemon answers 503.
    let server = Server::start(Router::new().nest("/stale/", site(Some(1))));
    let url = format!("{}/stale/", server.base);
    let shot = target_file("dashboard-fixture-stale.png");
    let page = browser::load(
        &chromium,
        &url,
        &browser::Load {
            // Two refreshes: at 0 and 5 s.
            virtual_ms: 7_000,
            until: &["error"],
            height: 1000,
            screenshot: Some(&shot),
            // The server answers a second load differently, so one load, one window.
            full_page: false,
            ..browser::Load::default()
        },
    )
    .unwrap();
    eprintln!("stale: {} Chromium runs in {:?}", page.runs, page.elapsed);
    assert_eq!(
        page.state.as_deref(),
        Some("error"),
        "a failed refresh must set data-state=error: {}",
        excerpt(&page.dom)
    );
    let renders = browser::body_attr(&page.dom, "data-renders").and_then(|r| r.parse::<u32>().ok());
    assert!(
        renders.is_some_and(|r| r >= 2),
        "want a render per refresh, got {renders:?}"
    );
    // Every number from the last good refresh is still there.
    check_page(&page, "stale");
    assert!(
        page.dom.contains(r#"data-live="stale""#),
        "not shown as stale"
    );
    assert!(page.dom.contains("HTTP 503"), "the banner should say why");
}

#[test]
fn a_hung_server_times_out_and_leaves_no_chromium_behind() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    // Accepts connections (the kernel does, into the backlog) and never answers, so virtual
    // time waits on the request forever and only the wall-clock limit ends the load.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", hung.local_addr().unwrap());
    let err = browser::load(
        &chromium,
        &url,
        &browser::Load {
            timeout: Duration::from_secs(3),
            ..browser::Load::default()
        },
    )
    .unwrap_err();
    assert!(err.contains("timed out"), "{err}");
    // Chromium's command line holds the URL: no process of that load may be left.
    let left = std::process::Command::new("pgrep")
        .args(["-f", &url])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "Chromium left running: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}
