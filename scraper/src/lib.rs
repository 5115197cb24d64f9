//! nifty's token sources.
//!
//! The Graph source pages an ERC-721 subgraph by a `(block, id)` cursor over one snapshot
//! per run and commits each page through `nifty_state::Store::commit_page`; `backfill` runs
//! it over block partitions in parallel with work stealing. The chain RPC source arrives
//! with issue 6.

pub mod backfill;
mod error;
pub mod graph;
pub mod metrics;
pub mod paging;
pub mod retry;

pub use error::{Result, ScrapeError};
