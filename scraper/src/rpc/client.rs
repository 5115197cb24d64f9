//! The chain node client: ethers' `Provider` over nifty's HTTP transport for the head, code
//! and logs; batched `eth_call`s (JSON-RPC batches, or Multicall3 `aggregate3` when the
//! configured address has code) and batched block reads; retries with backoff.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ethers_core::types::{Address, BlockNumber, Bytes, Filter, H256, Log, U64};
use ethers_providers::{JsonRpcError, Middleware, Provider};
use futures::StreamExt;
use futures::future::BoxFuture;
use nifty_upstream::Secrets;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use tracing::{debug, warn};

use super::abi;
use super::transport::{
    BatchItem, HttpTransport, RpcFault, TOO_LARGE_CODE, fault_of, is_too_large, is_transient_rpc,
};
use crate::error::{Result, ScrapeError};
use crate::graph::client::ClientStats;
use crate::lane::Snapshot;
use crate::retry::Backoff;

/// Where and how to reach a chain node, and how hard to use it.
#[derive(Clone)]
pub struct ChainClientConfig {
    /// The JSON-RPC endpoint. Providers put API keys in its path; it is never printed whole.
    pub url: String,
    /// Bearer API key, when the node wants one.
    pub api_key: Option<SecretString>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Retry policy for passing failures.
    pub backoff: Backoff,
    /// Only mints of these contracts; empty for every contract.
    pub contracts: Vec<nifty_state::Address>,
    /// `eth_call`s (and block reads) per batch; 1 sends each on its own.
    pub batch_size: usize,
    /// Multicall3's address: calls go through `aggregate3` when it has code there.
    pub multicall: Option<nifty_state::Address>,
    /// Blocks of the first log query of a lane.
    pub start_span: u64,
    /// The largest span a log query grows to.
    pub max_span: u64,
    /// Batches (or single calls) in flight at once.
    pub concurrency: usize,
    /// How many recent blocks the reorg check remembers and compares.
    pub reorg_depth: u64,
    /// Every configured secret, scrubbed from any text of the node kept (this client adds
    /// its own key and URL parts).
    pub secrets: Secrets,
    /// The bound on one answer, in bytes.
    pub max_body_bytes: u64,
}

impl std::fmt::Debug for ChainClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainClientConfig")
            .field("url", &redact_rpc_url(&self.url))
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

/// A node URL as safe to print: scheme, host and port; the path (where providers put
/// keys), user info and query are masked.
pub fn redact_rpc_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("?");
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            let path = if u.path().len() > 1 || u.query().is_some() {
                "/<redacted>"
            } else {
                ""
            };
            format!("{}://{host}{port}{path}", u.scheme())
        }
        Err(_) => "<unparseable URL>".to_owned(),
    }
}

/// What an `eth_call` gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallResult {
    /// The returned bytes.
    Ok(Vec<u8>),
    /// The call reverted (or hit an invalid opcode).
    Reverted,
    /// The node could not run the call to the end for another reason (out of gas, a
    /// broken contract): its words, kept as the token's reason.
    Failed(String),
    /// The call's own answer was over the source's `max_body_mb`, so it was not read.
    TooLarge,
}

/// A block's hash and timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockInfo {
    /// The block hash.
    pub hash: H256,
    /// Seconds since the epoch.
    pub timestamp: u64,
}

struct Inner {
    provider: Provider<HttpTransport>,
    shown: String,
    cfg: ChainClientConfig,
    stats: Arc<ClientStats>,
    /// Log queries refused as too large.
    shrinks: AtomicU64,
    /// Whether Multicall3 has code at the configured address (asked once).
    multicall_live: OnceCell<bool>,
}

/// A chain node client. Cheap to clone: clones share the connection pool and counters.
#[derive(Clone)]
pub struct ChainClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ChainClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainClient")
            .field("endpoint", &self.inner.shown)
            .finish_non_exhaustive()
    }
}

/// The error of one request whose answer was over the bound.
fn too_large_item(why: String) -> JsonRpcError {
    JsonRpcError {
        code: TOO_LARGE_CODE,
        message: why,
        data: None,
    }
}

/// True when a node's error for a call says it reverted.
fn is_revert(e: &JsonRpcError) -> bool {
    let m = e.message.to_ascii_lowercase();
    // -32015: Nethermind and OpenEthereum's "VM execution error", the revert in `data`.
    e.code == 3 || e.code == -32015 || m.contains("revert") || m.contains("invalid opcode")
}

impl ChainClient {
    /// Builds a client; fails on a URL that is not http(s) or an API key that cannot be a
    /// header (neither is echoed back).
    pub fn new(cfg: ChainClientConfig) -> Result<Self> {
        let url = crate::http::endpoint(&cfg.url, "node")?;
        let auth = crate::http::bearer(cfg.api_key.as_ref())?;
        let http = crate::http::client(cfg.timeout)?;
        // Providers put keys anywhere in the path: every segment that could be one.
        let mut own: Vec<String> = url
            .path_segments()
            .into_iter()
            .flatten()
            .filter(|s| s.len() >= 4)
            .map(str::to_owned)
            .collect();
        own.extend(nifty_upstream::url_secrets(url.as_str(), true));
        own.extend(cfg.api_key.iter().map(|k| k.expose_secret().to_owned()));
        let secrets = cfg.secrets.with(own);
        let stats: Arc<ClientStats> = Arc::default();
        let shown = redact_rpc_url(url.as_str());
        let transport = HttpTransport::new(
            http,
            url,
            auth,
            secrets,
            cfg.max_body_bytes.max(1),
            Arc::clone(&stats),
        );
        Ok(ChainClient {
            inner: Arc::new(Inner {
                provider: Provider::new(transport),
                shown,
                cfg,
                stats,
                shrinks: AtomicU64::new(0),
                multicall_live: OnceCell::new(),
            }),
        })
    }

    /// The endpoint, safe to print.
    pub fn endpoint(&self) -> &str {
        &self.inner.shown
    }

    /// Traffic counters.
    pub fn stats(&self) -> &ClientStats {
        &self.inner.stats
    }

    /// Log queries refused as too large so far.
    pub fn shrinks(&self) -> u64 {
        self.inner.shrinks.load(Ordering::Relaxed)
    }

    pub(crate) fn note_shrink(&self) {
        self.inner.shrinks.fetch_add(1, Ordering::Relaxed);
    }

    /// The configuration.
    pub fn config(&self) -> &ChainClientConfig {
        &self.inner.cfg
    }

    fn transport(&self) -> &HttpTransport {
        self.inner.provider.as_ref()
    }

    /// The wait before retry `attempt`, counted as a retry.
    pub(crate) async fn back_off(&self, attempt: u32, fault: &RpcFault) {
        self.inner.stats.retries.fetch_add(1, Ordering::Relaxed);
        let jitter = rand::thread_rng().r#gen::<f64>();
        let d = self
            .inner
            .cfg
            .backoff
            .delay(attempt, jitter, fault.retry_after());
        tokio::time::sleep(d).await;
    }

    /// Runs `op` until it succeeds, fails for good, or the attempts run out.
    async fn retrying<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, RpcFault>>,
    {
        let max = self.inner.cfg.backoff.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match op().await {
                Ok(v) => return Ok(v),
                Err(f) if f.is_retryable() && attempt < max => {
                    debug!(what, attempt, error = %f, "node request failed; retrying");
                    self.back_off(attempt, &f).await;
                }
                Err(f) if f.is_retryable() => {
                    return Err(ScrapeError::GaveUp {
                        what: what.to_owned(),
                        attempts: attempt,
                        last: Box::new(ScrapeError::Rpc(f)),
                    });
                }
                Err(f) => return Err(ScrapeError::Rpc(f)),
            }
        }
    }

    /// The node's head and the snapshot block `confirmations` behind it.
    pub async fn snapshot(&self, confirmations: u64) -> Result<Snapshot> {
        let p = &self.inner.provider;
        let head = self
            .retrying("eth_blockNumber", || async {
                p.get_block_number().await.map_err(fault_of)
            })
            .await?
            .as_u64();
        Ok(Snapshot {
            head,
            block: head.saturating_sub(confirmations),
        })
    }

    /// One `eth_getLogs` for mints (`Transfer` from the zero address) in `[from, to]`, of
    /// the allowed contracts. One attempt: the lane decides what a failure means.
    pub async fn mint_logs(&self, from: u64, to: u64) -> std::result::Result<Vec<Log>, RpcFault> {
        let mut filter = Filter::new()
            .from_block(from)
            .to_block(to)
            .topic0(abi::transfer_topic())
            .topic1(H256::zero());
        if !self.inner.cfg.contracts.is_empty() {
            let allowed: Vec<Address> = self
                .inner
                .cfg
                .contracts
                .iter()
                .map(|a| Address::from(a.0))
                .collect();
            filter = filter.address(allowed);
        }
        self.inner
            .provider
            .get_logs(&filter)
            .await
            .map_err(fault_of)
    }

    /// Hashes and timestamps of `blocks`, read in batches. A block the node does not have
    /// (beyond its head after a reorg) is absent from the answer.
    pub async fn blocks(&self, blocks: &[u64]) -> Result<BTreeMap<u64, BlockInfo>> {
        let params: Vec<Value> = blocks
            .iter()
            .map(|b| json!([format!("{:#x}", U64::from(*b)), false]))
            .collect();
        let answers = self
            .batched("eth_getBlockByNumber", params, "block headers")
            .await?;
        let mut out = BTreeMap::new();
        for (b, a) in blocks.iter().zip(answers) {
            let v = match a {
                Ok(v) => v,
                Err(e) => {
                    return Err(ScrapeError::Rpc(RpcFault::Rpc(e)));
                }
            };
            if v.is_null() {
                continue;
            }
            let field = |name: &str| v.get(name).and_then(Value::as_str).map(str::to_owned);
            let hash = field("hash")
                .and_then(|h| h.parse::<H256>().ok())
                .ok_or_else(|| bad_block(*b, "hash"))?;
            let timestamp = field("timestamp")
                .and_then(|t| u64::from_str_radix(t.trim_start_matches("0x"), 16).ok())
                .ok_or_else(|| bad_block(*b, "timestamp"))?;
            let number = field("number")
                .and_then(|t| u64::from_str_radix(t.trim_start_matches("0x"), 16).ok());
            if number != Some(*b) {
                return Err(bad_block(*b, "number"));
            }
            out.insert(*b, BlockInfo { hash, timestamp });
        }
        Ok(out)
    }

    /// Sends one method's requests in batches of `batch_size` (or one by one when it is 1),
    /// `concurrency` at a time. A whole batch that fails in a passing way is sent again, and
    /// so is each element whose own error is transient; other element errors are returned
    /// in place for the caller to judge.
    async fn batched(
        &self,
        method: &'static str,
        params: Vec<Value>,
        what: &str,
    ) -> Result<Vec<BatchItem>> {
        let size = self.inner.cfg.batch_size.max(1);
        let n = params.len();
        let mut out: Vec<Option<BatchItem>> = vec![None; n];
        let mut todo: Vec<usize> = (0..n).collect();
        let max = self.inner.cfg.backoff.max_attempts.max(1);
        let mut attempt = 0;
        while !todo.is_empty() {
            attempt += 1;
            let chunks: Vec<Vec<usize>> = todo.chunks(size).map(<[usize]>::to_vec).collect();
            let results = futures::stream::iter(chunks.into_iter().map(|idx| {
                let ps: Vec<Value> = idx.iter().map(|i| params[*i].clone()).collect();
                async move {
                    let r = if size == 1 {
                        self.one_by_one(method, ps).await
                    } else {
                        self.batch_or_split(method, ps).await
                    };
                    (idx, r)
                }
            }))
            .buffer_unordered(self.inner.cfg.concurrency.max(1))
            .collect::<Vec<_>>()
            .await;
            let mut again = vec![];
            let mut last: Option<RpcFault> = None;
            for (idx, r) in results {
                match r {
                    Ok(items) => {
                        for (i, item) in idx.into_iter().zip(items) {
                            match item {
                                Err(e) if is_transient_rpc(&e) => {
                                    again.push(i);
                                    last = Some(RpcFault::Rpc(e));
                                }
                                other => out[i] = Some(other),
                            }
                        }
                    }
                    Err(f) if f.is_retryable() => {
                        again.extend(idx);
                        last = Some(f);
                    }
                    Err(f) => return Err(ScrapeError::Rpc(f)),
                }
            }
            if again.is_empty() {
                break;
            }
            let fault = last.unwrap_or(RpcFault::Decode("retry".into()));
            if attempt >= max {
                return Err(ScrapeError::GaveUp {
                    what: format!("{what} ({} requests)", again.len()),
                    attempts: attempt,
                    last: Box::new(ScrapeError::Rpc(fault)),
                });
            }
            debug!(what, attempt, left = again.len(), error = %fault, "batch retry");
            self.back_off(attempt, &fault).await;
            again.sort_unstable();
            todo = again;
        }
        Ok(out
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    Err(JsonRpcError {
                        code: -32603,
                        message: "no answer".into(),
                        data: None,
                    })
                })
            })
            .collect())
    }

    /// One JSON-RPC batch of `params`. A node that refuses batches answers with one error:
    /// the requests are asked one by one instead (a rate limit is only a rate limit, waited
    /// out like any passing failure). A batch whose answer is over the bound is split in
    /// two, down to single requests, whose own over-size answer becomes their error
    /// ([`TOO_LARGE_CODE`]) for the caller to record.
    fn batch_or_split<'a>(
        &'a self,
        method: &'static str,
        params: Vec<Value>,
    ) -> BoxFuture<'a, std::result::Result<Vec<BatchItem>, RpcFault>> {
        Box::pin(async move {
            match self.transport().batch(method, params.clone()).await {
                Err(RpcFault::Rpc(e)) if !is_transient_rpc(&e) => {
                    debug!(code = e.code, message = %e.message, "batch refused");
                    self.one_by_one(method, params).await
                }
                Err(RpcFault::TooLarge(why)) if params.len() > 1 => {
                    debug!(requests = params.len(), why = %why, "batch answer too large; splitting");
                    let mut params = params;
                    let second = params.split_off(params.len() / 2);
                    let mut out = self.batch_or_split(method, params).await?;
                    out.extend(self.batch_or_split(method, second).await?);
                    Ok(out)
                }
                Err(RpcFault::TooLarge(why)) => Ok(vec![Err(too_large_item(why))]),
                other => other,
            }
        })
    }

    /// Each request on its own, in order; a request's own JSON-RPC error (or an answer
    /// over the bound) is its answer.
    async fn one_by_one(
        &self,
        method: &'static str,
        params: Vec<Value>,
    ) -> std::result::Result<Vec<BatchItem>, RpcFault> {
        let mut out = Vec::with_capacity(params.len());
        for p in params {
            match self.transport().call(method, p).await {
                Ok(v) => out.push(Ok(v)),
                Err(RpcFault::Rpc(e)) => out.push(Err(e)),
                Err(RpcFault::TooLarge(why)) => out.push(Err(too_large_item(why))),
                Err(f) => return Err(f),
            }
        }
        Ok(out)
    }

    /// Whether calls go through Multicall3 (asked of the node once).
    async fn multicall(&self) -> Result<Option<Address>> {
        let Some(addr) = self.inner.cfg.multicall.map(|a| Address::from(a.0)) else {
            return Ok(None);
        };
        let p = &self.inner.provider;
        let live = self
            .inner
            .multicall_live
            .get_or_try_init(|| async {
                let code: Bytes = self
                    .retrying("eth_getCode", || async {
                        p.get_code(addr, Some(BlockNumber::Latest.into()))
                            .await
                            .map_err(fault_of)
                    })
                    .await?;
                if code.is_empty() {
                    debug!(address = ?addr, "no Multicall3 code; using JSON-RPC batches");
                }
                Ok::<bool, ScrapeError>(!code.is_empty())
            })
            .await?;
        Ok(live.then_some(addr))
    }

    /// Makes `calls` at the latest block and returns each one's result in order. Through
    /// Multicall3 when it is there (`batch_size` calls per `aggregate3`), else as JSON-RPC
    /// batches. Reverts are results, not errors.
    ///
    /// Calls ask the latest state rather than the mint block's: a token's URI is what it is
    /// now, and nodes that keep no old state (most) can answer.
    pub async fn calls(&self, calls: &[(Address, Vec<u8>)]) -> Result<Vec<CallResult>> {
        if calls.is_empty() {
            return Ok(vec![]);
        }
        if let Some(mc) = self.multicall().await? {
            let size = self.inner.cfg.batch_size.max(1);
            let chunks: Vec<&[(Address, Vec<u8>)]> = calls.chunks(size).collect();
            let params: Vec<Value> = chunks
                .iter()
                .map(|c| json!([{"to": mc, "data": Bytes::from(abi::aggregate3(c))}, "latest"]))
                .collect();
            // One aggregate3 per request: each is already a batch of calls.
            let answers = self
                .batched_single("eth_call", params, "aggregate3 calls")
                .await?;
            let mut out = Vec::with_capacity(calls.len());
            let mut failed = vec![];
            for (chunk, a) in chunks.iter().zip(answers) {
                let decoded = match a {
                    Ok(v) => hex_bytes(&v)
                        .ok_or_else(|| "not hex".to_owned())
                        .and_then(|b| abi::decode_aggregate3(&b, chunk.len())),
                    Err(e) => Err(format!("{}: {}", e.code, e.message)),
                };
                match decoded {
                    Ok(results) => {
                        for (ok, data) in results {
                            if !ok {
                                failed.push(out.len());
                            }
                            out.push(CallResult::Ok(data));
                        }
                    }
                    Err(why) => {
                        // aggregate3 itself failed (gas, a node limit): ask these calls
                        // plainly instead.
                        warn!(calls = chunk.len(), why = %why, "aggregate3 failed; calling one by one in a batch");
                        out.extend(self.plain_calls(chunk).await?);
                    }
                }
            }
            // A sub-call that failed may have been starved of gas by the others in its
            // aggregate3: each is asked again on its own before it counts as reverted.
            if !failed.is_empty() {
                let again: Vec<(Address, Vec<u8>)> =
                    failed.iter().map(|i| calls[*i].clone()).collect();
                for (i, r) in failed.into_iter().zip(self.plain_calls(&again).await?) {
                    out[i] = r;
                }
            }
            return Ok(out);
        }
        self.plain_calls(calls).await
    }

    /// `batched` with one request per batch: for requests that are batches already.
    async fn batched_single(
        &self,
        method: &'static str,
        params: Vec<Value>,
        what: &str,
    ) -> Result<Vec<BatchItem>> {
        let mut answers = Vec::with_capacity(params.len());
        let stream = futures::stream::iter(params.into_iter().map(|p| async move {
            self.retrying(what, || {
                let p = p.clone();
                async move {
                    match self.transport().call(method, p).await {
                        Ok(v) => Ok(Ok(v)),
                        Err(RpcFault::Rpc(e)) if !is_transient_rpc(&e) => Ok(Err(e)),
                        // An aggregate3 answer over the bound: its calls are asked again
                        // plainly, in smaller batches.
                        Err(RpcFault::TooLarge(why)) => Ok(Err(too_large_item(why))),
                        Err(f) => Err(f),
                    }
                }
            })
            .await
        }))
        .buffered(self.inner.cfg.concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
        for r in stream {
            answers.push(r?);
        }
        Ok(answers)
    }

    async fn plain_calls(&self, calls: &[(Address, Vec<u8>)]) -> Result<Vec<CallResult>> {
        let params: Vec<Value> = calls
            .iter()
            .map(|(to, data)| json!([{"to": to, "data": Bytes::from(data.clone())}, "latest"]))
            .collect();
        let answers = self.batched("eth_call", params, "eth_call").await?;
        answers
            .into_iter()
            .map(|a| match a {
                Ok(v) => hex_bytes(&v).map(CallResult::Ok).ok_or_else(|| {
                    ScrapeError::Rpc(RpcFault::Decode("eth_call answer is not hex".into()))
                }),
                Err(e) if is_revert(&e) => Ok(CallResult::Reverted),
                Err(e) if is_too_large(&e) => Ok(CallResult::TooLarge),
                // Out of gas, a bad jump: the node ran the call and it failed. The token
                // records why; the range goes on.
                Err(e) => Ok(CallResult::Failed(e.message)),
            })
            .collect()
    }
}

fn bad_block(b: u64, field: &str) -> ScrapeError {
    ScrapeError::Rpc(RpcFault::Decode(format!(
        "block {b}: missing or malformed {field}"
    )))
}

/// `"0x…"` as bytes.
fn hex_bytes(v: &Value) -> Option<Vec<u8>> {
    let s = v.as_str()?;
    let digits = s.strip_prefix("0x")?;
    if digits.len() % 2 != 0 || !digits.is_ascii() {
        return None;
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn node_urls_are_shown_without_their_keys() {
        let cases = [
            (
                "https://eth-mainnet.g.alchemy.com/v2/SECRETKEY",
                "https://eth-mainnet.g.alchemy.com/<redacted>",
            ),
            ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
            ("http://127.0.0.1:8545/", "http://127.0.0.1:8545"),
            (
                "https://user:pw@node.example/?key=abc",
                "https://node.example/<redacted>",
            ),
            ("not a url", "<unparseable URL>"),
        ];
        for (url, want) in cases {
            assert_eq!(redact_rpc_url(url), want);
        }
    }

    #[test]
    fn reverts_are_told_by_code_or_words() {
        let e = |code, m: &str| JsonRpcError {
            code,
            message: m.into(),
            data: None,
        };
        assert!(is_revert(&e(3, "execution reverted: uri withheld")));
        assert!(is_revert(&e(-32000, "execution reverted")));
        assert!(is_revert(&e(-32015, "VM execution error: invalid opcode")));
        assert!(is_revert(&e(-32015, "VM execution error.")));
        assert!(!is_revert(&e(
            -32000,
            "err: out of gas (supplied gas 50000000)"
        )));
        assert!(!is_revert(&e(-32603, "internal error")));
    }

    #[test]
    fn hex_answers_decode() {
        assert_eq!(hex_bytes(&json!("0x")), Some(vec![]));
        assert_eq!(hex_bytes(&json!("0x01ff")), Some(vec![1, 255]));
        assert_eq!(hex_bytes(&json!("0x1")), None);
        assert_eq!(hex_bytes(&json!("01")), None);
        assert_eq!(hex_bytes(&json!(1)), None);
        assert_eq!(hex_bytes(&json!("0x1é1")), None);
    }
}
