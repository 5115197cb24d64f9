//! The chain RPC source against a real anvil: mints ingested per second, each token's
//! `tokenURI` included, with the node's calls unbatched, in JSON-RPC batches, or through
//! Multicall3 `aggregate3`.
//!
//! One anvil (from `scripts/install-chain-tools.sh`) gets `Nft721` and `Nft721Batch`, Multicall3
//! at its canonical address, and about 20,000 mints over 400 blocks: mostly `mintBatch`es of
//! 20-100 tokens, some single `mint`s, several transactions a block, so blocks hold mixed
//! counts (some none). Every run scrapes blocks 0..=head into a fresh store in this process
//! through the library, as a 4-worker backfill and as the source's own single lane, and is
//! checked: every mint on the chain (counted with `eth_getLogs`) stored, with its URI and
//! block. Runs of the variants alternate, after one untimed warm-up.
//!
//! Prints medians (and min - max) of mints/s = tokens stored / wall seconds, the ratio to
//! unbatched, the client's CPU per mint (this process: client, store, tokio; anvil not
//! counted) and the HTTP requests the client made; writes the same to
//! `target/bench/rpc.json`; the Multicall3 medians (the default config) go to `make bench`'s
//! table (`benches/support/figures.rs`). NIFTY_BENCH_RPC_TOKENS (default 20,000), NIFTY_BENCH_RPC_BLOCKS
//! (400), NIFTY_BENCH_RPC_RUNS (5) and NIFTY_BENCH_RPC_WORKERS (4) scale it; with RUST_LOG
//! set, the library's logs go to stderr.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use ethers_core::types::{Address as EthAddress, U256};
use nifty_scraper::backfill::{Backfill, Plan};
use nifty_scraper::lane::{Ctx, Progress, Stop, scrape_source};
use nifty_scraper::retry::Backoff;
use nifty_scraper::rpc::{ChainClient, ChainClientConfig};
use nifty_state::{Store, StoreOptions, TokenId, TokenKey};
use serde_json::{Value, json};
use tokio::sync::watch;

#[path = "../tests/support/anvil.rs"]
mod anvil;

#[path = "support/figures.rs"]
mod figures;

use anvil::{Anvil, mint_batch_calldata, mint_calldata, string, transfer_topic};

const BASE: &str = "ipfs://bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi/";

use figures::env_or;

/// CPU seconds this process (the client and its store; not anvil) has used: utime + stime
/// of `/proc/self/stat`, in Linux's 100 Hz ticks.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (tick(11) + tick(12)) / 100.0
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A small deterministic generator (xorshift64*), so every run of the bench mints the same
/// chain.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// One minted token as the chain holds it.
struct Minted {
    contract: EthAddress,
    id: u64,
    block: u64,
}

/// The chain every run scrapes.
struct Fixture {
    anvil: Anvil,
    minted: Vec<Minted>,
    head: u64,
    mint_blocks: u64,
    batch_txs: u64,
    single_txs: u64,
    /// Per-block mint counts: (fewest, most).
    per_block: (u64, u64),
    setup_secs: f64,
}

async fn fixture(tokens: u64, blocks: u64) -> Fixture {
    let started = Instant::now();
    let anvil = Anvil::start().await;
    let args = |name: &str, symbol: &str| [string(name), string(symbol), string(BASE)];
    let single = anvil.deploy("Nft721", &args("Single", "ONE")).await;
    let batch = anvil.deploy("Nft721Batch", &args("Batch", "MANY")).await;
    anvil.install_multicall3().await;
    anvil.set_automine(false).await;

    // Per block: 0-4 single mints (2 on average) and 0, 1 or 2 mintBatch transactions
    // (0.8 on average) of 20-100 tokens (60 on average): about 50 mints a block, scaled so
    // the whole chain holds about `tokens`.
    let batch_mean = (tokens as f64 / blocks as f64 - 2.0).max(0.0) / 0.8;
    let scale = batch_mean / 60.0;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let owners: Vec<EthAddress> = anvil.accounts()[1..].to_vec();
    let (mut next_single, mut next_batch) = (1u64, 1u64);
    let mut minted = Vec::with_capacity(tokens as usize + 1000);
    let (mut batch_txs, mut single_txs) = (0, 0);
    let mut per_block = (u64::MAX, 0);
    for _ in 0..blocks {
        let mut txs = vec![];
        let mut planned = vec![];
        let batches = match rng.range(0, 9) {
            0..=2 => 0,
            3..=8 => 1,
            _ => 2,
        };
        let singles = rng.range(0, 4);
        // The order of transactions in the block varies too.
        let singles_first = rng.range(0, 1) == 0;
        let mut add_singles = |txs: &mut Vec<_>, planned: &mut Vec<_>, rng: &mut Rng| {
            for _ in 0..singles {
                let to = owners[rng.range(0, owners.len() as u64 - 1) as usize];
                txs.push((single, mint_calldata(to, U256::from(next_single))));
                planned.push((single, next_single));
                next_single += 1;
                single_txs += 1;
            }
        };
        if singles_first {
            add_singles(&mut txs, &mut planned, &mut rng);
        }
        for _ in 0..batches {
            let count = ((rng.range(20, 100) as f64 * scale).round() as u64).max(1);
            let to = owners[rng.range(0, owners.len() as u64 - 1) as usize];
            txs.push((
                batch,
                mint_batch_calldata(to, U256::from(next_batch), count),
            ));
            planned.extend((next_batch..next_batch + count).map(|id| (batch, id)));
            next_batch += count;
            batch_txs += 1;
        }
        if !singles_first {
            add_singles(&mut txs, &mut planned, &mut rng);
        }
        if !txs.is_empty() {
            anvil.send_many(txs).await;
        }
        anvil.mine(1).await;
        let block = anvil.block_number().await;
        per_block.0 = per_block.0.min(planned.len() as u64);
        per_block.1 = per_block.1.max(planned.len() as u64);
        minted.extend(planned.into_iter().map(|(contract, id)| Minted {
            contract,
            id,
            block,
        }));
    }
    let head = anvil.block_number().await;

    // The chain itself must hold exactly the mints planned (a reverted transaction would
    // leave fewer), each in the block it was sent for.
    let logs = anvil.logs(0, head, None).await;
    let mut on_chain: Vec<(EthAddress, u64, u64)> = logs
        .iter()
        .filter(|l| l.topics.len() == 4 && l.topics[0] == transfer_topic() && l.topics[1].is_zero())
        .map(|l| {
            (
                l.address,
                U256::from_big_endian(l.topics[3].as_bytes()).as_u64(),
                l.block_number.unwrap().as_u64(),
            )
        })
        .collect();
    let mut planned: Vec<(EthAddress, u64, u64)> =
        minted.iter().map(|m| (m.contract, m.id, m.block)).collect();
    on_chain.sort();
    planned.sort();
    assert_eq!(
        on_chain.len(),
        planned.len(),
        "eth_getLogs finds {} mints, {} were sent",
        on_chain.len(),
        planned.len()
    );
    assert!(
        on_chain == planned,
        "the chain's mints differ from the plan"
    );
    assert!(
        minted.len() >= 10_000 || tokens < 10_000,
        "only {} mints",
        minted.len()
    );
    Fixture {
        anvil,
        minted,
        head,
        mint_blocks: blocks,
        batch_txs,
        single_txs,
        per_block,
        setup_secs: started.elapsed().as_secs_f64(),
    }
}

/// How the client talks to the node.
#[derive(Clone, Copy)]
struct Variant {
    name: &'static str,
    batch_size: usize,
    multicall: bool,
}

const VARIANTS: [Variant; 3] = [
    Variant {
        name: "unbatched",
        batch_size: 1,
        multicall: false,
    },
    Variant {
        name: "JSON-RPC batch",
        batch_size: 100,
        multicall: false,
    },
    Variant {
        name: "Multicall3",
        batch_size: 100,
        multicall: true,
    },
];

/// How the run pages the chain.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// `Backfill` over 0..=head with this many partitions and workers.
    Backfill(usize),
    /// `scrape_source`: the source's own cursor, one lane.
    Lane,
}

impl Mode {
    fn name(self) -> String {
        match self {
            Mode::Backfill(w) => format!("backfill, {w} workers"),
            Mode::Lane => "scrape_source, 1 lane".to_owned(),
        }
    }

    fn key(self) -> String {
        match self {
            Mode::Backfill(w) => format!("backfill_{w}"),
            Mode::Lane => "lane".to_owned(),
        }
    }
}

/// What one run measured.
struct Run {
    secs: f64,
    cpu_secs: f64,
    stored: u64,
    requests: u64,
    retries: u64,
    shrinks: u64,
}

/// Scrapes blocks 0..=head into a fresh store and checks every minted token arrived with its
/// URI and block.
async fn scrape(f: &Fixture, v: Variant, mode: Mode) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        &dir.path().join("data"),
        &StoreOptions {
            sync_commits: false,
            ..Default::default()
        },
    )
    .unwrap();
    let multicall = v.multicall.then(|| anvil::MULTICALL3.parse().unwrap());
    let client = ChainClient::new(ChainClientConfig {
        url: f.anvil.url.clone(),
        api_key: None,
        timeout: Duration::from_secs(30),
        backoff: Backoff::default(),
        contracts: vec![],
        batch_size: v.batch_size,
        multicall,
        start_span: 1000,
        max_span: 10_000,
        concurrency: 4,
        reorg_depth: 128,
        secrets: Default::default(),
        max_body_bytes: nifty_scraper::rpc::DEFAULT_MAX_BODY_MB << 20,
    })
    .unwrap();
    let ctx = Ctx {
        store: store.clone(),
        client: client.clone().into(),
        source: "chain".into(),
        page_size: 1000,
        progress: Arc::new(Progress::default()),
        now_ms,
    };
    let (_stop_tx, mut stop_rx) = watch::channel(false);

    let (started, cpu) = (Instant::now(), cpu_secs());
    let stop = match mode {
        Mode::Lane => scrape_source(&ctx, 0, 0, None, &mut stop_rx).await.unwrap(),
        Mode::Backfill(workers) => {
            let snap = ctx.client.snapshot(0).await.unwrap();
            let plan = Plan {
                job: "bench".into(),
                from: 0,
                to: None,
                partitions: workers,
                settings: None,
            };
            let job = Arc::new(Backfill::create(&ctx, &plan, snap.block).unwrap());
            job.run(&ctx, workers, 0, None, stop_rx.clone())
                .await
                .unwrap()
        }
    };
    let secs = started.elapsed().as_secs_f64();
    let cpu_secs = cpu_secs() - cpu;
    assert!(
        stop == Stop::Finished,
        "{} / {}: stopped early",
        v.name,
        mode.name()
    );

    // Everything the chain minted, and nothing else, with the URI the contract answers.
    let stored = store.counts().unwrap().tokens;
    let expected = f.minted.len() as u64;
    assert_eq!(
        stored,
        expected,
        "{} / {}: stored {stored} of {expected} mints",
        v.name,
        mode.name()
    );
    assert_eq!(
        ctx.progress
            .tokens
            .load(std::sync::atomic::Ordering::Relaxed),
        expected
    );
    for m in &f.minted {
        let key = TokenKey {
            contract: nifty_state::Address(m.contract.0),
            token_id: TokenId(U256::from(m.id)),
        };
        let Some(t) = store.token(&key).unwrap() else {
            panic!(
                "{} / {}: token {:?} #{} missing",
                v.name,
                mode.name(),
                m.contract,
                m.id
            );
        };
        assert_eq!(
            t.token_uri.as_deref(),
            Some(format!("{BASE}{}", m.id).as_str()),
            "{} / {}: URI of #{}",
            v.name,
            mode.name(),
            m.id
        );
        assert_eq!(t.mint_block, m.block, "mint block of #{}", m.id);
        assert!(t.mint_time > 0 && t.reason.is_none());
    }
    assert_eq!(store.counts().unwrap().contracts, 2);
    Run {
        secs,
        cpu_secs,
        stored,
        requests: client
            .stats()
            .requests
            .load(std::sync::atomic::Ordering::Relaxed),
        retries: client
            .stats()
            .retries
            .load(std::sync::atomic::Ordering::Relaxed),
        shrinks: client.shrinks(),
    }
}

fn median(v: Vec<f64>) -> f64 {
    figures::median(&v)
}

fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(*x), hi.max(*x))
        })
}

/// `12345` as `12,345`.
fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn command_line(cmd: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn loadavg() -> Option<String> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| (kb / 1024.0 / 1024.0).round());
    json!({
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "cpu": model,
        "mem_gib": mem_gib,
        "loadavg_at_start": loadavg(),
    })
}

fn main() {
    let tokens = env_or("NIFTY_BENCH_RPC_TOKENS", 20_000);
    let blocks = env_or("NIFTY_BENCH_RPC_BLOCKS", 400).max(1);
    let runs = env_or("NIFTY_BENCH_RPC_RUNS", 5).max(1) as usize;
    let workers = env_or("NIFTY_BENCH_RPC_WORKERS", 4).max(1) as usize;
    if std::env::var_os("RUST_LOG").is_some() {
        // For looking into a run: the library's logs (work stolen, ranges committed) on stderr.
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let machine = machine();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(bench(tokens, blocks, runs, workers, machine));
}

async fn bench(tokens: u64, blocks: u64, runs: usize, workers: usize, machine: Value) {
    let total = Instant::now();
    let f = fixture(tokens, blocks).await;
    let n = f.minted.len() as u64;
    let modes = [Mode::Backfill(workers), Mode::Lane];

    // Untimed: anvil's first answers over a fresh chain are slower.
    scrape(&f, VARIANTS[1], modes[0]).await;

    // results[mode][variant] = runs; variants alternate within each round.
    let mut results: Vec<Vec<Vec<Run>>> = modes
        .iter()
        .map(|_| VARIANTS.iter().map(|_| vec![]).collect())
        .collect();
    for _ in 0..runs {
        for (mi, mode) in modes.iter().enumerate() {
            for (vi, v) in VARIANTS.iter().enumerate() {
                let run = scrape(&f, *v, *mode).await;
                results[mi][vi].push(run);
            }
        }
    }

    let anvil_version = command_line(
        anvil::anvil_bin().to_str().unwrap_or("anvil"),
        &["--version"],
    )
    .and_then(|v| v.lines().next().map(str::to_owned));
    println!(
        "chain RPC ingest from anvil, {} mints ({} mintBatch + {} single-mint txs) in {} blocks \
         ({}-{} a block), tokenURI per token, median of {runs} runs",
        thousands(n),
        f.batch_txs,
        f.single_txs,
        f.mint_blocks,
        f.per_block.0,
        f.per_block.1,
    );
    println!(
        "  {:<24} {:<16} {:>9} {:>19} {:>7} {:>14} {:>9}",
        "mode", "calls", "mints/s", "(min - max)", "ratio", "client CPU", "requests"
    );
    let mut out = vec![];
    let mut part = figures::Part::new("rpc");
    for (mi, mode) in modes.iter().enumerate() {
        let mut unbatched_median = f64::NAN;
        for (vi, v) in VARIANTS.iter().enumerate() {
            let rs = &results[mi][vi];
            let rates: Vec<f64> = rs.iter().map(|r| r.stored as f64 / r.secs).collect();
            let m = median(rates.clone());
            if vi == 0 {
                unbatched_median = m;
            }
            let (lo, hi) = min_max(&rates);
            let requests: Vec<f64> = rs.iter().map(|r| r.requests as f64).collect();
            let req = median(requests.clone());
            let (req_lo, req_hi) = min_max(&requests);
            let ratio = m / unbatched_median;
            let cpu_us: Vec<f64> = rs
                .iter()
                .map(|r| r.cpu_secs * 1e6 / r.stored as f64)
                .collect();
            let cpu = median(cpu_us.clone());
            let req_note = if req_lo == req_hi {
                String::new()
            } else {
                format!(" ({req_lo:.0}-{req_hi:.0})")
            };
            println!(
                "  {:<24} {:<16} {:>9} {:>19} {:>6.2}x {:>6.1} µs/mint {:>9}{req_note}",
                mode.name(),
                v.name,
                thousands(m.round() as u64),
                format!(
                    "({} - {})",
                    thousands(lo.round() as u64),
                    thousands(hi.round() as u64)
                ),
                ratio,
                cpu,
                thousands(req as u64),
            );
            if v.multicall {
                let (key, context) = match mode {
                    Mode::Backfill(w) => (
                        "rpc_backfill",
                        format!("{} mints, {w} workers", thousands(n)),
                    ),
                    Mode::Lane => ("rpc_lane", format!("{} mints", thousands(n))),
                };
                part.record_with(
                    key,
                    &rates,
                    &context,
                    &[
                        ("ratio_vs_unbatched", ratio),
                        ("client_cpu_us_per_mint", cpu),
                    ],
                );
            }
            out.push(json!({
                "mode": mode.key(),
                "workers": match mode { Mode::Backfill(w) => *w, Mode::Lane => 1 },
                "variant": v.name,
                "batch_size": v.batch_size,
                "multicall": v.multicall,
                "mints_per_sec": {"median": m, "min": lo, "max": hi, "runs": rates},
                "ratio_vs_unbatched": ratio,
                "seconds": rs.iter().map(|r| r.secs).collect::<Vec<_>>(),
                "client_cpu_us_per_mint": {"median": cpu, "runs": cpu_us},
                "requests": {"median": req, "runs": requests},
                "retries": rs.iter().map(|r| r.retries).sum::<u64>(),
                "range_shrinks": rs.iter().map(|r| r.shrinks).sum::<u64>(),
            }));
        }
    }
    let elapsed = total.elapsed().as_secs_f64();
    let load_end = loadavg();
    println!(
        "  chain setup {:.1} s; whole bench {:.0} s; {}; {} cores; load average {} at start, {} at end",
        f.setup_secs,
        elapsed,
        anvil_version.as_deref().unwrap_or("anvil ?"),
        machine["cores"],
        machine["loadavg_at_start"].as_str().unwrap_or("?"),
        load_end.as_deref().unwrap_or("?"),
    );

    let doc = json!({
        "bench": "rpc",
        "date": chrono::Utc::now().to_rfc3339(),
        "commit": command_line("git", &["rev-parse", "--short", "HEAD"]),
        "dirty": command_line("git", &["status", "--porcelain"]).map(|s| !s.is_empty()),
        "machine": machine,
        "loadavg_at_end": load_end,
        "anvil": anvil_version,
        "chain": {
            "mints": n,
            "blocks": f.mint_blocks,
            "head": f.head,
            "mint_batch_txs": f.batch_txs,
            "single_mint_txs": f.single_txs,
            "mints_per_block_min": f.per_block.0,
            "mints_per_block_max": f.per_block.1,
            "setup_secs": f.setup_secs,
        },
        "client": {"start_span": 1000, "max_span": 10_000, "concurrency": 4, "store_sync_commits": false},
        "runs": runs,
        "results": out,
        "bench_secs": elapsed,
    });
    let target = figures::out_dir();
    std::fs::create_dir_all(&target).unwrap();
    let file = target.join("rpc.json");
    std::fs::write(&file, serde_json::to_string_pretty(&doc).unwrap() + "\n").unwrap();
    println!("  results: {}", file.display());
}
