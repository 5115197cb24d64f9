//! The command line, parsed by clap.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::LogFormat;

/// nifty keeps NFTs alive: it finds every minted ERC-721 token, records it, works out the
/// content it points to and asks an IPFS Cluster to pin that content.
#[derive(Debug, Parser)]
#[command(
    name = "nifty",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Config file [default: ./nifty.toml when it exists, else built-in defaults].
    #[arg(long, global = true, env = "NIFTY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Store folder; overrides `data_dir` from the file and NIFTY_DATA_DIR.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Log format; overrides `log_format`. The level comes from RUST_LOG.
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: scheduled scrape, analysis, pin and follow-up jobs, and the HTTP API.
    Run,
    /// Scrape a block range with parallel workers, resumably.
    Backfill(BackfillArgs),
    /// Show or move source cursors.
    Cursor {
        /// The cursor action.
        #[command(subcommand)]
        action: CursorCommand,
    },
    /// Tokens, pins, sources, cursors and lag, read from the store's counters.
    Status(StatusArgs),
    /// Show a token's resources and pin status (`check CONTRACT TOKEN_ID`), or a CID's.
    Check(CheckArgs),
    /// Failures grouped by stage and reason, with counts and examples.
    Report(ReportArgs),
    /// One pass of analysis and pinning.
    Pin(PassArgs),
    /// One pass of pin status follow-up.
    Follow(PassArgs),
    /// Serve a simulated subgraph (and, later, IPFS Cluster and gateway) on loopback.
    Devnet(crate::devnet::DevnetArgs),
    /// The whole pipeline on this machine: a devnet and the daemon over it with fast
    /// schedules and the dashboard up, until ctrl-c.
    Demo(DemoArgs),
    /// Configuration files.
    Config {
        /// The config action.
        #[command(subcommand)]
        action: ConfigCommand,
    },
}

/// `nifty demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Tokens in the devnet's chain.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=2_000_000))]
    pub tokens: u64,
    /// Where the API and dashboard listen (a free port is used when this one is taken).
    #[arg(long, default_value = "127.0.0.1:8640", value_name = "IP:PORT")]
    pub listen: std::net::SocketAddr,
    /// Stop after this many seconds.
    #[arg(long = "for", value_name = "SECS")]
    pub r#for: Option<u64>,
    /// Stop once every token is analysed and every pin settled.
    #[arg(long)]
    pub until_settled: bool,
}

/// `nifty backfill`.
#[derive(Debug, Clone, Args)]
pub struct BackfillArgs {
    /// The source to scrape: a `[sources.NAME]` of the config, or the name to record
    /// tokens under when `--graph` or `--rpc` gives the endpoint [default: the only
    /// configured source, or `graph` / `rpc` with those flags].
    #[arg(long, value_name = "NAME")]
    pub source: Option<String>,
    /// Subgraph GraphQL URL, instead of (or overriding) the source's `url`.
    #[arg(long, value_name = "URL", conflicts_with = "rpc")]
    pub graph: Option<String>,
    /// Chain JSON-RPC node URL (an rpc source reading mint logs), instead of (or
    /// overriding) the source's `url`.
    #[arg(long, value_name = "URL")]
    pub rpc: Option<String>,
    /// rpc: tokenURI/name/symbol calls per JSON-RPC batch or Multicall3 call; 1 sends each
    /// on its own [default: the source's batch_size].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub batch_size: Option<u32>,
    /// First block [default: the source's start_block].
    #[arg(long, value_name = "BLOCK")]
    pub from: Option<u64>,
    /// Last block, or `head` for the snapshot (head minus confirmations) at start.
    #[arg(long, value_name = "BLOCK|head", default_value = "head", value_parser = parse_to)]
    pub to: ToBlock,
    /// Parallel workers (and initial partitions).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: u16,
    /// Name of a new job [default: SOURCE-<unix milliseconds>, the next free one if taken].
    #[arg(long, value_name = "JOB", conflicts_with = "resume")]
    pub job: Option<String>,
    /// Resume the job of this name from its cursors (--from and --to come from the job).
    #[arg(long, value_name = "JOB")]
    pub resume: Option<String>,
    /// Tokens per request (graph, at most 1000), or blocks of the first log query (rpc)
    /// [default: the source's page_size].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub page_size: Option<u32>,
    /// Blocks behind the head treated as final [default: the source's confirmations].
    #[arg(long, value_name = "N")]
    pub confirmations: Option<u64>,
    /// Milliseconds one request may take [default: the source's timeout_ms].
    #[arg(long, value_name = "MS")]
    pub timeout_ms: Option<u64>,
    /// Stop after the commit that crosses this many seconds; resume later.
    #[arg(long, value_name = "SECS")]
    pub budget: Option<u64>,
    /// Print the final report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The end of a backfill range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToBlock {
    /// The snapshot block at start.
    Head,
    /// A block number.
    Block(u64),
}

fn parse_to(s: &str) -> Result<ToBlock, String> {
    if s == "head" {
        return Ok(ToBlock::Head);
    }
    s.parse()
        .map(ToBlock::Block)
        .map_err(|_| format!("{s:?} is neither a block number nor `head`"))
}

/// Talking to a running daemon instead of the local store.
#[derive(Debug, Args, Clone, Default)]
pub struct Remote {
    /// Ask the daemon at this URL instead of opening the data dir (which a running daemon
    /// holds), for example http://127.0.0.1:8640.
    #[arg(long, value_name = "URL")]
    pub api: Option<String>,
}

/// `nifty status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also recount every tree and compare with the counters (reads the whole store).
    #[arg(long)]
    pub audit: bool,
    /// Where to read from.
    #[command(flatten)]
    pub remote: Remote,
}

/// `nifty cursor ...`.
#[derive(Debug, Subcommand)]
pub enum CursorCommand {
    /// Show one cursor, or all of them.
    Show {
        /// Source (or backfill partition) name; all when omitted.
        name: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Where to read from.
        #[command(flatten)]
        remote: Remote,
    },
    /// Move a cursor forward (or create it): tokens before the position will not be scraped.
    Set(MoveArgs),
    /// Move a cursor backwards on purpose, to re-scrape from there. Tokens already stored
    /// are kept and are not stored twice.
    Rewind(MoveArgs),
}

/// Where to move a cursor.
#[derive(Debug, Args)]
pub struct MoveArgs {
    /// Source (or backfill partition) name.
    pub name: String,
    /// Block number: tokens of earlier blocks count as done.
    pub block: u64,
    /// Last done token id within BLOCK, as the subgraph writes it (`0x<contract>_<tokenId>`);
    /// omitted: none of BLOCK's tokens are done.
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// Move forward even when the source's head cannot be asked, or to a block past it:
    /// at most 100000 blocks past the head (or the last head known).
    #[arg(long)]
    pub force: bool,
    /// Where to write.
    #[command(flatten)]
    pub remote: Remote,
}

/// `nifty config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Write a commented config file with every key at its default.
    Init {
        /// Where to write it.
        #[arg(long, default_value = crate::config::DEFAULT_CONFIG_FILE, value_name = "FILE")]
        path: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Print the effective configuration (file + environment overrides); secrets are never
    /// part of it.
    Show,
}

/// `nifty pin` and `nifty follow`.
#[derive(Debug, Args, Clone, Default)]
pub struct PassArgs {
    /// Print one JSON object per pass instead of a summary line.
    #[arg(long)]
    pub json: bool,
    /// Stop taking new work after this many seconds (work in flight is committed).
    #[arg(long, value_name = "SECS")]
    pub budget: Option<u64>,
}

/// `nifty check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// A contract address (then give the token id too), or a CID.
    #[arg(value_name = "CONTRACT|CID")]
    pub what: String,
    /// The token id, in decimal or 0x hex.
    #[arg(value_name = "TOKEN_ID")]
    pub token_id: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Where to read from.
    #[command(flatten)]
    pub remote: Remote,
}

/// `nifty report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Only failures that happened within this span (`7d`, `12h`, `30m`).
    #[arg(long, value_name = "SPAN")]
    pub since: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Where to read from.
    #[command(flatten)]
    pub remote: Remote,
}
