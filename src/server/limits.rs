//! The connection-level limits of `[server]`, as the server applies them.

use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use crate::config::ServerConfig;

/// Connection-level limits taken from `[server]`.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub shutdown_grace: Duration,
    /// Most connections one client address (IPv6: its /64) may hold.
    pub max_connections_per_client: usize,
    /// Peers exempt from the per-client cap (trusted proxies carry many clients).
    pub exempt: Arc<[IpNet]>,
    /// A connection with no new request for this long is closed gracefully.
    pub idle_timeout: Duration,
}

impl Limits {
    pub fn from_config(c: &ServerConfig) -> Limits {
        Limits {
            max_connections: c.max_connections,
            header_read_timeout: c.header_read_timeout,
            max_header_bytes: c.max_header_bytes,
            shutdown_grace: c.shutdown_grace,
            max_connections_per_client: c.max_connections_per_client,
            exempt: c.trusted_proxies.clone().into(),
            idle_timeout: c.idle_timeout,
        }
    }
}
