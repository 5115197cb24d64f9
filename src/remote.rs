//! `--api URL`: the commands that read or move state, asked of a running daemon's HTTP API
//! instead of the data dir it holds.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use nifty_state::Cursor;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use url::Url;

use crate::api::{CursorMove, CursorMoved, DaemonStatus};
use crate::config::Config;
use crate::pinning::FailureReport;
use crate::{NotFound, UsageError};

/// How long one API call may take: every read is served from counters and indexes.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A running daemon's API.
pub struct Remote {
    base: Url,
    client: reqwest::Client,
    admin_token: Option<SecretString>,
    admin_token_env: String,
    runtime: tokio::runtime::Runtime,
}

impl Remote {
    /// The daemon at `url` (its base: `http://127.0.0.1:8640`); admin calls send the token
    /// the config's `http.admin_token_env` names.
    pub fn new(url: &str, config: &Config) -> anyhow::Result<Self> {
        let mut base = Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| {
                UsageError(format!(
                    "--api {url:?}: not an http(s) URL; give the daemon's address, such as \
                     http://127.0.0.1:8640"
                ))
            })?;
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .context("building the HTTP client")?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        Ok(Remote {
            base,
            client,
            admin_token: config.http.admin_token.clone(),
            admin_token_env: config.http.admin_token_env.clone(),
            runtime,
        })
    }

    fn url(&self, path: &str) -> anyhow::Result<Url> {
        self.base
            .join(path)
            .with_context(|| format!("building the URL of {path}"))
    }

    fn call<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
    ) -> anyhow::Result<T> {
        // A URL may carry a password; errors show it redacted.
        let base = nifty_scraper::graph::client::redact_url(self.base.as_str());
        self.runtime.block_on(async {
            let resp = req.send().await.map_err(|e| {
                anyhow::anyhow!(
                    "cannot reach the daemon at {base}: {e}; is `nifty run` running there?"
                )
            })?;
            let status = resp.status();
            let body = resp
                .bytes()
                .await
                .with_context(|| format!("reading the daemon's answer to {what}"))?;
            if status.is_success() {
                return serde_json::from_slice(&body).with_context(|| {
                    format!("the daemon's answer to {what} is not what this nifty expects (another version?)")
                });
            }
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(300).collect());
            Err(match status {
                StatusCode::NOT_FOUND => NotFound(message).into(),
                StatusCode::UNAUTHORIZED => UsageError(format!(
                    "the daemon refused {what}: {message} (the token comes from the variable \
                     `http.admin_token_env` names)"
                ))
                .into(),
                s if s.is_client_error() => {
                    UsageError(format!("the daemon refused {what}: {message}")).into()
                }
                s => anyhow::anyhow!("the daemon failed {what}: {s}: {message}"),
            })
        })
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let url = self.url(path)?;
        self.call(self.client.get(url), path)
    }

    /// `/api/status`.
    pub fn status(&self) -> anyhow::Result<DaemonStatus> {
        self.get("api/status")
    }

    /// `/api/cursors`.
    pub fn cursors(&self) -> anyhow::Result<BTreeMap<String, Cursor>> {
        self.get("api/cursors")
    }

    /// `/api/tokens/{contract}/{id}`.
    pub fn token(&self, contract: &str, id: &str) -> anyhow::Result<serde_json::Value> {
        self.get(&format!("api/tokens/{}/{}", segment(contract), segment(id)))
    }

    /// `/api/pins/{cid}`.
    pub fn pin(&self, cid: &str) -> anyhow::Result<serde_json::Value> {
        self.get(&format!("api/pins/{}", segment(cid)))
    }

    /// `/api/failures`.
    pub fn failures(&self, since: Option<&str>) -> anyhow::Result<FailureReport> {
        let mut url = self.url("api/failures")?;
        url.query_pairs_mut().append_pair("examples", "2");
        if let Some(s) = since {
            url.query_pairs_mut().append_pair("since", s);
        }
        self.call(self.client.get(url), "api/failures")
    }

    /// `POST /api/cursor/{name}` with the admin token.
    pub fn move_cursor(&self, name: &str, mv: &CursorMove) -> anyhow::Result<CursorMoved> {
        let url = self.url(&format!("api/cursor/{}", segment(name)))?;
        let mut req = self.client.post(url).json(mv);
        match &self.admin_token {
            Some(t) => req = req.bearer_auth(t.expose_secret()),
            None if self.admin_token_env.is_empty() => {
                return Err(UsageError(
                    "moving a cursor through the daemon needs its admin token: set \
                     `http.admin_token_env` to the variable that holds it"
                        .into(),
                )
                .into());
            }
            None => {
                return Err(UsageError(format!(
                    "moving a cursor through the daemon needs its admin token, and \
                     {} (named by `http.admin_token_env`) is not set",
                    self.admin_token_env
                ))
                .into());
            }
        }
        self.call(req, "the cursor move")
    }
}

/// A path segment with everything but unreserved characters percent-encoded (cursor names
/// hold '/').
fn segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
