//! The subgraph client: one POST per query, every failure classified, retries with
//! backoff, and neither the API key nor a key-bearing URL ever in a message.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use graphql_client::{GraphQLQuery, Response};
use nifty_upstream::{BodyError, Secrets};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use tracing::{debug, instrument, warn};

use super::queries::{Meta, Page, meta, page};
use crate::error::{Result, ScrapeError};
pub use crate::lane::Snapshot;
use crate::metrics::GRAPH_REQUEST_SECONDS;
use crate::retry::Backoff;

/// How long one request may take. graph-node itself cuts queries at about 10 s on hosted
/// indexers; 30 s leaves room for a slow gateway without hanging a run forever.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest Retry-After honoured: a server asking for more is waited on this long and
/// then tried again, so a bad header cannot stall a run for hours.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// The default bound on one token row of a page answer, in bytes. A row is about 600
/// bytes of JSON with a short URI; 8 KiB leaves room for long names and `data:` URIs
/// while a page of 1,000 rows (two halves) stays under 16 MiB.
pub const DEFAULT_MAX_ROW_BYTES: u64 = 8 * 1024;

/// The least a page answer may be, whatever `first`: a page asked with a small `first`
/// (see [`crate::graph::lane`]'s halving) still takes a few rows of fully on-chain content
/// (SVG `data:` URIs run to tens or hundreds of KB).
pub const MIN_PAGE_BODY: u64 = 4 * 1024 * 1024;

/// Room for the envelope of a page answer: `{"data":{"rest":[...],"next":[...]}}`, an
/// error list.
pub const PAGE_BODY_SLACK: u64 = 64 * 1024;

/// The bound on a `_meta` answer: a few hundred bytes in practice.
pub const META_BODY_LIMIT: u64 = 64 * 1024;

/// The bound on an error answer (a non-2xx status) that is read for its words.
pub const ERROR_BODY_LIMIT: u64 = 64 * 1024;

/// The most a page answer of `first` rows per half may be: both halves of `first` rows
/// at `max_row_bytes` each, at least [`MIN_PAGE_BODY`], plus [`PAGE_BODY_SLACK`].
pub fn page_body_limit(first: u32, max_row_bytes: u64) -> u64 {
    (2 * u64::from(first))
        .saturating_mul(max_row_bytes)
        .max(MIN_PAGE_BODY)
        .saturating_add(PAGE_BODY_SLACK)
}

/// Where and how to reach a subgraph.
#[derive(Clone)]
pub struct GraphClientConfig {
    /// The GraphQL endpoint. May hold an API key in its path (gateway style); it is never
    /// printed whole.
    pub url: String,
    /// Bearer API key, when the endpoint wants one.
    pub api_key: Option<SecretString>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Retry policy for retryable failures.
    pub backoff: Backoff,
    /// Every configured secret, scrubbed from any server text kept (this client adds its
    /// own key and URL parts).
    pub secrets: Secrets,
    /// The bound on one row of a page answer, in bytes ([`page_body_limit`]).
    pub max_row_bytes: u64,
}

impl std::fmt::Debug for GraphClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClientConfig")
            .field("url", &redact_url(&self.url))
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A subgraph client. Cheap to clone: clones share the connection pool and counters.
#[derive(Clone)]
pub struct GraphClient {
    /// The HTTP client (connection pool).
    http: reqwest::Client,
    /// The endpoint.
    url: reqwest::Url,
    /// The endpoint with secrets removed, for messages.
    shown: String,
    /// The bearer header, marked sensitive.
    auth: Option<HeaderValue>,
    /// Retry policy.
    backoff: Backoff,
    /// Requests made and failures met, for run records and metrics.
    stats: std::sync::Arc<ClientStats>,
    /// Secrets (every configured one, and this endpoint's key-bearing path segments and
    /// API key) scrubbed from any server text kept: an error page may echo the request.
    secrets: Secrets,
    /// The bound on one row of a page answer.
    max_row_bytes: u64,
}

impl std::fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClient")
            .field("endpoint", &self.shown)
            .finish_non_exhaustive()
    }
}

/// Counters of a client's traffic.
#[derive(Debug, Default)]
pub struct ClientStats {
    /// Requests sent.
    pub requests: AtomicU64,
    /// Requests that failed in a retryable way and were retried.
    pub retries: AtomicU64,
}

/// A URL as safe to print: user info, the query string and the fragment go, and so does
/// every path segment after `/api/` (where gateways put the API key). A URL that parses is
/// shown as the client would send it (text the parser rewrites, such as backslashes for
/// slashes or tabs dropped, cannot hide a key); text that does not parse (in a config
/// error, say) is redacted by the same rules applied to the text.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) if u.has_host() => redact_parsed(&u, url),
        _ => redact_url_text(url),
    }
}

const MASK: &str = "<redacted>";

/// [`redact_url`] of a parsed URL: scheme, host, port and the path with the segment after
/// each `api` segment masked. A bare `/` path is shown only when `text` ends with one.
fn redact_parsed(u: &reqwest::Url, text: &str) -> String {
    let mut s = format!("{}://{}", u.scheme(), u.host_str().unwrap_or_default());
    if let Some(port) = u.port() {
        s.push_str(&format!(":{port}"));
    }
    if u.path() == "/" {
        let before_query = text.split(['?', '#']).next().unwrap_or_default();
        if before_query.ends_with(['/', '\\']) {
            s.push('/');
        }
        return s;
    }
    let mut after_api = false;
    for seg in u.path_segments().into_iter().flatten() {
        s.push('/');
        s.push_str(if after_api && !seg.is_empty() {
            MASK
        } else {
            seg
        });
        after_api = seg.eq_ignore_ascii_case("api");
    }
    s
}

/// [`redact_url`] by text rules alone.
fn redact_url_text(url: &str) -> String {
    let mut s = url.split(['?', '#']).next().unwrap_or_default().to_owned();
    if let Some(scheme_end) = s.find("://") {
        let rest = &s[scheme_end + 3..];
        let host_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..host_end].rfind('@') {
            s = format!("{}{}", &s[..scheme_end + 3], &rest[at + 1..]);
        }
    }
    let mut from = 0;
    // ASCII lowercasing keeps byte offsets, so positions found in it hold in `s`.
    while let Some(i) = s[from..].to_ascii_lowercase().find("/api/") {
        let start = from + i + "/api/".len();
        let end = s[start..].find('/').map_or(s.len(), |j| start + j);
        if end > start {
            s.replace_range(start..end, MASK);
            from = start + MASK.len();
        } else {
            from = start;
        }
    }
    s
}

/// Sorts GraphQL error messages into what the run does about them.
pub fn classify_graphql_errors(messages: &[String], snapshot: Option<u64>) -> ScrapeError {
    let joined = messages.join("; ");
    let has = |needle: &str| messages.iter().any(|m| m.contains(needle));
    if has("indexing_error") {
        return ScrapeError::IndexingError;
    }
    if has("only has data starting at block") || has("is therefore not yet available") {
        return ScrapeError::SnapshotUnavailable {
            snapshot: snapshot.unwrap_or(0),
            message: joined,
        };
    }
    const RETRYABLE: [&str; 8] = [
        "Query timed out",
        "service is overloaded",
        "chain was reorganized",
        "Too many requests",
        "too many requests",
        "database unavailable",
        "Store error",
        "timeout",
    ];
    if RETRYABLE.iter().any(|n| has(n)) {
        ScrapeError::GraphQlRetryable(joined)
    } else {
        ScrapeError::GraphQl(joined)
    }
}

/// Turns the body of a successful JSON response into the query's data: GraphQL errors are
/// classified ([`classify_graphql_errors`]), data beside errors is never used, and neither
/// `secrets` nor anything of them reaches an error message. No I/O, so it can be fuzzed.
pub fn decode_body<Q: GraphQLQuery>(
    body: &[u8],
    secrets: &Secrets,
    snapshot: Option<u64>,
) -> Result<Q::ResponseData> {
    let parsed: Response<Q::ResponseData> = serde_json::from_slice(body).map_err(|e| {
        // serde_json quotes the values it could not use: its text is server text too.
        ScrapeError::Decode(secrets.clean(&format!(
            "{e} ({} bytes: {}...)",
            body.len(),
            secrets.snippet(body)
        )))
    })?;
    if let Some(errors) = parsed.errors.filter(|e| !e.is_empty()) {
        // Data next to errors may be partial: it is never used.
        let messages: Vec<String> = errors
            .into_iter()
            .take(MAX_GRAPHQL_ERRORS)
            .map(|e| secrets.clean(&e.message))
            .collect();
        return Err(classify_graphql_errors(&messages, snapshot));
    }
    parsed
        .data
        .ok_or_else(|| ScrapeError::Decode("response has neither data nor errors".into()))
}

/// A response's body, read up to `limit` bytes.
async fn read_body(
    resp: reqwest::Response,
    limit: u64,
) -> std::result::Result<Vec<u8>, BodyError<reqwest::Error>> {
    let declared = resp.content_length();
    nifty_upstream::read_capped(declared, resp.bytes_stream(), limit).await
}

/// GraphQL errors kept of one answer: graph-node sends one or two; a hostile list of
/// thousands must not become a message of megabytes.
const MAX_GRAPHQL_ERRORS: usize = 8;

/// The `outcome` label of a failed request: the error's [`ScrapeError::kind`]. Only errors
/// [`GraphClient::post`] makes reach here, so the set stays the fixed one documented on
/// [`GRAPH_REQUEST_SECONDS`].
fn outcome(e: &ScrapeError) -> &'static str {
    e.kind()
}

impl GraphClient {
    /// Builds a client; fails on a URL that is not http(s) or an API key that cannot be a
    /// header (neither is echoed back).
    pub fn new(cfg: GraphClientConfig) -> Result<Self> {
        let url = crate::http::endpoint(&cfg.url, "subgraph")?;
        let auth = crate::http::bearer(cfg.api_key.as_ref())?;
        let http = crate::http::client(cfg.timeout)?;
        let shown = redact_url(url.as_str());
        let mut own = nifty_upstream::url_secrets(url.as_str(), false);
        own.extend(cfg.api_key.iter().map(|k| k.expose_secret().to_owned()));
        Ok(GraphClient {
            http,
            url,
            shown,
            auth,
            backoff: cfg.backoff,
            stats: Default::default(),
            secrets: cfg.secrets.with(own),
            max_row_bytes: cfg.max_row_bytes.max(1),
        })
    }

    /// The endpoint, safe to print.
    pub fn endpoint(&self) -> &str {
        &self.shown
    }

    /// Traffic counters.
    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    /// The secrets scrubbed from this client's server text (and masked in its rows).
    pub fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// The bound on a page answer of `first` rows per half.
    pub fn page_limit(&self, first: u32) -> u64 {
        page_body_limit(first, self.max_row_bytes)
    }

    /// One request, no retries, timed into [`GRAPH_REQUEST_SECONDS`] under `op` (`meta` or
    /// `page`). An attempt dropped midway (shutdown) records nothing: it has no outcome.
    /// The answer is read up to `limit` bytes.
    async fn post<Q: GraphQLQuery>(
        &self,
        op: &'static str,
        vars: Q::Variables,
        snapshot: Option<u64>,
        limit: u64,
    ) -> Result<Q::ResponseData> {
        let started = Instant::now();
        let result = self.post_once::<Q>(vars, snapshot, limit).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => outcome(e),
        };
        ::metrics::histogram!(GRAPH_REQUEST_SECONDS, "op" => op, "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        result
    }

    /// The request itself.
    async fn post_once<Q: GraphQLQuery>(
        &self,
        vars: Q::Variables,
        snapshot: Option<u64>,
        limit: u64,
    ) -> Result<Q::ResponseData> {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let body = Q::build_query(vars);
        let mut req = self.http.post(self.url.clone()).json(&body);
        if let Some(a) = &self.auth {
            req = req.header(AUTHORIZATION, a.clone());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| ScrapeError::Transport(e.without_url()))?;
        let status = resp.status();
        let retry_after = nifty_upstream::retry_after(
            resp.headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            MAX_RETRY_AFTER,
        );
        let json = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| v.contains("json"));
        if !status.is_success() {
            let snippet = match read_body(resp, ERROR_BODY_LIMIT).await {
                Ok(bytes) => self.secrets.snippet(&bytes),
                Err(BodyError::TooLarge { .. }) => format!(
                    "(an error body over {}, not read)",
                    nifty_upstream::human_bytes(ERROR_BODY_LIMIT)
                ),
                Err(BodyError::Read(e)) => return Err(ScrapeError::Transport(e.without_url())),
            };
            return Err(ScrapeError::Http {
                status: status.as_u16(),
                retry_after,
                snippet,
            });
        }
        let bytes = read_body(resp, limit).await.map_err(|e| match e {
            BodyError::Read(e) => ScrapeError::Transport(e.without_url()),
            too_large => ScrapeError::TooLarge {
                upstream: "subgraph",
                body: too_large.to_string(),
                hint: "a page's rows average more than the source's max_row_bytes: raise \
                       max_row_bytes (or lower page_size) if the subgraph is trusted",
            },
        })?;
        if !json {
            return Err(ScrapeError::Decode(format!(
                "content is not JSON: {}",
                self.secrets.snippet(&bytes)
            )));
        }
        decode_body::<Q>(&bytes, &self.secrets, snapshot)
    }

    /// Runs `f` until it succeeds, fails in a way retrying cannot fix, or attempts run out.
    async fn retrying<T, F, Fut>(&self, what: &(dyn Fn() -> String + Sync), mut f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() && attempt < self.backoff.max_attempts => {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    let retry_after = match &e {
                        ScrapeError::Http { retry_after, .. } => *retry_after,
                        _ => None,
                    };
                    let wait = self
                        .backoff
                        .delay(attempt, rand::random::<f64>(), retry_after);
                    warn!(
                        endpoint = %self.shown, what = %what(), attempt, kind = e.kind(),
                        error = %e, wait_ms = wait.as_millis() as u64, "retrying"
                    );
                    tokio::time::sleep(wait).await;
                }
                Err(e) if e.is_retryable() => {
                    return Err(ScrapeError::GaveUp {
                        what: what(),
                        attempts: attempt,
                        last: Box::new(e),
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The snapshot to page: `_meta` head minus `confirmations`. Refuses a subgraph that
    /// reports indexing errors.
    #[instrument(skip(self), fields(endpoint = %self.shown))]
    pub async fn snapshot(&self, confirmations: u64) -> Result<Snapshot> {
        let data = self
            .retrying(&|| "snapshot".to_owned(), || {
                self.post::<Meta>("meta", meta::Variables {}, None, META_BODY_LIMIT)
            })
            .await?;
        let m = data
            .meta
            .ok_or_else(|| ScrapeError::Decode("_meta is null".into()))?;
        if m.has_indexing_errors {
            return Err(ScrapeError::HasIndexingErrors);
        }
        let head = u64::try_from(m.block.number)
            .map_err(|_| ScrapeError::Decode(format!("negative head block {}", m.block.number)))?;
        let snap = Snapshot {
            head,
            block: head.saturating_sub(confirmations),
        };
        debug!(head, snapshot = snap.block, "snapshot");
        Ok(snap)
    }

    /// One page after `(block, last_id)` up to `end`, as of `snapshot`, with retries.
    #[instrument(skip(self), fields(endpoint = %self.shown))]
    pub async fn page(
        &self,
        block: u64,
        last_id: &str,
        end: u64,
        first: u32,
        snapshot: u64,
    ) -> Result<page::ResponseData> {
        let snap = i64::try_from(snapshot)
            .map_err(|_| ScrapeError::Invalid(format!("snapshot block {snapshot} is too large")))?;
        let vars = || page::Variables {
            block: block.to_string(),
            last_id: last_id.to_owned(),
            end: end.to_string(),
            first: i64::from(first),
            snapshot: snap,
        };
        let what = || format!("page after block {block} id {last_id:?} (snapshot {snapshot})");
        let limit = self.page_limit(first);
        self.retrying(&what, || {
            self.post::<Page>("page", vars(), Some(snapshot), limit)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_print_without_keys() {
        let cases = [
            (
                "https://gateway.thegraph.com/api/0123456789abcdef0123456789abcdef/subgraphs/id/QmX",
                "https://gateway.thegraph.com/api/<redacted>/subgraphs/id/QmX",
            ),
            (
                "http://user:pw@127.0.0.1:8000/subgraphs/name/x?key=secret",
                "http://127.0.0.1:8000/subgraphs/name/x",
            ),
            (
                "https://example.com/API/k/x",
                "https://example.com/API/<redacted>/x",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                redact_url(reqwest::Url::parse(input).unwrap().as_str()),
                want
            );
        }
    }

    #[test]
    fn redaction_survives_odd_text() {
        let cases = [
            ("", ""),
            ("http://h/api/", "http://h/api/"),
            // Shown as sent: percent-encoded.
            (
                "http://h/ünï/api/kéy/x",
                "http://h/%C3%BCn%C3%AF/api/<redacted>/x",
            ),
            ("HTTP://H:80/a?b", "http://h/a"),
            ("http://h", "http://h"),
            ("http://h/?q", "http://h/"),
            ("http:g/h\\api\\k y/x", "http://g/h/api/<redacted>/x"),
            (
                "http://h/api/a/api/b",
                "http://h/api/<redacted>/api/<redacted>",
            ),
            ("://@", "://"),
            // What the URL parser reads as /api/KEY, the text rules do not see.
            ("http://h\\api\\k3y\\x", "http://h/api/<redacted>/x"),
            ("http://h/a\tpi/k3y/x", "http://h/api/<redacted>/x"),
            ("http://h/api/k\n3y/x", "http://h/api/<redacted>/x"),
            ("http://u:p\\w@h/x#frag", "http://h/x"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_url(input), want, "{input:?}");
        }
    }

    #[test]
    fn graphql_errors_are_classified() {
        let cases: &[(&str, &str, bool)] = &[
            ("indexing_error", "indexing_error", true),
            ("Query timed out", "graphql_retryable", true),
            ("service is overloaded", "graphql_retryable", true),
            ("chain was reorganized", "graphql_retryable", true),
            (
                "Failed to decode `block.number` value: `subgraph Qm has only indexed up to block number 10 and data for block number 20 is therefore not yet available`",
                "snapshot_unavailable",
                false,
            ),
            (
                "subgraph Qm only has data starting at block number 500 and data for block number 100 is therefore not available",
                "snapshot_unavailable",
                false,
            ),
            ("Type `Token` has no field `nope`", "graphql", false),
            (
                "The `skip` argument must be between 0 and 5000, but is 6000",
                "graphql",
                false,
            ),
        ];
        for (msg, kind, retry) in cases {
            let e = classify_graphql_errors(&[msg.to_string()], Some(20));
            assert_eq!((e.kind(), e.is_retryable()), (*kind, *retry), "{msg}");
        }
    }
}
