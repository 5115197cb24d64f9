//! The reorg check a chain source runs before each scheduled scrape: compare the hashes of
//! the blocks it remembers with the node's; when the newest differs, find the newest that
//! still matches and take back everything committed after it.

use nifty_state::Unwound;
use tracing::{info, warn};

use super::client::ChainClient;
use crate::error::{Result, ScrapeError};
use crate::lane::Ctx;
use crate::metrics::RPC_REORGS;

/// Checks the source's remembered blocks against the node and unwinds what a reorg
/// orphaned. Returns what was unwound, or `None` when the chain is as remembered (or there
/// is nothing remembered yet).
pub async fn check(ctx: &Ctx, client: &ChainClient) -> Result<Option<Unwound>> {
    let depth = client.config().reorg_depth;
    if depth == 0 {
        return Ok(None);
    }
    let Some(cursor) = ctx.store.cursor(&ctx.source)? else {
        return Ok(None);
    };
    // Blocks at or after the cursor are not committed (an operator rewound it): what is
    // remembered of them says nothing.
    let mut recent = ctx
        .store
        .recent_blocks(&ctx.source, usize::try_from(depth).unwrap_or(usize::MAX))?;
    recent.retain(|(b, _)| *b < cursor.position.block);
    let Some(&(newest, newest_hash)) = recent.first() else {
        return Ok(None);
    };
    let now = client.blocks(&[newest]).await?;
    match now.get(&newest) {
        Some(b) if b.hash.0 == newest_hash => return Ok(None),
        Some(_) => {}
        None => {
            // A node behind the block (a lagging backend behind a load balancer) proves
            // nothing; the next run asks again.
            info!(source = %ctx.source, block = newest, "the node does not have the newest committed block yet; reorg check skipped");
            return Ok(None);
        }
    }
    let numbers: Vec<u64> = recent.iter().map(|(b, _)| *b).collect();
    let canonical = client.blocks(&numbers).await?;
    let last_good = recent
        .iter()
        .find(|(b, h)| canonical.get(b).map(|c| c.hash.0) == Some(*h))
        .map(|(b, _)| *b);
    let Some(last_good) = last_good else {
        let oldest = recent.last().map_or(newest, |(b, _)| *b);
        return Err(ScrapeError::ReorgTooDeep {
            source_name: ctx.source.clone(),
            oldest,
        });
    };
    warn!(source = %ctx.source, newest, last_good, "the chain was reorganised below the cursor; taking back the orphaned blocks");
    let (store, name, at) = (ctx.store.clone(), ctx.source.clone(), (ctx.now_ms)());
    let out = tokio::task::spawn_blocking(move || store.unwind(&name, last_good, at))
        .await
        .map_err(|e| ScrapeError::Invalid(format!("unwind task failed: {e}")))??;
    ::metrics::counter!(RPC_REORGS, "source" => ctx.source.clone()).increment(1);
    info!(source = %ctx.source, removed = out.tokens_removed, cursor = %out.position, "reorg unwound");
    Ok(Some(out))
}
