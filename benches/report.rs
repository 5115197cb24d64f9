//! The last step of `make bench`: reads what each bench recorded under
//! `target/bench/parts/` (see `benches/support/figures.rs`), prints one Markdown table of
//! every figure (median, every run, unit, target, what limits it) and writes
//! `target/bench/results.json` with the machine, the commit and the time.
//!
//! A figure its bench did not record is a failed row with the reason: the panic message
//! from the bench's log (`logs/<bench>.log`), its exit code, or "not run". Then this exits
//! with 1, so `make bench` fails too. `scripts/bench.sh` writes the logs and
//! `parts/<bench>.exit` ("<exit code> <seconds>"); NIFTY_BENCHES names the benches that
//! were meant to run (default: all of them).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

#[path = "support/figures.rs"]
mod figures;

use figures::{BENCHES, Better, FIGURES, Spec, median, pretty};

/// How a bench's run ended, from `parts/<bench>.exit`.
struct Exit {
    code: i64,
    seconds: f64,
}

/// One row, measured or failed.
struct Row {
    spec: &'static Spec,
    runs: Vec<f64>,
    context: String,
    extra: Value,
    /// Why there is no figure; `None` when there is one.
    failed: Option<String>,
}

fn read_exit(dir: &Path, bench: &str) -> Option<Exit> {
    let text = std::fs::read_to_string(dir.join("parts").join(format!("{bench}.exit"))).ok()?;
    let mut words = text.split_whitespace();
    Some(Exit {
        code: words.next()?.parse().ok()?,
        seconds: words
            .next()
            .and_then(|w| w.parse().ok())
            .unwrap_or(f64::NAN),
    })
}

/// The panic message in a bench's log, or its last line of output.
fn failure_in_log(dir: &Path, bench: &str) -> Option<String> {
    let log = std::fs::read_to_string(dir.join("logs").join(format!("{bench}.log"))).ok()?;
    let lines: Vec<&str> = log.lines().collect();
    if let Some(at) = lines.iter().rposition(|l| l.contains("panicked at")) {
        // Since Rust 1.73 the message follows on its own lines, up to the backtrace note.
        let message: Vec<&str> = lines[at + 1..]
            .iter()
            .take_while(|l| !l.starts_with("note: ") && !l.starts_with("stack backtrace"))
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .take(6)
            .collect();
        let place = lines[at]
            .split("panicked at")
            .nth(1)
            .map(|p| p.trim().trim_end_matches(':'))
            .unwrap_or("");
        return Some(format!("panicked at {place}: {}", message.join(" ")));
    }
    lines
        .iter()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| format!("last output: {}", l.trim()))
}

fn why_missing(dir: &Path, bench: &str, exit: Option<&Exit>) -> String {
    match exit {
        None => "not run (no exit status recorded)".to_owned(),
        Some(e) if e.code == 0 => "the bench finished without recording it".to_owned(),
        Some(e) => {
            let detail = failure_in_log(dir, bench).unwrap_or_default();
            format!("exit {}: {detail}", e.code)
        }
    }
}

fn rows(dir: &Path, expected: &[&str], exits: &BTreeMap<&str, Exit>) -> Vec<Row> {
    let mut parts: BTreeMap<String, Value> = BTreeMap::new();
    for bench in BENCHES {
        let path = dir.join("parts").join(format!("{bench}.json"));
        if let Ok(text) = std::fs::read_to_string(&path) {
            match serde_json::from_str::<Value>(&text) {
                Ok(v) => {
                    for f in v["figures"].as_array().cloned().unwrap_or_default() {
                        if let Some(k) = f["key"].as_str() {
                            parts.insert(k.to_owned(), f);
                        }
                    }
                }
                Err(e) => eprintln!("report: {} is not JSON ({e}); ignored", path.display()),
            }
        }
    }
    FIGURES
        .iter()
        .filter(|s| expected.contains(&s.bench) || parts.contains_key(s.key))
        .map(|spec| {
            let Some(f) = parts.get(spec.key) else {
                return Row {
                    spec,
                    runs: vec![],
                    context: String::new(),
                    extra: json!({}),
                    failed: Some(why_missing(dir, spec.bench, exits.get(spec.bench))),
                };
            };
            let runs: Vec<f64> = f["runs"]
                .as_array()
                .map(|a| a.iter().map(|v| v.as_f64().unwrap_or(f64::NAN)).collect())
                .unwrap_or_default();
            // Recorded, then the bench failed later: the figure stands; the bench's
            // failure is listed under the table and fails the run.
            let failed = (!median(&runs).is_finite()).then(|| "no run gave a value".to_owned());
            Row {
                spec,
                runs,
                context: f["context"].as_str().unwrap_or("").to_owned(),
                extra: f["extra"].clone(),
                failed,
            }
        })
        .collect()
}

fn target_text(spec: &Spec, median: f64) -> String {
    let Some(t) = spec.target else {
        return String::new();
    };
    let sign = match t.better {
        Better::Higher => "≥",
        Better::Lower => "≤",
    };
    if !median.is_finite() {
        return format!("{sign} {}", pretty(t.value));
    }
    let verdict = if t.met(median) { "met" } else { "MISSED" };
    format!("{sign} {} {verdict}", pretty(t.value))
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let cut: String = s.chars().take(max - 1).collect();
    format!("{cut}…")
}

/// Prints rows as a Markdown table, columns padded to line up.
fn table(rows: &[Row]) -> String {
    let header = ["figure", "median", "runs", "unit", "target", "limited by"];
    let mut cells: Vec<[String; 6]> = vec![];
    for r in rows {
        let label = if r.context.is_empty() {
            r.spec.label.to_owned()
        } else {
            format!("{} [{}]", r.spec.label, r.context)
        };
        let m = median(&r.runs);
        cells.push(match &r.failed {
            Some(why) => [
                label,
                "FAILED".to_owned(),
                shorten(why, 110),
                r.spec.unit.to_owned(),
                target_text(r.spec, f64::NAN),
                r.spec.limited_by.to_owned(),
            ],
            None => [
                label,
                pretty(m),
                r.runs
                    .iter()
                    .map(|v| pretty(*v))
                    .collect::<Vec<_>>()
                    .join(" / "),
                r.spec.unit.to_owned(),
                target_text(r.spec, m),
                r.spec.limited_by.to_owned(),
            ],
        });
    }
    let width: Vec<usize> = (0..6)
        .map(|i| {
            cells
                .iter()
                .map(|c| c[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |c: &[String]| {
        let padded: Vec<String> = c
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let pad = width[i] - s.chars().count();
                // Numbers right-aligned, text left-aligned.
                if i == 1 {
                    format!("{}{s}", " ".repeat(pad))
                } else {
                    format!("{s}{}", " ".repeat(pad))
                }
            })
            .collect();
        format!("| {} |\n", padded.join(" | "))
    };
    let mut out = line(&header.map(str::to_owned));
    // `---:` right-aligns the median in Markdown.
    let rule: Vec<String> = width
        .iter()
        .enumerate()
        .map(|(i, w)| {
            if i == 1 {
                format!("{}:", "-".repeat(w + 1))
            } else {
                "-".repeat(w + 2)
            }
        })
        .collect();
    out.push_str(&format!("|{}|\n", rule.join("|")));
    for c in &cells {
        out.push_str(&line(c));
    }
    out
}

fn command_line(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| (kb / 1024.0 / 1024.0 * 10.0).round() / 10.0);
    let loadavg = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    json!({
        "nproc": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "cpu": model,
        "mem_gib": mem_gib,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_owned()),
        "rustc": command_line("rustc", &["--version"]),
        "loadavg_at_report": loadavg,
    })
}

fn main() {
    let dir = figures::out_dir();
    let expected: Vec<&str> = match std::env::var("NIFTY_BENCHES") {
        Ok(list) if !list.trim().is_empty() => BENCHES
            .iter()
            .copied()
            .filter(|b| list.split([' ', ',']).any(|w| w == *b))
            .collect(),
        _ => BENCHES.to_vec(),
    };
    let exits: BTreeMap<&str, Exit> = BENCHES
        .iter()
        .filter_map(|b| read_exit(&dir, b).map(|e| (*b, e)))
        .collect();
    let rows = rows(&dir, &expected, &exits);
    // A bench that failed after recording all its figures still fails the run.
    let failed_benches: Vec<String> = expected
        .iter()
        .filter(|b| exits.get(**b).is_none_or(|e| e.code != 0))
        .map(|b| (*b).to_owned())
        .collect();
    let failed_rows = rows.iter().filter(|r| r.failed.is_some()).count();

    let commit = command_line("git", &["rev-parse", "--short=12", "HEAD"]);
    let dirty = command_line("git", &["status", "--porcelain", "--untracked-files=no"])
        .map(|s| !s.is_empty());
    let now = chrono::Utc::now();
    let machine = machine();
    let total_secs = std::env::var("NIFTY_BENCH_STARTED")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .map(|t| now.timestamp() - t);

    println!();
    println!(
        "make bench: {} UTC, commit {}{}, {} cores ({}), {} GiB",
        now.format("%Y-%m-%d %H:%M"),
        commit.as_deref().unwrap_or("?"),
        if dirty == Some(true) { " (dirty)" } else { "" },
        machine["nproc"],
        machine["cpu"].as_str().unwrap_or("?"),
        machine["mem_gib"]
    );
    println!();
    print!("{}", table(&rows));
    println!();
    let mut times: Vec<String> = expected
        .iter()
        .map(|b| match exits.get(b) {
            Some(e) if e.code == 0 => format!("{b} {:.0} s", e.seconds),
            Some(e) => format!("{b} {:.0} s (exit {})", e.seconds, e.code),
            None => format!("{b} not run"),
        })
        .collect();
    if let Some(t) = total_secs {
        times.push(format!("whole run {:.1} min", t as f64 / 60.0));
    }
    println!("Time: {}.", times.join(", "));
    for b in &failed_benches {
        let why = why_missing(&dir, b, exits.get(b.as_str()));
        println!("FAILED {b}: {} (log: logs/{b}.log)", shorten(&why, 400));
    }

    let figures: Vec<Value> = rows
        .iter()
        .map(|r| {
            let m = median(&r.runs);
            json!({
                "key": r.spec.key,
                "bench": r.spec.bench,
                "label": r.spec.label,
                "context": r.context,
                "unit": r.spec.unit,
                "better": match r.spec.better { Better::Higher => "higher", Better::Lower => "lower" },
                "status": if r.failed.is_some() { "failed" } else { "ok" },
                "reason": r.failed,
                "median": m.is_finite().then_some(m),
                "runs": r.runs.iter().map(|v| v.is_finite().then_some(*v)).collect::<Vec<_>>(),
                "target": r.spec.target.map(|t| json!({
                    "value": t.value,
                    "better": match t.better { Better::Higher => "higher", Better::Lower => "lower" },
                    "why": t.why,
                    "met": m.is_finite().then(|| t.met(m)),
                })),
                "limited_by": r.spec.limited_by,
                "extra": r.extra,
            })
        })
        .collect();
    let benches: Vec<Value> = expected
        .iter()
        .map(|b| {
            let e = exits.get(b);
            json!({
                "bench": b,
                "exit_code": e.map(|e| e.code),
                "seconds": e.and_then(|e| e.seconds.is_finite().then_some(e.seconds)),
                "log": dir.join("logs").join(format!("{b}.log")),
                "failure": e.filter(|e| e.code != 0).map(|e| why_missing(&dir, b, Some(e))),
            })
        })
        .collect();
    let doc = json!({
        "date": now.to_rfc3339(),
        "commit": commit,
        "dirty": dirty,
        "machine": machine,
        "total_secs": total_secs,
        "ok": failed_rows == 0 && failed_benches.is_empty(),
        "benches": benches,
        "figures": figures,
    });
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("results.json");
    std::fs::write(&file, serde_json::to_string_pretty(&doc).unwrap() + "\n").unwrap();
    println!("Results: {}", file.display());
    if failed_rows > 0 || !failed_benches.is_empty() {
        eprintln!(
            "make bench: {failed_rows} figure(s) missing; failed benches: {}",
            if failed_benches.is_empty() {
                "none".to_owned()
            } else {
                failed_benches.join(", ")
            }
        );
        std::process::exit(1);
    }
}
