//! `nifty pin`, `nifty follow`, `nifty check` and `nifty report`: the pinner's passes and
//! the questions an operator asks about their outcome.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::str::FromStr as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use cid::Cid;
use nifty_pinner::backend::{Auth, Backend, ClusterClient, ClusterOptions, PsaClient, PsaOptions};
use nifty_pinner::fetch::{FetchOptions, Fetcher};
use nifty_pinner::pass::{self, Ending, Limits, PassOptions, PassReport};
use nifty_state::{Address, PinRecord, Store, TokenId, TokenKey, UnixMillis, keys::hex};
use serde::Serialize;
use url::Url;

use crate::UsageError;
use crate::cli::{CheckArgs, PassArgs, ReportArgs};
use crate::commands::{now_ms, open_store};
use crate::config::{AuthKind, BackendKind, Config};
use crate::output::{StdoutError, out, outln};

/// Exit code when a pass stopped because the gateway or the pinning backend is unavailable:
/// nothing is lost, the rest waits for the next run.
pub const EXIT_OUTAGE: u8 = 4;

/// A pass stopped by an outage. Exit code 4.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Outage(pub String);

/// The pass options the configuration describes.
pub fn pass_options(config: &Config) -> PassOptions {
    let p = &config.pinner;
    PassOptions {
        analyse_concurrency: p.analyse_concurrency as usize,
        pin_concurrency: p.pin_concurrency as usize,
        max_attempts: p.max_attempts,
        retry_base: Duration::from_secs(p.retry_base_secs),
        follow_chunk: p.follow_chunk as usize,
        ..PassOptions::default()
    }
}

/// The metadata fetcher the configuration describes.
pub fn fetcher(config: &Config) -> anyhow::Result<Fetcher> {
    let g = &config.gateway;
    let parse = |key: &str, s: &str| {
        Url::parse(s).map_err(|e| UsageError(format!("config key `{key}`: not a URL: {e}")))
    };
    let mut opts = FetchOptions::new(
        parse("gateway.url", &g.url)?,
        parse("gateway.arweave_url", &g.arweave_url)?,
    );
    opts.timeout = Duration::from_millis(g.timeout_ms);
    opts.max_bytes = g.max_bytes as usize;
    opts.allow_hosts = g.allow_hosts.clone();
    opts.secrets = config.secrets();
    Ok(Fetcher::new(opts)?)
}

/// The pinning backend the configuration describes.
pub fn backend(config: &Config) -> anyhow::Result<Backend> {
    let c = &config.cluster;
    let url = Url::parse(&c.url)
        .map_err(|e| UsageError(format!("config key `cluster.url`: not a URL: {e}")))?;
    let timeout = Duration::from_millis(c.timeout_ms);
    let max_body = c.max_body_mb.saturating_mul(1 << 20);
    let secrets = config.secrets();
    let missing = |key: &str| UsageError(format!("config key `{key}` names no secret"));
    Ok(match c.api {
        BackendKind::Cluster => {
            let mut opts = ClusterOptions::new(url);
            opts.timeout = timeout;
            opts.backoff.max_attempts = c.attempts;
            opts.max_body = max_body;
            opts.secrets = secrets;
            opts.replication_min = (c.replication_min != 0).then_some(c.replication_min);
            opts.replication_max = (c.replication_max != 0).then_some(c.replication_max);
            opts.auth = match c.auth {
                AuthKind::None => Auth::None,
                AuthKind::Basic => Auth::Basic {
                    user: c.user.clone(),
                    password: c
                        .password
                        .clone()
                        .ok_or_else(|| missing("cluster.password_env"))?,
                },
                AuthKind::Bearer => Auth::Bearer(
                    c.token
                        .clone()
                        .ok_or_else(|| missing("cluster.token_env"))?,
                ),
            };
            Backend::Cluster(ClusterClient::new(opts)?)
        }
        BackendKind::Psa => {
            let token = c
                .token
                .clone()
                .ok_or_else(|| missing("cluster.token_env"))?;
            let mut opts = PsaOptions::new(url, token);
            opts.timeout = timeout;
            opts.backoff.max_attempts = c.attempts;
            opts.max_body = max_body;
            opts.secrets = secrets;
            Backend::Psa(PsaClient::new(opts)?)
        }
    })
}

/// Limits that stop a pass at ctrl-c / SIGTERM or after `budget`. Call inside the runtime.
fn limits(budget: Option<u64>) -> Limits {
    Limits {
        stop: crate::scrape::shutdown_signal(),
        deadline: budget.map(|s| tokio::time::Instant::now() + Duration::from_secs(s)),
    }
}

/// One pass's line in the output.
#[derive(Serialize)]
struct PassLine<'a> {
    pass: &'a str,
    seconds: f64,
    #[serde(flatten)]
    report: &'a PassReport,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// `nifty pin`: one analysis pass, then one pin pass.
pub fn pin(config: &Config, args: &PassArgs) -> anyhow::Result<()> {
    let store = open_store(config)?;
    let fetcher = fetcher(config)?;
    let backend = backend(config)?;
    let opts = pass_options(config);
    runtime()?.block_on(async {
        let limits = limits(args.budget);
        let started = now_ms();
        let run = store.start_run("pin", started)?;
        let t = Instant::now();
        let analysed = pass::analyse(&store, &fetcher, &opts, &limits).await?;
        // A report that cannot be printed does not stop the work: it fails the command after.
        let shown = print_pass("analyse", &analysed, t, args.json);
        let t = Instant::now();
        let pinned = if matches!(analysed.ending, Some(Ending::Stopped)) {
            PassReport {
                ending: Some(Ending::Stopped),
                ..PassReport::default()
            }
        } else {
            pass::pin(&store, &backend, &opts, &limits).await?
        };
        let shown = shown.and(print_pass("pin", &pinned, t, args.json));
        finish_run(&store, (run, "pin", started), &[&analysed, &pinned])?;
        outcome(&[&analysed, &pinned])?;
        Ok(shown?)
    })
}

/// `nifty follow`: one follow-up pass over the pending pins.
pub fn follow(config: &Config, args: &PassArgs) -> anyhow::Result<()> {
    let store = open_store(config)?;
    let backend = backend(config)?;
    let opts = pass_options(config);
    runtime()?.block_on(async {
        let limits = limits(args.budget);
        let started = now_ms();
        let run = store.start_run("follow", started)?;
        let t = Instant::now();
        let followed = pass::follow(&store, &backend, &opts, &limits).await?;
        let shown = print_pass("follow", &followed, t, args.json);
        finish_run(&store, (run, "follow", started), &[&followed])?;
        outcome(&[&followed])?;
        Ok(shown?)
    })
}

fn print_pass(
    name: &str,
    report: &PassReport,
    started: Instant,
    json: bool,
) -> Result<(), StdoutError> {
    let seconds = started.elapsed().as_secs_f64();
    if json {
        let line = PassLine {
            pass: name,
            seconds,
            report,
        };
        return outln!("{}", serde_json::to_string(&line).unwrap_or_default());
    }
    let outcomes: Vec<String> = report
        .outcomes
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let ending = match &report.ending {
        Some(Ending::Drained) | None => "done".to_owned(),
        Some(Ending::Stopped) => "stopped (budget or signal); the rest waits".to_owned(),
        Some(Ending::Outage(why)) => format!("stopped: {why}; the rest waits"),
    };
    outln!(
        "{name}: {} handled in {seconds:.1} s ({}), {} linked, {} errors: {ending}",
        report.handled,
        if outcomes.is_empty() {
            "nothing to do".to_owned()
        } else {
            outcomes.join(", ")
        },
        report.linked,
        report.errors,
    )
}

/// Ends run `(id, job, started)` with the outcome its passes' reports add up to.
fn finish_run(
    store: &Store,
    (id, job, started_ms): (u64, &str, UnixMillis),
    reports: &[&PassReport],
) -> anyhow::Result<()> {
    let outcome = match reports.iter().find_map(|r| match &r.ending {
        Some(Ending::Outage(why)) => Some(why.clone()),
        _ => None,
    }) {
        Some(reason) => nifty_state::RunOutcome::Failed { reason },
        None if reports
            .iter()
            .any(|r| matches!(r.ending, Some(Ending::Stopped))) =>
        {
            nifty_state::RunOutcome::Interrupted
        }
        None => nifty_state::RunOutcome::Completed,
    };
    let rec = nifty_state::RunRecord {
        job: job.to_owned(),
        started_ms,
        ended_ms: Some(now_ms()),
        outcome,
        pages: 0,
        items: reports.iter().map(|r| r.handled).sum(),
        errors: reports.iter().map(|r| r.errors).sum(),
    };
    store.finish_run(id, &rec)?;
    Ok(())
}

fn outcome(reports: &[&PassReport]) -> anyhow::Result<()> {
    for r in reports {
        if let Some(Ending::Outage(why)) = &r.ending {
            return Err(
                Outage(format!("{why}; nothing is lost, run again once it is back")).into(),
            );
        }
    }
    Ok(())
}

/// A pin as `check` and `report` show it.
#[derive(Serialize)]
struct PinView {
    cid: String,
    status: &'static str,
    refs: u64,
    attempts: u32,
    last_error: Option<String>,
    first_use: Option<String>,
}

fn cid_text(bytes: &[u8]) -> String {
    Cid::try_from(bytes).map_or_else(|_| format!("0x{}", hex(bytes)), |c| c.to_string())
}

fn pin_view(cid: &[u8], p: &PinRecord) -> PinView {
    PinView {
        cid: cid_text(cid),
        status: p.status.name(),
        refs: p.refs,
        attempts: p.attempts,
        last_error: p.last_error.clone(),
        first_use: p
            .first_use
            .as_ref()
            .map(|(k, role)| format!("{} ({role})", k.graph_id())),
    }
}

/// `nifty check <contract> <tokenId>` or `nifty check <cid>`.
pub fn check(config: &Config, args: &CheckArgs) -> anyhow::Result<()> {
    let out = match crate::commands::remote(&args.remote, config)? {
        Some(r) => match (&args.what[..], args.token_id.as_deref()) {
            (what, Some(id)) => r.token(what, id)?,
            (what, None) => r.pin(what)?,
        },
        None => {
            let store = open_store(config)?;
            match (&args.what[..], args.token_id.as_deref()) {
                (what, Some(id)) => check_token(&store, what, id)?,
                (what, None) => check_cid(&store, what)?,
            }
        }
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&out)?)?;
    } else {
        out!("{}", render(&out))?;
    }
    Ok(())
}

/// A token's record and the status of each of its resources, as `check` shows it.
pub fn check_token(store: &Store, contract: &str, id: &str) -> anyhow::Result<serde_json::Value> {
    let contract = Address::from_str(contract)
        .map_err(|e| UsageError(format!("{contract:?} is not a contract address: {e}")))?;
    let token_id =
        TokenId::from_str(id).map_err(|e| UsageError(format!("{id:?} is not a token id: {e}")))?;
    let key = TokenKey { contract, token_id };
    let Some(t) = store.token(&key)? else {
        return Err(crate::NotFound(format!("no token {} in the store", key.graph_id())).into());
    };
    let mut pins = vec![];
    for cid in &t.resources {
        match store.pin(cid)? {
            Some(p) => pins.push(serde_json::to_value(pin_view(cid, &p))?),
            None => pins.push(serde_json::json!({"cid": cid_text(cid), "status": "unknown"})),
        }
    }
    Ok(serde_json::json!({
        "token": key.graph_id(),
        "source": t.source,
        "token_uri": t.token_uri,
        "mint_block": t.mint_block,
        "status": t.status.name(),
        "reason": t.reason,
        "resources": pins,
    }))
}

/// A CID's pin record and a few tokens that use it, as `check CID` shows it.
pub fn check_cid(store: &Store, text: &str) -> anyhow::Result<serde_json::Value> {
    let cid = Cid::try_from(text.trim()).map_err(|e| {
        UsageError(format!(
            "{text:?} is not a CID ({e}); to check a token give its contract and token id"
        ))
    })?;
    let bytes = cid.to_bytes();
    let Some(p) = store.pin(&bytes)? else {
        return Err(crate::NotFound(format!("no token in the store uses {cid}")).into());
    };
    let users: Vec<String> = store
        .pin_users(&bytes, 10)?
        .iter()
        .map(TokenKey::graph_id)
        .collect();
    let mut v = serde_json::to_value(pin_view(&bytes, &p))?;
    v["tokens"] = serde_json::json!(users);
    Ok(v)
}

/// Renders a JSON object as indented `key: value` lines.
fn render(v: &serde_json::Value) -> String {
    fn walk(v: &serde_json::Value, indent: usize, out: &mut String) {
        let pad = "  ".repeat(indent);
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    match v {
                        serde_json::Value::Object(_) | serde_json::Value::Array(_) => {
                            let _ = writeln!(out, "{pad}{k}:");
                            walk(v, indent + 1, out);
                        }
                        other => {
                            let _ = writeln!(out, "{pad}{k}: {}", scalar(other));
                        }
                    }
                }
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    match item {
                        serde_json::Value::Object(_) => {
                            let _ = writeln!(out, "{pad}-");
                            walk(item, indent + 1, out);
                        }
                        other => {
                            let _ = writeln!(out, "{pad}- {}", scalar(other));
                        }
                    }
                }
            }
            other => {
                let _ = writeln!(out, "{pad}{}", scalar(other));
            }
        }
    }
    fn scalar(v: &serde_json::Value) -> String {
        match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => "-".into(),
            other => other.to_string(),
        }
    }
    let mut out = String::new();
    walk(v, 0, &mut out);
    out
}

/// One failure reason in `nifty report`.
#[derive(Serialize, serde::Deserialize)]
pub struct ReasonLine {
    /// `fetch`, `parse`, `uri`, `pin`, ...
    pub stage: String,
    /// The machine-readable reason.
    pub reason: String,
    /// How many.
    pub count: u64,
    /// A few of them: token ids, or CIDs for the pin stage.
    pub examples: Vec<String>,
}

/// Parses `7d`, `12h`, `30m` (humantime).
pub fn since_ms(text: &str, now: UnixMillis) -> Result<UnixMillis, UsageError> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        UsageError(format!(
            "--since {text:?}: {e} (write a span such as 7d, 12h or 30m)"
        ))
    })?;
    Ok(now.saturating_sub(d.as_millis() as u64))
}

/// `nifty report [--since 7d]`: failures by stage and reason, with counts and examples.
pub fn report(config: &Config, args: &ReportArgs) -> anyhow::Result<()> {
    let since = args
        .since
        .as_deref()
        .map(|s| since_ms(s, now_ms()))
        .transpose()?;
    let view = match crate::commands::remote(&args.remote, config)? {
        Some(r) => r.failures(args.since.as_deref())?,
        None => failures(&open_store(config)?, since, 2)?,
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&view)?)?;
        return Ok(());
    }
    out!("{}", render_report(&view, args.since.as_deref()))?;
    Ok(())
}

/// What `report` and `/api/failures` show.
#[derive(Serialize, serde::Deserialize)]
pub struct FailureReport {
    /// Only failures entered since this time, when asked.
    pub since_ms: Option<UnixMillis>,
    /// Tokens stored.
    pub tokens: u64,
    /// Tokens per status.
    pub tokens_by_status: BTreeMap<String, u64>,
    /// Pins per status.
    pub pins_by_status: BTreeMap<String, u64>,
    /// Failures by stage and reason, most first.
    pub failures: Vec<ReasonLine>,
}

/// Failures by stage and reason from the `failures` index, with up to `examples` each.
pub fn failures(
    store: &Store,
    since: Option<UnixMillis>,
    examples: usize,
) -> anyhow::Result<FailureReport> {
    let counts = store.counts()?;
    let mut lines = vec![];
    for name in counts.failures.keys() {
        let Some((stage, reason)) = name.split_once('.') else {
            continue;
        };
        // Without a time window the count is the counter's and only the examples are
        // read: O(examples), whatever the store's size. A window reads that reason's
        // entries.
        let (count, entries) = match since {
            None => (
                counts.failures.get(name).copied().unwrap_or(0),
                store.failure_examples(stage, reason, examples)?,
            ),
            Some(_) => store.failure_entries(stage, reason, since, examples)?,
        };
        if count == 0 {
            continue;
        }
        let examples = entries
            .iter()
            .map(|e| match TokenKey::decode(&e.item) {
                Ok(k) if stage != nifty_state::counters::PIN_STAGE => k.graph_id(),
                _ => cid_text(&e.item),
            })
            .collect();
        lines.push(ReasonLine {
            stage: stage.to_owned(),
            reason: reason.to_owned(),
            count,
            examples,
        });
    }
    lines.sort_by(|a, b| b.count.cmp(&a.count).then(a.stage.cmp(&b.stage)));
    Ok(FailureReport {
        since_ms: since,
        tokens: counts.tokens,
        tokens_by_status: counts.tokens_by_status,
        pins_by_status: counts.pins_by_status,
        failures: lines,
    })
}

/// The human form of `nifty report`.
pub fn render_report(r: &FailureReport, since: Option<&str>) -> String {
    let lines = &r.failures;
    let mut out = String::new();
    let _ = writeln!(out, "tokens: {}", r.tokens);
    let _ = writeln!(out, "  {}", join_counts(&r.tokens_by_status));
    let _ = writeln!(out, "pins: {}", r.pins_by_status.values().sum::<u64>());
    let _ = writeln!(out, "  {}", join_counts(&r.pins_by_status));
    match since {
        Some(s) => {
            let _ = writeln!(out, "why not pinned (entered in the last {s}):");
        }
        None => {
            let _ = writeln!(out, "why not pinned:");
        }
    }
    if lines.is_empty() {
        let _ = writeln!(out, "  nothing failed");
    }
    for l in lines {
        let _ = writeln!(
            out,
            "  {:<10} {:<22} {:>9}  e.g. {}",
            l.stage,
            l.reason,
            l.count,
            l.examples.join(", ")
        );
    }
    out
}

fn join_counts(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "-".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}
