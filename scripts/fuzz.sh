#!/usr/bin/env bash
# Fuzzes nifty's pure parsers: builds the cargo-fuzz targets in fuzz/ and runs each for a
# bounded time, one job at a time, on a scratch corpus grown from the committed seeds.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET [TARGET...]]
#
# SECONDS_PER_TARGET defaults to 20 (what `make test` runs); 0 skips fuzzing. TARGET is any of
# uri, metadata, analysis (URI analysis and metadata extraction), graph (subgraph page
# responses), config (nifty.toml) and rpc (eth_getLogs answers and ABI words); all by default. Exits non-zero when a target does not build or
# crashes (a panic, a broken invariant, a hang or running out of memory); the input that did
# it is saved under fuzz/artifacts/<target>/ and its path printed. The last line totals the
# targets in `cargo test`'s format, so scripts/test.sh's summary counts each as a test.
#
# Needs only a stable toolchain: cargo-fuzz's unstable flags are allowed by RUSTC_BOOTSTRAP=1,
# and cargo-fuzz itself is installed from crates.io into .tools/ on first use.
#
# Environment:
#   FUZZ_SANITIZER  cargo-fuzz's --sanitizer (default none: nifty forbids unsafe code, and
#                   AddressSanitizer makes the targets about five times slower)
#   FUZZ_FRESH=1    start from the seeds alone, dropping what earlier runs added to the corpus
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
root=$PWD

seconds=${1:-20}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(uri metadata analysis graph config rpc)

if ! [[ $seconds =~ ^[0-9]+$ ]]; then
  echo "fuzz: seconds must be a whole number, not ${seconds@Q}" >&2
  exit 2
fi
if [ "$seconds" -eq 0 ]; then
  # libFuzzer reads -max_total_time=0 as "forever".
  echo "fuzz: skipped (0 seconds)"
  exit 0
fi

cargo=${CARGO:-cargo}
cargo_fuzz_version=0.13.2
tools=$root/.tools
cargo_fuzz=$tools/bin/cargo-fuzz
sanitizer=${FUZZ_SANITIZER:-none}
fuzz_dir=$root/fuzz
target_dir=$fuzz_dir/target
host=$(rustc -vV | sed -n 's/^host: //p')

# Per target: longest input (above uri::MAX_URI_LEN for URIs, so the length check is reached;
# metadata needs room for documents with more than MAX_ASSETS assets; a graph page of a few
# dozen rows), dictionaries, seeds.
max_len() {
  case $1 in
    uri | analysis) echo 9000 ;;
    graph) echo 32768 ;;
    *) echo 16384 ;;
  esac
}
dicts() {
  case $1 in
    uri) echo uri ;;
    metadata) echo metadata ;;
    analysis) echo uri metadata ;;
    *) echo "$1" ;;
  esac
}
seed_dirs() {
  case $1 in
    analysis) echo uri analysis ;;
    *) echo "$1" ;;
  esac
}

for t in "${targets[@]}"; do
  if [ ! -f "$fuzz_dir/fuzz_targets/$t.rs" ]; then
    echo "fuzz: no target $t (fuzz/fuzz_targets/$t.rs)" >&2
    exit 2
  fi
done

started=$SECONDS
if ! "$cargo_fuzz" --version 2>/dev/null | grep -qx "cargo-fuzz $cargo_fuzz_version"; then
  echo "fuzz: installing cargo-fuzz $cargo_fuzz_version into .tools/"
  # Its own scratch target directory, not the workspace's.
  if ! env -u CARGO_TARGET_DIR "$cargo" install --locked --quiet --root "$tools" \
    --version "$cargo_fuzz_version" cargo-fuzz; then
    echo "fuzz: installing cargo-fuzz failed" >&2
    exit 1
  fi
fi

# The fuzz crate is its own workspace; its lock file starts from the root one, so nifty
# is fuzzed with the dependency versions that ship (cargo adds libfuzzer-sys and its deps).
if [ ! -f "$fuzz_dir/Cargo.lock" ] || [ "$root/Cargo.lock" -nt "$fuzz_dir/Cargo.lock" ]; then
  cp "$root/Cargo.lock" "$fuzz_dir/Cargo.lock"
fi
echo "fuzz: building ${targets[*]} (release, debug assertions, sanitizer $sanitizer)"
build_args=(fuzz build --fuzz-dir "$fuzz_dir" --release --debug-assertions
  --sanitizer "$sanitizer" --target "$host" --target-dir "$target_dir")
built=0
for t in "${targets[@]}"; do
  RUSTC_BOOTSTRAP=1 "$cargo_fuzz" "${build_args[@]}" "$t" || built=$?
done
if [ "$built" -ne 0 ]; then
  echo "fuzz: the targets did not build" >&2
  echo "test result: FAILED. 0 passed; ${#targets[@]} failed; 0 ignored; 0 measured; 0 filtered out; fuzz targets did not build"
  exit 1
fi
echo "fuzz: ready in $((SECONDS - started)) s"

bin_dir=$target_dir/$host/release
log_dir=$target_dir/fuzz-logs
mkdir -p "$log_dir"
passed=0
failed=0
for t in "${targets[@]}"; do
  corpus=$fuzz_dir/corpus/$t
  artifacts=$fuzz_dir/artifacts/$t
  log=$log_dir/$t.log
  [ "${FUZZ_FRESH:-0}" = 1 ] && rm -rf "$corpus"
  mkdir -p "$corpus" "$artifacts"
  seeds=0
  for s in $(seed_dirs "$t"); do
    [ -d "$fuzz_dir/seeds/$s" ] || continue
    cp "$fuzz_dir/seeds/$s"/* "$corpus/"
    seeds=$((seeds + $(find "$fuzz_dir/seeds/$s" -maxdepth 1 -type f | wc -l)))
  done
  dict=$log_dir/$t.dict
  for d in $(dicts "$t"); do
    [ ! -f "$fuzz_dir/dicts/$d.dict" ] || cat "$fuzz_dir/dicts/$d.dict"
  done >"$dict"
  dict_arg=()
  [ ! -s "$dict" ] || dict_arg=(-dict="$dict")

  # New inputs go to the scratch corpus; the seeds in fuzz/seeds/ are never written.
  "$bin_dir/$t" "$corpus" \
    -max_total_time="$seconds" -max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb=2048 \
    "${dict_arg[@]}" -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  size=$(find "$corpus" -maxdepth 1 -type f | wc -l)
  seed=$(sed -n 's/^INFO: Seed: //p' "$log" | head -1)
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1))
    echo "fuzz $t: ok, ${runs:-?} runs in $seconds s, corpus $size inputs ($seeds seeds), seed $seed"
  else
    failed=$((failed + 1))
    artifact=$(sed -n 's/.*Test unit written to //p' "$log" | tail -1)
    echo "fuzz $t: FAILED (exit $rc) after ${runs:-?} runs, seed $seed; log $log"
    # The panic or sanitizer report and the input, without stack frames and statistics.
    awk '/panicked at|ERROR:|ALARM:|out-of-memory/ { on = 1 } on' "$log" |
      grep -v -E '^ *(#[0-9]+ |[0-9]+: |at |0x[0-9a-f]+,|stat::|stack backtrace:|note: )' |
      head -40 | sed 's/^/    /'
    if [ -n "$artifact" ]; then
      echo "fuzz $t: the input is $artifact; replay it with: $bin_dir/$t $artifact"
    fi
  fi
done
echo "test result: $([ "$failed" -eq 0 ] && echo ok || echo FAILED). $passed passed; $failed failed; 0 ignored; 0 measured; 0 filtered out; fuzz targets, $seconds s each"
[ "$failed" -eq 0 ]
