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

/// The `nginx.ingress.kubernetes.io/NAME` annotation's value in a manifest.
fn annotation(manifest: &str, name: &str) -> String {
    let key = format!("nginx.ingress.kubernetes.io/{name}:");
    let line = manifest.lines().find(|l| l.trim_start().starts_with(&key)).unwrap_or_else(|| panic!("no {key}"));
    line.trim_start()[key.len()..].trim().trim_matches('"').to_string()
}

/// The first `host:` of an Ingress manifest.
fn ingress_host(manifest: &str) -> String {
    let line = manifest.lines().find(|l| l.trim_start().starts_with("- host:")).expect("ingress host");
    line.trim_start().trim_start_matches("- host:").trim().to_string()
}

/// The dynamic modules ingress-nginx's config needs beyond stock nginx:
/// `set_escape_uri` (set-misc, on top of the devel kit).
const SET_MISC_MODULES: [&str; 2] =
    ["/usr/lib/nginx/modules/ndk_http_module.so", "/usr/lib/nginx/modules/ngx_http_set_misc_module.so"];

/// The hosts of the ingress-nginx example: (portal, protected app).
pub fn ingress_hosts() -> (String, String) {
    (ingress_host(&deploy("kubernetes/ingress.yaml")), ingress_host(&deploy("kubernetes/app-ingress.yaml")))
}

/// Real nginx running what ingress-nginx renders for deploy/kubernetes: the
/// portal's Ingress (a plain proxy to the gateway) and the app's Ingress with
/// its auth-url, auth-signin and auth-response-headers annotations, written
/// as the controller's nginx.tmpl writes them with default settings. Both
/// hosts share one loopback port and plain HTTP: the auth-signin URL's
/// https:// origin becomes `http://HOST:PORT`.
pub fn ingress_nginx(gateway: &str, upstream: &str) -> Option<ProxyProcess> {
    let bin = require("nginx", &["/usr/sbin/nginx"])?;
    if let Some(missing) = SET_MISC_MODULES.iter().find(|m| !Path::new(m).is_file()) {
        if services_required() {
            panic!("{missing} is required (PORTCULLIS_REQUIRE_SERVICES=1): apt-get install libnginx-mod-http-set-misc");
        }
        eprintln!("skipping: {missing} is not installed (libnginx-mod-http-set-misc)");
        return None;
    }
    let app_ingress = deploy("kubernetes/app-ingress.yaml");
    let (portal_host, app_host) = ingress_hosts();
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();

    // auth-url: the Service's in-cluster name becomes the gateway's address; the
    // Host header keeps the name, as the controller sends it.
    let auth_url = url::Url::parse(&annotation(&app_ingress, "auth-url")).expect("auth-url");
    let auth_host = auth_url.host_str().expect("auth-url host").to_string();
    let mut target = auth_url.clone();
    let (gw_host, gw_port) = gateway.rsplit_once(':').expect("gateway host:port");
    target.set_host(Some(gw_host)).expect("host");
    target.set_port(Some(gw_port.parse().expect("port"))).expect("port");
    // auth-signin: rd= is appended unless the URL names it already.
    let mut signin = url::Url::parse(&annotation(&app_ingress, "auth-signin")).expect("auth-signin");
    signin.set_scheme("http").expect("scheme");
    signin.set_port(Some(port)).expect("port");
    let rd = "rd=$pass_access_scheme://$http_host$escaped_request_uri";
    let signin = match signin.query() {
        None => format!("{signin}?{rd}"),
        Some(q) if q.split('&').any(|p| p.starts_with("rd=")) => signin.to_string(),
        Some(_) => format!("{signin}&{rd}"),
    };
    let identity: String = annotation(&app_ingress, "auth-response-headers")
        .split(',')
        .enumerate()
        .map(|(i, h)| {
            let var = h.trim().to_ascii_lowercase().replace('-', "_");
            format!(
                "            auth_request_set $authHeader{i} $upstream_http_{var};\n            proxy_set_header '{}' $authHeader{i};\n",
                h.trim()
            )
        })
        .collect();
    // ingress-nginx names these locations after the path (base64) and a hash
    // of path and sign-in URL; any unique names do.
    let auth_location = "/_external-auth-Lw-Prefix";
    let signin_location = "@sign_in_app";
    let proxy_headers = "\
            proxy_set_header Host $best_http_host;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header X-Request-ID $request_id;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Host $best_http_host;
            proxy_set_header X-Forwarded-Port $pass_port;
            proxy_set_header X-Forwarded-Proto $pass_access_scheme;
            proxy_set_header X-Forwarded-Scheme $pass_access_scheme;
            proxy_set_header X-Scheme $pass_access_scheme;
            proxy_set_header Proxy \"\";
            proxy_http_version 1.1;";
    let location_vars = "\
            set $pass_access_scheme $scheme;
            set $pass_server_port $server_port;
            set $best_http_host $http_host;
            set $pass_port $pass_server_port;";
    let site = format!(
        r#"
    # The portal's Ingress: no annotations, a plain proxy.
    server {{
        listen 127.0.0.1:{port};
        server_name {portal_host};
        location / {{
{location_vars}
{proxy_headers}
            proxy_pass http://{gateway};
        }}
    }}

    # The app's Ingress, with external auth.
    server {{
        listen 127.0.0.1:{port};
        server_name {app_host};

        location = {auth_location} {{
            internal;
            access_log off;
            proxy_intercept_errors off;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Forwarded-Proto "";
            proxy_set_header X-Request-ID $request_id;
            proxy_set_header Host {auth_host};
            proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Sent-From "nginx-ingress-controller";
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Auth-Request-Redirect $request_uri;
            proxy_buffering off;
            proxy_buffer_size 4k;
            proxy_buffers 4 4k;
            proxy_request_buffering on;
            proxy_ssl_server_name on;
            proxy_pass_request_headers on;
            client_max_body_size 1m;
            proxy_http_version 1.1;
            set $target "{target}";
            proxy_pass $target;
        }}

        location {signin_location} {{
            internal;
            add_header Set-Cookie $auth_cookie;
            return 302 {signin};
        }}

        location / {{
{location_vars}
            auth_request {auth_location};
            auth_request_set $auth_cookie $upstream_http_set_cookie;
            add_header Set-Cookie $auth_cookie;
{identity}
            set_escape_uri $escaped_request_uri $request_uri;
            error_page 401 = {signin_location};
{proxy_headers}
            proxy_pass http://{upstream};
        }}
    }}
"#
    );
    std::fs::write(dir.path().join("ingress.conf"), site).expect("write site");
    let d = dir.path().display();
    let user = if running_as_root() { "user root root;\n" } else { "" };
    let modules: String = SET_MISC_MODULES.iter().map(|m| format!("load_module {m};\n")).collect();
    let main = format!(
        "{modules}{user}daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 512; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
           include {d}/ingress.conf;\n}}\n"
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
    wait_listening(port, &mut child, "ingress-nginx", &log);
    Some(ProxyProcess { child, port, dir, name: "ingress-nginx" })
}
