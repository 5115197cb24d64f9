//! Oversized answers from the cluster, the Pinning Service and the gateway: a 500 MB
//! chunked body, a body that never ends and a declared 500 MB are refused as `too_large`
//! with one request, after at most the cap and one chunk of the body.
//!
//! The server writes its body lazily and pauses once it has written the cap and one chunk
//! more, until the client has answered. A client that needed more bytes to refuse would
//! wait at the pause until its own timeout (and fail this test with `timeout`), so the
//! bytes written when the client answers bound what it read, whatever the kernel buffers
//! between the two.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use cid::Cid;
use cid::multihash::Multihash;
use nifty_pinner::backend::{
    Auth, Backend, BackendError, ClusterClient, ClusterOptions, PinMeta, PsaClient, PsaOptions,
};
use nifty_pinner::fetch::{FetchError, FetchOptions, FetchReason, Fetcher};
use nifty_scraper::retry::Backoff;
use secrecy::SecretString;
use tokio::sync::watch;
use url::Url;

/// Bytes per chunk the server writes.
const CHUNK: u64 = 64 * 1024;

/// What the cluster and PSA clients read by default (`cluster.max_body_mb = 16`).
const BACKEND_CAP: u64 = 16 << 20;

/// The hostile answer's size: 500 MB, written lazily.
const HUGE: u64 = 500 * 1000 * 1000;

/// How long the server's body runs.
#[derive(Clone, Copy, Debug)]
enum Length {
    /// Chunked, this many bytes in all.
    Chunked(u64),
    /// Chunked, never ending.
    Endless,
    /// This many bytes, declared in Content-Length.
    Declared(u64),
}

/// A server answering every request with one oversized body.
struct Flood {
    /// The status of every answer.
    status: StatusCode,
    /// The body's length.
    length: Length,
    /// Bytes a body writes before it pauses until released.
    pause_at: u64,
    /// Body bytes written, over all requests.
    written: AtomicU64,
    /// Requests received.
    requests: AtomicUsize,
    /// Turns true once the client has answered: the bodies may go on.
    release: watch::Sender<bool>,
}

impl Flood {
    fn new(status: StatusCode, length: Length, cap: u64) -> Arc<Flood> {
        let pause_at = match length {
            // Nothing needs reading to refuse a declared length over the cap.
            Length::Declared(_) => 0,
            _ => cap + CHUNK,
        };
        Arc::new(Flood {
            status,
            length,
            pause_at,
            written: AtomicU64::new(0),
            requests: AtomicUsize::new(0),
            release: watch::channel(false).0,
        })
    }

    fn body(self: &Arc<Self>) -> Body {
        let total = match self.length {
            Length::Chunked(n) | Length::Declared(n) => Some(n),
            Length::Endless => None,
        };
        let chunk = Bytes::from(vec![b'x'; CHUNK as usize]);
        let state = (0u64, Arc::clone(self), self.release.subscribe());
        let chunks = futures::stream::unfold(state, move |(sent, flood, mut release)| {
            let chunk = chunk.clone();
            async move {
                if total.is_some_and(|t| sent >= t) {
                    return None;
                }
                if sent >= flood.pause_at {
                    // A dropped sender (the test is over) releases too.
                    let _ = release.wait_for(|r| *r).await;
                }
                let n = total.map_or(CHUNK, |t| CHUNK.min(t - sent));
                flood.written.fetch_add(n, Ordering::SeqCst);
                let data = chunk.slice(..n as usize);
                Some((Ok::<_, Infallible>(data), (sent + n, flood, release)))
            }
        });
        Body::from_stream(chunks)
    }

    /// Serves on 127.0.0.1:0; returns the base URL.
    async fn serve(self: &Arc<Self>) -> Url {
        let app = Router::new()
            .fallback(|State(flood): State<Arc<Flood>>| async move {
                flood.requests.fetch_add(1, Ordering::SeqCst);
                let mut r = Response::new(flood.body());
                *r.status_mut() = flood.status;
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                if let Length::Declared(n) = flood.length {
                    r.headers_mut()
                        .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
                }
                r
            })
            .with_state(Arc::clone(self));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Url::parse(&format!("http://{addr}/")).unwrap()
    }

    /// Awaits `call`, then checks how much was written by then and how many requests were
    /// made, and lets the paused bodies go on.
    async fn answer<T, E: std::fmt::Debug>(
        &self,
        call: impl Future<Output = Result<T, E>>,
        cap: u64,
        requests: usize,
    ) -> E {
        // A correct client answers long before; this only keeps a broken one from hanging
        // the suite.
        let got = tokio::time::timeout(Duration::from_secs(120), call)
            .await
            .expect("the client never answered");
        let written = self.written.load(Ordering::SeqCst);
        self.release.send_replace(true);
        let Err(e) = got else {
            panic!("{:?}: accepted", self.length)
        };
        assert!(
            written <= requests as u64 * (cap + CHUNK),
            "{:?}: {written} bytes written for a cap of {cap}: {e:?}",
            self.length
        );
        assert_eq!(
            self.requests.load(Ordering::SeqCst),
            requests,
            "{:?}: {e:?}",
            self.length
        );
        e
    }
}

const LENGTHS: [Length; 3] = [
    Length::Chunked(HUGE),
    Length::Endless,
    Length::Declared(HUGE),
];

fn cid() -> Cid {
    Cid::new_v1(0x55, Multihash::<64>::wrap(0x12, &[5; 32]).unwrap())
}

fn meta() -> PinMeta {
    PinMeta::default()
}

fn backoff() -> Backoff {
    Backoff {
        base: Duration::from_millis(5),
        max: Duration::from_millis(20),
        max_attempts: 3,
    }
}

fn cluster(url: Url) -> ClusterClient {
    ClusterClient::new(ClusterOptions {
        auth: Auth::Bearer(SecretString::from("cluster-token-0123456789".to_owned())),
        timeout: Duration::from_secs(10),
        backoff: backoff(),
        ..ClusterOptions::new(url)
    })
    .unwrap()
}

fn psa(url: Url) -> PsaClient {
    PsaClient::new(PsaOptions {
        timeout: Duration::from_secs(10),
        backoff: backoff(),
        ..PsaOptions::new(url, SecretString::from("psa-token-0123456789".to_owned()))
    })
    .unwrap()
}

fn assert_too_large(what: &str, e: &BackendError) {
    assert_eq!(e.reason(), "too_large", "{what}: {e}");
    assert!(!e.is_retryable(), "{what}: {e}");
    let text = e.to_string();
    assert!(
        text.contains("16 MiB"),
        "{what}: the cap is not named: {text}"
    );
    if what.contains("Declared") {
        assert!(
            text.contains("476.8 MiB"),
            "{what}: the size is not named: {text}"
        );
    }
}

type Call = fn(Url) -> futures::future::BoxFuture<'static, Result<(), BackendError>>;

/// Every cluster and PSA request that reads an answer.
fn calls() -> Vec<(&'static str, Call)> {
    vec![
        ("cluster pin", |u| {
            Box::pin(async move { cluster(u).pin(&cid(), &meta()).await.map(drop) })
        }),
        ("cluster status", |u| {
            Box::pin(async move { cluster(u).status(&[cid()]).await.map(drop) })
        }),
        ("cluster recover", |u| {
            Box::pin(async move { cluster(u).recover(&cid()).await.map(drop) })
        }),
        ("psa pin", |u| {
            Box::pin(async move { psa(u).pin(&cid(), &meta()).await.map(drop) })
        }),
        ("psa status", |u| {
            Box::pin(async move { psa(u).status(&[cid()]).await.map(drop) })
        }),
    ]
}

#[tokio::test]
async fn oversized_backend_answers_are_refused_once_at_the_cap() {
    for (name, call) in calls() {
        for length in LENGTHS {
            let flood = Flood::new(StatusCode::OK, length, BACKEND_CAP);
            let url = flood.serve().await;
            let e = flood.answer(call(url), BACKEND_CAP, 1).await;
            assert_too_large(&format!("{name}, {length:?}"), &e);
        }
    }
}

/// An error status with an endless page: the status is the answer, read from at most the
/// start of the page, and a 503 is still retried.
#[tokio::test]
async fn endless_error_pages_keep_their_status_and_are_read_only_in_part() {
    for (name, call) in calls() {
        let page_cap = 64 * 1024;
        let flood = Flood::new(StatusCode::SERVICE_UNAVAILABLE, Length::Endless, page_cap);
        let url = flood.serve().await;
        let e = flood.answer(call(url), page_cap, 3).await;
        assert_eq!(e.reason(), "http_503", "{name}: {e}");
        assert!(e.is_retryable(), "{name}: {e}");
    }
}

#[tokio::test]
async fn the_cap_is_the_configured_one() {
    let cap = 1 << 20;
    let opts = |u| ClusterOptions {
        max_body: cap,
        timeout: Duration::from_secs(10),
        backoff: backoff(),
        ..ClusterOptions::new(u)
    };
    let flood = Flood::new(StatusCode::OK, Length::Endless, cap);
    let client = ClusterClient::new(opts(flood.serve().await)).unwrap();
    let e = flood.answer(client.status(&[cid()]), cap, 1).await;
    assert_eq!(e.reason(), "too_large", "{e}");
    assert!(e.to_string().contains("1 MiB"), "{e}");

    // An answer of exactly the cap is read; one byte more is not.
    for (size, ok) in [(cap, true), (cap + 1, false)] {
        let body = format!("{{\"cid\":\"x\"{}}}", " ".repeat(size as usize - 11));
        assert_eq!(body.len() as u64, size);
        let app = Router::new().fallback(move || {
            let body = body.clone();
            async move { body }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let client =
            ClusterClient::new(opts(Url::parse(&format!("http://{addr}")).unwrap())).unwrap();
        let got = client.pin(&cid(), &meta()).await;
        assert_eq!(got.is_ok(), ok, "{size}: {got:?}");
    }
    let err = ClusterClient::new(ClusterOptions {
        max_body: 0,
        ..ClusterOptions::new(Url::parse("http://127.0.0.1:1").unwrap())
    })
    .unwrap_err();
    assert_eq!(err.reason(), "invalid");
}

/// A pass meeting an oversized answer stops as at an outage: the pin is not failed, and
/// the next pass asks again.
#[tokio::test]
async fn an_oversized_answer_stops_the_pin_pass_and_keeps_the_pin() {
    use nifty_pinner::pass::{self, Ending, Limits, PassOptions};
    use nifty_state::{Address, Cursor, Page, PinStatus, Store, StoreOptions, Token, TokenId};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    let key = nifty_state::TokenKey {
        contract: Address([4; 20]),
        token_id: TokenId(1u64.into()),
    };
    let uri = format!("data:application/json,{{\"image\":\"ipfs://{}\"}}", cid());
    store
        .commit_page(&Page {
            cursor_name: "graph",
            cursor: Cursor::default(),
            tokens: &[(key, Token::scraped("graph", &key, Some(uri), 5))],
            contracts: &[],
        })
        .unwrap();
    let offline = Fetcher::new(FetchOptions::new(
        Url::parse("http://127.0.0.1:9/").unwrap(),
        Url::parse("http://127.0.0.1:9/ar").unwrap(),
    ))
    .unwrap();
    pass::analyse(&store, &offline, &PassOptions::default(), &Limits::none())
        .await
        .unwrap();

    let flood = Flood::new(StatusCode::OK, Length::Endless, BACKEND_CAP);
    let backend = Backend::Cluster(cluster(flood.serve().await));
    let report = pass::pin(&store, &backend, &PassOptions::default(), &Limits::none())
        .await
        .unwrap();
    flood.release.send_replace(true);
    match &report.ending {
        Some(Ending::Outage(why)) => assert!(why.contains("16 MiB limit"), "{why}"),
        e => panic!("{e:?}"),
    }
    assert_eq!(flood.requests.load(Ordering::SeqCst), 1);
    let rec = store.pin(&cid().to_bytes()).unwrap().unwrap();
    assert_eq!((rec.status, rec.last_error), (PinStatus::Wanted, None));
}

// ---------------------------------------------------------------------------------------
// Gateway

fn assert_fetch_too_large(what: &str, e: &FetchError) {
    assert_eq!(e.reason, FetchReason::TooLarge, "{what}: {e}");
    assert!(!e.gateway_outage, "{what}: {e}");
    assert!(e.to_string().contains("1 MiB limit"), "{what}: {e}");
}

#[tokio::test]
async fn oversized_metadata_is_refused_once_at_gateway_max_bytes() {
    let cap = nifty_pinner::fetch::DEFAULT_MAX_BYTES as u64;
    for length in LENGTHS {
        // Through the configured gateway.
        let flood = Flood::new(StatusCode::OK, length, cap);
        let base = flood.serve().await;
        let f = Fetcher::new(FetchOptions::new(base.clone(), base)).unwrap();
        let target = nifty_pinner::uri::analyse(&format!("ipfs://{}/1.json", cid()))
            .unwrap()
            .target;
        let e = flood.answer(f.fetch(&target), cap, 1).await;
        assert_fetch_too_large(&format!("gateway, {length:?}"), &e);

        // From a token's own web server.
        let flood = Flood::new(StatusCode::OK, length, cap);
        let url = flood.serve().await;
        let mut opts = FetchOptions::new(
            Url::parse("http://127.0.0.1:9/").unwrap(),
            Url::parse("http://127.0.0.1:9/ar").unwrap(),
        );
        opts.allow_hosts = vec!["127.0.0.1".into()];
        let f = Fetcher::new(opts).unwrap();
        let target = nifty_pinner::uri::Target::Web(url.join("1.json").unwrap());
        let e = flood.answer(f.fetch(&target), cap, 1).await;
        assert_fetch_too_large(&format!("web, {length:?}"), &e);
    }
}
