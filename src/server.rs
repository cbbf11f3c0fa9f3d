//! Listeners: plain TCP or TLS (rustls, ALPN h2 + http/1.1), HTTP/1.1 and HTTP/2
//! auto-detected, a connection cap, slowloris protection (header-read timeout,
//! header-size cap) and graceful shutdown: stop accepting, let in-flight requests
//! finish within `shutdown_grace`, then close what is left.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use ipnet::IpNet;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::body::Response;
use crate::config::ServerConfig;

/// What a handler knows about the connection a request came on.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub tls: bool,
}

/// Handles one request; implemented by the gateway and by the demo upstream.
pub trait Handler: Send + Sync + 'static {
    fn handle(self: Arc<Self>, req: Request<Incoming>, conn: ConnInfo) -> impl Future<Output = Response> + Send;
}

/// Why a listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot start the worker threads (server.workers): {0}")]
    Workers(std::io::Error),
}

/// A broadcast "stop now" that every accept loop and background task watches.
#[derive(Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown { tx: Arc::new(watch::channel(false).0) }
    }
}

impl Shutdown {
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Resolves once shutdown has been triggered.
    pub async fn wait(&self) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// Triggers on SIGINT or SIGTERM.
    pub fn on_signals(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown signal received");
            this.trigger();
        });
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

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

/// How many connections each client address holds, for the per-client cap.
struct ClientSlots {
    max: usize,
    exempt: Arc<[IpNet]>,
    held: Mutex<HashMap<IpAddr, usize>>,
}

/// One client's connection, counted until it is dropped.
struct Slot {
    slots: Arc<ClientSlots>,
    key: Option<IpAddr>,
}

impl ClientSlots {
    /// The address connections are counted under: IPv4 as is (IPv4-mapped
    /// IPv6 read as IPv4), IPv6 by its /64.
    fn key(ip: IpAddr) -> IpAddr {
        match crate::proxy::headers::canonical(ip) {
            IpAddr::V6(v6) => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
            v4 => v4,
        }
    }

    /// A slot for a new connection from `peer`, or None when it holds its share.
    fn take(self: &Arc<Self>, peer: IpAddr) -> Option<Slot> {
        if crate::proxy::headers::is_trusted(peer, &self.exempt) {
            return Some(Slot { slots: self.clone(), key: None });
        }
        let key = Self::key(peer);
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let n = held.entry(key).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Slot { slots: self.clone(), key: Some(key) })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(key) = self.key else { return };
        let mut held = self.slots.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = held.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                held.remove(&key);
            }
        }
    }
}

/// A bound listener, ready to serve.
pub struct Listener {
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
}

impl Listener {
    pub async fn bind(addr: SocketAddr, tls: Option<TlsAcceptor>) -> Result<Listener, ServerError> {
        let tcp = TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })?;
        Ok(Listener { tcp, tls })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.tcp.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
}

/// Builds the TLS acceptor from PEM files, offering h2 and http/1.1 by ALPN.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, ServerError> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ServerError::Tls(format!("server.tls_cert {}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(ServerError::Tls(format!("server.tls_cert {}: no certificate", cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| ServerError::Tls(format!("server.tls_key {}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServerError::Tls(format!("server.tls_cert/tls_key: {e}")))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

fn connection_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    b
}

/// What every connection of one listener shares: the handler, the connection
/// builder and the caps.
struct Accepting<H> {
    handler: Arc<H>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    permits: Arc<Semaphore>,
    clients: Arc<ClientSlots>,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    shutdown: Shutdown,
}

/// An accepted connection on its way to the task that serves it, with the
/// connection-cap permit and client slot it holds until it ends.
struct Accepted {
    stream: TcpStream,
    peer: SocketAddr,
    held: Held,
}

/// The connection-cap permit and the client slot a connection holds.
type Held = (OwnedSemaphorePermit, Slot);

impl<H: Handler> Accepting<H> {
    fn new(handler: Arc<H>, limits: Limits, tls: Option<TlsAcceptor>, shutdown: Shutdown) -> Accepting<H> {
        Accepting {
            handler,
            builder: Arc::new(connection_builder(&limits)),
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            clients: Arc::new(ClientSlots {
                max: limits.max_connections_per_client,
                exempt: limits.exempt.clone(),
                held: Mutex::new(HashMap::new()),
            }),
            tls,
            limits,
            shutdown,
        }
    }

    /// Accepts until shutdown, handing each connection to `dispatch`.
    async fn accept(&self, tcp: &TcpListener, mut dispatch: impl FnMut(Accepted)) {
        loop {
            // Past the cap, new connections wait in the kernel's backlog.
            let permit = tokio::select! {
                p = self.permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                _ = self.shutdown.wait() => break,
            };
            let (stream, peer) = tokio::select! {
                r = tcp.accept() => match r {
                    Ok(s) => s,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = self.shutdown.wait() => break,
            };
            // One client holding its share is turned away at once (closed), so it
            // cannot hold every slot with slow requests.
            let Some(slot) = self.clients.take(peer.ip()) else {
                tracing::debug!(peer = %peer.ip(), "connection refused: the client holds its share");
                continue;
            };
            let _ = stream.set_nodelay(true);
            dispatch(Accepted { stream, peer, held: (permit, slot) });
        }
    }

    /// Serves one connection on a task of the current runtime.
    fn spawn(&self, accepted: Accepted) {
        let Accepted { stream, peer, held } = accepted;
        let conn = Connection {
            peer,
            handler: self.handler.clone(),
            builder: self.builder.clone(),
            shutdown: self.shutdown.clone(),
            first_byte: self.limits.header_read_timeout,
            idle: self.limits.idle_timeout,
        };
        let tls = self.tls.clone();
        tokio::spawn(async move {
            let _held = held;
            match tls {
                None => conn.serve_plain(stream).await,
                // Boxed: a TLS session's state is large, and a plain
                // connection's task should not carry room for it.
                Some(acceptor) => Box::pin(conn.serve_tls(stream, acceptor)).await,
            }
        });
    }

    /// Waits for every connection to end, for at most the shutdown grace.
    async fn drain(&self) -> bool {
        // Every connection holds a permit: all of them back means all drained.
        let all = u32::try_from(self.limits.max_connections).unwrap_or(u32::MAX);
        tokio::time::timeout(self.limits.shutdown_grace, self.permits.acquire_many(all)).await.is_ok()
    }
}

/// Accepts and serves connections until `shutdown` fires, then drains them for at
/// most `limits.shutdown_grace`. Connections run on the current runtime.
pub async fn serve<H: Handler>(listener: Listener, handler: Arc<H>, limits: Limits, shutdown: Shutdown) {
    let accepting = Accepting::new(handler, limits, listener.tls.clone(), shutdown);
    accepting.accept(&listener.tcp, |c| accepting.spawn(c)).await;
    drop(listener);
    if !accepting.drain().await {
        tracing::warn!("shutdown grace elapsed; closing remaining connections");
    }
}

/// Like [`serve`], but each connection lives on one of `workers` threads that
/// each run a single-threaded runtime: a request, its upstream exchange and its
/// timers stay on one core, with no hand-off between threads. The accept loop
/// runs on the calling runtime and deals connections out in turn.
pub async fn serve_on_workers<H: Handler>(
    listener: Listener,
    handler: Arc<H>,
    limits: Limits,
    shutdown: Shutdown,
    workers: usize,
) -> std::io::Result<()> {
    let workers = workers.max(1);
    let accepting = Arc::new(Accepting::new(handler, limits, listener.tls.clone(), shutdown));
    let mut queues = Vec::with_capacity(workers);
    let mut threads = Vec::with_capacity(workers);
    for index in 0..workers {
        // Unbounded, yet bounded by the connection cap: every queued
        // connection holds its permit.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(std::net::TcpStream, SocketAddr, Held)>();
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().thread_stack_size(STACK_SIZE).build()?;
        let accepting = accepting.clone();
        let thread = std::thread::Builder::new()
            .name(format!("portcullis-worker-{index}"))
            .stack_size(STACK_SIZE)
            .spawn(move || {
                WORKER.set(index);
                runtime.block_on(async move {
                    while let Some((stream, peer, held)) = rx.recv().await {
                        if let Ok(stream) = TcpStream::from_std(stream) {
                            accepting.spawn(Accepted { stream, peer, held });
                        }
                    }
                    // Accepting stopped: keep this runtime, and the connections
                    // on it, until every connection has ended (the permits are
                    // shared, so this waits for every worker's).
                    accepting.drain().await
                })
            })?;
        queues.push(tx);
        threads.push(thread);
    }
    let mut next = 0;
    accepting
        .accept(&listener.tcp, |Accepted { stream, peer, held }| {
            // The stream leaves this runtime's reactor and joins the worker's.
            let Ok(stream) = stream.into_std() else { return };
            let _ = queues[next].send((stream, peer, held));
            next = (next + 1) % queues.len();
        })
        .await;
    drop(listener);
    drop(queues);
    // Each worker drains before its thread ends.
    let joined = tokio::task::spawn_blocking(move || threads.into_iter().map(|t| t.join().unwrap_or(false)).collect());
    let drained: Vec<bool> = joined.await.unwrap_or_default();
    if drained.contains(&false) {
        tracing::warn!("shutdown grace elapsed; closing remaining connections");
    }
    Ok(())
}

/// Stack size of every runtime thread (the main runtime's too).
pub const STACK_SIZE: usize = 4 * 1024 * 1024;

thread_local! {
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Which worker thread this is (0 outside [`serve_on_workers`]'s threads):
/// lets per-worker resources, such as upstream pools, stay on their core.
pub fn worker_index() -> usize {
    WORKER.get()
}

/// One accepted connection, and what serving it needs: kept small, since an
/// idle keep-alive connection holds it for as long as the client likes.
struct Connection<H> {
    peer: SocketAddr,
    handler: Arc<H>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    shutdown: Shutdown,
    first_byte: Duration,
    idle: Duration,
}

impl<H: Handler> Connection<H> {
    async fn serve_plain(self, stream: TcpStream) {
        if !first_byte_within(&stream, self.first_byte).await {
            return;
        }
        let requests = Arc::new(AtomicU64::new(0));
        let svc = self.service(false, requests.clone());
        let c = self.builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
        drive(c, |c| c.graceful_shutdown(), &self.shutdown, self.idle, &requests).await;
    }

    async fn serve_tls(self, stream: TcpStream, acceptor: TlsAcceptor) {
        let Ok(Ok(tls_stream)) = tokio::time::timeout(self.first_byte, acceptor.accept(stream)).await else {
            return;
        };
        let requests = Arc::new(AtomicU64::new(0));
        let svc = self.service(true, requests.clone());
        let c = self.builder.serve_connection_with_upgrades(TokioIo::new(tls_stream), svc);
        drive(c, |c| c.graceful_shutdown(), &self.shutdown, self.idle, &requests).await;
    }

    /// The connection's service: each request to the handler, counted for
    /// the idle timeout.
    fn service(
        &self,
        tls: bool,
        requests: Arc<AtomicU64>,
    ) -> impl hyper::service::Service<Request<Incoming>, Response = Response, Error = Infallible, Future: Send + 'static>
    + Clone
    + Send
    + 'static {
        let conn_info = ConnInfo { peer: self.peer, tls };
        let handler = self.handler.clone();
        service_fn(move |req| {
            let handler = handler.clone();
            requests.fetch_add(1, Ordering::Relaxed);
            async move { Ok::<_, Infallible>(handler.handle(req, conn_info).await) }
        })
    }
}

/// Serves one connection until it ends. On shutdown, or when no new request
/// has come for `idle`, it is shut down gracefully: HTTP/1.1 closes after the
/// response in progress, HTTP/2 sends GOAWAY and finishes its open streams.
async fn drive<C: Future>(
    conn: C,
    graceful_shutdown: impl Fn(std::pin::Pin<&mut C>),
    shutdown: &Shutdown,
    idle: Duration,
    requests: &AtomicU64,
) {
    tokio::pin!(conn);
    let mut checks = tokio::time::interval(idle / 4);
    checks.tick().await;
    let mut seen = requests.load(Ordering::Relaxed);
    let mut quiet_checks = 0u32;
    let mut closing = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = shutdown.wait(), if !closing => {
                graceful_shutdown(conn.as_mut());
                closing = true;
            }
            _ = checks.tick(), if !closing => {
                let now = requests.load(Ordering::Relaxed);
                quiet_checks = if now == seen { quiet_checks + 1 } else { 0 };
                seen = now;
                if quiet_checks >= 4 {
                    graceful_shutdown(conn.as_mut());
                    closing = true;
                }
            }
        }
    }
}

/// A client that connects and sends nothing is dropped after the header timeout
/// (hyper's own timer starts once a request head begins).
async fn first_byte_within(stream: &TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1];
    matches!(tokio::time::timeout(limit, stream.peek(&mut buf)).await, Ok(Ok(n)) if n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nothing;
    impl Handler for Nothing {
        async fn handle(self: Arc<Self>, _: Request<Incoming>, _: ConnInfo) -> Response {
            Response::new(crate::body::Body::empty())
        }
    }

    /// Answers with the index of the worker thread that served the request.
    struct WhichWorker;
    impl Handler for WhichWorker {
        async fn handle(self: Arc<Self>, _: Request<Incoming>, _: ConnInfo) -> Response {
            Response::new(crate::body::Body::full(worker_index().to_string()))
        }
    }

    /// Each connection goes to the next worker in turn and all its requests are
    /// served there; shutting down returns once the workers have stopped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_are_dealt_to_the_workers_in_turn_and_stay_on_theirs() {
        use http_body_util::BodyExt;
        let listener = Listener::bind(SocketAddr::from(([127, 0, 0, 1], 0)), None).await.unwrap();
        let addr = listener.local_addr();
        let shutdown = Shutdown::default();
        let mut limits = Limits::from_config(&ServerConfig::default());
        limits.shutdown_grace = Duration::from_secs(2);
        let served = tokio::spawn(serve_on_workers(listener, Arc::new(WhichWorker), limits, shutdown.clone(), 2));
        let mut dealt = Vec::new();
        for _ in 0..4 {
            // One keep-alive connection, three requests on it, one after another.
            let stream = TcpStream::connect(addr).await.unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
            let conn = tokio::spawn(conn);
            let mut seen = Vec::new();
            for _ in 0..3 {
                let req =
                    Request::get("/").header("host", "gateway").body(http_body_util::Empty::<bytes::Bytes>::new());
                sender.ready().await.unwrap();
                let resp = sender.send_request(req.unwrap()).await.unwrap();
                let body = resp.into_body().collect().await.unwrap().to_bytes();
                seen.push(String::from_utf8(body.to_vec()).unwrap());
            }
            assert!(seen.iter().all(|w| *w == seen[0]), "one connection, one worker: {seen:?}");
            dealt.push(seen[0].clone());
            drop(sender);
            let _ = conn.await;
        }
        assert_eq!(dealt, ["0", "1", "0", "1"], "connections dealt in turn");
        shutdown.trigger();
        let stopped = tokio::time::timeout(Duration::from_secs(5), served).await;
        assert!(matches!(stopped, Ok(Ok(Ok(())))), "serving stops on shutdown: {stopped:?}");
    }

    /// An idle keep-alive connection keeps its task for as long as the
    /// client likes: the task's size is paid once per open connection.
    #[tokio::test]
    async fn a_plain_connection_task_stays_small() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let conn = Connection {
            peer: listener.local_addr().unwrap(),
            handler: Arc::new(Nothing),
            builder: Arc::new(connection_builder(&Limits::from_config(&ServerConfig::default()))),
            shutdown: Shutdown::default(),
            first_byte: Duration::from_secs(1),
            idle: Duration::from_secs(1),
        };
        let plain = std::mem::size_of_val(&conn.serve_plain(stream));
        eprintln!("plain connection future: {plain} bytes");
        assert!(plain <= 4096, "a plain connection's future is {plain} bytes");
    }
}
