//! Pinning backends: IPFS Cluster's REST API and the IPFS Pinning Service API.
//!
//! Both speak the same small language to the pin tracker: [`Backend::pin`] asks for a CID,
//! [`Backend::status`] reads what the backend thinks of many CIDs at once (one
//! [`RemoteStatus`] per CID asked, chunked internally), and [`Backend::recover`] asks again
//! for a pin that failed. Every failure is a [`BackendError`] that says whether trying
//! again later may help and gives a short machine-readable [`BackendError::reason`] for
//! counters; neither its message nor its `Debug` ever holds a token, a password or a
//! key-bearing URL.
//!
//! The wire is in [`cluster`] and [`psa`]; the pure parts (folding a cluster `peer_map`,
//! picking the best of several PSA pin requests) are unit-tested beside them.

use std::time::Duration;

use cid::Cid;

pub mod cluster;
pub mod psa;
mod wire;

pub use cluster::{Auth, ClusterClient, ClusterOptions, DEFAULT_STATUS_CHUNK};
pub use psa::{MAX_CIDS_PER_LIST, PsaClient, PsaOptions};

/// How long one request may take unless configured otherwise. A cluster answers a status
/// chunk by asking every peer about every CID in it, which takes seconds on a busy cluster;
/// 30 s leaves room for that without letting a hung peer stall a pin run.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest answer read from the backend unless configured otherwise (`cluster.max_body_mb`).
/// The largest real answer is a cluster status chunk: about 630 bytes per CID per peer
/// (peer id, name, four addresses, status, timestamp, error; measured on cluster 1.x's
/// JSON), so the default chunk of 200 CIDs is 2.5 MiB on a 20-peer cluster and 6 MiB on 50
/// peers. A PSA listing (at most 1,000 PinStatus objects of about 500 bytes) is under
/// 1 MiB. 16 MiB holds the status of about 130 peers and bounds what a hostile server can
/// make one request hold.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;

/// What a pin is for: its name and its meta tags, so an operator looking at the backend
/// can tell which token and role (`metadata`, `image`, ...) a pin serves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PinMeta {
    /// The pin's name (PSA services cap it at 255 characters; longer names are cut).
    pub name: String,
    /// Meta tags as `(key, value)`, keys without the cluster's `meta-` prefix (`contract`,
    /// `token_id`, `role`, `source`).
    pub meta: Vec<(String, String)>,
}

/// The backend's view of one CID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteState {
    /// Accepted, waiting for a worker.
    Queued,
    /// Being fetched and pinned.
    Pinning,
    /// Pinned (by at least one cluster peer).
    Pinned,
    /// The backend tried and failed.
    Failed {
        /// The backend's words on why (cluster peers' errors, PSA status details).
        error: String,
    },
    /// The backend does not have it and is not working on it (or was never asked).
    Unpinned,
}

impl RemoteState {
    /// A short lower-case name for logs and counters (`pinned`, `failed`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            RemoteState::Queued => "queued",
            RemoteState::Pinning => "pinning",
            RemoteState::Pinned => "pinned",
            RemoteState::Failed { .. } => "failed",
            RemoteState::Unpinned => "unpinned",
        }
    }

    /// How far along a pin is; when several answers describe one CID, the furthest wins.
    fn progress(&self) -> u8 {
        match self {
            RemoteState::Pinned => 4,
            RemoteState::Pinning => 3,
            RemoteState::Queued => 2,
            RemoteState::Failed { .. } => 1,
            RemoteState::Unpinned => 0,
        }
    }

    /// The better of two answers about one CID (the first on a tie).
    fn best(self, other: RemoteState) -> RemoteState {
        if other.progress() > self.progress() {
            other
        } else {
            self
        }
    }
}

/// One CID and what the backend says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteStatus {
    /// The CID, as it was asked about.
    pub cid: Cid,
    /// The backend's view.
    pub state: RemoteState,
}

/// Everything that can go wrong talking to a pinning backend. Server text kept here went
/// through [`nifty_upstream::Secrets::clean`] (hidden characters dropped, every configured
/// secret masked), and no variant holds a URL.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The backend answered with an HTTP error status.
    #[error(
        "{backend} answered HTTP {status}{}: {message}",
        code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default()
    )]
    Http {
        /// Which backend (`cluster`, `psa`).
        backend: &'static str,
        /// The status code.
        status: u16,
        /// The server's machine-readable code: the cluster's `code`, the PSA `reason`.
        code: Option<String>,
        /// The server's message (the cluster's `message`, the PSA `details`), or the start
        /// of the body when it was not the documented error shape.
        message: String,
        /// The server's Retry-After, when it sent one (capped).
        retry_after: Option<Duration>,
    },

    /// The request or the response did not complete in time.
    #[error("request to {backend} timed out: {detail}")]
    Timeout {
        /// Which backend.
        backend: &'static str,
        /// What the HTTP stack said.
        detail: String,
    },

    /// No connection could be made (refused, unreachable, DNS, TLS).
    #[error("cannot connect to {backend}: {detail}")]
    Connect {
        /// Which backend.
        backend: &'static str,
        /// What the HTTP stack said.
        detail: String,
    },

    /// The connection broke during the exchange (reset, truncated chunked body).
    #[error("request to {backend} failed: {detail}")]
    Transport {
        /// Which backend.
        backend: &'static str,
        /// What the HTTP stack said.
        detail: String,
    },

    /// A success status with a body that is not what the API documents.
    #[error("unreadable response from {backend}: {detail}")]
    Decode {
        /// Which backend.
        backend: &'static str,
        /// What was wrong, with the start of the offending text.
        detail: String,
    },

    /// The answer was larger than the cap (`cluster.max_body_mb`): reading stopped there,
    /// so a hostile or broken server cannot fill memory. Not retried within one request's
    /// attempts (see [`BackendError::is_retryable`]).
    #[error("{backend} sent too large an answer: {detail}")]
    TooLarge {
        /// Which backend.
        backend: &'static str,
        /// The sizes: the cap, and the declared length when the server declared one.
        detail: String,
    },

    /// The cluster reported a failure in the `X-Stream-Error` trailer or header of a
    /// streamed answer: the lines before it may be partial, so none of them are used.
    #[error("{backend} reported an error while streaming the answer: {message}")]
    Stream {
        /// Which backend.
        backend: &'static str,
        /// The reported error.
        message: String,
    },

    /// Retries ran out on a failure that may still clear later.
    #[error("gave up on {backend} after {attempts} attempts: {last}")]
    Exhausted {
        /// Which backend.
        backend: &'static str,
        /// Attempts made, the first included.
        attempts: u32,
        /// The last failure.
        #[source]
        last: Box<BackendError>,
    },

    /// The client's options cannot work (bad URL, a secret a header cannot hold).
    #[error("invalid {backend} configuration: {detail}")]
    Invalid {
        /// Which backend.
        backend: &'static str,
        /// What is wrong (never the secret itself).
        detail: String,
    },
}

impl BackendError {
    /// True when the same request may succeed if tried again at once: 408, 429 and 5xx
    /// answers, timeouts, connection failures and stream errors. A 4xx (bad token, bad
    /// CID), an unreadable body or a bad configuration will not clear by itself. Nor will
    /// an answer over the cap within a request's few seconds of backoff: asking again would
    /// only download it again, `attempts` times over. The passes stop on it instead, as on
    /// an outage ([`BackendError::is_too_large`]), and the next pass asks again.
    pub fn is_retryable(&self) -> bool {
        match self {
            BackendError::Http { status, .. } => *status == 408 || *status == 429 || *status >= 500,
            BackendError::Timeout { .. }
            | BackendError::Connect { .. }
            | BackendError::Transport { .. }
            | BackendError::Stream { .. } => true,
            BackendError::Exhausted { last, .. } => last.is_retryable(),
            BackendError::Decode { .. }
            | BackendError::Invalid { .. }
            | BackendError::TooLarge { .. } => false,
        }
    }

    /// True when the answer was over the cap: the backend (or a proxy before it)
    /// misbehaves, whatever was asked, so it says nothing about the pin.
    pub fn is_too_large(&self) -> bool {
        matches!(self, BackendError::TooLarge { .. })
    }

    /// A short machine-readable reason for pin records and counters: `http_<status>`,
    /// `timeout`, `connect`, `transport`, `decode`, `too_large`, `stream_error` or
    /// `invalid`. Retries
    /// that ran out report the last failure's reason.
    pub fn reason(&self) -> String {
        match self {
            BackendError::Http { status, .. } => format!("http_{status}"),
            BackendError::Timeout { .. } => "timeout".into(),
            BackendError::Connect { .. } => "connect".into(),
            BackendError::Transport { .. } => "transport".into(),
            BackendError::Decode { .. } => "decode".into(),
            BackendError::TooLarge { .. } => nifty_upstream::BodyError::<()>::TOO_LARGE.into(),
            BackendError::Stream { .. } => "stream_error".into(),
            BackendError::Exhausted { last, .. } => last.reason(),
            BackendError::Invalid { .. } => "invalid".into(),
        }
    }

    /// The HTTP status behind the failure, if it was an HTTP error (seen through
    /// [`BackendError::Exhausted`]).
    pub fn status(&self) -> Option<u16> {
        match self {
            BackendError::Http { status, .. } => Some(*status),
            BackendError::Exhausted { last, .. } => last.status(),
            _ => None,
        }
    }

    /// How long the server asked us to wait, if it did.
    fn retry_after(&self) -> Option<Duration> {
        match self {
            BackendError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// A configured pinning backend.
#[derive(Clone, Debug)]
pub enum Backend {
    /// An IPFS Cluster, through its REST API.
    Cluster(ClusterClient),
    /// A service speaking the IPFS Pinning Service API (Pinata, Filebase, ...).
    Psa(PsaClient),
}

impl Backend {
    /// Asks the backend to pin `cid`. Pinning is asynchronous on both backends: the answer
    /// is usually [`RemoteState::Queued`]; [`Backend::status`] follows it up.
    pub async fn pin(&self, cid: &Cid, meta: &PinMeta) -> Result<RemoteStatus, BackendError> {
        match self {
            Backend::Cluster(c) => c.pin(cid, meta).await,
            Backend::Psa(c) => c.pin(cid, meta).await,
        }
    }

    /// The backend's view of each CID in `cids`, one entry per CID in the same order.
    /// CIDs the backend does not know are [`RemoteState::Unpinned`]. Large inputs are
    /// split into several requests; any failing request fails the whole call, so a
    /// partial answer is never mistaken for a complete one.
    pub async fn status(&self, cids: &[Cid]) -> Result<Vec<RemoteStatus>, BackendError> {
        match self {
            Backend::Cluster(c) => c.status(cids).await,
            Backend::Psa(c) => c.status(cids).await,
        }
    }

    /// Asks again for a pin that failed: the cluster's recover operation, a new pin
    /// request on a PSA service (which has no recover; see [`PsaClient::recover`]).
    pub async fn recover(&self, cid: &Cid, meta: &PinMeta) -> Result<RemoteStatus, BackendError> {
        match self {
            Backend::Cluster(c) => c.recover(cid).await,
            Backend::Psa(c) => c.recover(cid, meta).await,
        }
    }

    /// `cluster` or `psa`, for logs, metrics and pin records.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Cluster(_) => cluster::NAME,
            Backend::Psa(_) => psa::NAME,
        }
    }

    /// The endpoint, safe to print.
    pub fn endpoint(&self) -> &str {
        match self {
            Backend::Cluster(c) => c.endpoint(),
            Backend::Psa(c) => c.endpoint(),
        }
    }
}

/// `text` cleaned and cut to `max_chars`, with `…` when something was cut. Cleaning comes
/// before the cut, so a cut never leaves a piece of a secret readable.
fn clean_capped(secrets: &nifty_upstream::Secrets, text: &str, max_chars: usize) -> String {
    let kept = secrets.clean_bounded(text, max_chars);
    if secrets.clean_bounded(text, max_chars.saturating_add(1)) == kept {
        kept
    } else {
        kept + "…"
    }
}

/// The key CIDs are matched on: the multihash. A backend may answer about the same content
/// under another CID version or base than the one asked (v0 `Qm…` for v1 `bafy…`, say).
fn content_key(cid: &Cid) -> Vec<u8> {
    cid.hash().to_bytes()
}

/// The requested CIDs once each, in first-seen order.
fn unique(cids: &[Cid]) -> Vec<Cid> {
    let mut seen = std::collections::HashSet::new();
    cids.iter().filter(|c| seen.insert(**c)).copied().collect()
}

/// One entry per requested CID from answers keyed by [`content_key`]; CIDs without an
/// answer are [`RemoteState::Unpinned`].
fn answer_each(
    cids: &[Cid],
    found: &std::collections::HashMap<Vec<u8>, RemoteState>,
) -> Vec<RemoteStatus> {
    cids.iter()
        .map(|cid| RemoteStatus {
            cid: *cid,
            state: found
                .get(&content_key(cid))
                .cloned()
                .unwrap_or(RemoteState::Unpinned),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16) -> BackendError {
        BackendError::Http {
            backend: "cluster",
            status,
            code: None,
            message: "m".into(),
            retry_after: None,
        }
    }

    #[test]
    fn errors_are_classified() {
        let b = "cluster";
        let d = || "d".to_string();
        let cases: Vec<(BackendError, &str, bool)> = vec![
            (http(503), "http_503", true),
            (http(500), "http_500", true),
            (http(429), "http_429", true),
            (http(408), "http_408", true),
            (http(401), "http_401", false),
            (http(404), "http_404", false),
            (
                BackendError::Timeout {
                    backend: b,
                    detail: d(),
                },
                "timeout",
                true,
            ),
            (
                BackendError::Connect {
                    backend: b,
                    detail: d(),
                },
                "connect",
                true,
            ),
            (
                BackendError::Transport {
                    backend: b,
                    detail: d(),
                },
                "transport",
                true,
            ),
            (
                BackendError::Decode {
                    backend: b,
                    detail: d(),
                },
                "decode",
                false,
            ),
            (
                BackendError::Stream {
                    backend: b,
                    message: d(),
                },
                "stream_error",
                true,
            ),
            (
                BackendError::Invalid {
                    backend: b,
                    detail: d(),
                },
                "invalid",
                false,
            ),
            (
                BackendError::TooLarge {
                    backend: b,
                    detail: d(),
                },
                "too_large",
                false,
            ),
            (
                BackendError::Exhausted {
                    backend: b,
                    attempts: 3,
                    last: Box::new(http(502)),
                },
                "http_502",
                true,
            ),
        ];
        for (e, reason, retry) in cases {
            assert_eq!(
                (e.reason(), e.is_retryable()),
                (reason.into(), retry),
                "{e}"
            );
        }
    }

    #[test]
    fn http_errors_show_the_server_code_and_message() {
        let e = BackendError::Http {
            backend: "psa",
            status: 401,
            code: Some("UNAUTHORIZED".into()),
            message: "Access token is missing or invalid".into(),
            retry_after: None,
        };
        assert_eq!(
            e.to_string(),
            "psa answered HTTP 401 (UNAUTHORIZED): Access token is missing or invalid"
        );
        assert_eq!(e.status(), Some(401));
    }

    #[test]
    fn the_furthest_state_wins() {
        use RemoteState::*;
        let failed = || Failed { error: "e".into() };
        let cases = [
            (Unpinned, failed(), failed()),
            (failed(), Queued, Queued),
            (Queued, Pinning, Pinning),
            (Pinned, Pinning, Pinned),
            (failed(), Unpinned, failed()),
            (
                Failed { error: "a".into() },
                Failed { error: "b".into() },
                Failed { error: "a".into() },
            ),
        ];
        for (a, b, want) in cases {
            assert_eq!(a.clone().best(b.clone()), want, "{a:?} vs {b:?}");
        }
    }
}
