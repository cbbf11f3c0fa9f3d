//! One connection, from its first bytes to its close: HTTP/2 by preface or
//! ALPN, else HTTP/1.1; each request to the handler; an idle HTTP/1.1
//! connection put to sleep without hyper's buffers and woken by its next
//! request; the idle timeout, and a graceful close at shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use hyper::Request;
use hyper::body::{Body as _, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::asleep::{Activity, Sleepy, Socket, Tracked};
use super::handler::{ConnInfo, Handler};
use super::on_wake::on_wake;
use super::protocols::Protocols;
use crate::metrics::connections::Counted;
use crate::shutdown::Shutdown;

/// How long an HTTP/1.1 connection stays awake with nothing to do.
const SLEEP_AFTER: Duration = Duration::from_millis(250);

/// One accepted connection, and what serving it needs: kept small, since an
/// idle keep-alive connection holds it for as long as the client likes.
pub(super) struct Connection<H> {
    pub(super) peer: SocketAddr,
    pub(super) handler: Arc<H>,
    pub(super) protocols: Arc<Protocols>,
    pub(super) shutdown: Shutdown,
    /// The header-read timeout: how long a new connection may wait for its
    /// first byte; an HTTP/1.1 connection quiet for a third of it sleeps (or
    /// for [`SLEEP_AFTER`], if shorter).
    pub(super) first_byte: Duration,
    pub(super) idle: Duration,
}

impl<H: Handler> Connection<H> {
    pub(super) async fn serve_plain(self, stream: TcpStream) {
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

    pub(super) async fn serve_tls(self, stream: TcpStream, acceptor: TlsAcceptor) {
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
    /// has been quiet for [`SLEEP_AFTER`] (or a third of the header-read
    /// timeout, if shorter; [`asleep`] tells how).
    async fn serve_h1<S: Socket>(self, mut socket: S, tls: bool) {
        // hyper closes a connection that has not sent a whole request head
        // within the header-read timeout of its last response, idle or not:
        // sleeping well before that keeps it open until the idle timeout.
        // Sooner still, as a rule: an awake connection holds about 14 KiB, a
        // sleeping one 2, and a client opening thousands at once should not
        // find them all awake (bench/README.md, "Footprint").
        let sleep_after = Some((self.first_byte / 3).min(SLEEP_AFTER));
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
    // intervals of half the time to sleep, so a connection sleeps after
    // between one and one and a half times it.
    let every = sleep_after.map_or(idle / 4, |after| (after / 2).min(idle / 4));
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
    use tokio::net::TcpListener;

    use super::*;
    use crate::body::Response;
    use crate::config::ServerConfig;
    use crate::server::limits::Limits;

    struct Nothing;
    impl Handler for Nothing {
        async fn handle(self: Arc<Self>, _: Request<Incoming>, _: ConnInfo) -> Response {
            Response::new(crate::body::Body::empty())
        }
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
