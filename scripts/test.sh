#!/usr/bin/env bash
# Runs the workspace's tests and ends with one line totalling every test binary's results,
# so the last thing printed says how many tests ran (the final binary is often a doc-test
# run with nothing in it).
set -uo pipefail
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# The dashboard's browser tests need Debian's chromium.
"$(dirname "$0")/install-chromium.sh" || exit 1
# The chain source's tests need anvil and solc-js (from the npm registry, into .tools/chain).
"$(dirname "$0")/install-chain-tools.sh" || exit 1
"${CARGO:-cargo}" test --workspace --locked "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
# Then a short, bounded fuzz run of the pinner's parsers; each target counts as a test below.
"$(dirname "$0")/fuzz.sh" "${FUZZ_TEST_SECONDS:-20}" 2>&1 | tee -a "$log"; [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
awk '/^test result:/ {
  for (i = 2; i <= NF; i++) {
    if ($i ~ /^passed/) p += $(i - 1)
    if ($i ~ /^failed/) f += $(i - 1)
    if ($i ~ /^ignored/) s += $(i - 1)
  }
} END { printf "\nsummary: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$rc"
