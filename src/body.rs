//! The one response body type of the gateway. An enum instead of a boxed trait
//! object keeps the per-request path free of allocation: gateway pages are
//! `Full`, proxied responses stream the upstream's `Incoming` untouched.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

pin_project_lite::pin_project! {
    #[project = BodyProj]
    pub enum Body {
        Empty,
        Full { data: Option<Bytes> },
        Upstream { #[pin] inner: Incoming },
    }
}

impl Body {
    pub fn empty() -> Body {
        Body::Empty
    }

    pub fn full(data: impl Into<Bytes>) -> Body {
        let data = data.into();
        if data.is_empty() { Body::Empty } else { Body::Full { data: Some(data) } }
    }

    pub fn upstream(inner: Incoming) -> Body {
        Body::Upstream { inner }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.project() {
            BodyProj::Empty => Poll::Ready(None),
            BodyProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            BodyProj::Upstream { inner } => inner.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full { data } => data.is_none(),
            Body::Upstream { inner } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full { data } => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Body::Upstream { inner } => inner.size_hint(),
        }
    }
}

/// The response type every handler returns.
pub type Response = http::Response<Body>;
