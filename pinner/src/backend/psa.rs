//! The IPFS Pinning Service API (`ipfs/pinning-services-api-spec`), spoken by Pinata,
//! Filebase and others: `POST /pins` to pin, `GET /pins?cid=…` to follow up.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use cid::Cid;
use nifty_scraper::graph::client::redact_url;
use nifty_scraper::retry::Backoff;
use nifty_upstream::Secrets;
use reqwest::header::HeaderValue;
use reqwest::{Method, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tracing::{instrument, warn};

use super::wire::{Wire, serde_words};
use super::{
    BackendError, DEFAULT_MAX_BODY_BYTES, DEFAULT_TIMEOUT, PinMeta, RemoteState, RemoteStatus,
};

/// The backend's name in messages, logs and records.
pub(crate) const NAME: &str = "psa";

/// CIDs per `GET /pins`: the spec caps the `cid` filter at 10 items.
pub const MAX_CIDS_PER_LIST: usize = 10;

/// `limit` of a listing: the spec's maximum. Ten CIDs rarely have more pin requests than
/// this, but every retry through [`PsaClient::recover`] adds one.
const LIST_LIMIT: &str = "1000";

/// Pages read per chunk when a listing says there are more results than it returned.
/// Bounded so a service that ignores `before` cannot loop us forever.
const MAX_LIST_PAGES: usize = 5;

/// Every status the spec knows. The spec's default filter is `pinned` only, which would
/// make queued and failed requests look like no request at all.
const ALL_STATUSES: &str = "queued,pinning,pinned,failed";

/// Longest pin name the spec allows.
const MAX_NAME_CHARS: usize = 255;

/// Longest failure text kept in [`RemoteState::Failed`].
const MAX_FAILURE_CHARS: usize = 500;

/// How much of a value the service sent is quoted in an error or a log line (a CID, a
/// status word).
const QUOTED_CHARS: usize = 120;

/// Where and how to reach a pinning service.
#[derive(Clone)]
pub struct PsaOptions {
    /// The API's base URL (`https://api.pinata.cloud/psa`); API paths are appended to its
    /// path.
    pub url: Url,
    /// The access token, sent as `Authorization: Bearer`.
    pub token: SecretString,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Retry policy for retryable failures.
    pub backoff: Backoff,
    /// Largest answer read, in bytes; a longer one is [`BackendError::TooLarge`].
    pub max_body: u64,
    /// Every secret of the configuration, masked in all server text kept (the client adds
    /// its token and URL parts).
    pub secrets: Secrets,
}

impl PsaOptions {
    /// Options for `url` and `token` with the default timeout, backoff and answer cap, and
    /// no secrets but the client's own.
    pub fn new(url: Url, token: SecretString) -> Self {
        PsaOptions {
            url,
            token,
            timeout: DEFAULT_TIMEOUT,
            backoff: Backoff::default(),
            max_body: DEFAULT_MAX_BODY_BYTES,
            secrets: Secrets::default(),
        }
    }
}

impl std::fmt::Debug for PsaOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PsaOptions")
            .field("url", &redact_url(self.url.as_str()))
            .field("token", &"<redacted>")
            .field("timeout", &self.timeout)
            .field("backoff", &self.backoff)
            .field("max_body", &self.max_body)
            .field("secrets", &self.secrets)
            .finish()
    }
}

/// A client of one pinning service. Cheap to clone: clones share the connection pool.
#[derive(Clone)]
pub struct PsaClient {
    /// Connection, auth, retries.
    wire: Wire,
}

impl std::fmt::Debug for PsaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PsaClient")
            .field("endpoint", &self.wire.shown())
            .finish_non_exhaustive()
    }
}

/// The body of `POST /pins` (the spec's Pin object; `origins` left out).
#[derive(Serialize)]
struct PinRequest<'a> {
    /// The CID to pin recursively.
    cid: String,
    /// The pin's name.
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    /// Meta tags.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    meta: BTreeMap<&'a str, &'a str>,
}

/// A pin request and its status (the spec's PinStatus). Fields we do not use (delegates,
/// origins, meta) are ignored.
#[derive(Deserialize)]
struct PinStatus {
    /// The service's id of the request.
    #[serde(default)]
    requestid: String,
    /// `queued`, `pinning`, `pinned` or `failed`.
    status: String,
    /// When the request entered the service (RFC 3339).
    #[serde(default)]
    created: Option<String>,
    /// What was asked.
    pin: PinObject,
    /// Free-form details; `status_details` explains failures.
    #[serde(default)]
    info: Option<BTreeMap<String, serde_json::Value>>,
}

/// The pinned object inside a PinStatus.
#[derive(Deserialize)]
struct PinObject {
    /// The CID.
    cid: String,
}

/// The answer of `GET /pins` (the spec's PinResults).
#[derive(Deserialize)]
struct PinResults {
    /// Requests matching the filters in all, not only in this page.
    count: u64,
    /// This page.
    results: Vec<PinStatus>,
}

/// What a PinStatus says, or `None` for a status the spec does not define. A failure's
/// details and request id are the service's text, kept in the pin record: cleaned.
fn state_of(ps: &PinStatus, secrets: &Secrets) -> Option<RemoteState> {
    Some(match ps.status.as_str() {
        "queued" => RemoteState::Queued,
        "pinning" => RemoteState::Pinning,
        "pinned" => RemoteState::Pinned,
        "failed" => {
            let details = ps
                .info
                .as_ref()
                .and_then(|i| i.get("status_details"))
                .and_then(serde_json::Value::as_str)
                .filter(|d| !d.is_empty())
                .unwrap_or("the pinning service reports the pin failed");
            let error = if ps.requestid.is_empty() {
                details.to_owned()
            } else {
                format!("{details} (request {})", ps.requestid)
            };
            RemoteState::Failed {
                error: super::clean_capped(secrets, &error, MAX_FAILURE_CHARS),
            }
        }
        _ => return None,
    })
}

impl PsaClient {
    /// Builds a client; fails on a URL that is not http(s), a zero timeout, or a token a
    /// header cannot hold (the error never echoes it).
    pub fn new(opts: PsaOptions) -> Result<Self, BackendError> {
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", opts.token.expose_secret()))
            .map_err(|_| BackendError::Invalid {
                backend: NAME,
                detail: "the access token has characters a header cannot hold".into(),
            })?;
        auth.set_sensitive(true);
        let secrets = opts.secrets.with([opts.token.expose_secret()]);
        let wire = Wire::new(
            NAME,
            &opts.url,
            opts.timeout,
            opts.backoff,
            Some(auth),
            &secrets,
            opts.max_body,
        )?;
        Ok(PsaClient { wire })
    }

    /// The endpoint, safe to print.
    pub fn endpoint(&self) -> &str {
        self.wire.shown()
    }

    /// `POST /pins` with the CID, name (cut to the spec's 255 characters) and meta tags;
    /// the service answers with the new request's status. A retried POST after a timeout
    /// may leave two requests for one CID at the service; [`PsaClient::status`] reads the
    /// best of them, so that is harmless.
    #[instrument(level = "debug", skip(self, cid, meta), fields(backend = NAME, cid = %cid))]
    pub async fn pin(&self, cid: &Cid, meta: &PinMeta) -> Result<RemoteStatus, BackendError> {
        self.request_pin("pin", cid, meta).await
    }

    /// `POST /pins`, for [`PsaClient::pin`] and [`PsaClient::recover`]; `op` names the
    /// caller in the request metrics, so retries of failed pins are told from new pins.
    async fn request_pin(
        &self,
        op: &'static str,
        cid: &Cid,
        meta: &PinMeta,
    ) -> Result<RemoteStatus, BackendError> {
        let body = &PinRequest {
            cid: cid.to_string(),
            name: meta.name.chars().take(MAX_NAME_CHARS).collect(),
            meta: meta
                .meta
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
        };
        let url = &self.wire.url(&["pins"], &[]);
        let status: PinStatus = self
            .wire
            .retrying(op, || async move {
                let req = self.wire.request(Method::POST, url.clone()).json(body);
                let body = self.wire.send(req).await?;
                serde_json::from_slice(&body).map_err(|e| {
                    self.wire.decode(&format!(
                        "pin answer is not a PinStatus: {} ({})",
                        serde_words(&e),
                        self.wire.snippet(&body)
                    ))
                })
            })
            .await?;
        let state = state_of(&status, self.wire.secrets()).unwrap_or_else(|| {
            // The service accepted the request (2xx); only its word for the state is new.
            warn!(status = %self.quoted(&status.status), "unknown pin status from the pinning service");
            RemoteState::Queued
        });
        Ok(RemoteStatus { cid: *cid, state })
    }

    /// The state of each CID, one entry per CID in order, read [`MAX_CIDS_PER_LIST`] at a
    /// time with every status in the filter. A CID with several requests (a failed one and
    /// its retry, say) gets the best of them (pinned > pinning > queued > failed); a CID
    /// with none is [`RemoteState::Unpinned`].
    #[instrument(level = "debug", skip(self, cids), fields(backend = NAME, count = cids.len()))]
    pub async fn status(&self, cids: &[Cid]) -> Result<Vec<RemoteStatus>, BackendError> {
        let mut found: HashMap<Vec<u8>, RemoteState> = HashMap::new();
        for chunk in super::unique(cids).chunks(MAX_CIDS_PER_LIST) {
            let list = chunk
                .iter()
                .map(Cid::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let mut before: Option<String> = None;
            let mut read = 0u64;
            for page in 1..=MAX_LIST_PAGES {
                let (list, after) = (list.as_str(), before.as_deref());
                let res = self
                    .wire
                    .retrying("status", move || self.list_once(list, after))
                    .await?;
                for ps in &res.results {
                    let cid = Cid::try_from(ps.pin.cid.as_str()).map_err(|e| {
                        self.wire.decode(&format!(
                            "bad CID \"{}\" in a PinStatus: {e}",
                            self.quoted(&ps.pin.cid)
                        ))
                    })?;
                    let Some(state) = state_of(ps, self.wire.secrets()) else {
                        warn!(status = %self.quoted(&ps.status), "unknown pin status from the pinning service");
                        continue;
                    };
                    let key = super::content_key(&cid);
                    let state = match found.remove(&key) {
                        Some(seen) => seen.best(state),
                        None => state,
                    };
                    found.insert(key, state);
                }
                read += res.results.len() as u64;
                if res.results.is_empty() || read >= res.count {
                    break;
                }
                // The spec pages by time: `before` the oldest `created` of this page.
                // RFC 3339 timestamps in one zone sort as text.
                let oldest = res.results.iter().filter_map(|r| r.created.clone()).min();
                match oldest {
                    Some(o) if before.as_ref() != Some(&o) => before = Some(o),
                    _ => break,
                }
                if page == MAX_LIST_PAGES {
                    warn!(
                        count = res.count,
                        read, "more pin requests than read; some may be missed"
                    );
                }
            }
        }
        Ok(super::answer_each(cids, &found))
    }

    /// One listing: `GET /pins?cid=…&status=queued,pinning,pinned,failed&limit=1000`.
    async fn list_once(
        &self,
        list: &str,
        before: Option<&str>,
    ) -> Result<PinResults, BackendError> {
        let mut query = vec![
            ("cid", list),
            ("status", ALL_STATUSES),
            ("limit", LIST_LIMIT),
        ];
        if let Some(b) = before {
            query.push(("before", b));
        }
        let url = self.wire.url(&["pins"], &query);
        let body = self.wire.send(self.wire.request(Method::GET, url)).await?;
        serde_json::from_slice(&body).map_err(|e| {
            self.wire.decode(&format!(
                "listing is not PinResults: {} ({})",
                serde_words(&e),
                self.wire.snippet(&body)
            ))
        })
    }

    /// A value the service sent, cleaned and cut for an error or a log line.
    fn quoted(&self, value: &str) -> String {
        self.wire.secrets().clean_bounded(value, QUOTED_CHARS)
    }

    /// Asks again for a failed pin. The spec has no recover: a failed request stays failed
    /// at the service, and replacing it (`POST /pins/{requestid}`) needs a request id we do
    /// not keep. So this sends a new `POST /pins`; the old failed request stays listed, and
    /// [`PsaClient::status`] takes the best of the two.
    #[instrument(level = "debug", skip(self, cid, meta), fields(backend = NAME, cid = %cid))]
    pub async fn recover(&self, cid: &Cid, meta: &PinMeta) -> Result<RemoteStatus, BackendError> {
        self.request_pin("recover", cid, meta).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ps(status: &str, details: Option<&str>) -> PinStatus {
        PinStatus {
            requestid: "r1".into(),
            status: status.into(),
            created: None,
            pin: PinObject { cid: "x".into() },
            info: details.map(|d| {
                [("status_details".to_string(), serde_json::Value::from(d))]
                    .into_iter()
                    .collect()
            }),
        }
    }

    #[test]
    fn statuses_map_and_the_best_request_wins() {
        use RemoteState::*;
        let cases: Vec<(Vec<PinStatus>, RemoteState)> = vec![
            (vec![ps("pinned", None)], Pinned),
            (vec![ps("failed", None), ps("pinned", None)], Pinned),
            (vec![ps("pinned", None), ps("failed", None)], Pinned),
            (vec![ps("queued", None), ps("pinning", None)], Pinning),
            (vec![ps("failed", None), ps("queued", None)], Queued),
            (
                vec![ps("failed", Some("not found on the network"))],
                Failed {
                    error: "not found on the network (request r1)".into(),
                },
            ),
            (
                vec![ps("failed", None)],
                Failed {
                    error: "the pinning service reports the pin failed (request r1)".into(),
                },
            ),
        ];
        for (list, want) in cases {
            let got = list
                .iter()
                .filter_map(|p| state_of(p, &Secrets::default()))
                .fold(Unpinned, RemoteState::best);
            assert_eq!(got, want);
        }
        assert_eq!(state_of(&ps("expired", None), &Secrets::default()), None);
        // The service's words are kept cleaned.
        let secrets = Secrets::new(["psa-secret-0123456789"]);
        let mut echo = ps("failed", Some("denied: psa-secret\n-0123456789\u{1b}[31m"));
        echo.requestid = "psa-secret-0123456789".into();
        assert_eq!(
            state_of(&echo, &secrets),
            Some(Failed {
                error: "denied: <redacted>[31m (request <redacted>)".into()
            })
        );
    }

    #[test]
    fn pin_requests_serialise_as_the_spec_says() {
        let meta = [("role", "image"), ("token_id", "7")];
        let req = PinRequest {
            cid: "bafy".into(),
            name: "n".into(),
            meta: meta.into_iter().collect(),
        };
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            serde_json::json!({"cid": "bafy", "name": "n", "meta": {"role": "image", "token_id": "7"}})
        );
        let bare = PinRequest {
            cid: "bafy".into(),
            name: String::new(),
            meta: BTreeMap::new(),
        };
        assert_eq!(
            serde_json::to_value(&bare).unwrap(),
            serde_json::json!({"cid": "bafy"})
        );
    }

    #[test]
    fn options_never_print_the_token() {
        let opts = PsaOptions::new(
            Url::parse("https://psa.example/api/key-in-path/x").unwrap(),
            SecretString::from("psa-token-123".to_owned()),
        );
        let shown = format!("{opts:?}");
        assert!(!shown.contains("psa-token-123"), "{shown}");
        assert!(!shown.contains("key-in-path"), "{shown}");
    }
}
