//! Prometheus metrics: what the code records as it goes (job runs, request latencies, via
//! the `metrics` facade and metrics-exporter-prometheus), plus gauges read from the store's
//! counters at each scrape of `/metrics`, so they are always exactly the store's numbers.

use std::fmt::Write as _;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use nifty_state::{RunOutcome, RunRecord};

use crate::commands::StatusReport;

/// Runs of a job by outcome.
pub const JOB_RUNS: &str = "nifty_job_runs_total";
/// Items a job's runs handled.
pub const JOB_ITEMS: &str = "nifty_job_items_total";
/// Errors a job's runs met.
pub const JOB_ERRORS: &str = "nifty_job_errors_total";
/// How long runs took (skipped ticks are not runs).
pub const JOB_SECONDS: &str = "nifty_job_duration_seconds";
/// 1 while a run of the job is under way.
pub const JOB_RUNNING: &str = "nifty_job_running";
/// When a run last ended completed or with its budget spent.
pub const JOB_LAST_SUCCESS: &str = "nifty_job_last_success_timestamp_seconds";

/// Buckets of every `*_duration_seconds` histogram: requests take milliseconds to tens of
/// seconds (a subgraph page under load, a timeout), runs take up to their budget.
const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder once and returns its handle; `None` when
/// another recorder was installed first (then `/metrics` has the store's gauges only).
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_duration_seconds".into()), BUCKETS)
                .ok()?;
            let handle = builder.install_recorder().ok()?;
            describe();
            nifty_scraper::metrics::describe();
            nifty_pinner::metrics::describe();
            Some(handle)
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(
        JOB_RUNS,
        "Job runs by outcome (skipped: a tick found the job still running)."
    );
    metrics::describe_counter!(
        JOB_ITEMS,
        "Items job runs handled: tokens stored, analysed, pins requested or followed."
    );
    metrics::describe_counter!(
        JOB_ERRORS,
        "Errors job runs met: retried requests, failed items."
    );
    metrics::describe_histogram!(
        JOB_SECONDS,
        metrics::Unit::Seconds,
        "How long job runs took."
    );
    metrics::describe_gauge!(JOB_RUNNING, "1 while a run of the job is under way.");
    metrics::describe_gauge!(
        JOB_LAST_SUCCESS,
        "Unix time a run of the job last ended completed or with its budget spent."
    );
}

/// Records an ended (or skipped) run.
pub fn record_run(job: &str, r: &RunRecord) {
    let job = job.to_owned();
    metrics::counter!(JOB_RUNS, "job" => job.clone(), "outcome" => r.outcome.name()).increment(1);
    if matches!(r.outcome, RunOutcome::Skipped) {
        return;
    }
    metrics::counter!(JOB_ITEMS, "job" => job.clone()).increment(r.items);
    metrics::counter!(JOB_ERRORS, "job" => job.clone()).increment(r.errors);
    if let Some(end) = r.ended_ms {
        let secs = end.saturating_sub(r.started_ms) as f64 / 1000.0;
        metrics::histogram!(JOB_SECONDS, "job" => job.clone()).record(secs);
        if matches!(r.outcome, RunOutcome::Completed | RunOutcome::BudgetSpent) {
            metrics::gauge!(JOB_LAST_SUCCESS, "job" => job).set(end as f64 / 1000.0);
        }
    }
}

/// Marks a job running or not.
pub fn set_running(job: &str, running: bool) {
    metrics::gauge!(JOB_RUNNING, "job" => job.to_owned()).set(if running { 1.0 } else { 0.0 });
}

/// Prometheus text format, written by hand for the gauges read from the store at scrape
/// time (the facade has no way to ask "what is the value now" of a store).
#[derive(Default)]
struct Exposition {
    out: String,
}

impl Exposition {
    fn family(&mut self, name: &str, help: &str) -> &mut Self {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} gauge");
        self
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
        self
    }
}

/// A label value as the text format wants it: backslash, quote and newline escaped.
fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// The gauges of a status report (counters and cursors only: O(1) in the store's size).
pub fn store_gauges(r: &StatusReport, started_secs: f64) -> String {
    let c = &r.counts;
    let mut e = Exposition::default();
    e.family("nifty_build_info", "The running version (always 1).")
        .sample(
            "nifty_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1.0,
        );
    e.family("nifty_start_time_seconds", "Unix time the daemon started.")
        .sample("nifty_start_time_seconds", &[], started_secs);
    e.family("nifty_tokens", "Tokens stored.")
        .sample("nifty_tokens", &[], c.tokens as f64);
    e.family("nifty_tokens_by_status", "Tokens per analysis status.");
    for status in nifty_state::TokenStatus::ALL {
        let n = c.tokens_by_status.get(status.name()).copied().unwrap_or(0);
        e.sample(
            "nifty_tokens_by_status",
            &[("status", status.name())],
            n as f64,
        );
    }
    e.family(
        "nifty_tokens_by_source",
        "Tokens per source that found them first.",
    );
    for (source, n) in &c.tokens_by_source {
        e.sample("nifty_tokens_by_source", &[("source", source)], *n as f64);
    }
    e.family("nifty_contracts", "Contracts stored.").sample(
        "nifty_contracts",
        &[],
        c.contracts as f64,
    );
    e.family("nifty_pins", "Distinct CIDs tracked.")
        .sample("nifty_pins", &[], c.pins as f64);
    e.family("nifty_pins_by_status", "CIDs per pin status.");
    for status in nifty_state::PinStatus::ALL {
        let n = c.pins_by_status.get(status.name()).copied().unwrap_or(0);
        e.sample(
            "nifty_pins_by_status",
            &[("status", status.name())],
            n as f64,
        );
    }
    e.family("nifty_outbox_items", "Work items waiting, per queue.");
    for queue in nifty_state::keys::Queue::ALL {
        let n = c.outbox.get(queue.name()).copied().unwrap_or(0);
        e.sample("nifty_outbox_items", &[("queue", queue.name())], n as f64);
    }
    e.family(
        "nifty_failures",
        "Tokens and pins in a failure state, per stage and reason.",
    );
    for (name, n) in &c.failures {
        let (stage, reason) = name.split_once('.').unwrap_or(("unknown", name));
        e.sample(
            "nifty_failures",
            &[("stage", stage), ("reason", reason)],
            *n as f64,
        );
    }
    let following: Vec<_> = r.sources.iter().filter(|s| s.end.is_none()).collect();
    e.family(
        "nifty_cursor_block",
        "The block a source's cursor stands at.",
    );
    for s in &following {
        if let Some(p) = &s.cursor {
            e.sample("nifty_cursor_block", &[("source", &s.name)], p.block as f64);
        }
    }
    e.family(
        "nifty_snapshot_block",
        "The snapshot block (head minus confirmations) of a source's last run.",
    );
    for s in &following {
        if let Some(b) = s.snapshot {
            e.sample("nifty_snapshot_block", &[("source", &s.name)], b as f64);
        }
    }
    e.family("nifty_head_block", "The head block a source last saw.");
    for s in &following {
        if let Some(b) = s.head {
            e.sample("nifty_head_block", &[("source", &s.name)], b as f64);
        }
    }
    e.family(
        "nifty_lag_blocks",
        "Blocks between a source's cursor and its head.",
    );
    for s in &following {
        if let Some(b) = s.lag {
            e.sample("nifty_lag_blocks", &[("source", &s.name)], b as f64);
        }
    }
    e.family(
        "nifty_cursor_ahead_blocks",
        "Blocks a source's cursor stands beyond its head: blocks claimed done that the \
         source has not produced. Nothing is scraped while it is above 0.",
    );
    for s in &following {
        if s.head.is_some() {
            let ahead = s.ahead.unwrap_or(0);
            e.sample(
                "nifty_cursor_ahead_blocks",
                &[("source", &s.name)],
                ahead as f64,
            );
        }
    }
    e.family("nifty_store_disk_bytes", "Bytes the store takes on disk.")
        .sample("nifty_store_disk_bytes", &[], r.disk_bytes as f64);
    e.out
}

/// The whole `/metrics` body.
pub fn render(store_report: &StatusReport, started_secs: f64) -> String {
    let mut out = match HANDLE.get().cloned().flatten() {
        Some(h) => h.render(),
        None => String::new(),
    };
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&store_gauges(store_report, started_secs));
    out
}

/// Histograms keep their samples until drained; the daemon calls this every few seconds.
pub fn upkeep() {
    if let Some(h) = HANDLE.get().cloned().flatten() {
        h.run_upkeep();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(
            escape(
                r#"a"b\c
d"#
            ),
            r#"a\"b\\c\nd"#
        );
    }
}
