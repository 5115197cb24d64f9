//! The pinner's three passes over the store, each resumable at any moment:
//!
//! - [`analyse`]: the `analyse` outbox queue → token statuses, pin records, `pin` items;
//! - [`pin`]: the `pin` outbox queue → pin requests to the backend;
//! - [`follow`]: pending pins → status checks, recovery of failed pins, token links.
//!
//! Work is streamed: a window of requests is in flight while finished results are
//! committed in batches, and an outbox item is acknowledged only in the commit that records
//! the last of its work, so a crash repeats at most the uncommitted batch (and a repeated
//! item skips what is already done). A backend or gateway outage stops the pass with the
//! rest of its items still queued; it never turns into per-token or per-pin failures.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cid::Cid;
use futures::StreamExt as _;
use nifty_state::{
    AnalysisRecord, OutboxKey, PinStatus, PinUpdate, Queue, Resource, Store, TokenKey, TokenStatus,
    UnixMillis, WorkItem,
};
use tokio::sync::{mpsc, watch};

use crate::analysis::{Analysis, Verdict, analyse_token};
use crate::backend::{Backend, BackendError, PinMeta, RemoteState};
use crate::fetch::Fetcher;

/// Results recorded per commit: large enough that the fsync is amortised, small enough
/// that a crash repeats little.
const COMMIT_EVERY: usize = 256;
/// Longest a finished result waits for its commit when results trickle in.
const COMMIT_AFTER: Duration = Duration::from_millis(250);
/// Outbox items read per store scan.
const SCAN_ITEMS: usize = 64;

/// How the passes run.
#[derive(Clone, Debug)]
pub struct PassOptions {
    /// Tokens analysed at once (metadata fetches in flight).
    pub analyse_concurrency: usize,
    /// Pin requests in flight.
    pub pin_concurrency: usize,
    /// Pin attempts (the first request plus recoveries) before a pin is `Failed`.
    pub max_attempts: u32,
    /// Wait before the first retry of a failed pin; doubles with each attempt.
    pub retry_base: Duration,
    /// Longest wait between retries.
    pub retry_max: Duration,
    /// CIDs per status request of the follow-up pass.
    pub follow_chunk: usize,
}

impl Default for PassOptions {
    fn default() -> Self {
        PassOptions {
            // Gateways answer in tens to hundreds of milliseconds: 64 in flight keeps a
            // few thousand tokens a second moving without looking like an attack.
            analyse_concurrency: 64,
            // A cluster peer queues pins internally; 32 requests in flight saturate its
            // API without piling up timeouts.
            pin_concurrency: 32,
            max_attempts: 5,
            retry_base: Duration::from_secs(60),
            retry_max: Duration::from_secs(6 * 3600),
            follow_chunk: 200,
        }
    }
}

/// When a pass should stop early: a shutdown request or a time budget. Both are checked
/// between units of work; work in flight finishes and is committed.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Turns true when the process is asked to stop.
    pub stop: watch::Receiver<bool>,
    /// Stop taking new work after this instant (tokio's clock, so tests can pause it).
    pub deadline: Option<tokio::time::Instant>,
}

impl Limits {
    /// No limit but a stop signal that never fires.
    pub fn none() -> Self {
        let (tx, rx) = watch::channel(false);
        // The sender is dropped: the value stays false.
        drop(tx);
        Limits {
            stop: rx,
            deadline: None,
        }
    }

    fn reached(&self) -> bool {
        *self.stop.borrow()
            || self
                .deadline
                .is_some_and(|d| tokio::time::Instant::now() >= d)
    }
}

/// How a pass ended.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "reason")]
pub enum Ending {
    /// The queue (or the pending set) is empty.
    Drained,
    /// Stopped by the shutdown signal or the budget; the rest waits for the next pass.
    Stopped,
    /// An external service is unavailable; the rest waits for the next pass.
    Outage(String),
}

impl Ending {
    /// How a streamed pass ended: an outage wins, then whether its feeder drained the queue.
    fn of(outage: Option<String>, drained: bool) -> Self {
        match outage {
            Some(o) => Ending::Outage(o),
            None if drained => Ending::Drained,
            None => Ending::Stopped,
        }
    }
}

/// What a pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PassReport {
    /// Outbox items fully handled and acknowledged.
    pub items: u64,
    /// Tokens or pins handled.
    pub handled: u64,
    /// Outcomes by name (`parsed`, `content_fetch_failed`, `queued`, `pinned`, ...).
    pub outcomes: std::collections::BTreeMap<String, u64>,
    /// Tokens linked because their last pin completed.
    pub linked: u64,
    /// Requests that failed (and were retried, recorded, or left for later).
    pub errors: u64,
    /// How the pass ended.
    pub ending: Option<Ending>,
}

impl PassReport {
    fn count(&mut self, outcome: &str) {
        *self.outcomes.entry(outcome.to_owned()).or_default() += 1;
        self.handled += 1;
    }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> UnixMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Errors that end a pass: the store failing (the backend's and gateway's failures are
/// outcomes, not errors).
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// The store refused a read or a commit.
    #[error(transparent)]
    Store(#[from] nifty_state::StateError),
    /// A blocking store task did not finish.
    #[error("a store task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// Outbox items whose work is partly done: how many units each still waits for.
#[derive(Default)]
struct Open {
    remaining: HashMap<OutboxKey, usize>,
    /// Items with no work left, to acknowledge in the next commit.
    done: Vec<OutboxKey>,
    /// Items that must not be acknowledged (a unit was left for later).
    held: Vec<OutboxKey>,
}

impl Open {
    fn finish_one(&mut self, item: OutboxKey) {
        if let Some(n) = self.remaining.get_mut(&item) {
            *n -= 1;
            if *n == 0 {
                self.remaining.remove(&item);
                if !self.held.contains(&item) {
                    self.done.push(item);
                }
            }
        }
    }
}

/// One unit of streamed work: the item it belongs to and its payload.
struct Unit<T> {
    item: OutboxKey,
    payload: T,
}

/// Feeds the units of a queue's items into a channel, registering each item's unit count
/// in `open` before its units, until the queue is exhausted, `halt` turns true, or the
/// limits are reached.
fn spawn_feeder<T: Send + 'static>(
    store: Store,
    queue: Queue,
    open: Arc<Mutex<Open>>,
    limits: Limits,
    halt: watch::Receiver<bool>,
    capacity: usize,
    expand: impl Fn(&Store, &WorkItem) -> Result<Vec<T>, nifty_state::StateError> + Send + 'static,
) -> (
    mpsc::Receiver<Unit<T>>,
    tokio::task::JoinHandle<Result<bool, PassError>>,
) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let task = tokio::spawn(async move {
        let mut after = None;
        loop {
            if limits.reached() || *halt.borrow() {
                return Ok(false);
            }
            let items = store.outbox_after(queue, after, SCAN_ITEMS)?;
            let Some((last, _)) = items.last() else {
                return Ok(true);
            };
            after = Some(*last);
            for (key, item) in items {
                if limits.reached() || *halt.borrow() {
                    return Ok(false);
                }
                let units = expand(&store, &item)?;
                {
                    let mut o = open.lock().unwrap_or_else(|e| e.into_inner());
                    if units.is_empty() {
                        o.done.push(key);
                    } else {
                        o.remaining.insert(key, units.len());
                    }
                }
                for payload in units {
                    if tx.send(Unit { item: key, payload }).await.is_err() {
                        return Ok(false);
                    }
                }
            }
        }
    });
    (rx, task)
}

/// A channel as a stream.
fn stream<T: Send + 'static>(rx: mpsc::Receiver<T>) -> impl futures::Stream<Item = T> {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) })
}

/// What became of one unit of streamed work.
enum Step<B> {
    /// Record this in the next commit, counted under `outcome` (and as an error if so).
    Record {
        /// What to write.
        record: B,
        /// The outcome's name in the report.
        outcome: &'static str,
        /// Whether a request failed on the way.
        error: bool,
    },
    /// The service is unavailable: keep the unit's item queued and stop feeding.
    Later(String),
}

/// Whether a pass's work in flight is dropped at a stop signal rather than awaited.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum InFlight {
    /// Awaited: the work has side effects elsewhere (a pin request) that must be recorded.
    Finish,
    /// Dropped: the work only reads (a metadata fetch, which may retry for a minute), and
    /// its item stays queued for the next pass.
    Drop,
}

/// The loop both queue passes share: feeds the units of a queue's items through `work`
/// with `concurrency` in flight, commits the records with `commit` every [`COMMIT_EVERY`]
/// results or [`COMMIT_AFTER`], acknowledging each item in the commit that records the last
/// of its units, and stops feeding at the limits or the first outage. At a stop signal the
/// work in flight is dropped or finished as `in_flight` says. `commit` returns the tokens it
/// linked.
#[allow(clippy::too_many_arguments)]
async fn drive<U, B, Fut>(
    store: &Store,
    queue: Queue,
    limits: &Limits,
    concurrency: usize,
    in_flight: InFlight,
    expand: impl Fn(&Store, &WorkItem) -> Result<Vec<U>, nifty_state::StateError> + Send + 'static,
    work: impl Fn(U) -> Fut,
    commit: fn(&Store, &[B], &[OutboxKey]) -> Result<u64, nifty_state::StateError>,
) -> Result<PassReport, PassError>
where
    U: Send + 'static,
    B: Send + 'static,
    Fut: std::future::Future<Output = Step<B>>,
{
    let concurrency = concurrency.max(1);
    let open = Arc::new(Mutex::new(Open::default()));
    let (halt_tx, halt) = watch::channel(false);
    let (rx, feeder) = spawn_feeder(
        store.clone(),
        queue,
        Arc::clone(&open),
        limits.clone(),
        halt,
        concurrency * 2,
        expand,
    );
    let mut results = Box::pin(
        stream(rx)
            .map(|unit: Unit<U>| {
                let step = work(unit.payload);
                async move { (unit.item, step.await) }
            })
            .buffer_unordered(concurrency),
    );
    let mut report = PassReport::default();
    let mut batch: Vec<B> = Vec::with_capacity(COMMIT_EVERY);
    let mut outage = None;
    let mut last_commit = Instant::now();
    let mut stop = limits.stop.clone();
    let stopped = async move {
        // A stop signal whose sender is gone never fires.
        if in_flight == InFlight::Finish || stop.wait_for(|s| *s).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let mut stopped = std::pin::pin!(stopped);
    let mut dropped = false;
    loop {
        let next = tokio::select! {
            next = tokio::time::timeout(COMMIT_AFTER, results.next()) => next,
            () = &mut stopped => {
                dropped = true;
                Ok(None)
            }
        };
        let mut ended = false;
        match next {
            Ok(Some((item, step))) => {
                let mut o = open.lock().unwrap_or_else(|e| e.into_inner());
                match step {
                    Step::Record {
                        record,
                        outcome,
                        error,
                    } => {
                        report.count(outcome);
                        report.errors += u64::from(error);
                        batch.push(record);
                    }
                    Step::Later(why) => {
                        report.errors += 1;
                        if outage.is_none() {
                            tracing::warn!(queue = queue.name(), error = %why, "service unavailable; stopping the pass");
                            outage = Some(why);
                            let _ = halt_tx.send(true);
                        }
                        o.held.push(item);
                    }
                }
                o.finish_one(item);
            }
            Ok(None) => ended = true,
            Err(_) => {}
        }
        if ended || batch.len() >= COMMIT_EVERY || last_commit.elapsed() >= COMMIT_AFTER {
            let done = std::mem::take(&mut open.lock().unwrap_or_else(|e| e.into_inner()).done);
            if !batch.is_empty() || !done.is_empty() {
                let records = std::mem::take(&mut batch);
                let store = store.clone();
                report.items += done.len() as u64;
                report.linked +=
                    tokio::task::spawn_blocking(move || commit(&store, &records, &done)).await??;
            }
            last_commit = Instant::now();
        }
        if ended {
            break;
        }
    }
    // Work dropped at a stop leaves its items unacknowledged; the feeder, blocked on a full
    // channel perhaps, ends when the stream holding the receiver goes.
    drop(results);
    let drained = feeder.await?? && !dropped;
    report.ending = Some(Ending::of(outage, drained));
    Ok(report)
}

/// Analyses queued tokens until the `analyse` queue is empty, the limits are reached, or
/// the gateway is unavailable.
pub async fn analyse(
    store: &Store,
    fetcher: &Fetcher,
    opts: &PassOptions,
    limits: &Limits,
) -> Result<PassReport, PassError> {
    let expand = |store: &Store, item: &WorkItem| {
        let WorkItem::Analyse(keys) = item else {
            return Ok(vec![]);
        };
        let mut units = vec![];
        for key in keys {
            // A repeated item skips tokens already analysed.
            if let Some(t) = store.token(key)?
                && t.status == TokenStatus::Queued
            {
                // A source that found no URI says why in the token's reason.
                let why_none = t.reason.filter(|_| t.token_uri.is_none());
                units.push((*key, t.token_uri, why_none));
            }
        }
        Ok(units)
    };
    let work = |(key, uri, why_none): (TokenKey, Option<String>, Option<String>)| async move {
        let verdict = match (&uri, why_none) {
            (None, Some(why)) => Verdict::Done(Analysis::no_uri(&why)),
            _ => analyse_token(fetcher, uri.as_deref()).await,
        };
        match verdict {
            Verdict::Done(a) => Step::Record {
                outcome: a.status.name(),
                error: false,
                record: AnalysisRecord {
                    key,
                    status: a.status,
                    reason: a.reason,
                    resources: a
                        .resources
                        .into_iter()
                        .map(|r| Resource {
                            cid: r.cid.to_bytes(),
                            role: r.role,
                        })
                        .collect(),
                },
            },
            Verdict::Later(e) => Step::Later(format!("gateway: {e}")),
        }
    };
    let commit = |store: &Store, records: &[AnalysisRecord], done: &[OutboxKey]| {
        store.record_analyses(records, done, now_ms()).map(|()| 0)
    };
    drive(
        store,
        Queue::Analyse,
        limits,
        opts.analyse_concurrency,
        InFlight::Drop,
        expand,
        work,
        commit,
    )
    .await
}

/// The pin name and meta tags of a CID, from the token and role that first asked for it.
fn pin_meta(store: &Store, cid: &Cid, first_use: Option<&(TokenKey, String)>) -> PinMeta {
    let Some((key, role)) = first_use else {
        return PinMeta {
            name: format!("nifty {cid}"),
            meta: vec![],
        };
    };
    let source = store
        .token(key)
        .ok()
        .flatten()
        .map(|t| t.source)
        .unwrap_or_default();
    PinMeta {
        name: format!("nifty {} {role}", key.graph_id()),
        meta: vec![
            ("contract".into(), key.contract.to_string()),
            ("token_id".into(), key.token_id.to_string()),
            ("role".into(), role.clone()),
            ("source".into(), source),
        ],
    }
}

/// What to do with a backend's answer about a pin.
fn update_for(
    cid: &Cid,
    state: &RemoteState,
    attempts_before: u32,
    attempted: bool,
    opts: &PassOptions,
    now: UnixMillis,
) -> PinUpdate {
    let (status, error, retry_at_ms) = match state {
        RemoteState::Queued => (PinStatus::Queued, None, None),
        RemoteState::Pinning => (PinStatus::Pinning, None, None),
        RemoteState::Pinned => (PinStatus::Pinned, None, None),
        RemoteState::Failed { error } => {
            retry_or_fail(format!("pin_error: {error}"), attempts_before, opts, now)
        }
        RemoteState::Unpinned => retry_or_fail(
            "unpinned: the backend does not have it".into(),
            attempts_before,
            opts,
            now,
        ),
    };
    PinUpdate {
        cid: cid.to_bytes(),
        status,
        error,
        attempted,
        retry_at_ms,
        size: None,
    }
}

/// A failed pin is retried after a growing wait, or given up after the attempt limit.
fn retry_or_fail(
    error: String,
    attempts: u32,
    opts: &PassOptions,
    now: UnixMillis,
) -> (PinStatus, Option<String>, Option<UnixMillis>) {
    if attempts >= opts.max_attempts {
        return (PinStatus::Failed, Some(error), None);
    }
    let wait = opts
        .retry_base
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(20))
        .min(opts.retry_max);
    (
        PinStatus::Retrying,
        Some(error),
        Some(now + wait.as_millis() as u64),
    )
}

/// Whether a backend error means the backend is unavailable (stop and keep the work)
/// rather than that this pin is unacceptable (record it). An answer over the size cap is
/// the backend's (or its proxy's) fault, not the pin's: the pass stops and the next one
/// asks again, rather than the pin failing or the request being repeated at once.
fn is_outage(e: &BackendError) -> bool {
    e.is_retryable() || e.is_too_large() || matches!(e.status(), Some(401 | 403))
}

/// Sends the queued pin requests until the `pin` queue is empty, the limits are reached,
/// or the backend is unavailable.
pub async fn pin(
    store: &Store,
    backend: &Backend,
    opts: &PassOptions,
    limits: &Limits,
) -> Result<PassReport, PassError> {
    let expand = |store: &Store, item: &WorkItem| {
        let WorkItem::Pin(bytes) = item else {
            return Ok(vec![]);
        };
        // A repeated item, or one whose pin moved on, needs no request.
        match store.pin(bytes)? {
            Some(p) if p.status == PinStatus::Wanted => {
                Ok(vec![(bytes.clone(), p.attempts, p.first_use)])
            }
            _ => Ok(vec![]),
        }
    };
    let work = |(bytes, attempts, first_use): (Vec<u8>, u32, Option<(TokenKey, String)>)| {
        let store = store.clone();
        async move {
            let failed = |bytes, error: String, attempted| PinUpdate {
                cid: bytes,
                status: PinStatus::Failed,
                error: Some(error),
                attempted,
                retry_at_ms: None,
                size: None,
            };
            let (record, error) = match Cid::try_from(bytes.as_slice()) {
                Err(e) => (failed(bytes, format!("invalid_cid: {e}"), false), false),
                Ok(cid) => {
                    let meta = pin_meta(&store, &cid, first_use.as_ref());
                    match backend.pin(&cid, &meta).await {
                        Ok(remote) => {
                            let now = now_ms();
                            let u = update_for(&cid, &remote.state, attempts + 1, true, opts, now);
                            (u, false)
                        }
                        Err(e) if is_outage(&e) => {
                            return Step::Later(format!("{}: {e}", backend.name()));
                        }
                        Err(e) => (failed(bytes, format!("{}: {e}", e.reason()), true), true),
                    }
                }
            };
            Step::Record {
                outcome: record.status.name(),
                error,
                record,
            }
        }
    };
    let commit = |store: &Store, updates: &[PinUpdate], done: &[OutboxKey]| {
        store.record_pin_updates(updates, done, now_ms())
    };
    drive(
        store,
        Queue::Pin,
        limits,
        opts.pin_concurrency,
        InFlight::Finish,
        expand,
        work,
        commit,
    )
    .await
}

/// Follows every pending pin once: asks the backend for the status of those queued or
/// pinning, retries those whose retry time has come (the cluster's recover for a pin that
/// errored, a new request for one the backend lost), records what changed, and links the
/// tokens completed. Stops early at the limits or when the backend is unavailable.
pub async fn follow(
    store: &Store,
    backend: &Backend,
    opts: &PassOptions,
    limits: &Limits,
) -> Result<PassReport, PassError> {
    let mut report = PassReport::default();
    let mut after: Option<Vec<u8>> = None;
    let chunk = opts.follow_chunk.max(1);
    loop {
        if limits.reached() {
            report.ending = Some(Ending::Stopped);
            return Ok(report);
        }
        let pending = store.pending_pins(after.as_deref(), chunk)?;
        let Some((last, _)) = pending.last() else {
            break;
        };
        after = Some(last.clone());
        let now = now_ms();
        let mut ask = vec![];
        let mut due = vec![];
        for (bytes, rec) in &pending {
            let Ok(cid) = Cid::try_from(bytes.as_slice()) else {
                continue;
            };
            match rec.status {
                PinStatus::Retrying if rec.retry_at_ms.is_none_or(|t| t <= now) => {
                    due.push((cid, rec.clone()))
                }
                PinStatus::Retrying => {}
                _ => ask.push((cid, rec.clone())),
            }
        }
        let mut updates = vec![];
        if !ask.is_empty() {
            let cids: Vec<Cid> = ask.iter().map(|(c, _)| *c).collect();
            match backend.status(&cids).await {
                Ok(answers) => {
                    for ((cid, rec), answer) in ask.iter().zip(answers) {
                        let update = update_for(cid, &answer.state, rec.attempts, false, opts, now);
                        // Unchanged in-flight statuses need no write.
                        if update.status != rec.status {
                            report.count(update.status.name());
                            updates.push(update);
                        }
                    }
                }
                Err(e) => {
                    report.errors += 1;
                    report.ending = Some(Ending::Outage(format!("{}: {e}", backend.name())));
                    let (_, linked) = commit_follow(store, updates).await?;
                    report.linked += linked;
                    return Ok(report);
                }
            }
        }
        let retries = futures::stream::iter(due.into_iter().map(|(cid, rec)| {
            let store = store.clone();
            async move {
                let meta = pin_meta(&store, &cid, rec.first_use.as_ref());
                let errored = rec
                    .last_error
                    .as_deref()
                    .is_some_and(|e| e.starts_with("pin_error"));
                let answer = if errored {
                    backend.recover(&cid, &meta).await
                } else {
                    backend.pin(&cid, &meta).await
                };
                (cid, rec, answer)
            }
        }))
        .buffer_unordered(opts.pin_concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
        let mut outage = None;
        for (cid, rec, answer) in retries {
            match answer {
                Ok(remote) => {
                    let u = update_for(&cid, &remote.state, rec.attempts + 1, true, opts, now);
                    report.count(u.status.name());
                    updates.push(u);
                }
                Err(e) if is_outage(&e) => {
                    report.errors += 1;
                    outage.get_or_insert_with(|| format!("{}: {e}", backend.name()));
                }
                Err(e) => {
                    report.errors += 1;
                    let (status, error, retry_at_ms) =
                        retry_or_fail(format!("{}: {e}", e.reason()), rec.attempts + 1, opts, now);
                    report.count(status.name());
                    updates.push(PinUpdate {
                        cid: cid.to_bytes(),
                        status,
                        error,
                        attempted: true,
                        retry_at_ms,
                        size: None,
                    });
                }
            }
        }
        let (_, linked) = commit_follow(store, updates).await?;
        report.linked += linked;
        if let Some(o) = outage {
            report.ending = Some(Ending::Outage(o));
            return Ok(report);
        }
    }
    report.ending = Some(Ending::Drained);
    Ok(report)
}

async fn commit_follow(store: &Store, updates: Vec<PinUpdate>) -> Result<(u64, u64), PassError> {
    if updates.is_empty() {
        return Ok((0, 0));
    }
    let store = store.clone();
    let linked =
        tokio::task::spawn_blocking(move || store.record_pin_updates(&updates, &[], now_ms()))
            .await??;
    Ok((0, linked))
}

#[cfg(test)]
mod tests {
    use super::*;
    use multihash::Multihash;

    #[test]
    fn failed_pins_back_off_then_give_up() {
        let opts = PassOptions {
            max_attempts: 3,
            retry_base: Duration::from_secs(10),
            retry_max: Duration::from_secs(25),
            ..PassOptions::default()
        };
        let cid = Cid::new_v1(0x55, Multihash::<64>::wrap(0x12, &[1; 32]).unwrap());
        let failed = RemoteState::Failed {
            error: "context deadline exceeded".into(),
        };
        let waits: Vec<(PinStatus, Option<u64>)> = (1..=3)
            .map(|a| {
                let u = update_for(&cid, &failed, a, true, &opts, 1_000);
                (u.status, u.retry_at_ms)
            })
            .collect();
        assert_eq!(
            waits,
            vec![
                (PinStatus::Retrying, Some(11_000)),
                (PinStatus::Retrying, Some(21_000)),
                (PinStatus::Failed, None),
            ]
        );
        let u = update_for(&cid, &failed, 3, true, &opts, 0);
        assert_eq!(
            u.error.as_deref(),
            Some("pin_error: context deadline exceeded")
        );
        let u = update_for(&cid, &RemoteState::Unpinned, 1, false, &opts, 0);
        assert_eq!(u.status, PinStatus::Retrying);
        assert!(u.error.unwrap().starts_with("unpinned"));
        let u = update_for(&cid, &RemoteState::Pinned, 9, false, &opts, 0);
        assert_eq!((u.status, u.error), (PinStatus::Pinned, None));
    }
}
