#!/usr/bin/env bash
# The long reliability suite: the tests named reliability_* with NIFTY_SOAK=1 (each test
# reads it and runs its long version: hundreds of kills instead of a handful, longer fault
# runs), then every fuzz target for SOAK_FUZZ_SECONDS (default 180) each. `make test` runs
# the same tests in their short form and fuzzes 20 s per target.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
scripts/install-chain-tools.sh || exit 1
rc=0
NIFTY_SOAK=1 "${CARGO:-cargo}" test --locked --test 'reliability_*' -- --nocapture --test-threads 1 2>&1 | tee "$log"
[ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
scripts/fuzz.sh "${SOAK_FUZZ_SECONDS:-180}" 2>&1 | tee -a "$log"
[ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
awk '/^test result:/ {
  for (i = 2; i <= NF; i++) {
    if ($i ~ /^passed/) p += $(i - 1)
    if ($i ~ /^failed/) f += $(i - 1)
    if ($i ~ /^ignored/) s += $(i - 1)
  }
} END { printf "\nsoak summary: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$rc"
