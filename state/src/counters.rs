//! Counter names and the arithmetic that keeps them in step with the trees.

use std::collections::BTreeMap;

use sled::transaction::{TransactionalTree, UnabortableTransactionError};

use crate::keys::Queue;
use crate::model::{PinStatus, TokenStatus};
use crate::store::Counts;

/// Tokens stored.
pub const TOKENS: &str = "tokens";
/// Contracts stored.
pub const CONTRACTS: &str = "contracts";
/// Distinct CIDs tracked.
pub const PINS: &str = "pins";

/// Tokens in a status.
pub fn token_status(s: TokenStatus) -> String {
    format!("tokens.status.{}", s.name())
}

/// Tokens first found by a source.
pub fn token_source(source: &str) -> String {
    format!("tokens.source.{source}")
}

/// CIDs in a pin status.
pub fn pin_status(s: PinStatus) -> String {
    format!("pins.status.{}", s.name())
}

/// Items waiting in an outbox queue.
pub fn outbox(q: Queue) -> String {
    format!("outbox.{}", q.name())
}

/// Tokens currently failed at a stage for a reason.
pub fn failure(stage: &str, reason: &str) -> String {
    format!("failures.{stage}.{reason}")
}

/// The reason recorded when a failure status carries none.
const UNSPECIFIED: &str = "unspecified";

/// The stage of pins that failed for good.
pub const PIN_STAGE: &str = "pin";

/// The stage of tokens that are fine but have nothing to pin (`not_on_ipfs`, `on_chain`):
/// not failures, but an operator asking "why is this not pinned?" needs them counted.
pub const UNPINNABLE_STAGE: &str = "unpinnable";

/// The stage and reason a token in `status` is counted under in `failures.*`, if any.
pub fn failure_of(status: TokenStatus, reason: Option<&str>) -> Option<(&'static str, &str)> {
    match (status.failure_stage(), status, reason) {
        (Some(stage), _, reason) => Some((stage, reason.unwrap_or(UNSPECIFIED))),
        (None, TokenStatus::Parsed, Some(reason)) => Some((UNPINNABLE_STAGE, reason)),
        _ => None,
    }
}

/// Counter changes gathered during a transaction and applied once at its end.
#[derive(Default, Debug)]
pub(crate) struct Deltas(BTreeMap<String, i64>);

impl Deltas {
    pub(crate) fn add(&mut self, name: String, delta: i64) {
        *self.0.entry(name).or_default() += delta;
    }

    fn status(&mut self, status: TokenStatus, reason: Option<&str>, delta: i64) {
        self.add(token_status(status), delta);
        if let Some((stage, reason)) = failure_of(status, reason) {
            self.add(failure(stage, reason), delta);
        }
    }

    /// A pin entering (`delta` 1) or leaving (-1) `Failed` for `reason`.
    pub(crate) fn pin_failure(&mut self, reason: &str, delta: i64) {
        self.add(failure(PIN_STAGE, reason), delta);
    }

    pub(crate) fn tokens_added(
        &mut self,
        source: &str,
        status: TokenStatus,
        reason: Option<&str>,
        n: i64,
    ) {
        self.add(TOKENS.to_owned(), n);
        self.add(token_source(source), n);
        self.status(status, reason, n);
    }

    pub(crate) fn token_status_changed(
        &mut self,
        from: (TokenStatus, Option<&str>),
        to: (TokenStatus, Option<&str>),
    ) {
        self.status(from.0, from.1, -1);
        self.status(to.0, to.1, 1);
    }

    pub(crate) fn into_map(self) -> BTreeMap<String, i64> {
        self.0
    }

    /// Writes the changes. Counters never go below zero; a counter that reaches zero is
    /// removed so the tree holds only live names.
    pub(crate) fn apply(
        &self,
        tree: &TransactionalTree,
    ) -> Result<(), UnabortableTransactionError> {
        for (name, delta) in &self.0 {
            if *delta == 0 {
                continue;
            }
            let old = tree
                .get(name.as_bytes())?
                .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            let new = old.saturating_add_signed(*delta);
            if new == 0 {
                tree.remove(name.as_bytes())?;
            } else {
                tree.insert(name.as_bytes(), &new.to_be_bytes())?;
            }
        }
        Ok(())
    }
}

/// Sorts raw counters into the dashboard's shape.
pub(crate) fn fold(raw: &BTreeMap<String, u64>) -> Counts {
    let mut c = Counts::default();
    for (name, &v) in raw {
        if let Some(s) = name.strip_prefix("tokens.status.") {
            c.tokens_by_status.insert(s.to_owned(), v);
        } else if let Some(s) = name.strip_prefix("tokens.source.") {
            c.tokens_by_source.insert(s.to_owned(), v);
        } else if let Some(s) = name.strip_prefix("pins.status.") {
            c.pins_by_status.insert(s.to_owned(), v);
        } else if let Some(s) = name.strip_prefix("outbox.") {
            c.outbox.insert(s.to_owned(), v);
        } else if let Some(s) = name.strip_prefix("failures.") {
            c.failures.insert(s.to_owned(), v);
        } else {
            match name.as_str() {
                TOKENS => c.tokens = v,
                CONTRACTS => c.contracts = v,
                PINS => c.pins = v,
                _ => {}
            }
        }
    }
    c
}
