#!/usr/bin/env bash
# `make bench-peers`: one devnet dataset paged to completion by nifty and by real third-party
# clients, side by side; one table, and $CARGO_TARGET_DIR/bench/peers.json.
#
# Installs the peers at the versions pinned in benches/peers/ into .tools/peers/:
#   - subgrounds (PyPI) in a venv, .tools/peers/subgrounds, from requirements.txt;
#   - The Graph's graph-client with its auto-pagination transform (npm),
#     .tools/peers/graph-client, from package.json and package-lock.json.
# Each install is skipped while its stamp (a hash of what it installed from) matches. A peer
# that cannot be installed is not fatal: the table says why. Then `cargo bench --bench peers`
# (benches/peers/main.rs) builds nifty in release mode and runs everything; it exits non-zero
# only when nifty fails or misses a token.
#
#   NIFTY_PEERS_TOKENS (50,000)  tokens of the devnet chain; subgrounds' time grows with the
#                                square of it (about 80 s at 50,000 on the 2-core CI machine)
#   NIFTY_PEERS_RUNS (3)         runs per client (the table shows medians)
#   NIFTY_PEERS_SEED (7)         chain seed
#   NIFTY_PEERS_TIMEOUT_SECS     longest one run may take (900)
#   NIFTY_PEERS_PYTHON           the Python for the venv (default: python3.11, else python3)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
root="$PWD"
cargo="${CARGO:-cargo}"
target="${CARGO_TARGET_DIR:-$root/target}"
tools="$root/.tools/peers"
spec="$root/benches/peers"
export NIFTY_PEERS_OUT="${NIFTY_PEERS_OUT:-$target/bench/peers.json}"
export NIFTY_PEERS_WORK="${NIFTY_PEERS_WORK:-$target/bench/peers-work}"
started=$(date +%s)

mkdir -p "$tools" "$NIFTY_PEERS_WORK"
# One install at a time (two `make bench-peers` at once would fight over the same venv).
exec 9>"$root/.tools/peers.lock"
flock 9

log="$NIFTY_PEERS_WORK/install.log"
: >"$log"

# The line of an install's output that says what went wrong.
why() {
  grep -v -i '^npm warn' "$1" | grep -i -m1 -E 'error|not found|no matching|could not|failed' \
    || grep -v '^[[:space:]]*$' "$1" | tail -n 1
}

install_subgrounds() {
  local venv="$tools/subgrounds" out="$NIFTY_PEERS_WORK/install-subgrounds.log" python
  python="${NIFTY_PEERS_PYTHON:-}"
  if [ -z "$python" ]; then
    python="$(command -v python3.11 || command -v python3 || true)"
  fi
  if [ -z "$python" ]; then
    export NIFTY_PEERS_SUBGROUNDS_SKIP="no python3 found (subgrounds needs Python 3.10+)"
    return
  fi
  if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)'; then
    export NIFTY_PEERS_SUBGROUNDS_SKIP="$("$python" --version 2>&1) is too old (subgrounds needs Python 3.10+)"
    return
  fi
  local want
  want="$( (cat "$spec/requirements.txt"; "$python" --version) | sha256sum | cut -d' ' -f1)"
  if [ -f "$venv/.installed" ] && [ "$(cat "$venv/.installed")" = "$want" ] && [ -x "$venv/bin/python" ]; then
    export NIFTY_PEERS_SUBGROUNDS_PYTHON="$venv/bin/python"
    return
  fi
  echo "bench-peers: installing subgrounds from PyPI into $venv ($("$python" --version 2>&1))"
  rm -rf "$venv"
  if "$python" -m venv "$venv" >"$out" 2>&1 \
    && "$venv/bin/python" -m pip install --disable-pip-version-check --no-input --quiet \
         --only-binary=:all: -r "$spec/requirements.txt" >>"$out" 2>&1 \
    && "$venv/bin/python" -c 'import subgrounds' >>"$out" 2>&1; then
    echo "$want" >"$venv/.installed"
    export NIFTY_PEERS_SUBGROUNDS_PYTHON="$venv/bin/python"
  else
    export NIFTY_PEERS_SUBGROUNDS_SKIP="install failed: $(why "$out")"
    echo "bench-peers: subgrounds: $NIFTY_PEERS_SUBGROUNDS_SKIP (log: $out)" >&2
  fi
}

install_graph_client() {
  local dir="$tools/graph-client" out="$NIFTY_PEERS_WORK/install-graph-client.log"
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    export NIFTY_PEERS_GRAPH_CLIENT_SKIP="node and npm are needed (Debian: apt-get install nodejs npm)"
    return
  fi
  local want
  want="$( (cat "$spec/package.json" "$spec/package-lock.json"; node --version) | sha256sum | cut -d' ' -f1)"
  if [ -f "$dir/.installed" ] && [ "$(cat "$dir/.installed")" = "$want" ] \
    && [ -x "$dir/node_modules/.bin/graphclient" ]; then
    export NIFTY_PEERS_GRAPH_CLIENT_DIR="$dir"
    return
  fi
  echo "bench-peers: installing graph-client from the npm registry into $dir"
  rm -rf "$dir"
  mkdir -p "$dir"
  cp "$spec/package.json" "$spec/package-lock.json" "$dir/"
  # Not `npm ci`: two optional dependencies of @graphql-mesh/cli (uWebSockets.js, and
  # node-libcurl's fork of nan) exist only as GitHub repositories, which this workplace does
  # not reach, so the lock has no entry for them and `npm ci` calls it out of sync. This
  # installs exactly the lock's versions, fetches nothing from git and leaves the lock as it
  # is; neither optional package is used by `graphclient build` or `execute`.
  if (cd "$dir" && npm install --no-save --allow-git=none --omit=optional --ignore-scripts \
        --no-audit --no-fund --loglevel=error) >"$out" 2>&1 \
    && [ -x "$dir/node_modules/.bin/graphclient" ] \
    && cmp -s "$spec/package-lock.json" "$dir/package-lock.json"; then
    echo "$want" >"$dir/.installed"
    export NIFTY_PEERS_GRAPH_CLIENT_DIR="$dir"
  else
    export NIFTY_PEERS_GRAPH_CLIENT_SKIP="install failed: $(why "$out")"
    echo "bench-peers: graph-client: $NIFTY_PEERS_GRAPH_CLIENT_SKIP (log: $out)" >&2
  fi
}

install_subgrounds
install_graph_client
flock -u 9

echo "bench-peers: building nifty (release) and the bench, then running it"
"$cargo" bench --locked --bench peers
status=$?
echo "bench-peers: done in $(( $(date +%s) - started )) s (exit $status)"
exit "$status"
