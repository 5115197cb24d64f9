//! What both sources' HTTP clients share: the endpoint check, the bearer header, the
//! connection pool, and keeping secrets out of any server text an error carries.

use std::time::Duration;

use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};

use crate::error::{Result, ScrapeError};

/// How much of an error body is kept for the operator.
const SNIPPET_CHARS: usize = 200;

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

/// Replaces every secret in `text` with `<redacted>`.
pub(crate) fn scrub(secrets: &[SecretString], text: &str) -> String {
    let mut out = text.to_owned();
    for s in secrets {
        let s = s.expose_secret();
        if s.len() >= 4 {
            out = out.replace(s, "<redacted>");
        }
    }
    out
}

/// The start of a body, control characters dropped and secrets removed (in that order:
/// dropping a newline could join the two halves of a secret).
pub(crate) fn snippet(secrets: &[SecretString], body: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(body).into_owned();
    text.retain(|c| !c.is_control() || c == ' ');
    scrub(secrets, &text).chars().take(SNIPPET_CHARS).collect()
}
