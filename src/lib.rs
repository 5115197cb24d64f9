//! The `nifty` binary's library: CLI, configuration, logging and the commands that wire the
//! state, scraper and pinner crates together. `main.rs` only parses and reports.
// Output goes through `output`, which returns write errors instead of panicking on them.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod api;
pub mod cli;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod devnet;
pub mod logging;
pub mod metrics;
pub mod output;
pub mod pinning;
pub mod remote;
pub mod scrape;

use cli::{Cli, Command, ConfigCommand};
use config::{Config, ConfigError};
use nifty_state::StateError;

/// Exit code of a bad command line or configuration (clap uses 2 for bad arguments too).
pub const EXIT_USAGE: u8 = 2;
/// Exit code when another process holds the data dir.
pub const EXIT_IN_USE: u8 = 3;
/// Exit code of any other failure.
pub const EXIT_FAILURE: u8 = 1;

/// The operator asked for something that cannot be done as asked. Exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// What was asked for is not in the store. Exit code 2 on the command line, 404 over HTTP.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotFound(pub String);

/// The process exit code for an error: 2 for usage and configuration, 3 for a store held
/// by another process, 4 for a pass stopped by an unavailable gateway or pinning backend,
/// 1 otherwise.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if cause.is::<ConfigError>() || cause.is::<UsageError>() || cause.is::<NotFound>() {
            return EXIT_USAGE;
        }
        if let Some(StateError::InUse { .. }) = cause.downcast_ref::<StateError>() {
            return EXIT_IN_USE;
        }
        if cause.is::<pinning::Outage>() {
            return pinning::EXIT_OUTAGE;
        }
    }
    EXIT_FAILURE
}

/// An error as one line: each cause after the first, unless the text so far already says
/// it (many errors repeat their source in their own message).
pub fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.is_empty() {
            text = part;
        } else if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
    }
    text
}

/// Loads configuration (file, environment, then command-line overrides).
pub fn load_config(cli: &Cli) -> Result<Config, ConfigError> {
    let mut config = Config::load(cli.config.as_deref(), &|k| std::env::var(k).ok())?;
    config.check_env_names(std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()))?;
    if let Some(d) = &cli.data_dir {
        config.data_dir = d.clone();
    }
    if let Some(f) = cli.log_format {
        config.log_format = f;
    }
    config.validate()?;
    Ok(config)
}

/// Runs a parsed command line and flushes what it printed: a failed flush is the
/// command's error unless the command failed already.
pub fn run_cli(cli: Cli) -> anyhow::Result<()> {
    let ran = run_command(cli);
    let flushed = output::flush();
    ran?;
    Ok(flushed?)
}

fn run_command(cli: Cli) -> anyhow::Result<()> {
    // Writing a config file must work when the current one is broken or absent.
    if let Command::Config {
        action: ConfigCommand::Init { path, force },
    } = &cli.command
    {
        return commands::config_init(path, *force);
    }
    let config = load_config(&cli)?;
    // The demo prints its own progress; its logs would drown it.
    let default_level = match cli.command {
        Command::Demo(_) => "warn",
        _ => "info",
    };
    logging::init_at(config.log_format, default_level);
    match &cli.command {
        Command::Status(args) => commands::status(&config, args),
        Command::Cursor { action } => commands::cursor(&config, action),
        Command::Config {
            action: ConfigCommand::Show,
        } => commands::config_show(&config),
        Command::Config {
            action: ConfigCommand::Init { .. },
        } => Ok(()),
        Command::Run => daemon::run(&config),
        Command::Backfill(args) => scrape::backfill(&config, args),
        Command::Check(args) => pinning::check(&config, args),
        Command::Report(args) => pinning::report(&config, args),
        Command::Pin(args) => pinning::pin(&config, args),
        Command::Follow(args) => pinning::follow(&config, args),
        Command::Devnet(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(devnet::run_devnet(args.clone()))
        }
        Command::Demo(args) => demo::demo(cli.data_dir.clone(), args),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn error_text_says_each_cause_once() {
        let io = || std::io::Error::from_raw_os_error(5);
        let e = anyhow::Error::from(StateError::DataDir {
            dir: "/d".into(),
            source: io(),
        })
        .context("backfill j stopped");
        assert_eq!(
            error_text(&e),
            "backfill j stopped: cannot use data dir /d: Input/output error (os error 5)"
        );
        let e = anyhow::Error::from(io())
            .context("writing x")
            .context("outer");
        assert_eq!(
            error_text(&e),
            "outer: writing x: Input/output error (os error 5)"
        );
    }
}
