#!/usr/bin/env bash
# The gateway's resident memory, one column per build, in one run:
#   idle after start (memory store); 400 password logins from 32 clients at
#   once (logins/s against argon2's own limit on this machine's cores, RSS
#   right after, seconds until back within 1.25x idle, RSS 10 s after);
#   peak RSS while 200 MiB streams down and 200 MiB up through the proxy;
#   10,000 idle HTTP/1.1 connections (peak while opening, 2 s after, 10 s
#   later, 15 s after closing) and 10,000 idle HTTP/2 connections over TLS.
# Each build runs tests/footprint.rs's `footprint_report` (PORTCULLIS_BIN set
# to it), about two minutes a build. The test is built in release too: it
# drives the logins and runs the SMTP sink on the same cores, and measures
# argon2's limit with the gateway's own password checker.
#
# Usage: bench/footprint.sh [LABEL=BINARY ...]
#   With no builds named: the release build of the working tree ("now").
#   ALLOCATORS=1 adds this tree built with the system allocator and with
#   mimalloc (copied to target/footprint/portcullis-system and -mimalloc).
# Example: bench/footprint.sh before=/tmp/portcullis-old now=target/release/portcullis
set -euo pipefail
cd "$(dirname "$0")/.."

BUILDS=("$@")
if [ ${#BUILDS[@]} -eq 0 ]; then
  cargo build --release --quiet
  BUILDS=("now=target/release/portcullis")
fi
if [ "${ALLOCATORS:-0}" = 1 ]; then
  # Built one after another in the usual target dir (only the gateway's own
  # crate is rebuilt for each) and copied out; the default build is rebuilt
  # last, so target/release/portcullis is left as it was.
  mkdir -p target/footprint
  for alloc in system mimalloc; do
    features=(--no-default-features)
    [ "$alloc" = mimalloc ] && features+=(--features mimalloc)
    cargo build --release --quiet "${features[@]}"
    cp target/release/portcullis "target/footprint/portcullis-$alloc"
    BUILDS+=("$alloc=target/footprint/portcullis-$alloc")
  done
  cargo build --release --quiet
fi
command -v python3 >/dev/null || { echo "python3 is required (bench/idle_connections.py)"; exit 1; }
# 10,000 connections: the gateway and the client (each its own process) hold
# one descriptor per connection, and a few more.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge 11000 ] || { echo "needs 11000 open files (ulimit -n is $(ulimit -n))"; exit 1; }

export PORTCULLIS_REQUIRE_SERVICES=1
cargo test --release --quiet --test footprint --no-run
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
labels=()
for build in "${BUILDS[@]}"; do
  label="${build%%=*}"
  bin="$(realpath "${build#*=}")"
  [ -x "$bin" ] || { echo "no such binary: $bin"; exit 1; }
  labels+=("$label")
  echo "== $label ($bin)" >&2
  PORTCULLIS_BIN="$bin" cargo test --release --quiet --test footprint -- \
    --ignored --exact footprint_report --nocapture --test-threads 1 >"$WORK/$label.out" 2>&1 \
    || { cat "$WORK/$label.out"; echo "footprint_report failed for $label"; exit 1; }
done

rows=(
  "idle_mib|RSS idle after start (MiB)|<= 20"
  "logins_per_s|400 logins, 32 at once: logins/s|"
  "argon2_limit_per_s|argon2id's own limit on all cores: hashes/s|"
  "logins_over_limit|logins/s / argon2's limit|>= 0.9"
  "after_burst_mib|RSS right after the logins (MiB)|"
  "back_within_1_25x_idle_s|seconds until back within 1.25x idle|<= 15"
  "10s_after_burst_mib|RSS 10 s after the logins (MiB)|"
  "streaming_peak_mib|peak RSS, 200 MiB down + 200 MiB up (MiB)|< 32"
  "h1_10k_peak_mib|10k idle HTTP/1.1: peak while opening (MiB)|<= 100"
  "h1_10k_open_mib|10k idle HTTP/1.1: 2 s after the last (MiB)|<= 100"
  "h1_10k_settled_mib|10k idle HTTP/1.1: 10 s later (MiB)|<= 100"
  "h1_10k_closed_mib|10k idle HTTP/1.1: 15 s after closing (MiB)|"
  "h2_tls_10k_peak_mib|10k idle HTTP/2 over TLS: peak (MiB)|<= 150"
  "h2_tls_10k_open_mib|10k idle HTTP/2 over TLS: 2 s after the last (MiB)|<= 150"
  "h2_tls_10k_settled_mib|10k idle HTTP/2 over TLS: 10 s later (MiB)|<= 150"
  "h2_tls_10k_closed_mib|10k idle HTTP/2 over TLS: 15 s after closing (MiB)|"
)
header="| measure |"
rule="|---|"
for l in "${labels[@]}"; do header+=" $l |"; rule+="---|"; done
echo "$header goal |"
echo "$rule---|"
for row in "${rows[@]}"; do
  IFS='|' read -r key name goal <<<"$row"
  line="| $name |"
  for l in "${labels[@]}"; do
    v="$(awk -v k="$key" '$1 == "footprint" && $2 == k { $1 = ""; $2 = ""; sub(/^  /, ""); print }' "$WORK/$l.out")"
    line+=" ${v:-?} |"
  done
  echo "$line $goal |"
done
