//! The pinner's writes: analyses, pin status changes and the token links they cause.
//!
//! Three indexes keep the pinner's reads proportional to the work, never to the store:
//! `pin_users` (CID ‖ token key) answers "which tokens does this pin complete?",
//! `pin_pending` (CID) lists the pins the follow-up pass must look at, and `failures`
//! (`stage.reason` ‖ 0 ‖ item) answers "which tokens failed for this reason, since when?".

use sled::Transactional;

use super::{Store, abort, next_seq, tx_decode, tx_encode, tx_result};
use crate::counters::{self, Deltas, failure_of};
use crate::error::{Result, StateError};
use crate::keys::{OutboxKey, Queue, TokenKey, hex};
use crate::model::{PinRecord, PinStatus, Token, TokenStatus, UnixMillis, WorkItem, decode};
use crate::store::{META_SEQ_OUTBOX, Resource};

/// Tokens linked per transaction when a pin completes: a collection's shared folder CID
/// can complete a hundred thousand tokens at once, more than one transaction should hold.
const LINK_CHUNK: usize = 2_000;

/// One token's analysis, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnalysisRecord {
    /// The token.
    pub key: TokenKey,
    /// Its new status (`Parsed` becomes `Linked` at once when every resource is pinned).
    pub status: TokenStatus,
    /// The reason of a failure, or a note.
    pub reason: Option<String>,
    /// The CIDs it needs pinned.
    pub resources: Vec<Resource>,
}

/// A change to one pin after a backend request or status check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinUpdate {
    /// The CID, binary form.
    pub cid: Vec<u8>,
    /// Its new status.
    pub status: PinStatus,
    /// The error that explains it (`http_503: ...`, `pin_error: ...`); `None` keeps the old
    /// one unless the pin is now `Pinned`.
    pub error: Option<String>,
    /// Whether a request was made (counts towards the attempt limit).
    pub attempted: bool,
    /// When a `Retrying` pin is next tried.
    pub retry_at_ms: Option<UnixMillis>,
    /// Size in bytes, when the backend reported it.
    pub size: Option<u64>,
}

/// One entry of the failures index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailureEntry {
    /// The token key (52 bytes) or CID that failed.
    pub item: Vec<u8>,
    /// When it entered the failure.
    pub at_ms: UnixMillis,
}

pub(super) fn user_key(cid: &[u8], token: &TokenKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(cid.len() + TokenKey::LEN);
    k.extend_from_slice(cid);
    k.extend_from_slice(&token.encode());
    k
}

pub(super) fn failure_key(stage: &str, reason: &str, item: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(stage.len() + reason.len() + 2 + item.len());
    k.extend_from_slice(stage.as_bytes());
    k.push(b'.');
    k.extend_from_slice(reason.as_bytes());
    k.push(0);
    k.extend_from_slice(item);
    k
}

impl Store {
    /// Records many tokens' analyses and acknowledges the outbox items they came from, in
    /// one transaction: each token's status, reason and resources; one pin record per new
    /// CID (created `Wanted` with a pin outbox item the first time any token uses it,
    /// otherwise its reference count grows); the `pin_users` and `failures` indexes; the
    /// counters. A token whose resources are all pinned already is `Linked` at once. A token
    /// no longer stored (unwound by a reorg meanwhile) is skipped.
    pub fn record_analyses(
        &self,
        records: &[AnalysisRecord],
        handled: &[OutboxKey],
        now: UnixMillis,
    ) -> Result<()> {
        self.has_room()?;
        let _linking = self.link_lock.lock().unwrap_or_else(|e| e.into_inner());
        let t = &self.t;
        let trees = (
            &t.meta,
            &t.tokens,
            &t.pins,
            &t.outbox,
            &t.counters,
            &t.pin_users,
            &t.failures,
        );
        let r = trees.transaction(|(meta, tok, pins, outbox, cnt, users, fails)| {
            let mut d = Deltas::default();
            for rec in records {
                let k = rec.key.encode();
                // A token taken back out while it was analysed (a chain reorg unwound its
                // block): its analysis has nothing left to describe.
                let Some(old) = tok.get(k)? else {
                    continue;
                };
                let mut token: Token = tx_decode("tokens", &k, &old)?;
                let mut cids: Vec<&[u8]> = rec.resources.iter().map(|r| r.cid.as_slice()).collect();
                cids.sort();
                cids.dedup();
                // Pins the token held before are released, then its new ones referenced.
                for cid in &token.resources {
                    if let Some(v) = pins.get(cid)? {
                        let mut p: PinRecord = tx_decode("pins", cid, &v)?;
                        p.refs = p.refs.saturating_sub(1);
                        pins.insert(&cid[..], tx_encode("pin", &p)?)?;
                    }
                    users.remove(user_key(cid, &rec.key))?;
                }
                let mut all_pinned = !cids.is_empty();
                for cid in &cids {
                    let role = rec
                        .resources
                        .iter()
                        .find(|r| r.cid == *cid)
                        .map(|r| r.role.clone())
                        .unwrap_or_default();
                    let pin = match pins.get(cid)? {
                        Some(v) => {
                            let mut p: PinRecord = tx_decode("pins", cid, &v)?;
                            p.refs += 1;
                            p
                        }
                        None => {
                            let seq = next_seq(meta, META_SEQ_OUTBOX)?;
                            let item = tx_encode("outbox item", &WorkItem::Pin(cid.to_vec()))?;
                            let key = OutboxKey {
                                queue: Queue::Pin,
                                seq,
                            };
                            outbox.insert(&key.encode()[..], item)?;
                            d.add(counters::outbox(Queue::Pin), 1);
                            d.add(counters::PINS.to_owned(), 1);
                            d.add(counters::pin_status(PinStatus::Wanted), 1);
                            PinRecord {
                                status: PinStatus::Wanted,
                                refs: 1,
                                size: None,
                                attempts: 0,
                                last_error: None,
                                first_use: Some((rec.key, role)),
                                retry_at_ms: None,
                                created_ms: now,
                                updated_ms: now,
                            }
                        }
                    };
                    all_pinned &= pin.status == PinStatus::Pinned;
                    pins.insert(*cid, tx_encode("pin", &pin)?)?;
                    users.insert(user_key(cid, &rec.key), &[])?;
                }
                let status = if rec.status == TokenStatus::Parsed && all_pinned {
                    TokenStatus::Linked
                } else {
                    rec.status
                };
                let reason = rec.reason.as_deref();
                d.token_status_changed((token.status, token.reason.as_deref()), (status, reason));
                if let Some((stage, why)) = failure_of(token.status, token.reason.as_deref()) {
                    fails.remove(failure_key(stage, why, &k))?;
                }
                if let Some((stage, why)) = failure_of(status, reason) {
                    fails.insert(failure_key(stage, why, &k), &now.to_be_bytes())?;
                }
                token.status = status;
                token.reason = rec.reason.clone();
                token.resources = cids.iter().map(|c| c.to_vec()).collect();
                tok.insert(&k[..], tx_encode("token", &token)?)?;
            }
            for h in handled {
                if outbox.remove(&h.encode()[..])?.is_some() {
                    d.add(counters::outbox(h.queue), -1);
                }
            }
            d.apply(cnt)?;
            Ok(())
        });
        self.io(tx_result(r))?;
        self.durable()
    }

    /// Records one token's analysis; see [`Store::record_analyses`].
    pub fn record_analysis(
        &self,
        key: &TokenKey,
        status: TokenStatus,
        reason: Option<&str>,
        resources: &[Resource],
        handled: Option<OutboxKey>,
        now: UnixMillis,
    ) -> Result<()> {
        let rec = AnalysisRecord {
            key: *key,
            status,
            reason: reason.map(str::to_owned),
            resources: resources.to_vec(),
        };
        let handled: Vec<OutboxKey> = handled.into_iter().collect();
        self.record_analyses(&[rec], &handled, now)
    }

    /// Applies pin changes and acknowledges the outbox items they handled. Pins that became
    /// `Pinned` first link the tokens they complete (in chunks, see [`LINK_CHUNK`]); then one
    /// transaction writes every pin, the `pin_pending` and `failures` indexes, the acks and
    /// the counters. A crash between the two leaves tokens linked a moment early; the next
    /// follow-up finds the pin still pending and repeats the update. Returns the tokens
    /// linked.
    pub fn record_pin_updates(
        &self,
        updates: &[PinUpdate],
        handled: &[OutboxKey],
        now: UnixMillis,
    ) -> Result<u64> {
        self.writable()?;
        let _linking = self.link_lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut linked = 0;
        let mut pinned: Vec<&[u8]> = updates
            .iter()
            .filter(|u| u.status == PinStatus::Pinned)
            .map(|u| u.cid.as_slice())
            .collect();
        pinned.sort();
        pinned.dedup();
        for cid in &pinned {
            linked += self.link_users(cid, &pinned)?;
        }
        let t = &self.t;
        let trees = (&t.pins, &t.outbox, &t.counters, &t.pin_pending, &t.failures);
        let r = trees.transaction(|(pins, outbox, cnt, pending, fails)| {
            let mut d = Deltas::default();
            for u in updates {
                let Some(v) = pins.get(&u.cid)? else {
                    return abort(StateError::Invalid {
                        what: "cid",
                        value: hex(&u.cid),
                        reason: "no pin record for it".into(),
                    });
                };
                let mut p: PinRecord = tx_decode("pins", &u.cid, &v)?;
                d.add(counters::pin_status(p.status), -1);
                d.add(counters::pin_status(u.status), 1);
                if p.status == PinStatus::Failed {
                    d.pin_failure(p.reason(), -1);
                    fails.remove(failure_key(counters::PIN_STAGE, p.reason(), &u.cid))?;
                }
                // A new error replaces the old; reaching `Pinned` clears it; otherwise it
                // stays as the explanation of the retries still under way.
                if let Some(e) = &u.error {
                    p.last_error = Some(self.scrub_error(e));
                } else if u.status == PinStatus::Pinned {
                    p.last_error = None;
                }
                p.status = u.status;
                if u.size.is_some() {
                    p.size = u.size;
                }
                if u.attempted {
                    p.attempts += 1;
                }
                p.retry_at_ms = u.retry_at_ms;
                p.updated_ms = now;
                if p.status == PinStatus::Failed {
                    d.pin_failure(p.reason(), 1);
                    fails.insert(
                        failure_key(counters::PIN_STAGE, p.reason(), &u.cid),
                        &now.to_be_bytes(),
                    )?;
                }
                if p.status.is_pending() {
                    pending.insert(&u.cid[..], &[])?;
                } else {
                    pending.remove(&u.cid[..])?;
                }
                pins.insert(&u.cid[..], tx_encode("pin", &p)?)?;
            }
            for h in handled {
                if outbox.remove(&h.encode()[..])?.is_some() {
                    d.add(counters::outbox(h.queue), -1);
                }
            }
            d.apply(cnt)?;
            Ok(())
        });
        self.io(tx_result(r))?;
        self.durable()?;
        Ok(linked)
    }

    /// Changes one pin's status; see [`Store::record_pin_updates`].
    pub fn set_pin_status(
        &self,
        cid: &[u8],
        status: PinStatus,
        error: Option<&str>,
        size: Option<u64>,
        attempted: bool,
        now: UnixMillis,
    ) -> Result<PinRecord> {
        let update = PinUpdate {
            cid: cid.to_vec(),
            status,
            error: error.map(str::to_owned),
            attempted,
            retry_at_ms: None,
            size,
        };
        self.record_pin_updates(&[update], &[], now)?;
        self.pin(cid)?.ok_or_else(|| StateError::Invalid {
            what: "cid",
            value: hex(cid),
            reason: "no pin record for it".into(),
        })
    }

    /// Links the `Parsed` tokens that `cid` completes: those whose other resources are all
    /// pinned already or about to be (`pinning_now`, the batch `cid` is part of). Called
    /// with the link lock held, before the batch is marked.
    fn link_users(&self, cid: &[u8], pinning_now: &[&[u8]]) -> Result<u64> {
        let users = self.pin_users(cid, usize::MAX)?;
        let mut linked = 0;
        for chunk in users.chunks(LINK_CHUNK) {
            let t = &self.t;
            let r = (&t.tokens, &t.pins, &t.counters).transaction(|(tok, pins, cnt)| {
                let mut d = Deltas::default();
                let mut n = 0;
                for key in chunk {
                    let k = key.encode();
                    let Some(v) = tok.get(k)? else { continue };
                    let mut token: Token = tx_decode("tokens", &k, &v)?;
                    if token.status != TokenStatus::Parsed {
                        continue;
                    }
                    let mut complete = true;
                    let others = token
                        .resources
                        .iter()
                        .filter(|c| !pinning_now.contains(&c.as_slice()));
                    for other in others {
                        let pinned = match pins.get(other)? {
                            Some(v) => {
                                tx_decode::<PinRecord>("pins", other, &v)?.status
                                    == PinStatus::Pinned
                            }
                            None => false,
                        };
                        complete &= pinned;
                    }
                    if complete {
                        d.token_status_changed(
                            (token.status, token.reason.as_deref()),
                            (TokenStatus::Linked, token.reason.as_deref()),
                        );
                        token.status = TokenStatus::Linked;
                        tok.insert(&k[..], tx_encode("token", &token)?)?;
                        n += 1;
                    }
                }
                d.apply(cnt)?;
                Ok(n)
            });
            linked += self.io(tx_result(r))?;
        }
        if linked > 0 {
            self.durable()?;
        }
        Ok(linked)
    }

    /// Up to `limit` pins the follow-up pass must look at (`Queued`, `Pinning`,
    /// `Retrying`), in CID order after `after`.
    pub fn pending_pins(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, PinRecord)>> {
        let range = match after {
            Some(a) => self
                .t
                .pin_pending
                .range::<&[u8], _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
            None => self.t.pin_pending.iter(),
        };
        let mut out = vec![];
        for kv in range {
            if out.len() >= limit {
                break;
            }
            let (cid, _) = kv?;
            if let Some(p) = self.pin(&cid)? {
                out.push((cid.to_vec(), p));
            }
        }
        Ok(out)
    }

    /// Up to `limit` tokens that use `cid`.
    pub fn pin_users(&self, cid: &[u8], limit: usize) -> Result<Vec<TokenKey>> {
        let mut out = vec![];
        for kv in self.t.pin_users.scan_prefix(cid) {
            if out.len() >= limit {
                break;
            }
            let (k, _) = kv?;
            // A longer CID can share this one's bytes as a prefix: only exact matches.
            if k.len() == cid.len() + TokenKey::LEN {
                out.push(TokenKey::decode(&k[cid.len()..])?);
            }
        }
        Ok(out)
    }

    /// The first `limit` entries of one failure (`stage`, `reason`): O(limit), for
    /// examples when the count comes from the counters.
    pub fn failure_examples(
        &self,
        stage: &str,
        reason: &str,
        limit: usize,
    ) -> Result<Vec<FailureEntry>> {
        let prefix = failure_key(stage, reason, &[]);
        let mut out = vec![];
        for kv in self.t.failures.scan_prefix(&prefix).take(limit) {
            let (k, v) = kv?;
            out.push(FailureEntry {
                item: k[prefix.len()..].to_vec(),
                at_ms: <[u8; 8]>::try_from(v.as_ref())
                    .map(u64::from_be_bytes)
                    .unwrap_or(0),
            });
        }
        Ok(out)
    }

    /// The entries of one failure (`stage`, `reason`) since `since_ms`: how many, and the
    /// first `limit` of them. O(entries of that reason).
    pub fn failure_entries(
        &self,
        stage: &str,
        reason: &str,
        since_ms: Option<UnixMillis>,
        limit: usize,
    ) -> Result<(u64, Vec<FailureEntry>)> {
        let prefix = failure_key(stage, reason, &[]);
        let mut count = 0;
        let mut examples = vec![];
        for kv in self.t.failures.scan_prefix(&prefix) {
            let (k, v) = kv?;
            let at_ms = <[u8; 8]>::try_from(v.as_ref())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            if since_ms.is_some_and(|s| at_ms < s) {
                continue;
            }
            count += 1;
            if examples.len() < limit {
                examples.push(FailureEntry {
                    item: k[prefix.len()..].to_vec(),
                    at_ms,
                });
            }
        }
        Ok((count, examples))
    }

    /// Checks the pinner's indexes against the records (for [`Store::audit`]): returns
    /// `(index, problem)` pairs.
    pub(super) fn audit_pin_indexes(&self) -> Result<Vec<(String, u64, u64)>> {
        let mut problems = vec![];
        let mut users = 0u64;
        for kv in self.t.pin_users.iter() {
            let (k, _) = kv?;
            users += 1;
            let split = k.len().saturating_sub(TokenKey::LEN);
            let key = TokenKey::decode(&k[split..])?;
            let holds = match self.token(&key)? {
                Some(t) => t.resources.iter().any(|c| c.as_slice() == &k[..split]),
                None => false,
            };
            if !holds {
                problems.push((format!("pin_users.{}", hex(&k)), 1, 0));
            }
        }
        let mut pending_records = 0u64;
        let mut refs = 0u64;
        for kv in self.t.pins.iter() {
            let (k, v) = kv?;
            let p: PinRecord = decode("pins", &k, &v)?;
            refs += p.refs;
            let indexed = self.t.pin_pending.contains_key(&k)?;
            if p.status.is_pending() {
                pending_records += 1;
            }
            if p.status.is_pending() != indexed {
                problems.push((format!("pin_pending.{}", hex(&k)), u64::from(indexed), 1));
            }
        }
        if users != refs {
            problems.push(("pin_users".into(), users, refs));
        }
        let pending = self.t.pin_pending.len() as u64;
        if pending != pending_records {
            problems.push(("pin_pending".into(), pending, pending_records));
        }
        Ok(problems)
    }
}
