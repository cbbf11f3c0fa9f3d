//! A private `redis-server` for tests and benchmarks, on a free loopback port,
//! run as a child process (not daemonized) so a test can kill it and start it
//! again on the same port. Never the system Redis on 6379. Dropping it kills it.
#![allow(dead_code)] // each test binary uses a different part

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running (or deliberately stopped) redis-server.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server on a free port, or says why it could not.
    pub fn start() -> Result<RedisServer, String> {
        let mut last_err = String::new();
        // A freshly freed port can be taken by someone else before redis binds it.
        for _ in 0..5 {
            let port = free_port()?;
            match RedisServer::start_on(port) {
                Ok(s) => return Ok(s),
                Err(e) => last_err = e,
            }
        }
        Err(last_err)
    }

    /// Starts a server on `port`.
    pub fn start_on(port: u16) -> Result<RedisServer, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        let mut server = RedisServer { port, child: None, dir };
        server.restart()?;
        Ok(server)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server (SIGKILL: no goodbye to clients).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// (Re)starts the server on the same port and waits until it accepts connections.
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        let mut child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--loglevel", "warning"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => "redis-server is not on PATH".to_string(),
                _ => format!("cannot start redis-server: {e}"),
            })?;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("redis-server on port {} exited: {status}", self.port));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("redis-server on port {} did not come up", self.port));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
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

/// A server for `test`, or None after saying why the test is skipped.
/// Panics instead when `PORTCULLIS_REQUIRE_SERVICES=1`.
pub fn server_or_skip(test: &str) -> Option<RedisServer> {
    match RedisServer::start() {
        Ok(s) => Some(s),
        Err(why) if !services_required() => {
            eprintln!("SKIPPED {test}: {why} (set PORTCULLIS_REQUIRE_SERVICES=1 to fail instead)");
            None
        }
        Err(why) => panic!("{test}: {why} and PORTCULLIS_REQUIRE_SERVICES=1"),
    }
}
