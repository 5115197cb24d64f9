//! The cluster and PSA clients against scripted servers on loopback: request shapes, auth,
//! status parsing and chunking, every failure mapped to the right error, retries where they
//! help, and secrets never in messages.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use cid::Cid;
use cid::multihash::Multihash;
use nifty_pinner::backend::{
    Auth, Backend, BackendError, ClusterClient, ClusterOptions, PinMeta, PsaClient, PsaOptions,
    RemoteState,
};
use nifty_scraper::retry::Backoff;
use secrecy::SecretString;
use url::Url;

// ---------------------------------------------------------------------------------------
// The scripted server

/// One request as the server saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Seen {
    fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn auth(&self) -> Option<&str> {
        self.headers
            .get("authorization")
            .map(|v| v.to_str().unwrap())
    }
}

/// One scripted answer.
#[derive(Clone, Debug)]
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
}

fn answer(status: u16, body: &str) -> Answer {
    Answer {
        status,
        headers: vec![("content-type", "application/json".into())],
        body: body.into(),
        delay: Duration::ZERO,
    }
}

type Script = Box<dyn Fn(&Seen) -> Answer + Send + Sync>;

struct Server {
    script: Script,
    seen: Mutex<Vec<Seen>>,
}

impl Server {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn handle(
    State(s): State<Arc<Server>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let seen = Seen {
        method,
        path: uri.path().to_owned(),
        query,
        headers,
        body: body.to_vec(),
    };
    s.seen.lock().unwrap().push(seen.clone());
    let a = (s.script)(&seen);
    tokio::time::sleep(a.delay).await;
    let mut r = (StatusCode::from_u16(a.status).unwrap(), a.body).into_response();
    for (k, v) in a.headers {
        r.headers_mut().append(k, v.parse().unwrap());
    }
    r
}

/// Serves `script` on 127.0.0.1:0; returns the base URL (with `prefix` as its path).
async fn serve(prefix: &str, script: Script) -> (Url, Arc<Server>) {
    let server = Arc::new(Server {
        script,
        seen: Mutex::default(),
    });
    let app = Router::new().fallback(handle).with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (
        Url::parse(&format!("http://{addr}{prefix}")).unwrap(),
        server,
    )
}

/// Answers in order; the last one repeats.
fn queue(answers: Vec<Answer>) -> Script {
    let q = Mutex::new(VecDeque::from(answers));
    Box::new(move |_| {
        let mut q = q.lock().unwrap();
        if q.len() > 1 {
            q.pop_front().unwrap()
        } else {
            q.front().cloned().unwrap()
        }
    })
}

// ---------------------------------------------------------------------------------------
// Fixtures

const CLUSTER_TOKEN: &str = "cluster-jwt-0123456789abcdef";
const CLUSTER_PASSWORD: &str = "cluster-pw-fedcba9876543210";
const PSA_TOKEN: &str = "psa-token-0123456789abcdef";

/// A distinct CIDv1 (raw, sha2-256) per `i`.
fn cid(i: u32) -> Cid {
    let mut digest = [7u8; 32];
    digest[..4].copy_from_slice(&i.to_be_bytes());
    Cid::new_v1(0x55, Multihash::<64>::wrap(0x12, &digest).unwrap())
}

fn tiny_backoff(max_attempts: u32) -> Backoff {
    Backoff {
        base: Duration::from_millis(5),
        max: Duration::from_millis(20),
        max_attempts,
    }
}

fn cluster_opts(url: Url, auth: Auth) -> ClusterOptions {
    ClusterOptions {
        auth,
        timeout: Duration::from_secs(2),
        backoff: tiny_backoff(3),
        ..ClusterOptions::new(url)
    }
}

fn cluster(url: Url, auth: Auth) -> ClusterClient {
    ClusterClient::new(cluster_opts(url, auth)).unwrap()
}

fn psa_opts(url: Url, token: &str) -> PsaOptions {
    PsaOptions {
        timeout: Duration::from_secs(2),
        backoff: tiny_backoff(3),
        ..PsaOptions::new(url, SecretString::from(token.to_owned()))
    }
}

fn psa(url: Url) -> PsaClient {
    PsaClient::new(psa_opts(url, PSA_TOKEN)).unwrap()
}

fn meta() -> PinMeta {
    PinMeta {
        name: "Token #42 / image".into(),
        meta: vec![
            (
                "contract".into(),
                "0xabc0000000000000000000000000000000000def".into(),
            ),
            ("token_id".into(), "42".into()),
            ("role".into(), "image".into()),
            ("source".into(), "graph".into()),
        ],
    }
}

/// A GlobalPinInfo line with the given peer statuses.
fn gpi(cid: &Cid, peers: &[(&str, &str)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = peers
        .iter()
        .enumerate()
        .map(|(i, (status, error))| {
            (
                format!("12D3KooPeer{i}"),
                serde_json::json!({
                    "peername": format!("peer{i}"),
                    "ipfs_peer_id": "12D3KooIpfs",
                    "status": status,
                    "timestamp": "2024-05-01T00:00:00Z",
                    "error": error,
                    "attempt_count": 1,
                    "priority_pin": false,
                }),
            )
        })
        .collect();
    serde_json::json!({
        "cid": cid.to_string(),
        "name": "n",
        "allocations": [],
        "origins": [],
        "created": "2024-05-01T00:00:00Z",
        "metadata": null,
        "peer_map": map,
    })
    .to_string()
}

fn pin_object(cid: &Cid) -> String {
    serde_json::json!({
        "cid": cid.to_string(),
        "name": "n",
        "allocations": [],
        "replication_factor_min": -1,
        "replication_factor_max": -1,
        "type": "pin",
        "metadata": {},
    })
    .to_string()
}

fn pin_status(cid: &Cid, status: &str, created: &str) -> serde_json::Value {
    serde_json::json!({
        "requestid": format!("req-{status}-{created}"),
        "status": status,
        "created": created,
        "pin": {"cid": cid.to_string(), "name": "n", "origins": [], "meta": {}},
        "delegates": ["/dnsaddr/pin.example"],
        "info": {"status_details": format!("details of {status}")},
    })
}

fn shown(e: &BackendError) -> String {
    format!("{e} {e:?}")
}

// ---------------------------------------------------------------------------------------
// Cluster

#[tokio::test]
async fn cluster_pin_sends_name_replication_meta_and_basic_auth() {
    let c = cid(1);
    let body = pin_object(&c);
    let (url, server) = serve("/cluster", queue(vec![answer(200, &body)])).await;
    let opts = ClusterOptions {
        replication_min: Some(2),
        replication_max: Some(3),
        ..cluster_opts(
            url,
            Auth::Basic {
                user: "admin".into(),
                password: SecretString::from(CLUSTER_PASSWORD.to_owned()),
            },
        )
    };
    let client = Backend::Cluster(ClusterClient::new(opts).unwrap());
    assert_eq!(client.name(), "cluster");
    let got = client.pin(&c, &meta()).await.unwrap();
    assert_eq!((got.cid, got.state), (c, RemoteState::Queued));

    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!(req.method, Method::POST);
    assert_eq!(req.path, format!("/cluster/pins/{c}"));
    let want: Vec<(&str, &str)> = vec![
        ("name", "Token #42 / image"),
        ("replication-min", "2"),
        ("replication-max", "3"),
        (
            "meta-contract",
            "0xabc0000000000000000000000000000000000def",
        ),
        ("meta-token_id", "42"),
        ("meta-role", "image"),
        ("meta-source", "graph"),
    ];
    let got: Vec<(&str, &str)> = req
        .query
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(got, want);
    use base64::Engine as _;
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("admin:{CLUSTER_PASSWORD}"));
    assert_eq!(req.auth(), Some(format!("Basic {basic}").as_str()));
    let ua = req.headers["user-agent"].to_str().unwrap();
    assert!(ua.starts_with("nifty/"), "{ua}");
}

#[tokio::test]
async fn cluster_pin_percent_encodes_and_omits_unset_options() {
    let c = cid(2);
    let (url, server) = serve("", queue(vec![answer(200, &pin_object(&c))])).await;
    let client = cluster(
        url,
        Auth::Bearer(SecretString::from(CLUSTER_TOKEN.to_owned())),
    );
    let odd = PinMeta {
        name: "a&b=c+d ü".into(),
        meta: vec![("k".into(), "x&meta-role=evil".into())],
    };
    client.pin(&c, &odd).await.unwrap();
    let req = &server.seen()[0];
    assert_eq!(req.path, format!("/pins/{c}"));
    assert_eq!(req.param("name"), Some("a&b=c+d ü"));
    assert_eq!(req.param("meta-k"), Some("x&meta-role=evil"));
    assert_eq!(req.param("meta-role"), None);
    assert_eq!(req.param("replication-min"), None);
    assert_eq!(req.auth(), Some(format!("Bearer {CLUSTER_TOKEN}").as_str()));
}

#[tokio::test]
async fn cluster_wrong_credentials_are_a_401_with_the_servers_message_not_retried() {
    let body = format!(r#"{{"code":401,"message":"invalid token {CLUSTER_TOKEN}"}}"#);
    let (url, server) = serve("", queue(vec![answer(401, &body)])).await;
    let client = cluster(
        url,
        Auth::Bearer(SecretString::from(CLUSTER_TOKEN.to_owned())),
    );
    let err = client.pin(&cid(3), &meta()).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert_eq!(err.reason(), "http_401");
    assert_eq!(err.status(), Some(401));
    match &err {
        BackendError::Http { code, message, .. } => {
            assert_eq!(code.as_deref(), Some("401"));
            assert_eq!(message, "invalid token <redacted>");
        }
        e => panic!("{e:?}"),
    }
    let text = format!("{} {client:?}", shown(&err));
    assert!(!text.contains(CLUSTER_TOKEN), "{text}");
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn cluster_basic_auth_failures_never_show_the_password() {
    use base64::Engine as _;
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("admin:{CLUSTER_PASSWORD}"));
    // A proxy that echoes what it got.
    let body = format!("bad credentials: Basic {encoded} ({CLUSTER_PASSWORD})");
    let (url, _) = serve("", queue(vec![answer(403, &body)])).await;
    let client = cluster(
        url,
        Auth::Basic {
            user: "admin".into(),
            password: SecretString::from(CLUSTER_PASSWORD.to_owned()),
        },
    );
    let err = client.status(&[cid(1)]).await.unwrap_err();
    assert_eq!(err.reason(), "http_403");
    let text = shown(&err);
    assert!(!text.contains(CLUSTER_PASSWORD), "{text}");
    assert!(!text.contains(&encoded), "{text}");
    assert!(text.contains("<redacted>"), "{text}");
}

#[tokio::test]
async fn cluster_status_reads_ndjson_folds_peers_and_fills_missing_cids() {
    let (a, b, c, d) = (cid(10), cid(11), cid(12), cid(13));
    let body = [
        gpi(&a, &[("pin_error", "boom"), ("pinned", "")]),
        gpi(
            &b,
            &[("pin_error", "context deadline exceeded"), ("remote", "")],
        ),
        gpi(&d, &[("pinning", ""), ("pin_queued", "")]),
    ]
    .join("\n")
        + "\n";
    let (url, server) = serve("/c/", queue(vec![answer(200, &body)])).await;
    let client = Backend::Cluster(cluster(url, Auth::None));
    let got = client.status(&[a, b, c, d]).await.unwrap();
    let states: Vec<(Cid, RemoteState)> = got.into_iter().map(|s| (s.cid, s.state)).collect();
    assert_eq!(
        states,
        vec![
            (a, RemoteState::Pinned),
            (
                b,
                RemoteState::Failed {
                    error: "peer0: context deadline exceeded".into()
                }
            ),
            (c, RemoteState::Unpinned),
            (d, RemoteState::Pinning),
        ]
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, Method::GET);
    assert_eq!(seen[0].path, "/c/pins");
    assert_eq!(
        seen[0].param("cids"),
        Some(format!("{a},{b},{c},{d}").as_str())
    );
    assert_eq!(seen[0].auth(), None);
}

#[tokio::test]
async fn cluster_status_204_means_nothing_is_known() {
    let (url, _) = serve("", queue(vec![answer(204, "")])).await;
    let got = cluster(url, Auth::None)
        .status(&[cid(1), cid(2)])
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|s| s.state == RemoteState::Unpinned));
}

#[tokio::test]
async fn cluster_status_of_nothing_asks_nothing() {
    let (url, server) = serve("", queue(vec![answer(500, "")])).await;
    let got = cluster(url, Auth::None).status(&[]).await.unwrap();
    assert!(got.is_empty());
    assert!(server.seen().is_empty());
}

#[tokio::test]
async fn cluster_status_is_chunked() {
    let script: Script = Box::new(|req: &Seen| {
        let body: Vec<String> = req
            .param("cids")
            .unwrap()
            .split(',')
            .map(|c| gpi(&Cid::try_from(c).unwrap(), &[("pinned", "")]))
            .collect();
        answer(200, &body.join("\n"))
    });
    let (url, server) = serve("", script).await;
    let cids: Vec<Cid> = (0..450).map(cid).collect();
    let client = cluster(url, Auth::None);
    let got = client.status(&cids).await.unwrap();
    assert_eq!(got.len(), 450);
    assert!(got.iter().all(|s| s.state == RemoteState::Pinned));
    assert!(got.iter().zip(&cids).all(|(s, c)| s.cid == *c));
    let sizes: Vec<usize> = server
        .seen()
        .iter()
        .map(|r| r.param("cids").unwrap().split(',').count())
        .collect();
    assert_eq!(sizes, vec![200, 200, 50]);

    // Duplicates are asked once and answered for each time they were asked.
    let dup = client.status(&[cid(1), cid(1), cid(2)]).await.unwrap();
    assert_eq!(dup.len(), 3);
    assert_eq!(
        server.seen().last().unwrap().param("cids"),
        Some(format!("{},{}", cid(1), cid(2)).as_str())
    );
}

#[tokio::test]
async fn cluster_stream_errors_fail_the_status_instead_of_passing_partial_results() {
    let mut broken = answer(200, &gpi(&cid(1), &[("pinned", "")]));
    broken.headers.push((
        "x-stream-error",
        "dial backoff: peer 12D3Koo unreachable".into(),
    ));
    let (url, server) = serve("", queue(vec![broken])).await;
    let err = cluster(url, Auth::None)
        .status(&[cid(1), cid(2)])
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "stream_error");
    assert!(err.is_retryable());
    assert!(err.to_string().contains("unreachable"), "{err}");
    assert_eq!(server.seen().len(), 3, "stream errors are retried");

    // Clusters set the header even when all went well; empty means no error.
    let mut fine = answer(200, &gpi(&cid(1), &[("pinned", "")]));
    fine.headers.push(("x-stream-error", String::new()));
    let (url, _) = serve("", queue(vec![fine])).await;
    let got = cluster(url, Auth::None).status(&[cid(1)]).await.unwrap();
    assert_eq!(got[0].state, RemoteState::Pinned);
}

#[tokio::test]
async fn cluster_recover_posts_and_folds_the_answer() {
    let c = cid(5);
    let body = gpi(&c, &[("pin_queued", ""), ("remote", "")]);
    let (url, server) = serve("/cluster", queue(vec![answer(200, &body)])).await;
    let client = Backend::Cluster(cluster(url, Auth::None));
    let got = client.recover(&c, &meta()).await.unwrap();
    assert_eq!(got.state, RemoteState::Queued);
    let req = &server.seen()[0];
    assert_eq!(req.method, Method::POST);
    assert_eq!(req.path, format!("/cluster/pins/{c}/recover"));
}

#[tokio::test]
async fn transient_failures_are_retried_until_a_good_answer() {
    let c = cid(6);
    let answers = vec![
        answer(503, r#"{"code":503,"message":"raft leader unknown"}"#),
        answer(502, "<html>bad gateway</html>"),
        answer(200, &pin_object(&c)),
    ];
    let (url, server) = serve("", queue(answers)).await;
    let got = cluster(url, Auth::None).pin(&c, &meta()).await.unwrap();
    assert_eq!(got.state, RemoteState::Queued);
    assert_eq!(server.seen().len(), 3);
}

#[tokio::test]
async fn persistent_503_is_a_retryable_error_after_max_attempts() {
    let (url, server) = serve(
        "",
        queue(vec![answer(
            503,
            r#"{"code":503,"message":"shutting down"}"#,
        )]),
    )
    .await;
    let err = cluster(url, Auth::None)
        .pin(&cid(7), &meta())
        .await
        .unwrap_err();
    assert!(err.is_retryable());
    assert_eq!(err.reason(), "http_503");
    assert!(
        matches!(&err, BackendError::Exhausted { attempts: 3, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("shutting down"), "{err}");
    assert_eq!(server.seen().len(), 3);
}

#[tokio::test]
async fn slow_answers_time_out_and_are_retried() {
    let c = cid(8);
    let slow = Answer {
        delay: Duration::from_millis(1500),
        ..answer(200, &pin_object(&c))
    };
    let (url, server) = serve("", queue(vec![slow, answer(200, &pin_object(&c))])).await;
    let client = ClusterClient::new(ClusterOptions {
        timeout: Duration::from_millis(200),
        ..cluster_opts(url.clone(), Auth::None)
    })
    .unwrap();
    let started = Instant::now();
    client.pin(&c, &meta()).await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(1000));
    assert_eq!(server.seen().len(), 2);

    let always_slow = Answer {
        delay: Duration::from_millis(1500),
        ..answer(200, "")
    };
    let (url, _) = serve("", queue(vec![always_slow])).await;
    let client = ClusterClient::new(ClusterOptions {
        timeout: Duration::from_millis(150),
        backoff: tiny_backoff(2),
        ..cluster_opts(url, Auth::None)
    })
    .unwrap();
    let err = client.status(&[c]).await.unwrap_err();
    assert_eq!(err.reason(), "timeout");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn garbage_bodies_are_decode_errors_and_not_retried() {
    type Call = fn(ClusterClient) -> futures::future::BoxFuture<'static, Result<(), BackendError>>;
    let pin: Call = |c| Box::pin(async move { c.pin(&cid(1), &meta()).await.map(drop) });
    let status: Call = |c| Box::pin(async move { c.status(&[cid(1)]).await.map(drop) });
    let recover: Call = |c| Box::pin(async move { c.recover(&cid(1)).await.map(drop) });
    let cases: Vec<(&str, Call)> = vec![
        ("<html>welcome to nginx</html>", pin),
        ("[1,2,3]", pin),
        ("{\"cid\":\"bafy-not-a-cid\",\"peer_map\":{}}", status),
        ("{\"cid\":", status),
        ("not json at all", recover),
    ];
    for (body, call) in cases {
        let (url, server) = serve("", queue(vec![answer(200, body)])).await;
        let err = call(cluster(url, Auth::None)).await.unwrap_err();
        assert_eq!(err.reason(), "decode", "{body}: {err}");
        assert!(!err.is_retryable());
        assert_eq!(server.seen().len(), 1, "{body}");
    }
}

#[tokio::test]
async fn connection_failures_are_retryable_and_never_show_credentials() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let url = Url::parse(&format!("http://admin:url-pw-secret@127.0.0.1:{port}/c")).unwrap();
    let client = ClusterClient::new(ClusterOptions {
        backoff: tiny_backoff(2),
        ..cluster_opts(
            url,
            Auth::Bearer(SecretString::from(CLUSTER_TOKEN.to_owned())),
        )
    })
    .unwrap();
    let err = client.pin(&cid(1), &meta()).await.unwrap_err();
    assert_eq!(err.reason(), "connect");
    assert!(err.is_retryable());
    let text = format!("{} {client:?} {}", shown(&err), client.endpoint());
    for secret in ["url-pw-secret", CLUSTER_TOKEN] {
        assert!(!text.contains(secret), "{text}");
    }
}

#[tokio::test]
async fn bad_options_are_refused_without_echoing_secrets() {
    let url = Url::parse("http://127.0.0.1:1/").unwrap();
    let bad_token = Auth::Bearer(SecretString::from("line\nbreak-secret".to_owned()));
    let cases = vec![
        ClusterOptions {
            status_chunk: 0,
            ..cluster_opts(url.clone(), Auth::None)
        },
        cluster_opts(Url::parse("ftp://host/").unwrap(), Auth::None),
        cluster_opts(url.clone(), bad_token),
        ClusterOptions {
            timeout: Duration::ZERO,
            ..cluster_opts(url.clone(), Auth::None)
        },
    ];
    for opts in cases {
        let err = ClusterClient::new(opts).unwrap_err();
        assert_eq!(err.reason(), "invalid");
        assert!(!shown(&err).contains("break-secret"), "{err}");
    }
    let err = PsaClient::new(psa_opts(url, "line\nsecret-token")).unwrap_err();
    assert_eq!(err.reason(), "invalid");
    assert!(!shown(&err).contains("secret-token"), "{err}");
}

// ---------------------------------------------------------------------------------------
// PSA

#[tokio::test]
async fn psa_pin_posts_the_pin_object_with_the_bearer_token() {
    let c = cid(20);
    let body = pin_status(&c, "queued", "2024-05-01T00:00:00Z").to_string();
    let (url, server) = serve("/psa", queue(vec![answer(202, &body)])).await;
    let client = Backend::Psa(psa(url));
    assert_eq!(client.name(), "psa");
    let long = PinMeta {
        name: "n".repeat(300),
        ..meta()
    };
    let got = client.pin(&c, &long).await.unwrap();
    assert_eq!((got.cid, got.state), (c, RemoteState::Queued));

    let req = &server.seen()[0];
    assert_eq!(req.method, Method::POST);
    assert_eq!(req.path, "/psa/pins");
    assert_eq!(req.auth(), Some(format!("Bearer {PSA_TOKEN}").as_str()));
    assert_eq!(
        req.headers["content-type"].to_str().unwrap(),
        "application/json"
    );
    let sent: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(
        sent,
        serde_json::json!({
            "cid": c.to_string(),
            "name": "n".repeat(255),
            "meta": {
                "contract": "0xabc0000000000000000000000000000000000def",
                "token_id": "42",
                "role": "image",
                "source": "graph",
            },
        })
    );
}

#[tokio::test]
async fn psa_pin_maps_the_answered_status() {
    let c = cid(21);
    let cases = [
        ("pinned", RemoteState::Pinned),
        ("pinning", RemoteState::Pinning),
        (
            "failed",
            RemoteState::Failed {
                error: "details of failed (request req-failed-t)".into(),
            },
        ),
        // Accepted with a status the spec does not know: still accepted.
        ("mystery", RemoteState::Queued),
    ];
    for (status, want) in cases {
        let body = pin_status(&c, status, "t").to_string();
        let (url, _) = serve("", queue(vec![answer(202, &body)])).await;
        let got = psa(url).pin(&c, &meta()).await.unwrap();
        assert_eq!(got.state, want, "{status}");
    }
}

#[tokio::test]
async fn psa_wrong_token_is_a_401_with_the_servers_reason_not_retried() {
    let body =
        r#"{"error":{"reason":"UNAUTHORIZED","details":"Access token is missing or invalid"}}"#;
    let script: Script = Box::new(move |req: &Seen| {
        if req.auth() == Some(format!("Bearer {PSA_TOKEN}").as_str()) {
            answer(200, r#"{"count":0,"results":[]}"#)
        } else {
            answer(401, body)
        }
    });
    let (url, server) = serve("", script).await;
    let wrong = "psa-wrong-token-0000000000";
    let client = PsaClient::new(psa_opts(url.clone(), wrong)).unwrap();
    let err = client.status(&[cid(1)]).await.unwrap_err();
    assert!(!err.is_retryable());
    assert_eq!(err.reason(), "http_401");
    match &err {
        BackendError::Http { code, message, .. } => {
            assert_eq!(code.as_deref(), Some("UNAUTHORIZED"));
            assert_eq!(message, "Access token is missing or invalid");
        }
        e => panic!("{e:?}"),
    }
    assert!(!format!("{} {client:?}", shown(&err)).contains(wrong));
    assert_eq!(server.seen().len(), 1);

    // The right token gets through.
    let got = psa(url).status(&[cid(1)]).await.unwrap();
    assert_eq!(got[0].state, RemoteState::Unpinned);
}

#[tokio::test]
async fn psa_status_asks_ten_cids_at_a_time_for_every_status_and_takes_the_best() {
    let mut known: HashMap<Cid, Vec<&'static str>> = HashMap::new();
    known.insert(cid(0), vec!["failed", "pinned"]);
    known.insert(cid(1), vec!["queued", "failed"]);
    known.insert(cid(2), vec!["failed"]);
    known.insert(cid(12), vec!["pinning", "queued"]);
    known.insert(cid(24), vec!["pinned"]);
    let script: Script = Box::new(move |req: &Seen| {
        let asked: Vec<Cid> = req
            .param("cid")
            .unwrap()
            .split(',')
            .map(|c| Cid::try_from(c).unwrap())
            .collect();
        if asked.len() > 10 || req.param("status") != Some("queued,pinning,pinned,failed") {
            return answer(
                400,
                r#"{"error":{"reason":"BAD_REQUEST","details":"filter"}}"#,
            );
        }
        let results: Vec<serde_json::Value> = asked
            .iter()
            .flat_map(|c| {
                known
                    .get(c)
                    .into_iter()
                    .flatten()
                    .map(|s| pin_status(c, s, "2024-05-01T00:00:00Z"))
            })
            .collect();
        let body = serde_json::json!({"count": results.len(), "results": results});
        answer(200, &body.to_string())
    });
    let (url, server) = serve("/psa/", script).await;
    let mut cids: Vec<Cid> = (0..25).map(cid).collect();
    cids.push(cid(0));
    let got = Backend::Psa(psa(url)).status(&cids).await.unwrap();
    assert_eq!(got.len(), 26);
    assert!(got.iter().zip(&cids).all(|(s, c)| s.cid == *c));
    let state = |i: usize| got[i].state.clone();
    assert_eq!(state(0), RemoteState::Pinned);
    assert_eq!(state(1), RemoteState::Queued);
    assert_eq!(
        state(2),
        RemoteState::Failed {
            error: "details of failed (request req-failed-2024-05-01T00:00:00Z)".into()
        }
    );
    assert_eq!(state(3), RemoteState::Unpinned);
    assert_eq!(state(12), RemoteState::Pinning);
    assert_eq!(state(24), RemoteState::Pinned);
    assert_eq!(state(25), RemoteState::Pinned);

    let seen = server.seen();
    let sizes: Vec<usize> = seen
        .iter()
        .map(|r| r.param("cid").unwrap().split(',').count())
        .collect();
    assert_eq!(sizes, vec![10, 10, 5]);
    for r in &seen {
        assert_eq!(
            (r.method.clone(), r.path.as_str()),
            (Method::GET, "/psa/pins")
        );
        assert_eq!(r.param("limit"), Some("1000"));
        assert_eq!(r.auth(), Some(format!("Bearer {PSA_TOKEN}").as_str()));
    }
}

#[tokio::test]
async fn psa_status_pages_back_when_the_count_says_there_is_more() {
    let c = cid(30);
    let script: Script = Box::new(move |req: &Seen| {
        let page = match req.param("before") {
            None => vec![pin_status(&c, "failed", "2024-05-02T00:00:00Z")],
            Some("2024-05-02T00:00:00Z") => vec![pin_status(&c, "pinned", "2024-05-01T00:00:00Z")],
            Some(_) => vec![],
        };
        answer(
            200,
            &serde_json::json!({"count": 2, "results": page}).to_string(),
        )
    });
    let (url, server) = serve("", script).await;
    let got = psa(url).status(&[c]).await.unwrap();
    assert_eq!(got[0].state, RemoteState::Pinned);
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn psa_recover_is_a_new_pin_request() {
    let c = cid(31);
    let body = pin_status(&c, "queued", "t").to_string();
    let (url, server) = serve("", queue(vec![answer(202, &body)])).await;
    let got = Backend::Psa(psa(url)).recover(&c, &meta()).await.unwrap();
    assert_eq!(got.state, RemoteState::Queued);
    let req = &server.seen()[0];
    assert_eq!(
        (req.method.clone(), req.path.as_str()),
        (Method::POST, "/pins")
    );
    let sent: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(sent["cid"], c.to_string());
}

#[tokio::test]
async fn psa_rate_limits_are_retried_and_client_errors_are_not() {
    let mut limited = answer(429, r#"{"error":{"reason":"RATE_LIMITED"}}"#);
    limited.headers.push(("retry-after", "0".into()));
    let ok = answer(200, r#"{"count":0,"results":[]}"#);
    let (url, server) = serve("", queue(vec![limited, ok])).await;
    psa(url).status(&[cid(1)]).await.unwrap();
    assert_eq!(server.seen().len(), 2);

    let bad = answer(
        400,
        &format!(
            r#"{{"error":{{"reason":"BAD_REQUEST","details":"token {PSA_TOKEN} lacks scope"}}}}"#
        ),
    );
    let (url, server) = serve("", queue(vec![bad])).await;
    let err = psa(url).pin(&cid(1), &meta()).await.unwrap_err();
    assert_eq!(err.reason(), "http_400");
    assert!(!err.is_retryable());
    assert_eq!(server.seen().len(), 1);
    let text = shown(&err);
    assert!(!text.contains(PSA_TOKEN), "{text}");
    assert!(text.contains("token <redacted> lacks scope"), "{text}");
}

#[tokio::test]
async fn psa_garbage_bodies_are_decode_errors() {
    let cases = [
        r#"{"results":"nope"}"#,
        "<html>maintenance</html>",
        r#"{"count":1,"results":[{"requestid":"r","status":"pinned","created":"t","pin":{"cid":"zzz"},"delegates":[]}]}"#,
    ];
    for body in cases {
        let (url, server) = serve("", queue(vec![answer(200, body)])).await;
        let err = psa(url).status(&[cid(1)]).await.unwrap_err();
        assert_eq!(err.reason(), "decode", "{body}: {err}");
        assert_eq!(server.seen().len(), 1);
    }
}

/// A response body that sends its data, then trailers, as a Go cluster peer does.
struct WithTrailers {
    frames: VecDeque<http_body::Frame<Bytes>>,
}

impl http_body::Body for WithTrailers {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.frames.pop_front().map(Ok))
    }
}

#[tokio::test]
async fn cluster_stream_errors_in_a_real_trailer_fail_the_status() {
    let line = gpi(&cid(1), &[("pinned", "")]);
    let app = Router::new().route(
        "/pins",
        axum::routing::get(move || {
            let line = line.clone();
            async move {
                let mut trailers = HeaderMap::new();
                trailers.insert("x-stream-error", "peer 12D3Koo down".parse().unwrap());
                let body = WithTrailers {
                    frames: VecDeque::from([
                        http_body::Frame::data(Bytes::from(format!("{line}\n"))),
                        http_body::Frame::trailers(trailers),
                    ]),
                };
                Response::builder()
                    .header("content-type", "application/x-ndjson")
                    .header("trailer", "X-Stream-Error")
                    .body(axum::body::Body::new(body))
                    .unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let url = Url::parse(&format!("http://{addr}")).unwrap();
    let err = cluster(url, Auth::None)
        .status(&[cid(1), cid(2)])
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "stream_error", "{err}");
    assert!(err.to_string().contains("peer 12D3Koo down"), "{err}");
}
