//! A chain source's block memory and reorg unwinding, through the public API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use nifty_state::*;

fn key(contract: u8, id: u64) -> TokenKey {
    let mut a = [0u8; 20];
    a[19] = contract;
    TokenKey {
        contract: Address(a),
        token_id: TokenId(id.into()),
    }
}

fn hash(block: u64, fork: u8) -> [u8; 32] {
    let mut h = [fork; 32];
    h[..8].copy_from_slice(&block.to_be_bytes());
    h
}

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(dir.path(), &StoreOptions::default()).unwrap()
}

/// Commits blocks `from..=to` for source "chain": `per_block` tokens in each block, ids
/// numbered by block, and the hash of every block.
fn commit(s: &Store, from: u64, to: u64, per_block: u64, fork: u8) -> PageOutcome {
    let mut toks = vec![];
    let mut blocks = vec![];
    for b in from..=to {
        for i in 0..per_block {
            let k = key(1, b * 100 + i);
            toks.push((
                k,
                Token::scraped("chain", &k, Some(format!("ipfs://x/{b}")), b),
            ));
        }
        blocks.push((b, hash(b, fork)));
    }
    s.commit_chain_page(
        &Page {
            cursor_name: "chain",
            cursor: Cursor {
                position: Position::start_of(to + 1),
                ..Default::default()
            },
            tokens: &toks,
            contracts: &[],
        },
        &blocks,
    )
    .unwrap()
}

#[test]
fn blocks_are_remembered_newest_first_and_old_ones_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    commit(&s, 10, 14, 1, 0xaa);
    commit(&s, 15, 20, 0, 0xaa);
    let recent = s.recent_blocks("chain", 3).unwrap();
    assert_eq!(
        recent,
        vec![
            (20, hash(20, 0xaa)),
            (19, hash(19, 0xaa)),
            (18, hash(18, 0xaa))
        ]
    );
    // Another cursor's memory is its own.
    assert!(s.recent_blocks("chai", 10).unwrap().is_empty());
    // Blocks 10..=14 have a hash and a token entry each.
    assert_eq!(s.forget_blocks_before("chain", 15).unwrap(), 10);
    assert_eq!(s.recent_blocks("chain", 100).unwrap().len(), 6);
    assert!(s.audit().unwrap().is_clean());
}

#[test]
fn unwinding_removes_the_orphaned_tokens_and_moves_the_cursor_in_one_go() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    commit(&s, 1, 5, 2, 0xaa);
    commit(&s, 6, 9, 3, 0xaa);
    // Analyse some tokens of the orphaned blocks: one fails, one uses a CID that a token
    // of a surviving block uses too.
    let cid = b"cid-shared".to_vec();
    let res = vec![Resource {
        cid: cid.clone(),
        role: "metadata".into(),
    }];
    s.record_analysis(&key(1, 300), TokenStatus::Parsed, None, &res, None, 1)
        .unwrap();
    s.record_analysis(&key(1, 700), TokenStatus::Parsed, None, &res, None, 1)
        .unwrap();
    s.record_analysis(
        &key(1, 800),
        TokenStatus::ContentFetchFailed,
        Some("http_404"),
        &[],
        None,
        1,
    )
    .unwrap();
    assert_eq!(s.counts().unwrap().tokens, 22);
    assert_eq!(s.pin(&cid).unwrap().unwrap().refs, 2);

    let out = s.unwind("chain", 6, 99).unwrap();
    // Blocks 7, 8 and 9 held 3 tokens each.
    assert_eq!(out.tokens_removed, 9);
    assert_eq!(out.blocks_forgotten, 3);
    assert_eq!(out.position, Position::start_of(7));
    let c = s.cursor("chain").unwrap().unwrap();
    assert_eq!((c.position, c.updated_ms), (Position::start_of(7), 99));
    for b in 7..=9 {
        for i in 0..3 {
            assert!(s.token(&key(1, b * 100 + i)).unwrap().is_none(), "{b}/{i}");
        }
    }
    assert!(s.token(&key(1, 600)).unwrap().is_some());
    let counts = s.counts().unwrap();
    assert_eq!(counts.tokens, 13);
    assert_eq!(counts.tokens_by_source["chain"], 13);
    assert!(
        !counts.failures.contains_key("fetch.http_404"),
        "{counts:?}"
    );
    assert_eq!(s.pin(&cid).unwrap().unwrap().refs, 1);
    assert_eq!(s.pin_users(&cid, 10).unwrap(), vec![key(1, 300)]);
    // The second page's analysis item keeps only block 6's tokens; the first page's stays
    // whole.
    let items = s.outbox_take(Queue::Analyse, 10).unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(
        items[1].1,
        WorkItem::Analyse(vec![key(1, 600), key(1, 601), key(1, 602)])
    );
    assert!(s.audit().unwrap().is_clean(), "{:?}", s.audit().unwrap());
    assert_eq!(s.recent_blocks("chain", 1).unwrap()[0].0, 6);

    // The new chain's blocks are scraped again; the same ids come back from other blocks
    // and are stored fresh, queued once.
    commit(&s, 7, 8, 3, 0xbb);
    assert_eq!(s.counts().unwrap().tokens, 19);
    let a = s.audit().unwrap();
    assert!(a.is_clean(), "{a:?}");
    assert_eq!(s.recent_blocks("chain", 1).unwrap()[0], (8, hash(8, 0xbb)));
}

#[test]
fn unwinding_a_cursor_already_behind_leaves_it_and_an_unknown_one_fails() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    commit(&s, 1, 3, 1, 0xaa);
    s.rewind_cursor("chain", Position::start_of(2), 5).unwrap();
    let out = s.unwind("chain", 2, 9).unwrap();
    assert_eq!(out.tokens_removed, 1);
    assert_eq!(out.position, Position::start_of(2));
    assert!(matches!(
        s.unwind("nope", 1, 9),
        Err(StateError::NoSuchCursor(_))
    ));
    // A partly orphaned item survives with the tokens that stay.
    assert_eq!(s.outbox_take(Queue::Analyse, 10).unwrap().len(), 1);
    assert!(s.audit().unwrap().is_clean());
    // An item of orphaned tokens only goes, with its outbox count.
    commit(&s, 4, 5, 1, 0xaa);
    assert_eq!(s.counts().unwrap().outbox["analyse"], 2);
    let out = s.unwind("chain", 3, 10).unwrap();
    assert_eq!(
        (out.tokens_removed, out.position),
        (2, Position::start_of(4))
    );
    assert_eq!(s.counts().unwrap().outbox["analyse"], 1);
    assert!(s.audit().unwrap().is_clean());
}
