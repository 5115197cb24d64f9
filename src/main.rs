//! The `nifty` binary: parse, load config, set up logging, run the command.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = nifty::cli::Cli::parse();
    match nifty::run_cli(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", nifty::error_text(&e));
            ExitCode::from(nifty::exit_code(&e))
        }
    }
}
