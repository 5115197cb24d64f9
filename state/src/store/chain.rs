//! A chain source's memory of its recent blocks, for its reorg check.
//!
//! The `chain` tree holds, per cursor name:
//! - `name ‖ 0 ‖ block (u64 BE)` → the block's hash, for every block the source committed a
//!   mint from and for the last block of each committed range;
//! - `name ‖ 0 ‖ block ‖ token key` → the sequence number (u64 BE) of the analysis outbox
//!   item that queued the token the source stored from that block.
//!
//! When the node's hash for a remembered block changes, the blocks after the newest one that
//! still matches were orphaned: [`Store::unwind`] removes the tokens stored from them, in
//! the same transaction as the cursor moves back, and the source scrapes the new blocks.
//! Only the newest blocks are kept ([`Store::forget_blocks_before`]).

use std::collections::{BTreeMap, BTreeSet};

use sled::Transactional;
use sled::transaction::TransactionalTree;

use super::{Store, TxResult, abort, tx_decode, tx_encode, tx_result};
use crate::counters::{self, Deltas, failure_of};
use crate::error::{Result, StateError};
use crate::keys::{OutboxKey, Queue, TokenKey};
use crate::model::{Cursor, PinRecord, Position, Token, UnixMillis, WorkItem};
use crate::store::pinning::{failure_key, user_key};
use crate::store::{Page, PageOutcome};

fn prefix(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 1 + 8 + TokenKey::LEN);
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k
}

/// The key of a remembered block's hash.
pub(super) fn block_entry(name: &str, block: u64) -> Vec<u8> {
    let mut k = prefix(name);
    k.extend_from_slice(&block.to_be_bytes());
    k
}

/// The key recording that `token` was stored from `block`.
pub(super) fn token_entry(name: &str, block: u64, token: &TokenKey) -> Vec<u8> {
    let mut k = block_entry(name, block);
    k.extend_from_slice(&token.encode());
    k
}

/// What an entry's key holds after the name's prefix.
enum Entry {
    Block(u64),
    Token(u64, TokenKey),
}

fn parse(rest: &[u8]) -> Result<Entry> {
    let corrupt = |reason: &str| StateError::Corrupt {
        tree: "chain",
        key: crate::keys::hex(rest),
        reason: reason.to_owned(),
    };
    let block = <[u8; 8]>::try_from(rest.get(..8).ok_or_else(|| corrupt("short key"))?)
        .map(u64::from_be_bytes)
        .map_err(|_| corrupt("short key"))?;
    match rest.len() {
        8 => Ok(Entry::Block(block)),
        n if n == 8 + TokenKey::LEN => Ok(Entry::Token(block, TokenKey::decode(&rest[8..])?)),
        _ => Err(corrupt("key is neither a block nor a token entry")),
    }
}

/// What [`Store::unwind`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Unwound {
    /// Tokens removed (stored from orphaned blocks).
    pub tokens_removed: u64,
    /// Remembered blocks forgotten.
    pub blocks_forgotten: u64,
    /// The cursor's position afterwards.
    pub position: Position,
}

impl Store {
    /// Commits a chain source's page ([`Store::commit_page`]) and remembers `blocks`'
    /// hashes and where each inserted token came from, all in one transaction. Backfill
    /// partitions use plain `commit_page`: only a source's own cursor checks for reorgs.
    pub fn commit_chain_page(
        &self,
        page: &Page<'_>,
        blocks: &[(u64, [u8; 32])],
    ) -> Result<PageOutcome> {
        self.commit(page, Some(blocks))
    }

    /// The blocks remembered for `name`, newest first, at most `limit`.
    pub fn recent_blocks(&self, name: &str, limit: usize) -> Result<Vec<(u64, [u8; 32])>> {
        let p = prefix(name);
        let mut out = vec![];
        for kv in self.t.chain.scan_prefix(&p).rev() {
            if out.len() >= limit {
                break;
            }
            let (k, v) = kv?;
            if let Entry::Block(block) = parse(&k[p.len()..])? {
                let hash = <[u8; 32]>::try_from(v.as_ref()).map_err(|_| StateError::Corrupt {
                    tree: "chain",
                    key: crate::keys::hex(&k),
                    reason: "block hash is not 32 bytes".into(),
                })?;
                out.push((block, hash));
            }
        }
        Ok(out)
    }

    /// Forgets what is remembered for `name` before `block`: those blocks are deeper than
    /// any reorg the source checks for. Not one transaction (each entry is independent);
    /// a crash midway leaves some old entries, which only make a later check look further.
    pub fn forget_blocks_before(&self, name: &str, block: u64) -> Result<u64> {
        let start = prefix(name);
        let end = block_entry(name, block);
        let mut n = 0;
        for kv in self.t.chain.range(start..end) {
            let (k, _) = kv?;
            self.t.chain.remove(k)?;
            n += 1;
        }
        Ok(n)
    }

    /// Takes back a chain source's blocks after `last_good` (a reorg orphaned them): in one
    /// transaction, removes every token the source stored from those blocks (its counters,
    /// failure entries, pin references, and its place in a waiting analysis item), forgets
    /// the blocks, and moves the cursor back to the start of `last_good + 1` when it is past
    /// it. Tokens another source stored first are not the chain source's to remove.
    pub fn unwind(&self, name: &str, last_good: u64, now: UnixMillis) -> Result<Unwound> {
        self.writable()?;
        let p = prefix(name);
        let from = block_entry(name, last_good.saturating_add(1));
        let mut keys: Vec<Vec<u8>> = vec![];
        let mut tokens: Vec<(u64, TokenKey, u64)> = vec![];
        for kv in self.t.chain.range(from..) {
            let (k, v) = kv?;
            if !k.starts_with(&p) {
                break;
            }
            match parse(&k[p.len()..])? {
                Entry::Block(_) => {}
                Entry::Token(block, key) => {
                    let seq = <[u8; 8]>::try_from(v.as_ref())
                        .map(u64::from_be_bytes)
                        .unwrap_or(u64::MAX);
                    tokens.push((block, key, seq));
                }
            }
            keys.push(k.to_vec());
        }
        let back = Position::start_of(last_good.saturating_add(1));
        let t = &self.t;
        let trees = (
            &t.tokens,
            &t.cursors,
            &t.outbox,
            &t.counters,
            &t.pins,
            &t.pin_users,
            &t.failures,
            &t.chain,
        );
        let r = trees.transaction(|(tok, cur, outbox, cnt, pins, users, fails, chain)| {
            let Some(old) = cur.get(name)? else {
                return abort(StateError::NoSuchCursor(name.to_owned()));
            };
            let mut cursor: Cursor = tx_decode("cursors", name.as_bytes(), &old)?;
            let mut d = Deltas::default();
            let mut removed = 0;
            let mut by_item: BTreeMap<u64, BTreeSet<TokenKey>> = BTreeMap::new();
            for (block, key, seq) in &tokens {
                let k = key.encode();
                let Some(v) = tok.get(k)? else { continue };
                let token: Token = tx_decode("tokens", &k, &v)?;
                if token.mint_block != *block {
                    continue;
                }
                tok.remove(&k[..])?;
                removed += 1;
                d.tokens_added(&token.source, token.status, token.reason.as_deref(), -1);
                if let Some((stage, why)) = failure_of(token.status, token.reason.as_deref()) {
                    fails.remove(failure_key(stage, why, &k))?;
                }
                for cid in &token.resources {
                    if let Some(pv) = pins.get(cid)? {
                        let mut pin: PinRecord = tx_decode("pins", cid, &pv)?;
                        pin.refs = pin.refs.saturating_sub(1);
                        pins.insert(&cid[..], tx_encode("pin", &pin)?)?;
                    }
                    users.remove(user_key(cid, key))?;
                }
                by_item.entry(*seq).or_default().insert(*key);
            }
            for (seq, keys) in &by_item {
                drop_from_item(outbox, &mut d, *seq, keys)?;
            }
            for k in &keys {
                chain.remove(&k[..])?;
            }
            if cursor.position > back {
                cursor.position = back.clone();
                cursor.updated_ms = now;
                cur.insert(name, tx_encode("cursor", &cursor)?)?;
            }
            d.apply(cnt)?;
            Ok(Unwound {
                tokens_removed: removed,
                blocks_forgotten: 0,
                position: cursor.position,
            })
        });
        let mut out = self.io(tx_result(r))?;
        out.blocks_forgotten = keys.len() as u64 - tokens.len() as u64;
        self.durable()?;
        Ok(out)
    }
}

/// Takes `gone` out of the analysis item `seq` (one rewrite however many), removing the
/// item when it empties, so an orphaned token is not analysed and a re-scraped one is not
/// queued twice.
fn drop_from_item(
    outbox: &TransactionalTree,
    d: &mut Deltas,
    seq: u64,
    gone: &BTreeSet<TokenKey>,
) -> TxResult<()> {
    let okey = OutboxKey {
        queue: Queue::Analyse,
        seq,
    }
    .encode();
    let Some(v) = outbox.get(okey)? else {
        return Ok(());
    };
    let WorkItem::Analyse(mut keys) = tx_decode::<WorkItem>("outbox", &okey, &v)? else {
        return Ok(());
    };
    keys.retain(|k| !gone.contains(k));
    if keys.is_empty() {
        outbox.remove(&okey[..])?;
        d.add(counters::outbox(Queue::Analyse), -1);
    } else {
        outbox.insert(
            &okey[..],
            tx_encode("outbox item", &WorkItem::Analyse(keys))?,
        )?;
    }
    Ok(())
}
