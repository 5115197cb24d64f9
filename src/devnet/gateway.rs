//! The devnet's simulated IPFS path gateway, Arweave gateway and web metadata server, all
//! on one listener:
//!
//! - `GET /ipfs/{cid}` and `GET /ipfs/{cid}/{*path}`: metadata of tokens whose URI leads to
//!   IPFS metadata, whatever the URI's form (the pinner always asks the gateway);
//! - `GET /ar/{txid}`: metadata of `ar://` tokens;
//! - `GET /web/{*path}`: metadata of plain web URIs (the chain's `web_base` points here).
//!
//! Each token answers as its [`Variant`] says; unknown CIDs and paths get 404. Redirects
//! count their hops in a `hop` query parameter.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cid::Cid;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::chain::{Chain, MintedToken, mix};
use super::content::{METADATA_ADDRESS_URL, REDIRECT_CHAIN_HOPS, Variant};
use super::live::{LiveChain, resolve_web};

/// Bytes per chunk of a chunked huge body.
const HUGE_CHUNK_BYTES: usize = 64 * 1024;

/// How the gateway misbehaves beyond the per-token variants.
#[derive(Clone, Debug, PartialEq)]
pub struct GatewayConfig {
    /// Delay added to every answer.
    pub latency: Duration,
    /// Share of requests answered with a transient 502 or 504 (drawn per request, so a
    /// retry can succeed).
    pub error_rate: f64,
    /// Share of requests held for [`GatewayConfig::timeout_hold`] and then answered 504, as
    /// a gateway does while it looks for the content's providers (drawn per request apart
    /// from `error_rate`, so a retry can succeed).
    pub timeout_rate: f64,
    /// How long a timed-out request is held.
    pub timeout_hold: Duration,
    /// How long [`Variant::Slow`] tokens hang before answering.
    pub slow: Duration,
    /// Seed of the transient-error draws.
    pub seed: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            latency: Duration::ZERO,
            error_rate: 0.0,
            timeout_rate: 0.0,
            timeout_hold: Duration::from_secs(30),
            slow: Duration::from_secs(10),
            seed: 0,
        }
    }
}

/// What the gateway has answered, for `/admin/gateway/stats`: a test checks that the faults
/// it configured happened, and that the client saw each one.
#[derive(Debug, Default)]
pub struct GatewayStats {
    /// Every request.
    requests: AtomicU64,
    /// Transient 502s injected.
    http_502: AtomicU64,
    /// Transient 504s injected.
    http_504: AtomicU64,
    /// Requests held and then answered 504.
    timeouts: AtomicU64,
}

/// A snapshot of [`GatewayStats`].
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GatewayCounts {
    /// Every request.
    pub requests: u64,
    /// Injected faults by name: `http_502`, `http_504` (both answered at once) and
    /// `timeout` (held, then 504).
    pub faults: std::collections::BTreeMap<String, u64>,
}

impl GatewayStats {
    /// The counts so far; faults that never happened are left out.
    pub fn counts(&self) -> GatewayCounts {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let faults = [
            ("http_502", load(&self.http_502)),
            ("http_504", load(&self.http_504)),
            ("timeout", load(&self.timeouts)),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| (k.to_owned(), n))
        .collect();
        GatewayCounts {
            requests: load(&self.requests),
            faults,
        }
    }
}

/// What the handlers share.
struct GatewayState {
    /// The chain and its content index.
    live: Arc<LiveChain>,
    /// Latency, errors, slowness.
    config: GatewayConfig,
    /// `http://host:port` of this listener, for absolute redirect locations.
    base: String,
    /// Requests so far: the transient-error draws hash it.
    requests: AtomicU64,
    /// What was answered, shared with the admin routes.
    stats: Arc<GatewayStats>,
    /// Turns true at shutdown, releasing slow requests.
    stopping: watch::Receiver<bool>,
}

/// Serves the gateway for `live` on `listener` until `shutdown` resolves. Builds the
/// content index first (on a blocking thread).
pub async fn serve_gateway(
    listener: TcpListener,
    live: Arc<LiveChain>,
    config: GatewayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_gateway_counted(listener, live, config, Arc::default(), shutdown).await
}

/// [`serve_gateway`], counting what it answers into `stats`.
pub async fn serve_gateway_counted(
    listener: TcpListener,
    live: Arc<LiveChain>,
    config: GatewayConfig,
    stats: Arc<GatewayStats>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = super::loopback_if_unspecified(listener.local_addr()?);
    let indexing = Arc::clone(&live);
    tokio::task::spawn_blocking(move || indexing.ensure_index())
        .await
        .map_err(std::io::Error::other)?;
    let (stop_tx, stopping) = watch::channel(false);
    let state = Arc::new(GatewayState {
        live,
        config,
        base: format!("http://{addr}"),
        requests: AtomicU64::new(0),
        stats,
        stopping,
    });
    let app = Router::new()
        .route("/ipfs/{cid}", get(ipfs_root))
        .route("/ipfs/{cid}/{*path}", get(ipfs_path))
        .route("/ar/{txid}", get(arweave))
        .route("/web/{*path}", get(web))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        })
        .await
}

/// Query string of a metadata request: how many redirects led here.
#[derive(Debug, Default, Deserialize)]
struct Hops {
    /// Redirects followed so far (absent on the first request).
    #[serde(default)]
    hop: u32,
}

/// Where a request's token lives, for headers.
enum Origin {
    /// `/ipfs/<cid>/<path>`.
    Ipfs,
    /// `/ar/` or `/web/`.
    Other,
}

/// `GET /ipfs/{cid}`.
async fn ipfs_root(
    State(state): State<Arc<GatewayState>>,
    Path(cid): Path<String>,
    Query(hops): Query<Hops>,
    uri: Uri,
) -> Response {
    ipfs(state, &cid, "", hops, uri).await
}

/// `GET /ipfs/{cid}/{*path}`.
async fn ipfs_path(
    State(state): State<Arc<GatewayState>>,
    Path((cid, path)): Path<(String, String)>,
    Query(hops): Query<Hops>,
    uri: Uri,
) -> Response {
    ipfs(state, &cid, &path, hops, uri).await
}

/// Resolves and answers an IPFS path.
async fn ipfs(state: Arc<GatewayState>, cid: &str, path: &str, hops: Hops, uri: Uri) -> Response {
    if let Some(r) = gate(&state).await {
        return r;
    }
    let parsed = match Cid::try_from(cid) {
        Ok(c) => c,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("invalid path \"/ipfs/{cid}\": {e}"),
            );
        }
    };
    let version = state.live.current();
    let found = version
        .index
        .as_ref()
        .and_then(|index| index.resolve_ipfs(&version.chain, &parsed, path));
    let Some(index) = found else {
        return text(
            StatusCode::NOT_FOUND,
            format!("ipfs resolve -r /ipfs/{cid}/{path}: no link named \"{path}\""),
        );
    };
    answer(&state, &version.chain, index, Origin::Ipfs, hops, &uri).await
}

/// `GET /ar/{txid}`.
async fn arweave(
    State(state): State<Arc<GatewayState>>,
    Path(txid): Path<String>,
    Query(hops): Query<Hops>,
    uri: Uri,
) -> Response {
    if let Some(r) = gate(&state).await {
        return r;
    }
    let version = state.live.current();
    let found = version
        .index
        .as_ref()
        .and_then(|index| index.resolve_arweave(&version.chain, &txid));
    match found {
        Some(index) => answer(&state, &version.chain, index, Origin::Other, hops, &uri).await,
        None => text(StatusCode::NOT_FOUND, "Not Found".to_owned()),
    }
}

/// `GET /web/{*path}`.
async fn web(
    State(state): State<Arc<GatewayState>>,
    Path(path): Path<String>,
    Query(hops): Query<Hops>,
    uri: Uri,
) -> Response {
    if let Some(r) = gate(&state).await {
        return r;
    }
    let chain = state.live.chain();
    match resolve_web(&chain, &path) {
        Some(index) => answer(&state, &chain, index, Origin::Other, hops, &uri).await,
        None => text(
            StatusCode::NOT_FOUND,
            "{\"error\":\"token not found\"}".to_owned(),
        ),
    }
}

/// Latency, transient errors and timeouts, applied before any lookup.
async fn gate(state: &GatewayState) -> Option<Response> {
    if !state.config.latency.is_zero() {
        tokio::time::sleep(state.config.latency).await;
    }
    let n = state.requests.fetch_add(1, Ordering::Relaxed);
    state.stats.requests.fetch_add(1, Ordering::Relaxed);
    let timeout_draw = mix(state.config.seed ^ 0x686f_6c64, n);
    if state.config.timeout_rate > 0.0
        && super::cluster::unit(timeout_draw) < state.config.timeout_rate
    {
        state.stats.timeouts.fetch_add(1, Ordering::Relaxed);
        let mut stopping = state.stopping.clone();
        tokio::select! {
            _ = tokio::time::sleep(state.config.timeout_hold) => {}
            _ = stopping.wait_for(|s| *s) => {}
        }
        return Some(text(
            StatusCode::GATEWAY_TIMEOUT,
            "504 Gateway Time-out".to_owned(),
        ));
    }
    if state.config.error_rate <= 0.0 {
        return None;
    }
    let draw = mix(state.config.seed ^ 0x6761_7465, n);
    if super::cluster::unit(draw) >= state.config.error_rate {
        return None;
    }
    Some(if draw & 1 == 0 {
        state.stats.http_502.fetch_add(1, Ordering::Relaxed);
        text(StatusCode::BAD_GATEWAY, "502 Bad Gateway".to_owned())
    } else {
        state.stats.http_504.fetch_add(1, Ordering::Relaxed);
        text(
            StatusCode::GATEWAY_TIMEOUT,
            "504 Gateway Time-out".to_owned(),
        )
    })
}

/// Answers for token `index` as its variant says.
async fn answer(
    state: &GatewayState,
    chain: &Chain,
    index: usize,
    origin: Origin,
    hops: Hops,
    uri: &Uri,
) -> Response {
    let Some(token) = chain.tokens().get(index) else {
        return text(StatusCode::NOT_FOUND, "Not Found".to_owned());
    };
    let variant = chain.variant(token).unwrap_or(Variant::Good);
    let redirect_to = |hop: u32| format!("{}{}?hop={hop}", state.base, uri.path());
    match variant {
        Variant::Good => good(chain, token, &origin, uri),
        Variant::NotFound => text(StatusCode::NOT_FOUND, format!("{} not found", uri.path())),
        Variant::InvalidJson => {
            let (body, content_type) = chain.invalid_json(token);
            with_type(StatusCode::OK, content_type, body)
        }
        Variant::NotAnObject => with_type(
            StatusCode::OK,
            "application/json",
            chain.not_an_object(token),
        ),
        Variant::Huge => {
            let body = chain.huge_metadata(token);
            if chain.huge_is_chunked(token) {
                let chunks: Vec<Result<Vec<u8>, std::io::Error>> = body
                    .chunks(HUGE_CHUNK_BYTES)
                    .map(|c| Ok(c.to_vec()))
                    .collect();
                let stream = futures::stream::iter(chunks);
                let mut r = Response::new(Body::from_stream(stream));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                r
            } else {
                with_type(StatusCode::OK, "application/json", body)
            }
        }
        Variant::Slow => {
            let mut stopping = state.stopping.clone();
            tokio::select! {
                _ = tokio::time::sleep(state.config.slow) => {}
                _ = stopping.wait_for(|s| *s) => {}
            }
            good(chain, token, &origin, uri)
        }
        Variant::Redirect if hops.hop == 0 => redirect(&redirect_to(1)),
        Variant::RedirectChain if hops.hop < REDIRECT_CHAIN_HOPS => {
            redirect(&redirect_to(hops.hop + 1))
        }
        Variant::MetadataAddressRedirect => redirect(METADATA_ADDRESS_URL),
        Variant::Redirect | Variant::RedirectChain => good(chain, token, &origin, uri),
    }
}

/// 200 with the token's good metadata. Extension-less IPFS paths get `text/plain`, as a
/// gateway that sniffs content does: clients must not trust the content type.
fn good(chain: &Chain, token: &MintedToken, origin: &Origin, uri: &Uri) -> Response {
    let body = chain.good_metadata(token);
    match origin {
        Origin::Ipfs => {
            let last = uri.path().rsplit('/').next().unwrap_or_default();
            let content_type = if last.ends_with(".json") {
                "application/json"
            } else {
                "text/plain; charset=utf-8"
            };
            let mut r = with_type(StatusCode::OK, content_type, body);
            if let Ok(v) = HeaderValue::from_str(uri.path()) {
                r.headers_mut().insert("x-ipfs-path", v);
            }
            r
        }
        Origin::Other => with_type(StatusCode::OK, "application/json", body),
    }
}

/// 302 to `location`.
fn redirect(location: &str) -> Response {
    let mut r = text(StatusCode::FOUND, String::new());
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// A response with a content type.
fn with_type(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

/// A plain-text response.
fn text(status: StatusCode, body: String) -> Response {
    with_type(status, "text/plain; charset=utf-8", body.into_bytes())
}
