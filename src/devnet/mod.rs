//! `nifty devnet`: on loopback, over a deterministic generated chain, a simulated ERC-721
//! subgraph, a simulated IPFS Cluster and a simulated IPFS/Arweave/web gateway, with
//! configurable latency and faults. nifty's tests and benchmarks run against it; other
//! tools can point at it too (the subgraph answers introspection).
//!
//! - [`chain`]: the generated chain, a pure function of its parameters.
//! - [`query`]: filters, ordering and paging over the chain's indexes.
//! - [`schema`] and [`filters`]: the subgraph's GraphQL schema.
//! - [`faults`]: the failures a hosted subgraph shows, drawn at configured rates.
//! - [`cluster`]: the IPFS Cluster REST API subset, with pin progress, errors and outages.
//! - [`gateway`] and [`content`]: what each token's metadata URL serves, and the truth a
//!   pinner should conclude ([`Chain::expected`]).
//! - [`live`]: the chain the services share while `/admin/mine` grows it.

pub mod chain;
pub mod cluster;
pub mod content;
pub mod faults;
pub mod filters;
pub mod gateway;
pub mod live;
pub mod query;
pub mod rows;
pub mod schema;
mod server;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use chain::{Chain, ChainParams, MetadataSource, Mined, MintedToken, UriKind, generate};
pub use cluster::{Cluster, ClusterConfig, ClusterStats, Credential, OutageMode, serve_cluster};
pub use content::{Expected, VARIANTS, Variant};
pub use faults::{Fault, FaultConfig, FaultCounts};
pub use gateway::{
    GatewayConfig, GatewayCounts, GatewayStats, serve_gateway, serve_gateway_counted,
};
pub use live::LiveChain;
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
    /// A cluster peer count the simulation cannot hold.
    #[error("--cluster-peers must be between 1 and {max}, but is {value}")]
    Peers {
        /// The value.
        value: usize,
        /// The most allowed.
        max: usize,
    },
    /// A basic-auth pair without its colon.
    #[error("--cluster-basic-auth must be USER:PASS")]
    BasicAuth,
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
    /// Address of the subgraph, admin and health endpoints (port 0 picks a free one; the
    /// URLs printed say which).
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
    /// Address of the simulated IPFS Cluster REST API.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub cluster_listen: SocketAddr,
    /// Simulated cluster peers (each pin's peer_map has one entry per peer).
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub cluster_peers: usize,
    /// How long a new pin stays `pin_queued`.
    #[arg(long, default_value_t = 100, value_name = "MS")]
    pub cluster_queue_ms: u64,
    /// How long a pin then stays `pinning` (jittered per peer).
    #[arg(long, default_value_t = 300, value_name = "MS")]
    pub cluster_pin_ms: u64,
    /// Share of CIDs whose first pin attempt ends in `pin_error` (recover fixes them).
    #[arg(long, default_value_t = 0.02, value_name = "P")]
    pub cluster_error_rate: f64,
    /// Milliseconds added to every cluster request.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub cluster_latency_ms: u64,
    /// Share of cluster requests answered 500, 502 or 503.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub cluster_fault_rate: f64,
    /// Share of `GET /pins` streams cut halfway, with an `X-Stream-Error` header.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub cluster_stream_error_rate: f64,
    /// Share of cluster requests held for --cluster-timeout-hold-ms, then answered 504.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub cluster_timeout_rate: f64,
    /// How long a timed-out cluster request is held.
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    pub cluster_timeout_hold_ms: u64,
    /// Require HTTP basic auth on the cluster API.
    #[arg(long, value_name = "USER:PASS")]
    pub cluster_basic_auth: Option<String>,
    /// Require this bearer token on the cluster API (either credential is accepted).
    #[arg(long, value_name = "TOKEN")]
    pub cluster_bearer: Option<String>,
    /// Address of the simulated IPFS gateway (also `/ar/` and `/web/`).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub gateway_listen: SocketAddr,
    /// Milliseconds added to every gateway answer.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub gateway_latency_ms: u64,
    /// Share of gateway requests answered with a transient 502 or 504.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub gateway_error_rate: f64,
    /// Share of gateway requests held for --gateway-timeout-hold-ms, then answered 504.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub gateway_timeout_rate: f64,
    /// How long a timed-out gateway request is held.
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    pub gateway_timeout_hold_ms: u64,
    /// How long tokens of the `slow` variant hang before answering.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    pub gateway_slow_ms: u64,
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
            cluster_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            cluster_peers: 3,
            cluster_queue_ms: 100,
            cluster_pin_ms: 300,
            cluster_error_rate: 0.02,
            cluster_latency_ms: 0,
            cluster_fault_rate: 0.0,
            cluster_stream_error_rate: 0.0,
            cluster_timeout_rate: 0.0,
            cluster_timeout_hold_ms: 30_000,
            cluster_basic_auth: None,
            cluster_bearer: None,
            gateway_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            gateway_latency_ms: 0,
            gateway_error_rate: 0.0,
            gateway_timeout_rate: 0.0,
            gateway_timeout_hold_ms: 30_000,
            gateway_slow_ms: 10_000,
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
        let other_rates = [
            ("cluster-error-rate", self.cluster_error_rate),
            ("cluster-fault-rate", self.cluster_fault_rate),
            ("cluster-stream-error-rate", self.cluster_stream_error_rate),
            ("cluster-timeout-rate", self.cluster_timeout_rate),
            ("gateway-error-rate", self.gateway_error_rate),
            ("gateway-timeout-rate", self.gateway_timeout_rate),
        ];
        for (flag, value) in other_rates {
            if !(0.0..=1.0).contains(&value) {
                return Err(DevnetError::Rate { flag, value });
            }
        }
        if !(1..=cluster::PEERS_MAX).contains(&self.cluster_peers) {
            return Err(DevnetError::Peers {
                value: self.cluster_peers,
                max: cluster::PEERS_MAX,
            });
        }
        if self
            .cluster_basic_auth
            .as_deref()
            .is_some_and(|pair| !pair.contains(':'))
        {
            return Err(DevnetError::BasicAuth);
        }
        Ok(DevnetConfig {
            chain: ChainParams {
                tokens: self.tokens,
                seed: self.seed,
                head_tail: self.head_tail,
                web_base: None,
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
            cluster: ClusterConfig {
                peers: self.cluster_peers,
                queue: Duration::from_millis(self.cluster_queue_ms),
                pin: Duration::from_millis(self.cluster_pin_ms),
                error_rate: self.cluster_error_rate,
                fault_rate: self.cluster_fault_rate,
                stream_error_rate: self.cluster_stream_error_rate,
                timeout_rate: self.cluster_timeout_rate,
                timeout_hold: Duration::from_millis(self.cluster_timeout_hold_ms),
                latency: Duration::from_millis(self.cluster_latency_ms),
                basic_auth: self.cluster_basic_auth.clone().map(Credential::new),
                bearer: self.cluster_bearer.clone().map(Credential::new),
                seed: self.fault_seed,
            },
            gateway: GatewayConfig {
                latency: Duration::from_millis(self.gateway_latency_ms),
                error_rate: self.gateway_error_rate,
                timeout_rate: self.gateway_timeout_rate,
                timeout_hold: Duration::from_millis(self.gateway_timeout_hold_ms),
                slow: Duration::from_millis(self.gateway_slow_ms),
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
    /// Latency and fault rates of the subgraph.
    pub faults: FaultConfig,
    /// The simulated cluster.
    pub cluster: ClusterConfig,
    /// The simulated gateway.
    pub gateway: GatewayConfig,
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

/// Generates the chain of `config` and serves its subgraph (without cluster or gateway) on
/// `listener` until `shutdown` resolves. The caller binds the listener (tests bind
/// `127.0.0.1:0`).
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

/// Serves the subgraph of an already generated (perhaps mined) `chain`; `config.chain`
/// names its seed.
pub async fn serve_chain(
    listener: TcpListener,
    chain: Chain,
    config: DevnetConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let live = Arc::new(LiveChain::new(chain));
    server::serve_main(listener, live, None, None, &config, shutdown)
        .await
        .context("serving the devnet")
}

/// The three listeners of a whole devnet.
#[derive(Debug)]
pub struct Listeners {
    /// Subgraph, admin and health.
    pub main: TcpListener,
    /// The cluster REST API.
    pub cluster: TcpListener,
    /// The gateway (`/ipfs/`, `/ar/`, `/web/`).
    pub gateway: TcpListener,
}

/// Where a whole devnet listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DevnetAddrs {
    /// Subgraph, admin and health.
    pub main: SocketAddr,
    /// The cluster REST API.
    pub cluster: SocketAddr,
    /// The gateway.
    pub gateway: SocketAddr,
}

impl Listeners {
    /// Binds all three.
    pub async fn bind(
        main: SocketAddr,
        cluster: SocketAddr,
        gateway: SocketAddr,
    ) -> anyhow::Result<Self> {
        let bind = |addr: SocketAddr, what: &'static str| async move {
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the devnet {what} to {addr}"))
        };
        Ok(Listeners {
            main: bind(main, "subgraph").await?,
            cluster: bind(cluster, "cluster").await?,
            gateway: bind(gateway, "gateway").await?,
        })
    }

    /// Their addresses (unspecified hosts shown as 127.0.0.1).
    pub fn addrs(&self) -> anyhow::Result<DevnetAddrs> {
        let addr = |l: &TcpListener| {
            l.local_addr()
                .map(loopback_if_unspecified)
                .context("reading the devnet's address")
        };
        Ok(DevnetAddrs {
            main: addr(&self.main)?,
            cluster: addr(&self.cluster)?,
            gateway: addr(&self.gateway)?,
        })
    }
}

/// The web base a devnet whose gateway listens on `gateway` gives its chain.
pub fn web_base(gateway: SocketAddr) -> String {
    format!("http://{}/web", loopback_if_unspecified(gateway))
}

/// Serves a whole devnet over `live` (a chain generated with `config.chain`, whose
/// `web_base` should be [`web_base`] of the gateway listener) until `shutdown` resolves or
/// one of the services fails. The gateway builds the content index first unless
/// [`LiveChain::ensure_index`] already has.
pub async fn serve_all(
    listeners: Listeners,
    live: Arc<LiveChain>,
    config: DevnetConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let cluster = Arc::new(Cluster::new(config.cluster.clone()));
    let gateway_stats = Arc::new(GatewayStats::default());
    let main = async {
        server::serve_main(
            listeners.main,
            Arc::clone(&live),
            Some(Arc::clone(&cluster)),
            Some(Arc::clone(&gateway_stats)),
            &config,
            stopped(stop_rx.clone()),
        )
        .await
        .context("serving the devnet subgraph")
    };
    let cluster_server = async {
        serve_cluster(
            listeners.cluster,
            Arc::clone(&cluster),
            stopped(stop_rx.clone()),
        )
        .await
        .context("serving the devnet cluster")
    };
    let gateway = async {
        serve_gateway_counted(
            listeners.gateway,
            Arc::clone(&live),
            config.gateway.clone(),
            Arc::clone(&gateway_stats),
            stopped(stop_rx.clone()),
        )
        .await
        .context("serving the devnet gateway")
    };
    tokio::try_join!(main, cluster_server, gateway)?;
    Ok(())
}

/// The line `nifty devnet` prints when it is ready: where each service listens, and the
/// chain parameters (so a test can generate the same chain in-process).
pub fn ready_line(addrs: DevnetAddrs, chain: &ChainParams) -> String {
    let main = loopback_if_unspecified(addrs.main);
    let cluster = loopback_if_unspecified(addrs.cluster);
    let gateway = loopback_if_unspecified(addrs.gateway);
    let s = |v: String| serde_json::Value::from(v);
    let subgraph = s(format!("http://{main}{SUBGRAPH_PATH}"));
    let admin = s(format!("http://{main}{ADMIN_PATH}"));
    let cluster = s(format!("http://{cluster}"));
    let arweave = s(format!("http://{gateway}/ar"));
    let web = s(web_base(gateway));
    let gateway = s(format!("http://{gateway}"));
    let params = serde_json::json!({
        "tokens": chain.tokens,
        "seed": chain.seed,
        "head_tail": chain.head_tail,
        "web_base": chain.web_base,
    });
    format!(
        r#"{{"subgraph": {subgraph}, "admin": {admin}, "cluster": {cluster}, "gateway": {gateway}, "arweave": {arweave}, "web": {web}, "chain": {params}}}"#
    )
}

/// `addr`, with an unspecified IP (0.0.0.0, ::) replaced by 127.0.0.1, for URLs.
pub(crate) fn loopback_if_unspecified(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

/// Generates the chain of `params` and its content index off the async threads, so the
/// gateway answers as soon as the devnet says it is ready.
pub async fn live_chain(params: ChainParams) -> anyhow::Result<LiveChain> {
    tokio::task::spawn_blocking(move || {
        let live = LiveChain::new(generate(&params));
        live.ensure_index();
        live
    })
    .await
    .context("generating the devnet chain")
}

/// `nifty devnet`: binds its three listeners, generates the chain (whose web URIs name the
/// gateway), prints [`ready_line`] to stdout, and serves until ctrl-c or SIGTERM.
pub async fn run_devnet(args: DevnetArgs) -> anyhow::Result<()> {
    let mut config = args.config()?;
    let listeners = Listeners::bind(args.listen, args.cluster_listen, args.gateway_listen).await?;
    let addrs = listeners.addrs()?;
    config.chain.web_base = Some(web_base(addrs.gateway));
    let started = std::time::Instant::now();
    let live = live_chain(config.chain.clone()).await?;
    let chain = live.chain();
    tracing::info!(
        tokens = chain.tokens().len(),
        head = chain.head(),
        seed = config.chain.seed,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "devnet chain generated"
    );
    drop(chain);
    // Like the daemon, a devnet whose stdout went away keeps serving; the log has its URLs.
    let ready = ready_line(addrs, &config.chain);
    let shown = crate::output::outln!("{ready}").and_then(|()| crate::output::flush());
    if let Err(e) = shown {
        tracing::warn!(error = %e, %ready, "could not print the devnet's URLs; serving all the same");
    }
    serve_all(listeners, Arc::new(live), config, stop_signal()).await
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
mod service_tests;
#[cfg(test)]
mod tests;
