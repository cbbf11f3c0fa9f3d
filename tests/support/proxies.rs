//! Real nginx, Traefik and Caddy, started from the configs in deploy/ with
//! their addresses rewritten to free loopback ports.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, services_required};

pub struct ProxyProcess {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub name: &'static str,
}

impl ProxyProcess {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for ProxyProcess {
    /// SIGTERM first: nginx's master then stops its workers (a SIGKILLed master
    /// leaves them running, orphaned). SIGKILL only if it has not exited soon.
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Finds a program on PATH (or in the given extra locations).
pub fn find_program(name: &str, extra: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join(name)).chain(extra.iter().map(PathBuf::from)).find(|p| p.is_file())
}

/// None (with a message) when the program is missing and services are optional.
fn require(name: &str, extra: &[&str]) -> Option<PathBuf> {
    match find_program(name, extra) {
        Some(p) => Some(p),
        None if services_required() => panic!("{name} is required (PORTCULLIS_REQUIRE_SERVICES=1) but not installed"),
        None => {
            eprintln!("skipping: {name} is not installed");
            None
        }
    }
}

fn deploy(path: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(root.join("deploy").join(path)).expect("deploy config")
}

fn wait_listening(port: u16, child: &mut Child, name: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{name} exited with {status}: {}", std::fs::read_to_string(log).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{name} did not start listening: {}", std::fs::read_to_string(log).unwrap_or_default());
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// nginx with deploy/nginx/portcullis.conf.
pub fn nginx(gateway: &str, upstream: &str) -> Option<ProxyProcess> {
    let bin = require("nginx", &["/usr/sbin/nginx"])?;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let site = deploy("nginx/portcullis.conf")
        .replace("127.0.0.1:8080", gateway)
        .replace("127.0.0.1:3000", upstream)
        .replace("listen 80;", &format!("listen 127.0.0.1:{port};"));
    std::fs::write(dir.path().join("portcullis.conf"), site).expect("write site");
    let d = dir.path().display();
    let user = if running_as_root() { "user root root;\n" } else { "" };
    let main = format!(
        "{user}daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 512; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
           include {d}/portcullis.conf;\n}}\n"
    );
    std::fs::write(dir.path().join("nginx.conf"), main).expect("write nginx.conf");
    let log = dir.path().join("error.log");
    let mut child = Command::new(bin)
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(dir.path().join("nginx.conf"))
        .arg("-e")
        .arg(&log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn nginx");
    wait_listening(port, &mut child, "nginx", &log);
    Some(ProxyProcess { child, port, dir, name: "nginx" })
}

/// Traefik with deploy/traefik/{traefik,dynamic}.yml.
pub fn traefik(gateway: &str, upstream: &str) -> Option<ProxyProcess> {
    let bin = require("traefik", &[])?;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let dynamic = deploy("traefik/dynamic.yml").replace("127.0.0.1:8080", gateway).replace("127.0.0.1:3000", upstream);
    let dynamic_path = dir.path().join("dynamic.yml");
    std::fs::write(&dynamic_path, dynamic).expect("write dynamic");
    let static_cfg = deploy("traefik/traefik.yml")
        .replace("127.0.0.1:80", &format!("127.0.0.1:{port}"))
        .replace("filename: dynamic.yml", &format!("filename: {}", dynamic_path.display()));
    std::fs::write(dir.path().join("traefik.yml"), static_cfg).expect("write traefik.yml");
    let log = dir.path().join("traefik.log");
    let mut child = Command::new(bin)
        .arg(format!("--configFile={}", dir.path().join("traefik.yml").display()))
        .current_dir(dir.path())
        .stdout(std::fs::File::create(&log).expect("log"))
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn traefik");
    wait_listening(port, &mut child, "traefik", &log);
    Some(ProxyProcess { child, port, dir, name: "traefik" })
}

/// Caddy with deploy/caddy/Caddyfile.
pub fn caddy(gateway: &str, upstream: &str) -> Option<ProxyProcess> {
    let bin = require("caddy", &[])?;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let file = deploy("caddy/Caddyfile")
        .replace("127.0.0.1:8080", gateway)
        .replace("127.0.0.1:3000", upstream)
        // Any host name (as in deploy/), on a loopback port.
        .replace("http://:80 {", &format!("http://:{port} {{\n\tbind 127.0.0.1"));
    let path = dir.path().join("Caddyfile");
    std::fs::write(&path, file).expect("write Caddyfile");
    let log = dir.path().join("caddy.log");
    let mut child = Command::new(bin)
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&path)
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn caddy");
    wait_listening(port, &mut child, "caddy", &log);
    Some(ProxyProcess { child, port, dir, name: "caddy" })
}
