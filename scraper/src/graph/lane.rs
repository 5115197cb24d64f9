//! Paging one snapshot of a subgraph along one lane: fetch, check, commit, repeat. A lane
//! fetches the next page while the previous page commits, so the network and the store work
//! at the same time; commits of one lane stay strictly in order.

use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::time::Instant;

use nifty_state::{Address, Contract, Page, Position, Token, TokenKey};
use tokio::sync::watch;
use tracing::{info, warn};

use super::client::GraphClient;
use super::rows::{PageAsk, Row, check_page};
use crate::error::{Result, ScrapeError};
use crate::lane::{Ctx, Lane, Pending, Snapshot, Stop, settle, stop_requested};
use crate::paging::{Ordered, finished, is_finished};

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
    let st = lane.lock();
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
    let cursor = lane.cursor_at(ctx, snap, &position);
    let out = ctx.store.commit_page(&Page {
        cursor_name: &lane.name,
        cursor,
        tokens: &tokens,
        contracts: &contracts,
    })?;
    lane.committed(ctx, st, &position, out.inserted, out.duplicates);
    Ok(done)
}

/// Pages `lane` at `snap` until it is finished, the deadline passes or shutdown is asked
/// (both checked after each commit), or an error that retries did not clear.
pub async fn run(
    ctx: &Ctx,
    client: &GraphClient,
    lane: &Arc<Lane>,
    snap: Snapshot,
    deadline: Option<Instant>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Stop> {
    let mut position = lane.lock().position.clone();
    let mut end = lane.end();
    let mut pending: Option<Pending> = None;
    // `first` of the next page: the source's page size, halved while answers come back too
    // large (a run of rows with huge `data:` URIs), doubled back after each page that fits.
    let mut first = ctx.page_size.max(1);
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
            r = client.page(position.block, &position.id, end, first, snap.block) => r,
            _ = stop_requested(shutdown) => {
                settle(pending).await?;
                return Ok(Stop::Shutdown);
            }
        };
        // The previous commit must land (in order) before this page is considered.
        if let Some(true) = settle(pending.take()).await? {
            return Ok(Stop::Finished);
        }
        let data = match fetched {
            Err(e @ ScrapeError::TooLarge { .. }) if first > 1 => {
                first = (first / 2).max(1);
                warn!(
                    cursor = %lane.name, %position, first, error = %e,
                    "page answer too large; asking again for fewer rows"
                );
                end = lane.end();
                continue;
            }
            other => other?,
        };
        let ask = PageAsk {
            source: &ctx.source,
            cursor: &position,
            end,
            page_size: first as usize,
            secrets: client.secrets(),
        };
        first = first.saturating_mul(2).min(ctx.page_size.max(1));
        let merged = check_page(data, &ask)?;
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
