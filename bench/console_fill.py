#!/usr/bin/env python3
"""Writes, as Redis protocol on stdout (for `redis-cli --pipe`), what a large
deployment's Redis holds for the operator console: USERS users' state (known
addresses for a last login, e-mailed codes for a third, backup codes for a
fifth, a lock for one in a hundred) and RECORDS audit records, spread over the
last 30 days, in the global trail and in each user's own (the newest 100 per
user, as the gateway keeps). Usage: console_fill.py USERS RECORDS"""
import json
import sys
import time

PREFIX = "portcullis:"


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def main():
    users, total = int(sys.argv[1]), int(sys.argv[2])
    w = sys.stdout.buffer
    now_ms = int(time.time() * 1000)
    for u in range(users):
        name = f"user{u:05d}"
        w.write(resp("HSET", f"{PREFIX}{{u:{name}}}:ips", f"198.51.{u // 250}.{u % 250}", now_ms // 1000 - u))
        if u % 3 == 0:
            w.write(resp("HSET", f"{PREFIX}{{u:{name}}}:state", "otp_enabled", "1"))
        if u % 5 == 0:
            w.write(resp("SADD", f"{PREFIX}{{u:{name}}}:backup", *[f"{u:060d}{i:04d}" for i in range(8)]))
        if u % 100 == 0:
            w.write(resp("SET", f"{PREFIX}{{u:{name}}}:lock", "1", "PX", 900_000))
    # Records from 30 days ago up to a minute ago, oldest first (stream ids
    # must grow).
    span = 30 * 86_400_000
    start = now_ms - span - 60_000
    kinds = [("login_attempt", "success"), ("login_attempt", "invalid_credentials"), ("security_event", "session_revoked"),
             ("login_attempt", "invalid_otp"), ("security_event", "rate_limit_exceeded")]
    for i in range(total):
        ms = start + span * i // total
        u = i % users
        name = f"user{u:05d}"
        kind, event = kinds[i % len(kinds)]
        ip = f"203.0.{(i // 250) % 250}.{i % 250}"
        rec = {"time": ms // 1000, "kind": kind, "event": event, "username": name, "user": name, "ip": ip,
               "user_agent": "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
               "details": "" if event == "success" else "bench record"}
        j = json.dumps(rec, separators=(",", ":"))
        sid = f"{ms}-{i}"
        w.write(resp("XADD", f"{PREFIX}trail", sid, "k", kind, "e", event, "ip", ip, "j", j))
        # Each user's own trail keeps its newest 100: the last 100 × users records.
        if i >= total - users * 100:
            w.write(resp("XADD", f"{PREFIX}{{u:{name}}}:trail", sid, "k", kind, "e", event, "ip", ip, "j", j))


if __name__ == "__main__":
    main()
