//! `make bench-peers`: one devnet dataset paged to completion by nifty and by real
//! third-party clients, each in its documented way of fetching every entity, side by side.
//!
//! - nifty: `nifty backfill --from 0` into a fresh store; the stored tokens are read back.
//! - subgrounds (PyPI): `query_df` with its default pagination strategy
//!   (`subgrounds_peer.py`).
//! - graph-client (npm): a `.graphclientrc.yml` with the auto-pagination transform and a
//!   document asking `first: N`, built with `graphclient build` and executed
//!   (`graph_client_peer.mjs`).
//!
//! Every client pages `tokens { id tokenID contract { id } tokenURI blockNumber }` at one
//! snapshot block (head minus 20, the block nifty's backfill pins), and every row is checked
//! against the truth: the devnet's chain, generated here from the same parameters rather than
//! read back through the devnet's query engine. A row counts as duplicate, missing, extra (an
//! id the snapshot lacks) or wrong (a field unlike the chain's).
//!
//! `scripts/bench-peers.sh` installs the peers and runs this with their locations in the
//! environment; a peer that could not be installed or that fails gets a row saying why, and
//! the bench still finishes. It exits non-zero only when nifty itself fails or misses a token.
//!
//! Environment: NIFTY_PEERS_TOKENS (50,000), NIFTY_PEERS_SEED (7), NIFTY_PEERS_RUNS (3),
//! NIFTY_PEERS_TIMEOUT_SECS (900, per run), NIFTY_PEERS_OUT (the JSON report),
//! NIFTY_PEERS_WORK (scratch), and from the script NIFTY_PEERS_SUBGROUNDS_PYTHON or
//! NIFTY_PEERS_SUBGROUNDS_SKIP, NIFTY_PEERS_GRAPH_CLIENT_DIR or NIFTY_PEERS_GRAPH_CLIENT_SKIP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "../../tests/support/devnet.rs"]
mod support;

/// Blocks behind the head that nifty treats as final by default; every client pages the
/// snapshot at head minus this.
const CONFIRMATIONS: u64 = 20;

/// An environment variable as a number, or its default.
fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .replace(['_', ','], "")
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// A token's fields as the subgraph serves them: tokenID, contract id, tokenURI, blockNumber.
type Fields = [String; 4];

/// Every token of the snapshot, by graph id.
struct Truth {
    /// The fields of each token.
    tokens: HashMap<String, Fields>,
}

impl Truth {
    /// The tokens of `chain` minted by `snapshot`.
    fn of(chain: &nifty::devnet::Chain, snapshot: u64) -> Truth {
        let contracts = chain.contracts();
        let tokens = chain
            .tokens_at(snapshot)
            .iter()
            .map(|t| {
                let fields = [
                    t.token_id_decimal().to_owned(),
                    contracts[usize::from(t.contract)].id.clone(),
                    chain.token_uri(t),
                    t.block.to_string(),
                ];
                (t.graph_id.to_string(), fields)
            })
            .collect();
        Truth { tokens }
    }
}

/// How a client's rows compare with the truth.
#[derive(Clone, Debug, Default, PartialEq)]
struct Delivery {
    /// Rows returned.
    rows: u64,
    /// Distinct ids among them.
    distinct: u64,
    /// Rows whose id came earlier too.
    duplicates: u64,
    /// Tokens of the snapshot that no row has.
    missing: u64,
    /// Distinct ids that are not tokens of the snapshot.
    extra: u64,
    /// Rows of real tokens with a field unlike the chain's.
    wrong: u64,
    /// The first such field, as `id field: got ≠ want`.
    wrong_example: Option<String>,
    /// Distinct ids that are tokens of the snapshot (the numerator of tokens/s).
    delivered: u64,
}

impl Delivery {
    /// Whether the client returned exactly the snapshot's tokens, each once, as the chain
    /// has them.
    fn full_and_unique(&self) -> bool {
        self.duplicates == 0 && self.missing == 0 && self.extra == 0 && self.wrong == 0
    }
}

/// Compares rows `(id, fields)` with `truth`.
fn check(truth: &Truth, rows: impl IntoIterator<Item = (String, Fields)>) -> Delivery {
    const NAMES: [&str; 4] = ["tokenID", "contract", "tokenURI", "blockNumber"];
    let mut d = Delivery::default();
    let mut seen: HashSet<String> = HashSet::new();
    for (id, fields) in rows {
        d.rows += 1;
        let want = truth.tokens.get(&id);
        if let Some(i) = want.and_then(|want| (0..4).find(|&i| fields[i] != want[i])) {
            let want = want.map_or("", |w| w[i].as_str());
            d.wrong += 1;
            d.wrong_example.get_or_insert_with(|| {
                format!(
                    "{id} {}: {} ≠ {}",
                    NAMES[i],
                    clip(&fields[i], 60),
                    clip(want, 60)
                )
            });
        }
        if !seen.insert(id) {
            d.duplicates += 1;
        }
    }
    d.distinct = seen.len() as u64;
    d.delivered = seen
        .iter()
        .filter(|id| truth.tokens.contains_key(*id))
        .count() as u64;
    d.extra = d.distinct - d.delivered;
    d.missing = truth.tokens.len() as u64 - d.delivered;
    d
}

/// At most `n` characters of `s`, with an ellipsis when cut.
fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

/// The line of a failed tool's output that says what went wrong: the first that names an
/// error, else the last that says anything.
fn meaningful_line(text: &str) -> Option<String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter(|l| !l.to_ascii_lowercase().starts_with("npm warn"))
        .collect();
    let named = lines.iter().find(|l| {
        let lower = l.to_ascii_lowercase();
        lower.contains("error") || lower.contains("fatal") || lower.contains("failed")
    });
    named.or(lines.last()).map(|l| clip(l, 200))
}

/// What one finished (or stopped) process left.
struct Finished {
    /// Its exit status, or `None` when it was killed at the timeout.
    status: Option<ExitStatus>,
    /// Wall-clock seconds from spawn to exit.
    wall: f64,
    /// Its stdout.
    stdout: String,
    /// Its stderr.
    stderr: String,
    /// Why it could not be started, when it could not.
    not_started: Option<String>,
}

impl Finished {
    /// Why the process did not succeed, if it did not: could not start, killed at the
    /// timeout, or the line of its stderr that names the error.
    fn failure(&self, timeout: Duration) -> Option<String> {
        if let Some(why) = &self.not_started {
            return Some(why.clone());
        }
        match self.status {
            None => Some(format!("did not finish within {} s", timeout.as_secs())),
            Some(st) if !st.success() => {
                Some(meaningful_line(&self.stderr).unwrap_or_else(|| format!("exited with {st}")))
            }
            Some(_) => None,
        }
    }
}

/// Runs `cmd` to completion or `timeout`, with stdout and stderr in files under `work` (a
/// pipe could fill and stall a chatty child).
fn run(mut cmd: Command, work: &Path, tag: &str, timeout: Duration) -> Finished {
    let out_path = work.join(format!("{tag}.stdout"));
    let err_path = work.join(format!("{tag}.stderr"));
    let started = Instant::now();
    // Its own process group, so a timeout stops what it started too (graph-client's build
    // runs the graphclient CLI as a child).
    let spawned = cmd
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            return Finished {
                status: None,
                wall: 0.0,
                stdout: String::new(),
                stderr: String::new(),
                not_started: Some(format!(
                    "cannot start {}: {e}",
                    cmd.get_program().to_string_lossy()
                )),
            };
        }
    };
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > timeout {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Finished {
        status,
        wall: started.elapsed().as_secs_f64(),
        stdout: fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: fs::read_to_string(&err_path).unwrap_or_default(),
        not_started: None,
    }
}

/// One run of one client.
#[derive(Clone, Debug)]
struct Run {
    /// Seconds the client took to fetch everything, as it timed itself (`None` when it
    /// failed before finishing).
    seconds: Option<f64>,
    /// Wall-clock seconds of the whole process.
    wall: f64,
    /// Its rows against the truth.
    delivery: Delivery,
    /// Why it failed, when it did.
    error: Option<String>,
}

/// One client's row of the table.
struct ClientRow {
    /// Its name.
    client: &'static str,
    /// Its version(s).
    version: String,
    /// Its runs (none when it could not run at all).
    runs: Vec<Run>,
    /// Why it could not run at all.
    unavailable: Option<String>,
    /// How it pages, and the conditions of its runs.
    how: String,
}

impl ClientRow {
    /// A client that could not run.
    fn unavailable(client: &'static str, why: String, how: &str) -> ClientRow {
        ClientRow {
            client,
            version: "-".into(),
            runs: vec![],
            unavailable: Some(why),
            how: how.to_owned(),
        }
    }

    /// Median tokens/s over the runs that finished: distinct tokens of the snapshot over the
    /// client's own seconds.
    fn tokens_per_sec(&self) -> Option<f64> {
        let rates: Vec<f64> = self
            .runs
            .iter()
            .filter_map(|r| r.seconds.map(|s| r.delivery.delivered as f64 / s.max(1e-9)))
            .collect();
        median(&rates)
    }

    /// Whether it ran and every run returned the full snapshot, each token once, without
    /// an error.
    fn full_and_unique(&self) -> bool {
        !self.runs.is_empty()
            && self
                .runs
                .iter()
                .all(|r| r.error.is_none() && r.delivery.full_and_unique())
    }

    /// The delivery of the first run; the note says when later runs differed.
    fn delivery(&self) -> Option<&Delivery> {
        self.runs.first().map(|r| &r.delivery)
    }

    /// The note column: why it could not run or failed, what it lost, how it pages.
    fn note(&self) -> String {
        if let Some(why) = &self.unavailable {
            return format!("could not run: {why}");
        }
        let mut parts = vec![];
        if let Some(e) = self.runs.iter().find_map(|r| r.error.as_deref()) {
            let failed = self.runs.iter().filter(|r| r.error.is_some()).count();
            parts.push(format!(
                "failed in {failed} of {} runs: {e}",
                self.runs.len()
            ));
        }
        if let Some(d) = self.delivery() {
            if d.extra > 0 {
                parts.push(format!(
                    "{} ids not in the snapshot",
                    pretty(d.extra as f64)
                ));
            }
            if let Some(w) = &d.wrong_example {
                parts.push(format!(
                    "{} rows with a field unlike the chain's, e.g. {w}",
                    pretty(d.wrong as f64)
                ));
            }
        }
        if self.runs.windows(2).any(|w| w[0].delivery != w[1].delivery) {
            let counts: Vec<String> = self
                .runs
                .iter()
                .map(|r| format!("{}/{}", r.delivery.rows, r.delivery.missing))
                .collect();
            parts.push(format!("runs differ (rows/missing: {})", counts.join(", ")));
        }
        parts.push(self.how.clone());
        parts.join("; ")
    }

    /// The row as JSON.
    fn json(&self) -> Value {
        let runs: Vec<Value> = self
            .runs
            .iter()
            .map(|r| {
                let d = &r.delivery;
                json!({
                    "seconds": r.seconds, "wall_seconds": r.wall, "error": r.error,
                    "rows": d.rows, "distinct": d.distinct, "duplicates": d.duplicates,
                    "missing": d.missing, "extra": d.extra, "wrong_fields": d.wrong,
                    "wrong_example": d.wrong_example,
                    "full_and_duplicate_free": d.full_and_unique(),
                })
            })
            .collect();
        let d = self.delivery();
        json!({
            "client": self.client,
            "version": self.version,
            "tokens_per_sec_median": self.tokens_per_sec(),
            "rows": d.map(|d| d.rows),
            "distinct": d.map(|d| d.distinct),
            "duplicates": d.map(|d| d.duplicates),
            "missing": d.map(|d| d.missing),
            "extra": d.map(|d| d.extra),
            "wrong_fields": d.map(|d| d.wrong),
            "full_and_duplicate_free": d.map(|_| self.full_and_unique()),
            "unavailable": self.unavailable,
            "note": self.note(),
            "runs": runs,
        })
    }
}

/// The median of `v`, if any.
fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

/// A number with thousands separators, no decimals.
fn pretty(x: f64) -> String {
    let n = x.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// What the bench runs against.
struct Setup {
    /// The nifty binary.
    nifty: String,
    /// The subgraph URL.
    url: String,
    /// The snapshot block.
    snapshot: u64,
    /// The truth at the snapshot.
    truth: Truth,
    /// Runs per client.
    runs: usize,
    /// Longest one run may take.
    timeout: Duration,
    /// Scratch directory.
    work: PathBuf,
    /// This directory (the drivers).
    drivers: PathBuf,
}

/// nifty: `backfill --from 0` into a fresh store per run, then every stored token read back.
fn bench_nifty(s: &Setup) -> ClientRow {
    let mut runs = vec![];
    for i in 0..s.runs {
        let data = s.work.join(format!("nifty-data-{i}"));
        let _ = fs::remove_dir_all(&data);
        let mut cmd = Command::new(&s.nifty);
        cmd.arg("--data-dir").arg(&data).args([
            "backfill",
            "--graph",
            &s.url,
            "--from",
            "0",
            "--confirmations",
            &CONFIRMATIONS.to_string(),
            "--json",
        ]);
        cmd.env("RUST_LOG", "warn");
        let f = run(cmd, &s.work, &format!("nifty-{i}"), s.timeout);
        let report: Option<Value> = serde_json::from_str(f.stdout.trim()).ok();
        let ok = f.status.is_some_and(|st| st.success())
            && report.as_ref().is_some_and(|r| r["outcome"] == "completed");
        let error = (!ok).then(|| {
            f.failure(s.timeout)
                .or_else(|| report.as_ref().map(|r| format!("outcome {}", r["outcome"])))
                .unwrap_or_else(|| "printed no report".to_owned())
        });
        let delivery = stored_delivery(&data, &s.truth);
        let seconds = report
            .as_ref()
            .filter(|_| ok)
            .and_then(|r| r["seconds"].as_f64());
        if let Some(r) = report
            .as_ref()
            .filter(|r| r["duplicates"].as_u64().is_some_and(|n| n > 0))
        {
            println!(
                "  nifty run {}: the backfill dropped {} re-delivered rows (the store keys by token)",
                i + 1,
                r["duplicates"]
            );
        }
        println!(
            "  nifty run {}: {:.2} s, {} tokens stored, {} missing",
            i + 1,
            seconds.unwrap_or(f64::NAN),
            delivery.distinct,
            delivery.missing
        );
        runs.push(Run {
            seconds,
            wall: f.wall,
            delivery,
            error,
        });
        let _ = fs::remove_dir_all(&data);
    }
    ClientRow {
        client: "nifty",
        version: nifty_version(),
        runs,
        unavailable: None,
        how: format!(
            "`nifty backfill --from 0` (default 4 workers, pages of 1,000 by (blockNumber, id) cursor, snapshot {}); stored tokens read back from the store",
            s.snapshot
        ),
    }
}

/// The stored tokens of the store at `data` against `truth` (an unreadable store delivers
/// nothing).
fn stored_delivery(data: &Path, truth: &Truth) -> Delivery {
    use nifty_state::{Store, StoreOptions, TokenKey};
    let Ok(store) = Store::open(data, &StoreOptions::default()) else {
        return check(truth, vec![]);
    };
    let mut rows = vec![];
    let _ = store.for_each_token(|k: TokenKey, t| {
        let id = k.graph_id();
        let (contract, token_id) = id.split_once('_').unwrap_or((&id, ""));
        let fields = [
            token_id.to_owned(),
            contract.to_owned(),
            t.token_uri.clone().unwrap_or_default(),
            t.mint_block.to_string(),
        ];
        rows.push((t.graph_id, fields));
    });
    check(truth, rows)
}

/// nifty's version and the commit it was built from, when git can tell.
fn nifty_version() -> String {
    let commit = Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    match commit {
        Some(c) => format!("{} ({c})", env!("CARGO_PKG_VERSION")),
        None => env!("CARGO_PKG_VERSION").to_owned(),
    }
}

/// Reads a driver's rows file: one JSON array `[id, tokenID, contract, tokenURI,
/// blockNumber]` per line.
fn read_rows(path: &Path) -> Vec<(String, Fields)> {
    let Ok(file) = fs::File::open(path) else {
        return vec![];
    };
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(&l)
                .unwrap_or_else(|e| panic!("{}: bad row {l:?}: {e}", path.display()));
            let id = text(&v[0]);
            (id, [text(&v[1]), text(&v[2]), text(&v[3]), text(&v[4])])
        })
        .collect()
}

/// Runs a peer's driver `s.runs` times (`args` plus `--out FILE`); each prints one JSON line
/// `{"version", "seconds"?, "error"?}` and writes its rows to FILE.
fn bench_driver(
    s: &Setup,
    client: &'static str,
    how: &str,
    mut command: impl FnMut() -> Command,
) -> ClientRow {
    let mut runs = vec![];
    let mut version = "-".to_owned();
    for i in 0..s.runs {
        let rows_path = s.work.join(format!("{client}-{i}.rows"));
        let _ = fs::remove_file(&rows_path);
        let mut cmd = command();
        cmd.arg("--out").arg(&rows_path);
        let f = run(cmd, &s.work, &format!("{client}-{i}"), s.timeout);
        if let Some(why) = &f.not_started {
            return ClientRow::unavailable(client, why.clone(), how);
        }
        let report: Option<Value> = f
            .stdout
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l.trim()).ok());
        if let Some(v) = report.as_ref().and_then(|r| r["version"].as_str()) {
            version = v.to_owned();
        }
        let error = match (f.failure(s.timeout), &report) {
            (Some(why), _) => Some(why),
            (None, None) => Some(
                meaningful_line(&f.stderr)
                    .unwrap_or_else(|| "the driver printed no report".to_owned()),
            ),
            (None, Some(r)) => r["error"].as_str().map(|e| clip(e, 300)),
        };
        let seconds = report.as_ref().and_then(|r| r["seconds"].as_f64());
        let delivery = check(&s.truth, read_rows(&rows_path));
        println!(
            "  {client} run {}: {} s, {} rows, {} distinct, {} missing{}",
            i + 1,
            seconds.map_or("-".into(), |x| format!("{x:.2}")),
            delivery.rows,
            delivery.distinct,
            delivery.missing,
            error
                .as_deref()
                .map(|e| format!(", error: {}", clip(e, 120)))
                .unwrap_or_default()
        );
        runs.push(Run {
            seconds,
            wall: f.wall,
            delivery,
            error,
        });
        let _ = fs::remove_file(&rows_path);
    }
    ClientRow {
        client,
        version,
        runs,
        unavailable: None,
        how: how.to_owned(),
    }
}

/// How subgrounds pages, from its source (subgrounds/pagination/strategies.py).
const SUBGROUNDS_HOW: &str = "`query_df` with its default LegacyStrategy: pages of 900 ordered by id, `id_gt` the last id, `block` kept on every page; each page is merged into the rows so far by id with list scans, so a repeated row cannot show and the time grows with the square of the rows";

/// subgrounds, when the script installed it.
fn bench_subgrounds(s: &Setup) -> ClientRow {
    let python = match (
        std::env::var("NIFTY_PEERS_SUBGROUNDS_PYTHON"),
        std::env::var("NIFTY_PEERS_SUBGROUNDS_SKIP"),
    ) {
        (_, Ok(why)) => return ClientRow::unavailable("subgrounds", why, SUBGROUNDS_HOW),
        (Ok(p), _) => p,
        _ => {
            return ClientRow::unavailable(
                "subgrounds",
                "not installed: `make bench-peers` installs it".into(),
                SUBGROUNDS_HOW,
            );
        }
    };
    let driver = s.drivers.join("subgrounds_peer.py");
    let first = s.truth.tokens.len().to_string();
    let how = format!("first={first}; {SUBGROUNDS_HOW}");
    bench_driver(s, "subgrounds", &how, || {
        let mut cmd = Command::new(&python);
        cmd.arg(&driver)
            .args(["--url", &s.url, "--block", &s.snapshot.to_string()])
            .args(["--first", &first]);
        cmd
    })
}

/// How graph-client pages, from its source (@graphprotocol/client-auto-pagination).
const GRAPH_CLIENT_HOW: &str = "auto-pagination turns `first: N` into aliases of 1,000 rows with `skip` 0, 1,000, ... N-1,000, all in one request; graph-node refuses `skip` over 5,000 and then answers that request with errors and no data";

/// graph-client, when the script installed it: built once for this devnet, then run.
fn bench_graph_client(s: &Setup) -> ClientRow {
    let dir = match (
        std::env::var("NIFTY_PEERS_GRAPH_CLIENT_DIR"),
        std::env::var("NIFTY_PEERS_GRAPH_CLIENT_SKIP"),
    ) {
        (_, Ok(why)) => return ClientRow::unavailable("graph-client", why, GRAPH_CLIENT_HOW),
        (Ok(d), _) => PathBuf::from(d),
        _ => {
            return ClientRow::unavailable(
                "graph-client",
                "not installed: `make bench-peers` installs it".into(),
                GRAPH_CLIENT_HOW,
            );
        }
    };
    let driver = s.drivers.join("graph_client_peer.mjs");
    let project = dir.join("work");
    let first = s.truth.tokens.len().to_string();
    let how = format!("first: {first}; {GRAPH_CLIENT_HOW}");
    let mut build = Command::new("node");
    build
        .arg(&driver)
        .arg("build")
        .arg("--install")
        .arg(&dir)
        .arg("--project")
        .arg(&project)
        .args(["--url", &s.url, "--first", &first]);
    let f = run(build, &s.work, "graph-client-build", s.timeout);
    if let Some(failure) = f.failure(s.timeout) {
        let why = f
            .stdout
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
            .and_then(|r| r["error"].as_str().map(str::to_owned))
            .unwrap_or(failure);
        return ClientRow::unavailable("graph-client", format!("build failed: {why}"), &how);
    }
    println!("  graph-client built for this devnet in {:.1} s", f.wall);
    bench_driver(s, "graph-client", &how, || {
        let mut cmd = Command::new("node");
        cmd.arg(&driver)
            .arg("run")
            .arg("--project")
            .arg(&project)
            .args(["--block", &s.snapshot.to_string()]);
        cmd
    })
}

/// The table, as Markdown.
fn table(rows: &[ClientRow]) -> String {
    let header = [
        "client",
        "version",
        "tokens/s (median)",
        "rows",
        "distinct",
        "duplicates",
        "missing",
        "full & duplicate-free?",
        "note",
    ];
    let mut lines: Vec<Vec<String>> = vec![];
    for r in rows {
        let d = r.delivery();
        let count = |f: fn(&Delivery) -> u64| d.map_or("-".into(), |d| pretty(f(d) as f64));
        let full = match d {
            None => "-".to_owned(),
            Some(_) if r.full_and_unique() => "yes".into(),
            Some(_) => "no".into(),
        };
        lines.push(vec![
            r.client.to_owned(),
            r.version.clone(),
            r.tokens_per_sec().map_or("-".into(), pretty),
            count(|d| d.rows),
            count(|d| d.distinct),
            count(|d| d.duplicates),
            count(|d| d.missing),
            full,
            r.note(),
        ]);
    }
    let mut out = String::new();
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(
        out,
        "|{}",
        header.iter().map(|_| "---|").collect::<String>()
    );
    for l in lines {
        let cells: Vec<String> = l.iter().map(|c| c.replace('|', "\\|")).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out
}

/// Facts about this machine for the JSON report.
fn machine() -> Value {
    let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned());
    let mem_kib = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        });
    let version = |tool: &str, arg: &str| {
        Command::new(tool)
            .arg(arg)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "cpu_model": model,
        "memory_bytes": mem_kib.map(|k| k * 1024),
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "load_average_at_start": read("/proc/loadavg").split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        "node": version("node", "--version"),
    })
}

/// The devnet's head as `/health` reports it.
fn health_head(admin: &str) -> Option<u64> {
    let base = admin.trim_end_matches("/admin");
    let addr = base.trim_start_matches("http://");
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let json = body.split("\r\n\r\n").nth(1)?;
    serde_json::from_str::<Value>(json.trim()).ok()?["head"].as_u64()
}

fn main() {
    self_check();
    let started = Instant::now();
    let tokens = env_u64("NIFTY_PEERS_TOKENS", 50_000);
    let seed = env_u64("NIFTY_PEERS_SEED", 7);
    let runs = env_u64("NIFTY_PEERS_RUNS", 3).max(1) as usize;
    let timeout = Duration::from_secs(env_u64("NIFTY_PEERS_TIMEOUT_SECS", 900));
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| manifest.join("target"));
    let out = std::env::var("NIFTY_PEERS_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| target.join("bench").join("peers.json"));
    let work = std::env::var("NIFTY_PEERS_WORK")
        .map(PathBuf::from)
        .unwrap_or_else(|_| target.join("bench").join("peers-work"));
    fs::create_dir_all(&work).unwrap();
    let machine = machine();

    let nifty = env!("CARGO_BIN_EXE_nifty").to_owned();
    let devnet = support::start(&nifty, tokens, seed, &[]);
    let chain = devnet.chain();
    let snapshot = chain.head() - CONFIRMATIONS;
    let truth = Truth::of(&chain, snapshot);
    let head_before = health_head(&devnet.admin);
    assert_eq!(
        head_before,
        Some(chain.head()),
        "the devnet's head differs from the chain generated from its parameters"
    );
    drop(chain);
    println!(
        "bench-peers: {} tokens (seed {seed}) at snapshot block {snapshot} (head {} minus {CONFIRMATIONS}), {runs} runs per client",
        pretty(truth.tokens.len() as f64),
        snapshot + CONFIRMATIONS
    );
    let setup = Setup {
        nifty,
        url: devnet.subgraph.clone(),
        snapshot,
        truth,
        runs,
        timeout,
        work: work.clone(),
        drivers: manifest.join("benches").join("peers"),
    };

    let rows = vec![
        bench_nifty(&setup),
        bench_subgrounds(&setup),
        bench_graph_client(&setup),
    ];
    let head_after = health_head(&devnet.admin);
    drop(devnet);

    let table = table(&rows);
    println!();
    println!(
        "{} tokens, snapshot block {snapshot}; tokens/s = distinct tokens of the snapshot returned / the client's own seconds to fetch them, median of {runs} run(s)",
        pretty(setup.truth.tokens.len() as f64)
    );
    print!("{table}");
    match (head_before, head_after) {
        (Some(a), Some(b)) if a == b => println!(
            "The devnet's chain did not change during the runs (head {a} before and after; it grows only through /admin/mine), so a client without a snapshot would have paged the same set."
        ),
        _ => println!(
            "The devnet's head moved during the runs ({head_before:?} → {head_after:?}): a client without a snapshot may have paged a different set."
        ),
    }
    let report = json!({
        "tokens": setup.truth.tokens.len(),
        "seed": seed,
        "snapshot_block": snapshot,
        "confirmations": CONFIRMATIONS,
        "runs": runs,
        "chain_static": head_before == head_after,
        "devnet_head": { "before": head_before, "after": head_after },
        "timeout_secs": timeout.as_secs(),
        "seconds_total": started.elapsed().as_secs_f64(),
        "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "machine": machine,
        "clients": rows.iter().map(ClientRow::json).collect::<Vec<_>>(),
        "table_markdown": table,
    });
    if let Some(dir) = out.parent() {
        fs::create_dir_all(dir).unwrap();
    }
    fs::write(&out, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("\nwritten to {}", out.display());

    let nifty_row = &rows[0];
    let nifty_ok = nifty_row
        .runs
        .iter()
        .all(|r| r.error.is_none() && r.delivery.full_and_unique() && r.seconds.is_some());
    if !nifty_ok {
        eprintln!(
            "bench-peers: nifty did not deliver the full, duplicate-free set: {}",
            nifty_row.note()
        );
        std::process::exit(1);
    }
}

/// Checks the bench's own arithmetic on a case worked by hand before trusting it with the
/// clients' rows (a bench target has no unit tests of its own).
fn self_check() {
    let f = |s: &str| -> Fields { [s.into(), "c".into(), "u".into(), "1".into()] };
    let truth = Truth {
        tokens: [("a", f("1")), ("b", f("2")), ("c", f("3"))]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    };
    let rows = vec![
        ("a".to_owned(), f("1")),
        ("a".to_owned(), f("1")),
        ("b".to_owned(), f("9")),
        ("z".to_owned(), f("0")),
    ];
    let d = check(&truth, rows);
    assert_eq!((d.rows, d.distinct, d.duplicates), (4, 3, 1), "{d:?}");
    assert_eq!(
        (d.missing, d.extra, d.wrong, d.delivered),
        (1, 1, 1, 2),
        "{d:?}"
    );
    assert!(!d.full_and_unique());
    assert!(check(&truth, truth.tokens.clone()).full_and_unique());
    let text = "npm warn EBADENGINE x\nloading\nError: connect ECONNREFUSED\nat foo\n";
    assert_eq!(
        meaningful_line(text).as_deref(),
        Some("Error: connect ECONNREFUSED")
    );
    assert_eq!(meaningful_line("a\nb\n\n").as_deref(), Some("b"));
    assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
    assert_eq!(pretty(1_234_567.4), "1,234,567");
}
