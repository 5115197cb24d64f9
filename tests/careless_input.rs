//! A careless operator's mistakes, against the binary: each is refused at start with a
//! message that names what was wrong (the key and its line, the flag, the variable, the
//! path), exit code 2, and nothing touched; and what the daemon echoes back stays small.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const NIFTY: &str = env!("CARGO_BIN_EXE_nifty");
const SOURCE: &str = "[sources.main]\nkind = \"graph\"\nurl = \"http://127.0.0.1:9/graphql\"\n";

/// Runs nifty in `dir` with a clean NIFTY_* environment plus `env`.
fn nifty(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(NIFTY);
    cmd.current_dir(dir)
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("NIFTY_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied()).output().unwrap()
}

/// [`nifty`] for a command that should end by itself: killed after `limit` (a daemon
/// that started when it should have refused to), which then shows as exit code -1.
fn within(dir: &Path, args: &[&str], env: &[(&str, &str)], limit: Duration) -> Output {
    let mut cmd = Command::new(NIFTY);
    for (k, _) in std::env::vars() {
        if k.starts_with("NIFTY_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .current_dir(dir)
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() && started.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> (i32, String, String) {
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn write_config(dir: &Path, body: &str) {
    let text = format!("data_dir = \"store\"\n[store]\nsync_commits = false\n{body}");
    std::fs::write(dir.join("nifty.toml"), text).unwrap();
}

#[test]
fn config_mistakes_name_the_key_line_or_variable_and_exit_2() {
    type Case<'a> = (
        &'a str,
        &'a [&'a str],
        &'a [(&'a str, &'a str)],
        &'a [&'a str],
    );
    // write_config puts three lines first, `[store]` the second of them.
    let big = "cache_mb = 99999999999999999999999\n";
    let dup = "[http]\nlisten = \"127.0.0.1:1\"\nlisten = \"127.0.0.1:2\"\n";
    let twice = "[store]\ncache_mb = 64\n";
    let cases: &[Case] = &[
        // An integer too large for any key, and a key given twice: the key and the line,
        // never `.`.
        (big, &["status"], &[], &["store.cache_mb", "line 4"]),
        (dup, &["status"], &[], &["http.listen", "line 6"]),
        (twice, &["status"], &[], &["key `store`", "line 4"]),
        (
            "[cluster]\nreplication_min = 3\nreplication_max = 2\n",
            &["status"],
            &[],
            &["replication_min", "replication_max"],
        ),
        // The file's rule for a source holds for the flag that sets the same value.
        (
            SOURCE,
            &["backfill", "--timeout-ms", "0"],
            &[],
            &["--timeout-ms 0", "100"],
        ),
        // A NIFTY_ variable that names no key is an error naming the closest key.
        (
            "",
            &["status"],
            &[("NIFTY_STORE_CACHEMB", "64")],
            &["NIFTY_STORE_CACHEMB", "NIFTY_STORE_CACHE_MB"],
        ),
        (
            SOURCE,
            &["status"],
            &[("NIFTY_SOURCES_X_URL", "http://127.0.0.1:9/")],
            &["NIFTY_SOURCES_X_URL", "[sources.NAME]"],
        ),
    ];
    for (cfg, args, env, want) in cases {
        let d = tempfile::tempdir().unwrap();
        write_config(d.path(), cfg);
        let (code, _, err) = text(&nifty(d.path(), args, env));
        assert_eq!(code, 2, "{cfg:?} {args:?} {env:?}: {err}");
        for w in *want {
            assert!(
                err.contains(w),
                "{cfg:?} {args:?} {env:?}:\n got {err}\n want {w}"
            );
        }
        assert!(!err.contains("key `.`"), "{err}");
        assert!(
            !d.path().join("store").exists(),
            "{cfg:?}: touched the store"
        );
    }
    // No path can hold a NUL byte (nor can an argument or a variable carry one; a file
    // can): a usage error naming the key, not the operating system's words.
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("nifty.toml"),
        "data_dir = \"a\\u0000b\"\n[store]\nsync_commits = false\n",
    )
    .unwrap();
    let (code, _, err) = text(&nifty(d.path(), &["status"], &[]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("data_dir") && err.contains("NUL"), "{err}");
}

#[test]
fn a_data_dir_that_is_a_file_says_so() {
    let d = tempfile::tempdir().unwrap();
    write_config(d.path(), "");
    std::fs::write(d.path().join("store"), "not a folder").unwrap();
    let (code, _, err) = text(&nifty(d.path(), &["status"], &[]));
    assert_ne!(code, 0);
    assert!(err.contains("is a file"), "{err}");
    assert!(!err.contains("os error 17"), "{err}");
}

#[test]
fn a_short_admin_token_stops_the_daemon_at_start_naming_its_variable() {
    let d = tempfile::tempdir().unwrap();
    write_config(
        d.path(),
        "[http]\nlisten = \"127.0.0.1:0\"\nadmin_token_env = \"CARELESS_ADMIN\"\n[jobs]\nrun_at_start = false\n",
    );
    for token in ["x", "fifteen-bytes!!"] {
        let (code, out, err) = text(&within(
            d.path(),
            &["run"],
            &[("CARELESS_ADMIN", token)],
            Duration::from_secs(20),
        ));
        assert_eq!(code, 2, "{token:?}: {out} {err}");
        assert!(
            err.contains("CARELESS_ADMIN") && err.contains("16 bytes"),
            "{err}"
        );
        assert!(
            !err.contains(token) || token.len() == 1,
            "the token itself: {err}"
        );
        assert!(out.is_empty(), "the daemon started: {out}");
    }
}

/// A child process killed when dropped, so a failing test leaves no daemon behind.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `nifty run` in `dir` and returns it with its API address.
fn daemon(dir: &Path, env: &[(&str, &str)]) -> (Killed, String) {
    let mut cmd = Command::new(NIFTY);
    for (k, _) in std::env::vars() {
        if k.starts_with("NIFTY_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .current_dir(dir)
        .arg("run")
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    (Killed(child), v["api"].as_str().unwrap().to_owned())
}

#[test]
fn a_running_daemon_is_named_by_its_address_and_echoes_no_megabyte() {
    const TOKEN: &str = "careless-admin-token-0123456789";
    let d = tempfile::tempdir().unwrap();
    write_config(
        d.path(),
        &format!(
            "[http]\nlisten = \"127.0.0.1:0\"\nadmin_token_env = \"CARELESS_ADMIN\"\n[jobs]\nrun_at_start = false\n{SOURCE}enabled = false\n"
        ),
    );
    let (child, api) = daemon(d.path(), &[("CARELESS_ADMIN", TOKEN)]);
    // Another command on the same data dir is pointed at this daemon's own address.
    let (code, _, err) = text(&nifty(d.path(), &["status"], &[]));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains(&format!("--api {api}")), "{api}: {err}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let huge = "1".repeat(1024 * 1024);
    let answers = rt.block_on(async {
        let c = reqwest::Client::new();
        let mut out = vec![];
        let cursor = c
            .post(format!("{api}/api/cursor/main"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(format!("{{\"block\": 1, \"id\": \"0x{huge}\"}}"))
            .send()
            .await
            .unwrap();
        out.push((cursor.status().as_u16(), cursor.text().await.unwrap()));
        let runs = c
            .get(format!("{api}/api/runs?limit={}", &huge[..60_000]))
            .send()
            .await
            .unwrap();
        out.push((runs.status().as_u16(), runs.text().await.unwrap()));
        out
    });
    drop(child);
    for (status, body) in answers {
        assert_eq!(status, 400, "{body:.300}");
        assert!(
            body.len() < 4096,
            "{} bytes echoed: {body:.300}",
            body.len()
        );
        assert!(
            body.contains("bytes"),
            "the answer says how long the value was: {body}"
        );
    }
}
