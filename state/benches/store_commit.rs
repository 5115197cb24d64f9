//! Page commit throughput of the store: the ceiling for any source's ingest rate.
//!
//! Commits 200,000 tokens in pages of 1,000 into a fresh store, with and without an fsync
//! per commit, five times each, and prints the median tokens/s and disk bytes per token;
//! records the rates for `make bench`'s table (`benches/support/figures.rs`).
//! NIFTY_BENCH_COMMIT_TOKENS (200,000) and NIFTY_BENCH_COMMIT_RUNS (5) scale it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use nifty_state::{Address, Cursor, Page, Position, Store, StoreOptions, Token, TokenId, TokenKey};

#[path = "../../benches/support/figures.rs"]
mod figures;

use figures::{env_or, median};

const PAGE: u64 = 1_000;

fn run(sync: bool, tokens: u64) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        &StoreOptions {
            sync_commits: sync,
            ..Default::default()
        },
    )
    .unwrap();
    let pages: Vec<Vec<(TokenKey, Token)>> = (0..tokens.div_ceil(PAGE))
        .map(|p| {
            (0..PAGE.min(tokens))
                .map(|i| {
                    let n = p * PAGE + i;
                    let mut a = [0u8; 20];
                    a[..8].copy_from_slice(&(n % 97).to_be_bytes());
                    let key = TokenKey { contract: Address(a), token_id: TokenId(n.into()) };
                    let uri = format!("ipfs://bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi/{n}.json");
                    let mut t = Token::scraped("bench", &key, Some(uri), p);
                    t.mint_time = 1_600_000_000 + p;
                    t.block_hash = Some([p as u8; 32]);
                    t.owner = Some(Address([9; 20]));
                    (key, t)
                })
                .collect()
        })
        .collect();
    let start = Instant::now();
    for (p, tokens) in pages.iter().enumerate() {
        let cursor = Cursor {
            position: Position {
                block: p as u64,
                id: tokens[tokens.len() - 1].0.graph_id(),
            },
            ..Default::default()
        };
        store
            .commit_page(&Page {
                cursor_name: "bench",
                cursor,
                tokens,
                contracts: &[],
            })
            .unwrap();
    }
    let stored = (pages.len() as u64 * PAGE.min(tokens)) as f64;
    let rate = stored / start.elapsed().as_secs_f64();
    drop(store);
    let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    let bytes = store.size_on_disk().unwrap() as f64 / stored;
    (rate, bytes)
}

fn main() {
    let tokens = env_or("NIFTY_BENCH_COMMIT_TOKENS", 200_000).max(1);
    let runs = env_or("NIFTY_BENCH_COMMIT_RUNS", 5).max(1) as usize;
    let mut part = figures::Part::new("store_commit");
    println!("store page commit: {tokens} tokens, pages of {PAGE}, median of {runs} runs");
    for sync in [true, false] {
        let results: Vec<(f64, f64)> = (0..runs).map(|_| run(sync, tokens)).collect();
        let rates: Vec<f64> = results.iter().map(|r| r.0).collect();
        let rate = median(&rates);
        let bytes = median(&results.iter().map(|r| r.1).collect::<Vec<_>>());
        println!(
            "  fsync per commit {:<5}  {:>9.0} tokens/s  (min {:.0}, max {:.0})  {:>6.0} disk bytes/token",
            sync,
            rate,
            rates.iter().copied().fold(f64::MAX, f64::min),
            rates.iter().copied().fold(0.0, f64::max),
            bytes
        );
        part.record_with(
            if sync {
                "store_commit_fsync"
            } else {
                "store_commit_nosync"
            },
            &rates,
            &format!("{} tokens, pages of {PAGE}", figures::pretty(tokens as f64)),
            &[("disk_bytes_per_token", bytes)],
        );
    }
}
