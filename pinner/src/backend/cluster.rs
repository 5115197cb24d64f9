//! IPFS Cluster's REST API (v1.x): `POST /pins/{cid}` to pin, `GET /pins?cids=…` (NDJSON,
//! one GlobalPinInfo per line) to follow up, `POST /pins/{cid}/recover` to retry a failure.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use cid::Cid;
use nifty_scraper::graph::client::redact_url;
use nifty_scraper::retry::Backoff;
use nifty_upstream::Secrets;
use reqwest::header::HeaderValue;
use reqwest::{Method, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tracing::{debug, instrument};

use super::wire::{Wire, serde_words};
use super::{
    BackendError, DEFAULT_MAX_BODY_BYTES, DEFAULT_TIMEOUT, PinMeta, RemoteState, RemoteStatus,
};

/// The backend's name in messages, logs and records.
pub(crate) const NAME: &str = "cluster";

/// CIDs per status request. The cluster asks every peer about each CID in parallel, and the
/// CIDs travel in the query string: 200 CIDv1s make a URL of about 12 KB, under the 16 KB
/// that common proxies accept, and a chunk answers in seconds on a busy cluster.
pub const DEFAULT_STATUS_CHUNK: usize = 200;

/// Longest peer error text kept in [`RemoteState::Failed`]; a cluster of many peers failing
/// alike would otherwise repeat one message per peer.
const MAX_FAILURE_CHARS: usize = 500;

/// How much of a status line that is not a GlobalPinInfo is quoted in the error.
const QUOTED_LINE_CHARS: usize = 120;

/// How requests authenticate.
#[derive(Clone, Default)]
pub enum Auth {
    /// No Authorization header.
    #[default]
    None,
    /// HTTP basic auth (the cluster's `basic_auth_credentials`).
    Basic {
        /// The user name.
        user: String,
        /// The password.
        password: SecretString,
    },
    /// A bearer token (a JWT from the cluster's `/token`, or a proxy's key).
    Bearer(SecretString),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Basic { user, .. } => f
                .debug_struct("Basic")
                .field("user", user)
                .field("password", &"<redacted>")
                .finish(),
            Auth::Bearer(_) => f.debug_tuple("Bearer").field(&"<redacted>").finish(),
        }
    }
}

/// Where and how to reach a cluster peer's REST API.
#[derive(Clone)]
pub struct ClusterOptions {
    /// The REST API's base URL (`http://127.0.0.1:9094`); a base path such as
    /// `https://host/cluster` is kept and API paths are appended to it.
    pub url: Url,
    /// How requests authenticate.
    pub auth: Auth,
    /// `replication-min` for new pins; the cluster's default when unset.
    pub replication_min: Option<i32>,
    /// `replication-max` for new pins; the cluster's default when unset.
    pub replication_max: Option<i32>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// CIDs per status request.
    pub status_chunk: usize,
    /// Retry policy for retryable failures.
    pub backoff: Backoff,
    /// Largest answer read, in bytes; a longer one is [`BackendError::TooLarge`].
    pub max_body: u64,
    /// Every secret of the configuration, masked in all server text kept (the client adds
    /// its own credentials and URL parts).
    pub secrets: Secrets,
}

impl ClusterOptions {
    /// Options for `url` with no auth, the cluster's replication defaults, the default
    /// timeout, chunk, backoff and answer cap, and no secrets but the client's own.
    pub fn new(url: Url) -> Self {
        ClusterOptions {
            url,
            auth: Auth::None,
            replication_min: None,
            replication_max: None,
            timeout: DEFAULT_TIMEOUT,
            status_chunk: DEFAULT_STATUS_CHUNK,
            backoff: Backoff::default(),
            max_body: DEFAULT_MAX_BODY_BYTES,
            secrets: Secrets::default(),
        }
    }
}

impl std::fmt::Debug for ClusterOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterOptions")
            .field("url", &redact_url(self.url.as_str()))
            .field("auth", &self.auth)
            .field("replication_min", &self.replication_min)
            .field("replication_max", &self.replication_max)
            .field("timeout", &self.timeout)
            .field("status_chunk", &self.status_chunk)
            .field("backoff", &self.backoff)
            .field("max_body", &self.max_body)
            .field("secrets", &self.secrets)
            .finish()
    }
}

/// A client of one cluster peer's REST API. Cheap to clone: clones share the connection
/// pool.
#[derive(Clone)]
pub struct ClusterClient {
    /// Connection, auth, retries.
    wire: Wire,
    /// `replication-min` for new pins.
    replication_min: Option<i32>,
    /// `replication-max` for new pins.
    replication_max: Option<i32>,
    /// CIDs per status request.
    status_chunk: usize,
}

impl std::fmt::Debug for ClusterClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterClient")
            .field("endpoint", &self.wire.shown())
            .finish_non_exhaustive()
    }
}

/// One line of `GET /pins`, or the answer of recover: the cluster-wide status of a CID.
/// Only what the fold needs is read; other fields (allocations, origins, metadata, ...)
/// are ignored, so newer clusters adding fields do not break us.
#[derive(Deserialize)]
struct GlobalPinInfo {
    /// The CID.
    cid: WireCid,
    /// Per-peer status, keyed by peer ID. Missing or null when no peer reported.
    #[serde(default)]
    peer_map: Option<BTreeMap<String, PeerPin>>,
}

/// A CID as clusters have written it: a string, or an IPLD link `{"/": "..."}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum WireCid {
    /// `"bafy..."`
    Text(String),
    /// `{"/": "bafy..."}`
    Link {
        /// The CID text.
        #[serde(rename = "/")]
        link: String,
    },
}

/// One peer's view (the cluster's PinInfoShort).
#[derive(Deserialize)]
struct PeerPin {
    /// The peer's human name.
    #[serde(default)]
    peername: String,
    /// A TrackerStatus string (`pinned`, `pin_error`, ...).
    #[serde(default)]
    status: String,
    /// The error, for error statuses.
    #[serde(default)]
    error: String,
}

/// Folds the peers' statuses into one state: any peer pinned → Pinned; else any pinning →
/// Pinning; else any queued → Queued; else any error (or `unexpectedly_unpinned`, a pin
/// the cluster wants but the peer lost, which recover repairs) → Failed with the peers'
/// error text, cleaned (peer names, ids and errors are server text, and the pin record
/// keeps it); else (unpinned, remote, unpinning, undefined, no peers) → Unpinned.
fn fold_peer_map(peers: &BTreeMap<String, PeerPin>, secrets: &Secrets) -> RemoteState {
    let any = |names: &[&str]| peers.values().any(|p| names.contains(&p.status.as_str()));
    if any(&["pinned"]) {
        return RemoteState::Pinned;
    }
    if any(&["pinning"]) {
        return RemoteState::Pinning;
    }
    if any(&["pin_queued", "queued"]) {
        return RemoteState::Queued;
    }
    const FAILED: [&str; 5] = [
        "pin_error",
        "unpin_error",
        "error",
        "cluster_error",
        "unexpectedly_unpinned",
    ];
    let failures: Vec<String> = peers
        .iter()
        .filter(|(_, p)| FAILED.contains(&p.status.as_str()))
        .map(|(id, p)| {
            let who = if p.peername.is_empty() {
                id
            } else {
                &p.peername
            };
            let what = if p.error.is_empty() {
                &p.status
            } else {
                &p.error
            };
            format!("{who}: {what}")
        })
        .collect();
    if failures.is_empty() {
        return RemoteState::Unpinned;
    }
    RemoteState::Failed {
        error: super::clean_capped(secrets, &failures.join("; "), MAX_FAILURE_CHARS),
    }
}

impl ClusterClient {
    /// Builds a client; fails on a URL that is not http(s), a zero chunk or timeout, or
    /// credentials a header cannot hold (the error never echoes them).
    pub fn new(opts: ClusterOptions) -> Result<Self, BackendError> {
        let invalid = |detail: &str| BackendError::Invalid {
            backend: NAME,
            detail: detail.to_owned(),
        };
        if opts.status_chunk == 0 {
            return Err(invalid("status_chunk must be at least 1"));
        }
        // The credentials are masked whatever the caller's set holds; `Secrets` finds the
        // password inside the base64 of `user:password` too.
        let mut own: Vec<String> = Vec::new();
        let auth = match &opts.auth {
            Auth::None => None,
            Auth::Basic { user, password } => {
                use base64::Engine as _;
                let pair = format!("{user}:{}", password.expose_secret());
                let encoded = base64::engine::general_purpose::STANDARD.encode(&pair);
                own.push(password.expose_secret().to_owned());
                own.push(pair);
                Some(
                    header(&format!("Basic {encoded}"))
                        .ok_or_else(|| invalid("the basic auth credentials cannot be a header"))?,
                )
            }
            Auth::Bearer(token) => {
                own.push(token.expose_secret().to_owned());
                Some(
                    header(&format!("Bearer {}", token.expose_secret())).ok_or_else(|| {
                        invalid("the bearer token has characters a header cannot hold")
                    })?,
                )
            }
        };
        let secrets = opts.secrets.with(own);
        Ok(ClusterClient {
            wire: Wire::new(
                NAME,
                &opts.url,
                opts.timeout,
                opts.backoff,
                auth,
                &secrets,
                opts.max_body,
            )?,
            replication_min: opts.replication_min,
            replication_max: opts.replication_max,
            status_chunk: opts.status_chunk,
        })
    }

    /// The endpoint, safe to print.
    pub fn endpoint(&self) -> &str {
        self.wire.shown()
    }

    /// `POST /pins/{cid}` with the name, replication factors and `meta-*` tags. The answer
    /// is the cluster's Pin object, which says nothing of progress, so a pin that was
    /// accepted is [`RemoteState::Queued`].
    #[instrument(level = "debug", skip(self, cid, meta), fields(backend = NAME, cid = %cid))]
    pub async fn pin(&self, cid: &Cid, meta: &PinMeta) -> Result<RemoteStatus, BackendError> {
        let text = cid.to_string();
        let rmin = self.replication_min.map(|r| r.to_string());
        let rmax = self.replication_max.map(|r| r.to_string());
        let keys: Vec<String> = meta.meta.iter().map(|(k, _)| format!("meta-{k}")).collect();
        let mut query: Vec<(&str, &str)> = Vec::new();
        if !meta.name.is_empty() {
            query.push(("name", &meta.name));
        }
        if let Some(r) = &rmin {
            query.push(("replication-min", r));
        }
        if let Some(r) = &rmax {
            query.push(("replication-max", r));
        }
        query.extend(
            keys.iter()
                .zip(&meta.meta)
                .map(|(k, (_, v))| (k.as_str(), v.as_str())),
        );
        let url = &self.wire.url(&["pins", &text], &query);
        self.wire
            .retrying("pin", || async move {
                let body = self
                    .wire
                    .send(self.wire.request(Method::POST, url.clone()))
                    .await?;
                // Only the shape is checked: a proxy's HTML page with a 200 is not a pin.
                serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&body)
                    .map_err(|e| {
                        self.wire.decode(&format!(
                            "pin answer is not a Pin object: {} ({})",
                            serde_words(&e),
                            self.wire.snippet(&body)
                        ))
                    })?;
                Ok(())
            })
            .await?;
        Ok(RemoteStatus {
            cid: *cid,
            state: RemoteState::Queued,
        })
    }

    /// The cluster-wide state of each CID, one entry per CID in order, read in chunks of
    /// `status_chunk`. A CID missing from the answer is [`RemoteState::Unpinned`].
    #[instrument(level = "debug", skip(self, cids), fields(backend = NAME, count = cids.len()))]
    pub async fn status(&self, cids: &[Cid]) -> Result<Vec<RemoteStatus>, BackendError> {
        let mut found = HashMap::new();
        for chunk in super::unique(cids).chunks(self.status_chunk) {
            let answers = self
                .wire
                .retrying("status", || self.status_once(chunk))
                .await?;
            let mut missing = chunk.len();
            for (cid, state) in answers {
                missing = missing.saturating_sub(1);
                let key = super::content_key(&cid);
                let state = match found.remove(&key) {
                    Some(seen) => state.best(seen),
                    None => state,
                };
                found.insert(key, state);
            }
            if missing > 0 {
                debug!(
                    asked = chunk.len(),
                    missing, "CIDs missing from the cluster's answer"
                );
            }
        }
        Ok(super::answer_each(cids, &found))
    }

    /// One status request: `GET /pins?cids=…`, its NDJSON lines parsed as they arrive. 204
    /// is an empty answer; an `X-Stream-Error` makes the whole answer an error, because the
    /// cluster stops a stream on errors and the lines before it would pass CIDs it never
    /// reported as unpinned.
    async fn status_once(&self, chunk: &[Cid]) -> Result<Vec<(Cid, RemoteState)>, BackendError> {
        let list = chunk
            .iter()
            .map(Cid::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let url = self.wire.url(&["pins"], &[("cids", &list)]);
        // `TE: trailers` says we read trailers; some servers (hyper) send none without it.
        let request = self
            .wire
            .request(Method::GET, url)
            .header(reqwest::header::TE, "trailers");
        let mut answers = Vec::new();
        let mut number = 0usize;
        let secrets = self.wire.secrets();
        let reply = self
            .wire
            .send_lines(request, |line| {
                number += 1;
                match parse_line(line, secrets) {
                    Ok(Some(answer)) => answers.push(answer),
                    Ok(None) => {}
                    Err(e) => return Err(self.wire.decode(&format!("line {number}: {e}"))),
                }
                Ok(())
            })
            .await?;
        // The cluster announces the trailer in a header and fills it after the stream; a
        // proxy may flatten it into a header. Either way a non-empty value is an error.
        let stream_errors: Vec<String> = reply
            .headers
            .get_all("x-stream-error")
            .iter()
            .chain(reply.trailers.get_all("x-stream-error").iter())
            .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect();
        if !stream_errors.is_empty() {
            return Err(BackendError::Stream {
                backend: NAME,
                message: self.wire.snippet(stream_errors.join("; ").as_bytes()),
            });
        }
        // A 204 has no lines, so it is the empty answer it means.
        debug!(
            status = reply.status.as_u16(),
            lines = number,
            "status answer read"
        );
        Ok(answers)
    }

    /// `POST /pins/{cid}/recover`: the cluster retries the pin on the peers where it
    /// failed and answers with the CID's GlobalPinInfo, folded like a status line.
    #[instrument(level = "debug", skip(self, cid), fields(backend = NAME, cid = %cid))]
    pub async fn recover(&self, cid: &Cid) -> Result<RemoteStatus, BackendError> {
        let text = cid.to_string();
        let url = &self.wire.url(&["pins", &text, "recover"], &[]);
        let state = self
            .wire
            .retrying("recover", || async move {
                let body = self
                    .wire
                    .send(self.wire.request(Method::POST, url.clone()))
                    .await?;
                let info: GlobalPinInfo = serde_json::from_slice(&body).map_err(|e| {
                    self.wire.decode(&format!(
                        "recover answer is not a GlobalPinInfo: {} ({})",
                        serde_words(&e),
                        self.wire.snippet(&body)
                    ))
                })?;
                Ok(info.peer_map.as_ref().map_or(RemoteState::Unpinned, |p| {
                    fold_peer_map(p, self.wire.secrets())
                }))
            })
            .await?;
        Ok(RemoteStatus { cid: *cid, state })
    }
}

/// A header value marked sensitive, so that it is never printed by the HTTP stack.
fn header(value: &str) -> Option<HeaderValue> {
    let mut v = HeaderValue::from_str(value).ok()?;
    v.set_sensitive(true);
    Some(v)
}

/// Parses one line of an NDJSON status answer (the pure half of a status request): `None`
/// for a blank line. The error quotes the start of the line, cleaned, and serde's words
/// without the values they quote ([`serde_words`]).
fn parse_line(line: &[u8], secrets: &Secrets) -> Result<Option<(Cid, RemoteState)>, String> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let info: GlobalPinInfo = serde_json::from_slice(line).map_err(|e| {
        let start = secrets.clean_bounded(&String::from_utf8_lossy(line), QUOTED_LINE_CHARS);
        format!("not a GlobalPinInfo: {} ({start})", serde_words(&e))
    })?;
    let text = match &info.cid {
        WireCid::Text(t) => t,
        WireCid::Link { link } => link,
    };
    let cid = Cid::try_from(text.as_str()).map_err(|e| {
        let shown = secrets.clean_bounded(text, QUOTED_LINE_CHARS);
        format!("bad CID \"{shown}\": {e}")
    })?;
    let state = info
        .peer_map
        .as_ref()
        .map_or(RemoteState::Unpinned, |p| fold_peer_map(p, secrets));
    Ok(Some((cid, state)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(list: &[(&str, &str, &str)]) -> BTreeMap<String, PeerPin> {
        list.iter()
            .map(|(id, status, error)| {
                (
                    id.to_string(),
                    PeerPin {
                        peername: format!("peer-{id}"),
                        status: status.to_string(),
                        error: error.to_string(),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn peer_maps_fold_to_the_furthest_state() {
        use RemoteState::*;
        let failed = |e: &str| Failed { error: e.into() };
        let cases: Vec<(&[(&str, &str, &str)], RemoteState)> = vec![
            (&[("a", "pinned", "")], Pinned),
            (&[("a", "pin_error", "boom"), ("b", "pinned", "")], Pinned),
            (&[("a", "remote", ""), ("b", "pinned", "")], Pinned),
            (&[("a", "pinning", ""), ("b", "pin_queued", "")], Pinning),
            (&[("a", "pin_error", "x"), ("b", "pinning", "")], Pinning),
            (&[("a", "pin_queued", ""), ("b", "pin_error", "x")], Queued),
            (&[("a", "queued", "")], Queued),
            (
                &[("a", "pin_error", "context deadline exceeded")],
                failed("peer-a: context deadline exceeded"),
            ),
            (
                &[("a", "cluster_error", ""), ("b", "pin_error", "no route")],
                failed("peer-a: cluster_error; peer-b: no route"),
            ),
            (&[("a", "unpin_error", "e")], failed("peer-a: e")),
            (&[("a", "error", "e")], failed("peer-a: e")),
            (
                &[("a", "unexpectedly_unpinned", "")],
                failed("peer-a: unexpectedly_unpinned"),
            ),
            (
                &[("a", "remote", ""), ("b", "pin_error", "e")],
                failed("peer-b: e"),
            ),
            (&[("a", "unpinned", "")], Unpinned),
            (&[("a", "remote", ""), ("b", "remote", "")], Unpinned),
            (&[("a", "undefined", "")], Unpinned),
            (
                &[("a", "unpinning", ""), ("b", "unpin_queued", "")],
                Unpinned,
            ),
            (&[("a", "something_new", "")], Unpinned),
            (&[], Unpinned),
        ];
        for (list, want) in cases {
            assert_eq!(
                fold_peer_map(&peers(list), &Secrets::default()),
                want,
                "{list:?}"
            );
        }
    }

    #[test]
    fn failures_are_capped() {
        let long = "x".repeat(400);
        let list: Vec<(&str, &str, &str)> =
            vec![("a", "pin_error", &long), ("b", "pin_error", &long)];
        match fold_peer_map(&peers(&list), &Secrets::default()) {
            RemoteState::Failed { error } => {
                assert_eq!(error.chars().count(), MAX_FAILURE_CHARS + 1)
            }
            s => panic!("{s:?}"),
        }
    }

    #[test]
    fn ndjson_lines_parse_with_unknown_fields_and_link_cids() {
        let none = Secrets::default();
        let pinned = concat!(
            r#"{"cid":"bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy","name":"n","#,
            r#""allocations":[],"peer_map":{"12D3a":{"peername":"p","status":"pinned","#,
            r#""timestamp":"2024-01-01T00:00:00Z","error":"","attempt_count":0,"new":1}}}"#,
        );
        let (_, state) = parse_line(pinned.as_bytes(), &none).unwrap().unwrap();
        assert_eq!(state, RemoteState::Pinned);
        let link =
            r#"{"cid":{"/":"QmPZ9gcCEpqKTo6aq61g2nXGUhM4iCL3ewB6LDXZCtioEB"},"peer_map":null}"#;
        let (cid, state) = parse_line(link.as_bytes(), &none).unwrap().unwrap();
        assert_eq!(state, RemoteState::Unpinned);
        assert_eq!(
            cid.to_string(),
            "QmPZ9gcCEpqKTo6aq61g2nXGUhM4iCL3ewB6LDXZCtioEB"
        );
        assert!(parse_line(b"", &none).unwrap().is_none());
        assert!(parse_line(b" \r", &none).unwrap().is_none());
        let bad = [
            &b"{\"cid\":\"not-a-cid\",\"peer_map\":{}}"[..],
            b"<html>",
            b"{\"peer_map\":{}}",
        ];
        for line in bad {
            assert!(
                parse_line(line, &none).is_err(),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn server_text_in_status_lines_is_cleaned_before_it_is_kept() {
        let secrets = Secrets::new(["peer-secret-0123456789"]);
        let line = concat!(
            r#"{"cid":"bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy","#,
            r#""peer_map":{"12D3a":{"peername":"p\u202e\nforged","status":"pin_error","#,
            r#""error":"key peer-secret\n-0123456789"}}}"#,
        );
        let (_, state) = parse_line(line.as_bytes(), &secrets).unwrap().unwrap();
        assert_eq!(
            state,
            RemoteState::Failed {
                error: "pforged: key <redacted>".into()
            }
        );
        let bad = "{\"cid\":\"peer-secret-0123456789\",\"peer_map\":{}}";
        let e = parse_line(bad.as_bytes(), &secrets).unwrap_err();
        assert!(!e.contains("0123456789"), "{e}");
    }

    #[test]
    fn auth_and_options_never_print_secrets() {
        let opts = ClusterOptions {
            auth: Auth::Basic {
                user: "admin".into(),
                password: SecretString::from("hunter2-secret".to_owned()),
            },
            ..ClusterOptions::new(Url::parse("http://u:pw-in-url@h:9094/c?k=qsecret").unwrap())
        };
        let shown = format!(
            "{opts:?} {:?}",
            Auth::Bearer("tok-secret".to_owned().into())
        );
        for s in ["hunter2-secret", "pw-in-url", "qsecret", "tok-secret"] {
            assert!(!shown.contains(s), "{shown}");
        }
    }
}
