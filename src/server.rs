//! Listeners: plain TCP or TLS (rustls, ALPN h2 + http/1.1), HTTP/1.1 and HTTP/2
//! auto-detected, a connection cap, slowloris protection (header-read timeout,
//! header-size cap), idle HTTP/1.1 connections put to sleep without hyper's
//! buffers, and graceful shutdown: stop accepting, let in-flight requests
//! finish within `shutdown_grace`, then close what is left.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use hyper::Request;
use hyper::body::{Body as _, Incoming};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use ipnet::IpNet;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::body::Response;
use crate::config::ServerConfig;
use crate::metrics::connections::Counted;
use crate::shutdown::Shutdown;

mod asleep;
mod on_wake;
use asleep::{Activity, Sleepy, Socket, Tracked};
use on_wake::on_wake;

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
        match crate::client_ip::canonical(ip) {
            IpAddr::V6(v6) => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
            v4 => v4,
        }
    }

    /// A slot for a new connection from `peer`, or None when it holds its share.
    fn take(self: &Arc<Self>, peer: IpAddr) -> Option<Slot> {
        if crate::client_ip::is_trusted(peer, &self.exempt) {
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

    /// A socket bound already (a test binds port 0 and knows the address
    /// before the gateway is built).
    pub fn from_tcp(tcp: TcpListener, tls: Option<TlsAcceptor>) -> Listener {
        Listener { tcp, tls }
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

/// The HTTP/1.1 and HTTP/2 settings every connection of a listener is served with.
struct Protocols {
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
}

impl Protocols {
    fn new(limits: &Limits) -> Protocols {
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes.max(8192))
            .keep_alive(true);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams(256)
            .keep_alive_interval(Some(Duration::from_secs(30)));
        Protocols { h1, h2 }
    }
}

/// What every connection of one listener shares: the handler, the protocol
/// settings and the caps.
struct Accepting<H> {
    handler: Arc<H>,
    protocols: Arc<Protocols>,
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
            protocols: Arc::new(Protocols::new(&limits)),
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
            protocols: self.protocols.clone(),
            shutdown: self.shutdown.clone(),
            first_byte: self.limits.header_read_timeout,
            idle: self.limits.idle_timeout,
        };
        let tls = self.tls.clone();
        tokio::spawn(async move {
            let _held = held;
            let _open = Counted::open();
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
                crate::worker::set_index(index);
                runtime.block_on(async move {
                    // This worker's access-log lines go to the writer in batches.
                    tokio::spawn(crate::logging::batch_access_log());
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

/// One accepted connection, and what serving it needs: kept small, since an
/// idle keep-alive connection holds it for as long as the client likes.
struct Connection<H> {
    peer: SocketAddr,
    handler: Arc<H>,
    protocols: Arc<Protocols>,
    shutdown: Shutdown,
    /// The header-read timeout: how long a new connection may wait for its
    /// first byte; an HTTP/1.1 connection quiet for a third of it sleeps.
    first_byte: Duration,
    idle: Duration,
}

impl<H: Handler> Connection<H> {
    async fn serve_plain(self, stream: TcpStream) {
        let Some(h2) = first_bytes(&stream, self.first_byte).await else { return };
        if h2 {
            // Boxed, here and under TLS: an HTTP/2 connection's state is
            // large, and a sleeping HTTP/1.1 connection's task should not
            // carry room for it.
            Box::pin(self.serve_h2(stream, false)).await
        } else {
            self.serve_h1(stream, false).await
        }
    }

    async fn serve_tls(self, stream: TcpStream, acceptor: TlsAcceptor) {
        let Ok(Ok(tls_stream)) = tokio::time::timeout(self.first_byte, acceptor.accept(stream)).await else {
            return;
        };
        // Over TLS, HTTP/2 is chosen by ALPN (RFC 9113 §3.2), not by sniffing.
        if tls_stream.get_ref().1.alpn_protocol() == Some(b"h2") {
            Box::pin(self.serve_h2(tls_stream, true)).await
        } else {
            self.serve_h1(tls_stream, true).await
        }
    }

    async fn serve_h2<S: Socket>(self, socket: S, tls: bool) {
        let activity = Arc::new(Activity::default());
        let conn = self.protocols.h2.serve_connection(TokioIo::new(socket), self.service(tls, activity.clone()));
        tokio::pin!(conn);
        drive(conn, |c| c.graceful_shutdown(), &self.shutdown, self.idle, None, &activity).await;
    }

    /// Serves HTTP/1.1 requests, and puts the connection to sleep whenever it
    /// has been quiet for a third of the header-read timeout ([`asleep`] tells how).
    async fn serve_h1<S: Socket>(self, mut socket: S, tls: bool) {
        // hyper closes a connection that has not sent a whole request head
        // within the header-read timeout of its last response, idle or not:
        // sleeping well before that keeps it open until the idle timeout.
        let sleep_after = Some(self.first_byte / 3);
        let activity = Arc::new(Activity::default());
        let mut service = self.service(tls, activity.clone());
        loop {
            let io = TokioIo::new(Sleepy::new(socket, activity.clone()));
            // Boxed, and dropped when the connection sleeps: a sleeping
            // connection's task holds no room for hyper's state.
            let mut conn = Box::new(self.protocols.h1.serve_connection(io, service).with_upgrades());
            let ended = drive(
                Pin::new(&mut *conn),
                |c| c.graceful_shutdown(),
                &self.shutdown,
                self.idle,
                sleep_after,
                &activity,
            );
            let Some(quiet) = ended.await else { return };
            // None once upgraded: the socket is the upgrade's now.
            let Some(parts) = conn.into_parts() else { return };
            // Not asleep (the client or hyper closed it), or with bytes hyper
            // read and did not parse: the connection ends here.
            let Some(sleeping) = parts.io.into_inner().into_sleeping() else { return };
            if !parts.read_buf.is_empty() {
                return;
            }
            socket = sleeping;
            service = parts.service;
            if !sleep_until_readable(&socket, self.idle.saturating_sub(quiet), &self.shutdown).await {
                return;
            }
        }
    }

    /// The connection's service: each request to the handler, its response
    /// counted in flight until hyper has sent it.
    fn service(
        &self,
        tls: bool,
        activity: Arc<Activity>,
    ) -> impl hyper::service::Service<
        Request<Incoming>,
        Response = hyper::Response<Tracked>,
        Error = Infallible,
        Future: Send + 'static,
    > + Send
    + 'static {
        let conn_info = ConnInfo { peer: self.peer, tls };
        let handler = self.handler.clone();
        service_fn(move |req: Request<Incoming>| {
            let handler = handler.clone();
            let in_flight = activity.begin(!req.body().is_end_stream());
            async move {
                let response = handler.handle(req, conn_info).await;
                Ok::<_, Infallible>(response.map(|body| Tracked::new(body, in_flight)))
            }
        })
    }
}

/// Serves one connection until it ends or, given `sleep_after`, until it has
/// been quiet that long and hyper let go of it to sleep. On shutdown, or when
/// it has been quiet for `idle`, it is shut down gracefully: HTTP/1.1 closes
/// after the response in progress, HTTP/2 sends GOAWAY and finishes its open
/// streams. Returns how long the connection had been quiet when it ended, or
/// None when it ended with an error.
async fn drive<C: Future<Output = hyper::Result<()>>>(
    mut conn: Pin<&mut C>,
    graceful_shutdown: impl Fn(Pin<&mut C>),
    shutdown: &Shutdown,
    idle: Duration,
    sleep_after: Option<Duration>,
    activity: &Activity,
) -> Option<Duration> {
    // A timer per connection, not one per request; quiet is counted in whole
    // intervals, so a connection sleeps after between one and two of them.
    let every = sleep_after.map_or(idle / 4, |after| after.min(idle / 4));
    let mut checks = tokio::time::interval(every);
    checks.tick().await;
    let mut seen = activity.moves();
    let mut quiet = Duration::ZERO;
    let mut closing = false;
    loop {
        tokio::select! {
            ended = conn.as_mut() => return ended.ok().map(|()| quiet),
            // Polled only when they woke the task, not at each of hyper's wakes.
            _ = on_wake(shutdown.wait()), if !closing => {
                graceful_shutdown(conn.as_mut());
                closing = true;
            }
            _ = on_wake(checks.tick()), if !closing => {
                let now = activity.moves();
                quiet = if now == seen && activity.between_requests() { quiet + every } else { Duration::ZERO };
                seen = now;
                if quiet >= idle {
                    graceful_shutdown(conn.as_mut());
                    closing = true;
                } else if sleep_after.is_some_and(|after| quiet >= after) && activity.may_sleep() {
                    // hyper reads at once, finds nothing, and lets go; if
                    // bytes are there instead, the connection stays awake.
                    activity.ask_to_sleep();
                    let ended = std::future::poll_fn(|cx| Poll::Ready(conn.as_mut().poll(cx))).await;
                    activity.stay_awake();
                    if let Poll::Ready(ended) = ended {
                        return ended.ok().map(|()| quiet);
                    }
                }
            }
        }
    }
}

/// A sleeping connection waits with its socket alone: true when the client
/// sends again (or closes), false when it stays quiet for `limit` or the
/// gateway shuts down.
async fn sleep_until_readable<S: Socket>(socket: &S, limit: Duration, shutdown: &Shutdown) -> bool {
    let _asleep = Counted::asleep();
    tokio::select! {
        readable = socket.readable() => readable.is_ok(),
        _ = tokio::time::sleep(limit) => false,
        _ = shutdown.wait() => false,
    }
}

const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Looks at (does not read) a plain connection's first bytes: None when none
/// came within the header timeout, so a client that connects and sends
/// nothing is dropped (hyper's own timer starts once a request head begins);
/// otherwise whether they are HTTP/2's preface (prior knowledge, RFC 9113
/// §3.3). hyper then reads them all.
async fn first_bytes(stream: &TcpStream, limit: Duration) -> Option<bool> {
    let mut came = false;
    let look = async {
        let mut buf = [0u8; H2_PREFACE.len()];
        loop {
            let n = stream.peek(&mut buf).await.ok().filter(|&n| n > 0)?;
            came = true;
            if buf[..n] != H2_PREFACE[..n] {
                return Some(false);
            }
            if n == H2_PREFACE.len() {
                return Some(true);
            }
            // The preface so far, split across packets: look again shortly.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    match tokio::time::timeout(limit, look).await {
        Ok(h2) => h2,
        // Part of a preface, then nothing: HTTP/1, whose own timer ends it.
        Err(_) => came.then_some(false),
    }
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
            Response::new(crate::body::Body::full(crate::worker::index().to_string()))
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
    /// client likes: the task's size is paid once per open connection, and
    /// a sleeping connection holds nothing else of note.
    #[tokio::test]
    async fn a_plain_connection_task_stays_small() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let conn = Connection {
            peer: listener.local_addr().unwrap(),
            handler: Arc::new(Nothing),
            protocols: Arc::new(Protocols::new(&Limits::from_config(&ServerConfig::default()))),
            shutdown: Shutdown::default(),
            first_byte: Duration::from_secs(1),
            idle: Duration::from_secs(1),
        };
        let plain = std::mem::size_of_val(&conn.serve_plain(stream));
        eprintln!("plain connection future: {plain} bytes");
        // 1,184 bytes in a debug build: the HTTP/2 and hyper states are boxed.
        assert!(plain <= 2048, "a plain connection's future is {plain} bytes");
    }
}
