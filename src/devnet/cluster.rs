//! The devnet's simulated IPFS Cluster: the subset of the REST API (v1.x) that pinners use,
//! with the JSON shapes of ipfs-cluster's `api/types.go` (`Pin`, `GlobalPinInfo`,
//! `PinInfoShort`) and its error body `{"code": .., "message": ..}`.
//!
//! - `POST /pins/{cid}` (`name`, `mode`, `replication[-min|-max]`, `meta-*`) → `Pin`;
//! - `GET /pins[?cids=a,b&filter=..]` → NDJSON of `GlobalPinInfo`, 204 when empty;
//! - `GET /pins/{cid}` → `GlobalPinInfo` (404 when untracked);
//! - `POST /pins/{cid}/recover` and `POST /pins/recover` → restart pins in `pin_error`;
//! - `GET /id`, `GET /version`, `GET /health`.
//!
//! A pin's status is a pure function of the time since it was (re)started: `pin_queued`
//! for the queue time, then `pinning` for the pin time (jittered per peer), then `pinned`,
//! or `pin_error` on the first attempt for a share of CIDs chosen by hashing the CID.
//! Pins live in a sharded in-memory map; nothing is persisted.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use cid::Cid;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

use super::chain::{mix, splitmix};

/// Shards of the pin map: enough that concurrent requests rarely meet on a lock.
const SHARDS: usize = 16;
/// Most simulated peers (allocations are a bit mask of them).
pub const PEERS_MAX: usize = 8;
/// Pins rendered per chunk of a `GET /pins` stream.
const STREAM_CHUNK: usize = 512;
/// Attempts to rebind the port after a `refuse` outage, one per [`REBIND_PAUSE`].
const REBIND_ATTEMPTS: u32 = 100;
/// Pause between rebind attempts.
const REBIND_PAUSE: Duration = Duration::from_millis(50);
/// The version `GET /version` reports.
const VERSION: &str = "1.1.2";
/// What a pin in `pin_error` says, as real cluster peers do; one is chosen per CID.
const PIN_ERRORS: [&str; 3] = [
    "context deadline exceeded",
    "failed to fetch all blocks: context canceled",
    "ipfs pin/add: stream reset",
];
/// What an interrupted status stream reports in `X-Stream-Error`.
const STREAM_ERROR: &str = "rpc error: context canceled";
/// Salt of the pin-error draw.
const ERROR_SALT: u64 = 0x0065_7272_6f72;
/// Salt of the per-peer pin-time jitter.
const JITTER_SALT: u64 = 0x6a69_7474_6572;
/// Salt of the request fault draws.
const FAULT_SALT: u64 = 0x0066_6175_6c74;

/// A secret (basic-auth pair or bearer token) that never shows in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential(String);

impl Credential {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Credential(secret.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential(***)")
    }
}

/// How the simulated cluster behaves.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterConfig {
    /// Simulated cluster peers (1 to [`PEERS_MAX`]).
    pub peers: usize,
    /// How long a new pin stays `pin_queued`.
    pub queue: Duration,
    /// How long it then stays `pinning` (times 0.5 to 1.5, per peer).
    pub pin: Duration,
    /// Share of CIDs whose first attempt ends in `pin_error`.
    pub error_rate: f64,
    /// Share of requests answered 500, 502 or 503 (without touching the state).
    pub fault_rate: f64,
    /// Share of `GET /pins` streams cut halfway with an `X-Stream-Error`.
    pub stream_error_rate: f64,
    /// Share of requests held for [`ClusterConfig::timeout_hold`] and then answered 504
    /// without touching the state, as a proxy in front of a stuck peer does.
    pub timeout_rate: f64,
    /// How long a timed-out request is held.
    pub timeout_hold: Duration,
    /// Delay added to every request.
    pub latency: Duration,
    /// `user:pass` that HTTP basic auth must present, if any.
    pub basic_auth: Option<Credential>,
    /// Bearer token that requests must present, if any (either credential is accepted).
    pub bearer: Option<Credential>,
    /// Seed of the fault draws and peer ids.
    pub seed: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            peers: 3,
            queue: Duration::from_millis(100),
            pin: Duration::from_millis(300),
            error_rate: 0.02,
            fault_rate: 0.0,
            stream_error_rate: 0.0,
            timeout_rate: 0.0,
            timeout_hold: Duration::from_secs(30),
            latency: Duration::ZERO,
            basic_auth: None,
            bearer: None,
            seed: 0,
        }
    }
}

/// A pin's status on one peer, as ipfs-cluster names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PinStatus {
    /// Waiting in the peer's pin queue.
    PinQueued,
    /// The peer's IPFS daemon is fetching it.
    Pinning,
    /// Pinned.
    Pinned,
    /// The attempt failed; `recover` restarts it.
    PinError,
    /// Allocated to other peers.
    Remote,
    /// Not tracked by the cluster.
    Unpinned,
}

impl PinStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            PinStatus::PinQueued => "pin_queued",
            PinStatus::Pinning => "pinning",
            PinStatus::Pinned => "pinned",
            PinStatus::PinError => "pin_error",
            PinStatus::Remote => "remote",
            PinStatus::Unpinned => "unpinned",
        }
    }

    /// The statuses a `filter` value selects (`queued` and `error` are composites).
    fn from_filter(name: &str) -> Option<&'static [PinStatus]> {
        Some(match name {
            "pin_queued" | "queued" => &[PinStatus::PinQueued],
            "pinning" => &[PinStatus::Pinning],
            "pinned" => &[PinStatus::Pinned],
            "pin_error" | "error" => &[PinStatus::PinError],
            "remote" => &[PinStatus::Remote],
            "unpinned" => &[PinStatus::Unpinned],
            _ => return None,
        })
    }
}

/// The cluster-wide status of per-peer statuses: pinned > pinning > queued > error, the
/// fold a client applies to a `peer_map`.
pub fn fold(statuses: impl IntoIterator<Item = PinStatus>) -> PinStatus {
    let rank = |s: PinStatus| match s {
        PinStatus::Pinned => 5,
        PinStatus::Pinning => 4,
        PinStatus::PinQueued => 3,
        PinStatus::PinError => 2,
        PinStatus::Remote => 1,
        PinStatus::Unpinned => 0,
    };
    statuses
        .into_iter()
        .max_by_key(|s| rank(*s))
        .unwrap_or(PinStatus::Unpinned)
}

/// One simulated cluster peer.
#[derive(Clone, Debug)]
struct Peer {
    /// Its libp2p id (`12D3KooW...`).
    id: String,
    /// Its peername.
    name: String,
    /// Its IPFS daemon's peer id.
    ipfs_id: String,
    /// Its IPFS daemon's swarm addresses.
    ipfs_addresses: Vec<String>,
}

/// A tracked pin.
#[derive(Clone, Debug)]
struct PinEntry {
    /// Its name.
    name: Box<str>,
    /// Its `meta-*` values, sorted by key.
    metadata: Vec<(Box<str>, Box<str>)>,
    /// replication_factor_min.
    replication_min: i32,
    /// replication_factor_max.
    replication_max: i32,
    /// -1 for recursive, 0 for direct.
    max_depth: i32,
    /// Bit k set: allocated to peer k.
    allocations: u8,
    /// When it was first pinned, in ms since the cluster's epoch.
    created_ms: u64,
    /// When its current attempt started.
    started_ms: u64,
    /// Attempts so far (1 until a recover).
    attempt: u32,
    /// `POST /pins/{cid}` calls accepted for it.
    requests: u32,
    /// Stable hash of the CID: pin errors, jitter and allocation derive from it.
    hash: u64,
    /// When a status answer first told a client it is `pinned` (folded over the peers).
    pinned_seen_ms: Option<u64>,
    /// `POST /pins/{cid}` calls accepted after that: a pinner that trusted the answer
    /// never sends one.
    posts_after_pinned: u32,
}

/// Offending CIDs `/admin/cluster/stats` lists by name; the count covers every one.
const OFFENDERS_LISTED: usize = 10;

/// Counters for `/admin/cluster/stats`.
#[derive(Debug, Default)]
struct Counters {
    /// `POST /pins/{cid}` calls accepted.
    pin_requests: AtomicU64,
    /// Pins restarted by recover.
    recovers: AtomicU64,
    /// Status reads (single and streamed).
    status_requests: AtomicU64,
    /// Requests answered with an injected fault.
    faults: AtomicU64,
    /// Requests refused for want of credentials.
    unauthorized: AtomicU64,
    /// Requests answered 503 during an `unavailable` outage.
    unavailable: AtomicU64,
    /// Requests held and then answered 504.
    timeouts: AtomicU64,
    /// Status streams cut short (with an `X-Stream-Error`, or a 500 when nothing was sent).
    stream_errors: AtomicU64,
    /// Every request (the fault draws hash it).
    requests: AtomicU64,
}

/// What `GET /admin/cluster/stats` reports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStats {
    /// Distinct CIDs tracked.
    pub pins: usize,
    /// `POST /pins/{cid}` calls accepted (a re-pin counts again).
    pub pin_requests: u64,
    /// Pins restarted by recover.
    pub recovers: u64,
    /// CIDs pinned more than once, sorted.
    pub repinned: Vec<String>,
    /// `POST /pins/{cid}` calls for CIDs a status answer had already reported `pinned`.
    #[serde(default)]
    pub posts_after_pinned_seen: u64,
    /// The first few of those CIDs, sorted.
    #[serde(default)]
    pub posted_after_pinned: Vec<String>,
    /// Tracked CIDs per folded status (`pinned`, `pinning`, `pin_queued`, `pin_error`).
    pub by_status: BTreeMap<String, usize>,
    /// Status reads.
    pub status_requests: u64,
    /// Requests answered with an injected 5xx.
    pub faults: u64,
    /// Requests answered 401.
    pub unauthorized: u64,
    /// Requests answered 503 during an `unavailable` outage.
    pub unavailable: u64,
    /// Requests held and then answered 504.
    #[serde(default)]
    pub timeouts: u64,
    /// Status streams cut short.
    #[serde(default)]
    pub stream_errors: u64,
}

/// How an outage looks from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutageMode {
    /// Every request is answered 503.
    Unavailable,
    /// The listener closes (connections are refused) and reopens on the same port after.
    Refuse,
}

/// The simulated cluster's state, shared by its listener and the devnet's admin routes.
#[derive(Debug)]
pub struct Cluster {
    /// Behaviour.
    config: ClusterConfig,
    /// The peers.
    peers: Vec<Peer>,
    /// Pins by canonical CID string, sharded by a hash of it.
    shards: Vec<Mutex<HashMap<Box<str>, PinEntry>>>,
    /// The monotonic epoch of pin times.
    epoch: Instant,
    /// Wall-clock time at the epoch, for timestamps.
    epoch_wall: SystemTime,
    /// Counters.
    counters: Counters,
    /// Until when (ms since epoch) every request is answered 503; 0 for never.
    unavailable_until_ms: AtomicU64,
    /// Until when the listener stays closed.
    refused_until: Mutex<Option<Instant>>,
    /// Bumped for each `refuse` outage; the serve loop watches it.
    refusals: watch::Sender<u64>,
}

impl Cluster {
    /// A cluster with no pins.
    pub fn new(config: ClusterConfig) -> Self {
        let n = config.peers.clamp(1, PEERS_MAX);
        let peers = (0..n)
            .map(|k| {
                let ipfs_id = peer_id(mix(config.seed ^ 0x6970_6673, k as u64));
                Peer {
                    id: peer_id(mix(config.seed ^ 0x636c_7573, k as u64)),
                    name: format!("devnet-cluster-{k}"),
                    ipfs_addresses: vec![
                        format!("/ip4/127.0.0.1/tcp/{}/p2p/{ipfs_id}", 4001 + k),
                        format!("/ip4/127.0.0.1/udp/{}/quic-v1/p2p/{ipfs_id}", 4001 + k),
                    ],
                    ipfs_id,
                }
            })
            .collect();
        Cluster {
            config,
            peers,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            epoch: Instant::now(),
            epoch_wall: SystemTime::now(),
            counters: Counters::default(),
            unavailable_until_ms: AtomicU64::new(0),
            refused_until: Mutex::new(None),
            refusals: watch::channel(0).0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// The peers' libp2p ids, in allocation order.
    pub fn peer_ids(&self) -> Vec<String> {
        self.peers.iter().map(|p| p.id.clone()).collect()
    }

    /// Whether `cid`'s first attempt ends in `pin_error` (a pure function of the CID, the
    /// seed and the error rate).
    pub fn fails_first_attempt(&self, cid: &str) -> bool {
        let canonical = Cid::try_from(cid).map_or_else(|_| cid.to_owned(), |c| c.to_string());
        self.fails_first(cid_hash(&canonical))
    }

    /// Milliseconds since the epoch.
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Wall-clock time of an epoch offset, RFC 3339 like Go's `time.Time`.
    fn wall(&self, ms: u64) -> String {
        let t = self.epoch_wall + Duration::from_millis(ms);
        humantime::format_rfc3339_millis(t).to_string()
    }

    /// The shard of a CID.
    fn shard(&self, cid: &str) -> &Mutex<HashMap<Box<str>, PinEntry>> {
        &self.shards[(cid_hash(cid) % SHARDS as u64) as usize]
    }

    /// Whether a pin with this CID hash fails its first attempt.
    fn fails_first(&self, hash: u64) -> bool {
        unit(mix(hash, self.config.seed ^ ERROR_SALT)) < self.config.error_rate
    }

    /// A pin's status on peer `k` at `now_ms`, and when it took that status.
    fn peer_status(&self, entry: &PinEntry, k: usize, now_ms: u64) -> (PinStatus, u64) {
        if entry.allocations & (1 << k) == 0 {
            return (PinStatus::Remote, entry.created_ms);
        }
        let elapsed = now_ms.saturating_sub(entry.started_ms);
        let queue = self.config.queue.as_millis() as u64;
        if elapsed < queue {
            return (PinStatus::PinQueued, entry.started_ms);
        }
        let jitter = 0.5
            + unit(mix(
                entry.hash ^ JITTER_SALT ^ u64::from(entry.attempt),
                k as u64,
            ));
        let pin = (self.config.pin.as_millis() as f64 * jitter) as u64;
        let done = entry.started_ms + queue + pin;
        if elapsed < queue + pin {
            (PinStatus::Pinning, entry.started_ms + queue)
        } else if entry.attempt == 1 && self.fails_first(entry.hash) {
            (PinStatus::PinError, done)
        } else {
            (PinStatus::Pinned, done)
        }
    }

    /// The folded status of a pin.
    fn folded(&self, entry: &PinEntry, now_ms: u64) -> PinStatus {
        fold((0..self.peers.len()).map(|k| self.peer_status(entry, k, now_ms).0))
    }

    /// The counters and statuses `/admin/cluster/stats` reports.
    pub fn stats(&self) -> ClusterStats {
        let now = self.now_ms();
        let mut stats = ClusterStats {
            pin_requests: self.counters.pin_requests.load(Ordering::Relaxed),
            recovers: self.counters.recovers.load(Ordering::Relaxed),
            status_requests: self.counters.status_requests.load(Ordering::Relaxed),
            faults: self.counters.faults.load(Ordering::Relaxed),
            unauthorized: self.counters.unauthorized.load(Ordering::Relaxed),
            unavailable: self.counters.unavailable.load(Ordering::Relaxed),
            timeouts: self.counters.timeouts.load(Ordering::Relaxed),
            stream_errors: self.counters.stream_errors.load(Ordering::Relaxed),
            ..ClusterStats::default()
        };
        for shard in &self.shards {
            let pins = shard.lock().unwrap_or_else(|e| e.into_inner());
            stats.pins += pins.len();
            for (cid, entry) in pins.iter() {
                if entry.requests > 1 {
                    stats.repinned.push(cid.to_string());
                }
                if entry.posts_after_pinned > 0 {
                    stats.posts_after_pinned_seen += u64::from(entry.posts_after_pinned);
                    stats.posted_after_pinned.push(cid.to_string());
                }
                let status = self.folded(entry, now).as_str().to_owned();
                *stats.by_status.entry(status).or_default() += 1;
            }
        }
        stats.repinned.sort_unstable();
        stats.posted_after_pinned.sort_unstable();
        stats.posted_after_pinned.truncate(OFFENDERS_LISTED);
        stats
    }

    /// Starts an outage of `duration`. Pins are untouched either way.
    pub fn outage(&self, mode: OutageMode, duration: Duration) {
        match mode {
            OutageMode::Unavailable => {
                let until = self.now_ms() + duration.as_millis() as u64;
                self.unavailable_until_ms
                    .fetch_max(until, Ordering::Relaxed);
            }
            OutageMode::Refuse => {
                let until = Instant::now() + duration;
                {
                    let mut refused = self.refused_until.lock().unwrap_or_else(|e| e.into_inner());
                    *refused = Some(refused.map_or(until, |t| t.max(until)));
                }
                self.refusals.send_modify(|n| *n += 1);
            }
        }
    }

    /// Until when the listener stays closed, if a refuse outage is pending.
    fn refused_until(&self) -> Option<Instant> {
        *self.refused_until.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Latency, outage, auth and faults, in that order; `Some` answers the request.
    async fn gate(&self, headers: &HeaderMap) -> Option<Response> {
        if !self.config.latency.is_zero() {
            tokio::time::sleep(self.config.latency).await;
        }
        let n = self.counters.requests.fetch_add(1, Ordering::Relaxed);
        if self.now_ms() < self.unavailable_until_ms.load(Ordering::Relaxed) {
            self.counters.unavailable.fetch_add(1, Ordering::Relaxed);
            return Some(api_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "cluster is unavailable: consensus not ready",
            ));
        }
        if !self.authorized(headers) {
            self.counters.unauthorized.fetch_add(1, Ordering::Relaxed);
            let mut r = api_error(StatusCode::UNAUTHORIZED, "Unauthorized");
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Restricted IPFS Cluster API\""),
            );
            return Some(r);
        }
        if self.times_out(n) {
            self.counters.timeouts.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(self.config.timeout_hold).await;
            return Some(api_error(
                StatusCode::GATEWAY_TIMEOUT,
                "context deadline exceeded",
            ));
        }
        if self.config.fault_rate > 0.0 {
            let draw = mix(self.config.seed ^ FAULT_SALT, n);
            if unit(draw) < self.config.fault_rate {
                self.counters.faults.fetch_add(1, Ordering::Relaxed);
                let (status, message) = match draw % 3 {
                    0 => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "rpc error: peer is shutting down",
                    ),
                    1 => (StatusCode::BAD_GATEWAY, "bad gateway"),
                    _ => (StatusCode::SERVICE_UNAVAILABLE, "service unavailable"),
                };
                return Some(api_error(status, message));
            }
        }
        None
    }

    /// Whether the request carries an accepted credential (always, when none is set).
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let (basic, bearer) = (&self.config.basic_auth, &self.config.bearer);
        if basic.is_none() && bearer.is_none() {
            return true;
        }
        let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        if let (Some(want), Some(token)) = (bearer, value.strip_prefix("Bearer "))
            && token.trim() == want.expose()
        {
            return true;
        }
        if let (Some(want), Some(encoded)) = (basic, value.strip_prefix("Basic ")) {
            let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim());
            if decoded.is_ok_and(|d| d == want.expose().as_bytes()) {
                return true;
            }
        }
        false
    }

    /// Pins `cid` (or counts a re-pin, which changes nothing, as in ipfs-cluster) and
    /// renders the `Pin`.
    fn pin(&self, cid: &str, options: PinOptions) -> Result<Vec<u8>, ApiError> {
        let peers = self.peers.len() as i32;
        if options.replication_min > peers {
            return Err(ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "not enough peers to allocate CID. Needed at least: {}. Wanted at most: {}. \
                     Available candidates: {peers}. See logs for more info.",
                    options.replication_min, options.replication_max
                ),
            ));
        }
        let now = self.now_ms();
        let hash = cid_hash(cid);
        let mut shard = self.shard(cid).lock().unwrap_or_else(|e| e.into_inner());
        let entry = match shard.entry(Box::from(cid)) {
            Entry::Occupied(existing) => {
                let existing = existing.into_mut();
                existing.requests += 1;
                if existing.pinned_seen_ms.is_some() {
                    existing.posts_after_pinned += 1;
                }
                existing
            }
            Entry::Vacant(slot) => {
                let wanted = if options.replication_max < 0 {
                    peers
                } else {
                    options.replication_max.clamp(1, peers)
                };
                let first = (hash % self.peers.len() as u64) as usize;
                let allocations = (0..wanted as usize)
                    .map(|i| 1u8 << ((first + i) % self.peers.len()))
                    .fold(0, |a, b| a | b);
                slot.insert(PinEntry {
                    name: options.name.into_boxed_str(),
                    metadata: options.metadata,
                    replication_min: options.replication_min,
                    replication_max: options.replication_max,
                    max_depth: options.max_depth,
                    allocations,
                    created_ms: now,
                    started_ms: now,
                    attempt: 1,
                    requests: 1,
                    hash,
                    pinned_seen_ms: None,
                    posts_after_pinned: 0,
                })
            }
        };
        self.counters.pin_requests.fetch_add(1, Ordering::Relaxed);
        let allocations: Vec<&str> = self.allocated(entry).collect();
        let body = PinJson {
            replication_factor_min: entry.replication_min,
            replication_factor_max: entry.replication_max,
            name: &entry.name,
            mode: if entry.max_depth == 0 {
                "direct"
            } else {
                "recursive"
            },
            shard_size: 0,
            user_allocations: None,
            expire_at: GO_ZERO_TIME,
            metadata: entry.metadata.iter().map(|(k, v)| (&**k, &**v)).collect(),
            pin_update: None,
            origins: Vec::new(),
            cid,
            kind: "pin",
            allocations,
            max_depth: entry.max_depth,
            reference: None,
            timestamp: self.wall(entry.created_ms),
        };
        serde_json::to_vec(&body)
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
    }

    /// The ids of the peers a pin is allocated to.
    fn allocated<'a>(&'a self, entry: &'a PinEntry) -> impl Iterator<Item = &'a str> + 'a {
        self.peers
            .iter()
            .enumerate()
            .filter(move |(k, _)| entry.allocations & (1 << k) != 0)
            .map(|(_, p)| p.id.as_str())
    }

    /// Restarts `cid` if it is in `pin_error`; `None` if it is not tracked.
    fn recover(&self, cid: &str) -> Option<bool> {
        let now = self.now_ms();
        let mut shard = self.shard(cid).lock().unwrap_or_else(|e| e.into_inner());
        let entry = shard.get_mut(cid)?;
        if self.folded(entry, now) != PinStatus::PinError {
            return Some(false);
        }
        entry.attempt += 1;
        entry.started_ms = now;
        self.counters.recovers.fetch_add(1, Ordering::Relaxed);
        Some(true)
    }

    /// Appends `cid`'s `GlobalPinInfo` and a newline to `out` if it passes `filter`;
    /// whether it did. Untracked CIDs show `unpinned` on every peer. The first answer that
    /// shows a pin `pinned` is remembered, for [`ClusterStats::posts_after_pinned_seen`].
    fn render_status(
        &self,
        cid: &str,
        filter: Option<&[PinStatus]>,
        now: u64,
        out: &mut Vec<u8>,
    ) -> bool {
        let mut shard = self.shard(cid).lock().unwrap_or_else(|e| e.into_inner());
        let entry = shard.get(cid);
        let statuses: Vec<(PinStatus, u64)> = (0..self.peers.len())
            .map(|k| match entry {
                Some(e) => self.peer_status(e, k, now),
                None => (PinStatus::Unpinned, now),
            })
            .collect();
        if let Some(wanted) = filter
            && !statuses.iter().any(|(s, _)| wanted.contains(s))
        {
            return false;
        }
        let error = entry.map_or("", |e| {
            PIN_ERRORS[(splitmix(e.hash) % PIN_ERRORS.len() as u64) as usize]
        });
        let peer_map = self
            .peers
            .iter()
            .zip(&statuses)
            .map(|(peer, &(status, at))| {
                let attempts = entry.map_or(0, |e| match status {
                    PinStatus::PinQueued => e.attempt - 1,
                    PinStatus::Remote | PinStatus::Unpinned => 0,
                    _ => e.attempt,
                });
                let info = PeerInfoJson {
                    peername: &peer.name,
                    ipfs_peer_id: &peer.ipfs_id,
                    ipfs_peer_addresses: &peer.ipfs_addresses,
                    status: status.as_str(),
                    timestamp: self.wall(at),
                    error: if status == PinStatus::PinError {
                        error
                    } else {
                        ""
                    },
                    attempt_count: attempts,
                    priority_pin: false,
                };
                (peer.id.as_str(), info)
            })
            .collect();
        let body = GlobalPinInfoJson {
            cid,
            name: entry.map_or("", |e| &e.name),
            allocations: entry.map(|e| self.allocated(e).collect()),
            origins: Vec::new(),
            created: entry.map_or_else(|| GO_ZERO_TIME.to_owned(), |e| self.wall(e.created_ms)),
            metadata: entry.map(|e| e.metadata.iter().map(|(k, v)| (&**k, &**v)).collect()),
            peer_map,
        };
        let start = out.len();
        if serde_json::to_writer(&mut *out, &body).is_err() {
            out.truncate(start);
            return false;
        }
        out.push(b'\n');
        if fold(statuses.iter().map(|(s, _)| *s)) == PinStatus::Pinned
            && let Some(e) = shard.get_mut(cid)
        {
            e.pinned_seen_ms.get_or_insert(now);
        }
        true
    }

    /// Every tracked CID.
    fn all_cids(&self) -> Vec<Box<str>> {
        let mut out = Vec::new();
        for shard in &self.shards {
            out.extend(
                shard
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .keys()
                    .cloned(),
            );
        }
        out
    }

    /// Whether request `n` is held and timed out (drawn apart from the 5xx faults).
    fn times_out(&self, n: u64) -> bool {
        self.config.timeout_rate > 0.0
            && unit(mix(self.config.seed ^ FAULT_SALT ^ 0x484f_4c44, n)) < self.config.timeout_rate
    }

    /// Whether a stream with this request number is cut (drawn apart from the 5xx faults).
    fn stream_fails(&self, n: u64) -> bool {
        self.config.stream_error_rate > 0.0
            && unit(mix(self.config.seed ^ FAULT_SALT ^ 0x5354, n)) < self.config.stream_error_rate
    }
}

/// Go's zero `time.Time`, as `encoding/json` writes it.
const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// A `Pin` as ipfs-cluster's REST API writes it.
#[derive(Serialize)]
struct PinJson<'a> {
    /// Minimum replication (-1: every peer).
    replication_factor_min: i32,
    /// Maximum replication (-1: every peer).
    replication_factor_max: i32,
    /// Pin name.
    name: &'a str,
    /// `recursive` or `direct`.
    mode: &'static str,
    /// Always 0 (no sharding).
    shard_size: u64,
    /// Always null.
    user_allocations: Option<()>,
    /// Go's zero time: no expiry.
    expire_at: &'static str,
    /// The `meta-*` values.
    metadata: BTreeMap<&'a str, &'a str>,
    /// Always null.
    pin_update: Option<()>,
    /// Always empty.
    origins: Vec<&'a str>,
    /// The CID.
    cid: &'a str,
    /// `pin` (a plain data pin; cluster 1.x writes the type as a string).
    #[serde(rename = "type")]
    kind: &'static str,
    /// Allocated peer ids.
    allocations: Vec<&'a str>,
    /// -1 recursive, 0 direct.
    max_depth: i32,
    /// Always null.
    reference: Option<()>,
    /// When the pin was submitted.
    timestamp: String,
}

/// A `GlobalPinInfo`.
#[derive(Serialize)]
struct GlobalPinInfoJson<'a> {
    /// The CID.
    cid: &'a str,
    /// Pin name ("" when untracked).
    name: &'a str,
    /// Allocated peers (null when untracked).
    allocations: Option<Vec<&'a str>>,
    /// Always empty.
    origins: Vec<&'a str>,
    /// When it was pinned (Go's zero time when untracked).
    created: String,
    /// `meta-*` values (null when untracked).
    metadata: Option<BTreeMap<&'a str, &'a str>>,
    /// Status per peer id.
    peer_map: BTreeMap<&'a str, PeerInfoJson<'a>>,
}

/// A `PinInfoShort`: one peer's view of a pin.
#[derive(Serialize)]
struct PeerInfoJson<'a> {
    /// The cluster peer's name.
    peername: &'a str,
    /// Its IPFS daemon's id.
    ipfs_peer_id: &'a str,
    /// Its IPFS daemon's addresses.
    ipfs_peer_addresses: &'a [String],
    /// The status on this peer.
    status: &'static str,
    /// When the status was reached.
    timestamp: String,
    /// The error of a `pin_error`, else "".
    error: &'a str,
    /// Attempts so far.
    attempt_count: u32,
    /// Always false.
    priority_pin: bool,
}

/// Options of `POST /pins/{cid}`.
#[derive(Debug)]
struct PinOptions {
    /// `name`.
    name: String,
    /// `replication-min` (or `replication`); -1 for every peer.
    replication_min: i32,
    /// `replication-max` (or `replication`); -1 for every peer.
    replication_max: i32,
    /// From `mode`: -1 recursive, 0 direct.
    max_depth: i32,
    /// `meta-<key>=<value>`, sorted by key.
    metadata: Vec<(Box<str>, Box<str>)>,
}

impl PinOptions {
    /// Reads the query parameters as ipfs-cluster's `PinOptions.FromQuery` does.
    fn from_query(params: &[(String, String)]) -> Result<Self, String> {
        let mut options = PinOptions {
            name: String::new(),
            replication_min: -1,
            replication_max: -1,
            max_depth: -1,
            metadata: Vec::new(),
        };
        let int = |key: &str, value: &str| -> Result<i32, String> {
            let v: i32 = value
                .parse()
                .map_err(|_| format!("parameter {key} invalid"))?;
            // 0 means "the cluster's default", which is -1 (every peer).
            Ok(if v == 0 { -1 } else { v })
        };
        let mut metadata = BTreeMap::new();
        for (key, value) in params {
            match key.as_str() {
                "name" => options.name = value.clone(),
                "mode" => options.max_depth = if value == "direct" { 0 } else { -1 },
                "replication" => {
                    options.replication_min = int(key, value)?;
                    options.replication_max = options.replication_min;
                }
                "replication-min" => options.replication_min = int(key, value)?,
                "replication-max" => options.replication_max = int(key, value)?,
                _ => {
                    if let Some(k) = key.strip_prefix("meta-").filter(|k| !k.is_empty()) {
                        metadata.insert(Box::from(k), Box::from(value.as_str()));
                    }
                }
            }
        }
        options.metadata = metadata.into_iter().collect();
        Ok(options)
    }
}

/// Serves the cluster API on `listener` until `shutdown` resolves. A `refuse` outage
/// closes the listener (in-flight requests finish, idle connections close) and rebinds
/// the same address when it ends.
pub async fn serve_cluster(
    listener: TcpListener,
    cluster: Arc<Cluster>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let app = router(Arc::clone(&cluster));
    let mut listener = listener;
    loop {
        let mut stop = stop_rx.clone();
        let mut refusals = cluster.refusals.subscribe();
        refusals.borrow_and_update();
        axum::serve(listener, app.clone())
            .with_graceful_shutdown(async move {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => {}
                    _ = refusals.changed() => {}
                }
            })
            .await?;
        if *stop_rx.borrow() {
            return Ok(());
        }
        tracing::info!(%addr, "devnet cluster refusing connections");
        // Later refuse outages may extend the wait.
        while let Some(until) = cluster.refused_until().filter(|u| *u > Instant::now()) {
            let mut stop = stop_rx.clone();
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {}
                _ = stop.wait_for(|s| *s) => return Ok(()),
            }
        }
        listener = rebind(addr, &stop_rx).await?;
        tracing::info!(%addr, "devnet cluster accepting connections again");
    }
}

/// Binds `addr` again. Tokio sets SO_REUSEADDR, so connections in TIME_WAIT do not block
/// it; another process taking the port in the meantime does, and then this fails.
async fn rebind(addr: SocketAddr, stop: &watch::Receiver<bool>) -> std::io::Result<TcpListener> {
    let mut last = None;
    for _ in 0..REBIND_ATTEMPTS {
        if *stop.borrow() {
            break;
        }
        match TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(REBIND_PAUSE).await;
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("stopped while rebinding")))
}

/// The cluster's routes.
fn router(cluster: Arc<Cluster>) -> Router {
    Router::new()
        .route("/pins", get(status_all))
        .route("/pins/recover", post(recover_all))
        .route("/pins/{cid}", post(pin).get(status))
        .route("/pins/{cid}/recover", post(recover))
        .route("/id", get(id))
        .route("/version", get(version))
        .route("/health", get(health))
        .with_state(cluster)
}

/// `POST /pins/{cid}`.
async fn pin(
    State(cluster): State<Arc<Cluster>>,
    headers: HeaderMap,
    Path(cid): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    if let Some(r) = cluster.gate(&headers).await {
        return r;
    }
    let cid = match canonical(&cid) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let options = match PinOptions::from_query(&params) {
        Ok(o) => o,
        Err(message) => return api_error(StatusCode::BAD_REQUEST, &message),
    };
    match cluster.pin(&cid, options) {
        Ok(body) => json(StatusCode::OK, body),
        Err(e) => e.into_response(),
    }
}

/// `GET /pins/{cid}`.
async fn status(
    State(cluster): State<Arc<Cluster>>,
    headers: HeaderMap,
    Path(cid): Path<String>,
) -> Response {
    if let Some(r) = cluster.gate(&headers).await {
        return r;
    }
    let cid = match canonical(&cid) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    cluster
        .counters
        .status_requests
        .fetch_add(1, Ordering::Relaxed);
    single_status(&cluster, &cid)
}

/// One tracked CID's `GlobalPinInfo`, or 404.
fn single_status(cluster: &Cluster, cid: &str) -> Response {
    let tracked = cluster
        .shard(cid)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains_key(cid);
    if !tracked {
        return api_error(StatusCode::NOT_FOUND, "cid is not part of the global state");
    }
    let mut body = Vec::with_capacity(1024);
    cluster.render_status(cid, None, cluster.now_ms(), &mut body);
    // ipfs-cluster's JSON encoder ends bodies with a newline too.
    json(StatusCode::OK, body)
}

/// `POST /pins/{cid}/recover`.
async fn recover(
    State(cluster): State<Arc<Cluster>>,
    headers: HeaderMap,
    Path(cid): Path<String>,
) -> Response {
    if let Some(r) = cluster.gate(&headers).await {
        return r;
    }
    let cid = match canonical(&cid) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    match cluster.recover(&cid) {
        Some(_) => single_status(&cluster, &cid),
        None => api_error(StatusCode::NOT_FOUND, "cid is not part of the global state"),
    }
}

/// `POST /pins/recover`: restarts every pin in `pin_error`; streams their statuses.
async fn recover_all(State(cluster): State<Arc<Cluster>>, headers: HeaderMap) -> Response {
    if let Some(r) = cluster.gate(&headers).await {
        return r;
    }
    let recovered: Vec<Box<str>> = cluster
        .all_cids()
        .into_iter()
        .filter(|cid| cluster.recover(cid) == Some(true))
        .collect();
    stream_statuses(cluster, recovered, None, None).await
}

/// Query string of `GET /pins`.
#[derive(Debug, Default, Deserialize)]
struct StatusQuery {
    /// Comma-separated CIDs; absent or empty for every tracked pin.
    cids: Option<String>,
    /// Comma-separated statuses: only pins with a peer in one of them.
    filter: Option<String>,
}

/// `GET /pins`.
async fn status_all(
    State(cluster): State<Arc<Cluster>>,
    headers: HeaderMap,
    Query(query): Query<StatusQuery>,
) -> Response {
    if let Some(r) = cluster.gate(&headers).await {
        return r;
    }
    cluster
        .counters
        .status_requests
        .fetch_add(1, Ordering::Relaxed);
    let filter = match query.filter.as_deref().filter(|f| !f.is_empty()) {
        None => None,
        Some(f) => {
            let mut wanted = Vec::new();
            for name in f.split(',') {
                match PinStatus::from_filter(name.trim()) {
                    Some(s) => wanted.extend_from_slice(s),
                    None => {
                        return api_error(StatusCode::BAD_REQUEST, "invalid filter value");
                    }
                }
            }
            Some(wanted)
        }
    };
    let cids: Vec<Box<str>> = match query.cids.as_deref().filter(|c| !c.trim().is_empty()) {
        None => cluster.all_cids(),
        Some(list) => {
            let mut out = Vec::new();
            for raw in list.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                match canonical(raw) {
                    Ok(c) => out.push(c.into_boxed_str()),
                    Err(e) => return e.into_response(),
                }
            }
            out
        }
    };
    let n = cluster.counters.requests.load(Ordering::Relaxed);
    let cut = cluster.stream_fails(n).then_some(cids.len() / 2);
    stream_statuses(cluster, cids, filter, cut).await
}

/// Streams `GlobalPinInfo` lines for `cids`: 204 when none passes `filter`. As a real
/// cluster does, the response announces a `Trailer: X-Stream-Error`; with `cut`, only that
/// many CIDs are read and the trailer says why the rest are missing (hyper sends trailers
/// only to clients that ask with `TE: trailers`), or, with nothing to send, a 500.
async fn stream_statuses(
    cluster: Arc<Cluster>,
    mut cids: Vec<Box<str>>,
    filter: Option<Vec<PinStatus>>,
    cut: Option<usize>,
) -> Response {
    if let Some(keep) = cut {
        cluster
            .counters
            .stream_errors
            .fetch_add(1, Ordering::Relaxed);
        if keep == 0 {
            return api_error(StatusCode::INTERNAL_SERVER_ERROR, STREAM_ERROR);
        }
        cids.truncate(keep);
    }
    // Find the first non-empty chunk before choosing between 200 and 204.
    let mut pos = 0;
    let mut first = Vec::new();
    while first.is_empty() && pos < cids.len() {
        let end = (pos + STREAM_CHUNK).min(cids.len());
        let now = cluster.now_ms();
        for cid in &cids[pos..end] {
            cluster.render_status(cid, filter.as_deref(), now, &mut first);
        }
        pos = end;
    }
    if first.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    let rest = futures::stream::unfold(
        (cluster, cids, pos, filter),
        |(cluster, cids, pos, filter)| async move {
            if pos >= cids.len() {
                return None;
            }
            let end = (pos + STREAM_CHUNK).min(cids.len());
            let now = cluster.now_ms();
            let mut chunk = Vec::new();
            for cid in &cids[pos..end] {
                cluster.render_status(cid, filter.as_deref(), now, &mut chunk);
            }
            Some((
                Ok::<_, std::io::Error>(Bytes::from(chunk)),
                (cluster, cids, end, filter),
            ))
        },
    );
    let head = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(first))]);
    let mut trailers = HeaderMap::new();
    let error = if cut.is_some() { STREAM_ERROR } else { "" };
    trailers.insert("x-stream-error", HeaderValue::from_static(error));
    let body = Body::new(WithTrailers {
        data: Box::pin(futures::StreamExt::chain(head, rest)),
        trailers: Some(trailers),
    });
    let mut response = Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(header::TRAILER, HeaderValue::from_static("X-Stream-Error"));
    response
}

/// A streamed body followed by trailers.
struct WithTrailers {
    /// The data chunks.
    data: std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static>,
    >,
    /// Sent once the data ends.
    trailers: Option<HeaderMap>,
}

impl http_body::Body for WithTrailers {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        match self.data.as_mut().poll_next(cx) {
            Poll::Ready(Some(chunk)) => Poll::Ready(Some(chunk.map(http_body::Frame::data))),
            Poll::Ready(None) => Poll::Ready(
                self.trailers
                    .take()
                    .map(|t| Ok(http_body::Frame::trailers(t))),
            ),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// `GET /id`: the first peer's identity.
async fn id(State(cluster): State<Arc<Cluster>>, headers: HeaderMap) -> Response {
    if let Some(r) = cluster.gate(&headers).await {
        return r;
    }
    let Some(peer) = cluster.peers.first() else {
        return api_error(StatusCode::INTERNAL_SERVER_ERROR, "no peers");
    };
    let body = serde_json::json!({
        "id": peer.id,
        "addresses": [format!("/ip4/127.0.0.1/tcp/9096/p2p/{}", peer.id)],
        "cluster_peers": cluster.peer_ids(),
        "cluster_peers_addresses": [],
        "version": VERSION,
        "commit": "",
        "rpc_protocol_version": "/ipfscluster/1.0/rpc",
        "error": "",
        "ipfs": { "id": peer.ipfs_id, "addresses": peer.ipfs_addresses, "error": "" },
        "peername": peer.name,
    });
    json(StatusCode::OK, body.to_string().into_bytes())
}

/// `GET /version`.
async fn version(State(cluster): State<Arc<Cluster>>, headers: HeaderMap) -> Response {
    if let Some(r) = cluster.gate(&headers).await {
        return r;
    }
    json(
        StatusCode::OK,
        serde_json::json!({ "version": VERSION })
            .to_string()
            .into_bytes(),
    )
}

/// `GET /health`: 204, as ipfs-cluster answers.
async fn health(State(cluster): State<Arc<Cluster>>, headers: HeaderMap) -> Response {
    if let Some(r) = cluster.gate(&headers).await {
        return r;
    }
    StatusCode::NO_CONTENT.into_response()
}

/// The canonical string of a CID (base58 for v0, base32 for v1), or a 400.
fn canonical(cid: &str) -> Result<String, ApiError> {
    Cid::try_from(cid)
        .map(|c| c.to_string())
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("error decoding Cid: {e}")))
}

/// An error answer: its status and message.
#[derive(Debug)]
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        api_error(self.0, &self.1)
    }
}

/// `{"code": status, "message": message}` with that status.
pub fn api_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "code": status.as_u16(), "message": message });
    let mut bytes = body.to_string().into_bytes();
    bytes.push(b'\n');
    json(status, bytes)
}

/// A JSON response.
fn json(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// A uniform draw in [0, 1) from a hash.
pub(crate) fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// FNV-1a over a CID string: stable across runs and platforms, unlike std's hasher.
fn cid_hash(cid: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in cid.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    splitmix(h)
}

/// A libp2p ed25519 peer id (`12D3KooW...`): base58 of an identity multihash of a
/// protobuf-wrapped 32-byte key derived from `seed`.
fn peer_id(seed: u64) -> String {
    let mut bytes = vec![0x00, 0x24, 0x08, 0x01, 0x12, 0x20];
    let mut state = seed;
    for _ in 0..4 {
        state = splitmix(state);
        bytes.extend_from_slice(&state.to_be_bytes());
    }
    base58(&bytes)
}

/// Bitcoin-alphabet base58.
fn base58(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    let mut digits: Vec<u8> = Vec::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        let mut carry = u32::from(byte);
        for d in &mut digits {
            carry += u32::from(*d) << 8;
            *d = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    let mut out = String::with_capacity(zeros + digits.len());
    out.extend(std::iter::repeat_n('1', zeros));
    out.extend(
        digits
            .iter()
            .rev()
            .map(|&d| char::from(ALPHABET[usize::from(d)])),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_ids_look_like_libp2p_ed25519_ids() {
        let id = peer_id(1);
        assert!(id.starts_with("12D3KooW"), "{id}");
        assert_eq!(id.len(), 52);
        assert_ne!(peer_id(1), peer_id(2));
        assert_eq!(base58(&[0, 0, 1]), "112");
        assert_eq!(base58(b"hello world"), "StV1DL6CwTryKyV");
    }

    #[test]
    fn fold_prefers_pinned_then_pinning_then_queued_then_error() {
        use PinStatus::*;
        let cases: [(&[PinStatus], PinStatus); 6] = [
            (&[Pinned, PinError, Pinning], Pinned),
            (&[PinError, Pinning, PinQueued], Pinning),
            (&[PinError, PinQueued, Remote], PinQueued),
            (&[PinError, Remote], PinError),
            (&[Remote, Unpinned], Remote),
            (&[], Unpinned),
        ];
        for (statuses, want) in cases {
            assert_eq!(fold(statuses.iter().copied()), want, "{statuses:?}");
        }
    }

    #[test]
    fn pin_options_read_like_ipfs_clusters() {
        let q = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let o = PinOptions::from_query(&q(&[
            ("name", "token 1"),
            ("replication-min", "2"),
            ("replication-max", "3"),
            ("meta-role", "image"),
            ("meta-token", "0xab_1"),
            ("meta-", "ignored"),
        ]))
        .unwrap();
        assert_eq!(o.name, "token 1");
        assert_eq!((o.replication_min, o.replication_max), (2, 3));
        assert_eq!(
            o.metadata,
            vec![
                (Box::from("role"), Box::from("image")),
                (Box::from("token"), Box::from("0xab_1"))
            ]
        );
        let o = PinOptions::from_query(&q(&[("replication", "0"), ("mode", "direct")])).unwrap();
        assert_eq!(
            (o.replication_min, o.replication_max, o.max_depth),
            (-1, -1, 0)
        );
        assert_eq!(
            PinOptions::from_query(&q(&[("replication-min", "x")])).unwrap_err(),
            "parameter replication-min invalid"
        );
    }

    #[test]
    fn statuses_move_with_time_and_errors_only_on_the_first_attempt() {
        let cluster = Cluster::new(ClusterConfig {
            queue: Duration::from_millis(100),
            pin: Duration::from_millis(200),
            error_rate: 1.0,
            ..ClusterConfig::default()
        });
        let mut entry = PinEntry {
            name: Box::from(""),
            metadata: Vec::new(),
            replication_min: -1,
            replication_max: -1,
            max_depth: -1,
            allocations: 0b011,
            created_ms: 1_000,
            started_ms: 1_000,
            attempt: 1,
            requests: 1,
            hash: 42,
            pinned_seen_ms: None,
            posts_after_pinned: 0,
        };
        let at = |e: &PinEntry, ms| cluster.peer_status(e, 0, ms).0;
        assert_eq!(at(&entry, 1_050), PinStatus::PinQueued);
        assert_eq!(at(&entry, 1_120), PinStatus::Pinning);
        assert_eq!(at(&entry, 1_500), PinStatus::PinError);
        assert_eq!(cluster.peer_status(&entry, 2, 1_500).0, PinStatus::Remote);
        entry.attempt = 2;
        entry.started_ms = 2_000;
        assert_eq!(at(&entry, 2_050), PinStatus::PinQueued);
        assert_eq!(at(&entry, 2_500), PinStatus::Pinned);
    }
}
