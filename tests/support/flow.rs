//! A running gateway with everything a login needs: an echo upstream, a real
//! SMTP sink receiving the codes, a users file, and the memory store or a real
//! redis-server; plus a cookie-keeping client and helpers for each step.

use std::time::Duration;

use portcullis::auth::totp::{base32_decode, code_at, step_at};
use portcullis::clock::Clock;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::smtp::SmtpSink;
use super::upstream::Upstream;
use super::{Gateway, SECRET, client, find_code, write_users};

pub const PASSWORD: &str = "testpassword123";

/// A logged-in client whose user set up an app: the app's secret, the step
/// its confirming code used, and the backup codes it was given.
pub struct Enrolled {
    pub client: reqwest::Client,
    pub secret: Vec<u8>,
    pub step: u64,
    pub backup_codes: Vec<String>,
}

/// The current TOTP time step (30 s).
pub fn now_step() -> u64 {
    step_at(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(), 30)
}

/// The app's code for a step after `used` (the last step the gateway
/// accepted): the current step's, or the next one's (within the drift the
/// gateway allows) when the current one is used; waits for the clock when
/// even that is used.
pub async fn code_after(secret: &[u8], used: u64) -> (String, u64) {
    loop {
        let now = now_step();
        let step = now.max(used + 1);
        if step <= now + 1 {
            return (code_at(secret, step, 6), step);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Gateway + upstream + SMTP sink + a cookie-keeping client.
pub struct Harness {
    pub gw: Gateway,
    pub up: Upstream,
    pub smtp: SmtpSink,
    pub http: reqwest::Client,
    pub origin: String,
    pub redis: Option<super::redis::RedisServer>,
    /// Digits of the e-mailed codes (`otp.digits`).
    pub digits: usize,
    /// The config text and users file, for starting replicas.
    pub config: String,
    pub users: std::path::PathBuf,
}

#[derive(Clone, Copy, PartialEq)]
pub enum Backend {
    Memory,
    Redis,
}

pub struct Options {
    pub policy: &'static str,
    pub otp_ttl: &'static str,
    pub resend_cooldown: &'static str,
    /// `otp.digits`.
    pub digits: usize,
    /// Appended after `[access_control]` (rules, further sections).
    pub extra: String,
    /// Replaces the generous test limits of `[rate_limit]`.
    pub rate_limit: Option<&'static str>,
    /// Replaces the generous test limits of `[lockout]`.
    pub lockout: Option<&'static str>,
    /// Replaces `[server] trusted_proxies`.
    pub trusted_proxies: Option<&'static str>,
    /// `[mail] timeout`.
    pub mail_timeout: &'static str,
    /// Added to `[server]` (one `key = value` per line).
    pub server: String,
    /// Added to the `[[upstream]]` (one `key = value` per line).
    pub upstream: String,
    /// Added to `[auth]` (one `key = value` per line), e.g. `backend = "ldap"`.
    pub auth: String,
    /// The host of `server.public_url` (and of `origin`): `localhost` for
    /// passkeys, whose relying party cannot be an IP address.
    pub public_host: &'static str,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            policy: "two_factor",
            otp_ttl: "10m",
            resend_cooldown: "1s",
            digits: 6,
            extra: String::new(),
            rate_limit: None,
            lockout: None,
            trusted_proxies: None,
            mail_timeout: "5s",
            server: String::new(),
            upstream: String::new(),
            auth: String::new(),
            public_host: "127.0.0.1",
        }
    }
}

impl Harness {
    /// The gateway binary as a child process.
    pub async fn start(backend: Backend, o: Options) -> Option<Harness> {
        Harness::launch(backend, o, false).await
    }

    /// For a test that lets time pass ([`Harness::pass`]): on the memory
    /// store the gateway runs in this process on a manual clock, which
    /// `pass` moves at once. Redis keeps the time itself (its `TIME`), so
    /// with Redis the gateway is a process as from [`Harness::start`] and
    /// `pass` waits in real time. The in-process gateway's log is not
    /// captured.
    pub async fn start_on_clock(backend: Backend, o: Options) -> Option<Harness> {
        Harness::launch(backend, o, true).await
    }

    /// Lets `d` pass for the gateway: its manual clock moves, or (a gateway
    /// process, whose time is the system's or Redis's) the test waits.
    pub async fn pass(&self, d: Duration) {
        match self.gw.clock() {
            Some(clock) => clock.advance(d),
            None => tokio::time::sleep(d).await,
        }
    }

    async fn launch(backend: Backend, o: Options, on_clock: bool) -> Option<Harness> {
        let redis = match backend {
            Backend::Memory => None,
            Backend::Redis => match super::redis::RedisServer::start() {
                Ok(server) => Some(server),
                Err(why) => {
                    super::skip::skip(&why);
                    return None;
                }
            },
        };
        let store_url = redis.as_ref().map_or("memory://".to_string(), |r| r.url());
        let up = Upstream::start().await;
        let smtp = SmtpSink::start().await;
        let dir = tempfile::tempdir().unwrap();
        let users = dir.path().join("users.toml");
        write_users(
            &users,
            &[
                ("testuser", "test@example.com", PASSWORD, &["staff"]),
                ("bob", "bob@example.com", "bobs-password-1", &[]),
            ],
        );
        let smtp_port = smtp.port();
        let config = |port: u16| {
            format!(
                r#"
[server]
listen = "127.0.0.1:{port}"
public_url = "http://{host}:{port}"
metrics_listen = "127.0.0.1:0"
trusted_proxies = {trusted}
{server}
[[upstream]]
url = "{upstream}"
{upstream_extra}
[auth]
secret = "{SECRET}"
users_file = "{users}"
{auth}
[otp]
ttl = "{ttl}"
resend_cooldown = "{cooldown}"
digits = {digits}
[store]
url = "{store_url}"
[mail]
transport = "smtp"
smtp_host = "127.0.0.1"
smtp_port = {smtp_port}
smtp_tls = "none"
smtp_username = "portcullis"
smtp_password = "relay-password"
timeout = "{mail_timeout}"
[rate_limit]
{rate_limit}
[lockout]
{lockout}
[access_control]
default_policy = "{policy}"
{extra}
"#,
                upstream = up.url(),
                users = users.display(),
                ttl = o.otp_ttl,
                cooldown = o.resend_cooldown,
                mail_timeout = o.mail_timeout,
                policy = o.policy,
                digits = o.digits,
                extra = o.extra,
                server = o.server,
                upstream_extra = o.upstream,
                auth = o.auth,
                host = o.public_host,
                trusted = o.trusted_proxies.unwrap_or(r#"["127.0.0.1/32", "::1/128"]"#),
                rate_limit = o.rate_limit.unwrap_or(
                    "login = \"50/5m\"\nverify = \"50/5m\"\nresend = \"20/10m\"\notp_emails_per_ip = \"50/1h\""
                ),
                lockout = o.lockout.unwrap_or("ip_failures = \"50/15m\""),
            )
        };
        let (gw, port) = match (on_clock, backend) {
            (true, Backend::Memory) => {
                // Starts at the real time: cookies' expiry dates stay in the future.
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
                let clock = Clock::manual(u64::try_from(now.as_millis()).unwrap());
                Gateway::start_in_process(dir, clock, config).await
            }
            _ => Gateway::start_on_own_port(dir, &[], config),
        };
        let origin = format!("http://{}:{port}", o.public_host);
        let config = config(port);
        Some(Harness { gw, up, smtp, http: client(), origin, redis, digits: o.digits, config, users })
    }

    /// The gateway's /metrics text, from its metrics listener.
    pub async fn metrics(&self) -> String {
        let addr = self.gw.metrics_addr.as_ref().expect("metrics listener");
        reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    pub async fn post_json(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self.http.post(self.url(path)).header("Origin", &self.origin).json(&body).send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn send_login(&self, user: &str, password: &str) -> (StatusCode, Value) {
        self.post_json("/_auth/api/send-login-otp", json!({"username_or_email": user, "password": password})).await
    }

    /// Waits for the `n`th e-mail and returns the code in it.
    ///
    /// A security alert from an earlier step is sent in the background and may
    /// land before the code: alerts at or after position `n` are passed over.
    pub async fn code_from_mail(&self, n: usize) -> String {
        let mut wanted = n;
        loop {
            let msgs = self.smtp.wait_for(wanted, Duration::from_secs(10)).await;
            assert!(msgs.len() >= wanted, "expected {wanted} e-mails, got {}", msgs.len());
            let mail = &msgs[wanted - 1];
            let subject = mail.header("Subject").unwrap_or_default();
            if subject.contains("security alert") {
                wanted += 1;
                continue;
            }
            let text = mail.text_body().unwrap_or_default();
            return find_code(&text, self.digits).unwrap_or_else(|| panic!("no code in e-mail \"{subject}\":\n{text}"));
        }
    }

    pub async fn verify(&self, code: &str) -> (StatusCode, Value) {
        self.post_json("/_auth/api/verify-login-otp", json!({"otp_code": code})).await
    }

    /// Password then code: a logged-in client.
    pub async fn login(&self) {
        let before = self.smtp.messages().len();
        let (s, v) = self.send_login("testuser", PASSWORD).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["otp_required"], true, "{v}");
        let code = self.code_from_mail(before + 1).await;
        let (s, v) = self.verify(&code).await;
        assert_eq!(s, 200, "{v}");
    }

    /// The Redis keys matching `pattern` (`KEYS`), or None on the memory store.
    pub async fn redis_keys(&self, pattern: &str) -> Option<Vec<String>> {
        let server = self.redis.as_ref()?;
        let client = ::redis::Client::open(server.url()).expect("redis client");
        let mut c = client.get_multiplexed_async_connection().await.expect("redis connection");
        Some(::redis::cmd("KEYS").arg(pattern).query_async(&mut c).await.expect("KEYS"))
    }

    pub async fn upstream_status(&self) -> StatusCode {
        self.http.get(self.url("/app")).send().await.unwrap().status()
    }
}

impl Harness {
    /// Posts JSON as `c` with the right Origin.
    pub async fn post_as(&self, c: &reqwest::Client, path: &str, body: Value) -> (StatusCode, Value) {
        let r = c.post(self.url(path)).header("Origin", &self.origin).json(&body).send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// A fresh client (own cookies, given User-Agent) logged in as `user`,
    /// entering the e-mailed code when one is asked for.
    pub async fn login_client(&self, user: &str, password: &str, user_agent: &str) -> reqwest::Client {
        super::crypto();
        let c = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .cookie_store(true)
            .user_agent(user_agent)
            .build()
            .unwrap();
        let before = self.smtp.messages().len();
        let (s, v) = self
            .post_as(&c, "/_auth/api/send-login-otp", json!({"username_or_email": user, "password": password}))
            .await;
        assert_eq!(s, 200, "{v}");
        if v["otp_required"] == true {
            let code = self.code_from_mail(before + 1).await;
            let (s, v) = self.post_as(&c, "/_auth/api/verify-login-otp", json!({"otp_code": code})).await;
            assert_eq!(s, 200, "{v}");
        }
        c
    }

    /// Raises the one-factor session of `c` to two factors with a code
    /// e-mailed to the address on file (step-up), as adding a factor needs.
    pub async fn step_up(&self, c: &reqwest::Client) {
        let before = self.smtp.messages().len();
        let (s, v) = self.post_as(c, "/_auth/api/step-up", json!({})).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["otp_required"], true, "{v}");
        let code = self.code_from_mail(before + 1).await;
        let (s, v) = self.post_as(c, "/_auth/api/verify-login-otp", json!({"otp_code": code})).await;
        assert_eq!(s, 200, "{v}");
    }

    /// A fresh client logged in as `user` at two factors: the password, then
    /// an e-mailed code whether or not the policy asked for one.
    pub async fn two_factor_client(&self, user: &str, password: &str, user_agent: &str) -> reqwest::Client {
        let c = self.login_client(user, password, user_agent).await;
        let me: Value = c.get(self.url("/_auth/api/me")).send().await.unwrap().json().await.unwrap_or(Value::Null);
        if me["session_level"] != "two_factor" {
            self.step_up(&c).await;
        }
        c
    }

    /// `testuser` sets up an authenticator app, from a fresh two-factor
    /// session, as a person would: the secret handed out, the app's first
    /// code confirming it.
    pub async fn enrol_app(&self, user_agent: &str) -> Enrolled {
        let c = self.two_factor_client("testuser", PASSWORD, user_agent).await;
        let (s, v) = self.post_as(&c, "/_auth/api/totp/setup", json!({"password": PASSWORD})).await;
        assert_eq!(s, 200, "{v}");
        let secret = base32_decode(v["secret"].as_str().unwrap()).expect("a base32 secret");
        assert_eq!(secret.len(), 20);
        let (code, step) = code_after(&secret, 0).await;
        let (s, v) = self.post_as(&c, "/_auth/api/totp/confirm", json!({"otp_code": code})).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["totp_enabled"], true);
        let backup_codes = v["backup_codes"]
            .as_array()
            .map_or_else(Vec::new, |a| a.iter().map(|c| c.as_str().unwrap().to_owned()).collect());
        Enrolled { client: c, secret, step, backup_codes }
    }

    /// Turns 2FA on for the logged-in `c` (code from e-mail); returns the backup codes.
    pub async fn enable_2fa(&self, c: &reqwest::Client) -> Vec<String> {
        let before = self.smtp.messages().len();
        let (s, v) = self.post_as(c, "/_auth/api/toggle-otp", json!({"enable_otp": true})).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["verification_required"], true, "{v}");
        let code = self.code_from_mail(before + 1).await;
        let (s, v) = self.post_as(c, "/_auth/api/confirm-enable-otp", json!({"otp_code": code})).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["otp_enabled"], true);
        v["backup_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect()
    }
}

impl Harness {
    /// A second gateway with the same config (and store) on another port, as a
    /// replica behind a load balancer would be. Returns it and its base URL.
    pub fn start_replica(&self) -> (Gateway, String) {
        let listen = self.config.lines().find(|l| l.starts_with("listen = ")).expect("listen line").to_string();
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(&self.users, dir.path().join("users.toml")).unwrap();
        let (gw, port) = Gateway::start_on_own_port(dir, &[], |port| {
            self.config.replacen(&listen, &format!("listen = \"127.0.0.1:{port}\""), 1)
        });
        (gw, format!("http://127.0.0.1:{port}"))
    }
}
