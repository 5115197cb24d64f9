//! Token metadata: tolerant JSON parsing and the content it references (pure, no I/O).
//!
//! ERC-721 metadata is JSON written by thousands of hands. Parsing accepts what a wallet
//! would show (a byte-order mark, surrounding whitespace, a JSON document encoded a second
//! time as a JSON string) and refuses what no reader could use. Assets come from `image`,
//! `image_url`, `animation_url` and every string nested under `properties` that analyses as
//! content-addressed; hostile documents are bounded by [`MAX_NODES`] and [`MAX_ASSETS`].

use serde_json::Value;

use crate::uri::{Target, analyse};

/// Fields whose value is an asset URI.
pub const ASSET_FIELDS: [&str; 3] = ["image", "image_url", "animation_url"];

/// Most JSON values visited under `properties`: enough for any real collection's nesting,
/// small enough that a hostile document cannot make analysis slow.
pub const MAX_NODES: usize = 10_000;

/// Most assets taken from one document; a token with more is almost surely hostile, and
/// each asset is a pin.
pub const MAX_ASSETS: usize = 64;

/// One asset a document references.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Asset {
    /// Where it was found: `image`, `animation_url`, `properties.files.0.uri`, ...
    pub role: String,
    /// What it points at.
    pub target: Target,
}

/// What a metadata document references.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Assets {
    /// Content-addressed assets (pinnable), in document order, without repeats.
    pub pinnable: Vec<Asset>,
    /// Roles of asset fields that point somewhere not content-addressed (web, data, Arweave).
    pub elsewhere: Vec<String>,
}

/// Why a document is unusable.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum ParseReason {
    /// Not JSON (or not UTF-8).
    InvalidJson,
    /// JSON, but not an object.
    NotAnObject,
}

impl ParseReason {
    /// The reason as stored and counted.
    pub fn name(self) -> &'static str {
        match self {
            ParseReason::InvalidJson => "invalid_json",
            ParseReason::NotAnObject => "not_an_object",
        }
    }
}

/// A document that could not be used.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("{}: {detail}", reason.name())]
pub struct ParseError {
    /// The machine-readable reason.
    pub reason: ParseReason,
    /// The parser's explanation.
    pub detail: String,
}

/// Parses a metadata document into its JSON object.
pub fn parse(bytes: &[u8]) -> Result<serde_json::Map<String, Value>, ParseError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let bytes = bytes.trim_ascii();
    // Trailing NULs come from fixed-size on-chain buffers.
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let value: Value = serde_json::from_slice(&bytes[..end]).map_err(|e| ParseError {
        reason: ParseReason::InvalidJson,
        detail: e.to_string(),
    })?;
    match value {
        Value::Object(map) => Ok(map),
        // A document JSON-encoded twice reads as a string holding the object.
        Value::String(inner) if inner.trim_start().starts_with('{') => {
            match serde_json::from_str::<Value>(&inner) {
                Ok(Value::Object(map)) => Ok(map),
                _ => Err(ParseError {
                    reason: ParseReason::NotAnObject,
                    detail: "a JSON string that does not hold an object".into(),
                }),
            }
        }
        other => Err(ParseError {
            reason: ParseReason::NotAnObject,
            detail: format!("a JSON {}, not an object", kind(&other)),
        }),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The assets a parsed document references.
pub fn assets(doc: &serde_json::Map<String, Value>) -> Assets {
    let mut out = Assets::default();
    for field in ASSET_FIELDS {
        if let Some(Value::String(s)) = doc.get(field) {
            match analyse(s) {
                Ok(a) if matches!(a.target, Target::Ipfs { .. }) => push(&mut out, field, a.target),
                Ok(_) => out.elsewhere.push(field.to_owned()),
                // An unusable asset URI does not make the document unusable.
                Err(_) => {}
            }
        }
    }
    if let Some(props) = doc.get("properties") {
        let mut budget = MAX_NODES;
        walk(props, &mut "properties".to_owned(), &mut budget, &mut out);
    }
    out
}

/// Parses a document and lists its assets.
pub fn extract(bytes: &[u8]) -> Result<Assets, ParseError> {
    parse(bytes).map(|doc| assets(&doc))
}

fn push(out: &mut Assets, role: &str, target: Target) {
    if out.pinnable.len() >= MAX_ASSETS || out.pinnable.iter().any(|a| a.target == target) {
        return;
    }
    out.pinnable.push(Asset {
        role: role.to_owned(),
        target,
    });
}

/// Visits nested values depth-first, taking strings that analyse as IPFS content. Only
/// content-addressed strings count here: `properties` is free-form, and a web URL in it is
/// as likely a homepage as an asset.
fn walk(v: &Value, role: &mut String, budget: &mut usize, out: &mut Assets) {
    if *budget == 0 || out.pinnable.len() >= MAX_ASSETS {
        return;
    }
    *budget -= 1;
    let at = role.len();
    match v {
        Value::String(s) if looks_addressed(s) => {
            if let Ok(a) = analyse(s)
                && matches!(a.target, Target::Ipfs { .. })
            {
                push(out, role, a.target);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                role.push('.');
                role.push_str(&i.to_string());
                walk(item, role, budget, out);
                role.truncate(at);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                role.push('.');
                role.push_str(k);
                walk(item, role, budget, out);
                role.truncate(at);
            }
        }
        _ => {}
    }
}

/// A cheap filter before full analysis: every CID is at least 46 characters, so shorter
/// strings (names, numbers, traits) are skipped without parsing.
fn looks_addressed(s: &str) -> bool {
    s.len() >= 46 && s.len() <= crate::uri::MAX_URI_LEN
}

#[cfg(test)]
mod tests {
    use super::*;
    use cid::Cid;
    use multihash::Multihash;

    fn cid(n: u8) -> String {
        Cid::new_v1(0x70, Multihash::<64>::wrap(0x12, &[n; 32]).unwrap()).to_string()
    }

    fn roles(a: &Assets) -> Vec<(&str, String)> {
        a.pinnable
            .iter()
            .map(|x| (x.role.as_str(), x.target.cid().unwrap().to_string()))
            .collect()
    }

    #[test]
    fn assets_come_from_the_known_fields_and_nested_properties() {
        let (a, b, c, d) = (cid(1), cid(2), cid(3), cid(4));
        let doc = format!(
            r#"{{"name":"x","image":"ipfs://{a}/1.png","animation_url":"https://ipfs.io/ipfs/{b}",
               "image_url":"ipfs://{a}/1.png",
               "properties":{{"files":[{{"uri":"ipfs://{c}/m.glb","type":"model/gltf"}},
                                       {{"uri":"https://example.com/x.png"}}],
                              "creator":{{"avatar":"{d}"}},"edition":3}},
               "external_url":"ipfs://{d}/ignored-field"}}"#
        );
        let got = extract(doc.as_bytes()).unwrap();
        assert_eq!(
            roles(&got),
            vec![
                ("image", a.clone()),
                ("animation_url", b),
                ("properties.creator.avatar", d),
                ("properties.files.0.uri", c),
            ]
        );
        assert!(got.elsewhere.is_empty());
    }

    #[test]
    fn web_and_inline_assets_are_noted_not_pinned() {
        let doc = r#"{"image":"https://example.com/1.png","animation_url":"data:,x","image_url":"ar://bNbA3TEQVL60xlgCcqdz4ZPHFZ711cZ3hmkpGttDt_U"}"#;
        let got = extract(doc.as_bytes()).unwrap();
        assert!(got.pinnable.is_empty());
        assert_eq!(got.elsewhere, ["image", "image_url", "animation_url"]);
        // Broken asset URIs and non-strings are skipped, not fatal.
        let got = extract(br#"{"image":"ipfs://broken","animation_url":7,"properties":null}"#);
        assert_eq!(got.unwrap(), Assets::default());
    }

    #[test]
    fn parsing_tolerates_what_wallets_tolerate() {
        let a = cid(9);
        let ok: Vec<Vec<u8>> = vec![
            format!("\u{feff}{{\"image\":\"ipfs://{a}\"}}").into_bytes(),
            format!("\n  {{\"image\":\"ipfs://{a}\"}}  \n").into_bytes(),
            format!("{{\"image\":\"ipfs://{a}\"}}\0\0\0").into_bytes(),
            serde_json::to_vec(&format!("{{\"image\":\"ipfs://{a}\"}}")).unwrap(),
        ];
        for doc in ok {
            let got = extract(&doc).unwrap_or_else(|e| panic!("{:?}: {e}", doc));
            assert_eq!(roles(&got), vec![("image", a.clone())]);
        }
        let bad: [(&[u8], ParseReason); 9] = [
            (b"", ParseReason::InvalidJson),
            (b"<html>502 Bad Gateway</html>", ParseReason::InvalidJson),
            (br#"{"name":"trunc"#, ParseReason::InvalidJson),
            (b"\xff\xfe{}", ParseReason::InvalidJson),
            (b"[1,2,3]", ParseReason::NotAnObject),
            (br#""text""#, ParseReason::NotAnObject),
            (b"null", ParseReason::NotAnObject),
            (b"42", ParseReason::NotAnObject),
            (br#""{not json""#, ParseReason::NotAnObject),
        ];
        for (doc, reason) in bad {
            assert_eq!(extract(doc).unwrap_err().reason, reason, "{doc:?}");
        }
    }

    #[test]
    fn hostile_documents_stay_bounded() {
        // Deep nesting: serde_json's recursion limit refuses it as invalid JSON.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let doc = format!(r#"{{"properties":{deep}}}"#);
        assert_eq!(
            extract(doc.as_bytes()).unwrap_err().reason,
            ParseReason::InvalidJson
        );
        // Many distinct CIDs: at most MAX_ASSETS are taken.
        let many: Vec<String> = (0..200u8)
            .map(|i| format!("\"ipfs://{}\"", cid(i)))
            .collect();
        let doc = format!(r#"{{"properties":[{}]}}"#, many.join(","));
        assert_eq!(extract(doc.as_bytes()).unwrap().pinnable.len(), MAX_ASSETS);
        // A wide document of non-assets is walked within the node budget.
        let wide: Vec<String> = (0..50_000).map(|i| i.to_string()).collect();
        let doc = format!(r#"{{"properties":[{}]}}"#, wide.join(","));
        assert!(extract(doc.as_bytes()).unwrap().pinnable.is_empty());
    }
}
