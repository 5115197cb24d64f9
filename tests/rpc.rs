//! The chain RPC source end to end on a real anvil node: contracts written here and compiled
//! by solc-js, thousands of mints across hundreds of blocks (some with over a thousand), and
//! nifty reading them with `backfill --rpc` or the daemon. The stored set is compared with
//! what the test minted, token by token.
//!
//! Needs anvil and solc-js: `scripts/install-chain-tools.sh` (`make chain-tools`; `make test`
//! runs it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ethers_core::types::{Address, H256, U256};
use nifty_state::{Store, StoreOptions, Token, TokenId, TokenKey};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

mod support {
    pub mod anvil;
    pub mod daemon;
    pub mod devnet;
    pub mod rpc_proxy;
}
use support::anvil::{Anvil, addr, calldata, mint_batch_calldata, mint_calldata, string, uint};
use support::daemon::{Daemon, NIFTY, config};
use support::rpc_proxy::{Fault, Faults, FlakyFault, LogsFault, RangeFault, RpcProxy};

const BASE: &str = "ipfs://bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi/";
const BATCH_BASE: &str = "https://art.example/meta/";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn key(contract: Address, id: U256) -> TokenKey {
    TokenKey {
        contract: nifty_state::Address(contract.0),
        token_id: TokenId(id),
    }
}

/// What the test minted for one token.
#[derive(Clone, Debug)]
struct Want {
    block: u64,
    owner: Address,
    uri: Option<String>,
    reason: Option<&'static str>,
}

/// A chain with every kind of test contract and the mints made on it.
struct Fixture {
    anvil: Anvil,
    nft: Address,
    bare: Address,
    reverting: Address,
    batch: Address,
    erc20: Address,
    want: BTreeMap<TokenKey, Want>,
    hashes: BTreeMap<u64, H256>,
}

impl Fixture {
    /// Deploys the contracts (and Multicall3 when `multicall`), then mints over `blocks`
    /// blocks: a few single mints of each ERC-721 kind and some ERC-20 mints per block, ids
    /// sometimes near 2^256, and in every 97th block (from the 50th) a batch mint of over a
    /// thousand tokens in one transaction.
    async fn mint(blocks: u64, multicall: bool, seed: u64) -> Fixture {
        let anvil = Anvil::start().await;
        if multicall {
            anvil.install_multicall3().await;
        }
        let meta = [string("Test Art"), string("ART"), string(BASE)];
        let nft = anvil.deploy("Nft721", &meta).await;
        let batch = anvil
            .deploy(
                "Nft721Batch",
                &[string("Batch"), string("BAT"), string(BATCH_BASE)],
            )
            .await;
        let bare = anvil.deploy("Nft721Bare", &[]).await;
        let reverting = anvil
            .deploy("Nft721RevertingUri", &[string("Withheld"), string("WH")])
            .await;
        let erc20 = anvil
            .deploy("Token20", &[string("Coin"), string("COIN")])
            .await;
        let mut f = Fixture {
            anvil,
            nft,
            bare,
            reverting,
            batch,
            erc20,
            want: BTreeMap::new(),
            hashes: BTreeMap::new(),
        };
        f.extend(blocks, seed, 1).await;
        f
    }

    /// Mints `blocks` more blocks, ids from `first_id` up.
    async fn extend(&mut self, blocks: u64, seed: u64, first_id: u64) {
        let a = &self.anvil;
        let accounts = a.accounts().to_vec();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut next = first_id;
        let fresh_id = |rng: &mut StdRng, next: &mut u64| {
            *next += 1;
            if rng.gen_bool(0.05) {
                U256::MAX - U256::from(*next)
            } else {
                U256::from(*next)
            }
        };
        a.set_automine(false).await;
        for i in 0..blocks {
            let mut txs = vec![];
            let mut planned: Vec<(TokenKey, Address, Option<String>, Option<&'static str>)> =
                vec![];
            if i % 97 == 50 {
                let owner = accounts[rng.gen_range(0..accounts.len())];
                let count = 1100 + (i % 3) * 50;
                let first = U256::from(1_000_000 + next);
                next += count;
                txs.push((self.batch, mint_batch_calldata(owner, first, count)));
                for j in 0..count {
                    let id = first + U256::from(j);
                    planned.push((
                        key(self.batch, id),
                        owner,
                        Some(format!("{BATCH_BASE}{id}")),
                        None,
                    ));
                }
            }
            for _ in 0..rng.gen_range(0..6) {
                let (owner, id) = (
                    accounts[rng.gen_range(0..accounts.len())],
                    fresh_id(&mut rng, &mut next),
                );
                txs.push((self.nft, mint_calldata(owner, id)));
                planned.push((key(self.nft, id), owner, Some(format!("{BASE}{id}")), None));
            }
            for (contract, n) in [(self.bare, 2), (self.reverting, 2)] {
                for _ in 0..rng.gen_range(0..n) {
                    let (owner, id) = (
                        accounts[rng.gen_range(0..accounts.len())],
                        fresh_id(&mut rng, &mut next),
                    );
                    txs.push((contract, mint_calldata(owner, id)));
                    planned.push((key(contract, id), owner, None, Some("reverted")));
                }
            }
            for _ in 0..rng.gen_range(0..3) {
                let to = accounts[rng.gen_range(0..accounts.len())];
                let amount = U256::from(rng.gen_range(1..1000u64));
                txs.push((
                    self.erc20,
                    calldata("mint(address,uint256)", &[addr(to), uint(amount)]),
                ));
            }
            a.send_many(txs).await;
            a.mine(1).await;
            let block = a.block_number().await;
            for (k, owner, uri, reason) in planned {
                self.want.insert(
                    k,
                    Want {
                        block,
                        owner,
                        uri,
                        reason,
                    },
                );
            }
        }
        a.set_automine(true).await;
        // Every planned mint happened: the node's ERC-721 mint logs count the same.
        let head = a.block_number().await;
        let logs = a.logs(0, head, None).await;
        let minted = logs.iter().filter(|l| l.topics.len() == 4).count();
        let erc20 = logs.iter().filter(|l| l.topics.len() == 3).count();
        assert_eq!(
            minted,
            self.want.len(),
            "the fixture's mints did not all land"
        );
        assert!(erc20 > 0, "no ERC-20 transfers to ignore");
        let blocks: BTreeSet<u64> = self.want.values().map(|w| w.block).collect();
        for b in blocks {
            let h = a.block_hash(b).await;
            self.hashes.insert(b, h);
        }
    }

    fn head_blocks(&self) -> usize {
        self.hashes.len()
    }
}

/// Compares the store with what was minted, token by token; returns the tokens.
fn check_store(data: &Path, f: &Fixture, source: &str) -> BTreeMap<TokenKey, Token> {
    let store = Store::open(data, &StoreOptions::default()).unwrap();
    let mut got = BTreeMap::new();
    store
        .for_each_token(|k, t| {
            got.insert(k, t);
        })
        .unwrap();
    let want_keys: BTreeSet<&TokenKey> = f.want.keys().collect();
    let got_keys: BTreeSet<&TokenKey> = got.keys().collect();
    let missing: Vec<_> = want_keys.difference(&got_keys).take(5).collect();
    let extra: Vec<_> = got_keys.difference(&want_keys).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "stored {} of {} minted; missing e.g. {missing:?}, extra e.g. {extra:?}",
        got.len(),
        f.want.len()
    );
    for (k, w) in &f.want {
        let t = &got[k];
        assert_eq!(t.graph_id, k.graph_id(), "{k}");
        assert_eq!(t.mint_block, w.block, "{k}");
        assert_eq!(t.owner, Some(nifty_state::Address(w.owner.0)), "{k}");
        assert_eq!(t.block_hash, Some(f.hashes[&w.block].0), "{k}");
        assert_eq!(t.token_uri, w.uri, "{k}");
        assert_eq!(t.reason.as_deref(), w.reason, "{k}");
        assert!(
            t.mint_time > 1_600_000_000,
            "{k}: mint time {}",
            t.mint_time
        );
        if t.source != "graph" {
            assert_eq!(t.source, source, "{k}");
        }
    }
    let c = |a: Address| store.contract(&nifty_state::Address(a.0)).unwrap();
    let nft = c(f.nft).unwrap();
    assert_eq!(
        (
            nft.name.as_deref(),
            nft.symbol.as_deref(),
            nft.supports_metadata
        ),
        (Some("Test Art"), Some("ART"), true)
    );
    let bare = c(f.bare).unwrap();
    assert_eq!(
        (bare.name, bare.symbol, bare.supports_metadata),
        (None, None, false)
    );
    let rev = c(f.reverting).unwrap();
    assert_eq!(
        (rev.name.as_deref(), rev.supports_metadata),
        (Some("Withheld"), true)
    );
    if f.want.keys().any(|k| k.contract.0 == f.batch.0) {
        assert!(c(f.batch).unwrap().supports_metadata);
    }
    assert!(c(f.erc20).is_none(), "the ERC-20 was taken for an NFT");
    let audit = store.audit().unwrap();
    assert!(audit.is_clean(), "{audit:?}");
    assert_eq!(store.counts().unwrap().tokens, f.want.len() as u64);
    got
}

fn nifty(data: &Path, args: &[&str]) -> Output {
    Command::new(NIFTY)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn report(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "nifty failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn backfill_stores_every_mint_once_with_its_uri_or_the_reason_it_has_none() {
    let rt = runtime();
    let f = rt.block_on(Fixture::mint(240, true, 7));
    assert!(f.want.len() > 2500, "{}", f.want.len());
    assert!(f.head_blocks() > 200);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A token a subgraph found first: the chain source must see it as stored already.
    let (&seeded, w) = f.want.iter().find(|(_, w)| w.uri.is_some()).unwrap();
    {
        let store = Store::open(&data, &StoreOptions::default()).unwrap();
        let mut t = Token::scraped("graph", &seeded, w.uri.clone(), w.block);
        t.owner = Some(nifty_state::Address(w.owner.0));
        t.block_hash = Some(f.hashes[&w.block].0);
        t.mint_time = 1_700_000_000;
        store
            .commit_page(&nifty_state::Page {
                cursor_name: "graph",
                cursor: Default::default(),
                tokens: &[(seeded, t)],
                contracts: &[],
            })
            .unwrap();
    }
    let url = f.anvil.url.clone();
    let out = nifty(
        &data,
        &[
            "backfill",
            "--rpc",
            &url,
            "--source",
            "chain",
            "--from",
            "0",
            "--to",
            "head",
            "--workers",
            "4",
            "--job",
            "all",
            "--page-size",
            "50",
            "--confirmations",
            "0",
            "--json",
        ],
    );
    let r = report(&out);
    assert_eq!(r["outcome"], "completed", "{r}");
    assert_eq!(
        r["tokens"].as_u64().unwrap(),
        f.want.len() as u64 - 1,
        "{r}"
    );
    let got = check_store(&data, &f, "chain");
    assert_eq!(got[&seeded].source, "graph");
    {
        let store = Store::open(&data, &StoreOptions::default()).unwrap();
        let c = store.counts().unwrap();
        assert_eq!(c.tokens_by_source["chain"], f.want.len() as u64 - 1);
        assert_eq!(c.tokens_by_source["graph"], 1);
    }
    // The same range again, unbatched and without Multicall3's help: nothing new.
    let out = nifty(
        &data,
        &[
            "backfill",
            "--rpc",
            &url,
            "--source",
            "chain",
            "--from",
            "0",
            "--to",
            "head",
            "--workers",
            "2",
            "--job",
            "again",
            "--batch-size",
            "1",
            "--confirmations",
            "0",
            "--json",
        ],
    );
    let r = report(&out);
    assert_eq!(
        (r["tokens"].as_u64(), r["outcome"].as_str()),
        (Some(0), Some("completed"))
    );
    assert_eq!(
        r["duplicates"].as_u64().unwrap(),
        f.want.len() as u64,
        "{r}"
    );
    check_store(&data, &f, "chain");
}

#[test]
fn range_refusals_and_a_flaky_node_lose_and_repeat_nothing() {
    let rt = runtime();
    // No Multicall3: calls go out as JSON-RPC batches, through the proxy.
    let f = rt.block_on(Fixture::mint(200, false, 11));
    // First half: every range over 10 blocks refused, in each provider's words in turn, and
    // 2% of all requests failing in passing ways.
    let proxy = RpcProxy::start(
        &f.anvil.url,
        Faults {
            max_span: Some(10),
            flaky: 0.02,
            seed: 5,
            ..Default::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let t = Instant::now();
    let backfill = |job: &str, from: &str, to: &str, workers: &str| {
        let out = nifty(
            &data,
            &[
                "backfill",
                "--rpc",
                &proxy.url,
                "--source",
                "chain",
                "--from",
                from,
                "--to",
                to,
                "--workers",
                workers,
                "--job",
                job,
                "--page-size",
                "500",
                "--batch-size",
                "25",
                "--confirmations",
                "0",
                "--json",
            ],
        );
        let r = report(&out);
        assert_eq!(r["outcome"], "completed", "{r}");
    };
    backfill("first", "0", "99", "2");
    let s = proxy.stats();
    for kind in RangeFault::ALL {
        assert!(
            s.fault_count(Fault::Range(kind)) > 0,
            "{kind:?} never injected: {s:?}"
        );
    }
    let flaky: u64 = FlakyFault::ALL
        .iter()
        .map(|k| s.fault_count(Fault::Flaky(*k)))
        .sum();
    assert!(flaky > 0, "no flaky failure injected: {s:?}");
    assert!(
        s.max_logs_span <= 10,
        "a range over 10 blocks was served: {s:?}"
    );
    assert!(
        s.batch_sizes.iter().any(|n| *n > 1),
        "eth_calls were not batched"
    );
    let refusals = s.faults_total() - flaky;

    // Second half: any answer of over 1,200 logs refused (a block of a batch mint holds
    // over 1,100, so wide ranges around it are refused and narrow ones pass).
    proxy.set_faults(Faults {
        max_logs: Some(1200),
        ..Default::default()
    });
    proxy.reset_stats();
    backfill("second", "100", "head", "1");
    let s = proxy.stats();
    for kind in LogsFault::ALL {
        assert!(
            s.fault_count(Fault::Logs(kind)) > 0,
            "{kind:?} never injected: {s:?}"
        );
    }
    check_store(&data, &f, "chain");
    eprintln!(
        "{} tokens through {} range refusals, {flaky} flaky failures and {} result-size \
         refusals in {:.1}s",
        f.want.len(),
        refusals,
        s.faults_total(),
        t.elapsed().as_secs_f64()
    );
}

#[test]
fn kill_9_mid_backfill_and_resume_lose_and_repeat_nothing() {
    let rt = runtime();
    let f = rt.block_on(Fixture::mint(150, true, 23));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Small ranges: many commits, so a kill lands between and inside them.
    let cfg = dir.path().join("nifty.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\n[sources.chain]\nkind = \"rpc\"\nurl = \"{}\"\nconfirmations = 0\npage_size = 3\nmax_span = 3\nbatch_size = 20\n",
            data.display(),
            f.anvil.url
        ),
    )
    .unwrap();
    let spawn = |extra: &[&str]| {
        Command::new(NIFTY)
            .arg("--config")
            .arg(&cfg)
            .args(["backfill", "--source", "chain", "--workers", "3"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut rng = StdRng::seed_from_u64(99);
    let mut kills = 0;
    for round in 0..4 {
        let mut child = if round == 0 {
            spawn(&["--job", "k", "--from", "0"])
        } else {
            spawn(&["--resume", "k"])
        };
        std::thread::sleep(Duration::from_millis(rng.gen_range(150..700)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();
        // Every kill leaves a store whose counters and trees agree.
        let store = Store::open(&data, &StoreOptions::default()).unwrap();
        let audit = store.audit().unwrap();
        assert!(audit.is_clean(), "after kill {round}: {audit:?}");
    }
    assert!(
        kills >= 2,
        "the backfill finished before it could be killed"
    );
    let out = Command::new(NIFTY)
        .arg("--config")
        .arg(&cfg)
        .args(["backfill", "--resume", "k", "--json", "--source", "chain"])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let r = report(&out);
    assert_eq!(r["outcome"], "completed", "{r}");
    check_store(&data, &f, "chain");
}

fn api_json(d: &Daemon, path: &str) -> Value {
    d.json(path)
}

fn token_status(d: &Daemon, k: &TokenKey) -> u16 {
    d.get(&format!("/api/tokens/{}/{}", k.contract, k.token_id))
        .0
}

fn chain_tokens(d: &Daemon) -> u64 {
    api_json(d, "/api/status")["tokens_by_source"]["chain"]
        .as_u64()
        .unwrap_or(0)
}

fn wait_for(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_daemon_follows_the_chain_and_takes_back_what_a_reorg_orphaned() {
    let rt = runtime();
    let mut f = rt.block_on(Fixture::mint(30, true, 31));
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        r#"
[jobs.analyse]
enabled = false
[jobs.pin]
enabled = false
[jobs.follow]
enabled = false
[sources.chain]
kind = "rpc"
url = "{}"
confirmations = 0
page_size = 7
schedule = "* * * * * *"
budget_secs = 5
reorg_depth = 64
"#,
        f.anvil.url
    );
    let cfg = config(dir.path(), None, false, &extra);
    let d = Daemon::start(&cfg);
    let kept = f.want.len() as u64;
    wait_for("the first blocks scraped", Duration::from_secs(60), || {
        chain_tokens(&d) == kept
    });

    // Blocks that will be orphaned: minted, scraped, then reverted away.
    let snap = rt.block_on(f.anvil.snapshot());
    let before = f.want.clone();
    rt.block_on(f.extend(6, 41, 5_000));
    let orphaned: BTreeSet<TokenKey> = f
        .want
        .keys()
        .filter(|k| !before.contains_key(k))
        .copied()
        .collect();
    assert!(!orphaned.is_empty());
    let all = f.want.len() as u64;
    wait_for("the doomed blocks scraped", Duration::from_secs(60), || {
        chain_tokens(&d) == all
    });
    for k in &orphaned {
        assert_eq!(token_status(&d, k), 200, "{k}");
    }

    // The reorg: the chain goes back to the snapshot and grows other blocks (some of the
    // same token ids minted again elsewhere, some new ones).
    assert!(rt.block_on(f.anvil.revert(&snap)));
    f.want = before;
    f.hashes
        .retain(|b, _| f.want.values().any(|w| w.block == *b));
    rt.block_on(f.extend(9, 43, 5_000));
    let new: BTreeSet<TokenKey> = f
        .want
        .keys()
        .filter(|k| !orphaned.contains(k) || f.want.contains_key(k))
        .copied()
        .collect();
    let want_total = f.want.len() as u64;
    wait_for(
        "the reorg unwound and the new blocks scraped",
        Duration::from_secs(60),
        || {
            chain_tokens(&d) == want_total
                && orphaned
                    .iter()
                    .filter(|k| !f.want.contains_key(k))
                    .all(|k| token_status(&d, k) == 404)
        },
    );
    // Every token of the new chain is there with the new chain's block and hash.
    for k in &new {
        let w = &f.want[k];
        let v = api_json(&d, &format!("/api/tokens/{}/{}", k.contract, k.token_id));
        assert_eq!(v["mint_block"].as_u64(), Some(w.block), "{k}: {v}");
    }
    let metrics = d.get("/metrics").1;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("nifty_rpc_reorgs_total") && !l.ends_with(" 0")),
        "no reorg counted:\n{}",
        metrics
            .lines()
            .filter(|l| l.contains("rpc"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let runs = api_json(&d, "/api/runs?job=scrape/chain&limit=200");
    assert!(
        runs.to_string().contains("completed"),
        "no completed scrape run: {runs}"
    );
    let mut d = d;
    let (code, _) = d.stop("TERM");
    assert_eq!(code, Some(0));
    check_store(&dir.path().join("data"), &f, "chain");
}
