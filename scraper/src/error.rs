//! The scraper's one error type.

use std::time::Duration;

use nifty_state::{Position, StateError};

/// Everything that can go wrong fetching and committing tokens.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// The endpoint answered with an HTTP error status.
    #[error("HTTP {status} from the subgraph{}: {snippet}", retry_after.map(|d| format!(" (retry after {}s)", d.as_secs())).unwrap_or_default())]
    Http {
        /// The status code.
        status: u16,
        /// The server's Retry-After, when it sent one.
        retry_after: Option<Duration>,
        /// The start of the body, for the operator.
        snippet: String,
    },

    /// The request did not complete: connection refused or reset, timeout. The URL is kept
    /// out of the message because it may carry an API key.
    #[error("request to the subgraph failed: {0}")]
    Transport(#[source] reqwest::Error),

    /// The body was not the JSON we asked for (truncated, malformed, wrong shape).
    #[error("unreadable response from the subgraph: {0}")]
    Decode(String),

    /// The subgraph answered with GraphQL errors that retrying may clear (timeouts,
    /// overload, reorganisations).
    #[error("subgraph error (retryable): {0}")]
    GraphQlRetryable(String),

    /// The subgraph answered with GraphQL errors that retrying will not clear (the query
    /// does not fit its schema, for example).
    #[error("subgraph error: {0}")]
    GraphQl(String),

    /// The page carried `indexing_error`: its data may be partial, so it is never committed.
    #[error("subgraph reported indexing_error for this page; nothing from it was committed")]
    IndexingError,

    /// `_meta.hasIndexingErrors` is true: the subgraph's data cannot be trusted.
    #[error(
        "the subgraph reports indexing errors (_meta.hasIndexingErrors); refusing to scrape it"
    )]
    HasIndexingErrors,

    /// The snapshot block is no longer served (pruned) or not yet served (another indexer
    /// behind a load balancer): the run takes a new snapshot.
    #[error("snapshot block {snapshot} is not available: {message}")]
    SnapshotUnavailable {
        /// The snapshot block asked for.
        snapshot: u64,
        /// The subgraph's words.
        message: String,
    },

    /// Rows came back out of `(blockNumber, id)` order, or outside the requested range.
    /// Committing them could lose tokens, so the run stops.
    #[error("rows out of cursor order after {cursor}: {detail}")]
    OrderViolation {
        /// The cursor the page was asked after.
        cursor: Position,
        /// What was wrong.
        detail: String,
    },

    /// A row could not be turned into a token (bad id, contract or block number).
    #[error("bad row {id:?} after {cursor}: {reason}")]
    BadRow {
        /// The row's subgraph id.
        id: String,
        /// The cursor the page was asked after.
        cursor: Position,
        /// What was wrong.
        reason: String,
    },

    /// An answer was larger than nifty reads. Reading stopped at the bound, and the request
    /// is not retried as if the failure were passing (the same server would send the same
    /// answer); the run fails with this reason and a later run asks again.
    #[error("{upstream} {body}; {hint}")]
    TooLarge {
        /// Who answered: `subgraph` or `node`.
        upstream: &'static str,
        /// The size and the bound ([`nifty_upstream::BodyError`]'s words).
        body: String,
        /// What the operator can do about it.
        hint: &'static str,
    },

    /// Retries ran out for a page or snapshot.
    #[error("gave up after {attempts} attempts at {what}: {last}")]
    GaveUp {
        /// What was being fetched (`page after block 5 (start)`, `snapshot`).
        what: String,
        /// Attempts made.
        attempts: u32,
        /// The last error (in the message already, so not also a `source`: a report of the
        /// chain would say it twice).
        last: Box<ScrapeError>,
    },

    /// A chain node's request failed in a way retrying the same request will not mend, or
    /// (inside [`ScrapeError::GaveUp`]) the last of its retries.
    #[error(transparent)]
    Rpc(#[from] crate::rpc::RpcFault),

    /// The node's hashes differ from every block the chain source remembers: the chain was
    /// reorganised deeper than the source looks, so it cannot tell which tokens to take back.
    #[error(
        "source {source_name}: the node's chain differs from every remembered block back to block \
         {oldest} (a reorg deeper than reorg_depth, or the URL now names another chain). \
         Tokens stored from blocks since the fork may be orphaned. Check the node; to scrape \
         again from before the fork: nifty cursor rewind {source_name} <block> (tokens already \
         stored stay)"
    )]
    ReorgTooDeep {
        /// The source.
        source_name: String,
        /// The oldest block remembered.
        oldest: u64,
    },

    /// The store refused or failed a commit.
    #[error("store: {0}")]
    State(#[from] StateError),

    /// A backfill was asked for something that cannot be done.
    #[error("{0}")]
    Invalid(String),
}

impl ScrapeError {
    /// True when the same request may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            ScrapeError::Http { status, .. } => *status == 408 || *status == 429 || *status >= 500,
            ScrapeError::Transport(_)
            | ScrapeError::Decode(_)
            | ScrapeError::GraphQlRetryable(_)
            | ScrapeError::IndexingError => true,
            ScrapeError::State(e) => e.is_retryable(),
            ScrapeError::Rpc(f) => f.is_retryable(),
            _ => false,
        }
    }

    /// A short machine-readable name, for run records and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ScrapeError::Http { status: 429, .. } => "http_429",
            ScrapeError::Http { status, .. } if *status >= 500 => "http_5xx",
            ScrapeError::Http { .. } => "http_4xx",
            ScrapeError::Transport(e) if e.is_timeout() => "timeout",
            // The server was reached and its answer broke off: not a connection failure.
            ScrapeError::Transport(e) if e.is_body() || e.is_decode() => "body",
            ScrapeError::Transport(_) => "connect",
            ScrapeError::Decode(_) => "decode",
            ScrapeError::TooLarge { .. } => "too_large",
            ScrapeError::GraphQlRetryable(_) => "graphql_retryable",
            ScrapeError::GraphQl(_) => "graphql",
            ScrapeError::IndexingError => "indexing_error",
            ScrapeError::HasIndexingErrors => "has_indexing_errors",
            ScrapeError::SnapshotUnavailable { .. } => "snapshot_unavailable",
            ScrapeError::OrderViolation { .. } => "order_violation",
            ScrapeError::BadRow { .. } => "bad_row",
            ScrapeError::GaveUp { .. } => "gave_up",
            ScrapeError::State(_) => "store",
            ScrapeError::Rpc(f) => match f.kind() {
                "rpc_error" => "rpc_error",
                "decode" => "rpc_decode",
                "too_large" => "too_large",
                "timeout" => "rpc_timeout",
                "connect" => "rpc_connect",
                "http_429" => "rpc_http_429",
                "http_5xx" => "rpc_http_5xx",
                _ => "rpc_http_4xx",
            },
            ScrapeError::ReorgTooDeep { .. } => "reorg_too_deep",
            ScrapeError::Invalid(_) => "invalid",
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = ScrapeError> = std::result::Result<T, E>;
