//! The daemon's jobs: a scrape job per enabled source, and the pinner's analyse, pin and
//! follow-up passes, each wrapped as [`Work`] for the scheduler.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use nifty_pinner::backend::Backend;
use nifty_pinner::pass::{self, Ending, PassError, PassOptions, PassReport};
use nifty_scraper::{Ctx, Progress, Stop};
use nifty_state::Store;

use super::schedule::{JobSpec, RunEnd, RunLimits, RunReport, Work};
use crate::commands::now_ms;
use crate::config::{Config, SourceConfig};

/// One lock per source cursor: a scrape run holds it for its whole run, and an operator's
/// cursor move through the API takes it, so a move is never overwritten by the next commit
/// of a run that started before it.
pub type CursorLocks = BTreeMap<String, Arc<tokio::sync::Mutex<()>>>;

/// The daemon's jobs as the configuration describes them, and the cursor locks of their
/// sources.
pub fn from_config(config: &Config, store: &Store) -> anyhow::Result<(Vec<JobSpec>, CursorLocks)> {
    let mut jobs = vec![];
    let mut locks = CursorLocks::new();
    let secrets = config.secrets();
    for (name, src) in config.sources.iter().filter(|(_, s)| s.enabled) {
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        locks.insert(name.clone(), Arc::clone(&lock));
        jobs.push(scrape_job(store, name, src, &secrets, lock)?);
    }
    let j = &config.jobs;
    let opts = crate::pinning::pass_options(config);
    if j.analyse.enabled {
        let fetcher = crate::pinning::fetcher(config)?;
        jobs.push(pass_job(
            "analyse",
            &j.analyse,
            store,
            &opts,
            Arc::new(move |store, opts, limits| {
                let fetcher = fetcher.clone();
                Box::pin(async move { pass::analyse(&store, &fetcher, &opts, &limits).await })
            }),
        ));
    }
    if j.pin.enabled || j.follow.enabled {
        let backend = crate::pinning::backend(config)?;
        if j.pin.enabled {
            let b = backend.clone();
            jobs.push(pass_job(
                "pin",
                &j.pin,
                store,
                &opts,
                Arc::new(move |store, opts, limits| {
                    let b = b.clone();
                    Box::pin(async move { pass::pin(&store, &b, &opts, &limits).await })
                }),
            ));
        }
        if j.follow.enabled {
            let b: Backend = backend;
            jobs.push(pass_job(
                "follow",
                &j.follow,
                store,
                &opts,
                Arc::new(move |store, opts, limits| {
                    let b = b.clone();
                    Box::pin(async move { pass::follow(&store, &b, &opts, &limits).await })
                }),
            ));
        }
    }
    Ok((jobs, locks))
}

/// The job that runs a source's scrape: its cursor up to the snapshot, within the budget.
fn scrape_job(
    store: &Store,
    name: &str,
    src: &SourceConfig,
    secrets: &nifty_upstream::Secrets,
    lock: Arc<tokio::sync::Mutex<()>>,
) -> anyhow::Result<JobSpec> {
    let client = crate::scrape::source_client(src, secrets)?;
    let (store, source, src2) = (store.clone(), name.to_owned(), src.clone());
    let work: Work = Arc::new(move |limits: RunLimits| {
        let (store, client, source, src, lock) = (
            store.clone(),
            client.clone(),
            source.clone(),
            src2.clone(),
            Arc::clone(&lock),
        );
        Box::pin(async move {
            let _cursor = lock.lock().await;
            let progress = Arc::new(Progress::default());
            let ctx = Ctx {
                store,
                client: client.clone(),
                source,
                page_size: src.page_size,
                progress: Arc::clone(&progress),
                now_ms,
            };
            let retries = client.stats().retries.load(Ordering::Relaxed);
            let mut stop = limits.stop.clone();
            let result = nifty_scraper::lane::scrape_source(
                &ctx,
                src.start_block,
                src.confirmations,
                Some(limits.deadline),
                &mut stop,
            )
            .await;
            let end = match result {
                Ok(Stop::Finished) => RunEnd::Completed,
                Ok(Stop::Budget) => RunEnd::BudgetSpent,
                Ok(Stop::Shutdown) => RunEnd::Interrupted,
                Err(e) => RunEnd::Failed(format!("{}: {e}", e.kind())),
            };
            RunReport {
                end,
                pages: progress.pages.load(Ordering::Relaxed),
                items: progress.tokens.load(Ordering::Relaxed),
                errors: client
                    .stats()
                    .retries
                    .load(Ordering::Relaxed)
                    .saturating_sub(retries),
            }
        })
    });
    Ok(JobSpec {
        name: format!("scrape/{name}"),
        schedule: src.schedule.clone(),
        budget: Duration::from_secs(src.budget_secs),
        work,
    })
}

/// One of the pinner's passes, given the store, options and limits.
type Pass = Arc<
    dyn Fn(
            Store,
            PassOptions,
            nifty_pinner::pass::Limits,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<PassReport, PassError>> + Send>,
        > + Send
        + Sync,
>;

fn pass_job(
    name: &str,
    cfg: &crate::config::JobConfig,
    store: &Store,
    opts: &PassOptions,
    pass: Pass,
) -> JobSpec {
    let (store, opts) = (store.clone(), opts.clone());
    let work: Work = Arc::new(move |limits: RunLimits| {
        let (store, opts, pass) = (store.clone(), opts.clone(), Arc::clone(&pass));
        Box::pin(async move {
            let result = pass(store, opts, limits.pass_limits()).await;
            pass_report(result, &limits)
        })
    });
    JobSpec {
        name: name.to_owned(),
        schedule: cfg.schedule.clone(),
        budget: Duration::from_secs(cfg.budget_secs),
        work,
    }
}

/// A pass's result as a run report: a stop is the budget's unless the daemon is stopping;
/// an outage fails the run with its reason (its work stays queued).
fn pass_report(result: Result<PassReport, PassError>, limits: &RunLimits) -> RunReport {
    match result {
        Ok(r) => RunReport {
            end: match r.ending {
                Some(Ending::Drained) | None => RunEnd::Completed,
                Some(Ending::Stopped) if limits.stopping() => RunEnd::Interrupted,
                Some(Ending::Stopped) => RunEnd::BudgetSpent,
                Some(Ending::Outage(why)) => RunEnd::Failed(why),
            },
            pages: 0,
            items: r.handled,
            errors: r.errors,
        },
        Err(e) => RunReport::empty(RunEnd::Failed(e.to_string())),
    }
}
