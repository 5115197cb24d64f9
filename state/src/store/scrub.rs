//! Stored text that may quote an upstream: run reasons and pins' last errors.
//!
//! The store never decides what a secret is; whoever opens it may hand it a
//! [`TextScrub`], which every such text passes through on its way in. A store written by
//! a build that did not scrub (or with fewer secrets configured) is scrubbed once on open:
//! the `meta` key [`META_SCRUBBED`] records how many secrets the last full scrub knew, and
//! a scrub that knows more scans again. Scanning is idempotent, so a kill halfway through
//! only means the next open scans again.

use std::fmt;
use std::sync::Arc;

use super::{Store, read_u64};
use crate::error::Result;
use crate::model::{PinRecord, RunOutcome, RunRecord, decode, encode};

/// `meta` key: the number of secrets the last completed scrub of stored text knew.
pub(super) const META_SCRUBBED: &[u8] = b"scrubbed/secrets";

/// A function that removes secrets from a text, and how many secrets it removes.
#[derive(Clone)]
pub struct TextScrub {
    secrets: usize,
    clean: Arc<dyn Fn(&str) -> String + Send + Sync>,
}

impl TextScrub {
    /// `clean` returns the text with each of `secrets` secrets removed (and whatever else
    /// should never be stored, such as control characters).
    pub fn new(secrets: usize, clean: impl Fn(&str) -> String + Send + Sync + 'static) -> Self {
        TextScrub {
            secrets,
            clean: Arc::new(clean),
        }
    }

    /// The text, cleaned.
    pub fn clean(&self, text: &str) -> String {
        (self.clean)(text)
    }

    /// A pin error, cleaned, keeping its first word (the machine-readable reason the
    /// failures index and the counters are keyed by, always written by nifty itself).
    pub(super) fn clean_error(&self, error: &str) -> String {
        let word = error.find([':', ' ']).unwrap_or(error.len());
        let (head, rest) = error.split_at(word);
        format!("{head}{}", self.clean(rest))
    }
}

impl fmt::Debug for TextScrub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secrets themselves.
        write!(f, "TextScrub({} secrets)", self.secrets)
    }
}

/// What [`Store::scrub_stored_text`] changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scrubbed {
    /// Run records scanned and rewritten.
    pub runs: (u64, u64),
    /// Pin records scanned and rewritten.
    pub pins: (u64, u64),
}

impl Store {
    /// A run record as it may be stored.
    pub(super) fn scrub_run(&self, rec: &RunRecord) -> Option<RunRecord> {
        let s = self.scrub.as_ref()?;
        let job = s.clean(&rec.job);
        let outcome = match &rec.outcome {
            RunOutcome::Failed { reason } => RunOutcome::Failed {
                reason: s.clean(reason),
            },
            other => other.clone(),
        };
        (job != rec.job || outcome != rec.outcome).then(|| RunRecord {
            job,
            outcome,
            ..rec.clone()
        })
    }

    /// A pin error as it may be stored.
    pub(super) fn scrub_error(&self, error: &str) -> String {
        match &self.scrub {
            Some(s) => s.clean_error(error),
            None => error.to_owned(),
        }
    }

    /// Scrubs every run record and every pin's last error with the store's
    /// [`TextScrub`], unless a scrub that knew as many secrets already did. Called on
    /// open; O(runs + pins) when it scans, one read when it does not.
    pub(super) fn scrub_stored_text(&self) -> Result<Option<Scrubbed>> {
        let Some(scrub) = &self.scrub else {
            return Ok(None);
        };
        let done = read_u64(self.t.meta.get(META_SCRUBBED)?);
        if scrub.secrets == 0 || done >= scrub.secrets as u64 {
            return Ok(None);
        }
        let mut out = Scrubbed::default();
        for kv in self.t.runs.iter() {
            let (k, v) = kv?;
            out.runs.0 += 1;
            let rec: RunRecord = decode("runs", &k, &v)?;
            if let Some(clean) = self.scrub_run(&rec) {
                // Only if the record is still the one read: a run may end meanwhile.
                let new = encode("run", &clean)?;
                if self
                    .t
                    .runs
                    .compare_and_swap(&k, Some(&v), Some(new))?
                    .is_ok()
                {
                    out.runs.1 += 1;
                }
            }
        }
        for kv in self.t.pins.iter() {
            let (k, v) = kv?;
            out.pins.0 += 1;
            let mut pin: PinRecord = decode("pins", &k, &v)?;
            let Some(error) = &pin.last_error else {
                continue;
            };
            let clean = scrub.clean_error(error);
            if &clean != error {
                pin.last_error = Some(clean);
                let new = encode("pin", &pin)?;
                if self
                    .t
                    .pins
                    .compare_and_swap(&k, Some(&v), Some(new))?
                    .is_ok()
                {
                    out.pins.1 += 1;
                }
            }
        }
        self.t
            .meta
            .insert(META_SCRUBBED, &(scrub.secrets as u64).to_be_bytes())?;
        self.db.flush()?;
        Ok(Some(out))
    }
}
