//! `nifty demo`: the whole pipeline on one machine. A devnet (subgraph, IPFS Cluster and
//! gateway on loopback) and the daemon over it with fast schedules, the dashboard up, and a
//! line of progress every few seconds until ctrl-c.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;
use nifty_state::Store;
use rand::Rng as _;
use secrecy::SecretString;
use tokio::sync::watch;

use crate::cli::DemoArgs;
use crate::config::{Config, JobConfig, SourceConfig, SourceKind};
use crate::devnet::{DevnetArgs, Listeners, serve_all, web_base};
use crate::output::{StdoutError, outln};

/// How often a progress line is printed.
const REPORT_EVERY: Duration = Duration::from_secs(3);

/// The milestone line a watcher (or a test) waits for.
pub const FLOWING: &str = "all tokens scraped, pins flowing";
/// The line printed once nothing is left to do.
pub const SETTLED: &str = "settled: every token analysed, every pin settled";

/// The demo's lines on stdout once it runs. The first that cannot be printed stops the
/// demo, which then fails with that error (or, for a closed pipe, ends quietly).
#[derive(Clone)]
struct Screen {
    failed: Arc<Mutex<Option<StdoutError>>>,
    stop: Arc<watch::Sender<bool>>,
}

impl Screen {
    fn line(&self, args: fmt::Arguments<'_>) {
        let Err(e) = outln!("{args}") else { return };
        if let Ok(mut failed) = self.failed.lock()
            && failed.is_none()
        {
            *failed = Some(e);
            let _ = self.stop.send(true);
        }
    }

    /// The error of the first line that could not be printed.
    fn failure(&self) -> Result<(), StdoutError> {
        match self.failed.lock().ok().and_then(|mut f| f.take()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Wraps the devnet's flags so they can be parsed from a list here.
#[derive(clap::Parser)]
struct DevnetFlags {
    #[command(flatten)]
    args: DevnetArgs,
}

/// A job every `secs` seconds with a budget of `budget` seconds.
fn fast(secs: u32, budget: u64) -> JobConfig {
    JobConfig {
        schedule: format!("*/{secs} * * * * *"),
        budget_secs: budget,
        enabled: true,
    }
}

/// The daemon's configuration over the devnet: fast schedules, the devnet's services, and
/// its loopback web server allowed.
fn demo_config(
    data_dir: PathBuf,
    listen: SocketAddr,
    urls: &DevnetUrls,
    admin_token: &str,
) -> anyhow::Result<Config> {
    let mut c = Config {
        data_dir,
        ..Config::default()
    };
    c.http.listen = listen.to_string();
    c.http.admin_token = Some(SecretString::from(admin_token.to_owned()));
    c.gateway.url = urls.gateway.clone();
    c.gateway.arweave_url = urls.arweave.clone();
    // The devnet holds a few documents for 10 s: a 2 s timeout shows them as timeouts.
    c.gateway.timeout_ms = 2000;
    c.gateway.allow_hosts = vec!["127.0.0.1".into()];
    c.cluster.url = urls.cluster.clone();
    // The devnet cluster fails 2% of first pin attempts; retry after 1 s, not a minute.
    c.pinner.retry_base_secs = 1;
    c.jobs.analyse = fast(2, 5);
    c.jobs.pin = fast(2, 5);
    c.jobs.follow = fast(3, 5);
    let mut src = SourceConfig::new(SourceKind::Graph, &urls.subgraph);
    src.schedule = "*/2 * * * * *".into();
    src.budget_secs = 10;
    c.sources.insert("devnet".into(), src);
    c.validate()?;
    Ok(c)
}

struct DevnetUrls {
    subgraph: String,
    cluster: String,
    gateway: String,
    arweave: String,
}

/// Where the demo stands, from the counters.
struct Progress {
    line: String,
    flowing: bool,
    settled: bool,
}

fn progress(store: &Store, config: &Config, chain_tokens: usize) -> anyhow::Result<Progress> {
    let r = crate::commands::status_report(store, config, false)?;
    let c = &r.counts;
    let src = r.sources.iter().find(|s| s.name == "devnet");
    let scraped_all = src.is_some_and(
        |s| matches!((&s.cursor, s.snapshot), (Some(p), Some(snap)) if p.block > snap),
    );
    let get = |m: &std::collections::BTreeMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
    let pinned = get(&c.pins_by_status, "pinned");
    let pending: u64 = ["wanted", "queued", "pinning", "retrying"]
        .iter()
        .map(|k| get(&c.pins_by_status, k))
        .sum();
    let waiting: u64 = c.outbox.values().sum();
    let analysed = c.tokens - get(&c.tokens_by_status, "queued");
    let line = format!(
        "scraped {}/{} tokens (lag {} blocks) · analysed {} · pins {} pinned, {} pending, {} failed · linked {}",
        c.tokens,
        chain_tokens,
        src.and_then(|s| s.lag)
            .map_or("-".into(), |l| l.to_string()),
        analysed,
        pinned,
        pending,
        get(&c.pins_by_status, "failed"),
        get(&c.tokens_by_status, "linked"),
    );
    Ok(Progress {
        line,
        flowing: scraped_all && pinned > 0,
        settled: scraped_all && pending == 0 && waiting == 0 && c.tokens > 0,
    })
}

/// `nifty demo`.
pub fn demo(data_dir: Option<PathBuf>, args: &DemoArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let scratch = data_dir.is_none();
    let dir = data_dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "nifty-demo-{}-{}",
            std::process::id(),
            crate::commands::now_ms()
        ))
    });
    let result = runtime.block_on(run(dir.clone(), args));
    runtime.shutdown_timeout(Duration::from_millis(300));
    if scratch {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn run(dir: PathBuf, args: &DemoArgs) -> anyhow::Result<()> {
    let signal = crate::scrape::shutdown_signal();
    let flags = DevnetFlags::try_parse_from(["devnet", "--tokens", &args.tokens.to_string()])
        .map_err(|e| anyhow::anyhow!("devnet flags: {e}"))?;
    let mut devnet_config = flags.args.config()?;
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let listeners = Listeners::bind(any, any, any).await?;
    let addrs = listeners.addrs()?;
    devnet_config.chain.web_base = Some(web_base(addrs.gateway));
    outln!(
        "nifty demo: generating a devnet chain of {} tokens…",
        args.tokens
    )?;
    let live = crate::devnet::live_chain(devnet_config.chain.clone()).await?;
    let chain_tokens = live.chain().tokens().len();
    let (devnet_stop, devnet_stopped) = tokio::sync::oneshot::channel::<()>();
    let devnet = tokio::spawn(serve_all(
        listeners,
        Arc::new(live),
        devnet_config,
        async move {
            let _ = devnet_stopped.await;
        },
    ));
    let urls = DevnetUrls {
        subgraph: format!("http://{}{}", addrs.main, crate::devnet::SUBGRAPH_PATH),
        cluster: format!("http://{}", addrs.cluster),
        gateway: format!("http://{}", addrs.gateway),
        arweave: format!("http://{}/ar", addrs.gateway),
    };

    let token: String = {
        let mut rng = rand::thread_rng();
        (0..32)
            .map(|_| format!("{:x}", rng.gen_range(0..16u8)))
            .collect()
    };
    let listener = match crate::daemon::bind(&args.listen.to_string()).await {
        Ok(l) => l,
        Err(e) => {
            outln!("nifty demo: {e}; using a free port instead")?;
            crate::daemon::bind("127.0.0.1:0").await?
        }
    };
    let listen = listener.local_addr().context("reading the API's address")?;
    let config = demo_config(dir.clone(), listen, &urls, &token)?;
    let store = crate::commands::open_store(&config)?;

    // Stop on ctrl-c, at --for, or once settled with --until-settled.
    let (stop_tx, stop) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let screen = Screen {
        failed: Arc::default(),
        stop: Arc::clone(&stop_tx),
    };
    {
        let (tx, mut signal) = (Arc::clone(&stop_tx), signal.clone());
        tokio::spawn(async move {
            let _ = signal.wait_for(|s| *s).await;
            let _ = tx.send(true);
        });
    }
    if let Some(secs) = args.r#for {
        let (tx, screen) = (Arc::clone(&stop_tx), screen.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            screen.line(format_args!("nifty demo: {secs} s are up; stopping"));
            let _ = tx.send(true);
        });
    }
    let reporter = {
        let (store, config, tx) = (store.clone(), config.clone(), Arc::clone(&stop_tx));
        let screen = screen.clone();
        let until_settled = args.until_settled;
        tokio::spawn(async move {
            let (mut said_flowing, mut said_settled) = (false, false);
            loop {
                tokio::time::sleep(REPORT_EVERY).await;
                let (s, c) = (store.clone(), config.clone());
                let Ok(Ok(p)) =
                    tokio::task::spawn_blocking(move || progress(&s, &c, chain_tokens)).await
                else {
                    continue;
                };
                screen.line(format_args!("  {}", p.line));
                if p.flowing && !said_flowing {
                    said_flowing = true;
                    screen.line(format_args!("nifty demo: {FLOWING}"));
                }
                if p.settled && !said_settled {
                    said_settled = true;
                    screen.line(format_args!(
                        "nifty demo: {SETTLED}; the daemon keeps following (ctrl-c to stop)"
                    ));
                    if until_settled {
                        let _ = tx.send(true);
                    }
                }
            }
        })
    };

    let on_ready = |addr: SocketAddr| {
        let line = |args: fmt::Arguments<'_>| screen.line(args);
        line(format_args!(""));
        line(format_args!("  dashboard    http://{addr}/"));
        line(format_args!("  API          http://{addr}/api/status"));
        line(format_args!("  metrics      http://{addr}/metrics"));
        line(format_args!("  subgraph     {}", urls.subgraph));
        line(format_args!("  cluster      {}", urls.cluster));
        line(format_args!("  store        {}", dir.display()));
        line(format_args!(
            "  admin token  {token}  (for: nifty cursor rewind devnet BLOCK --api http://{addr})"
        ));
        line(format_args!(""));
        line(format_args!(
            "nifty demo: the daemon scrapes every 2 s, analyses and pins every 2 s, follows every 3 s. Ctrl-C stops it."
        ));
    };
    let served = crate::daemon::serve(config, store, listener, stop, on_ready).await;
    reporter.abort();
    let _ = devnet_stop.send(());
    match tokio::time::timeout(Duration::from_secs(2), devnet).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the devnet stopped with an error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "the devnet task failed"),
        _ => {}
    }
    served?;
    screen.failure()?;
    screen.line(format_args!("nifty demo: stopped cleanly"));
    Ok(screen.failure()?)
}
