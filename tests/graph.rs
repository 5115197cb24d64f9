//! The Graph source end to end: `nifty devnet` as a separate process on loopback, nifty
//! scraping it, and the stored set compared with the generator's truth (a pure function,
//! independent of the devnet's query engine).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use nifty::devnet::chain::{ChainParams, generate};
use nifty_scraper::graph::{Ctx, GraphClient, GraphClientConfig, Progress, Stop, scrape_source};
use nifty_scraper::retry::Backoff;
use nifty_state::{Store, StoreOptions, TokenKey};
use rand::Rng;

const NIFTY: &str = env!("CARGO_BIN_EXE_nifty");

#[path = "support/devnet.rs"]
mod support;

fn devnet(tokens: usize, seed: u64, flags: &[&str]) -> support::Devnet {
    support::start(NIFTY, tokens as u64, seed, flags)
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

fn stored_ids(data: &Path) -> (BTreeSet<String>, u64) {
    let store = Store::open(data, &StoreOptions::default()).unwrap();
    let mut ids = BTreeSet::new();
    let mut n = 0;
    store
        .for_each_token(|k: TokenKey, t| {
            assert_eq!(k.graph_id(), t.graph_id, "key and graph id disagree");
            ids.insert(t.graph_id);
            n += 1;
        })
        .unwrap();
    let audit = store.audit().unwrap();
    assert!(audit.is_clean(), "{audit:?}");
    assert_eq!(store.counts().unwrap().tokens, n);
    (ids, n)
}

/// The truth: every graph id minted by the snapshot block (head minus confirmations).
fn truth(tokens: usize, seed: u64, confirmations: u64) -> BTreeSet<String> {
    let chain = generate(&ChainParams {
        tokens,
        seed,
        ..Default::default()
    });
    let snapshot = chain.head() - confirmations;
    chain
        .tokens_at(snapshot)
        .iter()
        .map(|t| t.graph_id.to_string())
        .collect()
}

fn assert_same(stored: &BTreeSet<String>, want: &BTreeSet<String>) {
    let missing: Vec<_> = want.difference(stored).take(5).collect();
    let extra: Vec<_> = stored.difference(want).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "stored {} want {}; missing e.g. {missing:?}; extra e.g. {extra:?}",
        stored.len(),
        want.len()
    );
}

#[test]
fn the_truth_exercises_busy_blocks_and_ids_that_sort_lower_later() {
    let chain = generate(&ChainParams {
        tokens: 30_000,
        seed: 3,
        ..Default::default()
    });
    let mut per_block = std::collections::BTreeMap::<u64, usize>::new();
    for t in chain.tokens() {
        *per_block.entry(t.block).or_default() += 1;
    }
    assert!(
        per_block.values().filter(|n| **n > 2_500).count() >= 2,
        "busy blocks"
    );
    let toks = chain.tokens();
    let lower_later = toks
        .windows(2)
        .filter(|w| w[1].block > w[0].block && w[1].graph_id < w[0].graph_id);
    assert!(lower_later.count() > 100);
}

#[test]
fn a_backfill_stores_exactly_the_snapshot() {
    let (tokens, seed) = (30_000, 3);
    let d = devnet(tokens, seed, &[]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = nifty(
        &data,
        &[
            "backfill",
            "--graph",
            &d.subgraph,
            "--from",
            "0",
            "--workers",
            "4",
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["outcome"], "completed");
    assert_eq!(report["duplicates"], 0, "{report}");
    let (ids, n) = stored_ids(&data);
    assert_same(&ids, &truth(tokens, seed, 20));
    assert_eq!(report["tokens"].as_u64(), Some(n));
    // The source's own cursor continues after the range, so a scheduled run does not
    // page it again.
    let chain = generate(&ChainParams {
        tokens,
        seed,
        ..Default::default()
    });
    let after = chain.head() - 20 + 1;
    assert_eq!(report["source_cursor"], format!("block {after} (start)"));
    let shown = nifty(&data, &["cursor", "show", "graph", "--json"]);
    let c: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(c["graph"]["position"]["block"].as_u64(), Some(after), "{c}");
}

#[test]
fn mints_after_a_run_are_found_by_the_next_run_and_nothing_twice() {
    let (tokens, seed) = (8_000, 11);
    let d = devnet(tokens, seed, &[]);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = GraphClient::new(GraphClientConfig {
        secrets: Default::default(),
        max_row_bytes: nifty_scraper::graph::client::DEFAULT_MAX_ROW_BYTES,
        url: d.subgraph.clone(),
        api_key: None,
        timeout: Duration::from_secs(10),
        backoff: Backoff::default(),
    })
    .unwrap();
    let run = |progress: Arc<Progress>| {
        let ctx = Ctx {
            store: store.clone(),
            client: client.clone().into(),
            source: "main".into(),
            page_size: 500,
            progress,
            now_ms: || 1,
        };
        let (_tx, mut rx) = tokio::sync::watch::channel(false);
        rt.block_on(async move { scrape_source(&ctx, 0, 20, None, &mut rx).await })
            .unwrap()
    };
    let first = Arc::new(Progress::default());
    assert_eq!(run(first.clone()), Stop::Finished);
    let mut chain = generate(&ChainParams {
        tokens,
        seed,
        ..Default::default()
    });
    let want1 = chain.ids_at(chain.head() - 20).len() as u64;
    assert_eq!(
        first.tokens.load(std::sync::atomic::Ordering::Relaxed),
        want1
    );

    // Mine more blocks on the devnet, and the same on our copy of the chain.
    let resp: serde_json::Value = rt
        .block_on(async {
            reqwest::Client::new()
                .post(format!("{}/mine", d.admin))
                .json(&serde_json::json!({"blocks": 60, "tokens": 700}))
                .send()
                .await?
                .json()
                .await
        })
        .unwrap();
    let mined = chain.mine(60, 700);
    assert_eq!(resp["head"].as_u64(), Some(mined.head));

    let second = Arc::new(Progress::default());
    assert_eq!(run(second.clone()), Stop::Finished);
    let snapshot = chain.head() - 20;
    let want: BTreeSet<String> = chain
        .ids_at(snapshot)
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert!(
        want.len() as u64 > want1,
        "the mined blocks add tokens before the snapshot"
    );
    assert_eq!(
        second.duplicates.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "the next run re-fetched old tokens"
    );
    assert_eq!(
        second.tokens.load(std::sync::atomic::Ordering::Relaxed),
        want.len() as u64 - want1
    );
    let cursor = store.cursor("main").unwrap().unwrap();
    assert_eq!(cursor.position.block, snapshot + 1);
    assert_eq!(cursor.head, Some(chain.head()));
    drop(store);
    let (ids, _) = stored_ids(dir.path());
    assert_same(&ids, &want);
}

#[test]
fn kill_9_during_a_4_worker_backfill_then_resume_loses_and_duplicates_nothing() {
    let (tokens, seed) = (30_000, 5);
    // Latency stretches the run so kills land mid-flight; small pages make many commits.
    let d = devnet(tokens, seed, &["--latency-ms", "15"]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = |resume: bool| -> Vec<String> {
        let mut a: Vec<String> = vec!["backfill".into(), "--graph".into(), d.subgraph.clone()];
        a.extend(["--workers", "4", "--page-size", "250"].map(String::from));
        if resume {
            a.extend(["--resume", "job1"].map(String::from));
        } else {
            a.extend(["--from", "0", "--job", "job1"].map(String::from));
        }
        a
    };
    let mut rng = rand::thread_rng();
    let mut killed_mid_run = 0;
    for round in 0..4 {
        let mut child = Command::new(NIFTY)
            .arg("--data-dir")
            .arg(&data)
            .args(args(round > 0))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.gen_range(300..900)));
        if child.try_wait().unwrap().is_none() {
            killed_mid_run += 1;
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
    assert!(
        killed_mid_run >= 3,
        "the backfill finished before most kills"
    );
    let mut last = args(true);
    last.push("--json".into());
    let out = nifty(&data, &last.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ids, _) = stored_ids(&data);
    assert_same(&ids, &truth(tokens, seed, 20));
    // The job's partitions all finished.
    let status = nifty(&data, &["cursor", "show", "--json"]);
    let cursors: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let mut partitions = 0;
    for (name, c) in cursors.as_object().unwrap() {
        if !name.starts_with("backfill/job1/") {
            continue; // the job's range record, and the source cursor it handed over to
        }
        partitions += 1;
        let (block, end) = (
            c["position"]["block"].as_u64().unwrap(),
            c["end"].as_u64().unwrap(),
        );
        assert!(block > end, "partition {name} unfinished: {c}");
    }
    assert!(partitions >= 4);
}

#[test]
fn under_faults_the_set_equals_the_fault_free_one() {
    let (tokens, seed) = (12_000, 9);
    let faults = [
        "--error-rate",
        "0.10",
        "--rate-limit-rate",
        "0.05",
        "--timeout-rate",
        "0.05",
        "--timeout-hold-ms",
        "3000",
        "--truncate-rate",
        "0.02",
        "--malformed-rate",
        "0.02",
        "--graphql-error-rate",
        "0.03",
        "--indexing-error-rate",
        "0.05",
        "--fault-seed",
        "4",
    ];
    let d = devnet(tokens, seed, &faults);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = nifty(
        &data,
        &[
            "backfill",
            "--graph",
            &d.subgraph,
            "--from",
            "0",
            "--workers",
            "4",
            "--page-size",
            "500",
            "--timeout-ms",
            "600",
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["retries"].as_u64().unwrap() > 0,
        "no fault was met: {report}"
    );
    let (ids, _) = stored_ids(&data);
    assert_same(&ids, &truth(tokens, seed, 20));
}

#[test]
fn a_subgraph_with_indexing_errors_is_refused_and_nothing_committed() {
    let d = devnet(2_000, 1, &["--indexing-errors"]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = nifty(&data, &["backfill", "--graph", &d.subgraph, "--from", "0"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("indexing errors"), "{err}");
    assert_eq!(stored_ids(&data).1, 0);
}

#[test]
fn a_backfill_that_leaves_a_gap_does_not_move_the_source_cursor() {
    let d = devnet(3_000, 2, &[]);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::write(
        dir.path().join("nifty.toml"),
        format!(
            "[sources.main]\nkind = \"graph\"\nurl = \"{}\"\n",
            d.subgraph
        ),
    )
    .unwrap();
    let cfg = dir.path().join("nifty.toml");
    let run = |args: &[&str]| {
        let mut all = vec!["--config", cfg.to_str().unwrap()];
        all.extend_from_slice(args);
        nifty(&data, &all)
    };
    assert!(run(&["cursor", "set", "main", "10"]).status.success());
    // The job covers 1500..=head-20; blocks 10..1500 are not covered, so the source's
    // cursor must stay where it is.
    let out = run(&["backfill", "--source", "main", "--from", "1500", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["source_cursor"], serde_json::Value::Null, "{report}");
    let shown = run(&["cursor", "show", "main", "--json"]);
    let c: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(c["main"]["position"]["block"], 10, "{c}");
}
