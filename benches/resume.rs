//! Resume after `kill -9`: how soon a daemon killed mid-scrape is back, and checked exact.
//!
//! Setup: `nifty devnet --tokens N` (default 1,000,000; NIFTY_BENCH_RESUME_TOKENS) and one
//! `nifty run` over a fresh data dir with the operator's defaults where they matter: one
//! graph source (confirmations 20, pages of 1,000, `run_at_start`, so a started daemon
//! scrapes at once), `store.sync_commits = true` (every acknowledged commit is durable), and
//! the API on a fixed loopback port, so a restarted daemon answers on the same address. The
//! analysis, pin and follow-up jobs are off: this measures the scraper's resume, and the
//! final check compares the store with the chain.
//!
//! Each of K kills (default 5; NIFTY_BENCH_RESUME_KILLS) lands at a random moment mid-scrape:
//! the kill points are spread over the chain (kill i waits until the daemon reports more
//! than (i + u) / (K + 1) of the tokens stored, u uniform in 0.25..0.75, then a further
//! 0-40 ms), so resumes happen on stores from about a tenth to about four fifths full.
//! The daemon gets SIGKILL, is reaped, and is started again at once. Measured from just
//! before the restart's spawn, on the monotonic clock:
//!
//! - `resume_api`: until `GET /api/status` first answers 200, polled every 2 ms on fresh
//!   connections (refused until the daemon listens). Covers exec, config, the store's open
//!   with sled's recovery of the log the killed process left, and the HTTP server's start.
//! - `resume_commit`: until `/api/status` (polled every 5 ms) shows the source's cursor
//!   stamped (`updated_ms`) at or after the restart's spawn by the wall clock: the restarted
//!   daemon's first page commit (snapshot query, the next page after the recovered cursor,
//!   its commit with fsync). The poll adds at most 5 ms and one request.
//!
//! Every restart must report at least the tokens the killed daemon last reported (nothing
//! acknowledged is lost). After the last kill the daemon runs to the end of the snapshot and
//! stops with SIGTERM; the store must then pass its audit and hold exactly the chain's
//! tokens at the snapshot (every key, each with its mint block), so the figures are for
//! resumes that are correct. Medians over the K kills; the daemon's peak RSS before each
//! kill goes to results.json.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nifty_state::{Store, StoreOptions, TokenKey};
use serde_json::Value;

#[path = "../tests/support/devnet.rs"]
mod support;

#[path = "support/figures.rs"]
mod figures;
#[path = "support/interrupt.rs"]
mod interrupt;

use figures::{env_or, median, pretty};

const NIFTY: &str = env!("CARGO_BIN_EXE_nifty");
/// The source's name in the config.
const SOURCE: &str = "dev";
/// The source's confirmations (the config default).
const CONFIRMATIONS: u64 = 20;
/// Longest wait for anything the daemon should do within seconds.
const PATIENCE: Duration = Duration::from_secs(120);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// xorshift64*: the kill points, from a seed printed so a run can be repeated.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Blocking GETs of the daemon's API on fresh connections.
struct Api {
    url: String,
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Api {
    fn new(port: u16) -> Api {
        Api {
            url: format!("http://127.0.0.1:{port}/api/status"),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            // No pooled connections: each poll asks whoever listens now.
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        }
    }

    /// `/api/status`, or `None` while nothing answers 200.
    fn status(&self) -> Option<Value> {
        self.runtime.block_on(async {
            let r = self.client.get(&self.url).send().await.ok()?;
            if r.status().as_u16() != 200 {
                return None;
            }
            r.json::<Value>().await.ok()
        })
    }
}

/// The source's row of a status.
fn source(s: &Value) -> &Value {
    s["sources"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == SOURCE))
        .unwrap_or(&Value::Null)
}

/// Whether the source's cursor is past its snapshot: the run has nothing left.
fn scraped(s: &Value) -> bool {
    let src = source(s);
    match (src["cursor"]["block"].as_u64(), src["snapshot"].as_u64()) {
        (Some(c), Some(snap)) => c > snap,
        _ => false,
    }
}

fn tokens(s: &Value) -> u64 {
    s["tokens"].as_u64().unwrap_or(0)
}

/// A port free right now on loopback, for the daemon to listen on across restarts.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The daemon's peak resident memory so far (VmHWM), in MB.
fn peak_rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|l| l.split_whitespace().next())
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb * 1024.0 / 1e6)
}

/// The last lines of a daemon's log, for failure messages.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn spawn(config: &Path, log: PathBuf) -> Daemon {
        let err = std::fs::File::create(&log).unwrap();
        let child = Command::new(NIFTY)
            .arg("--config")
            .arg(config)
            .arg("run")
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap();
        Daemon { child, log }
    }

    /// Panics with the log's tail if the process has exited.
    fn check_alive(&mut self, doing: &str) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "nifty run exited ({status}) while {doing}; its log ({}):\n{}",
                self.log.display(),
                tail(&self.log)
            );
        }
    }

    /// Polls `/api/status` every `every` until `done` holds; returns that status.
    fn wait(
        &mut self,
        api: &Api,
        every: Duration,
        within: Duration,
        doing: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        let mut last = None;
        loop {
            if let Some(s) = api.status() {
                if done(&s) {
                    return s;
                }
                last = Some(s);
            } else {
                self.check_alive(doing);
            }
            assert!(
                Instant::now() < deadline,
                "not done {doing} within {within:?}; last status: {}",
                last.map_or("none".to_owned(), |s| s.to_string())
            );
            std::thread::sleep(every);
        }
    }
}

impl Drop for Daemon {
    /// A failed bench leaves no daemon behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one kill and restart measured.
struct Resume {
    tokens_at_kill: u64,
    api_ms: f64,
    commit_ms: f64,
    rss_before_kill_mb: f64,
}

fn main() {
    let n = env_or("NIFTY_BENCH_RESUME_TOKENS", 1_000_000).max(1_000);
    let kills = env_or("NIFTY_BENCH_RESUME_KILLS", 5).max(1) as usize;
    let seed = env_or(
        "NIFTY_BENCH_RESUME_SEED",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    ) | 1;
    let started = Instant::now();
    let devnet = support::start(NIFTY, n, 7, &[]);
    let dir = tempfile::tempdir().unwrap();
    interrupt::Doomed::watch().add(dir.path());
    let data = dir.path().join("data");
    let port = free_port();
    let config = dir.path().join("nifty.toml");
    std::fs::write(
        &config,
        format!(
            r#"data_dir = "{data}"
[store]
sync_commits = true
[http]
listen = "127.0.0.1:{port}"
[jobs]
run_at_start = true
[jobs.analyse]
enabled = false
[jobs.pin]
enabled = false
[jobs.follow]
enabled = false
[sources.{SOURCE}]
kind = "graph"
url = "{url}"
confirmations = {CONFIRMATIONS}
"#,
            data = data.display(),
            url = devnet.subgraph,
        ),
    )
    .unwrap();
    let api = Api::new(port);
    let log = |i: usize| dir.path().join(format!("daemon-{i}.log"));

    // Kill points: one in each of K equal slots of the chain, at a random place in the
    // middle half of its slot.
    let mut rng = Rng(seed);
    let points: Vec<u64> = (0..kills)
        .map(|i| ((i as f64 + 0.25 + 0.5 * rng.unit()) / (kills as f64 + 1.0) * n as f64) as u64)
        .collect();
    println!(
        "resume after kill -9: {} tokens, {kills} kills at {:?} tokens stored, seed {seed}",
        pretty(n as f64),
        points
    );

    let mut daemon = Daemon::spawn(&config, log(0));
    let mut resumes = vec![];
    for (i, point) in points.iter().enumerate() {
        let before = daemon.wait(
            &api,
            Duration::from_millis(20),
            PATIENCE * 10,
            &format!("scraping to {point} tokens"),
            |s| tokens(s) >= *point || scraped(s),
        );
        assert!(
            !scraped(&before),
            "the scrape finished before kill {} at {point} tokens (raise NIFTY_BENCH_RESUME_TOKENS): {before}",
            i + 1
        );
        std::thread::sleep(Duration::from_millis((rng.unit() * 40.0) as u64));
        let rss = peak_rss_mb(daemon.child.id());
        daemon.child.kill().unwrap();
        daemon.child.wait().unwrap();

        let spawned_ms = now_ms();
        let t0 = Instant::now();
        daemon = Daemon::spawn(&config, log(i + 1));
        let first = daemon.wait(
            &api,
            Duration::from_millis(2),
            PATIENCE,
            "starting after the kill",
            |_| true,
        );
        let api_ms = t0.elapsed().as_secs_f64() * 1e3;
        assert!(
            tokens(&first) >= tokens(&before),
            "kill {}: the daemon reported {} tokens before the kill and {} after: acknowledged commits were lost",
            i + 1,
            tokens(&before),
            tokens(&first)
        );
        daemon.wait(
            &api,
            Duration::from_millis(5),
            PATIENCE,
            "committing after the kill",
            |s| {
                source(s)["updated_ms"]
                    .as_u64()
                    .is_some_and(|t| t >= spawned_ms)
            },
        );
        let commit_ms = t0.elapsed().as_secs_f64() * 1e3;
        println!(
            "  kill {}: at {} tokens; /api/status after {api_ms:.0} ms, first commit after {commit_ms:.0} ms (peak RSS {rss:.0} MB)",
            i + 1,
            pretty(tokens(&before) as f64)
        );
        resumes.push(Resume {
            tokens_at_kill: tokens(&before),
            api_ms,
            commit_ms,
            rss_before_kill_mb: rss,
        });
    }

    let end = daemon.wait(
        &api,
        Duration::from_millis(100),
        PATIENCE * 10,
        "finishing the scrape",
        scraped,
    );
    let pid = daemon.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let exit = daemon.child.wait().unwrap();
    assert!(
        exit.success(),
        "nifty run exited with {exit} on SIGTERM:\n{}",
        tail(&daemon.log)
    );

    // The store against the chain: audit clean, exactly the snapshot's tokens.
    let store = Store::open(&data, &StoreOptions::default()).unwrap();
    let audit = store.audit().unwrap();
    assert!(audit.is_clean(), "audit: {audit:?}");
    let snapshot = store
        .cursor(SOURCE)
        .unwrap()
        .and_then(|c| c.snapshot)
        .expect("the source's cursor has a snapshot");
    let chain = devnet.chain();
    let mut want: Vec<([u8; TokenKey::LEN], u64)> = chain
        .tokens_at(snapshot)
        .iter()
        .map(|t| (t.key.encode(), t.block))
        .collect();
    want.sort_unstable();
    let mut got = Vec::with_capacity(want.len());
    store
        .for_each_token(|k, t| got.push((k.encode(), t.mint_block)))
        .unwrap();
    assert_eq!(
        got.len(),
        want.len(),
        "stored {} tokens, the chain has {} at snapshot {snapshot}",
        got.len(),
        want.len()
    );
    if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
        panic!(
            "the store differs from the chain at key #{i}: stored {:?}, expected {:?}",
            got[i], want[i]
        );
    }
    assert_eq!(tokens(&end), want.len() as u64, "status counter vs chain");
    drop(store);

    let api_ms: Vec<f64> = resumes.iter().map(|r| r.api_ms).collect();
    let commit_ms: Vec<f64> = resumes.iter().map(|r| r.commit_ms).collect();
    let rss: Vec<f64> = resumes.iter().map(|r| r.rss_before_kill_mb).collect();
    println!(
        "  median of {kills}: /api/status answers {:.0} ms, first new commit {:.0} ms after the restart; \
         store exact: {} tokens, audit clean; {:.0} s in all",
        median(&api_ms),
        median(&commit_ms),
        pretty(want.len() as f64),
        started.elapsed().as_secs_f64()
    );
    let mut part = figures::Part::new("resume");
    let context = format!("{kills} kills mid-scrape of {} tokens", pretty(n as f64));
    let mut extra: Vec<(String, f64)> = vec![("daemon_peak_rss_mb".to_owned(), median(&rss))];
    for (i, r) in resumes.iter().enumerate() {
        extra.push((
            format!("kill_{}_tokens_stored", i + 1),
            r.tokens_at_kill as f64,
        ));
    }
    let extra: Vec<(&str, f64)> = extra.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    part.record_with("resume_api", &api_ms, &context, &extra);
    part.record_with(
        "resume_commit",
        &commit_ms,
        &context,
        &[("tokens_checked", want.len() as f64)],
    );
}
