//! The Graph source.

pub mod client;
pub mod lane;
mod queries;
pub mod rows;

pub use crate::lane::{Ctx, Lane, Progress, Stop, run_lane, scrape_source};
pub use client::{GraphClient, GraphClientConfig, Snapshot};
