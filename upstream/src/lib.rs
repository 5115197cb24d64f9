//! What nifty does with anything an upstream server (subgraph, chain node, cluster, Pinning
//! Service, gateway, web host) sends it: text is made safe before it reaches an error, a
//! log line or the store ([`Secrets::clean`]), and bodies are read with a cap
//! ([`read_capped`]). Every client of every crate goes through these, so there is one rule
//! for each and one place to get it right.
// A library reports through its return values and tracing, never by printing.
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod body;
mod text;

use std::time::Duration;

pub use body::{BodyError, human_bytes, read_capped};
pub use text::{
    MESSAGE_CHARS, MIN_PIECE_CHARS, MIN_SECRET_BYTES, REDACTED, SNIPPET_CHARS, Secrets, is_hidden,
    url_secrets,
};

/// A `Retry-After` header's wait, when it is a number of seconds, capped at `max` so a bad
/// header cannot stall work for hours.
pub fn retry_after(value: Option<&str>, max: Duration) -> Option<Duration> {
    let secs = value?.trim().parse::<u64>().ok()?;
    Some(Duration::from_secs(secs).min(max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_and_caps_them() {
        let max = Duration::from_secs(300);
        assert_eq!(retry_after(Some(" 7 "), max), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(Some("99999999"), max), Some(max));
        assert_eq!(retry_after(Some("soon"), max), None);
        assert_eq!(retry_after(None, max), None);
    }
}
