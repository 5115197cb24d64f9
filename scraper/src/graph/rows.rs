//! Turning a page response into store records: pure, no I/O.

use std::str::FromStr;

use nifty_state::{Address, Contract, Position, Token, TokenId, TokenKey, TokenStatus};
use nifty_upstream::Secrets;

use super::client::decode_body;
use super::queries::{Page, page};
use crate::error::ScrapeError;
use crate::paging::{Merged, Ordered, merge};

/// One token from the subgraph, ready to commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The store key.
    pub key: TokenKey,
    /// The record.
    pub token: Token,
    /// The token's contract and what the subgraph knows of it.
    pub contract: (Address, Contract),
}

impl Ordered for Row {
    fn block(&self) -> u64 {
        self.token.mint_block
    }
    fn id(&self) -> &str {
        &self.token.graph_id
    }
}

fn hash32(s: &str) -> Option<[u8; 32]> {
    let hex = s.strip_prefix("0x")?;
    // from_str_radix alone would take a sign: "+f" is 15.
    if hex.len() != 64 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
        let pair = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// Converts one row. The fields that place the token (id, contract, tokenID, blockNumber)
/// must parse, or the page fails naming the row; the rest are recorded as far as they
/// parse, because a strange owner or hash must not stop a scrape. Text that is stored
/// (id, URI, names) has every secret masked: a hostile subgraph cannot make nifty keep
/// or serve a key by putting it in a row; text that goes into an error is cleaned.
pub fn to_row(
    r: page::TokenRow,
    source: &str,
    cursor: &Position,
    secrets: &Secrets,
) -> Result<Row, ScrapeError> {
    let bad = |reason: String| ScrapeError::BadRow {
        id: secrets.clean_bounded(&r.id, nifty_upstream::SNIPPET_CHARS),
        cursor: cursor.clone(),
        reason: secrets.clean(&reason),
    };
    let contract = Address::from_str(&r.contract.id).map_err(|e| bad(format!("contract: {e}")))?;
    let token_id = TokenId::from_str(&r.token_id).map_err(|e| bad(format!("tokenID: {e}")))?;
    let block = r.block_number.parse::<u64>().map_err(|_| {
        bad(format!(
            "blockNumber {:?} is not a block number",
            r.block_number
        ))
    })?;
    let key = TokenKey { contract, token_id };
    // The id places the token in cursor order and is the cursor's id: masking it would
    // move the token, so a row whose id holds a secret fails the page instead.
    if matches!(secrets.mask_data(&r.id), std::borrow::Cow::Owned(_)) {
        return Err(bad("the id holds a configured secret".to_owned()));
    }
    let mask = |s: String| match secrets.mask_data(&s) {
        std::borrow::Cow::Borrowed(_) => s,
        std::borrow::Cow::Owned(masked) => masked,
    };
    let token = Token {
        source: source.to_owned(),
        graph_id: r.id,
        token_uri: Some(mask(r.token_uri)),
        mint_block: block,
        mint_time: r.mint_time.parse().unwrap_or(0),
        block_hash: hash32(&r.block_hash),
        owner: Address::from_str(&r.owner.id).ok(),
        status: TokenStatus::Queued,
        reason: None,
        resources: vec![],
    };
    let info = Contract {
        name: r.contract.name.map(mask),
        symbol: r.contract.symbol.map(mask),
        supports_metadata: r.contract.supports_eip721_metadata,
    };
    Ok(Row {
        key,
        token,
        contract: (contract, info),
    })
}

/// Converts both halves of a page, taking the response's strings rather than copying them.
pub fn to_rows(
    data: page::ResponseData,
    source: &str,
    cursor: &Position,
    secrets: &Secrets,
) -> Result<(Vec<Row>, Vec<Row>), ScrapeError> {
    let convert = |rows: Vec<page::TokenRow>| -> Result<Vec<Row>, ScrapeError> {
        rows.into_iter()
            .map(|r| to_row(r, source, cursor, secrets))
            .collect()
    };
    Ok((convert(data.rest)?, convert(data.next)?))
}

/// Where a page was asked from and what it may hold: the lane's side of a page request.
#[derive(Clone, Debug)]
pub struct PageAsk<'a> {
    /// The source's name, recorded on each token.
    pub source: &'a str,
    /// The cursor the page continues from.
    pub cursor: &'a Position,
    /// The last block the lane covers.
    pub end: u64,
    /// `first` of each half of the query.
    pub page_size: usize,
    /// Secrets masked in the rows' text and cleaned from errors.
    pub secrets: &'a Secrets,
}

/// A page's data as the lane commits it: rows converted, merged in cursor order and checked
/// ([`merge`]).
pub fn check_page(data: page::ResponseData, ask: &PageAsk<'_>) -> Result<Merged<Row>, ScrapeError> {
    let (rest, next) = to_rows(data, ask.source, ask.cursor, ask.secrets)?;
    merge(ask.cursor, ask.end, ask.page_size, rest, next)
}

/// A page response body, as the client received it with a 2xx JSON answer, to checked rows:
/// [`decode_body`] then [`check_page`]. `snapshot` is the block the page was asked at. No
/// I/O: this is what the fuzz target `graph` feeds arbitrary bytes.
pub fn decode_page(
    body: &[u8],
    snapshot: u64,
    ask: &PageAsk<'_>,
) -> Result<Merged<Row>, ScrapeError> {
    let data = decode_body::<Page>(body, ask.secrets, Some(snapshot))?;
    check_page(data, ask)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTRACT: &str = "0x00000000000000000000000000000000000000aa";

    fn row(block: u64, token: u64, hash: &str) -> serde_json::Value {
        serde_json::json!({
            "id": format!("{CONTRACT}_{token}"),
            "tokenID": token.to_string(),
            "tokenURI": format!("ipfs://bafy/{token}"),
            "mintTime": "1700000000",
            "blockNumber": block.to_string(),
            "blockHash": hash,
            "owner": {"id": "0x00000000000000000000000000000000000000bb"},
            "contract": {"id": CONTRACT, "name": "A", "symbol": null, "supportsEIP721Metadata": true}
        })
    }

    fn body(rest: &[serde_json::Value], next: &[serde_json::Value]) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"data": {"rest": rest, "next": next}})).unwrap()
    }

    fn ask<'a>(cursor: &'a Position, secrets: &'a Secrets) -> PageAsk<'a> {
        PageAsk {
            source: "main",
            cursor,
            end: 100,
            page_size: 2,
            secrets,
        }
    }

    #[test]
    fn a_page_body_decodes_to_ordered_rows_and_the_next_cursor() {
        let good = format!("0x{}", "ab".repeat(32));
        let cursor = Position {
            block: 5,
            id: format!("{CONTRACT}_1"),
        };
        let b = body(&[row(5, 2, &good)], &[row(7, 1, &good), row(9, 3, "0x12")]);
        let none = Secrets::default();
        let m = decode_page(&b, 50, &ask(&cursor, &none)).unwrap();
        let got: Vec<(u64, &str)> = m.rows.iter().map(|r| (r.block(), r.id())).collect();
        let id = |t: u64| format!("{CONTRACT}_{t}");
        assert_eq!(
            got,
            vec![
                (5, id(2).as_str()),
                (7, id(1).as_str()),
                (9, id(3).as_str())
            ]
        );
        assert_eq!(
            m.position,
            Position {
                block: 9,
                id: id(3)
            }
        );
        assert!(!m.done, "next came back full: more may follow");
        assert_eq!(m.rows[0].token.block_hash, Some([0xab; 32]));
        // A hash that is not 32 bytes is recorded as unknown, not guessed.
        assert_eq!(m.rows[2].token.block_hash, None);
    }

    #[test]
    fn block_hashes_are_exactly_0x_and_64_hex_digits() {
        let cases: &[(String, bool)] = &[
            (format!("0x{}", "0f".repeat(32)), true),
            (format!("0x{}", "0F".repeat(32)), true),
            (format!("0x{}", "+f".repeat(32)), false),
            (format!("0x{}", "-0".repeat(32)), false),
            (format!("0x{}", "0f".repeat(31)), false),
            ("0f".repeat(33), false),
            (format!("0x{}é", "0".repeat(62)), false),
        ];
        for (s, ok) in cases {
            assert_eq!(hash32(s).is_some(), *ok, "{s}");
        }
    }

    #[test]
    fn secrets_in_a_body_stay_out_of_decode_errors() {
        let secrets = Secrets::new(["k3y-0f-the-gateway"]);
        let cursor = Position::start_of(0);
        let bodies: &[&[u8]] = &[
            // serde_json quotes a string where it wanted a list.
            br#"{"data": {"rest": "k3y-0f-the-gateway", "next": []}}"#,
            // A control character inside the secret, dropped from the snippet.
            b"<html>k3y-0f-\nthe-gateway</html>",
            br#"{"errors": [{"message": "bad key k3y-0f-the-gateway"}]}"#,
            // Split by an escaped newline inside a GraphQL message: whole again once the
            // newline is dropped, and the newline cannot start a forged log line.
            br#"{"errors": [{"message": "bad key Bearer k3y-0f-t
he-gateway
INFO forged"}]}"#,
            br#"{"data": {"rest": [{"id": "k3y-0f-the-gateway"}], "next": []}}"#,
        ];
        for b in bodies {
            let err = decode_page(b, 1, &ask(&cursor, &secrets)).unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(
                !shown.contains("k3y-0f") && !shown.contains("the-gateway"),
                "{shown}"
            );
            assert!(!err.to_string().contains('\n'), "{err}");
        }
    }

    #[test]
    fn secrets_in_stored_row_text_are_masked_and_the_rest_kept() {
        let secrets = Secrets::new(["k3y-0f-the-gateway"]);
        let cursor = Position::start_of(4);
        let mut r = row(5, 2, &format!("0x{}", "ab".repeat(32)));
        r["tokenURI"] = "https://host/k3y-0f-the-gateway/2.json".into();
        r["contract"]["name"] = "Name k3y-0f-the-gateway".into();
        r["contract"]["symbol"] = "SYM\n".into();
        let m = decode_page(&body(&[], &[r]), 50, &ask(&cursor, &secrets)).unwrap();
        let row = &m.rows[0];
        assert_eq!(
            row.token.token_uri.as_deref(),
            Some("https://host/<redacted>/2.json")
        );
        assert_eq!(row.contract.1.name.as_deref(), Some("Name <redacted>"));
        assert_eq!(row.contract.1.symbol.as_deref(), Some("SYM\n"));
    }
}
