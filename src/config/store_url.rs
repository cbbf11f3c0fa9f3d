//! `store.url`, parsed: [`StoreUrl`], the value the config checks and the
//! store opens (the config never calls into the store). `memory://` names
//! the in-process store; the Redis forms, and what each means:
//!
//! - `redis://[user:password@]host:port/db`, `rediss://...`: one server (or a
//!   proxy in front of several), handed to the redis crate as it is.
//! - `redis+sentinel://[user:password@]h1:p1,h2:p2,.../MASTER_NAME[/DB]`: ask
//!   the Sentinels which server is the master of `MASTER_NAME`, and ask again
//!   after a failover. The credentials are those of the Redis servers;
//!   Sentinels that want their own take `?sentinel_username=&sentinel_password=`.
//! - `redis+cluster://[user:password@]h1:p1,h2:p2,...`: seed nodes of a Redis
//!   Cluster; the client learns the rest and follows slot moves.
//!
//! A `rediss` scheme (`rediss+sentinel`, `rediss+cluster`) speaks TLS to every
//! node, Sentinels included, verified against the system roots or
//! `store.ca_file`. Errors never echo the URL: it may hold a password.

/// Default ports when a host omits one.
const REDIS_PORT: u16 = 6379;
const SENTINEL_PORT: u16 = 26379;

/// Where the Redis data lives, as `store.url` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    /// One server; the URL goes to the redis crate unchanged.
    Standalone {
        url: String,
        tls: bool,
    },
    Sentinel(Sentinel),
    Cluster(Cluster),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sentinel {
    pub sentinels: Vec<(String, u16)>,
    pub master: String,
    pub db: i64,
    pub tls: bool,
    pub auth: Credentials,
    /// For the Sentinels themselves, when they require it.
    pub sentinel_auth: Credentials,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    pub nodes: Vec<(String, u16)>,
    pub tls: bool,
    pub auth: Credentials,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub username: Option<String>,
    pub password: Option<String>,
}

impl Topology {
    pub fn tls(&self) -> bool {
        match self {
            Topology::Standalone { tls, .. } => *tls,
            Topology::Sentinel(s) => s.tls,
            Topology::Cluster(c) => c.tls,
        }
    }

    /// `redis`, `redis-sentinel` or `redis-cluster`, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Topology::Standalone { .. } => "redis",
            Topology::Sentinel(_) => "redis-sentinel",
            Topology::Cluster(_) => "redis-cluster",
        }
    }
}

/// Where the store's state lives, as `store.url` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `memory://`: the gateway's own process (and `store.state_file`).
    Memory,
    /// A Redis server, a Sentinel-watched master, or a Cluster.
    Redis(Topology),
}

impl StoreUrl {
    /// Parses `store.url`; the error says what is wrong without repeating
    /// the URL (it may hold a password).
    pub fn parse(url: &str) -> Result<StoreUrl, String> {
        if url.starts_with("memory:") {
            return Ok(StoreUrl::Memory);
        }
        parse(url).map(StoreUrl::Redis)
    }
}

impl super::types::StoreConfig {
    /// `store.url`, parsed (validation has reported it if it does not parse).
    pub fn store_url(&self) -> Result<StoreUrl, String> {
        StoreUrl::parse(self.url.expose())
    }
}

/// Parses a Redis `store.url`; the error says what is wrong without repeating
/// the URL.
fn parse(url: &str) -> Result<Topology, String> {
    let (scheme, rest) = url.split_once("://").ok_or("not a URL (expected scheme://...)")?;
    let (tls, kind) = match scheme {
        "redis" => (false, None),
        "rediss" => (true, None),
        "redis+sentinel" => (false, Some(Kind::Sentinel)),
        "rediss+sentinel" => (true, Some(Kind::Sentinel)),
        "redis+cluster" => (false, Some(Kind::Cluster)),
        "rediss+cluster" => (true, Some(Kind::Cluster)),
        other => return Err(format!("scheme {other:?} is not a Redis scheme")),
    };
    let Some(kind) = kind else {
        // The redis crate parses single-server URLs; check here only that it will.
        let parsed = url::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err("must name a host".into());
        }
        return Ok(Topology::Standalone { url: url.to_owned(), tls });
    };

    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hosts) = authority.rsplit_once('@').unwrap_or(("", authority));
    let auth = credentials(userinfo)?;
    let default_port = if kind == Kind::Sentinel { SENTINEL_PORT } else { REDIS_PORT };
    let nodes = hosts.split(',').map(|h| host_port(h, default_port)).collect::<Result<Vec<_>, _>>()?;
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    let params = query_params(query)?;

    match kind {
        Kind::Sentinel => {
            let master = segments.next().ok_or("names no master: use redis+sentinel://h1:p1,h2:p2/MASTER_NAME")?;
            let master = percent_decode(master)?;
            let db = database(segments.next())?;
            if segments.next().is_some() {
                return Err("path must be /MASTER_NAME or /MASTER_NAME/DB".into());
            }
            let mut sentinel_auth = Credentials::default();
            for (k, v) in params {
                match k.as_str() {
                    "sentinel_username" => sentinel_auth.username = Some(v),
                    "sentinel_password" => sentinel_auth.password = Some(v),
                    other => return Err(format!("unknown parameter {other:?} (sentinel_username, sentinel_password)")),
                }
            }
            Ok(Topology::Sentinel(Sentinel { sentinels: nodes, master, db, tls, auth, sentinel_auth }))
        }
        Kind::Cluster => {
            if database(segments.next())? != 0 || segments.next().is_some() {
                return Err("a Redis Cluster has only database 0: leave the path empty".into());
            }
            if let Some((k, _)) = params.first() {
                return Err(format!("unknown parameter {k:?}"));
            }
            Ok(Topology::Cluster(Cluster { nodes, tls, auth }))
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sentinel,
    Cluster,
}

fn credentials(userinfo: &str) -> Result<Credentials, String> {
    if userinfo.is_empty() {
        return Ok(Credentials::default());
    }
    let (user, password) = match userinfo.split_once(':') {
        Some((u, p)) => (u, Some(p)),
        None => (userinfo, None),
    };
    let non_empty = |s: &str| -> Result<Option<String>, String> {
        if s.is_empty() { Ok(None) } else { percent_decode(s).map(Some) }
    };
    Ok(Credentials { username: non_empty(user)?, password: password.map(non_empty).transpose()?.flatten() })
}

fn host_port(s: &str, default_port: u16) -> Result<(String, u16), String> {
    if s.is_empty() {
        return Err("an empty host in the host list".into());
    }
    // [v6]:port, host:port, or a bare host.
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or("an IPv6 host lacks its closing ']'")?;
        (h, after.strip_prefix(':'))
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return Err(format!("{host:?} is not a host"));
    }
    let port = match port {
        None => default_port,
        Some(p) => p.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(|| format!("{p:?} is not a port"))?,
    };
    Ok((host.to_owned(), port))
}

fn database(segment: Option<&str>) -> Result<i64, String> {
    match segment {
        None => Ok(0),
        Some(s) => s.parse::<i64>().ok().filter(|&n| n >= 0).ok_or_else(|| format!("{s:?} is not a database number")),
    }
}

fn query_params(query: &str) -> Result<Vec<(String, String)>, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

/// `%XX` escapes to bytes; the result must be UTF-8. (`+` stays a plus: this
/// is a URL's user info or path, not a form.)
fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok()).ok_or("a bad %-escape")?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "a %-escape that is not UTF-8".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(list: &[(&str, u16)]) -> Vec<(String, u16)> {
        list.iter().map(|(h, p)| ((*h).to_owned(), *p)).collect()
    }

    #[test]
    fn memory_names_the_in_process_store() {
        assert_eq!(StoreUrl::parse("memory://"), Ok(StoreUrl::Memory));
        let url = "redis://h:6379/0";
        assert_eq!(StoreUrl::parse(url), Ok(StoreUrl::Redis(Topology::Standalone { url: url.into(), tls: false })));
    }

    #[test]
    fn single_server_urls_pass_through_unchanged() {
        let url = "rediss://user:pw@redis.internal:6380/2";
        assert_eq!(parse(url), Ok(Topology::Standalone { url: url.into(), tls: true }));
        assert!(parse("redis:///0").is_err(), "no host");
    }

    #[test]
    fn a_sentinel_url_names_its_sentinels_master_and_database() {
        let t = parse("redis+sentinel://:s%40cret@10.0.0.1:26379,10.0.0.2,[::1]:26380/mymaster/3").unwrap();
        let Topology::Sentinel(s) = t else { panic!("sentinel") };
        assert_eq!(s.sentinels, nodes(&[("10.0.0.1", 26379), ("10.0.0.2", 26379), ("::1", 26380)]));
        assert_eq!((s.master.as_str(), s.db, s.tls), ("mymaster", 3, false));
        assert_eq!(s.auth, Credentials { username: None, password: Some("s@cret".into()) });
        assert_eq!(s.sentinel_auth, Credentials::default());

        let Topology::Sentinel(s) =
            parse("rediss+sentinel://app:pw@h1:1,h2:2/m?sentinel_username=sen&sentinel_password=x%26y").unwrap()
        else {
            panic!("sentinel")
        };
        assert!(s.tls);
        assert_eq!(s.db, 0);
        assert_eq!(s.auth.username.as_deref(), Some("app"));
        assert_eq!(s.sentinel_auth, Credentials { username: Some("sen".into()), password: Some("x&y".into()) });
    }

    #[test]
    fn a_cluster_url_lists_seed_nodes() {
        let Topology::Cluster(c) = parse("redis+cluster://h1:7000,h2:7001,h3").unwrap() else { panic!("cluster") };
        assert_eq!(c.nodes, nodes(&[("h1", 7000), ("h2", 7001), ("h3", 6379)]));
        assert!(!c.tls);
        assert!(parse("rediss+cluster://h1:7000/0").is_ok());
    }

    #[test]
    fn bad_urls_say_what_is_wrong_without_repeating_the_password() {
        for (url, says) in [
            ("redis+sentinel://h1:26379,h2:26379", "names no master"),
            ("redis+sentinel://h1:26379/m/x", "not a database number"),
            ("redis+sentinel://h1:26379/m/1/2", "path must be"),
            ("redis+sentinel://h1:26379/m?password=x", "unknown parameter"),
            ("redis+cluster://h1:7000/1", "only database 0"),
            ("redis+cluster://h1:7000,,h2", "empty host"),
            ("redis+cluster://h1:seventy", "not a port"),
            ("redis+cluster://h1:0", "not a port"),
            ("redis+cluster://:hunter2@[::1:7000", "closing"),
            ("redis+mesh://h1", "not a Redis scheme"),
            ("redis+cluster://u:%zz@h1", "bad %-escape"),
        ] {
            let e = parse(url).expect_err(url);
            assert!(e.contains(says), "{url}: {e}");
            assert!(!e.contains("hunter2"), "{url}: {e}");
        }
    }
}
