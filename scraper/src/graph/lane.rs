//! Paging one snapshot along one cursor ("lane"): fetch, check, commit, repeat.
//!
//! A plain source run is one lane whose end is the snapshot block; a backfill is several
//! lanes whose ends may shrink while they run (work stealing). A lane fetches the next page
//! while the previous page commits, so the network and the store work at the same time;
//! commits of one lane stay strictly in order.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::time::Instant;

use nifty_state::{Address, Contract, Cursor, Page, Position, Store, Token, TokenKey};
use tokio::sync::watch;
use tracing::{debug, info};

use super::client::{GraphClient, Snapshot};
use super::rows::{Row, to_rows};
use crate::error::{Result, ScrapeError};
use crate::paging::{Ordered, finished, is_finished, merge};

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
    /// The subgraph.
    pub client: GraphClient,
    /// The source name recorded on each token.
    pub source: String,
    /// Rows asked per alias.
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

    /// Blocks this lane has not committed yet; never waits for a commit.
    pub fn blocks_left(&self) -> u64 {
        let (at, end) = (self.at_block.load(Ordering::Acquire), self.end());
        if at > end { 0 } else { end - at + 1 }
    }
}

/// Commits a merged page under the lane's lock: rows past the lane's current end (it may
/// have been split since the page was asked for) are left to the lane that now owns them.
fn commit(
    ctx: &Ctx,
    lane: &Lane,
    snap: Snapshot,
    mut rows: Vec<Row>,
    position: Position,
    done: bool,
) -> Result<bool> {
    let mut st = lane.lock();
    let end = lane.end();
    let (mut position, mut done) = (position, done);
    if rows.iter().any(|r| r.block() > end) {
        // The page reaches past the end, so it holds everything up to the end.
        rows.retain(|r| r.block() <= end);
        position = rows
            .last()
            .map(|r| Position {
                block: r.block(),
                id: r.id().to_owned(),
            })
            .unwrap_or_else(|| st.position.clone());
        done = true;
    }
    if done {
        position = finished(&position, end);
    }
    let mut contracts: BTreeMap<Address, Contract> = BTreeMap::new();
    let mut tokens: Vec<(TokenKey, Token)> = Vec::with_capacity(rows.len());
    for r in rows {
        contracts.entry(r.contract.0).or_insert(r.contract.1);
        tokens.push((r.key, r.token));
    }
    let contracts: Vec<(Address, Contract)> = contracts.into_iter().collect();
    let cursor = Cursor {
        position: position.clone(),
        snapshot: Some(snap.block),
        head: Some(snap.head),
        end: lane.bounded.then_some(end),
        updated_ms: (ctx.now_ms)(),
    };
    let out = ctx.store.commit_page(&Page {
        cursor_name: &lane.name,
        cursor,
        tokens: &tokens,
        contracts: &contracts,
    })?;
    st.position = position.clone();
    lane.at_block.store(position.block, Ordering::Release);
    drop(st);
    ctx.progress
        .tokens
        .fetch_add(out.inserted, Ordering::Relaxed);
    ctx.progress
        .duplicates
        .fetch_add(out.duplicates, Ordering::Relaxed);
    ctx.progress.pages.fetch_add(1, Ordering::Relaxed);
    debug!(cursor = %lane.name, position = %position, inserted = out.inserted, duplicates = out.duplicates, "page committed");
    Ok(done)
}

/// A commit in flight; it answers whether the lane is finished.
type Pending = tokio::task::JoinHandle<Result<bool>>;

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

async fn settle(pending: Option<Pending>) -> Result<Option<bool>> {
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
    let mut position = lane.lock().position.clone();
    let mut end = lane.end();
    let mut pending: Option<Pending> = None;
    let page_size = ctx.page_size as usize;
    loop {
        if is_finished(&position, end) {
            settle(pending).await?;
            return Ok(Stop::Finished);
        }
        if *shutdown.borrow() {
            settle(pending).await?;
            return Ok(Stop::Shutdown);
        }
        let fetched = tokio::select! {
            r = ctx.client.page(position.block, &position.id, end, ctx.page_size, snap.block) => r,
            _ = stop_requested(shutdown) => {
                settle(pending).await?;
                return Ok(Stop::Shutdown);
            }
        };
        // The previous commit must land (in order) before this page is considered.
        if let Some(true) = settle(pending.take()).await? {
            return Ok(Stop::Finished);
        }
        let data = fetched?;
        let (rest, next) = to_rows(data, &ctx.source, &position)?;
        let merged = merge(&position, end, page_size, rest, next)?;
        let (rows, next_position, done) = (merged.rows, merged.position, merged.done);
        position = if done {
            finished(&next_position, end)
        } else {
            next_position.clone()
        };
        let (c, l) = (ctx.clone(), lane.clone());
        pending = Some(tokio::task::spawn_blocking(move || {
            commit(&c, &l, snap, rows, next_position, done)
        }));
        end = lane.end();
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let settled = settle(pending).await?;
            info!(cursor = %lane.name, "time budget spent; stopping after this commit");
            return Ok(if settled == Some(true) {
                Stop::Finished
            } else {
                Stop::Budget
            });
        }
    }
}

/// A scheduled run of a source: one lane on the source's own cursor, up to the snapshot.
/// Takes a new snapshot (up to three times) when the subgraph stops serving the old one.
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
