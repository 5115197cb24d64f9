//! End-to-end ingest: `nifty devnet` serves a generated chain, `nifty backfill` pages all of
//! it into a fresh store. Prints medians over several runs: tokens/s, the backfill
//! process's CPU µs per token and peak RSS, and disk bytes per token; then the same with
//! 200 ms of injected latency against the latency bound (workers × page / latency).
//!
//! Records each for `make bench`'s table (`benches/support/figures.rs`).
//!
//! NIFTY_BENCH_TOKENS (default 1,000,000), NIFTY_BENCH_LATENCY_TOKENS (200,000),
//! NIFTY_BENCH_WORKERS (2) and NIFTY_BENCH_RUNS (default 3) scale it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

#[path = "../tests/support/devnet.rs"]
mod support;

#[path = "support/figures.rs"]
mod figures;

#[path = "../tests/support/hostile.rs"]
mod hostile;

use figures::{env_or, median, pretty};

fn devnet(tokens: u64, extra: &[&str]) -> support::Devnet {
    support::start(env!("CARGO_BIN_EXE_nifty"), tokens, 7, extra)
}

/// One backfill of a hostile subgraph whose every page is a 500 MB body: it must fail as
/// `too_large`; returns its JSON report.
fn hostile_backfill(workers: u32) -> serde_json::Value {
    let up = hostile::Hostile::subgraph(hostile::Mode::Huge(500 * 1024 * 1024));
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nifty"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["backfill", "--graph", &up.url, "--from", "0", "--json"])
        .args(["--workers", &workers.to_string()])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("too_large"), "{err}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// One backfill into a fresh store; returns its JSON report and the store's bytes on disk.
fn backfill(url: &str, workers: u32) -> (serde_json::Value, u64) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_nifty"))
        .args([
            "--data-dir",
            data.to_str().unwrap(),
            "backfill",
            "--graph",
            url,
            "--from",
            "0",
        ])
        .args(["--workers", &workers.to_string(), "--json"])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "backfill failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_nifty"))
        .args(["--data-dir", data.to_str().unwrap(), "status", "--json"])
        .output()
        .unwrap();
    let s: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    (report, s["disk_bytes"].as_u64().unwrap_or(0))
}

fn main() {
    let tokens = env_or("NIFTY_BENCH_TOKENS", 1_000_000);
    let runs = env_or("NIFTY_BENCH_RUNS", 3).max(1) as usize;
    let workers = env_or("NIFTY_BENCH_WORKERS", 2) as u32;

    let d = devnet(tokens, &[]);
    let mut rate = vec![];
    let mut cpu = vec![];
    let mut rss = vec![];
    let mut disk = vec![];
    for _ in 0..runs {
        let (r, bytes) = backfill(&d.subgraph, workers);
        let stored = r["tokens"].as_f64().unwrap();
        assert!(stored > 0.0, "{r}");
        rate.push(r["tokens_per_sec"].as_f64().unwrap());
        cpu.push(r["cpu_us_per_token"].as_f64().unwrap_or(f64::NAN));
        rss.push(r["peak_rss_bytes"].as_f64().unwrap_or(f64::NAN) / 1e6);
        disk.push(bytes as f64 / stored);
    }
    drop(d);
    println!(
        "graph ingest, {tokens} tokens, pages of 1000, {workers} workers, median of {runs} runs"
    );
    println!(
        "  0 ms latency    {:>9.0} tokens/s (runs: {:?})",
        median(&rate),
        rate.iter().map(|r| r.round()).collect::<Vec<_>>()
    );
    println!("  client CPU      {:>9.1} µs/token", median(&cpu));
    println!("  peak RSS        {:>9.1} MB", median(&rss));
    println!("  disk            {:>9.0} bytes/token", median(&disk));
    let mut part = figures::Part::new("ingest");
    let context = format!("{} tokens, {workers} workers", pretty(tokens as f64));
    part.record("ingest_0ms", &rate, &context);
    part.record("ingest_cpu", &cpu, &context);
    part.record("ingest_rss", &rss, &context);
    part.record("ingest_disk", &disk, &context);

    let latency_tokens = env_or("NIFTY_BENCH_LATENCY_TOKENS", 200_000);
    let d = devnet(latency_tokens, &["--latency-ms", "200"]);
    let mut rate = vec![];
    for _ in 0..runs {
        rate.push(
            backfill(&d.subgraph, 8).0["tokens_per_sec"]
                .as_f64()
                .unwrap(),
        );
    }
    let bound = 8.0 * 1000.0 / 0.2;
    let m = median(&rate);
    println!(
        "  200 ms latency  {m:>9.0} tokens/s with 8 workers = {:.0}% of the bound {bound:.0} ({latency_tokens} tokens)",
        100.0 * m / bound
    );
    part.record_with(
        "ingest_200ms",
        &rate,
        &format!("{} tokens", pretty(latency_tokens as f64)),
        &[("share_of_bound", m / bound)],
    );
    drop(d);

    // A hostile subgraph: pages of 1,000 rows answered with 500 MB each.
    let rss: Vec<f64> = (0..runs)
        .map(|_| {
            hostile_backfill(1)["peak_rss_bytes"]
                .as_f64()
                .unwrap_or(f64::NAN)
                / 1e6
        })
        .collect();
    println!(
        "  hostile page    {:>9.1} MB peak RSS, 500 MB pages, 1 worker (runs: {rss:?})",
        median(&rss)
    );
    part.record("ingest_hostile_rss", &rss, "500 MB pages, 1 worker");
}
