//! The chain source's pure decoders on arbitrary bytes: `eth_getLogs` results read into
//! mints (`nifty_scraper::rpc::lane::mints`), and the ABI answers of `tokenURI`/`name`
//! (`decode_string`), `supportsInterface` (`decode_bool`) and Multicall3's `aggregate3`
//! (`decode_aggregate3`). None may panic, and each answer must hold together.
//!
//! Input: the first byte picks the decoder (`l` logs, `s` string, `b` bool, `a` aggregate3;
//! other bytes pick by their value). Logs: a line `FROM TO` (the range asked for), then the
//! JSON array a node returns. aggregate3: one byte of expected calls, then the answer. The
//! others: the raw answer.
#![no_main]

use std::collections::HashSet;

use ethers_core::abi::{self, Token};
use ethers_core::types::{H256, Log};
use libfuzzer_sys::fuzz_target;
use nifty_scraper::rpc::abi::{
    NoString, decode_aggregate3, decode_bool, decode_string, transfer_topic,
};
use nifty_scraper::rpc::lane::mints;
use nifty_state::{Address, TokenId, TokenKey};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode {
        b'l' => logs(rest),
        b's' => string(rest),
        b'b' => boolean(rest),
        b'a' => aggregate(rest),
        m => match m % 4 {
            0 => logs(rest),
            1 => string(rest),
            2 => boolean(rest),
            _ => aggregate(rest),
        },
    }
});

fn logs(data: &[u8]) {
    let (header, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    let header = String::from_utf8_lossy(header);
    let mut fields = header.split_whitespace();
    let from = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0u64);
    let to = fields
        .next()
        .and_then(|f| f.parse().ok())
        .unwrap_or(u64::MAX);
    let Ok(logs) = serde_json::from_slice::<Vec<Log>>(body) else {
        return;
    };
    let Ok(found) = mints(&logs, from, to) else {
        return;
    };
    // Exactly the first log of each token that is an ERC-721 mint, in log order.
    let transfer = transfer_topic();
    let mut seen = HashSet::new();
    let want: Vec<(TokenKey, u64)> = logs
        .iter()
        .filter(|l| {
            l.topics.len() == 4
                && l.topics[0] == transfer
                && l.topics[1] == H256::zero()
                && l.removed != Some(true)
        })
        .map(|l| {
            let key = TokenKey {
                contract: Address(l.address.0),
                token_id: TokenId(ethers_core::types::U256::from_big_endian(
                    l.topics[3].as_bytes(),
                )),
            };
            (key, l.block_number.map_or(u64::MAX, |b| b.as_u64()))
        })
        .filter(|(k, _)| seen.insert(*k))
        .collect();
    let got: Vec<(TokenKey, u64)> = found.iter().map(|m| (m.key, m.block)).collect();
    assert_eq!(got, want, "the mints of the logs");
    for m in &found {
        assert!(
            (from..=to).contains(&m.block),
            "a mint of block {} outside {from}..={to}",
            m.block
        );
    }
}

fn string(data: &[u8]) {
    match decode_string(data) {
        Ok(s) => {
            // What was read is kept as text; encoded as an ABI string it reads the same.
            let again = abi::encode(&[Token::Bytes(s.clone().into_bytes())]);
            assert_eq!(decode_string(&again).as_deref(), Ok(s.as_str()));
        }
        Err(NoString::Empty) => assert!(data.is_empty(), "empty_result for {} bytes", data.len()),
        Err(NoString::Malformed) => assert!(!data.is_empty()),
    }
}

fn boolean(data: &[u8]) {
    let want = data.len() == 32 && data[31] == 1 && data[..31].iter().all(|b| *b == 0);
    assert_eq!(decode_bool(data), want);
}

fn aggregate(data: &[u8]) {
    let Some((&expected, answer)) = data.split_first() else {
        return;
    };
    let expected = usize::from(expected);
    if let Ok(results) = decode_aggregate3(answer, expected) {
        assert_eq!(results.len(), expected);
        let again = abi::encode(&[Token::Array(
            results
                .iter()
                .map(|(ok, b)| Token::Tuple(vec![Token::Bool(*ok), Token::Bytes(b.clone())]))
                .collect(),
        )]);
        assert_eq!(decode_aggregate3(&again, expected), Ok(results));
    }
}
