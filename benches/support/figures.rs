//! The figures `make bench` reports, and how a bench hands them to the report.
//!
//! Every bench includes this file (`#[path]`, so the store crate's bench can too without a
//! dependency on the binary's crate). [`FIGURES`] is the one list of what the table shows:
//! label, unit, target and what limits each figure. A bench measures, prints its own detail,
//! and calls [`Part::record`] once per figure with every run's value; each call rewrites
//! `<out>/parts/<bench>.json`, so the figures measured before a later failure survive it.
//! `benches/report.rs` reads the parts, finds what is missing (and why, from the run's log)
//! and prints the one table.
//!
//! No dependencies: the part files are written by hand as JSON.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::PathBuf;

/// Whether more or less of a figure is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    /// A rate.
    Higher,
    /// A cost or a latency.
    Lower,
}

/// A target from the issue or BENCHMARKS.md.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// Which way the bound goes.
    pub better: Better,
    /// The bound, in the figure's unit.
    pub value: f64,
    /// Where it comes from, when it is not a plain number.
    pub why: &'static str,
}

impl Target {
    /// Whether `median` meets the target.
    pub fn met(&self, median: f64) -> bool {
        match self.better {
            Better::Higher => median >= self.value,
            Better::Lower => median <= self.value,
        }
    }
}

/// One row of the table.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// The bench that measures it (its `[[bench]]` name).
    pub bench: &'static str,
    /// Its key in the part files and results.json.
    pub key: &'static str,
    /// What it is, for the table.
    pub label: &'static str,
    /// Its unit.
    pub unit: &'static str,
    /// Which way is better.
    pub better: Better,
    /// The target, when there is one.
    pub target: Option<Target>,
    /// What bounds it, in a few words (BENCHMARKS.md has the long story).
    pub limited_by: &'static str,
}

/// The benches `make bench` runs (`[[bench]]` names; `scripts/bench.sh` has the same list).
pub const BENCHES: &[&str] = &[
    "store_commit",
    "ingest",
    "pinner",
    "rpc",
    "resume",
    "status_api",
];

const fn at_least(value: f64, why: &'static str) -> Option<Target> {
    Some(Target {
        better: Better::Higher,
        value,
        why,
    })
}

const fn at_most(value: f64, why: &'static str) -> Option<Target> {
    Some(Target {
        better: Better::Lower,
        value,
        why,
    })
}

/// Every figure of the table, in table order.
pub const FIGURES: &[Spec] = &[
    Spec {
        bench: "ingest",
        key: "ingest_0ms",
        label: "Graph ingest, 0 ms latency",
        unit: "tokens/s",
        better: Better::Higher,
        target: at_least(50_000.0, ""),
        limited_by: "2 cores shared by devnet and client",
    },
    Spec {
        bench: "ingest",
        key: "ingest_200ms",
        label: "Graph ingest, 200 ms latency, 8 workers",
        unit: "tokens/s",
        better: Better::Higher,
        target: at_least(28_000.0, "70% of 8 x 1,000 / 0.2 s"),
        limited_by: "latency: 8 pages in flight per 0.2 s",
    },
    Spec {
        bench: "ingest",
        key: "ingest_cpu",
        label: "Client CPU (backfill process)",
        unit: "µs/token",
        better: Better::Lower,
        target: None,
        limited_by: "sled commit is about half",
    },
    Spec {
        bench: "ingest",
        key: "ingest_rss",
        label: "Peak RSS (backfill process)",
        unit: "MB",
        better: Better::Lower,
        target: at_most(100.0, ""),
        limited_by: "sled 0.34 cache + pages in flight",
    },
    Spec {
        bench: "ingest",
        key: "ingest_hostile_rss",
        label: "Peak RSS, hostile 500 MB page (1 worker)",
        unit: "MB",
        better: Better::Lower,
        target: at_most(64.0, "issue 14"),
        limited_by: "page body cap (16 MiB at pages of 1000)",
    },
    Spec {
        bench: "ingest",
        key: "ingest_disk",
        label: "Disk after ingest",
        unit: "bytes/token",
        better: Better::Lower,
        target: None,
        limited_by: "sled's log-structured segments",
    },
    Spec {
        bench: "pinner",
        key: "analysis",
        label: "Analysis (metadata fetch + parse)",
        unit: "tokens/s",
        better: Better::Higher,
        target: at_least(2_000.0, ""),
        limited_by: "gateway and nifty share 2 cores",
    },
    Spec {
        bench: "pinner",
        key: "pin_requests",
        label: "Pin requests to the cluster",
        unit: "CIDs/s",
        better: Better::Higher,
        target: at_least(5_000.0, ""),
        limited_by: "a POST + pin record read per CID",
    },
    Spec {
        bench: "rpc",
        key: "rpc_backfill",
        label: "Chain source on anvil, backfill, Multicall3",
        unit: "mints/s",
        better: Better::Higher,
        target: None,
        limited_by: "anvil's eth_call on the same cores",
    },
    Spec {
        bench: "rpc",
        key: "rpc_lane",
        label: "Chain source on anvil, one lane, Multicall3",
        unit: "mints/s",
        better: Better::Higher,
        target: None,
        limited_by: "one range in flight at a time",
    },
    Spec {
        bench: "resume",
        key: "resume_api",
        label: "Resume after kill -9: /api/status answers",
        unit: "ms",
        better: Better::Lower,
        target: None,
        limited_by: "process start + sled recovery",
    },
    Spec {
        bench: "resume",
        key: "resume_commit",
        label: "Resume after kill -9: first new commit",
        unit: "ms",
        better: Better::Lower,
        target: None,
        limited_by: "snapshot + one page fetch + commit",
    },
    Spec {
        bench: "status_api",
        key: "status_fill",
        label: "Big store fill through the store API",
        unit: "tokens/s",
        better: Better::Higher,
        target: None,
        limited_by: "sled inserts, one thread",
    },
    Spec {
        bench: "status_api",
        key: "status_disk",
        label: "Big store on disk",
        unit: "bytes/token",
        better: Better::Lower,
        target: None,
        limited_by: "sled's log-structured segments",
    },
    Spec {
        bench: "status_api",
        key: "status_start",
        label: "Daemon start on the big store (to ready)",
        unit: "ms",
        better: Better::Lower,
        target: None,
        limited_by: "sled open (reads its snapshot)",
    },
    Spec {
        bench: "status_api",
        key: "status_cold",
        label: "/api/status, first request after start",
        unit: "ms",
        better: Better::Lower,
        target: None,
        limited_by: "cold sled cache, first connection",
    },
    Spec {
        bench: "status_api",
        key: "status_p50",
        label: "/api/status p50 on the big store",
        unit: "ms",
        better: Better::Lower,
        target: None,
        limited_by: "counters + cursors + JSON",
    },
    Spec {
        bench: "status_api",
        key: "status_p99",
        label: "/api/status p99 on the big store",
        unit: "ms",
        better: Better::Lower,
        target: None,
        limited_by: "scheduling on 2 busy cores",
    },
    Spec {
        bench: "status_api",
        key: "status_small_p50",
        label: "/api/status p50 on a 1% store",
        unit: "ms",
        better: Better::Lower,
        target: None,
        limited_by: "same work: reads are O(1)",
    },
    Spec {
        bench: "store_commit",
        key: "store_commit_fsync",
        label: "Store page commit, fsync per commit",
        unit: "tokens/s",
        better: Better::Higher,
        target: None,
        limited_by: "sled's insert rate",
    },
    Spec {
        bench: "store_commit",
        key: "store_commit_nosync",
        label: "Store page commit, no fsync",
        unit: "tokens/s",
        better: Better::Higher,
        target: None,
        limited_by: "sled's insert rate",
    },
];

/// The figure with this key.
pub fn spec(key: &str) -> Option<&'static Spec> {
    FIGURES.iter().find(|s| s.key == key)
}

/// The median of the finite values (the mean of the middle two for an even count); NaN
/// when there are none.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The `q` quantile (0..=1) of `values` by the nearest-rank method; NaN when empty.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let rank = (q * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

/// Where the bench output goes: `$NIFTY_BENCH_OUT`, else `target/bench` (the target dir
/// this bench was built in).
pub fn out_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("NIFTY_BENCH_OUT") {
        return PathBuf::from(dir);
    }
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().map_or(tmp.clone(), |t| t.join("bench"))
}

/// An environment variable as a number, or `default`.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().replace(['_', ','], "").parse().ok())
        .unwrap_or(default)
}

/// One figure as a bench measured it.
#[derive(Clone, Debug)]
pub struct Measured {
    /// Its key in [`FIGURES`].
    pub key: &'static str,
    /// Every run's value (NaN for a run that could not tell).
    pub runs: Vec<f64>,
    /// What was measured, for the table's label: sizes, counts.
    pub context: String,
    /// Extra numbers for results.json (`name`, value), e.g. a p99 beside a p50.
    pub extra: Vec<(String, f64)>,
}

/// The figures one bench has measured so far.
pub struct Part {
    bench: &'static str,
    figures: Vec<Measured>,
}

impl Part {
    /// Starts the part of `bench`, removing what an earlier run left.
    pub fn new(bench: &'static str) -> Part {
        assert!(
            BENCHES.contains(&bench),
            "{bench} is not in figures::BENCHES"
        );
        let part = Part {
            bench,
            figures: vec![],
        };
        let _ = std::fs::remove_file(part.path());
        part
    }

    fn path(&self) -> PathBuf {
        out_dir().join("parts").join(format!("{}.json", self.bench))
    }

    /// Records a figure (replacing an earlier record of the same key) and saves the part.
    pub fn record(&mut self, key: &'static str, runs: &[f64], context: &str) {
        self.record_with(key, runs, context, &[]);
    }

    /// [`Part::record`] with extra numbers for results.json.
    pub fn record_with(
        &mut self,
        key: &'static str,
        runs: &[f64],
        context: &str,
        extra: &[(&str, f64)],
    ) {
        let Some(spec) = spec(key) else {
            panic!("figure {key} is not in figures::FIGURES");
        };
        assert_eq!(
            spec.bench, self.bench,
            "figure {key} belongs to the bench {}",
            spec.bench
        );
        self.figures.retain(|f| f.key != key);
        self.figures.push(Measured {
            key,
            runs: runs.to_vec(),
            context: context.to_owned(),
            extra: extra.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        });
        let path = self.path();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        }
        // Written whole, then renamed: the report never reads half a file.
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, self.to_json())
            .unwrap_or_else(|e| panic!("writing {}: {e}", tmp.display()));
        std::fs::rename(&tmp, &path)
            .unwrap_or_else(|e| panic!("renaming to {}: {e}", path.display()));
    }

    fn to_json(&self) -> String {
        let mut s = String::new();
        let _ = write!(s, "{{\"bench\":{},\"figures\":[", json_str(self.bench));
        for (i, f) in self.figures.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let runs: Vec<String> = f.runs.iter().map(|v| json_num(*v)).collect();
            let extra: Vec<String> = f
                .extra
                .iter()
                .map(|(k, v)| format!("{}:{}", json_str(k), json_num(*v)))
                .collect();
            let _ = write!(
                s,
                "{{\"key\":{},\"median\":{},\"runs\":[{}],\"context\":{},\"extra\":{{{}}}}}",
                json_str(f.key),
                json_num(median(&f.runs)),
                runs.join(","),
                json_str(&f.context),
                extra.join(",")
            );
        }
        s.push_str("]}\n");
        s
    }
}

/// A JSON number, or `null` for NaN and infinities (JSON has neither).
pub fn json_num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "null".to_owned()
    }
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `12345.6` as `12,346`; smaller values with the decimals that matter.
pub fn pretty(v: f64) -> String {
    if !v.is_finite() {
        return "-".to_owned();
    }
    if v.abs() >= 100.0 {
        let n = v.round() as i64;
        let digits = n.unsigned_abs().to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        if n < 0 { format!("-{out}") } else { out }
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}
