//! nifty's embedded store.
//!
//! One sled database under the data dir holds every tree of DESIGN.md's data model:
//! `tokens`, `contracts`, `cursors`, `pins`, `outbox`, `runs` and `counters`, plus a schema
//! version. A page from a source commits its tokens, their outbox items, the advanced cursor
//! and the counters in one transaction, so a crash leaves the store before or after the
//! page and never between. Dashboard reads come from `counters` and never scan the tokens.
// A library reports through its return values and tracing, never by printing.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod counters;
mod error;
pub mod keys;
pub mod model;
mod store;

pub use error::{Result, SHOWN_CHARS, StateError, shown};
pub use keys::{Address, OutboxKey, Queue, TokenId, TokenKey};
pub use model::{
    Contract, Cursor, JobSettings, PinRecord, PinStatus, Position, RunOutcome, RunRecord, Token,
    TokenStatus, UnixMillis, WorkItem,
};
pub use store::{
    AnalysisRecord, Audit, Counts, DEFAULT_CACHE_BYTES, DEFAULT_MIN_FREE_BYTES, DISK_BYTES_MAX_AGE,
    FailureEntry, Holder, LOCK_FILE, Page, PageOutcome, PinUpdate, Resource, SCHEMA_VERSION,
    Scrubbed, Store, StoreOptions, TextScrub, Unwound,
};
