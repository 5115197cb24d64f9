//! Upstream text made safe to keep: every piece of text a server sent (an error body, a
//! GraphQL or JSON-RPC message, a header) passes through [`Secrets::clean`] before it
//! reaches an error, a log line or the store.
//!
//! Two things can go wrong with such text. A server may echo a secret nifty sent it (the
//! API key in an `Authorization` header, a key in the URL path), whole, split by a control
//! character, or encoded as servers encode headers (base64, percent-encoding, JSON
//! escapes). And a server may forge log lines with raw newlines or hide text with bidi
//! overrides. So cleaning first drops every control and invisible formatting character and
//! only then looks for secrets: a secret split by a newline is whole again when it is
//! looked for, and nothing the server sent can end a log line.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// What a secret is replaced with.
pub const REDACTED: &str = "<redacted>";

/// Secrets shorter than this are not looked for: masking every "abc" in a server's words
/// would hide the words without protecting anything (nifty refuses such short secrets
/// where it can, the admin token for one).
pub const MIN_SECRET_BYTES: usize = 4;

/// A run of this many characters of a long secret is masked wherever it appears, so a
/// secret cut in two by a visible character (`sk-VERYSECR\nET...` written as the two
/// characters `\` `n`, say) does not show its halves. Eight characters of a key are
/// too few to use and too many to occur by chance in a server's prose.
pub const MIN_PIECE_CHARS: usize = 8;

/// Secrets at least this long also have their pieces masked ([`MIN_PIECE_CHARS`]).
/// Shorter ones are masked only whole: their pieces would be common substrings.
pub const MIN_PIECED_SECRET_CHARS: usize = 16;

/// A base64 rendering of a secret is looked for only when at least this many of its
/// characters do not depend on the bytes around the secret; shorter runs would match
/// unrelated base64.
const MIN_BASE64_CORE: usize = 8;

/// How much of an error body is kept for the operator.
pub const SNIPPET_CHARS: usize = 200;

/// How much of a server's message (a GraphQL or JSON-RPC error) is kept: enough for any
/// real one, and a bound on what a hostile server can make nifty store and log.
pub const MESSAGE_CHARS: usize = 1000;

/// Characters percent-encoders leave alone in a query value or path segment (RFC 3986's
/// unreserved set); every other byte is encoded.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Every secret nifty was configured with, in every form a server might echo it. Cheap to
/// clone: clones share one set. Its `Debug` shows how many secrets it holds, never them.
#[derive(Clone, Default)]
pub struct Secrets {
    /// The set, shared by every client built from one configuration.
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The secrets as configured, for the piece rule.
    originals: Vec<String>,
    /// Each secret in every rendering looked for (itself included), found in one pass;
    /// `None` when there are none.
    forms: Option<AhoCorasick>,
    /// Every [`MIN_PIECE_CHARS`]-character window of every long secret.
    pieces: HashSet<String>,
    /// The longest form, in characters: how far past a cut a secret may reach.
    longest_chars: usize,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secrets({} redacted)", self.inner.originals.len())
    }
}

impl Secrets {
    /// The set of `secrets`; values shorter than [`MIN_SECRET_BYTES`] are left out.
    pub fn new<I, S>(secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut originals: Vec<String> = secrets
            .into_iter()
            .map(|s| s.as_ref().to_owned())
            .filter(|s| s.len() >= MIN_SECRET_BYTES)
            .collect();
        originals.sort();
        originals.dedup();
        let mut forms: Vec<String> = originals.iter().flat_map(|s| renderings(s)).collect();
        forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        forms.dedup();
        let mut pieces = HashSet::new();
        for s in &originals {
            let chars: Vec<char> = s.chars().collect();
            if chars.len() >= MIN_PIECED_SECRET_CHARS {
                for w in chars.windows(MIN_PIECE_CHARS) {
                    pieces.insert(w.iter().collect::<String>());
                }
            }
        }
        let longest_chars = forms.iter().map(|f| f.chars().count()).max().unwrap_or(0);
        // Building fails only past the automaton's size limits, far beyond any set of
        // configured secrets; the originals are then still found by the piece rule.
        let forms = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&forms)
            .ok()
            .filter(|_| !forms.is_empty());
        Secrets {
            inner: Arc::new(Inner {
                originals,
                forms,
                pieces,
                longest_chars,
            }),
        }
    }

    /// This set and `more` together.
    pub fn with<I, S>(&self, more: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut all = self.inner.originals.clone();
        all.extend(more.into_iter().map(|s| s.as_ref().to_owned()));
        Secrets::new(all)
    }

    /// True when there is nothing to look for.
    pub fn is_empty(&self) -> bool {
        self.inner.originals.is_empty()
    }

    /// How many secrets the set holds.
    pub fn len(&self) -> usize {
        self.inner.originals.len()
    }

    /// Upstream text made safe to keep, at most [`MESSAGE_CHARS`] of it: control and invisible formatting
    /// characters dropped, then every secret in every rendering replaced with
    /// [`REDACTED`]. This is the one path server text takes to an error, a log or the
    /// store; [`Secrets::clean_bounded`] and [`Secrets::snippet`] are it with a length cap.
    pub fn clean(&self, text: &str) -> String {
        self.clean_bounded(text, MESSAGE_CHARS)
    }

    /// [`Secrets::clean`], keeping at most `max_chars` characters of the result (a mask is
    /// never cut in half). A secret that starts inside the kept part is masked whole even
    /// when it runs past the cut, and a cut never leaves a readable piece of one.
    pub fn clean_bounded(&self, text: &str, max_chars: usize) -> String {
        // Only so much of a long text can show, but a secret starting just before the cut
        // must be seen whole: read that much further. Masks are shorter than most forms
        // they replace, so the kept part may reach past the characters read; the window
        // grows until what is left unshown is longer than anything the window's last
        // `longest` characters (where a form may have been cut) can have become: no
        // character becomes more than one whole mask.
        let longest = self.inner.longest_chars;
        let margin = longest.saturating_mul(REDACTED.len());
        let mut window = max_chars.saturating_add(longest);
        loop {
            let mut chars = text.chars().filter(|c| !is_hidden(*c));
            let visible: String = chars.by_ref().take(window).collect();
            let whole = chars.next().is_none();
            let masked = self.mask(&visible);
            let (out, unshown) = keep_chars(&masked, max_chars);
            if whole || unshown >= margin {
                return out;
            }
            window = window.saturating_mul(2);
        }
    }

    /// The start of a body as text: [`Secrets::clean_bounded`] of its lossy UTF-8 to
    /// [`SNIPPET_CHARS`].
    pub fn snippet(&self, body: &[u8]) -> String {
        self.clean_bounded(&String::from_utf8_lossy(body), SNIPPET_CHARS)
    }

    /// A data field from an upstream (a token URI, a contract name) with every rendering
    /// of every secret masked and nothing else changed: data keeps its characters, but no
    /// secret is stored or served because a hostile upstream put it there.
    pub fn mask_data<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let Some(forms) = &self.inner.forms else {
            return Cow::Borrowed(text);
        };
        if !forms.is_match(text) {
            return Cow::Borrowed(text);
        }
        let ranges: Vec<(usize, usize)> = forms
            .find_iter(text)
            .map(|m| (m.start(), m.end()))
            .collect();
        Cow::Owned(splice(text, ranges))
    }

    /// `text` (already free of hidden characters) with every form and piece of every
    /// secret masked.
    fn mask(&self, text: &str) -> String {
        if self.is_empty() || text.is_empty() {
            return text.to_owned();
        }
        let mut ranges: Vec<(usize, usize)> = match &self.inner.forms {
            Some(forms) => forms
                .find_iter(text)
                .map(|m| (m.start(), m.end()))
                .collect(),
            None => vec![],
        };
        if !self.inner.pieces.is_empty() {
            // Every window of MIN_PIECE_CHARS characters: `starts` holds the byte offsets
            // of the last MIN_PIECE_CHARS + 1 character starts seen.
            let mut starts = std::collections::VecDeque::with_capacity(MIN_PIECE_CHARS + 1);
            let ends = text
                .char_indices()
                .map(|(i, _)| i)
                .skip(1)
                .chain([text.len()]);
            starts.push_back(0usize);
            for end in ends {
                starts.push_back(end);
                if starts.len() > MIN_PIECE_CHARS + 1 {
                    starts.pop_front();
                }
                if starts.len() == MIN_PIECE_CHARS + 1 {
                    let from = starts[0];
                    if self.inner.pieces.contains(&text[from..end]) {
                        ranges.push((from, end));
                    }
                }
            }
        }
        splice(text, ranges)
    }
}

/// The first `max_chars` characters of `masked` (a mask counted as its length and never
/// cut), and how many characters are left after them.
fn keep_chars(masked: &str, max_chars: usize) -> (String, usize) {
    let mut out = String::with_capacity(masked.len().min(max_chars.saturating_mul(4)));
    let mut taken = 0usize;
    let mut rest = masked;
    while taken < max_chars {
        if let Some(after) = rest.strip_prefix(REDACTED) {
            out.push_str(REDACTED);
            rest = after;
            taken = taken.saturating_add(REDACTED.len());
            continue;
        }
        let mut chars = rest.chars();
        let Some(c) = chars.next() else { break };
        out.push(c);
        rest = chars.as_str();
        taken += 1;
    }
    (out, rest.chars().count())
}

/// `text` with each byte range of `ranges` (on char boundaries, in any order, overlapping
/// or not) replaced by one [`REDACTED`] per run of touching ranges.
fn splice(text: &str, mut ranges: Vec<(usize, usize)>) -> String {
    if ranges.is_empty() {
        return text.to_owned();
    }
    ranges.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut at = 0usize;
    let mut i = 0;
    while i < ranges.len() {
        let (start, mut end) = ranges[i];
        i += 1;
        // Overlapping and touching matches become one mask.
        while i < ranges.len() && ranges[i].0 <= end {
            end = end.max(ranges[i].1);
            i += 1;
        }
        out.push_str(&text[at..start]);
        out.push_str(REDACTED);
        at = end;
    }
    out.push_str(&text[at..]);
    out
}

/// Characters dropped from upstream text: controls (newlines and escapes among them) and
/// the invisible formatting characters that can split a secret or reorder a log line
/// without showing (soft hyphen, zero-width and bidi controls, line and paragraph
/// separators, the byte-order mark, interlinear annotations), and the replacement
/// character a lossy decode puts where a server sent bytes that are not UTF-8.
pub fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{AD}'
                | '\u{34F}'
                | '\u{61C}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF9}'..='\u{FFFD}'
        )
}

/// A secret and the renderings servers echo it in: percent-encoded (upper and lower case
/// hex, `+` for space), JSON-escaped, and the part of its base64 (standard and URL-safe
/// alphabets) that is the same wherever it sits in the encoded text (a secret inside
/// `Basic base64(user:password)` starts at any offset of a 3-byte group).
fn renderings(s: &str) -> Vec<String> {
    let mut out = vec![s.to_owned()];
    let upper = utf8_percent_encode(s, UNRESERVED).to_string();
    out.push(upper.clone());
    out.push(lower_hex_escapes(&upper));
    out.push(
        utf8_percent_encode(s, UNRESERVED)
            .to_string()
            .replace("%20", "+"),
    );
    // Stricter encoders escape `-._~` too, and some escape every byte.
    for strict in [
        utf8_percent_encode(s, NON_ALPHANUMERIC).to_string(),
        s.bytes().map(|b| format!("%{b:02X}")).collect(),
    ] {
        out.push(lower_hex_escapes(&strict));
        out.push(strict);
    }
    if let Ok(json) = serde_json::to_string(s) {
        let inner = json.trim_matches('"').to_owned();
        out.push(inner.replace('/', "\\/"));
        out.push(inner);
    }
    for lead in 0..3usize {
        for core in base64_cores(s.as_bytes(), lead) {
            if core.len() >= MIN_BASE64_CORE {
                out.push(core);
            }
        }
    }
    out.retain(|f| f.len() >= MIN_SECRET_BYTES);
    out
}

/// `%2F` → `%2f`, leaving the other characters alone.
fn lower_hex_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut hex_left = 0;
    for c in s.chars() {
        if hex_left > 0 {
            out.push(c.to_ascii_lowercase());
            hex_left -= 1;
        } else {
            if c == '%' {
                hex_left = 2;
            }
            out.push(c);
        }
    }
    out
}

/// The base64 characters (both alphabets) that encode only bits of `secret` when it is
/// preceded by `lead` bytes (0 to 2) of anything.
fn base64_cores(secret: &[u8], lead: usize) -> [String; 2] {
    let mut padded = vec![0u8; lead];
    padded.extend_from_slice(secret);
    padded.extend_from_slice(&[0, 0]);
    let first_bit = 8 * lead;
    let end_bit = 8 * (lead + secret.len());
    // Character i covers bits [6i, 6i + 6): keep those wholly inside the secret.
    let from = first_bit.div_ceil(6);
    let to = end_bit / 6;
    [STANDARD_NO_PAD, URL_SAFE_NO_PAD].map(|engine| {
        let encoded = engine.encode(&padded);
        encoded
            .get(from..to.max(from))
            .unwrap_or_default()
            .to_owned()
    })
}

/// The parts of a URL that may be secret, for a [`Secrets`] set: user name and password,
/// the query string and each query value, the fragment, the path segment after each `api`
/// segment (where The Graph's gateway puts its key), and, when `path_is_secret` (chain
/// node URLs: Alchemy's `/v2/KEY`, Infura's `/v3/KEY`, QuickNode's token path), every
/// path segment of 12 characters or more. Text that is not a URL gives nothing.
pub fn url_secrets(url: &str, path_is_secret: bool) -> Vec<String> {
    let Ok(u) = url::Url::parse(url) else {
        return vec![];
    };
    let mut out = vec![];
    if !u.username().is_empty() {
        out.push(u.username().to_owned());
        out.extend(decoded(u.username()));
    }
    if let Some(p) = u.password() {
        out.push(p.to_owned());
        out.extend(decoded(p));
        if !u.username().is_empty() {
            out.push(format!("{}:{}", u.username(), p));
        }
    }
    if let Some(q) = u.query().filter(|q| !q.is_empty()) {
        out.push(q.to_owned());
        for (_, v) in u.query_pairs() {
            out.push(v.into_owned());
        }
    }
    out.extend(u.fragment().filter(|f| !f.is_empty()).map(str::to_owned));
    let segs: Vec<&str> = u.path_segments().into_iter().flatten().collect();
    for (i, seg) in segs.iter().enumerate() {
        let after_api = i > 0 && segs[i - 1].eq_ignore_ascii_case("api");
        if (after_api && !seg.is_empty()) || (path_is_secret && seg.len() >= 12) {
            out.push((*seg).to_owned());
            out.extend(decoded(seg));
        }
    }
    out
}

/// A percent-encoded part decoded, when decoding changes it.
fn decoded(part: &str) -> Option<String> {
    let d = percent_encoding::percent_decode_str(part)
        .decode_utf8()
        .ok()?
        .into_owned();
    (d != part).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sk-VERYSECRET-1234567890abcdef";

    fn set() -> Secrets {
        Secrets::new([KEY, "hunter2!pass/word"])
    }

    #[test]
    fn a_secret_is_masked_in_every_form_servers_echo_it_in() {
        use base64::engine::general_purpose::STANDARD;
        let s = set();
        let basic = STANDARD.encode("alice:hunter2!pass/word");
        let bearer = STANDARD.encode(format!("Bearer {KEY}"));
        let cases: Vec<(String, &str)> = vec![
            (format!("bad key {KEY}"), "whole"),
            (
                "bad key sk-VERYSECR\nET-1234567890abcdef".into(),
                "split by a newline",
            ),
            (
                "bad key sk-VERY\u{200B}SECRET-12345\u{1b}67890abcdef".into(),
                "zero-width, escape",
            ),
            (
                "bad key sk-VERYSECR\u{FFFD}ET-1234567890abcdef".into(),
                "a byte that was not UTF-8",
            ),
            (
                "sk-VERYSECR\\nET-1234567890abcdef".into(),
                "split by a visible \\n",
            ),
            ("pw hunter2%21pass%2Fword".into(), "percent-encoded"),
            (
                format!(
                    "k {}",
                    KEY.bytes().map(|b| format!("%{b:02x}")).collect::<String>()
                ),
                "every byte percent-encoded",
            ),
            (
                "k sk%2DVERYSECRET%2D1234567890abcdef".into(),
                "strictly percent-encoded",
            ),
            (
                "pw hunter2%21pass%2fword".into(),
                "percent-encoded, lower hex",
            ),
            ("pw hunter2!pass\\/word".into(), "JSON-escaped slash"),
            (format!("Authorization: Basic {basic}"), "inside basic auth"),
            (format!("echo {bearer}"), "base64 of the bearer header"),
            (
                URL_SAFE_NO_PAD.encode(format!("xx{KEY}yy")),
                "url-safe base64 at another offset",
            ),
        ];
        for (text, what) in cases {
            let out = s.clean(&text);
            assert!(out.contains(REDACTED), "{what}: {out:?}");
            for piece in [
                "VERYSECR",
                "1234567890",
                "hunter2",
                "pass/word",
                "cGFzcy93b3Jk",
            ] {
                assert!(!out.contains(piece), "{what}: {piece} left in {out:?}");
            }
            // No base64 of the key left either: decode every run and look.
            assert!(
                !out.contains('\n') && !out.contains('\u{1b}'),
                "{what}: {out:?}"
            );
        }
    }

    #[test]
    fn cleaning_drops_what_could_forge_or_hide_a_log_line_and_keeps_the_rest() {
        let s = Secrets::default();
        assert_eq!(s.clean("a\r\nb\tc\u{202E}d\u{2028}e f"), "abcde f");
        assert_eq!(
            s.clean("plain words, ünïcödé 🦀"),
            "plain words, ünïcödé 🦀"
        );
        let s = set();
        assert_eq!(s.clean("nothing secret here"), "nothing secret here");
    }

    #[test]
    fn a_bound_keeps_a_secret_across_the_cut_masked_and_never_halves_the_mask() {
        let s = set();
        let text = format!("{}{KEY} and more", "x".repeat(195));
        let out = s.clean_bounded(&text, 200);
        assert_eq!(out, format!("{}{REDACTED}", "x".repeat(195)));
        // Hidden characters do not count against the bound and do not hide a secret
        // from it.
        let text = format!("{}{}", "\n".repeat(500), KEY);
        assert_eq!(s.clean_bounded(&text, 5), REDACTED);
        assert_eq!(s.clean_bounded("abcdef", 3), "abc");
        assert_eq!(s.snippet(&[0xff, b'o', b'k']), "ok");
    }

    #[test]
    fn a_bound_after_many_masks_never_shows_an_unmasked_secret() {
        use base64::engine::general_purpose::STANDARD;
        // Masks are shorter than the forms they replace, so the kept part of a text full
        // of secrets reaches further into it than the characters first looked at.
        let s = set();
        let mut text: Vec<String> = (0..8).map(|_| STANDARD.encode(KEY)).collect();
        text.push(STANDARD.encode(format!("Bearer {KEY}")));
        text.push(KEY.to_owned());
        let text = text.join(" | ");
        for max in [150, 200, 300] {
            let out = s.clean_bounded(&text, max);
            for piece in ["VERYSECR", "1234567890", "LTEyMzQ1Njc4OTBh", "WVNFQ1JFVC0x"] {
                assert!(!out.contains(piece), "{max}: {piece} in {out:?}");
            }
        }
    }

    #[test]
    fn data_keeps_its_characters_and_loses_only_secrets() {
        let s = set();
        let uri = format!("https://host/{KEY}/meta\n.json");
        assert_eq!(s.mask_data(&uri), "https://host/<redacted>/meta\n.json");
        assert!(matches!(
            s.mask_data("ipfs://Qm\tx"),
            Cow::Borrowed("ipfs://Qm\tx")
        ));
        assert!(matches!(
            Secrets::default().mask_data(KEY),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn short_or_no_secrets_mask_nothing_and_debug_never_shows_one() {
        let s = Secrets::new(["abc", ""]);
        assert!(s.is_empty());
        assert_eq!(s.clean("abc abc"), "abc abc");
        let s = set();
        assert_eq!(format!("{s:?}"), "Secrets(2 redacted)");
        assert_eq!(s.with(["another-secret"]).len(), 3);
    }

    #[test]
    fn url_secrets_are_the_parts_that_carry_keys() {
        let got = url_secrets(
            "https://user:p%40ss@gateway.example/api/KEY123/subgraphs/id/Qm?token=t0ken#frag",
            false,
        );
        for want in [
            "user",
            "p%40ss",
            "p@ss",
            "user:p%40ss",
            "KEY123",
            "token=t0ken",
            "t0ken",
            "frag",
        ] {
            assert!(got.iter().any(|g| g == want), "{want} missing from {got:?}");
        }
        assert!(!got.iter().any(|g| g == "subgraphs"));
        let node = url_secrets(
            "https://eth-mainnet.g.alchemy.com/v2/abcdefghijklmnop",
            true,
        );
        assert_eq!(node, vec!["abcdefghijklmnop".to_owned()]);
        assert!(url_secrets("not a url", true).is_empty());
    }

    #[test]
    fn base64_cores_match_the_secret_at_every_offset() {
        use base64::engine::general_purpose::STANDARD;
        let secret = b"correct horse battery";
        for lead in 0..3 {
            for pre in ["", "a", "ab", "abc"] {
                let mut text = pre.as_bytes().to_vec();
                text.extend(std::iter::repeat_n(b'z', lead));
                text.extend_from_slice(secret);
                text.extend_from_slice(b"!!");
                let encoded = STANDARD.encode(&text);
                let offset = (pre.len() + lead) % 3;
                let [core, _] = base64_cores(secret, offset);
                assert!(
                    encoded.contains(&core),
                    "lead {lead} pre {pre:?}: {core} not in {encoded}"
                );
            }
        }
    }
}
