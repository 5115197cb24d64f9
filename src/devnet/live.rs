//! The chain every service of one devnet answers from, and the index that maps content
//! addresses back to tokens.
//!
//! `/admin/mine` grows the chain while the subgraph and the gateway serve it: a request
//! takes the current [`ChainVersion`] (`Arc`s of the chain and its index), mining swaps in
//! grown ones.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use cid::Cid;

use super::chain::{ARWEAVE_SALT, Chain, MetadataSource, Mined, UriKind, digest};

/// Multicodec of sha2-256, the only hash the generator uses.
const SHA2_256: u64 = 0x12;

/// What a request sees: one version of the chain and, once a gateway has asked for it,
/// its content index.
#[derive(Clone, Debug)]
pub struct ChainVersion {
    /// The chain.
    pub chain: Arc<Chain>,
    /// The index of `chain`, if built.
    pub index: Option<Arc<ContentIndex>>,
}

/// The current chain of a devnet, shared by its services.
#[derive(Debug)]
pub struct LiveChain {
    /// The current version.
    current: RwLock<ChainVersion>,
}

impl LiveChain {
    /// A live chain starting at `chain`, without an index.
    pub fn new(chain: Chain) -> Self {
        LiveChain {
            current: RwLock::new(ChainVersion {
                chain: Arc::new(chain),
                index: None,
            }),
        }
    }

    /// The chain as of now.
    pub fn chain(&self) -> Arc<Chain> {
        Arc::clone(&self.current().chain)
    }

    /// The chain and index as of now.
    pub fn current(&self) -> ChainVersion {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Builds the content index if it is missing. CPU-bound (about 50 ms for a million
    /// tokens in a release build): call it from a blocking thread.
    pub fn ensure_index(&self) {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        if current.index.is_none() {
            current.index = Some(Arc::new(ContentIndex::build(&current.chain)));
        }
    }

    /// Mines as [`Chain::mine`] does and extends the index. CPU-bound: call it from a
    /// blocking thread.
    pub fn mine(&self, blocks: u64, tokens: usize) -> Mined {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        let ChainVersion { chain, index } = &mut *current;
        // Copies the chain only if a request still holds the old one.
        let mined = Arc::make_mut(chain).mine(blocks, tokens);
        if let Some(index) = index {
            Arc::make_mut(index).extend(chain);
        }
        mined
    }
}

/// Maps content addresses back to tokens: per-token CIDs and Arweave ids by the first 8
/// bytes of their digest (a u64 and a u32 per token that has one, not a string), contract
/// folder CIDs likewise. Every hit is confirmed against the token's own source.
#[derive(Clone, Debug, Default)]
pub struct ContentIndex {
    /// Per-token metadata CIDs (CIDv0, subdomain and bare-CID URIs) → token index.
    per_token: HashMap<u64, u32>,
    /// Arweave transaction ids → token index.
    arweave: HashMap<u64, u32>,
    /// Contract folder CIDs → contract index.
    folders: HashMap<u64, u16>,
    /// How many tokens (a prefix of [`Chain::tokens`]) are indexed.
    covered: usize,
}

/// The first 8 bytes of a digest as a key.
fn key(digest: &[u8]) -> Option<u64> {
    let head: [u8; 8] = digest.get(..8)?.try_into().ok()?;
    Some(u64::from_be_bytes(head))
}

impl ContentIndex {
    /// The index of every token of `chain`.
    pub fn build(chain: &Chain) -> Self {
        let mut index = ContentIndex::default();
        for (c, contract) in chain.contracts().iter().enumerate() {
            if let Some(k) = Cid::try_from(contract.base_cid.as_str())
                .ok()
                .and_then(|cid| key(cid.hash().digest()))
            {
                index.folders.insert(k, c as u16);
            }
        }
        index.extend(chain);
        index
    }

    /// Entries per map: per-token CIDs, Arweave ids, contract folders.
    pub fn sizes(&self) -> [usize; 3] {
        [self.per_token.len(), self.arweave.len(), self.folders.len()]
    }

    /// Indexes the tokens added since the last call.
    fn extend(&mut self, chain: &Chain) {
        let tokens = chain.tokens();
        for (i, token) in tokens.iter().enumerate().skip(self.covered) {
            let h = chain.token_hash(token);
            match chain.token_uri_kind(token) {
                UriKind::IpfsCidV0 | UriKind::SubdomainGateway | UriKind::BareCid => {
                    if let Some(k) = key(&digest(h)) {
                        self.per_token.insert(k, i as u32);
                    }
                }
                UriKind::Arweave => {
                    if let Some(k) = key(&digest(h ^ ARWEAVE_SALT)) {
                        self.arweave.insert(k, i as u32);
                    }
                }
                _ => {}
            }
        }
        self.covered = tokens.len();
    }

    /// The token whose metadata is `/ipfs/<cid>/<path>`. Any CID version or codec of the
    /// right multihash matches, as on a real gateway.
    pub fn resolve_ipfs(&self, chain: &Chain, cid: &Cid, path: &str) -> Option<usize> {
        if cid.hash().code() != SHA2_256 {
            return None;
        }
        let k = key(cid.hash().digest())?;
        let index = if let Some(&i) = self.per_token.get(&k) {
            i as usize
        } else {
            let &c = self.folders.get(&k)?;
            let contract = chain.contracts().get(usize::from(c))?;
            let id = path.strip_suffix(".json").unwrap_or(path);
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            chain.find(&format!("{}_{id}", contract.id))?
        };
        let token = chain.tokens().get(index)?;
        match chain.metadata_source(token) {
            MetadataSource::Ipfs {
                cid: want,
                path: want_path,
            } if want_path == path && same_hash(&want, cid) => Some(index),
            _ => None,
        }
    }

    /// The token whose metadata is Arweave transaction `txid`.
    pub fn resolve_arweave(&self, chain: &Chain, txid: &str) -> Option<usize> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(txid)
            .ok()?;
        let &i = self.arweave.get(&key(&bytes)?)?;
        let token = chain.tokens().get(i as usize)?;
        match chain.metadata_source(token) {
            MetadataSource::Arweave { txid: want } if want == txid => Some(i as usize),
            _ => None,
        }
    }
}

/// The token whose metadata is `/web/<path>` (`<prefix>/<contract>/<id>`).
pub fn resolve_web(chain: &Chain, path: &str) -> Option<usize> {
    let mut segments = path.rsplit('/');
    let id = segments.next()?;
    let contract = segments.next()?;
    if !id.bytes().all(|b| b.is_ascii_digit()) || !contract.starts_with("0x") {
        return None;
    }
    let index = chain.find(&format!("{contract}_{id}"))?;
    let token = chain.tokens().get(index)?;
    match chain.metadata_source(token) {
        MetadataSource::Web { path: want } if want == path => Some(index),
        _ => None,
    }
}

/// Whether CID string `a` has the same multihash as `b`.
fn same_hash(a: &str, b: &Cid) -> bool {
    Cid::try_from(a).is_ok_and(|a| a.hash() == b.hash())
}
