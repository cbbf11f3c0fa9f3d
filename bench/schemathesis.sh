#!/usr/bin/env bash
# Checks docs/openapi.json against a running gateway with schemathesis (PyPI):
# starts the gateway (this build's debug binary, or PORTCULLIS_BIN) on the
# memory store with a file outbox, logs a user in twice (one session to test
# with, one to revoke), raises the first to two factors with the e-mailed code
# (the user is in the admin group: the operator console's API needs two), and
# runs `st run --checks all` over every operation:
# no 5xx, every status and body as documented, invalid input refused, a
# missing session refused; then each state-changing operation without CSRF
# proof gets its documented 403.
# One check is left out: unsupported_method. The gateway answers 404 (not 405
# with Allow) to a method a path does not have, as docs/openapi.json states.
# Usage: bench/schemathesis.sh [st run options, e.g. --seed 1 --max-examples 50]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v st >/dev/null || { echo "schemathesis is required (python3 -m pip install 'schemathesis==4.32.5')"; exit 1; }
if [ -z "${PORTCULLIS_BIN:-}" ]; then
  cargo build --quiet
  PORTCULLIS_BIN="$PWD/target/debug/portcullis"
fi
WORK="$(mktemp -d)"
GW=""
cleanup() { [ -z "$GW" ] || kill "$GW" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ORIGIN="http://127.0.0.1:$PORT"
printf '[users.alice]\nemail = "alice@example.com"\ndisplay_name = "Alice"\npassword = "%s"\ngroups = ["staff", "admins"]\n' \
  "$(echo alice-password-1 | "$PORTCULLIS_BIN" hash-password)" > "$WORK/users.toml"
cat > "$WORK/portcullis.toml" <<CONF
[server]
listen = "127.0.0.1:$PORT"
public_url = "$ORIGIN"
metrics_listen = "127.0.0.1:0"
[[upstream]]
url = "http://127.0.0.1:9"
[auth]
secret = "WDJY6_wWP-zQh9ZFe7AZ75lZ9QCV8PMM27ArB2fEg4_l0sif"
users_file = "$WORK/users.toml"
[mail]
transport = "file"
file_dir = "$WORK/outbox"
[access_control]
default_policy = "one_factor"
CONF
PORTCULLIS_LOG=warn "$PORTCULLIS_BIN" --log-format json serve --config "$WORK/portcullis.toml" > "$WORK/gateway.log" 2>&1 &
GW=$!
for _ in $(seq 100); do curl -s -o /dev/null "$ORIGIN/_auth/healthz" && break; sleep 0.1; done

login() {
  curl -s -D - -o /dev/null -H "Origin: $ORIGIN" -H 'Content-Type: application/json' \
    -d '{"username_or_email":"alice","password":"alice-password-1"}' "$ORIGIN/_auth/api/send-login-otp" \
    | tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: portcullis_session=\([^;]*\).*/\1/p' | head -1
}
# step_up SESSION → the session raised to two factors (a new cookie): a code
# e-mailed to the file outbox, entered with the pending login's cookie.
step_up() {
  local pending code
  pending=$(curl -s -D - -o /dev/null -H "Origin: $ORIGIN" -H 'Content-Type: application/json' -d '{}' \
    -b "portcullis_session=$1" "$ORIGIN/_auth/api/step-up" \
    | tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: portcullis_session_pending=\([^;]*\).*/\1/p' | head -1)
  for _ in $(seq 50); do ls "$WORK/outbox"/*.eml >/dev/null 2>&1 && break; sleep 0.1; done
  code=$(python3 - "$WORK/outbox" <<'PY'
import email, glob, re, sys
path = sorted(glob.glob(sys.argv[1] + "/*.eml"))[-1]
msg = email.message_from_binary_file(open(path, "rb"))
text = next(p for p in msg.walk() if p.get_content_type() == "text/plain").get_payload(decode=True).decode()
print(re.search(r"\b(\d{6})\b", text).group(1))
PY
)
  curl -s -D - -o /dev/null -H "Origin: $ORIGIN" -H 'Content-Type: application/json' \
    -b "portcullis_session=$1; portcullis_session_pending=$pending" -d "{\"otp_code\":\"$code\"}" \
    "$ORIGIN/_auth/api/verify-login-otp" \
    | tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: portcullis_session=\([^;]*\).*/\1/p' | head -1
}
PORTCULLIS_SESSION="$(login)"
[ -n "$PORTCULLIS_SESSION" ] || { echo "login failed"; cat "$WORK/gateway.log"; exit 1; }
login >/dev/null
PORTCULLIS_SESSION="$(step_up "$PORTCULLIS_SESSION")"
[ -n "$PORTCULLIS_SESSION" ] || { echo "step-up failed"; cat "$WORK/gateway.log"; exit 1; }
PORTCULLIS_SPARE_SESSION_ID="$(curl -sf -b "portcullis_session=$PORTCULLIS_SESSION" "$ORIGIN/_auth/api/sessions" \
  | python3 -c 'import json,sys; print(next(s["id"] for s in json.load(sys.stdin)["sessions"] if not s["current"]))')"
export PORTCULLIS_SESSION PORTCULLIS_ORIGIN="$ORIGIN" PORTCULLIS_SPARE_SESSION_ID

rc=0
st --config-file bench/schemathesis.toml run docs/openapi.json --url "$ORIGIN" \
  --checks all --exclude-checks unsupported_method "$@" || rc=$?

# schemathesis leaves out the session and the origin together, so it sees 401s.
# The CSRF rule on its own: every operation the document guards with
# sameOrigin, sent with the session but without a same-origin Origin or a
# token, must answer its documented 403.
python3 - "$ORIGIN" "$PORTCULLIS_SESSION" <<'PY' || rc=1
import json, sys, urllib.error, urllib.request
origin, session = sys.argv[1:3]
doc = json.load(open("docs/openapi.json"))
failed = 0
for path, item in doc["paths"].items():
    for method, op in item.items():
        schemes = {name for requirement in op.get("security", []) for name in requirement}
        if "sameOrigin" not in schemes:
            continue
        for label, extra in (("no Origin", {}), ("a foreign Origin", {"Origin": "https://evil.example"})):
            headers = {"Content-Type": "application/json", **extra}
            if "sessionCookie" in schemes:
                headers["Cookie"] = f"portcullis_session={session}"
            url = origin + path.replace("{id}", "x")
            req = urllib.request.Request(url, data=b"{}", method=method.upper(), headers=headers)
            try:
                with urllib.request.urlopen(req) as r:
                    status, body = r.status, r.read()
            except urllib.error.HTTPError as e:
                status, body = e.code, e.read()
            ok = status == 403 and "403" in op["responses"] and json.loads(body) == {
                "success": False, "error": "cross-site request refused"}
            failed += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {method.upper()} {path} with {label}: {status} {body[:80]!r}")
sys.exit(1 if failed else 0)
PY
if grep -q '"level":"ERROR"' "$WORK/gateway.log"; then
  echo "the gateway logged errors:"; grep '"level":"ERROR"' "$WORK/gateway.log" | head -20
  rc=1
fi
exit "$rc"
