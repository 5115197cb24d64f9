//! `nifty_scraper::graph::rows::decode_page` on arbitrary bytes as the body of a subgraph's
//! page response. It must never panic; a page it accepts must be strictly after the cursor,
//! in `(blockNumber, id)` order, within the lane, and say where the cursor goes next; what
//! it decoded must come out the same when encoded back into a response; and the client's
//! secrets must not reach a message about the body.
//!
//! Input: a first line `BLOCK ID END FIRST` (the cursor the page was asked after, `-` for an
//! empty id; the lane's last block; `first` of each half), missing or unreadable fields
//! taking defaults, then the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nifty_scraper::ScrapeError;
use nifty_scraper::graph::rows::{PageAsk, Row, decode_page};
use nifty_scraper::paging::{Merged, Ordered};
use nifty_state::Position;
use nifty_upstream::Secrets;
use serde_json::json;

/// Stands for the API key: the dictionary and some seeds hold it.
const SECRET: &str = "fuzzkey0123456789abcdef";

fuzz_target!(|data: &[u8]| {
    let (header, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    let header = String::from_utf8_lossy(header);
    let mut fields = header.split_whitespace();
    let block = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0u64);
    let id = fields
        .next()
        .filter(|f| *f != "-")
        .unwrap_or_default()
        .to_owned();
    let end = fields
        .next()
        .and_then(|f| f.parse().ok())
        .unwrap_or(u64::MAX);
    let first = fields
        .next()
        .and_then(|f| f.parse::<usize>().ok())
        .unwrap_or(1000)
        .min(1000);
    let cursor = Position { block, id };
    let secrets = Secrets::new([SECRET]);
    let ask = PageAsk {
        source: "fuzz",
        cursor: &cursor,
        end,
        page_size: first,
        secrets: &secrets,
    };
    match decode_page(body, end, &ask) {
        Ok(page) => check_page(&page, &ask),
        Err(e) => check_error(&e),
    }
});

fn check_error(e: &ScrapeError) {
    assert!(!e.kind().is_empty());
    // Order errors quote the rows' ids so they can be found (ids never hold the secret:
    // such a row fails as a bad row); every other message may carry server text, which
    // must have been cleaned.
    if !matches!(e, ScrapeError::OrderViolation { .. }) {
        let text = e.to_string();
        assert!(!text.contains(SECRET), "the secret in an error: {text}");
        assert!(!text.contains('\n'), "a server newline in an error: {text}");
    }
}

fn check_page(page: &Merged<Row>, ask: &PageAsk<'_>) {
    let cursor = ask.cursor;
    assert!(
        page.rows.len() <= 2 * ask.page_size,
        "{} rows for first = {}",
        page.rows.len(),
        ask.page_size
    );
    let mut prev = (cursor.block, cursor.id.as_str());
    for r in &page.rows {
        let at = (r.block(), r.id());
        assert!(at > prev, "{at:?} does not follow {prev:?}");
        assert!(r.block() <= ask.end, "{at:?} is past the end {}", ask.end);
        assert_eq!(r.token.graph_id, r.id());
        assert_eq!(r.key.contract, r.contract.0);
        assert_eq!(r.token.source, "fuzz");
        // Stored text never holds the secret, whatever the subgraph sent.
        let stored = format!("{:?} {:?} {:?}", r.token, r.contract, r.key);
        assert!(!stored.contains(SECRET), "the secret in a stored row: {stored}");
        prev = at;
    }
    let want = match page.rows.last() {
        Some(r) => Position {
            block: r.block(),
            id: r.id().to_owned(),
        },
        None => cursor.clone(),
    };
    assert_eq!(page.position, want, "the next cursor");
    if page.rows.is_empty() {
        assert!(page.done, "an empty page that is not the last");
    }

    // Encoded back into the two halves of a response, the rows decode to the same page.
    let (rest, next): (Vec<&Row>, Vec<&Row>) =
        page.rows.iter().partition(|r| r.block() == cursor.block);
    let body = json!({"data": {
        "rest": rest.iter().map(|r| encode(r)).collect::<Vec<_>>(),
        "next": next.iter().map(|r| encode(r)).collect::<Vec<_>>(),
    }});
    let again = decode_page(body.to_string().as_bytes(), ask.end, ask)
        .unwrap_or_else(|e| panic!("the page encoded back does not decode: {e}"));
    assert_eq!(&again, page, "the page encoded back decodes differently");
}

/// A row as the subgraph would send it.
fn encode(r: &Row) -> serde_json::Value {
    let t = &r.token;
    let c = &r.contract.1;
    let hash = t.block_hash.map(|h| {
        let mut s = String::from("0x");
        for b in h {
            s.push_str(&format!("{b:02x}"));
        }
        s
    });
    json!({
        "id": t.graph_id,
        "tokenID": r.key.token_id.to_string(),
        "tokenURI": t.token_uri.clone().unwrap_or_default(),
        "mintTime": t.mint_time.to_string(),
        "blockNumber": t.mint_block.to_string(),
        "blockHash": hash.unwrap_or_default(),
        "owner": {"id": t.owner.map(|a| a.to_string()).unwrap_or_default()},
        "contract": {
            "id": r.key.contract.to_string(),
            "name": c.name,
            "symbol": c.symbol,
            "supportsEIP721Metadata": c.supports_metadata,
        },
    })
}
