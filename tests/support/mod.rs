//! Fixtures shared by the integration tests: the real gateway binary on a free
//! port (or the same gateway in the test's own process, on a manual clock),
//! an echo upstream (HTTP, streaming, slow, WebSocket), a users file and
//! self-signed TLS material. Everything listens on loopback only.
#![allow(dead_code)]

pub mod eventually;
pub mod faults;
pub mod flow;
pub mod machine;
pub mod proxies;
pub mod redis;
pub mod skip;
pub mod slapd;
pub mod smtp;
pub mod upstream;

/// Instantiates each named `async fn(Backend)` as a test on the memory store
/// (`memory::name`) and on a real redis-server (`redis::name`).
#[allow(unused_macros)]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $( #[tokio::test] async fn $name() { super::$name($crate::support::flow::Backend::Memory).await } )*
        }
        mod redis {
            $( #[tokio::test] async fn $name() { super::$name($crate::support::flow::Backend::Redis).await } )*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use eventually::assert_eventually;
#[allow(unused_imports)]
pub(crate) use on_both_stores;

/// The value of one sample in Prometheus text output, summed over the series
/// whose labels include `labels`, e.g. `sample(m, "portcullis_lockouts_total", &[])`.
pub fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Installs the ring provider for reqwest/rustls in tests (idempotent).
pub fn crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Whether a missing external service must fail the test (`scripts/test` sets it).
pub fn services_required() -> bool {
    std::env::var("PORTCULLIS_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// A running gateway: the binary as a child process, or (for tests that
/// move time) the library in this process.
pub struct Gateway {
    running: Running,
    pub addr: String,
    pub scheme: &'static str,
    pub metrics_addr: Option<String>,
    pub dir: tempfile::TempDir,
    log: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
}

enum Running {
    Process(Child),
    /// Its tasks on the test's runtime and its worker threads; its log is
    /// the test process's (not captured), its time the manual `clock`.
    InProcess {
        shutdown: portcullis::shutdown::Shutdown,
        clock: portcullis::clock::Clock,
    },
}

/// A random 48-character secret for test configs (patterned ones are refused).
pub const SECRET: &str = "bYiq4AM90_pgXj9748MxxHMc5V2Tj3foa8sERErXWhm-GWfu";

/// The gateway binary under test: this build's, or `PORTCULLIS_BIN` (e.g. the
/// release build, for the timings the load tests print).
pub fn binary() -> std::path::PathBuf {
    std::env::var_os("PORTCULLIS_BIN").map_or_else(|| env!("CARGO_BIN_EXE_portcullis").into(), Into::into)
}

impl Gateway {
    /// Writes `config` to a temp file and runs `portcullis serve --config` on it.
    /// The config should listen on 127.0.0.1:0; the bound address is read back.
    pub fn start(config: &str) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, config, &[])
    }

    pub fn start_in(dir: tempfile::TempDir, config: &str, env: &[(&str, &str)]) -> Gateway {
        match Self::launch(dir, config, env) {
            Ok(gw) => gw,
            Err(failed) => panic!("gateway did not start; log:\n{}", failed.log),
        }
    }

    /// For a config that must name its own port before the gateway starts
    /// (`public_url`, which Origin checks and redirects compare against):
    /// `config(port)` is started on a port that was free a moment ago. Another
    /// process may bind that port first; the gateway then exits saying so, and
    /// another port is tried. Returns the gateway and its port.
    pub fn start_on_own_port(
        mut dir: tempfile::TempDir,
        env: &[(&str, &str)],
        config: impl Fn(u16) -> String,
    ) -> (Gateway, u16) {
        for _ in 0..10 {
            let port = free_port();
            match Self::launch(dir, &config(port), env) {
                Ok(gw) => return (gw, port),
                Err(failed) if failed.log.contains("Address already in use") => dir = failed.dir,
                Err(failed) => panic!("gateway did not start; log:\n{}", failed.log),
            }
        }
        panic!("ten free ports in a row were taken before the gateway could bind them");
    }

    /// Runs `portcullis serve` on `config` in `dir` and waits for its listeners;
    /// gives the directory back with the log if it exits or stays silent.
    fn launch(dir: tempfile::TempDir, config: &str, env: &[(&str, &str)]) -> Result<Gateway, FailedStart> {
        let path = dir.path().join("portcullis.toml");
        std::fs::write(&path, config).expect("write config");
        let mut cmd = Command::new(binary());
        cmd.args(["--log-format", "json", "serve", "--config"])
            .arg(&path)
            .current_dir(dir.path())
            .env_remove("PORTCULLIS_CONFIG")
            .env("PORTCULLIS_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn portcullis");
        let log = Arc::new(Mutex::new(String::new()));
        let stdout_text = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr");
        let stderr_reader = {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut l = log.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            })
        };
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        {
            let stdout_text = stdout_text.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    stdout_text.lock().unwrap().push_str(&format!("{line}\n"));
                    let _ = tx.send(line);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let (mut addr, mut scheme, mut metrics) = (None, "http", None);
        while addr.is_none() || (metrics.is_none() && config_has_metrics(config)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("portcullis listening on ") {
                        let (s, a) = rest.split_once("://").expect("scheme");
                        scheme = if s == "https" { "https" } else { "http" };
                        addr = Some(a.trim().to_string());
                    } else if let Some(rest) = line.strip_prefix("portcullis metrics on http://") {
                        metrics = Some(rest.trim_end_matches("/metrics").to_string());
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    // The process is gone, so its stderr has ended: the log is complete.
                    let _ = stderr_reader.join();
                    let log = log.lock().unwrap().clone();
                    return Err(FailedStart { dir, log });
                }
            }
        }
        Ok(Gateway {
            running: Running::Process(child),
            addr: addr.expect("address"),
            scheme,
            metrics_addr: metrics,
            dir,
            log,
            stdout: stdout_text,
        })
    }

    /// The gateway in this process, keeping time by `clock`, on a loopback
    /// port bound here: `config(port)` is its config (a file in `dir`, read
    /// as `serve --config` reads it, without `PORTCULLIS_*` variables;
    /// `server.listen` and `metrics_listen` are not used). Returns the
    /// gateway and its port. Everything global is shared with the other
    /// tests of the binary (the metrics registry, the SIGHUP handler), and
    /// nothing it logs is captured: [`Gateway::log`] is for processes.
    pub async fn start_in_process(
        dir: tempfile::TempDir,
        clock: portcullis::clock::Clock,
        config: impl Fn(u16) -> String,
    ) -> (Gateway, u16) {
        use figment::providers::{Format, Serialized, Toml};
        use portcullis::app::{self, Listeners};
        use portcullis::server::Listener;
        let public = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind metrics");
        let (addr, metrics_addr) = (public.local_addr().expect("addr"), metrics.local_addr().expect("addr"));
        let path = dir.path().join("portcullis.toml");
        std::fs::write(&path, config(addr.port())).expect("write config");
        let figment = figment::Figment::from(Serialized::defaults(portcullis::config::Config::default()))
            .merge(Toml::file_exact(&path));
        let loaded = portcullis::config::load_from_figment(figment, Some(path), false)
            .unwrap_or_else(|e| panic!("config: {:?}", e.problems));
        let built = app::build_with_clock(loaded.config, None, clock.clone()).await.expect("the gateway builds");
        let listeners =
            Listeners { public: Listener::from_tcp(public, None), metrics: Some(Listener::from_tcp(metrics, None)) };
        let shutdown = portcullis::shutdown::Shutdown::default();
        let served = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = app::serve(built, listeners, served).await {
                panic!("the in-process gateway stopped: {e}");
            }
        });
        let gw = Gateway {
            running: Running::InProcess { shutdown, clock },
            addr: addr.to_string(),
            scheme: "http",
            metrics_addr: Some(metrics_addr.to_string()),
            dir,
            log: Arc::default(),
            stdout: Arc::default(),
        };
        (gw, addr.port())
    }

    /// The manual clock of a gateway in this process.
    pub fn clock(&self) -> Option<&portcullis::clock::Clock> {
        match &self.running {
            Running::InProcess { clock, .. } => Some(clock),
            Running::Process(_) => None,
        }
    }

    /// The child process; a gateway in this process has none of its own.
    fn child(&mut self) -> &mut Child {
        match &mut self.running {
            Running::Process(child) => child,
            Running::InProcess { .. } => panic!("a gateway in the test's process has no process of its own"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.addr, path)
    }

    pub fn port(&self) -> u16 {
        self.addr.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port")
    }

    pub fn pid(&self) -> u32 {
        match &self.running {
            Running::Process(child) => child.id(),
            Running::InProcess { .. } => panic!("a gateway in the test's process has no process of its own"),
        }
    }

    /// Everything the gateway logged so far (stderr). Only a process's log
    /// is captured: reading an in-process gateway's fails rather than find
    /// nothing.
    pub fn log(&self) -> String {
        assert!(self.clock().is_none(), "the log of a gateway in the test's process is not captured");
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle` (logs are written asynchronously).
    /// Blocks the thread, so it is for plain `#[test]`s: async tests use
    /// [`Gateway::wait_for_log`].
    pub fn log_contains(&self, needle: &str) -> bool {
        eventually::poll_blocking(Duration::from_secs(5), || self.log().contains(needle).then_some(())).is_some()
    }

    /// Waits (without blocking the runtime, which may be running the SMTP sink)
    /// until a log line satisfies `wanted`; returns that line, or None after
    /// 10 s. The gateway's log writer batches lines, so one read can come too early.
    pub async fn wait_for_log(&self, wanted: impl Fn(&str) -> bool) -> Option<String> {
        eventually::poll(eventually::PATIENCE, async || self.log().lines().find(|l| wanted(l)).map(str::to_owned)).await
    }

    /// Waits (as [`Gateway::wait_for_log`]) until an audit record satisfies
    /// `wanted`; returns it, or None after 10 s.
    pub async fn wait_for_record(&self, wanted: impl Fn(&serde_json::Value) -> bool) -> Option<serde_json::Value> {
        eventually::poll(eventually::PATIENCE, async || self.security_records().into_iter().find(|r| wanted(r))).await
    }

    /// The `security` target's JSON records (audit lines) logged so far.
    pub fn security_records(&self) -> Vec<serde_json::Value> {
        self.log()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["target"] == "security")
            .collect()
    }

    /// Everything printed on stdout (console mail, banners), by a process.
    pub fn stdout(&self) -> String {
        assert!(self.clock().is_none(), "the stdout of a gateway in the test's process is not captured");
        self.stdout.lock().unwrap().clone()
    }

    /// Peak resident memory (VmHWM) in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").arg(format!("-{sig}")).arg(self.pid().to_string()).status().expect("kill");
        assert!(ok.success());
    }

    /// Waits for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let child = self.child();
        eventually::poll_blocking(limit, || child.try_wait().ok().flatten()).and_then(|status| status.code())
    }
}

/// A gateway that exited (or stayed silent) before reporting its listeners.
struct FailedStart {
    dir: tempfile::TempDir,
    log: String,
}

fn config_has_metrics(config: &str) -> bool {
    config.contains("metrics_listen") && !config.contains("metrics_listen = \"\"")
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if std::thread::panicking() && self.clock().is_none() {
            eprintln!("--- gateway log ---\n{}--- end of gateway log ---", self.log());
        }
        match &mut self.running {
            Running::Process(child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Running::InProcess { shutdown, .. } => shutdown.trigger(),
        }
    }
}

/// A base config: loopback listeners on free ports, the given upstream and policy.
pub fn base_config(upstream: &str, default_policy: &str, users_file: &Path) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
metrics_listen = "127.0.0.1:0"
public_url = "http://127.0.0.1"
shutdown_grace = "5s"

[[upstream]]
url = "{upstream}"
timeout = "5s"

[auth]
secret = "{SECRET}"
users_file = "{users}"

[access_control]
default_policy = "{default_policy}"
"#,
        users = users_file.display()
    )
}

/// Writes a users file with `(name, email, password, groups)` entries. A
/// password gets the same hash each time in a test process, as an operator's
/// edit leaves the other entries' hashes alone (a new hash is a changed
/// credential, and ends the user's sessions).
pub fn write_users(path: &Path, users: &[(&str, &str, &str, &[&str])]) {
    static HASHES: std::sync::LazyLock<Mutex<std::collections::HashMap<String, String>>> =
        std::sync::LazyLock::new(Default::default);
    let mut text = String::new();
    for (name, email, password, groups) in users {
        let known = HASHES.lock().unwrap().get(*password).cloned();
        let hash = known.unwrap_or_else(|| {
            let hash = portcullis::auth::password::hash_password(password).expect("hash");
            HASHES.lock().unwrap().insert(password.to_string(), hash.clone());
            hash
        });
        let groups: Vec<String> = groups.iter().map(|g| format!("{g:?}")).collect();
        text.push_str(&format!(
            "[users.{name}]\nemail = \"{email}\"\npassword = \"{hash}\"\ngroups = [{}]\n\n",
            groups.join(", ")
        ));
    }
    std::fs::write(path, text).expect("write users");
}

/// An empty users file in `dir`.
pub fn empty_users(dir: &Path) -> PathBuf {
    let p = dir.join("users.toml");
    std::fs::write(&p, "").expect("write users");
    p
}

/// Self-signed certificate for `localhost`/127.0.0.1: (cert PEM path, key PEM path).
pub fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).expect("cert");
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, ck.cert.pem()).expect("write cert");
    std::fs::write(&key, ck.signing_key.serialize_pem()).expect("write key");
    (cert, key)
}

/// A reqwest client that keeps cookies and does not follow redirects.
pub fn client() -> reqwest::Client {
    crypto();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// A loopback port that was free a moment ago. Someone else may bind it before
/// whoever it is meant for does: start gateways that need their own port with
/// [`Gateway::start_on_own_port`], which retries on a clash.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Extracts the first run of `digits` consecutive ASCII digits standing alone.
pub fn find_code(text: &str, digits: usize) -> Option<String> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric()) {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if i - start == digits && (i == bytes.len() || !bytes[i].is_ascii_alphanumeric()) {
                return Some(text[start..i].to_string());
            }
        } else {
            i += 1;
        }
    }
    None
}

/// The value of a hidden form field in an HTML page.
pub fn form_field(html: &str, name: &str) -> Option<String> {
    let needle = format!("name=\"{name}\"");
    let at = html.find(&needle)?;
    let tag_start = html[..at].rfind('<')?;
    let tag_end = at + html[at..].find('>')?;
    let tag = &html[tag_start..tag_end];
    let v = tag.find("value=\"")? + 7;
    let end = tag[v..].find('"')?;
    Some(tag[v..v + end].replace("&amp;", "&"))
}
