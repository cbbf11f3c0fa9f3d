//! What SREs see: Prometheus metrics that move for every outcome and pass
//! promtool, health and readiness, logs that never carry secrets, and the
//! shipped dashboard and alert rules.

// Tests measure and wait in real time: the gateway runs as a child process,
// out of reach of a manual clock (clippy.toml bans these in the gateway's code).
#![allow(clippy::disallowed_methods)]

mod support;

use std::process::Command;

use serde_json::{Value, json};
use support::assert_eventually;
use support::flow::{Backend, Harness, Options, PASSWORD};
use support::proxies::find_program;
use support::sample;

fn promtool() -> Option<std::path::PathBuf> {
    let found = find_program("promtool", &[]);
    if found.is_none() {
        support::skip::skip("promtool is not installed: its checks did not run");
    }
    found
}

#[tokio::test]
async fn counters_move_for_each_outcome_and_pass_promtool() {
    let extra = "[[access_control.rules]]\npath = \"^/nope/\"\npolicy = \"deny\"\n".to_string();
    let Some(mut h) = Harness::start(Backend::Redis, Options { extra, ..Default::default() }).await else { return };
    let m0 = h.metrics().await;

    // invalid_credentials, then success (password + code).
    assert_eq!(h.send_login("testuser", "wrong").await.0, 400);
    h.login().await;
    // invalid_otp.
    h.send_login("bob", "bobs-password-1").await;
    let code = h.code_from_mail(2).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    assert_eq!(h.verify(wrong).await.0, 400);
    // mail failure.
    h.smtp.set_reject(true);
    assert_eq!(h.send_login("bob", "bobs-password-1").await.0, 503);
    h.smtp.set_reject(false);
    // forward-auth: allow (logged in), deny (rule), redirect (anonymous browser).
    let verify = |path: &str| {
        h.http
            .get(h.url("/_auth/verify"))
            .header("X-Forwarded-Proto", "http")
            .header("X-Forwarded-Host", "app.test")
            .header("X-Forwarded-Uri", path.to_string())
    };
    assert_eq!(verify("/ok").send().await.unwrap().status(), 200);
    assert_eq!(verify("/nope/x").send().await.unwrap().status(), 403);
    let anon = support::client();
    let r = anon
        .get(h.url("/_auth/verify"))
        .header("X-Forwarded-Proto", "http")
        .header("X-Forwarded-Host", "app.test")
        .header("X-Forwarded-Uri", "/ok")
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    // store error: the store goes away; a protected request fails closed.
    h.redis.as_mut().unwrap().kill();
    // The near cache serves the session until it sees its channel's connection
    // closed, a few milliseconds (docs/store.md); from then on, 503.
    assert_eventually!(
        within std::time::Duration::from_millis(500),
        sample(&h.metrics().await, "portcullis_session_cache_live", &[]) == 0.0,
        "the near cache still serves"
    );
    let r = h.http.get(h.url("/app")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let ready = h.http.get(h.url("/_auth/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);

    let m1 = h.metrics().await;
    let moved = |name: &str, labels: &[(&str, &str)]| sample(&m1, name, labels) - sample(&m0, name, labels);
    assert!(
        moved("portcullis_auth_attempts_total", &[("stage", "password"), ("result", "invalid_credentials")]) >= 1.0
    );
    assert!(moved("portcullis_auth_attempts_total", &[("stage", "password"), ("result", "success")]) >= 2.0);
    assert!(moved("portcullis_auth_attempts_total", &[("stage", "otp"), ("result", "success")]) >= 1.0);
    assert!(moved("portcullis_auth_attempts_total", &[("stage", "otp"), ("result", "invalid_otp")]) >= 1.0);
    assert!(moved("portcullis_mail_failures_total", &[]) >= 1.0);
    assert!(moved("portcullis_otp_sent_total", &[("purpose", "login")]) >= 2.0);
    assert!(moved("portcullis_sessions_created_total", &[]) >= 1.0);
    assert!(moved("portcullis_forward_auth_decisions_total", &[("decision", "allow")]) >= 1.0);
    assert!(moved("portcullis_forward_auth_decisions_total", &[("decision", "deny")]) >= 1.0);
    assert!(moved("portcullis_forward_auth_decisions_total", &[("decision", "redirect")]) >= 1.0);
    assert!(moved("portcullis_store_errors_total", &[]) >= 1.0);
    assert!(moved("portcullis_http_requests_total", &[("route", "proxy"), ("status", "503")]) >= 1.0);
    assert!(sample(&m1, "portcullis_store_operation_duration_seconds_count", &[]) > 0.0);
    assert!(m1.contains("process_resident_memory_bytes"));
    // An upstream is labelled with its configured address; nothing else names a host.
    let clients = m1.lines().filter(|l| !l.starts_with("portcullis_upstream_"));
    assert!(!m1.contains("testuser") && clients.clone().all(|l| !l.contains("127.0.0.1")), "no users or IPs as labels");

    if let Some(promtool) = promtool() {
        let mut child = Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(m1.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "promtool check metrics failed:\n{report}");
    }
}

#[tokio::test]
async fn rate_limits_and_lockouts_are_counted() {
    // Ten failures lock the account; twelve from one address close that address.
    let o = Options { lockout: Some("ip_failures = \"12/15m\"\naccount_failures = \"10/1h\""), ..Default::default() };
    let Some(h) = Harness::start(Backend::Memory, o).await else { return };
    let m0 = h.metrics().await;
    let moved = |m1: &str, name: &str, labels: &[(&str, &str)]| sample(m1, name, labels) - sample(&m0, name, labels);

    for _ in 0..10 {
        assert_eq!(h.send_login("bob", "wrong-password").await.0, 400);
    }
    // The account lockout fired, not a rate limit: 403, even with the right password.
    let (s, v) = h.send_login("bob", "bobs-password-1").await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["account_locked"], true, "{v}");
    let m1 = h.metrics().await;
    assert_eq!(moved(&m1, "portcullis_lockouts_total", &[]), 1.0);
    assert_eq!(moved(&m1, "portcullis_auth_attempts_total", &[("stage", "password"), ("result", "locked")]), 1.0);
    assert_eq!(moved(&m1, "portcullis_rate_limited_total", &[]), 0.0, "no rate limit fired yet");

    // Two more failures (another account) reach the address's limit; the next
    // attempt is refused before any password check, by the ip_failures bucket.
    for _ in 0..2 {
        assert_eq!(h.send_login("testuser", "wrong-password").await.0, 400);
    }
    let (s, v) = h.send_login("testuser", PASSWORD).await;
    assert_eq!(s, 429, "{v}");
    assert!(v["retry_after"].as_u64().is_some_and(|r| r > 0), "{v}");
    let m2 = h.metrics().await;
    assert_eq!(moved(&m2, "portcullis_rate_limited_total", &[("bucket", "ip_failures")]), 1.0);
    assert_eq!(moved(&m2, "portcullis_rate_limited_total", &[]), 1.0, "no other bucket");
    assert_eq!(moved(&m2, "portcullis_lockouts_total", &[]), 1.0, "testuser was not locked");
    assert_eq!(moved(&m2, "portcullis_auth_attempts_total", &[("stage", "password"), ("result", "rate_limited")]), 1.0);
}

#[tokio::test]
async fn healthz_and_readyz_answer() {
    let Some(h) = Harness::start(Backend::Memory, Options::default()).await else { return };
    let r = h.http.get(h.url("/_auth/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = h.http.get(h.url("/_auth/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "ready");
}

#[tokio::test]
async fn logs_never_carry_passwords_codes_or_session_ids() {
    let Some(h) = Harness::start(Backend::Memory, Options::default()).await else { return };
    h.send_login("testuser", PASSWORD).await;
    let code = h.code_from_mail(1).await;
    let r = h
        .http
        .post(h.url("/_auth/api/verify-login-otp"))
        .header("Origin", &h.origin)
        .json(&json!({"otp_code": code}))
        .send()
        .await
        .unwrap();
    let token = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("portcullis_session="))
        .map(|c| c.split(';').next().unwrap().to_string())
        .expect("session cookie");
    assert_eq!(h.upstream_status().await, 200);
    assert!(h.gw.wait_for_log(|l| l.contains("\"route\":\"proxy\"")).await.is_some(), "access log written");
    let log = h.gw.log() + &h.gw.stdout();
    assert!(!log.contains(PASSWORD), "password in logs");
    assert!(!log.contains(&code), "code in logs");
    assert!(!log.contains(&token), "session id in logs");
    assert!(!log.contains(support::SECRET), "secret in logs");
    // The access log and the security target are there, as JSON lines.
    let access: Vec<Value> =
        log.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|v| v["target"] == "access").collect();
    assert!(access.iter().any(|v| v["route"] == "proxy" && v["user"] == "testuser" && v["status"] == 200));
    assert!(log.lines().any(|l| l.contains("\"target\":\"security\"") && l.contains("success")));
}

/// The metric names in a PromQL expression (or Grafana's `label_values(...)`):
/// what is left once label matchers, ranges, strings, grouping labels,
/// functions and keywords are taken out.
fn metric_names(expr: &str) -> Vec<String> {
    const NOT_METRICS: &[&str] = &[
        "sum",
        "avg",
        "min",
        "max",
        "count",
        "rate",
        "irate",
        "increase",
        "histogram_quantile",
        "clamp_min",
        "clamp_max",
        "by",
        "without",
        "offset",
        "and",
        "or",
        "unless",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "label_values",
        "topk",
        "bottomk",
        "abs",
        "delta",
        "deriv",
        "time",
        "vector",
        "scalar",
        "bool",
        "job",
    ];
    let mut text = String::new();
    // Inside `{...}`, `[...]` or a string: the character that ends it.
    let mut until = None;
    for c in expr.chars() {
        match (until, c) {
            (None, '{') => until = Some('}'),
            (None, '[') => until = Some(']'),
            (None, '"') => until = Some('"'),
            (None, _) => text.push(c),
            (Some(end), _) if c == end => until = None,
            _ => {}
        }
    }
    // `by (le, route)` names labels, not metrics.
    let grouping = regex::Regex::new(r"\b(by|without|on|ignoring)\s*\([^)]*\)").unwrap();
    let text = grouping.replace_all(&text, " ");
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '$'))
        .filter(|w| w.starts_with(|c: char| c.is_ascii_alphabetic()) && !NOT_METRICS.contains(w))
        .map(str::to_string)
        .collect()
}

/// Every name the gateway's /metrics exposes, with a histogram's series names.
fn exported_names(metrics: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else { continue };
        let (name, kind) = rest.split_once(' ').unwrap();
        names.insert(name.to_string());
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        }
    }
    names
}

/// Every expression of the shipped dashboard and alert rules names a metric
/// the gateway exports, and the latency of protected requests has series in
/// forward-auth mode (verify) and proxy mode alike.
#[tokio::test]
async fn every_dashboard_and_alert_expression_names_an_exported_metric() {
    let Some(h) = Harness::start(Backend::Memory, Options::default()).await else { return };
    // One request of each mode: a forward-auth check and a proxied request.
    h.login().await;
    let r = h
        .http
        .get(h.url("/_auth/verify"))
        .header("X-Forwarded-Proto", "http")
        .header("X-Forwarded-Host", "app.test")
        .header("X-Forwarded-Uri", "/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(h.upstream_status().await, 200);
    let metrics = h.metrics().await;
    let exported = exported_names(&metrics);

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dash: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("deploy/grafana/portcullis.json")).unwrap()).unwrap();
    let mut exprs: Vec<(String, String)> = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            exprs.push((format!("panel {:?}", p["title"]), t["expr"].as_str().unwrap().to_string()));
        }
    }
    for v in dash["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["query"].as_str().filter(|q| q.contains('(')) {
            exprs.push((format!("variable {}", v["name"]), q.to_string()));
        }
    }
    let alerts = std::fs::read_to_string(root.join("deploy/prometheus/alerts.yml")).unwrap();
    let mut expr_lines = alerts.lines().peekable();
    while let Some(line) = expr_lines.next() {
        let Some(e) = line.trim().strip_prefix("expr:") else { continue };
        let mut e = e.trim().to_string();
        if e == "|" {
            while let Some(next) = expr_lines.next_if(|l| !l.trim_start().contains(':') || l.contains('(')) {
                e.push_str(next);
            }
        }
        exprs.push(("alerts.yml".into(), e));
    }
    assert!(exprs.len() > 20, "{exprs:?}");
    for (place, e) in &exprs {
        let names = metric_names(e);
        assert!(!names.is_empty(), "{place}: no metric in {e}");
        for n in names {
            assert!(exported.contains(&n), "{place}: {n} is not a metric the gateway exports ({e})");
        }
    }

    let latency = exprs
        .iter()
        .find(|(_, e)| e.contains("http_request_duration_seconds_bucket") && e.contains("verify"))
        .expect("a panel on the forward-auth check's latency");
    assert!(latency.1.contains("route=~\"verify|proxy\""), "{}", latency.1);
    for route in ["verify", "proxy"] {
        let count = sample(&metrics, "portcullis_http_request_duration_seconds_count", &[("route", route)]);
        assert!(count >= 1.0, "no {route} latency series after a {route} request");
    }
}

#[tokio::test]
async fn build_info_and_process_cpu_are_exported() {
    let Some(h) = Harness::start(Backend::Memory, Options::default()).await else { return };
    let cpu = || {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", h.gw.pid())).unwrap();
        let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
        // utime and stime, fields 14 and 15 of proc(5), in clock ticks (100 a second).
        (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / 100.0
    };
    h.login().await;
    let before = cpu();
    let metrics = h.metrics().await;
    let after = cpu();
    let reported = sample(&metrics, "process_cpu_seconds_total", &[]);
    assert!(before > 0.0, "the gateway used no CPU?");
    assert!(
        before - 0.011 <= reported && reported <= after + 0.011,
        "process_cpu_seconds_total {reported}, /proc says {before}..{after}"
    );

    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let line = metrics.lines().find(|l| l.starts_with("portcullis_build_info{")).expect("portcullis_build_info");
    assert!(line.ends_with(" 1"), "{line}");
    assert!(line.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))), "{line}");
    if std::env::var_os("PORTCULLIS_COMMIT").is_none()
        && let Some(commit) = commit
    {
        assert!(line.contains(&format!("commit=\"{commit}\"")), "{line}");
    }
}

#[test]
fn dashboard_is_valid_json_and_alert_rules_pass_promtool() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dash: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("deploy/grafana/portcullis.json")).unwrap()).unwrap();
    let panels = dash["panels"].as_array().unwrap();
    assert!(panels.len() >= 8);
    let exprs: String = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .map(|t| t["expr"].as_str().unwrap())
        .collect();
    for metric in
        ["http_requests_total", "auth_attempts_total", "lockouts_total", "mail_failures_total", "store_errors_total"]
    {
        assert!(exprs.contains(metric), "dashboard lacks {metric}");
    }
    if let Some(promtool) = promtool() {
        let out = Command::new(promtool)
            .args(["check", "rules"])
            .arg(root.join("deploy/prometheus/alerts.yml"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    }
}
