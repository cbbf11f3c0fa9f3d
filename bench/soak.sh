#!/usr/bin/env bash
# Soak run on the release build, all on loopback: logins (password, the code
# from the file outbox, verify, a proxied request, logout), authenticated
# proxying, and forward-auth through nginx auth_request, all three at once at
# about half of the capacity measured alone first (SOAK_FRACTION, default 0.5,
# shared by the three streams). Prints a row a minute: the gateway's RSS (median
# and highest of a sample a second), open descriptors, CPU, and per stream req/s,
# p99 and errors; then whether the median RSS of the last five minutes is under
# 5 % above that of the five after the first (warm-up), with zero errors and the
# median descriptor count flat.
# Usage: bench/soak.sh DURATION [STORE...]   (e.g. 30m; STORE memory | redis, default both)
# Needs wrk, nginx, python3 (and redis-server for the Redis run).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { sed -n '2,11p' "$0"; exit 1; }
DURATION="$1"; shift
STORES=("$@"); [ ${#STORES[@]} -gt 0 ] || STORES=(memory redis)
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)"; exit 1; }
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { echo "nginx is required"; exit 1; }
for s in "${STORES[@]}"; do
  [ "$s" != redis ] || command -v redis-server >/dev/null || { echo "redis-server is required"; exit 1; }
done
cargo build --release --quiet
echo "soak: $DURATION per store on ${STORES[*]}; $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
exec python3 bench/soak.py target/release/portcullis "$DURATION" "${STORES[@]}"
