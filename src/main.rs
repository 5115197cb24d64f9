//! The `nifty` binary: parse, load config, set up logging, run the command.
#![deny(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = nifty::cli::Cli::parse();
    match nifty::run_cli(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of stdout went away (`nifty status | head -1`): nothing is wrong.
        Err(e) if nifty::output::is_closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            nifty::output::eprint(format_args!("error: {}\n", nifty::error_text(&e)));
            ExitCode::from(nifty::exit_code(&e))
        }
    }
}
