#!/usr/bin/env python3
"""Checks the Grafana dashboard and the Prometheus files against nifty's metrics.

    python3 deploy/check.py                       # names and labels against the list below
    python3 deploy/check.py --metrics URL|FILE    # ... and against a live /metrics as well

Every `nifty_*` name in a dashboard query or an alert expression must be one of the families
the daemon exposes (histograms with their _bucket, _sum and _count series), and every label
matched right after a name must be one that family has. With --metrics, every name must also
be in the exposition, except the families the daemon creates on first use (job and request
metrics), which are only warned about; families in the exposition that this list lacks are
warned about too, so the list keeps up with the daemon. When promtool is on PATH, the
Prometheus files and every dashboard query are also parsed by it.

Standard library only. Exits 1 when anything failed.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
DASHBOARD = os.path.join(HERE, "grafana", "nifty-dashboard.json")
ALERTS = os.path.join(HERE, "prometheus", "alerts.yml")
PROMETHEUS = os.path.join(HERE, "prometheus", "prometheus.yml")

# Family -> (type, labels). Prometheus adds `job` and `instance` to every series; the
# job metrics have a `job` label of their own (kept by honor_labels in prometheus.yml).
FAMILIES = {
    # Read from the store at each scrape: always present.
    "nifty_tokens": ("gauge", set()),
    "nifty_tokens_by_status": ("gauge", {"status"}),
    "nifty_tokens_by_source": ("gauge", {"source"}),
    "nifty_contracts": ("gauge", set()),
    "nifty_pins": ("gauge", set()),
    "nifty_pins_by_status": ("gauge", {"status"}),
    "nifty_outbox_items": ("gauge", {"queue"}),
    "nifty_failures": ("gauge", {"stage", "reason"}),
    "nifty_cursor_block": ("gauge", {"source"}),
    "nifty_head_block": ("gauge", {"source"}),
    "nifty_snapshot_block": ("gauge", {"source"}),
    "nifty_lag_blocks": ("gauge", {"source"}),
    "nifty_cursor_ahead_blocks": ("gauge", {"source"}),
    "nifty_store_disk_bytes": ("gauge", set()),
    "nifty_build_info": ("gauge", {"version"}),
    "nifty_start_time_seconds": ("gauge", set()),
    # Recorded as jobs run: present from the first run on.
    "nifty_job_runs_total": ("counter", {"job", "outcome"}),
    "nifty_job_items_total": ("counter", {"job"}),
    "nifty_job_errors_total": ("counter", {"job"}),
    "nifty_job_duration_seconds": ("histogram", {"job"}),
    "nifty_job_running": ("gauge", {"job"}),
    "nifty_job_last_success_timestamp_seconds": ("gauge", {"job"}),
    # Recorded per request: present from the first request on.
    "nifty_graph_request_duration_seconds": ("histogram", {"op", "outcome"}),
    "nifty_cluster_request_duration_seconds": ("histogram", {"api", "op", "outcome"}),
    "nifty_gateway_fetch_duration_seconds": ("histogram", {"kind", "outcome"}),
}

# Families that exist only once something has been recorded into them.
LAZY = {n for n in FAMILIES if n.startswith(("nifty_job_", "nifty_graph_", "nifty_cluster_",
                                            "nifty_gateway_"))}

TARGET_LABELS = {"job", "instance"}
NAME = re.compile(r"\bnifty_[a-z0-9_]*[a-z0-9]")
MATCHERS = re.compile(r"(nifty_[a-z0-9_]+)\s*\{([^}]*)\}")
MATCHER_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")


def series_names():
    """Every series name a family exposes, mapped to its family."""
    out = {}
    for name, (kind, _) in FAMILIES.items():
        out[name] = name
        if kind == "histogram":
            for suffix in ("_bucket", "_sum", "_count"):
                out[name + suffix] = name
    return out


def dashboard_queries(path, errors):
    """(where, expr) of every query in the dashboard; checks the panel layout on the way."""
    with open(path) as f:
        dash = json.load(f)
    out = []
    ids = set()
    for panel in dash.get("panels", []):
        pid = panel.get("id")
        if pid in ids:
            errors.append(f"dashboard: panel id {pid} is used twice")
        ids.add(pid)
        grid = panel.get("gridPos", {})
        if grid.get("x", 0) + grid.get("w", 0) > 24:
            errors.append(f"dashboard: panel {panel.get('title')!r} is wider than the grid")
        if panel.get("type") != "row" and panel.get("datasource", {}).get("uid") != "${datasource}":
            errors.append(f"dashboard: panel {panel.get('title')!r} does not use $datasource")
        for t in panel.get("targets", []):
            out.append((f"panel {panel.get('title')!r}", t.get("expr", "")))
    for var in dash.get("templating", {}).get("list", []):
        q = var.get("query")
        if isinstance(q, dict):
            q = q.get("query", "")
        if var.get("type") == "query" and q:
            out.append((f"variable ${var.get('name')}", q))
    if not any(i.get("name") == "DS_PROMETHEUS" for i in dash.get("__inputs", [])):
        errors.append("dashboard: no DS_PROMETHEUS input for import")
    return out


def alert_expressions(path):
    """(where, expr) of every `expr:` in a rules file, folded scalars included; read by
    indentation so that no YAML library is needed."""
    out = []
    lines = open(path).read().splitlines()
    name = "?"
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"\s*-\s*(?:alert|record):\s*(\S+)", line)
        if m:
            name = m.group(1)
        m = re.match(r"(\s*)expr:\s*(.*)$", line)
        if m:
            indent, rest = len(m.group(1)), m.group(2).strip()
            parts = [] if rest in (">-", ">", "|", "|-") else [rest]
            i += 1
            while i < len(lines) and (not lines[i].strip()
                                      or len(lines[i]) - len(lines[i].lstrip()) > indent):
                parts.append(lines[i].strip())
                i += 1
            out.append((f"alert {name}", " ".join(p for p in parts if p)))
            continue
        i += 1
    return out


def check_expr(where, expr, names, errors):
    used = set()
    for n in NAME.findall(expr):
        family = names.get(n)
        if family is None:
            errors.append(f"{where}: unknown metric {n} in {expr!r}")
        else:
            used.add(n)
    for n, inside in MATCHERS.findall(expr):
        family = names.get(n)
        if family is None:
            continue
        allowed = FAMILIES[family][1] | TARGET_LABELS
        if n.endswith("_bucket"):
            allowed = allowed | {"le"}
        for label in MATCHER_LABEL.findall(inside):
            if label not in allowed and label != "__name__":
                errors.append(f"{where}: {n} has no label {label!r}")
    return used


def read_exposition(source):
    if re.match(r"https?://", source):
        with urllib.request.urlopen(source, timeout=10) as r:
            return r.read().decode()
    with open(source) as f:
        return f.read()


def check_live(text, used, errors, warnings):
    typed = set()
    sampled = set()
    for line in text.splitlines():
        m = re.match(r"#\s*TYPE\s+(\S+)\s+(\S+)", line)
        if m:
            typed.add(m.group(1))
            continue
        if line and not line.startswith("#"):
            sampled.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    names = series_names()
    for n in sorted(used):
        family = names[n]
        if n in sampled or (n == family and family in typed):
            continue
        msg = f"/metrics: {n} is not exposed"
        if family in LAZY:
            warnings.append(msg + " (yet: it appears once recorded)")
        else:
            errors.append(msg)
    for n in sorted(typed | sampled):
        if n.startswith("nifty_") and n not in names:
            warnings.append(f"/metrics: {n} is exposed but not in deploy/check.py's list")


def promtool_checks(queries, errors, warnings):
    tool = shutil.which("promtool")
    if tool is None:
        warnings.append("promtool not on PATH: PromQL syntax not checked")
        return
    for args in (["check", "config", "--syntax-only", PROMETHEUS], ["check", "rules", ALERTS]):
        r = subprocess.run([tool, *args], capture_output=True, text=True)
        if r.returncode != 0:
            errors.append(f"promtool {' '.join(args)}:\n{r.stdout}{r.stderr}")
    # Dashboard queries as recording rules, so that promtool parses each one.
    with tempfile.TemporaryDirectory() as d:
        rules = os.path.join(d, "dashboard.yml")
        with open(rules, "w") as f:
            f.write("groups:\n  - name: dashboard\n    rules:\n")
            for i, (_, expr) in enumerate(queries):
                if expr.startswith("label_values("):
                    continue
                expr = expr.replace("$source", ".*")
                f.write(f"      - record: dashboard_query_{i}\n")
                f.write(f"        expr: {json.dumps(expr)}\n")
        r = subprocess.run([tool, "check", "rules", rules], capture_output=True, text=True)
        if r.returncode != 0:
            errors.append(f"promtool on the dashboard's queries:\n{r.stdout}{r.stderr}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--metrics", help="a live /metrics URL or a saved exposition file")
    ap.add_argument("--no-promtool", action="store_true", help="skip promtool even if found")
    args = ap.parse_args()

    errors, warnings = [], []
    names = series_names()
    queries = dashboard_queries(DASHBOARD, errors)
    exprs = queries + alert_expressions(ALERTS)
    used = set()
    for where, expr in exprs:
        if not expr.strip():
            errors.append(f"{where}: empty query")
        used |= check_expr(where, expr, names, errors)
    if args.metrics:
        check_live(read_exposition(args.metrics), used, errors, warnings)
    if not args.no_promtool:
        promtool_checks(queries, errors, warnings)

    for w in warnings:
        print(f"warning: {w}")
    for e in errors:
        print(f"error: {e}")
    print(f"{len(exprs)} expressions, {len(used)} metric names checked: "
          f"{len(errors)} errors, {len(warnings)} warnings")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
