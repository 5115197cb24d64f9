//! The chain RPC source: mints read from any EVM JSON-RPC node.
//!
//! A mint is a `Transfer(from = 0, to, tokenId)` log with exactly 4 topics (ERC-20
//! transfers have 3). A lane asks `eth_getLogs` over adaptive block ranges (shrunk when a
//! provider refuses a range as too large, grown back after successes, never skipping a
//! block), looks up each new token's `tokenURI` and each new contract's `name`, `symbol`
//! and `supportsInterface(0x5b5e139f)` with batched `eth_call`s, and commits the range's
//! tokens with the cursor at the start of the block after it. A source's own cursor also
//! remembers its recent block hashes; each run first compares them with the node's and
//! takes back the tokens of orphaned blocks ([`reorg`]).

pub mod abi;
pub mod client;
pub mod lane;
pub mod range;
pub mod reorg;
pub mod transport;

pub use client::{ChainClient, ChainClientConfig, redact_rpc_url};
pub use transport::{DEFAULT_MAX_BODY_MB, RpcFault};

/// Multicall3's address on nearly every EVM chain.
pub const MULTICALL3: &str = "0xcA11bde05977b3631167028862bE2a173976CA11";
