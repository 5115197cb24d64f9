#!/usr/bin/env bash
# Installs the chain-source tests' tools from the npm registry into .tools/chain: the anvil
# node (npm package @foundry-rs/anvil-linux-amd64, a prebuilt Linux x86-64 binary) and
# solc-js (npm package solc), at the exact versions of tests/chain/package-lock.json.
#
# Idempotent and quick when already done: a stamp holds the hash of tests/chain's
# package.json and package-lock.json, and nothing is fetched while it matches and the tools
# are in place. Two runs at once are safe (the second waits on a lock in .tools). Needs node
# and npm. Prints where anvil is.
#
#   NIFTY_ANVIL=/path/to/anvil   the tests use that anvil instead (solc-js is still installed)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
spec="$root/tests/chain"
dir="$root/.tools/chain"
stamp="$dir/.installed"
anvil="$dir/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
solc="$dir/node_modules/solc/package.json"

for tool in node npm flock sha256sum; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "install-chain-tools: '$tool' is needed and not found; install Node.js 20+ and npm" \
         "(Debian: apt-get install nodejs npm)" >&2
    exit 1
  fi
done

want="$(cat "$spec/package.json" "$spec/package-lock.json" | sha256sum | cut -d' ' -f1)"

done_already() {
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$anvil" ] && [ -f "$solc" ]
}

report() {
  if [ -n "${NIFTY_ANVIL:-}" ]; then
    echo "anvil: using NIFTY_ANVIL=$NIFTY_ANVIL"
  else
    echo "anvil: $anvil"
  fi
}

if done_already; then
  report
  exit 0
fi

mkdir -p "$root/.tools"
exec 9>"$root/.tools/chain.lock"
flock 9
# Another run may have finished the install while this one waited for the lock.
if done_already; then
  report
  exit 0
fi

echo "install-chain-tools: installing anvil and solc-js from the npm registry into $dir"
rm -f "$stamp"
mkdir -p "$dir"
cp "$spec/package.json" "$spec/package-lock.json" "$dir/"
# `npm ci` installs exactly the lock and replaces any node_modules already there. No
# package here needs an install script.
(cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)

if ! "$anvil" --version >/dev/null 2>&1; then
  echo "install-chain-tools: $anvil was installed but does not run" \
       "(it is a Linux x86-64 binary)" >&2
  exit 1
fi
if [ ! -f "$solc" ]; then
  echo "install-chain-tools: solc-js missing from $dir/node_modules after npm ci" >&2
  exit 1
fi
echo "$want" >"$stamp"
echo "install-chain-tools: $("$anvil" --version | head -n 1); solc-js $(node -p "require('$dir/node_modules/solc/package.json').version")"
report
