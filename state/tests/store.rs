//! The store's contract, through its public API.
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

fn token(source: &str, k: &TokenKey, block: u64) -> Token {
    Token::scraped(
        source,
        k,
        Some(format!("ipfs://bafy/{}", k.token_id)),
        block,
    )
}

fn cursor(block: u64, id: &str) -> Cursor {
    Cursor {
        position: Position {
            block,
            id: id.into(),
        },
        head: Some(block + 30),
        ..Default::default()
    }
}

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(dir.path(), &StoreOptions::default()).unwrap()
}

#[test]
fn a_page_commits_tokens_outbox_cursor_and_counters_together() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let toks: Vec<_> = (0..5)
        .map(|i| (key(1, i), token("graph", &key(1, i), 10)))
        .collect();
    let out = s
        .commit_page(&Page {
            cursor_name: "graph",
            cursor: cursor(10, &toks[4].0.graph_id()),
            tokens: &toks,
            contracts: &[(key(1, 0).contract, Contract::default())],
        })
        .unwrap();
    assert_eq!(
        out,
        PageOutcome {
            inserted: 5,
            duplicates: 0
        }
    );
    assert_eq!(s.cursor("graph").unwrap().unwrap().position.block, 10);
    assert_eq!(s.token(&key(1, 3)).unwrap().unwrap().mint_block, 10);
    assert!(s.token(&key(1, 9)).unwrap().is_none());
    let c = s.counts().unwrap();
    assert_eq!(c.tokens, 5);
    assert_eq!(c.contracts, 1);
    assert_eq!(c.tokens_by_status["queued"], 5);
    assert_eq!(c.tokens_by_source["graph"], 5);
    // One analysis item per page, listing the page's new tokens in page order.
    assert_eq!(c.outbox["analyse"], 1);
    let items = s.outbox_take(Queue::Analyse, 100).unwrap();
    assert_eq!(
        items.into_iter().map(|(_, w)| w).collect::<Vec<_>>(),
        vec![WorkItem::Analyse(toks.iter().map(|(k, _)| *k).collect())]
    );
    assert!(s.audit().unwrap().is_clean());
}

#[test]
fn tokens_already_stored_are_duplicates_whichever_source_or_page_brings_them() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let a: Vec<_> = (0..3)
        .map(|i| (key(1, i), token("graph", &key(1, i), 5)))
        .collect();
    s.commit_page(&Page {
        cursor_name: "graph",
        cursor: cursor(5, ""),
        tokens: &a,
        contracts: &[],
    })
    .unwrap();
    // Same tokens from another source, plus one repeated inside the page itself.
    let mut b: Vec<_> = (1..5)
        .map(|i| (key(1, i), token("rpc", &key(1, i), 5)))
        .collect();
    b.push(b[3].clone());
    let out = s
        .commit_page(&Page {
            cursor_name: "rpc",
            cursor: cursor(5, ""),
            tokens: &b,
            contracts: &[],
        })
        .unwrap();
    assert_eq!(
        out,
        PageOutcome {
            inserted: 2,
            duplicates: 3
        }
    );
    let c = s.counts().unwrap();
    assert_eq!(
        (
            c.tokens,
            c.tokens_by_source["graph"],
            c.tokens_by_source["rpc"]
        ),
        (5, 3, 2)
    );
    assert_eq!(s.token(&key(1, 1)).unwrap().unwrap().source, "graph");
    assert_eq!(c.outbox["analyse"], 2);
    let items = s.outbox_take(Queue::Analyse, 10).unwrap();
    assert_eq!(items[1].1, WorkItem::Analyse(vec![key(1, 3), key(1, 4)]));
    let audit = s.audit().unwrap();
    assert!(audit.is_clean(), "{audit:?}");
}

#[test]
fn cursors_move_forward_only_unless_rewound_on_purpose() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    s.commit_page(&Page {
        cursor_name: "g",
        cursor: cursor(100, "0x01_5"),
        tokens: &[],
        contracts: &[],
    })
    .unwrap();
    let err = s
        .commit_page(&Page {
            cursor_name: "g",
            cursor: cursor(100, "0x01_4"),
            tokens: &[],
            contracts: &[],
        })
        .unwrap_err();
    assert!(matches!(err, StateError::CursorBackwards { .. }), "{err}");
    assert!(err.to_string().contains("nifty cursor rewind"), "{err}");

    let back = Position {
        block: 50,
        id: String::new(),
    };
    assert!(matches!(
        s.set_cursor("g", back.clone(), 1),
        Err(StateError::CursorBackwards { .. })
    ));
    let ahead = Position {
        block: 200,
        id: String::new(),
    };
    assert!(matches!(
        s.rewind_cursor("g", ahead.clone(), 1),
        Err(StateError::NotARewind { .. })
    ));
    assert!(matches!(
        s.rewind_cursor("nope", back.clone(), 1),
        Err(StateError::NoSuchCursor(_))
    ));

    let c = s.rewind_cursor("g", back.clone(), 7).unwrap();
    assert_eq!(
        (c.position.clone(), c.updated_ms, c.head),
        (back, 7, Some(130))
    );
    s.set_cursor("g", ahead.clone(), 8).unwrap();
    assert_eq!(s.cursor("g").unwrap().unwrap().position, ahead);
    // A failed move leaves the cursor where it was.
    assert_eq!(s.cursors().unwrap().len(), 1);
}

#[test]
fn a_second_open_gets_the_in_use_error_naming_the_dir() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let err = Store::open(dir.path(), &StoreOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StateError::InUse { .. }));
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
    assert!(
        msg.contains(&format!("pid {}", std::process::id())),
        "{msg}"
    );
    // A holder without an API (a backfill) is not offered as something to talk to.
    assert!(
        msg.contains("serves no API") && !msg.contains("--api"),
        "{msg}"
    );
    // A daemon says where its API is, wherever it listens, and the error passes it on.
    s.announce_api("http://127.0.0.1:19999").unwrap();
    let msg = Store::open(dir.path(), &StoreOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("--api http://127.0.0.1:19999") && !msg.contains("8640"),
        "{msg}"
    );
    drop(s);
    // Released with the last handle.
    open(&dir);
}

#[test]
fn a_data_dir_that_is_a_file_is_named_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain");
    std::fs::write(&file, b"x").unwrap();
    for (data_dir, culprit) in [
        (file.clone(), file.clone()),
        (file.join("below"), file.clone()),
    ] {
        let msg = Store::open(&data_dir, &StoreOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains(&format!("{} is a file, not a folder", culprit.display())),
            "{msg}"
        );
        assert!(!msg.contains("os error"), "{msg}");
    }
}

#[test]
fn an_unknown_schema_version_is_refused_not_guessed() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(&dir));
    {
        let db = sled::open(dir.path().join("sled")).unwrap();
        db.insert(b"schema_version", &99u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let err = Store::open(dir.path(), &StoreOptions::default()).unwrap_err();
    assert!(
        matches!(
            err,
            StateError::UnknownSchema {
                found: 99,
                supported: 1,
                ..
            }
        ),
        "{err}"
    );

    let foreign = tempfile::tempdir().unwrap();
    {
        let db = sled::open(foreign.path().join("sled")).unwrap();
        db.insert(b"someone", b"else").unwrap();
        db.flush().unwrap();
    }
    let err = Store::open(foreign.path(), &StoreOptions::default()).unwrap_err();
    assert!(matches!(err, StateError::MissingSchema { .. }), "{err}");
}

#[test]
fn analysis_links_pins_once_per_cid_and_keeps_counters() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let toks: Vec<_> = (0..3)
        .map(|i| (key(2, i), token("graph", &key(2, i), 1)))
        .collect();
    s.commit_page(&Page {
        cursor_name: "graph",
        cursor: cursor(1, ""),
        tokens: &toks,
        contracts: &[],
    })
    .unwrap();
    let items = s.outbox_take(Queue::Analyse, 10).unwrap();
    let shared = Resource {
        cid: b"shared-image".to_vec(),
        role: "image".into(),
    };
    let [(ok, WorkItem::Analyse(keys))] = &items[..] else {
        panic!("{items:?}")
    };
    for (i, k) in keys.iter().enumerate() {
        // The item is acknowledged with the page's last token.
        let ok = (i == keys.len() - 1).then_some(*ok);
        let meta = Resource {
            cid: format!("meta-{i}").into_bytes(),
            role: "metadata".into(),
        };
        if i == 2 {
            s.record_analysis(
                k,
                TokenStatus::ContentFetchFailed,
                Some("http_404"),
                &[],
                ok,
                5,
            )
            .unwrap();
        } else {
            s.record_analysis(k, TokenStatus::Parsed, None, &[meta, shared.clone()], ok, 5)
                .unwrap();
        }
    }
    let c = s.counts().unwrap();
    assert_eq!(c.pins, 3, "{c:?}");
    assert_eq!(c.pins_by_status["wanted"], 3);
    assert_eq!(c.outbox.get("analyse"), None);
    assert_eq!(c.outbox["pin"], 3);
    assert_eq!(c.tokens_by_status["parsed"], 2);
    assert_eq!(c.failures["fetch.http_404"], 1);
    let p = s.pin(b"shared-image").unwrap().unwrap();
    assert_eq!((p.refs, p.status), (2, PinStatus::Wanted));
    assert_eq!(p.first_use.as_ref().unwrap().1, "image");

    let p = s
        .set_pin_status(
            b"shared-image",
            PinStatus::Retrying,
            Some("timeout"),
            None,
            true,
            9,
        )
        .unwrap();
    assert_eq!((p.attempts, p.last_error.as_deref()), (1, Some("timeout")));
    let p = s
        .set_pin_status(
            b"shared-image",
            PinStatus::Pinned,
            None,
            Some(42),
            false,
            10,
        )
        .unwrap();
    assert_eq!((p.size, p.last_error), (Some(42), None));
    assert_eq!(s.counts().unwrap().pins_by_status["pinned"], 1);

    // Re-analysing a token moves its references instead of adding to them.
    s.record_analysis(
        &key(2, 0),
        TokenStatus::Parsed,
        None,
        std::slice::from_ref(&shared),
        None,
        11,
    )
    .unwrap();
    assert_eq!(s.pin(b"meta-0").unwrap().unwrap().refs, 0);
    assert_eq!(s.pin(b"shared-image").unwrap().unwrap().refs, 2);
    let audit = s.audit().unwrap();
    assert!(audit.is_clean(), "{audit:?}");

    // A token gone meanwhile (a reorg took it back out) is skipped, not an error that
    // would throw away the rest of the batch.
    s.record_analysis(&key(9, 9), TokenStatus::Parsed, None, &[], None, 1)
        .unwrap();
    assert!(s.token(&key(9, 9)).unwrap().is_none());
    assert!(s.audit().unwrap().is_clean());
}

#[test]
fn outbox_ack_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    for i in 0..4u64 {
        let toks = [(key(3, i), token("g", &key(3, i), i))];
        let c = cursor(i, "");
        s.commit_page(&Page {
            cursor_name: "g",
            cursor: c,
            tokens: &toks,
            contracts: &[],
        })
        .unwrap();
    }
    let first: Vec<_> = s
        .outbox_take(Queue::Analyse, 2)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(s.outbox_ack(&first).unwrap(), 2);
    assert_eq!(s.outbox_ack(&first).unwrap(), 0);
    assert_eq!(s.counts().unwrap().outbox["analyse"], 2);
    assert_eq!(s.outbox_take(Queue::Pin, 10).unwrap().len(), 0);
    let rest = s.outbox_take(Queue::Analyse, 10).unwrap();
    assert_eq!(rest[0].1, WorkItem::Analyse(vec![key(3, 2)]));
    assert!(s.audit().unwrap().is_clean());
}

#[test]
fn runs_are_listed_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    for i in 0..5u64 {
        let id = s.start_run(&format!("job{i}"), i * 10).unwrap();
        assert_eq!(id, i);
        let outcome = if i == 3 {
            RunOutcome::Failed {
                reason: "boom".into(),
            }
        } else {
            RunOutcome::Completed
        };
        s.finish_run(
            id,
            &RunRecord {
                job: format!("job{i}"),
                started_ms: i * 10,
                ended_ms: Some(i * 10 + 5),
                outcome,
                pages: i,
                items: i * 100,
                errors: 0,
            },
        )
        .unwrap();
    }
    let runs = s.runs(2).unwrap();
    assert_eq!(
        runs.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![4, 3]
    );
    assert_eq!(runs[1].1.outcome.name(), "failed");
    drop(s);
    // Sequences survive a reopen.
    let s = open(&dir);
    assert_eq!(s.start_run("again", 99).unwrap(), 5);
    // Pruning keeps the newest, and ids keep counting.
    assert_eq!(s.prune_runs(10).unwrap(), 0);
    assert_eq!(s.prune_runs(2).unwrap(), 4);
    let kept: Vec<u64> = s.runs(100).unwrap().iter().map(|(id, _)| *id).collect();
    assert_eq!(kept, vec![5, 4]);
    assert_eq!(s.start_run("later", 100).unwrap(), 6);
    // Runs left open are found without searching: 5 and 6 were never finished, and
    // thousands of closed runs later both are still found.
    for i in 0..3000u64 {
        let id = s.start_run("tick", 200 + i).unwrap();
        let mut rec = s.runs(1).unwrap()[0].1.clone();
        rec.outcome = RunOutcome::Skipped;
        s.finish_run(id, &rec).unwrap();
    }
    let open: Vec<u64> = s.open_runs().unwrap().iter().map(|(id, _)| *id).collect();
    assert_eq!(open, vec![5, 6]);
    let mut rec = s.open_runs().unwrap()[1].1.clone();
    assert_eq!(rec.job, "later");
    rec.outcome = RunOutcome::Interrupted;
    s.finish_run(6, &rec).unwrap();
    assert_eq!(s.open_runs().unwrap().len(), 1);
    // An open run whose record was pruned has nothing left to close.
    s.prune_runs(10).unwrap();
    assert!(s.open_runs().unwrap().is_empty());
}

#[test]
fn tokens_link_when_every_resource_is_pinned_and_failures_are_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let toks: Vec<_> = (0..4)
        .map(|i| (key(7, i), token("graph", &key(7, i), 3)))
        .collect();
    s.commit_page(&Page {
        cursor_name: "graph",
        cursor: cursor(3, &toks[3].0.graph_id()),
        tokens: &toks,
        contracts: &[],
    })
    .unwrap();
    let [(item, _)] = &s.outbox_take(Queue::Analyse, 10).unwrap()[..] else {
        panic!()
    };
    let res = |cid: &str, role: &str| Resource {
        cid: cid.as_bytes().to_vec(),
        role: role.into(),
    };
    let rec = |i: u64, status, reason: Option<&str>, resources| AnalysisRecord {
        key: key(7, i),
        status,
        reason: reason.map(str::to_owned),
        resources,
    };
    // 0 needs X and Y, 1 needs X, 2 failed, 3 has nothing on IPFS.
    s.record_analyses(
        &[
            rec(
                0,
                TokenStatus::Parsed,
                None,
                vec![res("X", "metadata"), res("Y", "image")],
            ),
            rec(1, TokenStatus::Parsed, None, vec![res("X", "metadata")]),
            rec(2, TokenStatus::ContentFetchFailed, Some("timeout"), vec![]),
            rec(3, TokenStatus::Parsed, Some("not_on_ipfs"), vec![]),
        ],
        &[*item],
        100,
    )
    .unwrap();
    assert_eq!(s.pin_users(b"X", 10).unwrap(), vec![key(7, 0), key(7, 1)]);
    let c = s.counts().unwrap();
    assert_eq!((c.pins, c.outbox["pin"]), (2, 2));
    assert_eq!(c.failures["fetch.timeout"], 1);
    assert_eq!(c.failures["unpinnable.not_on_ipfs"], 1);
    let (n, ex) = s.failure_entries("fetch", "timeout", None, 5).unwrap();
    assert_eq!(
        (n, ex[0].item.clone(), ex[0].at_ms),
        (1, key(7, 2).encode().to_vec(), 100)
    );
    assert_eq!(
        s.failure_entries("fetch", "timeout", Some(101), 5)
            .unwrap()
            .0,
        0
    );

    let update = |cid: &str, status, error: Option<&str>| PinUpdate {
        cid: cid.as_bytes().to_vec(),
        status,
        error: error.map(str::to_owned),
        attempted: true,
        retry_at_ms: None,
        size: None,
    };
    s.record_pin_updates(
        &[
            update("X", PinStatus::Queued, None),
            update("Y", PinStatus::Queued, None),
        ],
        &[],
        101,
    )
    .unwrap();
    assert_eq!(s.pending_pins(None, 10).unwrap().len(), 2);
    assert_eq!(s.pending_pins(Some(b"X"), 10).unwrap()[0].0, b"Y");

    // X pinned: token 1 is complete, token 0 still waits for Y.
    let linked = s
        .record_pin_updates(&[update("X", PinStatus::Pinned, None)], &[], 102)
        .unwrap();
    assert_eq!(linked, 1);
    assert_eq!(
        s.token(&key(7, 1)).unwrap().unwrap().status,
        TokenStatus::Linked
    );
    assert_eq!(
        s.token(&key(7, 0)).unwrap().unwrap().status,
        TokenStatus::Parsed
    );
    // Y fails for good, then is recovered and pinned: token 0 links.
    s.record_pin_updates(
        &[update(
            "Y",
            PinStatus::Failed,
            Some("pin_error: context deadline exceeded"),
        )],
        &[],
        103,
    )
    .unwrap();
    let c = s.counts().unwrap();
    assert_eq!(c.failures["pin.pin_error"], 1);
    assert!(s.audit().unwrap().is_clean(), "{:?}", s.audit().unwrap());
    s.record_pin_updates(&[update("Y", PinStatus::Pinned, None)], &[], 104)
        .unwrap();
    assert_eq!(
        s.token(&key(7, 0)).unwrap().unwrap().status,
        TokenStatus::Linked
    );
    let c = s.counts().unwrap();
    assert_eq!(c.tokens_by_status["linked"], 2);
    assert_eq!(c.failures.get("pin.pin_error"), None);
    assert!(s.pending_pins(None, 10).unwrap().is_empty());
    let audit = s.audit().unwrap();
    assert!(audit.is_clean(), "{audit:?}");
}

#[test]
fn pins_completing_together_link_a_token_and_late_analyses_link_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let toks: Vec<_> = (0..2)
        .map(|i| (key(8, i), token("graph", &key(8, i), 3)))
        .collect();
    s.commit_page(&Page {
        cursor_name: "graph",
        cursor: cursor(3, &toks[1].0.graph_id()),
        tokens: &toks,
        contracts: &[],
    })
    .unwrap();
    let both = vec![
        Resource {
            cid: b"A".to_vec(),
            role: "metadata".into(),
        },
        Resource {
            cid: b"B".to_vec(),
            role: "image".into(),
        },
    ];
    s.record_analysis(&key(8, 0), TokenStatus::Parsed, None, &both, None, 1)
        .unwrap();
    let pinned = |cid: &[u8]| PinUpdate {
        cid: cid.to_vec(),
        status: PinStatus::Pinned,
        error: None,
        attempted: false,
        retry_at_ms: None,
        size: None,
    };
    assert_eq!(
        s.record_pin_updates(&[pinned(b"A"), pinned(b"B")], &[], 2)
            .unwrap(),
        1
    );
    assert_eq!(
        s.token(&key(8, 0)).unwrap().unwrap().status,
        TokenStatus::Linked
    );
    // A token analysed after its pins completed is linked by the analysis itself.
    s.record_analysis(&key(8, 1), TokenStatus::Parsed, None, &both, None, 3)
        .unwrap();
    assert_eq!(
        s.token(&key(8, 1)).unwrap().unwrap().status,
        TokenStatus::Linked
    );
    assert!(s.audit().unwrap().is_clean());
}

#[test]
fn below_the_free_space_reserve_pages_wait_and_small_records_still_land() {
    let dir = tempfile::tempdir().unwrap();
    fn page(toks: &[(TokenKey, Token)], block: u64) -> Page<'_> {
        Page {
            cursor_name: "graph",
            cursor: cursor(block, ""),
            tokens: toks,
            contracts: &[],
        }
    }
    let toks: Vec<_> = (0..3)
        .map(|i| (key(1, i), token("graph", &key(1, i), 10)))
        .collect();
    {
        let s = open(&dir);
        s.commit_page(&page(&toks[..1], 10)).unwrap();
    }
    // A reserve no disk has: as if the filesystem were full.
    let full = Store::open(
        dir.path(),
        &StoreOptions {
            min_free_bytes: u64::MAX,
            ..Default::default()
        },
    )
    .unwrap();
    let err = full.commit_page(&page(&toks[1..], 11)).unwrap_err();
    assert!(matches!(err, StateError::DiskFull { .. }), "{err:?}");
    assert!(err.is_retryable() && !err.is_fatal());
    let msg = err.to_string();
    assert!(
        msg.contains(&dir.path().display().to_string()) && msg.contains("No space left on device"),
        "{msg}"
    );
    // Nothing of the refused page was written; the store still takes small records.
    assert!(full.token(&key(1, 1)).unwrap().is_none());
    assert_eq!(full.cursor("graph").unwrap().unwrap().position.block, 10);
    let run = full.start_run("scrape/graph", 1).unwrap();
    full.finish_run(
        run,
        &RunRecord {
            job: "scrape/graph".into(),
            started_ms: 1,
            ended_ms: Some(2),
            outcome: RunOutcome::Failed { reason: msg },
            pages: 0,
            items: 0,
            errors: 0,
        },
    )
    .unwrap();
    assert!(full.failure().is_none());
    drop(full);
    // Space back: the same page commits.
    let s = open(&dir);
    assert_eq!(s.commit_page(&page(&toks[1..], 11)).unwrap().inserted, 2);
    assert!(s.audit().unwrap().is_clean());
}

#[test]
fn an_unfinished_snapshot_left_by_a_full_disk_does_not_stop_the_store_opening() {
    let dir = tempfile::tempdir().unwrap();
    let toks: Vec<_> = (0..50)
        .map(|i| (key(2, i), token("graph", &key(2, i), 7)))
        .collect();
    {
        let s = open(&dir);
        s.commit_page(&Page {
            cursor_name: "graph",
            cursor: cursor(7, &toks[49].0.graph_id()),
            tokens: &toks,
            contracts: &[],
        })
        .unwrap();
    }
    // What sled leaves when the disk fills while it writes a snapshot: an empty file under
    // the name it writes to before renaming, newer than any finished snapshot.
    let sled_dir = dir.path().join("sled");
    std::fs::write(sled_dir.join("snap.FFFFFFFFFFFFFFF0.generating"), b"").unwrap();
    let s = open(&dir);
    assert_eq!(s.counts().unwrap().tokens, 50);
    assert_eq!(
        s.cursor("graph").unwrap().unwrap().position.id,
        toks[49].0.graph_id()
    );
    assert!(s.audit().unwrap().is_clean());
    let left: Vec<_> = std::fs::read_dir(&sled_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".generating"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A scrub that removes one secret, as the binary's (which removes every configured one).
fn scrub_of(secret: &'static str) -> TextScrub {
    TextScrub::new(1, move |t: &str| t.replace(secret, "[redacted]"))
}

#[test]
fn stored_run_reasons_and_pin_errors_lose_their_secrets_on_open_and_on_write() {
    const KEY: &str = "sk-VERYSECRET-1234567890abcdef";
    let dir = tempfile::tempdir().unwrap();
    // An earlier build stored the upstream's words as they came.
    {
        let s = open(&dir);
        let run = s.start_run("backfill/x", 1).unwrap();
        s.finish_run(
            run,
            &RunRecord {
                job: "backfill/x".into(),
                started_ms: 1,
                ended_ms: Some(2),
                outcome: RunOutcome::Failed {
                    reason: format!("graphql: bad key Bearer {KEY}"),
                },
                pages: 0,
                items: 0,
                errors: 1,
            },
        )
        .unwrap();
        let toks = [(key(1, 1), token("graph", &key(1, 1), 10))];
        s.commit_page(&Page {
            cursor_name: "graph",
            cursor: cursor(10, &toks[0].0.graph_id()),
            tokens: &toks,
            contracts: &[],
        })
        .unwrap();
        let items = s.outbox_take(Queue::Analyse, 10).unwrap();
        let meta = Resource {
            cid: b"meta".to_vec(),
            role: "metadata".into(),
        };
        s.record_analysis(
            &key(1, 1),
            TokenStatus::Parsed,
            None,
            &[meta],
            Some(items[0].0),
            5,
        )
        .unwrap();
        s.set_pin_status(
            b"meta",
            PinStatus::Failed,
            Some(&format!("http_401: the cluster said token={KEY}")),
            None,
            true,
            6,
        )
        .unwrap();
        assert!(
            s.pin(b"meta")
                .unwrap()
                .unwrap()
                .last_error
                .unwrap()
                .contains(KEY)
        );
    }
    let opts = StoreOptions {
        scrub: Some(scrub_of(KEY)),
        ..Default::default()
    };
    let s = Store::open(dir.path(), &opts).unwrap();
    let runs = s.runs(10).unwrap();
    assert_eq!(
        runs[0].1.outcome,
        RunOutcome::Failed {
            reason: "graphql: bad key Bearer [redacted]".into()
        }
    );
    let p = s.pin(b"meta").unwrap().unwrap();
    assert_eq!(
        p.last_error.as_deref(),
        Some("http_401: the cluster said token=[redacted]")
    );
    // The reason word the failures index is keyed by did not move.
    assert_eq!(p.reason(), "http_401");
    assert_eq!(s.counts().unwrap().failures["pin.http_401"], 1);
    assert!(s.audit().unwrap().is_clean());
    // New writes pass the same scrub.
    let run = s.start_run(&format!("backfill/{KEY}"), 3).unwrap();
    let rec = RunRecord {
        job: "backfill/y".into(),
        started_ms: 3,
        ended_ms: Some(4),
        outcome: RunOutcome::Failed {
            reason: format!("rpc: echoed {KEY}"),
        },
        pages: 0,
        items: 0,
        errors: 0,
    };
    let (_, open_rec) = s.runs(1).unwrap().remove(0);
    assert_eq!(open_rec.job, "backfill/[redacted]");
    s.finish_run(run, &rec).unwrap();
    s.set_pin_status(
        b"meta",
        PinStatus::Retrying,
        Some(&format!("timeout {KEY}")),
        None,
        true,
        7,
    )
    .unwrap();
    let all = format!("{:?}{:?}", s.runs(10).unwrap(), s.pin(b"meta").unwrap());
    assert!(!all.contains(KEY), "{all}");
    drop(s);
    // The scan runs once per set of secrets: a store reopened with the same scrub (or
    // none) is not scanned again, so text written meanwhile without a scrub stays.
    {
        let s = open(&dir);
        s.set_pin_status(
            b"meta",
            PinStatus::Retrying,
            Some(&format!("timeout {KEY}")),
            None,
            true,
            8,
        )
        .unwrap();
    }
    let s = Store::open(dir.path(), &opts).unwrap();
    assert!(
        s.pin(b"meta")
            .unwrap()
            .unwrap()
            .last_error
            .unwrap()
            .contains(KEY)
    );
    drop(s);
    // A scrub that knows more secrets scans again.
    let more = StoreOptions {
        scrub: Some(TextScrub::new(2, |t: &str| t.replace(KEY, "[redacted]"))),
        ..Default::default()
    };
    let s = Store::open(dir.path(), &more).unwrap();
    assert_eq!(
        s.pin(b"meta").unwrap().unwrap().last_error.as_deref(),
        Some("timeout [redacted]")
    );
    assert!(!format!("{:?}", more.scrub).contains(KEY));
}
