//! `nifty devnet`: a simulated ERC-721 subgraph on loopback, over a deterministic generated
//! chain, with configurable latency and faults. nifty's tests and benchmarks page against
//! it; other tools can point at it too (it answers introspection).
//!
//! - [`chain`]: the generated chain, a pure function of its parameters.
//! - [`query`]: filters, ordering and paging over the chain's indexes.
//! - [`schema`] and [`filters`]: the subgraph's GraphQL schema.
//! - [`faults`]: the failures a hosted subgraph shows, drawn at configured rates.

pub mod chain;
pub mod faults;
pub mod filters;
pub mod query;
pub mod rows;
pub mod schema;
mod server;

use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;

pub use chain::{Chain, ChainParams, Mined, MintedToken, UriKind, generate};
pub use faults::{Fault, FaultConfig};
pub use server::with_indexing_error;

/// Path of the subgraph's GraphQL endpoint, as on a graph-node.
pub const SUBGRAPH_PATH: &str = "/subgraphs/name/nifty/erc721";
/// Prefix of the admin endpoints.
pub const ADMIN_PATH: &str = "/admin";
/// Prefix of every deployment id, so errors and `_meta` show it is the devnet.
pub const DEPLOYMENT_PREFIX: &str = "QmDevnet";

/// A devnet configuration that cannot run.
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    /// A fault rate outside [0, 1].
    #[error("--{flag} must be between 0 and 1, but is {value}")]
    Rate {
        /// The flag.
        flag: &'static str,
        /// Its value.
        value: f64,
    },
    /// Fault rates that add up to more than every request.
    #[error("the fault rates add up to {sum}, more than 1")]
    RatesOverOne {
        /// Their sum.
        sum: f64,
    },
}

/// `nifty devnet`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct DevnetArgs {
    /// Tokens to mint in the generated chain.
    #[arg(long, default_value_t = 10_000)]
    pub tokens: usize,
    /// Seed of the generated chain.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Address to listen on (port 0 picks a free one; the URLs printed say which).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Empty blocks between the last mint and the head.
    #[arg(long, default_value_t = 30)]
    pub head_tail: u64,
    /// Answer queries at blocks below this with graph-node's "pruned" error.
    #[arg(long, default_value_t = 0, value_name = "BLOCK")]
    pub prune_before: u64,
    /// Report indexing errors in `_meta` (and refuse `subgraphError: deny` queries).
    #[arg(long)]
    pub indexing_errors: bool,
    /// Milliseconds added to every GraphQL response.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub latency_ms: u64,
    /// Share of GraphQL requests answered HTTP 500, 502 or 503.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub error_rate: f64,
    /// Share of GraphQL requests answered 429 with `Retry-After: 1`.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub rate_limit_rate: f64,
    /// Share of GraphQL requests held unanswered for --timeout-hold-ms.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub timeout_rate: f64,
    /// How long a timed-out request is held before a 504.
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    pub timeout_hold_ms: u64,
    /// Share of GraphQL requests answered with half the JSON body.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub truncate_rate: f64,
    /// Share of GraphQL requests answered 200 with a body that is not JSON.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub malformed_rate: f64,
    /// Share of GraphQL requests answered with a transient GraphQL error.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub graphql_error_rate: f64,
    /// Share of GraphQL requests answered with partial data and `indexing_error`.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub indexing_error_rate: f64,
    /// Seed of the fault draws.
    #[arg(long, default_value_t = 0)]
    pub fault_seed: u64,
}

impl Default for DevnetArgs {
    fn default() -> Self {
        DevnetArgs {
            tokens: 10_000,
            seed: 1,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            head_tail: 30,
            prune_before: 0,
            indexing_errors: false,
            latency_ms: 0,
            error_rate: 0.0,
            rate_limit_rate: 0.0,
            timeout_rate: 0.0,
            timeout_hold_ms: 30_000,
            truncate_rate: 0.0,
            malformed_rate: 0.0,
            graphql_error_rate: 0.0,
            indexing_error_rate: 0.0,
            fault_seed: 0,
        }
    }
}

impl DevnetArgs {
    /// The typed configuration these flags describe.
    pub fn config(&self) -> Result<DevnetConfig, DevnetError> {
        let rates = [
            ("error-rate", self.error_rate),
            ("rate-limit-rate", self.rate_limit_rate),
            ("timeout-rate", self.timeout_rate),
            ("truncate-rate", self.truncate_rate),
            ("malformed-rate", self.malformed_rate),
            ("graphql-error-rate", self.graphql_error_rate),
            ("indexing-error-rate", self.indexing_error_rate),
        ];
        for (flag, value) in rates {
            if !(0.0..=1.0).contains(&value) {
                return Err(DevnetError::Rate { flag, value });
            }
        }
        let sum: f64 = rates.iter().map(|(_, v)| v).sum();
        if sum > 1.0 + 1e-9 {
            return Err(DevnetError::RatesOverOne { sum });
        }
        Ok(DevnetConfig {
            chain: ChainParams {
                tokens: self.tokens,
                seed: self.seed,
                head_tail: self.head_tail,
            },
            prune_before: self.prune_before,
            indexing_errors: self.indexing_errors,
            faults: FaultConfig {
                latency: Duration::from_millis(self.latency_ms),
                error_rate: self.error_rate,
                rate_limit_rate: self.rate_limit_rate,
                timeout_rate: self.timeout_rate,
                timeout_hold: Duration::from_millis(self.timeout_hold_ms),
                truncate_rate: self.truncate_rate,
                malformed_rate: self.malformed_rate,
                graphql_error_rate: self.graphql_error_rate,
                indexing_error_rate: self.indexing_error_rate,
                seed: self.fault_seed,
            },
        })
    }
}

/// What the devnet serves and how it misbehaves.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DevnetConfig {
    /// The chain to generate.
    pub chain: ChainParams,
    /// Blocks below this are pruned.
    pub prune_before: u64,
    /// Whether the subgraph reports indexing errors.
    pub indexing_errors: bool,
    /// Latency and fault rates.
    pub faults: FaultConfig,
}

/// The deployment id of the devnet subgraph for a chain seed: `QmDevnet` and base58
/// characters, 46 in all like a real one.
pub fn deployment_id(seed: u64) -> String {
    const BASE58: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    let mut id = String::from(DEPLOYMENT_PREFIX);
    let mut state = seed;
    while id.len() < 46 {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        id.push(char::from(BASE58[(state >> 33) as usize % BASE58.len()]));
    }
    id
}

/// Generates the chain of `config` and serves it on `listener` until `shutdown` resolves.
/// The caller binds the listener (tests bind `127.0.0.1:0`).
pub async fn serve(
    listener: TcpListener,
    config: DevnetConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let params = config.chain.clone();
    let chain = tokio::task::spawn_blocking(move || generate(&params))
        .await
        .context("generating the devnet chain")?;
    serve_chain(listener, chain, config, shutdown).await
}

/// Serves an already generated (perhaps mined) `chain`; `config.chain` names its seed.
pub async fn serve_chain(
    listener: TcpListener,
    chain: Chain,
    config: DevnetConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    server::serve_chain(listener, chain, config, shutdown)
        .await
        .context("serving the devnet")
}

/// The line `nifty devnet` prints when it is ready: where each service listens.
pub fn ready_line(addr: SocketAddr) -> String {
    let host = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let subgraph = serde_json::Value::from(format!("http://{host}{SUBGRAPH_PATH}"));
    let admin = serde_json::Value::from(format!("http://{host}{ADMIN_PATH}"));
    format!(r#"{{"subgraph": {subgraph}, "admin": {admin}, "cluster": null, "gateway": null}}"#)
}

/// `nifty devnet`: generates the chain, binds, prints [`ready_line`] to stdout, and serves
/// until ctrl-c or SIGTERM.
pub async fn run_devnet(args: DevnetArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let params = config.chain.clone();
    let started = std::time::Instant::now();
    let chain = tokio::task::spawn_blocking(move || generate(&params))
        .await
        .context("generating the devnet chain")?;
    tracing::info!(
        tokens = chain.tokens().len(),
        head = chain.head(),
        seed = config.chain.seed,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "devnet chain generated"
    );
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding the devnet to {}", args.listen))?;
    let addr = listener
        .local_addr()
        .context("reading the devnet's address")?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", ready_line(addr)).context("printing the devnet's URLs")?;
        out.flush().context("printing the devnet's URLs")?;
    }
    serve_chain(listener, chain, config, stop_signal()).await
}

/// Resolves at ctrl-c or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests;
