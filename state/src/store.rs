//! The store: one sled database, one process, every write that matters in one transaction.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::future::Future;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use serde::Serialize;
use sled::Transactional;
use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionalTree, UnabortableTransactionError,
};

mod chain;
mod pinning;
mod scrub;

pub use chain::Unwound;
pub use pinning::{AnalysisRecord, FailureEntry, PinUpdate};
pub use scrub::{Scrubbed, TextScrub};

use crate::counters::{self, Deltas};
use crate::error::{Result, StateError};
use crate::keys::{Address, OutboxKey, Queue, TokenKey, hex};
use crate::model::{
    Contract, Cursor, JobSettings, PinRecord, PinStatus, Position, RunOutcome, RunRecord, Token,
    TokenStatus, UnixMillis, WorkItem, decode, encode,
};

/// The schema version this build reads and writes. Bump it when a key layout or record
/// meaning changes in a way older builds would misread.
pub const SCHEMA_VERSION: u32 = 1;

/// The lock file inside the data dir; held (flock) for as long as a `Store` lives.
pub const LOCK_FILE: &str = "nifty.lock";

/// The sled database's folder inside the data dir.
const SLED_DIR: &str = "sled";

/// `meta` keys.
const META_SCHEMA: &[u8] = b"schema_version";
const META_SEQ_OUTBOX: &[u8] = b"seq/outbox";
const META_SEQ_RUNS: &[u8] = b"seq/runs";
/// `open_run/<id BE>`: a run that started and has not ended, so a restart finds runs a
/// killed process left open without searching the run records.
const META_OPEN_RUN: &[u8] = b"open_run/";

fn open_run_key(id: u64) -> Vec<u8> {
    let mut k = META_OPEN_RUN.to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// sled's page cache. 64 MiB keeps a backfill's working set (the newest key ranges) hot
/// while leaving the process well under its 100 MB budget.
pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// Free space the store keeps on its filesystem unless told otherwise: well above what sled
/// writes between two checks (a page commit, a few 512 KiB log segments, a snapshot), and
/// small next to any disk that holds a store.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 64 * 1024 * 1024;

/// How often a flush that has not finished looks at the disk and at the other threads.
const FLUSH_WATCH_EVERY: Duration = Duration::from_millis(200);

/// A flush pending this long while the filesystem has less than [`STALLED_FREE_BYTES`]
/// free is given up: after a log write fails for lack of space, sled 0.34 can leave a flush
/// waiting forever. A flush of a healthy disk takes milliseconds.
const FLUSH_STALL: Duration = Duration::from_secs(2);

/// "No room for one more log segment" (sled's segments are 512 KiB).
const STALLED_FREE_BYTES: u64 = 1024 * 1024;

/// How long [`Store::disk_bytes`] reuses a measurement. sled counts its size by reading
/// the size of each file it keeps large values in, and a long analysis queue makes many:
/// 967 files and 1.3 ms at 10M tokens (`benches/status_api.rs`), against 0.1 ms for the
/// whole of a status read without it.
pub const DISK_BYTES_MAX_AGE: Duration = Duration::from_secs(5);

/// How the store is opened.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Flush (fsync) after every commit, so an acknowledged commit survives a crash.
    /// Off only for benchmarks and throwaway stores: a crash may then lose the last
    /// half second of commits (still never half a commit).
    pub sync_commits: bool,
    /// sled's page cache size in bytes.
    pub cache_bytes: u64,
    /// Bulk writes (pages, analysis results) are refused with [`StateError::DiskFull`]
    /// while the data dir's filesystem has less than this free, so sled never runs out of
    /// space halfway through a write (it cannot go on after that without a restart).
    /// 0 turns the check off.
    pub min_free_bytes: u64,
    /// What removes secrets from the text the store keeps that may quote an upstream (run
    /// reasons, pin errors): applied to every such write, and once on open to what an
    /// earlier build stored (see `scrub`). `None` stores text as given.
    pub scrub: Option<TextScrub>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            sync_commits: true,
            cache_bytes: DEFAULT_CACHE_BYTES,
            min_free_bytes: DEFAULT_MIN_FREE_BYTES,
            scrub: None,
        }
    }
}

/// The first I/O error the database met. sled refuses writes after one and may leave a
/// flush waiting forever, so every later write fails at once instead of reaching sled.
#[derive(Debug, Default)]
struct Failure(OnceLock<(std::io::ErrorKind, Option<i32>, String)>);

impl Failure {
    /// Records `e` unless an earlier error is recorded; true when it was the first.
    fn set(&self, e: &std::io::Error) -> bool {
        self.0
            .set((e.kind(), e.raw_os_error(), e.to_string()))
            .is_ok()
    }

    /// The recorded error, as a new `io::Error`.
    fn get(&self) -> Option<std::io::Error> {
        self.0.get().map(|(kind, code, text)| match code {
            Some(c) => std::io::Error::from_raw_os_error(*c),
            None => std::io::Error::new(*kind, text.clone()),
        })
    }
}

/// sled hands on an I/O error that it met on another thread as a new error holding the
/// first one's debug text (`Os { code: 28, kind: StorageFull, message: "..." }`); this
/// turns that back into the OS error, so messages read "No space left on device (os error
/// 28)" however the error travelled.
fn plain_io_error(e: std::io::Error) -> std::io::Error {
    if e.raw_os_error().is_some() {
        return e;
    }
    let text = e.to_string();
    let code = text
        .split_once("code: ")
        .and_then(|(_, rest)| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<i32>().ok()
        })
        .filter(|_| text.starts_with("Os {"));
    match code {
        Some(c) => std::io::Error::from_raw_os_error(c),
        None => e,
    }
}

/// Removes snapshots sled began and never finished (`snap.<lsn>.generating`): sled 0.34
/// takes the newest file named `snap.*` as its snapshot, finished or not, and refuses to
/// open when that is an empty file a full disk left behind. A snapshot only shortens
/// recovery; the log holds every commit, and sled writes a new snapshot as it runs.
fn remove_unfinished_snapshots(sled_dir: &Path) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(sled_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            tracing::warn!(file = %entry.path().display(), "removing an unfinished sled snapshot");
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// The first part of `dir` (itself or a parent) that exists and is not a folder.
fn file_in_the_way(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .filter(|p| !p.as_os_str().is_empty())
        .find(|p| p.exists() || p.symlink_metadata().is_ok())
        .filter(|p| !p.is_dir())
        .map(Path::to_path_buf)
}

/// What the lock file says about the process holding the data dir: `pid N`, then
/// `api URL` once a daemon serves its API (older builds wrote only `pid N`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// The process id, when the file gives one.
    pub pid: Option<u32>,
    /// Where the holder's API answers, when it serves one.
    pub api: Option<String>,
}

impl Holder {
    /// This process, serving its API at `api` (or not).
    fn me(api: Option<String>) -> Holder {
        Holder {
            pid: Some(std::process::id()),
            api,
        }
    }

    /// Reads a lock file's text; `None` when it says nothing usable.
    pub fn parse(text: &str) -> Option<Holder> {
        let mut h = Holder {
            pid: None,
            api: None,
        };
        for line in text.lines() {
            let line = line.trim();
            if let Some(pid) = line.strip_prefix("pid ") {
                h.pid = pid.trim().parse().ok();
            }
            if let Some(url) = line.strip_prefix("api ") {
                let url = url.trim();
                // Only what a daemon writes: an http URL of printable characters.
                if url.starts_with("http://")
                    && url.len() < 200
                    && url.chars().all(|c| c.is_ascii_graphic())
                {
                    h.api = Some(url.to_owned());
                }
            }
        }
        (h.pid.is_some() || h.api.is_some()).then_some(h)
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(pid) = self.pid {
            writeln!(f, "pid {pid}")?;
        }
        if let Some(api) = &self.api {
            writeln!(f, "api {api}")?;
        }
        Ok(())
    }
}

/// Wakes the thread that polls a future by hand.
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// One page from a source, committed all at once.
#[derive(Clone, Debug)]
pub struct Page<'a> {
    /// The cursor's name (a source name, or `backfill/<job>/<k>`).
    pub cursor_name: &'a str,
    /// The cursor after this page.
    pub cursor: Cursor,
    /// The page's tokens, in source order.
    pub tokens: &'a [(TokenKey, Token)],
    /// Contracts first seen on this page.
    pub contracts: &'a [(Address, Contract)],
}

/// What a page commit did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageOutcome {
    /// Tokens new to the store (each queued for analysis).
    pub inserted: u64,
    /// Tokens already stored (by this or another source); left as they were.
    pub duplicates: u64,
}

/// A resource found by analysing a token: a CID to pin and the role it plays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    /// Root CID, binary form.
    pub cid: Vec<u8>,
    /// `metadata`, `image`, `animation_url`...
    pub role: String,
}

/// The counters a dashboard needs, read in O(number of counters), never O(tokens).
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Counts {
    /// Tokens stored.
    pub tokens: u64,
    /// Tokens per status name.
    pub tokens_by_status: BTreeMap<String, u64>,
    /// Tokens per source that first found them.
    pub tokens_by_source: BTreeMap<String, u64>,
    /// Contracts stored.
    pub contracts: u64,
    /// Distinct CIDs tracked.
    pub pins: u64,
    /// CIDs per pin status name.
    pub pins_by_status: BTreeMap<String, u64>,
    /// Outbox items waiting, per queue.
    pub outbox: BTreeMap<String, u64>,
    /// Tokens in a failure status, per `stage.reason`.
    pub failures: BTreeMap<String, u64>,
}

/// What [`Store::audit`] found by recounting every tree.
#[derive(Clone, Debug, Default)]
pub struct Audit {
    /// Tokens counted in the tree.
    pub tokens: u64,
    /// Counters that disagree with the trees: `(name, stored, counted)`.
    pub mismatches: Vec<(String, u64, u64)>,
    /// Outbox items that appear more than once.
    pub duplicate_outbox_items: u64,
}

impl Audit {
    /// True when counters and trees agree and nothing is duplicated.
    pub fn is_clean(&self) -> bool {
        self.mismatches.is_empty() && self.duplicate_outbox_items == 0
    }
}

/// The trees of DESIGN.md's data model, plus the default tree for `meta`.
#[derive(Clone)]
struct Trees {
    meta: sled::Tree,
    tokens: sled::Tree,
    contracts: sled::Tree,
    cursors: sled::Tree,
    pins: sled::Tree,
    outbox: sled::Tree,
    runs: sled::Tree,
    counters: sled::Tree,
    /// CID ‖ token key: the tokens each pin serves.
    pin_users: sled::Tree,
    /// CID: pins the follow-up pass must look at.
    pin_pending: sled::Tree,
    /// `stage.reason` ‖ 0 ‖ item → when it failed.
    failures: sled::Tree,
    /// A chain source's recent blocks and the tokens it stored from them (see `chain`).
    chain: sled::Tree,
    /// Backfill job name → the [`JobSettings`] it was started with. Jobs created by an
    /// older build have none.
    jobs: sled::Tree,
}

/// nifty's store. Cheap to clone; all clones share one database and one lock.
#[derive(Clone)]
pub struct Store {
    /// The data dir, for messages.
    dir: PathBuf,
    /// The database.
    db: sled::Db,
    /// Its trees.
    t: Trees,
    /// Whether to fsync after each commit.
    sync_commits: bool,
    /// Free bytes below which bulk writes are refused (0: never).
    min_free_bytes: u64,
    /// The first I/O error met, shared by all clones.
    failure: Arc<Failure>,
    /// Held for the store's lifetime; dropping the last clone releases it.
    _lock: Arc<File>,
    /// Serialises analysis records with pin completion, so a token analysed while its
    /// last pin completes is linked by one or the other (see `pinning`).
    link_lock: Arc<std::sync::Mutex<()>>,
    /// The last [`Store::size_on_disk`] and when it was measured, for [`Store::disk_bytes`].
    disk_bytes: Arc<std::sync::Mutex<Option<(Instant, u64)>>>,
    /// Removes secrets from stored upstream text.
    scrub: Option<TextScrub>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Turns an error raised inside a transaction closure into an abort.
fn abort<T>(e: StateError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

/// What a transaction closure returns.
type TxResult<T> = std::result::Result<T, ConflictableTransactionError<StateError>>;

/// [`decode`] inside a transaction: a bad record aborts it.
fn tx_decode<T: serde::de::DeserializeOwned>(
    tree: &'static str,
    key: &[u8],
    bytes: &[u8],
) -> TxResult<T> {
    decode(tree, key, bytes).map_err(ConflictableTransactionError::Abort)
}

/// [`encode`] inside a transaction: a failure aborts it.
fn tx_encode<T: Serialize>(what: &'static str, value: &T) -> TxResult<Vec<u8>> {
    encode(what, value).map_err(ConflictableTransactionError::Abort)
}

/// A transaction's error as the crate's; [`Store::io`] then names the data dir of an I/O
/// failure.
fn tx_result<T>(r: std::result::Result<T, TransactionError<StateError>>) -> Result<T> {
    r.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StateError::Sled(e),
    })
}

fn read_u64(bytes: Option<sled::IVec>) -> u64 {
    bytes
        .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

/// Reads and advances a sequence in `meta` inside a transaction.
fn next_seq(
    meta: &TransactionalTree,
    key: &[u8],
) -> std::result::Result<u64, UnabortableTransactionError> {
    let n = read_u64(meta.get(key)?);
    meta.insert(key, &(n + 1).to_be_bytes())?;
    Ok(n)
}

impl Store {
    /// Opens (creating if needed) the store in `dir`, taking its lock.
    ///
    /// Fails with [`StateError::InUse`] when another process holds it, and with
    /// [`StateError::UnknownSchema`] when it was written by an incompatible build.
    pub fn open(dir: &Path, opts: &StoreOptions) -> Result<Store> {
        let io = |source| StateError::DataDir {
            dir: dir.to_owned(),
            source,
        };
        if let Some(file) = file_in_the_way(dir) {
            return Err(StateError::NotAFolder {
                dir: dir.to_owned(),
                file,
            });
        }
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOCK_FILE))
            .map_err(io)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = lock.read_to_string(&mut holder);
                return Err(StateError::InUse {
                    dir: dir.to_owned(),
                    holder: Holder::parse(&holder),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        lock.set_len(0).map_err(io)?;
        lock.rewind().map_err(io)?;
        write!(lock, "{}", Holder::me(None)).map_err(io)?;
        // Only the lock's holder may touch sled's files.
        remove_unfinished_snapshots(&dir.join(SLED_DIR)).map_err(io)?;
        let (db, t) = Self::open_db(dir, opts).map_err(|e| match e {
            StateError::Sled(sled::Error::Io(e)) => StateError::Io {
                dir: dir.to_owned(),
                error: plain_io_error(e),
            },
            other => other,
        })?;
        let store = Store {
            dir: dir.to_owned(),
            db,
            t,
            sync_commits: opts.sync_commits,
            min_free_bytes: opts.min_free_bytes,
            failure: Arc::default(),
            _lock: Arc::new(lock),
            link_lock: Arc::default(),
            disk_bytes: Arc::default(),
            scrub: opts.scrub.clone(),
        };
        if let Some(done) = store.scrub_stored_text()? {
            tracing::info!(
                runs_scanned = done.runs.0,
                runs_scrubbed = done.runs.1,
                pins_scanned = done.pins.0,
                pins_scrubbed = done.pins.1,
                "removed secrets from stored run reasons and pin errors"
            );
        }
        Ok(store)
    }

    /// Opens the database and its trees, and checks (or writes) the schema version.
    fn open_db(dir: &Path, opts: &StoreOptions) -> Result<(sled::Db, Trees)> {
        let db = sled::Config::new()
            .path(dir.join(SLED_DIR))
            .cache_capacity(opts.cache_bytes)
            .flush_every_ms(Some(500))
            .mode(sled::Mode::HighThroughput)
            .open()?;
        let t = Trees {
            meta: (*db).clone(),
            tokens: db.open_tree("tokens")?,
            contracts: db.open_tree("contracts")?,
            cursors: db.open_tree("cursors")?,
            pins: db.open_tree("pins")?,
            outbox: db.open_tree("outbox")?,
            runs: db.open_tree("runs")?,
            counters: db.open_tree("counters")?,
            pin_users: db.open_tree("pin_users")?,
            pin_pending: db.open_tree("pin_pending")?,
            failures: db.open_tree("failures")?,
            chain: db.open_tree("chain")?,
            jobs: db.open_tree("jobs")?,
        };
        match t.meta.get(META_SCHEMA)? {
            Some(v) => {
                let found = <[u8; 4]>::try_from(v.as_ref())
                    .map(u32::from_be_bytes)
                    .map_err(|_| StateError::Corrupt {
                        tree: "meta",
                        key: hex(META_SCHEMA),
                        reason: "schema version is not 4 bytes".into(),
                    })?;
                if found != SCHEMA_VERSION {
                    return Err(StateError::UnknownSchema {
                        dir: dir.to_owned(),
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
            }
            None => {
                let all = [
                    &t.meta,
                    &t.tokens,
                    &t.contracts,
                    &t.cursors,
                    &t.pins,
                    &t.outbox,
                ];
                if all.iter().any(|tree| !tree.is_empty())
                    || !t.runs.is_empty()
                    || !t.counters.is_empty()
                {
                    return Err(StateError::MissingSchema {
                        dir: dir.to_owned(),
                    });
                }
                t.meta.insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes())?;
                db.flush()?;
            }
        }
        Ok((db, t))
    }

    /// Records in the lock file that this process serves its API at `url`, so another
    /// command that finds the data dir held can say where to reach it.
    pub fn announce_api(&self, url: &str) -> Result<()> {
        let io = |source| StateError::DataDir {
            dir: self.dir.clone(),
            source,
        };
        let mut f: &File = &self._lock;
        f.set_len(0).map_err(io)?;
        f.rewind().map_err(io)?;
        write!(f, "{}", Holder::me(Some(url.to_owned()))).map_err(io)?;
        Ok(())
    }

    /// The data dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes the database occupies on disk. Reads the size of every file sled keeps large
    /// values in, so it takes longer the bigger the store: status reads use
    /// [`Store::disk_bytes`].
    pub fn size_on_disk(&self) -> Result<u64> {
        Ok(self.db.size_on_disk()?)
    }

    /// [`Store::size_on_disk`] as measured at most [`DISK_BYTES_MAX_AGE`] ago: O(1) for
    /// all but one call in that time, so `/api/status` does not slow down as the store grows.
    pub fn disk_bytes(&self) -> Result<u64> {
        let mut last = self.disk_bytes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, bytes)) = *last
            && at.elapsed() < DISK_BYTES_MAX_AGE
        {
            return Ok(bytes);
        }
        let bytes = self.size_on_disk()?;
        *last = Some((Instant::now(), bytes));
        Ok(bytes)
    }

    fn durable(&self) -> Result<()> {
        if self.sync_commits {
            self.flush()?;
        }
        Ok(())
    }

    /// Names the data dir in an I/O error from sled and remembers the error, so later
    /// writes fail at once (see [`Failure`]). Other results pass unchanged.
    fn io<T>(&self, r: Result<T>) -> Result<T> {
        match r {
            Err(StateError::Sled(sled::Error::Io(e))) => Err(self.io_failure(e)),
            other => other,
        }
    }

    fn io_failure(&self, e: std::io::Error) -> StateError {
        let error = plain_io_error(e);
        if self.failure.set(&error) {
            // Dropping the database flushes it and joins sled's flusher thread, either of
            // which can wait forever on the failed log: this process never drops it.
            std::mem::forget(self.db.clone());
        }
        tracing::error!(dir = %self.dir.display(), %error, "the store met an I/O error; it takes no more writes until nifty restarts");
        StateError::Io {
            dir: self.dir.clone(),
            error,
        }
    }

    /// Fails when the store met an I/O error earlier (see [`Failure`]).
    fn writable(&self) -> Result<()> {
        match self.failure.get() {
            Some(error) => Err(StateError::Io {
                dir: self.dir.clone(),
                error,
            }),
            None => Ok(()),
        }
    }

    /// The I/O error that made this store refuse writes, if one did. A process that sees
    /// one should stop: only reopening the store (in a new process) recovers it.
    pub fn failure(&self) -> Option<StateError> {
        self.writable().err()
    }

    /// Bytes free for nifty on the data dir's filesystem, when the OS says.
    pub fn available_bytes(&self) -> Option<u64> {
        fs2::available_space(&self.dir).ok()
    }

    /// Fails with [`StateError::DiskFull`] when the filesystem has less free than the
    /// reserve: checked before bulk writes, never before the small records (run ends,
    /// cursor moves) that say why work stopped.
    fn has_room(&self) -> Result<()> {
        self.writable()?;
        if self.min_free_bytes == 0 {
            return Ok(());
        }
        match self.available_bytes() {
            Some(available) if available < self.min_free_bytes => Err(StateError::DiskFull {
                dir: self.dir.clone(),
                available,
                reserve: self.min_free_bytes,
            }),
            _ => Ok(()),
        }
    }

    /// Commits a page: its new tokens, one analysis outbox item listing them, new
    /// contracts, the advanced cursor and the counters, in one transaction. Tokens already
    /// stored are counted as duplicates and left alone. The cursor may not move backwards.
    pub fn commit_page(&self, page: &Page<'_>) -> Result<PageOutcome> {
        self.commit(page, None)
    }

    /// [`Store::commit_page`], and when `blocks` is given (a chain source's own cursor), in
    /// the same transaction: the block hashes it names and, for each token inserted, which
    /// block it came from and which outbox item queued it, so a reorg can take it back out
    /// ([`Store::unwind`]).
    fn commit(&self, page: &Page<'_>, blocks: Option<&[(u64, [u8; 32])]>) -> Result<PageOutcome> {
        self.has_room()?;
        // Encode outside the closure: sled may run it more than once.
        let cursor_bytes = encode("cursor", &page.cursor)?;
        let mut tokens = Vec::with_capacity(page.tokens.len());
        for (key, token) in page.tokens {
            tokens.push((*key, key.encode(), encode("token", token)?));
        }
        let mut contracts = Vec::with_capacity(page.contracts.len());
        for (addr, c) in page.contracts {
            contracts.push((addr.0, encode("contract", c)?));
        }
        let name = page.cursor_name;
        let t = &self.t;
        let r = (
            &t.meta,
            &t.tokens,
            &t.contracts,
            &t.cursors,
            &t.outbox,
            &t.counters,
            &t.chain,
        )
            .transaction(|(meta, tok, con, cur, outbox, cnt, chain)| {
                if let Some(old) = cur.get(name)? {
                    let old: Cursor = tx_decode("cursors", name.as_bytes(), &old)?;
                    if page.cursor.position < old.position {
                        return abort(StateError::CursorBackwards {
                            source_name: name.to_owned(),
                            current: old.position,
                            requested: page.cursor.position.clone(),
                        });
                    }
                }
                let mut d = Deltas::default();
                let mut outcome = PageOutcome::default();
                let mut inserted = Vec::with_capacity(tokens.len());
                let mut mint_blocks = Vec::new();
                // Most of a page shares source, status and reason: count runs, not tokens,
                // so counter names are built once per run.
                let mut run: Option<(&str, TokenStatus, Option<&str>, i64)> = None;
                for ((key, kbytes, value), (_, token)) in tokens.iter().zip(page.tokens) {
                    if tok.get(kbytes)?.is_some() {
                        outcome.duplicates += 1;
                        continue;
                    }
                    tok.insert(&kbytes[..], &value[..])?;
                    inserted.push(*key);
                    if blocks.is_some() {
                        mint_blocks.push(token.mint_block);
                    }
                    let this = (token.source.as_str(), token.status, token.reason.as_deref());
                    match &mut run {
                        Some((s, st, r, n)) if (*s, *st, *r) == this => *n += 1,
                        _ => {
                            if let Some((s, st, r, n)) = run.take() {
                                d.tokens_added(s, st, r, n);
                            }
                            run = Some((this.0, this.1, this.2, 1));
                        }
                    }
                }
                if let Some((s, st, r, n)) = run {
                    d.tokens_added(s, st, r, n);
                }
                outcome.inserted = inserted.len() as u64;
                if !inserted.is_empty() {
                    let seq = next_seq(meta, META_SEQ_OUTBOX)?;
                    for (key, block) in inserted.iter().zip(&mint_blocks) {
                        chain.insert(chain::token_entry(name, *block, key), &seq.to_be_bytes())?;
                    }
                    let item = tx_encode("outbox item", &WorkItem::Analyse(inserted))?;
                    outbox.insert(
                        &OutboxKey {
                            queue: Queue::Analyse,
                            seq,
                        }
                        .encode()[..],
                        item,
                    )?;
                    d.add(counters::outbox(Queue::Analyse), 1);
                }
                for (block, hash) in blocks.unwrap_or_default() {
                    chain.insert(chain::block_entry(name, *block), &hash[..])?;
                }
                for (addr, value) in &contracts {
                    if con.get(addr)?.is_none() {
                        con.insert(&addr[..], &value[..])?;
                        d.add(counters::CONTRACTS.to_owned(), 1);
                    }
                }
                cur.insert(name, &cursor_bytes[..])?;
                d.apply(cnt)?;
                Ok(outcome)
            });
        let out = self.io(tx_result(r))?;
        self.durable()?;
        Ok(out)
    }

    /// One cursor.
    pub fn cursor(&self, name: &str) -> Result<Option<Cursor>> {
        self.t
            .cursors
            .get(name)?
            .map(|v| decode("cursors", name.as_bytes(), &v))
            .transpose()
    }

    /// Every cursor, by name.
    pub fn cursors(&self) -> Result<Vec<(String, Cursor)>> {
        self.cursors_with_prefix("")
    }

    /// Moves a cursor forward (or creates it) by operator request.
    pub fn set_cursor(&self, name: &str, position: Position, now: UnixMillis) -> Result<Cursor> {
        self.move_cursor(name, position, now, false, None)
    }

    /// [`Store::set_cursor`] that also records the source's head block, just seen.
    pub fn set_cursor_seen(
        &self,
        name: &str,
        position: Position,
        head: u64,
        now: UnixMillis,
    ) -> Result<Cursor> {
        self.move_cursor(name, position, now, false, Some(head))
    }

    /// Moves a cursor backwards by explicit operator request. Tokens past the new position
    /// stay stored; re-scraping them finds them as duplicates, so nothing is stored twice.
    pub fn rewind_cursor(&self, name: &str, position: Position, now: UnixMillis) -> Result<Cursor> {
        self.move_cursor(name, position, now, true, None)
    }

    fn move_cursor(
        &self,
        name: &str,
        position: Position,
        now: UnixMillis,
        rewind: bool,
        head: Option<u64>,
    ) -> Result<Cursor> {
        self.writable()?;
        let r = self.t.cursors.transaction(|cur| {
            let old: Option<Cursor> = match cur.get(name)? {
                Some(v) => Some(tx_decode("cursors", name.as_bytes(), &v)?),
                None => None,
            };
            let mut next = match (old, rewind) {
                (None, true) => return abort(StateError::NoSuchCursor(name.to_owned())),
                (None, false) => Cursor::default(),
                (Some(old), true) if position > old.position => {
                    return abort(StateError::NotARewind {
                        source_name: name.to_owned(),
                        current: old.position,
                        requested: position.clone(),
                    });
                }
                (Some(old), false) if position < old.position => {
                    return abort(StateError::CursorBackwards {
                        source_name: name.to_owned(),
                        current: old.position,
                        requested: position.clone(),
                    });
                }
                (Some(old), _) => old,
            };
            next.position = position.clone();
            next.updated_ms = now;
            if head.is_some() {
                next.head = head;
            }
            cur.insert(name, tx_encode("cursor", &next)?)?;
            Ok(next)
        });
        let c = self.io(tx_result(r))?;
        self.durable()?;
        Ok(c)
    }

    /// Creates several cursors in one transaction (a backfill job's partitions), refusing
    /// if any of them exists already.
    pub fn create_cursors(&self, cursors: &[(String, Cursor)]) -> Result<()> {
        let mut encoded = Vec::with_capacity(cursors.len());
        for (name, c) in cursors {
            encoded.push((name.as_str(), encode("cursor", c)?));
        }
        self.writable()?;
        let r = self.t.cursors.transaction(|cur| {
            for (name, bytes) in &encoded {
                if cur.get(name)?.is_some() {
                    return abort(StateError::Invalid {
                        what: "cursor",
                        value: (*name).to_owned(),
                        reason: "exists already".into(),
                    });
                }
                cur.insert(*name, &bytes[..])?;
            }
            Ok(())
        });
        self.io(tx_result(r))?;
        self.durable()
    }

    /// Creates a backfill job: its cursors and the settings it was started with, in one
    /// transaction, refusing if any of the cursors (or a settings record of that job)
    /// exists already.
    pub fn create_job(
        &self,
        job: &str,
        settings: &JobSettings,
        cursors: &[(String, Cursor)],
    ) -> Result<()> {
        let mut encoded = Vec::with_capacity(cursors.len());
        for (name, c) in cursors {
            encoded.push((name.as_str(), encode("cursor", c)?));
        }
        let settings = encode("job settings", settings)?;
        self.writable()?;
        let t = &self.t;
        let r = (&t.cursors, &t.jobs).transaction(|(cur, jobs)| {
            let exists = |what: &'static str, name: &str| {
                abort(StateError::Invalid {
                    what,
                    value: name.to_owned(),
                    reason: "exists already".into(),
                })
            };
            if jobs.get(job)?.is_some() {
                return exists("backfill job", job);
            }
            for (name, bytes) in &encoded {
                if cur.get(name)?.is_some() {
                    return exists("cursor", name);
                }
                cur.insert(*name, &bytes[..])?;
            }
            jobs.insert(job, &settings[..])?;
            Ok(())
        });
        self.io(tx_result(r))?;
        self.durable()
    }

    /// The settings a backfill job was started with; `None` for a job created before they
    /// were kept (or no such job).
    pub fn job_settings(&self, job: &str) -> Result<Option<JobSettings>> {
        self.t
            .jobs
            .get(job)?
            .map(|v| decode("jobs", job.as_bytes(), &v))
            .transpose()
    }

    /// Work stealing: in one transaction, shrinks `victim`'s end to `victim_end` and
    /// creates `thief` covering what the victim gave up. A crash leaves either both or
    /// neither, so no block range is lost or owned twice. Call [`Store::flush`] after
    /// applying the split in memory.
    pub fn split_cursor(
        &self,
        victim: &str,
        victim_end: u64,
        thief: &str,
        thief_cursor: &Cursor,
    ) -> Result<()> {
        let thief_bytes = encode("cursor", thief_cursor)?;
        self.writable()?;
        let r = self.t.cursors.transaction(|cur| {
            let Some(v) = cur.get(victim)? else {
                return abort(StateError::NoSuchCursor(victim.to_owned()));
            };
            let mut c: Cursor = tx_decode("cursors", victim.as_bytes(), &v)?;
            if cur.get(thief)?.is_some() {
                return abort(StateError::Invalid {
                    what: "cursor",
                    value: thief.to_owned(),
                    reason: "exists already".into(),
                });
            }
            c.end = Some(victim_end);
            cur.insert(victim, tx_encode("cursor", &c)?)?;
            cur.insert(thief, &thief_bytes[..])?;
            Ok(())
        });
        // Not flushed here: the caller first applies the split in memory (the transaction
        // has committed, so memory must follow it whatever the flush does), then flushes.
        self.io(tx_result(r))
    }

    /// Makes every commit so far durable (fsync). Gives up with [`StateError::Io`] when
    /// the flush waits on a disk that has run out of space (see [`FLUSH_STALL`]) or another
    /// thread met an I/O error meanwhile, rather than waiting forever.
    pub fn flush(&self) -> Result<()> {
        self.writable()?;
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut flush = std::pin::pin!(self.db.flush_async());
        let started = Instant::now();
        loop {
            if let Poll::Ready(r) = flush.as_mut().poll(&mut cx) {
                return self.io(r.map(drop).map_err(StateError::from));
            }
            std::thread::park_timeout(FLUSH_WATCH_EVERY);
            self.writable()?;
            if started.elapsed() >= FLUSH_STALL
                && self
                    .available_bytes()
                    .is_some_and(|free| free < STALLED_FREE_BYTES)
            {
                return Err(self.io_failure(std::io::Error::new(
                    std::io::ErrorKind::StorageFull,
                    "No space left on device: a write to the store's log did not finish",
                )));
            }
        }
    }

    /// Cursors whose names start with `prefix` (a backfill job's partitions), by name.
    pub fn cursors_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Cursor)>> {
        let mut out = vec![];
        for kv in self.t.cursors.scan_prefix(prefix) {
            let (k, v) = kv?;
            out.push((
                String::from_utf8_lossy(&k).into_owned(),
                decode("cursors", &k, &v)?,
            ));
        }
        Ok(out)
    }

    /// A token by contract and id.
    pub fn token(&self, key: &TokenKey) -> Result<Option<Token>> {
        let k = key.encode();
        self.t
            .tokens
            .get(k)?
            .map(|v| decode("tokens", &k, &v))
            .transpose()
    }

    /// A contract.
    pub fn contract(&self, addr: &Address) -> Result<Option<Contract>> {
        self.t
            .contracts
            .get(addr.0)?
            .map(|v| decode("contracts", &addr.0, &v))
            .transpose()
    }

    /// A pin record by binary CID.
    pub fn pin(&self, cid: &[u8]) -> Result<Option<PinRecord>> {
        self.t
            .pins
            .get(cid)?
            .map(|v| decode("pins", cid, &v))
            .transpose()
    }

    /// Visits every stored token in key order (for audits, exports and tests; never for a
    /// dashboard read).
    pub fn for_each_token(&self, mut f: impl FnMut(TokenKey, Token)) -> Result<()> {
        for kv in self.t.tokens.iter() {
            let (k, v) = kv?;
            f(TokenKey::decode(&k)?, decode("tokens", &k, &v)?);
        }
        Ok(())
    }

    /// Up to `limit` items from the front of a queue, oldest first. They stay queued until
    /// acknowledged, so a crash between take and ack repeats them (handlers are idempotent).
    pub fn outbox_take(&self, queue: Queue, limit: usize) -> Result<Vec<(OutboxKey, WorkItem)>> {
        let mut out = Vec::with_capacity(limit.min(4096));
        for kv in self.t.outbox.scan_prefix([queue.tag()]).take(limit) {
            let (k, v) = kv?;
            out.push((OutboxKey::decode(&k)?, decode("outbox", &k, &v)?));
        }
        Ok(out)
    }

    /// Up to `limit` items of a queue after `after` (from the front when `None`), oldest
    /// first: lets a pass stream through a queue while earlier items are still in flight.
    pub fn outbox_after(
        &self,
        queue: Queue,
        after: Option<OutboxKey>,
        limit: usize,
    ) -> Result<Vec<(OutboxKey, WorkItem)>> {
        let start = match after {
            Some(k) if k.queue == queue => k.encode(),
            _ => return self.outbox_take(queue, limit),
        };
        let end = [queue.tag() + 1];
        let mut out = Vec::with_capacity(limit.min(4096));
        let range = self.t.outbox.range::<&[u8], _>((
            std::ops::Bound::Excluded(&start[..]),
            std::ops::Bound::Excluded(&end[..]),
        ));
        for kv in range.take(limit) {
            let (k, v) = kv?;
            out.push((OutboxKey::decode(&k)?, decode("outbox", &k, &v)?));
        }
        Ok(out)
    }

    /// Removes handled items. Keys already gone are ignored, so a repeated ack is harmless.
    pub fn outbox_ack(&self, keys: &[OutboxKey]) -> Result<u64> {
        self.writable()?;
        let encoded: Vec<(Queue, [u8; 9])> = keys.iter().map(|k| (k.queue, k.encode())).collect();
        let t = &self.t;
        let r = (&t.outbox, &t.counters).transaction(|(outbox, cnt)| {
            let mut d = Deltas::default();
            let mut removed = 0;
            for (queue, k) in &encoded {
                if outbox.remove(&k[..])?.is_some() {
                    d.add(counters::outbox(*queue), -1);
                    removed += 1;
                }
            }
            d.apply(cnt)?;
            Ok(removed)
        });
        let n = self.io(tx_result(r))?;
        self.durable()?;
        Ok(n)
    }

    /// Starts a run record and returns its id.
    pub fn start_run(&self, job: &str, started_ms: UnixMillis) -> Result<u64> {
        let rec = RunRecord {
            job: job.to_owned(),
            started_ms,
            ended_ms: None,
            outcome: RunOutcome::Running,
            pages: 0,
            items: 0,
            errors: 0,
        };
        let rec = encode("run", self.scrub_run(&rec).as_ref().unwrap_or(&rec))?;
        self.writable()?;
        let t = &self.t;
        let r = (&t.meta, &t.runs).transaction(|(meta, runs)| {
            let id = next_seq(meta, META_SEQ_RUNS)?;
            runs.insert(&id.to_be_bytes(), &rec[..])?;
            meta.insert(open_run_key(id), &[][..])?;
            Ok(id)
        });
        let id = self.io(tx_result(r))?;
        self.durable()?;
        Ok(id)
    }

    /// Writes a run's final (or interim) record; a final one closes the run.
    pub fn finish_run(&self, id: u64, record: &RunRecord) -> Result<()> {
        let rec = encode("run", self.scrub_run(record).as_ref().unwrap_or(record))?;
        let open = record.outcome == RunOutcome::Running;
        self.writable()?;
        let t = &self.t;
        let r = (&t.meta, &t.runs).transaction(|(meta, runs)| {
            runs.insert(&id.to_be_bytes(), &rec[..])?;
            if open {
                meta.insert(open_run_key(id), &[][..])?;
            } else {
                meta.remove(open_run_key(id))?;
            }
            Ok(())
        });
        self.io(tx_result(r))?;
        self.durable()
    }

    /// The runs started and not ended, oldest first: after a restart, those a killed
    /// process left behind. O(open runs).
    pub fn open_runs(&self) -> Result<Vec<(u64, RunRecord)>> {
        let mut out = vec![];
        for kv in self.t.meta.scan_prefix(META_OPEN_RUN) {
            let (k, _) = kv?;
            let id = read_u64(Some(sled::IVec::from(&k[META_OPEN_RUN.len()..])));
            if let Some(v) = self.t.runs.get(id.to_be_bytes())? {
                out.push((id, decode("runs", &id.to_be_bytes(), &v)?));
            } else {
                // Pruned while open: nothing left to close.
                self.t.meta.remove(&k)?;
            }
        }
        Ok(out)
    }

    /// The newest runs first, at most `limit`.
    pub fn runs(&self, limit: usize) -> Result<Vec<(u64, RunRecord)>> {
        let mut out = vec![];
        for kv in self.t.runs.iter().rev().take(limit) {
            let (k, v) = kv?;
            let id = read_u64(Some(k.clone()));
            out.push((id, decode("runs", &k, &v)?));
        }
        Ok(out)
    }

    /// Removes all but the newest `keep` run records (run ids are sequential, so this
    /// reads only the records it removes). Returns how many went.
    pub fn prune_runs(&self, keep: u64) -> Result<u64> {
        let Some((last, _)) = self.t.runs.last()? else {
            return Ok(0);
        };
        let cutoff = read_u64(Some(last)).saturating_sub(keep.saturating_sub(1));
        let mut removed = 0;
        for kv in self.t.runs.range(..cutoff.to_be_bytes()) {
            let (k, _) = kv?;
            self.t.runs.remove(k)?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Every counter, by name. Reads only the `counters` tree, whose size does not grow
    /// with the number of tokens.
    pub fn counters(&self) -> Result<BTreeMap<String, u64>> {
        let mut out = BTreeMap::new();
        for kv in self.t.counters.iter() {
            let (k, v) = kv?;
            out.insert(String::from_utf8_lossy(&k).into_owned(), read_u64(Some(v)));
        }
        Ok(out)
    }

    /// The dashboard's numbers, from counters only.
    pub fn counts(&self) -> Result<Counts> {
        Ok(counters::fold(&self.counters()?))
    }

    /// Recounts every tree and compares with the counters. O(store size): for tests, the
    /// crash loop and `nifty status --audit`, never for a dashboard.
    pub fn audit(&self) -> Result<Audit> {
        let mut d = Deltas::default();
        let mut tokens = 0;
        let mut refs: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        for kv in self.t.tokens.iter() {
            let (k, v) = kv?;
            let token: Token = decode("tokens", &k, &v)?;
            d.tokens_added(&token.source, token.status, token.reason.as_deref(), 1);
            for cid in token.resources {
                *refs.entry(cid).or_default() += 1;
            }
            tokens += 1;
        }
        let mut mismatches = vec![];
        for _ in self.t.contracts.iter() {
            d.add(counters::CONTRACTS.to_owned(), 1);
        }
        for kv in self.t.pins.iter() {
            let (k, v) = kv?;
            let pin: PinRecord = decode("pins", &k, &v)?;
            let counted = refs.remove(k.as_ref()).unwrap_or(0);
            if pin.refs != counted {
                mismatches.push((format!("pins.refs.{}", hex(&k)), pin.refs, counted));
            }
            d.add(counters::PINS.to_owned(), 1);
            d.add(counters::pin_status(pin.status), 1);
            if pin.status == PinStatus::Failed {
                d.pin_failure(pin.reason(), 1);
            }
        }
        mismatches.extend(self.audit_pin_indexes()?);
        // The failures index holds exactly what the failure counters count.
        let mut indexed: BTreeMap<String, u64> = BTreeMap::new();
        for kv in self.t.failures.iter() {
            let (k, _) = kv?;
            let name = k.split(|&b| b == 0).next().unwrap_or_default();
            *indexed
                .entry(format!("failures.{}", String::from_utf8_lossy(name)))
                .or_default() += 1;
        }
        // An item is duplicated when any token or CID it names is named by another item.
        let mut seen_tokens = std::collections::HashSet::new();
        let mut seen_cids = std::collections::HashSet::new();
        let mut duplicate_outbox_items = 0;
        for kv in self.t.outbox.iter() {
            let (k, v) = kv?;
            let key = OutboxKey::decode(&k)?;
            let item: WorkItem = decode("outbox", &k, &v)?;
            d.add(counters::outbox(key.queue), 1);
            // Every key is recorded, even after a duplicate is found in the same item.
            let fresh = match item {
                WorkItem::Analyse(keys) => {
                    let mut fresh = true;
                    for t in keys {
                        fresh &= seen_tokens.insert(t);
                    }
                    fresh
                }
                WorkItem::Pin(cid) => seen_cids.insert(cid),
            };
            if !fresh {
                duplicate_outbox_items += 1;
            }
        }
        let counted = d.into_map();
        for (cid, n) in refs {
            mismatches.push((format!("pins.refs.{}", hex(&cid)), 0, n));
        }
        let stored = self.counters()?;
        let failure_names: std::collections::BTreeSet<&String> = indexed
            .keys()
            .chain(stored.keys().filter(|n| n.starts_with("failures.")))
            .collect();
        for name in failure_names {
            let (i, s) = (
                indexed.get(name).copied().unwrap_or(0),
                stored.get(name).copied().unwrap_or(0),
            );
            if i != s {
                mismatches.push((format!("index.{name}"), s, i));
            }
        }
        let names: std::collections::BTreeSet<&String> =
            counted.keys().chain(stored.keys()).collect();
        for name in names {
            let s = stored.get(name).copied().unwrap_or(0);
            let c = counted.get(name).copied().unwrap_or(0).max(0) as u64;
            if s != c {
                mismatches.push((name.clone(), s, c));
            }
        }
        Ok(Audit {
            tokens,
            mismatches,
            duplicate_outbox_items,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn io_errors_relayed_by_sled_read_as_the_os_error() {
        use std::io::{Error, ErrorKind};
        let relayed = |text: &str| Error::new(ErrorKind::StorageFull, text.to_owned());
        let cases: Vec<(Error, &str)> = vec![
            (
                relayed(
                    r#"Os { code: 28, kind: StorageFull, message: "No space left on device" }"#,
                ),
                "No space left on device (os error 28)",
            ),
            (
                relayed(
                    r#"Os { code: 30, kind: ReadOnlyFilesystem, message: "Read-only file system" }"#,
                ),
                "Read-only file system (os error 30)",
            ),
            (
                Error::from_raw_os_error(5),
                "Input/output error (os error 5)",
            ),
            (
                relayed("code: 28 but not sled's text"),
                "code: 28 but not sled's text",
            ),
            (relayed("Os { code: x }"), "Os { code: x }"),
        ];
        for (input, want) in cases {
            assert_eq!(plain_io_error(input).to_string(), want);
        }
    }
}
