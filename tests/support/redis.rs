//! Private Redis deployments for tests and benchmarks, on free loopback ports,
//! made of `redis-server` child processes (not daemonized) so a test can kill,
//! freeze or restart one. Never the system Redis on 6379. Dropping a handle
//! kills its processes.
//!
//! - `RedisServer`: one server (optionally TLS-only, or a replica, or a
//!   cluster node); `kill` (SIGKILL), `pause`/`resume` (SIGSTOP/SIGCONT).
//! - `SentinelSetup`: a master, one replica and three `redis-server --sentinel`
//!   processes watching it with short timeouts, so a failover takes seconds.
//! - `RedisCluster`: three masters joined by `redis-cli --cluster create`.
//!
//! Everything here comes with Debian's redis-server package (sentinel mode,
//! cluster mode, TLS and redis-cli).
#![allow(dead_code)] // each test binary uses a different part

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::eventually::{poll_blocking, poll_blocking_every};

/// A running (or deliberately stopped) redis-server.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// Options beyond the common ones (TLS, replication, cluster, sentinel).
    extra: Vec<String>,
    /// A config file to start from (sentinel mode needs one it can rewrite).
    config_file: Option<std::path::PathBuf>,
    tls: bool,
}

impl RedisServer {
    /// Starts a server on a free port, or says why it could not.
    pub fn start() -> Result<RedisServer, String> {
        Self::start_with(&[])
    }

    /// Starts a server with extra `--option value` arguments on a free port.
    pub fn start_with(extra: &[String]) -> Result<RedisServer, String> {
        retry_on_free_ports(|port| RedisServer::spawn(port, extra.to_vec(), None, false))
    }

    /// Starts a server on `port`.
    pub fn start_on(port: u16) -> Result<RedisServer, String> {
        RedisServer::spawn(port, Vec::new(), None, false)
    }

    /// A server that speaks only TLS, with the given certificate and key (PEM).
    pub fn start_tls(cert: &Path, key: &Path) -> Result<RedisServer, String> {
        let extra = vec![
            "--tls-cert-file".into(),
            cert.display().to_string(),
            "--tls-key-file".into(),
            key.display().to_string(),
            "--tls-ca-cert-file".into(),
            cert.display().to_string(),
            "--tls-auth-clients".into(),
            "no".into(),
        ];
        retry_on_free_ports(|port| RedisServer::spawn(port, extra.clone(), None, true))
    }

    fn spawn(
        port: u16,
        extra: Vec<String>,
        config_file: Option<std::path::PathBuf>,
        tls: bool,
    ) -> Result<RedisServer, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        let mut server = RedisServer { port, child: None, dir, extra, config_file, tls };
        server.restart()?;
        Ok(server)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        if self.tls {
            format!("rediss://localhost:{}/0", self.port)
        } else {
            format!("redis://127.0.0.1:{}/0", self.port)
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server (SIGKILL: no goodbye to clients).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open and nothing answers.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(pid) = self.pid() {
            let ok = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
            assert!(ok.is_ok_and(|s| s.success()), "kill -{sig} {pid}");
        }
    }

    /// (Re)starts the server on the same port and waits until it accepts connections.
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        let mut cmd = Command::new("redis-server");
        if let Some(conf) = &self.config_file {
            cmd.arg(conf);
        }
        let port = self.port.to_string();
        let (plain_port, tls_port) = if self.tls { ("0", port.as_str()) } else { (port.as_str(), "0") };
        cmd.args(["--port", plain_port])
            .args(["--bind", "127.0.0.1"])
            .args(["--loglevel", "warning"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra);
        if self.tls {
            cmd.args(["--tls-port", tls_port]);
        }
        if !self.extra.iter().any(|a| a == "--sentinel") {
            cmd.args(["--save", ""]).args(["--appendonly", "no"]);
        }
        let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().map_err(|e| {
            match e.kind() {
                std::io::ErrorKind::NotFound => "redis-server is not on PATH".to_string(),
                _ => format!("cannot start redis-server: {e}"),
            }
        })?;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let up = poll_blocking(Duration::from_secs(10), || match child.try_wait() {
            Ok(Some(status)) => Some(Err(format!("redis-server on port {} exited: {status}", self.port))),
            _ => TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok().then_some(Ok(())),
        });
        match up {
            Some(Ok(())) => {
                self.child = Some(child);
                Ok(())
            }
            Some(Err(exited)) => Err(exited),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!("redis-server on port {} did not come up", self.port))
            }
        }
    }

    /// Runs one command on this (plain-text) server and returns its reply.
    pub fn cmd<T: ::redis::FromRedisValue>(&self, args: &[&str]) -> Result<T, String> {
        query(&self.addr(), args)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs one command against `host:port` (plain text) with a short timeout.
pub fn query<T: ::redis::FromRedisValue>(addr: &str, args: &[&str]) -> Result<T, String> {
    let client = ::redis::Client::open(format!("redis://{addr}/")).map_err(|e| e.to_string())?;
    let mut con = client.get_connection_with_timeout(Duration::from_secs(2)).map_err(|e| format!("{addr}: {e}"))?;
    let _ = con.set_read_timeout(Some(Duration::from_secs(5)));
    let mut cmd = ::redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(&mut con).map_err(|e| format!("{addr} {}: {e}", args[0]))
}

fn retry_on_free_ports(mut start: impl FnMut(u16) -> Result<RedisServer, String>) -> Result<RedisServer, String> {
    let mut last_err = String::new();
    // A freshly freed port can be taken by someone else before redis binds it.
    for _ in 0..5 {
        match free_port().and_then(&mut start) {
            Ok(s) => return Ok(s),
            Err(e) => last_err = e,
        }
    }
    Err(last_err)
}

/// Asks `check` until it holds or `limit` passes (blocking: the fixtures
/// start servers from plain threads).
pub fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) -> Result<(), String> {
    poll_blocking_every(Duration::from_millis(50), limit, || check().then_some(()))
        .ok_or_else(|| format!("timed out after {limit:?} waiting for {what}"))
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| format!("local_addr: {e}"))
}

/// True when the environment demands real services (CI): then a missing
/// redis-server is a failure, not a skip.
pub fn services_required() -> bool {
    std::env::var("PORTCULLIS_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// `Some(value)`, or None after saying why `test` is skipped; panics instead
/// when `PORTCULLIS_REQUIRE_SERVICES=1`.
pub fn or_skip<T>(test: &str, started: Result<T, String>) -> Option<T> {
    match started {
        Ok(s) => Some(s),
        Err(why) if !services_required() => {
            eprintln!("SKIPPED {test}: {why} (set PORTCULLIS_REQUIRE_SERVICES=1 to fail instead)");
            None
        }
        Err(why) => panic!("{test}: {why} and PORTCULLIS_REQUIRE_SERVICES=1"),
    }
}

/// A server for `test`, or None after saying why the test is skipped.
/// Panics instead when `PORTCULLIS_REQUIRE_SERVICES=1`.
pub fn server_or_skip(test: &str) -> Option<RedisServer> {
    or_skip(test, RedisServer::start())
}

// --- Sentinel ---

/// The name the Sentinels know the master by.
pub const MASTER_NAME: &str = "portcullis-test";

/// A master, one replica of it, and three Sentinels watching it. Sentinel
/// times are short (down after 1 s, failover timeout 3 s) so a killed master
/// is replaced in a few seconds.
pub struct SentinelSetup {
    pub master: RedisServer,
    pub replica: RedisServer,
    pub sentinels: Vec<RedisServer>,
}

impl SentinelSetup {
    pub fn start() -> Result<SentinelSetup, String> {
        let master = RedisServer::start()?;
        let replica = RedisServer::start_with(&["--replicaof".into(), "127.0.0.1".into(), master.port().to_string()])?;
        wait_until(Duration::from_secs(10), "the replica to sync", || {
            replica.cmd::<String>(&["INFO", "replication"]).is_ok_and(|i| i.contains("master_link_status:up"))
        })?;
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            let started = retry_on_free_ports(|port| {
                let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
                let conf = dir.path().join("sentinel.conf");
                std::fs::write(
                    &conf,
                    format!(
                        "sentinel monitor {MASTER_NAME} 127.0.0.1 {m} 2\n\
                         sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                         sentinel failover-timeout {MASTER_NAME} 3000\n\
                         sentinel parallel-syncs {MASTER_NAME} 1\n",
                        m = master.port()
                    ),
                )
                .map_err(|e| format!("sentinel.conf: {e}"))?;
                let mut s = RedisServer {
                    port,
                    child: None,
                    dir,
                    extra: vec!["--sentinel".into()],
                    config_file: Some(conf),
                    tls: false,
                };
                s.restart()?;
                Ok(s)
            })?;
            sentinels.push(started);
        }
        let setup = SentinelSetup { master, replica, sentinels };
        // A failover needs every Sentinel to know the replica and the others.
        for s in &setup.sentinels {
            wait_until(Duration::from_secs(20), "the sentinels to find each other and the replica", || {
                let others: Result<Vec<::redis::Value>, _> = s.cmd(&["SENTINEL", "SENTINELS", MASTER_NAME]);
                let replicas: Result<Vec<::redis::Value>, _> = s.cmd(&["SENTINEL", "REPLICAS", MASTER_NAME]);
                others.is_ok_and(|o| o.len() == 2) && replicas.is_ok_and(|r| r.len() == 1)
            })?;
        }
        Ok(setup)
    }

    /// `redis+sentinel://` URL of the three Sentinels and the master's name.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.sentinels.iter().map(RedisServer::addr).collect();
        format!("redis+sentinel://{}/{MASTER_NAME}/0", hosts.join(","))
    }

    /// The master's address as the first Sentinel names it now.
    pub fn current_master(&self) -> Option<String> {
        let addr: Vec<String> = self.sentinels[0].cmd(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME]).ok()?;
        Some(format!("{}:{}", addr.first()?, addr.get(1)?))
    }
}

// --- Cluster ---

/// Three masters (no replicas) with all 16384 slots, made by
/// `redis-cli --cluster create`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> Result<RedisCluster, String> {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            // The cluster bus gets its own free port (by default it is port + 10000).
            let bus = free_port()?;
            nodes.push(RedisServer::start_with(&[
                "--cluster-enabled".into(),
                "yes".into(),
                "--cluster-config-file".into(),
                "nodes.conf".into(),
                "--cluster-node-timeout".into(),
                "2000".into(),
                "--cluster-port".into(),
                bus.to_string(),
            ])?);
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for n in &nodes {
            create.arg(n.addr());
        }
        let out = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("redis-cli: {e}"))?;
        if !out.status.success() {
            return Err(format!("redis-cli --cluster create failed: {}", String::from_utf8_lossy(&out.stdout)));
        }
        let cluster = RedisCluster { nodes };
        cluster.wait_consistent()?;
        Ok(cluster)
    }

    /// Waits until every node reports the cluster ok and agrees on the slots.
    pub fn wait_consistent(&self) -> Result<(), String> {
        wait_until(Duration::from_secs(20), "the cluster to be consistent", || {
            let views: Vec<Option<Vec<(u16, String)>>> = self.nodes.iter().map(|n| self.slot_owners(n)).collect();
            self.nodes
                .iter()
                .all(|n| n.cmd::<String>(&["CLUSTER", "INFO"]).is_ok_and(|i| i.contains("cluster_state:ok")))
                && views.iter().all(|v| v.is_some() && *v == views[0])
        })
    }

    /// (first slot of each range, owner's address) as `node` sees them.
    fn slot_owners(&self, node: &RedisServer) -> Option<Vec<(u16, String)>> {
        use ::redis::{Value, from_redis_value_ref as get};
        // Each range: [first, last, [ip, port, id, ...], replicas...].
        let ranges: Vec<Value> = node.cmd(&["CLUSTER", "SLOTS"]).ok()?;
        let mut owners = Vec::new();
        for range in &ranges {
            let Value::Array(r) = range else { return None };
            let Some(Value::Array(master)) = r.get(2) else { return None };
            let (ip, port): (String, u16) = (get(master.first()?).ok()?, get(master.get(1)?).ok()?);
            owners.push((get::<u16>(r.first()?).ok()?, format!("{ip}:{port}")));
        }
        owners.sort();
        Some(owners)
    }

    /// `redis+cluster://` URL naming every node as a seed.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.nodes.iter().map(RedisServer::addr).collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    pub fn node_id(&self, i: usize) -> Result<String, String> {
        self.nodes[i].cmd(&["CLUSTER", "MYID"])
    }

    /// The index of the node that serves `slot`.
    pub fn owner_of(&self, slot: u16) -> Option<usize> {
        let owners = self.slot_owners(&self.nodes[0])?;
        let (_, addr) = owners.iter().rev().find(|(lo, _)| *lo <= slot)?;
        self.nodes.iter().position(|n| n.addr() == *addr)
    }

    /// Moves `count` slots (the lowest ones `from` has) to node `to` with
    /// `redis-cli --cluster reshard`, and waits until all nodes agree.
    pub fn reshard(&self, from: usize, to: usize, count: usize) -> Result<(), String> {
        let out = Command::new("redis-cli")
            .args(["--cluster", "reshard", &self.nodes[from].addr()])
            .args(["--cluster-from", &self.node_id(from)?])
            .args(["--cluster-to", &self.node_id(to)?])
            .args(["--cluster-slots", &count.to_string()])
            .args(["--cluster-yes", "--cluster-pipeline", "1"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("redis-cli: {e}"))?;
        if !out.status.success() {
            return Err(format!("redis-cli --cluster reshard failed: {}", String::from_utf8_lossy(&out.stdout)));
        }
        self.wait_consistent()
    }

    /// The lowest slot node `i` serves.
    pub fn first_slot_of(&self, i: usize) -> Option<u16> {
        let addr = self.nodes[i].addr();
        let owners = self.slot_owners(&self.nodes[0])?;
        owners.into_iter().filter(|(_, a)| *a == addr).map(|(lo, _)| lo).min()
    }
}

/// The Cluster slot of `key`: CRC16 (XMODEM) of its hash tag, or of the whole
/// key when it has none, modulo 16384.
pub fn key_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = bytes.iter().position(|&b| b == b'{').and_then(|open| {
        let close = bytes[open + 1..].iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &bytes[open + 1..open + 1 + close])
    });
    crc16(tagged.unwrap_or(bytes)) % 16384
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}
