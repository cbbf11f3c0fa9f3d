#!/usr/bin/env bash
# The brute-force load run (tests/load.rs) against the release binary: 1,000
# wrong-password attempts from 50 clients while a logged-in user keeps using
# the app, on the memory store and on a real redis-server. Prints the user's
# p50/p99 before and during the attack, and checks that exactly the configured
# attempts reached the password check.
# Usage: bench/bruteforce.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
export PORTCULLIS_BIN="$PWD/target/release/portcullis" PORTCULLIS_REQUIRE_SERVICES=1
cargo test --quiet --test load -- --nocapture --test-threads 1 2>&1 | grep -oE 'store (memory|redis): .*|test result: .*'
