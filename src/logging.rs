//! tracing setup: human lines or JSON, to stderr, level from RUST_LOG.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber at level `info` unless RUST_LOG says otherwise.
pub fn init(format: LogFormat) {
    init_at(format, "info")
}

/// Installs the global subscriber at `default` unless RUST_LOG says otherwise. A bad
/// RUST_LOG falls back to `default` with a warning rather than failing the command.
pub fn init_at(format: LogFormat, default: &str) {
    let (filter, bad) = match EnvFilter::try_from_default_env() {
        Ok(f) => (f, None),
        Err(e) => (
            EnvFilter::new(default),
            std::env::var("RUST_LOG").ok().map(|v| (v, e)),
        ),
    };
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // By default a line that cannot be written is reported with `eprintln!`, which
        // panics on the same stderr: a closed or full stderr must lose log lines, not the
        // process.
        .log_internal_errors(false)
        .with_ansi(ansi);
    // try_init: a second init (tests) keeps the first subscriber instead of panicking.
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if let Some((value, e)) = bad
        && !value.is_empty()
    {
        tracing::warn!(rust_log = %value, error = %e, "RUST_LOG not understood; logging at info");
    }
}
