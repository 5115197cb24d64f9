//! The Graph source.

pub mod client;
pub mod lane;
mod queries;
pub mod rows;

pub use client::{GraphClient, GraphClientConfig, Snapshot};
pub use lane::{Ctx, Lane, Progress, Stop, run_lane, scrape_source};
