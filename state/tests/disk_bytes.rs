//! `Store::disk_bytes`, the size `/api/status` reports: measured at most once per
//! `DISK_BYTES_MAX_AGE`, because sled's own count reads every file of its blob directory
//! and so took longer the bigger the store (found by `benches/status_api.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use nifty_state::{
    Address, Cursor, DISK_BYTES_MAX_AGE, Page, Position, Store, StoreOptions, Token, TokenId,
    TokenKey,
};

fn fill(store: &Store, pages: u64) {
    for p in 0..pages {
        let tokens: Vec<(TokenKey, Token)> = (0..1000u64)
            .map(|i| {
                let key = TokenKey {
                    contract: Address([7; 20]),
                    token_id: TokenId((p * 1000 + i).into()),
                };
                let uri = format!(
                    "ipfs://bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi/{i}"
                );
                (key, Token::scraped("t", &key, Some(uri), p))
            })
            .collect();
        let cursor = Cursor {
            position: Position {
                block: p,
                id: tokens[999].0.graph_id(),
            },
            ..Default::default()
        };
        store
            .commit_page(&Page {
                cursor_name: "t",
                cursor,
                tokens: &tokens,
                contracts: &[],
            })
            .unwrap();
    }
    store.flush().unwrap();
}

#[test]
fn disk_bytes_reuses_a_recent_measurement_and_measures_again_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        &StoreOptions {
            sync_commits: false,
            ..Default::default()
        },
    )
    .unwrap();
    let measured = Instant::now();
    let first = store.disk_bytes().unwrap();
    assert_eq!(first, store.size_on_disk().unwrap());
    fill(&store, 20);
    let grown = store.size_on_disk().unwrap();
    assert!(
        grown > first,
        "20,000 tokens did not grow the store: {first} -> {grown}"
    );
    let again = store.clone().disk_bytes().unwrap();
    // Only meaningful while the first measurement is still recent (a loaded machine may
    // take longer than that to commit the pages).
    if measured.elapsed() < DISK_BYTES_MAX_AGE {
        assert_eq!(again, first, "a clone measured again within the window");
    }
    std::thread::sleep(DISK_BYTES_MAX_AGE.saturating_sub(measured.elapsed()));
    assert_eq!(store.disk_bytes().unwrap(), store.size_on_disk().unwrap());
}
