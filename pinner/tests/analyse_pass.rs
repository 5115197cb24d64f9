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
