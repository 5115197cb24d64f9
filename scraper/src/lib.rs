//! nifty's token sources.
//!
//! The Graph source pages an ERC-721 subgraph by a `(block, id)` cursor over one snapshot
//! per run and commits each page through `nifty_state::Store::commit_page`; `backfill` runs
//! it over block partitions in parallel with work stealing. The chain RPC source (`rpc`)
//! reads mints from a node's `Transfer` logs over adaptive block ranges, with the same
//! lanes, cursors and backfill.
// A library reports through its return values and tracing, never by printing.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod backfill;
mod error;
pub mod graph;
mod http;
pub mod lane;
pub mod metrics;
pub mod paging;
pub mod retry;
pub mod rpc;

pub use error::{Result, ScrapeError};
pub use graph::client::ClientStats;
pub use lane::{Client, Ctx, Progress, Snapshot, Stop};
