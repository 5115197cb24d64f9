//! Headless Chromium for black-box tests of the dashboard: load a page, let its script run,
//! read back the DOM it built and a screenshot of it.
//!
//! No DevTools protocol: Chromium's own headless switches do it. `--virtual-time-budget`
//! runs the page on a virtual clock that jumps over idle time (so a 5 s `setTimeout` costs
//! nothing) but stands still while a request is in flight (so a slow server still gets
//! answered before the budget is spent); when the budget is used up Chromium prints the DOM
//! (`--dump-dom`) and/or writes the screenshot (`--screenshot`) and exits. A page that polls
//! every 5 s therefore gets exactly `budget / 5 s + 1` polls, however slow the machine.
//!
//! Include it with `#[path = "support/browser.rs"] mod browser;`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Switches for every run. Without the networking ones Chromium calls Google hosts for
/// updates, field trials and sync, which a closed network refuses (slowly).
const FLAGS: &[&str] = &[
    "--headless",
    // Tests often run as root in containers, where the sandbox cannot start.
    "--no-sandbox",
    "--disable-gpu",
    // Small /dev/shm in containers crashes renderers.
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-breakpad",
    "--mute-audio",
    "--hide-scrollbars",
    // Same pixels and number formatting on every machine.
    "--force-device-scale-factor=1",
    "--lang=en-US",
    // Console messages (and CSP refusals, uncaught errors) go to stderr, for `Page::console`.
    "--enable-logging=stderr",
    "--v=0",
];

/// The tallest screenshot taken: Chromium's own limit for a window is about this.
const MAX_HEIGHT: u32 = 16_384;

/// Chromium's executable: `NIFTY_CHROMIUM`, else `/usr/bin/chromium`, else `chromium`
/// (or `chromium-browser`) on `PATH`. `None` when there is none;
/// `scripts/install-chromium.sh` installs it.
pub fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NIFTY_CHROMIUM").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let debian = PathBuf::from("/usr/bin/chromium");
    if debian.is_file() {
        return Some(debian);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|p| p.is_file())
}

/// How to load a page.
#[derive(Clone, Debug)]
pub struct Load<'a> {
    /// Window width in CSS pixels.
    pub width: u32,
    /// Window height; a full-page screenshot may be taller.
    pub height: u32,
    /// Virtual milliseconds the page runs for (see the module comment). Raised (four-fold,
    /// twice at most) while `body[data-state]` is not one of `until`.
    pub virtual_ms: u64,
    /// `body[data-state]` values that mean the page has settled.
    pub until: &'a [&'a str],
    /// Wall-clock limit for everything; Chromium is killed when it is reached.
    pub timeout: Duration,
    /// Where to write a PNG screenshot, if anywhere.
    pub screenshot: Option<&'a Path>,
    /// Make the screenshot as tall as the page, which it reports in
    /// `body[data-page-height]` (taking a second load when the window was shorter, so the
    /// server must answer it the same way).
    pub full_page: bool,
    /// Ask for the dark colour scheme (`prefers-color-scheme: dark`).
    pub dark: bool,
}

impl Default for Load<'_> {
    fn default() -> Self {
        Load {
            width: 1440,
            height: 1800,
            virtual_ms: 2_000,
            until: &["ready"],
            timeout: Duration::from_secs(30),
            screenshot: None,
            full_page: true,
            dark: false,
        }
    }
}

/// A page after its script ran.
#[derive(Clone, Debug)]
pub struct Page {
    /// The serialized DOM.
    pub dom: String,
    /// `body[data-state]`, if set.
    pub state: Option<String>,
    /// Chromium runs it took.
    pub runs: u32,
    /// Wall-clock time it took.
    pub elapsed: Duration,
    /// The page's console messages, uncaught errors and CSP refusals, as Chromium logged
    /// them (the run that produced `dom`).
    pub console: Vec<String>,
}

/// Loads `url` in headless Chromium, lets its script run until `body[data-state]` is one
/// of `opts.until` (or the budget and timeout run out: the page is returned as it is, for
/// the caller to judge), and returns the DOM; writes the screenshot if asked.
pub fn load(chromium: &Path, url: &str, opts: &Load) -> Result<Page, String> {
    let start = Instant::now();
    let deadline = start + opts.timeout;
    let size = |h: u32| format!("--window-size={},{}", opts.width, h);
    let mut budget = opts.virtual_ms;
    let mut runs = 0;
    let (dom, state, console) = loop {
        let mut args = vec![
            size(opts.height),
            format!("--virtual-time-budget={budget}"),
            "--dump-dom".to_owned(),
        ];
        // The screenshot comes from the same run as the DOM, so both show the same moment.
        if let Some(path) = opts.screenshot {
            args.push(format!("--screenshot={}", path.display()));
        }
        let (dom, console) = run(chromium, url, &args, opts.dark, deadline)?;
        runs += 1;
        let state = body_attr(&dom, "data-state");
        let settled = state.as_deref().is_some_and(|s| opts.until.contains(&s));
        if settled || runs >= 3 || Instant::now() >= deadline {
            break (dom, state, console);
        }
        budget = budget.saturating_mul(4);
    };
    if let (Some(path), true) = (opts.screenshot, opts.full_page) {
        let tall = body_attr(&dom, "data-page-height")
            .and_then(|h| h.parse::<u32>().ok())
            .map(|h| h.min(MAX_HEIGHT));
        if let Some(h) = tall.filter(|&h| h > opts.height) {
            let args = vec![
                size(h),
                format!("--virtual-time-budget={budget}"),
                format!("--screenshot={}", path.display()),
            ];
            run(chromium, url, &args, opts.dark, deadline)?;
            runs += 1;
        }
    }
    Ok(Page {
        dom,
        state,
        runs,
        elapsed: start.elapsed(),
        console,
    })
}

/// One Chromium process with a fresh profile: its stdout and the page's console lines, or
/// why it failed. Killed, with every process it started, at `deadline`.
fn run(
    chromium: &Path,
    url: &str,
    args: &[String],
    dark: bool,
    deadline: Instant,
) -> Result<(String, Vec<String>), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let file = |p: &Path| File::create(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut cmd = Command::new(chromium);
    cmd.args(FLAGS)
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .args(args);
    if dark {
        cmd.args([
            "--force-dark-mode",
            "--blink-settings=preferredColorScheme=0",
        ]);
    }
    // Files, not pipes: a large DOM would fill a pipe nobody reads until Chromium exits.
    cmd.arg(url)
        .stdin(Stdio::null())
        .stdout(file(&out_path)?)
        .stderr(file(&err_path)?)
        // Its own process group, so a timeout kills the renderers and zygote too.
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("starting {}: {e}", chromium.display()))?;
    let pid = child.id();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() >= deadline => break Err("timed out".to_owned()),
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => break Err(format!("waiting: {e}")),
        }
    };
    if status.as_ref().map_or(true, |s| !s.success()) {
        kill_group(pid);
        // Reaps it; an error only means it is already gone.
        let _ = child.kill();
        let _ = child.wait();
    }
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let tail: String = {
        let lines: Vec<&str> = stderr.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    };
    match status {
        Ok(s) if s.success() => {
            let out = std::fs::read_to_string(&out_path)
                .map_err(|e| format!("reading Chromium's output: {e}"))?;
            let console = stderr
                .lines()
                .filter(|l| l.contains(":CONSOLE"))
                .map(str::to_owned)
                .collect();
            Ok((out, console))
        }
        Ok(s) => Err(format!(
            "chromium exited with {s} on {url}; stderr ends:\n{tail}"
        )),
        Err(why) => Err(format!("chromium {why} on {url}; stderr ends:\n{tail}")),
    }
}

/// SIGKILL to a process group. `kill(1)` rather than libc: this crate forbids unsafe code.
fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// One element that shows a number: its `data-k` and, when it has one, its `data-v`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shown {
    /// `data-k`.
    pub key: String,
    /// `data-v`; `None` when the element has none (the API said null).
    pub value: Option<String>,
}

/// Every element with a `data-k`, in document order.
pub fn shown(dom: &str) -> Vec<Shown> {
    start_tags(dom)
        .into_iter()
        .filter_map(|(_, attrs)| {
            let get = |n: &str| attrs.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
            Some(Shown {
                key: get("data-k")?,
                value: get("data-v"),
            })
        })
        .collect()
}

/// Every `data-k` with its `data-v` (entities decoded); elements without a `data-v` are
/// left out.
pub fn shown_values(dom: &str) -> BTreeMap<String, String> {
    shown(dom)
        .into_iter()
        .filter_map(|s| Some((s.key, s.value?)))
        .collect()
}

/// An attribute of the first `<body>`.
pub fn body_attr(dom: &str, name: &str) -> Option<String> {
    start_tags(dom)
        .into_iter()
        .find(|(tag, _)| tag == "body")
        .and_then(|(_, attrs)| attrs.into_iter().find(|(k, _)| k == name))
        .map(|(_, v)| v)
}

/// The start tags of serialized HTML with their attributes (names lower-cased, values
/// decoded). A small tokenizer rather than a parser: enough for what Chromium's serializer
/// writes (quoted attribute values; comments; raw text in `<script>` and `<style>`), and it
/// does not rely on `<` and `>` being escaped inside attribute values, which Chromium only
/// started doing recently.
pub fn start_tags(html: &str) -> Vec<(String, Vec<(String, String)>)> {
    let b = html.as_bytes();
    let mut tags = Vec::new();
    let mut i = 0;
    while let Some(off) = html[i..].find('<') {
        i += off;
        let rest = &html[i..];
        if rest.starts_with("<!--") {
            i += rest.find("-->").map_or(rest.len(), |e| e + 3);
            continue;
        }
        if rest.starts_with("<!") || rest.starts_with("</") || rest.starts_with("<?") {
            i += rest.find('>').map_or(rest.len(), |e| e + 1);
            continue;
        }
        i += 1;
        if !b.get(i).is_some_and(u8::is_ascii_alphabetic) {
            continue;
        }
        let name_end = html[i..]
            .find(|c: char| c.is_ascii_whitespace() || c == '>' || c == '/')
            .map_or(html.len(), |e| i + e);
        let name = html[i..name_end].to_ascii_lowercase();
        i = name_end;
        let mut attrs = Vec::new();
        loop {
            while b
                .get(i)
                .is_some_and(|c| c.is_ascii_whitespace() || *c == b'/')
            {
                i += 1;
            }
            match b.get(i) {
                None => break,
                Some(b'>') => {
                    i += 1;
                    break;
                }
                Some(_) => {}
            }
            let an_end = html[i..]
                .find(|c: char| c.is_ascii_whitespace() || c == '=' || c == '>' || c == '/')
                .map_or(html.len(), |e| i + e);
            if an_end == i {
                // A stray `=`: step over it (one ASCII byte) rather than loop forever.
                i += 1;
                continue;
            }
            let an = html[i..an_end].to_ascii_lowercase();
            i = an_end;
            let mut value = String::new();
            if b.get(i) == Some(&b'=') {
                i += 1;
                match b.get(i) {
                    Some(&q) if q == b'"' || q == b'\'' => {
                        let end = html[i + 1..]
                            .find(q as char)
                            .map_or(html.len(), |e| i + 1 + e);
                        value = decode(&html[i + 1..end]);
                        i = (end + 1).min(html.len());
                    }
                    _ => {
                        let end = html[i..]
                            .find(|c: char| c.is_ascii_whitespace() || c == '>')
                            .map_or(html.len(), |e| i + e);
                        value = decode(&html[i..end]);
                        i = end;
                    }
                }
            }
            attrs.push((an, value));
        }
        if name == "script" || name == "style" {
            let close = format!("</{name}");
            i = html[i..]
                .to_ascii_lowercase()
                .find(&close)
                .map_or(html.len(), |e| i + e);
        }
        tags.push((name, attrs));
    }
    tags
}

/// Decodes the character references Chromium's serializer writes (and numeric ones).
pub fn decode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let Some(semi) = rest.find(';').filter(|&e| e <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let ent = &rest[1..semi];
        let ch = match ent {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some('\u{a0}'),
            _ => ent
                .strip_prefix("#x")
                .or_else(|| ent.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| ent.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match ch {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Every token status, in the order the page lists them.
pub const TOKEN_STATUSES: [&str; 7] = [
    "queued",
    "uri_parse_failed",
    "no_uri",
    "content_fetch_failed",
    "content_parse_failed",
    "parsed",
    "linked",
];
/// Every pin status.
pub const PIN_STATUSES: [&str; 6] = [
    "wanted", "queued", "pinning", "pinned", "retrying", "failed",
];

/// What the page must show for each `data-k` of the test contract, worked out from the
/// API's `/api/status` and `/api/failures` answers (statuses absent there show 0; null
/// source fields show no value and are left out).
pub fn expected_values(
    status: &serde_json::Value,
    failures: &serde_json::Value,
) -> BTreeMap<String, String> {
    let mut want = BTreeMap::new();
    let mut put = |k: String, v: &serde_json::Value| {
        if let Some(n) = v.as_u64() {
            want.insert(k, n.to_string());
        }
    };
    for k in ["tokens", "contracts", "pins"] {
        put(k.to_owned(), &status[k]);
    }
    let zero = serde_json::json!(0);
    for s in TOKEN_STATUSES {
        put(
            format!("tokens_by_status.{s}"),
            status["tokens_by_status"].get(s).unwrap_or(&zero),
        );
    }
    for s in PIN_STATUSES {
        put(
            format!("pins_by_status.{s}"),
            status["pins_by_status"].get(s).unwrap_or(&zero),
        );
    }
    for (q, n) in status["outbox"].as_object().into_iter().flatten() {
        put(format!("outbox.{q}"), n);
    }
    for s in status["sources"].as_array().into_iter().flatten() {
        let name = s["name"].as_str().unwrap_or_default();
        put(
            format!("sources.{name}.cursor_block"),
            &s["cursor"]["block"],
        );
        put(format!("sources.{name}.head"), &s["head"]);
        put(format!("sources.{name}.lag"), &s["lag"]);
        put(format!("sources.{name}.tokens"), &s["tokens"]);
    }
    for f in failures["failures"].as_array().into_iter().flatten() {
        let (stage, reason) = (
            f["stage"].as_str().unwrap_or_default(),
            f["reason"].as_str().unwrap_or_default(),
        );
        put(format!("failures.{stage}.{reason}"), &f["count"]);
    }
    want
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_values_reads_pairs_and_decodes_entities() {
        let dom = r#"<!DOCTYPE html><html><head><script src="a.js"></script>
<style>a > b { x: "data-k=\"no\"" }</style><!-- <i data-k="no" data-v="1"> --></head>
<body data-state="ready"><span class="num" data-k="tokens" data-v="50000">50,000</span>
<span data-k="sources.&lt;img src=x onerror=alert(1)&gt;.lag">—</span>
<td data-k='sources.a&amp;b &quot;q&quot;.head' data-v=12>12</td>
<i data-k="sources.<b>.tokens" data-v="7"></i></body></html>"#;
        let v = shown_values(dom);
        let want: BTreeMap<String, String> = [
            ("tokens", "50000"),
            ("sources.a&b \"q\".head", "12"),
            ("sources.<b>.tokens", "7"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(v, want);
        let all = shown(dom);
        assert_eq!(all.len(), 4);
        assert_eq!(all[1].key, "sources.<img src=x onerror=alert(1)>.lag");
        assert_eq!(all[1].value, None);
        assert_eq!(body_attr(dom, "data-state").as_deref(), Some("ready"));
    }

    #[test]
    fn decode_leaves_unknown_and_bare_ampersands() {
        assert_eq!(decode("a &amp; b &foo; &#60;&#x3e; &"), "a & b &foo; <> &");
    }
}
