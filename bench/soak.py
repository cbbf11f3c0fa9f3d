#!/usr/bin/env python3
"""Soak run of the release gateway (bench/soak.sh runs this after building it).

Three streams at once, on loopback, against one gateway:
  proxy        wrk -> portcullis (session cookie, two_factor) -> static nginx
  forward-auth wrk -> nginx auth_request -> portcullis /_auth/verify -> static
  logins       password, the code read from the file outbox, verify, one
               proxied request, logout (Python threads, one user each)
Each stream's capacity is measured alone first; then each runs at
SOAK_FRACTION/3 of it (default 0.5/3), so the three together use about half
of what the machine can do. RSS is sampled every second. Every minute a
row: the gateway's RSS (median and highest of the minute's samples), open
descriptors and CPU, and per stream the request rate, p99 and errors.
At the end: the median RSS and the median descriptor count of the five
minutes after the first (warm-up: the capacity runs' connections are still
closing) against the last five, the highest RSS seen in each, and the total
errors. PASS is median RSS growth under 5 %, zero errors, and descriptors
within 10 % (at least 8). The median, not the highest sample, decides: one
sample swings by 19 MiB for each argon2 hash in flight at that instant, while
a leak moves every sample.

usage: soak.py BINARY DURATION STORE...   (DURATION like 10m, 90s; STORE memory|redis)
"""

import email
import email.policy
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

FRACTION = float(os.environ.get("SOAK_FRACTION", "0.5"))
CAPACITY_SECONDS = int(os.environ.get("SOAK_CAPACITY_SECONDS", "10"))
LOGIN_USERS = int(os.environ.get("SOAK_LOGIN_USERS", "8"))
# wrk paces each connection with this pause between requests; the connection
# count then sets the rate.
PACE_MS = 10
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def parse_duration(text):
    m = re.fullmatch(r"(\d+)([smh]?)", text)
    if not m:
        sys.exit(f"bad duration {text!r} (e.g. 10m, 90s)")
    return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port, path, limit=20):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", path)
            c.getresponse().read()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"nothing answers on port {port}")


def proc_status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def median(values):
    v = sorted(values)
    return v[len(v) // 2]


def percentile(values, q):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


class Setup:
    """nginx (static upstream and auth_request front), redis, the gateway."""

    def __init__(self, binary, store, work):
        self.binary, self.store, self.work = binary, store, work
        self.procs = []
        try:
            self.start()
        except BaseException:
            self.stop()
            raise

    def start(self):
        binary, store, work = self.binary, self.store, self.work
        self.static, self.front, self.gw = free_port(), free_port(), free_port()
        self.outbox = os.path.join(work, "outbox")
        os.makedirs(os.path.join(work, "www"))
        with open(os.path.join(work, "www", "index.html"), "w") as f:
            f.write("x" * 1024)
        user = "user root root;" if os.getuid() == 0 else ""
        with open(os.path.join(work, "nginx.conf"), "w") as f:
            f.write(f"""{user}
daemon off; worker_processes 1; pid {work}/nginx.pid; error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off; client_body_temp_path {work}/b; proxy_temp_path {work}/p;
  fastcgi_temp_path {work}/f; uwsgi_temp_path {work}/u; scgi_temp_path {work}/s;
  upstream static_up {{ server 127.0.0.1:{self.static}; keepalive 128; }}
  upstream gw_up {{ server 127.0.0.1:{self.gw}; keepalive 128; }}
  server {{ listen 127.0.0.1:{self.static}; root {work}/www; location / {{ try_files /index.html =404; }} }}
  server {{ listen 127.0.0.1:{self.front};
    location = /_verify {{ internal; proxy_pass http://gw_up/_auth/verify?mode=nginx;
      proxy_pass_request_body off; proxy_set_header Content-Length "";
      proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
      proxy_http_version 1.1; proxy_set_header Connection ""; }}
    location / {{ auth_request /_verify; proxy_pass http://static_up;
      proxy_http_version 1.1; proxy_set_header Connection ""; }} }}
}}
""")
        self.spawn([NGINX, "-p", work, "-c", f"{work}/nginx.conf", "-e", f"{work}/nginx-error.log"], "nginx")
        store_url = "memory://"
        self.redis = None
        if store == "redis":
            port = free_port()
            self.redis = self.spawn(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", work, "--loglevel", "warning"], "redis")
            store_url = f"redis://127.0.0.1:{port}/0"
        self.users = ["bench"] + [f"soak{i}" for i in range(LOGIN_USERS)]
        password_hash = subprocess.run([binary, "hash-password"], input=b"soak-password\n",
                                       capture_output=True, check=True).stdout.decode().strip()
        with open(os.path.join(work, "users.toml"), "w") as f:
            for u in self.users:
                f.write(f'[users.{u}]\nemail = "{u}@example.com"\npassword = "{password_hash}"\n\n')
        with open(os.path.join(work, "portcullis.toml"), "w") as f:
            f.write(f"""
[server]
listen = "127.0.0.1:{self.gw}"
public_url = "http://127.0.0.1:{self.gw}"
metrics_listen = "127.0.0.1:0"
[[upstream]]
url = "http://127.0.0.1:{self.static}"
[auth]
secret = "oLuum9fpuVAxXrTWBo8_7ei1PuCpanSzc5D-x79dCzMAByE9"
users_file = "{work}/users.toml"
[otp]
resend_cooldown = "0s"
[store]
url = "{store_url}"
[mail]
transport = "file"
file_dir = "{self.outbox}"
[rate_limit]
login = "1000000/1m"
verify = "1000000/1m"
resend = "1000000/1m"
otp_emails_per_ip = "1000000/1m"
[lockout]
ip_failures = "1000000/1m"
account_failures = "1000000/1m"
[access_control]
default_policy = "two_factor"
""")
        # warn: an access-log line per request would be gigabytes over a soak.
        env = dict(os.environ, PORTCULLIS_LOG="warn")
        self.gateway = self.spawn([binary, "--log-format", "json", "serve", "--config", f"{work}/portcullis.toml"],
                                  "gateway", env)
        wait_http(self.gw, "/_auth/healthz")
        wait_http(self.static, "/")

    def spawn(self, args, name, env=None):
        log = open(os.path.join(self.work, f"{name}.log"), "wb")
        p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.work)
        self.procs.append(p)
        return p

    def stop(self):
        for p in reversed(self.procs):
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


class LoginClient:
    """One user's logins over one keep-alive connection to the gateway."""

    def __init__(self, setup, user):
        self.setup, self.user = setup, user
        self.conn = http.client.HTTPConnection("127.0.0.1", setup.gw, timeout=30)
        self.origin = f"http://127.0.0.1:{setup.gw}"

    def request(self, method, path, body=None, cookie=None):
        headers = {"Origin": self.origin}
        if body is not None:
            headers["Content-Type"] = "application/json"
            body = json.dumps(body)
        if cookie:
            headers["Cookie"] = cookie
        try:
            self.conn.request(method, path, body=body, headers=headers)
            r = self.conn.getresponse()
            data = r.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            raise
        cookies = {}
        for k, v in r.getheaders():
            if k.lower() == "set-cookie":
                name, _, rest = v.partition("=")
                cookies[name] = rest.split(";", 1)[0]
        return r.status, data, cookies

    def code_from_outbox(self):
        deadline = time.time() + 10
        while time.time() < deadline:
            for name in sorted(os.listdir(self.setup.outbox)):
                if name.startswith("."):
                    continue
                path = os.path.join(self.setup.outbox, name)
                try:
                    with open(path, "rb") as f:
                        msg = email.message_from_bytes(f.read(), policy=email.policy.default)
                except FileNotFoundError:
                    continue
                if f"{self.user}@example.com" not in str(msg["To"]):
                    continue
                os.remove(path)
                text = msg.get_body(preferencelist=("plain",)).get_content()
                m = re.search(r"(?<![0-9A-Za-z])[0-9]{6}(?![0-9A-Za-z])", text)
                if m and "code" in str(msg["Subject"]).lower():
                    return m.group(0)
            time.sleep(0.005)
        raise RuntimeError("no code e-mail")

    def login(self):
        """Password, code, verify; returns the session cookie. Raises on failure."""
        status, data, cookies = self.request(
            "POST", "/_auth/api/send-login-otp", {"username_or_email": self.user, "password": "soak-password"})
        if status != 200:
            raise RuntimeError(f"send-login-otp {status}")
        pending = "portcullis_session_pending=" + cookies["portcullis_session_pending"]
        code = self.code_from_outbox()
        status, data, cookies = self.request("POST", "/_auth/api/verify-login-otp", {"otp_code": code}, pending)
        if status != 200:
            raise RuntimeError(f"verify-login-otp {status}")
        return "portcullis_session=" + cookies["portcullis_session"]

    def login_use_logout(self):
        session = self.login()
        status, _, _ = self.request("GET", "/", cookie=session)
        if status != 200:
            raise RuntimeError(f"proxied GET {status}")
        status, _, _ = self.request("POST", "/_auth/logout", {}, session)
        if status != 200:
            raise RuntimeError(f"logout {status}")


class LoginStream:
    """Threads, one user each, logging in at a total of `rate` per second (or
    flat out when rate is None). Records (end time, seconds, error or None)."""

    def __init__(self, setup, rate):
        self.records, self.lock, self.stop = [], threading.Lock(), threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(setup, u, rate), daemon=True)
                        for u in setup.users[1:]]
        for t in self.threads:
            t.start()

    def run(self, setup, user, rate):
        client = LoginClient(setup, user)
        interval = len(self.threads) / rate if rate else 0
        next_at = time.monotonic()
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                client.login_use_logout()
                error = None
            except Exception as e:  # every failure is counted, none stops the stream
                error = str(e)
            with self.lock:
                self.records.append((time.monotonic(), time.monotonic() - started, error))
            next_at = max(next_at + interval, time.monotonic()) if rate else time.monotonic()
            self.stop.wait(max(0.0, next_at - time.monotonic()))

    def take(self):
        with self.lock:
            records, self.records = self.records, []
        return records

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join()


def run_wrk(url, seconds, conns, cookie, pace_script=None):
    args = ["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--latency", "-H", f"Cookie: {cookie}"]
    if pace_script:
        args += ["-s", pace_script]
    out = subprocess.run(args + [url], capture_output=True, text=True, check=True).stdout
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, sock.groups())) if sock else 0)
    return reqs, p99, errors


def ms(text):
    """wrk's latency ('812.00us', '1.20ms', '2.01s') in ms."""
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    return float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]


def soak(binary, duration, store):
    work = tempfile.mkdtemp(prefix=f"soak-{store}-")
    setup = Setup(binary, store, work)
    try:
        bench = LoginClient(setup, "bench")
        cookie = bench.login()
        proxy_url = f"http://127.0.0.1:{setup.gw}/"
        fa_url = f"http://127.0.0.1:{setup.front}/"
        for url in (proxy_url, fa_url):
            c = http.client.HTTPConnection("127.0.0.1", int(url.split(":")[2].rstrip("/")))
            c.request("GET", "/", headers={"Cookie": cookie})
            assert c.getresponse().status == 200, f"{url} does not let the session through"
            c = http.client.HTTPConnection("127.0.0.1", int(url.split(":")[2].rstrip("/")))
            c.request("GET", "/")
            assert c.getresponse().status == 401, f"{url} lets an anonymous request through"

        print(f"\n== {store} store: measuring capacity ({CAPACITY_SECONDS}s per stream, alone)", flush=True)
        cap_proxy = run_wrk(proxy_url, CAPACITY_SECONDS, 64, cookie)[0] / CAPACITY_SECONDS
        cap_fa = run_wrk(fa_url, CAPACITY_SECONDS, 64, cookie)[0] / CAPACITY_SECONDS
        flat_out = LoginStream(setup, None)
        time.sleep(CAPACITY_SECONDS)
        flat_out.finish()
        done = flat_out.take()
        cap_login = sum(1 for r in done if r[2] is None) / CAPACITY_SECONDS
        failed = [r[2] for r in done if r[2]]
        if failed:
            print(f"   login failures while measuring: {len(failed)} (first: {failed[0]})")
        share = FRACTION / 3
        rate_proxy, rate_fa, rate_login = cap_proxy * share, cap_fa * share, cap_login * share
        print(f"   capacity alone: proxy {cap_proxy:.0f}/s, forward-auth {cap_fa:.0f}/s, logins {cap_login:.1f}/s")
        print(f"   soak rates ({share:.3f} of each): proxy {rate_proxy:.0f}/s, forward-auth {rate_fa:.0f}/s, "
              f"logins {rate_login:.1f}/s for {duration}s; load average {os.getloadavg()[0]:.1f}", flush=True)

        pace = os.path.join(work, "pace.lua")
        with open(pace, "w") as f:
            f.write(f"function delay() return {PACE_MS} end\n")
        # Each connection makes about 1000 / (PACE_MS + latency) requests a second.
        conns_proxy = max(1, round(rate_proxy * (PACE_MS + 0.3) / 1000))
        conns_fa = max(1, round(rate_fa * (PACE_MS + 0.6) / 1000))

        pid = setup.gateway.pid
        header = (f"{'min':>3} {'rss MiB':>8} {'highest':>8} {'fds':>5} {'cpu%':>5} | {'proxy/s':>8} {'p99':>8} {'err':>4} | "
                  f"{'fa/s':>7} {'p99':>8} {'err':>4} | {'login/s':>7} {'p99':>8} {'err':>4}")
        if setup.redis:
            header += f" | {'redis MiB':>9}"
        print(header, flush=True)
        logins = LoginStream(setup, rate_login)
        rows = []
        minutes = max(1, duration // 60)
        cpu_before = cpu_seconds(pid)
        for minute in range(1, minutes + 1):
            started = time.monotonic()
            results = {}
            threads = [
                threading.Thread(target=lambda k=k, u=u, c=c: results.__setitem__(k, run_wrk(u, 60, c, cookie, pace)))
                for k, u, c in (("proxy", proxy_url, conns_proxy), ("fa", fa_url, conns_fa))
            ]
            for t in threads:
                t.start()
            samples = []
            while any(t.is_alive() for t in threads):
                samples.append(proc_status(pid, "VmRSS") / 1024)
                time.sleep(1)
            for t in threads:
                t.join()
            elapsed = time.monotonic() - started
            done = logins.take()
            samples.append(proc_status(pid, "VmRSS") / 1024)
            rss, rss_max = median(samples), max(samples)
            fds = open_fds(pid)
            cpu = cpu_seconds(pid)
            cpu_pct, cpu_before = 100 * (cpu - cpu_before) / elapsed, cpu
            login_p99 = percentile([r[1] for r in done], 0.99) * 1000
            login_err = sum(1 for r in done if r[2])
            row = dict(minute=minute, rss=rss, rss_max=rss_max, samples=samples, fds=fds, errors=results["proxy"][2] + results["fa"][2] + login_err)
            rows.append(row)
            line = (f"{minute:>3} {rss:>8.1f} {rss_max:>8.1f} {fds:>5} {cpu_pct:>5.0f} | "
                    f"{results['proxy'][0] / elapsed:>8.0f} {ms(results['proxy'][1]):>6.2f}ms {results['proxy'][2]:>4} | "
                    f"{results['fa'][0] / elapsed:>7.0f} {ms(results['fa'][1]):>6.2f}ms {results['fa'][2]:>4} | "
                    f"{len(done) / elapsed:>7.1f} {login_p99:>6.1f}ms {login_err:>4}")
            if setup.redis:
                line += f" | {proc_status(setup.redis.pid, 'VmRSS') / 1024:>9.1f}"
            print(line, flush=True)
            errors = [r[2] for r in done if r[2]]
            if errors:
                print(f"    login errors: {sorted(set(errors))[:3]}", flush=True)
        logins.finish()

        # The first minute is warm-up. Each sample swings (RSS by argon2's
        # 19 MiB buffers taken and given back, descriptors by the connections
        # open at that instant), so the five minutes after warm-up are compared
        # with the last five by the median of their samples.
        early, late = (rows[1:6] or rows), rows[-5:]
        rss_early = median([x for r in early for x in r["samples"]])
        rss_late = median([x for r in late for x in r["samples"]])
        high_early, high_late = max(r["rss_max"] for r in early), max(r["rss_max"] for r in late)
        fds_early, fds_late = median([r["fds"] for r in early]), median([r["fds"] for r in late])
        growth = 100 * (rss_late - rss_early) / rss_early
        errors = sum(r["errors"] for r in rows)
        fds = [r["fds"] for r in rows]
        print(f"   {store}: median RSS {rss_early:.1f} MiB in minutes {early[0]['minute']}-{early[-1]['minute']} -> "
              f"{rss_late:.1f} MiB in the last five ({growth:+.1f} %; highest sample {high_early:.1f} -> "
              f"{high_late:.1f}); descriptors, median {fds_early} -> "
              f"{fds_late} (range {min(fds)}-{max(fds)}); errors {errors}; load average {os.getloadavg()[0]:.1f}")
        ok = growth < 5 and errors == 0 and abs(fds_late - fds_early) <= max(8, fds_early // 10)
        print(f"   {store}: {'PASS' if ok else 'FAIL'} (median RSS growth < 5 %, zero errors, descriptors flat)", flush=True)
        return ok
    finally:
        setup.stop()
        shutil.rmtree(work, ignore_errors=True)


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    binary, duration = os.path.abspath(sys.argv[1]), parse_duration(sys.argv[2])
    results = [soak(binary, duration, store) for store in sys.argv[3:]]
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
