#!/usr/bin/env bash
# The login round trip (tests/login_rtt.rs) against the release binary, on
# loopback: password to api/send-login-otp, the code read from the e-mail in a
# real SMTP sink, api/verify-login-otp, then the first proxied 200 from the
# upstream. Prints p50/p99 of the whole and of each step, on the memory store
# and on a real redis-server. argon2id (m=19456, t=2) is most of it.
# Usage: bench/login_rtt.sh [LOGINS]   (default 50, after 2 unmeasured warm-up logins)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
export PORTCULLIS_BIN="$PWD/target/release/portcullis" PORTCULLIS_REQUIRE_SERVICES=1
export LOGIN_RTT_LOGINS="${1:-50}"
cargo test --quiet --test login_rtt -- --nocapture --test-threads 1 2>&1 | grep -oE 'login rtt .*|test result: .*'
