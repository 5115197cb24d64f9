//! Black-box tests of what `nifty` does when it cannot write its output: a closed pipe on
//! stdout ends a command quietly with exit code 0, a full disk behind stdout fails it with
//! one line on stderr and exit code 1, a closed stderr changes nothing, and none panics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nifty_state::{Cursor, Page, Position, Store, StoreOptions, Token, TokenId, TokenKey};

const CONTRACT: &str = "0x0707070707070707070707070707070707070707";
const FULL: &str = "error: cannot write to stdout: No space left on device (os error 28)";

/// A data dir with one token and one cursor, so that every command has something to print.
fn store(dir: &Path) {
    std::fs::write(
        dir.join("nifty.toml"),
        "data_dir = \"store\"\n[sources.main]\nkind = \"graph\"\nurl = \"http://127.0.0.1:9/graphql\"\n",
    )
    .unwrap();
    let store = Store::open(&dir.join("store"), &StoreOptions::default()).unwrap();
    let key = TokenKey {
        contract: nifty_state::Address([7; 20]),
        token_id: TokenId(1u64.into()),
    };
    let tokens = [(key, Token::scraped("main", &key, None, 40))];
    store
        .commit_page(&Page {
            cursor_name: "main",
            cursor: Cursor {
                position: Position {
                    block: 40,
                    id: key.graph_id(),
                },
                snapshot: Some(60),
                head: Some(80),
                ..Default::default()
            },
            tokens: &tokens,
            contracts: &[],
        })
        .unwrap();
}

/// Every command that prints to stdout and needs nothing but the data dir.
fn commands() -> Vec<Vec<&'static str>> {
    vec![
        vec!["status"],
        vec!["status", "--json"],
        vec!["report"],
        vec!["report", "--json"],
        vec!["cursor", "show"],
        vec!["cursor", "show", "--json"],
        // The source never answers: --force moves the cursor without its head.
        vec!["cursor", "set", "main", "41", "--force"],
        vec!["check", CONTRACT, "1"],
        vec!["check", CONTRACT, "1", "--json"],
        vec!["config", "show"],
        vec!["config", "init", "--path", "written.toml", "--force"],
        // Passes with nothing to do need no backend.
        vec!["pin"],
        vec!["pin", "--json"],
        vec!["follow"],
    ]
}

fn command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nifty"));
    cmd.current_dir(dir)
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .env_remove("RUST_BACKTRACE");
    for (k, _) in std::env::vars() {
        if k.starts_with("NIFTY_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// The write end of a pipe whose read end is already closed: every write fails with EPIPE.
fn closed_pipe() -> Stdio {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    writer.into()
}

fn dev_full() -> Stdio {
    OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap()
        .into()
}

fn run(dir: &Path, args: &[&str], stdout: Stdio, stderr: Stdio) -> Output {
    command(dir, args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_closed_stdout_ends_each_command_quietly_with_exit_0() {
    let d = tempfile::tempdir().unwrap();
    store(d.path());
    for args in commands() {
        let o = run(d.path(), &args, closed_pipe(), Stdio::piped());
        let err = stderr(&o);
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        assert_eq!(o.status.code(), Some(0), "{args:?}: {err}");
        assert!(
            !err.lines().any(|l| l.starts_with("error")),
            "{args:?} reported an error for a closed pipe: {err}"
        );
    }
}

#[test]
fn a_full_stdout_fails_each_command_with_one_line_and_exit_1() {
    let d = tempfile::tempdir().unwrap();
    store(d.path());
    for args in commands() {
        let o = run(d.path(), &args, dev_full(), Stdio::piped());
        let err = stderr(&o);
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(errors, [FULL], "{args:?}: {err}");
    }
}

#[test]
fn a_closed_stderr_changes_no_exit_code() {
    let d = tempfile::tempdir().unwrap();
    store(d.path());
    // An error line to a reader that went away: still exit 2 for a usage error.
    let o = run(
        d.path(),
        &["cursor", "show", "nosuch"],
        Stdio::null(),
        closed_pipe(),
    );
    assert_eq!(o.status.code(), Some(2));
    // Log lines (human and JSON) to a closed stderr, output to a closed stdout.
    for format in ["human", "json"] {
        let o = command(
            d.path(),
            &[
                "--log-format",
                format,
                "cursor",
                "set",
                "main",
                "42",
                "--force",
            ],
        )
        .env("RUST_LOG", "debug")
        .stdout(closed_pipe())
        .stderr(closed_pipe())
        .output()
        .unwrap();
        assert_eq!(o.status.code(), Some(0), "{format}");
    }
    let o = run(
        d.path(),
        &["cursor", "show", "--json"],
        Stdio::piped(),
        Stdio::piped(),
    );
    let shown: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(shown["main"]["position"]["block"], 42, "{shown}");
}

/// `GET path` on `addr` with a bare HTTP/1.0 request: the status line.
fn get(addr: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    answer.lines().next().map(str::to_owned)
}

/// A server started with a closed stdout and JSON logs read as they come.
struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Server {
    fn start(dir: &Path, args: &[&str]) -> Server {
        let mut child = command(dir, args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(closed_pipe())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Server {
            child,
            lines,
            seen: vec![],
        }
    }

    /// The first log line whose message is `message`, within a minute.
    fn log(&mut self, message: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = self.lines.recv_timeout(left) else {
                panic!("no {message:?} in {:#?}", self.seen);
            };
            self.seen.push(line.clone());
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v["message"] == message
            {
                return v;
            }
        }
    }

    /// Waits until `addr` answers HTTP while the process keeps running: the status line.
    fn answers(&mut self, addr: &str, path: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = get(addr, path) {
                std::thread::sleep(Duration::from_millis(300));
                self.still_running();
                return s;
            }
            self.still_running();
            assert!(Instant::now() < deadline, "no answer from {addr}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn still_running(&mut self) {
        if let Some(exit) = self.child.try_wait().unwrap() {
            self.seen
                .extend(self.lines.recv_timeout(Duration::from_secs(1)));
            self.seen.extend(self.lines.try_iter());
            panic!("exited with {exit}: {:#?}", self.seen);
        }
    }

    /// Stops it with SIGTERM: its exit code and everything it logged.
    fn stop(mut self) -> (Option<i32>, String) {
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let exit = self.child.wait().unwrap();
        // The reader thread ends with the process's stderr.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(10)) {
            self.seen.push(line);
        }
        (exit.code(), self.seen.join("\n"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_daemon_whose_stdout_is_closed_keeps_serving() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("nifty.toml"),
        "data_dir = \"store\"\n[store]\nsync_commits = false\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [jobs]\nrun_at_start = false\n",
    )
    .unwrap();
    let mut server = Server::start(d.path(), &["--log-format", "json", "run"]);
    let serving = server.log("serving the API and dashboard");
    let addr = serving["addr"].as_str().unwrap().to_owned();
    let warned = server.log("could not print the ready line; serving all the same");
    assert!(
        warned["ready"].as_str().unwrap().contains(&addr),
        "the log has the ready line: {warned}"
    );
    let status = server.answers(&addr, "/api/status");
    assert!(status.contains(" 200 "), "{status}");
    let (code, log) = server.stop();
    assert!(!log.contains("panicked"), "{log}");
    assert_eq!(code, Some(0), "{log}");
}

#[test]
fn a_devnet_whose_stdout_is_closed_keeps_serving() {
    let d = tempfile::tempdir().unwrap();
    let any = "127.0.0.1:0";
    let mut server = Server::start(
        d.path(),
        &[
            "--log-format",
            "json",
            "devnet",
            "--tokens",
            "20",
            "--listen",
            any,
            "--cluster-listen",
            any,
            "--gateway-listen",
            any,
        ],
    );
    let warned = server.log("could not print the devnet's URLs; serving all the same");
    let ready: serde_json::Value = serde_json::from_str(warned["ready"].as_str().unwrap()).unwrap();
    let cluster = ready["cluster"].as_str().unwrap();
    let addr = cluster.strip_prefix("http://").unwrap().to_owned();
    let status = server.answers(&addr, "/id");
    assert!(status.starts_with("HTTP/1"), "{status}");
    let (code, log) = server.stop();
    assert!(!log.contains("panicked"), "{log}");
    assert_eq!(code, Some(0), "{log}");
}

#[test]
fn a_demo_whose_reader_goes_away_stops_quietly() {
    let d = tempfile::tempdir().unwrap();
    let mut child = command(
        d.path(),
        &["demo", "--tokens", "200", "--listen", "127.0.0.1:0"],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let err = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = BufReader::new(err).read_to_string(&mut s);
        s
    });
    // Read up to the dashboard's address (`nifty demo | head`), then go away.
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("dashboard") {
        assert_ne!(out.read_line(&mut seen).unwrap(), 0, "{seen}");
    }
    drop(out);
    let deadline = Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the demo kept running without a reader: {}",
                stderr.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let err = stderr.join().unwrap();
    assert!(!err.contains("panicked"), "{err}");
    assert!(!err.contains("error"), "{err}");
    assert_eq!(exit.code(), Some(0), "{err}");
}
