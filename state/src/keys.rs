//! Typed keys. Every integer is big-endian so sled's byte order is the natural order.

use std::fmt;
use std::str::FromStr;

use primitive_types::U256;
use serde::{Deserialize, Serialize};

use crate::error::StateError;

/// A 20-byte contract or owner address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Address(pub [u8; 20]);

impl Address {
    /// The all-zero address (mints come from it).
    pub const ZERO: Address = Address([0; 20]);
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("0x")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Address {
    type Err = StateError;

    /// Parses `0x` followed by 40 hex digits, either case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| StateError::Invalid {
            what: "address",
            value: s.to_owned(),
            reason: reason.to_owned(),
        };
        let hex = s
            .strip_prefix("0x")
            .or_else(|| s.strip_prefix("0X"))
            .ok_or_else(|| invalid("must start with 0x"))?;
        if hex.len() != 40 {
            return Err(invalid("must have 40 hex digits after 0x"));
        }
        let mut out = [0u8; 20];
        for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
            let hi = hex_digit(chunk[0]).ok_or_else(|| invalid("not a hex digit"))?;
            let lo = hex_digit(chunk[1]).ok_or_else(|| invalid("not a hex digit"))?;
            out[i] = hi << 4 | lo;
        }
        Ok(Address(out))
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Lowercase hex of any bytes, for messages and keys in errors.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// An ERC-721 token id: any value of a uint256.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TokenId(pub U256);

impl TokenId {
    /// The id as 32 big-endian bytes.
    pub fn to_be_bytes(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        self.0.to_big_endian(&mut out);
        out
    }

    /// The id from 32 big-endian bytes.
    pub fn from_be_bytes(bytes: [u8; 32]) -> Self {
        TokenId(U256::from_big_endian(&bytes))
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for TokenId {
    type Err = StateError;

    /// Parses a decimal uint256 (how subgraphs send BigInt) or `0x` hex.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| StateError::Invalid {
            what: "token id",
            value: s.to_owned(),
            reason: reason.to_owned(),
        };
        if s.is_empty() {
            return Err(invalid("empty"));
        }
        if let Some(hex) = s.strip_prefix("0x") {
            if hex.is_empty() || hex.len() > 64 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(invalid("not a uint256 in hex"));
            }
            return U256::from_str_radix(hex, 16)
                .map(TokenId)
                .map_err(|_| invalid("not a uint256 in hex"));
        }
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(invalid("not a decimal uint256"));
        }
        U256::from_dec_str(s)
            .map(TokenId)
            .map_err(|_| invalid("larger than 2^256-1"))
    }
}

impl Serialize for TokenId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_be_bytes().serialize(s)
    }
}

impl<'de> Deserialize<'de> for TokenId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <[u8; 32]>::deserialize(d).map(TokenId::from_be_bytes)
    }
}

/// Key of the `tokens` tree: contract (20 B) ‖ token id (32 B, big-endian).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct TokenKey {
    /// The ERC-721 contract.
    pub contract: Address,
    /// The token id within that contract.
    pub token_id: TokenId,
}

impl TokenKey {
    /// Length of an encoded key.
    pub const LEN: usize = 52;

    /// The key bytes.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..20].copy_from_slice(&self.contract.0);
        out[20..].copy_from_slice(&self.token_id.to_be_bytes());
        out
    }

    /// Reads key bytes back.
    pub fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        if bytes.len() != Self::LEN {
            return Err(StateError::Corrupt {
                tree: "tokens",
                key: hex(bytes),
                reason: format!("key is {} bytes, expected {}", bytes.len(), Self::LEN),
            });
        }
        let mut contract = [0u8; 20];
        contract.copy_from_slice(&bytes[..20]);
        let mut id = [0u8; 32];
        id.copy_from_slice(&bytes[20..]);
        Ok(TokenKey {
            contract: Address(contract),
            token_id: TokenId::from_be_bytes(id),
        })
    }

    /// The subgraph's id for this token: `<contract>_<tokenId>` (lowercase hex, decimal id).
    pub fn graph_id(&self) -> String {
        format!("{}_{}", self.contract, self.token_id)
    }
}

impl fmt::Display for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.contract, self.token_id)
    }
}

/// Which queue of the outbox an item belongs to. The outbox key starts with this byte so
/// each worker reads its own queue in order without stepping over the other's items.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub enum Queue {
    /// Tokens waiting for URI analysis and metadata fetch.
    Analyse,
    /// CIDs waiting to be pinned.
    Pin,
}

impl Queue {
    /// Every queue, in key order.
    pub const ALL: [Queue; 2] = [Queue::Analyse, Queue::Pin];

    /// The key prefix byte.
    pub fn tag(self) -> u8 {
        match self {
            Queue::Analyse => 1,
            Queue::Pin => 2,
        }
    }

    /// The name used in counters and reports.
    pub fn name(self) -> &'static str {
        match self {
            Queue::Analyse => "analyse",
            Queue::Pin => "pin",
        }
    }

    fn from_tag(tag: u8) -> Option<Queue> {
        Queue::ALL.into_iter().find(|q| q.tag() == tag)
    }
}

/// Key of the `outbox` tree: queue (1 B) ‖ sequence number (8 B, big-endian).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct OutboxKey {
    /// The queue.
    pub queue: Queue,
    /// Position in the queue; assigned in commit order, never reused.
    pub seq: u64,
}

impl OutboxKey {
    /// The key bytes.
    pub fn encode(&self) -> [u8; 9] {
        let mut out = [0u8; 9];
        out[0] = self.queue.tag();
        out[1..].copy_from_slice(&self.seq.to_be_bytes());
        out
    }

    /// Reads key bytes back.
    pub fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        let corrupt = |reason: &str| StateError::Corrupt {
            tree: "outbox",
            key: hex(bytes),
            reason: reason.to_owned(),
        };
        if bytes.len() != 9 {
            return Err(corrupt("key is not 9 bytes"));
        }
        let queue = Queue::from_tag(bytes[0]).ok_or_else(|| corrupt("unknown queue tag"))?;
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&bytes[1..]);
        Ok(OutboxKey {
            queue,
            seq: u64::from_be_bytes(seq),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> TokenId {
        s.parse().unwrap()
    }

    const MAX: &str =
        "115792089237316195423570985008687907853269984665640564039457584007913129639935";

    #[test]
    fn token_ids_parse_or_name_the_problem() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("0", Ok("0")),
            ("1", Ok("1")),
            ("007", Ok("7")),
            (MAX, Ok(MAX)),
            ("0xff", Ok("255")),
            ("0x", Err("not a uint256 in hex")),
            ("", Err("empty")),
            ("-1", Err("not a decimal uint256")),
            ("1.5", Err("not a decimal uint256")),
            (" 1", Err("not a decimal uint256")),
            ("1e3", Err("not a decimal uint256")),
            (
                "115792089237316195423570985008687907853269984665640564039457584007913129639936",
                Err("larger than 2^256-1"),
            ),
        ];
        for (input, want) in cases {
            let got = input.parse::<TokenId>().map(|t| t.to_string());
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(&g, w, "input {input:?}"),
                (Err(StateError::Invalid { reason, .. }), Err(w)) => {
                    assert_eq!(&reason, w, "input {input:?}")
                }
                (g, w) => panic!("input {input:?}: got {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn token_key_byte_order_is_numeric_order() {
        // Each row must sort strictly before the next both as numbers and as key bytes.
        let a = "0x0000000000000000000000000000000000000001";
        let b = "0x00000000000000000000000000000000000000ff";
        let c = "0xff00000000000000000000000000000000000000";
        let rows = [
            (a, "0"),
            (a, "1"),
            (a, "2"),
            (a, "255"),
            (a, "256"),
            (a, "65536"),
            (a, "18446744073709551615"),                    // u64::MAX
            (a, "18446744073709551616"),                    // u64::MAX + 1
            (a, "340282366920938463463374607431768211456"), // 2^128
            (a, MAX),
            (b, "0"),
            (b, MAX),
            (c, "0"),
        ];
        let keys: Vec<TokenKey> = rows
            .iter()
            .map(|(c, t)| TokenKey {
                contract: c.parse().unwrap(),
                token_id: id(t),
            })
            .collect();
        for w in keys.windows(2) {
            assert!(w[0] < w[1], "{} < {}", w[0], w[1]);
            assert!(
                w[0].encode() < w[1].encode(),
                "bytes of {} < {}",
                w[0],
                w[1]
            );
            assert_eq!(TokenKey::decode(&w[0].encode()).unwrap(), w[0]);
        }
        // Decimal strings do not sort numerically; the bytes do.
        assert!("10".as_bytes() < "9".as_bytes());
        assert!(id("9").to_be_bytes() < id("10").to_be_bytes());
    }

    #[test]
    fn addresses_round_trip_and_reject_bad_text() {
        let cases: &[(&str, bool)] = &[
            ("0x5Af0D9827E0c53E4799BB226655A1de152A425a5", true),
            ("0x0000000000000000000000000000000000000000", true),
            ("5af0d9827e0c53e4799bb226655a1de152a425a5", false),
            ("0x5af0d9827e0c53e4799bb226655a1de152a425", false),
            ("0x5af0d9827e0c53e4799bb226655a1de152a425a5aa", false),
            ("0xzzf0d9827e0c53e4799bb226655a1de152a425a5", false),
            ("0xé0d9827e0c53e4799bb226655a1de152a425a5", false),
        ];
        for (text, ok) in cases {
            let got = text.parse::<Address>();
            assert_eq!(got.is_ok(), *ok, "{text}: {got:?}");
            if let Ok(a) = got {
                assert_eq!(a.to_string(), text.to_lowercase());
            }
        }
    }

    #[test]
    fn outbox_keys_group_by_queue_then_sequence() {
        let keys = [
            OutboxKey {
                queue: Queue::Analyse,
                seq: 1,
            },
            OutboxKey {
                queue: Queue::Analyse,
                seq: 256,
            },
            OutboxKey {
                queue: Queue::Analyse,
                seq: u64::MAX,
            },
            OutboxKey {
                queue: Queue::Pin,
                seq: 0,
            },
            OutboxKey {
                queue: Queue::Pin,
                seq: 2,
            },
        ];
        for w in keys.windows(2) {
            assert!(w[0].encode() < w[1].encode());
            assert_eq!(OutboxKey::decode(&w[0].encode()).unwrap(), w[0]);
        }
        assert!(OutboxKey::decode(&[9, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(OutboxKey::decode(&[1, 0]).is_err());
    }

    #[test]
    fn graph_id_is_lowercase_contract_and_decimal_id() {
        let k = TokenKey {
            contract: "0x5AF0D9827E0C53E4799BB226655A1DE152A425A5"
                .parse()
                .unwrap(),
            token_id: id("0x10"),
        };
        assert_eq!(
            k.graph_id(),
            "0x5af0d9827e0c53e4799bb226655a1de152a425a5_16"
        );
    }
}
