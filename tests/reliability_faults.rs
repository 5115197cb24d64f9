//! The fault matrix: each service nifty depends on (the subgraph, the IPFS Cluster, the IPFS
//! gateway, a chain node) failing in each way DESIGN.md lists, one at a time and then all
//! together, under the daemon (`nifty run`). Every row checks three things:
//!
//! 1. nothing is lost: the stored tokens, their URIs and blocks, and each token's analysis
//!    outcome and pinned CIDs are what a fault-free run gives (the generator's intent for the
//!    devnet's chain, what the test minted for the chain node); a fault that is permanent by
//!    nature (a subgraph with indexing errors, a pruned snapshot, refused credentials) is
//!    refused with a clear reason, commits nothing, and loses nothing once it is cured;
//! 2. every failure has a reason: a token that is not linked, a failed pin and a failed run
//!    each say why, in machine-readable words;
//! 3. nothing is swallowed: the fault was injected (the devnet's or the proxy's own counters
//!    say so; a row whose fault never fired fails) and nifty saw each injection (its
//!    per-outcome request metrics count at least as many failures as were injected).
//!
//! `NIFTY_SOAK=1` runs larger chains and higher fault rates. The rows of a test run two at
//! a time, each with its own devnet, proxy and daemon; a failing row does not stop the
//! others, and the test fails at the end naming every row that differed and how.
//!
//! Needs anvil and solc-js for the chain-node rows (`make chain-tools`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cid::Cid;
use ethers_core::types::{Address, U256};
use nifty::devnet::chain::{Chain, ChainParams, MetadataSource, UriKind, generate};
use nifty_state::{PinStatus, Store, StoreOptions, TokenId, TokenKey};
use serde_json::Value;

mod support {
    pub mod anvil;
    pub mod daemon;
    pub mod devnet;
    pub mod rpc_proxy;
}
use support::anvil::{Anvil, addr, calldata, mint_calldata, string, uint};
use support::daemon::{Daemon, NIFTY};
use support::devnet::Devnet;
use support::rpc_proxy::{Fault, Faults, FlakyFault, LogsFault, RangeFault, RpcProxy};

/// Confirmations of the graph source: the truth is the snapshot this far below the head.
const CONFIRMATIONS: u64 = 5;
/// Seed of the devnet chain every graph row shares.
const GRAPH_SEED: u64 = 21;
/// The environment variable the cluster's bearer token is read from.
const CLUSTER_TOKEN_ENV: &str = "NIFTY_FAULTS_CLUSTER_TOKEN";
/// The token the auth row's cluster wants.
const CLUSTER_TOKEN: &str = "fault-matrix-cluster-token";

/// Whether this is the long run (`make soak`).
fn soak() -> bool {
    std::env::var("NIFTY_SOAK").is_ok_and(|v| v == "1")
}

/// Tokens of the graph rows' chain.
fn graph_tokens() -> u64 {
    if soak() { 6_000 } else { 1_200 }
}

/// A fault rate, higher in the long run.
fn rate(short: f64) -> String {
    let r = if soak() {
        (short * 1.5).min(0.5)
    } else {
        short
    };
    format!("{r}")
}

/// The gateway's fault rates, the same in the long run. Unlike the other services' faults, a
/// gateway's can end a token for good: a token whose every one of the fetcher's 4 attempts
/// meets one is recorded as failed (the fetcher cannot tell a flapping gateway from content
/// that is not there). At a rate p a token is lost with probability p^4: 8e-7 at 0.03, a
/// 0.1% chance that one of ~1,000 fetched tokens is.
const GATEWAY_RATE_ALONE: &str = "0.03";
/// Each of the gateway's two fault rates when every service fails at once.
const GATEWAY_RATE_TOGETHER: &str = "0.02";

/// How long a row may take to settle.
fn settle_within() -> Duration {
    Duration::from_secs(if soak() { 300 } else { 90 })
}

// ---------------------------------------------------------------------------------------------
// What a row is

/// Where an injected fault is counted by the service that injected it.
#[derive(Clone, Debug)]
enum Injected {
    /// `/admin/subgraph/stats` faults whose name starts with this (`http_5` is every 5xx).
    Subgraph(&'static str),
    /// `/admin/gateway/stats` faults whose name starts with this.
    Gateway(&'static str),
    /// A counter of `/admin/cluster/stats` (`faults`, `stream_errors`, `timeouts`,
    /// `unavailable`, `unauthorized`, `recovers`).
    Cluster(&'static str),
    /// The JSON-RPC proxy's count of one fault.
    Proxy(Fault),
}

impl Injected {
    /// A short name for the row's summary line.
    fn label(&self) -> String {
        match self {
            Injected::Subgraph(p) => format!("subgraph:{p}*"),
            Injected::Gateway(p) => format!("gateway:{p}*"),
            Injected::Cluster(k) => format!("cluster:{k}"),
            Injected::Proxy(Fault::Range(k)) => format!("node:{k:?}"),
            Injected::Proxy(Fault::Logs(k)) => format!("node:{k:?}"),
            Injected::Proxy(Fault::Flaky(k)) => format!("node:{k:?}"),
        }
    }
}

/// Where nifty records that it met a failure.
#[derive(Clone, Debug)]
enum Seen {
    /// `nifty_graph_request_duration_seconds` samples with this outcome.
    Graph(&'static str),
    /// `nifty_cluster_request_duration_seconds` samples with an outcome starting with this.
    Cluster(&'static str),
    /// `nifty_gateway_fetch_duration_seconds` samples with this outcome.
    Gateway(&'static str),
    /// `nifty_rpc_request_duration_seconds` samples with this outcome.
    Rpc(&'static str),
    /// `nifty_cluster_request_duration_seconds` samples of this op that succeeded.
    ClusterOk(&'static str),
    /// `nifty_rpc_range_shrinks_total`.
    RangeShrinks,
    /// `nifty_job_errors_total` of the scrape job (its retries).
    ScrapeRetries,
}

/// One claim about a row's faults: the injections counted by `injected` happened (each of
/// them, when `each`), and nifty's `seen` series count at least as many failures (or, when
/// `at_least` is false, some: the series also count other things, or one failure there
/// stands for several injections).
#[derive(Clone, Debug)]
struct Evidence {
    injected: Vec<Injected>,
    seen: Vec<Seen>,
    each: bool,
    at_least: bool,
}

/// Every injection counted and seen at least as often.
fn seen_all(injected: Vec<Injected>, seen: Vec<Seen>) -> Evidence {
    Evidence {
        injected,
        seen,
        each: false,
        at_least: true,
    }
}

/// Each injection happened, and nifty saw the kind.
fn each_seen(injected: Vec<Injected>, seen: Vec<Seen>) -> Evidence {
    Evidence {
        injected,
        seen,
        each: true,
        at_least: false,
    }
}

/// A fault no service counts (a refusal the subgraph's schema makes, a refused connection):
/// nifty's own record is the evidence.
fn nifty_saw(seen: Vec<Seen>) -> Evidence {
    Evidence {
        injected: vec![],
        seen,
        each: false,
        at_least: false,
    }
}

/// What the row does besides waiting for the daemon to settle.
#[derive(Clone, Debug)]
enum Script {
    /// Nothing: the faults are the devnet's and the proxy's rates.
    Settle,
    /// When the first pins are wanted, the cluster goes down for a while (`unavailable`:
    /// 503s, `refuse`: connections refused).
    ClusterOutage { mode: &'static str, seconds: f64 },
    /// The subgraph's snapshot is pruned until the chain grows past it.
    Pruned,
    /// The subgraph reports indexing errors: nothing may be committed, ever.
    IndexingErrors,
    /// The cluster refuses nifty's credentials until the operator gives the right ones.
    BadCredentials,
}

/// Tweaks to the daemon's configuration.
#[derive(Clone, Debug, Default)]
struct Tweaks {
    /// The source's per-request timeout (ms); the default is 30 s.
    source_timeout_ms: Option<u64>,
    /// Whether the analyse, pin and follow jobs run (a subgraph fault cannot change an
    /// analysis, so those rows only scrape).
    scrape_only: bool,
    /// Whether nifty sends a bearer token to the cluster (read from [`CLUSTER_TOKEN_ENV`]).
    cluster_bearer: bool,
}

/// One row of the matrix.
#[derive(Clone, Debug)]
struct Row {
    /// `service/fault`.
    name: &'static str,
    /// Extra `nifty devnet` flags.
    devnet: Vec<String>,
    /// The chain node's faults (chain-node rows).
    proxy: Faults,
    /// Configuration tweaks.
    tweaks: Tweaks,
    /// What happens during the run.
    script: Script,
    /// The claims about its faults.
    evidence: Vec<Evidence>,
}

impl Row {
    fn new(name: &'static str, devnet: &[&str]) -> Row {
        Row {
            name,
            devnet: devnet.iter().map(|s| (*s).to_owned()).collect(),
            proxy: Faults::default(),
            tweaks: Tweaks::default(),
            script: Script::Settle,
            evidence: vec![],
        }
    }

    fn evidence(mut self, e: Evidence) -> Row {
        self.evidence.push(e);
        self
    }

    fn script(mut self, s: Script) -> Row {
        self.script = s;
        self
    }

    fn scrape_only(mut self) -> Row {
        self.tweaks.scrape_only = true;
        self
    }

    fn source_timeout(mut self, ms: u64) -> Row {
        self.tweaks.source_timeout_ms = Some(ms);
        self
    }

    fn proxy(mut self, faults: Faults) -> Row {
        self.proxy = faults;
        self
    }
}

/// nifty's gateway timeout (ms): short, so that slow tokens, tried 4 times, do not hold a
/// pass for long; long enough that a loaded machine answers a 2 MiB document within it (the
/// long run's bigger chain loads it more).
fn gateway_timeout_ms() -> u64 {
    if soak() { 2_000 } else { 1_200 }
}

/// How long the gateway holds a request it times out, or a slow token's: past nifty's
/// timeout, so that it always fires.
fn gateway_hold_ms() -> String {
    (gateway_timeout_ms() + 500).to_string()
}

/// Devnet flags every row starts from: fast pins, and slow tokens that time out.
fn base_devnet_flags() -> Vec<String> {
    vec![
        "--cluster-queue-ms".to_owned(),
        "30".to_owned(),
        "--cluster-pin-ms".to_owned(),
        "60".to_owned(),
        "--gateway-slow-ms".to_owned(),
        gateway_hold_ms(),
    ]
}

// ---------------------------------------------------------------------------------------------
// The truth

/// What a token should end as: status, reason, resource CIDs.
type Outcome = (String, Option<String>, BTreeSet<String>);

/// What the store must hold for one token.
#[derive(Clone, Debug, PartialEq)]
struct WantToken {
    /// `tokenURI`.
    uri: Option<String>,
    /// Mint block.
    block: u64,
    /// The analysis outcome.
    outcome: Outcome,
}

/// Every token the store must hold, by graph id.
type Truth = BTreeMap<String, WantToken>;

/// The devnet chain's truth at the graph source's snapshot.
fn graph_truth(chain: &Chain) -> Truth {
    let snapshot = chain.head() - CONFIRMATIONS;
    chain
        .tokens_at(snapshot)
        .iter()
        .map(|t| {
            let e = chain.expected(t, true);
            let uri = chain.token_uri(t);
            (
                t.graph_id.to_string(),
                WantToken {
                    uri: Some(uri),
                    block: t.block,
                    outcome: (
                        e.status.to_owned(),
                        e.reason.map(str::to_owned),
                        e.cids.into_iter().collect(),
                    ),
                },
            )
        })
        .collect()
}

/// Whether `got` is the outcome `want`. With transient gateway errors injected, a token
/// whose metadata never comes (it always times out) may name the injected error its last
/// attempt met instead of `timeout`: the same failure, told by its last attempt.
fn same_outcome(got: &Outcome, want: &Outcome, gateway_errors: bool) -> bool {
    got == want
        || gateway_errors
            && want.1.as_deref() == Some("timeout")
            && (&got.0, &got.2) == (&want.0, &want.2)
            && matches!(got.1.as_deref(), Some("http_502" | "http_504"))
}

/// Compares the store at `data` with `truth` (URIs, blocks, and outcomes unless
/// `scrape_only`; see [`same_outcome`] for `gateway_errors`), and checks the store's own
/// invariants: a clean audit, a reason on every token that is not linked, every pin of a
/// linked token pinned, an error on every failed pin. The differences, or nothing.
fn check_store(data: &Path, truth: &Truth, scrape_only: bool, gateway_errors: bool) -> Vec<String> {
    let store = Store::open(data, &StoreOptions::default()).unwrap();
    let mut problems = vec![];
    let audit = store.audit().unwrap();
    if !audit.is_clean() {
        problems.push(format!("store audit: {audit:?}"));
    }
    let mut got: BTreeMap<String, (Option<String>, u64, Outcome)> = BTreeMap::new();
    store
        .for_each_token(|k: TokenKey, t| {
            let cids = t
                .resources
                .iter()
                .map(|c| Cid::try_from(c.as_slice()).unwrap().to_string())
                .collect();
            got.insert(
                k.graph_id(),
                (
                    t.token_uri,
                    t.mint_block,
                    (t.status.name().to_owned(), t.reason, cids),
                ),
            );
        })
        .unwrap();
    let missing: Vec<&String> = truth.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<&String> = got.keys().filter(|k| !truth.contains_key(*k)).collect();
    if !missing.is_empty() || !extra.is_empty() {
        problems.push(format!(
            "stored {} tokens, want {}: {} missing (e.g. {:?}), {} extra (e.g. {:?})",
            got.len(),
            truth.len(),
            missing.len(),
            missing.iter().take(3).collect::<Vec<_>>(),
            extra.len(),
            extra.iter().take(3).collect::<Vec<_>>()
        ));
    }
    let mut wrong = vec![];
    for (id, want) in truth {
        let Some((uri, block, outcome)) = got.get(id) else {
            continue;
        };
        if (uri, *block) != (&want.uri, want.block) {
            wrong.push(format!(
                "{id}: stored uri {uri:?} block {block}, want {:?} block {}",
                want.uri, want.block
            ));
        } else if !scrape_only && !same_outcome(outcome, &want.outcome, gateway_errors) {
            wrong.push(format!("{id}: got {outcome:?}, want {:?}", want.outcome));
        }
    }
    if !wrong.is_empty() {
        problems.push(format!(
            "{} tokens differ from the truth, e.g.\n      {}",
            wrong.len(),
            wrong
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n      ")
        ));
    }
    if !scrape_only {
        let unexplained: Vec<&String> = got
            .iter()
            .filter(|(_, (_, _, o))| o.0 != "linked" && o.1.as_deref().is_none_or(str::is_empty))
            .map(|(id, _)| id)
            .take(3)
            .collect();
        if !unexplained.is_empty() {
            problems.push(format!(
                "tokens that are not linked and have no reason: {unexplained:?}"
            ));
        }
        // Every CID a token uses has its pin record: pinned for a linked token, and a failed
        // pin says why.
        let mut pin_problems = vec![];
        for (id, (_, _, (status, _, cids))) in &got {
            for cid in cids {
                let bytes = Cid::try_from(cid.as_str()).unwrap().to_bytes();
                match store.pin(&bytes).unwrap() {
                    None => pin_problems.push(format!("{id}: no pin record for {cid}")),
                    Some(p) if status == "linked" && p.status != PinStatus::Pinned => {
                        pin_problems.push(format!("{id} is linked but {cid} is {:?}", p.status))
                    }
                    Some(p)
                        if p.status == PinStatus::Failed
                            && p.last_error.as_deref().is_none_or(str::is_empty) =>
                    {
                        pin_problems.push(format!("{cid} failed without an error"))
                    }
                    Some(_) => {}
                }
            }
        }
        if !pin_problems.is_empty() {
            problems.push(format!(
                "{} pin problems, e.g. {:?}",
                pin_problems.len(),
                &pin_problems[..pin_problems.len().min(3)]
            ));
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// Talking to the services

/// A one-shot HTTP/1.1 request on loopback: status and body.
fn http(method: &str, url: &str, body: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut conn = std::net::TcpStream::connect(host).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        conn,
        "{method} /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_owned())
}

/// GET `url`, which must answer 200 with JSON.
fn get_json(url: &str) -> Value {
    let (status, body) = http("GET", url, "");
    assert_eq!(status, 200, "GET {url}: {body}");
    serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("GET {url}: {e}: {body}"))
}

/// The devnet's counters: subgraph, gateway and cluster.
struct DevnetCounts {
    subgraph: Value,
    gateway: Value,
    cluster: Value,
}

impl DevnetCounts {
    fn read(d: &Devnet) -> DevnetCounts {
        DevnetCounts {
            subgraph: get_json(&format!("{}/subgraph/stats", d.admin)),
            gateway: get_json(&format!("{}/gateway/stats", d.admin)),
            cluster: get_json(&d.cluster_stats_url()),
        }
    }
}

/// A test on one label of a series.
type LabelTest<'a> = (&'a str, &'a dyn Fn(&str) -> bool);

/// Sum of a Prometheus text exposition's samples named `name` whose labels pass `tests`.
fn metric(text: &str, name: &str, tests: &[LabelTest<'_>]) -> u64 {
    let mut sum = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (n, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if n != name {
            continue;
        }
        let passes = tests.iter().all(|(key, want)| {
            let value_of = labels.split(',').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k == *key).then(|| v.trim_matches('"'))
            });
            value_of.is_some_and(want)
        });
        if !passes {
            continue;
        }
        sum += value.parse::<f64>().unwrap_or(0.0);
    }
    sum as u64
}

/// What one row's services and nifty counted.
struct Observed {
    devnet: DevnetCounts,
    proxy: Option<support::rpc_proxy::ProxyStats>,
    /// `/metrics` of the daemon now, and of the daemons before it in this row (a restart
    /// starts the counters again).
    metrics: String,
    earlier_metrics: Vec<String>,
    source: &'static str,
}

impl Observed {
    fn injected(&self, i: &Injected) -> u64 {
        let prefixed = |faults: &Value, prefix: &str| -> u64 {
            faults
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter(|(k, _)| k.starts_with(prefix))
                        .filter_map(|(_, v)| v.as_u64())
                        .sum()
                })
                .unwrap_or(0)
        };
        match i {
            Injected::Subgraph(p) => prefixed(&self.devnet.subgraph["faults"], p),
            Injected::Gateway(p) => prefixed(&self.devnet.gateway["faults"], p),
            Injected::Cluster(k) => self.devnet.cluster[*k].as_u64().unwrap_or(0),
            Injected::Proxy(f) => self.proxy.as_ref().map_or(0, |s| s.fault_count(*f)),
        }
    }

    fn seen(&self, s: &Seen) -> u64 {
        std::iter::once(&self.metrics)
            .chain(&self.earlier_metrics)
            .map(|m| self.seen_in(m, s))
            .sum()
    }

    fn seen_in(&self, m: &str, s: &Seen) -> u64 {
        match s {
            Seen::Graph(o) => metric(
                m,
                "nifty_graph_request_duration_seconds_count",
                &[("outcome", &|v| v == *o)],
            ),
            Seen::Cluster(o) => metric(
                m,
                "nifty_cluster_request_duration_seconds_count",
                &[("outcome", &|v| v.starts_with(*o))],
            ),
            Seen::ClusterOk(op) => metric(
                m,
                "nifty_cluster_request_duration_seconds_count",
                &[("op", &|v| v == *op), ("outcome", &|v| v == "ok")],
            ),
            Seen::Gateway(o) => metric(
                m,
                "nifty_gateway_fetch_duration_seconds_count",
                &[("outcome", &|v| v == *o)],
            ),
            Seen::Rpc(o) => metric(
                m,
                "nifty_rpc_request_duration_seconds_count",
                &[("outcome", &|v| v == *o)],
            ),
            Seen::RangeShrinks => metric(m, "nifty_rpc_range_shrinks_total", &[]),
            Seen::ScrapeRetries => {
                let job = format!("scrape/{}", self.source);
                metric(
                    m,
                    "nifty_job_errors_total",
                    &[("job", &|v| v == job.as_str())],
                )
            }
        }
    }

    /// The claims of `evidence` that do not hold, and a line of what was counted.
    fn check(&self, evidence: &[Evidence]) -> (Vec<String>, String) {
        let mut problems = vec![];
        let mut line = String::new();
        for e in evidence {
            let counts: Vec<u64> = e.injected.iter().map(|i| self.injected(i)).collect();
            let injected: u64 = counts.iter().sum();
            let seen: u64 = e.seen.iter().map(|s| self.seen(s)).sum();
            let names: Vec<String> = e.injected.iter().map(Injected::label).collect();
            let _ = write!(line, " [{}] {counts:?} seen {seen};", names.join(" "));
            if e.injected.is_empty() {
                // No service counts this fault (a refusal the subgraph's schema makes):
                // nifty's record is the evidence.
                if seen == 0 {
                    problems.push(format!("nifty never recorded {:?}", e.seen));
                }
                continue;
            }
            if injected == 0 {
                problems.push(format!("the fault never fired: {:?}", e.injected));
                continue;
            }
            if e.each {
                for (i, n) in e.injected.iter().zip(&counts) {
                    if *n == 0 {
                        problems.push(format!("{i:?} never fired"));
                    }
                }
            }
            // A fault met while the machine is so loaded that nifty's own timeout fires
            // first is recorded as a timeout: one in forty of a kind may be told as another.
            let enough = if e.at_least {
                seen + injected / 40 >= injected
            } else {
                seen > 0
            };
            if !enough {
                problems.push(format!(
                    "{injected} injected ({:?}) but nifty recorded {seen} ({:?})",
                    e.injected, e.seen
                ));
            }
        }
        (problems, line)
    }
}

/// Problems with the daemon's run records: a failed run without a reason.
fn check_runs(d: &Daemon) -> Vec<String> {
    let runs = d.json("/api/runs?limit=1000");
    runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["outcome"] == "failed" && r["reason"].as_str().is_none_or(|s| s.trim().is_empty())
        })
        .take(3)
        .map(|r| format!("a failed run without a reason: {r}"))
        .collect()
}

/// The reasons of the failed runs of `job` so far.
fn failed_runs(d: &Daemon, job: &str) -> Vec<String> {
    let runs = d.json(&format!("/api/runs?job={job}&limit=1000"));
    runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] == "failed")
        .map(|r| r["reason"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Polls `ok` every 200 ms until it holds; an error naming `what` if it does not within
/// `within`.
fn wait_for(what: &str, within: Duration, mut ok: impl FnMut() -> bool) -> Result<(), String> {
    let t = Instant::now();
    while !ok() {
        if t.elapsed() > within {
            return Err(format!("{what}: not within {within:?}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// Whether a `/api/status` shows the source past its snapshot (and, unless `scrape_only`,
/// nothing left to analyse, pin or follow).
fn done(s: &Value, scrape_only: bool) -> bool {
    if scrape_only {
        let sources = s["sources"].as_array().cloned().unwrap_or_default();
        return !sources.is_empty()
            && sources.iter().all(|x| {
                matches!(
                    (x["cursor"]["block"].as_u64(), x["snapshot"].as_u64()),
                    (Some(c), Some(snap)) if c > snap
                )
            });
    }
    support::daemon::settled(s)
}

// ---------------------------------------------------------------------------------------------
// Running a row

/// The daemon's configuration for a row over `d` (its gateway and cluster, and its subgraph
/// or `rpc` as the source).
fn daemon_config(dir: &Path, d: &Devnet, row: &Row, rpc: Option<&str>) -> PathBuf {
    let data = dir.join("data");
    let pinner_on = !row.tweaks.scrape_only;
    let auth = if row.tweaks.cluster_bearer {
        format!("auth = \"bearer\"\ntoken_env = \"{CLUSTER_TOKEN_ENV}\"\n")
    } else {
        String::new()
    };
    let timeout = row.tweaks.source_timeout_ms.unwrap_or(30_000);
    let source = match rpc {
        None => format!(
            "[sources.dev]\nkind = \"graph\"\nurl = \"{}\"\nconfirmations = {CONFIRMATIONS}\n\
             page_size = 25\n",
            d.subgraph
        ),
        Some(url) => format!(
            "[sources.chain]\nkind = \"rpc\"\nurl = \"{url}\"\nconfirmations = 0\n\
             page_size = 8\nmax_span = 64\nbatch_size = 10\nmulticall = \"\"\n"
        ),
    };
    let text = format!(
        r#"
data_dir = "{data}"
[store]
sync_commits = false
[http]
listen = "127.0.0.1:0"
[pinner]
retry_base_secs = 0
[jobs.analyse]
schedule = "* * * * * *"
budget_secs = 5
enabled = {pinner_on}
[jobs.pin]
schedule = "* * * * * *"
budget_secs = 5
enabled = {pinner_on}
[jobs.follow]
schedule = "* * * * * *"
budget_secs = 5
enabled = {pinner_on}
[gateway]
url = "{gateway}"
arweave_url = "{arweave}"
timeout_ms = {gateway_timeout}
allow_hosts = ["127.0.0.1"]
[cluster]
url = "{cluster}"
timeout_ms = 2000
attempts = 2
{auth}
{source}schedule = "* * * * * *"
budget_secs = 5
timeout_ms = {timeout}
"#,
        data = data.display(),
        gateway = d.gateway,
        gateway_timeout = gateway_timeout_ms(),
        arweave = d.arweave,
        cluster = d.cluster,
    );
    let path = dir.join("nifty.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The daemon's environment: quiet logs (faults are expected), and the cluster token, right
/// or wrong.
fn daemon_env(right_token: bool) -> Vec<(&'static str, &'static str)> {
    vec![
        ("RUST_LOG", "error"),
        (
            CLUSTER_TOKEN_ENV,
            if right_token {
                CLUSTER_TOKEN
            } else {
                "not-the-token"
            },
        ),
    ]
}

/// What the chain-node rows share: the node behind the proxy and the truth of its mints.
struct ChainNode {
    anvil: Anvil,
    truth: Truth,
}

/// Runs one row to its end and returns its problems (empty when it passed) and a summary.
fn run_row(row: &Row, params: &ChainParams, node: Option<&ChainNode>) -> (Vec<String>, String) {
    let started = Instant::now();
    let mut flags = base_devnet_flags();
    flags.extend(row.devnet.iter().cloned());
    if matches!(row.script, Script::BadCredentials) {
        flags.extend(["--cluster-bearer".to_owned(), CLUSTER_TOKEN.to_owned()]);
    }
    if matches!(row.script, Script::Pruned) {
        // The snapshot (head - confirmations) falls below the pruning point; mined blocks
        // move it past.
        let head = generate(params).head();
        flags.extend(["--prune-before".to_owned(), (head - 2).to_string()]);
    }
    let flag_refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    let d = support::devnet::start(NIFTY, params.tokens as u64, params.seed, &flag_refs);
    // The graph truth names the devnet's own web host.
    let truth = node.map_or_else(|| graph_truth(&d.chain()), |n| n.truth.clone());
    let proxy = node.map(|n| RpcProxy::start(&n.anvil.url, row.proxy.clone()));
    let dir = tempfile::tempdir().unwrap();
    let mut row = row.clone();
    row.tweaks.cluster_bearer |= matches!(row.script, Script::BadCredentials);
    let config = daemon_config(dir.path(), &d, &row, proxy.as_ref().map(|p| p.url.as_str()));
    let source = if node.is_some() { "chain" } else { "dev" };
    let mut daemon = Daemon::start_with_env(&config, &daemon_env(false));
    let mut problems: Vec<String> = vec![];
    let mut earlier_metrics = vec![];
    let scrape_only = row.tweaks.scrape_only;
    let within = settle_within();

    let status = |d: &Daemon| d.json("/api/status");
    let scripted: Result<(), String> = match &row.script {
        Script::Settle => Ok(()),
        Script::ClusterOutage { mode, seconds } => {
            wait_for("pins wanted before the outage", within, || {
                let s = status(&daemon);
                s["pins_by_status"]["wanted"].as_u64().unwrap_or(0) > 0
                    || s["outbox"]["pin"].as_u64().unwrap_or(0) > 0
            })
            .map(|()| {
                let (code, body) = http(
                    "POST",
                    &d.cluster_outage_url(),
                    &format!(r#"{{"seconds": {seconds}, "mode": "{mode}"}}"#),
                );
                assert_eq!(code, 200, "{body}");
            })
        }
        Script::Pruned => wait_for("a scrape refused as pruned", within, || {
            failed_runs(&daemon, "scrape/dev")
                .iter()
                .any(|r| r.contains("snapshot_unavailable"))
        })
        .and_then(|()| {
            let tokens = status(&daemon)["tokens"].as_u64().unwrap_or(0);
            if tokens != 0 {
                return Err(format!("{tokens} tokens stored from a pruned snapshot"));
            }
            let (code, body) = http("POST", &format!("{}/mine", d.admin), r#"{"blocks": 10}"#);
            assert_eq!(code, 200, "{body}");
            Ok(())
        }),
        Script::IndexingErrors => wait_for("three refused scrape runs", within, || {
            let refused = failed_runs(&daemon, "scrape/dev");
            refused.len() >= 3
        })
        .and_then(|()| {
            let refused = failed_runs(&daemon, "scrape/dev");
            if !refused.iter().all(|r| r.contains("indexing error")) {
                return Err(format!("runs failed for other reasons: {refused:?}"));
            }
            let s = status(&daemon);
            let tokens = s["tokens"].as_u64().unwrap_or(0);
            let cursor = &s["sources"][0]["cursor"];
            if tokens != 0 || cursor["block"].as_u64().is_some_and(|b| b != 0) {
                return Err(format!(
                    "a subgraph with indexing errors got {tokens} tokens committed, cursor {cursor}"
                ));
            }
            Ok(())
        }),
        Script::BadCredentials => wait_for("pin runs refused with 401", within, || {
            failed_runs(&daemon, "pin")
                .iter()
                .filter(|r| r.contains("401"))
                .count()
                >= 2
        })
        .and_then(|()| {
            let s = status(&daemon);
            let failed = s["pins_by_status"]["failed"].as_u64().unwrap_or(0);
            let kept = s["outbox"]["pin"].as_u64().unwrap_or(0);
            if failed > 0 || kept == 0 {
                return Err(format!(
                    "refused credentials failed {failed} pins and kept {kept} pin items"
                ));
            }
            // Each refusal so far reached nifty's metrics (this daemon's are lost at its
            // restart, so the row's evidence only asks that the next one saw some).
            let refused = DevnetCounts::read(&d).cluster["unauthorized"]
                .as_u64()
                .unwrap_or(0);
            let seen_401 = |d: &Daemon| {
                metric(
                    &d.get("/metrics").1,
                    "nifty_cluster_request_duration_seconds_count",
                    &[("outcome", &|v| v == "http_401")],
                )
            };
            if let Err(e) = wait_for(
                "the refusals in nifty's metrics",
                Duration::from_secs(10),
                || seen_401(&daemon) >= refused,
            ) {
                problems.push(format!(
                    "{e}: {refused} refused, {} seen",
                    seen_401(&daemon)
                ));
            }
            // The operator fixes the token: nothing was lost meanwhile.
            problems.extend(check_runs(&daemon));
            earlier_metrics.push(daemon.get("/metrics").1);
            let (code, _) = daemon.stop("TERM");
            if code != Some(0) {
                return Err(format!("the daemon exited {code:?} on SIGTERM"));
            }
            daemon = Daemon::start_with_env(&config, &daemon_env(true));
            Ok(())
        }),
    };
    if let Err(e) = scripted {
        problems.push(e);
    }

    let settled = if matches!(row.script, Script::IndexingErrors) {
        Ok(())
    } else {
        wait_for("settled", within, || done(&status(&daemon), scrape_only))
    };
    if let Err(e) = settled {
        problems.push(format!("{e}; last status {}", status(&daemon)));
    }
    problems.extend(check_runs(&daemon));
    // The services' counts first: a request they have counted may still be on its way to
    // nifty (a held one times out seconds later), so nifty's metrics get a few seconds to
    // catch up with them.
    let mut observed = Observed {
        devnet: DevnetCounts::read(&d),
        proxy: proxy.as_ref().map(RpcProxy::stats),
        metrics: daemon.get("/metrics").1,
        earlier_metrics,
        source,
    };
    let catch_up = Instant::now() + Duration::from_secs(10);
    while !observed.check(&row.evidence).0.is_empty() && Instant::now() < catch_up {
        std::thread::sleep(Duration::from_millis(250));
        observed.metrics = daemon.get("/metrics").1;
    }
    let (code, _) = daemon.stop("TERM");
    if code != Some(0) {
        problems.push(format!("the daemon exited {code:?} on SIGTERM"));
    }
    let data = dir.path().join("data");
    if matches!(row.script, Script::IndexingErrors) {
        let store = Store::open(&data, &StoreOptions::default()).unwrap();
        let n = store.counts().unwrap().tokens;
        if n != 0 {
            problems.push(format!(
                "{n} tokens committed from a subgraph with indexing errors"
            ));
        }
    } else {
        let gateway_errors = row.devnet.iter().any(|f| f == "--gateway-error-rate");
        problems.extend(check_store(&data, &truth, scrape_only, gateway_errors));
    }
    let (evidence_problems, counted) = observed.check(&row.evidence);
    problems.extend(evidence_problems);
    if !scrape_only && !matches!(row.script, Script::IndexingErrors) {
        // The cluster holds exactly the CIDs the tokens use, and a CID it reported pinned
        // was never requested again.
        let cids: BTreeSet<&String> = truth.values().flat_map(|w| &w.outcome.2).collect();
        let pins = observed.devnet.cluster["pins"].as_u64().unwrap_or(0);
        if pins != cids.len() as u64 {
            problems.push(format!(
                "the cluster tracks {pins} CIDs, the tokens use {}",
                cids.len()
            ));
        }
        let posted = observed.devnet.cluster["posts_after_pinned_seen"]
            .as_u64()
            .unwrap_or(0);
        if posted > 0 {
            problems.push(format!(
                "{posted} pin requests for CIDs the cluster had already reported pinned"
            ));
        }
    }
    let summary = format!(
        "{:<28} {:>5.1}s{counted}",
        row.name,
        started.elapsed().as_secs_f64()
    );
    (problems, summary)
}

/// Rows run at once: each is a devnet and a daemon that mostly wait on timers, so two keep
/// a 2-core machine far from busy while halving the wall time.
const ROWS_AT_ONCE: usize = 2;

/// Runs `rows`, [`ROWS_AT_ONCE`] at a time, printing a line per row, and fails naming every
/// row that had problems.
fn run_matrix(rows: &[Row], params: &ChainParams, node: Option<&ChainNode>) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(vec![]);
    std::thread::scope(|scope| {
        for _ in 0..ROWS_AT_ONCE {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(row) = rows.get(i) else { return };
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        run_row(row, params, node)
                    }));
                    let (problems, summary) = match outcome {
                        Ok(r) => r,
                        Err(e) => {
                            let message = e
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                                .unwrap_or_default();
                            (vec![format!("panicked: {message}")], row.name.to_owned())
                        }
                    };
                    eprintln!("{summary}");
                    if !problems.is_empty() {
                        failures.lock().unwrap().push(format!(
                            "{}:\n  - {}",
                            row.name,
                            problems.join("\n  - ")
                        ));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

fn graph_params() -> ChainParams {
    ChainParams {
        tokens: graph_tokens() as usize,
        seed: GRAPH_SEED,
        ..ChainParams::default()
    }
}

// ---------------------------------------------------------------------------------------------
// The rows

use Injected as I;
use Seen as S;

/// The subgraph failing in each way DESIGN.md lists. Scrape only: a subgraph fault cannot
/// change an analysis.
#[test]
fn subgraph_faults_alone() {
    let rows = vec![
        Row::new(
            "subgraph/http_5xx",
            &["--error-rate", &rate(0.25), "--fault-seed", "1"],
        )
        .scrape_only()
        .evidence(each_seen(
            vec![
                I::Subgraph("http_500"),
                I::Subgraph("http_502"),
                I::Subgraph("http_503"),
            ],
            vec![S::Graph("http_5xx")],
        ))
        .evidence(seen_all(
            vec![I::Subgraph("http_5")],
            vec![S::Graph("http_5xx")],
        )),
        Row::new(
            "subgraph/http_429",
            &["--rate-limit-rate", &rate(0.15), "--fault-seed", "2"],
        )
        .scrape_only()
        .evidence(seen_all(
            vec![I::Subgraph("http_429")],
            vec![S::Graph("http_429")],
        )),
        Row::new(
            "subgraph/timeout",
            &[
                "--timeout-rate",
                &rate(0.15),
                "--timeout-hold-ms",
                "4000",
                "--fault-seed",
                "3",
            ],
        )
        .scrape_only()
        .source_timeout(800)
        .evidence(seen_all(
            vec![I::Subgraph("timeout")],
            vec![S::Graph("timeout")],
        )),
        Row::new(
            "subgraph/truncated",
            &["--truncate-rate", &rate(0.2), "--fault-seed", "4"],
        )
        .scrape_only()
        .evidence(seen_all(
            vec![I::Subgraph("truncated")],
            vec![S::Graph("decode")],
        )),
        Row::new(
            "subgraph/malformed",
            &["--malformed-rate", &rate(0.2), "--fault-seed", "5"],
        )
        .scrape_only()
        .evidence(seen_all(
            vec![I::Subgraph("malformed")],
            vec![S::Graph("decode")],
        )),
        Row::new(
            "subgraph/graphql_errors",
            &["--graphql-error-rate", &rate(0.3), "--fault-seed", "6"],
        )
        .scrape_only()
        .evidence(each_seen(
            vec![
                I::Subgraph("graphql: Query timed out"),
                I::Subgraph("graphql: service is overloaded"),
                I::Subgraph("graphql: chain was reorganized"),
            ],
            vec![S::Graph("graphql_retryable")],
        ))
        .evidence(seen_all(
            vec![I::Subgraph("graphql")],
            vec![S::Graph("graphql_retryable")],
        )),
        Row::new(
            "subgraph/indexing_error",
            &["--indexing-error-rate", &rate(0.2), "--fault-seed", "7"],
        )
        .scrape_only()
        .evidence(seen_all(
            vec![I::Subgraph("indexing_error")],
            vec![S::Graph("indexing_error")],
        )),
        Row::new("subgraph/has_indexing_errors", &["--indexing-errors"])
            .scrape_only()
            .script(Script::IndexingErrors),
        Row::new("subgraph/pruned", &[])
            .scrape_only()
            .script(Script::Pruned)
            .evidence(nifty_saw(vec![S::Graph("snapshot_unavailable")])),
    ];
    let params = graph_params();
    run_matrix(&rows, &params, None);
}

/// The cluster and the gateway failing in each way, one at a time, under the whole pipeline.
#[test]
fn cluster_and_gateway_faults_alone() {
    let rows = vec![
        Row::new(
            "cluster/http_5xx",
            &["--cluster-fault-rate", &rate(0.15), "--fault-seed", "11"],
        )
        .evidence(seen_all(
            vec![I::Cluster("faults")],
            vec![S::Cluster("http_5")],
        )),
        Row::new(
            "cluster/stream_error",
            &[
                "--cluster-stream-error-rate",
                &rate(0.3),
                "--fault-seed",
                "12",
            ],
        )
        .evidence(seen_all(
            vec![I::Cluster("stream_errors")],
            vec![S::Cluster("stream_error"), S::Cluster("http_500")],
        )),
        Row::new(
            "cluster/pin_error",
            &["--cluster-error-rate", &rate(0.25), "--fault-seed", "13"],
        )
        .evidence(seen_all(
            vec![I::Cluster("recovers")],
            vec![S::ClusterOk("recover")],
        )),
        Row::new(
            "cluster/timeout",
            &[
                "--cluster-timeout-rate",
                &rate(0.1),
                "--cluster-timeout-hold-ms",
                "3000",
                "--fault-seed",
                "14",
            ],
        )
        .evidence(seen_all(
            vec![I::Cluster("timeouts")],
            vec![S::Cluster("timeout")],
        )),
        Row::new("cluster/outage_unavailable", &[])
            .script(Script::ClusterOutage {
                mode: "unavailable",
                seconds: 3.0,
            })
            .evidence(seen_all(
                vec![I::Cluster("unavailable")],
                vec![S::Cluster("http_503")],
            )),
        Row::new("cluster/outage_refuse", &[])
            .script(Script::ClusterOutage {
                mode: "refuse",
                seconds: 3.0,
            })
            .evidence(nifty_saw(vec![S::Cluster("connect")])),
        Row::new("cluster/bad_credentials", &[])
            .script(Script::BadCredentials)
            .evidence(each_seen(
                vec![I::Cluster("unauthorized")],
                vec![S::Cluster("http_401")],
            )),
        Row::new(
            "gateway/http_502_504",
            &[
                "--gateway-error-rate",
                GATEWAY_RATE_ALONE,
                "--fault-seed",
                "15",
            ],
        )
        .evidence(each_seen(
            vec![I::Gateway("http_502"), I::Gateway("http_504")],
            vec![S::Gateway("http_502"), S::Gateway("http_504")],
        ))
        .evidence(seen_all(
            vec![I::Gateway("http_502")],
            vec![S::Gateway("http_502")],
        ))
        .evidence(seen_all(
            vec![I::Gateway("http_504")],
            vec![S::Gateway("http_504")],
        )),
        Row::new(
            "gateway/timeout",
            &[
                "--gateway-timeout-rate",
                GATEWAY_RATE_ALONE,
                "--gateway-timeout-hold-ms",
                &gateway_hold_ms(),
                "--fault-seed",
                "16",
            ],
        )
        .evidence(seen_all(
            vec![I::Gateway("timeout")],
            vec![S::Gateway("timeout")],
        )),
    ];
    let params = graph_params();
    run_matrix(&rows, &params, None);
}

/// Every subgraph fault, seen as failed requests. (The rows that run one fault at a time
/// show each kind; together, some kinds are rare.)
fn subgraph_seen_all() -> Evidence {
    seen_all(
        vec![I::Subgraph("")],
        [
            "http_5xx",
            "http_429",
            "timeout",
            "decode",
            "graphql_retryable",
            "indexing_error",
        ]
        .into_iter()
        .map(S::Graph)
        .collect(),
    )
}

/// Every cluster fault, seen as failed requests.
fn cluster_seen_all() -> Evidence {
    seen_all(
        vec![
            I::Cluster("faults"),
            I::Cluster("unavailable"),
            I::Cluster("timeouts"),
            I::Cluster("stream_errors"),
        ],
        vec![
            S::Cluster("http_5"),
            S::Cluster("timeout"),
            S::Cluster("stream_error"),
        ],
    )
}

/// Every gateway fault, seen as failed fetches.
fn gateway_seen_all() -> Evidence {
    seen_all(
        vec![I::Gateway("")],
        vec![
            S::Gateway("http_502"),
            S::Gateway("http_504"),
            S::Gateway("timeout"),
        ],
    )
}

/// Subgraph, cluster and gateway failing all at once, with a cluster outage in the middle.
#[test]
fn graph_pipeline_everything_at_once() {
    let flags = [
        "--error-rate",
        &rate(0.08),
        "--rate-limit-rate",
        &rate(0.03),
        "--timeout-rate",
        &rate(0.03),
        "--timeout-hold-ms",
        "3000",
        "--truncate-rate",
        &rate(0.03),
        "--malformed-rate",
        &rate(0.03),
        "--graphql-error-rate",
        &rate(0.05),
        "--indexing-error-rate",
        &rate(0.05),
        "--cluster-fault-rate",
        &rate(0.05),
        "--cluster-stream-error-rate",
        &rate(0.1),
        "--cluster-error-rate",
        &rate(0.1),
        "--cluster-timeout-rate",
        &rate(0.03),
        "--cluster-timeout-hold-ms",
        "3000",
        "--gateway-error-rate",
        GATEWAY_RATE_TOGETHER,
        "--gateway-timeout-rate",
        GATEWAY_RATE_TOGETHER,
        "--gateway-timeout-hold-ms",
        &gateway_hold_ms(),
        "--fault-seed",
        "17",
    ];
    let row = Row::new("graph/everything", &flags)
        .source_timeout(800)
        .script(Script::ClusterOutage {
            mode: "unavailable",
            seconds: 2.0,
        })
        .evidence(subgraph_seen_all())
        .evidence(cluster_seen_all())
        .evidence(seen_all(
            vec![I::Cluster("recovers")],
            vec![S::ClusterOk("recover")],
        ))
        .evidence(gateway_seen_all());
    let params = graph_params();
    run_matrix(&[row], &params, None);
}

// ---------------------------------------------------------------------------------------------
// The chain node

/// Tokens of the devnet chain whose path-gateway tokens the chain node mints.
fn node_chain_tokens() -> usize {
    if soak() { 12_000 } else { 3_000 }
}
/// Seed of that chain.
const NODE_CHAIN_SEED: u64 = 23;
/// Most mints of one block: a block must fit under the proxy's result-count refusal.
const MINTS_PER_BLOCK: usize = 3;

fn node_params() -> ChainParams {
    ChainParams {
        tokens: node_chain_tokens(),
        seed: NODE_CHAIN_SEED,
        ..ChainParams::default()
    }
}

fn key(contract: Address, id: U256) -> TokenKey {
    TokenKey {
        contract: nifty_state::Address(contract.0),
        token_id: TokenId(id),
    }
}

/// An anvil node with mints whose URIs lead to the devnet's gateway, and their truth: the
/// devnet chain's path-gateway tokens (`https://<gateway>/ipfs/<folder cid>/<id>`, every
/// metadata variant among them) minted again under one `Nft721` per folder, whose
/// `tokenURI` is the same kind of URI, so the generator's intent for the devnet token is the
/// truth for the minted one; tokens whose `tokenURI` reverts (no URI, reason `reverted`);
/// and ERC-20 mints to be ignored. At most [`MINTS_PER_BLOCK`] ERC-721 mints and one ERC-20
/// mint per block, `max` path-gateway tokens in all.
async fn chain_node(params: &ChainParams, max: usize) -> ChainNode {
    let chain = generate(params);
    let mut folders: BTreeMap<String, Vec<(usize, String)>> = BTreeMap::new();
    let mut picked = 0;
    for (i, t) in chain.tokens().iter().enumerate() {
        if picked == max || chain.token_uri_kind(t) != UriKind::PathGateway {
            continue;
        }
        let MetadataSource::Ipfs { cid, path } = chain.metadata_source(t) else {
            continue;
        };
        assert_eq!(
            path,
            t.token_id_decimal(),
            "a path-gateway token's path is its id"
        );
        folders.entry(cid).or_default().push((i, path));
        picked += 1;
    }
    assert!(
        picked >= max.min(150),
        "only {picked} path-gateway tokens in the chain"
    );
    let anvil = Anvil::start().await;
    let mut truth = Truth::new();
    let mut pending: Vec<(Address, U256, String, Outcome)> = vec![];
    for (cid, tokens) in &folders {
        let base = format!("https://ipfs.io/ipfs/{cid}/");
        let nft = anvil
            .deploy(
                "Nft721",
                &[string("Fault Art"), string("FA"), string(&base)],
            )
            .await;
        for (i, id) in tokens {
            let e = chain.expected(&chain.tokens()[*i], true);
            let outcome = (
                e.status.to_owned(),
                e.reason.map(str::to_owned),
                e.cids.into_iter().collect(),
            );
            pending.push((
                nft,
                U256::from_dec_str(id).unwrap(),
                format!("{base}{id}"),
                outcome,
            ));
        }
    }
    let reverting = anvil
        .deploy("Nft721RevertingUri", &[string("Withheld"), string("WH")])
        .await;
    let bare = anvil.deploy("Nft721Bare", &[]).await;
    let coin = anvil
        .deploy("Token20", &[string("Coin"), string("COIN")])
        .await;
    // Interleave the folders' tokens so ranges mix variants.
    pending.sort_by_key(|(_, id, _, _)| *id % U256::from(9_973u64));
    let accounts = anvil.accounts().to_vec();
    anvil.set_automine(false).await;
    let mut n = 0usize;
    for (b, chunk) in pending.chunks(MINTS_PER_BLOCK).enumerate() {
        let mut txs = vec![];
        let mut minted = vec![];
        for (nft, id, uri, outcome) in chunk {
            let owner = accounts[n % accounts.len()];
            n += 1;
            txs.push((*nft, mint_calldata(owner, *id)));
            minted.push((key(*nft, *id), Some(uri.clone()), outcome.clone()));
        }
        if b % 3 == 0 {
            let contract = if b % 2 == 0 { reverting } else { bare };
            let id = U256::from(5_000_000 + b);
            txs.push((contract, mint_calldata(accounts[b % accounts.len()], id)));
            let outcome = (
                "no_uri".to_owned(),
                Some("reverted".to_owned()),
                BTreeSet::new(),
            );
            minted.push((key(contract, id), None, outcome));
        } else {
            let to = accounts[b % accounts.len()];
            txs.push((
                coin,
                calldata("mint(address,uint256)", &[addr(to), uint(U256::from(7u64))]),
            ));
        }
        anvil.send_many(txs).await;
        anvil.mine(1).await;
        let block = anvil.block_number().await;
        for (k, uri, outcome) in minted {
            truth.insert(
                k.graph_id(),
                WantToken {
                    uri,
                    block,
                    outcome,
                },
            );
        }
    }
    anvil.set_automine(true).await;
    let head = anvil.block_number().await;
    eprintln!(
        "chain node: {} tokens ({picked} with metadata on the devnet's gateway) in {} blocks",
        truth.len(),
        pending.len().div_ceil(MINTS_PER_BLOCK)
    );
    let logs = anvil.logs(0, head, None).await;
    assert_eq!(
        logs.iter().filter(|l| l.topics.len() == 4).count(),
        truth.len(),
        "the fixture's mints did not all land"
    );
    ChainNode { anvil, truth }
}

/// Path-gateway tokens the chain node mints.
fn node_mints() -> usize {
    if soak() { 900 } else { 240 }
}

/// The faults of `kinds`, each as the proxy counts them.
fn proxied(kinds: &[FlakyFault]) -> Vec<Injected> {
    kinds.iter().map(|k| I::Proxy(Fault::Flaky(*k))).collect()
}

/// A chain node failing in each way DESIGN.md lists (each provider's words for a range too
/// wide or an answer too big, passing failures, rate limits, broken bodies), alone and then
/// together with the cluster's and the gateway's faults.
#[test]
fn chain_node_faults_alone_and_together() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let params = node_params();
    let node = rt.block_on(chain_node(&params, node_mints()));
    let flaky = |p: f64, kinds: &[FlakyFault], seed: u64| Faults {
        flaky: if soak() { p * 1.5 } else { p },
        flaky_kinds: kinds.to_vec(),
        seed,
        ..Faults::default()
    };
    let range_faults: Vec<Injected> = RangeFault::ALL
        .iter()
        .map(|k| I::Proxy(Fault::Range(*k)))
        .collect();
    let logs_faults: Vec<Injected> = LogsFault::ALL
        .iter()
        .map(|k| I::Proxy(Fault::Logs(*k)))
        .collect();
    let refused_as = vec![S::Rpc("rpc_error"), S::Rpc("http_4xx"), S::Rpc("http_5xx")];
    let rows = vec![
        Row::new("node/range_refusals", &[])
            .proxy(Faults {
                max_span: Some(4),
                ..Faults::default()
            })
            .evidence(each_seen(range_faults.clone(), refused_as.clone()))
            .evidence(seen_all(range_faults.clone(), refused_as.clone()))
            .evidence(nifty_saw(vec![S::RangeShrinks])),
        Row::new("node/too_many_results", &[])
            .proxy(Faults {
                max_logs: Some(6),
                ..Faults::default()
            })
            .evidence(each_seen(logs_faults.clone(), vec![S::Rpc("rpc_error")]))
            .evidence(seen_all(logs_faults.clone(), vec![S::Rpc("rpc_error")]))
            .evidence(nifty_saw(vec![S::RangeShrinks])),
        Row::new("node/flaky", &[])
            .proxy(flaky(0.04, &FlakyFault::ALL, 31))
            .evidence(seen_all(
                proxied(&[
                    FlakyFault::Http502,
                    FlakyFault::Http503,
                    FlakyFault::Http504,
                ]),
                vec![S::Rpc("http_5xx")],
            ))
            .evidence(seen_all(
                proxied(&[FlakyFault::Disconnect]),
                vec![S::Rpc("connect")],
            ))
            .evidence(each_seen(
                proxied(&[FlakyFault::InternalError]),
                vec![S::ScrapeRetries],
            )),
        Row::new("node/rate_limited", &[])
            .proxy(flaky(0.05, &FlakyFault::RATE_LIMITS, 32))
            .evidence(seen_all(
                proxied(&[FlakyFault::Http429]),
                vec![S::Rpc("http_429")],
            ))
            .evidence(each_seen(
                proxied(&[FlakyFault::CallRateLimited, FlakyFault::CallLimitReached]),
                vec![S::ScrapeRetries],
            )),
        Row::new("node/broken_bodies", &[])
            .proxy(flaky(0.04, &FlakyFault::BODIES, 33))
            .evidence(each_seen(
                proxied(&FlakyFault::BODIES),
                vec![S::Rpc("decode")],
            ))
            .evidence(seen_all(
                proxied(&FlakyFault::BODIES),
                vec![S::Rpc("decode")],
            )),
        Row::new(
            "node/everything",
            &[
                "--cluster-fault-rate",
                &rate(0.05),
                "--cluster-stream-error-rate",
                &rate(0.1),
                "--cluster-error-rate",
                &rate(0.1),
                "--cluster-timeout-rate",
                &rate(0.03),
                "--cluster-timeout-hold-ms",
                "3000",
                "--gateway-error-rate",
                GATEWAY_RATE_TOGETHER,
                "--gateway-timeout-rate",
                GATEWAY_RATE_TOGETHER,
                "--gateway-timeout-hold-ms",
                &gateway_hold_ms(),
                "--fault-seed",
                "34",
            ],
        )
        .proxy(Faults {
            max_span: Some(6),
            max_logs: Some(6),
            ..flaky(0.03, &FlakyFault::EVERY, 35)
        })
        .evidence(seen_all(
            range_faults
                .into_iter()
                .chain(logs_faults)
                .chain(proxied(&[
                    FlakyFault::Http502,
                    FlakyFault::Http503,
                    FlakyFault::Http504,
                    FlakyFault::Disconnect,
                    FlakyFault::Http429,
                    FlakyFault::Truncated,
                    FlakyFault::Malformed,
                ]))
                .collect(),
            [
                "rpc_error",
                "http_4xx",
                "http_5xx",
                "connect",
                "http_429",
                "decode",
            ]
            .into_iter()
            .map(S::Rpc)
            .collect(),
        ))
        .evidence(Evidence {
            injected: proxied(&[
                FlakyFault::InternalError,
                FlakyFault::CallRateLimited,
                FlakyFault::CallLimitReached,
            ]),
            seen: vec![S::ScrapeRetries],
            each: false,
            at_least: false,
        })
        .evidence(cluster_seen_all())
        .evidence(gateway_seen_all()),
    ];
    run_matrix(&rows, &params, Some(&node));
    drop(node);
}

/// The proxy's rate limits and broken bodies, as a plain client sees them: each in its
/// provider's shape, and counted.
#[test]
fn the_proxy_rate_limits_and_breaks_bodies_like_providers() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let anvil = rt.block_on(Anvil::start());
    let proxy = RpcProxy::start(&anvil.url, Faults::default());
    let post = |body: &str| -> (u16, BTreeMap<String, String>, String) {
        rt.block_on(async {
            let r = reqwest::Client::new()
                .post(&proxy.url)
                .header("content-type", "application/json")
                .body(body.to_owned())
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let headers = r
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
                .collect();
            (status, headers, r.text().await.unwrap())
        })
    };
    let only = |kind: FlakyFault| Faults {
        flaky: 1.0,
        flaky_kinds: vec![kind],
        ..Faults::default()
    };
    let one = r#"{"jsonrpc":"2.0","id":7,"method":"eth_chainId","params":[]}"#;
    let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]},{"jsonrpc":"2.0","id":2,"method":"eth_blockNumber","params":[]}]"#;
    let (status, _, clean) = post(one);
    assert_eq!(status, 200, "{clean}");

    proxy.set_faults(only(FlakyFault::Http429));
    let (status, headers, body) = post(batch);
    assert_eq!(
        (status, headers.get("retry-after").map(String::as_str)),
        (429, Some("1"))
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["error"]["code"].as_i64(), v["error"]["message"].as_str()),
        (Some(429), Some("Too Many Requests"))
    );

    // Per-element limits: an HTTP 200 batch answer whose elements carry their own errors.
    for (kind, code, words) in [
        (FlakyFault::CallRateLimited, -32005, "rate limit exceeded"),
        (
            FlakyFault::CallLimitReached,
            -32007,
            "request limit reached",
        ),
    ] {
        proxy.set_faults(only(kind));
        let (status, _, body) = post(batch);
        assert_eq!(status, 200, "{kind:?}: {body}");
        let items: Vec<Value> = serde_json::from_str(&body).unwrap();
        assert_eq!(items.len(), 2, "{body}");
        for (item, id) in items.iter().zip([1, 2]) {
            assert_eq!(item["id"], id, "{body}");
            assert_eq!(item["error"]["code"].as_i64(), Some(code), "{body}");
            assert!(
                item["error"]["message"].as_str().unwrap().contains(words),
                "{body}"
            );
        }
    }

    // A body cut in half: the start of the real answer, and not JSON.
    proxy.set_faults(only(FlakyFault::Truncated));
    let (status, _, body) = post(one);
    assert_eq!(status, 200);
    assert_eq!(body.len(), clean.len() / 2, "{body:?} of {clean:?}");
    assert!(clean.starts_with(&body));
    assert!(serde_json::from_str::<Value>(&body).is_err());

    proxy.set_faults(only(FlakyFault::Malformed));
    let (status, headers, body) = post(one);
    assert_eq!(
        (status, headers.get("content-type").map(String::as_str)),
        (200, Some("text/html"))
    );
    assert!(body.contains("<html>"), "{body}");

    let stats = proxy.stats();
    for kind in FlakyFault::RATE_LIMITS.iter().chain(&FlakyFault::BODIES) {
        assert!(
            stats.fault_count(Fault::Flaky(*kind)) >= 1,
            "{kind:?}: {stats:?}"
        );
    }
    // A batch's per-element limits count once per element.
    assert_eq!(
        stats.fault_count(Fault::Flaky(FlakyFault::CallRateLimited)),
        2
    );
    assert_eq!(stats.fault_count(Fault::Flaky(FlakyFault::Http429)), 1);
    drop(proxy);
    drop(anvil);
}
