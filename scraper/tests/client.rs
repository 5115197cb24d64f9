//! The subgraph client against a scripted server on loopback: headers sent, every failure
//! mapped to the right error, retries where they help, secrets never in messages.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use nifty_scraper::ScrapeError;
use nifty_scraper::graph::{GraphClient, GraphClientConfig};
use nifty_scraper::retry::Backoff;

/// One scripted answer.
#[derive(Clone)]
struct Answer {
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
    body: String,
    delay: Duration,
}

fn ok(body: &str) -> Answer {
    Answer {
        status: 200,
        headers: vec![("content-type", "application/json")],
        body: body.into(),
        delay: Duration::ZERO,
    }
}

#[derive(Default)]
struct Script {
    answers: Mutex<VecDeque<Answer>>,
    seen: Mutex<Vec<HeaderMap>>,
}

async fn answer(State(s): State<Arc<Script>>, headers: HeaderMap) -> Response {
    s.seen.lock().unwrap().push(headers);
    let a = s
        .answers
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| ok(META));
    tokio::time::sleep(a.delay).await;
    let mut r = (StatusCode::from_u16(a.status).unwrap(), a.body).into_response();
    for (k, v) in a.headers {
        r.headers_mut().insert(k, v.parse().unwrap());
    }
    r
}

const META: &str = r#"{"data":{"_meta":{"block":{"number":120},"hasIndexingErrors":false}}}"#;
const EMPTY_PAGE: &str = r#"{"data":{"rest":[],"next":[]}}"#;
const SECRET: &str = "sk-live-abcdef0123456789";

async fn server(answers: Vec<Answer>) -> (String, Arc<Script>) {
    let script = Arc::new(Script {
        answers: Mutex::new(answers.into()),
        seen: Mutex::default(),
    });
    let app = Router::new()
        .route("/api/{key}/subgraphs/id/{id}", post(answer))
        .with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (
        format!("http://{addr}/api/{SECRET}/subgraphs/id/QmTest"),
        script,
    )
}

fn client(url: &str, timeout_ms: u64) -> GraphClient {
    GraphClient::new(GraphClientConfig {
        secrets: Default::default(),
        max_row_bytes: nifty_scraper::graph::client::DEFAULT_MAX_ROW_BYTES,
        url: url.into(),
        api_key: Some(SECRET.to_string().into()),
        timeout: Duration::from_millis(timeout_ms),
        backoff: Backoff {
            base: Duration::from_millis(10),
            max: Duration::from_millis(50),
            max_attempts: 4,
        },
    })
    .unwrap()
}

fn requests(s: &Script) -> usize {
    s.seen.lock().unwrap().len()
}

#[tokio::test]
async fn sends_the_bearer_key_and_reads_the_snapshot() {
    let (url, script) = server(vec![ok(META)]).await;
    let c = client(&url, 2000);
    let snap = c.snapshot(20).await.unwrap();
    assert_eq!((snap.head, snap.block), (120, 100));
    let seen = script.seen.lock().unwrap();
    assert_eq!(
        seen[0]["authorization"],
        format!("Bearer {SECRET}").as_str()
    );
    assert!(
        seen[0]["user-agent"]
            .to_str()
            .unwrap()
            .starts_with("nifty/")
    );
    assert!(!c.endpoint().contains(SECRET), "{}", c.endpoint());
}

#[tokio::test]
async fn transient_failures_are_retried_until_a_good_answer() {
    let truncated = &EMPTY_PAGE[..EMPTY_PAGE.len() / 2];
    let answers = vec![
        Answer {
            status: 503,
            headers: vec![],
            body: "upstream down".into(),
            delay: Duration::ZERO,
        },
        ok(truncated),
        ok("<html>gateway error</html>"),
        ok(r#"{"errors":[{"message":"Query timed out"}]}"#),
    ];
    let (url, script) = server([answers, vec![ok(EMPTY_PAGE)]].concat()).await;
    let c2 = GraphClient::new(GraphClientConfig {
        secrets: Default::default(),
        max_row_bytes: nifty_scraper::graph::client::DEFAULT_MAX_ROW_BYTES,
        url: url.clone(),
        api_key: None,
        timeout: Duration::from_secs(2),
        backoff: Backoff {
            base: Duration::from_millis(5),
            max: Duration::from_millis(20),
            max_attempts: 6,
        },
    })
    .unwrap();
    let page = c2.page(5, "", 100, 10, 100).await.unwrap();
    assert!(page.rest.is_empty() && page.next.is_empty());
    assert_eq!(requests(&script), 5);
    assert_eq!(
        c2.stats()
            .retries
            .load(std::sync::atomic::Ordering::Relaxed),
        4
    );
}

#[tokio::test]
async fn rate_limits_wait_for_retry_after() {
    let limited = Answer {
        status: 429,
        headers: vec![("retry-after", "1")],
        body: "slow down".into(),
        delay: Duration::ZERO,
    };
    let (url, script) = server(vec![limited, ok(META)]).await;
    let started = Instant::now();
    client(&url, 2000).snapshot(0).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(requests(&script), 2);
}

#[tokio::test]
async fn a_slow_answer_times_out_and_is_retried() {
    let slow = Answer {
        delay: Duration::from_millis(1500),
        ..ok(META)
    };
    let (url, script) = server(vec![slow, ok(META)]).await;
    let started = Instant::now();
    client(&url, 300).snapshot(0).await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(1400));
    assert_eq!(requests(&script), 2);
}

#[tokio::test]
async fn indexing_error_pages_are_never_used_even_with_data() {
    let partial = r#"{"data":{"rest":[],"next":[]},"errors":[{"message":"indexing_error"}]}"#;
    let (url, script) = server(vec![ok(partial); 4]).await;
    let err = client(&url, 2000)
        .page(5, "", 100, 10, 100)
        .await
        .unwrap_err();
    match &err {
        ScrapeError::GaveUp {
            attempts: 4, last, ..
        } => assert_eq!(last.kind(), "indexing_error"),
        e => panic!("{e:?}"),
    }
    assert_eq!(requests(&script), 4);
}

#[tokio::test]
async fn permanent_errors_fail_at_once() {
    type Case = (Answer, &'static str);
    let cases: Vec<Case> = vec![
        (
            ok(r#"{"errors":[{"message":"Type `Token` has no field `nope`"}]}"#),
            "graphql",
        ),
        (
            ok(
                r#"{"errors":[{"message":"subgraph Qm only has data starting at block number 500 and data for block number 100 is therefore not available"}]}"#,
            ),
            "snapshot_unavailable",
        ),
        (
            Answer {
                status: 400,
                headers: vec![],
                body: "bad request".into(),
                delay: Duration::ZERO,
            },
            "http_4xx",
        ),
        (
            ok(r#"{"data":{"_meta":{"block":{"number":120},"hasIndexingErrors":true}}}"#),
            "has_indexing_errors",
        ),
    ];
    for (a, kind) in cases {
        let (url, script) = server(vec![a]).await;
        let err = client(&url, 2000).snapshot(0).await.unwrap_err();
        assert_eq!(err.kind(), kind, "{err}");
        assert_eq!(requests(&script), 1, "{kind} must not be retried");
        assert!(!err.to_string().contains(SECRET), "{err}");
    }
}

#[tokio::test]
async fn connection_failures_never_show_the_key() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let url = format!("http://127.0.0.1:{port}/api/{SECRET}/subgraphs/id/QmTest");
    let err = client(&url, 500).snapshot(0).await.unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(
        matches!(err, ScrapeError::GaveUp { attempts: 4, .. }),
        "{shown}"
    );
    assert!(!shown.contains(SECRET), "{shown}");
}

#[tokio::test]
async fn error_pages_that_echo_the_path_or_key_are_scrubbed() {
    let echo = Answer {
        status: 404,
        headers: vec![],
        body: format!("Cannot POST /api/{SECRET}/subgraphs/id/QmTest (auth Bearer {SECRET})"),
        delay: Duration::ZERO,
    };
    let gql = ok(&format!(
        r#"{{"errors":[{{"message":"unknown key {SECRET}"}}]}}"#
    ));
    for a in [echo, gql] {
        let (url, _) = server(vec![a]).await;
        let c = client(&url, 2000);
        let err = c.snapshot(0).await.unwrap_err();
        let shown = format!("{err} {err:?} {c:?}");
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
    let cfg = GraphClientConfig {
        secrets: Default::default(),
        max_row_bytes: nifty_scraper::graph::client::DEFAULT_MAX_ROW_BYTES,
        url: format!("https://gateway.example/api/{SECRET}/subgraphs/id/Qm"),
        api_key: Some(SECRET.to_string().into()),
        timeout: Duration::from_secs(1),
        backoff: Backoff::default(),
    };
    assert!(!format!("{cfg:?}").contains(SECRET), "{cfg:?}");
}

#[tokio::test]
async fn a_shutdown_during_snapshot_retries_stops_at_once() {
    use nifty_scraper::graph::{Ctx, Progress, Stop, scrape_source};
    let down = Answer {
        status: 503,
        headers: vec![],
        body: "down".into(),
        delay: Duration::ZERO,
    };
    let (url, _) = server(vec![down; 100]).await;
    let dir = tempfile::tempdir().unwrap();
    let store = nifty_state::Store::open(dir.path(), &Default::default()).unwrap();
    let client = GraphClient::new(GraphClientConfig {
        secrets: Default::default(),
        max_row_bytes: nifty_scraper::graph::client::DEFAULT_MAX_ROW_BYTES,
        url,
        api_key: None,
        timeout: Duration::from_secs(2),
        // Long enough that waiting through the retries would take many seconds.
        backoff: Backoff {
            base: Duration::from_millis(500),
            max: Duration::from_secs(5),
            max_attempts: 12,
        },
    })
    .unwrap();
    let ctx = Ctx {
        store,
        client: client.into(),
        source: "s".into(),
        page_size: 100,
        progress: Arc::new(Progress::default()),
        now_ms: || 0,
    };
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = tx.send(true);
        // Keep the sender alive: only the sent value may stop the run.
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let started = Instant::now();
    let stop = scrape_source(&ctx, 0, 0, None, &mut rx).await.unwrap();
    assert_eq!(stop, Stop::Shutdown);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert!(
        ctx.store.cursor("s").unwrap().is_none(),
        "nothing committed"
    );
}
