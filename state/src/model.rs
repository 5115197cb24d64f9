//! The records stored in each tree, and their versioned encoding.
//!
//! A stored value is one format byte followed by the record in postcard's compact serde
//! encoding. The format byte lets a later build read older records and refuse newer ones
//! instead of misreading them.

use std::fmt;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::error::StateError;
use crate::keys::{Address, TokenKey, hex};

/// The only record format this build writes.
pub const FORMAT_V1: u8 = 1;

/// Encodes a record with its format byte.
pub(crate) fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, StateError> {
    postcard::to_extend(value, vec![FORMAT_V1]).map_err(|e| StateError::Encode {
        what,
        reason: e.to_string(),
    })
}

/// Decodes a record, naming the tree and key when it cannot.
pub(crate) fn decode<T: DeserializeOwned>(
    tree: &'static str,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, StateError> {
    let corrupt = |reason: String| StateError::Corrupt {
        tree,
        key: hex(key),
        reason,
    };
    match bytes.split_first() {
        Some((&FORMAT_V1, rest)) => postcard::from_bytes(rest).map_err(|e| corrupt(e.to_string())),
        Some((other, _)) => Err(corrupt(format!("unknown record format {other}"))),
        None => Err(corrupt("empty record".to_owned())),
    }
}

/// Milliseconds since the Unix epoch. Callers pass the time in, so tests control it.
pub type UnixMillis = u64;

/// A place in a source's `(block, id)` order: every token at or before it is committed.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize, Deserialize, Default)]
pub struct Position {
    /// Block number.
    pub block: u64,
    /// The last committed id within `block`, compared as bytes; empty means none of
    /// `block`'s tokens yet.
    pub id: String,
}

impl Position {
    /// The position before every token of `block`.
    pub fn start_of(block: u64) -> Self {
        Position {
            block,
            id: String::new(),
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.id.is_empty() {
            write!(f, "block {} (start)", self.block)
        } else {
            write!(f, "block {} after {}", self.block, self.id)
        }
    }
}

/// The `cursors` tree's record: how far a source (or a backfill partition) has committed.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, Default)]
pub struct Cursor {
    /// Everything at or before this position is committed.
    pub position: Position,
    /// The snapshot block the last run paged (head minus confirmations), if any.
    pub snapshot: Option<u64>,
    /// The source's head block when last seen.
    pub head: Option<u64>,
    /// Inclusive upper block bound, for backfill partitions; `None` follows the head.
    pub end: Option<u64>,
    /// When the cursor last moved.
    pub updated_ms: UnixMillis,
}

impl Cursor {
    /// Blocks between the cursor and the last seen head.
    pub fn lag(&self) -> Option<u64> {
        self.head.map(|h| h.saturating_sub(self.position.block))
    }

    /// Blocks the cursor stands beyond the last seen head: `None` unless it claims blocks
    /// the source has not produced (the start of `head + 1` is exactly caught up).
    pub fn ahead(&self) -> Option<u64> {
        self.head
            .map(|h| self.position.block.saturating_sub(h.saturating_add(1)))
            .filter(|a| *a > 0)
    }
}

/// What a backfill job was started with, kept in the `jobs` tree beside its cursors so
/// that `--resume` needs none of the flags again. Never a secret: `url` is the URL as shown
/// (the parts that may carry a key redacted) and no API key is kept.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, Default)]
pub struct JobSettings {
    /// The source name recorded on tokens.
    pub source: String,
    /// `graph` or `rpc`.
    pub kind: String,
    /// The endpoint, its secrets redacted.
    pub url: String,
    /// Whether redacting changed `url`: then it cannot be used as it is kept, and the
    /// configured source (or a flag) must give the URL again.
    pub url_redacted: bool,
    /// Tokens per request (graph) or blocks of the first log query (rpc).
    pub page_size: u32,
    /// rpc: calls per batch.
    pub batch_size: u32,
    /// Blocks behind the head treated as final.
    pub confirmations: u64,
    /// Milliseconds one request may take.
    pub timeout_ms: u64,
}

/// Where a token is in its journey from scraped to pinned.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub enum TokenStatus {
    /// Scraped, waiting for analysis.
    Queued,
    /// The token URI could not be understood.
    UriParseFailed,
    /// The token has no URI (empty, or `tokenURI` reverted).
    NoUri,
    /// The metadata could not be fetched.
    ContentFetchFailed,
    /// The metadata was fetched but is not usable.
    ContentParseFailed,
    /// Analysed; its resources are known and their pins are in flight.
    Parsed,
    /// Every resource of the token is pinned.
    Linked,
}

impl TokenStatus {
    /// Every status, in pipeline order.
    pub const ALL: [TokenStatus; 7] = [
        TokenStatus::Queued,
        TokenStatus::UriParseFailed,
        TokenStatus::NoUri,
        TokenStatus::ContentFetchFailed,
        TokenStatus::ContentParseFailed,
        TokenStatus::Parsed,
        TokenStatus::Linked,
    ];

    /// The snake_case name used in counters, JSON and metrics.
    pub fn name(self) -> &'static str {
        match self {
            TokenStatus::Queued => "queued",
            TokenStatus::UriParseFailed => "uri_parse_failed",
            TokenStatus::NoUri => "no_uri",
            TokenStatus::ContentFetchFailed => "content_fetch_failed",
            TokenStatus::ContentParseFailed => "content_parse_failed",
            TokenStatus::Parsed => "parsed",
            TokenStatus::Linked => "linked",
        }
    }

    /// The failure stage this status counts under, for statuses that are failures.
    pub fn failure_stage(self) -> Option<&'static str> {
        match self {
            TokenStatus::UriParseFailed => Some("uri"),
            TokenStatus::NoUri => Some("no_uri"),
            TokenStatus::ContentFetchFailed => Some("fetch"),
            TokenStatus::ContentParseFailed => Some("parse"),
            _ => None,
        }
    }
}

/// The `tokens` tree's record.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Token {
    /// Name of the source that first found the token.
    pub source: String,
    /// The subgraph's id, `<contract>_<tokenId>`, whichever source found it.
    pub graph_id: String,
    /// The token URI as the chain returned it; `None` when there was none.
    pub token_uri: Option<String>,
    /// The block the token was minted in.
    pub mint_block: u64,
    /// The mint block's timestamp, seconds since the epoch.
    pub mint_time: u64,
    /// The mint block's hash, when the source reports it (reorg checks need it).
    pub block_hash: Option<[u8; 32]>,
    /// The owner when scraped.
    pub owner: Option<Address>,
    /// Analysis status.
    pub status: TokenStatus,
    /// Machine-readable reason for a failure status (`http_404`, `reverted`, ...).
    pub reason: Option<String>,
    /// Root CIDs (binary form) of the content this token points to.
    pub resources: Vec<Vec<u8>>,
}

impl Token {
    /// A freshly scraped token, queued for analysis.
    pub fn scraped(
        source: &str,
        key: &TokenKey,
        token_uri: Option<String>,
        mint_block: u64,
    ) -> Self {
        Token {
            source: source.to_owned(),
            graph_id: key.graph_id(),
            token_uri,
            mint_block,
            mint_time: 0,
            block_hash: None,
            owner: None,
            status: TokenStatus::Queued,
            reason: None,
            resources: vec![],
        }
    }
}

/// The `contracts` tree's record.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, Default)]
pub struct Contract {
    /// `name()`, when the contract has one.
    pub name: Option<String>,
    /// `symbol()`, when the contract has one.
    pub symbol: Option<String>,
    /// Whether it reports the ERC-721 metadata interface (0x5b5e139f).
    pub supports_metadata: bool,
}

/// Where a CID's pin stands.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub enum PinStatus {
    /// Known and wanted, not yet sent to the pinning backend.
    Wanted,
    /// Accepted by the backend, waiting its turn.
    Queued,
    /// The backend is fetching it.
    Pinning,
    /// Pinned.
    Pinned,
    /// The last attempt failed; it will be retried.
    Retrying,
    /// Gave up after the retry limit; the reason is kept.
    Failed,
}

impl PinStatus {
    /// Every status.
    pub const ALL: [PinStatus; 6] = [
        PinStatus::Wanted,
        PinStatus::Queued,
        PinStatus::Pinning,
        PinStatus::Pinned,
        PinStatus::Retrying,
        PinStatus::Failed,
    ];

    /// The snake_case name used in counters, JSON and metrics.
    pub fn name(self) -> &'static str {
        match self {
            PinStatus::Wanted => "wanted",
            PinStatus::Queued => "queued",
            PinStatus::Pinning => "pinning",
            PinStatus::Pinned => "pinned",
            PinStatus::Retrying => "retrying",
            PinStatus::Failed => "failed",
        }
    }
}

/// The `pins` tree's record: one per CID, however many tokens use it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct PinRecord {
    /// Where the pin stands.
    pub status: PinStatus,
    /// How many tokens reference the CID.
    pub refs: u64,
    /// Size in bytes, once the backend reports it.
    pub size: Option<u64>,
    /// Pin requests made so far.
    pub attempts: u32,
    /// The last error, machine-readable first word then detail.
    pub last_error: Option<String>,
    /// The token and role that first asked for the CID (pin name and `meta-*` tags).
    pub first_use: Option<(TokenKey, String)>,
    /// When a `Retrying` pin is next tried.
    pub retry_at_ms: Option<UnixMillis>,
    /// When the record was created.
    pub created_ms: UnixMillis,
    /// When the record last changed.
    pub updated_ms: UnixMillis,
}

impl PinRecord {
    /// The machine-readable reason of the last error: its first word (`http_503`,
    /// `pin_error`), or `unspecified`.
    pub fn reason(&self) -> &str {
        self.last_error
            .as_deref()
            .and_then(|e| e.split([':', ' ']).next())
            .filter(|w| !w.is_empty())
            .unwrap_or("unspecified")
    }
}

impl PinStatus {
    /// Whether the follow-up pass still has to look at a pin in this status.
    pub fn is_pending(self) -> bool {
        matches!(
            self,
            PinStatus::Queued | PinStatus::Pinning | PinStatus::Retrying
        )
    }
}

/// An `outbox` item: work to do after a commit, at least once, idempotently.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub enum WorkItem {
    /// Analyse these tokens' URIs and metadata: the new tokens of one page. One item per
    /// page keeps a page commit to one outbox write; a handler that stops halfway repeats
    /// the item and skips the tokens it already moved past `Queued`.
    Analyse(Vec<TokenKey>),
    /// Pin a CID (binary form).
    Pin(Vec<u8>),
}

/// How a job run ended.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum RunOutcome {
    /// Still going (or the process died before recording an end).
    Running,
    /// Reached the end of its work.
    Completed,
    /// Stopped at its time budget after a commit; the next run continues.
    BudgetSpent,
    /// Stopped by an error.
    Failed {
        /// Why.
        reason: String,
    },
    /// Not started because the previous run of the job was still going.
    Skipped,
    /// Stopped by a shutdown request after a commit.
    Interrupted,
}

impl RunOutcome {
    /// The snake_case name used in JSON and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            RunOutcome::Running => "running",
            RunOutcome::Completed => "completed",
            RunOutcome::BudgetSpent => "budget_spent",
            RunOutcome::Failed { .. } => "failed",
            RunOutcome::Skipped => "skipped",
            RunOutcome::Interrupted => "interrupted",
        }
    }
}

/// The `runs` tree's record: one run of a job.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    /// The job's name (`scrape/mainnet`, `pin`, `backfill/<job>`...).
    pub job: String,
    /// When it started.
    pub started_ms: UnixMillis,
    /// When it ended; `None` while running.
    pub ended_ms: Option<UnixMillis>,
    /// How it ended.
    pub outcome: RunOutcome,
    /// Pages committed.
    pub pages: u64,
    /// Items (tokens, pins) handled.
    pub items: u64,
    /// Errors met and retried or recorded.
    pub errors: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_carry_a_format_byte_and_refuse_unknown_formats() {
        let rec = Cursor {
            position: Position {
                block: 7,
                id: "a".into(),
            },
            ..Default::default()
        };
        let bytes = encode("cursor", &rec).unwrap();
        assert_eq!(bytes[0], FORMAT_V1);
        assert_eq!(decode::<Cursor>("cursors", b"k", &bytes).unwrap(), rec);

        let mut future = bytes.clone();
        future[0] = 2;
        let err = decode::<Cursor>("cursors", b"k", &future)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown record format 2"), "{err}");
        assert!(decode::<Cursor>("cursors", b"k", &[]).is_err());
        assert!(decode::<Cursor>("cursors", b"k", &bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn positions_order_by_block_then_id_bytes() {
        let p = |b, i: &str| Position {
            block: b,
            id: i.to_owned(),
        };
        // Ids compare as bytes, as graph-node orders string ids: token 10 sorts before 9.
        let ordered = [
            p(1, ""),
            p(1, "0x01_10"),
            p(1, "0x01_9"),
            p(1, "0x02_0"),
            p(2, ""),
            p(2, "0x00_1"),
        ];
        for w in ordered.windows(2) {
            assert!(w[0] < w[1], "{} < {}", w[0], w[1]);
        }
    }
}
