//! What a token URI points at: pure classification, no I/O.
//!
//! Token URIs in the wild name the same content in many ways: `ipfs://<cid>/path`, the
//! `ipfs://ipfs/<cid>` mistake, path gateways (`https://host/ipfs/<cid>/path`), subdomain
//! gateways (`https://<cid>.ipfs.host/path`), bare CIDs, inline `data:` documents, Arweave
//! ids and plain web URLs. [`analyse`] maps each to a [`Target`]: content-addressed targets
//! carry the root CID (what gets pinned) and the path inside it; the gateway a URI was
//! written against is recorded but never used to fetch (the configured gateway is).

use std::fmt;

use base64::Engine as _;
use cid::Cid;
use url::Url;

/// Longest URI analysed; longer ones (usually inline images) are analysed only if they are
/// `data:` URIs, which are bounded by [`MAX_DATA_BYTES`] instead.
pub const MAX_URI_LEN: usize = 8 * 1024;

/// Largest decoded `data:` document accepted (the same cap as fetched metadata).
pub const MAX_DATA_BYTES: usize = 1024 * 1024;

/// What a URI points at.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Target {
    /// Content on IPFS: a root CID and a path inside it.
    Ipfs {
        /// The root CID: what gets pinned.
        cid: Cid,
        /// The path below the root, without a leading `/` (empty for the root itself).
        path: String,
    },
    /// A mutable IPNS name: fetchable through a gateway, not pinnable by itself.
    Ipns {
        /// The name (a key CID or a DNSLink domain).
        name: String,
        /// The path below it, without a leading `/`.
        path: String,
    },
    /// An Arweave transaction (permanent storage: nothing to pin).
    Arweave {
        /// The 43-character base64url transaction id.
        id: String,
        /// The path below it, without a leading `/`.
        path: String,
    },
    /// An inline document.
    Data {
        /// The media type, lower case, without parameters (`application/json`).
        media_type: String,
        /// The decoded bytes.
        body: Vec<u8>,
    },
    /// A location on the web that is not content-addressed.
    Web(Url),
}

impl Target {
    /// The root CID to pin, for IPFS targets.
    pub fn cid(&self) -> Option<&Cid> {
        match self {
            Target::Ipfs { cid, .. } => Some(cid),
            _ => None,
        }
    }
}

/// An analysed URI.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Analysed {
    /// What it points at.
    pub target: Target,
    /// The host of the gateway the URI names, for gateway URLs (`ipfs.io`, `dweb.link`).
    pub gateway_host: Option<String>,
}

/// Why a URI could not be analysed: the machine-readable reason stored with the token.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum UriReason {
    /// Nothing but whitespace.
    Empty,
    /// An IPFS URI whose CID does not decode.
    InvalidCid,
    /// A scheme nifty cannot fetch (`ftp:`, `javascript:`, a typo such as `htp:`).
    UnsupportedScheme,
    /// Not a URI, or missing a required part.
    Malformed,
    /// A `data:` URI that does not decode.
    InvalidDataUri,
    /// Longer than [`MAX_URI_LEN`] (or a `data:` body over [`MAX_DATA_BYTES`]).
    TooLong,
}

impl UriReason {
    /// The reason as stored and counted.
    pub fn name(self) -> &'static str {
        match self {
            UriReason::Empty => "empty",
            UriReason::InvalidCid => "invalid_cid",
            UriReason::UnsupportedScheme => "unsupported_scheme",
            UriReason::Malformed => "malformed",
            UriReason::InvalidDataUri => "invalid_data_uri",
            UriReason::TooLong => "too_long",
        }
    }
}

/// A URI that could not be analysed: the reason and a human detail.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("{}: {detail}", reason.name())]
pub struct UriError {
    /// The machine-readable reason.
    pub reason: UriReason,
    /// What exactly was wrong.
    pub detail: String,
}

fn fail<T>(reason: UriReason, detail: impl Into<String>) -> Result<T, UriError> {
    Err(UriError {
        reason,
        detail: detail.into(),
    })
}

/// Classifies a token URI.
pub fn analyse(uri: &str) -> Result<Analysed, UriError> {
    let uri = uri.trim();
    if uri.is_empty() {
        return fail(UriReason::Empty, "the URI is empty");
    }
    let plain = |target| {
        Ok(Analysed {
            target,
            gateway_host: None,
        })
    };
    let Some((scheme, rest)) = split_scheme(uri) else {
        return no_scheme(uri);
    };
    if scheme != "data" && uri.len() > MAX_URI_LEN {
        return fail(
            UriReason::TooLong,
            format!("{} bytes, more than {MAX_URI_LEN}", uri.len()),
        );
    }
    match scheme.as_str() {
        "ipfs" => plain(ipfs_uri(rest)?),
        "ipns" => {
            let rest = authority_form(rest, "ipns")?;
            let rest = strip_prefix_ci(rest, "ipns/").unwrap_or(rest);
            let (name, path) = split_path(rest);
            if name.is_empty() {
                return fail(UriReason::Malformed, "ipns:// without a name");
            }
            plain(Target::Ipns {
                name: name.to_owned(),
                path,
            })
        }
        "ar" => {
            let rest = authority_form(rest, "ar")?;
            let (id, path) = split_path(rest);
            if !is_arweave_id(id) {
                return fail(
                    UriReason::Malformed,
                    format!("{id:?} is not a 43-character Arweave transaction id"),
                );
            }
            plain(Target::Arweave {
                id: id.to_owned(),
                path,
            })
        }
        "data" => plain(data_uri(rest)?),
        "http" | "https" => web_uri(uri),
        other => fail(
            UriReason::UnsupportedScheme,
            format!("scheme {other:?} is not one nifty fetches"),
        ),
    }
}

/// `scheme:` and the rest, the scheme lower-cased; `None` when the text has no scheme.
fn split_scheme(uri: &str) -> Option<(String, &str)> {
    let colon = uri.find(':')?;
    let scheme = &uri[..colon];
    let mut chars = scheme.chars();
    let first = chars.next()?;
    let valid = first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then(|| (scheme.to_ascii_lowercase(), &uri[colon + 1..]))
}

/// The part after `scheme://`, refusing `scheme:/x` and `scheme:x`.
fn authority_form<'a>(rest: &'a str, scheme: &str) -> Result<&'a str, UriError> {
    match rest.strip_prefix("//") {
        Some(r) => Ok(r),
        None => fail(
            UriReason::Malformed,
            format!("{scheme}: must be followed by //"),
        ),
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// Splits `first/rest?query#fragment` into `first` and `rest` (query and fragment dropped:
/// gateways ignore them for content, and they do not change what is pinned).
fn split_path(s: &str) -> (&str, String) {
    let s = s.split(['?', '#']).next().unwrap_or_default();
    match s.split_once('/') {
        Some((first, rest)) => (first, rest.trim_matches('/').to_owned()),
        None => (s, String::new()),
    }
}

/// Decodes a CID written in a URI (percent-encoding allowed).
fn parse_cid(text: &str) -> Result<Cid, UriError> {
    let decoded = percent_encoding::percent_decode_str(text).decode_utf8_lossy();
    let text = decoded.trim();
    if text.is_empty() {
        return fail(UriReason::InvalidCid, "no CID");
    }
    Cid::try_from(text).or_else(
        |e| match fail(UriReason::InvalidCid, format!("{text:?}: {e}")) {
            // Base32 CIDv1 is case-insensitive; some writers upper-case it without the `B`
            // multibase prefix that says so.
            Err(err) if text.starts_with("BAF") => {
                Cid::try_from(text.to_ascii_lowercase().as_str()).map_err(|_| err)
            }
            other => other,
        },
    )
}

/// `ipfs://…` after the scheme.
fn ipfs_uri(rest: &str) -> Result<Target, UriError> {
    let rest = authority_form(rest, "ipfs")?;
    // `ipfs://ipfs/<cid>` is a common mistake that gateways tolerate, and so do we.
    let rest = strip_prefix_ci(rest, "ipfs/").unwrap_or(rest);
    let (cid, path) = split_path(rest);
    if cid.is_empty() {
        return fail(UriReason::InvalidCid, "ipfs:// without a CID");
    }
    Ok(Target::Ipfs {
        cid: parse_cid(cid)?,
        path,
    })
}

/// Text with no scheme: a bare CID (optionally with a path) or `/ipfs/<cid>/…`.
fn no_scheme(uri: &str) -> Result<Analysed, UriError> {
    if uri.len() > MAX_URI_LEN {
        return fail(UriReason::TooLong, format!("{} bytes", uri.len()));
    }
    let trimmed = uri.trim_start_matches('/');
    let (target, gateway_host) = if let Some(rest) = strip_prefix_ci(trimmed, "ipfs/") {
        let (cid, path) = split_path(rest);
        (
            Target::Ipfs {
                cid: parse_cid(cid)?,
                path,
            },
            None,
        )
    } else {
        let (first, path) = split_path(trimmed);
        match parse_cid(first) {
            Ok(cid)
                if first.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && !first.contains(['.', ' ']) =>
            {
                (Target::Ipfs { cid, path }, None)
            }
            _ => {
                return fail(
                    UriReason::Malformed,
                    format!("{:?} has no scheme and is not a CID", clip(uri)),
                );
            }
        }
    };
    Ok(Analysed {
        target,
        gateway_host,
    })
}

/// An `http(s)` URL: a path or subdomain gateway, or a plain web location.
fn web_uri(uri: &str) -> Result<Analysed, UriError> {
    let url = match Url::parse(uri) {
        Ok(u) => u,
        Err(e) => return fail(UriReason::Malformed, format!("{:?}: {e}", clip(uri))),
    };
    let Some(host) = url.host_str().map(str::to_owned) else {
        return fail(UriReason::Malformed, "an http(s) URL without a host");
    };
    let gateway = |target| {
        Ok(Analysed {
            target,
            gateway_host: Some(host.clone()),
        })
    };
    // Subdomain gateway: `<cid>.ipfs.<host>` or `<name>.ipns.<host>`.
    let labels: Vec<&str> = host.split('.').collect();
    if labels.len() >= 3 {
        let path = url.path().trim_matches('/').to_owned();
        match labels[1] {
            "ipfs" => {
                let label = labels[0];
                if label.starts_with("qm") && label.len() == 46 {
                    // Host names are case-insensitive and URL parsing lower-cases them,
                    // which destroys base58: a CIDv0 cannot be a subdomain.
                    return fail(
                        UriReason::InvalidCid,
                        format!("{label:?}: a CIDv0 cannot be a subdomain (use CIDv1)"),
                    );
                }
                return gateway(Target::Ipfs {
                    cid: parse_cid(label)?,
                    path,
                });
            }
            "ipns" => {
                return gateway(Target::Ipns {
                    name: labels[0].to_owned(),
                    path,
                });
            }
            _ => {}
        }
    }
    // Path gateway: `/ipfs/<cid>/…` or `/ipns/<name>/…`. A first segment that is not a CID
    // means the URL is not a gateway URL after all.
    let mut segments = url.path().trim_start_matches('/').splitn(3, '/');
    let kind = segments.next().unwrap_or_default();
    let first = segments.next().unwrap_or_default();
    let path = segments.next().unwrap_or_default().trim_matches('/');
    if kind == "ipfs"
        && let Ok(cid) = parse_cid(first)
    {
        return gateway(Target::Ipfs {
            cid,
            path: path.to_owned(),
        });
    }
    if kind == "ipns" && !first.is_empty() {
        return gateway(Target::Ipns {
            name: first.to_owned(),
            path: path.to_owned(),
        });
    }
    Ok(Analysed {
        target: Target::Web(url),
        gateway_host: None,
    })
}

/// `data:[<media type>][;base64],<data>` after the scheme (RFC 2397).
fn data_uri(rest: &str) -> Result<Target, UriError> {
    let Some((header, payload)) = rest.split_once(',') else {
        return fail(UriReason::InvalidDataUri, "no comma before the data");
    };
    let mut params = header.split(';').map(str::trim);
    let media_type = params.next().unwrap_or_default().to_ascii_lowercase();
    let media_type = if media_type.is_empty() {
        "text/plain".to_owned()
    } else {
        media_type
    };
    let base64 = params.any(|p| p.eq_ignore_ascii_case("base64"));
    let body = if base64 {
        // Writers differ: standard or URL-safe alphabet, with or without padding, line
        // breaks, and percent-encoded `+`, `/` and `=`.
        let text = percent_encoding::percent_decode_str(payload).decode_utf8_lossy();
        let compact: String = text
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .map(|c| match c {
                '-' => '+',
                '_' => '/',
                c => c,
            })
            .collect();
        if compact.len() / 4 * 3 > MAX_DATA_BYTES {
            return fail(UriReason::TooLong, "the data is larger than 1 MiB");
        }
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(compact.trim_end_matches('='))
            .map_err(|e| UriError {
                reason: UriReason::InvalidDataUri,
                detail: format!("bad base64: {e}"),
            })?
    } else {
        let body: Vec<u8> = percent_encoding::percent_decode_str(payload).collect();
        if body.len() > MAX_DATA_BYTES {
            return fail(UriReason::TooLong, "the data is larger than 1 MiB");
        }
        body
    };
    Ok(Target::Data { media_type, body })
}

fn is_arweave_id(id: &str) -> bool {
    id.len() == 43
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The start of a long value, for messages.
fn clip(s: &str) -> Clipped<'_> {
    Clipped(s)
}

/// Displays at most 80 characters of a value.
struct Clipped<'a>(&'a str);

impl fmt::Debug for Clipped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(80) {
            Some((i, _)) => write!(f, "{:?}…", &self.0[..i]),
            None => write!(f, "{:?}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use multihash::Multihash;

    /// A CIDv0, a dag-pb CIDv1 and a raw CIDv1, all over the same digest, as strings.
    fn cids() -> (String, String, String) {
        let mh = Multihash::<64>::wrap(0x12, &[7u8; 32]).unwrap();
        (
            Cid::new_v0(mh).unwrap().to_string(),
            Cid::new_v1(0x70, mh).to_string(),
            Cid::new_v1(0x55, mh).to_string(),
        )
    }

    /// What a case should come to: `I` ipfs (cid placeholder, path, gateway host), `N`
    /// ipns, `A` arweave, `D` data (media type, body), `W` web, `E` an error reason.
    enum Want {
        I(&'static str, &'static str, Option<&'static str>),
        N(&'static str, &'static str),
        A(&'static str),
        D(&'static str, &'static str),
        W(&'static str),
        E(UriReason),
    }
    use Want::*;

    const AR: &str = "bNbA3TEQVL60xlgCcqdz4ZPHFZ711cZ3hmkpGttDt_U";

    fn cases() -> Vec<(&'static str, Want)> {
        vec![
            // ipfs:// forms
            ("ipfs://{v0}", I("v0", "", None)),
            ("ipfs://{v1}", I("v1", "", None)),
            ("ipfs://{raw}", I("raw", "", None)),
            ("ipfs://{v0}/1.json", I("v0", "1.json", None)),
            ("ipfs://{v1}/metadata/42", I("v1", "metadata/42", None)),
            ("ipfs://{v1}/", I("v1", "", None)),
            ("ipfs://{v1}//", I("v1", "", None)),
            ("ipfs://{v1}/7/", I("v1", "7", None)),
            ("ipfs://{v1}//1.json", I("v1", "1.json", None)),
            (
                "https://ipfs.io/ipfs/{v1}//1.json",
                I("v1", "1.json", Some("ipfs.io")),
            ),
            ("/ipfs/{v0}//a", I("v0", "a", None)),
            ("ipns://name//x", N("name", "x")),
            ("\u{0}{v1}", E(UriReason::Malformed)),
            ("ipfs://ipfs/{v0}", I("v0", "", None)),
            ("ipfs://ipfs/{v1}/3.json", I("v1", "3.json", None)),
            ("IPFS://{v1}/3", I("v1", "3", None)),
            ("ipfs://IPFS/{v1}", I("v1", "", None)),
            ("ipfs://{V1}", I("v1", "", None)),
            ("ipfs://{v1}/a%20b.json", I("v1", "a%20b.json", None)),
            ("ipfs://{v1}/ünïcödé.json", I("v1", "ünïcödé.json", None)),
            (
                "ipfs://{v1}/1.json?filename=1.json",
                I("v1", "1.json", None),
            ),
            ("ipfs://{v1}#frag", I("v1", "", None)),
            ("  ipfs://{v0}/5  ", I("v0", "5", None)),
            ("\tipfs://{v0}\n", I("v0", "", None)),
            ("\u{3000}ipfs://{v0}\u{3000}", I("v0", "", None)),
            ("ipfs://%20{v0}", I("v0", "", None)),
            ("ipfs://notacid", E(UriReason::InvalidCid)),
            ("ipfs://{v0short}", E(UriReason::InvalidCid)),
            ("ipfs://", E(UriReason::InvalidCid)),
            ("ipfs://ipfs/", E(UriReason::InvalidCid)),
            ("ipfs:/{v0}", E(UriReason::Malformed)),
            ("ipfs:{v0}", E(UriReason::Malformed)),
            ("ipfs://Qm{v0}", E(UriReason::InvalidCid)),
            // path gateways
            ("https://ipfs.io/ipfs/{v0}", I("v0", "", Some("ipfs.io"))),
            ("https://ipfs.io/ipfs/{v0}/", I("v0", "", Some("ipfs.io"))),
            (
                "https://ipfs.io/ipfs/{v1}/12",
                I("v1", "12", Some("ipfs.io")),
            ),
            (
                "https://gateway.pinata.cloud/ipfs/{v0}/meta/9.json",
                I("v0", "meta/9.json", Some("gateway.pinata.cloud")),
            ),
            (
                "http://cloudflare-ipfs.com/ipfs/{v1}",
                I("v1", "", Some("cloudflare-ipfs.com")),
            ),
            (
                "https://nftstorage.link/ipfs/{raw}?filename=x.png",
                I("raw", "", Some("nftstorage.link")),
            ),
            (
                "https://ipfs.io:443/ipfs/{v1}/x",
                I("v1", "x", Some("ipfs.io")),
            ),
            ("HTTPS://IPFS.IO/ipfs/{v0}", I("v0", "", Some("ipfs.io"))),
            (
                "https://mygateway.example/ipfs/{v1}/a%2Fb",
                I("v1", "a%2Fb", Some("mygateway.example")),
            ),
            (
                "https://ipfs.io/ipns/k51qzi5uqu5dl/1",
                N("k51qzi5uqu5dl", "1"),
            ),
            (
                "https://example.com/ipfs/notacid/1.json",
                W("https://example.com/ipfs/notacid/1.json"),
            ),
            // subdomain gateways
            (
                "https://{v1}.ipfs.dweb.link/meta.json",
                I("v1", "meta.json", Some("{v1}.ipfs.dweb.link")),
            ),
            (
                "https://{v1}.ipfs.nftstorage.link/",
                I("v1", "", Some("{v1}.ipfs.nftstorage.link")),
            ),
            (
                "https://{V1}.ipfs.dweb.link/x",
                I("v1", "x", Some("{v1}.ipfs.dweb.link")),
            ),
            ("https://{v0}.ipfs.dweb.link/", E(UriReason::InvalidCid)),
            ("https://notacid.ipfs.dweb.link/", E(UriReason::InvalidCid)),
            ("https://en.ipns.dweb.link/wiki", N("en", "wiki")),
            // bare CIDs and gateway paths
            ("{v0}", I("v0", "", None)),
            ("{v1}", I("v1", "", None)),
            ("{v0}/7.json", I("v0", "7.json", None)),
            ("/ipfs/{v0}/7", I("v0", "7", None)),
            ("ipfs/{v1}", I("v1", "", None)),
            ("  {raw}  ", I("raw", "", None)),
            // ipns
            ("ipns://k51qzi5uqu5dl/3.json", N("k51qzi5uqu5dl", "3.json")),
            ("ipns://app.example.eth", N("app.example.eth", "")),
            ("ipns://", E(UriReason::Malformed)),
            // arweave
            ("ar://{ar}", A("")),
            ("ar://{ar}/1.json", A("1.json")),
            ("ar://short", E(UriReason::Malformed)),
            // data
            (
                "data:application/json;base64,eyJuYW1lIjoiYSJ9",
                D("application/json", r#"{"name":"a"}"#),
            ),
            (
                "data:application/json;base64,eyJuYW1lIjoiYSJ9\n",
                D("application/json", r#"{"name":"a"}"#),
            ),
            (
                "data:application/json;base64,eyJu YW1l IjoiYSJ9",
                D("application/json", r#"{"name":"a"}"#),
            ),
            (
                "data:application/json;utf8;base64,eyJuYW1lIjoiYSJ9",
                D("application/json", r#"{"name":"a"}"#),
            ),
            (
                "data:application/json,%7B%22name%22%3A%22a%22%7D",
                D("application/json", r#"{"name":"a"}"#),
            ),
            (
                r#"data:application/json;utf8,{"name":"a b"}"#,
                D("application/json", r#"{"name":"a b"}"#),
            ),
            (
                "DATA:Application/JSON;charset=utf-8,{}",
                D("application/json", "{}"),
            ),
            ("data:,hello", D("text/plain", "hello")),
            (
                "data:image/svg+xml;base64,PHN2Zy8+",
                D("image/svg+xml", "<svg/>"),
            ),
            (
                "data:application/json;base64,eyJuYW1lIjoiw6kifQ",
                D("application/json", r#"{"name":"é"}"#),
            ),
            ("data:application/json;base64", E(UriReason::InvalidDataUri)),
            (
                "data:application/json;base64,@@@",
                E(UriReason::InvalidDataUri),
            ),
            // web
            (
                "https://api.example.org/token/1",
                W("https://api.example.org/token/1"),
            ),
            (
                "http://example.com/meta/2?x=1",
                W("http://example.com/meta/2?x=1"),
            ),
            (
                "https://例え.jp/トークン/1",
                W("https://xn--r8jz45g.jp/%E3%83%88%E3%83%BC%E3%82%AF%E3%83%B3/1"),
            ),
            ("https://127.0.0.1:8080/1", W("https://127.0.0.1:8080/1")),
            // broken
            ("", E(UriReason::Empty)),
            ("   ", E(UriReason::Empty)),
            ("\n\t", E(UriReason::Empty)),
            ("htp:/broken", E(UriReason::UnsupportedScheme)),
            ("ftp://example.com/1.json", E(UriReason::UnsupportedScheme)),
            ("javascript:alert(1)", E(UriReason::UnsupportedScheme)),
            ("https//missing-colon.example/1", E(UriReason::Malformed)),
            ("not a uri", E(UriReason::Malformed)),
            ("https://", E(UriReason::Malformed)),
            ("https:// space.example/", E(UriReason::Malformed)),
            ("://nothing", E(UriReason::Malformed)),
            ("example.com/1.json", E(UriReason::Malformed)),
        ]
    }

    #[test]
    fn real_world_uri_shapes() {
        let (v0, v1, raw) = cids();
        let v1_upper = format!("B{}", v1[1..].to_ascii_uppercase());
        let fill = |s: &str| {
            s.replace("{v0short}", &v0[..20])
                .replace("{v0}", &v0)
                .replace("{v1}", &v1)
                .replace("{V1}", &v1_upper)
                .replace("{raw}", &raw)
                .replace("{ar}", AR)
        };
        let cid_of = |name: &str| match name {
            "v0" => v0.clone(),
            "v1" => v1.clone(),
            "raw" => raw.clone(),
            other => panic!("no cid {other}"),
        };
        let cases = cases();
        assert!(cases.len() >= 60, "{} cases", cases.len());
        for (input, want) in cases {
            let input = fill(input);
            let got = analyse(&input);
            let ctx = format!("{input:?} -> {got:?}");
            match want {
                I(cid, path, host) => {
                    let a = got.expect(&ctx);
                    assert_eq!(
                        a.target,
                        Target::Ipfs {
                            cid: Cid::try_from(cid_of(cid).as_str()).unwrap(),
                            path: path.to_owned()
                        },
                        "{ctx}"
                    );
                    assert_eq!(a.gateway_host, host.map(fill), "{ctx}");
                }
                N(name, path) => assert_eq!(
                    got.expect(&ctx).target,
                    Target::Ipns {
                        name: name.to_owned(),
                        path: path.to_owned()
                    },
                    "{ctx}"
                ),
                A(path) => assert_eq!(
                    got.expect(&ctx).target,
                    Target::Arweave {
                        id: AR.to_owned(),
                        path: path.to_owned()
                    },
                    "{ctx}"
                ),
                D(media, body) => assert_eq!(
                    got.expect(&ctx).target,
                    Target::Data {
                        media_type: media.to_owned(),
                        body: body.as_bytes().to_vec()
                    },
                    "{ctx}"
                ),
                W(url) => assert_eq!(
                    got.expect(&ctx).target,
                    Target::Web(Url::parse(url).unwrap()),
                    "{ctx}"
                ),
                E(reason) => assert_eq!(got.expect_err(&ctx).reason, reason, "{ctx}"),
            }
        }
    }

    #[test]
    fn every_form_of_one_cid_pins_the_same_root() {
        let (v0, v1, _) = cids();
        let forms = [
            format!("ipfs://{v1}/1.json"),
            format!("ipfs://ipfs/{v1}/1.json"),
            format!("https://ipfs.io/ipfs/{v1}/1.json"),
            format!("https://{v1}.ipfs.dweb.link/1.json"),
            format!("{v1}/1.json"),
            format!("/ipfs/{v1}/1.json"),
        ];
        for f in &forms {
            let a = analyse(f).unwrap();
            assert_eq!(a.target.cid().unwrap().to_string(), v1, "{f}");
        }
        // v0 and v1 name the same content but are different pins, as the cluster sees them.
        assert_ne!(
            analyse(&v0).unwrap().target.cid(),
            analyse(&v1).unwrap().target.cid()
        );
    }

    #[test]
    fn oversized_input_is_refused_without_decoding() {
        let long = format!("https://example.com/{}", "a".repeat(MAX_URI_LEN));
        assert_eq!(analyse(&long).unwrap_err().reason, UriReason::TooLong);
        let big = format!(
            "data:application/json;base64,{}",
            "A".repeat(2 * MAX_DATA_BYTES)
        );
        assert_eq!(analyse(&big).unwrap_err().reason, UriReason::TooLong);
        let msg = analyse(&"x".repeat(500)).unwrap_err().detail;
        assert!(msg.len() < 200, "{msg}");
    }
}
