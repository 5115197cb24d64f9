//! Fault injection: the ways a hosted subgraph fails, drawn at configured rates from a
//! seeded generator so a failing test replays.

use std::sync::Mutex;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The GraphQL errors graph-node and its gateways answer under load; all are retryable.
pub const TRANSIENT_GRAPHQL_ERRORS: [&str; 3] = [
    "Query timed out",
    "service is overloaded",
    "chain was reorganized",
];

/// The 5xx statuses an overloaded gateway answers.
pub const SERVER_ERRORS: [u16; 3] = [500, 502, 503];

/// How often each fault happens, per GraphQL POST. Rates are shares of requests and their
/// sum is at most 1: one draw picks at most one fault, so each occurs at its own rate.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultConfig {
    /// Delay added to every GraphQL response.
    pub latency: Duration,
    /// HTTP 500, 502 or 503.
    pub error_rate: f64,
    /// HTTP 429 with `Retry-After: 1`.
    pub rate_limit_rate: f64,
    /// No answer for `timeout_hold`.
    pub timeout_rate: f64,
    /// How long a timed-out request is held (then answered 504).
    pub timeout_hold: Duration,
    /// HTTP 200 with the JSON body cut in half.
    pub truncate_rate: f64,
    /// HTTP 200 with a body that is not JSON.
    pub malformed_rate: f64,
    /// HTTP 200 with a transient GraphQL error and no data.
    pub graphql_error_rate: f64,
    /// HTTP 200 with part of the data plus an `indexing_error`.
    pub indexing_error_rate: f64,
    /// Seed of the draws.
    pub seed: u64,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            latency: Duration::ZERO,
            error_rate: 0.0,
            rate_limit_rate: 0.0,
            timeout_rate: 0.0,
            timeout_hold: Duration::from_secs(30),
            truncate_rate: 0.0,
            malformed_rate: 0.0,
            graphql_error_rate: 0.0,
            indexing_error_rate: 0.0,
            seed: 0,
        }
    }
}

impl FaultConfig {
    /// The rates in the order [`choose`] lays them out.
    fn rates(&self) -> [f64; 7] {
        [
            self.error_rate,
            self.rate_limit_rate,
            self.timeout_rate,
            self.truncate_rate,
            self.malformed_rate,
            self.graphql_error_rate,
            self.indexing_error_rate,
        ]
    }

    /// Sum of the rates.
    pub fn total_rate(&self) -> f64 {
        self.rates().iter().sum()
    }
}

/// What to do to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Answer it properly.
    None,
    /// Answer with this 5xx status.
    ServerError(u16),
    /// Answer 429 with `Retry-After: 1`.
    RateLimited,
    /// Hold it, then 504.
    Timeout,
    /// Answer with half the body.
    Truncated,
    /// Answer 200 with a non-JSON body.
    Malformed,
    /// Answer 200 with this GraphQL error.
    GraphqlError(&'static str),
    /// Answer 200 with partial data and `indexing_error`.
    IndexingError,
}

/// The fault for a uniform draw `u` in [0, 1), with `pick` choosing among variants.
pub fn choose(config: &FaultConfig, u: f64, pick: u64) -> Fault {
    let mut edge = 0.0;
    for (k, rate) in config.rates().into_iter().enumerate() {
        edge += rate;
        if u < edge {
            return match k {
                0 => {
                    Fault::ServerError(SERVER_ERRORS[(pick % SERVER_ERRORS.len() as u64) as usize])
                }
                1 => Fault::RateLimited,
                2 => Fault::Timeout,
                3 => Fault::Truncated,
                4 => Fault::Malformed,
                5 => Fault::GraphqlError(
                    TRANSIENT_GRAPHQL_ERRORS
                        [(pick % TRANSIENT_GRAPHQL_ERRORS.len() as u64) as usize],
                ),
                _ => Fault::IndexingError,
            };
        }
    }
    Fault::None
}

/// Seeded draws of faults, one per request.
#[derive(Debug)]
pub struct FaultDice {
    /// Rates and seed.
    config: FaultConfig,
    /// The generator; a mutex because requests draw concurrently.
    rng: Mutex<StdRng>,
}

impl FaultDice {
    /// Dice for `config`.
    pub fn new(config: FaultConfig) -> Self {
        let rng = Mutex::new(StdRng::seed_from_u64(config.seed));
        FaultDice { config, rng }
    }

    /// The configuration.
    pub fn config(&self) -> &FaultConfig {
        &self.config
    }

    /// The fault for the next request.
    pub fn roll(&self) -> Fault {
        if self.config.total_rate() <= 0.0 {
            return Fault::None;
        }
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        let u: f64 = rng.r#gen();
        let pick: u64 = rng.r#gen();
        choose(&self.config, u, pick)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choose_partitions_the_unit_interval_by_rate() {
        let config = FaultConfig {
            error_rate: 0.1,
            rate_limit_rate: 0.1,
            timeout_rate: 0.1,
            truncate_rate: 0.1,
            malformed_rate: 0.1,
            graphql_error_rate: 0.1,
            indexing_error_rate: 0.1,
            ..FaultConfig::default()
        };
        let cases = [
            (0.05, Fault::ServerError(500)),
            (0.15, Fault::RateLimited),
            (0.25, Fault::Timeout),
            (0.35, Fault::Truncated),
            (0.45, Fault::Malformed),
            (0.55, Fault::GraphqlError("Query timed out")),
            (0.65, Fault::IndexingError),
            (0.75, Fault::None),
        ];
        for (u, want) in cases {
            assert_eq!(choose(&config, u, 0), want, "u = {u}");
        }
        assert_eq!(choose(&config, 0.05, 2), Fault::ServerError(503));
        assert_eq!(
            choose(&config, 0.55, 1),
            Fault::GraphqlError("service is overloaded")
        );
    }

    #[test]
    fn no_rates_no_faults() {
        let dice = FaultDice::new(FaultConfig::default());
        assert!((0..1000).all(|_| dice.roll() == Fault::None));
    }

    #[test]
    fn dice_are_deterministic_per_seed() {
        let config = FaultConfig {
            error_rate: 0.5,
            seed: 9,
            ..FaultConfig::default()
        };
        let a = FaultDice::new(config.clone());
        let b = FaultDice::new(config);
        let ra: Vec<Fault> = (0..200).map(|_| a.roll()).collect();
        let rb: Vec<Fault> = (0..200).map(|_| b.roll()).collect();
        assert_eq!(ra, rb);
        let errors = ra.iter().filter(|f| **f != Fault::None).count();
        assert!((60..140).contains(&errors), "{errors} of 200");
    }
}
