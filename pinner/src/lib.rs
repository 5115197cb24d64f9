//! nifty's pinner: URI analysis, metadata fetch, pin tracking and the IPFS Cluster and
//! Pinning Service clients. Its code arrives with issue 4; the store already keeps the pin
//! records and outbox it works from (`nifty_state::Store::record_analysis`).
