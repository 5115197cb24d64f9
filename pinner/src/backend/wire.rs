//! What both backends share on the wire: an HTTP client, endpoints built on a base URL,
//! failure classification, retries with backoff, and secrets scrubbed from server text.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nifty_scraper::graph::client::{MAX_RETRY_AFTER, redact_url};
use nifty_scraper::retry::Backoff;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use tracing::warn;

use super::BackendError;
use crate::metrics::CLUSTER_REQUEST_SECONDS;

/// Bytes kept as they are in a query key or value: RFC 3986 unreserved characters, and the
/// comma, which both APIs use to separate list items (`cids=a,b`, `status=queued,pinned`).
const QUERY_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b',');

/// The largest response body read. A status chunk of 200 CIDs on a 20-peer cluster is
/// about 1.5 MB of NDJSON; anything far beyond that is not an answer to our question.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// How much of a server's error text is kept for the operator.
const SNIPPET_CHARS: usize = 300;

/// Secrets shorter than this are not scrubbed: replacing every `a` in a message would
/// only make it unreadable, and such a secret protects nothing anyway.
const MIN_SCRUBBED_SECRET: usize = 4;

/// A successful answer, read whole.
pub(crate) struct Reply {
    /// The status (2xx).
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The trailers sent after the body (IPFS Cluster's `X-Stream-Error`), if any.
    pub trailers: HeaderMap,
    /// The body.
    pub body: Vec<u8>,
}

/// One backend's connection: where, how to authenticate, how to retry.
#[derive(Clone)]
pub(crate) struct Wire {
    /// `cluster` or `psa`, for messages.
    backend: &'static str,
    /// The HTTP client (connection pool).
    http: reqwest::Client,
    /// The base URL; API paths are appended to its path.
    base: Url,
    /// The base URL with secrets removed, for messages.
    shown: String,
    /// The Authorization header, marked sensitive.
    auth: Option<HeaderValue>,
    /// Retry policy.
    backoff: Backoff,
    /// Everything secret (tokens, passwords, URL user info), scrubbed from server text.
    secrets: Arc<Vec<SecretString>>,
}

impl Wire {
    /// Checks the URL and builds the client. Errors never echo the URL or a secret.
    pub fn new(
        backend: &'static str,
        url: &Url,
        timeout: Duration,
        backoff: Backoff,
        auth: Option<HeaderValue>,
        mut secrets: Vec<SecretString>,
    ) -> Result<Self, BackendError> {
        let invalid = |detail: String| BackendError::Invalid { backend, detail };
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "the URL must be http(s), not {}",
                url.scheme()
            )));
        }
        if url.cannot_be_a_base() {
            return Err(invalid("the URL cannot take a path".into()));
        }
        if timeout.is_zero() {
            return Err(invalid("the timeout must be longer than zero".into()));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("nifty/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| invalid(format!("cannot build HTTP client: {}", e.without_url())))?;
        secrets.extend(url.password().map(|p| SecretString::from(p.to_owned())));
        if !url.username().is_empty() {
            secrets.push(SecretString::from(url.username().to_owned()));
        }
        if let Some(q) = url.query().filter(|q| !q.is_empty()) {
            secrets.push(SecretString::from(q.to_owned()));
        }
        Ok(Wire {
            backend,
            http,
            base: url.clone(),
            shown: redact_url(url.as_str()),
            auth,
            backoff,
            secrets: Arc::new(secrets),
        })
    }

    /// The endpoint, safe to print.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The URL of `segments` below the base path, with `query` percent-encoded after any
    /// query the base URL already has.
    pub fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        endpoint(&self.base, segments, query)
    }

    /// A request with the Authorization header set.
    pub fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let req = self.http.request(method, url);
        match &self.auth {
            Some(a) => req.header(AUTHORIZATION, a.clone()),
            None => req,
        }
    }

    /// Sends one request and reads the whole answer; a non-success status becomes
    /// [`BackendError::Http`] with the server's own words.
    pub async fn send(&self, req: RequestBuilder) -> Result<Reply, BackendError> {
        let resp = req.send().await.map_err(|e| self.transport(e))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        // Read frame by frame rather than chunk by chunk: trailers arrive as a last frame,
        // which the chunk API drops.
        let mut frames = reqwest::Body::from(resp);
        let mut body = Vec::new();
        let mut trailers = HeaderMap::new();
        let mut truncated = false;
        loop {
            let next = std::future::poll_fn(|cx| {
                http_body::Body::poll_frame(std::pin::Pin::new(&mut frames), cx)
            })
            .await;
            let frame = match next {
                None => break,
                Some(f) => f.map_err(|e| self.transport(e))?,
            };
            match frame.into_data() {
                Ok(chunk) => {
                    if body.len() + chunk.len() > MAX_BODY_BYTES {
                        truncated = true;
                        break;
                    }
                    body.extend_from_slice(&chunk);
                }
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        trailers.extend(t);
                    }
                }
            }
        }
        if !status.is_success() {
            return Err(self.http_error(status, &headers, &body));
        }
        if truncated {
            return Err(self.decode(format!("the body is larger than {MAX_BODY_BYTES} bytes")));
        }
        Ok(Reply {
            status,
            headers,
            trailers,
            body,
        })
    }

    /// Runs `f` until it succeeds, fails in a way retrying cannot fix, or attempts run
    /// out; waits follow the backoff (with jitter) or a longer Retry-After. Each call of
    /// `f` is one request, timed into [`CLUSTER_REQUEST_SECONDS`] under `op` (`pin`,
    /// `status` or `recover`), the backend's name as `api`, and `ok` or the failure's
    /// [`BackendError::reason`] as `outcome`.
    pub async fn retrying<T, F, Fut>(&self, op: &'static str, mut f: F) -> Result<T, BackendError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, BackendError>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let started = Instant::now();
            let result = f().await;
            let outcome = match &result {
                Ok(_) => "ok".to_owned(),
                Err(e) => e.reason(),
            };
            ::metrics::histogram!(
                CLUSTER_REQUEST_SECONDS,
                "api" => self.backend,
                "op" => op,
                "outcome" => outcome
            )
            .record(started.elapsed().as_secs_f64());
            match result {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() && attempt < self.backoff.max_attempts => {
                    let wait = self
                        .backoff
                        .delay(attempt, rand::random::<f64>(), e.retry_after());
                    warn!(
                        backend = self.backend, endpoint = %self.shown, what = op, attempt,
                        reason = %e.reason(), error = %e, wait_ms = wait.as_millis() as u64,
                        "retrying"
                    );
                    tokio::time::sleep(wait).await;
                }
                Err(e) if e.is_retryable() => {
                    return Err(BackendError::Exhausted {
                        backend: self.backend,
                        attempts: attempt,
                        last: Box::new(e),
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A [`BackendError::Decode`] for this backend.
    pub fn decode(&self, detail: String) -> BackendError {
        BackendError::Decode {
            backend: self.backend,
            detail: self.scrub(&detail),
        }
    }

    /// The start of a body, scrubbed and printable, for error messages.
    pub fn snippet(&self, body: &[u8]) -> String {
        let mut s: String = self
            .scrub(&String::from_utf8_lossy(body))
            .chars()
            .take(SNIPPET_CHARS)
            .collect();
        s.retain(|c| !c.is_control() || c == ' ');
        s
    }

    /// Replaces every secret in `text` with `<redacted>`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in self.secrets.iter() {
            let s = s.expose_secret();
            if s.len() >= MIN_SCRUBBED_SECRET {
                out = out.replace(s, "<redacted>");
            }
        }
        out
    }

    /// Sorts a failed exchange into timeout, connect or other transport failures. The URL
    /// is dropped from the message: it may carry user info or a key.
    fn transport(&self, e: reqwest::Error) -> BackendError {
        let (timeout, connect) = (e.is_timeout(), e.is_connect());
        let detail = self.scrub(&error_chain(&e.without_url()));
        let backend = self.backend;
        if timeout {
            BackendError::Timeout { backend, detail }
        } else if connect {
            BackendError::Connect { backend, detail }
        } else {
            BackendError::Transport { backend, detail }
        }
    }

    fn http_error(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> BackendError {
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
        let (code, message) = match server_message(body) {
            Some((code, message)) => (code, message),
            None => (None, String::from_utf8_lossy(body).into_owned()),
        };
        let message = self.snippet(message.as_bytes());
        BackendError::Http {
            backend: self.backend,
            status: status.as_u16(),
            code: code.map(|c| self.snippet(c.as_bytes())),
            message: if message.is_empty() {
                status.canonical_reason().unwrap_or("no message").to_owned()
            } else {
                message
            },
            retry_after,
        }
    }
}

/// `base` with `segments` appended to its path and `query` appended to its query.
fn endpoint(base: &Url, segments: &[&str], query: &[(&str, &str)]) -> Url {
    let mut url = base.clone();
    // Only a cannot-be-a-base URL refuses segments, and `Wire::new` refuses those.
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    let ours = query
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k, QUERY_KEEP),
                utf8_percent_encode(v, QUERY_KEEP)
            )
        })
        .collect::<Vec<_>>()
        .join("&");
    let full = match url.query() {
        Some(q) if !q.is_empty() && !ours.is_empty() => format!("{q}&{ours}"),
        Some(q) if !q.is_empty() => q.to_owned(),
        _ => ours,
    };
    url.set_query((!full.is_empty()).then_some(full.as_str()));
    url
}

/// The code and message of an error body in either documented shape: the cluster's
/// `{"code": 404, "message": "..."}` or the PSA's `{"error": {"reason": "...",
/// "details": "..."}}`. `None` when the body is neither (an HTML page from a proxy, say).
fn server_message(body: &[u8]) -> Option<(Option<String>, String)> {
    use serde_json::Value;
    let v: Value = serde_json::from_slice(body).ok()?;
    if let Some(err) = v.get("error").and_then(Value::as_object) {
        let reason = err.get("reason").and_then(Value::as_str).map(str::to_owned);
        let details = err
            .get("details")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if reason.is_some() || details.is_some() {
            let message = details.or_else(|| reason.clone()).unwrap_or_default();
            return Some((reason, message));
        }
    }
    let message = v.get("message").and_then(Value::as_str)?.to_owned();
    let code = v.get("code").and_then(|c| match c {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    });
    Some((code, message))
}

/// An error and its sources as one line, repeats dropped (reqwest and hyper often wrap an
/// error in one that says the same thing).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if parts.last().is_none_or(|last| !last.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_appended_to_the_base_path() {
        let cases: &[(&str, &[&str], &[(&str, &str)], &str)] = &[
            (
                "http://h:9094",
                &["pins", "Qm1"],
                &[],
                "http://h:9094/pins/Qm1",
            ),
            ("http://h/cluster", &["pins"], &[], "http://h/cluster/pins"),
            ("http://h/cluster/", &["pins"], &[], "http://h/cluster/pins"),
            (
                "http://h/c/",
                &["pins", "Qm1", "recover"],
                &[],
                "http://h/c/pins/Qm1/recover",
            ),
            (
                "http://h/",
                &["pins", "Qm1"],
                &[("name", "Token #1 / image"), ("meta-role", "image")],
                "http://h/pins/Qm1?name=Token%20%231%20%2F%20image&meta-role=image",
            ),
            (
                "http://h/?tenant=a",
                &["pins"],
                &[("cids", "a,b")],
                "http://h/pins?tenant=a&cids=a,b",
            ),
            (
                "http://h/",
                &["pins"],
                &[("meta-k&x", "v=1+2 ü")],
                "http://h/pins?meta-k%26x=v%3D1%2B2%20%C3%BC",
            ),
        ];
        for (base, segs, query, want) in cases {
            let got = endpoint(&Url::parse(base).unwrap(), segs, query);
            assert_eq!(got.as_str(), *want, "{base} {segs:?}");
        }
    }

    #[test]
    fn error_bodies_of_both_apis_are_read() {
        let cases: &[(&str, Option<(Option<&str>, &str)>)] = &[
            (
                r#"{"code":401,"message":"Unauthorized"}"#,
                Some((Some("401"), "Unauthorized")),
            ),
            (
                r#"{"error":{"reason":"UNAUTHORIZED","details":"Access token is missing"}}"#,
                Some((Some("UNAUTHORIZED"), "Access token is missing")),
            ),
            (
                r#"{"error":{"reason":"BAD_REQUEST"}}"#,
                Some((Some("BAD_REQUEST"), "BAD_REQUEST")),
            ),
            (r#"{"message":"x"}"#, Some((None, "x"))),
            ("<html>502 Bad Gateway</html>", None),
            (r#"{"error":"plain"}"#, None),
            ("", None),
        ];
        for (body, want) in cases {
            let got = server_message(body.as_bytes());
            let got = got.as_ref().map(|(c, m)| (c.as_deref(), m.as_str()));
            assert_eq!(got, *want, "{body}");
        }
    }
}
