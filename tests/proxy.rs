//! The reverse proxy over real sockets: header hygiene, streaming, upgrades,
//! upstream failures, HTTP/2, TLS, limits and graceful shutdown (SPEC §6).

// Tests measure and wait in real time: the gateway runs as a child process,
// out of reach of a manual clock (clippy.toml bans these in the gateway's code).
#![allow(clippy::disallowed_methods)]

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use support::assert_eventually;
use support::eventually::poll_every;
use support::flow::{Backend, Harness, Options, PASSWORD};
use support::upstream::Upstream;
use support::{Gateway, base_config, client, empty_users};

/// A gateway in front of `up` that lets everything through (no login needed).
fn open_gateway(up: &Upstream, extra: &str) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let users = empty_users(dir.path());
    let config = format!("{}{extra}", base_config(&up.url(), "bypass", &users));
    Gateway::start_in(dir, &config, &[])
}

async fn echo(gw: &Gateway, req: reqwest::RequestBuilder) -> serde_json::Value {
    let _ = gw;
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

fn header<'a>(echo: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    echo["headers"][name][0].as_str()
}

#[tokio::test]
async fn requests_reach_the_upstream_with_forwarded_headers() {
    let up = Upstream::start().await;
    let gw = open_gateway(&up, "");
    let e = echo(&gw, client().get(gw.url("/hello?x=1")).header("Host", "app.test:8080")).await;
    assert_eq!(e["path"], "/hello?x=1");
    assert_eq!(header(&e, "x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(header(&e, "x-forwarded-proto"), Some("http"));
    assert_eq!(header(&e, "x-forwarded-host"), Some("app.test:8080"));
    assert_eq!(header(&e, "host"), Some("app.test:8080"), "Host is preserved by default");
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_replaced() {
    let up = Upstream::start().await;
    let gw = open_gateway(&up, "");
    // Loopback is trusted by default: its chain is extended.
    let e = echo(&gw, client().get(gw.url("/")).header("X-Forwarded-For", "198.51.100.7")).await;
    assert_eq!(header(&e, "x-forwarded-for"), Some("198.51.100.7, 127.0.0.1"));

    let dir = tempfile::tempdir().unwrap();
    let users = empty_users(dir.path());
    let config = base_config(&up.url(), "bypass", &users)
        .replace("[server]\n", "[server]\ntrusted_proxies = [\"10.0.0.0/8\"]\n");
    let gw = Gateway::start_in(dir, &config, &[]);
    let e = echo(
        &gw,
        client()
            .get(gw.url("/"))
            .header("X-Forwarded-For", "6.6.6.6")
            .header("X-Forwarded-Proto", "https")
            .header("X-Forwarded-Host", "evil.example"),
    )
    .await;
    assert_eq!(header(&e, "x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(header(&e, "x-forwarded-proto"), Some("http"));
    // The Host the client really sent (reqwest sends the URL's authority).
    assert_eq!(header(&e, "x-forwarded-host"), Some(gw.addr.as_str()));
}

/// The forwarding headers a client could use to tell the application where a
/// request came from, in the spellings frameworks read alike.
const FORWARDING_SPELLINGS: [(&str, &str); 12] = [
    ("X_Forwarded_For", "6.6.6.6"),
    ("X_Forwarded_Host", "evil.example"),
    ("X_Forwarded_Proto", "https"),
    ("X-Forwarded-Port", "8443"),
    ("X-Forwarded-Prefix", "/admin"),
    ("X-Real-IP", "6.6.6.6"),
    ("X_Real_IP", "6.6.6.6"),
    ("Forwarded", "for=6.6.6.6;proto=https"),
    ("X-Client-IP", "6.6.6.6"),
    ("True-Client-IP", "6.6.6.6"),
    ("X-Original-URL", "/admin/secret"),
    ("X_Rewrite_URL", "/admin/secret"),
];

fn with_forwarding_spellings(mut req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    for (name, value) in FORWARDING_SPELLINGS {
        req = req.header(name, value);
    }
    req
}

#[tokio::test]
async fn forwarding_headers_in_any_spelling_from_an_untrusted_client_never_reach_the_app() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let users = empty_users(dir.path());
    let config = base_config(&up.url(), "bypass", &users)
        .replace("[server]\n", "[server]\ntrusted_proxies = [\"10.0.0.0/8\"]\n");
    let gw = Gateway::start_in(dir, &config, &[]);
    let e = echo(&gw, with_forwarding_spellings(client().get(gw.url("/")))).await;
    for (name, _) in FORWARDING_SPELLINGS {
        assert_eq!(header(&e, &name.to_ascii_lowercase()), None, "{name} reached the app: {e}");
    }
    assert_eq!(header(&e, "x-forwarded-for"), Some("127.0.0.1"), "the gateway's own, set afresh");
    assert_eq!(header(&e, "x-forwarded-proto"), Some("http"));
}

#[tokio::test]
async fn a_trusted_proxy_still_forwards_its_headers_but_not_underscore_spellings() {
    let up = Upstream::start().await;
    let gw = open_gateway(&up, "");
    let e =
        echo(&gw, with_forwarding_spellings(client().get(gw.url("/"))).header("X-Forwarded-For", "203.0.113.7")).await;
    assert_eq!(header(&e, "x-forwarded-for"), Some("203.0.113.7, 127.0.0.1"), "the chain is extended");
    for kept in ["x-forwarded-port", "x-forwarded-prefix", "x-real-ip", "forwarded", "x-client-ip"] {
        assert!(header(&e, kept).is_some(), "{kept} from a trusted proxy passes as before: {e}");
    }
    for dropped in ["x_forwarded_for", "x_forwarded_host", "x_forwarded_proto", "x_real_ip", "x_rewrite_url"] {
        assert_eq!(header(&e, dropped), None, "{dropped}: no proxy sends it, a client behind one can: {e}");
    }
}

#[tokio::test]
async fn hop_by_hop_identity_and_session_headers_do_not_reach_the_upstream() {
    let up = Upstream::start().await;
    let gw = open_gateway(&up, "");
    let e = echo(
        &gw,
        client()
            .get(gw.url("/"))
            .header("Connection", "x-private")
            .header("X-Private", "secret")
            .header("Remote-User", "admin")
            .header("Remote-Groups", "admins")
            .header("Cookie", "theme=dark; portcullis_session=AAAA; portcullis_session_pending=BBBB"),
    )
    .await;
    assert_eq!(header(&e, "x-private"), None);
    assert_eq!(header(&e, "remote-user"), None, "spoofed identity must be stripped");
    assert_eq!(header(&e, "remote-groups"), None);
    assert_eq!(header(&e, "cookie"), Some("theme=dark"));
}

#[tokio::test]
async fn upstream_is_chosen_by_host() {
    let default = Upstream::start().await;
    let special = Upstream::start().await;
    let extra = format!("\n[[upstream]]\nurl = \"{}\"\nhost = \"special.test\"\n", special.url());
    let gw = open_gateway(&default, &extra);
    client().get(gw.url("/")).header("Host", "special.test:1234").send().await.unwrap();
    client().get(gw.url("/")).header("Host", "other.test").send().await.unwrap();
    assert_eq!(special.hits(), 1);
    assert_eq!(default.hits(), 1);
}

#[tokio::test]
async fn large_uploads_and_downloads_stream_in_bounded_memory() {
    const SIZE: u64 = 200 * 1024 * 1024;
    let up = Upstream::start().await;
    let gw = open_gateway(&up, "");
    // What the gateway holds before: the allocator keeps some of what start-up
    // used, so the bound is on what streaming adds.
    assert_eq!(client().get(gw.url("/")).send().await.unwrap().status(), 200);
    let before = rss_kib(gw.pid());

    let r = client().get(gw.url(&format!("/download?bytes={SIZE}"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut stream = r.bytes_stream();
    let mut got = 0u64;
    while let Some(chunk) = stream.next().await {
        got += chunk.unwrap().len() as u64;
    }
    assert_eq!(got, SIZE);

    let chunk = bytes::Bytes::from(vec![b'u'; 256 * 1024]);
    let chunks = (SIZE / chunk.len() as u64) as usize;
    let body = futures_util::stream::iter((0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let r = client().post(gw.url("/upload")).body(reqwest::Body::wrap_stream(body)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["bytes"].as_u64(), Some(SIZE));

    let peak = gw.peak_rss_kib();
    assert!(peak < before + 64 * 1024, "peak RSS {peak} KiB: more than 64 MiB above the {before} KiB before");
}

#[tokio::test]
async fn websocket_upgrades_pass_through() {
    let up = Upstream::start().await;
    let gw = open_gateway(&up, "");
    let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://{}/ws", gw.addr)).await.unwrap();
    assert_eq!(resp.status(), 101);
    ws.send(tokio_tungstenite::tungstenite::Message::text("ping through the gate")).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(reply.into_text().unwrap().as_str(), "ping through the gate");
}

#[tokio::test]
async fn unreachable_upstream_gives_502_and_slow_upstream_504() {
    // A port with nothing listening.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let users = empty_users(dir.path());
    let gw = Gateway::start_in(dir, &base_config(&format!("http://{dead}"), "bypass", &users), &[]);
    let r = client().get(gw.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["success"], false);
    let r = client().get(gw.url("/")).header("Accept", "text/html").send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(r.text().await.unwrap().contains("not reachable"));

    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let users = empty_users(dir.path());
    let config = base_config(&up.url(), "bypass", &users).replace("timeout = \"5s\"", "timeout = \"500ms\"");
    let gw = Gateway::start_in(dir, &config, &[]);
    let started = Instant::now();
    let r = client().get(gw.url("/slow?ms=3000")).send().await.unwrap();
    assert_eq!(r.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn https_upstream_with_a_custom_ca_is_reached() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = support::self_signed(dir.path(), "upstream");
    let up = Upstream::start_with_tls(Some((cert.clone(), key))).await;
    let users = empty_users(dir.path());
    let config = base_config(&format!("https://localhost:{}", up.addr.port()), "bypass", &users)
        .replace("timeout = \"5s\"", &format!("timeout = \"5s\"\nca_file = \"{}\"", cert.display()));
    let gw = Gateway::start_in(dir, &config, &[]);
    let e = echo(&gw, client().get(gw.url("/tls"))).await;
    assert_eq!(e["path"], "/tls");
}

#[tokio::test]
async fn https_upstream_with_an_untrusted_or_misnamed_certificate_gets_502() {
    let dir = tempfile::tempdir().unwrap();
    // Self-signed for localhost, and the gateway is not told to trust it.
    let (untrusted_cert, untrusted_key) = support::self_signed(dir.path(), "untrusted");
    let untrusted = Upstream::start_with_tls(Some((untrusted_cert, untrusted_key))).await;
    // Trusted through ca_file, but issued for a name other than the upstream URL's.
    let other = rcgen::generate_simple_self_signed(vec!["other.example".into()]).unwrap();
    let (misnamed_cert, misnamed_key) = (dir.path().join("misnamed.crt"), dir.path().join("misnamed.key"));
    std::fs::write(&misnamed_cert, other.cert.pem()).unwrap();
    std::fs::write(&misnamed_key, other.signing_key.serialize_pem()).unwrap();
    let misnamed = Upstream::start_with_tls(Some((misnamed_cert.clone(), misnamed_key))).await;

    for (what, up, ca_file) in [("untrusted", &untrusted, None), ("misnamed", &misnamed, Some(&misnamed_cert))] {
        let gw_dir = tempfile::tempdir().unwrap();
        let users = empty_users(gw_dir.path());
        let trust = ca_file.map(|c| format!("\nca_file = \"{}\"", c.display())).unwrap_or_default();
        let config = base_config(&format!("https://localhost:{}", up.addr.port()), "bypass", &users)
            .replace("timeout = \"5s\"", &format!("timeout = \"5s\"{trust}"));
        let gw = Gateway::start_in(gw_dir, &config, &[]);
        let r = client().get(gw.url("/tls")).send().await.unwrap();
        assert_eq!(r.status(), 502, "{what} certificate");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["success"], false, "{what}: {v}");
        assert_eq!(up.hits(), 0, "{what}: no request crossed the refused handshake");
    }
}

#[tokio::test]
async fn http2_is_served_over_tls_and_cleartext() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = support::self_signed(dir.path(), "gateway");
    let users = empty_users(dir.path());
    let config = base_config(&up.url(), "bypass", &users).replace(
        "[server]\n",
        &format!("[server]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n", cert.display(), key.display()),
    );
    let gw = Gateway::start_in(dir, &config, &[]);
    assert_eq!(gw.scheme, "https");
    support::crypto();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap();
    let tls_client = reqwest::Client::builder().add_root_certificate(ca).build().unwrap();
    let url = format!("https://localhost:{}/h2", gw.port());
    let r = tls_client.get(&url).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2, "ALPN should pick h2");
    let e: serde_json::Value = r.json().await.unwrap();
    assert_eq!(e["path"], "/h2");
    assert_eq!(header(&e, "x-forwarded-proto"), Some("https"));
    assert_eq!(e["version"], "HTTP/1.1", "upstream gets HTTP/1.1");

    let gw = open_gateway(&up, "");
    let h2c = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let r = h2c.get(gw.url("/h2c")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn oversized_headers_get_431_and_stalled_headers_are_cut_off() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let users = empty_users(dir.path());
    let config = base_config(&up.url(), "bypass", &users)
        .replace("[server]\n", "[server]\nheader_read_timeout = \"1s\"\nmax_header_bytes = 16384\n");
    let gw = Gateway::start_in(dir, &config, &[]);
    let r = client().get(gw.url("/")).header("X-Big", "a".repeat(40_000)).send().await.unwrap();
    assert_eq!(r.status(), 431);

    let addr = gw.addr.clone();
    let (closed_after, n) = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: slow\r\nX-Drip: 1\r\n").unwrap();
        let started = Instant::now();
        let mut buf = Vec::new();
        let n = s.read_to_end(&mut buf).unwrap_or(0);
        (started.elapsed(), n)
    })
    .await
    .unwrap();
    assert!(closed_after < Duration::from_secs(5), "stalled client held for {closed_after:?}");
    let _ = n;
    assert_eq!(up.hits(), 0, "the stalled request never reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_an_in_flight_request_finish() {
    let up = Upstream::start().await;
    let mut gw = open_gateway(&up, "");
    let url = gw.url("/slow?ms=1500");
    let in_flight = tokio::spawn(async move { client().get(url).send().await });
    // SIGTERM once the request is in flight: the upstream has it.
    assert_eventually!(up.hits() > 0, "the request to reach the upstream");
    gw.signal("TERM");
    let r = in_flight.await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "finally");
    let code = tokio::task::block_in_place(|| gw.wait_exit(Duration::from_secs(10)));
    assert_eq!(code, Some(0));
    assert!(std::net::TcpStream::connect(&gw.addr).is_err(), "no longer accepting");
    // Its access-log line, gathered in the worker's batch, was written before the exit.
    let logged = gw.log().lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).any(|v| {
        v["target"] == "access" && v["status"] == 200 && v["duration_ms"].as_f64().is_some_and(|ms| ms >= 1500.0)
    });
    assert!(logged, "the last request's access line is in the log:\n{}", gw.log());
}

/// An idle keep-alive connection hears of a shutdown at once: it is closed
/// and the gateway exits without waiting out `shutdown_grace` (5 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_keep_alive_connections_at_once() {
    use tokio::io::AsyncReadExt;
    let up = Upstream::start().await;
    let mut gw = open_gateway(&up, "");
    let mut held = idle_connections(gw.port(), 4).await;
    let signalled = Instant::now();
    gw.signal("TERM");
    for s in &mut held {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(2), s.read(&mut byte)).await;
        assert!(matches!(read, Ok(Ok(0))), "an idle connection is closed at once: {read:?}");
    }
    let code = tokio::task::block_in_place(|| gw.wait_exit(Duration::from_secs(10)));
    assert_eq!(code, Some(0));
    let took = signalled.elapsed();
    assert!(took < Duration::from_secs(3), "exited {took:?} after SIGTERM, not at the end of the grace");
}

/// Resident memory of a process (VmRSS), in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The length of the whole response (head and Content-Length body) at the
/// start of `got`, once it is all there.
fn response_len(got: &[u8]) -> Option<usize> {
    let end = got.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    (got.len() >= end + 4 + length).then_some(end + 4 + length)
}

/// Opens `n` keep-alive connections, each after one whole request, and
/// keeps them open.
async fn idle_connections(port: u16, n: usize) -> Vec<tokio::net::TcpStream> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (status, body) = ask(&mut s, HEALTHZ, 1).await.remove(0);
        assert!(status.starts_with("HTTP/1.1 200"), "{status}\r\n\r\n{body}");
        held.push(s);
    }
    held
}

const HEALTHZ: &[u8] = b"GET /_auth/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/// Sends `request` (one or more requests, or part of one) on `s` and reads
/// `n` whole responses.
async fn ask(s: &mut tokio::net::TcpStream, request: &[u8], n: usize) -> Vec<(String, String)> {
    use tokio::io::AsyncWriteExt;
    s.write_all(request).await.unwrap();
    read_responses(s, n).await
}

/// A gateway in front of `up` whose idle HTTP/1.1 connections go to sleep
/// quickly: the header-read timeout is 1 s, so they sleep after a third of it.
fn sleepy_gateway(up: &Upstream, idle_timeout: &str, extra: &str) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let users = empty_users(dir.path());
    let config = base_config(&up.url(), "bypass", &users).replace(
        "[server]\n",
        &format!("[server]\nheader_read_timeout = \"1s\"\nidle_timeout = \"{idle_timeout}\"\n{extra}"),
    );
    Gateway::start_in(dir, &config, &[])
}

/// A gauge's value on the gateway's /metrics.
async fn gauge(gw: &Gateway, name: &str) -> i64 {
    let addr = gw.metrics_addr.as_ref().expect("metrics listener");
    let text = client().get(format!("http://{addr}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(text.lines().any(|l| l.starts_with(name)), "no {name} in /metrics");
    support::sample(&text, name, &[]) as i64
}

/// Asserts that `n` connections fall asleep within 20 s.
async fn assert_asleep_eventually(gw: &Gateway, n: i64) {
    let sleepers = async || gauge(gw, "portcullis_connections_asleep").await;
    assert_eventually!(within Duration::from_secs(20), sleepers().await == n, "{} connections asleep, not {n}", sleepers().await);
}

/// Reads `n` whole responses from `s`; their status lines and bodies.
async fn read_responses(s: &mut tokio::net::TcpStream, n: usize) -> Vec<(String, String)> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < n {
        if let Some(len) = response_len(&got) {
            let response = String::from_utf8_lossy(&got[..len]).into_owned();
            let (head, body) = response.split_once("\r\n\r\n").unwrap();
            out.push((head.lines().next().unwrap().to_string(), body.to_string()));
            got.drain(..len);
            continue;
        }
        let k = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.unwrap().unwrap();
        assert!(k > 0, "the gateway closed the connection after {} of {n} responses", out.len());
        got.extend_from_slice(&buf[..k]);
    }
    out
}

/// An idle HTTP/1.1 connection sleeps and wakes for its next request: it is
/// still open past the header-read timeout, answers requests sent one by one
/// or pipelined, and is closed at the idle timeout.
#[tokio::test]
async fn idle_http1_connections_sleep_and_stay_open_until_the_idle_timeout() {
    let up = Upstream::start().await;
    let gw = sleepy_gateway(&up, "4s", "");
    let mut s = tokio::net::TcpStream::connect(&gw.addr).await.unwrap();
    assert_eq!(ask(&mut s, b"GET /first HTTP/1.1\r\nHost: app\r\n\r\n", 1).await[0].0, "HTTP/1.1 200 OK");
    assert_asleep_eventually(&gw, 1).await;

    // Twice the header-read timeout after the first request: awake again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (status, body) = ask(&mut s, b"GET /second HTTP/1.1\r\nHost: app\r\n\r\n", 1).await.remove(0);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.contains("/second"), "the upstream's echo of the second request: {body}");
    assert_eq!(gauge(&gw, "portcullis_connections_asleep").await, 0, "awake while it works");

    // Asleep again, then two requests in one write: both answered, in order.
    assert_asleep_eventually(&gw, 1).await;
    let both = ask(&mut s, b"GET /a HTTP/1.1\r\nHost: app\r\n\r\nGET /b HTTP/1.1\r\nHost: app\r\n\r\n", 2).await;
    assert!(both[0].1.contains("\"/a\"") && both[1].1.contains("\"/b\""), "{both:?}");
    assert_eq!(up.hits(), 4);

    // Quiet from here on: closed once the idle timeout (4 s) has passed.
    let quiet_since = Instant::now();
    let mut buf = [0u8; 64];
    use tokio::io::AsyncReadExt;
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.expect("closed within 10 s");
    assert!(matches!(n, Ok(0) | Err(_)), "closed, not answered: {n:?}");
    let after = quiet_since.elapsed();
    assert!(after >= Duration::from_millis(3500), "closed {after:?} after the last request, before the idle timeout");
}

/// A request head that arrives in two parts with a pause between them longer
/// than a connection takes to fall asleep (a lost segment, a slow link) is
/// answered, on a fresh connection and on one that served a request before,
/// from sixteen such clients at once; the pause stays within the header-read
/// timeout, which still closes a head that never ends.
#[tokio::test]
async fn a_request_head_split_by_a_pause_is_answered_not_dropped() {
    use tokio::io::AsyncWriteExt;
    let up = Upstream::start().await;
    let gw = sleepy_gateway(&up, "30s", "");
    let split = |port: u16, i: usize| async move {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        if i % 2 == 1 {
            assert_eq!(ask(&mut s, HEALTHZ, 1).await[0].0, "HTTP/1.1 200 OK");
        }
        s.write_all(format!("GET /split/{i} HTTP/1.1\r\nHo").as_bytes()).await.unwrap();
        // Past the quarter second after which a quiet connection sleeps,
        // short of the header-read timeout (1 s).
        tokio::time::sleep(Duration::from_millis(600)).await;
        let (status, body) = ask(&mut s, b"st: app\r\n\r\n", 1).await.remove(0);
        assert_eq!(status, "HTTP/1.1 200 OK", "client {i}: {body}");
        assert!(body.contains(&format!("/split/{i}")), "client {i}: {body}");
    };
    let clients: Vec<_> = (0..16).map(|i| tokio::spawn(split(gw.port(), i))).collect();
    for c in clients {
        c.await.unwrap();
    }

    // A head that never ends is still closed at the header-read timeout.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", gw.port())).await.unwrap();
    s.write_all(b"GET /never HTTP/1.1\r\nHo").await.unwrap();
    let mut buf = [0u8; 256];
    use tokio::io::AsyncReadExt;
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.expect("closed within 5 s");
    assert!(!matches!(&n, Ok(k) if *k > 0 && buf[..*k].starts_with(b"HTTP/1.1 200")), "answered: {n:?}");
}

/// The cookies a browser would hold after `set_cookie` headers on top of
/// `jar`, as one Cookie header value.
fn with_cookies(jar: &str, response: &reqwest::Response) -> String {
    let mut pairs: Vec<(String, String)> =
        jar.split("; ").filter_map(|p| p.split_once('=')).map(|(k, v)| (k.into(), v.into())).collect();
    for set in response.headers().get_all("set-cookie") {
        let pair = set.to_str().unwrap().split(';').next().unwrap();
        let (name, value) = pair.split_once('=').unwrap();
        pairs.retain(|(k, _)| k != name);
        if !value.is_empty() {
            pairs.push((name.into(), value.into()));
        }
    }
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
}

/// `user`'s Cookie header after the password (one factor, a code pending)
/// and after the e-mailed code too (two factors), by hand as a raw client
/// would hold them.
async fn login_cookies(h: &Harness, user: &str, password: &str) -> (String, String) {
    support::crypto();
    // No cookie store: the cookies are carried by hand, as the raw client will.
    let c = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let before = h.smtp.messages().len();
    let body = serde_json::json!({"username_or_email": user, "password": password});
    let r = c.post(h.url("/_auth/api/send-login-otp")).header("Origin", &h.origin).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let pending = with_cookies("", &r);
    let code = h.code_from_mail(before + 1).await;
    let r = c
        .post(h.url("/_auth/api/verify-login-otp"))
        .header("Origin", &h.origin)
        .header("Cookie", &pending)
        .json(&serde_json::json!({"otp_code": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let session = with_cookies(&pending, &r);
    (pending, session)
}

/// As an attacker would try a connection that sleeps between requests: who
/// a request is forwarded as is decided by that request alone. One
/// keep-alive connection carries, with a sleep between each, one user's
/// session, then another's (its head split by a pause), none, a one-factor
/// session, a malformed cookie, a pipelined pair of a session and no
/// session, and a cross-site POST: each gets its own answer, and only the
/// two-factor sessions reach the application, as their own user.
#[tokio::test]
async fn whom_a_sleeping_connection_forwards_as_is_decided_by_each_request() {
    use tokio::io::AsyncWriteExt;
    let Some(h) = Harness::start(Backend::Memory, Options::default()).await else { return };
    let (_, alice) = login_cookies(&h, "testuser", PASSWORD).await;
    let (bobs_one_factor, bob) = login_cookies(&h, "bob", "bobs-password-1").await;
    let host = format!("127.0.0.1:{}", h.gw.port());
    let get = |cookie: &str| format!("GET /whoami HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n\r\n");
    let asleep = async || support::sample(&h.metrics().await, "portcullis_connections_asleep", &[]) == 1.0;
    let forwarded_as = |(status, body): &(String, String)| {
        (status == "HTTP/1.1 200 OK").then(|| {
            let echo: serde_json::Value = serde_json::from_str(body).unwrap();
            echo["headers"]["remote-user"][0].as_str().unwrap_or("(none)").to_string()
        })
    };

    let mut s = tokio::net::TcpStream::connect(&h.gw.addr).await.unwrap();
    assert_eq!(forwarded_as(&ask(&mut s, get(&alice).as_bytes(), 1).await[0]), Some("testuser".into()));
    assert_eventually!(within Duration::from_secs(10), asleep().await, "the connection sleeps");

    // Bob's head, split before its Cookie line by a pause past the sleep.
    let bobs = get(&bob);
    let (first, rest) = bobs.split_at(bobs.find("Cookie").unwrap());
    s.write_all(first.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(forwarded_as(&ask(&mut s, rest.as_bytes(), 1).await[0]), Some("bob".into()));

    for (what, cookie) in [
        ("no session", String::new()),
        ("a one-factor session", bobs_one_factor),
        ("a malformed cookie", "portcullis_session=%ff%00;;=".to_string()),
    ] {
        assert_eventually!(within Duration::from_secs(10), asleep().await, "the connection sleeps");
        let answer = ask(&mut s, get(&cookie).as_bytes(), 1).await.remove(0);
        assert_eq!(forwarded_as(&answer), None, "{what} was forwarded: {answer:?}");
    }

    assert_eventually!(within Duration::from_secs(10), asleep().await, "the connection sleeps");
    let both = ask(&mut s, format!("{}{}", get(&alice), get("")).as_bytes(), 2).await;
    assert_eq!(forwarded_as(&both[0]), Some("testuser".into()));
    assert_eq!(forwarded_as(&both[1]), None, "the pipelined request without a session: {:?}", both[1]);

    assert_eventually!(within Duration::from_secs(10), asleep().await, "the connection sleeps");
    let post = format!(
        "POST /_auth/api/backup-codes HTTP/1.1\r\nHost: {host}\r\nCookie: {alice}\r\nOrigin: https://evil.example\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
    );
    assert_eq!(ask(&mut s, post.as_bytes(), 1).await[0].0, "HTTP/1.1 403 Forbidden");
}

/// A connection stays awake while a request is in flight, however long it
/// is quiet: a slow response and an upload that pauses mid-body both finish.
#[tokio::test]
async fn a_quiet_request_in_flight_keeps_its_connection_awake() {
    use tokio::io::AsyncWriteExt;
    let up = Upstream::start().await;
    let gw = sleepy_gateway(&up, "30s", "");
    let mut s = tokio::net::TcpStream::connect(&gw.addr).await.unwrap();

    let slow = ask(&mut s, b"GET /slow?ms=2000 HTTP/1.1\r\nHost: app\r\n\r\n", 1).await;
    assert_eq!(slow[0], ("HTTP/1.1 200 OK".to_string(), "finally".to_string()));

    s.write_all(b"POST /upload HTTP/1.1\r\nHost: app\r\nContent-Length: 10\r\n\r\n01234").await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(gauge(&gw, "portcullis_connections_asleep").await, 0, "not asleep in the middle of a body");
    assert_eq!(ask(&mut s, b"56789", 1).await[0], ("HTTP/1.1 200 OK".to_string(), "{\"bytes\":10}".to_string()));

    assert_eq!(ask(&mut s, b"GET /after HTTP/1.1\r\nHost: app\r\n\r\n", 1).await[0].0, "HTTP/1.1 200 OK");
}

/// Idle keep-alive connections cost little memory once asleep: a gateway
/// holds thousands of idle browser connections.
/// (The figures for 10,000 in release builds are in bench/README.md; this
/// bounds a debug build with fewer, so the suite runs anywhere.)
#[tokio::test]
async fn idle_keep_alive_connections_cost_bounded_memory() {
    const N: usize = 800;
    let up = Upstream::start().await;
    let gw = sleepy_gateway(&up, "60s", "max_connections_per_client = 5000\n");
    // The baseline: a gateway that has answered a few requests.
    drop(idle_connections(gw.port(), 8).await);
    assert_asleep_eventually(&gw, 0).await;
    let baseline = rss_kib(gw.pid());

    let mut held = idle_connections(gw.port(), N).await;
    assert_asleep_eventually(&gw, N as i64).await;
    // What hyper held is freed when a connection sleeps; the allocator's
    // background thread gives the pages back to the system within seconds.
    let limit = 12.0;
    let per_connection = || rss_kib(gw.pid()).saturating_sub(baseline) as f64 / N as f64;
    let within_limit = async || Some(per_connection()).filter(|kib| *kib <= limit);
    let every = Duration::from_millis(200);
    let per_connection = poll_every(every, Duration::from_secs(30), within_limit).await.unwrap_or_else(per_connection);
    eprintln!("RSS baseline {baseline} KiB; {per_connection:.1} KiB per sleeping connection");
    // 7.6 KiB measured here (debug build; 4.9 KiB in a release build with
    // 10,000): the socket's registration, the small task and its counters.
    // Awake, hyper's buffers and state make it about 30 KiB.
    assert!(per_connection <= limit, "{per_connection:.1} KiB per sleeping connection (limit {limit})");

    // Every tenth still answers.
    for s in held.iter_mut().step_by(10) {
        assert_eq!(ask(s, HEALTHZ, 1).await[0].0, "HTTP/1.1 200 OK");
    }
}
