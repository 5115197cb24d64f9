//! `nifty backfill`: wiring a source (a subgraph or a chain node) to the store, with
//! progress, shutdown and a run record.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nifty_scraper::backfill::{Backfill, Plan, check_job_name, job_exists};
use nifty_scraper::graph::{GraphClient, GraphClientConfig};
use nifty_scraper::retry::Backoff;
use nifty_scraper::rpc::{ChainClient, ChainClientConfig};
use nifty_scraper::{Client, Ctx, Progress, Stop};
use nifty_state::{JobSettings, RunOutcome, RunRecord, Store};
use nifty_upstream::Secrets;
use serde::Serialize;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::UsageError;
use crate::cli::{BackfillArgs, ToBlock};
use crate::commands::{now_ms, open_store};
use crate::config::{Config, SourceConfig, SourceKind};
use crate::output::{errln, outln};

/// How often progress is drawn on a terminal, and logged otherwise.
const DRAW_EVERY: Duration = Duration::from_millis(500);
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Picks the source a command names, applying `--graph`/`--rpc` and the other overrides.
fn resolve_source(config: &Config, args: &BackfillArgs) -> anyhow::Result<(String, SourceConfig)> {
    let (flag_kind, flag_url) = match (&args.graph, &args.rpc) {
        (Some(u), _) => (SourceKind::Graph, Some(u)),
        (None, Some(u)) => (SourceKind::Rpc, Some(u)),
        (None, None) => (SourceKind::Graph, None),
    };
    let adhoc = |url: &str| SourceConfig::new(flag_kind, url);
    let known = || {
        config
            .sources
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (name, mut src) = match (&args.source, flag_url) {
        (Some(n), g) => match (config.sources.get(n), g) {
            (Some(s), _) => (n.clone(), s.clone()),
            (None, Some(url)) => (n.clone(), adhoc(url)),
            (None, None) => {
                return Err(UsageError(format!(
                    "no source named {n:?} in the config (configured: {}); name one, or give \
                     --graph URL or --rpc URL",
                    known()
                ))
                .into());
            }
        },
        (None, Some(url)) => (flag_kind.to_string(), adhoc(url)),
        (None, None) => match config.sources.iter().next() {
            Some((n, s)) if config.sources.len() == 1 => (n.clone(), s.clone()),
            Some(_) => {
                return Err(UsageError(format!(
                    "several sources are configured ({}); pick one with --source",
                    known()
                ))
                .into());
            }
            None => {
                return Err(UsageError(
                    "no source configured; give --graph URL or --rpc URL, or add a \
                     [sources.NAME] table"
                        .into(),
                )
                .into());
            }
        },
    };
    if let Some(url) = flag_url {
        if src.kind != flag_kind {
            return Err(UsageError(format!(
                "source {name:?} is kind {}; give its endpoint with --{}",
                src.kind, src.kind
            ))
            .into());
        }
        src.url = url.clone();
    }
    if let Some(n) = args.page_size {
        if src.kind == SourceKind::Graph && n > crate::config::MAX_PAGE_SIZE {
            return Err(UsageError(format!(
                "--page-size {n}: a subgraph serves at most 1000 rows per request"
            ))
            .into());
        }
        src.page_size = n;
    }
    if let Some(n) = args.batch_size {
        src.batch_size = n;
    }
    if let Some(c) = args.confirmations {
        src.confirmations = c;
    }
    if let Some(t) = args.timeout_ms {
        src.timeout_ms = t;
    }
    // The same rule as the file's: a flag may not set what the config may not.
    crate::config::validate_source(&name, &src).map_err(|e| flag_error(e, args))?;
    Ok((name, src))
}

/// The source of a resumed job that saved its settings: those settings, under any flag the
/// resume command gives; a configured source of the job's name supplies the rest of its
/// keys and its secrets (its URL too, when the job was started with it).
fn resume_source(
    config: &Config,
    args: &BackfillArgs,
    job: &str,
    saved: &JobSettings,
) -> anyhow::Result<(String, SourceConfig)> {
    let mut eff = args.clone();
    let name = eff
        .source
        .get_or_insert_with(|| saved.source.clone())
        .clone();
    if eff.graph.is_none() && eff.rpc.is_none() {
        let configured = config
            .sources
            .get(&name)
            .filter(|s| s.kind.to_string() == saved.kind && s.shown_url() == saved.url);
        if configured.is_none() {
            if saved.url_redacted {
                return Err(UsageError(format!(
                    "job {job:?} was started with a URL that carried a secret ({}), which the \
                     store does not keep; give it again with --{} URL",
                    saved.url, saved.kind
                ))
                .into());
            }
            match saved.kind.as_str() {
                "rpc" => eff.rpc = Some(saved.url.clone()),
                _ => eff.graph = Some(saved.url.clone()),
            }
        }
    }
    eff.page_size = eff.page_size.or(Some(saved.page_size));
    eff.batch_size = eff.batch_size.or(Some(saved.batch_size));
    eff.confirmations = eff.confirmations.or(Some(saved.confirmations));
    eff.timeout_ms = eff.timeout_ms.or(Some(saved.timeout_ms));
    resolve_source(config, &eff)
}

/// What a new job saves of its source: no API key, and the URL as shown.
fn job_settings(source: &str, src: &SourceConfig) -> JobSettings {
    let shown = src.shown_url();
    JobSettings {
        source: source.to_owned(),
        kind: src.kind.to_string(),
        url_redacted: shown != src.url,
        url: shown,
        page_size: src.page_size,
        batch_size: src.batch_size,
        confirmations: src.confirmations,
        timeout_ms: src.timeout_ms,
    }
}

/// A job name check's error as a usage error (exit 2).
fn job_name(job: &str) -> anyhow::Result<()> {
    check_job_name(job).map_err(|e| UsageError(e.to_string()).into())
}

/// The default name of a new job: `SOURCE-<unix millis>`, or the next free millisecond
/// when a job of that name exists.
fn default_job(store: &Store, source: &str, now: u64) -> anyhow::Result<String> {
    let mut ms = now;
    loop {
        let name = format!("{source}-{ms}");
        if !job_exists(store, &name)? {
            return Ok(name);
        }
        ms += 1;
    }
}

/// A source check's error in the words of the flag that set the value, when a flag did.
fn flag_error(e: crate::config::ConfigError, args: &BackfillArgs) -> anyhow::Error {
    if let crate::config::ConfigError::Invalid {
        key,
        value,
        problem,
    } = &e
    {
        let field = key.rsplit('.').next().unwrap_or_default();
        let given = match field {
            "page_size" => args.page_size.is_some(),
            "batch_size" => args.batch_size.is_some(),
            "confirmations" => args.confirmations.is_some(),
            "timeout_ms" => args.timeout_ms.is_some(),
            _ => false,
        };
        if given {
            let flag = field.replace('_', "-");
            return UsageError(format!("--{flag} {value}: {problem}")).into();
        }
    }
    UsageError(e.to_string()).into()
}

/// The client of a source: its subgraph or its chain node. A URL or key the client cannot
/// use is a usage error (exit 2), like the same mistake in the config file.
/// `secrets` is every configured secret ([`Config::secrets`]); the client adds its own.
pub fn source_client(src: &SourceConfig, secrets: &Secrets) -> anyhow::Result<Client> {
    source_client_with(src, secrets, Backoff::default())
}

/// [`source_client`] retrying by `backoff`.
pub fn source_client_with(
    src: &SourceConfig,
    secrets: &Secrets,
    backoff: Backoff,
) -> anyhow::Result<Client> {
    let usage = |e: nifty_scraper::ScrapeError| UsageError(e.to_string());
    Ok(match src.kind {
        SourceKind::Graph => GraphClient::new(GraphClientConfig {
            url: src.url.clone(),
            api_key: src.api_key.clone(),
            timeout: Duration::from_millis(src.timeout_ms),
            backoff: backoff.clone(),
            secrets: secrets.with(src.secret_values()),
            max_row_bytes: src.max_row_bytes,
        })
        .map_err(usage)?
        .into(),
        SourceKind::Rpc => {
            let address = |s: &str, key: &str| {
                s.parse::<nifty_state::Address>()
                    .map_err(|e| UsageError(format!("{key}: {e}")))
            };
            let contracts = src
                .contracts
                .iter()
                .map(|c| address(c, "contract"))
                .collect::<Result<Vec<_>, _>>()?;
            let multicall = match src.multicall.as_str() {
                "" => None,
                m => Some(address(m, "multicall")?),
            };
            ChainClient::new(ChainClientConfig {
                url: src.url.clone(),
                api_key: src.api_key.clone(),
                timeout: Duration::from_millis(src.timeout_ms),
                backoff,
                contracts,
                batch_size: src.batch_size as usize,
                multicall,
                start_span: u64::from(src.page_size),
                max_span: src.max_span.max(u64::from(src.page_size)),
                concurrency: src.concurrency as usize,
                reorg_depth: src.reorg_depth,
                secrets: secrets.with(src.secret_values()),
                max_body_bytes: src.max_body_mb.saturating_mul(1024 * 1024),
            })
            .map_err(usage)?
            .into()
        }
    })
}

/// A shutdown signal: true once SIGINT or SIGTERM arrives.
pub fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
        info!("shutdown requested; finishing the pages in flight");
        let _ = tx.send(true);
    });
    rx
}

/// The report printed at the end.
#[derive(Debug, Serialize)]
pub struct BackfillReport {
    /// The job's name.
    pub job: String,
    /// The source recorded on tokens.
    pub source: String,
    /// `completed`, `budget_spent`, `interrupted` or `failed`.
    pub outcome: String,
    /// Tokens newly stored by this run.
    pub tokens: u64,
    /// Tokens seen that were stored already.
    pub duplicates: u64,
    /// Pages committed.
    pub pages: u64,
    /// Requests retried.
    pub retries: u64,
    /// Partitions in the job (splits add some).
    pub partitions: usize,
    /// Blocks not yet committed.
    pub blocks_left: u64,
    /// Wall time.
    pub seconds: f64,
    /// Tokens stored per second.
    pub tokens_per_sec: f64,
    /// CPU seconds this process used (user + system), where the OS tells.
    pub cpu_secs: Option<f64>,
    /// CPU microseconds per token stored.
    pub cpu_us_per_token: Option<f64>,
    /// Peak resident memory of this process in bytes, where the OS tells.
    pub peak_rss_bytes: Option<u64>,
    /// Where the source's own cursor continues, when the finished job moved it.
    pub source_cursor: Option<String>,
}

/// This process's CPU seconds (user + system) from /proc/self/stat. /proc reports clock
/// ticks in USER_HZ, which Linux fixes at 100 for this interface.
pub fn cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// This process's peak resident set size, from /proc/self/status (VmHWM).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn progress_task(
    bf: Arc<Backfill>,
    progress: Arc<Progress>,
    total_blocks: u64,
    started: Instant,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let tty = std::io::stderr().is_terminal();
        let bar = tty.then(|| {
            let b = indicatif::ProgressBar::new(total_blocks);
            let style = indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} blocks  {msg}  ETA {eta}",
            );
            if let Ok(s) = style {
                b.set_style(s);
            }
            b
        });
        let every = if tty { DRAW_EVERY } else { LOG_EVERY };
        loop {
            tokio::time::sleep(every).await;
            let tokens = progress.tokens.load(Ordering::Relaxed);
            let secs = started.elapsed().as_secs_f64().max(1e-3);
            let left = bf.blocks_left();
            let done = total_blocks.saturating_sub(left);
            let rate = tokens as f64 / secs;
            match &bar {
                Some(b) => {
                    b.set_length(total_blocks.max(done));
                    b.set_position(done);
                    b.set_message(format!(
                        "{tokens} tokens  {rate:.0}/s  {} partitions",
                        bf.partitions()
                    ));
                }
                None => {
                    let eta = if done > 0 {
                        secs * left as f64 / done as f64
                    } else {
                        f64::NAN
                    };
                    info!(
                        job = %bf.job, tokens, tokens_per_sec = rate.round(), blocks_left = left,
                        eta_secs = eta.round(), partitions = bf.partitions(), "backfill progress"
                    );
                }
            }
        }
    })
}

/// `nifty backfill`.
pub fn backfill(config: &Config, args: &BackfillArgs) -> anyhow::Result<()> {
    for job in [&args.job, &args.resume].into_iter().flatten() {
        job_name(job)?;
    }
    let (source, src, store) = match &args.resume {
        Some(job) => {
            let store = open_store(config)?;
            let (source, src) = match store.job_settings(job)? {
                Some(saved) => resume_source(config, args, job, &saved)?,
                // A job saved by an older build resumes from the config, as it always did.
                None => resolve_source(config, args)?,
            };
            (source, src, store)
        }
        None => {
            let (source, src) = resolve_source(config, args)?;
            (source, src, open_store(config)?)
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let done = runtime.block_on(async move {
        let client = source_client(&src, &config.secrets())?;
        let progress = Arc::new(Progress::default());
        let ctx = Ctx {
            store: store.clone(),
            client: client.clone(),
            source: source.clone(),
            page_size: src.page_size,
            progress: progress.clone(),
            now_ms,
        };
        let shutdown = shutdown_signal();
        let bf = match &args.resume {
            Some(job) => Backfill::resume(&ctx, job)?,
            None => {
                let job = match &args.job {
                    Some(j) => j.clone(),
                    None => default_job(&store, &source, now_ms())?,
                };
                job_name(&job)?;
                if job_exists(&store, &job)? {
                    return Err(UsageError(format!(
                        "a backfill job named {job:?} exists; resume it with --resume {job}"
                    ))
                    .into());
                }
                let to = match args.to {
                    ToBlock::Head => None,
                    ToBlock::Block(b) => Some(b),
                };
                let snap = client.snapshot(src.confirmations).await?;
                if src.confirmations > snap.head {
                    return Err(UsageError(format!(
                        "confirmations {}: more than the head block {} of source {source:?}, \
                         so no block would be final; use at most {}",
                        src.confirmations, snap.head, snap.head
                    ))
                    .into());
                }
                let plan = Plan {
                    job,
                    from: args.from.unwrap_or(src.start_block),
                    to,
                    partitions: usize::from(args.workers),
                    settings: Some(job_settings(&source, &src)),
                };
                Backfill::create(&ctx, &plan, snap.block).map_err(|e| UsageError(e.to_string()))?
            }
        };
        let bf = Arc::new(bf);
        let job = bf.job.clone();
        info!(job = %job, source = %source, endpoint = %client.endpoint(), workers = args.workers, blocks = bf.blocks_left(), "backfill starting");
        let started = Instant::now();
        let run_id = store.start_run(&format!("backfill/{job}"), now_ms())?;
        let reporter = progress_task(bf.clone(), progress.clone(), bf.blocks_left(), started);
        let deadline = args
            .budget
            .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
        let result =
            bf.run(&ctx, usize::from(args.workers), src.confirmations, deadline, shutdown).await;
        reporter.abort();
        let resume = format!("backfill {job} stopped; fix the cause, then: nifty backfill --resume {job}");
        let result = match result {
            // The store takes no more writes, and threads stuck inside sled may hold the
            // job's locks: no report and no run record, only the error.
            Err(nifty_scraper::ScrapeError::State(e)) if e.is_fatal() => {
                return Err(anyhow::Error::from(nifty_scraper::ScrapeError::State(e)).context(resume));
            }
            other => other,
        };
        let handed_over = match &result {
            Ok(Stop::Finished) => bf.hand_over(&ctx, src.start_block)?,
            _ => None,
        };
        let secs = started.elapsed().as_secs_f64();
        let outcome = match &result {
            Ok(Stop::Finished) => RunOutcome::Completed,
            Ok(Stop::Budget) => RunOutcome::BudgetSpent,
            Ok(Stop::Shutdown) => RunOutcome::Interrupted,
            Err(e) => RunOutcome::Failed { reason: format!("{}: {e}", e.kind()) },
        };
        let report = BackfillReport {
            job: job.clone(),
            source: source.clone(),
            outcome: outcome.name().to_owned(),
            tokens: progress.tokens.load(Ordering::Relaxed),
            duplicates: progress.duplicates.load(Ordering::Relaxed),
            pages: progress.pages.load(Ordering::Relaxed),
            retries: client.stats().retries.load(Ordering::Relaxed),
            partitions: bf.partitions(),
            blocks_left: bf.blocks_left(),
            seconds: secs,
            tokens_per_sec: progress.tokens.load(Ordering::Relaxed) as f64 / secs.max(1e-9),
            cpu_secs: cpu_secs(),
            cpu_us_per_token: cpu_secs()
                .filter(|_| progress.tokens.load(Ordering::Relaxed) > 0)
                .map(|c| c * 1e6 / progress.tokens.load(Ordering::Relaxed) as f64),
            peak_rss_bytes: peak_rss_bytes(),
            source_cursor: handed_over.as_ref().map(|p| p.to_string()),
        };
        let recorded = store.finish_run(
            run_id,
            &RunRecord {
                job: format!("backfill/{job}"),
                started_ms: now_ms().saturating_sub((secs * 1000.0) as u64),
                ended_ms: Some(now_ms()),
                outcome: outcome.clone(),
                pages: report.pages,
                items: report.tokens,
                errors: report.retries,
            },
        );
        match (recorded, &result) {
            (Ok(()), _) => {}
            // The run's own error says more (a full disk fails both).
            (Err(e), Err(_)) => warn!(error = %e, "could not record the backfill's end"),
            (Err(e), Ok(_)) => return Err(e.into()),
        }
        // The run's own error says more than a report that could not be printed.
        let shown = (|| -> anyhow::Result<()> {
            if args.json {
                outln!("{}", serde_json::to_string(&report)?)?;
            } else {
                outln!(
                    "backfill {job}: {} — {} tokens stored, {} already stored, {} pages, {} retries, {:.1}s, {:.0} tokens/s",
                    report.outcome, report.tokens, report.duplicates, report.pages, report.retries, secs, report.tokens_per_sec
                )?;
            }
            if let (Some(p), false) = (&handed_over, args.json) {
                outln!("source {source}: its cursor continues at {p}")?;
            }
            Ok(())
        })();
        match result {
            Ok(Stop::Finished) => shown,
            Ok(_) => {
                errln!("{} blocks left; continue with: nifty backfill --resume {job}", report.blocks_left);
                shown
            }
            Err(e) => Err(anyhow::Error::from(e).context(resume)),
        }
    });
    // A store that failed may hold blocking commits that never return: do not wait on them.
    runtime.shutdown_timeout(Duration::from_millis(300));
    done
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn the_process_can_measure_itself() {
        let before = super::cpu_secs().unwrap();
        let mut x = 0u64;
        for i in 0..30_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(super::cpu_secs().unwrap() >= before);
        let rss = super::peak_rss_bytes().unwrap();
        assert!(rss > 1_000_000 && rss < 10_000_000_000, "{rss}");
    }
}
