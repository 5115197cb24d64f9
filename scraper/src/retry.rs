//! Capped exponential backoff with jitter. The delay is a pure function of the attempt and a
//! jitter draw, so it is tested without sleeping.

use std::time::Duration;

/// How a request is retried.
#[derive(Clone, Debug, PartialEq)]
pub struct Backoff {
    /// The first delay.
    pub base: Duration,
    /// No delay is longer than this (a server's Retry-After aside).
    pub max: Duration,
    /// Attempts before giving up, the first included.
    pub max_attempts: u32,
}

impl Default for Backoff {
    /// 250 ms doubling to 15 s over 12 attempts: about a minute and a half of trying, which
    /// rides out a subgraph restart without stalling a run for long on a dead endpoint.
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(250),
            max: Duration::from_secs(15),
            max_attempts: 12,
        }
    }
}

impl Backoff {
    /// The wait before retry number `attempt` (1 = the first retry). `jitter` in [0, 1)
    /// spreads the wait over [half, full] so that parallel workers do not retry in step.
    /// A server's `retry_after` is honoured when longer.
    pub fn delay(&self, attempt: u32, jitter: f64, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let capped = exp.min(self.max);
        let jittered = capped.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0));
        match retry_after {
            Some(r) if r > jittered => r,
            _ => jittered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_cap_and_jitter() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
            max_attempts: 5,
        };
        let ms = |d: Duration| d.as_millis();
        let cases: &[(u32, f64, Option<u64>, u128)] = &[
            (1, 1.0, None, 100),
            (2, 1.0, None, 200),
            (3, 1.0, None, 400),
            (4, 1.0, None, 800),
            (5, 1.0, None, 1000),
            (40, 1.0, None, 1000),
            (1, 0.0, None, 50),
            (3, 0.5, None, 300),
            (1, 1.0, Some(2), 2000),
            (5, 1.0, Some(0), 1000),
        ];
        for (attempt, jitter, ra, want) in cases {
            let got = b.delay(*attempt, *jitter, ra.map(Duration::from_secs));
            assert_eq!(
                ms(got),
                *want,
                "attempt {attempt} jitter {jitter} retry_after {ra:?}"
            );
        }
    }
}
