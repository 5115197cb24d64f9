//! A `nifty devnet` process for black-box tests and benchmarks: started with flags, its
//! JSON line read, killed when dropped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use nifty::devnet::{Chain, ChainParams, generate};

/// A running devnet.
pub struct Devnet {
    /// The process.
    child: Child,
    /// The subgraph's GraphQL URL.
    pub subgraph: String,
    /// The admin base URL (`/mine`, `/cluster/outage`, `/cluster/stats`).
    pub admin: String,
    /// The simulated IPFS Cluster's REST API base URL.
    pub cluster: String,
    /// The simulated IPFS gateway's base URL (`<gateway>/ipfs/<cid>/<path>`).
    pub gateway: String,
    /// The Arweave gateway base URL (`<arweave>/<txid>`).
    pub arweave: String,
    /// The base of plain web token URIs (`http://127.0.0.1:P/web`).
    pub web: String,
    /// The parameters of the chain it serves: [`Devnet::chain`] generates the same one.
    pub params: ChainParams,
}

impl Devnet {
    /// The devnet's chain, generated in-process from the same parameters (as first served:
    /// tokens added by `/admin/mine` are not in it unless the test mines it too).
    pub fn chain(&self) -> Chain {
        generate(&self.params)
    }

    /// `<admin>/cluster/stats`.
    pub fn cluster_stats_url(&self) -> String {
        format!("{}/cluster/stats", self.admin)
    }

    /// `<admin>/cluster/outage` (POST `{"seconds": N, "mode": "unavailable"|"refuse"}`).
    pub fn cluster_outage_url(&self) -> String {
        format!("{}/cluster/outage", self.admin)
    }

    /// The devnet's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `nifty devnet --tokens N --seed S FLAGS...` and waits for its JSON line.
pub fn start(nifty: &str, tokens: u64, seed: u64, flags: &[&str]) -> Devnet {
    let mut child = Command::new(nifty)
        .args([
            "devnet",
            "--tokens",
            &tokens.to_string(),
            "--seed",
            &seed.to_string(),
        ])
        .args(flags)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("devnet printed {line:?}: {e}"));
    let text = |key: &str| {
        v[key]
            .as_str()
            .unwrap_or_else(|| panic!("no {key} in {line:?}"))
            .to_owned()
    };
    let chain = &v["chain"];
    let params = ChainParams {
        tokens: chain["tokens"].as_u64().unwrap() as usize,
        seed: chain["seed"].as_u64().unwrap(),
        head_tail: chain["head_tail"].as_u64().unwrap(),
        web_base: chain["web_base"].as_str().map(str::to_owned),
    };
    Devnet {
        subgraph: text("subgraph"),
        admin: text("admin"),
        cluster: text("cluster"),
        gateway: text("gateway"),
        arweave: text("arweave"),
        web: text("web"),
        params,
        child,
    }
}
