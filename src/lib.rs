//! Portcullis: a two-factor authentication gateway. It runs as a reverse proxy in
//! front of an application (or as the forward-auth server of nginx, Traefik or
//! Caddy), serves its own login and one-time-code pages, and forwards
//! authenticated traffic with identity headers.

pub mod access;
pub mod app;
pub mod assets;
pub mod audit;
pub mod auth;
pub mod body;
pub mod ca_file;
pub mod config;
pub mod demo;
pub mod healthcheck;
pub mod init;
pub mod mail;
pub mod metrics;
pub mod portal;
pub mod proxy;
pub mod render;
pub mod router;
pub mod server;
pub mod session;
pub mod store;
