//! Accepting: the loop that takes connections under the connection cap and
//! the per-client cap, hands each to a task, and at shutdown stops and
//! drains them for at most the shutdown grace; [`serve`] runs it all on the
//! current runtime.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;

use super::client_slots::{ClientSlots, Slot};
use super::connection::Connection;
use super::handler::Handler;
use super::limits::Limits;
use super::listener::Listener;
use super::protocols::Protocols;
use crate::metrics::connections::Counted;
use crate::shutdown::Shutdown;

/// What every connection of one listener shares: the handler, the protocol
/// settings and the caps.
pub(super) struct Accepting<H> {
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
pub(super) struct Accepted {
    pub(super) stream: TcpStream,
    pub(super) peer: SocketAddr,
    pub(super) held: Held,
}

/// The connection-cap permit and the client slot a connection holds.
pub(super) type Held = (OwnedSemaphorePermit, Slot);

impl<H: Handler> Accepting<H> {
    pub(super) fn new(handler: Arc<H>, limits: Limits, tls: Option<TlsAcceptor>, shutdown: Shutdown) -> Accepting<H> {
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
    pub(super) async fn accept(&self, tcp: &TcpListener, mut dispatch: impl FnMut(Accepted)) {
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
    pub(super) fn spawn(&self, accepted: Accepted) {
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
    pub(super) async fn drain(&self) -> bool {
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
