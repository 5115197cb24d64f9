//! What both backends share on the wire: an HTTP client, endpoints built on a base URL,
//! answers read with a cap, failure classification, retries with backoff, and server text
//! made safe through [`Secrets`] before it reaches an error or a log.

use std::future::Future;
use std::time::{Duration, Instant};

use nifty_scraper::graph::client::{MAX_RETRY_AFTER, redact_url};
use nifty_scraper::retry::Backoff;
use nifty_upstream::{BodyError, Secrets, read_capped};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
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

/// Most of an error answer's body read: its start is all a message keeps, and a proxy's
/// error page is a few KiB. A longer body is cut here, not refused: the status says what
/// went wrong, and a 503 stays a 503 (retried) whatever page came with it.
const ERROR_BODY_BYTES: u64 = 64 * 1024;

/// A successful streamed answer, its body already handed out line by line.
pub(crate) struct Streamed {
    /// The status (2xx).
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The trailers sent after the body (IPFS Cluster's `X-Stream-Error`), if any.
    pub trailers: HeaderMap,
}

/// One backend's connection: where, how to authenticate, how to retry, how much to read.
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
    /// Every configured secret, this backend's credentials and URL parts among them:
    /// masked in all server text kept.
    secrets: Secrets,
    /// Largest answer read, in bytes.
    max_body: u64,
}

impl Wire {
    /// Checks the URL and builds the client. `secrets` must hold the credentials `auth`
    /// carries; the URL's own secret parts are added here. Errors never echo the URL or a
    /// secret.
    pub fn new(
        backend: &'static str,
        url: &Url,
        timeout: Duration,
        backoff: Backoff,
        auth: Option<HeaderValue>,
        secrets: &Secrets,
        max_body: u64,
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
        if max_body == 0 {
            return Err(invalid("the answer size cap must be more than zero".into()));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("nifty/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| invalid(format!("cannot build HTTP client: {}", e.without_url())))?;
        Ok(Wire {
            backend,
            http,
            base: url.clone(),
            shown: redact_url(url.as_str()),
            auth,
            backoff,
            secrets: secrets.with(nifty_upstream::url_secrets(url.as_str(), false)),
            max_body,
        })
    }

    /// The endpoint, safe to print.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The secrets masked in server text.
    pub fn secrets(&self) -> &Secrets {
        &self.secrets
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

    /// Sends one request and reads the whole body of the answer, at most the cap of it; a
    /// non-success status becomes [`BackendError::Http`] with the server's own words, an
    /// answer over the cap [`BackendError::TooLarge`].
    pub async fn send(&self, req: RequestBuilder) -> Result<Vec<u8>, BackendError> {
        let resp = self.exchange(req).await?;
        read_capped(resp.content_length(), resp.bytes_stream(), self.max_body)
            .await
            .map_err(|e| self.body_error(e))
    }

    /// Sends one request and hands each line of the answer's body to `line` as it
    /// arrives (the cluster's NDJSON status stream), reading frame by frame so that the
    /// trailers a stream ends with are kept. Only the line being read is held; the cap
    /// counts every byte of the body, so a line can be no longer than the cap either, and
    /// a stream that never ends is cut there. `line` failing stops the reading.
    pub async fn send_lines(
        &self,
        req: RequestBuilder,
        mut line: impl FnMut(&[u8]) -> Result<(), BackendError>,
    ) -> Result<Streamed, BackendError> {
        let resp = self.exchange(req).await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        if let Some(declared) = resp.content_length().filter(|n| *n > self.max_body) {
            return Err(self.too_large(self.max_body, Some(declared)));
        }
        let mut frames = reqwest::Body::from(resp);
        let mut trailers = HeaderMap::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut read = 0u64;
        loop {
            let next = std::future::poll_fn(|cx| {
                http_body::Body::poll_frame(std::pin::Pin::new(&mut frames), cx)
            })
            .await;
            let frame = match next {
                None => break,
                Some(f) => f.map_err(|e| self.transport(e))?,
            };
            let chunk = match frame.into_data() {
                Ok(chunk) => chunk,
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        trailers.extend(t);
                    }
                    continue;
                }
            };
            read = read.saturating_add(chunk.len() as u64);
            if read > self.max_body {
                return Err(self.too_large(self.max_body, None));
            }
            let mut rest: &[u8] = &chunk;
            while let Some(end) = rest.iter().position(|b| *b == b'\n') {
                if pending.is_empty() {
                    line(&rest[..end])?;
                } else {
                    pending.extend_from_slice(&rest[..end]);
                    line(&pending)?;
                    pending.clear();
                }
                rest = &rest[end + 1..];
            }
            pending.extend_from_slice(rest);
        }
        if !pending.is_empty() {
            line(&pending)?;
        }
        Ok(Streamed {
            status,
            headers,
            trailers,
        })
    }

    /// Sends a request; a non-success answer becomes [`BackendError::Http`] with the start
    /// of its body.
    async fn exchange(&self, req: RequestBuilder) -> Result<Response, BackendError> {
        let resp = req.send().await.map_err(|e| self.transport(e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let headers = resp.headers().clone();
        let limit = ERROR_BODY_BYTES.min(self.max_body);
        // The status is the answer; a body that breaks off or runs long only loses the
        // server's words.
        let body = match read_capped(resp.content_length(), resp.bytes_stream(), limit).await {
            Ok(body) => body,
            Err(BodyError::TooLarge { .. }) => format!(
                "(a body over {} was not read)",
                nifty_upstream::human_bytes(limit)
            )
            .into_bytes(),
            Err(BodyError::Read(_)) => vec![],
        };
        Err(self.http_error(status, &headers, &body))
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

    /// A [`BackendError::Decode`] for this backend; `detail` may quote server text (a
    /// serde error does), so it is cleaned whole.
    pub fn decode(&self, detail: &str) -> BackendError {
        BackendError::Decode {
            backend: self.backend,
            detail: self.secrets.clean(detail),
        }
    }

    /// The start of a body, cleaned, for error messages.
    pub fn snippet(&self, body: &[u8]) -> String {
        self.secrets.snippet(body)
    }

    /// A [`BackendError::TooLarge`] for this backend.
    fn too_large(&self, limit: u64, declared: Option<u64>) -> BackendError {
        BackendError::TooLarge {
            backend: self.backend,
            detail: BodyError::<std::convert::Infallible>::TooLarge { limit, declared }.to_string(),
        }
    }

    fn body_error(&self, e: BodyError<reqwest::Error>) -> BackendError {
        match e {
            BodyError::TooLarge { limit, declared } => self.too_large(limit, declared),
            BodyError::Read(e) => self.transport(e),
        }
    }

    /// Sorts a failed exchange into timeout, connect or other transport failures. The URL
    /// is dropped from the message: it may carry user info or a key.
    fn transport(&self, e: reqwest::Error) -> BackendError {
        let (timeout, connect) = (e.is_timeout(), e.is_connect());
        let detail = self.secrets.clean(&error_chain(&e.without_url()));
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
        let retry_after = nifty_upstream::retry_after(
            headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok()),
            MAX_RETRY_AFTER,
        );
        let (code, message) = match server_message(body) {
            Some((code, message)) => (code, self.snippet(message.as_bytes())),
            None => (None, self.snippet(body)),
        };
        BackendError::Http {
            backend: self.backend,
            status: status.as_u16(),
            code: code
                .map(|c| self.snippet(c.as_bytes()))
                .filter(|c| !c.is_empty()),
            message: if message.is_empty() {
                status.canonical_reason().unwrap_or("no message").to_owned()
            } else {
                message
            },
            retry_after,
        }
    }
}

/// A serde error's words without the value it quotes. serde writes a string it did not
/// expect Debug-escaped (`invalid type: string "a\nb"`), which turns the hidden characters
/// cleaning drops into visible text and so keeps apart the pieces of a secret a server
/// split with them; the caller quotes the body's start, cleaned, instead.
pub(crate) fn serde_words(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match (text.find('"'), text.rfind('"')) {
        (Some(from), Some(to)) if to > from => {
            format!("{}\"…\"{}", &text[..from], &text[to + 1..])
        }
        _ => text,
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
    fn serde_words_drop_the_values_serde_quotes() {
        let e = serde_json::from_str::<u64>("\"sk-VERY\\nSECRET\"").unwrap_err();
        assert!(e.to_string().contains("VERY"), "{e}");
        let words = serde_words(&e);
        assert_eq!(
            words,
            "invalid type: string \"…\", expected u64 at line 1 column 17"
        );
        let e = serde_json::from_str::<u64>("{").unwrap_err();
        assert_eq!(serde_words(&e), e.to_string());
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
