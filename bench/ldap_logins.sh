#!/usr/bin/env bash
# Password logins per second with the LDAP directory against the users file,
# side by side in one run (tests/ldap.rs, login_throughput_...), on the release
# binary: a real slapd (started by the test) and 8 logins at a time, one factor.
# The users file's logins are argon2id (m=19456, t=2) on the gateway's cores;
# the directory's are a search and a bind on pooled connections, with slapd
# checking the password on the same 2 cores.
# Usage: bench/ldap_logins.sh [LOGINS]   (default 400 each, after 8 warm-up logins)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
export PORTCULLIS_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/portcullis" PORTCULLIS_REQUIRE_SERVICES=1 PATH="$PATH:/usr/sbin"
export LDAP_BENCH_LOGINS="${1:-400}"
cargo test --quiet --test ldap login_throughput -- --nocapture --test-threads 1 2>&1 | grep -oE 'ldap logins/s.*|test result: .*'
