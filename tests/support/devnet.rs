//! A `nifty devnet` process for black-box tests and benchmarks: started with flags, its
//! JSON line read, killed when dropped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A running devnet.
pub struct Devnet {
    /// The process.
    child: Child,
    /// The subgraph's GraphQL URL.
    pub subgraph: String,
    /// The admin base URL (`/mine`).
    pub admin: String,
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
    Devnet {
        child,
        subgraph: v["subgraph"].as_str().unwrap().to_owned(),
        admin: v["admin"].as_str().unwrap().to_owned(),
    }
}
