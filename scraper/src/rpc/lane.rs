//! Paging a lane of a chain source: logs of a block range, the new tokens' and contracts'
//! calls, the blocks' hashes and times, one commit; then the next range. The next range is
//! fetched while the previous one commits; commits of one lane stay strictly in order.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use tokio::time::Instant;

use ethers_core::types::{H160, H256, Log, U256};
use nifty_state::{Address, Contract, Page, Position, Token, TokenId, TokenKey, TokenStatus};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::abi::{self, decode_bool, decode_string};
use super::client::{BlockInfo, CallResult, ChainClient};
use super::range::{Advice, Span, advise};
use super::transport::RpcFault;
use crate::error::{Result, ScrapeError};
use crate::lane::{Ctx, Lane, Pending, Snapshot, Stop, settle, stop_requested};
use crate::metrics::RPC_RANGE_SHRINKS;

/// The reason recorded on a token whose `tokenURI` call reverted.
pub const REVERTED: &str = "reverted";

/// The reason recorded on a token whose `tokenURI` call failed other than by reverting (out
/// of gas, a broken contract).
pub const CALL_FAILED: &str = "call_failed";

/// The reason of a token whose `tokenURI` answer was over the source's `max_body_mb`.
pub const TOO_LARGE: &str = "too_large";

/// A mint read from a log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mint {
    /// The token.
    pub key: TokenKey,
    /// Its first owner.
    pub owner: Address,
    /// The block it was minted in.
    pub block: u64,
    /// That block's hash, as the log gives it.
    pub hash: H256,
}

/// Reads the mints out of `[from, to]`'s logs, in log order, the first mint of a token
/// only (a token burnt and minted again keeps its first). Logs that are not ERC-721 mints
/// (3-topic ERC-20 transfers, other events) are skipped; a log outside the range or without
/// its block is the node's error, and fails the range.
pub fn mints(logs: &[Log], from: u64, to: u64) -> std::result::Result<Vec<Mint>, RpcFault> {
    let transfer = abi::transfer_topic();
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(logs.len());
    for log in logs {
        if log.topics.len() != 4
            || log.topics[0] != transfer
            || log.topics[1] != H256::zero()
            || log.removed == Some(true)
        {
            continue;
        }
        let (Some(block), Some(hash)) = (log.block_number, log.block_hash) else {
            return Err(RpcFault::Decode(
                "a mint log without its block number or hash".into(),
            ));
        };
        let block = block.as_u64();
        if block < from || block > to {
            return Err(RpcFault::Decode(format!(
                "asked for the logs of blocks {from}..={to}, got one of block {block}"
            )));
        }
        let key = TokenKey {
            contract: Address(log.address.0),
            token_id: TokenId(U256::from_big_endian(log.topics[3].as_bytes())),
        };
        if !seen.insert(key) {
            continue;
        }
        out.push(Mint {
            key,
            owner: Address(H160::from_slice(&log.topics[2].as_bytes()[12..]).0),
            block,
            hash,
        });
    }
    Ok(out)
}

/// A range read and ready to commit.
#[derive(Debug)]
pub struct Fetched {
    /// The range's last block (the first is the lane's position).
    pub to: u64,
    /// New tokens, in log order.
    pub tokens: Vec<(TokenKey, Token)>,
    /// Contracts the store did not know.
    pub contracts: Vec<(Address, Contract)>,
    /// Hashes of the mint blocks and of `to`, for the reorg check.
    pub blocks: Vec<(u64, [u8; 32])>,
    /// The blocks of mints seen that were stored already.
    pub known: Vec<u64>,
}

/// The mints of `[from, ≤ end]`: the span shrinks on refusals until a query passes.
/// Returns the range's actual end and its mints.
async fn logs(
    ctx: &Ctx,
    client: &ChainClient,
    span: &mut Span,
    from: u64,
    end: u64,
) -> Result<(u64, Vec<Mint>)> {
    let max = client.config().backoff.max_attempts.max(1);
    let mut attempt = 0;
    let mut to = span.end_from(from, end);
    loop {
        let fault = match client.mint_logs(from, to).await {
            Ok(logs) => match mints(&logs, from, to) {
                Ok(found) => {
                    span.success();
                    return Ok((to, found));
                }
                Err(f) => f,
            },
            Err(f) => f,
        };
        let advice = advise(&fault, from, to);
        if let Advice::Shrink(hint) = advice {
            client.note_shrink();
            ::metrics::counter!(RPC_RANGE_SHRINKS, "source" => ctx.source.clone()).increment(1);
            let asked = to;
            if span.shrink(from, to, hint) {
                to = span.end_from(from, end);
                debug!(source = %ctx.source, from, asked, to, error = %fault, "log range refused; shrinking");
                if matches!(fault, RpcFault::Http { status: 503, .. }) {
                    client.back_off(1, &fault).await;
                }
                continue;
            }
        }
        if matches!(advice, Advice::Fail) {
            return Err(ScrapeError::Rpc(fault));
        }
        // One block whose mint logs alone are over the bound: asking again gives the same.
        if matches!(fault, RpcFault::TooLarge(_)) {
            warn!(source = %ctx.source, block = from, error = %fault, "one block's logs are over the bound");
            return Err(ScrapeError::Rpc(fault));
        }
        // A passing failure, or a refusal of a single block: wait and ask again.
        attempt += 1;
        if attempt >= max {
            return Err(ScrapeError::GaveUp {
                what: format!("logs of blocks {from}..={to}"),
                attempts: attempt,
                last: Box::new(ScrapeError::Rpc(fault)),
            });
        }
        warn!(source = %ctx.source, from, to, attempt, error = %fault, "log query failed; retrying");
        client.back_off(attempt, &fault).await;
    }
}

/// What a `tokenURI` answer means for the token: its URI, or why it has none.
fn uri_of(r: &CallResult) -> (Option<String>, Option<String>) {
    match r {
        CallResult::Ok(data) => match decode_string(data) {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(e.reason().to_owned())),
        },
        CallResult::Reverted => (None, Some(REVERTED.to_owned())),
        CallResult::Failed(_) => (None, Some(CALL_FAILED.to_owned())),
        CallResult::TooLarge => (None, Some(TOO_LARGE.to_owned())),
    }
}

fn string_of(r: &CallResult) -> Option<String> {
    match r {
        CallResult::Ok(data) => decode_string(data).ok(),
        CallResult::Reverted | CallResult::Failed(_) | CallResult::TooLarge => None,
    }
}

/// Words of the fault [`check_blocks`] raises.
const CHANGED: &str = "changed while its range was read";

/// Reads `[from, ≤ end]` and everything its new tokens need; reads it again (with backoff)
/// when the node switched chains midway. `known_contracts` holds the contracts already
/// asked about in this run.
async fn fetch(
    ctx: &Ctx,
    client: &ChainClient,
    span: &mut Span,
    from: u64,
    end: u64,
    remember: bool,
    known_contracts: &mut HashSet<Address>,
) -> Result<Fetched> {
    let max = client.config().backoff.max_attempts.max(1);
    let mut attempt = 0;
    loop {
        match fetch_once(ctx, client, span, from, end, remember, known_contracts).await {
            Err(ScrapeError::Rpc(f)) if f.to_string().contains(CHANGED) && attempt + 1 < max => {
                attempt += 1;
                warn!(source = %ctx.source, from, attempt, error = %f, "reading the range again");
                client.back_off(attempt, &f).await;
            }
            other => return other,
        }
    }
}

async fn fetch_once(
    ctx: &Ctx,
    client: &ChainClient,
    span: &mut Span,
    from: u64,
    end: u64,
    remember: bool,
    known_contracts: &mut HashSet<Address>,
) -> Result<Fetched> {
    let (to, all) = logs(ctx, client, span, from, end).await?;
    let mut fresh = Vec::with_capacity(all.len());
    let mut known = vec![];
    for m in all {
        if ctx.store.token(&m.key)?.is_some() {
            known.push(m.block);
        } else {
            fresh.push(m);
        }
    }
    let mut new_contracts = BTreeSet::new();
    for m in &fresh {
        let c = m.key.contract;
        if !known_contracts.contains(&c) && !new_contracts.contains(&c) {
            if ctx.store.contract(&c)?.is_some() {
                known_contracts.insert(c);
            } else {
                new_contracts.insert(c);
            }
        }
    }
    let mut calls: Vec<(H160, Vec<u8>)> = Vec::with_capacity(fresh.len() + 3 * new_contracts.len());
    for m in &fresh {
        calls.push((H160(m.key.contract.0), abi::token_uri(m.key.token_id.0)));
    }
    for c in &new_contracts {
        let to = H160(c.0);
        calls.push((to, abi::name()));
        calls.push((to, abi::symbol()));
        calls.push((to, abi::supports_metadata()));
    }
    let mut wanted: BTreeSet<u64> = fresh.iter().map(|m| m.block).collect();
    if remember {
        wanted.insert(to);
    }
    let wanted: Vec<u64> = wanted.into_iter().collect();
    let (answers, infos) = tokio::try_join!(client.calls(&calls), client.blocks(&wanted))?;
    check_blocks(&fresh, &infos, remember.then_some(to))?;

    let mut tokens = Vec::with_capacity(fresh.len());
    for (m, answer) in fresh.iter().zip(&answers) {
        let (uri, reason) = uri_of(answer);
        let info = infos.get(&m.block);
        tokens.push((
            m.key,
            Token {
                source: ctx.source.clone(),
                graph_id: m.key.graph_id(),
                token_uri: uri,
                mint_block: m.block,
                mint_time: info.map_or(0, |i| i.timestamp),
                block_hash: Some(m.hash.0),
                owner: Some(m.owner),
                status: TokenStatus::Queued,
                reason,
                resources: vec![],
            },
        ));
    }
    let mut contracts = Vec::with_capacity(new_contracts.len());
    for (c, a) in new_contracts.iter().zip(answers[fresh.len()..].chunks(3)) {
        contracts.push((
            *c,
            Contract {
                name: string_of(&a[0]),
                symbol: string_of(&a[1]),
                supports_metadata: matches!(&a[2], CallResult::Ok(d) if decode_bool(d)),
            },
        ));
        known_contracts.insert(*c);
    }
    let blocks = if remember {
        infos.iter().map(|(b, i)| (*b, i.hash.0)).collect()
    } else {
        vec![]
    };
    Ok(Fetched {
        to,
        tokens,
        contracts,
        blocks,
        known,
    })
}

/// The blocks read must be the ones the logs came from: a hash that differs means the node
/// switched chains between the two reads (a reorg near its head); the range is read again.
fn check_blocks(fresh: &[Mint], infos: &BTreeMap<u64, BlockInfo>, end: Option<u64>) -> Result<()> {
    let mismatch = |b: u64| {
        ScrapeError::Rpc(RpcFault::Decode(format!(
            "block {b} {CHANGED} (a reorg at the node)"
        )))
    };
    for m in fresh {
        match infos.get(&m.block) {
            Some(i) if i.hash == m.hash => {}
            _ => return Err(mismatch(m.block)),
        }
    }
    if let Some(e) = end
        && !infos.contains_key(&e)
    {
        return Err(mismatch(e));
    }
    Ok(())
}

/// Commits a fetched range under the lane's lock. Tokens past the lane's current end (it
/// may have been split since the range was asked) are left to the lane that now owns them.
fn commit(ctx: &Ctx, lane: &Lane, snap: Snapshot, mut f: Fetched, depth: u64) -> Result<bool> {
    let st = lane.lock();
    let end = lane.end();
    if f.to > end {
        f.tokens.retain(|(_, t)| t.mint_block <= end);
        f.blocks.retain(|(b, _)| *b <= end);
        f.known.retain(|b| *b <= end);
        f.to = end;
    }
    let position = Position::start_of(f.to.saturating_add(1));
    let position = if st.position > position {
        st.position.clone()
    } else {
        position
    };
    let cursor = lane.cursor_at(ctx, snap, &position);
    let page = Page {
        cursor_name: &lane.name,
        cursor,
        tokens: &f.tokens,
        contracts: &f.contracts,
    };
    let out = if lane.bounded {
        ctx.store.commit_page(&page)?
    } else {
        let out = ctx.store.commit_chain_page(&page, &f.blocks)?;
        if depth > 0 && f.to > depth {
            ctx.store.forget_blocks_before(&lane.name, f.to - depth)?;
        }
        out
    };
    let duplicates = out.duplicates + f.known.len() as u64;
    lane.committed(ctx, st, &position, out.inserted, duplicates);
    Ok(position.block > end)
}

/// Pages `lane` until it is finished, the deadline passes or shutdown is asked (both
/// checked after each commit), or an error that retries did not clear.
pub async fn run(
    ctx: &Ctx,
    client: &ChainClient,
    lane: &Arc<Lane>,
    snap: Snapshot,
    deadline: Option<Instant>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Stop> {
    let cfg = client.config();
    let mut span = Span::new(cfg.start_span, cfg.max_span);
    let depth = cfg.reorg_depth;
    // A position inside a block (a cursor set by hand, or moved from a subgraph's) reads
    // that block whole again: its stored tokens come back as duplicates.
    let mut from = lane.lock().position.block;
    let mut pending: Option<Pending> = None;
    let mut known_contracts: HashSet<Address> = HashSet::new();
    let remember = !lane.bounded && depth > 0;
    loop {
        let end = lane.end();
        if from > end {
            settle(pending).await?;
            return Ok(Stop::Finished);
        }
        if *shutdown.borrow() {
            settle(pending).await?;
            return Ok(Stop::Shutdown);
        }
        let fetched = tokio::select! {
            r = fetch(ctx, client, &mut span, from, end, remember, &mut known_contracts) => r,
            _ = stop_requested(shutdown) => {
                settle(pending).await?;
                return Ok(Stop::Shutdown);
            }
        };
        if let Some(true) = settle(pending.take()).await? {
            return Ok(Stop::Finished);
        }
        let f = fetched?;
        from = f.to.saturating_add(1);
        let (c, l) = (ctx.clone(), lane.clone());
        pending = Some(tokio::task::spawn_blocking(move || {
            commit(&c, &l, snap, f, depth)
        }));
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use ethers_core::types::U64;

    fn word(n: u64) -> H256 {
        H256::from_low_u64_be(n)
    }

    fn log(contract: u8, topics: Vec<H256>, block: u64) -> Log {
        Log {
            address: H160::repeat_byte(contract),
            topics,
            block_number: Some(U64::from(block)),
            block_hash: Some(word(1000 + block)),
            ..Default::default()
        }
    }

    fn mint(contract: u8, to: u64, id: u64, block: u64) -> Log {
        log(
            contract,
            vec![abi::transfer_topic(), H256::zero(), word(to), word(id)],
            block,
        )
    }

    #[test]
    fn only_first_mints_of_erc721_tokens_in_the_range_count() {
        let logs = vec![
            mint(1, 7, 5, 10),
            // An ERC-20 mint: 3 topics, the amount in data.
            log(2, vec![abi::transfer_topic(), H256::zero(), word(7)], 10),
            // A plain transfer, not a mint.
            log(
                1,
                vec![abi::transfer_topic(), word(7), word(8), word(5)],
                11,
            ),
            // Another event with 4 topics.
            log(1, vec![word(99), H256::zero(), word(7), word(6)], 11),
            // Burnt and minted again: the first mint stands.
            mint(1, 9, 5, 12),
            mint(3, 7, 5, 12),
            Log {
                removed: Some(true),
                ..mint(4, 7, 1, 12)
            },
        ];
        let got = mints(&logs, 10, 12).unwrap();
        let keys: Vec<(u8, u64, u64)> = got
            .iter()
            .map(|m| (m.key.contract.0[0], m.key.token_id.0.as_u64(), m.block))
            .collect();
        assert_eq!(keys, vec![(1, 5, 10), (3, 5, 12)]);
        assert_eq!(got[0].owner.0[19], 7);
        assert_eq!(got[0].hash, word(1010));
        assert_eq!(got[1].key.graph_id(), format!("0x{}_5", "03".repeat(20)));
    }

    #[test]
    fn a_log_outside_the_range_or_without_its_block_fails_the_range() {
        let err = mints(&[mint(1, 7, 5, 13)], 10, 12).unwrap_err();
        assert!(err.to_string().contains("got one of block 13"), "{err}");
        let mut l = mint(1, 7, 5, 11);
        l.block_hash = None;
        assert!(mints(&[l], 10, 12).is_err());
    }

    #[test]
    fn token_uri_answers_become_a_uri_or_a_reason() {
        let s = ethers_core::abi::encode(&[ethers_core::abi::Token::String("ipfs://x".into())]);
        assert_eq!(uri_of(&CallResult::Ok(s)), (Some("ipfs://x".into()), None));
        assert_eq!(
            uri_of(&CallResult::Reverted),
            (None, Some("reverted".into()))
        );
        assert_eq!(
            uri_of(&CallResult::Failed("out of gas".into())),
            (None, Some("call_failed".into()))
        );
        assert_eq!(
            uri_of(&CallResult::Ok(vec![])),
            (None, Some("empty_result".into()))
        );
        assert_eq!(
            uri_of(&CallResult::Ok(vec![1, 2, 3])),
            (None, Some("bad_return".into()))
        );
    }
}
