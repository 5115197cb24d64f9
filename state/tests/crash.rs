//! Crash safety: a child process commits pages in a loop and is killed with SIGKILL at
//! random moments. After every kill the store must open, its cursor must match exactly the
//! tokens present, every counter must match its tree, nothing may be duplicated, and no
//! commit the child saw acknowledged may be missing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nifty_state::*;
use rand::{Rng, SeedableRng};

const CHILD_ENV: &str = "NIFTY_CRASH_CHILD_DIR";
const CURSOR: &str = "crash";
const KILLS: usize = 60;

/// The tokens page `k` brings: 10 to 70 new ones, plus (every fifth page) one already
/// stored by the page before, which must be counted as a duplicate, not stored twice.
fn page_tokens(k: u64) -> Vec<TokenKey> {
    let key = |page: u64, j: u64| {
        let mut a = [0u8; 20];
        a[0] = (page % 3) as u8 + 1;
        // Ids far apart in magnitude, so byte order and numeric order both get exercised.
        let id = if j.is_multiple_of(2) {
            (page * 1000 + j).into()
        } else {
            primitive_types::U256::MAX - page * 1000 - j
        };
        TokenKey {
            contract: Address(a),
            token_id: TokenId(id),
        }
    };
    let mut v: Vec<_> = (0..10 * (k % 7 + 1)).map(|j| key(k, j)).collect();
    if k.is_multiple_of(5) && k > 1 {
        v.push(key(k - 1, 0));
    }
    v
}

fn expected_through(k: u64) -> BTreeSet<TokenKey> {
    (1..=k).flat_map(page_tokens).collect()
}

/// The child's loop. Runs only when the parent test starts this binary in the child role.
#[test]
#[ignore = "child role of crash_loop_never_loses_or_duplicates; started by it"]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let store = Store::open(dir.as_ref(), &StoreOptions::default()).unwrap();
    let mut k = store
        .cursor(CURSOR)
        .unwrap()
        .map(|c| c.position.block)
        .unwrap_or(0);
    loop {
        k += 1;
        let tokens: Vec<_> = page_tokens(k)
            .into_iter()
            .map(|key| {
                (
                    key,
                    Token::scraped("crashsrc", &key, Some("ipfs://x".into()), k),
                )
            })
            .collect();
        let last = tokens.last().unwrap().0.graph_id();
        let cursor = Cursor {
            position: Position { block: k, id: last },
            head: Some(k + 20),
            ..Default::default()
        };
        store
            .commit_page(&Page {
                cursor_name: CURSOR,
                cursor,
                tokens: &tokens,
                contracts: &[],
            })
            .unwrap();
        println!("COMMITTED {k}");
        // Analysis transactions run between pages too, so kills also land inside those.
        // A repeated item (killed halfway last time) skips tokens already analysed, as
        // the real analyser does; the item is acknowledged with its last token.
        for (ok, item) in store.outbox_take(Queue::Analyse, 1).unwrap() {
            let WorkItem::Analyse(keys) = item else {
                continue;
            };
            for (i, key) in keys.iter().enumerate() {
                let last = (i + 1 == keys.len()).then_some(ok);
                if store.token(key).unwrap().unwrap().status != TokenStatus::Queued {
                    store
                        .outbox_ack(&last.into_iter().collect::<Vec<_>>())
                        .unwrap();
                    continue;
                }
                let n = key.token_id.0.low_u64() % 5;
                let res = vec![Resource {
                    cid: format!("cid-{n}").into_bytes(),
                    role: "image".into(),
                }];
                store
                    .record_analysis(key, TokenStatus::Parsed, None, &res, last, k)
                    .unwrap();
            }
        }
    }
}

#[test]
fn crash_loop_never_loses_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let seed: u64 = std::env::var("NIFTY_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().r#gen());
    eprintln!("crash loop seed {seed} (set NIFTY_CRASH_SEED to replay)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut killed_mid_loop = 0;
    let mut previous = 0;
    let started = Instant::now();
    for round in 0..KILLS {
        let mut child = Command::new(&exe)
            .args([
                "crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(k) = line.strip_prefix("COMMITTED ") {
                    let _ = tx.send(k.trim().parse::<u64>().unwrap());
                }
            }
        });
        // Wait for the child to commit something, then kill it at a random moment: most
        // kills land mid-commit or mid-analysis, a few during open.
        let first = rx.recv_timeout(Duration::from_secs(30));
        if first.is_ok() {
            killed_mid_loop += 1;
        }
        std::thread::sleep(Duration::from_micros(rng.gen_range(0..40_000)));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "round {round}: child ended by itself: {status}"
        );
        reader.join().unwrap();
        let acknowledged = rx.try_iter().chain(first.ok()).max().unwrap_or(previous);

        let store = Store::open(dir.path(), &StoreOptions::default())
            .unwrap_or_else(|e| panic!("round {round}: store does not open after kill: {e}"));
        let cursor = store
            .cursor(CURSOR)
            .unwrap()
            .map(|c| c.position.block)
            .unwrap_or(0);
        assert!(
            cursor >= acknowledged,
            "round {round}: cursor {cursor} lost acknowledged page {acknowledged}"
        );
        assert!(
            cursor >= previous,
            "round {round}: cursor went back from {previous} to {cursor}"
        );
        let mut present = BTreeSet::new();
        let mut dups = 0;
        store
            .for_each_token(|k, t| {
                assert!(
                    t.mint_block <= cursor,
                    "token {k} from page {} beyond cursor {cursor}",
                    t.mint_block
                );
                if !present.insert(k) {
                    dups += 1;
                }
            })
            .unwrap();
        assert_eq!(dups, 0);
        let want = expected_through(cursor);
        assert_eq!(present.len(), want.len(), "round {round}: cursor {cursor}");
        assert!(
            present == want,
            "round {round}: token set differs from pages 1..={cursor}"
        );
        let audit = store.audit().unwrap();
        assert!(audit.is_clean(), "round {round}: {audit:?}");
        assert_eq!(audit.tokens, want.len() as u64);
        assert_eq!(store.counts().unwrap().tokens, want.len() as u64);
        previous = cursor;
    }
    eprintln!(
        "{KILLS} kills ({killed_mid_loop} after at least one commit), {previous} pages, {} tokens, {:?}",
        expected_through(previous).len(),
        started.elapsed()
    );
    assert!(
        killed_mid_loop >= KILLS * 9 / 10,
        "only {killed_mid_loop} kills landed in the loop"
    );
    assert!(
        previous >= KILLS as u64,
        "the child made too little progress: {previous} pages"
    );
}
