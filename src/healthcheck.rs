//! `portcullis healthcheck`: asks a running gateway for `{prefix}/healthz` and
//! exits 0 only on a 200. Container images without a shell (or curl) run it as
//! their exec-form health check; the address comes from the same configuration
//! the gateway reads, so a changed listener or prefix needs no second edit.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("--url {0:?}: {1}")]
    BadUrl(String, &'static str),
    #[error(
        "server.tls_cert is set: the listener speaks HTTPS, which this probe does not; \
         give --url of a plain-HTTP address"
    )]
    TlsListener,
    #[error("{url}: {source}")]
    Unreachable { url: String, source: std::io::Error },
    #[error("{url}: not an HTTP response")]
    Garbled { url: String },
    #[error("{url}: status {status}")]
    Unhealthy { url: String, status: u16 },
}

/// The liveness URL of the gateway `config` describes, as seen from the same
/// host: an unspecified listen address (0.0.0.0, ::) is reached on loopback.
pub fn local_healthz_url(config: &Config) -> Result<String, HealthError> {
    if config.server.tls_cert.is_some() {
        return Err(HealthError::TlsListener);
    }
    let listen = config.server.listen;
    let ip = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let prefix = config.auth.prefix.trim_end_matches('/');
    Ok(format!("http://{}{prefix}/healthz", SocketAddr::new(ip, listen.port())))
}

/// GETs `url` (plain HTTP) and returns Ok when it answers 200 within `timeout`.
pub fn probe(url: &str, timeout: Duration) -> Result<(), HealthError> {
    let parsed = url::Url::parse(url).map_err(|_| HealthError::BadUrl(url.into(), "not an absolute URL"))?;
    if parsed.scheme() != "http" {
        return Err(HealthError::BadUrl(url.into(), "only http:// is probed"));
    }
    let host = parsed.host_str().ok_or(HealthError::BadUrl(url.into(), "no host"))?;
    let addrs =
        parsed.socket_addrs(|| Some(80)).map_err(|source| HealthError::Unreachable { url: url.into(), source })?;
    let unreachable = |source| HealthError::Unreachable { url: url.to_string(), source };
    let addr =
        addrs.first().ok_or_else(|| unreachable(std::io::Error::new(std::io::ErrorKind::NotFound, "no address")))?;
    let mut stream = TcpStream::connect_timeout(addr, timeout).map_err(unreachable)?;
    stream.set_read_timeout(Some(timeout)).map_err(unreachable)?;
    stream.set_write_timeout(Some(timeout)).map_err(unreachable)?;
    let target = match parsed.query() {
        Some(q) => format!("{}?{q}", parsed.path()),
        None => parsed.path().to_string(),
    };
    let authority = match parsed.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let head = format!(
        "GET {target} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: portcullis-healthcheck\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).map_err(unreachable)?;
    // The status line is all that matters; read only as far as it.
    let mut buf = [0u8; 64];
    let mut len = 0;
    while len < buf.len() && !buf[..len].contains(&b'\n') {
        match stream.read(&mut buf[len..]).map_err(unreachable)? {
            0 => break,
            n => len += n,
        }
    }
    let status = status_code(&buf[..len]).ok_or_else(|| HealthError::Garbled { url: url.into() })?;
    if status != 200 {
        return Err(HealthError::Unhealthy { url: url.into(), status });
    }
    Ok(())
}

/// The code of an `HTTP/1.x NNN ...` status line.
fn status_code(head: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(head).ok()?.lines().next()?;
    let mut parts = line.split(' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    (code.len() == 3).then(|| code.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_listener_is_probed_on_loopback() {
        let mut c = Config::default();
        c.server.listen = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(local_healthz_url(&c).unwrap(), "http://127.0.0.1:8080/_auth/healthz");
        c.server.listen = "[::]:9000".parse().unwrap();
        c.auth.prefix = "/auth/".into();
        assert_eq!(local_healthz_url(&c).unwrap(), "http://[::1]:9000/auth/healthz");
        c.server.listen = "10.1.2.3:80".parse().unwrap();
        assert_eq!(local_healthz_url(&c).unwrap(), "http://10.1.2.3:80/auth/healthz");
    }

    #[test]
    fn status_lines_are_read_strictly() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(status_code(b"HTTP/1.0 503 Service Unavailable\r\n"), Some(503));
        assert_eq!(status_code(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_code(b"HTTP/1.1 2000 OK\r\n"), None);
        assert_eq!(status_code(b""), None);
    }
}
