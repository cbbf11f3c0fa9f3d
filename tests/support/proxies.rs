//! Real nginx, Traefik and Caddy, started from the configs in deploy/ with
//! their addresses rewritten to free loopback ports.
//!
//! None of them can listen on port 0 and say which port it got, so each is
//! given a port that was free a moment ago. Another process may take that port
//! first: the proxy then logs "address already in use" ([`Launch::PortTaken`])
//! and the caller tries another port. A proxy counts as up only once a
//! listening socket on its port belongs to the proxy's own process, so a
//! stranger on the port is never mistaken for it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::eventually::poll_blocking;
use super::free_port;

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
        if poll_blocking(Duration::from_secs(5), || self.child.try_wait().ok().flatten()).is_some() {
            return;
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

/// One of the proxies in deploy/.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proxy {
    Nginx,
    Traefik,
    Caddy,
}

/// How starting a proxy on a given port ended.
pub enum Launch {
    Up(ProxyProcess),
    /// Someone else bound the port first; the proxy has been stopped.
    PortTaken,
}

impl Proxy {
    pub fn name(self) -> &'static str {
        match self {
            Proxy::Nginx => "nginx",
            Proxy::Traefik => "traefik",
            Proxy::Caddy => "caddy",
        }
    }

    /// The proxy's program; None after recording a skip when it is not installed
    /// (a failure when `PORTCULLIS_REQUIRE_SERVICES=1`).
    pub fn program(self) -> Option<PathBuf> {
        let extra: &[&str] = if self == Proxy::Nginx { &["/usr/sbin/nginx"] } else { &[] };
        let found = find_program(self.name(), extra);
        if found.is_none() {
            super::skip::skip(&format!("{} is not installed", self.name()));
        }
        found
    }

    /// Starts `bin` on 127.0.0.1:`port` in front of `gateway` and `upstream`.
    pub fn launch(self, bin: &Path, port: u16, gateway: &str, upstream: &str) -> Launch {
        let dir = tempfile::tempdir().expect("tempdir");
        let (child, log) = match self {
            Proxy::Nginx => spawn_nginx(bin, dir.path(), port, gateway, upstream),
            Proxy::Traefik => spawn_traefik(bin, dir.path(), port, gateway, upstream),
            Proxy::Caddy => spawn_caddy(bin, dir.path(), port, gateway, upstream),
        };
        let mut proxy = ProxyProcess { child, port, dir, name: self.name() };
        match wait_listening(&mut proxy, &log) {
            Ok(()) => Launch::Up(proxy),
            Err(PortTaken) => Launch::PortTaken,
        }
    }

    /// Starts the proxy on some free port (retrying if one is taken first);
    /// None when it is not installed and services are optional.
    pub fn start(self, gateway: &str, upstream: &str) -> Option<ProxyProcess> {
        let bin = self.program()?;
        for _ in 0..10 {
            if let Launch::Up(proxy) = self.launch(&bin, free_port(), gateway, upstream) {
                return Some(proxy);
            }
        }
        panic!("{}: ten free ports in a row were taken before it could bind them", self.name());
    }
}

/// nginx with deploy/nginx/portcullis.conf, on a free port.
pub fn nginx(gateway: &str, upstream: &str) -> Option<ProxyProcess> {
    Proxy::Nginx.start(gateway, upstream)
}

/// Traefik with deploy/traefik/{traefik,dynamic}.yml, on a free port.
pub fn traefik(gateway: &str, upstream: &str) -> Option<ProxyProcess> {
    Proxy::Traefik.start(gateway, upstream)
}

/// Caddy with deploy/caddy/Caddyfile, on a free port.
pub fn caddy(gateway: &str, upstream: &str) -> Option<ProxyProcess> {
    Proxy::Caddy.start(gateway, upstream)
}

fn deploy(path: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(root.join("deploy").join(path)).expect("deploy config")
}

struct PortTaken;

/// Waits until the proxy's own process listens on its port, or its log says
/// the port was taken (then stops it). Panics if it dies or never listens.
fn wait_listening(proxy: &mut ProxyProcess, log: &Path) -> Result<(), PortTaken> {
    // nginx: "bind() to 127.0.0.1:N failed (98: Address already in use)";
    // Traefik and Caddy: "listen tcp 127.0.0.1:N: bind: address already in use".
    let on_our_port = format!(":{}", proxy.port);
    let port_taken = |text: &str| {
        text.lines().any(|l| l.to_ascii_lowercase().contains("address already in use") && l.contains(&on_our_port))
    };
    let outcome = poll_blocking(Duration::from_secs(20), || {
        if port_taken(&std::fs::read_to_string(log).unwrap_or_default()) {
            return Some(Err(PortTaken));
        }
        if listener_belongs_to(proxy.port, proxy.child.id()) {
            return Some(Ok(()));
        }
        if let Ok(Some(status)) = proxy.child.try_wait() {
            // Read again: it may have written why just before it exited.
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if port_taken(&text) {
                return Some(Err(PortTaken));
            }
            panic!("{} exited with {status}: {text}", proxy.name);
        }
        None
    });
    outcome.unwrap_or_else(|| {
        panic!("{} did not start listening: {}", proxy.name, std::fs::read_to_string(log).unwrap_or_default())
    })
}

/// Whether process `pid` holds a socket listening on loopback port `port`:
/// the inodes of listening sockets on that port (/proc/net/tcp, state 0A)
/// against the sockets among the process's file descriptors.
fn listener_belongs_to(port: u16, pid: u32) -> bool {
    let port_hex = format!(":{port:04X}");
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let listening = fields.get(3) == Some(&"0A");
                    let on_port = fields.get(1).is_some_and(|local| local.ends_with(&port_hex));
                    (listening && on_port).then(|| fields.get(9).map(|inode| format!("socket:[{inode}]")))?
                })
                .collect::<Vec<_>>()
        })
        .collect();
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    fds.filter_map(Result::ok)
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .any(|target| inodes.iter().any(|inode| target.as_os_str() == inode.as_str()))
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// nginx in the foreground; returns it and its error log.
fn spawn_nginx(bin: &Path, dir: &Path, port: u16, gateway: &str, upstream: &str) -> (Child, PathBuf) {
    let site = deploy("nginx/portcullis.conf")
        .replace("127.0.0.1:8080", gateway)
        .replace("127.0.0.1:3000", upstream)
        .replace("listen 80;", &format!("listen 127.0.0.1:{port};"));
    std::fs::write(dir.join("portcullis.conf"), site).expect("write site");
    // The shipped nginx.conf as it is: its paths are relative to the prefix (-p).
    let user = if running_as_root() { "user root root;\n" } else { "" };
    let main = format!("{user}{}", deploy("nginx/nginx.conf"));
    std::fs::write(dir.join("nginx.conf"), main).expect("write nginx.conf");
    let log = dir.join("error.log");
    let child = Command::new(bin)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg(&log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn nginx");
    (child, log)
}

/// Traefik with the file provider; returns it and its log.
fn spawn_traefik(bin: &Path, dir: &Path, port: u16, gateway: &str, upstream: &str) -> (Child, PathBuf) {
    let dynamic = deploy("traefik/dynamic.yml").replace("127.0.0.1:8080", gateway).replace("127.0.0.1:3000", upstream);
    let dynamic_path = dir.join("dynamic.yml");
    std::fs::write(&dynamic_path, dynamic).expect("write dynamic");
    let static_cfg = deploy("traefik/traefik.yml")
        .replace("127.0.0.1:80", &format!("127.0.0.1:{port}"))
        .replace("filename: dynamic.yml", &format!("filename: {}", dynamic_path.display()));
    std::fs::write(dir.join("traefik.yml"), static_cfg).expect("write traefik.yml");
    let log = dir.join("traefik.log");
    let child = Command::new(bin)
        .arg(format!("--configFile={}", dir.join("traefik.yml").display()))
        .current_dir(dir)
        .stdout(std::fs::File::create(&log).expect("log"))
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn traefik");
    (child, log)
}

/// Caddy with the Caddyfile adapter; returns it and its log.
fn spawn_caddy(bin: &Path, dir: &Path, port: u16, gateway: &str, upstream: &str) -> (Child, PathBuf) {
    let file = deploy("caddy/Caddyfile")
        .replace("127.0.0.1:8080", gateway)
        .replace("127.0.0.1:3000", upstream)
        // Any host name (as in deploy/), on a loopback port.
        .replace("http://:80 {", &format!("http://:{port} {{\n\tbind 127.0.0.1"));
    let path = dir.join("Caddyfile");
    std::fs::write(&path, file).expect("write Caddyfile");
    let log = dir.join("caddy.log");
    let child = Command::new(bin)
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&path)
        .current_dir(dir)
        .env("HOME", dir)
        .env("XDG_DATA_HOME", dir)
        .env("XDG_CONFIG_HOME", dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn caddy");
    (child, log)
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
    let bin = Proxy::Nginx.program()?;
    if let Some(missing) = SET_MISC_MODULES.iter().find(|m| !Path::new(m).is_file()) {
        super::skip::skip(&format!("{missing} is not installed (apt-get install libnginx-mod-http-set-misc)"));
        return None;
    }
    for _ in 0..10 {
        if let Launch::Up(proxy) = launch_ingress_nginx(&bin, free_port(), gateway, upstream) {
            return Some(proxy);
        }
    }
    panic!("ingress-nginx: ten free ports in a row were taken before it could bind them");
}

fn launch_ingress_nginx(bin: &Path, port: u16, gateway: &str, upstream: &str) -> Launch {
    let app_ingress = deploy("kubernetes/app-ingress.yaml");
    let (portal_host, app_host) = ingress_hosts();
    let dir = tempfile::tempdir().expect("tempdir");

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
    let child = Command::new(bin)
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
    let mut proxy = ProxyProcess { child, port, dir, name: "ingress-nginx" };
    match wait_listening(&mut proxy, &log) {
        Ok(()) => Launch::Up(proxy),
        Err(PortTaken) => Launch::PortTaken,
    }
}
