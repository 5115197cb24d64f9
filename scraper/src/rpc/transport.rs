//! JSON-RPC over HTTP: the transport under ethers' `Provider`, and batch requests, which
//! ethers' own HTTP transport does not send. A failure keeps what the range and retry rules
//! need (HTTP status, Retry-After, JSON-RPC code and message) and never the URL or a key.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ethers_providers::{JsonRpcClient, JsonRpcError, ProviderError, RpcError};
use nifty_upstream::{BodyError, Secrets};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::graph::client::{ClientStats, ERROR_BODY_LIMIT, MAX_RETRY_AFTER};
use crate::metrics::RPC_REQUEST_SECONDS;

/// The default bound on one answer of a node, in MiB (`sources.<name>.max_body_mb`). An
/// `eth_getLogs` answer of 10,000 mint logs (the most providers return) is about 6 MiB of
/// JSON, and a batch of 100 `tokenURI` answers with long `data:` URIs a few MiB.
pub const DEFAULT_MAX_BODY_MB: u64 = 16;

/// The JSON-RPC error code nifty gives one element of a batch whose own answer was over
/// the bound (no node sends it): the element's caller records it as the token's reason.
pub const TOO_LARGE_CODE: i64 = -39_001;

/// True when a batch element's error is nifty's own "answer too large" ([`TOO_LARGE_CODE`]).
pub fn is_too_large(e: &JsonRpcError) -> bool {
    e.code == TOO_LARGE_CODE
}

/// Why a request to the node failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RpcFault {
    /// The node (or a proxy in front of it) answered with an HTTP error status.
    #[error("HTTP {status} from the node{}: {snippet}", retry_after.map(|d| format!(" (retry after {}s)", d.as_secs())).unwrap_or_default())]
    Http {
        /// The status code.
        status: u16,
        /// The server's Retry-After, when it sent one.
        retry_after: Option<Duration>,
        /// The start of the body, secrets removed.
        snippet: String,
        /// The JSON-RPC error the body held, when it held one (Alchemy sends its range
        /// refusals with HTTP 400).
        rpc: Option<JsonRpcError>,
    },
    /// The request did not complete (refused, reset, timed out).
    #[error("request to the node failed: {message}")]
    Transport {
        /// It timed out.
        timeout: bool,
        /// reqwest's words, without the URL.
        message: String,
    },
    /// The body was not the JSON-RPC answer asked for.
    #[error("unreadable response from the node: {0}")]
    Decode(String),
    /// The node answered with a JSON-RPC error (its message and data already cleaned).
    #[error("node error {}: {}", .0.code, .0.message)]
    Rpc(JsonRpcError),
    /// The answer was over the source's `max_body_mb`: not read further. Not retried as
    /// is: a log query asks for a smaller range, a batch is split.
    #[error("node {0}; if the node is trusted, raise the source's max_body_mb")]
    TooLarge(String),
}

impl RpcFault {
    /// True when the same request may succeed later unchanged. JSON-RPC errors are sorted by
    /// the caller, which knows what it asked (a range error is not retried as is).
    pub fn is_retryable(&self) -> bool {
        match self {
            RpcFault::Http { status, .. } => *status == 408 || *status == 429 || *status >= 500,
            RpcFault::Transport { .. } | RpcFault::Decode(_) => true,
            RpcFault::Rpc(e) => is_transient_rpc(e),
            RpcFault::TooLarge(_) => false,
        }
    }

    /// A short machine-readable name, for metrics and run records.
    pub fn kind(&self) -> &'static str {
        match self {
            RpcFault::Http { status: 429, .. } => "http_429",
            RpcFault::Http { status, .. } if *status >= 500 => "http_5xx",
            RpcFault::Http { .. } => "http_4xx",
            RpcFault::Transport { timeout: true, .. } => "timeout",
            RpcFault::Transport { .. } => "connect",
            RpcFault::Decode(_) => "decode",
            RpcFault::Rpc(_) => "rpc_error",
            RpcFault::TooLarge(_) => "too_large",
        }
    }

    /// The server's Retry-After, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RpcFault::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// JSON-RPC errors that say "try again": rate limits, overload, internal errors, a node
/// still syncing the block asked for. Providers put a rate limit in a batch element's own
/// error (QuickNode: `-32007` "25/second request limit reached - reduce calls per second or
/// upgrade your account at quicknode.com"; `-32012` "credits limited to 50/sec"), so one
/// taken for a failed call would record a token as `call_failed` for good.
pub fn is_transient_rpc(e: &JsonRpcError) -> bool {
    let m = e.message.to_ascii_lowercase();
    matches!(e.code, -32603 | -32005 | 429)
        && !m.contains("query returned more than")
        && !m.contains("results")
        || [
            "rate limit",
            "too many requests",
            "request limit reached",
            "credits limited to",
            "exceeded the rps limit",
            "exceeded the quota",
            "capacity exceeded",
            "header not found",
            "unknown block",
            "internal error",
            "temporarily unavailable",
            "try again",
            "timeout",
            "timed out",
        ]
        .iter()
        .any(|n| m.contains(n))
}

impl RpcError for RpcFault {
    fn as_error_response(&self) -> Option<&JsonRpcError> {
        match self {
            RpcFault::Rpc(e) => Some(e),
            _ => None,
        }
    }

    fn as_serde_error(&self) -> Option<&serde_json::Error> {
        None
    }
}

impl From<RpcFault> for ProviderError {
    fn from(e: RpcFault) -> Self {
        ProviderError::JsonRpcClientError(Box::new(e))
    }
}

/// Gets our fault back out of an ethers `ProviderError`.
pub fn fault_of(e: ProviderError) -> RpcFault {
    match e {
        ProviderError::JsonRpcClientError(inner) => {
            let as_error: &(dyn std::error::Error + Send + Sync) = &*inner;
            match as_error.downcast_ref::<RpcFault>() {
                Some(f) => f.clone(),
                None => RpcFault::Decode(inner.to_string()),
            }
        }
        other => RpcFault::Decode(other.to_string()),
    }
}

/// HTTP JSON-RPC to one node. Cheap to share behind an `Arc`.
pub struct HttpTransport {
    http: reqwest::Client,
    url: reqwest::Url,
    auth: Option<HeaderValue>,
    /// Cleans every piece of the node's text kept in a fault.
    secrets: Secrets,
    /// The bound on one answer, in bytes.
    max_body: u64,
    next_id: AtomicU64,
    stats: Arc<ClientStats>,
}

impl fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpTransport").finish_non_exhaustive()
    }
}

/// One element of a batch answer: its result or its own JSON-RPC error.
pub type BatchItem = Result<Value, JsonRpcError>;

impl HttpTransport {
    /// A transport to `url`, with `auth` (a sensitive bearer header) when the node wants
    /// one; `secrets` are scrubbed from any server text kept in an error, and no answer
    /// over `max_body` bytes is read.
    pub(crate) fn new(
        http: reqwest::Client,
        url: reqwest::Url,
        auth: Option<HeaderValue>,
        secrets: Secrets,
        max_body: u64,
        stats: Arc<ClientStats>,
    ) -> Self {
        HttpTransport {
            http,
            url,
            auth,
            secrets,
            max_body,
            next_id: AtomicU64::new(1),
            stats,
        }
    }

    /// A JSON-RPC error of the node with its words (message, and every string in `data`)
    /// cleaned.
    fn clean_error(&self, mut e: JsonRpcError) -> JsonRpcError {
        e.message = self.secrets.clean(&e.message);
        e.data = e.data.map(|d| clean_value(&self.secrets, d));
        e
    }

    /// The result of one JSON-RPC answer object, its error cleaned.
    fn answer(&self, v: Value) -> Result<Value, RpcFault> {
        answer(v).map_err(|f| match f {
            RpcFault::Rpc(e) => RpcFault::Rpc(self.clean_error(e)),
            RpcFault::Decode(m) => RpcFault::Decode(self.secrets.clean(&m)),
            other => other,
        })
    }

    fn transport_fault(&self, e: reqwest::Error) -> RpcFault {
        let timeout = e.is_timeout();
        // reqwest's own words ("error sending request") hide the cause (refused, reset,
        // DNS) in its sources: keep them all.
        let e = e.without_url();
        let mut message = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            message.push_str(": ");
            message.push_str(&c.to_string());
            cause = c.source();
        }
        RpcFault::Transport {
            timeout,
            message: self.secrets.clean(&message),
        }
    }

    /// POSTs a body and returns the parsed JSON, timed into [`RPC_REQUEST_SECONDS`] under
    /// `method`.
    async fn post(&self, method: &'static str, body: &Value) -> Result<Value, RpcFault> {
        let started = Instant::now();
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let result = self.post_once(body).await;
        let outcome = match &result {
            Ok(v) if v.get("error").is_some() => "rpc_error",
            Ok(_) => "ok",
            Err(e) => e.kind(),
        };
        ::metrics::histogram!(RPC_REQUEST_SECONDS, "method" => method, "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        result
    }

    async fn post_once(&self, body: &Value) -> Result<Value, RpcFault> {
        let mut req = self
            .http
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .json(body);
        if let Some(a) = &self.auth {
            req = req.header(AUTHORIZATION, a.clone());
        }
        let resp = req.send().await.map_err(|e| self.transport_fault(e))?;
        let status = resp.status();
        let retry_after = nifty_upstream::retry_after(
            resp.headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            MAX_RETRY_AFTER,
        );
        let limit = if status.is_success() {
            self.max_body
        } else {
            ERROR_BODY_LIMIT
        };
        let declared = resp.content_length();
        let bytes = match nifty_upstream::read_capped(declared, resp.bytes_stream(), limit).await {
            Ok(b) => b,
            Err(BodyError::Read(e)) => return Err(self.transport_fault(e)),
            Err(too_large) if status.is_success() => {
                return Err(RpcFault::TooLarge(too_large.to_string()));
            }
            Err(_) => format!(
                "(an error body over {}, not read)",
                nifty_upstream::human_bytes(limit)
            )
            .into_bytes(),
        };
        if !status.is_success() {
            let rpc = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| match v {
                    Value::Array(mut items) if !items.is_empty() => Some(items.swap_remove(0)),
                    Value::Array(_) => None,
                    other => Some(other),
                })
                .and_then(|v| v.get("error").cloned())
                .and_then(|e| serde_json::from_value::<JsonRpcError>(e).ok())
                .map(|e| self.clean_error(e));
            return Err(RpcFault::Http {
                status: status.as_u16(),
                retry_after,
                snippet: self.secrets.snippet(&bytes),
                rpc,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            // serde_json quotes what it could not read: server text too.
            RpcFault::Decode(
                self.secrets
                    .clean(&format!("{e}: {}", self.secrets.snippet(&bytes))),
            )
        })
    }

    fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// One request. `method` is a `'static` name so it can label metrics.
    pub async fn call(&self, method: &'static str, params: Value) -> Result<Value, RpcFault> {
        let body = json!({"jsonrpc": "2.0", "id": self.id(), "method": method, "params": params});
        let v = self.post(method, &body).await?;
        self.answer(v)
    }

    /// Several requests of one method in one JSON-RPC batch. The outer error is the batch's
    /// (HTTP, transport, or a node that refuses batches); each element carries its own
    /// result or error, in the order asked.
    pub async fn batch(
        &self,
        method: &'static str,
        params: Vec<Value>,
    ) -> Result<Vec<BatchItem>, RpcFault> {
        if params.is_empty() {
            return Ok(vec![]);
        }
        let first = self
            .next_id
            .fetch_add(params.len() as u64, Ordering::Relaxed);
        let body: Vec<Value> = params
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                json!({"jsonrpc": "2.0", "id": first + i as u64, "method": method, "params": p})
            })
            .collect();
        let n = body.len();
        let v = self.post(method, &Value::Array(body)).await?;
        let items = match v {
            Value::Array(items) => items,
            // A node that does not take batches answers with one error object.
            other => {
                return Err(match self.answer(other) {
                    Err(e) => e,
                    Ok(_) => RpcFault::Decode("a batch was answered with one result".into()),
                });
            }
        };
        let mut out: Vec<Option<BatchItem>> = vec![None; n];
        for item in items {
            let Some(idx) = item
                .get("id")
                .and_then(Value::as_u64)
                .and_then(|id| id.checked_sub(first))
                .filter(|i| (*i as usize) < n)
            else {
                return Err(RpcFault::Decode(
                    "a batch answer carries an id that was not asked".into(),
                ));
            };
            out[idx as usize] = Some(match self.answer(item) {
                Ok(v) => Ok(v),
                Err(RpcFault::Rpc(e)) => Err(e),
                Err(e) => return Err(e),
            });
        }
        Ok(out
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    Err(JsonRpcError {
                        code: -32603,
                        message: "internal error: no answer for this request in the batch".into(),
                        data: None,
                    })
                })
            })
            .collect())
    }
}

/// `v` with every string in it cleaned ([`Secrets::clean`]), for the `data` of a node's
/// error (revert data is hex and keeps its characters; a message in it is server text).
fn clean_value(secrets: &Secrets, v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(secrets.clean(&s)),
        Value::Array(items) => {
            Value::Array(items.into_iter().map(|i| clean_value(secrets, i)).collect())
        }
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (secrets.clean(&k), clean_value(secrets, v)))
                .collect(),
        ),
        other => other,
    }
}

/// The result of one JSON-RPC answer object (its error as the node sent it: callers go
/// through [`HttpTransport::answer`], which cleans it).
fn answer(mut v: Value) -> Result<Value, RpcFault> {
    if let Some(e) = v.get_mut("error").map(Value::take) {
        return Err(match serde_json::from_value::<JsonRpcError>(e.clone()) {
            Ok(e) => RpcFault::Rpc(e),
            Err(_) => RpcFault::Decode(format!("malformed error object: {e}")),
        });
    }
    match v.get_mut("result").map(Value::take) {
        Some(r) => Ok(r),
        None => Err(RpcFault::Decode(
            "an answer with neither result nor error".into(),
        )),
    }
}

#[async_trait]
impl JsonRpcClient for HttpTransport {
    type Error = RpcFault;

    async fn request<T, R>(&self, method: &str, params: T) -> Result<R, RpcFault>
    where
        T: fmt::Debug + Serialize + Send + Sync,
        R: DeserializeOwned + Send,
    {
        let params = serde_json::to_value(params)
            .map_err(|e| RpcFault::Decode(format!("cannot encode {method} params: {e}")))?;
        let label = static_method(method);
        let body = json!({"jsonrpc": "2.0", "id": self.id(), "method": method, "params": params});
        let v = self.answer(self.post(label, &body).await?)?;
        serde_json::from_value(v)
            .map_err(|e| RpcFault::Decode(self.secrets.clean(&format!("{label}: {e}"))))
    }
}

/// The methods nifty calls, as `'static` metric labels; anything else is `other`.
fn static_method(m: &str) -> &'static str {
    const KNOWN: [&str; 6] = [
        "eth_blockNumber",
        "eth_getLogs",
        "eth_getBlockByNumber",
        "eth_getCode",
        "eth_call",
        "eth_chainId",
    ];
    KNOWN.iter().find(|k| **k == m).copied().unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rpc(code: i64, message: &str) -> JsonRpcError {
        JsonRpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    #[test]
    fn transient_node_errors_are_told_from_the_rest() {
        let cases = [
            (-32603, "internal error", true),
            (-32000, "header not found", true),
            (429, "Too Many Requests", true),
            (
                -32005,
                "daily request count exceeded, request rate limited",
                true,
            ),
            (-32005, "query returned more than 10000 results", false),
            // Per-element rate limits in a batch answered 200 (QuickNode, Chainstack).
            (
                -32007,
                "25/second request limit reached - reduce calls per second or upgrade your \
                 account at quicknode.com",
                true,
            ),
            (-32012, "credits limited to 50/sec", true),
            (
                -32000,
                "You've exceeded the RPS limit available on the current plan.",
                true,
            ),
            (-32029, "Rate limit exceeded", true),
            (-32601, "the method eth_foo does not exist", false),
            (3, "execution reverted", false),
            (-32602, "invalid params", false),
        ];
        for (code, message, want) in cases {
            assert_eq!(
                is_transient_rpc(&rpc(code, message)),
                want,
                "{code} {message}"
            );
        }
    }

    #[test]
    fn answers_give_results_errors_or_decode_faults() {
        assert_eq!(
            answer(json!({"jsonrpc": "2.0", "id": 1, "result": "0x10"})).unwrap(),
            json!("0x10")
        );
        assert_eq!(
            answer(json!({"id": 1, "result": null})).unwrap(),
            Value::Null
        );
        match answer(json!({"id": 1, "error": {"code": -32000, "message": "boom"}})) {
            Err(RpcFault::Rpc(e)) => assert_eq!((e.code, e.message.as_str()), (-32000, "boom")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(answer(json!({"id": 1})), Err(RpcFault::Decode(_))));
        assert!(matches!(
            answer(json!({"id": 1, "error": "nope"})),
            Err(RpcFault::Decode(_))
        ));
    }

    #[test]
    fn our_fault_survives_a_trip_through_provider_error() {
        let f = RpcFault::Http {
            status: 413,
            retry_after: None,
            snippet: "too large".into(),
            rpc: None,
        };
        match fault_of(ProviderError::from(f)) {
            RpcFault::Http { status, .. } => assert_eq!(status, 413),
            other => panic!("{other:?}"),
        }
    }
}
