//! `nifty run`: the scheduler, its jobs and the HTTP API in one process.

pub mod jobs;
pub mod schedule;

use std::future::IntoFuture as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use nifty_state::{RunOutcome, Store};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::api::history::{self, History, Sample};
use crate::api::{self, ApiState};
use crate::commands::now_ms;
use crate::config::Config;
use crate::output::outln;
use schedule::Scheduler;

/// How long runs under way get to reach their next commit once a stop is asked: the
/// daemon exits within 5 s of SIGTERM, the HTTP server's goodbye included.
pub const DRAIN_GRACE: Duration = Duration::from_millis(4000);
/// How long open HTTP connections get after the runs are drained.
const HTTP_GRACE: Duration = Duration::from_millis(500);
/// How often the daemon asks whether the store has failed (see [`failed_store`]).
const STORE_CHECK_EVERY: Duration = Duration::from_secs(1);
/// Run records kept: four jobs ticking every minute fill this in about 17 days; older
/// ones are pruned, so years of ticks do not grow the store without bound.
const RUNS_KEPT: u64 = 100_000;

/// The line `nifty run` prints on stdout once it serves: where the API and dashboard are.
pub fn ready_line(addr: SocketAddr) -> String {
    serde_json::json!({
        "api": format!("http://{addr}"),
        "dashboard": format!("http://{addr}/"),
        "metrics": format!("http://{addr}/metrics"),
    })
    .to_string()
}

/// Marks the runs a killed process left `running` as interrupted: whoever holds the store
/// now is the only process that could be running them, and it has not started any.
fn close_stale_runs(store: &Store) -> anyhow::Result<()> {
    for (id, mut rec) in store.open_runs()? {
        if rec.outcome == RunOutcome::Running {
            rec.outcome = RunOutcome::Interrupted;
            store.finish_run(id, &rec)?;
            info!(run = id, job = %rec.job, "run left running by an earlier process marked interrupted");
        }
    }
    Ok(())
}

/// Resolves once the store has met an I/O error: it takes no more writes, and only a new
/// process recovers it (as of its last commit), so the daemon stops rather than fail every
/// run from then on or hang in a store that waits forever.
async fn failed_store(store: &Store) -> nifty_state::StateError {
    let mut every = tokio::time::interval(STORE_CHECK_EVERY);
    loop {
        every.tick().await;
        if let Some(e) = store.failure() {
            return e;
        }
    }
}

/// Serves the daemon until `stop` turns true (or the store fails): cron ticks start the configured jobs, the API
/// answers on `listener`, and `on_ready` hears the bound address once both are up. On stop,
/// ticks cease, runs stop at their next commit (within [`DRAIN_GRACE`]) and the server
/// closes.
pub async fn serve(
    config: Config,
    store: Store,
    listener: TcpListener,
    stop: watch::Receiver<bool>,
    on_ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    crate::metrics::install();
    close_stale_runs(&store)?;
    let (specs, locks) = jobs::from_config(&config, &store)?;
    if specs.is_empty() {
        warn!("no job is enabled: the daemon only serves the API");
    }
    let scheduler = Scheduler::new(store.clone(), specs, stop.clone(), now_ms);
    let history = Arc::new(History::default());
    let state = ApiState::new(
        store.clone(),
        config.clone(),
        Some(Arc::clone(&scheduler)),
        locks,
        Arc::clone(&history),
    );
    let addr = listener.local_addr().context("reading the API's address")?;
    if !addr.ip().is_loopback() {
        warn!(%addr, "the API listens beyond loopback: reads are open to that network, writes need the admin token");
    }

    let mut cron = tokio_cron_scheduler::JobScheduler::new()
        .await
        .context("starting the cron scheduler")?;
    for (i, spec) in scheduler.specs().enumerate() {
        let s = Arc::clone(&scheduler);
        let job = tokio_cron_scheduler::Job::new_async(spec.schedule.as_str(), move |_, _| {
            s.tick(i);
            Box::pin(async {})
        })
        .with_context(|| format!("scheduling {} at {:?}", spec.name, spec.schedule))?;
        cron.add(job)
            .await
            .with_context(|| format!("scheduling {}", spec.name))?;
        info!(job = %spec.name, schedule = %spec.schedule, budget_secs = spec.budget.as_secs(), "job scheduled");
    }
    cron.start().await.context("starting the cron scheduler")?;
    if config.jobs.run_at_start {
        for i in 0..scheduler.specs().count() {
            scheduler.tick(i);
        }
    }

    let sampler = {
        let (store, history, scheduler) =
            (store.clone(), Arc::clone(&history), Arc::clone(&scheduler));
        tokio::spawn(async move {
            let mut every = tokio::time::interval(history::EVERY);
            loop {
                every.tick().await;
                let s = store.clone();
                let sampled = tokio::task::spawn_blocking(move || {
                    let pruned = s.prune_runs(RUNS_KEPT)?;
                    if pruned > 0 {
                        tracing::debug!(pruned, "old run records pruned");
                    }
                    s.counts()
                });
                match sampled.await {
                    Ok(Ok(c)) => history.push(Sample::of(&c, now_ms())),
                    Ok(Err(e)) => warn!(error = %e, "could not sample the counters"),
                    Err(e) => warn!(error = %e, "could not sample the counters"),
                }
                crate::metrics::upkeep();
                scheduler.reap();
            }
        })
    };

    let app = api::router(state);
    let mut server_stop = stop.clone();
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = server_stop.wait_for(|s| *s).await;
        })
        .into_future();
    let mut server = tokio::spawn(server);
    info!(%addr, "serving the API and dashboard");
    // A command that finds the data dir held says where this API is.
    if let Err(e) = store.announce_api(&format!("http://{addr}")) {
        warn!(error = %e, "cannot record the API address in the lock file");
    }
    on_ready(addr);

    let mut stop_rx = stop.clone();
    let mut store_failed = None;
    let served = tokio::select! {
        r = &mut server => Some(r),
        _ = stop_rx.wait_for(|s| *s) => None,
        e = failed_store(&store) => {
            error!(error = %e, "the store failed; stopping so that a restart recovers it");
            store_failed = Some(e);
            None
        }
    };
    info!("stopping: runs under way stop at their next commit");
    if let Err(e) = cron.shutdown().await {
        warn!(error = %e, "the cron scheduler did not stop cleanly");
    }
    let left = scheduler.drain(DRAIN_GRACE).await;
    if left > 0 {
        warn!(
            runs = left,
            "runs still going after the grace period; their work since the last commit is redone next time"
        );
    }
    sampler.abort();
    let served = match served {
        Some(r) => r,
        None => match tokio::time::timeout(HTTP_GRACE, &mut server).await {
            Ok(r) => r,
            Err(_) => {
                server.abort();
                Ok(Ok(()))
            }
        },
    };
    if let Some(e) = store_failed {
        return Err(anyhow::Error::from(e).context("nifty run stopped: the store failed"));
    }
    store.flush().context("flushing the store")?;
    match served {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            error!(error = %e, "the HTTP server failed");
            Err(anyhow::Error::from(e).context("serving the API"))
        }
        Err(e) => Err(anyhow::anyhow!("the HTTP server task failed: {e}")),
    }
}

/// Binds the API's listener, naming the address and the config key on failure.
pub async fn bind(listen: &str) -> anyhow::Result<TcpListener> {
    let addr: SocketAddr = listen
        .parse()
        .map_err(|e| crate::UsageError(format!("http.listen = {listen:?}: {e}")))?;
    TcpListener::bind(addr).await.map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            "; is another nifty running? change http.listen (or NIFTY_HTTP_LISTEN)"
        } else {
            ""
        };
        anyhow::anyhow!("cannot listen on {addr} (http.listen): {e}{hint}")
    })
}

/// `nifty run`.
pub fn run(config: &Config) -> anyhow::Result<()> {
    config.require_admin_token()?;
    let store = crate::commands::open_store(config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let served = runtime.block_on(async {
        let listener = bind(&config.http.listen).await?;
        let stop = crate::scrape::shutdown_signal();
        serve(config.clone(), store, listener, stop, |addr| {
            // A daemon whose stdout went away keeps serving: it logs to stderr.
            let ready = ready_line(addr);
            let shown = outln!("{ready}").and_then(|()| crate::output::flush());
            if let Err(e) = shown {
                warn!(error = %e, %ready, "could not print the ready line; serving all the same");
            }
        })
        .await
    });
    // Runs that missed the grace period may still hold blocking store work: give it a
    // moment rather than waiting for it without bound.
    runtime.shutdown_timeout(Duration::from_millis(300));
    served?;
    info!("stopped");
    Ok(())
}
