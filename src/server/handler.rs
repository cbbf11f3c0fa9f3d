//! What the server asks of whatever answers its requests: a [`Handler`]
//! (the gateway, the metrics listener, the demo upstream), and what it is
//! told about the connection.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::Request;
use hyper::body::Incoming;

use crate::body::Response;

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
