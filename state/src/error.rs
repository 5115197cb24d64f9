//! The state crate's one error type.

use std::path::PathBuf;

use crate::model::Position;

/// Everything that can go wrong reading or writing the store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Another process (usually a running daemon) holds the database.
    #[error("the data dir {dir} is in use by another nifty process{}", in_use_text(holder.as_ref()))]
    InUse {
        /// The data dir whose lock is held.
        dir: PathBuf,
        /// What the lock file says about its holder, when it says anything.
        holder: Option<crate::store::Holder>,
    },

    /// The data dir, or a folder above it, is a file.
    #[error(
        "cannot use data dir {dir}: {file} is a file, not a folder; give --data-dir (or \
         data_dir) a folder, which nifty creates if it is missing"
    )]
    NotAFolder {
        /// The data dir.
        dir: PathBuf,
        /// The file in the way (the data dir itself or one of its parents).
        file: PathBuf,
    },

    /// The data dir could not be created, locked or read.
    #[error("cannot use data dir {dir}: {source}{hint}", hint = io_hint(source.kind()))]
    DataDir {
        /// The data dir.
        dir: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The database was written by a nifty with a schema this build does not know.
    #[error(
        "the store in {dir} has schema version {found}, this nifty supports version {supported}; \
         use a matching nifty build"
    )]
    UnknownSchema {
        /// The data dir.
        dir: PathBuf,
        /// The version stored in the database.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },

    /// The database has data but no schema version: not a nifty store, or a damaged one.
    #[error(
        "the data dir {dir} holds a database without a nifty schema version; refusing to guess"
    )]
    MissingSchema {
        /// The data dir.
        dir: PathBuf,
    },

    /// sled itself failed (corruption, a bug); I/O failures are [`StateError::Io`].
    #[error("store I/O error: {0}")]
    Sled(#[from] sled::Error),

    /// Reading or writing the database failed (a full disk, a read-only or failing one).
    /// sled refuses every write after one, so the store stays unusable until the process
    /// restarts; what was committed before stays committed.
    // `error` is not marked as the source: the message already says it, and the command
    // line prints a whole chain of sources.
    #[error("data dir {dir}: {error}{hint}", hint = io_hint(error.kind()))]
    Io {
        /// The data dir.
        dir: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },

    /// The data dir's filesystem has less free space than the store keeps in reserve: bulk
    /// writes (pages, analysis results) wait until space returns, so sled never meets a
    /// full disk halfway through a write.
    #[error(
        "data dir {dir}: No space left on device: {available} bytes free, less than the \
         {reserve} bytes nifty keeps free (store.min_free_mb); nothing was written after the \
         last commit: free some space and nifty continues from there"
    )]
    DiskFull {
        /// The data dir.
        dir: PathBuf,
        /// Bytes free for nifty on its filesystem.
        available: u64,
        /// Bytes the store keeps free.
        reserve: u64,
    },

    /// A record could not be encoded (a bug: every record type is encodable).
    #[error("cannot encode {what}: {reason}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The encoder's complaint.
        reason: String,
    },

    /// A stored record could not be decoded.
    #[error("corrupt {tree} record at key {key}: {reason}")]
    Corrupt {
        /// The tree the record lives in.
        tree: &'static str,
        /// The key, hex encoded.
        key: String,
        /// What was wrong with it.
        reason: String,
    },

    /// A commit would move a cursor backwards; only an explicit rewind may.
    #[error(
        "cursor {source_name} is at {current}; moving it to {requested} would go backwards \
         (use `nifty cursor rewind` to do that on purpose)"
    )]
    CursorBackwards {
        /// The cursor's source name.
        source_name: String,
        /// Where the cursor is now.
        current: Position,
        /// Where the caller asked it to go.
        requested: Position,
    },

    /// A rewind asked for a position ahead of the cursor.
    #[error(
        "cursor {source_name} is at {current}; {requested} is ahead of it, so that is not a rewind \
         (use `nifty cursor set`)"
    )]
    NotARewind {
        /// The cursor's source name.
        source_name: String,
        /// Where the cursor is now.
        current: Position,
        /// Where the caller asked it to go.
        requested: Position,
    },

    /// A rewind named a cursor that does not exist.
    #[error("no cursor named {0:?} in the store")]
    NoSuchCursor(String),

    /// A token that the caller expected in the store is not there.
    #[error("no token {0} in the store")]
    NoSuchToken(String),

    /// A value given to the store is out of its domain (bad token id text, bad address...).
    #[error("invalid {what}: {}: {reason}", shown(value))]
    Invalid {
        /// What kind of value.
        what: &'static str,
        /// The value as given.
        value: String,
        /// Why it was refused.
        reason: String,
    },
}

impl StateError {
    /// True when trying the same operation again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StateError::InUse { .. }
                | StateError::Sled(sled::Error::Io(_))
                | StateError::DataDir { .. }
                | StateError::NotAFolder { .. }
                | StateError::DiskFull { .. }
        )
    }

    /// True when this process cannot use the store any more: it met an I/O error, after
    /// which sled refuses writes. A new process recovers the store as of its last commit.
    pub fn is_fatal(&self) -> bool {
        matches!(self, StateError::Io { .. })
    }
}

/// What an operator can do about an I/O error on the data dir, as a suffix of its message.
/// The rest of [`StateError::InUse`]'s message: who holds the dir and how to reach it.
fn in_use_text(holder: Option<&crate::store::Holder>) -> String {
    let pid = holder
        .and_then(|h| h.pid)
        .map(|p| format!(" (pid {p})"))
        .unwrap_or_default();
    match holder.and_then(|h| h.api.as_deref()) {
        Some(api) => format!(
            "{pid}, a daemon serving its API at {api}; stop it, or talk to it with `--api {api}` \
             (for example `nifty status --api {api}`)"
        ),
        None => format!(
            "{pid} that serves no API (a backfill, pin or other command, or a daemon still \
             starting); wait for it to finish or stop it"
        ),
    }
}

fn io_hint(kind: std::io::ErrorKind) -> &'static str {
    use std::io::ErrorKind;
    match kind {
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded => {
            "; the store keeps everything up to its last commit: free some space, then run nifty \
             again and it continues from there"
        }
        ErrorKind::ReadOnlyFilesystem | ErrorKind::PermissionDenied => {
            "; nifty needs write access to its data dir, even to read it (the store takes a \
             lock and its database opens read-write)"
        }
        _ => "",
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = StateError> = std::result::Result<T, E>;

/// The most characters of a refused value an error quotes.
pub const SHOWN_CHARS: usize = 80;

/// A value as an error quotes it: Debug-quoted, and cut at [`SHOWN_CHARS`] with its full
/// length said, so a megabyte of input never comes back in a message.
pub fn shown(value: &str) -> String {
    let n = value.chars().count();
    if n <= SHOWN_CHARS {
        return format!("{value:?}");
    }
    let head: String = value.chars().take(SHOWN_CHARS).collect();
    format!("{head:?}... ({} bytes)", value.len())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_long_value_is_cut_and_its_length_said() {
        assert_eq!(super::shown("0xab"), "\"0xab\"");
        let long = "z".repeat(1_000_000);
        let s = super::shown(&long);
        assert!(s.len() < 120 && s.ends_with("... (1000000 bytes)"), "{s}");
    }
}
