//! Running jobs on ticks: a job never overlaps itself, each run gets its time budget and the
//! shutdown signal, and every run (a skipped tick included) leaves a run record.
//!
//! Ticks come from outside: tokio-cron-scheduler in the daemon, the test itself in tests.
//! Budgets are measured on tokio's clock, so tests drive all of this with paused time.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt as _;
use nifty_state::{RunOutcome, RunRecord, Store, UnixMillis};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{error, info, warn};

/// What a run is given.
#[derive(Clone, Debug)]
pub struct RunLimits {
    /// Stop taking new work at this instant and commit what is in hand.
    pub deadline: Instant,
    /// Turns true when the daemon is asked to stop.
    pub stop: watch::Receiver<bool>,
}

impl RunLimits {
    /// Whether the daemon is stopping.
    pub fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// The limits as the pinner's passes take them.
    pub fn pass_limits(&self) -> nifty_pinner::pass::Limits {
        nifty_pinner::pass::Limits {
            stop: self.stop.clone(),
            deadline: Some(self.deadline),
        }
    }
}

/// How a run ended, as its job tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunEnd {
    /// All the work there was is done.
    Completed,
    /// The budget ran out; the rest waits for the next tick.
    BudgetSpent,
    /// The daemon is stopping; the rest waits for the next start.
    Interrupted,
    /// The run could not go on; why.
    Failed(String),
}

/// What a run reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunReport {
    /// How it ended.
    pub end: RunEnd,
    /// Pages committed (scrape jobs).
    pub pages: u64,
    /// Items handled: tokens stored, tokens analysed, pins requested or followed.
    pub items: u64,
    /// Errors met along the way (retried requests, failed items).
    pub errors: u64,
}

impl RunReport {
    /// A run that ended `end` having done nothing.
    pub fn empty(end: RunEnd) -> Self {
        RunReport {
            end,
            pages: 0,
            items: 0,
            errors: 0,
        }
    }
}

/// A job's work: one run, given its limits.
pub type Work =
    Arc<dyn Fn(RunLimits) -> Pin<Box<dyn Future<Output = RunReport> + Send>> + Send + Sync>;

/// A job as configured.
#[derive(Clone)]
pub struct JobSpec {
    /// Its name in run records and metrics: `scrape/<source>`, `analyse`, `pin`, `follow`.
    pub name: String,
    /// Its cron expression, for display (the scheduler that ticks it parses it).
    pub schedule: String,
    /// How long one run may take.
    pub budget: Duration,
    /// What a run does.
    pub work: Work,
}

impl std::fmt::Debug for JobSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobSpec")
            .field("name", &self.name)
            .field("schedule", &self.schedule)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

/// A run as the API shows it.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct RunView {
    /// Run id (the key in the `runs` tree).
    pub id: u64,
    /// The job.
    pub job: String,
    /// When it started (ms since the epoch).
    pub started_ms: UnixMillis,
    /// When it ended; `None` while running.
    pub ended_ms: Option<UnixMillis>,
    /// `running`, `completed`, `budget_spent`, `skipped`, `interrupted` or `failed`.
    pub outcome: String,
    /// Why it failed.
    pub reason: Option<String>,
    /// Pages committed.
    pub pages: u64,
    /// Items handled.
    pub items: u64,
    /// Errors met.
    pub errors: u64,
    /// How long it took; `None` while running.
    pub duration_ms: Option<u64>,
}

impl RunView {
    /// The view of stored run `id`.
    pub fn new(id: u64, r: &RunRecord) -> Self {
        RunView {
            id,
            job: r.job.clone(),
            started_ms: r.started_ms,
            ended_ms: r.ended_ms,
            outcome: r.outcome.name().to_owned(),
            reason: match &r.outcome {
                RunOutcome::Failed { reason } => Some(reason.clone()),
                _ => None,
            },
            pages: r.pages,
            items: r.items,
            errors: r.errors,
            duration_ms: r.ended_ms.map(|e| e.saturating_sub(r.started_ms)),
        }
    }
}

/// A job's state between ticks.
struct JobSlot {
    spec: JobSpec,
    /// True from the tick that starts a run until its record is written.
    running: AtomicBool,
    /// The last run that was not skipped.
    last: Mutex<Option<RunView>>,
}

/// A job as `/api/status` shows it.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct JobView {
    /// The job's name.
    pub job: String,
    /// Its cron expression.
    pub schedule: String,
    /// Its budget in seconds.
    pub budget_secs: u64,
    /// Whether a run is under way.
    pub running: bool,
    /// Its last run that was not skipped, since the daemon started.
    pub last: Option<RunView>,
}

/// What a tick did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tick {
    /// A run started; its record id.
    Started(u64),
    /// The job was still running: a skipped run was recorded with this id.
    Skipped(u64),
    /// The daemon is stopping, or the job is unknown: nothing happened.
    Ignored,
}

/// Runs jobs on ticks, records their runs, and drains them at shutdown.
pub struct Scheduler {
    store: Store,
    jobs: Vec<JobSlot>,
    stop: watch::Receiver<bool>,
    runs: Mutex<JoinSet<()>>,
    now_ms: fn() -> UnixMillis,
}

impl Scheduler {
    /// A scheduler of `jobs` that records runs in `store`; `stop` turning true stops new
    /// runs and asks running ones to stop at their next commit.
    pub fn new(
        store: Store,
        jobs: Vec<JobSpec>,
        stop: watch::Receiver<bool>,
        now_ms: fn() -> UnixMillis,
    ) -> Arc<Self> {
        Arc::new(Scheduler {
            store,
            jobs: jobs
                .into_iter()
                .map(|spec| JobSlot {
                    spec,
                    running: AtomicBool::new(false),
                    last: Mutex::new(None),
                })
                .collect(),
            stop,
            runs: Mutex::new(JoinSet::new()),
            now_ms,
        })
    }

    /// The jobs' specs, in order.
    pub fn specs(&self) -> impl Iterator<Item = &JobSpec> {
        self.jobs.iter().map(|j| &j.spec)
    }

    /// Every job's state.
    pub fn views(&self) -> Vec<JobView> {
        self.jobs
            .iter()
            .map(|j| JobView {
                job: j.spec.name.clone(),
                schedule: j.spec.schedule.clone(),
                budget_secs: j.spec.budget.as_secs(),
                running: j.running.load(Ordering::Acquire),
                last: j.last.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            })
            .collect()
    }

    /// A tick of job `index`: starts a run, or records a skipped one when the last run is
    /// still going. Never waits for the run.
    pub fn tick(self: &Arc<Self>, index: usize) -> Tick {
        let Some(slot) = self.jobs.get(index) else {
            return Tick::Ignored;
        };
        // The stop check and the spawn happen under the lock `drain` takes the runs with,
        // so a run either is drained or never starts.
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        if *self.stop.borrow() {
            return Tick::Ignored;
        }
        let job = slot.spec.name.clone();
        if slot.running.swap(true, Ordering::AcqRel) {
            let now = (self.now_ms)();
            let rec = RunRecord {
                job: job.clone(),
                started_ms: now,
                ended_ms: Some(now),
                outcome: RunOutcome::Skipped,
                pages: 0,
                items: 0,
                errors: 0,
            };
            crate::metrics::record_run(&job, &rec);
            return match self.record(&rec) {
                Ok(id) => {
                    info!(job = %job, run = id, "tick skipped: the previous run is still going");
                    Tick::Skipped(id)
                }
                Err(e) => {
                    error!(job = %job, error = %e, "could not record a skipped tick");
                    Tick::Ignored
                }
            };
        }
        let started_ms = (self.now_ms)();
        let id = match self.store.start_run(&job, started_ms) {
            Ok(id) => id,
            Err(e) => {
                error!(job = %job, error = %e, "could not record the start of a run; not running it");
                slot.running.store(false, Ordering::Release);
                return Tick::Ignored;
            }
        };
        crate::metrics::set_running(&job, true);
        let limits = RunLimits {
            deadline: Instant::now() + slot.spec.budget,
            stop: self.stop.clone(),
        };
        let work = (slot.spec.work)(limits);
        let me = Arc::clone(self);
        let run = async move {
            let began = Instant::now();
            info!(job = %job, run = id, "run started");
            // A panic in a job must not leave it marked running forever.
            let report = match std::panic::AssertUnwindSafe(work).catch_unwind().await {
                Ok(report) => report,
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    RunReport::empty(RunEnd::Failed(format!("panicked: {what}")))
                }
            };
            me.finish(index, id, started_ms, report, began.elapsed());
        };
        runs.spawn(run);
        Tick::Started(id)
    }

    fn record(&self, rec: &RunRecord) -> nifty_state::Result<u64> {
        let id = self.store.start_run(&rec.job, rec.started_ms)?;
        self.store.finish_run(id, rec)?;
        Ok(id)
    }

    fn finish(&self, index: usize, id: u64, started_ms: UnixMillis, r: RunReport, took: Duration) {
        let Some(slot) = self.jobs.get(index) else {
            return;
        };
        let job = &slot.spec.name;
        let outcome = match &r.end {
            RunEnd::Completed => RunOutcome::Completed,
            RunEnd::BudgetSpent => RunOutcome::BudgetSpent,
            RunEnd::Interrupted => RunOutcome::Interrupted,
            RunEnd::Failed(reason) => RunOutcome::Failed {
                reason: reason.clone(),
            },
        };
        // The wall clock may step; the run's length comes from the monotonic clock.
        let rec = RunRecord {
            job: job.clone(),
            started_ms,
            ended_ms: Some(started_ms + took.as_millis() as u64),
            outcome,
            pages: r.pages,
            items: r.items,
            errors: r.errors,
        };
        match &r.end {
            RunEnd::Failed(reason) => {
                warn!(job = %job, run = id, reason = %reason, items = r.items, "run failed")
            }
            end => info!(
                job = %job, run = id, end = ?end, pages = r.pages, items = r.items,
                errors = r.errors, ms = took.as_millis() as u64, "run ended"
            ),
        }
        if let Err(e) = self.store.finish_run(id, &rec) {
            error!(job = %job, run = id, error = %e, "could not record the end of a run");
        }
        crate::metrics::record_run(job, &rec);
        crate::metrics::set_running(job, false);
        *slot.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(RunView::new(id, &rec));
        slot.running.store(false, Ordering::Release);
    }

    /// Waits for the runs under way to end (they see the stop signal), at most `grace`.
    /// Returns the number still running when the grace ran out.
    pub async fn drain(&self, grace: Duration) -> usize {
        let mut set = std::mem::take(&mut *self.runs.lock().unwrap_or_else(|e| e.into_inner()));
        let waited = tokio::time::timeout(grace, async {
            while let Some(r) = set.join_next().await {
                if let Err(e) = r {
                    error!(error = %e, "a job run panicked");
                }
            }
        })
        .await;
        match waited {
            Ok(()) => 0,
            Err(_) => set.len(),
        }
    }

    /// Reaps finished runs, so a daemon running for years keeps no handles of old runs.
    pub fn reap(&self) {
        let mut set = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(r) = set.try_join_next() {
            if let Err(e) = r {
                error!(error = %e, "a job run panicked");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use std::cell::Cell;
    use std::sync::atomic::AtomicU64;

    use super::*;

    thread_local! {
        static BASE: Cell<Option<Instant>> = const { Cell::new(None) };
    }

    /// When the test began, on tokio's clock.
    fn base() -> Instant {
        BASE.with(|b| match b.get() {
            Some(t) => t,
            None => {
                let t = Instant::now();
                b.set(Some(t));
                t
            }
        })
    }

    /// Milliseconds of tokio's (paused) clock since the test began, as the wall clock.
    fn clock() -> UnixMillis {
        1_000_000 + Instant::now().duration_since(base()).as_millis() as u64
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &nifty_state::StoreOptions::default()).unwrap();
        (dir, store)
    }

    /// Work that handles one item every `step` until it has done `items`, stopping at the
    /// budget or the stop signal after the item in hand (as a real pass stops after a
    /// commit).
    fn stepping(items: u64, step: Duration, started: Arc<AtomicU64>) -> Work {
        Arc::new(move |limits: RunLimits| {
            let started = Arc::clone(&started);
            Box::pin(async move {
                started.fetch_add(1, Ordering::SeqCst);
                let mut done = 0;
                while done < items {
                    if limits.stopping() {
                        return RunReport {
                            end: RunEnd::Interrupted,
                            pages: done,
                            items: done,
                            errors: 0,
                        };
                    }
                    if Instant::now() >= limits.deadline {
                        return RunReport {
                            end: RunEnd::BudgetSpent,
                            pages: done,
                            items: done,
                            errors: 0,
                        };
                    }
                    tokio::time::sleep(step).await;
                    done += 1;
                }
                RunReport {
                    end: RunEnd::Completed,
                    pages: done,
                    items: done,
                    errors: 1,
                }
            })
        })
    }

    fn spec(name: &str, budget_secs: u64, work: Work) -> JobSpec {
        JobSpec {
            name: name.into(),
            schedule: "0 * * * * *".into(),
            budget: Duration::from_secs(budget_secs),
            work,
        }
    }

    /// Sleeps on tokio's clock until `t` seconds after the test began.
    async fn at(t: u64) {
        tokio::time::sleep_until(base() + Duration::from_secs(t)).await;
    }

    fn runs_oldest_first(store: &Store) -> Vec<RunRecord> {
        let mut runs: Vec<RunRecord> = store
            .runs(1000)
            .unwrap()
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        runs.reverse();
        runs
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_never_overlaps_itself_and_skipped_ticks_are_recorded() {
        clock();
        let (_dir, store) = store();
        let (_tx, stop) = watch::channel(false);
        let started = Arc::new(AtomicU64::new(0));
        // 45 items of 2 s each: 90 s of work, far beyond the 60 s budget.
        let s = Scheduler::new(
            store.clone(),
            vec![spec(
                "pin",
                60,
                stepping(45, Duration::from_secs(2), Arc::clone(&started)),
            )],
            stop,
            clock,
        );
        assert!(matches!(s.tick(0), Tick::Started(_)));
        at(20).await;
        assert!(s.views()[0].running);
        assert!(matches!(s.tick(0), Tick::Skipped(_)));
        at(40).await;
        assert!(matches!(s.tick(0), Tick::Skipped(_)));
        // The run stops at its budget after the item in hand: 60 s, 30 items.
        at(61).await;
        assert!(!s.views()[0].running);
        assert!(matches!(s.tick(0), Tick::Started(_)));
        at(125).await;
        assert_eq!(s.drain(Duration::from_secs(1)).await, 0);
        assert_eq!(
            started.load(Ordering::SeqCst),
            2,
            "skipped ticks start nothing"
        );

        let runs = runs_oldest_first(&store);
        let outcomes: Vec<&str> = runs.iter().map(|r| r.outcome.name()).collect();
        // Records are keyed by start: the skipped ticks come after the run they hit.
        assert_eq!(
            outcomes,
            ["budget_spent", "skipped", "skipped", "budget_spent"]
        );
        let first = &runs[0];
        assert_eq!(
            (first.started_ms, first.ended_ms),
            (1_000_000, Some(1_060_000))
        );
        assert_eq!((first.items, first.pages), (30, 30));
        assert_eq!(runs[1].started_ms, 1_020_000);
        assert_eq!(runs[1].ended_ms, Some(1_020_000));
        assert_eq!(runs[2].started_ms, 1_040_000);
        let second = &runs[3];
        assert_eq!(second.started_ms, 1_061_000);
        assert_eq!(second.ended_ms, Some(1_121_000));
        // The view shows the last real run, not a skipped tick.
        let last = s.views()[0].last.clone().unwrap();
        assert_eq!(
            (last.outcome.as_str(), last.items, last.duration_ms),
            ("budget_spent", 30, Some(60_000))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn runs_record_what_they_did_failures_and_panics_included() {
        clock();
        let (_dir, store) = store();
        let (_tx, stop) = watch::channel(false);
        let failing: Work = Arc::new(|_| {
            Box::pin(async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                RunReport {
                    end: RunEnd::Failed("cluster unavailable: http_503".into()),
                    pages: 0,
                    items: 7,
                    errors: 4,
                }
            })
        });
        let panicking: Work = Arc::new(|_| {
            Box::pin(async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                panic!("a bug");
            })
        });
        let s = Scheduler::new(
            store.clone(),
            vec![
                spec(
                    "scrape/main",
                    30,
                    stepping(5, Duration::from_secs(1), Arc::default()),
                ),
                spec("follow", 30, failing),
                spec("analyse", 30, panicking),
            ],
            stop,
            clock,
        );
        for i in 0..3 {
            assert!(matches!(s.tick(i), Tick::Started(_)));
        }
        assert_eq!(s.tick(7), Tick::Ignored);
        at(10).await;
        assert_eq!(s.drain(Duration::from_secs(1)).await, 0);
        let runs = runs_oldest_first(&store);
        let by_job = |j: &str| runs.iter().find(|r| r.job == j).unwrap().clone();
        let scrape = by_job("scrape/main");
        assert_eq!(scrape.outcome, RunOutcome::Completed);
        assert_eq!((scrape.pages, scrape.items, scrape.errors), (5, 5, 1));
        assert_eq!(scrape.ended_ms.unwrap() - scrape.started_ms, 5_000);
        let follow = by_job("follow");
        assert_eq!(
            follow.outcome,
            RunOutcome::Failed {
                reason: "cluster unavailable: http_503".into()
            }
        );
        assert_eq!((follow.items, follow.errors), (7, 4));
        let analyse = by_job("analyse");
        assert_eq!(
            analyse.outcome,
            RunOutcome::Failed {
                reason: "panicked: a bug".into()
            }
        );
        // A panicked job is not stuck as running: its next tick starts a run.
        assert!(matches!(s.tick(2), Tick::Started(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_interrupts_runs_at_their_next_item_and_ends_ticks() {
        clock();
        let (_dir, store) = store();
        let (tx, stop) = watch::channel(false);
        let s = Scheduler::new(
            store.clone(),
            vec![spec(
                "pin",
                600,
                stepping(1000, Duration::from_secs(2), Arc::default()),
            )],
            stop,
            clock,
        );
        assert!(matches!(s.tick(0), Tick::Started(_)));
        at(9).await;
        tx.send(true).unwrap();
        assert_eq!(s.tick(0), Tick::Ignored, "no run starts once stopping");
        let began = Instant::now();
        assert_eq!(s.drain(Duration::from_secs(5)).await, 0);
        assert!(
            began.elapsed() <= Duration::from_secs(2),
            "stopped after the item in hand"
        );
        let runs = runs_oldest_first(&store);
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].outcome, RunOutcome::Interrupted);
        assert_eq!(runs[0].items, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn drain_gives_up_after_its_grace() {
        clock();
        let (_dir, store) = store();
        let (tx, stop) = watch::channel(false);
        // Work that ignores the stop signal for a minute.
        let stubborn: Work = Arc::new(|_| {
            Box::pin(async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                RunReport::empty(RunEnd::Completed)
            })
        });
        let s = Scheduler::new(
            store.clone(),
            vec![spec("follow", 600, stubborn)],
            stop,
            clock,
        );
        s.tick(0);
        tx.send(true).unwrap();
        assert_eq!(s.drain(Duration::from_secs(4)).await, 1);
        // Its record says it was still running; the next daemon marks it interrupted.
        assert_eq!(runs_oldest_first(&store)[0].outcome, RunOutcome::Running);
    }
}
