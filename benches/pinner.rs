//! The pinner against the devnet: `nifty backfill` fills a fresh store, then `nifty pin`
//! analyses every token through the devnet gateway and requests every pin from the devnet
//! cluster. Prints medians over several runs of analysis tokens/s and pin requests (CIDs)/s
//! at the default concurrency, each from the pass's own timing.
//!
//! The gateway's slow variant (1% of tokens) is set to 200 ms here so the figure is the
//! pipeline's throughput with a realistic latency tail, not the fetch timeout.
//! Records both for `make bench`'s table (`benches/support/figures.rs`).
//! NIFTY_BENCH_PIN_TOKENS (default 50,000) and NIFTY_BENCH_RUNS (default 3) scale it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

#[path = "../tests/support/devnet.rs"]
mod support;

#[path = "support/figures.rs"]
mod figures;

use figures::{env_or, median, pretty};

const NIFTY: &str = env!("CARGO_BIN_EXE_nifty");

/// One run in a fresh store: (analysed tokens/s, pinned CIDs/s, tokens, CIDs).
fn run(d: &support::Devnet) -> (f64, f64, u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nifty.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[gateway]\nurl = \"{}\"\narweave_url = \"{}\"\nallow_hosts = [\"127.0.0.1\"]\n[cluster]\nurl = \"{}\"\n[sources.dev]\nkind = \"graph\"\nurl = \"{}\"\nconfirmations = 0\n",
            dir.path().join("data").display(),
            d.gateway,
            d.arweave,
            d.cluster,
            d.subgraph
        ),
    )
    .unwrap();
    let nifty = |args: &[&str]| {
        let out = Command::new(NIFTY)
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("RUST_LOG", "error")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    nifty(&["backfill", "--source", "dev", "--from", "0"]);
    let out = nifty(&["pin", "--json"]);
    let mut rates = (0.0, 0.0, 0, 0);
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let handled = v["handled"].as_u64().unwrap();
        let rate = handled as f64 / v["seconds"].as_f64().unwrap();
        match v["pass"].as_str().unwrap() {
            "analyse" => (rates.0, rates.2) = (rate, handled),
            "pin" => (rates.1, rates.3) = (rate, handled),
            other => panic!("unexpected pass {other}"),
        }
    }
    rates
}

fn main() {
    let tokens = env_or("NIFTY_BENCH_PIN_TOKENS", 50_000);
    let runs = env_or("NIFTY_BENCH_RUNS", 3).max(1);
    let d = support::start(NIFTY, tokens, 7, &["--gateway-slow-ms", "200"]);
    let mut analyse = vec![];
    let mut pin = vec![];
    let mut cids = 0;
    for i in 0..runs {
        // A fresh devnet cluster each run would need a restart; pins are idempotent there,
        // and every run's requests are real POSTs the double handles in full.
        let (a, p, n, c) = run(&d);
        println!(
            "run {}: analysed {n} tokens at {a:.0}/s, requested {c} pins at {p:.0}/s",
            i + 1
        );
        analyse.push(a);
        pin.push(p);
        cids = c;
    }
    println!(
        "pinner: analysis {:.0} tokens/s (target >= 2,000), pin requests {:.0} CIDs/s (target >= 5,000); medians of {runs}",
        median(&analyse),
        median(&pin)
    );
    let mut part = figures::Part::new("pinner");
    let context = format!("{} tokens", pretty(tokens as f64));
    part.record("analysis", &analyse, &context);
    part.record(
        "pin_requests",
        &pin,
        &format!("{} CIDs", pretty(cids as f64)),
    );
}
