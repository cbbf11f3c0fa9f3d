//! The login round trip on loopback, as a user lives it: password posted to
//! `api/send-login-otp`, the code read from the e-mail the SMTP sink received,
//! the code posted to `api/verify-login-otp`, then the first request proxied to
//! the upstream answered 200. Every step is checked; the timings (total and per
//! step, p50 and p99) are printed, not asserted: a shared 2-core test machine is
//! no stopwatch. `bench/login_rtt.sh` runs it against the release binary with
//! more logins (`LOGIN_RTT_LOGINS`); the normal suite runs a few on this build.

// Tests measure and wait in real time: the gateway runs as a child process,
// out of reach of a manual clock (clippy.toml bans these in the gateway's code).
#![allow(clippy::disallowed_methods)]

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::flow::{Backend, Harness, Options, PASSWORD};

/// Logins measured (after `WARM_UP` unmeasured ones) unless `LOGIN_RTT_LOGINS` says otherwise.
const DEFAULT_LOGINS: usize = 10;
const WARM_UP: usize = 2;

fn logins() -> usize {
    std::env::var("LOGIN_RTT_LOGINS").ok().and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(DEFAULT_LOGINS)
}

/// Where one login's time went.
struct Steps {
    password: Duration,
    mail: Duration,
    verify: Duration,
    first_proxied: Duration,
}

impl Steps {
    fn total(&self) -> Duration {
        self.password + self.mail + self.verify + self.first_proxied
    }
}

/// One full login on a fresh client (its own cookies and connection); `n` is
/// the number of e-mails the sink should hold once this login's code arrived.
async fn login(h: &Harness, c: &reqwest::Client, n: usize) -> Steps {
    let t = Instant::now();
    let (status, v) =
        h.post_as(c, "/_auth/api/send-login-otp", json!({"username_or_email": "testuser", "password": PASSWORD})).await;
    assert_eq!(status, 200);
    assert_eq!(v["otp_required"], true, "{v}");
    let password = t.elapsed();

    let t = Instant::now();
    let mails = h.smtp.wait_for(n, Duration::from_secs(10)).await;
    assert_eq!(mails.len(), n, "exactly one e-mail per login");
    let mail = &mails[n - 1];
    assert_eq!(mail.to, ["test@example.com"]);
    let code = mail.code().expect("a code in the e-mail");
    let mail_time = t.elapsed();

    let t = Instant::now();
    let (status, v) = h.post_as(c, "/_auth/api/verify-login-otp", json!({"otp_code": code})).await;
    assert_eq!(status, 200);
    assert_eq!(v["success"], true, "{v}");
    let verify = t.elapsed();

    let t = Instant::now();
    let r = c.get(h.url("/app/after-login")).send().await.unwrap();
    assert_eq!(r.status(), 200, "the first proxied request");
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["path"], "/app/after-login");
    assert_eq!(echo["headers"]["remote-user"][0], "testuser");
    let first_proxied = t.elapsed();

    Steps { password, mail: mail_time, verify, first_proxied }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn report(store: &str, runs: &[Steps]) {
    let line = |what: &str, f: &dyn Fn(&Steps) -> Duration| {
        let mut v: Vec<Duration> = runs.iter().map(f).collect();
        v.sort();
        println!(
            "login rtt [{store}] {what:<22} p50 {:>9}  p99 {:>9}  max {:>9}",
            ms(percentile(&v, 0.5)),
            ms(percentile(&v, 0.99)),
            ms(v[v.len() - 1])
        );
    };
    println!("login rtt [{store}] {} logins, gateway {}", runs.len(), support::binary().display());
    line("total", &|s| s.total());
    line("send-login-otp", &|s| s.password);
    line("code from the mail", &|s| s.mail);
    line("verify-login-otp", &|s| s.verify);
    line("first proxied 200", &|s| s.first_proxied);
}

async fn measure(b: Backend, store: &str) {
    let o = Options {
        rate_limit: Some(
            "login = \"10000/5m\"\nverify = \"10000/5m\"\nresend = \"100/10m\"\notp_emails_per_ip = \"10000/1h\"",
        ),
        lockout: Some("ip_failures = \"10000/15m\""),
        ..Default::default()
    };
    let Some(h) = Harness::start(b, o).await else { return };
    let n = logins();
    // Clients exist before the clock runs: building one is the test's cost.
    let clients: Vec<reqwest::Client> = (0..WARM_UP + n).map(|_| support::client()).collect();
    let mut runs = Vec::with_capacity(n);
    for (i, c) in clients.iter().enumerate() {
        let steps = login(&h, c, i + 1).await;
        if i >= WARM_UP {
            runs.push(steps);
        }
    }
    assert_eq!(h.smtp.messages().len(), WARM_UP + n, "no e-mail beyond the codes");
    report(store, &runs);
}

#[tokio::test]
async fn login_round_trip_on_the_memory_store() {
    measure(Backend::Memory, "memory").await;
}

#[tokio::test]
async fn login_round_trip_on_redis() {
    measure(Backend::Redis, "redis").await;
}
