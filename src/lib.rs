//! Portcullis: a two-factor authentication gateway. It runs as a reverse proxy
//! in front of an application (or as the forward-auth server of nginx, Traefik
//! or Caddy), serves its own login and one-time-code pages, and forwards
//! authenticated traffic with identity headers.
//!
//! A map of the modules, in the order a request meets them
//! (`docs/architecture.md` walks three requests through them):
//!
//! - `server`: listeners, TLS, connection limits, worker threads, draining
//!   (a file each: `listener`, `tls`, `limits`, `client_slots`, `accept`,
//!   `workers`, `connection`, `protocols`, `asleep`, `on_wake`, `handler`);
//!   `shutdown`: the one "stop now" everything watches; `worker`: which
//!   worker thread runs the code at hand.
//! - `client_ip`: the client's address (the peer, or what a trusted proxy
//!   names in `X-Forwarded-For`), for the server, the rules and the proxy.
//! - `router`: the [`router::Gateway`] handler: access log and metrics, then
//!   the portal for paths under `auth.prefix`, or the gate and the proxy.
//! - `request`: what is known of a request (client address, scheme) and of
//!   its answer for the log.
//! - `gate`: the one access decision (rules + session → allow, log in, deny),
//!   asking `auth::levels` (the one answer to which level a request needs).
//! - `access`: the access-control rules, and how a request is described to them.
//! - `normalize`: the one normal form of paths, hosts and URLs.
//! - `session`: tokens, the gateway's cookies (written and read), lifetimes.
//! - `identity`: the identity headers, stripped and applied in one place.
//! - `proxy`: upstream selection, header hygiene, streaming, upgrades.
//! - `portal`: the gateway's own endpoints (route table, pages, JSON API,
//!   forward-auth); one handler per endpoint for HTML and JSON.
//! - `reply`: reply formats, response builders, and every failure's status
//!   and message; `body`: the one response body type; `assets`: the embedded
//!   stylesheet, script and icon.
//! - `auth`: users (the users file, its live copy and its one writer),
//!   passwords, codes, the login state machine, account actions, lockouts,
//!   alerts, the levels sessions need; narrow handles, unit-testable.
//! - `ratelimit`: the configured limits over the store's sliding windows.
//! - `audit`: the audit trail (store + `security` log target).
//! - `store`: the state behind domain operations (memory or Redis).
//! - `mail`: transports and message rendering; `render`: the templates.
//! - `config`: the typed config, loading and validation (with the value
//!   languages: `store.url` as a `StoreUrl`, LDAP filter templates);
//!   `clock`: time; `ca_file`: operator-supplied CA certificates; `keys`:
//!   every key and keyed hash drawn from `auth.secret`.
//! - `admin`: the admin endpoint beside `/metrics` (unlock, revoke sessions,
//!   forget a removed user, accounts' factors and locks for `user list`);
//!   `reach`: how a command finds it, or the store when no gateway runs.
//! - `app`: assembly of all of the above; `metrics`, `logging`, `demo`;
//!   `init` (a starter config) and `healthcheck` (the container probe).

#![forbid(unsafe_code)]

pub mod access;
pub mod admin;
pub mod app;
pub mod assets;
pub mod audit;
pub mod auth;
pub mod body;
pub mod ca_file;
pub mod client_ip;
pub mod clock;
pub mod config;
pub mod demo;
pub mod gate;
pub mod healthcheck;
pub mod identity;
pub mod init;
pub mod keys;
pub mod logging;
pub mod mail;
pub mod metrics;
pub mod normalize;
pub mod portal;
pub mod proxy;
pub mod ratelimit;
pub mod reach;
pub mod render;
pub mod reply;
pub mod request;
pub mod router;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod store;
pub mod worker;
