//! `Config::from_text` of the binary's `src/config.rs` (what `nifty` does with `nifty.toml`: parse, apply
//! environment overrides, validate, read secrets) on arbitrary text. It must never panic; a
//! config that loads must render (`nifty config show`) and load back to the same config,
//! its URLs shown redacted; and no secret may reach the rendering or an error message:
//! neither a secret read from the environment nor the key-bearing parts of a URL (user
//! info, query, fragment, the path segment after `/api/` of a subgraph or gateway, the
//! whole path of a chain node).
//!
//! The environment gives every `*_env` variable the value [`ENV_SECRET`] and overrides
//! nothing (`NIFTY_*` are unset). `@KEY@` in the input is replaced by [`URL_SECRET`] before
//! loading, so a seed or a dictionary word can place a key anywhere.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use nifty_scraper::graph::client::redact_url;

// The binary's config module itself, compiled into this target: depending on the `nifty`
// package would build its server, devnet and their dependencies into every fuzz build for
// this one file. It may use only crates (never `crate::` paths of the binary).
#[allow(dead_code)]
#[path = "../../src/config.rs"]
mod config;
use config::{Config, ENV_PREFIX};

/// What every secret-holding environment variable holds.
const ENV_SECRET: &str = "envSecretValue7f3a";
/// What `@KEY@` becomes.
const URL_SECRET: &str = "urlKey9Qx2Lm7Vw";
/// The placeholder.
const PLACEHOLDER: &str = "@KEY@";

fn env(var: &str) -> Option<String> {
    (!var.starts_with(ENV_PREFIX)).then(|| ENV_SECRET.to_owned())
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    if raw.contains(ENV_SECRET) || raw.contains(URL_SECRET) {
        return;
    }
    let text = raw.replace(PLACEHOLDER, URL_SECRET);
    let path = Path::new("fuzz.toml");
    let loaded = Config::from_text(&text, path, &env);
    let url_secret_only_in_urls = url_secret_is_only_secret(&text);
    match &loaded {
        Ok(config) => {
            let shown = config.to_toml();
            for (what, out) in [("config show", &shown), ("Debug", &format!("{config:?}"))] {
                assert!(!out.contains(ENV_SECRET), "{what} shows a secret:\n{out}");
            }
            if url_secret_only_in_urls {
                assert!(
                    !shown.contains(URL_SECRET),
                    "config show shows a URL's key:\n{shown}"
                );
            }
            let again = Config::from_text(&shown, path, &env)
                .unwrap_or_else(|e| panic!("what config show printed does not load: {e}\n{shown}"));
            assert_eq!(
                again,
                redacted(config),
                "config show does not load back the same"
            );
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains(ENV_SECRET), "an error shows a secret: {msg}");
            if url_secret_only_in_urls {
                assert!(
                    !msg.contains(URL_SECRET),
                    "an error shows a URL's key: {msg}"
                );
            }
        }
    }
});

/// The configuration as `config show` means to show it: URLs redacted.
fn redacted(c: &Config) -> Config {
    let mut c = c.clone();
    for s in c.sources.values_mut() {
        s.url = s.shown_url();
    }
    c.cluster.url = redact_url(&c.cluster.url);
    c.gateway.url = redact_url(&c.gateway.url);
    c.gateway.arweave_url = redact_url(&c.gateway.arweave_url);
    c
}

/// True when the TOML names [`URL_SECRET`] only inside the secret parts of URL keys (so
/// nothing may print it), and does name it.
fn url_secret_is_only_secret(text: &str) -> bool {
    let Ok(table) = text.parse::<toml::Table>() else {
        return false;
    };
    let mut in_secret = false;
    let mut elsewhere = false;
    walk(
        &toml::Value::Table(table),
        &mut vec![],
        &mut |path, value| {
            if path.iter().any(|k| k.contains(URL_SECRET)) {
                elsewhere = true;
            }
            let Some(s) = value.as_str() else { return };
            if !s.contains(URL_SECRET) {
                return;
            }
            match url_kind(path, text) {
                Some(rpc) if only_in_secret_parts(s, rpc) => in_secret = true,
                _ => elsewhere = true,
            }
        },
    );
    in_secret && !elsewhere
}

/// Calls `f` with the key path of every value.
fn walk(v: &toml::Value, path: &mut Vec<String>, f: &mut dyn FnMut(&[String], &toml::Value)) {
    f(path, v);
    match v {
        toml::Value::Table(t) => {
            for (k, child) in t {
                path.push(k.clone());
                walk(child, path, f);
                path.pop();
            }
        }
        toml::Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                path.push(i.to_string());
                walk(child, path, f);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Whether `path` is a URL key, and if so whether a chain node's (whose whole path is
/// secret) rather than a subgraph's or gateway's.
fn url_kind(path: &[String], text: &str) -> Option<bool> {
    match path {
        [t, k]
            if (t == "gateway" && (k == "url" || k == "arweave_url"))
                || (t == "cluster" && k == "url") =>
        {
            Some(false)
        }
        [s, name, k] if s == "sources" && k == "url" => {
            let table = text.parse::<toml::Table>().ok()?;
            let kind = table
                .get("sources")?
                .get(name.as_str())?
                .get("kind")?
                .as_str()?;
            match kind {
                "rpc" => Some(true),
                "graph" => Some(false),
                _ => None,
            }
        }
        _ => None,
    }
}

/// True when [`URL_SECRET`] is in `url` only where the HTTP client treats text as a key:
/// user info, query, fragment, and the path after an `api` segment (the whole path of a
/// chain node, `rpc`).
fn only_in_secret_parts(url: &str, rpc: bool) -> bool {
    let Ok(u) = url::Url::parse(url) else {
        return false;
    };
    let mut open = vec![u.scheme().to_owned()];
    open.extend(u.host_str().map(str::to_owned));
    open.extend(u.port().map(|p| p.to_string()));
    let mut secret = vec![u.username().to_owned()];
    secret.extend(u.password().map(str::to_owned));
    secret.extend(u.query().map(str::to_owned));
    secret.extend(u.fragment().map(str::to_owned));
    // A URL without a host (`scheme:text`) has a path but no segments.
    if u.path_segments().is_none() {
        if rpc {
            secret.push(u.path().to_owned());
        } else {
            open.push(u.path().to_owned());
        }
    }
    let mut after_api = false;
    for seg in u.path_segments().into_iter().flatten() {
        if rpc || after_api {
            secret.push(seg.to_owned());
        } else {
            open.push(seg.to_owned());
        }
        after_api = seg.eq_ignore_ascii_case("api");
    }
    !open.iter().any(|p| p.contains(URL_SECRET)) && secret.iter().any(|p| p.contains(URL_SECRET))
}
