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
    Backfill,
    /// Show or move source cursors.
    Cursor {
        /// The cursor action.
        #[command(subcommand)]
        action: CursorCommand,
    },
    /// Tokens, pins, sources, cursors and lag, read from the store's counters.
    Status(StatusArgs),
    /// Show a token's resources and pin status (`check CONTRACT TOKEN_ID`), or a CID's.
    Check,
    /// Failures grouped by stage and reason, with counts and examples.
    Report,
    /// One pass of analysis and pinning.
    Pin,
    /// One pass of pin status follow-up.
    Follow,
    /// Serve a simulated subgraph, IPFS Cluster and gateway on loopback.
    Devnet,
    /// Start devnet and the daemon with fast schedules, and open the dashboard.
    Demo,
    /// Configuration files.
    Config {
        /// The config action.
        #[command(subcommand)]
        action: ConfigCommand,
    },
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
