//! The analysis pass over tokens a source found without a URI: the source's reason (a chain
//! source's `reverted` tokenURI call) is what the token fails with, and the failure is
//! indexed and counted like any other.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use nifty_pinner::fetch::{FetchOptions, Fetcher};
use nifty_pinner::pass::{self, Limits, PassOptions};
use nifty_state::{
    Address, Cursor, Page, Store, StoreOptions, Token, TokenId, TokenKey, TokenStatus,
};
use url::Url;

fn key(id: u64) -> TokenKey {
    TokenKey {
        contract: Address([9; 20]),
        token_id: TokenId(id.into()),
    }
}

#[tokio::test]
async fn a_source_s_reason_for_a_missing_uri_is_the_token_s_failure() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    let mut reverted = Token::scraped("chain", &key(1), None, 5);
    reverted.reason = Some("reverted".into());
    let missing = Token::scraped("graph", &key(2), None, 5);
    let inline = Token::scraped(
        "chain",
        &key(3),
        Some(r#"data:application/json,{"name":"x"}"#.into()),
        5,
    );
    store
        .commit_page(&Page {
            cursor_name: "chain",
            cursor: Cursor::default(),
            tokens: &[(key(1), reverted), (key(2), missing), (key(3), inline)],
            contracts: &[],
        })
        .unwrap();
    // Nothing here needs the network: the gateway is a closed port.
    let fetcher = Fetcher::new(FetchOptions::new(
        Url::parse("http://127.0.0.1:9/").unwrap(),
        Url::parse("http://127.0.0.1:9/ar").unwrap(),
    ))
    .unwrap();
    let report = pass::analyse(&store, &fetcher, &PassOptions::default(), &Limits::none())
        .await
        .unwrap();
    assert_eq!(report.handled, 3, "{report:?}");
    let t = |k| store.token(&key(k)).unwrap().unwrap();
    assert_eq!(
        (t(1).status, t(1).reason.as_deref()),
        (TokenStatus::NoUri, Some("reverted"))
    );
    assert_eq!(
        (t(2).status, t(2).reason.as_deref()),
        (TokenStatus::NoUri, Some("missing"))
    );
    assert_ne!(t(3).status, TokenStatus::Queued);
    let counts = store.counts().unwrap();
    assert_eq!(counts.failures["no_uri.reverted"], 1, "{counts:?}");
    assert_eq!(counts.failures["no_uri.missing"], 1, "{counts:?}");
    assert_eq!(
        store.failure_examples("no_uri", "reverted", 5).unwrap()[0].item,
        key(1).encode().to_vec()
    );
    assert!(store.audit().unwrap().is_clean());
}

/// A stop signal while a fetch hangs (a gateway that takes its time, retried for a minute)
/// ends the pass at once: what finished is recorded, the hanging token stays queued with its
/// item, and the next pass analyses it.
#[tokio::test]
async fn a_stop_drops_fetches_in_flight_and_keeps_their_tokens_queued() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    let requests = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&requests);
    let app = axum::Router::new().route(
        "/ipfs/{*rest}",
        axum::routing::get(move || {
            let seen = Arc::clone(&seen);
            async move {
                if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
                r#"{"name":"at last"}"#
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    let uri = "ipfs://bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi/1.json";
    let inline = r#"data:application/json,{"name":"x"}"#;
    for (k, uri) in [(1, uri), (2, inline)] {
        let token = Token::scraped("graph", &key(k), Some(uri.into()), 5);
        store
            .commit_page(&Page {
                cursor_name: "graph",
                cursor: Cursor::default(),
                tokens: &[(key(k), token)],
                contracts: &[],
            })
            .unwrap();
    }
    let base = Url::parse(&format!("http://{addr}")).unwrap();
    let mut opts = FetchOptions::new(base.clone(), base);
    opts.timeout = Duration::from_secs(30);
    let fetcher = Fetcher::new(opts).unwrap();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let limits = Limits {
        stop,
        deadline: None,
    };
    let pass = {
        let (store, fetcher) = (store.clone(), fetcher.clone());
        tokio::spawn(async move {
            pass::analyse(&store, &fetcher, &PassOptions::default(), &limits).await
        })
    };
    while requests.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = Instant::now();
    stop_tx.send(true).unwrap();
    let report = tokio::time::timeout(Duration::from_secs(5), pass)
        .await
        .expect("the pass waited for a hanging fetch after the stop")
        .unwrap()
        .unwrap();
    assert!(
        signalled.elapsed() < Duration::from_secs(2),
        "{:?}",
        signalled.elapsed()
    );
    assert_eq!(report.ending, Some(pass::Ending::Stopped), "{report:?}");
    let t = |k| store.token(&key(k)).unwrap().unwrap();
    assert_eq!(t(1).status, TokenStatus::Queued);
    assert_ne!(t(2).status, TokenStatus::Queued);
    assert_eq!(store.counts().unwrap().outbox.get("analyse"), Some(&1));

    let report = pass::analyse(&store, &fetcher, &PassOptions::default(), &Limits::none())
        .await
        .unwrap();
    assert_eq!(report.ending, Some(pass::Ending::Drained), "{report:?}");
    assert_eq!(t(1).status, TokenStatus::Parsed);
    assert!(store.audit().unwrap().is_clean());
}
