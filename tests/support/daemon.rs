//! A `nifty run` process over a devnet for black-box tests: a config with fast schedules,
//! the process started and its ready line read, HTTP helpers, and a clean stop.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::devnet::Devnet;

/// The binary under test.
pub const NIFTY: &str = env!("CARGO_BIN_EXE_nifty");
/// The admin token the tests' daemons take from the environment.
pub const ADMIN_TOKEN: &str = "test-admin-token-7f3a";
/// The variable it is in.
pub const ADMIN_ENV: &str = "NIFTY_TEST_ADMIN_TOKEN";

/// A config over `devnet` (when given) with every job ticking every second, the devnet's
/// web host allowed, and the admin token read from [`ADMIN_ENV`] when `admin` is set.
pub fn config(dir: &Path, devnet: Option<&Devnet>, admin: bool, extra: &str) -> PathBuf {
    let data = dir.join("data");
    let admin_env = if admin { ADMIN_ENV } else { "" };
    let mut text = format!(
        r#"
data_dir = "{data}"
[store]
sync_commits = false
[http]
listen = "127.0.0.1:0"
admin_token_env = "{admin_env}"
[pinner]
retry_base_secs = 0
"#,
        data = data.display(),
    );
    match devnet {
        Some(d) => text.push_str(&format!(
            r#"
[jobs.analyse]
schedule = "* * * * * *"
budget_secs = 5
[jobs.pin]
schedule = "* * * * * *"
budget_secs = 5
[jobs.follow]
schedule = "*/2 * * * * *"
budget_secs = 5
{extra}
[gateway]
url = "{gateway}"
arweave_url = "{arweave}"
timeout_ms = 1500
allow_hosts = ["127.0.0.1"]
[cluster]
url = "{cluster}"
timeout_ms = 2000
attempts = 2
[sources.dev]
kind = "graph"
url = "{subgraph}"
confirmations = 5
schedule = "* * * * * *"
budget_secs = 5
"#,
            gateway = d.gateway,
            arweave = d.arweave,
            cluster = d.cluster,
            subgraph = d.subgraph,
        )),
        None => text.push_str(&format!("[jobs]\nrun_at_start = false\n{extra}\n")),
    }
    let path = dir.join("nifty.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A running daemon.
pub struct Daemon {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub api: String,
    /// Its config file.
    pub config: PathBuf,
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Daemon {
    /// Starts `nifty --config CONFIG run` and waits for its ready line.
    pub fn start(config: &Path) -> Daemon {
        Daemon::start_with_env(config, &[])
    }

    /// [`Daemon::start`] with more environment variables (secrets a config names, say).
    pub fn start_with_env(config: &Path, env: &[(&str, &str)]) -> Daemon {
        let mut child = Command::new(NIFTY)
            .arg("--config")
            .arg(config)
            .arg("run")
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .env(ADMIN_ENV, ADMIN_TOKEN)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("nifty run printed {line:?}: {e}"));
        let api = v["api"].as_str().unwrap().to_owned();
        assert!(api.starts_with("http://127.0.0.1:"), "{api}");
        Daemon {
            child: Some(child),
            api,
            config: config.to_owned(),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            client: reqwest::Client::new(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends `req` and returns status, headers and body.
    pub fn send(&self, req: reqwest::RequestBuilder) -> (u16, reqwest::header::HeaderMap, String) {
        self.runtime.block_on(async {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            (status, headers, r.text().await.unwrap())
        })
    }

    /// Sends `req`: status and body, or `None` when the connection failed.
    pub fn try_send(&self, req: reqwest::RequestBuilder) -> Option<(u16, String)> {
        self.runtime.block_on(async {
            let r = req.send().await.ok()?;
            let status = r.status().as_u16();
            Some((status, r.text().await.ok()?))
        })
    }

    /// GET `path` (from the API's root): status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        let (s, _, b) = self.send(self.client.get(format!("{}{path}", self.api)));
        (s, b)
    }

    /// GET `path`, which must answer 200 with JSON.
    pub fn json(&self, path: &str) -> serde_json::Value {
        let (s, b) = self.get(path);
        assert_eq!(s, 200, "{path}: {b}");
        serde_json::from_str(&b).unwrap_or_else(|e| panic!("{path}: {e}: {b}"))
    }

    /// POST a JSON body to `path` with an optional bearer token.
    pub fn post(
        &self,
        path: &str,
        body: &str,
        token: Option<&str>,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let mut req = self
            .client
            .post(format!("{}{path}", self.api))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        self.send(req)
    }

    /// Waits until the pipeline has nothing left: the source's cursor is past its snapshot,
    /// the outbox is empty and no pin is pending. Returns the last `/api/status`.
    pub fn wait_settled(&self, within: Duration) -> serde_json::Value {
        let deadline = Instant::now() + within;
        loop {
            let s = self.json("/api/status");
            if settled(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "not settled within {within:?}: {s}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Sends `signal` and waits for the exit; returns the exit code and how long it took.
    pub fn stop(&mut self, signal: &str) -> (Option<i32>, Duration) {
        let mut child = self.child.take().unwrap();
        let t = Instant::now();
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return (status.code(), t.elapsed());
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "nifty run ignored SIG{signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Whether a `/api/status` shows nothing left to do.
pub fn settled(s: &serde_json::Value) -> bool {
    let sources = s["sources"].as_array().cloned().unwrap_or_default();
    let scraped = !sources.is_empty()
        && sources.iter().filter(|x| x["end"].is_null()).all(|x| {
            match (x["cursor"]["block"].as_u64(), x["snapshot"].as_u64()) {
                (Some(c), Some(snap)) => c > snap,
                _ => false,
            }
        });
    let outbox: u64 = s["outbox"]
        .as_object()
        .map(|m| m.values().filter_map(|v| v.as_u64()).sum())
        .unwrap_or(0);
    let pending: u64 = ["wanted", "queued", "pinning", "retrying"]
        .iter()
        .filter_map(|k| s["pins_by_status"][k].as_u64())
        .sum();
    scraped && outbox == 0 && pending == 0 && s["tokens"].as_u64().unwrap_or(0) > 0
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
