//! The one response body type of the gateway. An enum instead of a boxed trait
//! object keeps the per-request path free of allocation: gateway pages are
//! `Full`, proxied responses stream the upstream's `Incoming` untouched.
//!
//! A proxied body that goes silent for longer than the upstream's timeout is
//! cut off with an error (the client sees a broken response). Without that, an
//! upstream that stalled in the middle of a body held the client's connection
//! and its own forever.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

pin_project_lite::pin_project! {
    #[project = BodyProj]
    pub enum Body {
        Empty,
        Full { data: Option<Bytes> },
        Upstream {
            #[pin] inner: Incoming,
            // When the last frame came, and the longest silence allowed after it.
            last_frame: Instant,
            idle_limit: Duration,
            // Armed the first time the upstream makes us wait: bodies that
            // arrive without waiting never touch the timer.
            idle: Option<Pin<Box<Sleep>>>,
        },
    }
}

/// Why a body ended early.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    Upstream(#[from] hyper::Error),
    #[error("the upstream sent nothing for {0:?} in the middle of a body")]
    Stalled(Duration),
}

impl Body {
    pub fn empty() -> Body {
        Body::Empty
    }

    pub fn full(data: impl Into<Bytes>) -> Body {
        let data = data.into();
        if data.is_empty() { Body::Empty } else { Body::Full { data: Some(data) } }
    }

    /// A proxied body, cut off once the upstream is silent for `idle_limit`
    /// (counted from `since`, when its head came).
    pub fn upstream(inner: Incoming, since: Instant, idle_limit: Duration) -> Body {
        Body::Upstream { inner, last_frame: since, idle_limit, idle: None }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.project() {
            BodyProj::Empty => Poll::Ready(None),
            BodyProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            BodyProj::Upstream { inner, last_frame, idle_limit, idle } => match inner.poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    *last_frame = Instant::now();
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => {
                    let deadline = *last_frame + *idle_limit;
                    let sleep = idle.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                    // The timer is moved on only when it fires, not at every
                    // frame: at most one re-arm per `idle_limit`.
                    while sleep.as_mut().poll(cx).is_ready() {
                        let deadline = *last_frame + *idle_limit;
                        if Instant::now() >= deadline {
                            tracing::warn!(limit = ?idle_limit, "upstream stalled in the middle of a body; response cut off");
                            return Poll::Ready(Some(Err(BodyError::Stalled(*idle_limit))));
                        }
                        sleep.as_mut().reset(deadline);
                    }
                    Poll::Pending
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full { data } => data.is_none(),
            Body::Upstream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full { data } => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Body::Upstream { inner, .. } => inner.size_hint(),
        }
    }
}

/// The response type every handler returns.
pub type Response = http::Response<Body>;
