#!/usr/bin/env bash
# A short walk through what nifty can do today, in a scratch folder that is removed after.
set -euo pipefail
nifty="$1"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
run() { printf '\n$ nifty %s\n' "$*"; "$nifty" "$@"; }
run config init
cat >> nifty.toml <<'TOML'

[sources.demo]
kind = "graph"
url = "http://127.0.0.1:8000/subgraphs/name/erc721"
TOML
run status
run cursor set demo 1000000
run cursor show
run status --json --audit
printf '\nThe devnet, scraping, pinning and the dashboard arrive with the next issues.\n'
