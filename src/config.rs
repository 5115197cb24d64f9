//! `nifty.toml`: typed configuration with documented defaults, an environment override for
//! every key, secrets read from environment variables the file names, and validation that
//! names the bad key and value.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use nifty_scraper::graph::client::redact_url;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// The file read when no `--config` is given and it exists in the working directory.
pub const DEFAULT_CONFIG_FILE: &str = "nifty.toml";

/// Prefix of every environment override: `NIFTY_` + the key path in upper case, with `.`
/// and `-` turned into `_` (`data_dir` → `NIFTY_DATA_DIR`, `sources.main.url` →
/// `NIFTY_SOURCES_MAIN_URL`).
pub const ENV_PREFIX: &str = "NIFTY_";

/// graph-node refuses `first` above 1000.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// The widest log query an rpc source may grow to.
pub const MAX_SPAN: u64 = 1_000_000;

/// The largest free-space reserve: 1 TiB. More is a typo (bytes for MiB) that would stop
/// every write.
pub const MAX_MIN_FREE_MB: u64 = 1024 * 1024;

/// A confirmation depth beyond this is almost surely a typo that would stall scraping.
pub const MAX_CONFIRMATIONS: u64 = 10_000;

/// The least `sources.<name>.max_row_bytes`: a row with a short URI is about 600 bytes.
pub const MIN_ROW_BYTES: u64 = 1024;

/// The most `sources.<name>.max_row_bytes`: 16 MiB a row, far past any real token.
pub const MAX_ROW_BYTES: u64 = 16 * 1024 * 1024;

/// The most `sources.<name>.max_body_mb`: a GiB is more than any node sends in one answer
/// and already a lot to hold per request.
pub const MAX_BODY_MB: u64 = 1024;

/// A configuration problem: which key, which value, what is wrong. Exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not fit the schema (unknown key, wrong type).
    #[error("config file {path}: key `{key}`: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The key path, dotted.
        key: String,
        /// The parser's explanation, with line and column when it has them.
        message: String,
    },
    /// An environment override does not fit its key.
    #[error("environment variable {var} (key `{key}`): {message}")]
    Env {
        /// The variable.
        var: String,
        /// The key it overrides.
        key: String,
        /// Why it does not fit.
        message: String,
    },
    /// A `NIFTY_` environment variable that names no key (a typo, or a source with no
    /// table): ignoring it would leave the operator believing it took effect.
    #[error(
        "environment variable {var} names no config key{why}; the closest is {closest} (key \
         `{closest_key}`). Keys are NIFTY_ + the key path in upper case with '.' and '-' as '_'"
    )]
    UnknownEnv {
        /// The variable.
        var: String,
        /// More on why, when known (a source without a table).
        why: String,
        /// The closest variable that is a key.
        closest: String,
        /// Its key.
        closest_key: String,
    },
    /// A value has the right type but is not acceptable.
    #[error("config key `{key}` = {value}: {problem}")]
    Invalid {
        /// The key path, dotted.
        key: String,
        /// The value as written (never a secret: secrets are not config values).
        value: String,
        /// What is wrong and what would be right.
        problem: String,
    },
    /// A key names an environment variable holding a secret, and it is not set.
    #[error("config key `{key}` names environment variable {var}, which is not set or empty")]
    MissingSecret {
        /// The key naming the variable.
        key: String,
        /// The variable.
        var: String,
    },
    /// A secret too short to withstand guessing.
    #[error(
        "environment variable {var} (named by config key `{key}`) holds {bytes} bytes; the \
         admin token must be at least {min} bytes (for example: openssl rand -hex 16)"
    )]
    WeakSecret {
        /// The key naming the variable.
        key: String,
        /// The variable.
        var: String,
        /// Its length.
        bytes: usize,
        /// The least accepted.
        min: usize,
    },
}

/// The shortest admin token `run` accepts: 16 bytes, 128 bits when random.
pub const MIN_ADMIN_TOKEN_BYTES: usize = 16;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines for a terminal.
    #[default]
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Where a source reads tokens from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// An ERC-721 subgraph over GraphQL.
    Graph,
    /// A chain's JSON-RPC node (`eth_getLogs`).
    Rpc,
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SourceKind::Graph => "graph",
            SourceKind::Rpc => "rpc",
        })
    }
}

/// The whole configuration.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Folder of the sled store (created if missing).
    pub data_dir: PathBuf,
    /// `human` or `json`.
    pub log_format: LogFormat,
    /// The store.
    pub store: StoreConfig,
    /// The HTTP API and dashboard.
    pub http: HttpConfig,
    /// Token sources by name.
    pub sources: BTreeMap<String, SourceConfig>,
    /// Where metadata is fetched.
    pub gateway: GatewayConfig,
    /// The pinning backend.
    pub cluster: ClusterConfig,
    /// How the pinner's passes run.
    pub pinner: PinnerConfig,
    /// The daemon's analysis, pin and follow-up jobs.
    pub jobs: JobsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("nifty-data"),
            log_format: LogFormat::Human,
            store: StoreConfig::default(),
            http: HttpConfig::default(),
            sources: BTreeMap::new(),
            gateway: GatewayConfig::default(),
            cluster: ClusterConfig::default(),
            pinner: PinnerConfig::default(),
            jobs: JobsConfig::default(),
        }
    }
}

/// `[gateway]`: where and how metadata is fetched.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// The IPFS gateway metadata of IPFS URIs is fetched through (path style).
    pub url: String,
    /// The Arweave gateway for `ar://` URIs.
    pub arweave_url: String,
    /// Milliseconds one metadata fetch may take, body included.
    pub timeout_ms: u64,
    /// Largest metadata document read, in bytes.
    pub max_bytes: u64,
    /// Hosts (names or IPs) plain http(s) token URIs may reach although they are private.
    pub allow_hosts: Vec<String>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            url: "http://127.0.0.1:8080".into(),
            arweave_url: "https://arweave.net".into(),
            timeout_ms: 20_000,
            max_bytes: 1024 * 1024,
            allow_hosts: vec![],
        }
    }
}

/// Which pinning API `[cluster]` speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// IPFS Cluster's REST API.
    Cluster,
    /// The IPFS Pinning Service API (Pinata, Filebase, ...).
    Psa,
}

/// How requests to the pinning backend authenticate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthKind {
    /// No credentials.
    None,
    /// HTTP basic auth: `user` and the password in `password_env`.
    Basic,
    /// A bearer token in `token_env` (required by Pinning Service API services).
    Bearer,
}

/// `[cluster]`: the pinning backend.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// `cluster` or `psa`.
    pub api: BackendKind,
    /// The REST API (`http://127.0.0.1:9094`) or the Pinning Service endpoint.
    pub url: String,
    /// `none`, `basic` or `bearer`.
    pub auth: AuthKind,
    /// User name for basic auth.
    pub user: String,
    /// Environment variable holding the basic-auth password.
    pub password_env: String,
    /// Environment variable holding the bearer token.
    pub token_env: String,
    /// `replication-min` of new pins; 0 leaves the cluster's default.
    pub replication_min: i32,
    /// `replication-max` of new pins; 0 leaves the cluster's default.
    pub replication_max: i32,
    /// Milliseconds one request may take.
    pub timeout_ms: u64,
    /// Tries of one request on a retryable failure (5xx, 429, timeouts), the first
    /// included. Few: a longer outage ends the pass with its work kept for the next run.
    pub attempts: u32,
    /// Largest answer read from the backend, in MiB; a longer one is refused as
    /// `too_large` and stops the pass like an outage. The largest real answer is a
    /// cluster status request of 200 CIDs (the client's chunk, whatever
    /// `pinner.follow_chunk` is): about 630 bytes per CID per peer, so 2.5 MiB on a 20-peer
    /// cluster and 6 MiB on 50 peers. 16 MiB holds that on up to about 130 peers; PSA
    /// listings are far smaller.
    pub max_body_mb: u64,
    /// The password, read from `password_env` at load.
    #[serde(skip)]
    pub password: Option<SecretString>,
    /// The token, read from `token_env` at load.
    #[serde(skip)]
    pub token: Option<SecretString>,
}

impl PartialEq for ClusterConfig {
    fn eq(&self, o: &Self) -> bool {
        // Resolved secrets are not configuration; the variables naming them are.
        (self.api, &self.url, self.auth, &self.user) == (o.api, &o.url, o.auth, &o.user)
            && (&self.password_env, &self.token_env) == (&o.password_env, &o.token_env)
            && (
                self.replication_min,
                self.replication_max,
                self.timeout_ms,
                self.attempts,
                self.max_body_mb,
            ) == (
                o.replication_min,
                o.replication_max,
                o.timeout_ms,
                o.attempts,
                o.max_body_mb,
            )
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            api: BackendKind::Cluster,
            url: "http://127.0.0.1:9094".into(),
            auth: AuthKind::None,
            user: String::new(),
            password_env: String::new(),
            token_env: String::new(),
            replication_min: 0,
            replication_max: 0,
            timeout_ms: 30_000,
            attempts: 4,
            max_body_mb: nifty_pinner::backend::DEFAULT_MAX_BODY_BYTES >> 20,
            password: None,
            token: None,
        }
    }
}

/// `[pinner]`: how the analysis, pin and follow-up passes run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PinnerConfig {
    /// Metadata fetches in flight.
    pub analyse_concurrency: u32,
    /// Pin requests in flight.
    pub pin_concurrency: u32,
    /// Attempts (first request plus recoveries) before a pin is given up as failed.
    pub max_attempts: u32,
    /// Seconds before the first retry of a failed pin; doubles with each attempt.
    pub retry_base_secs: u64,
    /// CIDs per status request of the follow-up pass.
    pub follow_chunk: u32,
}

impl Default for PinnerConfig {
    fn default() -> Self {
        let d = nifty_pinner::pass::PassOptions::default();
        PinnerConfig {
            analyse_concurrency: d.analyse_concurrency as u32,
            pin_concurrency: d.pin_concurrency as u32,
            max_attempts: d.max_attempts,
            retry_base_secs: d.retry_base.as_secs(),
            follow_chunk: d.follow_chunk as u32,
        }
    }
}

/// `[jobs]`: when the daemon runs the pinner's passes. Each source's scrape job is set in
/// its own `[sources.NAME]` table.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Run every enabled job once when the daemon starts instead of waiting for its first
    /// tick, so a restarted daemon picks up where it stopped at once.
    pub run_at_start: bool,
    /// Metadata analysis of newly scraped tokens.
    #[serde(deserialize_with = "job_or_default::analyse")]
    pub analyse: JobConfig,
    /// Pin requests for newly found CIDs.
    #[serde(deserialize_with = "job_or_default::pin")]
    pub pin: JobConfig,
    /// Status follow-up of requested pins, and retries of failed ones.
    #[serde(deserialize_with = "job_or_default::follow")]
    pub follow: JobConfig,
}

/// A `[jobs.NAME]` table may set only some keys (`enabled = false` alone, say); the others
/// keep that job's defaults.
mod job_or_default {
    use serde::{Deserialize, Deserializer};

    use super::{JobConfig, JobsConfig};

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Partial {
        schedule: Option<String>,
        budget_secs: Option<u64>,
        enabled: Option<bool>,
    }

    fn over<'de, D: Deserializer<'de>>(d: D, base: JobConfig) -> Result<JobConfig, D::Error> {
        let p = Partial::deserialize(d)?;
        Ok(JobConfig {
            schedule: p.schedule.unwrap_or(base.schedule),
            budget_secs: p.budget_secs.unwrap_or(base.budget_secs),
            enabled: p.enabled.unwrap_or(base.enabled),
        })
    }

    pub fn analyse<'de, D: Deserializer<'de>>(d: D) -> Result<JobConfig, D::Error> {
        over(d, JobsConfig::default().analyse)
    }

    pub fn pin<'de, D: Deserializer<'de>>(d: D) -> Result<JobConfig, D::Error> {
        over(d, JobsConfig::default().pin)
    }

    pub fn follow<'de, D: Deserializer<'de>>(d: D) -> Result<JobConfig, D::Error> {
        over(d, JobsConfig::default().follow)
    }
}

impl Default for JobsConfig {
    fn default() -> Self {
        let job = |schedule: &str, budget_secs| JobConfig {
            schedule: schedule.to_owned(),
            budget_secs,
            enabled: true,
        };
        JobsConfig {
            run_at_start: true,
            // Every minute each, offset so that analysis feeds the pin job within the minute
            // and follow-up sees the pins requested just before.
            analyse: job("0 * * * * *", 50),
            pin: job("20 * * * * *", 50),
            follow: job("40 * * * * *", 50),
        }
    }
}

/// One scheduled job.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// Cron expression with seconds: sec min hour day-of-month month day-of-week.
    pub schedule: String,
    /// Seconds a run may take; it stops taking work after that and commits what it has.
    pub budget_secs: u64,
    /// Whether the daemon schedules it.
    #[serde(default = "defaults::enabled")]
    pub enabled: bool,
}

/// Checks a cron expression with the parser (and options) tokio-cron-scheduler uses, and
/// that it fires at all (`0 0 0 31 2 *` parses but never comes; the scheduler would drop
/// the job without a word).
pub fn check_schedule(key: &str, expr: &str) -> Result<(), ConfigError> {
    let invalid = |problem: String| ConfigError::Invalid {
        key: key.to_owned(),
        value: format!("{expr:?}"),
        problem,
    };
    let cron = cron_parser().parse(expr).map_err(|e| {
        invalid(format!(
            "not a cron expression with seconds (sec min hour day month weekday, such as \
             \"0 */5 * * * *\"): {e}"
        ))
    })?;
    cron.find_next_occurrence(&chrono::Utc::now(), false)
        .map(|_| ())
        .map_err(|_| invalid("never fires: no such date from now on".into()))
}

/// The cron dialect of the daemon: six fields, seconds first; day-of-month and day-of-week
/// both must match when both are given (as tokio-cron-scheduler configures croner).
pub fn cron_parser() -> croner::parser::CronParser {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
}

fn check_budget(key: &str, secs: u64) -> Result<(), ConfigError> {
    if (1..=86_400).contains(&secs) {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            key: key.to_owned(),
            value: secs.to_string(),
            problem: "must be 1 to 86400 seconds".into(),
        })
    }
}

/// `[store]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// fsync after every commit, so an acknowledged page survives power loss.
    pub sync_commits: bool,
    /// sled's page cache, in MiB.
    pub cache_mb: u64,
    /// MiB kept free on the data dir's filesystem: below it, scraping and analysis wait
    /// (their runs fail with a reason and retry) instead of filling the disk. 0: no check.
    pub min_free_mb: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            sync_commits: true,
            cache_mb: nifty_state::DEFAULT_CACHE_BYTES / (1024 * 1024),
            min_free_mb: nifty_state::DEFAULT_MIN_FREE_BYTES / (1024 * 1024),
        }
    }
}

/// `[http]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address the API and dashboard listen on; loopback unless you mean otherwise.
    pub listen: String,
    /// Environment variable holding the admin bearer token; empty turns admin writes off.
    pub admin_token_env: String,
    /// The admin token, read from `admin_token_env` at load.
    #[serde(skip)]
    pub admin_token: Option<SecretString>,
}

impl PartialEq for HttpConfig {
    fn eq(&self, o: &Self) -> bool {
        // The resolved secret is not configuration; the variable naming it is.
        (&self.listen, &self.admin_token_env) == (&o.listen, &o.admin_token_env)
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:8640".to_owned(),
            admin_token_env: String::new(),
            admin_token: None,
        }
    }
}

/// `[sources.<name>]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `graph` or `rpc`.
    pub kind: SourceKind,
    /// The subgraph's GraphQL URL, or the node's JSON-RPC URL.
    pub url: String,
    /// Environment variable holding a bearer API key; empty for none.
    #[serde(default)]
    pub api_key_env: String,
    /// The API key, read from `api_key_env` at load; never printed.
    #[serde(skip)]
    pub api_key: Option<SecretString>,
    /// Blocks behind the head that are treated as final.
    #[serde(default = "defaults::confirmations")]
    pub confirmations: u64,
    /// Tokens per request (graph, at most 1000), or the blocks of the first log query
    /// (rpc, at most `max_span`).
    #[serde(default = "defaults::page_size")]
    pub page_size: u32,
    /// First block to scrape when the source has no cursor yet.
    #[serde(default)]
    pub start_block: u64,
    /// Cron expression (with seconds) of the scrape job.
    #[serde(default = "defaults::schedule")]
    pub schedule: String,
    /// Seconds a scrape run may take before it stops after its next commit.
    #[serde(default = "defaults::budget_secs")]
    pub budget_secs: u64,
    /// Whether the daemon schedules this source.
    #[serde(default = "defaults::enabled")]
    pub enabled: bool,
    /// Milliseconds one request may take before it is abandoned and retried.
    #[serde(default = "defaults::timeout_ms")]
    pub timeout_ms: u64,
    /// rpc: only mints of these contract addresses; empty for every contract.
    #[serde(default)]
    pub contracts: Vec<String>,
    /// rpc: `eth_call`s per JSON-RPC batch or Multicall3 `aggregate3`; 1 sends each alone.
    #[serde(default = "defaults::batch_size")]
    pub batch_size: u32,
    /// rpc: Multicall3's address, used when it has code there; empty to never use it.
    #[serde(default = "defaults::multicall")]
    pub multicall: String,
    /// rpc: the largest block span a log query grows to.
    #[serde(default = "defaults::max_span")]
    pub max_span: u64,
    /// rpc: requests (batches) in flight at once.
    #[serde(default = "defaults::concurrency")]
    pub concurrency: u32,
    /// rpc: recent blocks remembered and compared with the node before each run; a reorg
    /// deeper than this stops the source with an error. 0 turns the check off.
    #[serde(default = "defaults::reorg_depth")]
    pub reorg_depth: u64,
    /// graph: the bound on one row of a page answer, in bytes; a page answer may be at most
    /// max(4 MiB, 2 × page_size × this) + 64 KiB, and a larger one is asked again with
    /// fewer rows.
    #[serde(default = "defaults::max_row_bytes")]
    pub max_row_bytes: u64,
    /// rpc: the bound on one answer of the node, in MiB.
    #[serde(default = "defaults::max_body_mb")]
    pub max_body_mb: u64,
}

impl SourceConfig {
    /// A source of `kind` at `url` with every other key at its default (the same defaults
    /// a `[sources.NAME]` table gets).
    pub fn new(kind: SourceKind, url: &str) -> Self {
        SourceConfig {
            kind,
            url: url.to_owned(),
            api_key_env: String::new(),
            api_key: None,
            confirmations: defaults::confirmations(),
            page_size: defaults::page_size(),
            start_block: 0,
            schedule: defaults::schedule(),
            budget_secs: defaults::budget_secs(),
            enabled: defaults::enabled(),
            timeout_ms: defaults::timeout_ms(),
            contracts: vec![],
            batch_size: defaults::batch_size(),
            multicall: defaults::multicall(),
            max_span: defaults::max_span(),
            concurrency: defaults::concurrency(),
            reorg_depth: defaults::reorg_depth(),
            max_row_bytes: defaults::max_row_bytes(),
            max_body_mb: defaults::max_body_mb(),
        }
    }
}

impl SourceConfig {
    /// The URL as safe to print: a subgraph's with the key after `/api/` masked, a node's
    /// with its whole path masked (providers put keys anywhere in it).
    pub fn shown_url(&self) -> String {
        match self.kind {
            SourceKind::Graph => redact_url(&self.url),
            SourceKind::Rpc => nifty_scraper::rpc::redact_rpc_url(&self.url),
        }
    }
}

impl SourceConfig {
    /// This source's secrets: its API key and the parts of its URL that may carry one (a
    /// node's long path segments, a subgraph's segment after `/api/`, user info, query).
    pub fn secret_values(&self) -> Vec<String> {
        use secrecy::ExposeSecret;
        let mut out = nifty_upstream::url_secrets(&self.url, self.kind == SourceKind::Rpc);
        out.extend(self.api_key.iter().map(|k| k.expose_secret().to_owned()));
        out
    }
}

impl PartialEq for SourceConfig {
    fn eq(&self, o: &Self) -> bool {
        // The resolved secret is not configuration; the variable naming it is.
        (
            self.kind,
            &self.url,
            &self.api_key_env,
            self.confirmations,
            self.page_size,
        ) == (o.kind, &o.url, &o.api_key_env, o.confirmations, o.page_size)
            && (
                self.start_block,
                &self.schedule,
                self.budget_secs,
                self.enabled,
            ) == (o.start_block, &o.schedule, o.budget_secs, o.enabled)
            && self.timeout_ms == o.timeout_ms
            && (
                &self.contracts,
                self.batch_size,
                &self.multicall,
                self.max_span,
                self.concurrency,
                self.reorg_depth,
            ) == (
                &o.contracts,
                o.batch_size,
                &o.multicall,
                o.max_span,
                o.concurrency,
                o.reorg_depth,
            )
            && (self.max_row_bytes, self.max_body_mb) == (o.max_row_bytes, o.max_body_mb)
    }
}

mod defaults {
    pub fn confirmations() -> u64 {
        20
    }
    pub fn page_size() -> u32 {
        1000
    }
    pub fn schedule() -> String {
        "0 */5 * * * *".to_owned()
    }
    pub fn budget_secs() -> u64 {
        240
    }
    pub fn enabled() -> bool {
        true
    }
    pub fn timeout_ms() -> u64 {
        30_000
    }
    pub fn batch_size() -> u32 {
        100
    }
    pub fn multicall() -> String {
        nifty_scraper::rpc::MULTICALL3.to_owned()
    }
    pub fn max_span() -> u64 {
        10_000
    }
    pub fn concurrency() -> u32 {
        4
    }
    pub fn max_row_bytes() -> u64 {
        nifty_scraper::graph::client::DEFAULT_MAX_ROW_BYTES
    }
    pub fn max_body_mb() -> u64 {
        nifty_scraper::rpc::DEFAULT_MAX_BODY_MB
    }
    pub fn reorg_depth() -> u64 {
        128
    }
}

impl Config {
    /// Loads the configuration: built-in defaults, then the file (the one given, else
    /// `nifty.toml` when present), then `NIFTY_*` environment overrides; then validates it
    /// and reads the secrets it names. `env` is passed in so tests control it.
    pub fn load(
        path: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let (text, path) = match path {
            Some(p) => (read(p)?, p.to_owned()),
            None => {
                let p = PathBuf::from(DEFAULT_CONFIG_FILE);
                if p.exists() {
                    (read(&p)?, p)
                } else {
                    (String::new(), p)
                }
            }
        };
        Self::from_text(&text, &path, env)
    }

    /// [`Config::load`] of text already read from `path` (named in errors): parse, apply
    /// the environment's overrides, validate, read the secrets. No file I/O, so it can be
    /// fuzzed.
    pub fn from_text(
        text: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let config = Self::from_toml(text, path)?;
        let config = config.with_env_overrides(env)?;
        config.validate()?;
        config.with_secrets(env)
    }

    /// Parses TOML text (no overrides, no validation).
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::new(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let mut key = e.path().to_string();
            let inner = e.into_inner();
            let mut message = inner.message().trim_end().replace('\n', ": ");
            // Errors the TOML parser raises before serde sees a key (a duplicate key, an
            // integer too large for any type) come without a path: find the key in the
            // text, by the parser's position or by the name its message gives.
            let mut at = inner.span().map(|s| s.start.min(text.len()));
            if key.is_empty() || key == "." {
                if let Some((k, offset)) = duplicate_key(text, &message) {
                    key = k;
                    at = Some(offset);
                } else if let Some(k) = at.and_then(|o| key_at(text, o)) {
                    key = k;
                }
            }
            if let Some(at) = at {
                let line = line_of(text, at);
                message = format!("{message} (line {line})");
            }
            ConfigError::Parse {
                path: path.to_owned(),
                key,
                message,
            }
        })
    }

    /// Applies `NIFTY_<KEY>` overrides to every key present (all keys have defaults, so
    /// all are present, including each configured source's).
    fn with_env_overrides(
        self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut value = toml::Value::try_from(&self).map_err(|e| ConfigError::Invalid {
            key: String::new(),
            value: String::new(),
            problem: format!("cannot re-encode configuration: {e}"),
        })?;
        let mut changed = false;
        override_leaves(&mut value, &mut vec![], env, &mut changed)?;
        if !changed {
            return Ok(self);
        }
        serde_path_to_error::deserialize(value).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::Env {
                var: env_name(&key.split('.').collect::<Vec<_>>()),
                key,
                message: e.into_inner().message().to_owned(),
            }
        })
    }

    /// Checks values the types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, value: &dyn fmt::Display, problem: &str| ConfigError::Invalid {
            key: key.to_owned(),
            value: value.to_string(),
            problem: problem.to_owned(),
        };
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", &"\"\"", "must name a folder"));
        }
        if self.data_dir.to_string_lossy().contains('\0') {
            return Err(invalid(
                "data_dir",
                &format!("{:?}", self.data_dir.display().to_string()),
                "a path cannot contain a NUL byte",
            ));
        }
        if !(1..=65_536).contains(&self.store.cache_mb) {
            return Err(invalid(
                "store.cache_mb",
                &self.store.cache_mb,
                "must be 1 to 65536",
            ));
        }
        if self.store.min_free_mb > MAX_MIN_FREE_MB {
            return Err(invalid(
                "store.min_free_mb",
                &self.store.min_free_mb,
                "must be 0 (no check) to 1048576 (1 TiB)",
            ));
        }
        if self.http.listen.parse::<SocketAddr>().is_err() {
            return Err(invalid(
                "http.listen",
                &format!("{:?}", self.http.listen),
                "must be IP:PORT, such as 127.0.0.1:8640",
            ));
        }
        check_env_name("http.admin_token_env", &self.http.admin_token_env)?;
        for (name, job) in [
            ("analyse", &self.jobs.analyse),
            ("pin", &self.jobs.pin),
            ("follow", &self.jobs.follow),
        ] {
            check_schedule(&format!("jobs.{name}.schedule"), &job.schedule)?;
            check_budget(&format!("jobs.{name}.budget_secs"), job.budget_secs)?;
        }
        self.validate_pinning()?;
        for (name, s) in &self.sources {
            validate_source(name, s)?;
        }
        Ok(())
    }

    /// Checks the keys of an rpc source.
    fn validate_rpc(name: &str, s: &SourceConfig) -> Result<(), ConfigError> {
        let key = |k: &str| format!("sources.{name}.{k}");
        let invalid = |k: &str, value: &dyn fmt::Display, problem: &str| ConfigError::Invalid {
            key: key(k),
            value: value.to_string(),
            problem: problem.to_owned(),
        };
        if !(1..=MAX_SPAN).contains(&s.max_span) {
            return Err(invalid(
                "max_span",
                &s.max_span,
                "must be 1 to 1000000 blocks",
            ));
        }
        if !(1..=s.max_span).contains(&u64::from(s.page_size)) {
            return Err(invalid(
                "page_size",
                &s.page_size,
                &format!("must be 1 to max_span ({}) blocks", s.max_span),
            ));
        }
        if !(1..=1000).contains(&s.batch_size) {
            return Err(invalid("batch_size", &s.batch_size, "must be 1 to 1000"));
        }
        if !(1..=64).contains(&s.concurrency) {
            return Err(invalid("concurrency", &s.concurrency, "must be 1 to 64"));
        }
        if s.reorg_depth > MAX_CONFIRMATIONS {
            return Err(invalid(
                "reorg_depth",
                &s.reorg_depth,
                "must be at most 10000",
            ));
        }
        if !s.multicall.is_empty() && s.multicall.parse::<nifty_state::Address>().is_err() {
            return Err(invalid(
                "multicall",
                &format!("{:?}", s.multicall),
                "must be a 0x-prefixed 20-byte address, or empty to not use Multicall3",
            ));
        }
        for (i, c) in s.contracts.iter().enumerate() {
            if c.parse::<nifty_state::Address>().is_err() {
                return Err(invalid(
                    &format!("contracts[{i}]"),
                    &format!("{c:?}"),
                    "must be a 0x-prefixed 20-byte address",
                ));
            }
        }
        Ok(())
    }

    /// Checks `[gateway]`, `[cluster]` and `[pinner]`.
    fn validate_pinning(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, value: String, problem: &str| ConfigError::Invalid {
            key: key.to_owned(),
            value,
            problem: problem.to_owned(),
        };
        for (key, url) in [
            ("gateway.url", &self.gateway.url),
            ("gateway.arweave_url", &self.gateway.arweave_url),
            ("cluster.url", &self.cluster.url),
        ] {
            let shown = format!("{:?}", redact_url(url));
            match url::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                Ok(_) => return Err(invalid(key, shown, "must be an http(s) URL")),
                Err(e) => return Err(invalid(key, shown, &format!("not a URL: {e}"))),
            }
        }
        let ranges: [(&str, u64, std::ops::RangeInclusive<u64>); 9] = [
            ("gateway.timeout_ms", self.gateway.timeout_ms, 100..=600_000),
            (
                "gateway.max_bytes",
                self.gateway.max_bytes,
                1024..=64 * 1024 * 1024,
            ),
            ("cluster.timeout_ms", self.cluster.timeout_ms, 100..=600_000),
            ("cluster.attempts", self.cluster.attempts.into(), 1..=20),
            ("cluster.max_body_mb", self.cluster.max_body_mb, 1..=1024),
            (
                "pinner.analyse_concurrency",
                self.pinner.analyse_concurrency.into(),
                1..=1024,
            ),
            (
                "pinner.pin_concurrency",
                self.pinner.pin_concurrency.into(),
                1..=1024,
            ),
            (
                "pinner.max_attempts",
                self.pinner.max_attempts.into(),
                1..=100,
            ),
            (
                "pinner.follow_chunk",
                self.pinner.follow_chunk.into(),
                1..=10_000,
            ),
        ];
        for (key, value, range) in ranges {
            if !range.contains(&value) {
                let problem = format!("must be {} to {}", range.start(), range.end());
                return Err(invalid(key, value.to_string(), &problem));
            }
        }
        for (key, value) in [
            ("cluster.replication_min", self.cluster.replication_min),
            ("cluster.replication_max", self.cluster.replication_max),
        ] {
            if value < -1 {
                return Err(invalid(
                    key,
                    value.to_string(),
                    "must be -1 (every peer), 0 (the cluster's default) or a peer count",
                ));
            }
        }
        let (min, max) = (self.cluster.replication_min, self.cluster.replication_max);
        // -1 means every peer: a maximum of -1 is at least any minimum.
        if min != 0 && max != 0 && max != -1 && (min == -1 || min > max) {
            return Err(invalid(
                "cluster.replication_min",
                min.to_string(),
                &format!(
                    "must not exceed cluster.replication_max ({max}): a pin cannot need more \
                     peers than it may have"
                ),
            ));
        }
        for host in &self.gateway.allow_hosts {
            if host.trim().is_empty() || host.contains(['/', ' ']) {
                return Err(invalid(
                    "gateway.allow_hosts",
                    format!("{host:?}"),
                    "entries are host names or IP addresses, without scheme or path",
                ));
            }
        }
        check_env_name("cluster.password_env", &self.cluster.password_env)?;
        check_env_name("cluster.token_env", &self.cluster.token_env)?;
        let needs = match (self.cluster.api, self.cluster.auth) {
            (BackendKind::Psa, a) if a != AuthKind::Bearer => Some((
                "cluster.auth",
                "the Pinning Service API needs auth = \"bearer\" and token_env",
            )),
            (_, AuthKind::Basic) if self.cluster.user.is_empty() => {
                Some(("cluster.user", "basic auth needs a user"))
            }
            (_, AuthKind::Basic) if self.cluster.password_env.is_empty() => {
                Some(("cluster.password_env", "basic auth needs password_env"))
            }
            (_, AuthKind::Bearer) if self.cluster.token_env.is_empty() => {
                Some(("cluster.token_env", "bearer auth needs token_env"))
            }
            _ => None,
        };
        if let Some((key, problem)) = needs {
            return Err(invalid(key, "(missing)".into(), problem));
        }
        Ok(())
    }

    fn with_secrets(mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let secret = |key: String, var: &str| -> Result<Option<SecretString>, ConfigError> {
            if var.is_empty() {
                return Ok(None);
            }
            match env(var) {
                Some(v) if !v.is_empty() => Ok(Some(SecretString::from(v))),
                _ => Err(ConfigError::MissingSecret {
                    key,
                    var: var.to_owned(),
                }),
            }
        };
        // Only the daemon and admin writes need the admin token, so a missing one is not an
        // error here: `nifty status --api` works without it. `run` checks it.
        self.http.admin_token = match self.http.admin_token_env.as_str() {
            "" => None,
            var => env(var).filter(|v| !v.is_empty()).map(SecretString::from),
        };
        if self.cluster.auth == AuthKind::Basic {
            self.cluster.password =
                secret("cluster.password_env".into(), &self.cluster.password_env)?;
        }
        if self.cluster.auth == AuthKind::Bearer {
            self.cluster.token = secret("cluster.token_env".into(), &self.cluster.token_env)?;
        }
        for (name, s) in &mut self.sources {
            s.api_key = secret(format!("sources.{name}.api_key_env"), &s.api_key_env)?;
        }
        Ok(self)
    }

    /// Every secret this configuration holds, for scrubbing upstream text: source API keys
    /// and the key-bearing parts of their URLs, the cluster's password (with its user, as
    /// basic auth sends them) and token and the parts of its URL, the gateways' URL keys,
    /// and the admin token. One set for every client, so no server's echo of any of them
    /// reaches an error, a log or the store.
    pub fn secrets(&self) -> nifty_upstream::Secrets {
        use secrecy::ExposeSecret;
        let mut all: Vec<String> = vec![];
        for s in self.sources.values() {
            all.extend(s.secret_values());
        }
        let c = &self.cluster;
        all.extend(nifty_upstream::url_secrets(&c.url, false));
        if let Some(p) = &c.password {
            all.push(p.expose_secret().to_owned());
            all.push(format!("{}:{}", c.user, p.expose_secret()));
        }
        all.extend(c.token.iter().map(|t| t.expose_secret().to_owned()));
        all.extend(nifty_upstream::url_secrets(&self.gateway.url, false));
        all.extend(nifty_upstream::url_secrets(
            &self.gateway.arweave_url,
            false,
        ));
        all.extend(
            self.http
                .admin_token
                .iter()
                .map(|t| t.expose_secret().to_owned()),
        );
        nifty_upstream::Secrets::new(all)
    }

    /// Fails on the first `NIFTY_` variable of `vars` that names no key of this
    /// configuration. Not keys, and left alone: `NIFTY_CONFIG`, variables a `*_env` key
    /// names (they hold secrets), and the variables of nifty's own test and benchmark tools
    /// ([`TOOL_VARIABLES`]).
    pub fn check_env_names<I, S>(&self, vars: I) -> Result<(), ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let Ok(value) = toml::Value::try_from(self) else {
            return Ok(());
        };
        let mut keys: Vec<(String, String)> = vec![];
        leaf_keys(&value, &mut vec![], &mut keys);
        let mut named: Vec<&str> = vec![&self.http.admin_token_env];
        named.extend([self.cluster.password_env.as_str(), &self.cluster.token_env]);
        named.extend(self.sources.values().map(|s| s.api_key_env.as_str()));
        for var in vars {
            let var = var.as_ref();
            if !var.starts_with(ENV_PREFIX)
                || var == CONFIG_ENV
                || named.contains(&var)
                || keys.iter().any(|(v, _)| v == var)
                || TOOL_VARIABLES
                    .iter()
                    .any(|t| var == *t || (t.ends_with('_') && var.starts_with(t)))
            {
                continue;
            }
            let Some((closest, closest_key)) = keys
                .iter()
                .min_by_key(|(v, _)| edit_distance(v, var))
                .cloned()
            else {
                continue;
            };
            let why = match var.strip_prefix("NIFTY_SOURCES_") {
                Some(_) => " (a source is declared by a [sources.NAME] table in the config \
                            file; the environment can only override its keys)"
                    .to_owned(),
                None => String::new(),
            };
            return Err(ConfigError::UnknownEnv {
                var: var.to_owned(),
                why,
                closest,
                closest_key,
            });
        }
        Ok(())
    }

    /// Fails when `http.admin_token_env` names a variable that is not set (the daemon must
    /// not start with admin writes off when the operator asked for them), or one holding
    /// fewer than [`MIN_ADMIN_TOKEN_BYTES`].
    pub fn require_admin_token(&self) -> Result<(), ConfigError> {
        use secrecy::ExposeSecret;
        let key = || "http.admin_token_env".to_owned();
        let var = || self.http.admin_token_env.clone();
        match &self.http.admin_token {
            None if !self.http.admin_token_env.is_empty() => Err(ConfigError::MissingSecret {
                key: key(),
                var: var(),
            }),
            Some(t) if t.expose_secret().len() < MIN_ADMIN_TOKEN_BYTES => {
                Err(ConfigError::WeakSecret {
                    key: key(),
                    var: var(),
                    bytes: t.expose_secret().len(),
                    min: MIN_ADMIN_TOKEN_BYTES,
                })
            }
            _ => Ok(()),
        }
    }

    /// The effective configuration as TOML. Secrets are never part of it, and source URLs
    /// are shown redacted (a gateway URL may carry an API key).
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        for s in shown.sources.values_mut() {
            s.url = s.shown_url();
        }
        shown.cluster.url = redact_url(&shown.cluster.url);
        shown.gateway.url = redact_url(&shown.gateway.url);
        shown.gateway.arweave_url = redact_url(&shown.gateway.arweave_url);
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot encode: {e}\n"))
    }
}

fn read(p: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
        path: p.to_owned(),
        source,
    })
}

fn valid_source_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

fn check_env_name(key: &str, var: &str) -> Result<(), ConfigError> {
    let ok = var.is_empty()
        || (var.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
            && !var.as_bytes()[0].is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            key: key.to_owned(),
            value: format!("{var:?}"),
            problem: "must be the name of an environment variable (letters, digits, '_')".into(),
        })
    }
}

/// The environment variable that overrides a key path.
pub fn env_name(path: &[&str]) -> String {
    let mut s = ENV_PREFIX.to_owned();
    s.push_str(&path.join("_").replace(['-', '.'], "_").to_ascii_uppercase());
    s
}

/// The variable that names the config file.
pub const CONFIG_ENV: &str = "NIFTY_CONFIG";

/// `NIFTY_` variables that are not config keys: those read by nifty's tests, benchmarks and
/// install scripts (a trailing `_` stands for every variable with that prefix). The daemon
/// and CLI may run with them set (`make test` and `make bench` do).
pub const TOOL_VARIABLES: &[&str] = &[
    "NIFTY_BENCH_",
    "NIFTY_PEERS_",
    "NIFTY_CRASH_",
    "NIFTY_TEST_",
    "NIFTY_DISK_",
    "NIFTY_FAULTS_",
    "NIFTY_SOAK",
    "NIFTY_BENCHES",
    "NIFTY_SKIP_BROWSER",
    "NIFTY_CHROMIUM",
    "NIFTY_ANVIL",
    "NIFTY_SOLCJS",
    "NIFTY_BINARY",
];

/// Every leaf key of `v` as (its variable, its dotted path).
fn leaf_keys(v: &toml::Value, path: &mut Vec<String>, out: &mut Vec<(String, String)>) {
    match v {
        toml::Value::Table(t) => {
            for (k, child) in t {
                path.push(k.clone());
                leaf_keys(child, path, out);
                path.pop();
            }
        }
        _ => {
            let parts: Vec<&str> = path.iter().map(String::as_str).collect();
            out.push((env_name(&parts), parts.join(".")));
        }
    }
}

/// Levenshtein distance, by characters: how far a mistyped name is from a real one.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let swap = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = swap.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn override_leaves(
    v: &mut toml::Value,
    path: &mut Vec<String>,
    env: &dyn Fn(&str) -> Option<String>,
    changed: &mut bool,
) -> Result<(), ConfigError> {
    if let toml::Value::Table(t) = v {
        for (k, child) in t.iter_mut() {
            path.push(k.clone());
            override_leaves(child, path, env, changed)?;
            path.pop();
        }
        return Ok(());
    }
    let parts: Vec<&str> = path.iter().map(String::as_str).collect();
    let var = env_name(&parts);
    let Some(raw) = env(&var) else { return Ok(()) };
    let key = parts.join(".");
    let bad = |what: &str| ConfigError::Env {
        var: var.clone(),
        key: key.clone(),
        message: format!("expected {what}, got {raw:?}"),
    };
    *v = match v {
        toml::Value::String(_) => toml::Value::String(raw.clone()),
        toml::Value::Integer(_) => {
            toml::Value::Integer(raw.trim().parse().map_err(|_| bad("an integer"))?)
        }
        toml::Value::Boolean(_) => toml::Value::Boolean(match raw.trim() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => return Err(bad("true or false")),
        }),
        toml::Value::Float(_) => {
            toml::Value::Float(raw.trim().parse().map_err(|_| bad("a number"))?)
        }
        _ => return Err(bad("a value this key cannot take from the environment")),
    };
    *changed = true;
    Ok(())
}

/// Checks one source's keys: the one rule for a `[sources.NAME]` table, its environment
/// overrides and the command line's flags (which `nifty backfill` applies to a source
/// before it checks it).
pub fn validate_source(name: &str, s: &SourceConfig) -> Result<(), ConfigError> {
    let invalid = |key: &str, value: &dyn fmt::Display, problem: &str| ConfigError::Invalid {
        key: key.to_owned(),
        value: value.to_string(),
        problem: problem.to_owned(),
    };
    let key = |k: &str| format!("sources.{name}.{k}");
    if !valid_source_name(name) {
        return Err(invalid(
            &format!("sources.{name}"),
            &format!("{name:?}"),
            "source names are 1-64 of a-z, 0-9, '_' and '-', starting with a letter or digit",
        ));
    }
    let shown = format!("{:?}", s.shown_url());
    match url::Url::parse(&s.url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        Ok(_) => return Err(invalid(&key("url"), &shown, "must be an http(s) URL")),
        Err(e) => return Err(invalid(&key("url"), &shown, &format!("not a URL: {e}"))),
    }
    match s.kind {
        SourceKind::Graph => {
            if !(1..=MAX_PAGE_SIZE).contains(&s.page_size) {
                return Err(invalid(
                    &key("page_size"),
                    &s.page_size,
                    "must be 1 to 1000 (graph-node's cap on `first`)",
                ));
            }
            if !s.contracts.is_empty() {
                return Err(invalid(
                    &key("contracts"),
                    &format!("{:?}", s.contracts),
                    "is for rpc sources; a subgraph indexes the contracts it was built for",
                ));
            }
        }
        SourceKind::Rpc => Config::validate_rpc(name, s)?,
    }
    if s.confirmations > MAX_CONFIRMATIONS {
        return Err(invalid(
            &key("confirmations"),
            &s.confirmations,
            "must be at most 10000",
        ));
    }
    check_budget(&key("budget_secs"), s.budget_secs)?;
    check_schedule(&key("schedule"), &s.schedule)?;
    if !(100..=600_000).contains(&s.timeout_ms) {
        return Err(invalid(
            &key("timeout_ms"),
            &s.timeout_ms,
            "must be 100 to 600000 milliseconds",
        ));
    }
    check_env_name(&key("api_key_env"), &s.api_key_env)?;
    if !(MIN_ROW_BYTES..=MAX_ROW_BYTES).contains(&s.max_row_bytes) {
        return Err(invalid(
            &key("max_row_bytes"),
            &s.max_row_bytes,
            "must be 1024 to 16777216 bytes",
        ));
    }
    if !(1..=MAX_BODY_MB).contains(&s.max_body_mb) {
        return Err(invalid(
            &key("max_body_mb"),
            &s.max_body_mb,
            "must be 1 to 1024 MiB",
        ));
    }
    Ok(())
}

/// The 1-based line of byte `offset` of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The table a line of TOML at `offset` belongs to: the last `[header]` before it.
fn table_at(text: &str, offset: usize) -> String {
    text[..offset.min(text.len())]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned())
        .unwrap_or_default()
}

/// The dotted key of the `key = value` line holding byte `offset`.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next()?;
    let (k, _) = line.split_once('=')?;
    let k = k.trim().trim_matches('"');
    if k.is_empty() || k.starts_with('[') {
        return None;
    }
    let table = table_at(text, start);
    Some(if table.is_empty() {
        k.to_owned()
    } else {
        format!("{table}.{k}")
    })
}

/// For the parser's ``duplicate key `K` in table `T` `` (or ``in document root``): the
/// dotted key and the byte offset of its second definition.
fn duplicate_key(text: &str, message: &str) -> Option<(String, usize)> {
    // The parser may put a line before it (`invalid table header`).
    let at = message.find("duplicate key `")?;
    let rest = &message[at + "duplicate key `".len()..];
    let (k, rest) = rest.split_once('`')?;
    let table = rest
        .strip_prefix(" in table `")
        .and_then(|t| t.split_once('`'))
        .map(|(t, _)| t.to_owned())
        .unwrap_or_default();
    let mut seen = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let name = line
            .split_once('=')
            .map(|(n, _)| n.trim().trim_matches('"'));
        if name == Some(k) && table_at(text, offset) == table {
            seen += 1;
            if seen == 2 {
                let key = if table.is_empty() {
                    k.to_owned()
                } else {
                    format!("{table}.{k}")
                };
                return Some((key, offset));
            }
        }
        offset += line.len();
    }
    // A table given twice: `[k]` (or `[table.k]`) a second time.
    let header = if table.is_empty() {
        k.to_owned()
    } else {
        format!("{table}.{k}")
    };
    let mut offset = 0;
    let mut seen = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim();
        if t.starts_with('[') && t.trim_matches(|c| c == '[' || c == ']').trim() == header {
            seen += 1;
            if seen == 2 {
                return Some((header, offset));
            }
        }
        offset += line.len();
    }
    None
}

/// `nifty config init` writes this: every key with its default and why.
pub const TEMPLATE: &str = r#"# nifty configuration.
#
# Every key can be overridden by an environment variable: NIFTY_ followed by the key path in
# upper case with '.' and '-' turned into '_' (data_dir -> NIFTY_DATA_DIR,
# sources.mainnet.url -> NIFTY_SOURCES_MAINNET_URL). Secrets never live in this file: keys
# ending in _env name the environment variable that holds them.

# Folder of the embedded store. One process at a time may hold it; other commands talk to
# a running daemon with --api URL.
data_dir = "nifty-data"

# Log lines: "human" or "json". The level comes from RUST_LOG (default: info).
log_format = "human"

[store]
# fsync after every page commit, so an acknowledged page survives a crash or power loss.
sync_commits = true
# sled's page cache in MiB.
cache_mb = 64
# MiB kept free on the data dir's disk. Below it, scraping and analysis wait (their runs
# fail with "No space left on device" and retry on later ticks) rather than fill the disk;
# the API keeps answering. 0 turns the check off.
min_free_mb = 64

[http]
# The API and dashboard. Loopback by default: expose it deliberately, behind a proxy.
listen = "127.0.0.1:8640"
# Environment variable holding the admin bearer token for writes such as a cursor rewind.
# Empty: admin writes are off.
admin_token_env = ""

[gateway]
# The IPFS gateway that metadata of IPFS URIs (ipfs://, gateway URLs, bare CIDs) is fetched
# through, whatever gateway the URI itself names.
url = "http://127.0.0.1:8080"
# The Arweave gateway for ar:// URIs.
arweave_url = "https://arweave.net"
# Milliseconds one metadata fetch may take, body included.
timeout_ms = 20000
# Largest metadata document read (bytes); real metadata is a few KiB.
max_bytes = 1048576
# Plain http(s) token URIs never reach loopback, private, link-local or cloud metadata
# addresses, unless their host (name or IP) is listed here.
allow_hosts = []

[cluster]
# "cluster" (IPFS Cluster REST API) or "psa" (IPFS Pinning Service API: Pinata, ...).
api = "cluster"
url = "http://127.0.0.1:9094"
# "none", "basic" (user + password_env) or "bearer" (token_env; required for psa).
auth = "none"
user = ""
password_env = ""
token_env = ""
# Replication of new pins: 0 keeps the cluster's default, -1 pins on every peer.
replication_min = 0
replication_max = 0
# Milliseconds one request may take.
timeout_ms = 30000
# Tries of one request on a retryable failure (5xx, 429, timeout), the first included; a
# longer outage ends the pass with its work kept for the next run.
attempts = 4
# Largest answer read (MiB); a longer one is refused as too_large and ends the pass like an
# outage. A status answer of 200 CIDs is about 630 bytes per CID per peer: 2.5 MiB on 20
# peers, 6 MiB on 50; 16 holds up to about 130 peers.
max_body_mb = 16

[pinner]
# Metadata fetches in flight.
analyse_concurrency = 64
# Pin requests in flight.
pin_concurrency = 32
# Attempts (the first request plus recoveries) before a pin is given up as failed.
max_attempts = 5
# Seconds before the first retry of a failed pin; doubles with each attempt.
retry_base_secs = 60
# CIDs per status request of the follow-up pass.
follow_chunk = 200

[jobs]
# Run every enabled job once as the daemon starts, instead of waiting for its first tick.
run_at_start = true
# Cron expressions have six fields, seconds first: sec min hour day month weekday.
# A job never overlaps itself: a tick that finds it still running is recorded as skipped.
# budget_secs: a run stops taking new work after this long and commits what it has.

[jobs.analyse]
# Fetch and analyse the metadata of newly scraped tokens.
schedule = "0 * * * * *"
budget_secs = 50
enabled = true

[jobs.pin]
# Ask the cluster to pin newly found CIDs.
schedule = "20 * * * * *"
budget_secs = 50
enabled = true

[jobs.follow]
# Follow requested pins until pinned; retry failed ones with growing waits.
schedule = "40 * * * * *"
budget_secs = 50
enabled = true

# Token sources, one table each. kind = "graph" pages an ERC-721 subgraph; kind = "rpc"
# reads mints from a chain node's logs. Source names: a-z, 0-9, '_' and '-'.
#
# [sources.mainnet]
# kind = "graph"
# url = "https://gateway.thegraph.com/api/subgraphs/id/<SUBGRAPH_ID>"
# # Environment variable holding the bearer API key; empty for none.
# api_key_env = "NIFTY_GRAPH_API_KEY"
# # Blocks behind the head treated as final.
# confirmations = 20
# # Tokens per request, at most 1000 (graph-node's cap).
# page_size = 1000
# # First block to scrape when the source has no cursor yet.
# start_block = 0
# # Cron expression with seconds: sec min hour day month weekday.
# schedule = "0 */5 * * * *"
# # Seconds a run may take; it stops after the commit that crosses this.
# budget_secs = 240
# enabled = true
# # Milliseconds one request may take before it is abandoned and retried.
# timeout_ms = 30000
# # The bound on one row of a page answer; a page may be max(4 MiB, 2 x page_size x this)
# # + 64 KiB, and a larger answer is asked again with fewer rows.
# max_row_bytes = 8192
#
# [sources.palm]
# kind = "rpc"
# # Any EVM JSON-RPC node. Keys in the URL's path are never printed.
# url = "https://palm-mainnet.example/v3/<KEY>"
# confirmations = 20
# # Blocks of the first eth_getLogs; ranges shrink when the node refuses and grow back.
# page_size = 1000
# # The widest range a query grows to.
# max_span = 10000
# # Only these contracts' mints; empty for every ERC-721 on the chain.
# contracts = []
# # tokenURI/name/symbol calls per JSON-RPC batch or Multicall3 aggregate3; 1 = unbatched.
# batch_size = 100
# # Multicall3, used when it has code at this address; "" never uses it.
# multicall = "0xcA11bde05977b3631167028862bE2a173976CA11"
# # Requests in flight at once.
# concurrency = 4
# # Recent blocks compared with the node before each run to find reorgs; 0 = off.
# reorg_depth = 128
# # The bound on one answer of the node, in MiB: a larger log answer asks fewer blocks,
# # a larger batch is split, a single call over it records the token as too_large.
# max_body_mb = 16
# schedule = "30 */5 * * * *"
# budget_secs = 240
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env = move |k: &str| vars.get(k).cloned();
        let c = Config::from_toml(text, Path::new("test.toml"))?;
        let c = c.with_env_overrides(&env)?;
        c.validate()?;
        c.with_secrets(&env)
    }

    const SOURCE: &str = "[sources.main]\nkind = \"graph\"\nurl = \"http://127.0.0.1:9/graphql\"\n";

    #[test]
    fn the_template_is_the_defaults() {
        assert_eq!(load(TEMPLATE, &[]).unwrap(), Config::default());
        // And the commented source example is valid once uncommented.
        let uncommented: String = TEMPLATE
            .lines()
            .skip_while(|l| !l.starts_with("# [sources."))
            .map(|l| l.strip_prefix("# ").unwrap_or(l))
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
            .replace("<SUBGRAPH_ID>", "abc");
        let c = load(&uncommented, &[("NIFTY_GRAPH_API_KEY", "k")]).unwrap();
        assert_eq!(c.sources["mainnet"].page_size, 1000);
    }

    #[test]
    fn node_keys_in_a_url_path_never_show() {
        let text = "[sources.eth]\nkind = \"rpc\"\nurl = \"https://eth.example/v2/SECRETKEY123\"\n";
        let c = load(text, &[]).unwrap();
        assert_eq!(
            c.sources["eth"].shown_url(),
            "https://eth.example/<redacted>"
        );
        let bad = "[sources.eth]\nkind = \"rpc\"\nurl = \"wss://eth.example/ws/v3/SECRETKEY123\"\n";
        let err = load(bad, &[]).unwrap_err().to_string();
        assert!(!err.contains("SECRETKEY123"), "{err}");
    }

    #[test]
    fn a_job_table_may_set_only_some_keys() {
        let c = load(
            "[jobs.pin]\nenabled = false\n[jobs.follow]\nbudget_secs = 7\n",
            &[],
        )
        .unwrap();
        let d = JobsConfig::default();
        assert_eq!(
            c.jobs.pin,
            JobConfig {
                enabled: false,
                ..d.pin.clone()
            }
        );
        assert_eq!(
            c.jobs.follow,
            JobConfig {
                budget_secs: 7,
                ..d.follow.clone()
            }
        );
        assert_eq!(c.jobs.analyse, d.analyse);
        let err = load("[jobs.pin]\nschedul = \"* * * * * *\"\n", &[]).unwrap_err();
        assert!(err.to_string().contains("schedul"), "{err}");
    }

    #[test]
    fn rpc_sources_take_their_keys_and_refuse_bad_ones() {
        let rpc = "[sources.palm]\nkind = \"rpc\"\nurl = \"http://127.0.0.1:8545\"\n";
        let c = load(rpc, &[]).unwrap();
        let s = &c.sources["palm"];
        assert_eq!(
            (s.batch_size, s.max_span, s.reorg_depth),
            (100, 10_000, 128)
        );
        assert_eq!(s.multicall, nifty_scraper::rpc::MULTICALL3);
        // A start span above the subgraph's 1000 is fine for a node.
        assert!(load(&format!("{rpc}page_size = 5000\n"), &[]).is_ok());
        let cases = [
            (
                "page_size = 20000",
                "`sources.palm.page_size` = 20000: must be 1 to max_span",
            ),
            ("max_span = 0", "`sources.palm.max_span` = 0"),
            (
                "batch_size = 0",
                "`sources.palm.batch_size` = 0: must be 1 to 1000",
            ),
            ("concurrency = 65", "`sources.palm.concurrency` = 65"),
            ("multicall = \"0x12\"", "`sources.palm.multicall`"),
            ("contracts = [\"0xzz\"]", "`sources.palm.contracts[0]`"),
        ];
        for (line, want) in cases {
            let err = load(&format!("{rpc}{line}\n"), &[])
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{line}: {err}");
        }
        let graph = format!("{SOURCE}contracts = [\"0x{}\"]\n", "ab".repeat(20));
        let err = load(&graph, &[]).unwrap_err().to_string();
        assert!(err.contains("is for rpc sources"), "{err}");
    }

    #[test]
    fn every_key_is_documented_in_the_template() {
        let mut c = Config::default();
        c.sources.insert(
            "mainnet".into(),
            load(SOURCE, &[]).unwrap().sources["main"].clone(),
        );
        let v = toml::Value::try_from(&c).unwrap();
        let mut keys = vec![];
        fn walk(v: &toml::Value, p: &str, out: &mut Vec<String>) {
            match v {
                toml::Value::Table(t) => {
                    for (k, c) in t {
                        walk(c, k, out)
                    }
                }
                _ => out.push(p.to_owned()),
            }
        }
        walk(&v, "", &mut keys);
        for k in keys {
            assert!(
                TEMPLATE.contains(&format!("{k} = ")),
                "key {k} missing from the template"
            );
        }
    }

    #[test]
    fn errors_name_the_key_and_value() {
        // (config text, environment, what the error must say)
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (
                "data_dirr = \"x\"",
                &[],
                "key `data_dirr`: unknown field `data_dirr`",
            ),
            (
                "[store]\ncache_mb = \"big\"",
                &[],
                "key `store.cache_mb`: invalid type: string \"big\", expected u64 (line 2)",
            ),
            (
                "[http]\nlisten = 8640",
                &[],
                "key `http.listen`: invalid type: integer `8640`, expected a string",
            ),
            (
                "[http]\nlisten = \"localhost\"",
                &[],
                "`http.listen` = \"localhost\": must be IP:PORT",
            ),
            (
                "[http]\nadmin_token_env = \"BAD NAME\"",
                &[],
                "`http.admin_token_env` = \"BAD NAME\": must be the name of an environment variable",
            ),
            (
                "log_format = \"xml\"",
                &[],
                "key `log_format`: unknown variant `xml`",
            ),
            (
                "[sources.main]\nkind = \"graph\"",
                &[],
                "key `sources.main`: missing field `url`",
            ),
            (
                "[sources.main]\nkind = \"subgraph\"\nurl = \"http://x\"",
                &[],
                "key `sources.main.kind`: unknown variant `subgraph`",
            ),
            (
                "[sources.Main]\nkind = \"graph\"\nurl = \"http://x\"",
                &[],
                "`sources.Main` = \"Main\": source names are",
            ),
            (
                &format!("{SOURCE}page_size = 5000"),
                &[],
                "`sources.main.page_size` = 5000: must be 1 to 1000",
            ),
            (
                &format!("{SOURCE}page_size = -1"),
                &[],
                "key `sources.main.page_size`: invalid value: integer `-1`, expected u32",
            ),
            (
                &format!("{SOURCE}confirmations = 100000"),
                &[],
                "`sources.main.confirmations` = 100000",
            ),
            (
                &format!("{SOURCE}schedule = \"*/5 * * * *\""),
                &[],
                "`sources.main.schedule` = \"*/5 * * * *\": not a cron expression with seconds",
            ),
            (
                "[jobs.pin]\nschedule = \"0 61 * * * *\"\nbudget_secs = 5",
                &[],
                "`jobs.pin.schedule` = \"0 61 * * * *\": not a cron expression with seconds",
            ),
            (
                "[jobs.pin]\nschedule = \"0 0 0 31 2 *\"\nbudget_secs = 5",
                &[],
                "`jobs.pin.schedule` = \"0 0 0 31 2 *\": never fires",
            ),
            (
                "[jobs.follow]\nschedule = \"0 * * * * *\"\nbudget_secs = 0",
                &[],
                "`jobs.follow.budget_secs` = 0: must be 1 to 86400 seconds",
            ),
            ("[jobs.analyse]\nbudget = 5", &[], "unknown field `budget`"),
            (
                &format!("{SOURCE}budget_secs = 0"),
                &[],
                "`sources.main.budget_secs` = 0",
            ),
            (
                &format!("{SOURCE}api_key_env = \"GRAPH_KEY\""),
                &[],
                "`sources.main.api_key_env` names environment variable GRAPH_KEY",
            ),
            (
                &format!("{SOURCE}api_key_env = \"GRAPH_KEY\""),
                &[("GRAPH_KEY", "")],
                "names environment variable GRAPH_KEY, which is not set or empty",
            ),
            (
                &format!("{SOURCE}pagesize = 5"),
                &[],
                "key `sources.main.pagesize`: unknown field `pagesize`",
            ),
            (
                "[sources.main]\nkind = \"graph\"\nurl = \"ftp://x/y\"",
                &[],
                "`sources.main.url` = \"ftp://x/y\": must be an http(s) URL",
            ),
            (
                "[sources.main]\nkind = \"graph\"\nurl = \"not a url\"",
                &[],
                "`sources.main.url` = \"not a url\": not a URL",
            ),
            ("data_dir = ", &[], "test.toml"),
            (
                "",
                &[("NIFTY_STORE_CACHE_MB", "lots")],
                "NIFTY_STORE_CACHE_MB (key `store.cache_mb`): expected an integer, got \"lots\"",
            ),
            (
                "",
                &[("NIFTY_STORE_SYNC_COMMITS", "maybe")],
                "NIFTY_STORE_SYNC_COMMITS (key `store.sync_commits`): expected true or false",
            ),
            (
                "",
                &[("NIFTY_LOG_FORMAT", "xml")],
                "NIFTY_LOG_FORMAT (key `log_format`): unknown variant `xml`, expected `human` or `json`",
            ),
            (
                SOURCE,
                &[("NIFTY_SOURCES_MAIN_PAGE_SIZE", "0")],
                "`sources.main.page_size` = 0",
            ),
            (
                "",
                &[("NIFTY_DATA_DIR", "")],
                "`data_dir` = \"\": must name a folder",
            ),
        ];
        for (text, vars, want) in cases {
            let err = load(text, vars).map(|_| ()).unwrap_err().to_string();
            assert!(
                err.contains(want),
                "config {text:?} env {vars:?}:\n  got  {err}\n  want {want}"
            );
        }
    }

    #[test]
    fn every_key_has_an_env_override() {
        let c = load(
            SOURCE,
            &[
                ("NIFTY_DATA_DIR", "/tmp/elsewhere"),
                ("NIFTY_LOG_FORMAT", "json"),
                ("NIFTY_STORE_SYNC_COMMITS", "false"),
                ("NIFTY_STORE_CACHE_MB", "8"),
                ("NIFTY_HTTP_LISTEN", "127.0.0.1:0"),
                ("NIFTY_SOURCES_MAIN_URL", "http://127.0.0.1:7/g"),
                ("NIFTY_SOURCES_MAIN_PAGE_SIZE", "250"),
                ("NIFTY_SOURCES_MAIN_ENABLED", "0"),
                ("NIFTY_SOURCES_MAIN_KIND", "rpc"),
            ],
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/tmp/elsewhere"));
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(!c.store.sync_commits);
        assert_eq!(c.store.cache_mb, 8);
        assert_eq!(c.http.listen, "127.0.0.1:0");
        let s = &c.sources["main"];
        assert_eq!(
            (s.url.as_str(), s.page_size, s.enabled, s.kind),
            ("http://127.0.0.1:7/g", 250, false, SourceKind::Rpc)
        );
        assert_eq!(
            env_name(&["sources", "eth-main", "api_key_env"]),
            "NIFTY_SOURCES_ETH_MAIN_API_KEY_ENV"
        );
    }

    #[test]
    fn urls_print_without_their_secrets() {
        let cases = [
            (
                "https://gateway.thegraph.com/api/abc123def456/subgraphs/id/Qm",
                "https://gateway.thegraph.com/api/<redacted>/subgraphs/id/Qm",
            ),
            (
                "http://user:pw@127.0.0.1:8000/x?key=k",
                "http://127.0.0.1:8000/x",
            ),
            ("not a url /API/secretkey", "not a url /API/<redacted>"),
            (
                "http://127.0.0.1:8000/subgraphs/name/x",
                "http://127.0.0.1:8000/subgraphs/name/x",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(redact_url(input), want);
        }
        let text = "[sources.main]\nkind = \"graph\"\nurl = \"https://g.example/api/sk-123456/subgraphs/id/Qm\"\n";
        let c = load(text, &[]).unwrap();
        assert!(!c.to_toml().contains("sk-123456"), "{}", c.to_toml());
        let bad = "[sources.main]\nkind = \"graph\"\nurl = \"ftp://g.example/api/sk-123456/x\"\n";
        let err = load(bad, &[]).unwrap_err().to_string();
        assert!(
            !err.contains("sk-123456") && err.contains("must be an http(s) URL"),
            "{err}"
        );
    }

    #[test]
    fn keys_in_any_url_key_never_show_and_the_shown_config_loads_back() {
        // Found by the config fuzz target: arweave_url was shown as written, and a key
        // behind backslashes (which the URL parser reads as slashes) escaped redaction.
        let text = r#"
[gateway]
url = 'https://gw.example\api\gw-key-123\ipfs'
arweave_url = "https://ar.example/api/ar-key-456"
[cluster]
url = "https://cl.example/api/cl-key-789?token=q-key-000"
[sources.main]
kind = "graph"
url = "https://g.example/a	pi/src-key-321/subgraphs"
"#;
        let c = load(text, &[]).unwrap();
        let shown = c.to_toml();
        for key in [
            "gw-key-123",
            "ar-key-456",
            "cl-key-789",
            "q-key-000",
            "src-key-321",
        ] {
            assert!(!shown.contains(key), "{key} in:\n{shown}");
        }
        let again = load(&shown, &[]).unwrap();
        assert_eq!(again.to_toml(), shown);
        assert_eq!(
            again.gateway.arweave_url,
            "https://ar.example/api/<redacted>"
        );
    }

    #[test]
    fn secrets_come_from_the_named_variables_and_never_print() {
        let text =
            format!("{SOURCE}api_key_env = \"GRAPH_KEY\"\n[http]\nadmin_token_env = \"ADMIN\"\n");
        let c = load(
            &text,
            &[("GRAPH_KEY", "sk-very-secret"), ("ADMIN", "adm-secret")],
        )
        .unwrap();
        use secrecy::ExposeSecret;
        assert_eq!(
            c.sources["main"].api_key.as_ref().unwrap().expose_secret(),
            "sk-very-secret"
        );
        let shown = format!("{c:?}{}", c.to_toml());
        assert!(
            !shown.contains("sk-very-secret") && !shown.contains("adm-secret"),
            "{shown}"
        );
    }

    #[test]
    fn parser_errors_without_a_path_name_the_key_and_its_line() {
        let cases = [
            (
                "[store]\ncache_mb = 99999999999999999999\n",
                "key `store.cache_mb`",
                "(line 2)",
            ),
            (
                "[store]\ncache_mb = 1\ncache_mb = 2\n",
                "key `store.cache_mb`",
                "(line 3)",
            ),
            (
                "data_dir = \"a\"\n\n[http]\nlisten = \"a\"\nlisten = \"b\"\n",
                "key `http.listen`",
                "(line 5)",
            ),
            (
                "data_dir = \"a\"\ndata_dir = \"b\"\n",
                "key `data_dir`",
                "(line 2)",
            ),
            (
                "[sources.main]\nkind = \"graph\"\nurl = \"http://h\"\nstart_block = 18446744073709551616\n",
                "key `sources.main.start_block`",
                "(line 4)",
            ),
            (
                "[store]\nsync_commits = false\n[store]\ncache_mb = 1\n",
                "key `store`",
                "(line 3)",
            ),
            (
                "[sources.a]\nkind = \"graph\"\n[sources.a]\nurl = \"x\"\n",
                "key `sources.a`",
                "(line 3)",
            ),
        ];
        for (text, key, line) in cases {
            let err = Config::from_toml(text, Path::new("n.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key) && err.contains(line), "{text:?}: {err}");
            assert!(!err.contains("key `.`"), "{err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn a_nifty_variable_that_names_no_key_is_an_error_naming_the_closest() {
        let text = "[sources.main]\nkind = \"graph\"\nurl = \"http://h/\"\napi_key_env = \"NIFTY_GRAPH_KEY\"\n";
        let c = load(text, &[("NIFTY_GRAPH_KEY", "k")]).unwrap();
        let fine = [
            "NIFTY_STORE_CACHE_MB",
            "NIFTY_SOURCES_MAIN_URL",
            "NIFTY_CONFIG",
            "NIFTY_GRAPH_KEY",
            "NIFTY_BENCH_SMOKE",
            "NIFTY_SOAK",
            "PATH",
        ];
        c.check_env_names(fine).unwrap();
        let cases = [
            (
                "NIFTY_STORE_CACHEMB",
                "NIFTY_STORE_CACHE_MB (key `store.cache_mb`)",
                "",
            ),
            ("NIFTY_SOURCES_MAIN_URLS", "NIFTY_SOURCES_MAIN_URL", ""),
            (
                "NIFTY_SOURCES_X_URL",
                "NIFTY_SOURCES_MAIN_URL",
                "[sources.NAME] table",
            ),
            ("NIFTY_DATADIR", "NIFTY_DATA_DIR", ""),
        ];
        for (var, closest, why) in cases {
            let err = c.check_env_names([var]).unwrap_err().to_string();
            assert!(
                err.contains(var) && err.contains(closest) && err.contains(why),
                "{err}"
            );
        }
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn every_configured_secret_is_in_the_scrub_set() {
        let text = "[sources.node]\nkind = \"rpc\"\nurl = \"https://eth.example/v2/node-key-0123456789\"\n\
                    [sources.graph]\nkind = \"graph\"\nurl = \"https://g.example/api/graph-path-key/x\"\n\
                    api_key_env = \"GRAPH_KEY\"\n\
                    [cluster]\nauth = \"basic\"\nuser = \"pinuser\"\npassword_env = \"PIN_PW\"\n\
                    [gateway]\nurl = \"https://gw.example/?token=gateway-token-1\"\n\
                    [http]\nadmin_token_env = \"ADMIN\"\n";
        let env = [
            ("GRAPH_KEY", "sk-graph-key"),
            ("PIN_PW", "pin-password"),
            ("ADMIN", "admin-token-0123456789"),
        ];
        let c = load(text, &env).unwrap();
        let s = c.secrets();
        for secret in [
            "node-key-0123456789",
            "graph-path-key",
            "sk-graph-key",
            "pin-password",
            "pinuser:pin-password",
            "gateway-token-1",
            "admin-token-0123456789",
        ] {
            let out = s.clean(&format!("echo {secret} echo"));
            assert_eq!(out, "echo <redacted> echo", "{secret}");
        }
        assert_eq!(
            s.clean("eth.example v2 g.example"),
            "eth.example v2 g.example"
        );
    }

    #[test]
    fn replication_min_may_not_exceed_max() {
        let err = load("[cluster]\nreplication_min = 3\nreplication_max = 2\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cluster.replication_min") && err.contains("replication_max (2)"),
            "{err}"
        );
        for (min, max) in [(2, 2), (0, 2), (2, 0), (3, -1), (-1, 0), (-1, -1)] {
            let text = format!("[cluster]\nreplication_min = {min}\nreplication_max = {max}\n");
            assert!(load(&text, &[]).is_ok(), "{min} {max}");
        }
        assert!(
            load(
                "[cluster]\nreplication_min = -1\nreplication_max = 3\n",
                &[]
            )
            .is_err()
        );
    }

    #[test]
    fn pinning_keys_are_validated_and_overridable() {
        let c = load(
            "",
            &[
                ("NIFTY_CLUSTER_URL", "http://127.0.0.1:1/c"),
                ("NIFTY_GATEWAY_URL", "http://127.0.0.1:2"),
            ],
        )
        .unwrap();
        assert_eq!(
            (c.cluster.url.as_str(), c.gateway.url.as_str()),
            ("http://127.0.0.1:1/c", "http://127.0.0.1:2")
        );
        assert_eq!(c.cluster.max_body_mb, 16);
        let c = load("", &[("NIFTY_CLUSTER_MAX_BODY_MB", "64")]).unwrap();
        assert_eq!(c.cluster.max_body_mb, 64);
        let bad: [(&str, &str); 9] = [
            ("[gateway]\nurl = \"ftp://x\"", "gateway.url"),
            ("[cluster]\nmax_body_mb = 0", "cluster.max_body_mb"),
            ("[cluster]\nmax_body_mb = 4096", "cluster.max_body_mb"),
            (
                "[gateway]\nallow_hosts = [\"http://a/b\"]",
                "gateway.allow_hosts",
            ),
            ("[cluster]\napi = \"psa\"", "cluster.auth"),
            ("[cluster]\nauth = \"basic\"", "cluster.user"),
            ("[cluster]\nauth = \"bearer\"", "cluster.token_env"),
            ("[cluster]\nreplication_min = -5", "cluster.replication_min"),
            ("[pinner]\npin_concurrency = 0", "pinner.pin_concurrency"),
        ];
        for (text, key) in bad {
            let err = load(text, &[]).unwrap_err().to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
        let text = "[cluster]\nauth = \"bearer\"\ntoken_env = \"PIN_TOKEN\"";
        let err = load(text, &[]).unwrap_err().to_string();
        assert!(err.contains("PIN_TOKEN"), "{err}");
        let c = load(text, &[("PIN_TOKEN", "tok-secret")]).unwrap();
        assert!(c.cluster.token.is_some());
        assert!(!c.to_toml().contains("tok-secret"));
        assert!(!format!("{c:?}").contains("tok-secret"));
    }
}
