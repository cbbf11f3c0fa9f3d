#!/usr/bin/env bash
# Mutation testing of the access core: cargo-mutants changes one thing at a
# time in each file (a `!` deleted, `&&` made `||`, a function made to return
# a constant, ...) and runs the library's unit tests (`cargo test --lib`)
# against each change. A mutant the tests do not notice ("missed") is a
# clause no test holds to; bench/README.md ("Mutation testing of the access
# core") lists every survivor of the last run with the test that now kills it
# or why it cannot be killed.
#
# Usage: bench/mutants.sh
#        FILES="src/access.rs src/normalize.rs" bench/mutants.sh
# FILES picks a subset of the access core (default: all six files below).
# MUTANTS_JOBS builds and tests that many mutants side by side (default 1;
# each needs its own copy of the tree and about 2 cores).
# The report goes to $CARGO_TARGET_DIR/mutants/mutants.out (or target/...),
# or MUTANTS_OUT/mutants.out (the previous one is kept as mutants.out.old).
# Mutants build in copies of the tree, by default with their own target dir
# ($CARGO_TARGET_DIR/mutants/target: the first run builds every dependency
# once more, and no run rebuilds or waits on the developer's own build).
# MUTANTS_TARGET_DIR=$CARGO_TARGET_DIR shares the developer's instead: no
# second copy of the dependencies, but a build of one waits for the other.
# MUTANTS_ARGS adds options to cargo-mutants, e.g. "--re decide" for only the
# mutants whose description matches.
# src/auth/login.rs is held to its level and attempt logic (issue 37): the
# functions that decide a login's level, which second factors it is offered,
# and how each password or code attempt is admitted, counted and audited
# (`methods`, `naming_known`, `required_level`, `password_step`, `admit`,
# `code_step`, `backup_step`, `totp_step`, `passkey_step`). Making sessions,
# sending codes and the code page's view (LOGIN_ELSEWHERE below) are left to
# the integration tests; MUTANTS_LOGIN_WHOLE=1 mutates them too.
# Installs cargo-mutants (pinned below) when it is missing.
# Exits 1 when a mutant was missed, or cargo-mutants could not run.
set -uo pipefail
cd "$(dirname "$0")/.."

# 27.1.0 builds with the toolchain in use (Rust 1.95, --locked).
MUTANTS_VERSION=27.1.0
FILES="${FILES:-src/normalize.rs src/access.rs src/gate.rs src/auth/login.rs src/session.rs src/proxy/headers.rs}"
JOBS="${MUTANTS_JOBS:-1}"
BASE="${CARGO_TARGET_DIR:-$PWD/target}/mutants"
TARGET="${MUTANTS_TARGET_DIR:-$BASE/target}"

if ! cargo mutants --version >/dev/null 2>&1; then
  echo "bench/mutants.sh: installing cargo-mutants $MUTANTS_VERSION"
  cargo install --locked cargo-mutants --version "$MUTANTS_VERSION" || exit 1
fi

# The functions of src/auth/login.rs outside its level and attempt logic
# (matched against "src/auth/login.rs:LINE:COL: ... LoginFlow::NAME ...").
LOGIN_ELSEWHERE='src/auth/login\.rs:.*LoginFlow::(step_up|ask_second_factor|complete|open_session|completed|pending_user|finish_pending|resend|logout|pending_view|passkey_start)\b'
scope_args=()
[ "${MUTANTS_LOGIN_WHOLE:-0}" = 1 ] || scope_args+=(--exclude-re "$LOGIN_ELSEWHERE")

# Mutants argued equivalent in bench/README.md (no test can tell them from
# the code), left out so that a run with nothing new to report exits 0.
# Anchored on the line: when the code moves, the mutant is tested (and
# missed) again, so the argument is read again before the line is updated.
# MUTANTS_EQUIVALENT=1 tests them too.
EQUIVALENT=(
  '^src/normalize\.rs:145:.*replace > with >= in without_parameters$'
  '^src/proxy/headers\.rs:66:.*replace & with \| in strip_hop_by_hop$'
)
if [ "${MUTANTS_EQUIVALENT:-0}" != 1 ]; then
  for re in "${EQUIVALENT[@]}"; do scope_args+=(--exclude-re "$re"); done
fi

file_args=()
for f in $FILES; do
  [ -f "$f" ] || { echo "bench/mutants.sh: no such file: $f"; exit 1; }
  file_args+=(--file "$f")
done
OUT_DIR="${MUTANTS_OUT:-$BASE}"
mkdir -p "$OUT_DIR"
start=$(date +%s)
# --no-shuffle: the same order each run, so two reports compare line by
# line. -C --lib (--cargo-arg, given to every cargo command, the build too):
# `cargo test --lib` builds and runs the library's unit tests only (arguments
# after `--` would reach the test binaries, and --cargo-test-arg only the run).
CARGO_TARGET_DIR="$TARGET" cargo mutants --no-shuffle --jobs "$JOBS" "${file_args[@]}" \
  --output "$OUT_DIR" -C --lib "${scope_args[@]}" ${MUTANTS_ARGS:-}
status=$?
secs=$(( $(date +%s) - start ))
OUT="$OUT_DIR/mutants.out"
[ -f "$OUT/caught.txt" ] || { echo "bench/mutants.sh: cargo-mutants produced no report (exit $status)"; exit 1; }

count() { # file outcome
  if [ -f "$OUT/$2.txt" ]; then grep -c "^$1:" "$OUT/$2.txt" || true; else echo 0; fi
}
echo
printf '| %-22s | %7s | %6s | %6s | %8s | %8s |\n' file mutants caught missed unviable timeouts
echo "|------------------------|---------|--------|--------|----------|----------|"
for f in $FILES; do
  c=$(count "$f" caught) m=$(count "$f" missed) u=$(count "$f" unviable) t=$(count "$f" timeout)
  printf '| %-22s | %7s | %6s | %6s | %8s | %8s |\n' "$f" $((c + m + u + t)) "$c" "$m" "$u" "$t"
done
echo "wall time: $((secs / 60)) min $((secs % 60)) s (cargo-mutants exit $status)"
echo
if [ -s "$OUT/missed.txt" ]; then
  echo "survivors (missed):"
  sed 's/^/  /' "$OUT/missed.txt"
fi
if [ "${MUTANTS_EQUIVALENT:-0}" != 1 ]; then
  echo "not tested, argued equivalent in bench/README.md (MUTANTS_EQUIVALENT=1 tests them):"
  printf '  %s\n' "${EQUIVALENT[@]}"
fi
if [ -s "$OUT/timeout.txt" ]; then
  echo "timeouts (the tests hung: noticed, though not by an assertion):"
  sed 's/^/  /' "$OUT/timeout.txt"
fi
# cargo-mutants exits 0 when every mutant was caught, 2 when some were
# missed, 3 when some only timed out; anything else is a failure to run.
case "$status" in
  0 | 3) exit 0 ;;
  *) exit 1 ;;
esac
