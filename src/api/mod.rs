//! The daemon's HTTP API: JSON reads, Prometheus metrics, the admin cursor write, and the
//! dashboard page. Every read is served from counters, indexes and single keys, never a
//! scan of the tokens, so it stays fast on a store of any size.

pub mod dashboard;
pub mod history;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use nifty_state::{Position, StateError, Store, UnixMillis};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;

use crate::commands::{StatusReport, now_ms};
use crate::config::Config;
use crate::daemon::jobs::CursorLocks;
use crate::daemon::schedule::{JobView, RunView, Scheduler};
use crate::{NotFound, UsageError};
use history::{History, Sample};

/// The longest error message an answer carries.
const MESSAGE_BYTES: usize = 2048;

/// Runs listed by `/api/runs` when no `limit` is given, and the most it lists.
const RUNS_DEFAULT: usize = 50;
const RUNS_MAX: usize = 1000;
/// Examples per failure reason in `/api/failures` by default, and at most.
const EXAMPLES_DEFAULT: usize = 3;
const EXAMPLES_MAX: usize = 100;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

struct Inner {
    /// The store the daemon holds.
    store: Store,
    /// The daemon's configuration (sources, for status).
    config: Config,
    /// The jobs, for their state in `/api/status`; `None` for an API without a scheduler.
    scheduler: Option<Arc<Scheduler>>,
    /// The lock of each source cursor a scrape job holds while it runs.
    cursor_locks: CursorLocks,
    /// Counter samples for the throughput chart.
    history: Arc<History>,
    /// When the daemon started (ms since the epoch).
    started_ms: UnixMillis,
    /// `/api/failures?since=` reads every entry of each reason: one such query at a time,
    /// so unauthenticated callers cannot tie up every blocking thread with them.
    windowed: tokio::sync::Semaphore,
}

impl ApiState {
    /// The API over `store`.
    pub fn new(
        store: Store,
        config: Config,
        scheduler: Option<Arc<Scheduler>>,
        cursor_locks: CursorLocks,
        history: Arc<History>,
    ) -> Self {
        ApiState {
            inner: Arc::new(Inner {
                store,
                config,
                scheduler,
                cursor_locks,
                history,
                started_ms: now_ms(),
                windowed: tokio::sync::Semaphore::new(1),
            }),
        }
    }
}

/// Every route.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/api/status", get(status))
        .route("/api/cursors", get(cursors))
        .route("/api/runs", get(runs))
        .route("/api/tokens/{contract}/{token_id}", get(token))
        .route("/api/pins/{cid}", get(pin))
        .route("/api/failures", get(failures))
        .route("/api/cursor/{source}", post(move_cursor))
        .merge(dashboard::routes())
        .fallback(|| async { ApiError::not_found("no such path; see /api/status") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this path",
            )
        })
        .with_state(state)
}

/// An error as JSON: `{"error": "..."}` with its status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        let mut message = message.into();
        // Whatever a message quotes from the request, the answer stays small.
        if message.len() > MESSAGE_BYTES {
            let mut cut = MESSAGE_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            let total = message.len();
            message.truncate(cut);
            message.push_str(&format!("... ({total} bytes in all)"));
        }
        ApiError { status, message }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        for cause in e.chain() {
            if cause.is::<UsageError>() {
                return ApiError::bad_request(cause.to_string());
            }
            if cause.is::<NotFound>() {
                return ApiError::not_found(cause.to_string());
            }
            if let Some(StateError::CursorBackwards { .. } | StateError::NotARewind { .. }) =
                cause.downcast_ref::<StateError>()
            {
                return ApiError::new(StatusCode::CONFLICT, cause.to_string());
            }
        }
        tracing::error!(error = %format!("{e:#}"), "API request failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        ApiError::bad_request(format!("bad path: {}", e.body_text()))
    }
}

impl From<BytesRejection> for ApiError {
    fn from(e: BytesRejection) -> Self {
        ApiError::new(e.status(), format!("bad body: {}", e.body_text()))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message });
        let mut r = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Runs store work off the async threads: sled reads may touch the disk.
async fn blocking<T: Send + 'static>(
    state: &ApiState,
    f: impl FnOnce(&Inner) -> anyhow::Result<T> + Send + 'static,
) -> ApiResult<T> {
    let inner = Arc::clone(&state.inner);
    match tokio::task::spawn_blocking(move || f(&inner)).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("request task failed: {e}"),
        )),
    }
}

/// The query string's pairs.
fn query(raw: Option<String>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

fn query_number(q: &[(String, String)], key: &str, default: usize, max: usize) -> ApiResult<usize> {
    match q.iter().find(|(k, _)| k == key) {
        None => Ok(default),
        Some((_, v)) => match v.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(format!(
                "{key}={}: must be a whole number from 1 to {max}",
                nifty_state::shown(v)
            ))),
        },
    }
}

/// `/api/status`: the same report as `nifty status --json`, plus the daemon's jobs and the
/// throughput samples.
#[derive(Serialize, Deserialize)]
pub struct DaemonStatus {
    /// Counters and cursors.
    #[serde(flatten)]
    pub report: StatusReport,
    /// The daemon itself.
    pub daemon: Option<DaemonView>,
    /// Counter samples, oldest first, about every 10 s over the last hour.
    pub history: Vec<Sample>,
}

/// The daemon in `/api/status`.
#[derive(Serialize, Deserialize)]
pub struct DaemonView {
    /// nifty's version.
    pub version: String,
    /// When it started.
    pub started_ms: UnixMillis,
    /// Now, by its clock.
    pub now_ms: UnixMillis,
    /// Its jobs.
    pub jobs: Vec<JobView>,
}

async fn status(State(state): State<ApiState>) -> ApiResult<axum::Json<DaemonStatus>> {
    let report = blocking(&state, |i| {
        crate::commands::status_report(&i.store, &i.config, false)
    })
    .await?;
    let i = &state.inner;
    Ok(axum::Json(DaemonStatus {
        report,
        daemon: Some(DaemonView {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_ms: i.started_ms,
            now_ms: now_ms(),
            jobs: i.scheduler.as_ref().map(|s| s.views()).unwrap_or_default(),
        }),
        history: i.history.samples(),
    }))
}

async fn metrics(State(state): State<ApiState>) -> ApiResult<Response> {
    let started = state.inner.started_ms as f64 / 1000.0;
    let body = blocking(&state, move |i| {
        let report = crate::commands::status_report(&i.store, &i.config, false)?;
        Ok(crate::metrics::render(&report, started))
    })
    .await?;
    Ok((
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        body,
    )
        .into_response())
}

async fn cursors(State(state): State<ApiState>) -> ApiResult<axum::Json<serde_json::Value>> {
    let rows = blocking(&state, |i| Ok(i.store.cursors()?)).await?;
    let map: serde_json::Map<String, serde_json::Value> = rows
        .into_iter()
        .map(|(k, c)| Ok((k, serde_json::to_value(c)?)))
        .collect::<Result<_, serde_json::Error>>()
        .map_err(|e| ApiError::from(anyhow::Error::from(e)))?;
    Ok(axum::Json(serde_json::Value::Object(map)))
}

/// `/api/runs`.
#[derive(Serialize, Deserialize)]
pub struct RunsView {
    /// Newest first.
    pub runs: Vec<RunView>,
}

async fn runs(
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<axum::Json<RunsView>> {
    let q = query(raw);
    let limit = query_number(&q, "limit", RUNS_DEFAULT, RUNS_MAX)?;
    let job = q.iter().find(|(k, _)| k == "job").map(|(_, v)| v.clone());
    let runs = blocking(&state, move |i| {
        // A job filter reads further back, but never more than a bounded window.
        let window = if job.is_some() { RUNS_MAX * 10 } else { limit };
        Ok(i.store
            .runs(window)?
            .iter()
            .filter(|(_, r)| job.as_ref().is_none_or(|j| &r.job == j))
            .take(limit)
            .map(|(id, r)| RunView::new(*id, r))
            .collect())
    })
    .await?;
    Ok(axum::Json(RunsView { runs }))
}

async fn token(
    State(state): State<ApiState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    let Path((contract, token_id)) = path?;
    let v = blocking(&state, move |i| {
        crate::pinning::check_token(&i.store, &contract, &token_id)
    })
    .await?;
    Ok(axum::Json(v))
}

async fn pin(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    let Path(cid) = path?;
    let v = blocking(&state, move |i| crate::pinning::check_cid(&i.store, &cid)).await?;
    Ok(axum::Json(v))
}

async fn failures(
    State(state): State<ApiState>,
    RawQuery(raw): RawQuery,
) -> ApiResult<axum::Json<crate::pinning::FailureReport>> {
    let q = query(raw);
    let examples = query_number(&q, "examples", EXAMPLES_DEFAULT, EXAMPLES_MAX)?;
    let since =
        match q.iter().find(|(k, _)| k == "since") {
            Some((_, v)) => Some(crate::pinning::since_ms(v, now_ms()).map_err(|e| {
                ApiError::bad_request(e.to_string().replacen("--since", "since=", 1))
            })?),
            None => None,
        };
    let _one = match since {
        Some(_) => Some(state.inner.windowed.acquire().await.map_err(|_| {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping")
        })?),
        None => None,
    };
    let v = blocking(&state, move |i| {
        crate::pinning::failures(&i.store, since, examples)
    })
    .await?;
    Ok(axum::Json(v))
}

/// The body of `POST /api/cursor/{source}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CursorMove {
    /// Block number: tokens of earlier blocks count as done.
    pub block: u64,
    /// Last done token id within `block` (`0x<contract>_<tokenId>`); none of the block's
    /// tokens are done when omitted.
    #[serde(default)]
    pub id: Option<String>,
    /// Move backwards on purpose (a rewind); otherwise the move must go forward.
    #[serde(default)]
    pub rewind: bool,
    /// Allow a forward move past the source's head (at most 100000 blocks), or one whose
    /// head cannot be asked.
    #[serde(default)]
    pub force: bool,
}

/// The answer to a cursor move.
#[derive(Debug, Serialize, Deserialize)]
pub struct CursorMoved {
    /// The cursor.
    pub cursor: String,
    /// Where it was.
    pub from: Option<Position>,
    /// Where it is now.
    pub to: Position,
}

/// Checks the bearer token in constant time. Admin writes are off without a token.
fn authorize(state: &ApiState, headers: &HeaderMap) -> ApiResult<()> {
    let Some(expected) = &state.inner.config.http.admin_token else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "admin writes are off: the daemon has no admin token (set http.admin_token_env)",
        ));
    };
    // The scheme is case-insensitive (RFC 9110 11.1).
    let given = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    match given {
        Some(t) if bool::from(t.as_bytes().ct_eq(expected.expose_secret().as_bytes())) => Ok(()),
        Some(_) => Err(ApiError::new(StatusCode::UNAUTHORIZED, "wrong admin token")),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "admin writes need `Authorization: Bearer <admin token>`",
        )),
    }
}

async fn move_cursor(
    State(state): State<ApiState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<axum::Json<CursorMoved>> {
    // Who asks comes first: a stranger learns nothing about the path or the body.
    authorize(&state, &headers)?;
    let Path(source) = path?;
    let body = body?;
    let mv: CursorMove = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "body: {e}; expected {{\"block\": N, \"id\": \"0x<contract>_<tokenId>\" (optional), \"rewind\": true|false}}"
        ))
    })?;
    // A scrape run in progress would overwrite the move with its next commit.
    let _held = match state.inner.cursor_locks.get(&source) {
        Some(lock) => Some(Arc::clone(lock).try_lock_owned().map_err(|_| {
            ApiError::new(
                StatusCode::CONFLICT,
                format!("scrape/{source} is running and would overwrite the move; try again when it ends (see /api/status)"),
            )
        })?),
        None => None,
    };
    let id = mv
        .id
        .as_deref()
        .map(crate::commands::parse_graph_id)
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let head = crate::commands::check_cursor_move(
        &state.inner.store,
        &state.inner.config,
        &source,
        mv.block,
        id.as_deref(),
        mv.rewind,
        mv.force,
    )
    .await?;
    let moved = blocking(&state, move |i| {
        // Held until the write lands, even if the client goes away meanwhile.
        let _held = _held;
        let (from, to) = crate::commands::apply_cursor_move(
            &i.store,
            &i.config,
            &source,
            mv.block,
            mv.id.as_deref(),
            mv.rewind,
            head,
        )?;
        Ok(CursorMoved {
            cursor: source,
            from,
            to,
        })
    })
    .await?;
    Ok(axum::Json(moved))
}
