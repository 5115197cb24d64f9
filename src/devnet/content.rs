//! What the devnet's gateway serves for each token, and the truth: what a correct pinner
//! concludes about each token.
//!
//! Both come from the generator's intent (the token's hash picks a [`Variant`] and a
//! [`Shape`]), never from parsing a URI or a body the way a pinner would, so a test that
//! compares a pinner's conclusions with [`Chain::expected`] compares two independent
//! derivations.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::chain::{
    Chain, IMAGE_SALT, MalformedForm, MetadataSource, MintedToken, UriKind, cid_v0, cid_v1,
    malformed_form, mix,
};

/// Salt of the variant draw.
const VARIANT_SALT: u64 = 0x7661_7269_616e_7400;
/// Salt of the shape draws (image form, animation, properties, BOM, sub-forms).
const SHAPE_SALT: u64 = 0x7368_6170_6500;
/// Salt of the animation CID.
const ANIMATION_SALT: u64 = 0x616e_696d;
/// Salt of the CID under `properties`.
const PROPERTIES_SALT: u64 = 0x7072_6f70;

/// Size of a [`Variant::Huge`] body: over 2 MiB, twice the pinner's 1 MiB cap, so a cap
/// that counts in the wrong unit still trips.
pub const HUGE_BYTES: usize = 2 * 1024 * 1024 + 64 * 1024;
/// Hops of a [`Variant::RedirectChain`]: one more than the pinner's limit of 3.
pub const REDIRECT_CHAIN_HOPS: u32 = 4;
/// Where a [`Variant::MetadataAddressRedirect`] points: the cloud metadata service, which
/// a fetcher must refuse before connecting.
pub const METADATA_ADDRESS_URL: &str = "http://169.254.169.254/latest/meta-data/";
/// Host of off-IPFS images (not pinnable); never fetched by the pinner.
pub const OFF_IPFS_IMAGE_HOST: &str = "images.example.com";
/// A UTF-8 byte order mark, which some metadata servers put before their JSON.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Token status: the URI is empty.
pub const NO_URI: &str = "no_uri";
/// Token status: the URI could not be analysed.
pub const URI_PARSE_FAILED: &str = "uri_parse_failed";
/// Token status: the metadata could not be fetched.
pub const CONTENT_FETCH_FAILED: &str = "content_fetch_failed";
/// Token status: the metadata is not a JSON object.
pub const CONTENT_PARSE_FAILED: &str = "content_parse_failed";
/// Token status: the metadata parsed but names nothing on IPFS.
pub const PARSED: &str = "parsed";
/// Token status: every IPFS resource of the token is known (and, for a pinner, pinned).
pub const LINKED: &str = "linked";

/// How a fetched-metadata URL answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Variant {
    /// A JSON object (see [`Shape`]).
    Good,
    /// 404.
    NotFound,
    /// 200 with an HTML page or truncated JSON.
    InvalidJson,
    /// 200 with JSON that is not an object (`[1,2,3]` or a string).
    NotAnObject,
    /// 200 with a valid JSON object of [`HUGE_BYTES`].
    Huge,
    /// The answer (good metadata) comes after the gateway's slow delay.
    Slow,
    /// 302 to another URL of the same server, which serves good metadata.
    Redirect,
    /// 302 to [`METADATA_ADDRESS_URL`] (web tokens only).
    MetadataAddressRedirect,
    /// [`REDIRECT_CHAIN_HOPS`] redirects before good metadata (web tokens only).
    RedirectChain,
}

/// One row of [`VARIANTS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VariantShare {
    /// The variant.
    pub variant: Variant,
    /// Its share of fetched-metadata tokens, in thousandths.
    pub per_mille: u32,
    /// Whether only web (`/web/`) tokens get it; other tokens drawing it are [`Variant::Good`].
    pub web_only: bool,
}

/// Every variant and its share, in the order a draw walks them (the shares add up to
/// 1,000). Failures are a few percent each: enough that a 10,000-token chain has dozens
/// of every kind, few enough that the dashboard still looks like a healthy collection.
pub const VARIANTS: [VariantShare; 9] = [
    share(Variant::Good, 870, false),
    share(Variant::NotFound, 30, false),
    share(Variant::InvalidJson, 30, false),
    share(Variant::NotAnObject, 10, false),
    share(Variant::Huge, 10, false),
    share(Variant::Slow, 10, false),
    share(Variant::Redirect, 20, false),
    share(Variant::MetadataAddressRedirect, 10, true),
    share(Variant::RedirectChain, 10, true),
];

/// A row of [`VARIANTS`].
const fn share(variant: Variant, per_mille: u32, web_only: bool) -> VariantShare {
    VariantShare {
        variant,
        per_mille,
        web_only,
    }
}

/// The variant for a draw in 0..1000 on a web token or not.
pub fn variant_for(draw: u64, web: bool) -> Variant {
    let mut edge = 0u64;
    for row in VARIANTS {
        edge += u64::from(row.per_mille);
        if draw < edge {
            return if row.web_only && !web {
                Variant::Good
            } else {
                row.variant
            };
        }
    }
    Variant::Good
}

/// How good metadata names its image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageForm {
    /// `"image": "ipfs://<cidv1>/<id>.png"`.
    IpfsPath,
    /// `"image": "https://ipfs.io/ipfs/<cidv1>/<id>.png"`.
    GatewayUrl,
    /// `"image": "ipfs://<cidv0>"`.
    IpfsV0,
    /// `"image_url": "ipfs://<cidv1>/<id>.png"` and no `image`.
    ImageUrl,
    /// `"image": "<cidv1>"`, a bare CID.
    BareCid,
    /// `"image": "https://images.example.com/<id>.png"`: not on IPFS, not pinnable.
    OffIpfs,
}

/// What good metadata holds under `properties`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PropertiesForm {
    /// No `properties`.
    Absent,
    /// Plain values, nothing content-addressed.
    Plain,
    /// `{"files": [{"uri": "ipfs://<cidv1>/model.glb", "type": "model/gltf-binary"}]}`.
    FilesIpfs,
    /// The same file behind `https://ipfs.io/ipfs/<cidv1>/model.glb`.
    FilesGateway,
    /// `{"original": "<cidv0>"}`, a bare CID nested under properties.
    BareCid,
}

/// The shape of a token's good metadata: which asset fields it has and how they are
/// written. A pure function of the token hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// How the image is named.
    pub image: ImageForm,
    /// Whether there is an `animation_url` (always `ipfs://`).
    pub animation: bool,
    /// What `properties` holds.
    pub properties: PropertiesForm,
    /// Whether the body starts with a UTF-8 BOM.
    pub bom: bool,
}

impl Shape {
    /// The shape for shape draw `m`.
    fn from_draw(m: u64) -> Shape {
        let image = match m % 8 {
            0 | 1 => ImageForm::IpfsPath,
            2 => ImageForm::GatewayUrl,
            3 => ImageForm::IpfsV0,
            4 => ImageForm::ImageUrl,
            5 => ImageForm::BareCid,
            _ => ImageForm::OffIpfs,
        };
        let properties = match (m >> 16) % 5 {
            0 => PropertiesForm::FilesIpfs,
            1 => PropertiesForm::FilesGateway,
            2 => PropertiesForm::BareCid,
            3 => PropertiesForm::Plain,
            _ => PropertiesForm::Absent,
        };
        Shape {
            image,
            animation: (m >> 8).is_multiple_of(4),
            properties,
            bom: (m >> 24).is_multiple_of(10),
        }
    }
}

/// What a correct pinner concludes about a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    /// `no_uri`, `uri_parse_failed`, `content_fetch_failed`, `content_parse_failed`,
    /// `parsed` or `linked`.
    pub status: &'static str,
    /// The machine-readable reason of a failure or of `parsed`; `None` for `linked`.
    pub reason: Option<&'static str>,
    /// For `linked`: the root CID of every IPFS resource (metadata and assets), in
    /// canonical string form. Empty otherwise.
    pub cids: BTreeSet<String>,
    /// The root CID the URI names when the metadata is on IPFS, whatever the outcome
    /// (a pinner may pin it even when the fetch fails).
    pub metadata_cid: Option<String>,
}

impl Expected {
    /// A status without CIDs.
    fn bare(status: &'static str, reason: &'static str, metadata_cid: Option<String>) -> Self {
        Expected {
            status,
            reason: Some(reason),
            cids: BTreeSet::new(),
            metadata_cid,
        }
    }
}

impl Chain {
    /// The variant of a token whose metadata is fetched (IPFS, Arweave, web); `None` for
    /// inline, empty and malformed URIs.
    pub fn variant(&self, token: &MintedToken) -> Option<Variant> {
        let web = match self.metadata_source(token) {
            MetadataSource::Ipfs { .. } | MetadataSource::Arweave { .. } => false,
            MetadataSource::Web { .. } => true,
            MetadataSource::Inline | MetadataSource::Nowhere => return None,
        };
        let draw = mix(self.token_hash(token), VARIANT_SALT) % 1_000;
        Some(variant_for(draw, web))
    }

    /// The shape of the token's good metadata.
    pub fn metadata_shape(&self, token: &MintedToken) -> Shape {
        Shape::from_draw(self.shape_draw(token))
    }

    /// The draw behind [`Chain::metadata_shape`] and the sub-forms of broken bodies.
    fn shape_draw(&self, token: &MintedToken) -> u64 {
        mix(self.token_hash(token), SHAPE_SALT)
    }

    /// The token's good metadata as the gateway serves it (with the BOM when the shape
    /// has one).
    pub fn good_metadata(&self, token: &MintedToken) -> Vec<u8> {
        let shape = self.metadata_shape(token);
        let mut out = Vec::with_capacity(512);
        if shape.bom {
            out.extend_from_slice(BOM);
        }
        let value = self.metadata_value(token, shape, None);
        // Serialising a Value into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, &value);
        out
    }

    /// A valid JSON object of [`HUGE_BYTES`]: good metadata with a long description.
    pub fn huge_metadata(&self, token: &MintedToken) -> Vec<u8> {
        const EMPTY: &[u8] = br#""description":"""#;
        let shape = Shape {
            bom: false,
            ..self.metadata_shape(token)
        };
        let skeleton = serde_json::to_vec(&self.metadata_value(token, shape, Some(String::new())))
            .unwrap_or_default();
        // The filler is plain ASCII, so it goes between the quotes without escaping (and
        // without serialising 2 MiB through serde_json on every request).
        let Some(at) = skeleton
            .windows(EMPTY.len())
            .position(|w| w == EMPTY)
            .map(|p| p + EMPTY.len() - 1)
        else {
            return skeleton;
        };
        let filler = b"lorem ipsum ";
        let mut out = Vec::with_capacity(HUGE_BYTES + filler.len() + skeleton.len());
        out.extend_from_slice(&skeleton[..at]);
        while out.len() < HUGE_BYTES {
            out.extend_from_slice(filler);
        }
        out.extend_from_slice(&skeleton[at..]);
        out
    }

    /// A 200 body that is not JSON: an HTML error page, or good metadata cut in half.
    pub fn invalid_json(&self, token: &MintedToken) -> (Vec<u8>, &'static str) {
        if (self.shape_draw(token) >> 32) & 1 == 0 {
            let page = "<!DOCTYPE html>\n<html><head><title>Service Unavailable</title></head>\
                        <body><h1>Our metadata server is resting</h1>\
                        <p>Please try again later.</p></body></html>\n";
            (page.as_bytes().to_vec(), "text/html; charset=utf-8")
        } else {
            let shape = Shape {
                bom: false,
                ..self.metadata_shape(token)
            };
            let full =
                serde_json::to_vec(&self.metadata_value(token, shape, None)).unwrap_or_default();
            (full[..full.len() / 2].to_vec(), "application/json")
        }
    }

    /// A 200 body that is JSON but not an object.
    pub fn not_an_object(&self, token: &MintedToken) -> Vec<u8> {
        if (self.shape_draw(token) >> 32) & 1 == 0 {
            b"[1,2,3]".to_vec()
        } else {
            br#""metadata coming soon""#.to_vec()
        }
    }

    /// Whether the token's huge body goes out without a Content-Length (chunked), so a
    /// fetcher must cap while streaming rather than trust the header.
    pub fn huge_is_chunked(&self, token: &MintedToken) -> bool {
        (self.shape_draw(token) >> 32) & 1 == 1
    }

    /// The metadata object; `description` replaces the usual one (for huge bodies).
    fn metadata_value(
        &self,
        token: &MintedToken,
        shape: Shape,
        description: Option<String>,
    ) -> Value {
        let h = self.token_hash(token);
        let id = token.token_id_decimal();
        let contract = &self.contracts()[usize::from(token.contract)];
        let name = contract.name.as_deref().unwrap_or("Untitled");
        let image_v1 = cid_v1(h ^ IMAGE_SALT, false);
        let mut meta = serde_json::Map::new();
        meta.insert("name".into(), json!(format!("{name} #{id}")));
        meta.insert(
            "description".into(),
            json!(description.unwrap_or_else(|| "Generated by nifty devnet.".to_owned())),
        );
        meta.insert(
            "external_url".into(),
            json!(format!("https://example.com/token/{id}")),
        );
        let (key, image) = match shape.image {
            ImageForm::IpfsPath => ("image", format!("ipfs://{image_v1}/{id}.png")),
            ImageForm::GatewayUrl => ("image", format!("https://ipfs.io/ipfs/{image_v1}/{id}.png")),
            ImageForm::IpfsV0 => ("image", format!("ipfs://{}", cid_v0(h ^ IMAGE_SALT))),
            ImageForm::ImageUrl => ("image_url", format!("ipfs://{image_v1}/{id}.png")),
            ImageForm::BareCid => ("image", image_v1),
            ImageForm::OffIpfs => ("image", format!("https://{OFF_IPFS_IMAGE_HOST}/{id}.png")),
        };
        meta.insert(key.into(), json!(image));
        if shape.animation {
            let cid = cid_v1(h ^ ANIMATION_SALT, false);
            meta.insert(
                "animation_url".into(),
                json!(format!("ipfs://{cid}/{id}.mp4")),
            );
        }
        let props_v1 = cid_v1(h ^ PROPERTIES_SALT, false);
        let properties = match shape.properties {
            PropertiesForm::Absent => None,
            PropertiesForm::Plain => Some(json!({ "edition": h % 100, "rarity": "common" })),
            PropertiesForm::FilesIpfs => Some(json!({
                "category": "3d",
                "files": [{ "uri": format!("ipfs://{props_v1}/model.glb"), "type": "model/gltf-binary" }],
            })),
            PropertiesForm::FilesGateway => Some(json!({
                "category": "3d",
                "files": [{
                    "uri": format!("https://ipfs.io/ipfs/{props_v1}/model.glb"),
                    "type": "model/gltf-binary",
                }],
            })),
            PropertiesForm::BareCid => Some(json!({
                "creator": "nifty devnet",
                "original": cid_v0(h ^ PROPERTIES_SALT),
            })),
        };
        if let Some(p) = properties {
            meta.insert("properties".into(), p);
        }
        let background = ["Blue", "Sand", "Moss"][(h % 3) as usize];
        meta.insert(
            "attributes".into(),
            json!([
                { "trait_type": "Background", "value": background },
                { "trait_type": "Level", "value": h % 10 },
            ]),
        );
        Value::Object(meta)
    }

    /// The root CIDs of the IPFS assets in the token's good metadata.
    pub fn asset_cids(&self, token: &MintedToken) -> BTreeSet<String> {
        let h = self.token_hash(token);
        let shape = self.metadata_shape(token);
        let mut out = BTreeSet::new();
        match shape.image {
            ImageForm::IpfsPath
            | ImageForm::GatewayUrl
            | ImageForm::ImageUrl
            | ImageForm::BareCid => {
                out.insert(cid_v1(h ^ IMAGE_SALT, false));
            }
            ImageForm::IpfsV0 => {
                out.insert(cid_v0(h ^ IMAGE_SALT));
            }
            ImageForm::OffIpfs => {}
        }
        if shape.animation {
            out.insert(cid_v1(h ^ ANIMATION_SALT, false));
        }
        match shape.properties {
            PropertiesForm::FilesIpfs | PropertiesForm::FilesGateway => {
                out.insert(cid_v1(h ^ PROPERTIES_SALT, false));
            }
            PropertiesForm::BareCid => {
                out.insert(cid_v0(h ^ PROPERTIES_SALT));
            }
            PropertiesForm::Absent | PropertiesForm::Plain => {}
        }
        out
    }

    /// What a correct pinner concludes about `token`, from the generator's intent.
    /// `web_allowed` says whether the pinner may fetch from the devnet's host (127.0.0.1);
    /// without it every web token is refused as `blocked_address` before connecting.
    ///
    /// Assumes the pinner's timeout is below the gateway's slow delay, its size cap is
    /// 1 MiB, it follows at most 3 redirects, and it retries transient gateway errors.
    pub fn expected(&self, token: &MintedToken, web_allowed: bool) -> Expected {
        let h = self.token_hash(token);
        let source = self.metadata_source(token);
        let metadata_cid = match &source {
            MetadataSource::Ipfs { cid, .. } => Some(cid.clone()),
            _ => None,
        };
        match source {
            MetadataSource::Nowhere => {
                if self.token_uri_kind(token) == UriKind::Empty {
                    return Expected::bare(NO_URI, "empty", None);
                }
                let reason = match malformed_form(h) {
                    MalformedForm::NotACid | MalformedForm::Truncated => "invalid_cid",
                    MalformedForm::Scheme => "unsupported_scheme",
                    MalformedForm::MissingColon | MalformedForm::OneSlash => "malformed",
                };
                return Expected::bare(URI_PARSE_FAILED, reason, None);
            }
            MetadataSource::Inline => {
                // metadata_json's image: ipfs://<cidv1 of the image salt>/<id>.png.
                return Expected {
                    status: LINKED,
                    reason: None,
                    cids: BTreeSet::from([cid_v1(h ^ IMAGE_SALT, false)]),
                    metadata_cid: None,
                };
            }
            MetadataSource::Web { .. } if !web_allowed => {
                return Expected::bare(CONTENT_FETCH_FAILED, "blocked_address", None);
            }
            MetadataSource::Ipfs { .. }
            | MetadataSource::Arweave { .. }
            | MetadataSource::Web { .. } => {}
        }
        let variant = self.variant(token).unwrap_or(Variant::Good);
        let failed = |status, reason| Expected::bare(status, reason, metadata_cid.clone());
        match variant {
            Variant::NotFound => failed(CONTENT_FETCH_FAILED, "http_404"),
            Variant::Huge => failed(CONTENT_FETCH_FAILED, "too_large"),
            Variant::Slow => failed(CONTENT_FETCH_FAILED, "timeout"),
            Variant::MetadataAddressRedirect => failed(CONTENT_FETCH_FAILED, "blocked_address"),
            Variant::RedirectChain => failed(CONTENT_FETCH_FAILED, "too_many_redirects"),
            Variant::InvalidJson => failed(CONTENT_PARSE_FAILED, "invalid_json"),
            Variant::NotAnObject => failed(CONTENT_PARSE_FAILED, "not_an_object"),
            Variant::Good | Variant::Redirect => {
                let mut cids = self.asset_cids(token);
                cids.extend(metadata_cid.clone());
                if cids.is_empty() {
                    Expected::bare(PARSED, "not_on_ipfs", None)
                } else {
                    Expected {
                        status: LINKED,
                        reason: None,
                        cids,
                        metadata_cid,
                    }
                }
            }
        }
    }
}
