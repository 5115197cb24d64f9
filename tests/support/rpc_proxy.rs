//! A fault-injecting JSON-RPC reverse proxy for the chain-source tests: it sits on
//! 127.0.0.1 in front of a real node (anvil) and answers some requests the way real
//! providers do when a log query is too wide, its answer too big, or the service is having
//! a bad moment, so tests can check how the chain source copes.
//!
//! The proxy runs on its own thread with its own current-thread tokio runtime, so it works
//! the same under `#[tokio::test]` and in plain `#[test]`s that block on a child process;
//! [`RpcProxy::start`] is therefore not async. It stops when dropped.
//!
//! What it does with a request:
//! - anything it cannot parse as a JSON-RPC call or batch (not JSON, no `method`, a batch
//!   with missing or repeated ids, an empty batch) is forwarded unchanged and its answer,
//!   HTTP status included, passed back unchanged, with nothing injected;
//! - every call is counted by method, and batches by size;
//! - faults are decided call by call, in order: first `flaky` (a transient failure, with
//!   probability [`Faults::flaky`] from a seeded RNG), then `max_span` for `eth_getLogs`
//!   before forwarding, then `max_logs` on the forwarded `eth_getLogs`'s answer;
//! - a JSON-RPC error fault replaces only that call's answer (matched by id in a batch);
//!   an HTTP-level fault (413, 429, 502, 503, 504, an HTML page, a closed connection, a
//!   body cut short) is the answer to the whole HTTP request, batch or not, as with real
//!   providers;
//! - calls without a fault are forwarded to the upstream together, and when nothing was
//!   injected the upstream's answer is passed back byte for byte.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// How an over-wide `eth_getLogs` (more blocks than [`Faults::max_span`]) is refused; each is
/// one real provider's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RangeFault {
    /// JSON-RPC `-32602` "Log response size exceeded. You can make eth_getLogs requests with
    /// up to a N block range ... this block range should work: [0xFROM, 0xEND]", suggesting
    /// the range that starts at the request's `fromBlock` and spans `max_span` blocks.
    SuggestedRange,
    /// JSON-RPC `-32000` "block range is too wide".
    TooWide,
    /// JSON-RPC `-32000` "eth_getLogs is limited to a N range".
    LimitedTo,
    /// HTTP 413 with the text body `Request Entity Too Large`.
    Http413,
    /// HTTP 503 with an HTML body (a gateway's error page).
    Http503Html,
}

impl RangeFault {
    /// Every kind, in the order [`Faults::range_kinds`] cycles through by default.
    pub const ALL: [RangeFault; 5] = [
        RangeFault::SuggestedRange,
        RangeFault::TooWide,
        RangeFault::LimitedTo,
        RangeFault::Http413,
        RangeFault::Http503Html,
    ];
}

/// How an `eth_getLogs` answer with more than [`Faults::max_logs`] logs is replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LogsFault {
    /// JSON-RPC `-32005` "query returned more than 10000 results" (the real text, whatever
    /// the threshold).
    TooManyResults,
    /// JSON-RPC `-32000` "response is too big".
    TooBig,
}

impl LogsFault {
    /// Both kinds, in the order [`Faults::logs_kinds`] cycles through by default.
    pub const ALL: [LogsFault; 2] = [LogsFault::TooManyResults, LogsFault::TooBig];
}

/// A transient failure of any call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FlakyFault {
    /// HTTP 502 with an HTML body.
    Http502,
    /// HTTP 503 with an HTML body.
    Http503,
    /// HTTP 504 with an HTML body.
    Http504,
    /// The connection closed without an answer.
    Disconnect,
    /// JSON-RPC `-32603` "internal error".
    InternalError,
    /// HTTP 429 with `Retry-After: 1` and the JSON-RPC error `429` "Too Many Requests"
    /// (Infura's and Alchemy's shape), for the whole request.
    Http429,
    /// This call's own JSON-RPC error `-32005` "rate limit exceeded" in an HTTP 200 answer:
    /// in a batch only this element fails, as providers count each element against the rate.
    CallRateLimited,
    /// This call's own error `-32007` "25/second request limit reached - reduce calls per
    /// second or upgrade your account at quicknode.com" (QuickNode's words), HTTP 200.
    CallLimitReached,
    /// HTTP 200 whose body, the upstream's answer, breaks off halfway (the length header
    /// matches what is sent, so only the JSON is cut).
    Truncated,
    /// HTTP 200 with an HTML page instead of JSON (a CDN's interstitial).
    Malformed,
}

impl FlakyFault {
    /// The failures of the transport and the node; [`Faults::flaky_kinds`] picks among these
    /// at random by default.
    pub const ALL: [FlakyFault; 5] = [
        FlakyFault::Http502,
        FlakyFault::Http503,
        FlakyFault::Http504,
        FlakyFault::Disconnect,
        FlakyFault::InternalError,
    ];

    /// Rate limits in each provider's shape.
    pub const RATE_LIMITS: [FlakyFault; 3] = [
        FlakyFault::Http429,
        FlakyFault::CallRateLimited,
        FlakyFault::CallLimitReached,
    ];

    /// Answers whose body is not the JSON asked for.
    pub const BODIES: [FlakyFault; 2] = [FlakyFault::Truncated, FlakyFault::Malformed];

    /// Every kind.
    pub const EVERY: [FlakyFault; 10] = [
        FlakyFault::Http502,
        FlakyFault::Http503,
        FlakyFault::Http504,
        FlakyFault::Disconnect,
        FlakyFault::InternalError,
        FlakyFault::Http429,
        FlakyFault::CallRateLimited,
        FlakyFault::CallLimitReached,
        FlakyFault::Truncated,
        FlakyFault::Malformed,
    ];
}

/// One injected fault, as [`ProxyStats::faults`] counts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// An over-wide `eth_getLogs` refused.
    Range(RangeFault),
    /// An `eth_getLogs` answer with too many logs replaced.
    Logs(LogsFault),
    /// A transient failure.
    Flaky(FlakyFault),
}

/// What to inject; everything off by default.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Refuse an `eth_getLogs` whose `toBlock - fromBlock + 1` is larger (block tags are
    /// resolved against the upstream's head; a `blockHash` filter is never refused).
    pub max_span: Option<u64>,
    /// The refusals to cycle through, deterministically in this order; empty means
    /// [`RangeFault::ALL`].
    pub range_kinds: Vec<RangeFault>,
    /// Replace an `eth_getLogs` answer holding more logs than this with an error.
    pub max_logs: Option<usize>,
    /// The replacements to cycle through; empty means [`LogsFault::ALL`].
    pub logs_kinds: Vec<LogsFault>,
    /// Probability (0 to 1) that a call fails transiently.
    pub flaky: f64,
    /// Only these methods are flaky; `None` means every method.
    pub flaky_methods: Option<Vec<String>>,
    /// The transient failures to pick among at random; empty means [`FlakyFault::ALL`].
    pub flaky_kinds: Vec<FlakyFault>,
    /// Seed of the RNG behind `flaky`, so a run is repeatable.
    pub seed: u64,
}

/// What the proxy has seen and done since it started (or since [`RpcProxy::reset_stats`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProxyStats {
    /// HTTP requests received.
    pub http_requests: u64,
    /// JSON-RPC calls by method, batch elements each counted.
    pub calls: BTreeMap<String, u64>,
    /// Injected faults by kind.
    pub faults: BTreeMap<Fault, u64>,
    /// The widest `eth_getLogs` (in blocks) answered with logs rather than an error; 0 when
    /// none was.
    pub max_logs_span: u64,
    /// The `(fromBlock, toBlock)` of every `eth_getLogs` answered with logs, in order.
    pub logs_ranges: Vec<(u64, u64)>,
    /// The size of every batch request, in order.
    pub batch_sizes: Vec<usize>,
    /// Requests forwarded untouched because they could not be parsed as JSON-RPC.
    pub unparsed: u64,
    /// Requests the upstream did not answer (the proxy answered 502 itself).
    pub upstream_errors: u64,
    /// The last `Authorization` header seen, if any.
    pub authorization: Option<String>,
}

impl ProxyStats {
    /// Calls of `method`.
    pub fn calls_of(&self, method: &str) -> u64 {
        self.calls.get(method).copied().unwrap_or(0)
    }

    /// Faults of one kind injected.
    pub fn fault_count(&self, fault: Fault) -> u64 {
        self.faults.get(&fault).copied().unwrap_or(0)
    }

    /// Every fault injected.
    pub fn faults_total(&self) -> u64 {
        self.faults.values().sum()
    }
}

/// A running proxy; stops when dropped.
pub struct RpcProxy {
    /// `http://127.0.0.1:<port>`: point the client here.
    pub url: String,
    /// The proxy's port.
    pub port: u16,
    /// The upstream every call is forwarded to.
    pub upstream: String,
    shared: Arc<Mutex<Shared>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: std::sync::mpsc::Receiver<()>,
}

struct Shared {
    faults: Faults,
    rng: StdRng,
    range_turn: usize,
    logs_turn: usize,
    stats: ProxyStats,
}

impl Shared {
    fn new(faults: Faults) -> Shared {
        Shared {
            rng: StdRng::seed_from_u64(faults.seed),
            faults,
            range_turn: 0,
            logs_turn: 0,
            stats: ProxyStats::default(),
        }
    }

    fn count(&mut self, fault: Fault) {
        *self.stats.faults.entry(fault).or_insert(0) += 1;
    }
}

impl RpcProxy {
    /// Starts a proxy on 127.0.0.1 (a free port) in front of `upstream`, injecting `faults`.
    /// Returns once it is listening. Needs no tokio runtime of the caller's.
    pub fn start(upstream: &str, faults: Faults) -> RpcProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Mutex::new(Shared::new(faults)));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done) = std::sync::mpsc::channel();
        let app_shared = Arc::clone(&shared);
        let upstream_url = upstream.to_string();
        std::thread::Builder::new()
            .name(format!("rpc-proxy-{port}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let app = App {
                        shared: app_shared,
                        upstream: upstream_url,
                        client: reqwest::Client::builder()
                            .timeout(Duration::from_secs(120))
                            .build()
                            .unwrap(),
                    };
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    let router = Router::new().fallback(handle).with_state(Arc::new(app));
                    let _ = axum::serve(listener, router)
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await;
                });
                drop(runtime);
                let _ = done_tx.send(());
            })
            .unwrap();
        RpcProxy {
            url: format!("http://127.0.0.1:{port}"),
            port,
            upstream: upstream.to_string(),
            shared,
            stop: Some(stop),
            done,
        }
    }

    /// A copy of the statistics so far.
    pub fn stats(&self) -> ProxyStats {
        self.shared.lock().unwrap().stats.clone()
    }

    /// Clears the statistics.
    pub fn reset_stats(&self) {
        self.shared.lock().unwrap().stats = ProxyStats::default();
    }

    /// Replaces the faults from the next request on; the RNG is reseeded from
    /// `faults.seed` and the refusal cycles start again at their first kind.
    pub fn set_faults(&self, faults: Faults) {
        let mut shared = self.shared.lock().unwrap();
        shared.rng = StdRng::seed_from_u64(faults.seed);
        shared.faults = faults;
        shared.range_turn = 0;
        shared.logs_turn = 0;
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        self.shared.lock().unwrap().faults.clone()
    }
}

impl Drop for RpcProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Graceful: idle connections close at once; a request still waiting on the upstream
        // gets a few seconds before the thread is left to end on its own.
        let _ = self.done.recv_timeout(Duration::from_secs(5));
    }
}

// ---------------------------------------------------------------------------------------------
// Serving

struct App {
    shared: Arc<Mutex<Shared>>,
    upstream: String,
    client: reqwest::Client,
}

/// One parsed JSON-RPC call.
struct Call {
    raw: Value,
    id: Value,
    method: String,
    params: Value,
}

/// What became of one call before forwarding.
enum Pre {
    Forward,
    Json(Value),
}

/// An upstream answer.
struct Upstream {
    status: StatusCode,
    content_type: Option<HeaderValue>,
    body: Bytes,
}

impl Upstream {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body).into_response();
        if let Some(content_type) = self.content_type {
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, content_type);
        }
        response
    }
}

async fn handle(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let mut truncate = false;
    let response = respond(&app, headers, body, &mut truncate).await;
    if truncate {
        cut_in_half(response).await
    } else {
        response
    }
}

/// The same answer with its body cut to half its bytes.
async fn cut_in_half(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(
        parts,
        axum::body::Body::from(bytes.slice(..bytes.len() / 2)),
    )
}

/// Answers one HTTP request; sets `truncate` when the answer's body is to be cut.
async fn respond(app: &Arc<App>, headers: HeaderMap, body: Bytes, truncate: &mut bool) -> Response {
    let authorization = headers.get(header::AUTHORIZATION).cloned();
    {
        let mut shared = app.shared.lock().unwrap();
        shared.stats.http_requests += 1;
        if let Some(value) = &authorization {
            shared.stats.authorization = Some(String::from_utf8_lossy(value.as_bytes()).into());
        }
    }
    let Some((calls, batch)) = parse(&body) else {
        app.shared.lock().unwrap().stats.unparsed += 1;
        return forward(app, body, authorization.as_ref())
            .await
            .into_response();
    };

    {
        let mut shared = app.shared.lock().unwrap();
        for call in &calls {
            *shared.stats.calls.entry(call.method.clone()).or_insert(0) += 1;
        }
        if batch {
            shared.stats.batch_sizes.push(calls.len());
        }
    }

    // The spans of the log queries, with tags resolved against the upstream's head only when
    // some query uses one.
    let mut head = None;
    let mut spans = Vec::with_capacity(calls.len());
    for call in &calls {
        let span = if call.method == "eth_getLogs" {
            match log_range(&call.params) {
                Some(range) => {
                    if range.needs_head() && head.is_none() {
                        head = upstream_head(app).await;
                    }
                    range.resolve(head)
                }
                None => None,
            }
        } else {
            None
        };
        spans.push(span);
    }

    // Faults before forwarding, call by call.
    let mut pre = Vec::with_capacity(calls.len());
    {
        let mut shared = app.shared.lock().unwrap();
        for (call, span) in calls.iter().zip(&spans) {
            match decide_pre(&mut shared, call, *span) {
                Decision::Forward => pre.push(Pre::Forward),
                Decision::Truncate => {
                    *truncate = true;
                    pre.push(Pre::Forward);
                }
                Decision::Json(answer) => pre.push(Pre::Json(answer)),
                Decision::Http(fault, response) => {
                    // The whole request is answered by this fault: nothing is cut.
                    *truncate = false;
                    shared.count(fault);
                    drop(shared);
                    return response;
                }
                Decision::Disconnect => {
                    shared.count(Fault::Flaky(FlakyFault::Disconnect));
                    drop(shared);
                    // Unwinding ends the connection's task, so the connection closes with no
                    // answer at all; resume_unwind skips the panic hook, so nothing is printed.
                    std::panic::resume_unwind(Box::new("rpc_proxy: injected disconnect"));
                }
            }
        }
        if *truncate {
            shared.count(Fault::Flaky(FlakyFault::Truncated));
        }
    }

    let injected_before = pre.iter().any(|p| matches!(p, Pre::Json(_)));
    let forwarded: Vec<usize> = (0..calls.len())
        .filter(|&i| matches!(pre[i], Pre::Forward))
        .collect();

    // Forward what is left: the original bytes when nothing was taken out.
    let mut answers: HashMap<usize, Value> = HashMap::new();
    let mut upstream_raw = None;
    if !forwarded.is_empty() {
        let request = if injected_before {
            let subset: Vec<Value> = forwarded.iter().map(|&i| calls[i].raw.clone()).collect();
            Bytes::from(serde_json::to_vec(&Value::Array(subset)).unwrap())
        } else {
            body.clone()
        };
        let upstream = forward(app, request, authorization.as_ref()).await;
        let parsed = if upstream.status == StatusCode::OK {
            serde_json::from_slice::<Value>(&upstream.body).ok()
        } else {
            None
        };
        let matched = parsed.and_then(|answer| match_answers(&calls, &forwarded, answer, batch));
        match matched {
            Some(matched) => answers = matched,
            // Not a JSON-RPC answer we can take apart (an HTTP error, say): passed back as it
            // is, and calls that had a fault decided lose it.
            None => return upstream.into_response(),
        }
        upstream_raw = Some(upstream);
    }

    // Faults on the answers of log queries, and the record of those served.
    let mut injected_after = false;
    {
        let mut shared = app.shared.lock().unwrap();
        for &i in &forwarded {
            if calls[i].method != "eth_getLogs" {
                continue;
            }
            let Some(answer) = answers.get_mut(&i) else {
                continue;
            };
            let Some(logs) = answer.get("result").and_then(Value::as_array) else {
                continue;
            };
            let n = logs.len();
            if let Some(max) = shared.faults.max_logs
                && n > max
            {
                let kinds = if shared.faults.logs_kinds.is_empty() {
                    LogsFault::ALL.to_vec()
                } else {
                    shared.faults.logs_kinds.clone()
                };
                let kind = kinds[shared.logs_turn % kinds.len()];
                shared.logs_turn += 1;
                shared.count(Fault::Logs(kind));
                let (code, message) = match kind {
                    LogsFault::TooManyResults => (-32005, "query returned more than 10000 results"),
                    LogsFault::TooBig => (-32000, "response is too big"),
                };
                *answer = error_answer(&calls[i].id, code, message);
                injected_after = true;
                continue;
            }
            if let Some((from, to)) = spans[i] {
                shared.stats.max_logs_span = shared.stats.max_logs_span.max(span_len(from, to));
                shared.stats.logs_ranges.push((from, to));
            }
        }
    }

    if !injected_before
        && !injected_after
        && let Some(upstream) = upstream_raw
    {
        return upstream.into_response();
    }

    let mut out = Vec::with_capacity(calls.len());
    for (i, decided) in pre.into_iter().enumerate() {
        match decided {
            Pre::Json(answer) => out.push(answer),
            Pre::Forward => out.push(answers.remove(&i).unwrap_or(Value::Null)),
        }
    }
    let body = if batch {
        Value::Array(out)
    } else {
        out.pop().unwrap_or(Value::Null)
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(&body).unwrap(),
    )
        .into_response()
}

/// The calls of a request and whether it was a batch; `None` when it is not something the
/// proxy may touch.
fn parse(body: &[u8]) -> Option<(Vec<Call>, bool)> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let (items, batch) = match value {
        Value::Array(items) => (items, true),
        object @ Value::Object(_) => (vec![object], false),
        _ => return None,
    };
    if items.is_empty() {
        return None;
    }
    let mut ids = HashSet::new();
    let mut calls = Vec::with_capacity(items.len());
    for raw in items {
        let method = raw.get("method")?.as_str()?.to_string();
        let id = raw.get("id")?.clone();
        if id.is_null() || !ids.insert(id.to_string()) {
            return None;
        }
        let params = raw.get("params").cloned().unwrap_or(Value::Null);
        calls.push(Call {
            raw,
            id,
            method,
            params,
        });
    }
    Some((calls, batch))
}

/// The answers to the forwarded calls, by call index; `None` if the answer does not fit.
fn match_answers(
    calls: &[Call],
    forwarded: &[usize],
    answer: Value,
    batch: bool,
) -> Option<HashMap<usize, Value>> {
    let items = match answer {
        Value::Array(items) if batch => items,
        object @ Value::Object(_) if !batch => vec![object],
        _ => return None,
    };
    let mut by_id: HashMap<String, Value> = HashMap::new();
    for item in items {
        let id = item.get("id")?.to_string();
        by_id.insert(id, item);
    }
    let mut answers = HashMap::new();
    for &i in forwarded {
        answers.insert(i, by_id.remove(&calls[i].id.to_string())?);
    }
    Some(answers)
}

enum Decision {
    Forward,
    /// Forward, and cut the answer's body.
    Truncate,
    Json(Value),
    Http(Fault, Response),
    Disconnect,
}

fn decide_pre(shared: &mut Shared, call: &Call, span: Option<(u64, u64)>) -> Decision {
    let faults = &shared.faults;
    let flaky_method = match &faults.flaky_methods {
        Some(methods) => methods.contains(&call.method),
        None => true,
    };
    if faults.flaky > 0.0 && flaky_method && shared.rng.gen_bool(faults.flaky.min(1.0)) {
        let kinds = if shared.faults.flaky_kinds.is_empty() {
            FlakyFault::ALL.to_vec()
        } else {
            shared.faults.flaky_kinds.clone()
        };
        let kind = kinds[shared.rng.gen_range(0..kinds.len())];
        return match kind {
            FlakyFault::Disconnect => Decision::Disconnect,
            FlakyFault::InternalError => {
                shared.count(Fault::Flaky(kind));
                Decision::Json(error_answer(&call.id, -32603, "internal error"))
            }
            FlakyFault::Http502 => Decision::Http(
                Fault::Flaky(kind),
                html(StatusCode::BAD_GATEWAY, "502 Bad Gateway"),
            ),
            FlakyFault::Http503 => Decision::Http(
                Fault::Flaky(kind),
                html(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "503 Service Temporarily Unavailable",
                ),
            ),
            FlakyFault::Http504 => Decision::Http(
                Fault::Flaky(kind),
                html(StatusCode::GATEWAY_TIMEOUT, "504 Gateway Time-out"),
            ),
            FlakyFault::Http429 => {
                let body = error_answer(&call.id, 429, "Too Many Requests");
                Decision::Http(
                    Fault::Flaky(kind),
                    (
                        StatusCode::TOO_MANY_REQUESTS,
                        [
                            (header::CONTENT_TYPE, "application/json"),
                            (header::RETRY_AFTER, "1"),
                        ],
                        serde_json::to_vec(&body).unwrap(),
                    )
                        .into_response(),
                )
            }
            FlakyFault::CallRateLimited => {
                shared.count(Fault::Flaky(kind));
                Decision::Json(error_answer(&call.id, -32005, "rate limit exceeded"))
            }
            FlakyFault::CallLimitReached => {
                shared.count(Fault::Flaky(kind));
                Decision::Json(error_answer(
                    &call.id,
                    -32007,
                    "25/second request limit reached - reduce calls per second or upgrade \
                     your account at quicknode.com",
                ))
            }
            FlakyFault::Truncated => Decision::Truncate,
            FlakyFault::Malformed => {
                Decision::Http(Fault::Flaky(kind), html(StatusCode::OK, "Just a moment..."))
            }
        };
    }

    if let (Some(max), Some((from, to))) = (shared.faults.max_span, span)
        && span_len(from, to) > max
    {
        let kinds = if shared.faults.range_kinds.is_empty() {
            RangeFault::ALL.to_vec()
        } else {
            shared.faults.range_kinds.clone()
        };
        let kind = kinds[shared.range_turn % kinds.len()];
        shared.range_turn += 1;
        let fault = Fault::Range(kind);
        return match kind {
            RangeFault::SuggestedRange => {
                shared.count(fault);
                let end = from.saturating_add(max.max(1) - 1);
                let message = format!(
                    "Log response size exceeded. You can make eth_getLogs requests with up to a \
                     {max} block range and no limit on the response size, or you can request any \
                     block range with a cap of 10K logs in the response. Based on your \
                     parameters, this block range should work: [{from:#x}, {end:#x}]"
                );
                Decision::Json(error_answer(&call.id, -32602, &message))
            }
            RangeFault::TooWide => {
                shared.count(fault);
                Decision::Json(error_answer(&call.id, -32000, "block range is too wide"))
            }
            RangeFault::LimitedTo => {
                shared.count(fault);
                let message = format!("eth_getLogs is limited to a {max} range");
                Decision::Json(error_answer(&call.id, -32000, &message))
            }
            RangeFault::Http413 => Decision::Http(
                fault,
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    [(header::CONTENT_TYPE, "text/plain")],
                    "Request Entity Too Large",
                )
                    .into_response(),
            ),
            RangeFault::Http503Html => Decision::Http(
                fault,
                html(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "503 Service Temporarily Unavailable",
                ),
            ),
        };
    }
    Decision::Forward
}

fn error_answer(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// A gateway's error page, as nginx writes them.
fn html(status: StatusCode, title: &str) -> Response {
    let page = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1>\
         </center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    );
    (status, [(header::CONTENT_TYPE, "text/html")], page).into_response()
}

async fn forward(app: &App, body: Bytes, authorization: Option<&HeaderValue>) -> Upstream {
    let mut request = app
        .client
        .post(&app.upstream)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body);
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value.clone());
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => return upstream_failed(app, &e.to_string()),
    };
    let status = response.status();
    let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
    match response.bytes().await {
        Ok(body) => Upstream {
            status,
            content_type,
            body,
        },
        Err(e) => upstream_failed(app, &e.to_string()),
    }
}

fn upstream_failed(app: &App, error: &str) -> Upstream {
    app.shared.lock().unwrap().stats.upstream_errors += 1;
    Upstream {
        status: StatusCode::BAD_GATEWAY,
        content_type: Some(HeaderValue::from_static("text/plain")),
        body: Bytes::from(format!("rpc_proxy: upstream failed: {error}")),
    }
}

/// The upstream's block number, for resolving `latest` and friends.
async fn upstream_head(app: &App) -> Option<u64> {
    let body = json!({"jsonrpc": "2.0", "id": 0, "method": "eth_blockNumber", "params": []});
    let answer: Value = app
        .client
        .post(&app.upstream)
        .json(&body)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    hex_u64(answer.get("result")?)
}

// ---------------------------------------------------------------------------------------------
// Block ranges

#[derive(Clone, Copy, Debug, PartialEq)]
enum Bound {
    Number(u64),
    Head,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct LogRange {
    from: Bound,
    to: Bound,
}

impl LogRange {
    fn needs_head(&self) -> bool {
        self.from == Bound::Head || self.to == Bound::Head
    }

    fn resolve(&self, head: Option<u64>) -> Option<(u64, u64)> {
        let number = |bound: Bound| match bound {
            Bound::Number(n) => Some(n),
            Bound::Head => head,
        };
        Some((number(self.from)?, number(self.to)?))
    }
}

/// The block range of `eth_getLogs` params; `None` when they are not understood.
fn log_range(params: &Value) -> Option<LogRange> {
    let filter = params.as_array()?.first()?.as_object()?;
    if filter.get("blockHash").is_some_and(|h| !h.is_null()) {
        return None;
    }
    let bound = |key: &str| -> Option<Bound> {
        match filter.get(key) {
            None | Some(Value::Null) => Some(Bound::Head),
            Some(Value::String(tag)) => match tag.as_str() {
                "earliest" => Some(Bound::Number(0)),
                "latest" | "pending" | "safe" | "finalized" => Some(Bound::Head),
                _ => hex_u64(&Value::String(tag.clone())).map(Bound::Number),
            },
            Some(_) => None,
        }
    };
    Some(LogRange {
        from: bound("fromBlock")?,
        to: bound("toBlock")?,
    })
}

/// Blocks in `from..=to` (0 when reversed).
fn span_len(from: u64, to: u64) -> u64 {
    if to < from { 0 } else { to - from + 1 }
}

fn hex_u64(value: &Value) -> Option<u64> {
    let digits = value.as_str()?.strip_prefix("0x")?;
    u64::from_str_radix(digits, 16).ok()
}
