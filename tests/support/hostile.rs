//! A hostile upstream on loopback for black-box tests: a subgraph or a chain node that
//! echoes the secrets it was sent (the bearer key and the URL's key segment, split by raw
//! newlines, percent-encoded, base64-encoded) in GraphQL errors, JSON-RPC errors and
//! plain error bodies, or that answers with bodies far larger than any real one, or
//! without end. It counts the requests it took and the body bytes it produced.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

/// The API key the tests configure (through `api_key_env`).
pub const KEY: &str = "sk-VERYSECRET-1234567890abcdef";
/// The key-bearing path segment of the upstream's URL.
pub const PATH_KEY: &str = "pathkey0f1e2d3c4b5a6978";
/// The head block the upstream reports.
pub const HEAD: u64 = 100;

/// Every piece of a secret that must never show in output, the store or an API answer.
pub fn pieces() -> Vec<String> {
    let mut out = vec![];
    for s in [KEY, PATH_KEY] {
        out.push(s.to_owned());
        out.push(s[..s.len() / 2].to_owned());
        out.push(s[s.len() / 2..].to_owned());
        out.push(STANDARD.encode(s));
        out.push(s.bytes().map(|c| format!("%{c:02X}")).collect());
    }
    out.push(STANDARD.encode(format!("Bearer {KEY}")));
    out
}

/// Panics when `text` holds any piece of a secret.
pub fn assert_no_secret(what: &str, text: &str) {
    for p in pieces() {
        assert!(!text.contains(&p), "{what}: {p:?} in {text}");
    }
}

/// How the upstream misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Every request answered `200 {"errors":[{"message": <echo>}]}` (a subgraph) or a
    /// JSON-RPC error whose message and data are the echo (a node).
    EchoInErrors,
    /// Every request answered with this status and the echo as a plain body.
    EchoInStatus(u16),
    /// The head is answered; pages (a subgraph's) or `eth_getLogs` (a node's) get a
    /// chunked 200 body of this many bytes that never closes its JSON.
    Huge(u64),
    /// Like `Huge`, without end.
    Endless,
}

/// A running hostile upstream.
pub struct Hostile {
    /// The URL to configure, key segment included.
    pub url: String,
    requests: Arc<AtomicU64>,
    produced: Arc<AtomicU64>,
    _thread: std::thread::JoinHandle<()>,
}

struct Shared {
    node: bool,
    mode: Mode,
    /// Whether the head (`_meta`, `eth_blockNumber`) is answered truthfully, so that the
    /// misbehaviour meets pages and log queries.
    head_ok: bool,
    requests: Arc<AtomicU64>,
    produced: Arc<AtomicU64>,
}

impl Hostile {
    /// A subgraph at `/api/PATH_KEY/subgraphs/id/x` (The Graph gateway's shape). It
    /// answers `_meta` truthfully only in the oversized modes.
    pub fn subgraph(mode: Mode) -> Hostile {
        let head_ok = matches!(mode, Mode::Huge(_) | Mode::Endless);
        Hostile::start(
            false,
            mode,
            head_ok,
            &format!("/api/{PATH_KEY}/subgraphs/id/x"),
        )
    }

    /// A subgraph that answers `_meta` truthfully and misbehaves on pages.
    pub fn subgraph_after_head(mode: Mode) -> Hostile {
        Hostile::start(
            false,
            mode,
            true,
            &format!("/api/{PATH_KEY}/subgraphs/id/x"),
        )
    }

    /// A chain node at `/v2/PATH_KEY` (a hosted provider's shape). It answers
    /// `eth_blockNumber` truthfully only in the oversized modes.
    pub fn node(mode: Mode) -> Hostile {
        let head_ok = matches!(mode, Mode::Huge(_) | Mode::Endless);
        Hostile::start(true, mode, head_ok, &format!("/v2/{PATH_KEY}"))
    }

    /// A chain node that answers the head truthfully and misbehaves on everything else.
    pub fn node_after_head(mode: Mode) -> Hostile {
        Hostile::start(true, mode, true, &format!("/v2/{PATH_KEY}"))
    }

    fn start(node: bool, mode: Mode, head_ok: bool, path: &str) -> Hostile {
        let requests = Arc::new(AtomicU64::new(0));
        let produced = Arc::new(AtomicU64::new(0));
        let shared = Arc::new(Shared {
            node,
            mode,
            head_ok,
            requests: requests.clone(),
            produced: produced.clone(),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = Router::new().fallback(answer).with_state(shared);
                axum::serve(listener, app).await.unwrap();
            });
        });
        Hostile {
            url: format!("http://{addr}{path}"),
            requests,
            produced,
            _thread: thread,
        }
    }

    /// Requests taken so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Bytes of oversized bodies produced so far (what the client could at most have read).
    pub fn produced(&self) -> u64 {
        self.produced.load(Ordering::Relaxed)
    }
}

/// What the server says back with the secrets it was sent.
fn echo(headers: &HeaderMap, uri: &Uri) -> String {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let key = auth.strip_prefix("Bearer ").unwrap_or(auth);
    let (a, b) = key.split_at(key.len() / 2);
    let path = uri.path();
    let pct: String = key.bytes().map(|c| format!("%{c:02X}")).collect();
    format!(
        "bad key Bearer {a}\n{b}; sent {}; as {pct}; path {path}; tab {a}\t{b}\r\n\
         2026-12-02T00:00:00Z ERROR forged log line",
        STANDARD.encode(auth)
    )
}

/// A body of `limit` bytes (or without end) that starts like an answer and never ends
/// its JSON, produced a chunk at a time as the client reads.
fn huge(prefix: &'static str, limit: Option<u64>, produced: Arc<AtomicU64>) -> Body {
    const CHUNK: usize = 64 * 1024;
    let filler = Bytes::from(vec![b' '; CHUNK]);
    let stream = futures::stream::unfold(0u64, move |sent| {
        let filler = filler.clone();
        let produced = produced.clone();
        async move {
            if limit.is_some_and(|l| sent >= l) {
                return None;
            }
            let chunk = if sent == 0 {
                Bytes::from_static(prefix.as_bytes())
            } else {
                let left = limit.map_or(CHUNK as u64, |l| (l - sent).min(CHUNK as u64));
                filler.slice(..left as usize)
            };
            produced.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            Some((
                Ok::<_, Infallible>(chunk.clone()),
                sent + chunk.len() as u64,
            ))
        }
    });
    Body::from_stream(stream)
}

async fn answer(
    State(s): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    s.requests.fetch_add(1, Ordering::Relaxed);
    let text = echo(&headers, &uri);
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if s.head_ok {
        if !s.node && req["query"].as_str().is_some_and(|q| q.contains("_meta")) {
            return axum::Json(
                json!({"data": {"_meta": {"block": {"number": HEAD}, "hasIndexingErrors": false}}}),
            )
            .into_response();
        }
        let head_only = |r: &Value| {
            matches!(
                r["method"].as_str(),
                Some("eth_blockNumber" | "eth_chainId")
            )
        };
        let heads = match &req {
            Value::Array(calls) => !calls.is_empty() && calls.iter().all(head_only),
            r => head_only(r),
        };
        if s.node && heads {
            return rpc_each(&req, |id, method| match method {
                "eth_blockNumber" => {
                    json!({"jsonrpc": "2.0", "id": id, "result": format!("{HEAD:#x}")})
                }
                _ => json!({"jsonrpc": "2.0", "id": id, "result": "0x7a69"}),
            });
        }
    }
    match s.mode {
        Mode::EchoInStatus(code) => (
            StatusCode::from_u16(code).unwrap(),
            [(
                "www-authenticate",
                format!("Bearer error=\"{}\"", text.replace(['\n', '\r', '\t'], " ")),
            )],
            text,
        )
            .into_response(),
        Mode::EchoInErrors if s.node => rpc_each(
            &req,
            |id, _| json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32000, "message": text, "data": text}}),
        ),
        Mode::EchoInErrors => axum::Json(
            json!({"errors": [{"message": text, "locations": [{"line": 1, "column": 1}]}]}),
        )
        .into_response(),
        Mode::Huge(_) | Mode::Endless => {
            let limit = match s.mode {
                Mode::Huge(n) => Some(n),
                _ => None,
            };
            let body = || {
                huge(
                    if s.node {
                        "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":["
                    } else {
                        "{\"data\":{\"rest\":["
                    },
                    limit,
                    s.produced.clone(),
                )
            };
            if s.node {
                let logs = req
                    .as_object()
                    .is_some_and(|o| o["method"] == "eth_getLogs")
                    || req
                        .as_array()
                        .is_some_and(|a| a.iter().any(|r| r["method"] == "eth_getLogs"));
                if logs {
                    return Response::new(body());
                }
                rpc_each(
                    &req,
                    |id, _| json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "method not found"}}),
                )
            } else {
                Response::new(body())
            }
        }
    }
}

/// A JSON-RPC answer to a single call or a batch, one `f(id, method)` per call.
fn rpc_each(req: &Value, f: impl Fn(&Value, &str) -> Value) -> Response {
    let one = |r: &Value| f(&r["id"], r["method"].as_str().unwrap_or(""));
    let v = match req {
        Value::Array(calls) => Value::Array(calls.iter().map(one).collect()),
        r => one(r),
    };
    axum::Json(v).into_response()
}
