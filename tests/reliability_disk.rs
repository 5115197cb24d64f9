//! A full disk and a read-only data dir: every command that cannot write says so in one line
//! naming the data dir and the cause (no panic, no backtrace), the store is never left
//! damaged, and once space (or write access) returns, resuming ends with exactly the tokens
//! of the devnet's chain.
//!
//! The data dir lives on a small tmpfs in a private mount namespace: each test re-runs
//! itself under `unshare --mount` (`--user --map-root-user` too when not root), mounts the
//! tmpfs there, and grows it later with `mount -o remount,size=...`. Where unshare or
//! mounting is not allowed, each test says so and passes without running (a visible skip).
//!
//! Two ways to run out of space are covered: the store's free-space reserve
//! (`store.min_free_mb`) refusing bulk writes before the disk is full, and sled itself
//! meeting ENOSPC with the reserve off (`min_free_mb = 0`), after which the process stops.
//!
//! `make test` runs one fill point per case (about a minute in all); `NIFTY_SOAK=1` repeats
//! the backfill cases over several tmpfs sizes and reserves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nifty::devnet::generate;
use nifty_state::{Position, Store, StoreOptions};

mod support {
    pub mod daemon;
    pub mod devnet;
}
use support::daemon::NIFTY;
use support::devnet::Devnet;

/// Set in the re-run test process that runs inside the mount namespace.
const INNER_ENV: &str = "NIFTY_DISK_INNER";
/// Chooses the long version.
const SOAK_ENV: &str = "NIFTY_SOAK";
/// The environment override of `store.min_free_mb`.
const MIN_FREE_ENV: &str = "NIFTY_STORE_MIN_FREE_MB";
/// What the OS calls a full disk and a read-only one.
const ENOSPC: &str = "No space left on device";
const EROFS: &str = "Read-only file system";
/// Confirmations of `nifty backfill` without a config: its snapshot is the head minus this.
const BACKFILL_CONFIRMATIONS: u64 = 20;
/// Confirmations of the daemon's source.
const DAEMON_CONFIRMATIONS: u64 = 5;

/// One test at a time: each starts devnets and fills disks, and the timings it checks
/// should not depend on what else runs.
static SERIAL: Mutex<()> = Mutex::new(());

fn soak() -> bool {
    std::env::var(SOAK_ENV).is_ok_and(|v| v == "1")
}

// ---------------------------------------------------------------------------------------
// The mount namespace.

/// Runs `body` in a private mount namespace: directly when this process is the re-run one,
/// else by re-running this test under `unshare`. Skips (passing, with a message) when no
/// namespace with mounts can be had here.
fn in_mount_namespace(test: &str, body: fn()) {
    if std::env::var_os(INNER_ENV).is_some() {
        body();
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(unshare) = unshare_prefix() else {
        // Straight to stderr, past the test harness's capture: a skip must be seen.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: cannot mount a tmpfs in a new mount namespace here (unshare \
             --mount, and --user --map-root-user, were both refused or unshare is missing)"
        );
        return;
    };
    let started = Instant::now();
    let mut inner = Command::new(&unshare[0]);
    inner
        .args(&unshare[1..])
        .arg(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads", "1"])
        .env(INNER_ENV, "1");
    let out = output_within(test, &mut inner, INNER_LIMIT);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("1 passed"),
        "{test} in a mount namespace ({}) failed: {:?}\n{text}",
        unshare.join(" "),
        out.status
    );
    // The figures the inner run measured.
    for line in text
        .lines()
        .filter_map(|l| l.find("disk: ").map(|i| &l[i..]))
    {
        eprintln!("{line}");
    }
    eprintln!(
        "disk: {test} took {:.1}s ({})",
        started.elapsed().as_secs_f64(),
        unshare.join(" ")
    );
}

/// The `unshare` invocation that gives this user a mount namespace where tmpfs mounts
/// work, if any does: plain `--mount` for root, a user namespace mapping us to root else.
fn unshare_prefix() -> Option<Vec<String>> {
    let probe = tempfile::tempdir().ok()?;
    let candidates: [&[&str]; 2] = [
        &["unshare", "--mount"],
        &["unshare", "--user", "--map-root-user", "--mount"],
    ];
    candidates.iter().find_map(|c| {
        let ok = Command::new(c[0])
            .args(&c[1..])
            .args(["sh", "-c", "mount -t tmpfs -o size=1m tmpfs \"$1\"", "sh"])
            .arg(probe.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| c.iter().map(|s| s.to_string()).collect())
    })
}

/// Runs a mount-family command, which must succeed.
fn mount_cmd(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A tmpfs mounted on a folder; unmounted when dropped (the namespace goes with the
/// process anyway, but the folder should be empty again for its TempDir to remove it).
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, mib: u64) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        mount_cmd(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            &format!("size={mib}m"),
            "tmpfs",
            dir.to_str().unwrap(),
        ]);
        Tmpfs {
            dir: dir.to_owned(),
        }
    }

    /// Grows (or shrinks) the same filesystem: its files stay.
    fn resize(&self, mib: u64) {
        mount_cmd(&[
            "mount",
            "-o",
            &format!("remount,size={mib}m"),
            self.dir.to_str().unwrap(),
        ]);
    }

    /// Bytes used, as the filesystem counts them.
    fn used(&self) -> u64 {
        let out = Command::new("df")
            .args(["-B1", "--output=used"])
            .arg(&self.dir)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines().nth(1).unwrap().trim().parse().unwrap()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .stderr(Stdio::null())
            .status();
    }
}

/// A folder bind-mounted onto itself read-only; writable again when dropped.
struct ReadOnly {
    dir: PathBuf,
}

impl ReadOnly {
    fn bind(dir: &Path) -> ReadOnly {
        let d = dir.to_str().unwrap();
        mount_cmd(&["mount", "--bind", d, d]);
        mount_cmd(&["mount", "-o", "remount,ro,bind", d]);
        ReadOnly {
            dir: dir.to_owned(),
        }
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        mount_cmd(&["umount", self.dir.to_str().unwrap()]);
    }
}

// ---------------------------------------------------------------------------------------
// The binary and what it says.

/// `nifty --data-dir DATA ARGS` with the reserve `min_free_mb` (None: the default).
fn nifty(data: &Path, min_free_mb: Option<u64>, args: &[&str]) -> Output {
    let mut cmd = Command::new(NIFTY);
    cmd.arg("--data-dir")
        .arg(data)
        .args(args)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .env_remove("RUST_BACKTRACE");
    if let Some(mb) = min_free_mb {
        cmd.env(MIN_FREE_ENV, mb.to_string());
    }
    output_within(
        &format!("nifty {}", args.join(" ")),
        &mut cmd,
        COMMAND_LIMIT,
    )
}

/// How long one nifty command may take: a command that hangs on a full disk is a failure
/// to report, not a test that never ends.
const COMMAND_LIMIT: Duration = Duration::from_secs(120);
/// How long one test's run in its mount namespace may take (the soak's longest is ~2 min).
const INNER_LIMIT: Duration = Duration::from_secs(900);

/// Runs `cmd` to its end and returns what it printed; kills it and fails the test when it
/// takes longer than `limit`.
fn output_within(what: &str, cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut b = vec![];
        std::io::Read::read_to_end(&mut stdout, &mut b).map(|_| b)
    });
    let err = std::thread::spawn(move || {
        let mut b = vec![];
        std::io::Read::read_to_end(&mut stderr, &mut b).map(|_| b)
    });
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let err = err.join().unwrap().unwrap_or_default();
            panic!(
                "{what}: still running after {limit:?}; killed. stderr:\n{}",
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out.join().unwrap().unwrap_or_default(),
        stderr: err.join().unwrap().unwrap_or_default(),
    }
}

/// Asserts the command failed with one clear `error:` line naming `dir` and `cause`, and
/// neither panicked nor printed a backtrace. Returns the line.
fn clear_error(what: &str, out: &Output, dir: &Path, cause: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{what} succeeded; stderr:\n{stderr}");
    for bad in [
        "panicked",
        "stack backtrace",
        "RUST_BACKTRACE",
        "called `Result::unwrap()`",
        "called `Option::unwrap()`",
    ] {
        assert!(
            !stderr.contains(bad),
            "{what}: {bad:?} in stderr:\n{stderr}"
        );
    }
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{what}: one error line wanted:\n{stderr}");
    let line = errors[0];
    let dir = dir.display().to_string();
    assert!(
        line.contains(&dir) && line.contains(cause),
        "{what}: the error should name {dir} and {cause:?}: {line}"
    );
    line.to_owned()
}

fn stdout_ok(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---------------------------------------------------------------------------------------
// The truth and the store.

/// Every token of the devnet's chain minted up to `snapshot`, as `(block, graph id)`.
fn truth(d: &Devnet, confirmations: u64) -> BTreeSet<(u64, String)> {
    let chain = generate(&d.params);
    chain
        .tokens_at(chain.head() - confirmations)
        .iter()
        .map(|t| (t.block, t.graph_id.to_string()))
        .collect()
}

/// What a store holds, read after the process that wrote it ended.
struct Stored {
    /// `(block, graph id)` of every token.
    tokens: BTreeSet<(u64, String)>,
    /// Every cursor.
    cursors: BTreeMap<String, nifty_state::Cursor>,
}

/// Opens the store (it must open), checks the audit is clean and the token counter agrees
/// with the tree, and reads tokens and cursors.
fn stored(data: &Path) -> Stored {
    let store = Store::open(data, &StoreOptions::default())
        .unwrap_or_else(|e| panic!("the store in {} does not open: {e}", data.display()));
    let audit = store.audit().unwrap();
    assert!(audit.is_clean(), "audit of {}: {audit:?}", data.display());
    let mut tokens = BTreeSet::new();
    store
        .for_each_token(|k, t| {
            assert_eq!(k.graph_id(), t.graph_id, "key and graph id disagree");
            assert!(tokens.insert((t.mint_block, t.graph_id)), "a token twice");
        })
        .unwrap();
    assert_eq!(store.counts().unwrap().tokens, tokens.len() as u64);
    let cursors = store.cursors().unwrap().into_iter().collect();
    Stored { tokens, cursors }
}

/// The tokens a backfill job's cursors say are committed: those of each partition's range
/// at or before its cursor. The job cursor `backfill/<job>` holds the job's first block
/// and its end; the partitions cover that range exactly, so sorted by end each starts
/// after the one before.
fn committed_by_cursors(
    s: &Stored,
    job: &str,
    all: &BTreeSet<(u64, String)>,
) -> BTreeSet<(u64, String)> {
    let job_cursor = &s.cursors[&format!("backfill/{job}")];
    let mut parts: Vec<&nifty_state::Cursor> = s
        .cursors
        .iter()
        .filter(|(name, _)| name.starts_with(&format!("backfill/{job}/")))
        .map(|(_, c)| c)
        .collect();
    assert!(!parts.is_empty(), "no partitions of {job}");
    parts.sort_by_key(|c| c.end);
    let mut out = BTreeSet::new();
    let mut start = job_cursor.position.block;
    for p in parts {
        let end = p.end.unwrap();
        for t in all.range((start, String::new())..) {
            if t.0 > end {
                break;
            }
            let pos = Position {
                block: t.0,
                id: t.1.clone(),
            };
            if pos <= p.position {
                out.insert(t.clone());
            }
        }
        start = end + 1;
    }
    assert_eq!(
        start,
        job_cursor.end.unwrap() + 1,
        "the partitions of {job} do not end at the job's end"
    );
    out
}

fn assert_same(what: &str, got: &BTreeSet<(u64, String)>, want: &BTreeSet<(u64, String)>) {
    let missing: Vec<_> = want.difference(got).take(3).collect();
    let extra: Vec<_> = got.difference(want).take(3).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: {} stored, {} wanted; missing e.g. {missing:?}; extra e.g. {extra:?}",
        got.len(),
        want.len()
    );
}

// ---------------------------------------------------------------------------------------
// Backfill.

/// The devnet the backfill cases page: about 28 MiB of store when complete.
const BACKFILL_TOKENS: u64 = 30_000;
const BACKFILL_SEED: u64 = 3;

/// One backfill case: a tmpfs of `size_mib` with the reserve `min_free_mb` (0: off, so
/// sled itself meets the full disk) fills during `nifty backfill`; then the store is checked
/// with the space still short, the tmpfs grows, and `--resume` finishes the job.
fn backfill_fills_the_disk(
    d: &Devnet,
    want: &BTreeSet<(u64, String)>,
    size_mib: u64,
    min_free_mb: u64,
) {
    let root = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&root.path().join("mnt"), size_mib);
    let data = fs.dir.join("data");
    let job = "full";
    let reserve = Some(min_free_mb);
    let label = format!("backfill on {size_mib} MiB, reserve {min_free_mb} MiB");

    let started = Instant::now();
    let out = nifty(
        &data,
        reserve,
        &[
            "backfill",
            "--graph",
            &d.subgraph,
            "--from",
            "0",
            "--job",
            job,
            "--json",
        ],
    );
    let line = clear_error(&label, &out, &data, ENOSPC);
    assert!(
        line.contains(&format!("nifty backfill --resume {job}")),
        "{label}: the error should say how to resume: {line}"
    );
    let failed_after = started.elapsed();
    let used = fs.used();

    // With the space still short: the store opens (or, on a disk with no byte left, says so
    // clearly), and what it holds is exactly what its cursors say is committed.
    let status = nifty(&data, reserve, &["status", "--audit"]);
    let opened_while_full = status.status.success();
    if !opened_while_full {
        clear_error(
            &format!("{label}: status while full"),
            &status,
            &data,
            ENOSPC,
        );
    }
    // Space back: twice what the whole job needs.
    fs.resize(64);
    let s = stored(&data);
    let committed = committed_by_cursors(&s, job, want);
    assert_same(
        &format!("{label}: stored vs cursors"),
        &s.tokens,
        &committed,
    );
    let at_failure = s.tokens.len();
    assert!(
        at_failure > 0 && at_failure < want.len(),
        "{label}: the disk should fill midway, but {at_failure} of {} tokens were stored",
        want.len()
    );
    drop(s);
    stdout_ok(
        &format!("{label}: status --audit after the space returned"),
        &nifty(&data, reserve, &["status", "--audit"]),
    );

    let resumed = stdout_ok(
        &format!("{label}: resume"),
        &nifty(
            &data,
            reserve,
            &[
                "backfill",
                "--graph",
                &d.subgraph,
                "--resume",
                job,
                "--json",
            ],
        ),
    );
    let report: serde_json::Value = serde_json::from_str(resumed.trim()).unwrap();
    assert_eq!(report["outcome"], "completed", "{report}");
    assert_eq!(report["duplicates"], 0, "{report}");
    let s = stored(&data);
    assert_same(&format!("{label}: after resume"), &s.tokens, want);
    assert_eq!(
        report["tokens"].as_u64().unwrap() as usize + at_failure,
        want.len(),
        "{report}"
    );
    println!(
        "disk: {label}: failed after {:.1}s at {:.1} MiB used with {at_failure}/{} tokens \
         stored; status while full {}; resumed to all {}",
        failed_after.as_secs_f64(),
        used as f64 / (1 << 20) as f64,
        want.len(),
        if opened_while_full {
            "opened"
        } else {
            "refused clearly"
        },
        want.len()
    );
}

#[test]
fn backfill_that_fills_the_disk_stops_clearly_and_resumes_to_the_exact_token_set() {
    in_mount_namespace(
        "backfill_that_fills_the_disk_stops_clearly_and_resumes_to_the_exact_token_set",
        || {
            let d = support::devnet::start(NIFTY, BACKFILL_TOKENS, BACKFILL_SEED, &[]);
            let want = truth(&d, BACKFILL_CONFIRMATIONS);
            // (tmpfs MiB, reserve MiB): the reserve refusing pages with about 12 MiB used;
            // then no reserve, so sled itself runs out of space at 8 MiB.
            let mut cases = vec![(20, 8), (8, 0)];
            if soak() {
                cases.extend([(12, 4), (28, 12), (4, 0), (12, 0), (16, 0)]);
            }
            for (size, reserve) in cases {
                backfill_fills_the_disk(&d, &want, size, reserve);
            }
        },
    );
}

// ---------------------------------------------------------------------------------------
// The daemon.

/// The devnet the daemon scrapes: about 6 MiB of store once analysed and pinned.
const DAEMON_TOKENS: u64 = 4_000;
const DAEMON_SEED: u64 = 9;

/// `nifty run` as a child whose stderr goes to a file, so its last words can be read after
/// it exits by itself.
struct Run {
    child: Option<Child>,
    api: String,
    stderr: PathBuf,
    runtime: tokio::runtime::Runtime,
}

impl Run {
    fn start(config: &Path, stderr: &Path) -> Run {
        let mut child = Command::new(NIFTY)
            .arg("--config")
            .arg(config)
            .arg("run")
            .env("RUST_LOG", "warn")
            .env("NO_COLOR", "1")
            .env_remove("RUST_BACKTRACE")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(stderr).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            panic!(
                "nifty run printed {line:?} ({e}); stderr:\n{}",
                std::fs::read_to_string(stderr).unwrap_or_default()
            )
        });
        Run {
            child: Some(child),
            api: v["api"].as_str().unwrap().to_owned(),
            stderr: stderr.to_owned(),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        }
    }

    /// GET `path` as JSON, or `None` when the daemon does not answer 200.
    fn json(&self, path: &str) -> Option<serde_json::Value> {
        let url = format!("{}{path}", self.api);
        self.runtime.block_on(async {
            let r = reqwest::Client::new()
                .get(url)
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .ok()?;
            if r.status() != 200 {
                return None;
            }
            r.json().await.ok()
        })
    }

    /// The daemon's exit, once it has exited by itself: its status and stderr.
    fn exited(&mut self) -> Option<Output> {
        let child = self.child.as_mut().unwrap();
        let status = child.try_wait().unwrap()?;
        self.child = None;
        Some(Output {
            status,
            stdout: vec![],
            stderr: std::fs::read(&self.stderr).unwrap(),
        })
    }

    /// SIGTERM, and the exit within 30 s.
    fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let t = Instant::now();
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "nifty run ignored SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The tests' daemon config over `d`, with the store's reserve set to `min_free_mb`.
fn daemon_config(dir: &Path, d: &Devnet, min_free_mb: u64) -> PathBuf {
    let path = support::daemon::config(dir, Some(d), false, "");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("[store]\n"), "{text}");
    let text = text.replacen(
        "[store]\n",
        &format!("[store]\nmin_free_mb = {min_free_mb}\n"),
        1,
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Waits until `f` returns something, at most `within`.
fn wait_for<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Scrape runs that failed, with their reasons.
fn failed_scrapes(r: &Run) -> Vec<String> {
    r.json("/api/runs?job=scrape/dev&limit=1000")
        .map(|v| {
            v["runs"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|x| x["outcome"] == "failed")
                .map(|x| x["reason"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The daemon's tokens and whether the scrape has passed its snapshot, from `/api/status`.
fn scraped(r: &Run) -> Option<(u64, bool)> {
    let s = r.json("/api/status")?;
    let src = s["sources"]
        .as_array()?
        .iter()
        .find(|x| x["name"] == "dev")?
        .clone();
    let done = match (src["cursor"]["block"].as_u64(), src["snapshot"].as_u64()) {
        (Some(c), Some(snap)) => c > snap,
        _ => false,
    };
    Some((s["tokens"].as_u64()?, done))
}

/// The tokens of `all` at or before `cursor`.
fn committed_up_to(all: &BTreeSet<(u64, String)>, cursor: &Position) -> BTreeSet<(u64, String)> {
    all.iter()
        .filter(|(block, id)| {
            Position {
                block: *block,
                id: id.clone(),
            } <= *cursor
        })
        .cloned()
        .collect()
}

/// The daemon with a reserve: a tmpfs of `size_mib` with `min_free_mb` reserved fills during
/// the first scrape; runs fail with the reason and retry while the API answers; then the
/// tmpfs grows and the same daemon catches up.
fn daemon_waits_for_space(
    d: &Devnet,
    want: &BTreeSet<(u64, String)>,
    size_mib: u64,
    min_free_mb: u64,
) {
    let label = format!("daemon on {size_mib} MiB, reserve {min_free_mb} MiB");
    let root = tempfile::tempdir().unwrap();
    // support::daemon::config puts the data dir at <dir>/data: the tmpfs goes there.
    let fs = Tmpfs::mount(&root.path().join("data"), size_mib);
    let config = daemon_config(root.path(), d, min_free_mb);
    let mut run = Run::start(&config, &root.path().join("run.err"));

    // The scrape is refused with a recorded reason, again on later ticks, while the API
    // keeps answering.
    let reasons = wait_for(
        &format!("{label}: two failed scrape runs"),
        Duration::from_secs(60),
        || {
            let f = failed_scrapes(&run);
            (f.len() >= 2).then_some(f)
        },
    );
    for r in &reasons {
        assert!(
            r.contains(ENOSPC) && r.contains(&fs.dir.display().to_string()),
            "{label}: a scrape run failed for another reason: {r}"
        );
    }
    let (_, done) = scraped(&run).expect("/api/status while the disk is full");
    assert!(!done, "{label}: the scrape finished on a full disk");
    // What is stored is exactly what the cursor says is committed (read twice the same, so
    // no commit fell between reading the counters and the cursor).
    let read = || {
        let status = run.json("/api/status")?;
        let src = status["sources"]
            .as_array()?
            .iter()
            .find(|x| x["name"] == "dev")?
            .clone();
        let cursor = Position {
            block: src["cursor"]["block"].as_u64()?,
            id: src["cursor"]["id"].as_str()?.to_owned(),
        };
        Some((status["tokens"].as_u64()?, cursor))
    };
    let (tokens, cursor) = wait_for("a steady status", Duration::from_secs(30), || {
        let a = read()?;
        std::thread::sleep(Duration::from_millis(300));
        (read()? == a).then_some(a)
    });
    assert_eq!(
        committed_up_to(want, &cursor).len() as u64,
        tokens,
        "{label}: tokens stored vs the cursor {cursor}"
    );
    assert!(
        (tokens as usize) < want.len(),
        "{label}: all {tokens} tokens fitted: the disk never filled"
    );
    assert!(
        run.exited().is_none(),
        "{label}: the daemon stopped on a full disk"
    );
    println!(
        "disk: {label}: {} scrape runs failed with \"{ENOSPC}\", {tokens}/{} tokens stored, \
         API answering",
        reasons.len(),
        want.len()
    );

    // Space returns: the next ticks finish the scrape, without a restart.
    fs.resize(64);
    let t = Instant::now();
    wait_for(
        &format!("{label}: the scrape to finish"),
        Duration::from_secs(60),
        || scraped(&run).filter(|(n, done)| *done && *n as usize == want.len()),
    );
    println!(
        "disk: {label}: caught up {:.1}s after the space returned",
        t.elapsed().as_secs_f64()
    );
    let status = run.stop();
    assert!(status.success(), "{label}: nifty run exited {status:?}");
    let s = stored(&fs.dir);
    assert_same(&format!("{label}: after the disk filled"), &s.tokens, want);
    let cursor = &s.cursors["dev"];
    assert!(
        cursor.position.block > cursor.snapshot.unwrap(),
        "{cursor:?}"
    );
}

#[test]
fn daemon_keeps_answering_while_the_disk_is_full_and_catches_up_when_space_returns() {
    in_mount_namespace(
        "daemon_keeps_answering_while_the_disk_is_full_and_catches_up_when_space_returns",
        || {
            let d = support::devnet::start(NIFTY, DAEMON_TOKENS, DAEMON_SEED, &[]);
            let want = truth(&d, DAEMON_CONFIRMATIONS);
            // 4 MiB with a 3 MiB reserve: about half the tokens fit.
            let mut cases = vec![(4, 3)];
            if soak() {
                cases.extend([(5, 3), (8, 6)]);
            }
            for (size, reserve) in cases {
                daemon_waits_for_space(&d, &want, size, reserve);
            }
        },
    );
}

/// The daemon without a reserve on a tmpfs of `size_mib`: sled meets the full disk, the
/// daemon exits with the error, the store is intact, and a restart with space finishes.
fn daemon_exits_on_a_full_disk(d: &Devnet, want: &BTreeSet<(u64, String)>, size_mib: u64) {
    let label = format!("daemon without reserve on {size_mib} MiB");
    let root = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&root.path().join("data"), size_mib);
    let config = daemon_config(root.path(), d, 0);
    let mut run = Run::start(&config, &root.path().join("run.err"));
    let t = Instant::now();
    let out = wait_for(
        &format!("{label}: the daemon to exit"),
        Duration::from_secs(60),
        || run.exited(),
    );
    let line = clear_error(&label, &out, &fs.dir, ENOSPC);
    println!(
        "disk: {label}: exited {:?} after {:.1}s: {line}",
        out.status.code(),
        t.elapsed().as_secs_f64()
    );

    // With the disk still full a command may not be able to open the store, but it says so
    // and leaves it intact; with room again the store holds exactly what its cursor says.
    let status = nifty(&fs.dir, Some(0), &["status"]);
    if !status.status.success() {
        clear_error(
            &format!("{label}: status while full"),
            &status,
            &fs.dir,
            ENOSPC,
        );
    }
    fs.resize(64);
    let before = stored(&fs.dir);
    assert!(
        before.tokens.len() < want.len(),
        "{label}: the disk never filled"
    );
    if let Some(c) = before.cursors.get("dev") {
        assert_same(
            &format!("{label}: stored vs cursor"),
            &before.tokens,
            &committed_up_to(want, &c.position),
        );
    } else {
        assert!(before.tokens.is_empty(), "{label}: tokens without a cursor");
    }
    let mut run = Run::start(&config, &root.path().join("run2.err"));
    wait_for(
        &format!("{label}: the restarted scrape to finish"),
        Duration::from_secs(60),
        || scraped(&run).filter(|(n, done)| *done && *n as usize == want.len()),
    );
    assert!(run.stop().success());
    let s = stored(&fs.dir);
    assert_same(&format!("{label}: restarted"), &s.tokens, want);
}

#[test]
fn daemon_whose_store_meets_a_full_disk_exits_clearly_and_a_restart_recovers() {
    in_mount_namespace(
        "daemon_whose_store_meets_a_full_disk_exits_clearly_and_a_restart_recovers",
        || {
            let d = support::devnet::start(NIFTY, DAEMON_TOKENS, DAEMON_SEED, &[]);
            let want = truth(&d, DAEMON_CONFIRMATIONS);
            let mut sizes = vec![2];
            if soak() {
                sizes.extend([3, 4]);
            }
            for size in sizes {
                daemon_exits_on_a_full_disk(&d, &want, size);
            }
        },
    );
}

// ---------------------------------------------------------------------------------------
// A read-only data dir.

#[test]
fn a_read_only_data_dir_is_refused_clearly_by_every_command_and_loses_nothing() {
    in_mount_namespace(
        "a_read_only_data_dir_is_refused_clearly_by_every_command_and_loses_nothing",
        || {
            let d = support::devnet::start(NIFTY, 2_000, 4, &[]);
            let want = truth(&d, BACKFILL_CONFIRMATIONS);
            let root = tempfile::tempdir().unwrap();
            let data = root.path().join("data");
            let config = support::daemon::config(root.path(), Some(&d), false, "");
            let cli = |args: &[&str]| {
                let mut cmd = Command::new(NIFTY);
                cmd.arg("--config")
                    .arg(&config)
                    .args(args)
                    .env("RUST_LOG", "warn")
                    .env("NO_COLOR", "1")
                    .env_remove("RUST_BACKTRACE");
                output_within(
                    &format!("nifty {}", args.join(" ")),
                    &mut cmd,
                    COMMAND_LIMIT,
                )
            };
            stdout_ok(
                "backfill",
                &cli(&[
                    "backfill",
                    "--source",
                    "dev",
                    "--confirmations",
                    "20",
                    "--from",
                    "0",
                    "--job",
                    "ro",
                ]),
            );
            let before = stored(&data);
            assert_same("before read-only", &before.tokens, &want);

            // `nifty run` is started like the others, and must exit (not serve) at once.
            let ro = ReadOnly::bind(&data);
            let commands: &[(&str, &[&str])] = &[
                (
                    "backfill",
                    &["backfill", "--source", "dev", "--from", "0", "--job", "ro2"],
                ),
                ("backfill --resume", &["backfill", "--resume", "ro"]),
                ("run", &["run"]),
                ("cursor set", &["cursor", "set", "dev", "5"]),
                (
                    "cursor rewind",
                    &["cursor", "rewind", "backfill/ro/00000", "0"],
                ),
                ("pin", &["pin"]),
                ("follow", &["follow"]),
                // Reads too: sled 0.34 opens its database read-write and the store takes a
                // lock, so these cannot work on a read-only dir; they must say why.
                ("status", &["status"]),
                ("report", &["report"]),
                ("cursor show", &["cursor", "show"]),
            ];
            for (what, args) in commands {
                let t = Instant::now();
                let out = cli(args);
                assert!(
                    t.elapsed() < Duration::from_secs(20),
                    "{what} took {:?} to give up",
                    t.elapsed()
                );
                let line = clear_error(
                    &format!("{what} on a read-only data dir"),
                    &out,
                    &data,
                    EROFS,
                );
                assert!(
                    line.contains("needs write access"),
                    "{what}: the error should say nifty needs write access: {line}"
                );
                assert!(
                    String::from_utf8_lossy(&out.stdout).trim().is_empty(),
                    "{what} printed {:?}",
                    out.stdout
                );
            }
            println!(
                "disk: read-only data dir: {} commands refused clearly",
                commands.len()
            );
            drop(ro);

            // Writable again: everything is where it was, and writes work.
            let after = stored(&data);
            assert_same("after read-only", &after.tokens, &before.tokens);
            assert_eq!(after.cursors, before.cursors);
            stdout_ok("status --audit", &cli(&["status", "--audit"]));
            let ahead = before.cursors["dev"].position.block + 10;
            stdout_ok(
                "cursor set",
                &cli(&["cursor", "set", "dev", &ahead.to_string()]),
            );
            let s = stored(&data);
            assert_eq!(s.cursors["dev"].position.block, ahead);
        },
    );
}
