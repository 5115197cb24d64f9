//! Fault injection: the ways a hosted subgraph fails, drawn at configured rates from a
//! seeded generator so a failing test replays.

use std::collections::BTreeMap;
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

impl Fault {
    /// The name `/admin/subgraph/stats` counts it under: `http_<status>`, `timeout`,
    /// `truncated`, `malformed`, `graphql: <message>` or `indexing_error`; `None` for no
    /// fault.
    pub fn name(self) -> Option<String> {
        Some(match self {
            Fault::None => return None,
            Fault::ServerError(status) => format!("http_{status}"),
            Fault::RateLimited => "http_429".to_owned(),
            Fault::Timeout => "timeout".to_owned(),
            Fault::Truncated => "truncated".to_owned(),
            Fault::Malformed => "malformed".to_owned(),
            Fault::GraphqlError(message) => format!("graphql: {message}"),
            Fault::IndexingError => "indexing_error".to_owned(),
        })
    }
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

/// Seeded draws of faults, one per request, and a count of what they drew.
#[derive(Debug)]
pub struct FaultDice {
    /// Rates and seed.
    config: FaultConfig,
    /// The generator and the counts; a mutex because requests draw concurrently.
    state: Mutex<DiceState>,
}

/// What the dice keep between draws.
#[derive(Debug)]
struct DiceState {
    /// The generator.
    rng: StdRng,
    /// Draws so far.
    rolls: u64,
    /// Faults drawn so far, by [`Fault::name`].
    faults: BTreeMap<String, u64>,
}

/// What the dice drew so far: the requests they decided and the faults among them, so a
/// test can check that a fault it configured happened and that the client saw each one.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FaultCounts {
    /// Requests decided (each GraphQL POST is one).
    pub requests: u64,
    /// Faults injected, by [`Fault::name`].
    pub faults: BTreeMap<String, u64>,
}

impl FaultDice {
    /// Dice for `config`.
    pub fn new(config: FaultConfig) -> Self {
        let state = Mutex::new(DiceState {
            rng: StdRng::seed_from_u64(config.seed),
            rolls: 0,
            faults: BTreeMap::new(),
        });
        FaultDice { config, state }
    }

    /// The requests decided and the faults injected so far.
    pub fn counts(&self) -> FaultCounts {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        FaultCounts {
            requests: state.rolls,
            faults: state.faults.clone(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &FaultConfig {
        &self.config
    }

    /// The fault for the next request.
    pub fn roll(&self) -> Fault {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.rolls += 1;
        if self.config.total_rate() <= 0.0 {
            return Fault::None;
        }
        let u: f64 = state.rng.r#gen();
        let pick: u64 = state.rng.r#gen();
        let fault = choose(&self.config, u, pick);
        if let Some(name) = fault.name() {
            *state.faults.entry(name).or_default() += 1;
        }
        fault
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

    #[test]
    fn dice_count_what_they_drew() {
        let dice = FaultDice::new(FaultConfig {
            error_rate: 0.2,
            graphql_error_rate: 0.2,
            indexing_error_rate: 0.1,
            seed: 3,
            ..FaultConfig::default()
        });
        let mut want: BTreeMap<String, u64> = BTreeMap::new();
        for _ in 0..500 {
            if let Some(name) = dice.roll().name() {
                *want.entry(name).or_default() += 1;
            }
        }
        let counts = dice.counts();
        assert_eq!((counts.requests, &counts.faults), (500, &want));
        for name in ["http_500", "http_502", "http_503", "indexing_error"] {
            assert!(want.contains_key(name), "{name} never drawn: {want:?}");
        }
        assert!(
            want.contains_key("graphql: chain was reorganized"),
            "{want:?}"
        );
        let quiet = FaultDice::new(FaultConfig::default());
        quiet.roll();
        assert_eq!(
            quiet.counts(),
            FaultCounts {
                requests: 1,
                faults: BTreeMap::new()
            }
        );
    }
}
