//! The chain-source test harness proves itself: the test contracts deployed on a real anvil
//! and their logs and calls as the chain source will see them (4-topic ERC-721 mints, 3-topic
//! ERC-20 mints, token URIs, reverts, a 1200-mint block, several transactions in one block,
//! snapshots and reorg-like reverts, Multicall3 at its canonical address), and the
//! fault-injecting JSON-RPC proxy's every fault kind seen through a plain HTTP client.
//!
//! Needs anvil and solc-js: `scripts/install-chain-tools.sh` (`make chain-tools`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::io::{Read, Write};

use ethers_core::types::{Address, H256, U256};
use serde_json::{Value, json};

mod support {
    pub mod anvil;
    pub mod rpc_proxy;
}
use support::anvil::{
    Anvil, MULTICALL3, addr, aggregate3_calldata, burn_calldata, calldata, contracts,
    decode_address, decode_aggregate3, decode_bool, decode_revert_reason, decode_string,
    decode_uint, mint_calldata, string, supports_interface_calldata, token_uri_calldata,
    transfer_from_calldata, transfer_topic, uint,
};
use support::rpc_proxy::{Fault, Faults, FlakyFault, LogsFault, ProxyStats, RangeFault, RpcProxy};

const BASE: &str = "ipfs://bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi/";

fn topic_of_address(a: Address) -> H256 {
    H256::from(a)
}

fn topic_of_uint(v: U256) -> H256 {
    let mut bytes = [0u8; 32];
    v.to_big_endian(&mut bytes);
    H256(bytes)
}

async fn deploy_nft(anvil: &Anvil, name: &str) -> Address {
    anvil
        .deploy(name, &[string("Test Art"), string("ART"), string(BASE)])
        .await
}

async fn call_string(anvil: &Anvil, to: Address, data: &[u8]) -> String {
    decode_string(&anvil.call(to, data).await.unwrap())
}

async fn supports(anvil: &Anvil, nft: Address, interface: u32) -> bool {
    let data = supports_interface_calldata(interface.to_be_bytes());
    decode_bool(&anvil.call(nft, &data).await.unwrap())
}

#[tokio::test]
async fn contracts_deploy_mint_and_log_like_real_tokens() {
    assert_eq!(
        contracts().names(),
        [
            "Multicall3",
            "Nft721",
            "Nft721Bare",
            "Nft721Batch",
            "Nft721RevertingUri",
            "Token20"
        ]
    );
    let anvil = Anvil::start().await;
    let me = anvil.sender();
    let other = anvil.accounts()[1];

    let nft = deploy_nft(&anvil, "Nft721").await;
    let batch = deploy_nft(&anvil, "Nft721Batch").await;
    let bare = anvil.deploy("Nft721Bare", &[]).await;
    let withheld = anvil
        .deploy("Nft721RevertingUri", &[string("Withheld"), string("WH")])
        .await;
    let token = anvil
        .deploy("Token20", &[string("Coin"), string("COIN")])
        .await;

    let big = U256::from_dec_str(
        "115792089237316195423570985008687907853269984665640564039457584007913129639935",
    )
    .unwrap();
    let start = anvil.block_number().await + 1;
    for (contract, id) in [
        (nft, U256::zero()),
        (nft, big),
        (batch, 7.into()),
        (bare, 8.into()),
        (withheld, 9.into()),
    ] {
        anvil.exec(contract, &mint_calldata(other, id)).await;
    }
    anvil
        .exec(
            token,
            &calldata("mint(address,uint256)", &[addr(other), uint(5000)]),
        )
        .await;
    let end = anvil.block_number().await;
    assert_eq!(end - start + 1, 6, "automine: one block per transaction");

    // The mint logs: ERC-721 ones with 4 topics and no data, the ERC-20 one with 3 and the
    // amount in its data; all with the same topic 0.
    let logs = anvil.logs(start, end, None).await;
    assert_eq!(logs.len(), 6);
    for (log, (contract, id)) in logs.iter().zip([
        (nft, U256::zero()),
        (nft, big),
        (batch, 7.into()),
        (bare, 8.into()),
        (withheld, 9.into()),
    ]) {
        assert_eq!(log.address, contract);
        assert_eq!(
            log.topics,
            [
                transfer_topic(),
                H256::zero(),
                topic_of_address(other),
                topic_of_uint(id)
            ]
        );
        assert!(log.data.is_empty());
    }
    let erc20 = &logs[5];
    assert_eq!(erc20.address, token);
    assert_eq!(
        erc20.topics,
        [transfer_topic(), H256::zero(), topic_of_address(other)]
    );
    assert_eq!(decode_uint(&erc20.data), 5000.into());
    assert_eq!(anvil.logs(start, end, Some(token)).await.len(), 1);
    assert_eq!(logs[0].block_number, Some(start.into()));

    // Metadata: name, symbol, tokenURI = base ++ decimal id, for the smallest and largest ids.
    assert_eq!(
        call_string(&anvil, nft, &calldata("name()", &[])).await,
        "Test Art"
    );
    assert_eq!(
        call_string(&anvil, nft, &calldata("symbol()", &[])).await,
        "ART"
    );
    assert_eq!(
        call_string(&anvil, nft, &token_uri_calldata(U256::zero())).await,
        format!("{BASE}0")
    );
    assert_eq!(
        call_string(&anvil, nft, &token_uri_calldata(big)).await,
        format!("{BASE}{big}")
    );
    assert_eq!(
        call_string(&anvil, batch, &token_uri_calldata(7.into())).await,
        format!("{BASE}7")
    );
    let owner = anvil
        .call(nft, &calldata("ownerOf(uint256)", &[uint(big)]))
        .await
        .unwrap();
    assert_eq!(decode_address(&owner), other);
    let balance = anvil
        .call(nft, &calldata("balanceOf(address)", &[addr(other)]))
        .await
        .unwrap();
    assert_eq!(decode_uint(&balance), 2.into());

    // A token that does not exist has no URI.
    let missing = anvil
        .call(nft, &token_uri_calldata(1.into()))
        .await
        .unwrap_err();
    assert!(missing.is_revert(), "{missing}");
    assert_eq!(
        missing.revert_reason().as_deref(),
        Some("nonexistent token")
    );

    // ERC-165 answers.
    for (contract, metadata) in [(nft, true), (batch, true), (withheld, true), (bare, false)] {
        assert!(supports(&anvil, contract, 0x01ffc9a7).await);
        assert!(supports(&anvil, contract, 0x80ac58cd).await);
        assert_eq!(supports(&anvil, contract, 0x5b5e139f).await, metadata);
        assert!(!supports(&anvil, contract, 0xffffffff).await);
    }

    // The reverting-URI contract: name works, tokenURI reverts with its reason.
    assert_eq!(
        call_string(&anvil, withheld, &calldata("name()", &[])).await,
        "Withheld"
    );
    let withheld_uri = anvil
        .call(withheld, &token_uri_calldata(9.into()))
        .await
        .unwrap_err();
    assert!(withheld_uri.is_revert(), "{withheld_uri}");
    assert_eq!(
        withheld_uri.revert_reason().as_deref(),
        Some("uri withheld")
    );

    // The bare contract has no tokenURI, name or symbol at all.
    for data in [token_uri_calldata(8.into()), calldata("name()", &[])] {
        let e = anvil.call(bare, &data).await.unwrap_err();
        assert!(e.is_revert(), "{e}");
        assert_eq!(e.revert_reason(), None);
    }
    // The ERC-20 has no supportsInterface.
    assert!(
        anvil
            .call(token, &supports_interface_calldata([1, 255, 201, 167]))
            .await
            .unwrap_err()
            .is_revert()
    );

    // Transfers and burns log Transfer with a non-zero from / to zero: not mints.
    anvil.exec(nft, &mint_calldata(me, 42.into())).await;
    anvil
        .exec(nft, &transfer_from_calldata(me, other, 42.into()))
        .await;
    anvil.exec(nft, &burn_calldata(U256::zero())).await;
    let head = anvil.block_number().await;
    let later = anvil.logs(end + 1, head, Some(nft)).await;
    let moves: Vec<(H256, H256, H256)> = later
        .iter()
        .map(|l| (l.topics[1], l.topics[2], l.topics[3]))
        .collect();
    assert_eq!(
        moves,
        [
            (H256::zero(), topic_of_address(me), topic_of_uint(42.into())),
            (
                topic_of_address(me),
                topic_of_address(other),
                topic_of_uint(42.into())
            ),
            (
                topic_of_address(other),
                H256::zero(),
                topic_of_uint(U256::zero())
            ),
        ]
    );
    // Minting an id twice reverts: anvil still mines the transaction (when gas estimation
    // fails it sends with 30 M gas), with status 0 and no logs; eth_call says why.
    let again = anvil.send(nft, &mint_calldata(me, big)).await;
    let receipt = anvil.wait_receipt(again).await;
    assert_eq!(receipt.status, Some(0.into()));
    assert!(receipt.logs.is_empty());
    let why = anvil.call(nft, &mint_calldata(me, big)).await.unwrap_err();
    assert_eq!(why.revert_reason().as_deref(), Some("token already minted"));
}

#[tokio::test]
async fn mint_batch_puts_1200_transfers_in_one_block() {
    let anvil = Anvil::start().await;
    let nft = deploy_nft(&anvil, "Nft721Batch").await;
    let to = anvil.accounts()[2];
    let tx = anvil.mint_batch(nft, to, 1_000_000.into(), 1200).await;
    let receipt = anvil.wait_receipt(tx).await;
    assert_eq!(receipt.status, Some(1.into()));
    let block = receipt.block_number.unwrap().as_u64();
    let logs = anvil.logs(block, block, Some(nft)).await;
    assert_eq!(logs.len(), 1200);
    let ids: Vec<U256> = logs
        .iter()
        .map(|l| U256::from_big_endian(l.topics[3].as_bytes()))
        .collect();
    let expected: Vec<U256> = (1_000_000u64..1_001_200).map(U256::from).collect();
    assert_eq!(ids, expected);
    assert!(
        logs.iter()
            .all(|l| l.topics.len() == 4 && l.block_number == Some(block.into()))
    );
    let balance = anvil
        .call(nft, &calldata("balanceOf(address)", &[addr(to)]))
        .await
        .unwrap();
    assert_eq!(decode_uint(&balance), 1200.into());
    assert_eq!(
        call_string(&anvil, nft, &token_uri_calldata(1_001_199.into())).await,
        format!("{BASE}1001199")
    );
    // More than 16.7 M gas (EIP-7825's per-transaction cap) went into that one transaction.
    assert!(
        receipt.gas_used.unwrap() > 20_000_000.into(),
        "{:?}",
        receipt.gas_used
    );
}

#[tokio::test]
async fn automine_off_packs_many_transactions_into_one_block() {
    let anvil = Anvil::start().await;
    let nft = deploy_nft(&anvil, "Nft721").await;
    let token = anvil
        .deploy("Token20", &[string("Coin"), string("COIN")])
        .await;
    let before = anvil.block_number().await;

    anvil.set_automine(false).await;
    let to = anvil.accounts()[3];
    let mut txs: Vec<(Address, Vec<u8>)> = (0..300u64)
        .map(|id| (nft, mint_calldata(to, id.into())))
        .collect();
    txs.push((
        token,
        calldata("mint(address,uint256)", &[addr(to), uint(1)]),
    ));
    let hashes = anvil.send_many(txs).await;
    assert_eq!(hashes.len(), 301);
    assert_eq!(anvil.block_number().await, before, "nothing mined yet");
    anvil.mine(1).await;
    assert_eq!(anvil.block_number().await, before + 1);

    let mut blocks = BTreeSet::new();
    for hash in [hashes[0], hashes[150], hashes[300]] {
        let receipt = anvil.wait_receipt(hash).await;
        assert_eq!(receipt.status, Some(1.into()));
        blocks.insert(receipt.block_number.unwrap().as_u64());
    }
    assert_eq!(blocks, BTreeSet::from([before + 1]));
    let logs = anvil.logs(before + 1, before + 1, None).await;
    assert_eq!(logs.len(), 301);
    assert_eq!(logs.iter().filter(|l| l.topics.len() == 4).count(), 300);
    let block = anvil.block(before + 1).await.unwrap();
    assert_eq!(block["transactions"].as_array().unwrap().len(), 301);

    // Mining empty blocks moves the head; automine back on mines at once.
    anvil.mine(5).await;
    assert_eq!(anvil.block_number().await, before + 6);
    anvil.set_automine(true).await;
    anvil.exec(nft, &mint_calldata(to, 1000.into())).await;
    assert_eq!(anvil.block_number().await, before + 7);
}

#[tokio::test]
async fn snapshot_revert_drops_blocks_and_logs_and_reuses_heights() {
    let anvil = Anvil::start().await;
    let nft = deploy_nft(&anvil, "Nft721").await;
    let to = anvil.accounts()[1];
    anvil.exec(nft, &mint_calldata(to, 1.into())).await;
    let base = anvil.block_number().await;
    let base_hash = anvil.block_hash(base).await;

    let snapshot = anvil.snapshot().await;
    for id in 2..5u64 {
        anvil.exec(nft, &mint_calldata(to, id.into())).await;
    }
    assert_eq!(anvil.block_number().await, base + 3);
    let mut old = Vec::new();
    for n in base + 1..=base + 3 {
        old.push(anvil.block_hash(n).await);
    }
    assert_eq!(anvil.logs(base + 1, base + 3, Some(nft)).await.len(), 3);

    assert!(anvil.revert(&snapshot).await);
    assert_eq!(anvil.block_number().await, base);
    assert_eq!(anvil.block_hash(base).await, base_hash);
    assert!(anvil.block(base + 1).await.is_none());
    assert!(anvil.logs(0, base, Some(nft)).await.len() == 1);
    // The minted ids are gone with their blocks.
    let owner = anvil
        .call(nft, &calldata("ownerOf(uint256)", &[uint(2)]))
        .await
        .unwrap_err();
    assert_eq!(owner.revert_reason().as_deref(), Some("nonexistent token"));
    // A snapshot is used up by reverting to it.
    assert!(!anvil.revert(&snapshot).await);

    // New blocks at the same heights: other mints, other hashes.
    for id in 10..13u64 {
        anvil.exec(nft, &mint_calldata(to, id.into())).await;
    }
    assert_eq!(anvil.block_number().await, base + 3);
    for (i, n) in [base + 1, base + 2, base + 3].into_iter().enumerate() {
        assert_ne!(anvil.block_hash(n).await, old[i], "block {n}");
    }
    let ids: Vec<H256> = anvil
        .logs(base + 1, base + 3, Some(nft))
        .await
        .iter()
        .map(|l| l.topics[3])
        .collect();
    assert_eq!(
        ids,
        [10u64, 11, 12].map(|i| topic_of_uint(i.into())).to_vec()
    );
}

#[tokio::test]
async fn multicall3_at_its_address_aggregates_with_and_without_failure() {
    let anvil = Anvil::start().await;
    let nft = deploy_nft(&anvil, "Nft721").await;
    let withheld = anvil
        .deploy("Nft721RevertingUri", &[string("Withheld"), string("WH")])
        .await;
    let to = anvil.accounts()[1];
    anvil.exec(nft, &mint_calldata(to, 5.into())).await;
    anvil.exec(withheld, &mint_calldata(to, 6.into())).await;

    let mc = anvil.install_multicall3().await;
    assert_eq!(format!("{mc:?}"), MULTICALL3.to_lowercase());
    assert_eq!(anvil.code(mc).await, contracts().get("Multicall3").runtime);

    let calls = [
        (nft, false, token_uri_calldata(5.into())),
        (withheld, true, token_uri_calldata(6.into())),
        (
            nft,
            true,
            supports_interface_calldata([0x5b, 0x5e, 0x13, 0x9f]),
        ),
    ];
    let answer = anvil.call(mc, &aggregate3_calldata(&calls)).await.unwrap();
    let results = decode_aggregate3(&answer);
    assert_eq!(results.len(), 3);
    assert!(results[0].0);
    assert_eq!(decode_string(&results[0].1), format!("{BASE}5"));
    assert!(!results[1].0);
    assert_eq!(
        decode_revert_reason(&results[1].1).as_deref(),
        Some("uri withheld")
    );
    assert!(results[2].0 && decode_bool(&results[2].1));

    // A failing call that may not fail reverts the whole batch.
    let strict = [(withheld, false, token_uri_calldata(6.into()))];
    let e = anvil
        .call(mc, &aggregate3_calldata(&strict))
        .await
        .unwrap_err();
    assert!(e.is_revert(), "{e}");
    assert_eq!(
        e.revert_reason().as_deref(),
        Some("Multicall3: call failed")
    );

    let number = anvil
        .call(mc, &calldata("getBlockNumber()", &[]))
        .await
        .unwrap();
    assert_eq!(decode_uint(&number), anvil.block_number().await.into());
}

// ---------------------------------------------------------------------------------------------
// The proxy

/// A POST of `body` with a plain client: status, content type and body text.
async fn raw(url: &str, body: &Value) -> (u16, String, String) {
    let response = reqwest::Client::new()
        .post(url)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

fn get_logs(id: u64, from: u64, to: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "eth_getLogs",
           "params": [{"fromBlock": format!("{from:#x}"), "toBlock": format!("{to:#x}")}]})
}

fn call(id: u64, method: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": []})
}

/// An anvil with 40 blocks, one Nft721 mint in each of blocks 2..=40 (block 1 deploys).
async fn chain_of_mints() -> (Anvil, Address) {
    let anvil = Anvil::start().await;
    let nft = deploy_nft(&anvil, "Nft721").await;
    let to = anvil.accounts()[1];
    for id in 0..39u64 {
        anvil.exec(nft, &mint_calldata(to, id.into())).await;
    }
    assert_eq!(anvil.block_number().await, 40);
    (anvil, nft)
}

#[tokio::test]
async fn proxy_forwards_calls_batches_and_narrow_log_queries_untouched() {
    let (anvil, _) = chain_of_mints().await;
    let proxy = RpcProxy::start(
        &anvil.url,
        Faults {
            max_span: Some(10),
            max_logs: Some(100),
            ..Faults::default()
        },
    );

    // A log query within max_span: the very bytes anvil answers.
    let query = get_logs(7, 3, 12);
    let direct = raw(&anvil.url, &query).await;
    let proxied = raw(&proxy.url, &query).await;
    assert_eq!(proxied, direct);
    let logs: Value = serde_json::from_str(&proxied.2).unwrap();
    assert_eq!(logs["result"].as_array().unwrap().len(), 10);

    // A batch passes through whole, answers matched by id.
    let batch = json!([
        call(1, "eth_chainId"),
        get_logs(2, 30, 39),
        call(3, "eth_blockNumber")
    ]);
    let (status, _, text) = raw(&proxy.url, &batch).await;
    assert_eq!(status, 200);
    let answers: Value = serde_json::from_str(&text).unwrap();
    let answers = answers.as_array().unwrap();
    assert_eq!(answers.len(), 3);
    let by_id = |id: u64| answers.iter().find(|a| a["id"] == json!(id)).unwrap();
    assert_eq!(by_id(1)["result"], json!("0x7a69"));
    assert_eq!(by_id(2)["result"].as_array().unwrap().len(), 10);
    assert_eq!(by_id(3)["result"], json!("0x28"));

    // A JSON-RPC error from the upstream passes through too.
    let (_, _, text) = raw(
        &proxy.url,
        &json!({"jsonrpc": "2.0", "id": 9, "method": "no_such_method", "params": []}),
    )
    .await;
    let direct = raw(
        &anvil.url,
        &json!({"jsonrpc": "2.0", "id": 9, "method": "no_such_method", "params": []}),
    )
    .await;
    assert_eq!(text, direct.2);

    // What cannot be parsed is forwarded unchanged, status included.
    let junk = reqwest::Client::new()
        .post(&proxy.url)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let junk_direct = reqwest::Client::new()
        .post(&anvil.url)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(junk.status(), junk_direct.status());
    assert_eq!(
        junk.text().await.unwrap(),
        junk_direct.text().await.unwrap()
    );

    let stats = proxy.stats();
    assert_eq!(stats.http_requests, 4);
    assert_eq!(stats.calls_of("eth_getLogs"), 2);
    assert_eq!(stats.calls_of("eth_chainId"), 1);
    assert_eq!(stats.batch_sizes, [3]);
    assert_eq!(stats.unparsed, 1);
    assert_eq!(stats.faults_total(), 0);
    assert_eq!(stats.max_logs_span, 10);
    assert_eq!(stats.logs_ranges, [(3, 12), (30, 39)]);
}

#[tokio::test]
async fn proxy_refuses_wide_log_queries_like_real_providers() {
    let (anvil, _) = chain_of_mints().await;
    let proxy = RpcProxy::start(
        &anvil.url,
        Faults {
            max_span: Some(10),
            ..Faults::default()
        },
    );
    // The five refusals in turn, then the cycle starts over.
    let wide = get_logs(5, 0x11, 0x30);
    let (status, _, text) = raw(&proxy.url, &wide).await;
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["id"], json!(5));
    assert_eq!(answer["error"]["code"], json!(-32602));
    assert_eq!(
        answer["error"]["message"],
        json!(
            "Log response size exceeded. You can make eth_getLogs requests with up to a 10 block \
             range and no limit on the response size, or you can request any block range with a \
             cap of 10K logs in the response. Based on your parameters, this block range should \
             work: [0x11, 0x1a]"
        )
    );
    let (_, _, text) = raw(&proxy.url, &wide).await;
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        answer["error"],
        json!({"code": -32000, "message": "block range is too wide"})
    );
    let (_, _, text) = raw(&proxy.url, &wide).await;
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        answer["error"],
        json!({"code": -32000, "message": "eth_getLogs is limited to a 10 range"})
    );
    assert_eq!(
        raw(&proxy.url, &wide).await,
        (413, "text/plain".into(), "Request Entity Too Large".into())
    );
    let (status, content_type, text) = raw(&proxy.url, &wide).await;
    assert_eq!((status, content_type.as_str()), (503, "text/html"));
    assert!(text.contains("<html>") && text.contains("503"), "{text}");
    let (_, _, text) = raw(&proxy.url, &wide).await;
    assert!(text.contains("-32602"), "{text}");

    // Just within the limit, and "latest" resolved against the head (40): 31..=40 is fine,
    // 30..=latest is not.
    let (_, _, text) = raw(&proxy.url, &get_logs(6, 31, 40)).await;
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["result"]
            .as_array()
            .unwrap()
            .len(),
        10
    );
    let latest = json!({"jsonrpc": "2.0", "id": 8, "method": "eth_getLogs",
                        "params": [{"fromBlock": "0x1e", "toBlock": "latest"}]});
    proxy.set_faults(Faults {
        max_span: Some(10),
        range_kinds: vec![RangeFault::TooWide],
        ..Faults::default()
    });
    let (_, _, text) = raw(&proxy.url, &latest).await;
    assert!(text.contains("block range is too wide"), "{text}");

    // In a batch, a JSON-RPC refusal replaces only its own element, matched by id...
    let batch = json!([
        call(1, "eth_blockNumber"),
        get_logs(2, 0, 39),
        get_logs(3, 2, 3)
    ]);
    let (status, _, text) = raw(&proxy.url, &batch).await;
    assert_eq!(status, 200);
    let answers: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answers[0]["id"], json!(1));
    assert_eq!(answers[0]["result"], json!("0x28"));
    assert_eq!(answers[1]["id"], json!(2));
    assert_eq!(
        answers[1]["error"]["message"],
        json!("block range is too wide")
    );
    assert_eq!(answers[2]["id"], json!(3));
    assert_eq!(answers[2]["result"].as_array().unwrap().len(), 2);

    // ...while an HTTP-level refusal answers the whole request.
    proxy.set_faults(Faults {
        max_span: Some(10),
        range_kinds: vec![RangeFault::Http413],
        ..Faults::default()
    });
    let (status, _, _) = raw(&proxy.url, &batch).await;
    assert_eq!(status, 413);

    let stats = proxy.stats();
    for kind in [
        RangeFault::SuggestedRange,
        RangeFault::TooWide,
        RangeFault::LimitedTo,
        RangeFault::Http413,
        RangeFault::Http503Html,
    ] {
        assert!(
            stats.fault_count(Fault::Range(kind)) >= 1,
            "{kind:?}: {stats:?}"
        );
    }
    assert_eq!(
        stats.fault_count(Fault::Range(RangeFault::SuggestedRange)),
        2
    );
    assert_eq!(stats.fault_count(Fault::Range(RangeFault::TooWide)), 3);
    assert_eq!(stats.fault_count(Fault::Range(RangeFault::Http413)), 2);
    assert_eq!(stats.max_logs_span, 10);
    assert_eq!(stats.logs_ranges, [(31, 40), (2, 3)]);
    assert_eq!(stats.batch_sizes, [3, 3]);
}

#[tokio::test]
async fn proxy_replaces_answers_with_too_many_logs() {
    let (anvil, _) = chain_of_mints().await;
    let proxy = RpcProxy::start(
        &anvil.url,
        Faults {
            max_logs: Some(10),
            ..Faults::default()
        },
    );
    let (_, _, text) = raw(&proxy.url, &get_logs(1, 0, 40)).await;
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"jsonrpc": "2.0", "id": 1,
               "error": {"code": -32005, "message": "query returned more than 10000 results"}})
    );
    let (_, _, text) = raw(&proxy.url, &get_logs(2, 0, 40)).await;
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["error"],
        json!({"code": -32000, "message": "response is too big"})
    );
    // Ten logs are not too many.
    let (_, _, text) = raw(&proxy.url, &get_logs(3, 2, 11)).await;
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["result"]
            .as_array()
            .unwrap()
            .len(),
        10
    );
    // Only the oversized element of a batch is replaced.
    let batch = json!([get_logs(4, 0, 40), get_logs(5, 12, 13)]);
    let (_, _, text) = raw(&proxy.url, &batch).await;
    let answers: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answers[0]["error"]["code"], json!(-32005));
    assert_eq!(answers[1]["result"].as_array().unwrap().len(), 2);

    let stats = proxy.stats();
    assert_eq!(stats.fault_count(Fault::Logs(LogsFault::TooManyResults)), 2);
    assert_eq!(stats.fault_count(Fault::Logs(LogsFault::TooBig)), 1);
    assert_eq!(stats.logs_ranges, [(2, 11), (12, 13)]);
}

#[tokio::test]
async fn proxy_flaky_failures_each_kind_and_seeded() {
    let anvil = Anvil::start().await;
    let proxy = RpcProxy::start(&anvil.url, Faults::default());
    let client = reqwest::Client::new();
    let only = |kind: FlakyFault| Faults {
        flaky: 1.0,
        flaky_kinds: vec![kind],
        ..Faults::default()
    };

    for (kind, status, marker) in [
        (FlakyFault::Http502, 502, "502 Bad Gateway"),
        (
            FlakyFault::Http503,
            503,
            "503 Service Temporarily Unavailable",
        ),
        (FlakyFault::Http504, 504, "504 Gateway Time-out"),
    ] {
        proxy.set_faults(only(kind));
        let (got, content_type, text) = raw(&proxy.url, &call(1, "eth_chainId")).await;
        assert_eq!(
            (got, content_type.as_str()),
            (status, "text/html"),
            "{kind:?}"
        );
        assert!(text.contains(marker), "{text}");
    }

    proxy.set_faults(only(FlakyFault::InternalError));
    let (_, _, text) = raw(&proxy.url, &call(4, "eth_chainId")).await;
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"jsonrpc": "2.0", "id": 4, "error": {"code": -32603, "message": "internal error"}})
    );

    proxy.set_faults(only(FlakyFault::Disconnect));
    let e = client
        .post(&proxy.url)
        .json(&call(5, "eth_chainId"))
        .send()
        .await
        .unwrap_err();
    assert!(e.is_request() || e.is_connect(), "{e:?}");
    // The proxy is still up afterwards.
    proxy.set_faults(Faults::default());
    let (status, _, text) = raw(&proxy.url, &call(6, "eth_chainId")).await;
    assert_eq!((status, text.contains("0x7a69")), (200, true));

    // Restricted to some methods, others pass.
    proxy.set_faults(Faults {
        flaky: 1.0,
        flaky_methods: Some(vec!["eth_getLogs".into()]),
        flaky_kinds: vec![FlakyFault::InternalError],
        ..Faults::default()
    });
    let (_, _, text) = raw(&proxy.url, &call(7, "eth_blockNumber")).await;
    assert!(text.contains("result"), "{text}");
    let (_, _, text) = raw(&proxy.url, &get_logs(8, 0, 0)).await;
    assert!(text.contains("-32603"), "{text}");

    // A seeded probability: some fail, the same ones every time for the same seed.
    let pattern = |seed: u64| {
        let proxy = &proxy;
        async move {
            proxy.set_faults(Faults {
                flaky: 0.3,
                flaky_kinds: vec![FlakyFault::InternalError, FlakyFault::Http503],
                seed,
                ..Faults::default()
            });
            let mut failed = Vec::new();
            for id in 0..40 {
                let (status, _, text) = raw(&proxy.url, &call(id, "eth_chainId")).await;
                failed.push(status != 200 || text.contains("error"));
            }
            failed
        }
    };
    let first = pattern(7).await;
    let again = pattern(7).await;
    let other = pattern(8).await;
    assert_eq!(first, again);
    assert_ne!(first, other);
    let failures = first.iter().filter(|f| **f).count();
    assert!((3..=25).contains(&failures), "{failures} of 40 failed");

    let stats: ProxyStats = proxy.stats();
    assert_eq!(stats.fault_count(Fault::Flaky(FlakyFault::Disconnect)), 1);
    assert_eq!(stats.fault_count(Fault::Flaky(FlakyFault::Http502)), 1);
    assert!(stats.fault_count(Fault::Flaky(FlakyFault::InternalError)) >= 3);
}

/// The proxy needs no runtime of the caller's: a plain test talks to it over a std socket
/// while its own thread serves.
#[test]
fn proxy_serves_blocking_callers() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let anvil = runtime.block_on(Anvil::start());
    let proxy = RpcProxy::start(&anvil.url, Faults::default());

    let body = r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}"#;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
    write!(
        stream,
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""result":"0x7a69""#), "{answer}");
    assert_eq!(proxy.stats().calls_of("eth_chainId"), 1);
    drop(proxy);
    drop(anvil);
}
