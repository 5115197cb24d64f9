//! Counter samples for the dashboard's throughput chart: a sample every few seconds, the
//! last hour kept in memory (a restart starts the chart afresh; the counters themselves are
//! in the store and in `/metrics`).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use nifty_state::{Counts, UnixMillis};
use serde::{Deserialize, Serialize};

/// How often the daemon samples.
pub const EVERY: Duration = Duration::from_secs(10);
/// How far back samples are kept.
pub const SPAN: Duration = Duration::from_secs(3600);

/// One sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// When (ms since the epoch).
    pub t_ms: UnixMillis,
    /// Tokens stored.
    pub tokens: u64,
    /// Tokens linked (all their content pinned).
    pub linked: u64,
    /// CIDs tracked.
    pub pins: u64,
    /// CIDs pinned.
    pub pins_pinned: u64,
}

impl Sample {
    /// The sample of `counts` at `t_ms`.
    pub fn of(counts: &Counts, t_ms: UnixMillis) -> Self {
        Sample {
            t_ms,
            tokens: counts.tokens,
            linked: counts.tokens_by_status.get("linked").copied().unwrap_or(0),
            pins: counts.pins,
            pins_pinned: counts.pins_by_status.get("pinned").copied().unwrap_or(0),
        }
    }
}

/// The last hour of samples.
#[derive(Debug, Default)]
pub struct History {
    samples: Mutex<VecDeque<Sample>>,
}

impl History {
    /// Adds a sample and drops those older than [`SPAN`].
    pub fn push(&self, s: Sample) {
        let mut q = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let oldest = s.t_ms.saturating_sub(SPAN.as_millis() as u64);
        while q.front().is_some_and(|f| f.t_ms < oldest) {
            q.pop_front();
        }
        q.push_back(s);
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_one_hour() {
        let h = History::default();
        let hour = SPAN.as_millis() as u64;
        for i in 0..=720u64 {
            h.push(Sample {
                t_ms: 1_000_000 + i * 10_000,
                tokens: i,
                linked: 0,
                pins: 0,
                pins_pinned: 0,
            });
        }
        let s = h.samples();
        let last = s[s.len() - 1].t_ms;
        assert_eq!(last - s[0].t_ms, hour);
        assert_eq!(s.len(), 361);
        assert!(s.windows(2).all(|w| w[0].t_ms < w[1].t_ms));
    }
}
