//! Turning a page response into store records: pure, no I/O.

use std::str::FromStr;

use nifty_state::{Address, Contract, Position, Token, TokenId, TokenKey, TokenStatus};

use super::queries::page;
use crate::error::ScrapeError;
use crate::paging::Ordered;

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
    if hex.len() != 64 {
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
/// parse, because a strange owner or hash must not stop a scrape.
pub fn to_row(r: page::TokenRow, source: &str, cursor: &Position) -> Result<Row, ScrapeError> {
    let bad = |reason: String| ScrapeError::BadRow {
        id: r.id.clone(),
        cursor: cursor.clone(),
        reason,
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
    let token = Token {
        source: source.to_owned(),
        graph_id: r.id,
        token_uri: Some(r.token_uri),
        mint_block: block,
        mint_time: r.mint_time.parse().unwrap_or(0),
        block_hash: hash32(&r.block_hash),
        owner: Address::from_str(&r.owner.id).ok(),
        status: TokenStatus::Queued,
        reason: None,
        resources: vec![],
    };
    let info = Contract {
        name: r.contract.name,
        symbol: r.contract.symbol,
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
) -> Result<(Vec<Row>, Vec<Row>), ScrapeError> {
    let convert = |rows: Vec<page::TokenRow>| -> Result<Vec<Row>, ScrapeError> {
        rows.into_iter()
            .map(|r| to_row(r, source, cursor))
            .collect()
    };
    Ok((convert(data.rest)?, convert(data.next)?))
}
