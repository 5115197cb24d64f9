//! `nifty demo` (what `make demo` runs): it reaches "all tokens scraped, pins flowing",
//! serves the dashboard, and a ctrl-c stops it cleanly with its scratch store removed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const NIFTY: &str = env!("CARGO_BIN_EXE_nifty");

/// Kills the demo if the test fails before it stops it.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn demo_reaches_pins_flowing_and_stops_cleanly_on_ctrl_c() {
    let child = Command::new(NIFTY)
        .args(["demo", "--tokens", "4000", "--listen", "127.0.0.1:0"])
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let child = &mut child.0;
    // stderr is drained as it comes, so the demo never blocks on a full pipe.
    let err_pipe = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(err_pipe), &mut s);
        s
    });
    let (tx, rx) = mpsc::channel::<String>();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let mut seen = vec![];
    let mut dashboard = None;
    let mut store = None;
    while !seen
        .iter()
        .any(|l: &String| l.contains(nifty::demo::FLOWING))
    {
        let left = Duration::from_secs(60).saturating_sub(started.elapsed());
        let line = rx.recv_timeout(left).unwrap_or_else(|_| {
            panic!(
                "no \"{}\" within a minute:\n{}",
                nifty::demo::FLOWING,
                seen.join("\n")
            )
        });
        if let Some(url) = line.trim().strip_prefix("dashboard") {
            dashboard = Some(url.trim().to_owned());
        }
        if let Some(dir) = line.trim().strip_prefix("store") {
            store = Some(std::path::PathBuf::from(dir.trim()));
        }
        seen.push(line);
    }
    let flowing_after = started.elapsed();
    // The dashboard it printed answers.
    let dashboard = dashboard.expect("the demo prints the dashboard URL");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let page = rt.block_on(async {
        reqwest::get(&dashboard)
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    assert!(page.contains("app.js"), "{page}");
    let store = store.expect("the demo prints its store");
    assert!(store.exists());

    let t = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the demo ignored ctrl-c"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let stopped_in = t.elapsed();
    let rest: Vec<String> = rx.try_iter().collect();
    let err = stderr.join().unwrap();
    assert!(
        status.success(),
        "exit {status:?}\n{}\n{}\n{err}",
        seen.join("\n"),
        rest.join("\n")
    );
    assert!(
        rest.iter().any(|l| l.contains("stopped cleanly")),
        "{rest:?}"
    );
    assert!(stopped_in < Duration::from_secs(5), "{stopped_in:?}");
    assert!(!store.exists(), "the scratch store is removed");
    assert!(!err.contains("ERROR") && !err.contains("panicked"), "{err}");
    println!("pins flowing after {flowing_after:?}; stopped {stopped_in:?} after ctrl-c");
}
