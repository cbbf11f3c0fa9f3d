#!/usr/bin/env bash
# Instructions per authenticated proxied request, counted by valgrind's
# callgrind: a figure that does not move with machine load, so two builds can
# be compared where wall-clock throughput is too noisy.
#
# The release gateway runs under callgrind (instrumentation off) in front of a
# static nginx upstream, with the memory store and access logging at info, as
# in bench/proxy.sh. After a login and a warm-up, instrumentation is switched
# on, wrk sends authenticated GETs for a while, instrumentation is switched off
# and the total instruction count is divided by the requests wrk completed.
# Every thread is counted (workers, the log writer, the blocking pool).
#
# With CASE=forward-auth, wrk goes through nginx's auth_request to the
# gateway's /_auth/verify instead (nginx, one worker, keeps its connections to
# the gateway alive), and the figure is the gateway's instructions per check.
#
# With CASE=token, each binary is counted twice under one config whose rule
# takes access tokens: the session cookie, then `Authorization: Bearer` with a
# token (made at two factors: a step-up with the e-mailed code first).
#
# Usage: [CASE=proxy|forward-auth|token] [FLOOR=1] bench/callgrind.sh [duration=20s] [binary=target/release/portcullis ...]
#   Several binaries are measured one after another in the same run. FLOOR=1
#   also counts bench/hyper_floor.rs: the minimal hyper proxy, or with
#   CASE=forward-auth the minimal hyper server answering 200.
set -euo pipefail
cd "$(dirname "$0")/.."
DUR="${1:-20s}"
shift || true
CASE="${CASE:-proxy}"
case "$CASE" in proxy|forward-auth|token) ;; *) echo "unknown CASE: $CASE (proxy | forward-auth | token)"; exit 1;; esac
BINS=("$@")
if [ ${#BINS[@]} -eq 0 ]; then
  cargo build --release --quiet
  BINS=(target/release/portcullis)
fi
for tool in valgrind callgrind_control wrk curl; do
  command -v "$tool" >/dev/null || { echo "$tool is required"; exit 1; }
done
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
. bench/lib.sh
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

STATIC=$(free_port)
USER_DIRECTIVE=""; [ "$(id -u)" = 0 ] && USER_DIRECTIVE="user root root;"
mkdir -p "$WORK/www"; head -c 1024 /dev/zero | tr '\0' 'x' > "$WORK/www/index.html"
# One nginx, one worker, in DIR serving the http block's servers (stdin).
start_nginx() { # dir
  local dir="$1"
  mkdir -p "$dir"
  { printf '%s\n' "$USER_DIRECTIVE" \
      "daemon off; worker_processes 1; pid $dir/nginx.pid; error_log $dir/error.log warn;" \
      "events { worker_connections 1024; }" \
      "http { access_log off; client_body_temp_path $dir/b; proxy_temp_path $dir/p;" \
      "  fastcgi_temp_path $dir/f; uwsgi_temp_path $dir/u; scgi_temp_path $dir/s;"
    cat; echo "}"; } > "$dir/nginx.conf"
  "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" > /dev/null 2>&1 &
  PIDS+=($!)
}
start_nginx "$WORK" <<CONF
  server { listen 127.0.0.1:$STATIC; root $WORK/www; location / { try_files /index.html =404; } }
CONF

printf '[users.bench]\nemail = "bench@example.com"\npassword = "%s"\n' \
  "$(echo bench-password | "${BINS[0]}" hash-password)" > "$WORK/users.toml"

auth_front() { # gateway port; starts nginx auth_request in front of it on port $FRONT
  local gw="$1" port
  port=$(free_port)
  start_nginx "$WORK/front.$gw" <<CONF
  upstream static_up { server 127.0.0.1:$STATIC; keepalive 16; }
  upstream gw_up { server 127.0.0.1:$gw; keepalive 16; }
$(nginx_auth_server "$port" gw_up)
CONF
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
  FRONT="$port"
}

measure() { # binary [bearer]
  local bin="$1" bearer="${2:-}" gw out
  gw=$(free_port)
  out="$WORK/callgrind.$gw.out"
  local rules=""
  [ "$CASE" = token ] && rules=$'[[access_control.rules]]\npath = "^/"\npolicy = "one_factor"\nallow_tokens = true\n[mail]\ntransport = "file"\nfile_dir = "'"$WORK/outbox"'"'
  cat > "$WORK/portcullis.toml" <<CONF
[server]
listen = "127.0.0.1:$gw"
public_url = "http://127.0.0.1:$gw"
metrics_listen = "127.0.0.1:0"
[[upstream]]
url = "http://127.0.0.1:$STATIC"
[auth]
secret = "fixGfLOuvcHTeVw9Xfk-yilcsO2TFwDrddmNnciOrVmMR70u"
users_file = "$WORK/users.toml"
[access_control]
default_policy = "one_factor"
$rules
CONF
  PORTCULLIS_LOG=info valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" \
    "$bin" --log-format json serve --config "$WORK/portcullis.toml" > "$WORK/gw.$gw.log" 2>&1 &
  local pid=$!
  for _ in $(seq 300); do curl -s -o /dev/null "http://127.0.0.1:$gw/_auth/healthz" && break; sleep 0.2; done
  local cookie
  cookie=$(curl -s -D - -o /dev/null -H "Origin: http://127.0.0.1:$gw" -H 'Content-Type: application/json' \
    -d '{"username_or_email":"bench","password":"bench-password"}' "http://127.0.0.1:$gw/_auth/api/send-login-otp" \
    | tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: \(portcullis_session=[^;]*\).*/\1/p' | head -1)
  [ -n "$cookie" ] || { echo "login failed"; cat "$WORK/gw.$gw.log"; exit 1; }
  local url="http://127.0.0.1:$gw/"
  if [ "$CASE" = forward-auth ]; then
    auth_front "$gw"
    url="http://127.0.0.1:$FRONT/"
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $cookie" "$url")" = 200 ] \
      || { echo "nginx auth_request to the gateway does not let the session through"; exit 1; }
  fi
  if [ -n "$bearer" ]; then
    local token
    token=$(make_token "$gw" "$cookie")
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "$url")" = 200 ] \
      || { echo "the token does not sign a request"; exit 1; }
    count "$pid" "$out" "$bin (Bearer token)" "$url" -H "Authorization: Bearer $token"
    return
  fi
  count "$pid" "$out" "$bin" "$url" -H "Cookie: $cookie"
}

# A token for the bench user: step up with the e-mailed code, then make one.
make_token() { # gateway port, session cookie
  local gw="$1" cookie="$2" api="http://127.0.0.1:$1/_auth/api" code session pending
  rm -rf "$WORK/outbox"
  pending=$(curl -s -D - -o /dev/null -H "Origin: http://127.0.0.1:$gw" -H "Cookie: $cookie" \
    -H 'Content-Type: application/json' -d '{}' "$api/step-up" \
    | tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: \(portcullis_session_pending=[^;]*\).*/\1/p' | head -1)
  for _ in $(seq 100); do ls "$WORK"/outbox/*.eml > /dev/null 2>&1 && break; sleep 0.1; done
  code=$(grep -ohE '^[[:space:]]*[0-9]{6}[[:space:]]*$' "$WORK"/outbox/*.eml | tr -d ' \r' | head -1)
  session=$(curl -s -D - -o /dev/null -H "Origin: http://127.0.0.1:$gw" -H "Cookie: $cookie; $pending" \
    -H 'Content-Type: application/json' -d "{\"otp_code\":\"$code\"}" "$api/verify-login-otp" \
    | tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: \(portcullis_session=[^;]*\).*/\1/p' | head -1)
  curl -s -H "Origin: http://127.0.0.1:$gw" -H "Cookie: $session" -H 'Content-Type: application/json' \
    -d '{"name":"bench","password":"bench-password"}' "$api/tokens" | sed -n 's/.*"token":"\([^"]*\)".*/\1/p'
}

# Warms up, counts DUR of wrk against URL with instrumentation on, stops the
# process and prints its instructions per request.
count() { # pid callgrind-out label url [wrk args...]
  local pid="$1" out="$2" label="$3" url="$4"
  shift 4
  wrk -t1 -c4 -d3s "$@" "$url" > /dev/null
  callgrind_control -i on "$pid" > /dev/null 2>&1
  wrk -t1 -c4 -d"$DUR" "$@" "$url" > "$WORK/wrk.$pid.txt"
  callgrind_control -i off "$pid" > /dev/null 2>&1
  # Instrumentation is off: the shutdown is not counted. Callgrind writes the
  # counts when the process exits.
  kill "$pid"; wait "$pid" 2>/dev/null || true
  [ -n "${KEEP_PROFILE:-}" ] && cp "$out"* "$KEEP_PROFILE"/
  local requests non2xx ir
  requests=$(awk '/requests in/ {print $1}' "$WORK/wrk.$pid.txt")
  non2xx=$(awk '/Non-2xx/ {print $4}' "$WORK/wrk.$pid.txt")
  ir=$(cat "$out"* | awk '/^totals:/ {s += $2} END {print s}')
  printf '%-50s %9d requests  %12.0f instructions/request  non-2xx %s\n' \
    "$label" "$requests" "$(echo "$ir / $requests" | bc -l)" "${non2xx:-0}"
}

# bench/hyper_floor.rs, counted the same way: the minimal hyper proxy, the
# floor under a proxied request; with CASE=forward-auth, the minimal hyper
# server answering 200 behind the same nginx auth_request, the floor under a check.
measure_floor() {
  local port out pid
  port=$(free_port)
  out="$WORK/callgrind.floor.out"
  cargo build --release --quiet --example hyper_floor
  local target="127.0.0.1:$STATIC" label="minimal hyper proxy (bench/hyper_floor.rs)"
  [ "$CASE" = forward-auth ] && target=200 label="minimal hyper server answering 200"
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" \
    target/release/examples/hyper_floor "127.0.0.1:$port" "$target" > "$WORK/floor.log" 2>&1 &
  pid=$!
  for _ in $(seq 300); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.2; done
  local url="http://127.0.0.1:$port/"
  if [ "$CASE" = forward-auth ]; then
    auth_front "$port"
    url="http://127.0.0.1:$FRONT/"
  fi
  count "$pid" "$out" "$label" "$url"
}

if [ "$CASE" = forward-auth ]; then
  echo "callgrind, wrk -t1 -c4 -d$DUR per binary, authenticated GET through nginx auth_request → the gateway's verify"
elif [ "$CASE" = token ]; then
  echo "callgrind, wrk -t1 -c4 -d$DUR, one rule taking tokens: the session cookie, then a Bearer token"
  for b in "${BINS[@]}"; do measure "$b"; measure "$b" bearer; done
  exit 0
else
  echo "callgrind, wrk -t1 -c4 -d$DUR per binary, authenticated GET through the gateway to a 1 KiB static page"
fi
for b in "${BINS[@]}"; do measure "$b"; done
if [ -n "${FLOOR:-}" ]; then measure_floor; fi
