//! `portcullis init`: a starting point an operator can run at once. It writes a
//! short, commented `portcullis.toml` with a fresh random secret and an empty
//! users file, both readable by their owner only, and never overwrites either.
//!
//! Paths inside the generated config are absolute, so the config works from any
//! working directory (and whether relative paths are read against the working
//! directory or the config file's own).

use std::fs::OpenOptions;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use base64::Engine;
use url::Url;

/// Bytes of randomness in a generated `auth.secret` (384 bits; the minimum is 256).
const SECRET_BYTES: usize = 48;

/// The upstream a fresh config protects unless told otherwise.
pub const DEFAULT_UPSTREAM: &str = "http://127.0.0.1:3000";
/// The address users type unless told otherwise: the gateway itself, on loopback.
pub const DEFAULT_PUBLIC_URL: &str = "http://127.0.0.1:8080";
/// Where Prometheus scrapes unless told otherwise (one instance per host;
/// a second one needs `--metrics-listen`).
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9090";

/// What `init` writes, and where.
#[derive(Debug, Clone)]
pub struct InitRequest {
    pub dir: PathBuf,
    pub upstream: Url,
    pub public_url: Url,
    /// `--listen`; else derived from the public URL ([`listen_for`]).
    pub listen: Option<SocketAddr>,
    pub metrics_listen: SocketAddr,
}

impl InitRequest {
    /// Where the gateway will listen.
    pub fn listen(&self) -> SocketAddr {
        self.listen.unwrap_or_else(|| listen_for(&self.public_url))
    }
}

/// The files `init` created.
#[derive(Debug, Clone)]
pub struct Initialized {
    pub config: PathBuf,
    pub users: PathBuf,
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub public_url: Url,
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{0} already exists; init never overwrites a file (move it away or pick another directory)")]
    Exists(PathBuf),
    #[error("{flag} {url:?}: {why}")]
    BadUrl { flag: &'static str, url: String, why: &'static str },
    #[error("{flag} {value:?}: not an address and port like 127.0.0.1:8080 or 0.0.0.0:8080")]
    BadAddress { flag: &'static str, value: String },
    #[error("--metrics-listen {0}: must differ from --listen (metrics never share the public listener)")]
    SameAddress(SocketAddr),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the generated configuration does not load: {0}")]
    Invalid(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> InitError + '_ {
    move |source| InitError::Io { path: path.to_path_buf(), source }
}

/// Parses an `--upstream` or `--public-url` value: an absolute http(s) URL with a host.
pub fn parse_url(flag: &'static str, text: &str) -> Result<Url, InitError> {
    let bad = |why| InitError::BadUrl { flag, url: text.to_string(), why };
    let url = Url::parse(text).map_err(|_| bad("not an absolute URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("must start with http:// or https://"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("must name a host"));
    }
    Ok(url)
}

/// Parses a `--listen` or `--metrics-listen` value: an IP address and a port.
pub fn parse_address(flag: &'static str, text: &str) -> Result<SocketAddr, InitError> {
    text.parse().map_err(|_| InitError::BadAddress { flag, value: text.to_string() })
}

/// A fresh `auth.secret`: base64 of [`SECRET_BYTES`] bytes from the OS's CSPRNG.
pub fn new_secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::fill(&mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Whether users reach the gateway itself at `public_url`: plain http on a
/// loopback address (the try-it-out case).
fn reached_directly(public_url: &Url) -> bool {
    let loopback = match public_url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    loopback && public_url.scheme() == "http"
}

/// Where the gateway listens for a given public URL. When users reach the
/// gateway directly on loopback, it listens on that very port; otherwise a
/// proxy or load balancer forwards to 127.0.0.1:8080.
fn listen_for(public_url: &Url) -> SocketAddr {
    match public_url.port_or_known_default() {
        Some(port) if reached_directly(public_url) => SocketAddr::from(([127, 0, 0, 1], port)),
        _ => SocketAddr::from(([127, 0, 0, 1], 8080)),
    }
}

/// A TOML basic string holding `s`.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The origin of a URL without a trailing slash (`public_url` names an origin).
fn origin(url: &Url) -> String {
    url.as_str().trim_end_matches('/').to_string()
}

/// The commented starter configuration.
pub fn starter_config(req: &InitRequest, secret: &str, users: &Path, state: &Path) -> String {
    format!(
        r#"# Portcullis configuration, written by `portcullis init`.
#
# Only the keys a first deployment changes are here; every other key keeps its
# default. The reference with every key and its meaning is config/portcullis.toml
# in the source tree. Environment variables override this file:
# PORTCULLIS_<SECTION>__<KEY>, e.g. PORTCULLIS_STORE__URL=redis://127.0.0.1:6379/0.
# `portcullis check-config --config <this file>` validates it and prints the result.

[server]
# Where the gateway accepts connections.
listen = {listen}
# The address users type. Its scheme decides Secure cookies; links in e-mails
# point here. Behind nginx, Traefik or Caddy this is the proxy's public address.
public_url = {public_url}
# Only these peers may set X-Forwarded-* (add your proxy's address).
trusted_proxies = ["127.0.0.1/32", "::1/128"]
# Prometheus scrapes /metrics here; never on the public listener. A second
# instance on this host needs a port of its own.
metrics_listen = {metrics_listen}

# The application to protect. Add one [[upstream]] with `host = "..."` per
# further application; the entry without host is the default.
[[upstream]]
url = {upstream}

[auth]
# Add users with: portcullis user add NAME --email ADDRESS --users-file <this path>
users_file = {users}
# Keys CSRF tokens and code hashes. Generated for this installation: keep it
# secret, and the same on every replica. Changing it voids codes in flight and
# every user's backup codes.
secret = {secret}

[store]
# memory:// keeps sessions in this process (lost on restart); use
# redis://host:6379/0 for restarts without logging everyone out, or for replicas.
url = "memory://"
# Where the memory store keeps each user's 2FA enrolment and backup codes.
state_file = {state}

[mail]
# Codes are printed on the gateway's console until SMTP is set up:
# transport = "smtp", smtp_host = "smtp.example.com", smtp_port = 587,
# smtp_username = "...", smtp_password = "...".
transport = "console"
from = "Portcullis <noreply@localhost>"

[access_control]
# bypass | one_factor | two_factor | deny. Rules (first match wins) can relax or
# tighten it per domain, path, method, network, group or user:
# [[access_control.rules]]
# path = "^/health$"
# policy = "bypass"
default_policy = "two_factor"
"#,
        listen = toml_string(&req.listen().to_string()),
        metrics_listen = toml_string(&req.metrics_listen.to_string()),
        public_url = toml_string(&origin(&req.public_url)),
        upstream = toml_string(req.upstream.as_str()),
        users = toml_string(&users.display().to_string()),
        secret = toml_string(secret),
        state = toml_string(&state.display().to_string()),
    )
}

/// Opens a new file readable and writable by its owner only; fails if it exists.
fn create_private(path: &Path) -> Result<std::fs::File, InitError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => InitError::Exists(path.to_path_buf()),
        _ => InitError::Io { path: path.to_path_buf(), source: e },
    })
}

/// Writes `portcullis.toml` and an empty `users.toml` into `req.dir` (created if
/// missing). Refuses before writing anything when either file exists.
pub fn init(req: &InitRequest) -> Result<Initialized, InitError> {
    if req.metrics_listen == req.listen() {
        return Err(InitError::SameAddress(req.metrics_listen));
    }
    std::fs::create_dir_all(&req.dir).map_err(io(&req.dir))?;
    let dir = std::fs::canonicalize(&req.dir).map_err(io(&req.dir))?;
    let config = dir.join("portcullis.toml");
    let users = dir.join("users.toml");
    let state = dir.join("state.json");
    for path in [&config, &users] {
        if path.exists() {
            return Err(InitError::Exists(path.clone()));
        }
    }
    let text = starter_config(req, &new_secret(), &users, &state);
    // The gateway must accept what it is given; check before anything is written.
    crate::config::load_from_figment(
        figment::Figment::from(figment::providers::Serialized::defaults(crate::config::Config::default()))
            .merge(<figment::providers::Toml as figment::providers::Format>::string(&text)),
        None,
        false,
    )
    .map_err(|e| InitError::Invalid(e.to_string()))?;

    let mut users_file = create_private(&users)?;
    users_file
        .write_all(b"# Users, one [users.NAME] table each. Add them with `portcullis user add`.\n")
        .map_err(io(&users))?;
    let mut config_file = match create_private(&config) {
        Ok(f) => f,
        Err(e) => {
            // Leave the directory as it was found.
            let _ = std::fs::remove_file(&users);
            return Err(e);
        }
    };
    config_file.write_all(text.as_bytes()).and_then(|()| config_file.sync_all()).map_err(io(&config))?;
    users_file.sync_all().map_err(io(&users))?;
    Ok(Initialized {
        config,
        users,
        listen: req.listen(),
        metrics_listen: req.metrics_listen,
        public_url: req.public_url.clone(),
    })
}

/// A path as a shell word: quoted when it holds anything but safe characters.
fn shell_word(path: &Path) -> String {
    let s = path.display().to_string();
    if s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+:@%".contains(&b)) {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// What to run next, printed after the files are written.
pub fn next_steps(done: &Initialized) -> String {
    let config = shell_word(&done.config);
    let public = origin(&done.public_url);
    let listen = done.listen;
    let open = if reached_directly(&done.public_url) && done.public_url.port_or_known_default() == Some(listen.port()) {
        format!(
            "Then open {public} (the gateway listens there); login codes are printed\non the serve console until [mail] is set up for SMTP.\n"
        )
    } else {
        // A public URL the gateway does not answer itself: say why opening it
        // does nothing yet, and how to see the gateway work meanwhile.
        let health = format!("http://{}/_auth/healthz", local(listen));
        format!(
            "The gateway listens on {listen}; {public} reaches it only once your proxy (nginx,\n\
             Traefik, Caddy, a load balancer) forwards it there (docs/quickstart.md, section 5).\n\
             Until then, check the gateway itself: curl -s {health}\n\
             Login codes are printed on the serve console until [mail] is set up for SMTP.\n"
        )
    };
    format!(
        "Wrote {config} and {users} (mode 0600).\n\
         \n\
         Next:\n  \
           portcullis user add alice --email alice@example.com --users-file {users}\n  \
           portcullis check-config --config {config}\n  \
           portcullis serve --config {config}\n\
         \n\
         {open}\
         Prometheus scrapes http://{metrics}/metrics.\n",
        users = shell_word(&done.users),
        metrics = local(done.metrics_listen),
    )
}

/// An address to reach a listener from this host: a wildcard listener
/// (0.0.0.0, ::) is reached on loopback.
fn local(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => SocketAddr::from(([127, 0, 0, 1], addr.port())),
        ip if ip.is_unspecified() => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port())),
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(public_url: &str) -> InitRequest {
        InitRequest {
            dir: PathBuf::from("/srv/portcullis"),
            upstream: parse_url("--upstream", DEFAULT_UPSTREAM).unwrap(),
            public_url: parse_url("--public-url", public_url).unwrap(),
            listen: None,
            metrics_listen: parse_address("--metrics-listen", DEFAULT_METRICS_LISTEN).unwrap(),
        }
    }

    #[test]
    fn secrets_are_fresh_and_long_enough() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert_eq!(base64::engine::general_purpose::STANDARD.decode(&a).unwrap().len(), SECRET_BYTES);
        assert!(a.len() >= 32);
    }

    #[test]
    fn a_loopback_public_url_is_also_where_the_gateway_listens() {
        let listen = |url: &str| request(url).listen().to_string();
        assert_eq!(listen("http://127.0.0.1:9000"), "127.0.0.1:9000");
        assert_eq!(listen("http://localhost:8443/"), "127.0.0.1:8443");
        assert_eq!(listen("https://auth.example.com"), "127.0.0.1:8080");
        assert_eq!(listen("https://127.0.0.1:9000"), "127.0.0.1:8080");
    }

    #[test]
    fn the_starter_config_loads_and_says_what_was_asked() {
        let req = request("https://auth.example.com/");
        let text = starter_config(&req, &new_secret(), Path::new("/srv/p/users.toml"), Path::new("/srv/p/s.json"));
        let fig = figment::Figment::from(figment::providers::Serialized::defaults(crate::config::Config::default()))
            .merge(<figment::providers::Toml as figment::providers::Format>::string(&text));
        let c = crate::config::load_from_figment(fig, None, false).unwrap().config;
        assert_eq!(c.server.public_url.as_str(), "https://auth.example.com/");
        assert_eq!(c.upstream[0].url.as_str(), "http://127.0.0.1:3000/");
        assert_eq!(c.auth.users_file, Path::new("/srv/p/users.toml"));
        assert_eq!(c.store.state_file.as_deref(), Some(Path::new("/srv/p/s.json")));
    }

    #[test]
    fn the_listeners_are_written_as_asked() {
        let mut req = request("https://app.example.com");
        req.listen = Some(parse_address("--listen", "0.0.0.0:8181").unwrap());
        req.metrics_listen = parse_address("--metrics-listen", "127.0.0.1:9191").unwrap();
        let text = starter_config(&req, &new_secret(), Path::new("/u.toml"), Path::new("/s.json"));
        assert!(text.contains("listen = \"0.0.0.0:8181\""), "{text}");
        assert!(text.contains("metrics_listen = \"127.0.0.1:9191\""), "{text}");
        let e = parse_address("--listen", "localhost").unwrap_err().to_string();
        assert!(e.starts_with("--listen \"localhost\": not an address"), "{e}");
        req.metrics_listen = req.listen.unwrap();
        let dir = tempfile::tempdir().unwrap();
        req.dir = dir.path().to_path_buf();
        assert!(init(&req).unwrap_err().to_string().starts_with("--metrics-listen 0.0.0.0:8181: must differ"));
    }

    #[test]
    fn a_public_url_the_gateway_does_not_answer_is_explained() {
        let done = |url: &str, listen: &str| Initialized {
            config: PathBuf::from("/p/portcullis.toml"),
            users: PathBuf::from("/p/users.toml"),
            listen: listen.parse().unwrap(),
            metrics_listen: "127.0.0.1:9090".parse().unwrap(),
            public_url: Url::parse(url).unwrap(),
        };
        let direct = next_steps(&done("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(direct.contains("Then open http://127.0.0.1:8080 (the gateway listens there)"), "{direct}");
        let proxied = next_steps(&done("https://app.example.com", "0.0.0.0:8080"));
        assert!(proxied.contains("https://app.example.com reaches it only once your proxy"), "{proxied}");
        assert!(proxied.contains("curl -s http://127.0.0.1:8080/_auth/healthz"), "{proxied}");
        assert!(!proxied.contains("Then open"), "{proxied}");
    }

    #[test]
    fn urls_without_a_scheme_or_host_are_refused_naming_the_flag() {
        for bad in ["127.0.0.1:3000", "ftp://example.com", "app.example.com", "http://"] {
            let e = parse_url("--upstream", bad).unwrap_err().to_string();
            assert!(e.starts_with("--upstream"), "{e}");
        }
    }

    #[test]
    fn odd_paths_are_quoted_for_the_shell() {
        assert_eq!(shell_word(Path::new("/srv/p/users.toml")), "/srv/p/users.toml");
        assert_eq!(shell_word(Path::new("/srv/my dir/it's")), r"'/srv/my dir/it'\''s'");
    }
}
