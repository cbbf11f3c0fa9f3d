#!/usr/bin/env bash
# Authenticated proxy throughput by store, side by side in one run on
# loopback: the release gateway on the memory store, on a redis-server with
# the near cache (the default), and on the same redis-server without it
# (store.near_cache = false, every request one Redis round trip). Each proxies
# a logged-in session's GET to a static nginx upstream (1 KiB), under the same
# wrk settings. The three take turns, ROUNDS times, so a change in the
# machine's load hits all three alike; the ratios are of the mean req/s.
# Also prints how many commands Redis ran during the near-cache turns.
# redis-server shares the machine's cores with everything else.
# Usage: bench/store_proxy.sh [duration=6s] [connections=64] [rounds=2]
set -euo pipefail
cd "$(dirname "$0")/.."
DUR="${1:-6s}"
CONNS="${2:-64}"
ROUNDS="${3:-2}"
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)"; exit 1; }
command -v redis-server >/dev/null || { echo "redis-server is required"; exit 1; }
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
[ -x "$NGINX" ] || { echo "nginx is required"; exit 1; }

cargo build --release --quiet
BIN=target/release/portcullis
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
STATIC=$(free_port); REDIS=$(free_port)
USER_DIRECTIVE=""; [ "$(id -u)" = 0 ] && USER_DIRECTIVE="user root root;"

mkdir -p "$WORK/www"; head -c 1024 /dev/zero | tr '\0' 'x' > "$WORK/www/index.html"
cat > "$WORK/nginx.conf" <<CONF
$USER_DIRECTIVE
daemon off; worker_processes 1; pid $WORK/nginx.pid; error_log $WORK/error.log warn;
events { worker_connections 4096; }
http {
  access_log off; client_body_temp_path $WORK/b; proxy_temp_path $WORK/p;
  fastcgi_temp_path $WORK/f; uwsgi_temp_path $WORK/u; scgi_temp_path $WORK/s;
  server { listen 127.0.0.1:$STATIC; root $WORK/www; location / { try_files /index.html =404; } }
}
CONF
"$NGINX" -p "$WORK" -c "$WORK/nginx.conf" -e "$WORK/error.log" & PIDS+=($!)
redis-server --port "$REDIS" --bind 127.0.0.1 --save '' --appendonly no --loglevel warning --dir "$WORK" \
  > "$WORK/redis.log" 2>&1 & PIDS+=($!)

printf '[users.bench]\nemail = "bench@example.com"\npassword = "%s"\n' "$(echo bench-password | $BIN hash-password)" > "$WORK/users.toml"

# gateway NAME STORE_URL NEAR_CACHE → starts it, sets PORT_<NAME>
gateway() {
  local name="$1" url="$2" near="$3" port; port=$(free_port)
  cat > "$WORK/$name.toml" <<CONF
[server]
listen = "127.0.0.1:$port"
public_url = "http://127.0.0.1:$port"
metrics_listen = "127.0.0.1:0"
[[upstream]]
url = "http://127.0.0.1:$STATIC"
[auth]
secret = "fixGfLOuvcHTeVw9Xfk-yilcsO2TFwDrddmNnciOrVmMR70u"
users_file = "$WORK/users.toml"
[store]
url = "$url"
near_cache = $near
[access_control]
default_policy = "one_factor"
CONF
  PORTCULLIS_LOG=warn "$BIN" --log-format json serve --config "$WORK/$name.toml" > "$WORK/$name.out" 2>&1 & PIDS+=($!)
  eval "PORT_$name=$port"
}
gateway memory "memory://" true
gateway redis "redis://127.0.0.1:$REDIS/0" true
gateway redis_direct "redis://127.0.0.1:$REDIS/0" false

# login PORT → prints the session cookie
login() {
  local port="$1"
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/_auth/healthz" && break; sleep 0.1; done
  curl -s -D - -o /dev/null -H "Origin: http://127.0.0.1:$port" -H 'Content-Type: application/json' \
    -d '{"username_or_email":"bench","password":"bench-password"}' "http://127.0.0.1:$port/_auth/api/send-login-otp" \
    | tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: \(portcullis_session=[^;]*\).*/\1/p' | head -1
}

redis_commands() { redis-cli -p "$REDIS" INFO stats | tr -d '\r' | sed -n 's/^total_commands_processed://p'; }

run() { # name port cookie
  local name="$1" port="$2" cookie="$3"
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $cookie" "http://127.0.0.1:$port/")" = 200 ] \
    || { echo "$name: the session is not let through"; cat "$WORK/$name.out"; exit 1; }
  local before; before=$(redis_commands)
  wrk -t2 -c"$CONNS" -d"$DUR" --latency -H "Cookie: $cookie" "http://127.0.0.1:$port/" > "$WORK/$name.txt" 2>&1
  local used=$(( $(redis_commands) - before ))
  local rps p50 p99 non2xx
  rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/$name.txt")
  p50=$(awk '$1=="50%" {print $2}' "$WORK/$name.txt")
  p99=$(awk '$1=="99%" {print $2}' "$WORK/$name.txt")
  non2xx=$(awk '/Non-2xx/ {print $4}' "$WORK/$name.txt")
  printf '%-14s %10s req/s   p50 %8s   p99 %8s   non-2xx %-4s redis commands %s\n' \
    "$name" "$rps" "$p50" "$p99" "${non2xx:-0}" "$used"
  eval "RPS_$name=\"\${RPS_$name:-} $rps\""
}

C_MEMORY=$(login "$PORT_memory"); C_REDIS=$(login "$PORT_redis"); C_DIRECT=$(login "$PORT_redis_direct")
[ -n "$C_MEMORY" ] && [ -n "$C_REDIS" ] && [ -n "$C_DIRECT" ] || { echo "login failed"; tail "$WORK"/*.out; exit 1; }

echo "wrk -t2 -c$CONNS -d$DUR, authenticated GET, 1 KiB static upstream, loopback, $(nproc) cores, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for _ in $(seq "$ROUNDS"); do
  run memory "$PORT_memory" "$C_MEMORY"
  run redis "$PORT_redis" "$C_REDIS"
  run redis_direct "$PORT_redis_direct" "$C_DIRECT"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$RPS_memory" "$RPS_redis" "$RPS_redis_direct" <<'PY'
import sys
mean = lambda s: sum(map(float, s.split())) / len(s.split())
m, r, d = (mean(a) for a in sys.argv[1:4])
print(f"mean req/s: memory {m:.0f}, redis (near cache) {r:.0f}, redis (no near cache) {d:.0f}")
print(f"ratio redis (near cache) / memory:    {r/m:.2f}")
print(f"ratio redis (no near cache) / memory: {d/m:.2f}")
PY
