//! What both sources' HTTP clients share: the endpoint check, the bearer header and the
//! connection pool. Server text is cleaned by `nifty_upstream::Secrets`.

use std::time::Duration;

use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};

use crate::error::{Result, ScrapeError};

/// Parses an endpoint (`what`: "subgraph", "node"), which must be http(s). The URL itself
/// is never echoed: it may carry a key.
pub(crate) fn endpoint(url: &str, what: &str) -> Result<reqwest::Url> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| ScrapeError::Invalid(format!("{what} URL is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ScrapeError::Invalid(format!(
            "{what} URL must be http(s), not {}",
            parsed.scheme()
        )));
    }
    Ok(parsed)
}

/// The `Authorization: Bearer` value of an API key, marked sensitive.
pub(crate) fn bearer(key: Option<&SecretString>) -> Result<Option<HeaderValue>> {
    let Some(k) = key else { return Ok(None) };
    let mut v = HeaderValue::from_str(&format!("Bearer {}", k.expose_secret())).map_err(|_| {
        ScrapeError::Invalid("the API key has characters a header cannot hold".into())
    })?;
    v.set_sensitive(true);
    Ok(Some(v))
}

/// The connection pool of one client.
pub(crate) fn client(timeout: Duration) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("nifty/", env!("CARGO_PKG_VERSION")))
        .pool_max_idle_per_host(64)
        .build()
        .map_err(|e| ScrapeError::Invalid(format!("cannot build HTTP client: {}", e.without_url())))
}
