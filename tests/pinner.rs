//! The pinner end to end: `nifty devnet` (subgraph, cluster and gateway doubles) as a
//! separate process, nifty scraping, analysing, pinning and following up, and every token's
//! outcome compared with the generator's own intent for it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use cid::Cid;
use nifty::devnet::chain::Chain;
use nifty_state::{Store, StoreOptions, TokenKey};

const NIFTY: &str = env!("CARGO_BIN_EXE_nifty");

#[path = "support/devnet.rs"]
mod support;

/// Confirmations of the test source; the truth is the snapshot below the head.
const CONFIRMATIONS: u64 = 5;

struct Setup {
    _dir: tempfile::TempDir,
    config: PathBuf,
    data: PathBuf,
}

/// A config for the devnet: its subgraph, cluster and gateway, the devnet's host allowed
/// for plain http metadata, short timeouts and immediate pin retries.
fn setup(d: &support::Devnet, allow_web: bool, extra: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let allow = if allow_web { r#"["127.0.0.1"]"# } else { "[]" };
    let text = format!(
        r#"
data_dir = "{data}"
[store]
sync_commits = false
[gateway]
url = "{gateway}"
arweave_url = "{arweave}"
timeout_ms = 1500
allow_hosts = {allow}
[cluster]
url = "{cluster}"
timeout_ms = 2000
attempts = 2
[pinner]
retry_base_secs = 0
{extra}
[sources.dev]
kind = "graph"
url = "{subgraph}"
confirmations = {CONFIRMATIONS}
"#,
        data = data.display(),
        gateway = d.gateway,
        arweave = d.arweave,
        cluster = d.cluster,
        subgraph = d.subgraph,
    );
    let config = dir.path().join("nifty.toml");
    std::fs::write(&config, text).unwrap();
    Setup {
        _dir: dir,
        config,
        data,
    }
}

fn nifty(s: &Setup, args: &[&str]) -> Output {
    Command::new(NIFTY)
        .arg("--config")
        .arg(&s.config)
        .args(args)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {text}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Runs `nifty pin --json` until it exits 0; an exit 4 (a service unavailable after its
/// retries: the work stays queued) is run again. Returns the first run's output.
fn pin_until_done(s: &Setup) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut first = None;
    loop {
        let out = nifty(s, &["pin", "--json"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        first.get_or_insert_with(|| text.clone());
        if out.status.success() {
            return first.unwrap_or_default();
        }
        assert_eq!(
            out.status.code(),
            Some(4),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(Instant::now() < deadline, "{text}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Runs `nifty follow` until no pin is pending (or the deadline passes).
fn follow_until_settled(s: &Setup, deadline: Duration) {
    let start = Instant::now();
    loop {
        let out = nifty(s, &["follow", "--json"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && pending(&s.data) == 0 {
            return;
        }
        assert!(
            start.elapsed() < deadline,
            "pins still pending after {deadline:?}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(150));
    }
}

fn pending(data: &Path) -> u64 {
    let store = Store::open(data, &StoreOptions::default()).unwrap();
    let c = store.counts().unwrap();
    ["queued", "pinning", "retrying", "wanted"]
        .iter()
        .map(|s| c.pins_by_status.get(*s).copied().unwrap_or(0))
        .sum()
}

/// What the store says of each token: status, reason, resource CIDs.
fn outcomes(data: &Path) -> BTreeMap<String, (String, Option<String>, BTreeSet<String>)> {
    let store = Store::open(data, &StoreOptions::default()).unwrap();
    let audit = store.audit().unwrap();
    assert!(audit.is_clean(), "{audit:?}");
    let mut out = BTreeMap::new();
    store
        .for_each_token(|k: TokenKey, t| {
            let cids = t
                .resources
                .iter()
                .map(|c| Cid::try_from(c.as_slice()).unwrap().to_string())
                .collect();
            out.insert(k.graph_id(), (t.status.name().to_owned(), t.reason, cids));
        })
        .unwrap();
    out
}

/// The generator's intent for every token in the scraped snapshot.
fn truth(
    chain: &Chain,
    allow_web: bool,
) -> BTreeMap<String, (String, Option<String>, BTreeSet<String>)> {
    let snapshot = chain.head() - CONFIRMATIONS;
    chain
        .tokens_at(snapshot)
        .iter()
        .map(|t| {
            let e = chain.expected(t, allow_web);
            (
                t.graph_id.to_string(),
                (
                    e.status.to_owned(),
                    e.reason.map(str::to_owned),
                    e.cids.into_iter().collect(),
                ),
            )
        })
        .collect()
}

fn compare(
    got: &BTreeMap<String, (String, Option<String>, BTreeSet<String>)>,
    want: &BTreeMap<String, (String, Option<String>, BTreeSet<String>)>,
) {
    assert_eq!(got.len(), want.len(), "token count");
    let wrong: Vec<_> = want
        .iter()
        .filter(|(id, w)| got.get(*id) != Some(*w))
        .take(5)
        .map(|(id, w)| format!("{id}: want {w:?}, got {:?}", got.get(id)))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} tokens differ, e.g.\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// A one-shot HTTP/1.1 request on loopback; the JSON body of the answer.
fn http(method: &str, url: &str, body: &str) -> serde_json::Value {
    use std::io::{Read as _, Write as _};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut conn = std::net::TcpStream::connect(host).unwrap();
    write!(
        conn,
        "{method} /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{method} {url}: {head}");
    serde_json::from_str(body.trim()).unwrap_or(serde_json::Value::Null)
}

fn stats(d: &support::Devnet) -> serde_json::Value {
    http("GET", &d.cluster_stats_url(), "")
}

fn outage(d: &support::Devnet, body: &str) {
    http("POST", &d.cluster_outage_url(), body);
}

#[test]
fn every_pinnable_token_ends_linked_and_every_other_has_its_reason() {
    let (tokens, seed) = (4_000, 11);
    let d = support::start(
        NIFTY,
        tokens,
        seed,
        &[
            "--cluster-queue-ms",
            "30",
            "--cluster-pin-ms",
            "60",
            "--gateway-slow-ms",
            "4000",
            // Transient trouble everywhere: 5xx from the cluster, cut status streams
            // (X-Stream-Error trailers), 502/504 from the gateway. All retried.
            "--cluster-fault-rate",
            "0.02",
            "--cluster-stream-error-rate",
            "0.1",
            "--gateway-error-rate",
            "0.01",
        ],
    );
    let chain = d.chain();
    let s = setup(&d, true, "");
    ok(&nifty(
        &s,
        &[
            "backfill",
            "--source",
            "dev",
            "--from",
            "0",
            "--workers",
            "2",
        ],
    ));
    let out = pin_until_done(&s);
    assert!(out.contains(r#""pass":"analyse""#), "{out}");
    follow_until_settled(&s, Duration::from_secs(60));

    let want = truth(&chain, true);
    let got = outcomes(&s.data);
    compare(&got, &want);
    let linked = want.values().filter(|w| w.0 == "linked").count();
    assert!(linked > tokens as usize / 2, "{linked} linked of {tokens}");
    for kind in [
        "no_uri",
        "uri_parse_failed",
        "content_fetch_failed",
        "content_parse_failed",
        "parsed",
    ] {
        assert!(
            want.values().any(|w| w.0 == kind),
            "the chain has no {kind} token"
        );
    }

    // The cluster saw each CID pinned once, and exactly the CIDs the tokens use.
    let st = stats(&d);
    let cids: BTreeSet<&String> = want.values().flat_map(|w| &w.2).collect();
    assert_eq!(st["pins"].as_u64().unwrap(), cids.len() as u64, "{st}");
    assert_eq!(
        st["pin_requests"].as_u64().unwrap(),
        cids.len() as u64,
        "{st}"
    );
    assert_eq!(st["repinned"], serde_json::json!([]), "{st}");
    assert!(
        st["recovers"].as_u64().unwrap() > 0,
        "pin errors were recovered: {st}"
    );

    // The report's counts are the truth's, reason by reason.
    let report: serde_json::Value =
        serde_json::from_str(&ok(&nifty(&s, &["report", "--json"]))).unwrap();
    let mut want_reasons: BTreeMap<String, u64> = BTreeMap::new();
    for (status, reason, _) in want.values() {
        let stage = match status.as_str() {
            "no_uri" => "no_uri",
            "uri_parse_failed" => "uri",
            "content_fetch_failed" => "fetch",
            "content_parse_failed" => "parse",
            "parsed" => "unpinnable",
            _ => continue,
        };
        *want_reasons
            .entry(format!("{stage}.{}", reason.as_deref().unwrap()))
            .or_default() += 1;
    }
    let got_reasons: BTreeMap<String, u64> = report["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                format!(
                    "{}.{}",
                    l["stage"].as_str().unwrap(),
                    l["reason"].as_str().unwrap()
                ),
                l["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got_reasons, want_reasons);
    assert_eq!(
        report["tokens_by_status"]["linked"].as_u64().unwrap(),
        linked as u64
    );

    // `check` answers for a token and for a CID.
    let (id, (_, _, cids)) = want.iter().find(|(_, w)| w.0 == "linked").unwrap();
    let (contract, token_id) = id.split_once('_').unwrap();
    let text = ok(&nifty(&s, &["check", contract, token_id]));
    assert!(text.contains("status: linked"), "{text}");
    let cid = cids.iter().next().unwrap();
    let text = ok(&nifty(&s, &["check", cid, "--json"]));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["status"], "pinned");
    // A second pass finds nothing to do and requests nothing again.
    ok(&nifty(&s, &["pin"]));
    assert_eq!(stats(&d)["pin_requests"], st["pin_requests"]);
}

#[test]
fn web_metadata_on_private_addresses_is_refused_unless_allowed() {
    let (tokens, seed) = (1_500, 12);
    let d = support::start(NIFTY, tokens, seed, &["--gateway-slow-ms", "4000"]);
    let chain = d.chain();
    let s = setup(&d, false, "");
    ok(&nifty(&s, &["backfill", "--source", "dev", "--from", "0"]));
    ok(&nifty(&s, &["pin"]));
    let got = outcomes(&s.data);
    let want = truth(&chain, false);
    // Before pins settle, compare failure outcomes only: they are final after analysis.
    let blocked = want
        .iter()
        .filter(|(_, w)| w.1.as_deref() == Some("blocked_address"))
        .count();
    assert!(blocked > 0);
    for (id, w) in want.iter().filter(|(_, w)| w.0 != "linked") {
        assert_eq!(got.get(id), Some(w), "{id}");
    }
}

#[test]
fn a_cluster_outage_loses_nothing_and_everything_pins_after_it() {
    let (tokens, seed) = (1_500, 13);
    let d = support::start(
        NIFTY,
        tokens,
        seed,
        &[
            "--cluster-queue-ms",
            "20",
            "--cluster-pin-ms",
            "40",
            "--gateway-slow-ms",
            "4000",
        ],
    );
    let chain = d.chain();
    let s = setup(&d, true, "");
    ok(&nifty(&s, &["backfill", "--source", "dev", "--from", "0"]));
    // The cluster answers 503 to everything: the pin pass stops with exit 4, items kept. The
    // outage outlasts the analysis pass before it (slow metadata is tried 4 times).
    let unavailable = Instant::now();
    outage(&d, r#"{"seconds": 20, "mode": "unavailable"}"#);
    let out = nifty(&s, &["pin"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = Store::open(&s.data, &StoreOptions::default()).unwrap();
    let c = store.counts().unwrap();
    assert!(c.outbox.get("pin").copied().unwrap_or(0) > 0, "{c:?}");
    assert_eq!(
        c.pins_by_status.get("failed"),
        None,
        "an outage failed pins: {c:?}"
    );
    drop(store);
    // Then it refuses connections altogether.
    std::thread::sleep(Duration::from_secs(20).saturating_sub(unavailable.elapsed()));
    outage(&d, r#"{"seconds": 3, "mode": "refuse"}"#);
    let out = nifty(&s, &["pin"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Back: everything pins, each CID requested once.
    std::thread::sleep(Duration::from_secs(3));
    pin_until_done(&s);
    follow_until_settled(&s, Duration::from_secs(60));
    compare(&outcomes(&s.data), &truth(&chain, true));
    let st = stats(&d);
    assert_eq!(st["repinned"], serde_json::json!([]), "{st}");
}

#[test]
fn kill_9_during_analysis_and_pinning_loses_nothing() {
    let (tokens, seed) = (3_000, 14);
    let d = support::start(
        NIFTY,
        tokens,
        seed,
        &[
            "--cluster-queue-ms",
            "20",
            "--cluster-pin-ms",
            "40",
            "--gateway-slow-ms",
            "4000",
            "--gateway-latency-ms",
            "5",
        ],
    );
    let chain = d.chain();
    let s = setup(&d, true, "analyse_concurrency = 16\npin_concurrency = 4");
    ok(&nifty(&s, &["backfill", "--source", "dev", "--from", "0"]));
    let mut kills = 0;
    for wait_ms in [700, 1100, 400, 1500, 900, 300] {
        let mut child = Command::new(NIFTY)
            .arg("--config")
            .arg(&s.config)
            .arg("pin")
            .env("RUST_LOG", "error")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(wait_ms));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
        let store = Store::open(&s.data, &StoreOptions::default()).unwrap();
        let audit = store.audit().unwrap();
        assert!(audit.is_clean(), "after kill {kills}: {audit:?}");
    }
    assert!(
        kills >= 3,
        "the passes finished before most kills ({kills})"
    );
    pin_until_done(&s);
    follow_until_settled(&s, Duration::from_secs(60));
    compare(&outcomes(&s.data), &truth(&chain, true));
    // A kill between a request and its commit may repeat that request, never more.
    let st = stats(&d);
    let repinned = st["repinned"].as_array().unwrap().len();
    assert!(
        repinned <= kills * 4,
        "{repinned} CIDs requested twice after {kills} kills"
    );
}
