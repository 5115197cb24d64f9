//! The crash loop: `nifty run` over a devnet is killed with SIGKILL at random moments while
//! it scrapes, analyses and pins, and restarted each time. After every kill the store must
//! open and `nifty status --audit` must find every counter in step with its tree; the kill
//! is counted under the phase the store shows it landed in. After the loop the daemon
//! settles and its store must equal that of a clean, uninterrupted run over an identical
//! devnet (and the generator's own intent for every token), and the simulated cluster must
//! never have received a pin request for a CID after telling the daemon it was pinned.
//!
//! `make test` runs a short loop (a dozen kills); `NIFTY_SOAK=1` a long one (100 kills;
//! `NIFTY_CRASH_KILLS=N` sets the count). The kill moments come from a seeded RNG whose
//! seed is printed; `NIFTY_CRASH_SEED=S` replays a run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cid::Cid;
use nifty_state::{Contract, PinStatus, Position, Store, StoreOptions, Token, TokenKey};
use rand::{Rng, SeedableRng};
use serde_json::Value;

mod support {
    pub mod daemon;
    pub mod devnet;
}
use support::daemon::{Daemon, NIFTY};
use support::devnet::Devnet;

/// Chooses the long version.
const SOAK_ENV: &str = "NIFTY_SOAK";
/// Overrides the number of kills.
const KILLS_ENV: &str = "NIFTY_CRASH_KILLS";
/// Replays the kill moments of an earlier run.
const SEED_ENV: &str = "NIFTY_CRASH_SEED";
/// Kills of the short version: enough for several in each phase.
const SHORT_KILLS: usize = 12;
/// Kills of the soak.
const SOAK_KILLS: usize = 100;
/// Chain seed of both devnets.
const CHAIN_SEED: u64 = 21;
/// Confirmations of the source: the truth is the snapshot this far below the head.
const CONFIRMATIONS: u64 = 5;
/// The source's name in the config.
const SOURCE: &str = "dev";

/// The devnet's flags, the same for the clean and the crash run. Latencies set a floor
/// under each phase's length however fast the machine, so kills land in all three: the
/// subgraph's under the scrape (3,000 tokens in pages of 50 take at least 3 s), the
/// gateway's under the analysis (16 fetches in flight), the cluster's under the pin
/// requests (4 in flight), and the cluster's pin time (1.5 to 4.5 s per peer) gives the
/// pin phase a tail after the last analysis. Every failure the devnet injects is a pure
/// function of the CID or token, so the settled state is deterministic:
/// - `--cluster-error-rate` puts a fixed share of CIDs (chosen by hashing the CID) in
///   `pin_error` on their first attempt, exercising recover; they end pinned either way;
/// - `--gateway-slow-ms` far below the config's 1.5 s fetch timeout: `slow` tokens answer
///   late but always in time. Above it they would time out, and a timed-out fetch is
///   retried with backoff, so each would hold an analysis slot for several seconds: lives
///   shorter than that would never finish them, and whether one just made it would be a
///   race. Timeouts belong to the fault matrix;
/// - no request-level fault rates (`--error-rate`, `--cluster-fault-rate`,
///   `--gateway-error-rate`, stream cuts): those draw per request, and the fault matrix
///   covers them.
const DEVNET_FLAGS: &[&str] = &[
    "--latency-ms",
    "50",
    "--gateway-latency-ms",
    "40",
    "--gateway-slow-ms",
    "200",
    "--cluster-latency-ms",
    "8",
    "--cluster-queue-ms",
    "100",
    "--cluster-pin-ms",
    "3000",
    "--cluster-error-rate",
    "0.05",
];

/// Where the pipeline is, as the store shows it: the earliest stage with work left.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    /// The source's cursor has not passed its snapshot.
    Scrape,
    /// Scraped; tokens wait for analysis.
    Analyse,
    /// Analysed; pin requests wait in the outbox or pins are not yet confirmed.
    Pin,
    /// Nothing left.
    Settled,
}

const PHASES: [Phase; 4] = [Phase::Scrape, Phase::Analyse, Phase::Pin, Phase::Settled];

/// The phase a `nifty status --json` (or `/api/status`) report shows.
fn phase(s: &Value) -> Phase {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let source = s["sources"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == SOURCE));
    let scraped = source.is_some_and(|x| {
        matches!(
            (x["cursor"]["block"].as_u64(), x["snapshot"].as_u64()),
            (Some(c), Some(snap)) if c > snap
        )
    });
    if !scraped {
        return Phase::Scrape;
    }
    if n(&s["outbox"]["analyse"]) > 0 || n(&s["tokens_by_status"]["queued"]) > 0 {
        return Phase::Analyse;
    }
    let pending = ["wanted", "queued", "pinning", "retrying"]
        .iter()
        .any(|k| n(&s["pins_by_status"][k]) > 0);
    if n(&s["outbox"]["pin"]) > 0 || pending {
        return Phase::Pin;
    }
    Phase::Settled
}

/// A data dir and its config over one devnet.
struct Setup {
    _dir: tempfile::TempDir,
    config: PathBuf,
    data: PathBuf,
}

/// A config with every job ticking every second and the store as an operator runs it:
/// `sync_commits` on (the default, stated because the test helpers' configs turn it off
/// for speed; without it a crash may lose the last acknowledged commits, and a pin
/// confirmed in a lost commit would legitimately be asked for again).
fn setup(d: &Devnet) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let text = format!(
        r#"
data_dir = "{data}"
[store]
sync_commits = true
[http]
listen = "127.0.0.1:0"
admin_token_env = ""
[pinner]
retry_base_secs = 0
analyse_concurrency = 16
pin_concurrency = 4
[jobs.analyse]
schedule = "* * * * * *"
budget_secs = 5
[jobs.pin]
schedule = "* * * * * *"
budget_secs = 5
[jobs.follow]
schedule = "* * * * * *"
budget_secs = 5
[gateway]
url = "{gateway}"
arweave_url = "{arweave}"
timeout_ms = 1500
allow_hosts = ["127.0.0.1"]
[cluster]
url = "{cluster}"
timeout_ms = 2000
attempts = 2
[sources.{SOURCE}]
kind = "graph"
url = "{subgraph}"
confirmations = {CONFIRMATIONS}
page_size = 50
schedule = "* * * * * *"
budget_secs = 5
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

/// `nifty status --audit --json` on the data dir: the report, after checking that the
/// store opened and the audit found nothing wrong.
fn audited_status(s: &Setup, when: &str) -> Value {
    let out = Command::new(NIFTY)
        .arg("--config")
        .arg(&s.config)
        .args(["status", "--audit", "--json"])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{when}: `nifty status --audit` exited {:?}\nstdout: {stdout}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{when}: {e}: {stdout}"));
    assert_eq!(v["audit"]["clean"], true, "{when}: {v}");
    assert_eq!(v["audit"]["duplicate_outbox_items"], 0, "{when}: {v}");
    v
}

/// GET a devnet admin URL: the JSON body.
fn get_json(url: &str) -> Value {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async { reqwest::get(url).await.unwrap().json().await.unwrap() })
}

fn cluster_stats(d: &Devnet) -> Value {
    get_json(&d.cluster_stats_url())
}

/// Asserts that the cluster never got a pin request for a CID after saying it was pinned.
fn assert_no_post_after_pinned(stats: &Value, when: &str) {
    assert_eq!(
        stats["posts_after_pinned_seen"], 0,
        "{when}: CIDs requested again after the cluster had confirmed them pinned, e.g. {}",
        stats["posted_after_pinned"]
    );
}

/// A pin record without what legitimately differs between runs: its timestamps
/// (`created_ms`, `updated_ms`, `retry_at_ms`) and the token of `first_use`, which for a
/// CID many tokens share (a collection's metadata directory) is whichever of them
/// concurrent analysis reached first (checked to be one of the pin's users instead).
/// `attempts` counts committed requests, so a request repeated after a kill lost its
/// commit does not count twice.
#[derive(Debug, PartialEq)]
struct PinView {
    status: PinStatus,
    refs: u64,
    size: Option<u64>,
    attempts: u32,
    last_error: Option<String>,
    /// The role the CID was first asked for in.
    first_role: Option<String>,
}

/// Everything a settled store holds, except run records (which differ by nature) and the
/// timestamps named where they are left out.
#[derive(Debug)]
struct Snapshot {
    /// Token records by graph id (every field; none is a timestamp of ours).
    tokens: BTreeMap<String, Token>,
    /// Contracts by address.
    contracts: BTreeMap<String, Contract>,
    /// Pin records by CID.
    pins: BTreeMap<String, PinView>,
    /// The tokens each pin serves, by CID, as the `pin_users` index lists them.
    pin_users: BTreeMap<String, Vec<String>>,
    /// Every counter.
    counters: BTreeMap<String, u64>,
    /// The failures index: items per `stage.reason` (the time each failed left out).
    failures: BTreeMap<String, BTreeSet<Vec<u8>>>,
    /// Cursors: position, snapshot, head, end (`updated_ms` left out).
    cursors: BTreeMap<String, (Position, Option<u64>, Option<u64>, Option<u64>)>,
    /// Run records per outcome: not compared (a killed run is marked `interrupted` at the
    /// next start, and ticks differ anyway), but none may have failed or be left running.
    runs: BTreeMap<&'static str, u64>,
}

fn cid_string(bytes: &[u8]) -> String {
    Cid::try_from(bytes).unwrap().to_string()
}

/// Reads a settled store, checking on the way that nothing is duplicated: the audit is
/// clean, the outbox empty, every pin record is used by a token and every index entry
/// matches a token's resources. Token URIs of the devnet's web host start with `web`, the
/// one part of the chain that differs between two devnets (their port): it is replaced by
/// `<web>`.
fn snapshot(data: &Path, web: &str) -> Snapshot {
    let store = Store::open(data, &StoreOptions::default()).unwrap();
    let audit = store.audit().unwrap();
    assert!(audit.is_clean(), "{}: {audit:?}", data.display());
    let mut tokens = BTreeMap::new();
    let mut keys = Vec::new();
    let mut users_want: BTreeMap<Vec<u8>, Vec<String>> = BTreeMap::new();
    store
        .for_each_token(|k: TokenKey, mut t: Token| {
            if let Some(rest) = t.token_uri.as_deref().and_then(|u| u.strip_prefix(web)) {
                t.token_uri = Some(format!("<web>{rest}"));
            }
            for cid in &t.resources {
                users_want
                    .entry(cid.clone())
                    .or_default()
                    .push(k.graph_id());
            }
            keys.push(k);
            assert!(
                tokens.insert(k.graph_id(), t).is_none(),
                "token {} stored twice",
                k.graph_id()
            );
        })
        .unwrap();
    let mut contracts = BTreeMap::new();
    for k in &keys {
        if let Some(c) = store.contract(&k.contract).unwrap() {
            contracts.insert(k.contract.to_string(), c);
        }
    }
    let (mut pins, mut pin_users) = (BTreeMap::new(), BTreeMap::new());
    for (cid, mut want_users) in users_want {
        let name = cid_string(&cid);
        let p = store
            .pin(&cid)
            .unwrap()
            .unwrap_or_else(|| panic!("{name}: used by {want_users:?} but has no pin record"));
        if let Some((k, _)) = &p.first_use {
            assert!(
                want_users.contains(&k.graph_id()),
                "{name}: first asked for by {}, which does not use it",
                k.graph_id()
            );
        }
        pins.insert(
            name.clone(),
            PinView {
                status: p.status,
                refs: p.refs,
                size: p.size,
                attempts: p.attempts,
                last_error: p.last_error,
                first_role: p.first_use.map(|(_, role)| role),
            },
        );
        let users: Vec<String> = store
            .pin_users(&cid, usize::MAX)
            .unwrap()
            .iter()
            .map(TokenKey::graph_id)
            .collect();
        want_users.sort();
        let mut sorted = users.clone();
        sorted.sort();
        assert_eq!(sorted, want_users, "pin_users of {name}");
        pin_users.insert(name, users);
    }
    let counters = store.counters().unwrap();
    assert_eq!(
        counters.get("pins").copied().unwrap_or(0),
        pins.len() as u64,
        "pin records that no token uses"
    );
    let mut failures = BTreeMap::new();
    for name in counters.keys().filter_map(|n| n.strip_prefix("failures.")) {
        let (stage, reason) = name.split_once('.').unwrap();
        let (_, entries) = store
            .failure_entries(stage, reason, None, usize::MAX)
            .unwrap();
        failures.insert(
            name.to_owned(),
            entries.into_iter().map(|e| e.item).collect::<BTreeSet<_>>(),
        );
    }
    let cursors = store
        .cursors()
        .unwrap()
        .into_iter()
        .map(|(name, c)| (name, (c.position, c.snapshot, c.head, c.end)))
        .collect();
    let outbox: u64 = store.counts().unwrap().outbox.values().sum();
    assert_eq!(outbox, 0, "work left in the outbox of a settled store");
    let mut runs = BTreeMap::new();
    for (id, r) in store.runs(usize::MAX).unwrap() {
        assert!(
            !matches!(
                r.outcome,
                nifty_state::RunOutcome::Failed { .. } | nifty_state::RunOutcome::Running
            ),
            "{}: run {id} of {} ended {:?}",
            data.display(),
            r.job,
            r.outcome
        );
        *runs.entry(r.outcome.name()).or_default() += 1;
    }
    Snapshot {
        tokens,
        contracts,
        pins,
        pin_users,
        counters,
        failures,
        cursors,
        runs,
    }
}

/// Asserts two maps are equal, naming the first few keys that differ.
fn same<K: Ord + Debug, V: PartialEq + Debug>(
    what: &str,
    crash: &BTreeMap<K, V>,
    clean: &BTreeMap<K, V>,
) {
    let keys: BTreeSet<&K> = crash.keys().chain(clean.keys()).collect();
    let differ: Vec<String> = keys
        .into_iter()
        .filter(|k| crash.get(k) != clean.get(k))
        .take(5)
        .map(|k| {
            format!(
                "  {k:?}:\n    crash run {:?}\n    clean run {:?}",
                crash.get(k),
                clean.get(k)
            )
        })
        .collect();
    assert!(
        differ.is_empty(),
        "{what}: {} entries in the crash run, {} in the clean one; differing, e.g.\n{}",
        crash.len(),
        clean.len(),
        differ.join("\n")
    );
}

/// The generator's intent for every token of the snapshot: status, reason, CIDs. Its
/// `slow` tokens are left out: the generator expects them to time out, and here the devnet
/// answers them in time (see [`DEVNET_FLAGS`]); the clean run is their truth.
fn truth(d: &Devnet) -> BTreeMap<String, (String, Option<String>, BTreeSet<String>)> {
    let chain = d.chain();
    chain
        .tokens_at(chain.head() - CONFIRMATIONS)
        .iter()
        .filter(|t| chain.expected(t, true).reason != Some("timeout"))
        .map(|t| {
            let e = chain.expected(t, true);
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

fn outcomes(s: &Snapshot) -> BTreeMap<String, (String, Option<String>, BTreeSet<String>)> {
    s.tokens
        .iter()
        .map(|(id, t)| {
            (
                id.clone(),
                (
                    t.status.name().to_owned(),
                    t.reason.clone(),
                    t.resources.iter().map(|c| cid_string(c)).collect(),
                ),
            )
        })
        .collect()
}

/// What the clean run took: when it left each phase, and how far the next phase's work
/// was already done when it got there (the passes overlap).
#[derive(Debug, Default)]
struct Timeline {
    /// End of [`Phase::Scrape`], [`Phase::Analyse`], [`Phase::Pin`], in seconds after the
    /// daemon was ready.
    ends: [f64; 3],
    /// [`progress`] of each phase when the run entered it.
    entered_at: [f64; 3],
}

/// The totals a phase's progress is measured against.
#[derive(Clone, Copy, Debug)]
struct Totals {
    /// Tokens in the snapshot.
    tokens: u64,
    /// Distinct CIDs they use.
    cids: u64,
}

/// How far a status report is through phase `p`'s work, from 0 to 1: tokens stored,
/// tokens analysed, CIDs settled (pinned or failed).
fn progress(s: &Value, p: Phase, totals: Totals) -> f64 {
    let n = |v: &Value| v.as_u64().unwrap_or(0) as f64;
    let tokens = n(&s["tokens"]);
    let f = match p {
        Phase::Scrape => tokens / totals.tokens as f64,
        Phase::Analyse => (tokens - n(&s["tokens_by_status"]["queued"])) / totals.tokens as f64,
        Phase::Pin => {
            (n(&s["pins_by_status"]["pinned"]) + n(&s["pins_by_status"]["failed"]))
                / totals.cids as f64
        }
        Phase::Settled => 1.0,
    };
    f.clamp(0.0, 1.0)
}

/// Runs the daemon until it settles, watching `/api/status`: when each phase ended.
fn clean_run(s: &Setup, totals: Totals, within: Duration) -> Timeline {
    let mut d = Daemon::start(&s.config);
    let t0 = Instant::now();
    let mut timeline = Timeline::default();
    let mut seen = Phase::Scrape;
    loop {
        let st = d.json("/api/status");
        let p = phase(&st);
        let now = t0.elapsed().as_secs_f64();
        while seen < p {
            timeline.ends[seen as usize] = now;
            seen = PHASES[seen as usize + 1];
            if seen != Phase::Settled {
                timeline.entered_at[seen as usize] = progress(&st, seen, totals);
            }
        }
        if p == Phase::Settled {
            break;
        }
        assert!(
            t0.elapsed() < within,
            "the clean run did not settle within {within:?}: {st}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, _) = d.stop("TERM");
    assert_eq!(code, Some(0), "the clean run's daemon did not stop cleanly");
    timeline
}

/// The longest life: long enough to finish what is left of a phase, short enough not to
/// leap over the pin phase, which lasts far longer (pin requests go out 4 at a time, and a
/// pin takes 1.5 to 4.5 s on the simulated cluster, twice for a `pin_error` first attempt).
const MAX_LIFE: Duration = Duration::from_secs(8);
/// The shortest: a kill while the daemon is still starting its jobs.
const MIN_LIFE: Duration = Duration::from_millis(50);
/// The least share of a phase the pacer assumes is left (see [`Pacer::next`]).
const REST_FLOOR: f64 = 0.1;
/// The aimed life before a phase has told how fast it moves.
const FIRST_LIFE_SECS: f64 = 1.0;
/// How much longer than its estimate a life meant to finish a phase is.
const FINISH_MARGIN: f64 = 1.5;

/// Chooses how long each life of the daemon lasts, so that the kills spread evenly over
/// the three phases. A life's progress is not proportional to its length (every restart
/// repeats the work in flight and waits for the first cron tick), so the pacer learns, per
/// phase, the progress a second of life brings (from every life that began and ended in
/// that phase) and aims each life at an equal share of what is left of the phase, given
/// the kills left and the phases still ahead. The moment itself is random: the aimed
/// length is scaled by a uniform draw in [0.3, 1.7). Half an even share of the kills is
/// kept for each later phase: once the current phase has used the rest, the next life is
/// aimed to finish it.
struct Pacer {
    /// The seeded source of the kill moments.
    rng: rand::rngs::StdRng,
    /// Kills in all.
    kills: usize,
    /// Progress per second of life, per phase, once measured.
    rate: [Option<f64>; 3],
    /// Phase and progress after the last kill.
    last: (Phase, f64),
}

impl Pacer {
    fn new(seed: u64, kills: usize) -> Self {
        Pacer {
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            kills,
            rate: [None; 3],
            last: (Phase::Scrape, 0.0),
        }
    }

    /// The length of the next life, with `done` kills behind.
    fn next(&mut self, done: usize) -> Duration {
        let (p, f) = self.last;
        let secs = match (p, self.rate.get(p as usize).copied().flatten()) {
            (Phase::Settled, _) => self.rng.gen_range(0.05..1.0),
            (_, None) => FIRST_LIFE_SECS * self.rng.gen_range(0.3..1.7),
            (_, Some(rate)) => {
                let left = (self.kills - done) as f64;
                // Progress counts tokens or CIDs, not what a phase's end waits for (the
                // last short page, the last pins): aim as if a tenth were left at least,
                // so that a tail that seems to stall gets lives long enough to finish it.
                let rest = (1.0 - f).max(REST_FLOOR);
                let later = (Phase::Pin as usize - p as usize) as f64;
                let reserved = later * (self.kills as f64 / 6.0).max(1.0);
                let here = (left * rest / (rest + later)).min(left - reserved);
                if here > 1.0 {
                    rest / here / rate * self.rng.gen_range(0.3..1.7)
                } else {
                    rest / rate * FINISH_MARGIN * self.rng.gen_range(1.0..1.5)
                }
            }
        };
        Duration::from_secs_f64(secs).clamp(MIN_LIFE, MAX_LIFE)
    }

    /// Learns from a life of `lived` that ended in phase `p` at progress `f`.
    fn observe(&mut self, lived: Duration, p: Phase, f: f64) {
        let (was, f0) = self.last;
        if p == was && p != Phase::Settled {
            let seen = (f - f0).max(0.0) / lived.as_secs_f64();
            let r = &mut self.rate[p as usize];
            // Halving at worst: a life that moved nothing says "longer", not "forever".
            let old = r.unwrap_or(seen);
            *r = Some((0.5 * old + 0.5 * seen).max(old / 2.0).max(1e-4));
        }
        self.last = (p, f);
    }
}

#[test]
fn sigkill_at_random_moments_loses_and_duplicates_nothing_and_never_repins() {
    let soak = std::env::var(SOAK_ENV).is_ok_and(|v| v == "1");
    let kills: usize = std::env::var(KILLS_ENV)
        .ok()
        .filter(|v| !v.is_empty())
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{KILLS_ENV}={v:?}")))
        .unwrap_or(if soak { SOAK_KILLS } else { SHORT_KILLS });
    let seed: u64 = std::env::var(SEED_ENV)
        .ok()
        .filter(|v| !v.is_empty())
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{SEED_ENV}={v:?}")))
        .unwrap_or_else(|| rand::thread_rng().r#gen());
    // Enough tokens that each phase lasts long enough for its share of the kills.
    let tokens = (kills as u64 * 150).max(3_000);
    eprintln!("crash loop: {kills} kills, {tokens} tokens, replay with {SEED_ENV}={seed}");
    let started = Instant::now();
    let settle_within = Duration::from_secs(60 + tokens / 50);

    // The clean run, on its own devnet so the cluster's counts are its own.
    let clean_devnet = support::devnet::start(NIFTY, tokens, CHAIN_SEED, DEVNET_FLAGS);
    let intent = truth(&clean_devnet);
    let chain = clean_devnet.chain();
    let totals = Totals {
        tokens: chain.tokens_at(chain.head() - CONFIRMATIONS).len() as u64,
        // Without the slow tokens' CIDs: close enough to measure progress by.
        cids: intent
            .values()
            .flat_map(|w| &w.2)
            .collect::<BTreeSet<_>>()
            .len() as u64,
    };
    let clean = setup(&clean_devnet);
    let timeline = clean_run(&clean, totals, settle_within);
    let clean_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "clean run: phases end at {:?} s, entered at {:?} done",
        timeline.ends, timeline.entered_at
    );

    // The crash loop, over an identical devnet.
    let devnet = support::devnet::start(NIFTY, tokens, CHAIN_SEED, DEVNET_FLAGS);
    let crash = setup(&devnet);
    let mut pacer = Pacer::new(seed, kills);
    let mut per_phase: BTreeMap<Phase, usize> = BTreeMap::new();
    let mut lived = Vec::with_capacity(kills);
    let loop_started = Instant::now();
    for k in 1..=kills {
        let when = format!("kill {k} of {kills} ({SEED_ENV}={seed})");
        let life = pacer.next(k - 1);
        let mut d = Daemon::start(&crash.config);
        std::thread::sleep(life);
        let (code, _) = d.stop("KILL");
        assert_eq!(
            code, None,
            "{when}: the daemon exited by itself before the kill"
        );
        drop(d);
        let st = audited_status(&crash, &when);
        let p = phase(&st);
        let f = progress(&st, p, totals);
        pacer.observe(life, p, f);
        *per_phase.entry(p).or_default() += 1;
        lived.push(life.as_secs_f64());
        eprintln!(
            "kill {k}: {:.2} s after ready, in {p:?} at {:.0}% (tokens {}, analysed {}, CIDs {}, pending {})",
            life.as_secs_f64(),
            f * 100.0,
            st["tokens"],
            st["tokens"].as_u64().unwrap_or(0)
                - st["tokens_by_status"]["queued"].as_u64().unwrap_or(0),
            st["pins"],
            ["wanted", "queued", "pinning", "retrying"]
                .iter()
                .filter_map(|k| st["pins_by_status"][k].as_u64())
                .sum::<u64>(),
        );
        assert_no_post_after_pinned(&cluster_stats(&devnet), &when);
    }
    let loop_secs = loop_started.elapsed().as_secs_f64();

    // Restart, settle, compare.
    let mut d = Daemon::start(&crash.config);
    d.wait_settled(settle_within);
    let (code, _) = d.stop("TERM");
    assert_eq!(code, Some(0), "the last daemon did not stop cleanly");
    drop(d);
    audited_status(&crash, "after the loop");
    let got = snapshot(&crash.data, &devnet.web);
    let want = snapshot(&clean.data, &clean_devnet.web);
    same("tokens", &got.tokens, &want.tokens);
    same("contracts", &got.contracts, &want.contracts);
    same("pins", &got.pins, &want.pins);
    same("pin_users", &got.pin_users, &want.pin_users);
    same("counters", &got.counters, &want.counters);
    same("failures index", &got.failures, &want.failures);
    same("cursors", &got.cursors, &want.cursors);
    // And both equal the generator's intent, token by token.
    assert_eq!(
        got.tokens.len() as u64,
        totals.tokens,
        "tokens of the snapshot"
    );
    let mut outcomes = outcomes(&got);
    outcomes.retain(|id, _| intent.contains_key(id));
    same("outcomes vs the generator's intent", &outcomes, &intent);
    let kinds: BTreeSet<&str> = intent.values().map(|w| w.0.as_str()).collect();
    assert!(kinds.len() >= 5, "the chain lacks outcome kinds: {kinds:?}");

    // The cluster: each CID tracked once, none asked for after it was confirmed pinned.
    let clean_stats = cluster_stats(&clean_devnet);
    let stats = cluster_stats(&devnet);
    assert_no_post_after_pinned(&clean_stats, "the clean run");
    assert_no_post_after_pinned(&stats, "after the loop");
    let cids = want.pins.len() as u64;
    assert_eq!(clean_stats["pins"], cids, "{clean_stats}");
    assert_eq!(
        clean_stats["pin_requests"], cids,
        "the clean run re-requested: {clean_stats}"
    );
    assert_eq!(stats["pins"], cids, "{stats}");
    let posts = stats["pin_requests"].as_u64().unwrap();
    let repinned = stats["repinned"].as_array().unwrap().len();

    let n = |p: Phase| per_phase.get(&p).copied().unwrap_or(0);
    eprintln!(
        "crash loop ({SEED_ENV}={seed}): {kills} kills in {loop_secs:.1} s (lives {:.2}..{:.2} s): \
         scrape {}, analyse {}, pin/follow {}, settled {}; {cids} CIDs, {posts} POSTs \
         ({} re-requests over {repinned} CIDs before confirmation, 0 after), {} recovers; \
         runs {:?}; clean run {clean_secs:.1} s, total {:.1} s",
        lived.iter().copied().fold(f64::INFINITY, f64::min),
        lived.iter().copied().fold(0.0, f64::max),
        n(Phase::Scrape),
        n(Phase::Analyse),
        n(Phase::Pin),
        n(Phase::Settled),
        posts - cids,
        stats["recovers"],
        got.runs,
        started.elapsed().as_secs_f64(),
    );
    // Every phase got kills: at least one in the short loop, a tenth of them in the soak.
    let least = if soak { kills / 10 } else { 1 };
    for p in [Phase::Scrape, Phase::Analyse, Phase::Pin] {
        assert!(
            n(p) >= least,
            "{} kills in {p:?}, wanted at least {least}: {per_phase:?} ({SEED_ENV}={seed})",
            n(p)
        );
    }
}
