//! nifty's pinner: turns stored tokens into pinned content.
//!
//! - [`uri`]: what a token URI points at (pure).
//! - [`metadata`]: what a metadata document references (pure).
//! - [`backend`]: the IPFS Cluster and Pinning Service API clients.

pub mod backend;
pub mod metadata;
pub mod uri;
