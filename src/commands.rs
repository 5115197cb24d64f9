//! The commands that work on the local store: `status`, `cursor`, `config`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use nifty_state::{
    Address, Counts, Cursor, Position, SCHEMA_VERSION, StateError, Store, TokenId, TokenKey,
};
use serde::{Deserialize, Serialize};

use crate::UsageError;
use crate::cli::{CursorCommand, MoveArgs, Remote, StatusArgs};
use crate::config::{Config, TEMPLATE};
use crate::output::{out, outln};

/// Milliseconds since the epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn when(ms: u64) -> String {
    if ms == 0 {
        return "-".into();
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Opens the store the config names.
pub fn open_store(config: &Config) -> anyhow::Result<Store> {
    let opts = nifty_state::StoreOptions {
        sync_commits: config.store.sync_commits,
        cache_bytes: config.store.cache_mb * 1024 * 1024,
        min_free_bytes: config.store.min_free_mb * 1024 * 1024,
        scrub: Some(store_scrub(config.secrets())),
    };
    Ok(Store::open(&config.data_dir, &opts)?)
}

/// The longest stored text (a run's reason, a pin's error): long enough for a chain of
/// contexts around an upstream's (already bounded) words.
const STORED_TEXT_CHARS: usize = 4000;

/// What the store passes every text through that may quote an upstream: the one cleaning
/// path of server text, with every configured secret.
fn store_scrub(secrets: nifty_upstream::Secrets) -> nifty_state::TextScrub {
    nifty_state::TextScrub::new(secrets.len(), move |t: &str| {
        secrets.clean_bounded(t, STORED_TEXT_CHARS)
    })
}

/// The daemon to ask instead of the data dir, when `--api` names one.
pub(crate) fn remote(
    remote: &Remote,
    config: &Config,
) -> anyhow::Result<Option<crate::remote::Remote>> {
    remote
        .api
        .as_deref()
        .map(|url| crate::remote::Remote::new(url, config))
        .transpose()
}

/// `nifty config init`.
pub fn config_init(path: &Path, force: bool) -> anyhow::Result<()> {
    if path.exists() && !force {
        return Err(UsageError(format!(
            "{} already exists; pass --force to replace it",
            path.display()
        ))
        .into());
    }
    std::fs::write(path, TEMPLATE).with_context(|| format!("writing {}", path.display()))?;
    outln!(
        "wrote {} (every key at its default; edit it, then run `nifty status`)",
        path.display()
    )?;
    Ok(())
}

/// `nifty config show`.
pub fn config_show(config: &Config) -> anyhow::Result<()> {
    out!("{}", config.to_toml())?;
    Ok(())
}

/// One source (or other cursor) in `nifty status`.
#[derive(Debug, Serialize, Deserialize)]
pub struct SourceStatus {
    /// Cursor name: a configured source, or a backfill partition.
    pub name: String,
    /// `graph` or `rpc`, for configured sources.
    pub kind: Option<String>,
    /// Whether the daemon schedules it, for configured sources.
    pub enabled: Option<bool>,
    /// Where the cursor stands; `None` before the first commit.
    pub cursor: Option<Position>,
    /// The snapshot block of the last run.
    pub snapshot: Option<u64>,
    /// The head block when last seen.
    pub head: Option<u64>,
    /// The last block of a backfill partition; `None` for a source following the head.
    pub end: Option<u64>,
    /// Blocks between cursor and head (sources following the head only).
    pub lag: Option<u64>,
    /// Blocks the cursor stands beyond the head it last saw: it claims blocks the source
    /// has not produced, so nothing is scraped until the head passes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ahead: Option<u64>,
    /// Tokens this source was first to find.
    pub tokens: u64,
    /// When the cursor last moved (ms since the epoch).
    pub updated_ms: Option<u64>,
}

/// `nifty status --json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct StatusReport {
    /// The data dir.
    pub data_dir: String,
    /// The store's schema version.
    pub schema_version: u32,
    /// Bytes the store takes on disk.
    pub disk_bytes: u64,
    /// Every counter, folded.
    #[serde(flatten)]
    pub counts: Counts,
    /// Per source and per cursor.
    pub sources: Vec<SourceStatus>,
    /// What `--audit` found, when asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditView>,
}

/// `--audit` findings.
#[derive(Debug, Serialize, Deserialize)]
pub struct AuditView {
    /// True when counters and trees agree.
    pub clean: bool,
    /// Tokens counted by scanning.
    pub tokens_scanned: u64,
    /// `name: stored vs counted` for each disagreement.
    pub mismatches: Vec<String>,
    /// Outbox items stored twice.
    pub duplicate_outbox_items: u64,
}

/// Builds the status report from counters and cursors only (plus the audit when asked).
pub fn status_report(store: &Store, config: &Config, audit: bool) -> anyhow::Result<StatusReport> {
    let counts = store.counts()?;
    let cursors: BTreeMap<String, Cursor> = store.cursors()?.into_iter().collect();
    let mut sources = vec![];
    let source_row = |name: &str, c: Option<&Cursor>| SourceStatus {
        name: name.to_owned(),
        kind: config.sources.get(name).map(|s| s.kind.to_string()),
        enabled: config.sources.get(name).map(|s| s.enabled),
        cursor: c.map(|c| c.position.clone()),
        snapshot: c.and_then(|c| c.snapshot),
        head: c.and_then(|c| c.head),
        end: c.and_then(|c| c.end),
        lag: c.filter(|c| c.end.is_none()).and_then(Cursor::lag),
        ahead: c.and_then(Cursor::ahead),
        tokens: counts.tokens_by_source.get(name).copied().unwrap_or(0),
        updated_ms: c.map(|c| c.updated_ms),
    };
    for name in config.sources.keys() {
        sources.push(source_row(name, cursors.get(name)));
    }
    for (name, c) in &cursors {
        if !config.sources.contains_key(name) {
            sources.push(source_row(name, Some(c)));
        }
    }
    let audit = if audit {
        let a = store.audit()?;
        Some(AuditView {
            clean: a.is_clean(),
            tokens_scanned: a.tokens,
            mismatches: a
                .mismatches
                .iter()
                .map(|(n, s, c)| format!("{n}: counter {s}, counted {c}"))
                .collect(),
            duplicate_outbox_items: a.duplicate_outbox_items,
        })
    } else {
        None
    };
    Ok(StatusReport {
        data_dir: store.dir().display().to_string(),
        schema_version: SCHEMA_VERSION,
        disk_bytes: store.disk_bytes()?,
        counts,
        sources,
        audit,
    })
}

fn breakdown(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k} {v}")).collect();
    format!("  ({})", parts.join(", "))
}

fn opt(v: Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

fn position(p: Option<&Position>) -> String {
    p.map(|p| p.to_string())
        .unwrap_or_else(|| "not started".into())
}

/// The human form of `nifty status`.
pub fn render_status(r: &StatusReport) -> String {
    let c = &r.counts;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "store      {} (schema {}, {:.1} MiB on disk)",
        r.data_dir,
        r.schema_version,
        r.disk_bytes as f64 / (1024.0 * 1024.0)
    );
    let _ = writeln!(
        s,
        "tokens     {}{}",
        c.tokens,
        breakdown(&c.tokens_by_status)
    );
    let _ = writeln!(s, "contracts  {}", c.contracts);
    let _ = writeln!(s, "pins       {}{}", c.pins, breakdown(&c.pins_by_status));
    let _ = writeln!(
        s,
        "outbox     {}{}",
        c.outbox.values().sum::<u64>(),
        breakdown(&c.outbox)
    );
    if !c.failures.is_empty() {
        let _ = writeln!(
            s,
            "failures   {}{}",
            c.failures.values().sum::<u64>(),
            breakdown(&c.failures)
        );
    }
    if r.sources.is_empty() {
        let _ = writeln!(s, "sources    none configured (see `nifty config init`)");
    } else {
        let w = r
            .sources
            .iter()
            .map(|x| x.name.len())
            .max()
            .unwrap_or(6)
            .max(6);
        let _ = writeln!(
            s,
            "\n{:<w$} {:<6} {:<44} {:>10} {:>10} {:>10} {:>8} {:>10}  updated",
            "source", "kind", "cursor", "end", "snapshot", "head", "lag", "tokens"
        );
        for src in &r.sources {
            let _ = writeln!(
                s,
                "{:<w$} {:<6} {:<44} {:>10} {:>10} {:>10} {:>8} {:>10}  {}",
                src.name,
                src.kind.as_deref().unwrap_or("-"),
                position(src.cursor.as_ref()),
                opt(src.end),
                opt(src.snapshot),
                opt(src.head),
                match src.ahead {
                    Some(n) => format!("ahead by {n}"),
                    None => opt(src.lag),
                },
                src.tokens,
                when(src.updated_ms.unwrap_or(0)),
            );
        }
    }
    if let Some(a) = &r.audit {
        if a.clean {
            let _ = writeln!(
                s,
                "\naudit      clean: {} tokens scanned, every counter matches",
                a.tokens_scanned
            );
        } else {
            let _ = writeln!(
                s,
                "\naudit      MISMATCH after scanning {} tokens:",
                a.tokens_scanned
            );
            for m in &a.mismatches {
                let _ = writeln!(s, "           {m}");
            }
            if a.duplicate_outbox_items > 0 {
                let _ = writeln!(
                    s,
                    "           {} duplicate outbox items",
                    a.duplicate_outbox_items
                );
            }
        }
    }
    s
}

/// `nifty status`.
pub fn status(config: &Config, args: &StatusArgs) -> anyhow::Result<()> {
    let report = match remote(&args.remote, config)? {
        Some(_) if args.audit => {
            return Err(UsageError(
                "--audit reads the whole store, which the daemon does not offer over HTTP; \
                 stop the daemon and run `nifty status --audit` on its data dir"
                    .into(),
            )
            .into());
        }
        Some(r) => r.status()?.report,
        None => {
            let store = open_store(config)?;
            status_report(&store, config, args.audit)?
        }
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        out!("{}", render_status(&report))?;
    }
    if report.audit.as_ref().is_some_and(|a| !a.clean) {
        anyhow::bail!("audit found counters that disagree with the store");
    }
    Ok(())
}

/// Parses `--id`: a subgraph token id `0x<contract>_<tokenId>`, normalised to the
/// subgraph's lowercase form so byte comparison matches graph-node's order.
pub fn parse_graph_id(id: &str) -> Result<String, UsageError> {
    let bad = |why: &str| {
        UsageError(format!(
            "--id {}: {why}; expected 0x<40 hex digits>_<decimal token id>",
            nifty_state::shown(id)
        ))
    };
    let (contract, token) = id.split_once('_').ok_or_else(|| bad("no '_'"))?;
    let contract: Address = contract.parse().map_err(|e| bad(&format!("{e}")))?;
    let token_id: TokenId = token.parse().map_err(|e| bad(&format!("{e}")))?;
    Ok(TokenKey { contract, token_id }.graph_id())
}

/// `nifty cursor ...`.
pub fn cursor(config: &Config, cmd: &CursorCommand) -> anyhow::Result<()> {
    match cmd {
        CursorCommand::Show {
            name,
            json,
            remote: r,
        } => {
            let mut rows: Vec<(String, Cursor)> = match remote(r, config)? {
                Some(r) => r.cursors()?.into_iter().collect(),
                None => open_store(config)?.cursors()?,
            };
            let mut names: Vec<String> = config.sources.keys().cloned().collect();
            names.extend(rows.iter().map(|(n, _)| n.clone()));
            if let Some(n) = name {
                rows.retain(|(k, _)| k == n);
                if rows.is_empty() {
                    return Err(UsageError(format!(
                        "no cursor named {}{}",
                        nifty_state::shown(n),
                        listed(names)
                    ))
                    .into());
                }
            }
            if *json {
                let v: BTreeMap<_, _> = rows.into_iter().collect();
                outln!("{}", serde_json::to_string_pretty(&v)?)?;
            } else if rows.is_empty() {
                outln!(
                    "no cursors yet: nothing has been scraped into {}",
                    config.data_dir.display()
                )?;
            } else {
                for (n, c) in rows {
                    outln!(
                        "{n}: {}  snapshot {}  head {}  lag {}  updated {}",
                        c.position,
                        opt(c.snapshot),
                        opt(c.head),
                        opt(c.lag()),
                        when(c.updated_ms)
                    )?;
                }
            }
            Ok(())
        }
        CursorCommand::Set(args) => move_cursor(config, args, false),
        CursorCommand::Rewind(args) => move_cursor(config, args, true),
    }
}

fn known(store: &Store, config: &Config) -> anyhow::Result<String> {
    let mut names: Vec<String> = config.sources.keys().cloned().collect();
    names.extend(store.cursors()?.into_iter().map(|(n, _)| n));
    Ok(listed(names))
}

fn listed(mut names: Vec<String>) -> String {
    names.sort();
    names.dedup();
    if names.is_empty() {
        "; there are no sources or cursors yet".into()
    } else {
        format!("; known: {}", names.join(", "))
    }
}

/// How far past the source's head `--force` lets a cursor be set.
pub const FORCE_AHEAD_BLOCKS: u64 = 100_000;

/// The source behind cursor `name`: a configured source of that name, or the source a
/// backfill job (`backfill/<job>[/<k>]`) saved; `Err` says why there is none.
fn cursor_source(
    store: &Store,
    config: &Config,
    name: &str,
) -> anyhow::Result<Result<crate::config::SourceConfig, String>> {
    if let Some(s) = config.sources.get(name) {
        return Ok(Ok(s.clone()));
    }
    let Some(job) = name
        .strip_prefix("backfill/")
        .map(|rest| rest.split('/').next().unwrap_or_default())
    else {
        return Ok(Err(format!(
            "{name:?} is not a configured source, so there is no endpoint to ask"
        )));
    };
    let Some(saved) = store.job_settings(job)? else {
        return Ok(Err(format!(
            "backfill job {job:?} saved no source settings (an older build made it)"
        )));
    };
    if let Some(s) = config.sources.get(&saved.source)
        && s.shown_url() == saved.url
    {
        return Ok(Ok(s.clone()));
    }
    if saved.url_redacted {
        return Ok(Err(format!(
            "backfill job {job:?}'s URL carried a secret, which the store does not keep"
        )));
    }
    let kind = match saved.kind.as_str() {
        "rpc" => crate::config::SourceKind::Rpc,
        _ => crate::config::SourceKind::Graph,
    };
    let mut s = crate::config::SourceConfig::new(kind, &saved.url);
    s.timeout_ms = saved.timeout_ms;
    Ok(Ok(s))
}

/// Asks the source behind cursor `name` for its head block, trying twice.
async fn cursor_head(
    store: &Store,
    config: &Config,
    name: &str,
) -> anyhow::Result<Result<u64, String>> {
    let src = match cursor_source(store, config, name)? {
        Ok(s) => s,
        Err(why) => return Ok(Err(why)),
    };
    let backoff = nifty_scraper::retry::Backoff {
        base: Duration::from_millis(200),
        max: Duration::from_secs(1),
        max_attempts: 2,
    };
    let client = match crate::scrape::source_client_with(&src, &config.secrets(), backoff) {
        Ok(c) => c,
        Err(e) => return Ok(Err(e.to_string())),
    };
    Ok(client
        .snapshot(0)
        .await
        .map(|s| s.head)
        .map_err(|e| format!("{} at {}: {e}", e.kind(), client.endpoint())))
}

/// Checks a forward move of cursor `name` to `block` (and `id`) against its source's head:
/// at most the start of `head + 1` (everything up to the head done), or with `force` at
/// most `head + FORCE_AHEAD_BLOCKS`. When the head cannot be asked the move is refused,
/// unless `force`, which then bounds it by the last head the cursor recorded (or its
/// position). Returns the head seen, to record with the move. Rewinds, moves backwards and
/// cursors that do not exist are not checked here: applying them reports those.
pub async fn check_cursor_move(
    store: &Store,
    config: &Config,
    name: &str,
    block: u64,
    id: Option<&str>,
    rewind: bool,
    force: bool,
) -> anyhow::Result<Option<u64>> {
    let before = store.cursor(name)?;
    if rewind || (before.is_none() && !config.sources.contains_key(name)) {
        return Ok(None);
    }
    let to = Position {
        block,
        id: id.unwrap_or_default().to_owned(),
    };
    if before.as_ref().is_some_and(|c| to < c.position) {
        // A move backwards is refused as such by the store.
        return Ok(None);
    }
    match cursor_head(store, config, name).await? {
        Ok(head) => {
            let limit = head.saturating_add(FORCE_AHEAD_BLOCKS);
            if force && block > limit {
                return Err(UsageError(format!(
                    "cursor {name}: block {block} is beyond the source's head block {head}; \
                     --force allows at most {FORCE_AHEAD_BLOCKS} blocks past it (block {limit})"
                ))
                .into());
            }
            if !force && to > Position::start_of(head.saturating_add(1)) {
                return Err(UsageError(format!(
                    "cursor {name}: block {block} is beyond the source's head block {head}; \
                     give at most {} (everything up to the head done), or --force for a \
                     block up to {limit}",
                    head.saturating_add(1)
                ))
                .into());
            }
            Ok(Some(head))
        }
        Err(why) => {
            let known = before
                .as_ref()
                .map_or(0, |c| c.head.unwrap_or(c.position.block));
            let limit = known.saturating_add(FORCE_AHEAD_BLOCKS);
            if !force {
                return Err(UsageError(format!(
                    "cursor {name}: cannot fetch the source's head ({why}), so block {block} \
                     cannot be checked against it; the move is refused. Retry when the source \
                     answers, or give --force (then at most block {limit}: {FORCE_AHEAD_BLOCKS} \
                     past the last head seen or the cursor's block, {known})"
                ))
                .into());
            }
            if block > limit {
                return Err(UsageError(format!(
                    "cursor {name}: cannot fetch the source's head ({why}); --force allows at \
                     most {FORCE_AHEAD_BLOCKS} blocks past the last head seen or the cursor's block ({known}), \
                     block {limit}"
                ))
                .into());
            }
            Ok(None)
        }
    }
}

/// Moves cursor `name` to `block` (and `id` within it) for an operator: forward, or
/// backwards when `rewind`. Returns where it was and where it is. `head`, when the caller
/// just asked the source ([`check_cursor_move`]), is recorded with a forward move.
pub fn apply_cursor_move(
    store: &Store,
    config: &Config,
    name: &str,
    block: u64,
    id: Option<&str>,
    rewind: bool,
    head: Option<u64>,
) -> anyhow::Result<(Option<Position>, Position)> {
    let id = match id {
        Some(id) => parse_graph_id(id)?,
        None => String::new(),
    };
    let before = store.cursor(name)?;
    if before.is_none() && !config.sources.contains_key(name) {
        return Err(crate::NotFound(format!(
            "no source or cursor named {}{}",
            nifty_state::shown(name),
            known(store, config)?
        ))
        .into());
    }
    let to = Position { block, id };
    let after = match (rewind, head) {
        (true, _) => store.rewind_cursor(name, to, now_ms())?,
        (false, Some(h)) => store.set_cursor_seen(name, to, h, now_ms())?,
        (false, None) => store.set_cursor(name, to, now_ms())?,
    };
    let from = before.map(|c| c.position);
    tracing::info!(
        cursor = %name,
        from = %position(from.as_ref()),
        to = %after.position,
        rewind,
        "cursor moved by operator"
    );
    Ok((from, after.position))
}

fn move_cursor(config: &Config, args: &MoveArgs, rewind: bool) -> anyhow::Result<()> {
    let (from, to) = match &args.remote.api {
        Some(url) => {
            let moved = crate::remote::Remote::new(url, config)?.move_cursor(
                &args.name,
                &crate::api::CursorMove {
                    block: args.block,
                    id: args.id.clone(),
                    rewind,
                    force: args.force,
                },
            )?;
            (moved.from, moved.to)
        }
        None => {
            let store = open_store(config)?;
            let id = args.id.as_deref().map(parse_graph_id).transpose()?;
            let head = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(check_cursor_move(
                    &store,
                    config,
                    &args.name,
                    args.block,
                    id.as_deref(),
                    rewind,
                    args.force,
                ))?;
            // A refused move is the operator asking for the wrong direction: a usage error.
            apply_cursor_move(
                &store,
                config,
                &args.name,
                args.block,
                args.id.as_deref(),
                rewind,
                head,
            )
            .map_err(|e| match e.downcast::<StateError>() {
                Ok(e @ (StateError::CursorBackwards { .. } | StateError::NotARewind { .. })) => {
                    anyhow::Error::from(UsageError(e.to_string()))
                }
                Ok(e) => e.into(),
                Err(e) => e,
            })?
        }
    };
    outln!(
        "cursor {}: {} -> {}",
        args.name,
        position(from.as_ref()),
        to
    )?;
    Ok(())
}
