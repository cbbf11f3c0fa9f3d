#!/usr/bin/env bash
# Side-by-side proxy throughput on this machine, all on loopback, in one run:
#   1. wrk → nginx (plain reverse proxy, worker_processes auto) → static upstream (nginx)
#   1b. the same with worker_processes 1 (labelled; half of a 2-core machine)
#   2. wrk → portcullis (authenticated session)        → static upstream
#   2b. wrk → a minimal hyper proxy (bench/hyper_floor.rs: no auth, nothing of
#       the gateway's, a runtime per core) → static upstream: hyper's own floor
#   3. wrk → nginx auth_request → portcullis /verify   → static upstream
#   4. wrk → nginx auth_request → static 200 (nginx)    → static upstream
#   4b. the same with a minimal hyper server answering 200 (hyper_floor.rs with
#       `200`): hyper's own floor under a forward-auth check
#   5. wrk → traefik (plain reverse proxy, if present) → static upstream
# Prints req/s and latency for each and the ratios against nginx, and the CPU
# time (user and system) each request cost Portcullis and the minimal hyper
# proxy (from /proc/PID/stat, every thread counted). Case 4 differs
# from 3 only in who answers the auth subrequest (a tiny nginx server answering
# 200, over the same keep-alive upstream setup), so 3/4 is Portcullis's cost as
# a forward-auth server. Every case sends the same session cookie.
# Usage: [PORTCULLIS_BIN=path] [BENCH_LOG=info|warn] bench/proxy.sh [duration=10s] [connections=64] [all|forward-auth]
#   forward-auth: only cases 3 and 4 (what bench/forward_auth.sh runs).
set -euo pipefail
cd "$(dirname "$0")/.."
DUR="${1:-10s}"
CONNS="${2:-64}"
CASES="${3:-all}"
case "$CASES" in all|forward-auth) ;; *) echo "unknown case set: $CASES (all | forward-auth)"; exit 1;; esac
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)"; exit 1; }
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
[ -x "$NGINX" ] || { echo "nginx is required"; exit 1; }

# PORTCULLIS_BIN measures another build (say, one from before a change).
if [ -n "${PORTCULLIS_BIN:-}" ]; then BIN="$PORTCULLIS_BIN"; else cargo build --release --quiet; BIN=target/release/portcullis; fi
# The floor: a minimal hyper proxy with none of the gateway's work (bench/hyper_floor.rs).
cargo build --release --quiet --example hyper_floor; FLOOR_BIN=target/release/examples/hyper_floor
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
STATIC=$(free_port); NGX=$(free_port); NGX1=$(free_port); GW=$(free_port); NGXAUTH=$(free_port); TRF=$(free_port)
OK200=$(free_port); NGXSTATIC=$(free_port); FLOOR=$(free_port); FLOOR200=$(free_port); NGXFLOOR=$(free_port)
USER_DIRECTIVE=""; [ "$(id -u)" = 0 ] && USER_DIRECTIVE="user root root;"

mkdir -p "$WORK/www"; head -c 1024 /dev/zero | tr '\0' 'x' > "$WORK/www/index.html"
. bench/lib.sh
cat > "$WORK/nginx.conf" <<CONF
$USER_DIRECTIVE
daemon off; worker_processes auto; pid $WORK/nginx.pid; error_log $WORK/error.log warn;
events { worker_connections 4096; }
http {
  access_log off; client_body_temp_path $WORK/b; proxy_temp_path $WORK/p;
  fastcgi_temp_path $WORK/f; uwsgi_temp_path $WORK/u; scgi_temp_path $WORK/s;
  upstream static_up { server 127.0.0.1:$STATIC; keepalive 128; }
  upstream gw_up { server 127.0.0.1:$GW; keepalive 128; }
  upstream ok200_up { server 127.0.0.1:$OK200; keepalive 128; }
  upstream floor200_up { server 127.0.0.1:$FLOOR200; keepalive 128; }
  server { listen 127.0.0.1:$STATIC; root $WORK/www; location / { try_files /index.html =404; } }
  server { listen 127.0.0.1:$OK200; location / { return 200; } }
  server { listen 127.0.0.1:$NGX;
    location / { proxy_pass http://static_up; proxy_http_version 1.1; proxy_set_header Connection ""; } }
$(nginx_auth_server "$NGXAUTH" gw_up)
$(nginx_auth_server "$NGXFLOOR" floor200_up)
$(nginx_auth_server "$NGXSTATIC" ok200_up)
}
CONF
"$NGINX" -p "$WORK" -c "$WORK/nginx.conf" -e "$WORK/error.log" & PIDS+=($!)
# nginx's recommended setting is worker_processes auto (above); the one-worker
# figure is printed beside it, labelled, for comparison with older runs.
mkdir -p "$WORK/one"
cat > "$WORK/one/nginx.conf" <<CONF
$USER_DIRECTIVE
daemon off; worker_processes 1; pid $WORK/one/nginx.pid; error_log $WORK/one/error.log warn;
events { worker_connections 4096; }
http {
  access_log off; client_body_temp_path $WORK/one/b; proxy_temp_path $WORK/one/p;
  fastcgi_temp_path $WORK/one/f; uwsgi_temp_path $WORK/one/u; scgi_temp_path $WORK/one/s;
  upstream static_up { server 127.0.0.1:$STATIC; keepalive 128; }
  server { listen 127.0.0.1:$NGX1;
    location / { proxy_pass http://static_up; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
CONF
"$NGINX" -p "$WORK/one" -c "$WORK/one/nginx.conf" -e "$WORK/one/error.log" & PIDS+=($!)

printf '[users.bench]\nemail = "bench@example.com"\npassword = "%s"\n' "$(echo bench-password | $BIN hash-password)" > "$WORK/users.toml"
cat > "$WORK/portcullis.toml" <<CONF
[server]
listen = "127.0.0.1:$GW"
public_url = "http://127.0.0.1:$GW"
metrics_listen = "127.0.0.1:0"
[[upstream]]
url = "http://127.0.0.1:$STATIC"
[auth]
secret = "fixGfLOuvcHTeVw9Xfk-yilcsO2TFwDrddmNnciOrVmMR70u"
users_file = "$WORK/users.toml"
[access_control]
default_policy = "one_factor"
CONF
"$FLOOR_BIN" "127.0.0.1:$FLOOR" "127.0.0.1:$STATIC" & PIDS+=($!); FLOOR_PID=$!
"$FLOOR_BIN" "127.0.0.1:$FLOOR200" 200 & PIDS+=($!); FLOOR200_PID=$!
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$FLOOR/" && break; sleep 0.1; done
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$FLOOR200/" && break; sleep 0.1; done
# The access log on, at its default level (info), as JSON lines to a file: what
# an operator runs with. BENCH_LOG=warn turns it off, to measure what it costs.
PORTCULLIS_LOG="${BENCH_LOG:-info}" "$BIN" --log-format json serve --config "$WORK/portcullis.toml" > "$WORK/gw.out" 2>&1 & PIDS+=($!); GW_PID=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$GW/_auth/healthz" && break; sleep 0.1; done

COOKIE=$(curl -s -D - -o /dev/null -H "Origin: http://127.0.0.1:$GW" -H 'Content-Type: application/json' \
  -d '{"username_or_email":"bench","password":"bench-password"}' "http://127.0.0.1:$GW/_auth/api/send-login-otp" \
  | tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: \(portcullis_session=[^;]*\).*/\1/p' | head -1)
[ -n "$COOKIE" ] || { echo "login failed"; cat "$WORK/gw.out"; exit 1; }
curl -sf -o /dev/null -H "Cookie: $COOKIE" "http://127.0.0.1:$GW/" || { echo "authenticated request failed"; exit 1; }
# Measure allowed requests only: with the cookie both auth_request fronts answer
# 200; without it Portcullis's says 401.
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$NGXSTATIC/" && break; sleep 0.1; done
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $COOKIE" "http://127.0.0.1:$NGXAUTH/")" = 200 ] \
  || { echo "nginx auth_request to portcullis does not let the session through"; cat "$WORK/error.log"; exit 1; }
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$NGXAUTH/")" = 401 ] \
  || { echo "nginx auth_request to portcullis lets an anonymous request through"; exit 1; }
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $COOKIE" "http://127.0.0.1:$NGXSTATIC/")" = 200 ] \
  || { echo "nginx auth_request to static 200 failed"; cat "$WORK/error.log"; exit 1; }

if [ "$CASES" = all ] && command -v traefik >/dev/null; then
  cat > "$WORK/dyn.yml" <<CONF
http:
  routers: { r: { rule: "PathPrefix(\`/\`)", service: s, entryPoints: [web] } }
  services: { s: { loadBalancer: { servers: [ { url: "http://127.0.0.1:$STATIC" } ] } } }
CONF
  traefik --entryPoints.web.address=127.0.0.1:$TRF --providers.file.filename="$WORK/dyn.yml" --log.level=ERROR > "$WORK/traefik.log" 2>&1 & PIDS+=($!)
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$TRF/" && break; sleep 0.1; done
fi

CPU_LINES=""
# CPU time (user and system, every thread) a process has used, in clock ticks.
cpu_ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }
run() { # name url [pid whose CPU time per request to report] [wrk header args]
  local name="$1" url="$2" pid="${3:-}"; shift 3 || shift 2
  local before after
  [ -n "$pid" ] && before=$(cpu_ticks "$pid")
  wrk -t2 -c"$CONNS" -d"$DUR" --latency "$@" "$url" > "$WORK/$name.txt" 2>&1
  [ -n "$pid" ] && after=$(cpu_ticks "$pid")
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/$name.txt")
  if [ -n "$pid" ]; then
    CPU_LINES+="$(python3 -c "import sys
u0, s0, u1, s1, rps, dur, hz, name = sys.argv[1:]
n = float(rps) * float(dur.rstrip('s')) / 1e6
us = lambda a, b: (int(b) - int(a)) / int(hz) / n
print(f'{name:<40} {us(u0, u1) + us(s0, s1):6.1f} us CPU per request (user {us(u0, u1):5.1f}, system {us(s0, s1):5.1f})')
" $before $after "$rps" "$DUR" "$(getconf CLK_TCK)" "$name")"$'\n'
  fi
  p50=$(awk '$1=="50%" {print $2}' "$WORK/$name.txt")
  p99=$(awk '$1=="99%" {print $2}' "$WORK/$name.txt")
  local non2xx; non2xx=$(awk '/Non-2xx/ {print $4}' "$WORK/$name.txt")
  printf '%-40s %10s req/s   p50 %8s   p99 %8s   non-2xx %s\n' "$name" "$rps" "$p50" "$p99" "${non2xx:-0}"
  eval "RPS_$(echo "$name" | tr -c 'a-zA-Z0-9\n' '_')=$rps"
  eval "P99_$(echo "$name" | tr -c 'a-zA-Z0-9\n' '_')=$p99"
}

echo "wrk -t2 -c$CONNS -d$DUR, 1 KiB static response, loopback, $(nproc) cores, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$CASES" = all ]; then
  run nginx_proxy "http://127.0.0.1:$NGX/"
  run portcullis_authenticated "http://127.0.0.1:$GW/" "$GW_PID" -H "Cookie: $COOKIE"
  run hyper_floor_proxy "http://127.0.0.1:$FLOOR/" "$FLOOR_PID"
  run nginx_proxy_1_worker "http://127.0.0.1:$NGX1/"
fi
run nginx_auth_request_portcullis "http://127.0.0.1:$NGXAUTH/" "$GW_PID" -H "Cookie: $COOKIE"
run nginx_auth_request_static_200 "http://127.0.0.1:$NGXSTATIC/" "" -H "Cookie: $COOKIE"
run nginx_auth_request_hyper_200 "http://127.0.0.1:$NGXFLOOR/" "$FLOOR200_PID" -H "Cookie: $COOKIE"
if [ "$CASES" = all ] && command -v traefik >/dev/null; then run traefik_proxy "http://127.0.0.1:$TRF/"; fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
# What each request cost the process serving it (nginx's own workers also
# serve the static upstream, so they have no row): the gateway against the
# minimal hyper proxy shows what its own work costs, user and system apart.
printf '%s' "$CPU_LINES"
python3 - "${RPS_nginx_proxy:-0}" "${RPS_portcullis_authenticated:-0}" "$RPS_nginx_auth_request_portcullis" \
  "$RPS_nginx_auth_request_static_200" "${RPS_nginx_proxy_1_worker:-0}" "${P99_nginx_proxy:-0}" \
  "${P99_portcullis_authenticated:-0}" "${RPS_hyper_floor_proxy:-0}" "${RPS_nginx_auth_request_hyper_200:-0}" <<'PY'
import sys
def ms(v):
    v = v.strip()
    for unit, f in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if v.endswith(unit):
            return float(v[: -len(unit)]) * f
    return float(v or 0)
n, p, a, s, one = map(float, sys.argv[1:6])
np99, pp99 = ms(sys.argv[6]), ms(sys.argv[7])
floor = float(sys.argv[8])
if n:
    print(f"ratio portcullis (authenticated proxy) / nginx (plain proxy, workers auto): {p/n:.2f}   (goal >= 1.0)")
    print(f"p99 portcullis - nginx (workers auto): {pp99 - np99:+.2f} ms   (goal <= +1 ms)")
    print(f"ratio nginx+portcullis forward-auth / nginx (plain proxy, workers auto):  {a/n:.2f}")
if one:
    print(f"ratio portcullis / nginx (plain proxy, 1 worker, for comparison only):     {p/one:.2f}")
if n and floor:
    print(f"ratio minimal hyper proxy (no auth, bench/hyper_floor.rs) / nginx:         {floor/n:.2f}")
    print(f"ratio portcullis / minimal hyper proxy:                                    {p/floor:.2f}")
print(f"ratio nginx auth_request: portcullis / static 200:                         {a/s:.2f}   (goal >= 0.95)")
floor200 = float(sys.argv[9])
if floor200:
    print(f"ratio nginx auth_request: minimal hyper server answering 200 / static 200: {floor200/s:.2f}")
    print(f"ratio nginx auth_request: portcullis / minimal hyper server answering 200: {a/floor200:.2f}")
PY
