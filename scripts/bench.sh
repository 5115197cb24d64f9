#!/usr/bin/env bash
# `make bench`: every benchmark in release mode, then one table of medians and
# $CARGO_TARGET_DIR/bench/results.json (benches/report.rs).
#
# Installs anvil and solc-js for the chain-source bench (scripts/install-chain-tools.sh),
# builds every bench once, then runs each in turn with its output in
# target/bench/logs/<bench>.log and its figures in target/bench/parts/<bench>.json. A bench
# that fails does not stop the others; the table shows its figures as failed with the
# reason, and this script exits 1.
#
#   NIFTY_BENCHES="ingest resume"  run only these (names as in benches/support/figures.rs)
#   NIFTY_BENCH_SMOKE=1            small sizes and single runs everywhere (a few minutes), for
#                                  checking the machinery, not for figures; any size set
#                                  explicitly still wins
#
# Sizes (defaults): NIFTY_BENCH_TOKENS (1,000,000), NIFTY_BENCH_LATENCY_TOKENS (200,000),
# NIFTY_BENCH_RUNS (3, ingest and pinner), NIFTY_BENCH_PIN_TOKENS (50,000),
# NIFTY_BENCH_COMMIT_TOKENS (200,000), NIFTY_BENCH_COMMIT_RUNS (5), NIFTY_BENCH_RPC_TOKENS
# (20,000), NIFTY_BENCH_RPC_RUNS (5), NIFTY_BENCH_RESUME_TOKENS (1,000,000),
# NIFTY_BENCH_RESUME_KILLS (5), NIFTY_BENCH_STATUS_TOKENS (10,000,000; needs ~12.5 GB free in TMPDIR),
# NIFTY_BENCH_STATUS_RUNS (3), NIFTY_BENCH_STATUS_REQUESTS (1,000).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
cargo="${CARGO:-cargo}"
target="${CARGO_TARGET_DIR:-$PWD/target}"
export NIFTY_BENCH_OUT="${NIFTY_BENCH_OUT:-$target/bench}"
export NIFTY_BENCH_STARTED="${NIFTY_BENCH_STARTED:-$(date +%s)}"

all="store_commit ingest pinner rpc resume status_api"
export NIFTY_BENCHES="${NIFTY_BENCHES:-$all}"

if [ "${NIFTY_BENCH_SMOKE:-0}" = 1 ]; then
  : "${NIFTY_BENCH_TOKENS:=20000}" "${NIFTY_BENCH_LATENCY_TOKENS:=20000}" "${NIFTY_BENCH_RUNS:=1}"
  : "${NIFTY_BENCH_PIN_TOKENS:=5000}" "${NIFTY_BENCH_COMMIT_TOKENS:=20000}" "${NIFTY_BENCH_COMMIT_RUNS:=1}"
  : "${NIFTY_BENCH_RPC_TOKENS:=2000}" "${NIFTY_BENCH_RPC_BLOCKS:=40}" "${NIFTY_BENCH_RPC_RUNS:=1}"
  : "${NIFTY_BENCH_RESUME_TOKENS:=100000}" "${NIFTY_BENCH_RESUME_KILLS:=2}"
  : "${NIFTY_BENCH_STATUS_TOKENS:=100000}" "${NIFTY_BENCH_STATUS_RUNS:=1}" "${NIFTY_BENCH_STATUS_REQUESTS:=200}"
  export NIFTY_BENCH_TOKENS NIFTY_BENCH_LATENCY_TOKENS NIFTY_BENCH_RUNS NIFTY_BENCH_PIN_TOKENS \
    NIFTY_BENCH_COMMIT_TOKENS NIFTY_BENCH_COMMIT_RUNS NIFTY_BENCH_RPC_TOKENS NIFTY_BENCH_RPC_BLOCKS \
    NIFTY_BENCH_RPC_RUNS NIFTY_BENCH_RESUME_TOKENS NIFTY_BENCH_RESUME_KILLS \
    NIFTY_BENCH_STATUS_TOKENS NIFTY_BENCH_STATUS_RUNS NIFTY_BENCH_STATUS_REQUESTS
fi

wants() {
  case " $NIFTY_BENCHES " in *" $1 "*) return 0 ;; *) return 1 ;; esac
}

for b in $NIFTY_BENCHES; do
  case " $all " in *" $b "*) ;; *) echo "bench.sh: unknown bench '$b' (known: $all)" >&2; exit 2 ;; esac
done

if wants rpc; then
  scripts/install-chain-tools.sh || exit 1
fi

echo "bench.sh: building every bench (release)"
"$cargo" bench --no-run --workspace --locked || exit 1

mkdir -p "$NIFTY_BENCH_OUT/parts" "$NIFTY_BENCH_OUT/logs"
rm -f "$NIFTY_BENCH_OUT"/parts/* "$NIFTY_BENCH_OUT"/logs/* "$NIFTY_BENCH_OUT/results.json"

rc=0
for b in $NIFTY_BENCHES; do
  echo
  echo "=== $b ==="
  started=$(date +%s)
  # --workspace as in the build above: the same feature set, so nothing compiles again.
  "$cargo" bench --locked -q --workspace --bench "$b" 2>&1 | tee "$NIFTY_BENCH_OUT/logs/$b.log"
  code=${PIPESTATUS[0]}
  echo "$code $(( $(date +%s) - started ))" > "$NIFTY_BENCH_OUT/parts/$b.exit"
  if [ "$code" -ne 0 ]; then
    echo "bench.sh: $b failed (exit $code); its log: $NIFTY_BENCH_OUT/logs/$b.log" >&2
    rc=1
  fi
done

"$cargo" bench --locked -q --workspace --bench report || rc=1
echo "bench.sh: took $(( ($(date +%s) - NIFTY_BENCH_STARTED) / 60 )) min $(( ($(date +%s) - NIFTY_BENCH_STARTED) % 60 )) s"
exit "$rc"
