//! Every Prometheus metric of the gateway, defined in one place, and the
//! metrics listener's endpoint. The registry is the one global of the program.
//! Label values are bounded: routes are names from the route table, never
//! paths; no users or IPs.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use http::StatusCode;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub mod connections;
#[cfg(target_os = "linux")]
mod process;

/// The version and commit this binary was built from (`build.rs`), the
/// labels of `portcullis_build_info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const COMMIT: &str = env!("PORTCULLIS_COMMIT");

/// Buckets from 1 ms to 10 s: auth latencies span cache hits to argon2 plus SMTP.
const LATENCY_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Store operations are sub-millisecond to seconds (timeouts).
const STORE_BUCKETS: &[f64] = &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 2.5];

// Every label value of the counters whose label sets are known in advance.
// Each series is created at 0 with the registry, so `rate()` and alert rules
// see a series from the first scrape instead of nothing until the first
// event; nothing is added to the cost of a request. Debug builds check at
// each increment that the value is listed here, so none can be forgotten
// (the store's operations excepted: one missing below only lacks its zero
// series). `http_requests_total` is left out: most of its route × method ×
// status combinations never happen, and thousands of empty series would be
// noise.

/// `auth_attempts_total`: each stage with its results.
pub const AUTH_ATTEMPTS: &[(&str, &[&str])] = &[
    ("password", &["success", "invalid_credentials", "rate_limited", "locked", "disabled"]),
    ("otp", &["success", "invalid_otp", "max_attempts", "expired_otp", "rate_limited", "locked"]),
    ("totp", &["success", "invalid_otp", "replayed", "max_attempts", "not_enrolled", "rate_limited", "locked"]),
    ("passkey", &["success", "invalid_passkey", "no_ceremony", "not_enrolled", "rate_limited", "locked"]),
    ("backup_code", &["success", "invalid_otp", "rate_limited", "locked"]),
    ("recheck", &["success", "invalid_credentials", "rate_limited", "locked"]),
    ("token", &["success", "invalid_credentials", "rate_limited"]),
];
/// `rate_limited_total`: the store's rate buckets that refuse requests, and the resend cooldown.
pub const RATE_LIMITED: &[&str] = &[
    "login",
    "verify",
    "resend",
    "otp_emails",
    "ip_failures",
    "account_failures",
    "session_failures",
    "resend_cooldown",
    "password_reset",
];
/// `otp_sent_total`: code purposes.
pub const OTP_PURPOSES: &[&str] = &["login", "enable_otp", "password_reset"];
/// `forward_auth_decisions_total`.
pub const FORWARD_AUTH: &[&str] = &["allow", "unauthorized", "redirect", "deny", "error"];
/// `upstream_errors_total`, for each configured upstream (see [`known_upstreams`]).
pub const UPSTREAM_ERRORS: &[&str] = &["connect", "timeout", "protocol"];
/// `store_errors_total`: the store's operations.
pub const STORE_OPERATIONS: &[&str] = &[
    "ping",
    "create_session",
    "touch_session",
    "rotate_session",
    "delete_session",
    "list_sessions",
    "revoke_session",
    "revoke_user_sessions",
    "put_pending",
    "get_pending",
    "take_pending",
    "issue_code",
    "verify_code",
    "void_code",
    "start_cooldown",
    "rate_hit",
    "rate_check",
    "rate_record",
    "rate_reset",
    "clear_windows",
    "lock_account",
    "account_locked",
    "unlock_account",
    "user_state",
    "set_otp_enabled",
    "replace_backup_codes",
    "consume_backup_code",
    "totp_secrets",
    "set_totp_pending",
    "enable_totp",
    "remove_totp",
    "use_totp_step",
    "passkeys",
    "swap_passkeys",
    "peek_session",
    "create_token",
    "token",
    "touch_token",
    "list_tokens",
    "revoke_token",
    "admit_attempt",
    "attempt_right",
    "put_ceremony",
    "take_ceremony",
    "record_known_ip",
    "append_audit",
    "recent_audit",
    "search_audit",
    "account_facts",
    "note_ip_ban",
    "ip_bans",
    "forget_ip_ban",
];

/// `directory_errors_total`: the user directory's operations (LDAP).
pub const DIRECTORY_OPERATIONS: &[&str] =
    &["connect", "service_bind", "find_user", "read_groups", "disabled_check", "user_bind", "list_users"];

/// Directory operations: a search or bind on an open connection takes about a
/// millisecond; a new TLS connection more; a timeout seconds.
const DIRECTORY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

pub struct Metrics {
    pub registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub upstream_duration: HistogramVec,
    pub upstream_errors: IntCounterVec,
    pub auth_attempts: IntCounterVec,
    pub otp_sent: IntCounterVec,
    pub mail_failures: IntCounter,
    pub rate_limited: IntCounterVec,
    pub lockouts: IntCounter,
    pub forward_auth: IntCounterVec,
    pub sessions_created: IntCounter,
    pub store_duration: HistogramVec,
    pub store_errors: IntCounterVec,
    pub directory_duration: HistogramVec,
    pub directory_errors: IntCounterVec,
    pub session_cache_events: IntCounterVec,
    pub session_cache_live: IntGauge,
    pub connections_open: IntGauge,
    pub upgraded_connections: IntGauge,
    pub connections_asleep: IntGauge,
    pub build_info: IntGaugeVec,
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c =
        IntCounterVec::new(Opts::new(name, help).namespace("portcullis"), labels).expect("static metric definition");
    r.register(Box::new(c.clone())).expect("metric registered once");
    c
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::with_opts(Opts::new(name, help).namespace("portcullis")).expect("static metric definition");
    r.register(Box::new(c.clone())).expect("metric registered once");
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::with_opts(Opts::new(name, help).namespace("portcullis")).expect("static metric definition");
    r.register(Box::new(g.clone())).expect("metric registered once");
    g
}

fn histogram_vec(r: &Registry, name: &str, help: &str, labels: &[&str], b: &[f64]) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).namespace("portcullis").buckets(b.to_vec()), labels)
        .expect("static metric definition");
    r.register(Box::new(h.clone())).expect("metric registered once");
    h
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let r = Registry::new();
    #[cfg(target_os = "linux")]
    {
        let _ = r.register(Box::new(process::ProcessMetrics::for_self()));
    }
    let m = Metrics {
        http_requests: counter_vec(
            &r,
            "http_requests_total",
            "Requests answered, by route, method and status.",
            &["route", "method", "status"],
        ),
        http_duration: histogram_vec(
            &r,
            "http_request_duration_seconds",
            "Time to answer a request (response head), by route.",
            &["route"],
            LATENCY_BUCKETS,
        ),
        upstream_duration: histogram_vec(
            &r,
            "upstream_request_duration_seconds",
            "Time for the upstream to answer with its response head.",
            &["upstream", "status"],
            LATENCY_BUCKETS,
        ),
        upstream_errors: counter_vec(
            &r,
            "upstream_errors_total",
            "Failed upstream requests, by kind (connect, timeout, protocol).",
            &["upstream", "kind"],
        ),
        auth_attempts: counter_vec(
            &r,
            "auth_attempts_total",
            "Authentication attempts by stage (password; otp: an e-mailed code; totp: an authenticator \
             app's code; backup_code; and recheck: the account page's password checks) and result.",
            &["stage", "result"],
        ),
        otp_sent: counter_vec(&r, "otp_sent_total", "One-time codes e-mailed, by purpose.", &["purpose"]),
        mail_failures: counter(&r, "mail_failures_total", "E-mails that could not be sent."),
        rate_limited: counter_vec(
            &r,
            "rate_limited_total",
            "Requests refused by a rate limit, by bucket.",
            &["bucket"],
        ),
        lockouts: counter(&r, "lockouts_total", "Accounts locked after repeated failures."),
        forward_auth: counter_vec(
            &r,
            "forward_auth_decisions_total",
            "Forward-auth answers by decision (allow, unauthorized, redirect, deny, error).",
            &["decision"],
        ),
        sessions_created: counter(&r, "sessions_created_total", "Sessions created (logins)."),
        store_duration: histogram_vec(
            &r,
            "store_operation_duration_seconds",
            "Store operation latency, by operation.",
            &["op"],
            STORE_BUCKETS,
        ),
        store_errors: counter_vec(&r, "store_errors_total", "Failed store operations.", &["op"]),
        directory_duration: histogram_vec(
            &r,
            "directory_operation_duration_seconds",
            "User directory (LDAP) operation latency, by operation.",
            &["op"],
            DIRECTORY_BUCKETS,
        ),
        directory_errors: counter_vec(
            &r,
            "directory_errors_total",
            "Failed or timed-out user directory (LDAP) operations, by operation.",
            &["op"],
        ),
        session_cache_events: counter_vec(
            &r,
            "session_cache_events_total",
            "Near-cache session lookups and upkeep, by event: hit, miss, write_back (a hit that also \
             slides the expiry in Redis), invalidation (an ended session announced), eviction (room made), \
             flush (emptied: the invalidation channel was lost or regained).",
            &["event"],
        ),
        session_cache_live: gauge(
            &r,
            "session_cache_live",
            "1 while the near cache's invalidation channel is up and the cache serves; 0 otherwise.",
        ),
        connections_open: gauge(&r, "connections_open", "Client connections open on the gateway's listeners."),
        upgraded_connections: gauge(
            &r,
            "upgraded_connections",
            "Upgraded connections (WebSocket) proxied for a session or a token, closed when it ends.",
        ),
        connections_asleep: gauge(
            &r,
            "connections_asleep",
            "Idle HTTP/1.1 connections asleep: quiet for the header-read timeout, held as a socket alone \
             until the client sends again.",
        ),
        build_info: {
            let g = IntGaugeVec::new(
                Opts::new("build_info", "1, labelled with the version and commit the gateway was built from.")
                    .namespace("portcullis"),
                &["version", "commit"],
            )
            .expect("static metric definition");
            r.register(Box::new(g.clone())).expect("metric registered once");
            g.with_label_values(&[VERSION, COMMIT]).set(1);
            g
        },
        registry: r,
    };
    for (stage, results) in AUTH_ATTEMPTS {
        for result in *results {
            m.auth_attempts.with_label_values(&[stage, result]);
        }
    }
    for bucket in RATE_LIMITED {
        m.rate_limited.with_label_values(&[bucket]);
    }
    for purpose in OTP_PURPOSES {
        m.otp_sent.with_label_values(&[purpose]);
    }
    for decision in FORWARD_AUTH {
        m.forward_auth.with_label_values(&[decision]);
    }
    for op in STORE_OPERATIONS {
        m.store_errors.with_label_values(&[op]);
    }
    for op in DIRECTORY_OPERATIONS {
        m.directory_errors.with_label_values(&[op]);
    }
    m
});

/// Creates the `upstream_errors_total` series of each configured upstream
/// (by the name the proxy labels it with) at 0.
pub fn known_upstreams<'a>(names: impl IntoIterator<Item = &'a str>) {
    for name in names {
        for kind in UPSTREAM_ERRORS {
            get().upstream_errors.with_label_values(&[name, kind]);
        }
    }
}

/// Debug builds: `value` is one of the label values listed above.
pub fn debug_check_label(list: &[&str], value: &str) {
    debug_assert!(list.contains(&value), "metric label {value:?} is not listed in metrics.rs: add it there");
}

/// Counts an authentication attempt (`auth_attempts_total`).
pub fn auth_attempt(stage: &'static str, result: &'static str) {
    if cfg!(debug_assertions) {
        let listed = AUTH_ATTEMPTS.iter().find(|(s, _)| *s == stage).map_or(&[][..], |(_, r)| *r);
        debug_check_label(listed, result);
    }
    get().auth_attempts.with_label_values(&[stage, result]).inc();
}

/// Counts one answered request (`http_requests_total`,
/// `http_request_duration_seconds`). Every label value is static, so the
/// series are looked up by the values' addresses in a per-thread table
/// instead of through the vectors (which hash the values and take a lock
/// shared by every worker on each call).
pub fn request(route: &'static str, method: &'static str, status: &'static str, seconds: f64) {
    thread_local! {
        static REQUESTS: Handles<3, IntCounter> = Handles::default();
        static DURATIONS: Handles<1, Histogram> = Handles::default();
    }
    let m = get();
    REQUESTS.with(|h| h.with([route, method, status], |l| m.http_requests.with_label_values(l), IntCounter::inc));
    DURATIONS.with(|h| h.with([route], |l| m.http_duration.with_label_values(l), |d| d.observe(seconds)));
}

/// Counts one forward-auth decision (`forward_auth_decisions_total`), as [`request`] does.
pub fn forward_auth(decision: &'static str) {
    debug_check_label(FORWARD_AUTH, decision);
    thread_local! {
        static DECISIONS: Handles<1, IntCounter> = Handles::default();
    }
    DECISIONS.with(|h| h.with([decision], |l| get().forward_auth.with_label_values(l), IntCounter::inc));
}

/// Records one store operation's latency (`store_operation_duration_seconds`), as [`request`] does.
pub fn store_operation(op: &'static str, seconds: f64) {
    thread_local! {
        static DURATIONS: Handles<1, Histogram> = Handles::default();
    }
    DURATIONS.with(|h| h.with([op], |l| get().store_duration.with_label_values(l), |d| d.observe(seconds)));
}

/// Records one user directory operation (`directory_operation_duration_seconds`,
/// and `directory_errors_total` when it failed). Not on any request's hot
/// path (logins and refreshes only), so through the vectors.
pub fn directory_operation(op: &'static str, seconds: f64, ok: bool) {
    debug_check_label(DIRECTORY_OPERATIONS, op);
    let m = get();
    m.directory_duration.with_label_values(&[op]).observe(seconds);
    if !ok {
        m.directory_errors.with_label_values(&[op]).inc();
    }
}

/// A thread's resolved series, keyed by the addresses of their static label
/// values. Two copies of one string at different addresses resolve to the
/// same series, once each, so the table stays as small as the program's
/// label literals. The keys are the program's own addresses, not anything a
/// client sends, so they are hashed with FxHash rather than SipHash.
struct Handles<const N: usize, M>(RefCell<HashMap<[usize; N], M, rustc_hash::FxBuildHasher>>);

impl<const N: usize, M> Default for Handles<N, M> {
    fn default() -> Self {
        Self(RefCell::new(HashMap::default()))
    }
}

impl<const N: usize, M> Handles<N, M> {
    fn with(&self, labels: [&'static str; N], resolve: impl FnOnce(&[&str]) -> M, act: impl FnOnce(&M)) {
        let key = labels.map(|l| l.as_ptr() as usize ^ (l.len() << 48));
        let mut table = self.0.borrow_mut();
        act(table.entry(key).or_insert_with(|| resolve(&labels)));
    }
}

/// The metrics; first use registers them.
pub fn get() -> &'static Metrics {
    &METRICS
}

/// Status codes as static label values (no allocation per request).
pub fn status_label(s: StatusCode) -> &'static str {
    const EXACT: [&str; 16] = [
        "101", "200", "204", "206", "301", "302", "303", "304", "400", "401", "403", "404", "413", "429", "502", "503",
    ];
    let code = s.as_str();
    if let Some(label) = EXACT.iter().find(|l| **l == code) {
        return label;
    }
    match s.as_u16() {
        405 => "405",
        421 => "421",
        431 => "431",
        500 => "500",
        504 => "504",
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Records one upstream round trip (`status` None when it failed).
pub fn observe_upstream(upstream: &str, elapsed: Duration, status: Option<StatusCode>) {
    let status = status.map_or("error", status_label);
    get().upstream_duration.with_label_values(&[upstream, status]).observe(elapsed.as_secs_f64());
}

/// Renders the registry in the Prometheus text format.
pub fn render() -> Vec<u8> {
    let m = get();
    let connections = connections::connections();
    m.connections_open.set(connections.open);
    m.connections_asleep.set(connections.asleep);
    let mut buf = Vec::with_capacity(16 * 1024);
    let _ = TextEncoder::new().encode(&m.registry.gather(), &mut buf);
    buf
}

/// The metrics listener's answer for `path`: the metrics, or 404.
pub fn answer(path: &str) -> crate::body::Response {
    let (status, body) = if path == "/metrics" {
        (StatusCode::OK, crate::body::Body::full(render()))
    } else {
        (StatusCode::NOT_FOUND, crate::body::Body::full("not found\n"))
    };
    let mut r = crate::body::Response::new(body);
    *r.status_mut() = status;
    let ctype =
        if status == StatusCode::OK { "text/plain; version=0.0.4; charset=utf-8" } else { "text/plain; charset=utf-8" };
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(ctype));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_counted_through_the_thread_table_reach_the_registry() {
        // The same label text at two addresses counts in one series.
        let route: &'static str = Box::leak(String::from("test_route").into_boxed_str());
        let counter = || get().http_requests.with_label_values(&["test_route", "GET", "200"]).get();
        let before = counter();
        request("test_route", "GET", "200", 0.01);
        request(route, "GET", "200", 0.02);
        request(route, "GET", "200", 0.03);
        assert_eq!(counter() - before, 3);
        assert_eq!(get().http_requests.with_label_values(&["test_route", "GET", "404"]).get(), 0);
        let durations = get().http_duration.with_label_values(&["test_route"]);
        assert_eq!(durations.get_sample_count(), 3);
        assert!((durations.get_sample_sum() - 0.06).abs() < 1e-9);

        std::thread::spawn(|| request("test_route", "GET", "200", 0.0)).join().unwrap();
        assert_eq!(counter() - before, 4, "another thread's table resolves the same series");
    }
}
