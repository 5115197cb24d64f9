//! The devnet's main HTTP server: the subgraph's GraphQL endpoint (where faults apply), the
//! admin endpoints (grow the chain; cluster outages and stats), and a health check.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::http::{GraphQLPlaygroundConfig, playground_source};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query as UrlQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::chain::{Chain, Mined};
use super::cluster::{Cluster, OutageMode};
use super::faults::{Fault, FaultDice};
use super::gateway::GatewayStats;
use super::live::LiveChain;
use super::schema::{Served, SubgraphInfo, SubgraphSchema, build_schema};
use super::{DevnetConfig, SUBGRAPH_PATH};

/// Most blocks one `/admin/mine` call may add.
const MINE_BLOCKS_MAX: u64 = 1_000_000;
/// Most tokens one `/admin/mine` call may add.
const MINE_TOKENS_MAX: usize = 1_000_000;
/// Longest outage one `/admin/cluster/outage` call may start: an hour, far beyond any test.
const OUTAGE_SECONDS_MAX: f64 = 3_600.0;

/// What every handler shares.
struct AppState {
    /// The compiled schema.
    schema: SubgraphSchema,
    /// The chain, shared with the gateway; mining swaps in a grown one.
    live: Arc<LiveChain>,
    /// The simulated cluster, when this devnet runs one.
    cluster: Option<Arc<Cluster>>,
    /// The simulated gateway's counters, when this devnet runs one.
    gateway: Option<Arc<GatewayStats>>,
    /// Deployment, pruning and indexing errors.
    info: Arc<SubgraphInfo>,
    /// Fault draws.
    dice: FaultDice,
    /// Turns true at shutdown, releasing held requests.
    stopping: watch::Receiver<bool>,
}

impl AppState {
    /// The chain as of now.
    fn chain(&self) -> Arc<Chain> {
        self.live.chain()
    }
}

/// Serves the subgraph of `live` (and the admin routes of `cluster` and `gateway`, if any)
/// on `listener` until `shutdown` resolves.
pub(super) async fn serve_main(
    listener: TcpListener,
    live: Arc<LiveChain>,
    cluster: Option<Arc<Cluster>>,
    gateway: Option<Arc<GatewayStats>>,
    config: &DevnetConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stopping) = watch::channel(false);
    let info = SubgraphInfo {
        deployment: super::deployment_id(config.chain.seed),
        prune_before: config.prune_before,
        indexing_errors: config.indexing_errors,
    };
    let state = Arc::new(AppState {
        schema: build_schema(),
        live,
        cluster,
        gateway,
        info: Arc::new(info),
        dice: FaultDice::new(config.faults.clone()),
        stopping,
    });
    let app = Router::new()
        .route(SUBGRAPH_PATH, post(graphql_post).get(graphql_get))
        .route("/admin/mine", post(admin_mine))
        .route("/admin/cluster/outage", post(admin_cluster_outage))
        .route("/admin/cluster/stats", get(admin_cluster_stats))
        .route("/admin/subgraph/stats", get(admin_subgraph_stats))
        .route("/admin/gateway/stats", get(admin_gateway_stats))
        .route("/health", get(health))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        })
        .await
}

/// `GET /health`.
async fn health(State(state): State<Arc<AppState>>) -> Response {
    let body = serde_json::json!({ "status": "ok", "head": state.chain().head() });
    json_response(StatusCode::OK, body.to_string().into_bytes())
}

/// Body of `POST /admin/mine`.
#[derive(Debug, Deserialize)]
struct MineRequest {
    /// Blocks to add after the head.
    blocks: u64,
    /// Mints to spread among them.
    #[serde(default)]
    tokens: usize,
}

/// `POST /admin/mine`: grows the chain. Never faulted.
async fn admin_mine(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let req: MineRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return text_response(StatusCode::BAD_REQUEST, format!("bad mine request: {e}")),
    };
    if req.blocks > MINE_BLOCKS_MAX || req.tokens > MINE_TOKENS_MAX {
        return text_response(
            StatusCode::BAD_REQUEST,
            format!("at most {MINE_BLOCKS_MAX} blocks and {MINE_TOKENS_MAX} tokens per call"),
        );
    }
    if req.blocks == 0 && req.tokens > 0 {
        return text_response(
            StatusCode::BAD_REQUEST,
            "tokens need at least one block".into(),
        );
    }
    let live = Arc::clone(&state.live);
    let mined =
        tokio::task::spawn_blocking(move || -> Mined { live.mine(req.blocks, req.tokens) }).await;
    match mined {
        Ok(m) => {
            tracing::info!(head = m.head, tokens = m.ids.len(), "devnet mined");
            match serde_json::to_vec(&m) {
                Ok(body) => json_response(StatusCode::OK, body),
                Err(e) => text_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            }
        }
        Err(e) => text_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Body of `POST /admin/cluster/outage`.
#[derive(Debug, Deserialize)]
struct OutageRequest {
    /// How long it lasts.
    seconds: f64,
    /// `unavailable` (503s) or `refuse` (the listener closes).
    mode: OutageMode,
}

/// `POST /admin/cluster/outage`: the cluster answers 503, or refuses connections, for a
/// while. Pins survive it.
async fn admin_cluster_outage(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let Some(cluster) = &state.cluster else {
        return text_response(StatusCode::NOT_FOUND, "this devnet runs no cluster".into());
    };
    let req: OutageRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return text_response(StatusCode::BAD_REQUEST, format!("bad outage request: {e}"));
        }
    };
    if !(0.0..=OUTAGE_SECONDS_MAX).contains(&req.seconds) {
        return text_response(
            StatusCode::BAD_REQUEST,
            format!("seconds must be between 0 and {OUTAGE_SECONDS_MAX}"),
        );
    }
    cluster.outage(req.mode, Duration::from_secs_f64(req.seconds));
    tracing::info!(mode = ?req.mode, seconds = req.seconds, "devnet cluster outage");
    let body = serde_json::json!({ "mode": req.mode, "seconds": req.seconds });
    json_response(StatusCode::OK, body.to_string().into_bytes())
}

/// `GET /admin/cluster/stats`: pins, requests and statuses, so tests can assert that each
/// CID was pinned once.
async fn admin_cluster_stats(State(state): State<Arc<AppState>>) -> Response {
    let Some(cluster) = &state.cluster else {
        return text_response(StatusCode::NOT_FOUND, "this devnet runs no cluster".into());
    };
    let cluster = Arc::clone(cluster);
    match tokio::task::spawn_blocking(move || cluster.stats()).await {
        Ok(stats) => match serde_json::to_vec(&stats) {
            Ok(body) => json_response(StatusCode::OK, body),
            Err(e) => text_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
        Err(e) => text_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `GET /admin/subgraph/stats`: GraphQL POSTs decided and the faults injected among them,
/// by name (`http_503`, `timeout`, `graphql: Query timed out`, ...).
async fn admin_subgraph_stats(State(state): State<Arc<AppState>>) -> Response {
    match serde_json::to_vec(&state.dice.counts()) {
        Ok(body) => json_response(StatusCode::OK, body),
        Err(e) => text_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `GET /admin/gateway/stats`: gateway requests and the transient faults injected.
async fn admin_gateway_stats(State(state): State<Arc<AppState>>) -> Response {
    let Some(gateway) = &state.gateway else {
        return text_response(StatusCode::NOT_FOUND, "this devnet runs no gateway".into());
    };
    match serde_json::to_vec(&gateway.counts()) {
        Ok(body) => json_response(StatusCode::OK, body),
        Err(e) => text_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Query string of a GraphQL GET.
#[derive(Debug, Deserialize)]
struct GetParams {
    /// The query document.
    query: Option<String>,
    /// Variables, as a JSON object.
    variables: Option<String>,
    /// Which operation of the document to run.
    #[serde(rename = "operationName")]
    operation_name: Option<String>,
}

/// `GET` on the subgraph: runs `?query=` (without faults), or shows a playground.
async fn graphql_get(
    State(state): State<Arc<AppState>>,
    UrlQuery(params): UrlQuery<GetParams>,
) -> Response {
    let Some(query) = params.query else {
        return Html(playground_source(GraphQLPlaygroundConfig::new(
            SUBGRAPH_PATH,
        )))
        .into_response();
    };
    let mut request = async_graphql::Request::new(query);
    if let Some(vars) = params.variables {
        match serde_json::from_str(&vars) {
            Ok(v) => request = request.variables(async_graphql::Variables::from_json(v)),
            Err(e) => {
                return graphql_error(StatusCode::BAD_REQUEST, &format!("bad variables: {e}"));
            }
        }
    }
    if let Some(op) = params.operation_name {
        request = request.operation_name(op);
    }
    match execute(&state, request).await {
        Ok(body) => json_response(StatusCode::OK, body),
        Err(e) => text_response(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// `POST` on the subgraph: the GraphQL endpoint, with faults.
async fn graphql_post(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let fault = state.dice.roll();
    let latency = state.dice.config().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match fault {
        Fault::ServerError(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let reason = status.canonical_reason().unwrap_or("error");
            return text_response(status, reason.to_owned());
        }
        Fault::RateLimited => {
            let mut r = text_response(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests".into());
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return r;
        }
        Fault::Timeout => {
            let mut stopping = state.stopping.clone();
            let hold = state.dice.config().timeout_hold;
            tokio::select! {
                _ = tokio::time::sleep(hold) => {}
                _ = stopping.wait_for(|s| *s) => {}
            }
            return text_response(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream request timeout".into(),
            );
        }
        Fault::Malformed => {
            let body = b"<html><body><h1>502 Bad Gateway</h1></body></html>".to_vec();
            return json_response(StatusCode::OK, body);
        }
        Fault::GraphqlError(message) => {
            return graphql_error(StatusCode::OK, message);
        }
        Fault::None | Fault::Truncated | Fault::IndexingError => {}
    }
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return graphql_error(StatusCode::BAD_REQUEST, &format!("bad request body: {e}")),
    };
    let body = match execute(&state, request).await {
        Ok(body) => body,
        Err(e) => return text_response(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    match fault {
        Fault::Truncated => {
            let half = body.len() / 2;
            json_response(StatusCode::OK, body[..half].to_vec())
        }
        Fault::IndexingError => json_response(StatusCode::OK, with_indexing_error(&body)),
        _ => json_response(StatusCode::OK, body),
    }
}

/// Runs a GraphQL request against the current chain; the serialised response.
async fn execute(state: &AppState, request: async_graphql::Request) -> Result<Vec<u8>, String> {
    let served = Served {
        chain: state.chain(),
        info: Arc::clone(&state.info),
        one_pass: true,
    };
    let response = state.schema.execute(request.data(served)).await;
    graph_node_body(&response).map_err(|e| e.to_string())
}

/// The response body graph-node would send. graph-node fails a query as a whole: when any
/// root field fails (`skip` over 5000, a block not yet indexed, ...) it answers the errors
/// and no `data` at all, where async-graphql keeps the fields that did resolve. A client
/// that sends many aliased fields in one request must see the same failure here as there.
pub(crate) fn graph_node_body(response: &async_graphql::Response) -> serde_json::Result<Vec<u8>> {
    if response.errors.is_empty() {
        serde_json::to_vec(response)
    } else {
        serde_json::to_vec(&serde_json::json!({ "errors": response.errors }))
    }
}

/// A response with every list under `data` cut to half its rows, plus `indexing_error`:
/// what graph-node sends when `subgraphError: allow` meets a failed subgraph.
pub fn with_indexing_error(body: &[u8]) -> Vec<u8> {
    let mut value: serde_json::Value =
        serde_json::from_slice(body).unwrap_or_else(|_| serde_json::json!({}));
    if let Some(data) = value.get_mut("data").and_then(|d| d.as_object_mut()) {
        for field in data.values_mut() {
            if let Some(rows) = field.as_array_mut() {
                rows.truncate(rows.len() / 2);
            }
        }
    }
    if let Some(obj) = value.as_object_mut() {
        obj.insert(
            "errors".to_owned(),
            serde_json::json!([{ "message": "indexing_error" }]),
        );
    }
    serde_json::to_vec(&value).unwrap_or_default()
}

/// `{"errors":[{"message": ...}]}`.
fn graphql_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "errors": [{ "message": message }] });
    json_response(status, body.to_string().into_bytes())
}

/// A JSON response (the content type says JSON even when a fault broke the body).
fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// A plain-text response.
fn text_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}
