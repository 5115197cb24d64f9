//! Resuming a backfill as printed, the names of new jobs, and cursors past the source's
//! head: the binary against `nifty devnet` on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use nifty_state::{Cursor, Position, Store, StoreOptions};

mod support {
    pub mod daemon;
    pub mod devnet;
}
use support::daemon::{ADMIN_TOKEN, Daemon, NIFTY, config};
use support::devnet::Devnet;

fn devnet(tokens: u64, seed: u64) -> Devnet {
    support::devnet::start(NIFTY, tokens, seed, &[])
}

/// `nifty --data-dir DIR/data ARGS` run in `dir`, so `dir/nifty.toml` is the config when
/// a test wrote one and there is none otherwise.
fn nifty(dir: &Path, args: &[&str]) -> Output {
    Command::new(NIFTY)
        .current_dir(dir)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(args)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .env_remove("NIFTY_CONFIG")
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

/// A config of one graph source `main` at `url`, plus a source `dead` nobody answers for.
fn write_config(dir: &Path, url: &str) {
    std::fs::write(
        dir.join("nifty.toml"),
        format!(
            "[sources.main]\nkind = \"graph\"\nurl = \"{url}\"\n\
             [sources.dead]\nkind = \"graph\"\nurl = \"http://127.0.0.1:1/subgraphs/name/x\"\n"
        ),
    )
    .unwrap();
}

fn report(o: &Output) -> serde_json::Value {
    let (code, out, err) = text(o);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn cursors(dir: &Path) -> Vec<(String, Cursor)> {
    Store::open(&dir.join("data"), &StoreOptions::default())
        .unwrap()
        .cursors()
        .unwrap()
}

#[test]
fn a_job_started_with_graph_resumes_with_the_command_it_prints() {
    let d = devnet(3_000, 7);
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let first = nifty(
        dir,
        &[
            "backfill",
            "--graph",
            &d.subgraph,
            "--from",
            "0",
            "--page-size",
            "20",
            "--workers",
            "2",
            "--budget",
            "0",
        ],
    );
    let (code, _, err) = text(&first);
    assert_eq!(code, 0, "{err}");
    let printed = err
        .lines()
        .find_map(|l| {
            l.split_once("continue with: ")
                .map(|(_, c)| c.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no resume command in {err}"));
    let words: Vec<&str> = printed.split_whitespace().collect();
    assert_eq!(words[..3], ["nifty", "backfill", "--resume"], "{printed}");
    let mut args = words[1..].to_vec();
    args.push("--json");
    let r = report(&nifty(dir, &args));
    assert_eq!(r["outcome"], "completed", "{r}");
    assert_eq!(r["blocks_left"], 0, "{r}");
    // The job's page size came back with it: pages of about 20 tokens, not 1,000.
    let (tokens, pages) = (r["tokens"].as_u64().unwrap(), r["pages"].as_u64().unwrap());
    assert!(tokens > 1_000, "{r}");
    assert!(
        tokens <= pages * 40,
        "{tokens} tokens in {pages} pages: {r}"
    );
}

#[test]
fn a_resumed_job_keeps_the_page_size_it_was_started_with() {
    let d = devnet(3_000, 8);
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write_config(dir, &d.subgraph);
    let started = nifty(
        dir,
        &[
            "backfill",
            "--source",
            "main",
            "--from",
            "0",
            "--page-size",
            "20",
            "--workers",
            "2",
            "--budget",
            "0",
            "--job",
            "small",
        ],
    );
    assert_eq!(text(&started).0, 0, "{}", text(&started).2);
    // Two sources are configured: name the job's, as an older build needed.
    let r = report(&nifty(
        dir,
        &[
            "backfill", "--source", "main", "--resume", "small", "--json",
        ],
    ));
    assert_eq!(r["outcome"], "completed", "{r}");
    let (tokens, pages) = (r["tokens"].as_u64().unwrap(), r["pages"].as_u64().unwrap());
    assert!(tokens > 1_000, "{r}");
    assert!(
        tokens <= pages * 40,
        "{tokens} tokens in {pages} pages: {r}"
    );
}

#[test]
fn a_job_an_older_build_saved_without_settings_resumes_from_the_config() {
    let d = devnet(2_000, 9);
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write_config(dir, &d.subgraph);
    {
        let store = Store::open(&dir.join("data"), &StoreOptions::default()).unwrap();
        let c = |end| Cursor {
            position: Position::start_of(0),
            snapshot: Some(500),
            head: None,
            end: Some(end),
            updated_ms: 1,
        };
        store
            .create_cursors(&[
                ("backfill/old".into(), c(500)),
                ("backfill/old/00000".into(), c(250)),
                (
                    "backfill/old/00001".into(),
                    Cursor {
                        position: Position::start_of(251),
                        ..c(500)
                    },
                ),
            ])
            .unwrap();
    }
    let r = report(&nifty(
        dir,
        &["backfill", "--source", "main", "--resume", "old", "--json"],
    ));
    assert_eq!(r["outcome"], "completed", "{r}");
    assert_eq!(r["blocks_left"], 0, "{r}");
}

#[test]
fn names_resume_would_refuse_are_refused_when_the_job_is_created() {
    let d = devnet(500, 10);
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let long_source = "s".repeat(60);
    let cases: [(&[&str], &str); 4] = [
        (&["--job", ""], "job name \"\": use 1-64 letters"),
        (
            &["--job", "../../evil"],
            "job name \"../../evil\": use 1-64 letters",
        ),
        (&["--source", "My Source"], "source names are 1-64"),
        // The default name, SOURCE-<millis>, would be longer than a job name may be.
        (&["--source", &long_source], "use 1-64 letters, digits"),
    ];
    for (flags, want) in cases {
        let mut args = vec!["backfill", "--graph", &d.subgraph, "--to", "50"];
        args.extend_from_slice(flags);
        let (code, out, err) = text(&nifty(dir, &args));
        assert_eq!(code, 2, "{flags:?}: {out}{err}");
        assert!(err.contains(want), "{flags:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            cursors(dir).is_empty(),
            "{flags:?} created {:?}",
            cursors(dir)
        );
    }
    // And resume refuses the same names with the same words.
    let (code, _, err) = text(&nifty(
        dir,
        &["backfill", "--graph", &d.subgraph, "--resume", "../../evil"],
    ));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("job name \"../../evil\": use 1-64 letters"),
        "{err}"
    );
}

#[test]
fn backfills_started_in_the_same_second_get_different_default_names() {
    let d = devnet(500, 11);
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let mut jobs = vec![];
    for _ in 0..3 {
        let r = report(&nifty(
            dir,
            &[
                "backfill",
                "--graph",
                &d.subgraph,
                "--from",
                "0",
                "--to",
                "3",
                "--workers",
                "1",
                "--json",
            ],
        ));
        assert_eq!(r["outcome"], "completed", "{r}");
        jobs.push(r["job"].as_str().unwrap().to_owned());
    }
    let mut unique = jobs.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 3, "{jobs:?}");
}

#[test]
fn confirmations_beyond_the_head_are_refused_before_a_job_is_made() {
    let d = devnet(1_000, 12);
    let head = d.chain().head();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let too_many = (head + 1).to_string();
    let (code, out, err) = text(&nifty(
        dir,
        &[
            "backfill",
            "--graph",
            &d.subgraph,
            "--confirmations",
            &too_many,
        ],
    ));
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains(&format!("head block {head}")), "{err}");
    assert!(cursors(dir).is_empty(), "{:?}", cursors(dir));
}

#[test]
fn cursor_set_past_the_head_is_refused_and_forced_ahead_is_shown() {
    let d = devnet(1_000, 13);
    let head = d.chain().head();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write_config(dir, &d.subgraph);
    let set = |args: &[&str]| text(&nifty(dir, &[&["cursor", "set"], args].concat()));

    let (code, _, err) = set(&["main", "18446744073709551615"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&format!("head block {head}")), "{err}");
    let (code, _, err) = set(&["main", "18446744073709551615", "--force"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("at most 100000 blocks past it"), "{err}");
    assert!(err.contains(&format!("block {}", head + 100_000)), "{err}");
    // The start of head + 1 is everything up to the head: caught up, not ahead.
    let (code, _, err) = set(&["main", &(head + 1).to_string()]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = set(&["main", &(head + 2).to_string()]);
    assert_eq!(code, 2, "{err}");
    let status: serde_json::Value =
        serde_json::from_slice(&nifty(dir, &["status", "--json"]).stdout).unwrap();
    let main = status["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "main")
        .unwrap();
    assert_eq!(main["ahead"], serde_json::Value::Null, "{main}");

    let (code, _, err) = set(&["main", &(head + 51).to_string(), "--force"]);
    assert_eq!(code, 0, "{err}");
    let status: serde_json::Value =
        serde_json::from_slice(&nifty(dir, &["status", "--json"]).stdout).unwrap();
    let main = status["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "main")
        .unwrap();
    assert_eq!(main["ahead"], 50, "{main}");
    assert_eq!(main["head"], head, "{main}");
    let (code, table, err) = text(&nifty(dir, &["status"]));
    assert_eq!(code, 0, "{err}");
    let row = table.lines().find(|l| l.starts_with("main ")).unwrap();
    assert!(row.contains("ahead by 50"), "{table}");

    // A source whose head cannot be asked: refused, unless forced, and then bounded.
    let (code, _, err) = set(&["dead", "5"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot fetch the source's head"), "{err}");
    let (code, _, err) = set(&["dead", "200000", "--force"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("100000"), "{err}");
    let (code, _, err) = set(&["dead", "5", "--force"]);
    assert_eq!(code, 0, "{err}");
}

/// The value of the sample `name{source="SOURCE"}` in a Prometheus exposition.
fn gauge(body: &str, name: &str, source: &str) -> Option<f64> {
    let prefix = format!("{name}{{source=\"{source}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse().unwrap())
}

#[test]
fn the_admin_api_refuses_a_cursor_past_the_head_and_metrics_show_one_forced_ahead() {
    let d = devnet(1_000, 14);
    let head = d.chain().head();
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&config(dir.path(), Some(&d), true, ""));
    // Until the source's first run has recorded its head.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = daemon.json("/api/status");
        if s["sources"][0]["head"].as_u64().is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "no head recorded: {s}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // A scheduled run holds the cursor now and then (409): ask again.
    let post = |body: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (s, _, b) = daemon.post("/api/cursor/dev", body, Some(ADMIN_TOKEN));
            if s != 409 || Instant::now() > deadline {
                return (s, b);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let (s, b) = post(r#"{"block": 18446744073709551615}"#);
    assert_eq!(s, 400, "{b}");
    assert!(b.contains(&format!("head block {head}")), "{b}");
    let (s, b) = post(r#"{"block": 18446744073709551615, "force": true}"#);
    assert_eq!(s, 400, "{b}");
    assert!(b.contains("100000"), "{b}");
    let (s, b) = post(&format!(r#"{{"block": {}, "force": true}}"#, head + 51));
    assert_eq!(s, 200, "{b}");

    let (s, body) = daemon.get("/metrics");
    assert_eq!(s, 200);
    assert_eq!(
        gauge(&body, "nifty_cursor_ahead_blocks", "dev"),
        Some(50.0),
        "{body}"
    );
    assert_eq!(gauge(&body, "nifty_lag_blocks", "dev"), Some(0.0), "{body}");
    let status = daemon.json("/api/status");
    assert_eq!(status["sources"][0]["ahead"], 50, "{status}");
}
