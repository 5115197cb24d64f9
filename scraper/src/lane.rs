//! What every source shares: the client of a source, the run context, lanes (one cursor and
//! the block range it pages), and the scheduled run of a source's own cursor.
//!
//! A plain source run is one lane whose end is the snapshot block; a backfill is several
//! lanes whose ends may shrink while they run (work stealing). Each source pages a lane its
//! own way (`graph::lane`, `rpc::lane`); commits of one lane stay strictly in order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::time::Instant;

use nifty_state::{Cursor, Page, Position, Store};
use tokio::sync::watch;
use tracing::{debug, info};

use crate::error::{Result, ScrapeError};
use crate::graph::GraphClient;
use crate::graph::client::ClientStats;
use crate::paging::is_finished;
use crate::rpc::ChainClient;

/// The block a run pages: the head minus confirmations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The source's head when asked.
    pub head: u64,
    /// The last block the run may commit (for a subgraph, every query's `block: { number }`).
    pub block: u64,
}

/// A source's client: a subgraph or a chain node. Cheap to clone.
// One per run, cloned per lane: the size difference costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Client {
    /// An ERC-721 subgraph.
    Graph(GraphClient),
    /// A chain's JSON-RPC node.
    Rpc(ChainClient),
}

impl From<GraphClient> for Client {
    fn from(c: GraphClient) -> Self {
        Client::Graph(c)
    }
}

impl From<ChainClient> for Client {
    fn from(c: ChainClient) -> Self {
        Client::Rpc(c)
    }
}

impl Client {
    /// The head and the snapshot block `confirmations` behind it.
    pub async fn snapshot(&self, confirmations: u64) -> Result<Snapshot> {
        match self {
            Client::Graph(g) => g.snapshot(confirmations).await,
            Client::Rpc(c) => c.snapshot(confirmations).await,
        }
    }

    /// The endpoint, safe to print.
    pub fn endpoint(&self) -> &str {
        match self {
            Client::Graph(g) => g.endpoint(),
            Client::Rpc(c) => c.endpoint(),
        }
    }

    /// Traffic counters.
    pub fn stats(&self) -> &ClientStats {
        match self {
            Client::Graph(g) => g.stats(),
            Client::Rpc(c) => c.stats(),
        }
    }
}

/// Counters a progress display reads while a scrape runs.
#[derive(Debug, Default)]
pub struct Progress {
    /// Tokens newly stored.
    pub tokens: AtomicU64,
    /// Tokens seen that were stored already.
    pub duplicates: AtomicU64,
    /// Pages committed.
    pub pages: AtomicU64,
}

/// What every lane of a run shares.
#[derive(Clone)]
pub struct Ctx {
    /// The store pages commit to.
    pub store: Store,
    /// The source's client.
    pub client: Client,
    /// The source name recorded on each token.
    pub source: String,
    /// Rows asked per alias (subgraph); the starting block span of a log query (chain).
    pub page_size: u32,
    /// Live counters.
    pub progress: Arc<Progress>,
    /// The clock, in ms since the epoch (injected so tests control time).
    pub now_ms: fn() -> u64,
}

/// Why a lane stopped without an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Everything up to the lane's end is committed.
    Finished,
    /// The run's time budget was spent; stopped after a commit.
    Budget,
    /// Shutdown was asked for; stopped after a commit.
    Shutdown,
}

/// A lane's state that changes only under its mutex, so a commit and a split of the same
/// lane never interleave.
#[derive(Debug, Clone)]
pub struct LaneState {
    /// Everything at or before this is committed.
    pub position: Position,
    /// A worker is paging this lane.
    pub taken: bool,
}

/// One cursor and the range it pages.
#[derive(Debug)]
pub struct Lane {
    /// The cursor's name in the store.
    pub name: String,
    /// Whether the cursor record carries `end` (backfill partitions) or follows the head.
    pub bounded: bool,
    /// Position and claim.
    state: Mutex<LaneState>,
    /// The last block this lane may commit. Changed only while holding `state`; read
    /// without it, so asking for the next page never waits for a commit in progress.
    end: AtomicU64,
    /// The cursor's block after the last commit, mirrored for lock-free progress reads.
    at_block: AtomicU64,
}

impl Lane {
    /// A lane at `position` that may commit up to `end`.
    pub fn new(name: String, bounded: bool, position: Position, end: u64) -> Self {
        let at = position.block;
        Lane {
            name,
            bounded,
            state: Mutex::new(LaneState {
                position,
                taken: false,
            }),
            end: AtomicU64::new(end),
            at_block: AtomicU64::new(at),
        }
    }

    /// Locks the state. A panic elsewhere while holding the lock leaves the state as it
    /// was at the last commit, which is still true, so poisoning is ignored.
    pub fn lock(&self) -> MutexGuard<'_, LaneState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The last block this lane may commit.
    pub fn end(&self) -> u64 {
        self.end.load(Ordering::Acquire)
    }

    /// Shrinks the end; the caller holds the lock (`_held`), so no commit is under way.
    pub fn set_end(&self, _held: &MutexGuard<'_, LaneState>, end: u64) {
        self.end.store(end, Ordering::Release);
    }

    /// The cursor record of a commit up to `position` at `snap`, with the lane's current end
    /// when it is bounded. Called under the lane's lock.
    pub(crate) fn cursor_at(&self, ctx: &Ctx, snap: Snapshot, position: &Position) -> Cursor {
        Cursor {
            position: position.clone(),
            snapshot: Some(snap.block),
            head: Some(snap.head),
            end: self.bounded.then_some(self.end()),
            updated_ms: (ctx.now_ms)(),
        }
    }

    /// After a commit up to `position` landed: moves the lane there (releasing the lock the
    /// caller held for the commit) and counts the page in the run's progress.
    pub(crate) fn committed(
        &self,
        ctx: &Ctx,
        mut held: MutexGuard<'_, LaneState>,
        position: &Position,
        inserted: u64,
        duplicates: u64,
    ) {
        held.position = position.clone();
        self.at_block.store(position.block, Ordering::Release);
        drop(held);
        let p = &ctx.progress;
        p.tokens.fetch_add(inserted, Ordering::Relaxed);
        p.duplicates.fetch_add(duplicates, Ordering::Relaxed);
        p.pages.fetch_add(1, Ordering::Relaxed);
        debug!(cursor = %self.name, position = %position, inserted, duplicates, "page committed");
    }

    /// Blocks this lane has not committed yet; never waits for a commit.
    pub fn blocks_left(&self) -> u64 {
        let (at, end) = (self.at_block.load(Ordering::Acquire), self.end());
        if at > end { 0 } else { end - at + 1 }
    }
}

/// A commit in flight; it answers whether the lane is finished.
pub(crate) type Pending = tokio::task::JoinHandle<Result<bool>>;

/// Resolves once `true` is sent. A dropped sender means nobody can ask any more: never.
pub async fn stop_requested(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

pub(crate) async fn settle(pending: Option<Pending>) -> Result<Option<bool>> {
    match pending {
        None => Ok(None),
        Some(h) => match h.await {
            Ok(r) => r.map(Some),
            Err(e) => Err(ScrapeError::Invalid(format!("commit task failed: {e}"))),
        },
    }
}

/// Pages `lane` at `snap` until it is finished, the deadline passes or shutdown is asked
/// (both checked after each commit), or an error that retries did not clear.
pub async fn run_lane(
    ctx: &Ctx,
    lane: &Arc<Lane>,
    snap: Snapshot,
    deadline: Option<Instant>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Stop> {
    match &ctx.client {
        Client::Graph(g) => crate::graph::lane::run(ctx, g, lane, snap, deadline, shutdown).await,
        Client::Rpc(c) => crate::rpc::lane::run(ctx, c, lane, snap, deadline, shutdown).await,
    }
}

/// A scheduled run of a source: one lane on the source's own cursor, up to the snapshot.
/// Takes a new snapshot (up to three times) when the subgraph stops serving the old one;
/// a chain source first checks its recent blocks for a reorg.
pub async fn scrape_source(
    ctx: &Ctx,
    start_block: u64,
    confirmations: u64,
    deadline: Option<Instant>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Stop> {
    const RESNAPSHOTS: u32 = 3;
    let mut tries = 0;
    loop {
        // A shutdown during the snapshot's request (or its retries) stops at once: nothing
        // has been fetched that would need committing.
        let snap = tokio::select! {
            r = ctx.client.snapshot(confirmations) => r?,
            _ = stop_requested(shutdown) => return Ok(Stop::Shutdown),
        };
        if let Client::Rpc(chain) = &ctx.client {
            // Blocks committed earlier may have been replaced since: take their tokens back
            // out and page the new ones.
            tokio::select! {
                r = crate::rpc::reorg::check(ctx, chain) => { r?; }
                _ = stop_requested(shutdown) => return Ok(Stop::Shutdown),
            }
        }
        let position = match ctx.store.cursor(&ctx.source)? {
            Some(c) => c.position,
            None => Position::start_of(start_block),
        };
        info!(source = %ctx.source, cursor = %position, head = snap.head, snapshot = snap.block, "scrape run");
        if is_finished(&position, snap.block) {
            // Nothing new is final yet; still record the head seen, so lag stays true.
            let cursor = Cursor {
                position,
                snapshot: Some(snap.block),
                head: Some(snap.head),
                end: None,
                updated_ms: (ctx.now_ms)(),
            };
            let page = Page {
                cursor_name: &ctx.source,
                cursor,
                tokens: &[],
                contracts: &[],
            };
            ctx.store.commit_page(&page)?;
            return Ok(Stop::Finished);
        }
        let lane = Arc::new(Lane::new(ctx.source.clone(), false, position, snap.block));
        match run_lane(ctx, &lane, snap, deadline, shutdown).await {
            Err(ScrapeError::SnapshotUnavailable { .. }) if tries < RESNAPSHOTS => {
                tries += 1;
                info!(source = %ctx.source, "snapshot no longer served; taking a new one");
            }
            other => return other,
        }
    }
}
