//! Both sources' clients against servers that misbehave on purpose: they echo the secrets
//! they were sent (split by control characters, percent-encoded, base64) in every place a
//! server's words can travel, and they send answers far larger than any real one, or
//! without end. No piece of a secret and no raw server newline may reach an error, and no
//! more than the bound may be read, once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use nifty_scraper::ScrapeError;
use nifty_scraper::graph::client::{DEFAULT_MAX_ROW_BYTES, page_body_limit};
use nifty_scraper::graph::{GraphClient, GraphClientConfig};
use nifty_scraper::retry::Backoff;
use nifty_scraper::rpc::client::CallResult;
use nifty_scraper::rpc::{ChainClient, ChainClientConfig, RpcFault};
use nifty_upstream::Secrets;
use serde_json::{Value, json};

/// The API key, sent as a bearer header.
const KEY: &str = "sk-VERYSECRET-1234567890abcdef";
/// The key-bearing segment of the URL path.
const PATH_KEY: &str = "pathkey-0f1e2d3c4b5a";
/// Another configured secret (a cluster password, say) that this client never sends.
const OTHER: &str = "other-secret-9876543210";

/// Every piece of a secret that must not show.
fn pieces() -> Vec<String> {
    let mut out = vec![];
    for s in [KEY, PATH_KEY, OTHER] {
        out.push(s.to_owned());
        out.push(s[..s.len() / 2].to_owned());
        out.push(s[s.len() / 2..].to_owned());
        out.push(STANDARD.encode(s));
    }
    out.push(STANDARD.encode(format!("Bearer {KEY}")));
    out
}

/// Fails when `text` holds any piece of a secret or a raw newline.
fn assert_clean(what: &str, text: &str) {
    for p in pieces() {
        assert!(!text.contains(&p), "{what}: {p:?} in {text:?}");
    }
    assert!(
        !text.contains('\n') && !text.contains('\r'),
        "{what}: a raw newline in {text:?}"
    );
}

/// Every way this test's servers echo a secret: split by a newline (the form that
/// leaked), by other hidden characters, percent-encoded, base64, and the bearer header
/// as base64.
fn echoes(secret: &str) -> Vec<String> {
    let half = secret.len() / 2;
    vec![
        format!("bad key Bearer {}\n{}", &secret[..half], &secret[half..]),
        format!(
            "bad key {}\r\n\u{1b}[2K{}",
            &secret[..half],
            &secret[half..]
        ),
        format!("key {}\u{200B}{}", &secret[..half], &secret[half..]),
        format!(
            "key {}",
            percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
        ),
        format!("key {}", STANDARD.encode(secret)),
        format!("auth {}", STANDARD.encode(format!("Bearer {secret}"))),
        format!("fine\nINFO nifty: forged log line {secret}"),
    ]
}

/// What a scripted server does with each request.
#[derive(Clone)]
enum Act {
    /// Answer with this status, JSON body.
    Json(u16, Value),
    /// Answer 200 with a body of `total` bytes in 64 KiB chunks, generated as sent.
    Huge { total: u64 },
    /// Answer 200 declaring a length it never sends.
    LyingLength(u64),
}

struct Server {
    act: Act,
    requests: AtomicU64,
    /// Bytes of huge bodies handed to the connection so far.
    produced: Arc<AtomicU64>,
}

async fn handle(State(s): State<Arc<Server>>, _headers: HeaderMap, body: Bytes) -> Response {
    s.requests.fetch_add(1, Ordering::SeqCst);
    let asked: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    match s.act.clone() {
        Act::Json(status, v) => {
            // A JSON-RPC batch gets one answer per request, with its ids.
            let v = match (&asked, &v) {
                (Value::Array(reqs), Value::Object(_)) => Value::Array(
                    reqs.iter()
                        .map(|r| {
                            let mut a = v.clone();
                            a["id"] = r["id"].clone();
                            a
                        })
                        .collect(),
                ),
                (Value::Object(r), Value::Object(_)) if r.contains_key("id") => {
                    let mut a = v.clone();
                    a["id"] = r["id"].clone();
                    a
                }
                _ => v,
            };
            let mut r = (StatusCode::from_u16(status).unwrap(), v.to_string()).into_response();
            r.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            r
        }
        Act::Huge { total } => {
            const CHUNK: u64 = 64 * 1024;
            let produced = Arc::clone(&s.produced);
            let chunks = futures::stream::iter((0..total.div_ceil(CHUNK)).map(move |_| {
                produced.fetch_add(CHUNK, Ordering::SeqCst);
                Ok::<_, std::io::Error>(vec![b' '; CHUNK as usize])
            }));
            let mut r = Response::new(Body::from_stream(chunks));
            r.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            r
        }
        Act::LyingLength(n) => {
            // One chunk, then nothing: the headers go out, the declared bytes never come.
            use futures::StreamExt;
            let body = futures::stream::iter([Ok::<_, std::io::Error>(b"{}".to_vec())])
                .chain(futures::stream::pending());
            let mut r = Response::new(Body::from_stream(body));
            r.headers_mut()
                .insert("content-length", n.to_string().parse().unwrap());
            r
        }
    }
}

async fn serve(act: Act) -> (String, Arc<Server>) {
    let s = Arc::new(Server {
        act,
        requests: AtomicU64::new(0),
        produced: Arc::default(),
    });
    let app = Router::new()
        .route("/{*path}", post(handle))
        .with_state(Arc::clone(&s));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/api/{PATH_KEY}/x"), s)
}

fn backoff() -> Backoff {
    Backoff {
        base: Duration::from_millis(5),
        max: Duration::from_millis(20),
        max_attempts: 3,
    }
}

fn graph(url: &str) -> GraphClient {
    GraphClient::new(GraphClientConfig {
        url: url.into(),
        api_key: Some(KEY.to_string().into()),
        timeout: Duration::from_secs(20),
        backoff: backoff(),
        secrets: Secrets::new([OTHER]),
        max_row_bytes: DEFAULT_MAX_ROW_BYTES,
    })
    .unwrap()
}

fn node(url: &str) -> ChainClient {
    ChainClient::new(ChainClientConfig {
        url: url.into(),
        api_key: Some(KEY.to_string().into()),
        timeout: Duration::from_secs(20),
        backoff: backoff(),
        contracts: vec![],
        batch_size: 8,
        multicall: None,
        start_span: 100,
        max_span: 1000,
        concurrency: 2,
        reorg_depth: 0,
        secrets: Secrets::new([OTHER]),
        max_body_bytes: 1 << 20,
    })
    .unwrap()
}

fn shown(e: &ScrapeError) -> String {
    format!("{e} {e:?}")
}

#[tokio::test]
async fn subgraph_echoes_of_any_secret_never_reach_an_error() {
    for secret in [KEY, PATH_KEY, OTHER] {
        for echo in echoes(secret) {
            let answers = [
                (200, json!({"errors": [{"message": echo}]})),
                (
                    200,
                    json!({"errors": [{"message": "x"}, {"message": echo, "locations": []}]}),
                ),
                (500, json!({"error": echo})),
                (429, json!({"message": echo})),
                (200, json!({"data": {"_meta": echo}})),
            ];
            for (status, body) in answers {
                let (url, _) = serve(Act::Json(status, body.clone())).await;
                let e = graph(&url).snapshot(0).await.unwrap_err();
                assert_clean(&format!("{status} {body}"), &shown(&e));
            }
        }
    }
}

#[tokio::test]
async fn node_echoes_of_any_secret_never_reach_an_error() {
    for secret in [KEY, PATH_KEY, OTHER] {
        for echo in echoes(secret) {
            let error = json!({"jsonrpc": "2.0", "error": {"code": -32601, "message": echo, "data": {"why": echo}}});
            for status in [200, 400] {
                let (url, _) = serve(Act::Json(status, error.clone())).await;
                let c = node(&url);
                let e = c.snapshot(0).await.unwrap_err();
                assert_clean(&format!("{status} eth_blockNumber {echo:?}"), &shown(&e));
                // Inside a batch: each element carries the echo in its own error.
                let e = c.blocks(&[1, 2, 3]).await.unwrap_err();
                assert_clean(&format!("{status} batch {echo:?}"), &shown(&e));
            }
            let (url, _) = serve(Act::Json(503, json!({"message": echo}))).await;
            let e = node(&url).snapshot(0).await.unwrap_err();
            assert_clean(&format!("503 {echo:?}"), &shown(&e));
            let (url, _) = serve(Act::Json(200, json!({"jsonrpc": "2.0", "result": echo}))).await;
            let e = node(&url).snapshot(0).await.unwrap_err();
            assert_clean(
                &format!("a result that is not a number {echo:?}"),
                &shown(&e),
            );
        }
    }
}

#[tokio::test]
async fn a_huge_or_endless_page_is_refused_at_the_bound_once() {
    let limit = page_body_limit(1000, DEFAULT_MAX_ROW_BYTES);
    for total in [500 << 20, u64::MAX / 2] {
        let (url, s) = serve(Act::Huge { total }).await;
        let e = graph(&url).page(0, "", 100, 1000, 100).await.unwrap_err();
        assert!(matches!(e, ScrapeError::TooLarge { .. }), "{e}");
        assert_eq!(e.kind(), "too_large");
        assert!(
            !e.is_retryable(),
            "an over-size answer is not a passing failure"
        );
        assert!(
            e.to_string().contains("15.7 MiB limit"),
            "the message names the bound: {e}"
        );
        assert_eq!(
            s.requests.load(Ordering::SeqCst),
            1,
            "asked once, not once per attempt"
        );
        let produced = s.produced.load(Ordering::SeqCst);
        // What the server made beyond the bound is what sat in socket buffers when the
        // client hung up.
        assert!(
            produced <= limit + (16 << 20),
            "{produced} bytes sent for a bound of {limit}"
        );
    }
}

#[tokio::test]
async fn a_declared_length_over_the_bound_is_refused_before_reading() {
    let (url, s) = serve(Act::LyingLength(500 << 20)).await;
    let e = graph(&url).page(0, "", 100, 1000, 100).await.unwrap_err();
    assert_eq!(e.kind(), "too_large", "{e}");
    assert!(e.to_string().contains("500 MiB"), "{e}");
    assert_eq!(s.requests.load(Ordering::SeqCst), 1);
    // _meta answers have a small bound of their own.
    let (url, _) = serve(Act::Huge { total: 1 << 20 }).await;
    let e = graph(&url).snapshot(0).await.unwrap_err();
    assert_eq!(e.kind(), "too_large", "{e}");
}

#[tokio::test]
async fn a_huge_node_answer_is_refused_at_the_bound() {
    let (url, s) = serve(Act::Huge { total: 500 << 20 }).await;
    let c = node(&url);
    let f = c.mint_logs(0, 10).await.unwrap_err();
    assert!(matches!(f, RpcFault::TooLarge(_)), "{f}");
    assert_eq!(f.kind(), "too_large");
    // A log query over the bound asks for fewer blocks.
    assert_eq!(
        nifty_scraper::rpc::range::advise(&f, 0, 10),
        nifty_scraper::rpc::range::Advice::Shrink(None)
    );
    assert_eq!(s.requests.load(Ordering::SeqCst), 1);
    assert!(s.produced.load(Ordering::SeqCst) <= (1 << 20) + (16 << 20));
    // A batch of calls whose answers are too large is split down to single calls, each
    // recorded as too large rather than failing the range.
    let calls: Vec<_> = (0..4u8)
        .map(|i| (ethers_core::types::Address::repeat_byte(i), vec![i]))
        .collect();
    let got = c.calls(&calls).await.unwrap();
    assert_eq!(got, vec![CallResult::TooLarge; 4]);
    // 1 logs request, then the batch of 4, two of 2 and four single calls.
    assert_eq!(s.requests.load(Ordering::SeqCst), 1 + 1 + 2 + 4);
}
