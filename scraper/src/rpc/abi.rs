//! The few ABI shapes the chain source speaks: ERC-721 metadata calls, ERC-165, the
//! `Transfer` event, and Multicall3's `aggregate3`. Pure functions over bytes.

use ethers_core::abi::{self, ParamType, Token};
use ethers_core::types::{Address, H256, U256};
use ethers_core::utils::keccak256;

/// The ERC-721 metadata interface id, asked with `supportsInterface`.
pub const METADATA_INTERFACE: [u8; 4] = [0x5b, 0x5e, 0x13, 0x9f];

/// `keccak256("Transfer(address,address,uint256)")`: topic 0 of ERC-721 and ERC-20
/// transfers alike (ERC-721 indexes the token id, so its logs have 4 topics; ERC-20's 3).
pub fn transfer_topic() -> H256 {
    H256(keccak256("Transfer(address,address,uint256)"))
}

/// The selector of a function signature.
pub fn selector(signature: &str) -> [u8; 4] {
    let h = keccak256(signature);
    [h[0], h[1], h[2], h[3]]
}

fn calldata(signature: &str, args: &[Token]) -> Vec<u8> {
    let mut out = selector(signature).to_vec();
    out.extend(abi::encode(args));
    out
}

/// `tokenURI(id)`.
pub fn token_uri(id: U256) -> Vec<u8> {
    calldata("tokenURI(uint256)", &[Token::Uint(id)])
}

/// `name()`.
pub fn name() -> Vec<u8> {
    calldata("name()", &[])
}

/// `symbol()`.
pub fn symbol() -> Vec<u8> {
    calldata("symbol()", &[])
}

/// `supportsInterface(0x5b5e139f)`.
pub fn supports_metadata() -> Vec<u8> {
    calldata(
        "supportsInterface(bytes4)",
        &[Token::FixedBytes(METADATA_INTERFACE.to_vec())],
    )
}

/// Why a call's answer gave no string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoString {
    /// The call returned nothing (no such function behind a fallback, or no code).
    Empty,
    /// The bytes are not an ABI string (nor a `bytes32`, which old contracts return).
    Malformed,
}

impl NoString {
    /// The reason recorded on the token.
    pub fn reason(self) -> &'static str {
        match self {
            NoString::Empty => "empty_result",
            NoString::Malformed => "bad_return",
        }
    }
}

/// Decodes a returned `string` (or an old contract's `bytes32`). Text that is not UTF-8 is
/// kept with replacement characters: it is data to record, not to trust.
pub fn decode_string(data: &[u8]) -> Result<String, NoString> {
    if data.is_empty() {
        return Err(NoString::Empty);
    }
    if let Ok(mut tokens) = abi::decode(&[ParamType::Bytes], data)
        && let Some(Token::Bytes(b)) = tokens.pop()
    {
        return Ok(String::from_utf8_lossy(&b).into_owned());
    }
    if data.len() == 32 {
        let end = data.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
        return Ok(String::from_utf8_lossy(&data[..end]).into_owned());
    }
    Err(NoString::Malformed)
}

/// Decodes a returned `bool`: exactly one word, 0 or 1. Anything else is `false`: a
/// contract that cannot answer ERC-165 plainly does not claim the interface.
pub fn decode_bool(data: &[u8]) -> bool {
    data.len() == 32 && data[..31].iter().all(|b| *b == 0) && data[31] == 1
}

/// `aggregate3(calls)` with every call allowed to fail.
pub fn aggregate3(calls: &[(Address, Vec<u8>)]) -> Vec<u8> {
    let items = calls
        .iter()
        .map(|(to, data)| {
            Token::Tuple(vec![
                Token::Address(*to),
                Token::Bool(true),
                Token::Bytes(data.clone()),
            ])
        })
        .collect();
    calldata("aggregate3((address,bool,bytes)[])", &[Token::Array(items)])
}

/// Decodes `aggregate3`'s `(bool success, bytes returnData)[]`, checking it answers
/// `expected` calls.
pub fn decode_aggregate3(data: &[u8], expected: usize) -> Result<Vec<(bool, Vec<u8>)>, String> {
    let shape = ParamType::Array(Box::new(ParamType::Tuple(vec![
        ParamType::Bool,
        ParamType::Bytes,
    ])));
    let mut tokens = abi::decode(&[shape], data).map_err(|e| format!("aggregate3 answer: {e}"))?;
    let Some(Token::Array(items)) = tokens.pop() else {
        return Err("aggregate3 answer is not an array".into());
    };
    if items.len() != expected {
        return Err(format!(
            "aggregate3 answered {} results for {expected} calls",
            items.len()
        ));
    }
    items
        .into_iter()
        .map(|t| match t {
            Token::Tuple(mut f) if f.len() == 2 => match (f.pop(), f.pop()) {
                (Some(Token::Bytes(b)), Some(Token::Bool(ok))) => Ok((ok, b)),
                _ => Err("aggregate3 result is not (bool, bytes)".into()),
            },
            _ => Err("aggregate3 result is not a tuple".into()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn word(n: u64) -> Vec<u8> {
        abi::encode(&[Token::Uint(n.into())])
    }

    #[test]
    fn selectors_are_the_standard_ones() {
        assert_eq!(selector("tokenURI(uint256)"), [0xc8, 0x7b, 0x56, 0xdd]);
        assert_eq!(selector("name()"), [0x06, 0xfd, 0xde, 0x03]);
        assert_eq!(selector("symbol()"), [0x95, 0xd8, 0x9b, 0x41]);
        assert_eq!(
            selector("supportsInterface(bytes4)"),
            [0x01, 0xff, 0xc9, 0xa7]
        );
        assert_eq!(
            selector("aggregate3((address,bool,bytes)[])"),
            [0x82, 0xad, 0x56, 0xcb]
        );
        assert_eq!(
            format!("{:?}", transfer_topic()),
            "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
        );
        let call = supports_metadata();
        assert_eq!(&call[4..8], &METADATA_INTERFACE);
        assert_eq!(call.len(), 36);
        assert_eq!(token_uri(U256::MAX)[4..], [0xff; 32]);
    }

    #[test]
    fn strings_decode_from_abi_strings_and_bytes32_and_fail_with_a_reason() {
        let s = abi::encode(&[Token::String("ipfs://bafy/1".into())]);
        assert_eq!(decode_string(&s).unwrap(), "ipfs://bafy/1");
        let empty = abi::encode(&[Token::String(String::new())]);
        assert_eq!(decode_string(&empty).unwrap(), "");
        let mut b32 = b"PUNK".to_vec();
        b32.resize(32, 0);
        assert_eq!(decode_string(&b32).unwrap(), "PUNK");
        let bad_utf8 = abi::encode(&[Token::Bytes(vec![0x66, 0xff, 0x6f])]);
        assert_eq!(decode_string(&bad_utf8).unwrap(), "f\u{fffd}o");
        assert_eq!(decode_string(&[]), Err(NoString::Empty));
        assert_eq!(decode_string(&[1, 2, 3]), Err(NoString::Malformed));
        // An offset pointing past the end is not a string.
        let mut lying = word(0x1000);
        lying.extend(word(5));
        assert_eq!(decode_string(&lying), Err(NoString::Malformed));
    }

    #[test]
    fn bools_are_exactly_one_word_of_zero_or_one() {
        assert!(decode_bool(&word(1)));
        assert!(!decode_bool(&word(0)));
        assert!(!decode_bool(&word(2)));
        assert!(!decode_bool(&[]));
        let mut long = word(1);
        long.extend(word(1));
        assert!(!decode_bool(&long));
    }

    #[test]
    fn aggregate3_round_trips_and_checks_the_count() {
        let to = Address::repeat_byte(7);
        let call = aggregate3(&[(to, token_uri(1.into())), (to, name())]);
        assert_eq!(&call[..4], &selector("aggregate3((address,bool,bytes)[])"));
        let answer = abi::encode(&[Token::Array(vec![
            Token::Tuple(vec![Token::Bool(true), Token::Bytes(vec![1, 2])]),
            Token::Tuple(vec![Token::Bool(false), Token::Bytes(vec![])]),
        ])]);
        assert_eq!(
            decode_aggregate3(&answer, 2).unwrap(),
            vec![(true, vec![1, 2]), (false, vec![])]
        );
        assert!(
            decode_aggregate3(&answer, 3)
                .unwrap_err()
                .contains("2 results for 3")
        );
        assert!(decode_aggregate3(&[0; 7], 1).is_err());
    }
}
