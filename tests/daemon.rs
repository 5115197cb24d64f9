//! `nifty run` end to end: the daemon over a devnet (a separate process), every HTTP
//! endpoint, admin auth, errors as JSON, `/metrics` read by a Prometheus text parser, the
//! CLI's `--api` mode, and a stop by signal at the next commit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Output};
use std::time::Duration;

use cid::Cid;
use nifty_state::{Store, StoreOptions};

mod support {
    pub mod daemon;
    pub mod devnet;
}
use support::daemon::{ADMIN_ENV, ADMIN_TOKEN, Daemon, NIFTY, config};

fn cli(d: &Daemon, args: &[&str]) -> Output {
    Command::new(NIFTY)
        .arg("--config")
        .arg(&d.config)
        .args(args)
        .env("RUST_LOG", "warn")
        .env(ADMIN_ENV, ADMIN_TOKEN)
        .output()
        .unwrap()
}

fn stdout_ok(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {text}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The error body of a failed request: JSON with an `error` string.
fn error_of(status: u16, body: &str, want: u16) -> String {
    assert_eq!(status, want, "{body}");
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error: {body}"))
        .to_owned()
}

/// Metric families and samples from a `/metrics` body, parsed by a Prometheus parser.
fn scrape(body: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

fn value(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

/// Every `nifty_*` name the deploy/ dashboards and alerts use.
fn deployed_metric_names() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for file in [
        "deploy/grafana/nifty-dashboard.json",
        "deploy/prometheus/alerts.yml",
    ] {
        let text =
            std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file))
                .unwrap();
        let bytes = text.as_bytes();
        let mut i = 0;
        while let Some(at) = text[i..].find("nifty_") {
            let start = i + at;
            let mut end = start;
            while end < bytes.len() && (bytes[end].is_ascii_lowercase() || bytes[end] == b'_') {
                end += 1;
            }
            let before = start.checked_sub(1).map(|b| bytes[b]);
            if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_') {
                names.insert(text[start..end].to_owned());
            }
            i = end;
        }
    }
    names
}

#[test]
fn the_daemon_serves_every_endpoint_over_devnet_and_stops_on_sigint() {
    let devnet = support::devnet::start(NIFTY, 1500, 11, &[]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), Some(&devnet), true, "");
    let mut d = Daemon::start(&cfg);
    let status = d.wait_settled(Duration::from_secs(90));
    let tokens = status["tokens"].as_u64().unwrap();
    let chain = devnet.chain();
    let snapshot = chain.head() - 5;
    assert_eq!(tokens as usize, chain.tokens_at(snapshot).len());
    let by_status: u64 = status["tokens_by_status"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(by_status, tokens);
    let jobs: BTreeSet<&str> = status["daemon"]["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job"].as_str().unwrap())
        .collect();
    assert_eq!(
        jobs,
        BTreeSet::from(["scrape/dev", "analyse", "pin", "follow"])
    );

    // Runs: every job ran and completed at least once; filters and limits work.
    let runs = d.json("/api/runs?limit=1000");
    let runs = runs["runs"].as_array().unwrap();
    for job in &jobs {
        assert!(
            runs.iter()
                .any(|r| r["job"] == *job && r["outcome"] == "completed"),
            "{job} never completed: {runs:?}"
        );
    }
    let ids: Vec<u64> = runs.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first");
    let scraped: u64 = runs
        .iter()
        .filter(|r| r["job"] == "scrape/dev")
        .map(|r| r["items"].as_u64().unwrap())
        .sum();
    assert_eq!(
        scraped, tokens,
        "scrape runs' items add up to the tokens stored"
    );
    assert_eq!(
        d.json("/api/runs?limit=2")["runs"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let pins = d.json("/api/runs?job=pin&limit=5");
    assert!(
        pins["runs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["job"] == "pin")
    );
    for bad in ["limit=0", "limit=abc", "limit=100000"] {
        let (s, b) = d.get(&format!("/api/runs?{bad}"));
        assert!(error_of(s, &b, 400).contains("limit="), "{b}");
    }

    // Tokens as the generator meant them, their pins, and bad or unknown ones.
    let in_snapshot = chain.tokens_at(snapshot);
    let linked = in_snapshot
        .iter()
        .find(|t| {
            chain.expected(t, true).status == "linked" && !chain.expected(t, true).cids.is_empty()
        })
        .unwrap();
    let failed = in_snapshot
        .iter()
        .find(|t| chain.expected(t, true).status == "content_fetch_failed")
        .unwrap();
    let graph_id = linked.graph_id.to_string();
    let (contract, id) = graph_id.split_once('_').unwrap();
    let (contract, id) = (contract.to_owned(), id.to_owned());
    let t = d.json(&format!("/api/tokens/{contract}/{id}"));
    assert_eq!(t["token"].as_str().unwrap(), graph_id);
    assert_eq!(t["status"], "linked");
    let cids: BTreeSet<String> = t["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["cid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(cids, chain.expected(linked, true).cids);
    for cid in &cids {
        let p = d.json(&format!("/api/pins/{cid}"));
        assert_eq!(
            (p["cid"].as_str().unwrap(), p["status"].as_str().unwrap()),
            (cid.as_str(), "pinned")
        );
        assert!(
            p["tokens"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x == &serde_json::json!(graph_id))
        );
    }
    let (fc, fi) = failed.graph_id.split_once('_').unwrap();
    let f = d.json(&format!("/api/tokens/{fc}/{fi}"));
    let want = chain.expected(failed, true);
    assert_eq!(
        (f["status"].as_str().unwrap(), f["reason"].as_str()),
        (want.status, want.reason)
    );
    let (s, b) = d.get("/api/tokens/0x12/1");
    assert!(
        error_of(s, &b, 400).contains("not a contract address"),
        "{b}"
    );
    let (s, b) = d.get(&format!("/api/tokens/{contract}/twelve"));
    assert!(error_of(s, &b, 400).contains("not a token id"), "{b}");
    let (s, b) = d.get(&format!("/api/tokens/{contract}/999999999999999999999999"));
    assert!(error_of(s, &b, 404).contains("no token"), "{b}");
    let (s, b) = d.get("/api/pins/not-a-cid");
    assert!(error_of(s, &b, 400).contains("is not a CID"), "{b}");
    let unknown = Cid::new_v1(0x55, multihash_of(b"never pinned"));
    let (s, b) = d.get(&format!("/api/pins/{unknown}"));
    assert!(
        error_of(s, &b, 404).contains("no token in the store uses"),
        "{b}"
    );
    for path in ["/api/nothing", "/api/tokens/only-one-part", "/favicon.ico"] {
        let (s, b) = d.get(path);
        error_of(s, &b, 404);
    }
    let (s, _, b) = d.send(reqwest::Client::new().delete(format!("{}/api/status", d.api)));
    error_of(s, &b, 405);

    // Failures: the index's counts equal the counters'.
    let f = d.json("/api/failures?examples=1");
    let listed: u64 = f["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["count"].as_u64().unwrap())
        .sum();
    let counted: u64 = status["failures"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(listed, counted);
    assert!(
        f["failures"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["examples"].as_array().unwrap().len() <= 1)
    );
    // Everything failed within the last hour.
    assert_eq!(
        d.json("/api/failures?since=1h&examples=1")["failures"],
        f["failures"]
    );
    let (s, b) = d.get("/api/failures?since=yesterday");
    assert!(error_of(s, &b, 400).contains("since="), "{b}");

    // /metrics, parsed: the store's gauges equal /api/status; jobs and requests recorded.
    let (s, body) = d.get("/metrics");
    assert_eq!(s, 200);
    let m = scrape(&body);
    let now = d.json("/api/status");
    assert_eq!(value(&m, "nifty_tokens", &[]), Some(tokens as f64));
    for (st, n) in now["pins_by_status"].as_object().unwrap() {
        assert_eq!(
            value(&m, "nifty_pins_by_status", &[("status", st)]),
            n.as_f64(),
            "{st}"
        );
    }
    for (st, n) in now["tokens_by_status"].as_object().unwrap() {
        assert_eq!(
            value(&m, "nifty_tokens_by_status", &[("status", st)]),
            n.as_f64(),
            "{st}"
        );
    }
    assert_eq!(
        value(&m, "nifty_lag_blocks", &[("source", "dev")]),
        now["sources"][0]["lag"].as_f64()
    );
    for job in &jobs {
        assert!(
            value(
                &m,
                "nifty_job_runs_total",
                &[("job", job), ("outcome", "completed")]
            )
            .unwrap()
                >= 1.0,
            "{job}"
        );
    }
    for (family, op) in [
        ("nifty_graph_request_duration_seconds_count", "page"),
        ("nifty_cluster_request_duration_seconds_count", "pin"),
    ] {
        assert!(
            value(&m, family, &[("op", op), ("outcome", "ok")]).unwrap() >= 1.0,
            "{family}"
        );
    }
    assert!(
        value(
            &m,
            "nifty_gateway_fetch_duration_seconds_count",
            &[("kind", "ipfs"), ("outcome", "ok")]
        )
        .unwrap()
            >= 1.0
    );
    let families: BTreeSet<String> = m
        .samples
        .iter()
        .map(|x| {
            let n = x.metric.as_str();
            ["_bucket", "_sum", "_count"]
                .iter()
                .fold(n, |n, s| n.strip_suffix(s).unwrap_or(n))
                .to_owned()
        })
        .collect();
    let missing: Vec<String> = deployed_metric_names()
        .into_iter()
        .filter(|n| {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .fold(n.as_str(), |n, s| n.strip_suffix(s).unwrap_or(n));
            !families.contains(base)
        })
        .collect();
    assert!(
        missing.is_empty(),
        "deploy/ uses metrics /metrics lacks: {missing:?}"
    );

    // The CLI against the running daemon.
    let st: serde_json::Value =
        serde_json::from_str(&stdout_ok(&cli(&d, &["status", "--json", "--api", &d.api]))).unwrap();
    assert_eq!(st["tokens"], now["tokens"]);
    assert_eq!(st["sources"], now["sources"]);
    let shown = stdout_ok(&cli(
        &d,
        &["check", &contract, &id, "--json", "--api", &d.api],
    ));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&shown).unwrap()["token"],
        t["token"]
    );
    let rep: serde_json::Value =
        serde_json::from_str(&stdout_ok(&cli(&d, &["report", "--json", "--api", &d.api]))).unwrap();
    let rep_total: u64 = rep["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["count"].as_u64().unwrap())
        .sum();
    assert_eq!(rep_total, listed);
    let cursors: BTreeMap<String, serde_json::Value> = serde_json::from_str(&stdout_ok(&cli(
        &d,
        &["cursor", "show", "--json", "--api", &d.api],
    )))
    .unwrap();
    assert!(cursors.contains_key("dev"));
    let out = cli(&d, &["check", &contract, "99999999999", "--api", &d.api]);
    assert_eq!(out.status.code(), Some(2));
    // Without --api the data dir is held: the error says to use --api.
    let out = cli(&d, &["status"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--api"));

    // Admin: no token, wrong token, bad bodies, unknown cursor, wrong direction, right token.
    let (s, h, b) = d.post("/api/cursor/dev", r#"{"block": 0, "rewind": true}"#, None);
    error_of(s, &b, 401);
    assert_eq!(h.get("www-authenticate").unwrap(), "Bearer");
    let (s, _, b) = d.post(
        "/api/cursor/dev",
        r#"{"block": 0, "rewind": true}"#,
        Some("wrong"),
    );
    assert_eq!(error_of(s, &b, 401), "wrong admin token");
    assert!(!b.contains(ADMIN_TOKEN));
    // A huge body from a stranger is refused as unauthorized, not read.
    let huge = format!("{{\"block\": 1, \"id\": \"{}\"}}", "x".repeat(3 << 20));
    // (The server may answer and close before the client has sent it all; then the client
    // sees the connection closed instead of the answer.)
    for (token, want) in [(None, 401), (Some(ADMIN_TOKEN), 413)] {
        let mut req = reqwest::Client::new()
            .post(format!("{}/api/cursor/dev", d.api))
            .body(huge.clone());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some((s, b)) = d.try_send(req) {
            error_of(s, &b, want);
        }
    }
    for path in ["/api/tokens/%FF/1", "/api/pins/%FF%FE"] {
        let (s, b) = d.get(path);
        assert!(error_of(s, &b, 400).contains("bad path"), "{b}");
    }
    let (s, _, b) = d.post("/api/cursor/%FF", r#"{"block": 1}"#, Some(ADMIN_TOKEN));
    error_of(s, &b, 400);
    let (s, _, b) = d.post("/api/cursor/dev", r#"{"block": "zero"}"#, Some(ADMIN_TOKEN));
    assert!(error_of(s, &b, 400).contains("body:"), "{b}");
    let (s, _, b) = d.post(
        "/api/cursor/dev",
        r#"{"block": 1, "idd": "x"}"#,
        Some(ADMIN_TOKEN),
    );
    error_of(s, &b, 400);
    let (s, _, b) = d.post(
        "/api/cursor/dev",
        r#"{"block": 1, "id": "nope"}"#,
        Some(ADMIN_TOKEN),
    );
    assert!(error_of(s, &b, 400).contains("--id"), "{b}");
    let (s, _, b) = d.post("/api/cursor/nosuch", r#"{"block": 1}"#, Some(ADMIN_TOKEN));
    assert!(
        error_of(s, &b, 404).contains("no source or cursor named"),
        "{b}"
    );
    let (s, _, b) = d.post("/api/cursor/dev", r#"{"block": 0}"#, Some(ADMIN_TOKEN));
    error_of(s, &b, 409);
    // A rewind to block 0 re-pages everything: nothing is stored twice, and nothing is
    // requested from the cluster twice. A scrape run may hold the cursor: retry then.
    let before = cluster_pin_requests(&devnet);
    let moved = loop {
        // The scheme is case-insensitive.
        let req = reqwest::Client::new()
            .post(format!("{}/api/cursor/dev", d.api))
            .header("authorization", format!("bearer {ADMIN_TOKEN}"))
            .body(r#"{"block": 0, "rewind": true}"#);
        let (s, _, b) = d.send(req);
        if s == 409 && b.contains("is running") {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        assert_eq!(s, 200, "{b}");
        break serde_json::from_str::<serde_json::Value>(&b).unwrap();
    };
    assert_eq!(moved["to"]["block"], 0);
    std::thread::sleep(Duration::from_secs(3));
    let again = d.wait_settled(Duration::from_secs(60));
    assert_eq!(again["tokens"], status["tokens"]);
    assert_eq!(again["pins"], now["pins"]);
    assert_eq!(cluster_pin_requests(&devnet), before);
    let rescraped: u64 = d.json("/api/runs?job=scrape/dev&limit=1000")["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["pages"].as_u64().unwrap())
        .sum();
    assert!(rescraped > 0);

    // SIGINT: exit 0 within 5 s, and the store is consistent.
    let (code, took) = d.stop("INT");
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(5), "{took:?}");
    let store = Store::open(&dir.path().join("data"), &StoreOptions::default()).unwrap();
    assert!(store.audit().unwrap().is_clean());
    assert!(
        store
            .runs(1000)
            .unwrap()
            .iter()
            .all(|(_, r)| r.outcome.name() != "running")
    );
}

fn multihash_of(data: &[u8]) -> multihash::Multihash<64> {
    // identity multihash: enough for a valid CID nobody pins
    multihash::Multihash::wrap(0x00, data).unwrap()
}

fn cluster_pin_requests(devnet: &support::devnet::Devnet) -> u64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let v: serde_json::Value = reqwest::get(devnet.cluster_stats_url())
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["pin_requests"].as_u64().unwrap()
    })
}

#[test]
fn admin_writes_are_off_without_a_token_and_the_api_alone_runs_without_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        None,
        false,
        "[jobs.analyse]\nschedule = \"0 0 * * * *\"\nbudget_secs = 1\nenabled = false\n[jobs.pin]\nschedule = \"0 0 * * * *\"\nbudget_secs = 1\nenabled = false\n[jobs.follow]\nschedule = \"0 0 * * * *\"\nbudget_secs = 1\nenabled = false\n",
    );
    let mut d = Daemon::start(&cfg);
    let (s, _, b) = d.post("/api/cursor/main", r#"{"block": 1}"#, Some(ADMIN_TOKEN));
    assert!(error_of(s, &b, 403).contains("admin writes are off"), "{b}");
    let st = d.json("/api/status");
    assert_eq!(st["tokens"], 0);
    assert_eq!(st["daemon"]["jobs"], serde_json::json!([]));
    assert_eq!(d.json("/api/runs")["runs"], serde_json::json!([]));
    let (s, b) = d.get("/");
    assert_eq!(s, 200);
    assert!(b.contains("<html") || b.contains("<!doctype html") || b.contains("<!DOCTYPE html"));
    let (_, h, _) = d.send(reqwest::Client::new().get(format!("{}/", d.api)));
    assert!(
        h.get("content-security-policy")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    let m = scrape(&d.get("/metrics").1);
    assert_eq!(value(&m, "nifty_tokens", &[]), Some(0.0));
    assert_eq!(
        value(
            &m,
            "nifty_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    let (code, took) = d.stop("TERM");
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn sigterm_mid_work_stops_at_a_commit_and_a_restart_finishes_exactly() {
    // Slow metadata, so analysis is still under way when the signal comes.
    let devnet = support::devnet::start(NIFTY, 6000, 12, &["--gateway-latency-ms", "15"]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), Some(&devnet), false, "");
    let mut d = Daemon::start(&cfg);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let s = d.json("/api/status");
        let analysed =
            s["tokens"].as_u64().unwrap() - s["tokens_by_status"]["queued"].as_u64().unwrap_or(0);
        if analysed > 500 && s["outbox"]["analyse"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "analysis never got going: {s}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, took) = d.stop("TERM");
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(5), "{took:?}");
    {
        let store = Store::open(&dir.path().join("data"), &StoreOptions::default()).unwrap();
        assert!(store.audit().unwrap().is_clean());
        let runs = store.runs(1000).unwrap();
        assert!(
            runs.iter().any(|(_, r)| r.outcome.name() == "interrupted"),
            "{runs:?}"
        );
        assert!(runs.iter().all(|(_, r)| r.outcome.name() != "running"));
    }

    let d = Daemon::start(&cfg);
    let end = d.wait_settled(Duration::from_secs(120));
    let chain = devnet.chain();
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for t in chain.tokens_at(chain.head() - 5) {
        *want
            .entry(chain.expected(t, true).status.to_owned())
            .or_default() += 1;
    }
    let got: BTreeMap<String, u64> =
        serde_json::from_value(end["tokens_by_status"].clone()).unwrap();
    assert_eq!(got, want);
    // Every CID was requested from the cluster once, the stop notwithstanding.
    assert_eq!(cluster_pin_requests(&devnet), end["pins"].as_u64().unwrap());
}
