//! The devnet's chain: a deterministic, generated history of ERC-721 mints and burns.
//!
//! Everything here is a pure function of [`ChainParams`] (and, for [`Chain::mine`], of the
//! chain it grows), so tests can generate the same chain in-process and compare what nifty
//! stored against it.

use std::collections::{BTreeSet, HashSet};

use base64::Engine as _;
use cid::Cid;
use multihash::Multihash;
use nifty_state::{Address, TokenId, TokenKey};
use primitive_types::U256;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// The first block that can hold a mint; earlier blocks exist but are empty, which leaves
/// room below the data for `--prune-before` tests.
pub const FIRST_MINT_BLOCK: u64 = 1_000;
/// Timestamp of block 0 (September 2020, when ERC-721 subgraphs were young).
pub const GENESIS_TIMESTAMP: u64 = 1_600_000_000;
/// Seconds between blocks, as on mainnet after the merge.
pub const BLOCK_TIME_SECS: u64 = 12;
/// Chains with at least this many tokens get busy blocks (drops) of more than 2,500
/// mints, so that pages of 1,000 must page within a block by id.
pub const BUSY_CHAIN_TOKENS: usize = 20_000;
/// Smallest busy block: one more than 2.5 pages of 1,000.
const BUSY_BLOCK_MIN: usize = 2_501;
/// Largest busy block.
const BUSY_BLOCK_MAX: usize = 4_000;
/// Busy blocks take at most this share of all mints, so the growth curve stays visible.
const BUSY_SHARE_MAX: f64 = 0.5;
/// Busy blocks in a chain of [`BUSY_CHAIN_TOKENS`]: enough that paging within a block
/// happens several times per run.
const BUSY_BLOCKS_MIN: usize = 3;
/// One more busy block per this many tokens.
const TOKENS_PER_EXTRA_BUSY_BLOCK: usize = 250_000;
/// At most this many busy blocks.
const BUSY_BLOCKS_MAX: usize = 8;
/// Mean mints per block at the start: most early blocks have none or one.
const START_RATE: f64 = 0.3;
/// The final mean mints per block is sqrt(regular mints) / this: about 250 for a million.
const PEAK_RATE_DIVISOR: f64 = 4.0;
/// Smallest final mean mints per block, so small chains still grow.
const PEAK_RATE_MIN: f64 = 2.0;
/// One more contract per this many tokens (dozens for realistic sizes).
const TOKENS_PER_EXTRA_CONTRACT: usize = 2_000;
/// Fewest contracts: enough for every URI kind, id scheme and naming style.
const CONTRACTS_MIN: usize = 16;
/// Most contracts: token counts index contracts with a u16, and dozens suffice.
const CONTRACTS_MAX: usize = 64;
/// Tokens per owner on average (whales hold many more, most hold a few).
const TOKENS_PER_OWNER: usize = 8;
/// Fewest owners.
const OWNERS_MIN: usize = 16;
/// Most owners.
const OWNERS_MAX: usize = 200_000;
/// Share of tokens burned at a later block.
const BURN_RATE: f64 = 0.01;
/// Length of `0x` + 40 hex digits + `_`: where the decimal token id starts in a graph id.
const GRAPH_ID_PREFIX_LEN: usize = 43;

/// What to generate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainParams {
    /// How many tokens to mint.
    pub tokens: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Empty blocks between the last mint and the head.
    pub head_tail: u64,
    /// Base URL that plain web token URIs name (`nifty devnet` sets its own gateway's
    /// `http://127.0.0.1:P/web`, so tests fetch only from loopback); `None` names example
    /// hosts, for tests that never fetch.
    pub web_base: Option<String>,
}

impl Default for ChainParams {
    fn default() -> Self {
        ChainParams {
            tokens: 10_000,
            seed: 1,
            head_tail: 30,
            web_base: None,
        }
    }
}

/// The kinds of token URI found in the wild, each of which the pinner must classify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UriKind {
    /// `ipfs://<cidv1>/<n>.json`.
    IpfsPath,
    /// `ipfs://<cidv0>`.
    IpfsCidV0,
    /// `ipfs://ipfs/<cid>/<n>.json` (a common mistake that gateways tolerate).
    IpfsDoubled,
    /// `https://<gateway>/ipfs/<cid>/<n>`.
    PathGateway,
    /// `https://<cidv1>.ipfs.<gateway>/meta.json`.
    SubdomainGateway,
    /// A CIDv0 or CIDv1 with no scheme.
    BareCid,
    /// `data:application/json;base64,...`.
    DataBase64,
    /// `data:application/json,%7B...` (percent-encoded JSON).
    DataPercent,
    /// `ar://<43 base64url chars>`.
    Arweave,
    /// A plain `https://` URL of a metadata server, or `<web_base>/<prefix>/<contract>/<id>`
    /// when [`ChainParams::web_base`] is set.
    Https,
    /// The empty string (no URI, or `tokenURI` reverted).
    Empty,
    /// Broken: `ipfs://notacid`, `htp:/broken` and similar.
    Malformed,
}

impl UriKind {
    /// Every kind, in declaration order.
    pub const ALL: [UriKind; 12] = [
        UriKind::IpfsPath,
        UriKind::IpfsCidV0,
        UriKind::IpfsDoubled,
        UriKind::PathGateway,
        UriKind::SubdomainGateway,
        UriKind::BareCid,
        UriKind::DataBase64,
        UriKind::DataPercent,
        UriKind::Arweave,
        UriKind::Https,
        UriKind::Empty,
        UriKind::Malformed,
    ];
}

/// How a contract's token URIs are built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UriStyle {
    /// Every token's URI is of this kind.
    Fixed(UriKind),
    /// Each token picks a kind of its own (a contract whose owner set URIs one by one).
    Mixed,
}

/// How a contract numbers its tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdScheme {
    /// `start`, `start + 1`, ... (the common enumerable collection).
    Counter {
        /// The first id.
        start: u64,
    },
    /// Uniform over all of uint256 (hash-derived ids, as ENS-like contracts use).
    Random,
    /// `edition << 128 | serial` (packed multi-edition ids).
    Packed,
    /// 0, 1, 2, 2^256-1, 2^256-2, then small and huge ids alternating: the edge cases.
    Showcase,
}

/// An ERC-721 contract of the chain.
#[derive(Clone, Debug)]
pub struct ContractInfo {
    /// Its address.
    pub address: Address,
    /// Its subgraph id: the lowercase 0x address.
    pub id: String,
    /// `name()`, when the contract has one.
    pub name: Option<String>,
    /// `symbol()`, when the contract has one.
    pub symbol: Option<String>,
    /// Whether it answers `supportsInterface(0x5b5e139f)` with true.
    pub supports_metadata: bool,
    /// How its token URIs look.
    pub uri_style: UriStyle,
    /// How it numbers its tokens.
    pub id_scheme: IdScheme,
    /// The CIDv1 of its metadata folder, used by folder-style URIs.
    pub base_cid: String,
    /// Block of its first mint, if it has minted.
    pub first_block: Option<u64>,
    /// Position of its launch in the chain's history, 0 (genesis) to 1 (the end).
    launch: f64,
    /// Relative share of mints while it is live.
    weight: u32,
    /// Mints so far; drives [`IdScheme::Counter`] and [`IdScheme::Showcase`].
    minted: u64,
}

/// An owner address and the tokens it ever received.
#[derive(Clone, Debug)]
pub struct OwnerInfo {
    /// Its address ([`Address::ZERO`] for index 0, the owner of burned tokens).
    pub address: Address,
    /// Its subgraph id: the lowercase 0x address.
    pub id: String,
    /// Indexes into [`Chain::tokens`] of the tokens it was ever given, ascending.
    pub tokens: Vec<u32>,
    /// Block of the first token it received, if any.
    pub first_block: Option<u64>,
}

/// One minted token.
#[derive(Clone, Debug)]
pub struct MintedToken {
    /// Contract and token id.
    pub key: TokenKey,
    /// `<contract>_<decimal id>`, the subgraph's id.
    pub graph_id: Box<str>,
    /// Block of the mint.
    pub block: u64,
    /// Index into [`Chain::contracts`].
    pub contract: u16,
    /// Index into [`Chain::owners`] of the owner it was minted to.
    pub owner: u32,
    /// Block at which it was burned, if it was.
    pub burned_at: Option<u64>,
}

impl MintedToken {
    /// The token id in decimal, as the subgraph's `tokenID` sends it.
    pub fn token_id_decimal(&self) -> &str {
        self.graph_id.get(GRAPH_ID_PREFIX_LEN..).unwrap_or_default()
    }

    /// Index into [`Chain::owners`] of its owner as of `block` (0, the zero address, once
    /// burned).
    pub fn owner_at(&self, block: u64) -> u32 {
        match self.burned_at {
            Some(b) if b <= block => 0,
            _ => self.owner,
        }
    }

    /// Whether it exists as of `block`.
    pub fn minted_by(&self, block: u64) -> bool {
        self.block <= block
    }
}

/// What [`Chain::mine`] added.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Mined {
    /// The new head block.
    pub head: u64,
    /// Graph ids of the new tokens, in (blockNumber, id) order.
    pub ids: Vec<String>,
}

/// A generated chain with the indexes the devnet answers from.
#[derive(Clone, Debug)]
pub struct Chain {
    /// Seed of every random choice.
    seed: u64,
    /// The contracts, in generation order (not address order).
    contracts: Vec<ContractInfo>,
    /// The owners, sorted by address; index 0 is the zero address.
    owners: Vec<OwnerInfo>,
    /// Every token, sorted by (block, graph id bytes).
    tokens: Vec<MintedToken>,
    /// Indexes into `tokens`, sorted by graph id bytes.
    by_id: Vec<u32>,
    /// The newest block.
    head: u64,
    /// Base URL of web token URIs; see [`ChainParams::web_base`].
    web_base: Option<Box<str>>,
}

/// Where a token's metadata lives, as the generator meant it (not as a parser would read
/// its URI): what the devnet's gateway serves and what the truth is computed from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetadataSource {
    /// No URI, or one no client can resolve.
    Nowhere,
    /// Inline in a `data:` URI.
    Inline,
    /// On IPFS: the root CID as the URI writes it, and the path below it (empty for none).
    Ipfs {
        /// The root CID, in canonical string form.
        cid: String,
        /// The path below the root, without a leading slash.
        path: String,
    },
    /// On Arweave, under this transaction id.
    Arweave {
        /// 43 base64url characters.
        txid: String,
    },
    /// On a web server, under this path of the devnet's `/web/` tree.
    Web {
        /// `<prefix>/<contract>/<id>`, without a leading slash.
        path: String,
    },
}

/// Generates the chain of `params`: a pure function of them.
pub fn generate(params: &ChainParams) -> Chain {
    let mut rng = StdRng::seed_from_u64(params.seed);
    let mut contracts = make_contracts(params.tokens, &mut rng);
    let mut owners = make_owners(params.tokens, &mut rng);
    let schedule = make_schedule(params.tokens, &mut rng);
    let total_blocks = schedule.len().max(1) as f64;

    let mut tokens: Vec<MintedToken> = Vec::with_capacity(params.tokens);
    let mut weights: Vec<(u16, u64)> = Vec::with_capacity(contracts.len());
    for (pos, slot) in schedule.iter().enumerate() {
        let block = FIRST_MINT_BLOCK + pos as u64;
        let progress = pos as f64 / total_blocks;
        live_weights(&contracts, progress, &mut weights);
        // A drop: one contract mints the whole block.
        let drop = slot.busy.then(|| pick_weighted(&weights, &mut rng));
        let start = tokens.len();
        for _ in 0..slot.mints {
            let c = drop.unwrap_or_else(|| pick_weighted(&weights, &mut rng));
            // Unique by construction: every scheme numbers a contract's mints with a serial
            // except `Random`, whose 256-bit draws collide with probability ~2^-200.
            let id = next_id(&mut contracts[usize::from(c)], &mut rng);
            let owner = pick_owner(owners.len(), &mut rng);
            tokens.push(new_token(&contracts, c, id, block, owner));
        }
        tokens[start..].sort_unstable_by(|a, b| a.graph_id.cmp(&b.graph_id));
    }

    let last_mint = tokens.last().map_or(FIRST_MINT_BLOCK, |t| t.block);
    let head = last_mint + params.head_tail;
    let burn_until = last_mint + params.head_tail / 2;
    for t in &mut tokens {
        if rng.gen_bool(BURN_RATE) && t.block < burn_until {
            t.burned_at = Some(rng.gen_range(t.block + 1..=burn_until));
        }
    }

    index_owners(&mut owners, &tokens);
    for t in &tokens {
        let c = &mut contracts[usize::from(t.contract)];
        c.first_block.get_or_insert(t.block);
    }
    let mut by_id: Vec<u32> = (0..tokens.len() as u32).collect();
    by_id.sort_unstable_by(|&a, &b| {
        tokens[a as usize]
            .graph_id
            .cmp(&tokens[b as usize].graph_id)
    });
    Chain {
        seed: params.seed,
        contracts,
        owners,
        tokens,
        by_id,
        head,
        web_base: params.web_base.as_deref().map(Box::from),
    }
}

impl Chain {
    /// The newest block.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// Every token, sorted by (blockNumber, graph id bytes): the order nifty's cursor walks.
    pub fn tokens(&self) -> &[MintedToken] {
        &self.tokens
    }

    /// The tokens that exist as of `block`: a prefix of [`Chain::tokens`].
    pub fn tokens_at(&self, block: u64) -> &[MintedToken] {
        &self.tokens[..self.count_at(block)]
    }

    /// The set of graph ids a query at snapshot `block` can see.
    pub fn ids_at(&self, block: u64) -> BTreeSet<&str> {
        self.tokens_at(block).iter().map(|t| &*t.graph_id).collect()
    }

    /// How many tokens exist as of `block`.
    pub fn count_at(&self, block: u64) -> usize {
        self.tokens.partition_point(|t| t.block <= block)
    }

    /// Indexes into [`Chain::tokens`], sorted by graph id bytes.
    pub fn by_id(&self) -> &[u32] {
        &self.by_id
    }

    /// The contracts, in generation order.
    pub fn contracts(&self) -> &[ContractInfo] {
        &self.contracts
    }

    /// The owners, sorted by address; index 0 is the zero address.
    pub fn owners(&self) -> &[OwnerInfo] {
        &self.owners
    }

    /// The token with this graph id, as an index into [`Chain::tokens`].
    pub fn find(&self, graph_id: &str) -> Option<usize> {
        self.by_id
            .binary_search_by(|&i| (*self.tokens[i as usize].graph_id).cmp(graph_id))
            .ok()
            .map(|p| self.by_id[p] as usize)
    }

    /// The owner with this address (lowercase 0x hex), as an index into [`Chain::owners`].
    pub fn find_owner(&self, id: &str) -> Option<usize> {
        self.owners.binary_search_by(|o| o.id.as_str().cmp(id)).ok()
    }

    /// The contract with this address (lowercase 0x hex), as an index into
    /// [`Chain::contracts`].
    pub fn find_contract(&self, id: &str) -> Option<usize> {
        self.contracts.iter().position(|c| c.id == id)
    }

    /// Hash of block `number`: a pure function of the seed and the number.
    pub fn block_hash(&self, number: u64) -> [u8; 32] {
        let mut out = [0u8; 32];
        let mut state = mix(self.seed ^ 0xb10c_4a54, number);
        for chunk in out.chunks_mut(8) {
            state = splitmix(state);
            chunk.copy_from_slice(&state.to_be_bytes());
        }
        out
    }

    /// The block with this hash, at or below the head.
    pub fn block_by_hash(&self, hash: &[u8]) -> Option<u64> {
        (0..=self.head).rev().find(|&n| self.block_hash(n) == hash)
    }

    /// Timestamp of block `number`.
    pub fn block_timestamp(&self, number: u64) -> u64 {
        GENESIS_TIMESTAMP + number * BLOCK_TIME_SECS
    }

    /// What kind of URI `token` has.
    pub fn token_uri_kind(&self, token: &MintedToken) -> UriKind {
        match self.contracts[usize::from(token.contract)].uri_style {
            UriStyle::Fixed(kind) => kind,
            UriStyle::Mixed => {
                let pick = token_hash(self.seed, token) % UriKind::ALL.len() as u64;
                UriKind::ALL[pick as usize]
            }
        }
    }

    /// The seed of every random choice.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Base URL of web token URIs, when the chain names the devnet's gateway.
    pub fn web_base(&self) -> Option<&str> {
        self.web_base.as_deref()
    }

    /// The token's stable hash: every per-token choice (URI form, CIDs, metadata variant)
    /// derives from it.
    pub fn token_hash(&self, token: &MintedToken) -> u64 {
        token_hash(self.seed, token)
    }

    /// The token's `tokenURI`: built on demand from the seed, its contract and its id, so
    /// a million tokens do not hold a million URI strings.
    pub fn token_uri(&self, token: &MintedToken) -> String {
        let contract = &self.contracts[usize::from(token.contract)];
        let h = token_hash(self.seed, token);
        let id = token.token_id_decimal();
        let gateway = GATEWAYS[(h >> 8) as usize % GATEWAYS.len()];
        match self.token_uri_kind(token) {
            UriKind::IpfsPath => format!("ipfs://{}/{id}.json", contract.base_cid),
            UriKind::IpfsCidV0 => format!("ipfs://{}", cid_v0(h)),
            UriKind::IpfsDoubled => format!("ipfs://ipfs/{}/{id}.json", contract.base_cid),
            UriKind::PathGateway => format!("https://{gateway}/ipfs/{}/{id}", contract.base_cid),
            UriKind::SubdomainGateway => {
                format!("https://{}.ipfs.{gateway}/meta.json", cid_v1(h, h & 1 == 0))
            }
            UriKind::BareCid => bare_cid(h),
            UriKind::DataBase64 => format!(
                "data:application/json;base64,{}",
                base64::engine::general_purpose::STANDARD.encode(metadata_json(contract, id, h))
            ),
            UriKind::DataPercent => format!(
                "data:application/json,{}",
                percent_encode(&metadata_json(contract, id, h))
            ),
            UriKind::Arweave => format!("ar://{}", arweave_txid(h)),
            UriKind::Https => match &self.web_base {
                Some(base) => format!("{base}/{}", web_path(contract, id, h)),
                None => {
                    let host = HTTPS_HOSTS[(h >> 16) as usize % HTTPS_HOSTS.len()];
                    format!("https://{host}/{id}")
                }
            },
            UriKind::Empty => String::new(),
            UriKind::Malformed => match malformed_form(h) {
                MalformedForm::NotACid => "ipfs://notacid".to_owned(),
                MalformedForm::Scheme => "htp:/broken".to_owned(),
                MalformedForm::Truncated => {
                    format!("ipfs://{}", contract.base_cid.get(..20).unwrap_or_default())
                }
                MalformedForm::MissingColon => "https//missing-colon.example/1".to_owned(),
                MalformedForm::OneSlash => format!("ipfs:/{}", cid_v0(h)),
            },
        }
    }

    /// Where the token's metadata lives: the same choices as [`Chain::token_uri`], without
    /// building or parsing the URI.
    pub fn metadata_source(&self, token: &MintedToken) -> MetadataSource {
        let contract = &self.contracts[usize::from(token.contract)];
        let h = token_hash(self.seed, token);
        let id = token.token_id_decimal();
        let folder = |path: String| MetadataSource::Ipfs {
            cid: contract.base_cid.clone(),
            path,
        };
        match self.token_uri_kind(token) {
            UriKind::IpfsPath | UriKind::IpfsDoubled => folder(format!("{id}.json")),
            UriKind::PathGateway => folder(id.to_owned()),
            UriKind::IpfsCidV0 => MetadataSource::Ipfs {
                cid: cid_v0(h),
                path: String::new(),
            },
            UriKind::SubdomainGateway => MetadataSource::Ipfs {
                cid: cid_v1(h, h & 1 == 0),
                path: "meta.json".to_owned(),
            },
            UriKind::BareCid => MetadataSource::Ipfs {
                cid: bare_cid(h),
                path: String::new(),
            },
            UriKind::DataBase64 | UriKind::DataPercent => MetadataSource::Inline,
            UriKind::Arweave => MetadataSource::Arweave {
                txid: arweave_txid(h),
            },
            UriKind::Https => MetadataSource::Web {
                path: web_path(contract, id, h),
            },
            UriKind::Empty | UriKind::Malformed => MetadataSource::Nowhere,
        }
    }

    /// Appends `blocks` blocks after the head with `tokens` new mints spread among them, and
    /// moves the head to the last of them. Deterministic given the seed and the current
    /// head. The first new token of each call takes a small, unused id in the contract with
    /// the lowest address, so it sorts (as an id string) before most existing tokens.
    /// Mints can land in the last new block: mine empty blocks afterwards to get them past
    /// a client's confirmations.
    pub fn mine(&mut self, blocks: u64, tokens: usize) -> Mined {
        let mut rng = StdRng::seed_from_u64(mix(self.seed ^ 0x6d69_6e65, self.head));
        let base = self.head;
        if blocks == 0 {
            return Mined {
                head: self.head,
                ids: Vec::new(),
            };
        }
        let mut weights: Vec<(u16, u64)> = Vec::new();
        live_weights(&self.contracts, 1.0, &mut weights);
        let lowest = (0..self.contracts.len())
            .min_by_key(|&c| self.contracts[c].address)
            .map_or(0, |c| c as u16);
        let mut fresh: Vec<MintedToken> = Vec::with_capacity(tokens);
        let mut taken: HashSet<(u16, TokenId)> = HashSet::new();
        for n in 0..tokens {
            let block = base + 1 + rng.gen_range(0..blocks);
            let (c, id) = if n == 0 {
                (lowest, self.small_unused_id(lowest, &mut rng))
            } else {
                let c = pick_weighted(&weights, &mut rng);
                let id = loop {
                    let id = next_id(&mut self.contracts[usize::from(c)], &mut rng);
                    if !taken.contains(&(c, id)) && !self.has_token(c, id) {
                        break id;
                    }
                };
                (c, id)
            };
            taken.insert((c, id));
            let owner = pick_owner(self.owners.len(), &mut rng);
            fresh.push(new_token(&self.contracts, c, id, block, owner));
        }
        fresh.sort_unstable_by(|a, b| (a.block, &a.graph_id).cmp(&(b.block, &b.graph_id)));
        let ids = fresh.iter().map(|t| t.graph_id.to_string()).collect();

        let first_new = self.tokens.len() as u32;
        for (k, t) in fresh.into_iter().enumerate() {
            let index = first_new + k as u32;
            let owner = &mut self.owners[t.owner as usize];
            owner.tokens.push(index);
            owner.first_block.get_or_insert(t.block);
            let contract = &mut self.contracts[usize::from(t.contract)];
            contract.first_block.get_or_insert(t.block);
            self.tokens.push(t);
        }
        let mut new_ids: Vec<u32> = (first_new..self.tokens.len() as u32).collect();
        new_ids.sort_unstable_by(|&a, &b| self.id_of(a).cmp(self.id_of(b)));
        let old = std::mem::take(&mut self.by_id);
        self.by_id = merge_by(old, new_ids, |a, b| self.id_of(*a) < self.id_of(*b));
        self.head = base + blocks;
        Mined {
            head: self.head,
            ids,
        }
    }

    /// The graph id of token `index`.
    fn id_of(&self, index: u32) -> &str {
        &self.tokens[index as usize].graph_id
    }

    /// Whether contract `c` already has token `id`.
    fn has_token(&self, c: u16, id: TokenId) -> bool {
        let key = TokenKey {
            contract: self.contracts[usize::from(c)].address,
            token_id: id,
        };
        self.find(&key.graph_id()).is_some()
    }

    /// A small id (below 10,000) that contract `c` has not minted.
    fn small_unused_id(&mut self, c: u16, rng: &mut StdRng) -> TokenId {
        let mut candidate = rng.gen_range(0..10_000u64);
        loop {
            let id = TokenId(U256::from(candidate));
            if !self.has_token(c, id) {
                return id;
            }
            candidate += 1;
        }
    }
}

/// One block of the mint schedule.
struct Slot {
    /// Mints in the block.
    mints: usize,
    /// Whether it is a drop: one contract mints the whole block.
    busy: bool,
}

/// Mints per block from [`FIRST_MINT_BLOCK`] on: a rate that grows with the chain (few per
/// block early, hundreds late for large chains), plus drops of more than 2,500 mints.
fn make_schedule(n: usize, rng: &mut StdRng) -> Vec<Slot> {
    let mut busy = Vec::new();
    if n >= BUSY_CHAIN_TOKENS {
        let wanted = (BUSY_BLOCKS_MIN + n / TOKENS_PER_EXTRA_BUSY_BLOCK).min(BUSY_BLOCKS_MAX);
        let mut total = 0;
        for _ in 0..wanted {
            let size = rng.gen_range(BUSY_BLOCK_MIN..=BUSY_BLOCK_MAX);
            if (total + size) as f64 > n as f64 * BUSY_SHARE_MAX {
                break;
            }
            total += size;
            busy.push(size);
        }
    }
    let regular = n - busy.iter().sum::<usize>();
    let peak_rate = ((regular as f64).sqrt() / PEAK_RATE_DIVISOR).max(PEAK_RATE_MIN);
    let mut slots = Vec::new();
    let mut produced = 0;
    while produced < regular {
        let rate = START_RATE + peak_rate * produced as f64 / regular as f64;
        let mints = ((2.0 * rate * rng.r#gen::<f64>()).round() as usize).min(regular - produced);
        produced += mints;
        slots.push(Slot { mints, busy: false });
    }
    for mints in busy {
        let at = rng.gen_range(slots.len() / 2..=slots.len());
        slots.insert(at, Slot { mints, busy: true });
    }
    slots
}

/// Words for contract names.
const NAME_WORDS: [&str; 16] = [
    "Lunar", "Pixel", "Quiet", "Feral", "Copper", "Velvet", "Glitch", "Harbor", "Orbit", "Moss",
    "Static", "Ember", "Paper", "Tidal", "Hollow", "Signal",
];
/// Nouns for contract names.
const NAME_NOUNS: [&str; 8] = [
    "Apes", "Foxes", "Cubes", "Lands", "Punks", "Gardens", "Tickets", "Avatars",
];
/// IPFS gateways that path and subdomain URIs name.
const GATEWAYS: [&str; 4] = [
    "ipfs.io",
    "dweb.link",
    "gateway.pinata.cloud",
    "cloudflare-ipfs.com",
];
/// Metadata servers that plain https URIs name when the chain has no web base.
const HTTPS_HOSTS: [&str; 3] = [
    "example.com/meta",
    "api.example.org/token",
    "metadata.example.net/v1/items",
];
/// Path prefixes of web URIs under a web base, one per imagined metadata server.
pub const WEB_PREFIXES: [&str; 3] = ["meta", "token", "v1/items"];

/// `<prefix>/<contract>/<id>`: the path of a web token's metadata below the web base. The
/// contract is in the path because one devnet host stands in for every project's server.
fn web_path(contract: &ContractInfo, id: &str, h: u64) -> String {
    let prefix = WEB_PREFIXES[(h >> 16) as usize % WEB_PREFIXES.len()];
    format!("{prefix}/{}/{id}", contract.id)
}

/// The per-token CID of a [`UriKind::BareCid`] token: v0 or v1 (dag-pb or raw).
fn bare_cid(h: u64) -> String {
    if h & 2 == 0 {
        cid_v0(h)
    } else {
        cid_v1(h, h & 1 == 0)
    }
}

/// The Arweave transaction id of a [`UriKind::Arweave`] token.
fn arweave_txid(h: u64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest(h ^ ARWEAVE_SALT))
}

/// Salt of Arweave transaction ids.
pub(crate) const ARWEAVE_SALT: u64 = 0xa7;

/// The ways a [`UriKind::Malformed`] URI is broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MalformedForm {
    /// `ipfs://notacid`.
    NotACid,
    /// `htp:/broken`.
    Scheme,
    /// `ipfs://` and the first 20 characters of a CID.
    Truncated,
    /// `https//missing-colon.example/1`.
    MissingColon,
    /// `ipfs:/<cidv0>`.
    OneSlash,
}

/// Which malformed URI a token with hash `h` has.
pub fn malformed_form(h: u64) -> MalformedForm {
    match (h >> 24) % 5 {
        0 => MalformedForm::NotACid,
        1 => MalformedForm::Scheme,
        2 => MalformedForm::Truncated,
        3 => MalformedForm::MissingColon,
        _ => MalformedForm::OneSlash,
    }
}

/// Dozens of contracts with every naming, metadata, URI and id style.
fn make_contracts(n: usize, rng: &mut StdRng) -> Vec<ContractInfo> {
    let count = (12 + n / TOKENS_PER_EXTRA_CONTRACT).clamp(CONTRACTS_MIN, CONTRACTS_MAX);
    (0..count)
        .map(|c| {
            let mut address = [0u8; 20];
            rng.fill(&mut address);
            let word = NAME_WORDS[rng.gen_range(0..NAME_WORDS.len())];
            let noun = NAME_NOUNS[rng.gen_range(0..NAME_NOUNS.len())];
            let (name, symbol) = match c % 6 {
                // No name() or symbol(): they revert, or the contract predates them.
                4 => (None, None),
                5 => (Some(format!("{word} {noun}")), None),
                _ => (
                    Some(format!("{word} {noun}")),
                    Some(format!("{}{}", &word[..2], &noun[..1]).to_uppercase()),
                ),
            };
            let supports_metadata = c % 7 != 6;
            let uri_style = if c == 0 {
                UriStyle::Mixed
            } else if !supports_metadata {
                UriStyle::Fixed(UriKind::Empty)
            } else {
                UriStyle::Fixed(UriKind::ALL[(c - 1) % UriKind::ALL.len()])
            };
            let id_scheme = match c % 5 {
                _ if c == 0 => IdScheme::Showcase,
                0 => IdScheme::Random,
                1 => IdScheme::Counter { start: 0 },
                2 => IdScheme::Counter { start: 1 },
                3 => IdScheme::Packed,
                _ => IdScheme::Counter { start: 10_000 },
            };
            ContractInfo {
                address: Address(address),
                id: Address(address).to_string(),
                name,
                symbol,
                supports_metadata,
                uri_style,
                id_scheme,
                base_cid: cid_v1(rng.r#gen(), false),
                first_block: None,
                launch: if c == 0 {
                    0.0
                } else {
                    rng.gen_range(0.01..0.85)
                },
                weight: if c == 0 { 6 } else { rng.gen_range(1..=10) },
                minted: 0,
            }
        })
        .collect()
}

/// Owner addresses sorted, with the zero address (owner of burned tokens) at index 0.
fn make_owners(n: usize, rng: &mut StdRng) -> Vec<OwnerInfo> {
    let count = (n / TOKENS_PER_OWNER).clamp(OWNERS_MIN, OWNERS_MAX);
    let mut addresses: Vec<Address> = (0..count)
        .map(|_| {
            let mut a = [0u8; 20];
            rng.fill(&mut a);
            Address(a)
        })
        .collect();
    addresses.push(Address::ZERO);
    addresses.sort_unstable();
    addresses.dedup();
    addresses
        .into_iter()
        .map(|address| OwnerInfo {
            address,
            id: address.to_string(),
            tokens: Vec::new(),
            first_block: None,
        })
        .collect()
}

/// Fills each owner's token list; the zero address gets the burned tokens.
fn index_owners(owners: &mut [OwnerInfo], tokens: &[MintedToken]) {
    // Exact capacities first, so growing lists leave no holes in the heap.
    let mut counts = vec![0usize; owners.len()];
    for t in tokens {
        counts[t.owner as usize] += 1;
        if t.burned_at.is_some() {
            counts[0] += 1;
        }
    }
    for (owner, count) in owners.iter_mut().zip(counts) {
        owner.tokens = Vec::with_capacity(count);
    }
    for (i, t) in tokens.iter().enumerate() {
        let owner = &mut owners[t.owner as usize];
        owner.tokens.push(i as u32);
        owner.first_block.get_or_insert(t.block);
        if let Some(burn) = t.burned_at {
            let zero = &mut owners[0];
            zero.tokens.push(i as u32);
            zero.first_block = Some(zero.first_block.map_or(burn, |b| b.min(burn)));
        }
    }
}

/// The contracts live at `progress` (0..1 through the chain), with cumulative weights.
fn live_weights(contracts: &[ContractInfo], progress: f64, out: &mut Vec<(u16, u64)>) {
    out.clear();
    let mut sum = 0;
    for (i, c) in contracts.iter().enumerate() {
        if c.launch <= progress {
            sum += u64::from(c.weight);
            out.push((i as u16, sum));
        }
    }
}

/// A contract drawn from cumulative weights.
fn pick_weighted(weights: &[(u16, u64)], rng: &mut StdRng) -> u16 {
    let total = weights.last().map_or(0, |w| w.1);
    if total == 0 {
        return 0;
    }
    let x = rng.gen_range(0..total);
    let at = weights.partition_point(|w| w.1 <= x);
    weights.get(at).map_or(0, |w| w.0)
}

/// An owner index other than 0, skewed towards a few whales.
fn pick_owner(owners: usize, rng: &mut StdRng) -> u32 {
    let u: f64 = rng.r#gen();
    let real = owners.saturating_sub(1).max(1);
    1 + ((u * u * real as f64) as u32).min(real as u32 - 1)
}

/// The next id of the contract's scheme (not checked for uniqueness).
fn next_id(contract: &mut ContractInfo, rng: &mut StdRng) -> TokenId {
    let k = contract.minted;
    contract.minted += 1;
    let random = |rng: &mut StdRng| U256([rng.r#gen(), rng.r#gen(), rng.r#gen(), rng.r#gen()]);
    TokenId(match contract.id_scheme {
        IdScheme::Counter { start } => U256::from(start + k),
        IdScheme::Random => random(rng),
        IdScheme::Packed => (U256::from(rng.gen_range(1..64u64)) << 128) | U256::from(k),
        IdScheme::Showcase => match k {
            0..=2 => U256::from(k),
            3 => U256::MAX,
            4 => U256::MAX - 1,
            _ if k % 2 == 1 => U256::from(k),
            _ => random(rng),
        },
    })
}

/// A token of contract `c` minted at `block`.
fn new_token(
    contracts: &[ContractInfo],
    c: u16,
    id: TokenId,
    block: u64,
    owner: u32,
) -> MintedToken {
    let contract = &contracts[usize::from(c)];
    let key = TokenKey {
        contract: contract.address,
        token_id: id,
    };
    let mut graph_id = String::with_capacity(GRAPH_ID_PREFIX_LEN + 78);
    graph_id.push_str(&contract.id);
    graph_id.push('_');
    push_decimal(&mut graph_id, id.0);
    MintedToken {
        key,
        // Copied to an exact-size allocation: shrinking in place would leave a million
        // small holes in the heap, which glibc's allocator then walks on every request.
        graph_id: Box::from(graph_id.as_str()),
        block,
        contract: c,
        owner,
        burned_at: None,
    }
}

/// `v` in decimal.
pub fn decimal(v: U256) -> String {
    let mut out = String::with_capacity(20);
    push_decimal(&mut out, v);
    out
}

/// Appends `v` in decimal, 19 digits at a time (U256's own Display divides digit by digit).
fn push_decimal(out: &mut String, v: U256) {
    const CHUNK: u64 = 10_000_000_000_000_000_000;
    if v.is_zero() {
        out.push('0');
        return;
    }
    let mut limbs = v.0;
    let mut chunks: Vec<u64> = Vec::with_capacity(5);
    while limbs.iter().any(|&l| l != 0) {
        let mut rem: u128 = 0;
        for limb in limbs.iter_mut().rev() {
            let cur = (rem << 64) | u128::from(*limb);
            *limb = (cur / u128::from(CHUNK)) as u64;
            rem = cur % u128::from(CHUNK);
        }
        chunks.push(rem as u64);
    }
    let mut iter = chunks.iter().rev();
    if let Some(top) = iter.next() {
        out.push_str(&top.to_string());
    }
    for c in iter {
        out.push_str(&format!("{c:019}"));
    }
}

/// A stable per-token hash: seed, contract and id.
fn token_hash(seed: u64, token: &MintedToken) -> u64 {
    let limbs = token.key.token_id.0.0;
    let mut h = mix(seed, u64::from(token.contract));
    for l in limbs {
        h = mix(h, l);
    }
    h
}

/// splitmix64's finaliser: a good 64-bit mixer.
pub(crate) fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Combines two words into one hash.
pub(crate) fn mix(a: u64, b: u64) -> u64 {
    splitmix(a ^ splitmix(b))
}

/// 32 pseudo-random bytes from a hash: the digest of a generated CID.
pub(crate) fn digest(h: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut state = h;
    for chunk in out.chunks_mut(8) {
        state = splitmix(state);
        chunk.copy_from_slice(&state.to_be_bytes());
    }
    out
}

/// Multicodec of sha2-256.
const SHA2_256: u64 = 0x12;
/// Multicodec of raw blocks.
const RAW: u64 = 0x55;
/// Multicodec of dag-pb (UnixFS) blocks.
const DAG_PB: u64 = 0x70;

/// A sha2-256 multihash over the digest of `h`.
fn multihash(h: u64) -> Multihash<64> {
    // A 32-byte digest always fits a 64-byte multihash.
    Multihash::<64>::wrap(SHA2_256, &digest(h)).unwrap_or_default()
}

/// A CIDv0 (base58btc, `Qm...`).
pub(crate) fn cid_v0(h: u64) -> String {
    Cid::new_v0(multihash(h)).map_or_else(|_| String::new(), |c| c.to_string())
}

/// A CIDv1 in base32 (`bafy...` for dag-pb, `bafk...` for raw).
pub(crate) fn cid_v1(h: u64, raw: bool) -> String {
    Cid::new_v1(if raw { RAW } else { DAG_PB }, multihash(h)).to_string()
}

/// Salt of the image CID in generated metadata (inline and fetched alike).
pub(crate) const IMAGE_SALT: u64 = 0x1a9e;

/// Inline metadata for `data:` URIs.
fn metadata_json(contract: &ContractInfo, id: &str, h: u64) -> String {
    let name = contract.name.as_deref().unwrap_or("Untitled");
    serde_json::json!({
        "name": format!("{name} #{id}"),
        "description": "Generated by nifty devnet.",
        "image": format!("ipfs://{}/{id}.png", cid_v1(h ^ IMAGE_SALT, false)),
    })
    .to_string()
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Merges two sorted vectors.
fn merge_by<T: Copy>(a: Vec<T>, b: Vec<T>, less: impl Fn(&T, &T) -> bool) -> Vec<T> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if less(&b[j], &a[i]) {
            out.push(b[j]);
            j += 1;
        } else {
            out.push(a[i]);
            i += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use super::*;

    fn params(tokens: usize, seed: u64) -> ChainParams {
        ChainParams {
            tokens,
            seed,
            head_tail: 30,
            web_base: None,
        }
    }

    fn mints_per_block(chain: &Chain) -> BTreeMap<u64, usize> {
        let mut out = BTreeMap::new();
        for t in chain.tokens() {
            *out.entry(t.block).or_insert(0) += 1;
        }
        out
    }

    #[test]
    fn same_seed_same_chain_other_seed_other_chain() {
        let a = generate(&params(5_000, 7));
        let b = generate(&params(5_000, 7));
        let c = generate(&params(5_000, 8));
        let summary = |ch: &Chain| -> Vec<(String, u64, u32, Option<u64>, String)> {
            ch.tokens()
                .iter()
                .map(|t| {
                    (
                        t.graph_id.to_string(),
                        t.block,
                        t.owner,
                        t.burned_at,
                        ch.token_uri(t),
                    )
                })
                .collect()
        };
        assert_eq!(summary(&a), summary(&b));
        assert_eq!(a.head(), b.head());
        assert_ne!(summary(&a), summary(&c));
    }

    #[test]
    fn sizes_order_and_indexes_are_consistent() {
        for n in [0, 1, 7, 3_000] {
            let chain = generate(&params(n, 3));
            assert_eq!(chain.tokens().len(), n);
            let tokens = chain.tokens();
            assert!(
                tokens
                    .windows(2)
                    .all(|w| { (w[0].block, &w[0].graph_id) < (w[1].block, &w[1].graph_id) })
            );
            let by_id = chain.by_id();
            assert_eq!(by_id.len(), n);
            assert!(
                by_id
                    .windows(2)
                    .all(|w| { tokens[w[0] as usize].graph_id < tokens[w[1] as usize].graph_id })
            );
            for (i, t) in tokens.iter().enumerate() {
                assert_eq!(chain.find(&t.graph_id), Some(i));
                assert_eq!(&*t.graph_id, t.key.graph_id());
                assert_eq!(t.token_id_decimal(), t.key.token_id.to_string());
            }
            let last = tokens.last().map_or(FIRST_MINT_BLOCK, |t| t.block);
            assert_eq!(chain.head(), last + 30);
            // With 20 confirmations every token is in the snapshot.
            assert_eq!(chain.count_at(chain.head() - 20), n);
            assert_eq!(chain.ids_at(chain.head() - 20).len(), n);
        }
    }

    #[test]
    fn large_chains_have_busy_blocks_and_growing_rates() {
        let chain = generate(&params(50_000, 1));
        let tokens = chain.tokens();
        assert!(
            chain
                .by_id()
                .windows(2)
                .all(|w| { tokens[w[0] as usize].graph_id < tokens[w[1] as usize].graph_id })
        );
        let per_block = mints_per_block(&chain);
        let busy = per_block.values().filter(|&&c| c > 2_500).count();
        assert!(busy >= 3, "{busy} blocks with more than 2,500 mints");
        let regular: Vec<usize> = per_block
            .values()
            .copied()
            .filter(|&c| c <= 2_500)
            .collect();
        let quarter = regular.len() / 4;
        let early: usize = regular[..quarter].iter().sum();
        let late: usize = regular[regular.len() - quarter..].iter().sum();
        assert!(late > 5 * early, "early {early}, late {late}");
        let first_block_mints = per_block.values().next().copied().unwrap_or(0);
        assert!(first_block_mints <= 3);
        let small = generate(&params(5_000, 1));
        assert!(mints_per_block(&small).values().all(|&c| c <= 2_500));
    }

    #[test]
    fn ids_span_uint256_and_later_ids_sort_lower() {
        let chain = generate(&params(50_000, 1));
        let ids: HashSet<U256> = chain.tokens().iter().map(|t| t.key.token_id.0).collect();
        for want in [U256::zero(), U256::one(), U256::from(2), U256::MAX] {
            assert!(ids.contains(&want), "{want} missing");
        }
        // Some token of a later block has an id that sorts before one of an earlier block.
        let tokens = chain.tokens();
        let mut lowest_later = vec![None::<&str>; tokens.len() + 1];
        for i in (0..tokens.len()).rev() {
            let here = &*tokens[i].graph_id;
            lowest_later[i] = Some(lowest_later[i + 1].map_or(here, |l| l.min(here)));
        }
        let inverted = tokens.iter().enumerate().any(|(i, t)| {
            let next_block = tokens[i..].partition_point(|x| x.block == t.block) + i;
            lowest_later[next_block].is_some_and(|l| l < &*t.graph_id)
        });
        assert!(inverted);
    }

    #[test]
    fn contracts_vary_in_names_metadata_and_count() {
        let chain = generate(&params(50_000, 1));
        let contracts = chain.contracts();
        assert!((24..=64).contains(&contracts.len()), "{}", contracts.len());
        assert!(
            contracts
                .iter()
                .any(|c| c.name.is_some() && c.symbol.is_some())
        );
        assert!(
            contracts
                .iter()
                .any(|c| c.name.is_none() && c.symbol.is_none())
        );
        assert!(
            contracts
                .iter()
                .any(|c| c.name.is_some() && c.symbol.is_none())
        );
        assert!(contracts.iter().any(|c| !c.supports_metadata));
        let minting = contracts.iter().filter(|c| c.first_block.is_some()).count();
        assert!(minting >= 20, "{minting} contracts minted");
        // Contracts launch over time.
        let first_blocks: HashSet<u64> = contracts.iter().filter_map(|c| c.first_block).collect();
        assert!(first_blocks.len() > 10);
    }

    #[test]
    fn every_uri_kind_appears_and_is_well_formed() {
        for n in [2_000, 50_000] {
            let chain = generate(&params(n, 1));
            let mut kinds: HashMap<UriKind, usize> = HashMap::new();
            for t in chain.tokens() {
                let kind = chain.token_uri_kind(t);
                *kinds.entry(kind).or_default() += 1;
                let uri = chain.token_uri(t);
                check_uri(kind, &uri);
            }
            for kind in UriKind::ALL {
                assert!(kinds.contains_key(&kind), "{kind:?} missing for n = {n}");
            }
        }
    }

    fn parse_cid(s: &str) -> Cid {
        Cid::try_from(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn check_uri(kind: UriKind, uri: &str) {
        let b64 = base64::engine::general_purpose::STANDARD;
        match kind {
            UriKind::IpfsPath => {
                let rest = uri.strip_prefix("ipfs://").unwrap();
                let (cid, path) = rest.split_once('/').unwrap();
                assert_eq!(parse_cid(cid).version(), cid::Version::V1);
                assert!(path.ends_with(".json"));
            }
            UriKind::IpfsCidV0 => {
                let cid = parse_cid(uri.strip_prefix("ipfs://").unwrap());
                assert_eq!(cid.version(), cid::Version::V0);
            }
            UriKind::IpfsDoubled => {
                let rest = uri.strip_prefix("ipfs://ipfs/").unwrap();
                parse_cid(rest.split('/').next().unwrap());
            }
            UriKind::PathGateway => {
                let (_, rest) = uri.split_once("/ipfs/").unwrap();
                assert!(uri.starts_with("https://"));
                parse_cid(rest.split('/').next().unwrap());
            }
            UriKind::SubdomainGateway => {
                let host = uri.strip_prefix("https://").unwrap();
                let (cid, rest) = host.split_once(".ipfs.").unwrap();
                assert_eq!(parse_cid(cid).version(), cid::Version::V1);
                assert!(rest.ends_with("/meta.json"));
            }
            UriKind::BareCid => {
                parse_cid(uri);
            }
            UriKind::DataBase64 => {
                let data = uri.strip_prefix("data:application/json;base64,").unwrap();
                let json: serde_json::Value =
                    serde_json::from_slice(&b64.decode(data).unwrap()).unwrap();
                assert!(json["image"].as_str().unwrap().starts_with("ipfs://"));
            }
            UriKind::DataPercent => {
                let data = uri.strip_prefix("data:application/json,").unwrap();
                assert!(data.starts_with("%7B"));
                assert!(!data.contains('"') && !data.contains('{'));
            }
            UriKind::Arweave => {
                let id = uri.strip_prefix("ar://").unwrap();
                assert_eq!(id.len(), 43);
            }
            UriKind::Https => assert!(uri.starts_with("https://")),
            UriKind::Empty => assert_eq!(uri, ""),
            UriKind::Malformed => {
                let valid_ipfs = uri
                    .strip_prefix("ipfs://")
                    .is_some_and(|c| Cid::try_from(c).is_ok());
                assert!(!valid_ipfs, "{uri}");
            }
        }
    }

    #[test]
    fn some_tokens_burn_later_and_then_belong_to_zero() {
        let chain = generate(&params(20_000, 2));
        let burned: Vec<&MintedToken> = chain
            .tokens()
            .iter()
            .filter(|t| t.burned_at.is_some())
            .collect();
        assert!(
            (100..400).contains(&burned.len()),
            "{} burned",
            burned.len()
        );
        for t in burned {
            let at = t.burned_at.unwrap();
            assert!(at > t.block && at <= chain.head());
            assert_eq!(t.owner_at(at), 0);
            assert_eq!(t.owner_at(at - 1), t.owner);
            assert!(
                chain.owners()[0]
                    .tokens
                    .contains(&(chain.find(&t.graph_id).unwrap() as u32))
            );
        }
        assert_eq!(chain.owners()[0].address, Address::ZERO);
        assert!(chain.tokens().iter().all(|t| t.owner != 0));
    }

    #[test]
    fn mining_appends_blocks_and_tokens_deterministically() {
        let mut a = generate(&params(3_000, 5));
        let mut b = a.clone();
        let head = a.head();
        let before = a.tokens().len();
        let mined = a.mine(10, 40);
        assert_eq!(mined, b.mine(10, 40));
        assert_eq!(mined.head, head + 10);
        assert_eq!(a.head(), head + 10);
        assert_eq!(mined.ids.len(), 40);
        assert_eq!(a.tokens().len(), before + 40);
        let tokens = a.tokens();
        assert!(
            tokens
                .windows(2)
                .all(|w| (w[0].block, &w[0].graph_id) < (w[1].block, &w[1].graph_id))
        );
        assert!(
            a.by_id()
                .windows(2)
                .all(|w| { tokens[w[0] as usize].graph_id < tokens[w[1] as usize].graph_id })
        );
        for id in &mined.ids {
            let t = &tokens[a.find(id).unwrap()];
            assert!(t.block > head && t.block <= head + 10);
        }
        // New tokens include ids that sort before tokens minted earlier.
        let old_max = tokens[..before].iter().map(|t| &t.graph_id).max().unwrap();
        assert!(mined.ids.iter().any(|id| id.as_str() < &**old_max));
        let lowest_new = mined.ids.iter().min().unwrap();
        let older_after = tokens[..before]
            .iter()
            .filter(|t| *t.graph_id > **lowest_new)
            .count();
        assert!(older_after > before / 2, "{older_after} of {before}");
        // Empty blocks only move the head; a second call differs from the first.
        let empty = a.mine(30, 0);
        assert_eq!(empty.head, head + 40);
        assert!(empty.ids.is_empty());
        let again = a.mine(5, 5);
        assert!(again.ids.iter().all(|id| !mined.ids.contains(id)));
    }

    #[test]
    fn decimal_matches_display() {
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..1_000 {
            let v =
                U256([rng.r#gen(), rng.r#gen(), rng.r#gen(), rng.r#gen()]) >> rng.gen_range(0..256);
            assert_eq!(decimal(v), v.to_string());
        }
        assert_eq!(decimal(U256::zero()), "0");
        assert_eq!(decimal(U256::MAX), U256::MAX.to_string());
        assert_eq!(
            decimal(U256::from(10_000_000_000_000_000_000u64)),
            "10000000000000000000"
        );
    }

    #[test]
    fn block_hashes_are_stable_and_found_by_hash() {
        let chain = generate(&params(100, 1));
        let h = chain.block_hash(1_010);
        assert_eq!(h, chain.block_hash(1_010));
        assert_ne!(h, chain.block_hash(1_011));
        assert_eq!(chain.block_by_hash(&h), Some(1_010));
        assert_eq!(chain.block_by_hash(&[0; 32]), None);
    }

    #[test]
    #[ignore = "timing: cargo test --release -p nifty --lib devnet::chain -- --ignored --nocapture"]
    fn a_million_tokens_generate_in_seconds() {
        let started = std::time::Instant::now();
        let chain = generate(&params(1_000_000, 1));
        let secs = started.elapsed().as_secs_f64();
        eprintln!("1M tokens in {secs:.2}s, head {}", chain.head());
        assert!(secs < 10.0);
    }
}
