//! Backfill: a block range split into partitions, each with its own cursor
//! (`backfill/<job>/<k>`), paged by parallel workers. A worker that finishes its partition
//! takes an unclaimed one or splits the largest remaining one at its midpoint (work
//! stealing). A job resumes from its cursors.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

use nifty_state::{Cursor, JobSettings, Position, Store};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::error::{Result, ScrapeError};
use crate::lane::{Ctx, Lane, Stop, run_lane, stop_requested};
use crate::paging::{is_finished, partition, split};

/// Below this many blocks a partition is not split: a second worker would spend more on
/// its first request than it saves.
pub const MIN_SPLIT_BLOCKS: u64 = 4;

/// A new job's shape.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The job's name; its cursors are `backfill/<job>/<k>`.
    pub job: String,
    /// First block.
    pub from: u64,
    /// Last block; `None` for the snapshot (head minus confirmations) at start.
    pub to: Option<u64>,
    /// Partitions to start with (one per worker).
    pub partitions: usize,
    /// What the job is started with, saved beside its cursors for `--resume`.
    pub settings: Option<JobSettings>,
}

/// The cursor-name prefix of a job.
pub fn job_prefix(job: &str) -> String {
    format!("backfill/{job}/")
}

/// Job names: 1-64 of letters, digits, `_`, `-` and `.`. No `/`, so one job's cursor
/// prefix can never match another job's cursors.
pub fn check_job_name(job: &str) -> Result<()> {
    let ok = !job.is_empty()
        && job.len() <= 64
        && job
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ScrapeError::Invalid(format!(
            "job name {job:?}: use 1-64 letters, digits, '_', '-' or '.'"
        )))
    }
}

/// The record of a job's whole range: `backfill/<job>`, its position the start of `from`
/// and its end `to`. It never moves; partitions do.
pub fn job_record(job: &str) -> String {
    format!("backfill/{job}")
}

/// Whether a job of this name exists in the store: its range record, any cursor under its
/// prefix, or its saved settings.
pub fn job_exists(store: &Store, job: &str) -> Result<bool> {
    Ok(store.cursor(&job_record(job))?.is_some()
        || !store.cursors_with_prefix(&job_prefix(job))?.is_empty()
        || store.job_settings(job)?.is_some())
}

/// A job's partition cursors: exactly `backfill/<job>/<digits>`.
fn job_cursors(ctx: &Ctx, job: &str) -> Result<Vec<(String, Cursor)>> {
    let prefix = job_prefix(job);
    let mut cursors = ctx.store.cursors_with_prefix(&prefix)?;
    cursors.retain(|(name, _)| {
        let k = &name[prefix.len()..];
        !k.is_empty() && k.bytes().all(|c| c.is_ascii_digit())
    });
    Ok(cursors)
}

fn lane_name(job: &str, k: usize) -> String {
    format!("{}{k:05}", job_prefix(job))
}

/// A job's partitions.
#[derive(Debug)]
pub struct Backfill {
    /// The job's name.
    pub job: String,
    /// Every partition, finished or not.
    lanes: Mutex<Vec<Arc<Lane>>>,
    /// The next partition number.
    next: AtomicUsize,
}

impl Backfill {
    /// Creates a job's partition cursors (all in one transaction) over `[from, to]`.
    pub fn create(ctx: &Ctx, plan: &Plan, snapshot_block: u64) -> Result<Backfill> {
        // The rule `resume` applies: a job it would refuse by name is never created.
        check_job_name(&plan.job)?;
        let to = plan.to.unwrap_or(snapshot_block);
        if to > snapshot_block {
            return Err(ScrapeError::Invalid(format!(
                "--to {to} is beyond the snapshot block {snapshot_block} (head minus confirmations)"
            )));
        }
        if plan.from > to {
            return Err(ScrapeError::Invalid(format!(
                "--from {} is after --to {to}",
                plan.from
            )));
        }
        if job_exists(&ctx.store, &plan.job)? {
            return Err(ScrapeError::Invalid(format!(
                "a backfill job named {:?} exists; resume it with --resume {}",
                plan.job, plan.job
            )));
        }
        let ranges = partition(plan.from, to, plan.partitions.max(1));
        let now = (ctx.now_ms)();
        let cursors: Vec<(String, Cursor)> = ranges
            .iter()
            .enumerate()
            .map(|(k, (a, b))| {
                let c = Cursor {
                    position: Position::start_of(*a),
                    snapshot: Some(snapshot_block),
                    head: None,
                    end: Some(*b),
                    updated_ms: now,
                };
                (lane_name(&plan.job, k), c)
            })
            .collect();
        let record = Cursor {
            position: Position::start_of(plan.from),
            snapshot: Some(snapshot_block),
            head: None,
            end: Some(to),
            updated_ms: now,
        };
        let mut all = cursors.clone();
        all.push((job_record(&plan.job), record));
        // The range record, every partition and the settings in one transaction.
        match &plan.settings {
            Some(settings) => ctx.store.create_job(&plan.job, settings, &all)?,
            None => ctx.store.create_cursors(&all)?,
        }
        info!(job = %plan.job, from = plan.from, to, partitions = cursors.len(), "backfill job created");
        Ok(Self::from_cursors(&plan.job, cursors))
    }

    /// Loads a job from its cursors.
    pub fn resume(ctx: &Ctx, job: &str) -> Result<Backfill> {
        check_job_name(job)?;
        let cursors = job_cursors(ctx, job)?;
        if cursors.is_empty() {
            return Err(ScrapeError::Invalid(format!(
                "no backfill job named {job:?} in the store"
            )));
        }
        Ok(Self::from_cursors(job, cursors))
    }

    fn from_cursors(job: &str, cursors: Vec<(String, Cursor)>) -> Backfill {
        let mut next = 0;
        let mut lanes = vec![];
        for (name, c) in cursors {
            if let Some(k) = name
                .rsplit('/')
                .next()
                .and_then(|k| k.parse::<usize>().ok())
            {
                next = next.max(k + 1);
            }
            let end = c.end.unwrap_or(c.position.block);
            lanes.push(Arc::new(Lane::new(name, true, c.position, end)));
        }
        Backfill {
            job: job.to_owned(),
            lanes: Mutex::new(lanes),
            next: AtomicUsize::new(next),
        }
    }

    /// When the job is complete, lets the source's own cursor continue after the job's
    /// range, so the next scheduled run does not page it again. Only when that is exact:
    /// the source cursor (or `start_block` when it has none) must lie within the range, so
    /// everything before it is already covered. Returns the cursor's new position if moved.
    pub fn hand_over(&self, ctx: &Ctx, start_block: u64) -> Result<Option<Position>> {
        if self.blocks_left() > 0 {
            return Ok(None);
        }
        let Some(record) = ctx.store.cursor(&job_record(&self.job))? else {
            return Ok(None);
        };
        let Some(to) = record.end else {
            return Ok(None);
        };
        let source = ctx.store.cursor(&ctx.source)?;
        let at = source
            .as_ref()
            .map_or(Position::start_of(start_block), |c| c.position.clone());
        let after = Position::start_of(to.saturating_add(1));
        if at < record.position || at >= after {
            info!(
                job = %self.job, source = %ctx.source, cursor = %at,
                "source cursor not moved: it is outside the job's range"
            );
            return Ok(None);
        }
        ctx.store
            .set_cursor(&ctx.source, after.clone(), (ctx.now_ms)())?;
        info!(job = %self.job, source = %ctx.source, from = %at, to = %after, "source cursor continues after the backfill");
        Ok(Some(after))
    }

    fn lanes(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Lane>>> {
        self.lanes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Blocks not yet committed, over all partitions.
    pub fn blocks_left(&self) -> u64 {
        self.lanes().iter().map(|l| l.blocks_left()).sum()
    }

    /// Partitions in the job so far (splits add some).
    pub fn partitions(&self) -> usize {
        self.lanes().len()
    }

    /// The highest end of any partition: the snapshot the job needs at least.
    pub fn max_end(&self) -> u64 {
        self.lanes().iter().map(|l| l.end()).max().unwrap_or(0)
    }

    /// A partition for a free worker: an unclaimed unfinished one, else half of the
    /// largest claimed one. `None` when nothing is left worth taking.
    fn claim(&self, ctx: &Ctx) -> Result<Option<Arc<Lane>>> {
        let mut lanes = self.lanes();
        for lane in lanes.iter() {
            let mut s = lane.lock();
            if !s.taken && !is_finished(&s.position, lane.end()) {
                s.taken = true;
                return Ok(Some(lane.clone()));
            }
        }
        // The victim is the lane whose split frees the most blocks (the block a lane is
        // part-way through is not splittable, so its blocks_left can mislead).
        let mut best: Option<(u64, Arc<Lane>)> = None;
        for lane in lanes.iter() {
            let s = lane.lock();
            if let Some((_, thief_start)) = split(&s.position, lane.end(), MIN_SPLIT_BLOCKS) {
                let freed = lane.end() - thief_start + 1;
                if best.as_ref().is_none_or(|(f, _)| freed > *f) {
                    best = Some((freed, lane.clone()));
                }
            }
        }
        let Some((_, victim)) = best else {
            return Ok(None);
        };
        let v = victim.lock();
        let old_end = victim.end();
        // Recomputed under the lock: a commit may have moved the victim since.
        let Some((victim_end, thief_start)) = split(&v.position, old_end, MIN_SPLIT_BLOCKS) else {
            return Ok(None);
        };
        let k = self.next.fetch_add(1, Ordering::Relaxed);
        let name = lane_name(&self.job, k);
        let thief = Cursor {
            position: Position::start_of(thief_start),
            snapshot: None,
            head: None,
            end: Some(old_end),
            updated_ms: (ctx.now_ms)(),
        };
        // The transaction first; once it has committed, memory follows it at once (even if
        // the flush below fails), so the victim's next commit cannot write its old end back.
        ctx.store
            .split_cursor(&victim.name, victim_end, &name, &thief)?;
        let lane = Arc::new(Lane::new(name, true, thief.position, old_end));
        victim.set_end(&v, victim_end);
        drop(v);
        lane.lock().taken = true;
        lanes.push(lane.clone());
        drop(lanes);
        debug!(job = %self.job, victim = %victim.name, thief = %lane.name, from = thief_start, to = old_end, "work stolen");
        ctx.store.flush()?;
        Ok(Some(lane))
    }

    fn release(&self, lane: &Lane) {
        lane.lock().taken = false;
    }

    /// Runs `workers` workers until every partition is finished, the deadline passes, a
    /// shutdown is asked, or one worker meets an error (the others then stop after their
    /// current commit). Takes a new snapshot when the subgraph stops serving the old one.
    pub async fn run(
        self: &Arc<Self>,
        ctx: &Ctx,
        workers: usize,
        confirmations: u64,
        deadline: Option<Instant>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Stop> {
        const RESNAPSHOTS: u32 = 5;
        let mut tries = 0;
        loop {
            let snap = {
                let mut ext = shutdown.clone();
                tokio::select! {
                    r = ctx.client.snapshot(confirmations) => r?,
                    _ = stop_requested(&mut ext) => return Ok(Stop::Shutdown),
                }
            };
            if snap.block < self.max_end() {
                return Err(ScrapeError::Invalid(format!(
                    "the source's snapshot block {} is behind the job's end {}; wait for it to \
                     catch up, then resume",
                    snap.block,
                    self.max_end()
                )));
            }
            // One stop signal for every worker: the operator's shutdown, or a sibling's
            // failure. Each lane stops after its in-flight commit.
            let (stop_tx, stop_rx) = watch::channel(*shutdown.borrow());
            let forward = {
                let (mut ext, tx) = (shutdown.clone(), stop_tx.clone());
                tokio::spawn(async move {
                    if ext.wait_for(|v| *v).await.is_ok() {
                        let _ = tx.send(true);
                    }
                })
            };
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..workers.max(1) {
                let (bf, ctx) = (self.clone(), ctx.clone());
                let mut stop = stop_rx.clone();
                set.spawn(async move {
                    loop {
                        if *stop.borrow() {
                            return Ok(Stop::Shutdown);
                        }
                        let Some(lane) = bf.claim(&ctx)? else {
                            return Ok(Stop::Finished);
                        };
                        let result = run_lane(&ctx, &lane, snap, deadline, &mut stop).await;
                        bf.release(&lane);
                        match result? {
                            Stop::Finished => continue,
                            other => return Ok(other),
                        }
                    }
                });
            }
            // Every error is logged; a fatal one wins over a stale snapshot, which alone
            // only asks for a new snapshot.
            let mut first_err: Option<ScrapeError> = None;
            let mut stop = Stop::Finished;
            while let Some(joined) = set.join_next().await {
                let err = match joined {
                    Ok(Ok(Stop::Finished)) => continue,
                    Ok(Ok(s)) => {
                        stop = s;
                        continue;
                    }
                    Ok(Err(e)) => e,
                    Err(e) => {
                        // A panicked worker leaves its lane claimed; free every lane so the
                        // next pass (or a resume) can take it.
                        for lane in self.lanes().iter() {
                            self.release(lane);
                        }
                        ScrapeError::Invalid(format!("worker failed: {e}"))
                    }
                };
                let _ = stop_tx.send(true);
                warn!(job = %self.job, kind = err.kind(), error = %err, "backfill worker stopped");
                if matches!(&err, ScrapeError::State(e) if e.is_fatal()) {
                    // The store takes no more writes, and the other workers may be waiting
                    // inside it for good: waiting for them could hang the backfill.
                    forward.abort();
                    return Err(err);
                }
                let replace = match &first_err {
                    None => true,
                    Some(ScrapeError::SnapshotUnavailable { .. }) => {
                        !matches!(err, ScrapeError::SnapshotUnavailable { .. })
                    }
                    Some(_) => false,
                };
                if replace {
                    first_err = Some(err);
                }
            }
            forward.abort();
            match first_err {
                Some(ScrapeError::SnapshotUnavailable { .. }) if tries < RESNAPSHOTS => {
                    tries += 1;
                    warn!(job = %self.job, "snapshot no longer served; taking a new one");
                }
                Some(e) => return Err(e),
                None if stop == Stop::Finished && self.blocks_left() > 0 => {
                    return Err(ScrapeError::Invalid(format!(
                        "backfill {} stopped with {} blocks unfinished; resume it",
                        self.job,
                        self.blocks_left()
                    )));
                }
                None => return Ok(stop),
            }
        }
    }
}
