//! Listeners: plain TCP or TLS (rustls, ALPN h2 + http/1.1), HTTP/1.1 and HTTP/2
//! auto-detected, a connection cap, slowloris protection (header-read timeout,
//! header-size cap), idle HTTP/1.1 connections put to sleep without hyper's
//! buffers, and graceful shutdown: stop accepting, let in-flight requests
//! finish within `shutdown_grace`, then close what is left.
//!
//! One concept a file, in the order a connection meets them:
//! - `listener`: a bound listener, and why one could not start; `tls`: the
//!   acceptor from the configured certificate and key;
//! - `limits`: `[server]`'s connection limits; `client_slots`: the cap on
//!   one client's connections;
//! - `accept`: the accept loop, the caps, draining at shutdown, and
//!   [`serve`] on the current runtime; `workers`: [`serve_on_workers`], a
//!   runtime a thread, each connection staying on one;
//! - `connection`: one connection's life (protocol, requests, sleep, idle
//!   timeout, graceful close), with `protocols` (the HTTP/1.1 and HTTP/2
//!   settings), `asleep` (a sleeping connection, and the activity that
//!   decides when it may sleep) and `on_wake` (polling only what woke);
//! - `handler`: what answers the requests ([`Handler`], [`ConnInfo`]).

mod accept;
mod asleep;
mod client_slots;
mod connection;
mod handler;
mod limits;
mod listener;
mod on_wake;
mod protocols;
mod tls;
mod workers;

pub use accept::serve;
pub use handler::{ConnInfo, Handler};
pub use limits::Limits;
pub use listener::{Listener, ServerError};
pub use tls::tls_acceptor;
pub use workers::{STACK_SIZE, serve_on_workers};
