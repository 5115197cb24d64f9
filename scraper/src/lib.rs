//! nifty's token sources.
//!
//! The Graph source pages an ERC-721 subgraph by a `(block, id)` cursor over one snapshot
//! per run; the chain RPC source reads mint `Transfer` logs with ethers. Both commit pages
//! through `nifty_state::Store::commit_page`. Their code arrives with issues 3 and 6.
