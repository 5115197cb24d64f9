//! A token's analysis: from its URI to a status, a reason and the CIDs to pin.
//!
//! Split as extract and transform: [`plan`] (pure) decides what to fetch and which root to
//! pin from the URI alone, the [`Fetcher`] fetches, and [`conclude`] (pure) turns the
//! document into the token's outcome. [`analyse_token`] runs the three.

use cid::Cid;
use nifty_state::TokenStatus;

use crate::fetch::{FetchError, Fetched, Fetcher};
use crate::metadata;
use crate::uri::{Target, UriReason, analyse};

/// Reason of a token with no URI at all (the source sent none).
pub const REASON_MISSING: &str = "missing";
/// Reason of a token that is fine but has nothing on IPFS to pin (web or Arweave content).
pub const REASON_NOT_ON_IPFS: &str = "not_on_ipfs";
/// Reason of a token whose content is inline in its URI and not JSON (an on-chain SVG).
pub const REASON_ON_CHAIN: &str = "on_chain";

/// A CID a token needs pinned, and what it is to the token.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Resource {
    /// The root CID.
    pub cid: Cid,
    /// `metadata`, `image`, `animation_url`, `properties.files.0.uri`, `content`.
    pub role: String,
}

/// A token's analysis.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Analysis {
    /// `Parsed` when usable (the store makes it `Linked` once its pins are), else a failure.
    pub status: TokenStatus,
    /// The machine-readable reason of a failure, or a note on a usable token.
    pub reason: Option<String>,
    /// Root CIDs to pin, without repeats.
    pub resources: Vec<Resource>,
}

impl Analysis {
    /// A token with no URI because the source could not get one, for the reason the
    /// source recorded (`reverted`: the chain's `tokenURI` call reverted).
    pub fn no_uri(reason: &str) -> Self {
        Self::failed(TokenStatus::NoUri, reason)
    }

    fn failed(status: TokenStatus, reason: impl Into<String>) -> Self {
        Analysis {
            status,
            reason: Some(reason.into()),
            resources: vec![],
        }
    }
}

/// What to do for a token after reading its URI.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Plan {
    /// Nothing to fetch: the outcome is known.
    Done(Analysis),
    /// Fetch `target`; `root` is pinned if the fetch succeeds.
    Fetch {
        /// What to fetch.
        target: Target,
        /// The metadata's own root CID, when it is on IPFS.
        root: Option<Cid>,
    },
}

/// Reads a token URI.
pub fn plan(uri: Option<&str>) -> Plan {
    let Some(uri) = uri else {
        return Plan::Done(Analysis::failed(TokenStatus::NoUri, REASON_MISSING));
    };
    let analysed = match analyse(uri) {
        Ok(a) => a,
        Err(e) if e.reason == UriReason::Empty => {
            return Plan::Done(Analysis::failed(TokenStatus::NoUri, e.reason.name()));
        }
        Err(e) => {
            return Plan::Done(Analysis::failed(
                TokenStatus::UriParseFailed,
                e.reason.name(),
            ));
        }
    };
    match analysed.target {
        Target::Data { media_type, body } => Plan::Done(inline(&media_type, &body)),
        target => Plan::Fetch {
            root: target.cid().copied(),
            target,
        },
    }
}

/// The outcome of an inline `data:` document.
fn inline(media_type: &str, body: &[u8]) -> Analysis {
    let json_like = media_type.contains("json")
        || media_type == "text/plain"
        || body.trim_ascii_start().starts_with(b"{");
    if json_like {
        conclude(None, body)
    } else {
        Analysis {
            status: TokenStatus::Parsed,
            reason: Some(REASON_ON_CHAIN.into()),
            resources: vec![],
        }
    }
}

/// The outcome of a fetched document; `root` is the metadata's own CID when on IPFS.
pub fn conclude(root: Option<Cid>, body: &[u8]) -> Analysis {
    let assets = match metadata::extract(body) {
        Ok(a) => a,
        Err(e) => return Analysis::failed(TokenStatus::ContentParseFailed, e.reason.name()),
    };
    let mut resources: Vec<Resource> = root
        .into_iter()
        .map(|cid| Resource {
            cid,
            role: "metadata".into(),
        })
        .collect();
    for asset in assets.pinnable {
        if let Some(cid) = asset.target.cid()
            && !resources.iter().any(|r| r.cid == *cid)
        {
            resources.push(Resource {
                cid: *cid,
                role: asset.role,
            });
        }
    }
    let reason = resources.is_empty().then(|| REASON_NOT_ON_IPFS.to_owned());
    Analysis {
        status: TokenStatus::Parsed,
        reason,
        resources,
    }
}

/// The outcome of a fetch that came back as media (an image where metadata was expected):
/// the URI is the asset itself.
fn media(root: Option<Cid>) -> Analysis {
    match root {
        Some(cid) => Analysis {
            status: TokenStatus::Parsed,
            reason: None,
            resources: vec![Resource {
                cid,
                role: "content".into(),
            }],
        },
        None => Analysis {
            status: TokenStatus::Parsed,
            reason: Some(REASON_NOT_ON_IPFS.into()),
            resources: vec![],
        },
    }
}

/// What became of one token.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Verdict {
    /// Analysed (successfully or not): record it.
    Done(Analysis),
    /// The configured gateway is unreachable or rate limiting: leave the token queued.
    Later(FetchError),
}

/// Analyses one token: plan, fetch, conclude. The roles it records are the document's own
/// keys (`properties.<key>...`), data a hostile server chose: they keep their characters
/// but lose every configured secret ([`nifty_upstream::Secrets::mask_data`]) before they
/// reach the store and the pin names.
pub async fn analyse_token(fetcher: &Fetcher, uri: Option<&str>) -> Verdict {
    let (target, root) = match plan(uri) {
        Plan::Done(a) => return Verdict::Done(masked(a, fetcher)),
        Plan::Fetch { target, root } => (target, root),
    };
    match fetcher.fetch(&target).await {
        Ok(Fetched { media: true, .. }) => Verdict::Done(media(root)),
        Ok(Fetched { body, .. }) => Verdict::Done(masked(conclude(root, &body), fetcher)),
        Err(e) if e.gateway_outage => Verdict::Later(e),
        Err(e) => Verdict::Done(Analysis::failed(
            TokenStatus::ContentFetchFailed,
            e.reason.name(),
        )),
    }
}

/// `a` with the configured secrets masked in its resources' roles.
fn masked(mut a: Analysis, fetcher: &Fetcher) -> Analysis {
    let secrets = fetcher.secrets();
    for r in &mut a.resources {
        if let std::borrow::Cow::Owned(role) = secrets.mask_data(&r.role) {
            r.role = role;
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use multihash::Multihash;

    fn cid(n: u8) -> Cid {
        Cid::new_v1(0x70, Multihash::<64>::wrap(0x12, &[n; 32]).unwrap())
    }

    #[test]
    fn plans_follow_the_uri() {
        let c = cid(1);
        let cases: Vec<(Option<String>, Result<Option<Cid>, (TokenStatus, &str)>)> = vec![
            (None, Err((TokenStatus::NoUri, "missing"))),
            (Some("".into()), Err((TokenStatus::NoUri, "empty"))),
            (Some(" \n".into()), Err((TokenStatus::NoUri, "empty"))),
            (
                Some("ipfs://nope".into()),
                Err((TokenStatus::UriParseFailed, "invalid_cid")),
            ),
            (
                Some("htp:/x".into()),
                Err((TokenStatus::UriParseFailed, "unsupported_scheme")),
            ),
            (Some(format!("ipfs://{c}/1.json")), Ok(Some(c))),
            (Some(format!("https://ipfs.io/ipfs/{c}")), Ok(Some(c))),
            (Some("https://example.com/1".into()), Ok(None)),
            (
                Some("ar://bNbA3TEQVL60xlgCcqdz4ZPHFZ711cZ3hmkpGttDt_U".into()),
                Ok(None),
            ),
        ];
        for (uri, want) in cases {
            let got = plan(uri.as_deref());
            match (want, got) {
                (Err((status, reason)), Plan::Done(a)) => {
                    assert_eq!(
                        (a.status, a.reason.as_deref()),
                        (status, Some(reason)),
                        "{uri:?}"
                    );
                    assert!(a.resources.is_empty());
                }
                (Ok(root), Plan::Fetch { root: got, .. }) => assert_eq!(got, root, "{uri:?}"),
                (want, got) => panic!("{uri:?}: wanted {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn inline_documents_need_no_fetch() {
        let img = cid(2);
        let json = format!(r#"{{"image":"ipfs://{img}/1.png"}}"#);
        let uri = format!("data:application/json,{}", json.replace('"', "%22"));
        let Plan::Done(a) = plan(Some(&uri)) else {
            panic!("data URIs are not fetched")
        };
        assert_eq!(a.status, TokenStatus::Parsed);
        assert_eq!(
            a.resources,
            vec![Resource {
                cid: img,
                role: "image".into()
            }]
        );
        let Plan::Done(a) = plan(Some("data:image/svg+xml;base64,PHN2Zy8+")) else {
            panic!("data URIs are not fetched")
        };
        assert_eq!(
            (a.status, a.reason.as_deref()),
            (TokenStatus::Parsed, Some("on_chain"))
        );
        let Plan::Done(a) = plan(Some("data:application/json,[1]")) else {
            panic!("data URIs are not fetched")
        };
        assert_eq!(
            (a.status, a.reason.as_deref()),
            (TokenStatus::ContentParseFailed, Some("not_an_object"))
        );
    }

    #[test]
    fn conclusions_pin_the_root_and_the_ipfs_assets_once() {
        let (root, img) = (cid(3), cid(4));
        let doc = format!(
            r#"{{"image":"ipfs://{img}/a.png","image_url":"https://ipfs.io/ipfs/{img}/a.png","animation_url":"ipfs://{root}/anim.mp4"}}"#
        );
        let a = conclude(Some(root), doc.as_bytes());
        assert_eq!(a.status, TokenStatus::Parsed);
        assert_eq!(a.reason, None);
        let roles: Vec<(Cid, &str)> = a
            .resources
            .iter()
            .map(|r| (r.cid, r.role.as_str()))
            .collect();
        assert_eq!(roles, vec![(root, "metadata"), (img, "image")]);

        let a = conclude(None, br#"{"image":"https://example.com/1.png"}"#);
        assert_eq!(
            (a.status, a.reason.as_deref()),
            (TokenStatus::Parsed, Some("not_on_ipfs"))
        );
        let a = conclude(Some(root), b"<html>");
        assert_eq!(
            (a.status, a.reason.as_deref(), a.resources.len()),
            (TokenStatus::ContentParseFailed, Some("invalid_json"), 0)
        );
        assert_eq!(media(Some(root)).resources[0].role, "content");
        assert_eq!(media(None).reason.as_deref(), Some("not_on_ipfs"));
    }
}
