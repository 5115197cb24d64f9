//! nifty's pinner: turns stored tokens into pinned content.
//!
//! - [`uri`]: what a token URI points at (pure).
//! - [`metadata`]: what a metadata document references (pure).
//! - [`fetch`]: fetching metadata, with the guard against private addresses.
//! - [`analysis`]: a token's outcome from its URI and metadata.
//! - [`pass`]: the analyse, pin and follow-up passes over the store.
//! - [`backend`]: the IPFS Cluster and Pinning Service API clients.
// A library reports through its return values and tracing, never by printing.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod analysis;
pub mod backend;
pub mod fetch;
pub mod metadata;
pub mod metrics;
pub mod pass;
pub mod uri;
