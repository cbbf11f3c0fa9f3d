//! Idle HTTP/1.1 connections put to sleep.
//!
//! hyper keeps a connection's read and write buffers, its state and room for a
//! request's future for the connection's whole life: about 30 KiB for every
//! idle keep-alive connection, and browsers and proxies hold many. hyper also
//! closes a connection whose next request head has not come within the
//! header-read timeout, idle or not. So once a connection has been quiet for a
//! quarter of a second (or a third of that timeout, if shorter), hyper's part
//! of it is ended and only the socket is kept, with a small task waiting for
//! it to become readable; the next request's first bytes wake it, and a new
//! hyper connection takes it on. A sleeping connection stays open until the
//! idle timeout.
//!
//! hyper has no call that hands back an idle connection's socket. It does end
//! a connection cleanly, and give the socket back through `into_parts`, when a
//! read between requests finds the end of the stream. [`Sleepy`] reads as the
//! end of the stream once the connection's task asks it to, and skips the
//! shutdown of the socket that follows. The task asks only when [`Activity`]
//! shows hyper is between requests: every response finished (its body
//! dropped), the last request had no body that might be left unread, no part
//! of the next request's head has come (a head split by a pause is waited
//! for, up to the header-read timeout), and no bytes came for a whole check
//! interval. If hyper gives the socket back with an error (a request head
//! begun and cut short) or with bytes it read and did not parse, the
//! connection is closed rather than put to sleep.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::body::{Body, BodyError};

/// A socket a sleeping connection can wait on.
pub(super) trait Socket: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Resolves once the peer has sent something, or closed.
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send;
}

impl Socket for TcpStream {
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send {
        TcpStream::readable(self)
    }
}

impl Socket for tokio_rustls::server::TlsStream<TcpStream> {
    // A connection goes to sleep only after a read found nothing, so rustls
    // holds no plaintext then: new bytes on the socket are the next request's.
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send {
        self.get_ref().0.readable()
    }
}

/// What a connection's task, its service and its socket tell each other.
#[derive(Default)]
pub(super) struct Activity {
    /// Requests begun.
    requests: AtomicU64,
    /// Reads that brought bytes.
    reads: AtomicU64,
    /// Requests whose response hyper has not finished with.
    in_flight: AtomicUsize,
    /// The last request came with a body, which its handler may have left unread.
    last_had_body: AtomicBool,
    /// Bytes came between requests and no request has begun from them yet:
    /// a head under way, which hyper holds and a sleep would lose.
    head_begun: AtomicBool,
    /// The task's request: end hyper's part at its next read that finds nothing.
    sleep: AtomicBool,
}

/// Everything that moves on a connection, to tell a quiet one from a busy one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Moves {
    requests: u64,
    reads: u64,
}

impl Activity {
    pub(super) fn moves(&self) -> Moves {
        Moves { requests: self.requests.load(Relaxed), reads: self.reads.load(Relaxed) }
    }

    /// No response is being made or sent.
    pub(super) fn between_requests(&self) -> bool {
        self.in_flight.load(Relaxed) == 0
    }

    /// Between requests, with nothing of the last one left to read and no
    /// part of the next one read.
    pub(super) fn may_sleep(&self) -> bool {
        self.between_requests() && !self.last_had_body.load(Relaxed) && !self.head_begun.load(Relaxed)
    }

    pub(super) fn ask_to_sleep(&self) {
        self.sleep.store(true, Relaxed);
    }

    /// Withdraws the request to sleep, if hyper did not act on it.
    pub(super) fn stay_awake(&self) {
        self.sleep.store(false, Relaxed);
    }

    /// A request begins: its response is in flight until the returned guard
    /// (carried by the response body) is dropped.
    pub(super) fn begin(self: &Arc<Self>, has_body: bool) -> InFlight {
        self.requests.fetch_add(1, Relaxed);
        self.in_flight.fetch_add(1, Relaxed);
        self.last_had_body.store(has_body, Relaxed);
        self.head_begun.store(false, Relaxed);
        InFlight(self.clone())
    }
}

/// A request whose response hyper has not finished with.
pub(super) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

pin_project_lite::pin_project! {
    /// A response body that marks its request finished when hyper drops it.
    pub(super) struct Tracked {
        #[pin]
        body: Body,
        _in_flight: InFlight,
    }
}

impl Tracked {
    pub(super) fn new(body: Body, in_flight: InFlight) -> Tracked {
        Tracked { body, _in_flight: in_flight }
    }
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A connection's socket as hyper sees it: it reads as the end of the stream
/// when the connection's task has asked it to sleep and nothing is there to read.
pub(super) struct Sleepy<S> {
    io: S,
    activity: Arc<Activity>,
    asleep: bool,
}

impl<S> Sleepy<S> {
    pub(super) fn new(io: S, activity: Arc<Activity>) -> Sleepy<S> {
        Sleepy { io, activity, asleep: false }
    }

    /// The socket, if hyper let go of it because it was asked to sleep.
    pub(super) fn into_sleeping(self) -> Option<S> {
        self.asleep.then_some(self.io)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Sleepy<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                this.activity.reads.fetch_add(1, Relaxed);
                if this.activity.between_requests() {
                    this.activity.head_begun.store(true, Relaxed);
                }
                // Bytes came after all: a request is under way, stay awake.
                if this.activity.sleep.load(Relaxed) {
                    this.activity.sleep.store(false, Relaxed);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if this.activity.sleep.load(Relaxed) => {
                this.activity.sleep.store(false, Relaxed);
                this.asleep = true;
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Sleepy<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // hyper closes what it read as ended; a sleeping connection stays open.
        if self.asleep {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Asked to sleep, the socket reads as ended only when nothing is there,
    /// and its shutdown leaves the peer's side open.
    #[tokio::test]
    async fn reads_as_ended_only_when_asked_and_nothing_is_there() {
        let (mut peer, io) = tokio::io::duplex(64);
        let activity = Arc::new(Activity::default());
        let mut sleepy = Sleepy::new(io, activity.clone());
        let mut buf = [0u8; 8];

        peer.write_all(b"GET").await.unwrap();
        activity.ask_to_sleep();
        assert_eq!(sleepy.read(&mut buf).await.unwrap(), 3, "bytes waiting are read");
        assert_eq!(activity.moves().reads, 1);
        assert!(!activity.sleep.load(Relaxed), "bytes that came cancel the request to sleep");

        activity.ask_to_sleep();
        assert_eq!(sleepy.read(&mut buf).await.unwrap(), 0, "nothing there: read as ended");
        sleepy.shutdown().await.unwrap();
        let io = sleepy.into_sleeping().expect("the socket is handed back asleep");

        // The peer's side is still open: what it sends arrives.
        peer.write_all(b"x").await.unwrap();
        let mut io = io;
        assert_eq!(io.read(&mut buf).await.unwrap(), 1);
    }

    /// A socket that was never asked to sleep is not handed back.
    #[tokio::test]
    async fn a_socket_not_asked_to_sleep_is_not_handed_back() {
        let (_peer, io) = tokio::io::duplex(64);
        let sleepy = Sleepy::new(io, Arc::new(Activity::default()));
        assert!(sleepy.into_sleeping().is_none());
    }

    /// A response is in flight from the request's start until hyper drops its body.
    #[test]
    fn a_response_is_in_flight_until_its_body_is_dropped() {
        let activity = Arc::new(Activity::default());
        assert!(activity.may_sleep());
        let body = Tracked::new(Body::full("hello"), activity.begin(false));
        assert!(!activity.between_requests() && !activity.may_sleep());
        drop(body);
        assert!(activity.may_sleep());

        let with_body = activity.begin(true);
        drop(with_body);
        assert!(activity.between_requests(), "the response is done");
        assert!(!activity.may_sleep(), "but the request's body may be unread");
        drop(activity.begin(false));
        assert!(activity.may_sleep(), "a later request without a body clears it");
    }
}
