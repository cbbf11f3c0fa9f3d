//! HTTP/1.1 and HTTP/2: the settings every connection of a listener is
//! served with (header-read timeout and header-size cap against slowloris,
//! keep-alive, HTTP/2's streams and pings).

use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::limits::Limits;

/// The HTTP/1.1 and HTTP/2 settings every connection of a listener is served with.
pub(super) struct Protocols {
    pub(super) h1: http1::Builder,
    pub(super) h2: http2::Builder<TokioExecutor>,
}

impl Protocols {
    pub(super) fn new(limits: &Limits) -> Protocols {
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
