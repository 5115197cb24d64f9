//! Fetching metadata: through the configured IPFS gateway for IPFS and IPNS, through the
//! configured Arweave gateway for `ar://`, and directly for plain web URLs, behind a guard
//! that keeps token URIs (written by anyone) from reaching the operator's own network.
//!
//! The guard works at the two places an address is chosen: a resolver that refuses names
//! resolving to private addresses (checked at connect time, so a name cannot be rebound
//! between a check and the connection), and a check of IP-literal hosts, before the first
//! request and on every redirect. Both consult the same [`is_blocked`] and the configured
//! allow list.

use std::collections::{BTreeMap, HashMap};
use std::error::Error as StdError;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nifty_upstream::{BodyError, Secrets, read_capped};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect;
use url::{Host, Url};

use crate::metrics::GATEWAY_FETCH_SECONDS;
use crate::uri::Target;

/// Default cap on a metadata document: real metadata is a few KiB; anything near a MiB is
/// an image served where metadata was expected, or an attack.
pub const DEFAULT_MAX_BYTES: usize = 1024 * 1024;
/// Default time for one fetch, body included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);
/// Redirects followed; a fourth is refused.
pub const MAX_REDIRECTS: usize = 3;
/// Attempts for an answer that may be transient (502, 503, 504, 429, a timeout, a broken
/// connection), from a gateway or a token's own server.
pub const ATTEMPTS: u32 = 4;

/// How metadata is fetched.
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// The IPFS gateway (`http://127.0.0.1:8080`): `/ipfs/<cid>/<path>` is appended.
    pub gateway: Url,
    /// The Arweave gateway (`https://arweave.net`): `/<id>/<path>` is appended.
    pub arweave_gateway: Url,
    /// Time for one fetch, body included.
    pub timeout: Duration,
    /// Largest document read.
    pub max_bytes: usize,
    /// Hosts (names or IP addresses) that direct fetches may reach even though they are
    /// private: a metadata server on the operator's own network, or a test server.
    pub allow_hosts: Vec<String>,
    /// Fixed addresses for names, as `curl --resolve` (tests, split-horizon DNS).
    pub resolve: BTreeMap<String, Vec<IpAddr>>,
    /// `User-Agent` sent.
    pub user_agent: String,
    /// Every secret of the configuration, masked in every error (the fetcher adds the
    /// key-bearing parts of the gateway URLs).
    pub secrets: Secrets,
}

impl FetchOptions {
    /// Options with the defaults for everything but the gateways.
    pub fn new(gateway: Url, arweave_gateway: Url) -> Self {
        FetchOptions {
            gateway,
            arweave_gateway,
            timeout: DEFAULT_TIMEOUT,
            max_bytes: DEFAULT_MAX_BYTES,
            allow_hosts: vec![],
            resolve: BTreeMap::new(),
            user_agent: concat!("nifty/", env!("CARGO_PKG_VERSION")).to_owned(),
            secrets: Secrets::default(),
        }
    }
}

/// Why a fetch failed; the name is what a token records.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum FetchReason {
    /// The server answered with this non-success status.
    Http(u16),
    /// No complete answer within the timeout.
    Timeout,
    /// The document is larger than the cap.
    TooLarge,
    /// The URL, a redirect, or a name resolved to an address nifty must not reach.
    BlockedAddress,
    /// More than [`MAX_REDIRECTS`] redirects.
    TooManyRedirects,
    /// The name does not resolve.
    Dns,
    /// The connection failed (refused, reset, TLS).
    Connect,
    /// The body broke off.
    Body,
    /// The URL cannot be fetched (bad scheme, no host).
    InvalidUrl,
}

impl FetchReason {
    /// The reason as stored and counted: `http_404`, `timeout`, ...
    pub fn name(self) -> String {
        match self {
            FetchReason::Http(code) => format!("http_{code}"),
            FetchReason::Timeout => "timeout".into(),
            FetchReason::TooLarge => "too_large".into(),
            FetchReason::BlockedAddress => "blocked_address".into(),
            FetchReason::TooManyRedirects => "too_many_redirects".into(),
            FetchReason::Dns => "dns".into(),
            FetchReason::Connect => "connect".into(),
            FetchReason::Body => "body".into(),
            FetchReason::InvalidUrl => "invalid_url".into(),
        }
    }

    /// Whether another attempt soon may succeed. A timeout may: an IPFS gateway often
    /// times out while it looks for the content's providers and then serves it from its
    /// cache, so one timeout must not fail the token for good.
    fn is_transient(self) -> bool {
        matches!(
            self,
            FetchReason::Http(429 | 502 | 503 | 504)
                | FetchReason::Timeout
                | FetchReason::Connect
                | FetchReason::Body
        )
    }
}

/// A failed fetch.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("{}: {detail}", reason.name())]
pub struct FetchError {
    /// The machine-readable reason.
    pub reason: FetchReason,
    /// What happened, without query strings (which may carry keys), cleaned through the
    /// fetcher's [`Secrets`] (a key in the gateway URL's path is masked).
    pub detail: String,
    /// Whether the failure was the configured gateway's own (unreachable, rate limiting),
    /// not the token's: the token should be tried again later rather than recorded.
    pub gateway_outage: bool,
}

/// A fetched document.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Fetched {
    /// The `Content-Type`, lower case, without parameters.
    pub content_type: Option<String>,
    /// The body; empty when the content type says it is media (not read, to save the
    /// transfer: an image is an asset, not metadata).
    pub body: Vec<u8>,
    /// Whether the body was skipped because the content is media.
    pub media: bool,
}

/// Fetches metadata documents.
#[derive(Clone)]
pub struct Fetcher {
    /// Client for the configured gateways (trusted: the operator chose them).
    gateway: reqwest::Client,
    /// Client for token-supplied web URLs, behind the guard.
    web: reqwest::Client,
    /// The options.
    opts: Arc<FetchOptions>,
    /// The allow list, parsed.
    allow: Arc<Allow>,
    /// The configured secrets and the gateway URLs' key-bearing parts.
    secrets: Secrets,
}

impl fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetcher")
            .field(
                "gateway",
                &nifty_scraper::graph::client::redact_url(self.opts.gateway.as_str()),
            )
            .field("allow_hosts", &self.opts.allow_hosts)
            .finish_non_exhaustive()
    }
}

/// The allow list: names (lower case) and addresses.
#[derive(Debug, Default)]
struct Allow {
    names: Vec<String>,
    ips: Vec<IpAddr>,
}

impl Allow {
    fn new(hosts: &[String]) -> Self {
        let mut allow = Allow::default();
        for h in hosts {
            let h = h.trim().trim_start_matches('[').trim_end_matches(']');
            match h.parse::<IpAddr>() {
                Ok(ip) => allow.ips.push(ip),
                Err(_) => allow.names.push(h.to_ascii_lowercase()),
            }
        }
        allow
    }

    fn name(&self, name: &str) -> bool {
        self.names.iter().any(|n| n.eq_ignore_ascii_case(name))
    }

    fn ip(&self, ip: IpAddr) -> bool {
        self.ips.contains(&ip)
    }
}

/// Marks a refusal inside reqwest's error chain, so it can be told from other failures.
#[derive(Debug)]
struct Refused {
    reason: FetchReason,
    detail: String,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

impl StdError for Refused {}

/// The resolver of direct fetches: resolves, then refuses private answers.
struct GuardedResolver {
    allow: Arc<Allow>,
    fixed: BTreeMap<String, Vec<IpAddr>>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_ascii_lowercase();
        let allowed = self.allow.name(&host);
        let fixed = self.fixed.get(&host).cloned();
        let allow = Arc::clone(&self.allow);
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = match fixed {
                Some(ips) => ips.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect(),
                None => tokio::net::lookup_host((host.as_str(), 0))
                    .await
                    .map_err(|e| Refused {
                        reason: FetchReason::Dns,
                        detail: format!("cannot resolve {host}: {e}"),
                    })?
                    .collect(),
            };
            if !allowed {
                // One private answer refuses the name: a host that resolves to both is
                // either misconfigured or probing.
                if let Some(bad) = addrs
                    .iter()
                    .find(|a| is_blocked(a.ip()) && !allow.ip(a.ip()))
                {
                    return Err(Box::new(Refused {
                        reason: FetchReason::BlockedAddress,
                        detail: format!("{host} resolves to {}, a private address", bad.ip()),
                    }) as Box<dyn StdError + Send + Sync>);
                }
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Whether direct fetches must not reach `ip`: loopback, private, shared (CGNAT),
/// link-local (cloud metadata at 169.254.169.254 among them), multicast, unspecified,
/// broadcast, reserved, documentation and benchmarking ranges, and the IPv6 forms that
/// embed an IPv4 address (mapped, compatible, NAT64, 6to4, Teredo), judged by the
/// address they embed or refused outright.
pub fn is_blocked(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => blocked_v4(v4),
        IpAddr::V6(v6) => blocked_v6(v6),
    }
}

fn blocked_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0 // "this network", 0.0.0.0 included
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT), Alibaba's metadata
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240 // reserved
}

fn blocked_v6(ip: Ipv6Addr) -> bool {
    let seg = ip.segments();
    // IPv4-mapped addresses are refused whatever they embed: a public IPv4 host is
    // written as IPv4, and the mapped form is how filters get bypassed.
    if ip.to_ipv4_mapped().is_some() {
        return true;
    }
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (seg[0] & 0xfe00) == 0xfc00 // unique local (AWS metadata fd00:ec2::254 among them)
        || (seg[0] & 0xffc0) == 0xfe80 // link-local
        || (seg[0] & 0xffc0) == 0xfec0 // site-local (deprecated, still routed by some)
        || (seg[0] == 0x2001 && seg[1] == 0x0db8) // documentation
        || seg[..6] == [0; 6] // IPv4-compatible (deprecated)
        || (seg[0] == 0x0064 && seg[1] == 0xff9b) // NAT64: reaches any IPv4 address
        || seg[0] == 0x2002 // 6to4: embeds an IPv4 address
        || (seg[0] == 0x2001 && seg[1] == 0) // Teredo
}

impl Fetcher {
    /// A fetcher with `opts`.
    pub fn new(opts: FetchOptions) -> Result<Fetcher, FetchError> {
        let allow = Arc::new(Allow::new(&opts.allow_hosts));
        let build_error = |e: reqwest::Error| FetchError {
            reason: FetchReason::InvalidUrl,
            detail: format!("cannot build the HTTP client: {e}"),
            gateway_outage: false,
        };
        let gateway = reqwest::Client::builder()
            .timeout(opts.timeout)
            .user_agent(&opts.user_agent)
            .redirect(redirect::Policy::limited(MAX_REDIRECTS))
            .build()
            .map_err(build_error)?;
        let policy_allow = Arc::clone(&allow);
        let web = reqwest::Client::builder()
            .timeout(opts.timeout)
            .user_agent(&opts.user_agent)
            .dns_resolver(Arc::new(GuardedResolver {
                allow: Arc::clone(&allow),
                fixed: opts
                    .resolve
                    .iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                    .collect(),
            }))
            .redirect(redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() > MAX_REDIRECTS {
                    return attempt.error(Refused {
                        reason: FetchReason::TooManyRedirects,
                        detail: format!("more than {MAX_REDIRECTS} redirects"),
                    });
                }
                match check_literal(attempt.url(), &policy_allow) {
                    Ok(()) => attempt.follow(),
                    Err(refused) => attempt.error(refused),
                }
            }))
            .build()
            .map_err(build_error)?;
        let secrets = opts.secrets.with(
            [&opts.gateway, &opts.arweave_gateway]
                .into_iter()
                .flat_map(|u| nifty_upstream::url_secrets(u.as_str(), false)),
        );
        Ok(Fetcher {
            gateway,
            web,
            opts: Arc::new(opts),
            allow,
            secrets,
        })
    }

    /// The secrets masked in this fetcher's errors, for data taken from what it fetched.
    pub fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// The URL a target is fetched from, and whether it goes through a configured gateway.
    /// `Data` targets are not fetched. A gateway URL's query (`?token=KEY`) is kept: some
    /// gateways take their key there.
    pub fn location(&self, target: &Target) -> Option<(Url, bool)> {
        let under = |base: &Url, parts: &[&str]| {
            let mut path = base.path().trim_end_matches('/').to_owned();
            for p in parts.iter().filter(|p| !p.is_empty()) {
                path.push('/');
                path.push_str(p);
            }
            let mut url = base.clone();
            url.set_fragment(None);
            url.set_path(&path);
            url
        };
        match target {
            Target::Ipfs { cid, path } => Some((
                under(&self.opts.gateway, &["ipfs", &cid.to_string(), path]),
                true,
            )),
            Target::Ipns { name, path } => {
                Some((under(&self.opts.gateway, &["ipns", name, path]), true))
            }
            Target::Arweave { id, path } => {
                Some((under(&self.opts.arweave_gateway, &[id, path]), true))
            }
            Target::Web(url) => Some((url.clone(), false)),
            Target::Data { .. } => None,
        }
    }

    /// Fetches the document a target names. Every error's detail is cleaned here, the one
    /// way out: it names URLs (a gateway's may hold a key) and quotes the HTTP stack.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn fetch(&self, target: &Target) -> Result<Fetched, FetchError> {
        self.fetch_raw(target).await.map_err(|mut e| {
            e.detail = self.secrets.clean(&e.detail);
            e
        })
    }

    async fn fetch_raw(&self, target: &Target) -> Result<Fetched, FetchError> {
        let Some((url, via_gateway)) = self.location(target) else {
            return Err(FetchError {
                reason: FetchReason::InvalidUrl,
                detail: "nothing to fetch for this target".into(),
                gateway_outage: false,
            });
        };
        let kind = kind_of(target);
        if !via_gateway {
            let started = Instant::now();
            let checked = if matches!(url.scheme(), "http" | "https") {
                check_literal(&url, &self.allow).map_err(|r| refusal(r.reason, &r.detail))
            } else {
                Err(refusal(FetchReason::InvalidUrl, "only http(s) is fetched"))
            };
            if let Err(e) = checked {
                // No request was made, but the refusal is recorded like one (at about zero
                // seconds) so that operators see SSRF attempts next to the fetches.
                record(kind, started, Some(e.reason));
                return Err(e);
            }
        }
        let client = if via_gateway {
            &self.gateway
        } else {
            &self.web
        };
        let mut attempt = 1;
        let mut passing = Vec::new();
        loop {
            let started = Instant::now();
            let result = self.get(client, &url).await;
            record(kind, started, result.as_ref().err().map(|e| e.reason));
            match result {
                Err(e) if e.reason.is_transient() && attempt < ATTEMPTS => {
                    passing.push(e);
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                    attempt += 1;
                }
                Err(e) => {
                    let mut e = if e.reason.is_transient() && !e.gateway_outage {
                        passing.push(e);
                        most_frequent(passing)
                    } else {
                        e
                    };
                    // A token's own server failing is the token's failure, never an outage.
                    if !via_gateway {
                        e.gateway_outage = false;
                    }
                    return Err(e);
                }
                ok => return ok,
            }
        }
    }

    async fn get(&self, client: &reqwest::Client, url: &Url) -> Result<Fetched, FetchError> {
        let shown = shown(url);
        let resp = client
            .get(url.clone())
            .send()
            .await
            .map_err(|e| classify(&e, &shown))?;
        let status = resp.status();
        if !status.is_success() {
            let code = status.as_u16();
            return Err(FetchError {
                reason: FetchReason::Http(code),
                detail: format!("{shown} answered {status}"),
                gateway_outage: matches!(code, 429 | 503),
            });
        }
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase());
        let media = content_type.as_deref().is_some_and(|t| {
            ["image/", "video/", "audio/", "model/"]
                .iter()
                .any(|p| t.starts_with(p))
        });
        if media {
            return Ok(Fetched {
                content_type,
                body: vec![],
                media,
            });
        }
        // The same capped read as every other upstream answer: a declared length over the
        // cap is refused unread, and a body that runs past it (chunked, never ending, or
        // longer than it declared) is cut there, holding no more than the cap.
        let max = self.opts.max_bytes as u64;
        let body = read_capped(resp.content_length(), resp.bytes_stream(), max)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge { .. } => FetchError {
                    reason: FetchReason::TooLarge,
                    detail: format!("{shown}: {e}"),
                    gateway_outage: false,
                },
                BodyError::Read(e) => classify(&e, &shown),
            })?;
        Ok(Fetched {
            content_type,
            body,
            media,
        })
    }
}

/// The failure to report once every attempt failed in a passing way: the reason met most
/// often (the latest of equals), so that one blip on the last attempt does not rename the
/// failure of a token whose metadata always times out. `errors` is never empty.
fn most_frequent(errors: Vec<FetchError>) -> FetchError {
    let mut counts: HashMap<FetchReason, usize> = HashMap::new();
    for e in &errors {
        *counts.entry(e.reason).or_default() += 1;
    }
    let fallback = FetchError {
        reason: FetchReason::Connect,
        detail: "no attempt was made".into(),
        gateway_outage: false,
    };
    errors
        .into_iter()
        .enumerate()
        .max_by_key(|(i, e)| (counts.get(&e.reason).copied().unwrap_or(0), *i))
        .map_or(fallback, |(_, e)| e)
}

/// The `kind` label of a target: `ipfs`, `ipns`, `arweave` or `web`. `Data` targets are
/// never fetched, so their `data` never reaches a metric.
fn kind_of(target: &Target) -> &'static str {
    match target {
        Target::Ipfs { .. } => "ipfs",
        Target::Ipns { .. } => "ipns",
        Target::Arweave { .. } => "arweave",
        Target::Web(_) => "web",
        Target::Data { .. } => "data",
    }
}

/// Records one fetch attempt (or refusal) into [`GATEWAY_FETCH_SECONDS`]: `ok`, or the
/// failure's [`FetchReason::name`].
fn record(kind: &'static str, started: Instant, failure: Option<FetchReason>) {
    let outcome = failure.map_or_else(|| "ok".to_owned(), FetchReason::name);
    ::metrics::histogram!(GATEWAY_FETCH_SECONDS, "kind" => kind, "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
}

fn refusal(reason: FetchReason, detail: &str) -> FetchError {
    FetchError {
        reason,
        detail: detail.to_owned(),
        gateway_outage: false,
    }
}

/// Refuses an IP-literal host that is blocked and not allowed (names are the resolver's).
fn check_literal(url: &Url, allow: &Allow) -> Result<(), Refused> {
    let ip = match url.host() {
        Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
        Some(Host::Domain(d)) => {
            // `localhost` never needs a resolver to be known as loopback.
            let d = d.trim_end_matches('.');
            if (d.eq_ignore_ascii_case("localhost")
                || d.to_ascii_lowercase().ends_with(".localhost"))
                && !allow.name(d)
            {
                return Err(Refused {
                    reason: FetchReason::BlockedAddress,
                    detail: format!("{d} is loopback"),
                });
            }
            return Ok(());
        }
        None => {
            return Err(Refused {
                reason: FetchReason::InvalidUrl,
                detail: "a URL without a host".into(),
            });
        }
    };
    if is_blocked(ip) && !allow.ip(ip) {
        return Err(Refused {
            reason: FetchReason::BlockedAddress,
            detail: format!("{ip} is a private address"),
        });
    }
    Ok(())
}

/// A URL as shown in messages: scheme, host, port and path, no query (keys live there).
fn shown(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_password(None);
    let _ = u.set_username("");
    u.to_string()
}

/// Maps a reqwest error to a reason, finding a guard refusal in its chain.
fn classify(e: &reqwest::Error, shown: &str) -> FetchError {
    let mut source: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<Refused>() {
            return refusal(r.reason, &format!("{shown}: {}", r.detail));
        }
        source = s.source();
    }
    let reason = if e.is_timeout() {
        FetchReason::Timeout
    } else if e.is_redirect() {
        FetchReason::TooManyRedirects
    } else if e.is_connect() {
        FetchReason::Connect
    } else if e.is_body() || e.is_decode() {
        FetchReason::Body
    } else {
        FetchReason::Connect
    };
    // reqwest's own message repeats the full URL, query included; its causes do not.
    let mut causes = vec![];
    let mut source = e.source();
    while let Some(s) = source {
        causes.push(s.to_string());
        source = s.source();
    }
    let cause = if causes.is_empty() {
        "request failed".to_owned()
    } else {
        causes.join(": ")
    };
    FetchError {
        reason,
        detail: format!("{shown}: {cause}"),
        gateway_outage: reason == FetchReason::Connect,
    }
}
