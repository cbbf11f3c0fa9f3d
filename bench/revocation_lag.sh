#!/usr/bin/env bash
# Cross-replica revocation lag on loopback: two release gateways on one
# redis-server (tests/replicas.rs); each round logs in through replica A, lets
# replica B serve the session (from its near cache), logs out through A, then
# asks B until it refuses. The lag is from A's logout answer to B's first
# refusal, that request's own round trip included. Prints p50/p99/max.
# Usage: bench/revocation_lag.sh [LOGOUTS]   (default 200)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
export PORTCULLIS_BIN="$PWD/target/release/portcullis" PORTCULLIS_REQUIRE_SERVICES=1
export REVOCATION_LAG_LOGOUTS="${1:-200}"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
cargo test --quiet --test replicas a_logout_on_one_replica -- --nocapture --test-threads 1 2>&1 \
  | grep -oE 'revocation lag .*|test result: .*'
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
