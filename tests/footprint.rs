//! The gateway's resident memory: idle, after a burst of logins, while
//! streaming, and with many idle connections.
//!
//! The suite checks what does not depend on the machine: memory taken by a
//! burst of password checks is given back once it ends. `footprint_report`
//! is the benchmark behind `bench/footprint.sh` (ignored in the suite: it
//! takes two minutes and opens 20,000 connections); it prints one
//! `footprint <row> <value>` line per measurement for the binary named by
//! `PORTCULLIS_BIN`, which the script sets to each build it compares.

// Tests measure and wait in real time: the gateway runs as a child process,
// out of reach of a manual clock (clippy.toml bans these in the gateway's code).
#![allow(clippy::disallowed_methods)]

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis::auth::password::{PasswordChecker, hash_password};
use portcullis::config::{Config, Secret, validate};

use serde_json::json;
use support::eventually::poll_every;
use support::flow::{Backend, Harness, Options, PASSWORD};
use support::{Gateway, SECRET, empty_users, self_signed};

/// Limits far above what the burst needs: the burst measures password checks,
/// not the defences.
const NO_LIMITS: &str =
    "login = \"100000/5m\"\nverify = \"100000/5m\"\nresend = \"100000/10m\"\notp_emails_per_ip = \"100000/1h\"";
const NO_LOCKOUT: &str = "ip_failures = \"100000/15m\"";

/// The system allocator, counting the bytes a thread allocates while it
/// asks for a count ([`allocated_by`]).
struct Counting;

thread_local! {
    static COUNTED: Cell<Option<usize>> = const { Cell::new(None) };
}

fn count(bytes: usize) {
    // try_with: a thread being torn down allocates after its locals are gone.
    let _ = COUNTED.try_with(|c| c.set(c.get().map(|n| n + bytes)));
}

// SAFETY: every call is passed on to the system allocator unchanged; the
// count is a thread-local cell, which allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller's layout, as GlobalAlloc::alloc requires.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by System with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size.saturating_sub(layout.size()));
        // SAFETY: as for dealloc, and `new_size` is the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes allocated by this thread while `f` runs.
fn allocated_by(f: impl FnOnce()) -> usize {
    COUNTED.with(|c| c.set(Some(0)));
    f();
    COUNTED.with(|c| c.take()).unwrap_or(0)
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// Starts the peak (VmHWM) over from the current resident memory.
fn reset_peak(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("clear_refs");
}

fn peak_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:")
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

async fn harness() -> Harness {
    let o = Options {
        rate_limit: Some(NO_LIMITS),
        lockout: Some(NO_LOCKOUT),
        // Room for bench/idle_connections.py's 10,000 from one address.
        server: "max_connections = 20000\nmax_connections_per_client = 20000".into(),
        ..Options::default()
    };
    Harness::start(Backend::Memory, o).await.expect("the memory store needs no service")
}

/// `n` password logins (the first step: argon2, then the code e-mailed) from
/// `parallel` clients at once, each with its own cookies; returns how long
/// they took. Every login must be answered as a right password is.
async fn burst(h: &Harness, n: usize, parallel: usize) -> Duration {
    let started = Instant::now();
    let url = h.url("/_auth/api/send-login-otp");
    let clients: Vec<_> = (0..parallel)
        .map(|i| {
            let (url, origin) = (url.clone(), h.origin.clone());
            let share = n / parallel + usize::from(i < n % parallel);
            tokio::spawn(async move {
                let client = support::client();
                for _ in 0..share {
                    let body = json!({"username_or_email": "testuser", "password": PASSWORD});
                    let r = client.post(&url).header("Origin", &origin).json(&body).send().await.unwrap();
                    assert_eq!(r.status(), 200, "a right password");
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    started.elapsed()
}

/// Polls the resident memory every 250 ms for up to `limit`; returns the
/// seconds until it was at or below `bound` KiB, or None.
async fn falls_below(pid: u32, bound: u64, limit: Duration) -> Option<f64> {
    let started = Instant::now();
    poll_every(Duration::from_millis(250), limit, async || {
        (rss_kib(pid) <= bound).then(|| started.elapsed().as_secs_f64())
    })
    .await
}

/// The resident memory once it has stopped moving (two readings half a
/// second apart within 1 % of each other), or after 5 s, whatever it is.
async fn steady_rss(pid: u32) -> u64 {
    let mut last: Option<u64> = None;
    let steady = poll_every(Duration::from_millis(500), Duration::from_secs(5), async || {
        let now = rss_kib(pid);
        let was = last.replace(now);
        was.filter(|was| was.abs_diff(now) <= now / 100).map(|_| now)
    })
    .await;
    steady.unwrap_or_else(|| rss_kib(pid))
}

/// A gateway after two logins, its pid and its resident memory then: what
/// the first logins build and keep (the session table, the mail connection)
/// is not what a burst takes.
async fn warmed_up() -> (Harness, u32, u64) {
    let h = harness().await;
    let pid = h.gw.pid();
    burst(&h, 2, 1).await;
    let before = steady_rss(pid).await;
    (h, pid, before)
}

#[tokio::test]
async fn memory_taken_by_a_burst_of_logins_is_given_back_when_it_ends() {
    let (h, pid, before) = warmed_up().await;
    // 32 at once against two permits: each check needs argon2's 19 MiB.
    burst(&h, 64, 32).await;
    // argon2's buffers (two, 38 MiB) are freed by the last check out; what
    // stays is what the 64 sessions and e-mails left behind.
    let bound = before + 8 * 1024;
    let took = falls_below(pid, bound, Duration::from_secs(5)).await;
    assert!(
        took.is_some(),
        "resident memory {:.1} MiB five seconds after the burst, {:.1} MiB before it",
        mib(rss_kib(pid)),
        mib(before)
    );
}

/// The start-up check of `auth.secret` scores a value with zxcvbn, whose
/// first estimate builds 4.7 MiB of dictionaries kept for the life of the
/// process; a secret as `portcullis init` and the docs make it is plainly
/// random and is not scored, so an idle gateway holds none of that.
#[test]
fn a_random_secret_is_checked_without_building_zxcvbns_dictionaries() {
    let check = |secret: &str| {
        let mut config = Config::default();
        config.auth.secret = Secret::new(secret);
        let mut problems = Vec::new();
        let bytes = allocated_by(|| problems = validate(&mut config, false));
        assert!(!problems.iter().any(|p| p.key == "auth.secret"), "{secret:?}: {problems:?}");
        bytes
    };
    // 48 random characters, as support::SECRET; then 32 hex characters (128
    // bits, accepted, but short enough to be scored by zxcvbn).
    let random = check(SECRET);
    let scored = check("9f86d081884c7d659a2feaa0c55ad015");
    assert!(random < 1024 * 1024, "checking a random secret allocated {random} bytes");
    assert!(scored > random + 2 * 1024 * 1024, "zxcvbn's dictionaries were built for the second only: {scored} bytes");
}

/// As an attacker would try it: a parallel burst of wrong passwords whose
/// clients hang up while their checks wait (each check needs 19 MiB), mixed
/// with malformed and cross-site attempts. Nothing is held once it ends, no
/// wrong password got through, and the right one still signs in.
#[tokio::test]
async fn a_burst_of_abandoned_password_checks_holds_nothing_and_lets_nothing_in() {
    let (h, pid, before) = warmed_up().await;
    let url = h.url("/_auth/api/send-login-otp");
    let attempts: Vec<_> = (0..48)
        .map(|i| {
            let (url, origin) = (url.clone(), h.origin.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::builder().timeout(Duration::from_millis(5 + i % 20)).build().unwrap();
                let body = json!({"username_or_email": "testuser", "password": format!("guess {i}")});
                match client.post(&url).header("Origin", &origin).json(&body).send().await {
                    // Gone before the answer: the check is abandoned.
                    Err(_) => None,
                    Ok(r) => Some(r.status().as_u16()),
                }
            })
        })
        .collect();
    let c = support::client();
    let foreign = c
        .post(&url)
        .header("Origin", "https://evil.example")
        .json(&json!({"username_or_email": "testuser", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403, "a cross-site login is refused");
    let malformed = c.post(&url).header("Origin", &h.origin).body("{\"username_or_email\": 7").send().await.unwrap();
    assert_eq!(malformed.status(), 400, "a malformed body is refused");
    for a in attempts {
        let answered = a.await.unwrap();
        assert!(answered.is_none_or(|s| s == 400 || s == 429), "a wrong password answered {answered:?}");
    }
    let took = falls_below(pid, before + 8 * 1024, Duration::from_secs(5)).await;
    assert!(took.is_some(), "{:.1} MiB after the burst, {:.1} MiB before", mib(rss_kib(pid)), mib(before));
    let (s, v) = h.send_login("testuser", PASSWORD).await;
    assert_eq!(s, 200, "the right password still signs in: {v}");
    assert_eq!(v["otp_required"], true, "{v}");
}

/// The TLS gateway of the HTTP/2 measurements: room for thousands of
/// connections from one address.
fn tls_gateway(upstream: &str) -> (Gateway, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path(), "gateway");
    let users = empty_users(dir.path());
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"
tls_cert = "{cert}"
tls_key = "{key}"
max_connections = 20000
max_connections_per_client = 20000
[[upstream]]
url = "{upstream}"
[auth]
secret = "{SECRET}"
users_file = "{users}"
"#,
        cert = cert.display(),
        key = key.display(),
        users = users.display(),
    );
    (Gateway::start_in(dir, &config, &[]), cert)
}

/// An idle HTTP/2 connection cannot sleep as an HTTP/1.1 one does (hyper
/// keeps `h2`'s state for its life), so what each costs is bounded here:
/// 36 KiB in a release build, of which 28 KiB are `h2`'s own buffers
/// (bench/README.md, "Footprint").
#[tokio::test]
async fn an_idle_http2_connection_over_tls_costs_a_bounded_amount() {
    const N: usize = 200;
    let up = support::upstream::Upstream::start().await;
    let (gw, cert) = tls_gateway(&up.url());
    support::crypto();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap();
    let url = format!("https://localhost:{}/_auth/healthz", gw.port());
    let client = || reqwest::Client::builder().add_root_certificate(ca.clone()).build().unwrap();
    // A few connections first: what the first ones build (TLS session
    // cache, the runtime's tables) is not per connection.
    for _ in 0..4 {
        let r = client().get(&url).send().await.unwrap();
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
    }
    let before = steady_rss(gw.pid()).await;
    // Each client keeps its one connection open, idle, after one request.
    let mut held = Vec::with_capacity(N);
    for _ in 0..N {
        let c = client();
        let r = c.get(&url).send().await.unwrap();
        assert_eq!((r.status().as_u16(), r.version()), (200, reqwest::Version::HTTP_2));
        held.push(c);
    }
    // Freed handshake memory goes back within about a second.
    let each = steady_rss(gw.pid()).await.saturating_sub(before) as f64 / N as f64;
    eprintln!("{each:.1} KiB per idle HTTP/2 connection over TLS");
    assert!(each <= 48.0, "{each:.1} KiB per idle HTTP/2 connection over TLS");
    // And they are still open: each answers again on its connection.
    for c in held.iter().step_by(20) {
        assert_eq!(c.get(&url).send().await.unwrap().status(), 200);
    }
}

/// What `bench/idle_connections.py` printed: the resident memory with the
/// connections open, after they settled, and after they closed (MiB).
struct Idle {
    opened: usize,
    open: f64,
    settled: f64,
    closed: f64,
}

fn idle_connections(pid: u32, addr: &str, n: usize, flags: &[&str]) -> Idle {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/idle_connections.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(pid.to_string())
        .arg(addr)
        .arg(n.to_string())
        .args(flags)
        .output()
        .expect("python3 runs bench/idle_connections.py");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "idle_connections.py failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    // "... 10000 idle connections open (0 failed) ..." and "... 2 s after the
    // last opened 75.5 MiB, after 15 s more 60.1 MiB; after closing, 5 s
    // 50.8 MiB, 15 s 40.2 MiB".
    let number_after = |marker: &str| -> f64 {
        let at = text.find(marker).unwrap_or_else(|| panic!("no \"{marker}\" in:\n{text}")) + marker.len();
        text[at..].split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{text}"))
    };
    let opened = text
        .split(" idle connections open")
        .next()
        .and_then(|head| head.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no count of connections opened in:\n{text}"));
    Idle {
        opened,
        open: number_after("the last opened "),
        settled: number_after(" s more "),
        closed: number_after(", 15 s "),
    }
}

fn report(row: &str, value: impl std::fmt::Display) {
    println!("footprint {row} {value}");
}

/// Password checks/s through the gateway's own checker (one permit per
/// core, argon2id at the gateway's cost, buffers reused as the gateway
/// reuses them), kept busy from `4 * cores` tasks for `time`: the most
/// password checks this machine can do, with no HTTP, session or e-mail.
async fn argon2_limit(cores: usize, time: Duration) -> f64 {
    let checker = Arc::new(PasswordChecker::new(cores).unwrap());
    let hash: Arc<str> = hash_password(PASSWORD).unwrap().into();
    let started = Instant::now();
    let tasks: Vec<_> = (0..4 * cores)
        .map(|_| {
            let (checker, hash) = (checker.clone(), hash.clone());
            tokio::spawn(async move {
                let mut done = 0;
                while started.elapsed() < time {
                    assert!(checker.verify(Some(&hash), PASSWORD).await.unwrap());
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut done = 0;
    for task in tasks {
        done += task.await.unwrap();
    }
    f64::from(done) / started.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark of two minutes: bench/footprint.sh runs it on release builds"]
async fn footprint_report() {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let limit_before = argon2_limit(cores, Duration::from_secs(3)).await;

    let h = harness().await;
    let pid = h.gw.pid();
    let idle = steady_rss(pid).await;
    report("idle_mib", format!("{:.1}", mib(idle)));

    let took = burst(&h, 400, 32).await;
    let rate = 400.0 / took.as_secs_f64();
    report("after_burst_mib", format!("{:.1}", mib(rss_kib(pid))));
    let back = falls_below(pid, idle + idle / 4, Duration::from_secs(15)).await;
    report("back_within_1_25x_idle_s", back.map_or("never (15 s)".to_string(), |s| format!("{s:.1}")));
    // Ten seconds after the burst, whenever it came back.
    let waited = back.unwrap_or(15.0);
    tokio::time::sleep(Duration::from_secs_f64((10.0 - waited).max(0.0))).await;
    report("10s_after_burst_mib", format!("{:.1}", mib(rss_kib(pid))));
    // The limit measured on either side of the burst, the higher taken:
    // load from elsewhere on the machine only lowers it.
    let limit = limit_before.max(argon2_limit(cores, Duration::from_secs(3)).await);
    report("logins_per_s", format!("{rate:.0}"));
    report("argon2_limit_per_s", format!("{limit:.0}"));
    report("logins_over_limit", format!("{:.2}", rate / limit));

    // The streams go through the proxy, which asks for a login.
    h.login().await;
    reset_peak(pid);
    const SIZE: u64 = 200 * 1024 * 1024;
    let c = &h.http;
    let download = c.get(h.url(&format!("/download?bytes={SIZE}"))).send().await.unwrap();
    assert_eq!(download.status(), 200);
    assert_eq!(download.bytes().await.unwrap().len() as u64, SIZE);
    let chunk = bytes::Bytes::from(vec![b'u'; 256 * 1024]);
    let chunks = (SIZE / chunk.len() as u64) as usize;
    let body = futures_util::stream::iter((0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let upload = c.post(h.url("/upload")).body(reqwest::Body::wrap_stream(body)).send().await.unwrap();
    assert_eq!(upload.status(), 200);
    report("streaming_peak_mib", format!("{:.1}", mib(peak_kib(pid))));

    let n = 10_000;
    reset_peak(pid);
    let addr = format!("127.0.0.1:{}", h.gw.port());
    let plain = tokio::task::spawn_blocking(move || idle_connections(pid, &addr, n, &["--settle", "10"]));
    let h1 = plain.await.unwrap();
    assert_eq!(h1.opened, n, "every connection opened");
    report("h1_10k_peak_mib", format!("{:.1}", mib(peak_kib(pid))));
    report("h1_10k_open_mib", h1.open);
    report("h1_10k_settled_mib", h1.settled);
    report("h1_10k_closed_mib", h1.closed);

    let (tls, _) = tls_gateway(&h.up.url());
    let tls_pid = tls.pid();
    steady_rss(tls_pid).await;
    reset_peak(tls_pid);
    let addr = tls.addr.clone();
    let h2 = tokio::task::spawn_blocking(move || idle_connections(tls_pid, &addr, n, &["--h2", "--settle", "10"]))
        .await
        .unwrap();
    assert_eq!(h2.opened, n, "every connection opened");
    report("h2_tls_10k_peak_mib", format!("{:.1}", mib(peak_kib(tls_pid))));
    report("h2_tls_10k_open_mib", h2.open);
    report("h2_tls_10k_settled_mib", h2.settled);
    report("h2_tls_10k_closed_mib", h2.closed);
}
