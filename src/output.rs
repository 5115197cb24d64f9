//! Everything the binary prints goes through here, so that a closed pipe or a full disk
//! behind stdout is an error the command returns, never a panic.
//!
//! Commands print with [`outln!`] and [`out!`], which return `Result<(), StdoutError>`, and
//! `?` it. [`crate::run_cli`] flushes at the end of every command. `main` then ends a
//! command whose reader went away (`nifty status | head -1`) quietly with exit code 0, and
//! any other write error with one line on stderr and exit code 1. Lines for stderr go
//! through [`errln!`], which drops a write error: there is nowhere left to report it.

use std::fmt;
use std::io::{self, Write as _};

/// stdout could not be written or flushed.
#[derive(Debug, thiserror::Error)]
#[error("cannot write to stdout: {0}")]
pub struct StdoutError(io::Error);

impl StdoutError {
    /// Whether the reader of a pipe went away: nobody wants the rest of the output.
    pub fn is_closed_pipe(&self) -> bool {
        self.0.kind() == io::ErrorKind::BrokenPipe
    }
}

/// Writes `args` to stdout. Use [`out!`] and [`outln!`] rather than calling this.
///
/// The text is formatted first and written in one call: stdout's line buffer then passes
/// whole lines straight through, so a failed write leaves nothing behind in it for the
/// flush at the end to fail on a second time.
pub fn print(args: fmt::Arguments<'_>) -> Result<(), StdoutError> {
    let text = fmt::format(args);
    io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(StdoutError)
}

/// Flushes stdout, which holds back a partial line (and, when it cannot write, more).
pub fn flush() -> Result<(), StdoutError> {
    io::stdout().lock().flush().map_err(StdoutError)
}

/// Writes `args` to stderr, ignoring a failure to do so.
pub fn eprint(args: fmt::Arguments<'_>) {
    let _ = io::stderr().lock().write_fmt(args);
}

/// Whether `e` is stdout's reader having gone away, which ends a command quietly.
pub fn is_closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<StdoutError>()
            .is_some_and(StdoutError::is_closed_pipe)
    })
}

/// `print!` that returns the write error instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::print(format_args!($($arg)*))
    };
}

/// `println!` that returns the write error instead of panicking.
macro_rules! outln {
    () => {
        $crate::output::print(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::print(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprintln!` that ignores a stderr it cannot write to instead of panicking.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::output::eprint(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {errln, out, outln};
