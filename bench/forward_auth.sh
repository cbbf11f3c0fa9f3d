#!/usr/bin/env bash
# Forward-auth throughput, in one run on loopback: wrk → nginx auth_request →
# Portcullis /_auth/verify (logged-in session cookie, one_factor policy) versus
# wrk → nginx auth_request → a tiny nginx server answering 200, both proxying to
# the same static upstream with the same wrk settings. Prints req/s for each and
# the ratio. The setup is bench/proxy.sh's (release build, nginx, static upstream).
# Usage: bench/forward_auth.sh [duration=10s] [connections=64]
set -euo pipefail
exec "$(dirname "$0")/proxy.sh" "${1:-10s}" "${2:-64}" forward-auth
