#!/usr/bin/env bash
# Runs every libFuzzer target of fuzz/ for a set time, one after another,
# and prints a table: run time, executions, executions per second, coverage
# (libFuzzer's final `cov` edges and `ft` features) and crashes.
# Needs the nightly toolchain and cargo-fuzz (see fuzz/README.md):
#   rustup toolchain install nightly && cargo install cargo-fuzz
# Usage: bench/fuzz.sh [SECONDS per target, default 300] [TARGET...]
# The committed seeds (fuzz/corpus/TARGET) are read, never written: what a
# run discovers goes to fuzz/target/corpus/TARGET (kept between runs), a
# crash to fuzz/artifacts/TARGET/ (reproduce it with
# `cargo +nightly fuzz run --dev -s none TARGET fuzz/artifacts/TARGET/crash-...`).
set -uo pipefail
cd "$(dirname "$0")/../fuzz"
SECONDS_PER_TARGET="${1:-300}"
shift || true
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is required: cargo install cargo-fuzz"; exit 1; }
TOOLCHAIN="${FUZZ_TOOLCHAIN:-+nightly}"
# --dev: the profile in fuzz/Cargo.toml (opt-level 1, debug assertions and
# overflow checks on). -s none: no sanitizer; the gateway forbids unsafe code,
# and AddressSanitizer would only slow the build and the runs.
FLAGS=(--dev -s none)
if [ "$#" -gt 0 ]; then TARGETS=("$@"); else mapfile -t TARGETS < <(cargo "$TOOLCHAIN" fuzz list); fi
cargo "$TOOLCHAIN" fuzz build "${FLAGS[@]}" || exit 1

LOGS="target/fuzz-logs"
mkdir -p "$LOGS"
rows=()
rc=0
for t in "${TARGETS[@]}"; do
  mkdir -p "target/corpus/$t" "artifacts/$t"
  before=$(find "artifacts/$t" -type f | wc -l)
  start=$(date +%s)
  cargo "$TOOLCHAIN" fuzz run "${FLAGS[@]}" "$t" "target/corpus/$t" "corpus/$t" -- \
    -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
    > "$LOGS/$t.log" 2>&1
  status=$?
  secs=$(( $(date +%s) - start ))
  after=$(find "artifacts/$t" -type f | wc -l)
  crashes=$(( after - before ))
  [ "$status" -eq 0 ] || [ "$crashes" -gt 0 ] || crashes="exit $status"
  [ "$status" -eq 0 ] || rc=1
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$LOGS/$t.log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$LOGS/$t.log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+' "$LOGS/$t.log" | tail -1 | cut -d' ' -f2)
  ft=$(grep -oE 'ft: [0-9]+' "$LOGS/$t.log" | tail -1 | cut -d' ' -f2)
  rows+=("$(printf '| %-14s | %6ss | %12s | %8s | %6s | %7s | %s |' "$t" "$secs" "${execs:--}" "${rate:--}" "${cov:--}" "${ft:--}" "$crashes")")
  echo "${rows[-1]}"
done
echo
printf '| %-14s | %7s | %12s | %8s | %6s | %7s | %s |\n' target time execs execs/s cov ft crashes
echo "|----------------|---------|--------------|----------|--------|---------|---------|"
printf '%s\n' "${rows[@]}"
echo "(logs: fuzz/$LOGS/TARGET.log)"
exit "$rc"
