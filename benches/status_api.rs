//! `/api/status` on a big store: its latency must not grow with the tokens stored.
//!
//! Fill: N tokens (default 10,000,000; NIFTY_BENCH_STATUS_TOKENS) go into a fresh store in
//! a temp dir through nifty_state's public API, in this process, on one thread: pages of
//! 1,000 (the graph source's page size, so each page's analysis outbox item has the size a
//! daemon's has) committed with `sync_commits = false`, 100 mints a block, 64 contracts of
//! collections of 10,000, URIs of every kind. Every 7th page is analysed at once
//! (`record_analyses`, acking its outbox item): about 6% of those tokens fail (no URI, bad
//! URI, fetch and parse failures with reasons), the rest are parsed with a collection's
//! metadata folder CID and, for half, an image CID of their own; the pins they create are
//! then mostly pinned (linking tokens), some queued, some failed, a few left wanted. Plus
//! a few hundred run records and a backfill job's cursors. So `/api/status` has real
//! counts of every kind, and 86% of the tokens wait in the analysis queue, as during a big
//! backfill. Reported: tokens/s of the whole fill, and bytes per token on disk (sled's
//! `size_on_disk`, what status reports).
//!
//! Then `nifty run` over that data dir with no job enabled (the API alone) is started R
//! times (default 3; NIFTY_BENCH_STATUS_RUNS). Each start measures: exec until its ready
//! line (the store opened, the API listening); the first `GET /api/status` (a new
//! connection, sled's cache cold; the OS page cache is warm from the fill); then Q
//! sequential requests on one keep-alive connection (default 1,000;
//! NIFTY_BENCH_STATUS_REQUESTS), whose p50 and p99 are that start's figures. Every answer's
//! token count is checked against N. The same is done once on a store of N/100 tokens
//! filled the same way: if status read anything that grows with the tokens, the two p50s
//! would differ by far more than noise.
//!
//! Disk: the big store takes about 1 kB a token (10.4 GB at 10M). The bench checks the
//! free space first and removes its temp dirs when done, failed or interrupted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, Instant};

use nifty_state::{
    Address, AnalysisRecord, Contract, Cursor, OutboxKey, Page, PinStatus, PinUpdate, Position,
    Queue, Resource, RunOutcome, RunRecord, Store, StoreOptions, Token, TokenId, TokenKey,
    TokenStatus, WorkItem,
};
use primitive_types::U256;

mod support {
    #[path = "../../tests/support/daemon.rs"]
    pub mod daemon;
    #[path = "../../tests/support/devnet.rs"]
    pub mod devnet;
}

#[path = "support/figures.rs"]
mod figures;
#[path = "support/interrupt.rs"]
mod interrupt;

use figures::{env_or, median, pretty, quantile};
use support::daemon::{Daemon, config};

/// Tokens a page: the graph source's default.
const PAGE: u64 = 1_000;
/// Every this many pages is analysed as it is committed: 1 in 7, so a collection of 10
/// pages has one or two analysed, and its metadata folder pin is shared.
const ANALYSE_EVERY: u64 = 7;
/// Mints a block.
const PER_BLOCK: u64 = 100;
/// Tokens of one collection (one contract's run of ids, one metadata folder).
const COLLECTION: u64 = 10_000;
/// Distinct contracts the collections cycle through.
const CONTRACTS: u64 = 64;
/// The cursor the pages advance; it is not a configured source of the daemon, so status
/// lists it as a cursor of its own, as it does backfill partitions.
const CURSOR: &str = "mainnet";
/// Disk a token takes, for the free-space check: 1,040 bytes were measured at 10M tokens
/// (1,100 at 1M), and sled's segments add a little while the fill runs.
const BYTES_PER_TOKEN_BUDGET: u64 = 1_250;
/// The clock the records carry.
const NOW_MS: u64 = 1_750_000_000_000;

/// A deterministic hash of `n` (splitmix64), for every per-token choice.
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn contract_of(collection: u64) -> Address {
    let mut a = [0u8; 20];
    a[0] = 0xc0;
    a[12..].copy_from_slice(&(collection % CONTRACTS).to_be_bytes());
    Address(a)
}

/// A CIDv1 (raw, sha2-256) of 32 bytes derived from `seed`, in binary form.
fn cid(seed: u64) -> Vec<u8> {
    let mut c = vec![0x01, 0x55, 0x12, 0x20];
    for i in 0..4 {
        c.extend_from_slice(&mix(seed ^ (i << 56)).to_be_bytes());
    }
    c
}

/// What a token's URI looks like, by share of tokens.
#[derive(Clone, Copy, PartialEq)]
enum UriKind {
    IpfsFolder,
    PathGateway,
    Data,
    Arweave,
    Web,
    Empty,
    Malformed,
}

fn uri_kind(n: u64) -> UriKind {
    match mix(n) % 100 {
        0..=69 => UriKind::IpfsFolder,
        70..=79 => UriKind::PathGateway,
        80..=87 => UriKind::Data,
        88..=92 => UriKind::Arweave,
        93..=96 => UriKind::Web,
        97..=98 => UriKind::Empty,
        _ => UriKind::Malformed,
    }
}

fn token_uri(n: u64, collection: u64) -> Option<String> {
    let folder = format!("bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oc{collection:08x}");
    match uri_kind(n) {
        UriKind::IpfsFolder => Some(format!("ipfs://{folder}/{n}.json")),
        UriKind::PathGateway => Some(format!("https://ipfs.io/ipfs/{folder}/{n}")),
        UriKind::Data => Some(format!(
            "data:application/json;base64,eyJuYW1lIjoiVG9rZW4gI{n:x}In0="
        )),
        UriKind::Arweave => Some(format!("ar://{:043x}", mix(n))),
        UriKind::Web => Some(format!(
            "https://api.collection{collection}.example/meta/{n}"
        )),
        UriKind::Empty => None,
        UriKind::Malformed => Some(format!("ipfs://not-a-cid-{n}")),
    }
}

/// One page of freshly scraped tokens and the contracts it is first to see.
fn page(p: u64) -> (Vec<(TokenKey, Token)>, Vec<(Address, Contract)>) {
    let mut tokens = Vec::with_capacity(PAGE as usize);
    let mut contracts = vec![];
    for n in p * PAGE..(p + 1) * PAGE {
        let collection = n / COLLECTION;
        let key = TokenKey {
            contract: contract_of(collection),
            token_id: TokenId(U256::from(n)),
        };
        if n % COLLECTION == 0 && collection < CONTRACTS {
            contracts.push((
                key.contract,
                Contract {
                    name: Some(format!("Collection {collection}")),
                    symbol: Some(format!("C{collection}")),
                    supports_metadata: true,
                },
            ));
        }
        let block = n / PER_BLOCK;
        let mut t = Token::scraped(CURSOR, &key, token_uri(n, collection), block);
        t.mint_time = 1_600_000_000 + block * 12;
        t.block_hash = Some([(block % 251) as u8; 32]);
        t.owner = Some(Address([(mix(n) % 200) as u8; 20]));
        tokens.push((key, t));
    }
    (tokens, contracts)
}

/// The analyses of a page's tokens, as the pinner would record them.
fn analyses(tokens: &[(TokenKey, Token)], first: u64) -> Vec<AnalysisRecord> {
    tokens
        .iter()
        .enumerate()
        .map(|(i, (key, _))| {
            let n = first + i as u64;
            let fail = |status, reason: &str| AnalysisRecord {
                key: *key,
                status,
                reason: Some(reason.to_owned()),
                resources: vec![],
            };
            match (uri_kind(n), mix(n ^ 0xa11) % 100) {
                (UriKind::Empty, _) => fail(TokenStatus::NoUri, "empty"),
                (UriKind::Malformed, _) => fail(TokenStatus::UriParseFailed, "bad_cid"),
                (_, 0..=1) => fail(TokenStatus::ContentFetchFailed, "http_404"),
                (_, 2) => fail(TokenStatus::ContentFetchFailed, "timeout"),
                (_, 3) => fail(TokenStatus::ContentParseFailed, "invalid_json"),
                (_, pick) => {
                    let mut resources = vec![Resource {
                        cid: cid(n / COLLECTION),
                        role: "metadata".to_owned(),
                    }];
                    if pick % 2 == 0 {
                        resources.push(Resource {
                            cid: cid(n | 1 << 63),
                            role: "image".to_owned(),
                        });
                    }
                    AnalysisRecord {
                        key: *key,
                        status: TokenStatus::Parsed,
                        reason: None,
                        resources,
                    }
                }
            }
        })
        .collect()
}

/// What happens to the pins a page's analysis created.
fn pin_updates(items: &[(OutboxKey, WorkItem)]) -> (Vec<PinUpdate>, Vec<OutboxKey>) {
    let mut updates = vec![];
    let mut handled = vec![];
    for (key, item) in items {
        let WorkItem::Pin(c) = item else { continue };
        let h = c.iter().fold(0u64, |h, b| mix(h ^ u64::from(*b)));
        let (status, error) = match h % 100 {
            0..=84 => (PinStatus::Pinned, None),
            85..=92 => (PinStatus::Queued, None),
            93..=96 => (
                PinStatus::Failed,
                Some("pin_error: context deadline exceeded".to_owned()),
            ),
            _ => continue,
        };
        updates.push(PinUpdate {
            cid: c.clone(),
            status,
            error,
            attempted: true,
            retry_at_ms: None,
            size: (status == PinStatus::Pinned).then_some(20_000 + h % 2_000_000),
        });
        handled.push(*key);
    }
    (updates, handled)
}

/// Fills `dir` with `n` tokens (see the file's doc); returns the seconds it took.
fn fill(dir: &Path, n: u64, progress: bool) -> f64 {
    let store = Store::open(
        dir,
        &StoreOptions {
            sync_commits: false,
            ..Default::default()
        },
    )
    .unwrap();
    let started = Instant::now();
    let pages = n.div_ceil(PAGE);
    let (mut last_analyse, mut last_pin): (Option<OutboxKey>, Option<OutboxKey>) = (None, None);
    let mut last_print = Instant::now();
    // Seconds spent building pages, committing them, recording analyses and pin updates.
    let mut spent = [0.0f64; 4];
    let mut lap = Instant::now();
    let mut split = |i: usize| {
        spent[i] += lap.elapsed().as_secs_f64();
        lap = Instant::now();
    };
    for p in 0..pages {
        let (tokens, contracts) = page(p);
        split(0);
        let last = &tokens[tokens.len() - 1];
        let cursor = Cursor {
            position: Position {
                block: last.1.mint_block,
                id: last.0.graph_id(),
            },
            snapshot: Some(pages * PAGE / PER_BLOCK),
            head: Some(pages * PAGE / PER_BLOCK + 20),
            end: None,
            updated_ms: NOW_MS + p,
        };
        store
            .commit_page(&Page {
                cursor_name: CURSOR,
                cursor,
                tokens: &tokens,
                contracts: &contracts,
            })
            .unwrap();
        split(1);
        // The item this commit queued is the only one after the last seen.
        let queued = store.outbox_after(Queue::Analyse, last_analyse, 1).unwrap();
        let Some((item, _)) = queued.first() else {
            panic!("page {p} queued no analysis item");
        };
        last_analyse = Some(*item);
        if p % ANALYSE_EVERY == 0 {
            store
                .record_analyses(&analyses(&tokens, p * PAGE), &[*item], NOW_MS)
                .unwrap();
            split(2);
            let new_pins = store
                .outbox_after(Queue::Pin, last_pin, usize::MAX)
                .unwrap();
            if let Some((k, _)) = new_pins.last() {
                last_pin = Some(*k);
            }
            let (updates, handled) = pin_updates(&new_pins);
            store
                .record_pin_updates(&updates, &handled, NOW_MS)
                .unwrap();
            split(3);
        }
        if progress && last_print.elapsed() > Duration::from_secs(30) {
            last_print = Instant::now();
            let done = (p + 1) * PAGE;
            println!(
                "  filled {} of {} tokens, {:.0} tokens/s",
                pretty(done as f64),
                pretty(n as f64),
                done as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    for i in 0..300u64 {
        let job = ["scrape/mainnet", "analyse", "pin", "follow"][(i % 4) as usize];
        let id = store.start_run(job, NOW_MS + i * 60_000).unwrap();
        let rec = RunRecord {
            job: job.to_owned(),
            started_ms: NOW_MS + i * 60_000,
            ended_ms: Some(NOW_MS + i * 60_000 + 50_000),
            outcome: if i % 17 == 0 {
                RunOutcome::Interrupted
            } else {
                RunOutcome::Completed
            },
            pages: i % 50,
            items: i * 1000,
            errors: i % 3,
        };
        store.finish_run(id, &rec).unwrap();
    }
    let partitions: Vec<(String, Cursor)> = (0..4u64)
        .map(|k| {
            (
                format!("backfill/initial/{k}"),
                Cursor {
                    position: Position::start_of(k * 25_000),
                    end: Some(k * 25_000 + 24_999),
                    updated_ms: NOW_MS,
                    ..Default::default()
                },
            )
        })
        .collect();
    store.create_cursors(&partitions).unwrap();
    store.flush().unwrap();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "  fill of {}: {secs:.1} s: pages built {:.1} s, committed {:.1} s, analyses {:.1} s, pin updates {:.1} s",
        pretty(n as f64),
        spent[0],
        spent[1],
        spent[2],
        spent[3]
    );
    let counts = store.counts().unwrap();
    assert_eq!(counts.tokens, pages * PAGE, "tokens counted after the fill");
    secs
}

/// Files under `dir`, recursively.
fn count_files(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.filter_map(Result::ok)
            .map(|e| {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    count_files(&e.path())
                } else {
                    1
                }
            })
            .sum()
    })
}

/// What each of status's store reads costs, in this process: µs per call, median of 200.
fn reads(store: &Store) -> String {
    let time = |f: &dyn Fn()| {
        let runs: Vec<f64> = (0..200)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        median(&runs)
    };
    format!(
        "status's reads in-process: counts {:.0} µs, cursors {:.0} µs, disk_bytes {:.0} µs \
         (sled's size_on_disk {:.0} µs when measured again)",
        time(&|| drop(store.counts().unwrap())),
        time(&|| drop(store.cursors().unwrap())),
        time(&|| {
            let _ = store.disk_bytes().unwrap();
        }),
        time(&|| {
            let _ = store.size_on_disk().unwrap();
        }),
    )
}

/// This process's peak resident memory (VmHWM), in MB.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|l| l.split_whitespace().next())
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb * 1024.0 / 1e6)
}

/// Free bytes where `dir` is, from `df`.
fn free_bytes(dir: &Path) -> Option<u64> {
    let out = std::process::Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)?
        .trim()
        .parse()
        .ok()
}

/// What one daemon start measured, in ms.
struct Start {
    ready_ms: f64,
    cold_ms: f64,
    p50_ms: f64,
    p99_ms: f64,
    metrics_p50_ms: f64,
}

/// Starts `nifty run` with no jobs over `dir/data` and times `/api/status`.
fn measure(dir: &Path, tokens: u64, requests: usize) -> Start {
    let cfg = config(
        dir,
        None,
        false,
        "[jobs.analyse]\nenabled = false\n[jobs.pin]\nenabled = false\n[jobs.follow]\nenabled = false\n",
    );
    let t = Instant::now();
    let mut d = Daemon::start(&cfg);
    let ready_ms = t.elapsed().as_secs_f64() * 1e3;
    let timed = |path: &str| {
        let t = Instant::now();
        let (code, body) = d.get(path);
        let ms = t.elapsed().as_secs_f64() * 1e3;
        assert_eq!(code, 200, "{path}: {body}");
        (ms, body)
    };
    let (cold_ms, body) = timed("/api/status");
    let check = |body: &str| {
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["tokens"].as_u64(), Some(tokens), "status: {v}");
        v
    };
    let first = check(&body);
    let mut ms = Vec::with_capacity(requests);
    let mut last = String::new();
    for _ in 0..requests {
        let (t, b) = timed("/api/status");
        ms.push(t);
        last = b;
    }
    check(&last);
    let metrics: Vec<f64> = (0..(requests / 10).max(10))
        .map(|_| timed("/metrics").0)
        .collect();
    let (code, _) = d.stop("TERM");
    assert_eq!(code, Some(0), "nifty run's exit on SIGTERM");
    // The counts status shows, once, for the log.
    if tokens >= 1_000_000 {
        println!(
            "  status shows: {} tokens by status {}, {} pins by status {}, outbox {}, {} failure reasons",
            pretty(tokens as f64),
            first["tokens_by_status"],
            first["pins"],
            first["pins_by_status"],
            first["outbox"],
            first["failures"].as_object().map_or(0, |m| m.len())
        );
    }
    Start {
        ready_ms,
        cold_ms,
        p50_ms: quantile(&ms, 0.5),
        p99_ms: quantile(&ms, 0.99),
        metrics_p50_ms: quantile(&metrics, 0.5),
    }
}

fn main() {
    let n = env_or("NIFTY_BENCH_STATUS_TOKENS", 10_000_000).max(100 * PAGE);
    let n = n.div_ceil(PAGE) * PAGE;
    let runs = env_or("NIFTY_BENCH_STATUS_RUNS", 3).max(1) as usize;
    let requests = env_or("NIFTY_BENCH_STATUS_REQUESTS", 1_000).max(10) as usize;
    let small = (n / 100).div_ceil(PAGE) * PAGE;
    let mut part = figures::Part::new("status_api");
    let doomed = interrupt::Doomed::watch();

    let tmp = std::env::temp_dir();
    let need = n * BYTES_PER_TOKEN_BUDGET;
    if let Some(free) = free_bytes(&tmp) {
        assert!(
            free > need,
            "{} tokens need about {:.1} GB in {} and {:.1} GB are free; lower NIFTY_BENCH_STATUS_TOKENS or set TMPDIR",
            pretty(n as f64),
            need as f64 / 1e9,
            tmp.display(),
            free as f64 / 1e9
        );
    }
    println!(
        "/api/status on a store of {} tokens (and of {} for comparison), {runs} daemon starts, {requests} requests each",
        pretty(n as f64),
        pretty(small as f64)
    );

    // The small store first: it is quick, and a failure shows before the long fill.
    let small_p50 = {
        let dir = tempfile::tempdir().unwrap();
        doomed.add(dir.path());
        let data = dir.path().join("data");
        fill(&data, small, false);
        {
            let store = Store::open(&data, &StoreOptions::default()).unwrap();
            println!(
                "  {}; {} files",
                reads(&store),
                count_files(&data.join("sled"))
            );
        }
        let s = measure(dir.path(), small, requests);
        println!(
            "  {} tokens: /api/status p50 {:.2} ms, p99 {:.2} ms",
            pretty(small as f64),
            s.p50_ms,
            s.p99_ms
        );
        s.p50_ms
    };
    part.record(
        "status_small_p50",
        &[small_p50],
        &format!("{} tokens", pretty(small as f64)),
    );

    let dir = tempfile::tempdir().unwrap();
    doomed.add(dir.path());
    let data = dir.path().join("data");
    let secs = fill(&data, n, true);
    let (disk, files) = {
        let store = Store::open(&data, &StoreOptions::default()).unwrap();
        let disk = store.size_on_disk().unwrap();
        let files = count_files(&data.join("sled"));
        println!("  {}; {files} files", reads(&store));
        drop(store);
        (disk, files)
    };
    let rate = n as f64 / secs;
    let rss = peak_rss_mb();
    println!(
        "  filled {} tokens in {secs:.0} s: {rate:.0} tokens/s; {:.2} GB on disk, {:.0} bytes/token; peak RSS of the filler {rss:.0} MB",
        pretty(n as f64),
        disk as f64 / 1e9,
        disk as f64 / n as f64
    );
    let context = format!("{} tokens", pretty(n as f64));
    part.record_with(
        "status_fill",
        &[rate],
        &format!("{context}, 1 in {ANALYSE_EVERY} analysed"),
        &[("seconds", secs), ("filler_peak_rss_mb", rss)],
    );
    part.record_with(
        "status_disk",
        &[disk as f64 / n as f64],
        &format!("{context}, {:.1} GB", disk as f64 / 1e9),
        &[("disk_bytes", disk as f64), ("sled_files", files as f64)],
    );

    let mut starts = vec![];
    for i in 0..runs {
        let s = measure(dir.path(), n, requests);
        println!(
            "  start {}: ready after {:.0} ms; /api/status first {:.2} ms, then p50 {:.2} ms, p99 {:.2} ms; /metrics p50 {:.2} ms",
            i + 1,
            s.ready_ms,
            s.cold_ms,
            s.p50_ms,
            s.p99_ms,
            s.metrics_p50_ms
        );
        starts.push(s);
    }
    let col = |f: fn(&Start) -> f64| starts.iter().map(f).collect::<Vec<f64>>();
    let p50 = median(&col(|s| s.p50_ms));
    println!(
        "  p50 on {} tokens / p50 on {}: {:.2}",
        pretty(n as f64),
        pretty(small as f64),
        p50 / small_p50
    );
    part.record("status_start", &col(|s| s.ready_ms), &context);
    part.record("status_cold", &col(|s| s.cold_ms), &context);
    part.record_with(
        "status_p50",
        &col(|s| s.p50_ms),
        &format!("{context}, {requests} requests"),
        &[
            ("ratio_to_small_store", p50 / small_p50),
            ("metrics_p50_ms", median(&col(|s| s.metrics_p50_ms))),
        ],
    );
    part.record(
        "status_p99",
        &col(|s| s.p99_ms),
        &format!("{context}, {requests} requests"),
    );
}
