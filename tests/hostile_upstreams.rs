//! The binary against upstreams that misbehave on purpose (`support/hostile.rs`): a
//! subgraph and a chain node that echo the API key they were sent, split by raw newlines
//! and encoded, and that answer with bodies of 500 MB or without end. No piece of the key
//! may reach the output, the store or an API answer; an oversized answer is read once, up
//! to its cap, and reported as `too_large` with its size.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nifty_state::{RunOutcome, RunRecord, Store, StoreOptions};

mod support {
    pub mod hostile;
}
use support::hostile::{Hostile, KEY, Mode, assert_no_secret};

const NIFTY: &str = env!("CARGO_BIN_EXE_nifty");
/// The variable the source's `api_key_env` names.
const KEY_ENV: &str = "HOSTILE_TEST_API_KEY";
const MIB: u64 = 1024 * 1024;

/// A config with one source `s` of `kind` at `url`, its key read from [`KEY_ENV`].
fn config(dir: &Path, kind: &str, url: &str, extra: &str) -> PathBuf {
    let text = format!(
        r#"
data_dir = "{data}"
[store]
sync_commits = false
[http]
listen = "127.0.0.1:0"
[jobs]
run_at_start = true
[jobs.analyse]
enabled = false
[jobs.pin]
enabled = false
[jobs.follow]
enabled = false
[sources.s]
kind = "{kind}"
url = "{url}"
api_key_env = "{KEY_ENV}"
timeout_ms = 5000
confirmations = 5
{extra}
"#,
        data = dir.join("data").display(),
    );
    let path = dir.join("nifty.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn nifty(config: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(NIFTY);
    for (k, _) in std::env::vars() {
        if k.starts_with("NIFTY_") {
            cmd.env_remove(k);
        }
    }
    cmd.arg("--config")
        .arg(config)
        .args(args)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .env(KEY_ENV, KEY)
        .output()
        .unwrap()
}

fn text(o: &Output) -> (i32, String, String) {
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Every run record in the store, as text.
fn stored_runs(dir: &Path) -> String {
    let s = Store::open(&dir.join("data"), &StoreOptions::default()).unwrap();
    format!("{:?}", s.runs(100).unwrap())
}

/// Log lines an upstream forged by sending a raw newline: any line that is not one of
/// ours (ours start with a timestamp, `error:` or a known word).
fn forged_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains("forged log line") && l.trim_start().starts_with("2026-12-02T00"))
        .collect()
}

#[test]
fn a_backfill_never_shows_or_stores_a_key_its_subgraph_or_node_echoes() {
    type Start = fn(Mode) -> Hostile;
    // (kind, mode, server, whether a run starts: it does once the head was read)
    let cases: [(&str, Mode, Start, bool); 8] = [
        ("graph", Mode::EchoInErrors, Hostile::subgraph, false),
        (
            "graph",
            Mode::EchoInErrors,
            Hostile::subgraph_after_head,
            true,
        ),
        ("graph", Mode::EchoInStatus(401), Hostile::subgraph, false),
        (
            "graph",
            Mode::EchoInStatus(400),
            Hostile::subgraph_after_head,
            true,
        ),
        ("rpc", Mode::EchoInErrors, Hostile::node, false),
        ("rpc", Mode::EchoInErrors, Hostile::node_after_head, true),
        ("rpc", Mode::EchoInStatus(401), Hostile::node, false),
        (
            "rpc",
            Mode::EchoInStatus(403),
            Hostile::node_after_head,
            true,
        ),
    ];
    for (kind, mode, start, runs) in cases {
        let d = tempfile::tempdir().unwrap();
        let up = start(mode);
        let cfg = config(d.path(), kind, &up.url, "");
        let (code, out, err) = text(&nifty(
            &cfg,
            &["backfill", "--source", "s", "--workers", "1"],
        ));
        let what = format!("{kind} {mode:?} (head answered: {runs})");
        assert_ne!(code, 0, "{what}: {out} {err}");
        assert!(up.requests() > 0, "{what}: the upstream was never asked");
        assert!(!err.contains("panicked"), "{what}: {err}");
        assert_no_secret(&format!("{what}: stdout"), &out);
        assert_no_secret(&format!("{what}: stderr"), &err);
        assert!(
            forged_lines(&err).is_empty(),
            "{what}: a forged line in {err}"
        );
        // The error still says what happened, with the key masked.
        assert!(err.contains("<redacted>"), "{what}: {err}");
        let stored = stored_runs(d.path());
        assert_eq!(stored.contains("Failed"), runs, "{what}: {stored}");
        assert_no_secret(&format!("{what}: run records"), &stored);
    }
}

/// Reads `nifty run`'s ready line and returns its API address.
fn ready(child: &mut std::process::Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    v["api"].as_str().unwrap().to_owned()
}

fn get(url: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { reqwest::get(url).await.unwrap().text().await.unwrap() })
}

#[test]
fn the_daemon_serves_no_key_a_subgraph_echoed_and_scrubs_what_an_old_store_kept() {
    let d = tempfile::tempdir().unwrap();
    let up = Hostile::subgraph(Mode::EchoInErrors);
    let cfg = config(
        d.path(),
        "graph",
        &up.url,
        "schedule = \"* * * * * *\"\nbudget_secs = 2\n",
    );
    // A store written before the fix kept an upstream's words as they came.
    {
        let s = Store::open(&d.path().join("data"), &StoreOptions::default()).unwrap();
        let id = s.start_run("scrape/s", 1).unwrap();
        s.finish_run(
            id,
            &RunRecord {
                job: "scrape/s".into(),
                started_ms: 1,
                ended_ms: Some(2),
                outcome: RunOutcome::Failed {
                    reason: format!("graphql: bad key Bearer {KEY}"),
                },
                pages: 0,
                items: 0,
                errors: 1,
            },
        )
        .unwrap();
    }
    let stderr = d.path().join("stderr");
    let mut child = Command::new(NIFTY)
        .arg("--config")
        .arg(&cfg)
        .arg("run")
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .env(KEY_ENV, KEY)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let api = ready(&mut child);
    // Wait for the scrape job's own failed runs (beside the old one).
    let deadline = Instant::now() + Duration::from_secs(30);
    let runs = loop {
        let runs = get(&format!("{api}/api/runs"));
        if runs.matches("failed").count() >= 3 {
            break runs;
        }
        assert!(Instant::now() < deadline, "no failed scrape runs: {runs}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let status = get(&format!("{api}/api/status"));
    let metrics = get(&format!("{api}/metrics"));
    let _ = child.kill();
    let _ = child.wait();
    let mut logs = String::new();
    std::fs::File::open(&stderr)
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    assert!(runs.contains("<redacted>"), "{runs}");
    for (what, body) in [
        ("/api/runs", &runs),
        ("/api/status", &status),
        ("/metrics", &metrics),
        ("logs", &logs),
    ] {
        assert_no_secret(what, body);
    }
    assert!(forged_lines(&logs).is_empty(), "{logs}");
    assert_no_secret("the store", &stored_runs(d.path()));
}

#[test]
fn a_500_mb_page_is_read_once_up_to_its_cap_and_reported_as_too_large() {
    for mode in [Mode::Huge(500 * MIB), Mode::Endless] {
        let d = tempfile::tempdir().unwrap();
        let up = Hostile::subgraph(mode);
        let cfg = config(d.path(), "graph", &up.url, "max_row_bytes = 4096\n");
        let started = Instant::now();
        let (code, out, err) = text(&nifty(
            &cfg,
            &[
                "backfill",
                "--source",
                "s",
                "--workers",
                "1",
                "--page-size",
                "100",
                "--json",
            ],
        ));
        assert_ne!(code, 0, "{mode:?}: {out} {err}");
        assert!(err.contains("too_large"), "{mode:?}: {err}");
        assert!(
            err.contains("MiB") || err.contains("MB"),
            "{mode:?}: the size: {err}"
        );
        assert!(!err.contains("connect"), "{mode:?}: {err}");
        // The snapshot, then pages of 100, 50, ... 1 row: each one too large, once.
        let pages = up.requests() - 1;
        assert!((1..=8).contains(&pages), "{mode:?}: {pages} page requests");
        // Each page is cut at its bound (4 MiB + 64 KiB for these sizes); what the server
        // produced beyond that sat in socket buffers when the client hung up.
        let per_page = 4 * MIB + 64 * 1024 + 16 * MIB;
        assert!(
            up.produced() <= pages * per_page,
            "{mode:?}: {} bytes produced for {pages} pages",
            up.produced()
        );
        let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(report["outcome"], "failed", "{report}");
        eprintln!(
            "{mode:?}: {pages} page requests, {} bytes produced, {:.1}s, peak RSS {} bytes",
            up.produced(),
            started.elapsed().as_secs_f64(),
            report["peak_rss_bytes"]
        );
    }
}

#[test]
fn a_500_mb_node_answer_is_read_once_per_range_up_to_its_cap_and_reported_as_too_large() {
    let d = tempfile::tempdir().unwrap();
    let up = Hostile::node(Mode::Huge(500 * MIB));
    let cfg = config(d.path(), "rpc", &up.url, "max_body_mb = 1\n");
    let (code, out, err) = text(&nifty(
        &cfg,
        &["backfill", "--source", "s", "--workers", "1", "--json"],
    ));
    assert_ne!(code, 0, "{out} {err}");
    assert!(err.contains("too_large"), "{err}");
    assert!(err.contains("MiB") || err.contains("MB"), "the size: {err}");
    // Log ranges shrink to one block, each too large once: at most a few dozen answers,
    // each cut at 1 MiB (plus what sat in socket buffers).
    let asked = up.requests();
    assert!(asked <= 40, "{asked} requests");
    assert!(
        up.produced() <= asked * 17 * MIB,
        "{} bytes for {asked} requests",
        up.produced()
    );
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["outcome"], "failed", "{report}");
}
