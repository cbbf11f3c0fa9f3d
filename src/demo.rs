//! `portcullis demo`: the embedded defaults, a demo user with a random password,
//! mail printed to the console, and a built-in "whoami" upstream that echoes the
//! request and the identity headers it received.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use http::{Request, StatusCode, header};
use hyper::body::Incoming;

use crate::auth::users::{self, Users};
use crate::body::{Body, Response};
use crate::config::{Config, MailTransport, Secret};
use crate::server::{ConnInfo, Handler, Limits, Listener};
use crate::shutdown::Shutdown;

/// The demo's starting point before env overrides: everything embedded. The
/// secret is not set here: the config layer serialises its defaults, and a
/// secret serialises as a placeholder (so that it never prints); see
/// [`give_a_secret`].
pub fn base_config() -> Config {
    let mut c = Config::default();
    c.mail.transport = MailTransport::Console;
    c.server.metrics_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    c
}

/// A random secret for a demo whose config and environment set none.
pub fn give_a_secret(c: &mut Config) {
    if c.auth.secret.is_empty() {
        let mut secret = [0u8; 48];
        rand::fill(&mut secret);
        c.auth.secret = Secret::new(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, secret));
    }
}

/// When the public URL was left at its default, it follows `server.listen`
/// (changed, say, by `PORTCULLIS_SERVER__LISTEN`), so the printed link,
/// cookies and the CSRF origin check all name the address the gateway really
/// answers on. An IPv4 loopback address is named `localhost`: browsers treat
/// it as a secure context, and a passkey's relying party must be a name, not
/// an address, so passkeys work in the demo.
pub fn public_url_follows_listen(server: &mut crate::config::ServerConfig) {
    let defaults = crate::config::ServerConfig::default();
    if server.public_url != defaults.public_url || server.listen.port() == 0 {
        return;
    }
    let host = match server.listen.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() || v4.is_loopback() => "localhost".to_owned(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => "[::1]".to_owned(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        ip => ip.to_string(),
    };
    if let Ok(url) = url::Url::parse(&format!("http://{host}:{}/", server.listen.port())) {
        server.public_url = url;
    }
}

/// The demo user, with a fresh random password.
pub struct DemoUser {
    pub name: &'static str,
    pub password: String,
    pub users: Users,
}

pub fn demo_user() -> Result<DemoUser, crate::app::StartError> {
    let password = crate::session::new_token()[..16].to_string();
    let hash = crate::auth::password::hash_password(&password)?;
    let mut file = users::UsersFile { users: BTreeMap::new() };
    file.users.insert(
        "demo".into(),
        users::UserEntry {
            email: "demo@example.com".into(),
            display_name: Some("Demo User".into()),
            password: hash,
            groups: vec!["demo".into()],
            disabled: false,
        },
    );
    let text = toml::to_string(&file).map_err(|e| crate::app::StartError::Config(e.to_string()))?;
    let path = Path::new("(demo users)");
    let dir = users::parse(path, &text)?;
    Ok(DemoUser { name: "demo", password, users: Users::read_only(path, dir, "demo") })
}

/// Starts the whoami upstream on a free loopback port; returns its address.
pub async fn start_whoami(shutdown: Shutdown) -> Result<std::net::SocketAddr, crate::server::ServerError> {
    let listener = Listener::bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), None).await?;
    let addr = listener.local_addr();
    let limits = Limits {
        max_connections: 1024,
        header_read_timeout: std::time::Duration::from_secs(10),
        max_header_bytes: 64 * 1024,
        shutdown_grace: std::time::Duration::from_secs(1),
        max_connections_per_client: 1024,
        exempt: Vec::new().into(),
        idle_timeout: std::time::Duration::from_secs(120),
    };
    tokio::spawn(crate::server::serve(listener, Arc::new(Whoami), limits, shutdown));
    Ok(addr)
}

/// Echoes method, path and headers: JSON, or a small page for browsers.
pub struct Whoami;

impl Handler for Whoami {
    async fn handle(self: Arc<Self>, req: Request<Incoming>, conn: ConnInfo) -> Response {
        let headers: BTreeMap<String, String> = req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let echo = serde_json::json!({
            "service": "portcullis demo whoami",
            "method": req.method().as_str(),
            "path": req.uri().path_and_query().map_or("/", |p| p.as_str()),
            "peer": conn.peer.to_string(),
            "headers": headers,
        });
        let browser = crate::reply::wants_html(req.headers());
        let (ctype, body) = if browser {
            let rows: String =
                headers.iter().map(|(k, v)| format!("<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(v))).collect();
            let user = headers.get("remote-user").map_or("(nobody)", String::as_str);
            (
                "text/html; charset=utf-8",
                format!(
                    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>whoami</title></head>\
                     <body><h1>Hello, {}</h1><p>This page is the demo upstream. It received:</p>\
                     <p><code>{} {}</code></p><table>{rows}</table>\
                     <p><a href=\"/_auth/account\">Your account</a> · <a href=\"/_auth/logout\">Log out</a></p></body></html>",
                    escape(user),
                    escape(req.method().as_str()),
                    escape(req.uri().path()),
                ),
            )
        } else {
            ("application/json", format!("{echo:#}\n"))
        };
        let mut r = Response::new(Body::full(body));
        *r.status_mut() = StatusCode::OK;
        r.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static(ctype));
        r
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServerConfig;

    #[test]
    fn public_url_follows_a_changed_listen_address_only_when_left_default() {
        let mut s = ServerConfig::default();
        public_url_follows_listen(&mut s);
        assert_eq!(s.public_url.as_str(), "http://localhost:8080/", "loopback is named, for passkeys");
        let (rp_id, _) = crate::auth::passkey::relying_party(&s.public_url, None).expect("passkeys are on");
        assert_eq!(rp_id, "localhost");

        let mut s = ServerConfig { listen: "0.0.0.0:9000".parse().unwrap(), ..ServerConfig::default() };
        public_url_follows_listen(&mut s);
        assert_eq!(s.public_url.as_str(), "http://localhost:9000/");

        let mut s = ServerConfig { listen: "192.0.2.7:9000".parse().unwrap(), ..ServerConfig::default() };
        public_url_follows_listen(&mut s);
        assert_eq!(s.public_url.as_str(), "http://192.0.2.7:9000/");

        let mut s = ServerConfig { listen: "[::1]:9000".parse().unwrap(), ..ServerConfig::default() };
        public_url_follows_listen(&mut s);
        assert_eq!(s.public_url.as_str(), "http://[::1]:9000/");

        let chosen = url::Url::parse("https://auth.example.com/").unwrap();
        let mut s = ServerConfig {
            listen: "0.0.0.0:9000".parse().unwrap(),
            public_url: chosen.clone(),
            ..ServerConfig::default()
        };
        public_url_follows_listen(&mut s);
        assert_eq!(s.public_url, chosen, "an explicit public_url is kept");
    }
}
