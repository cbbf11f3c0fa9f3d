//! Portcullis: a two-factor authentication gateway. It runs as a reverse proxy in
//! front of an application (or as the forward-auth server of nginx, Traefik or
//! Caddy), serves its own login and one-time-code pages, and forwards
//! authenticated traffic with identity headers.

pub mod config;
pub mod store;
pub mod assets;
pub mod mail;
pub mod render;
pub mod body;
pub mod metrics;
pub mod proxy;
pub mod server;
pub mod access;
pub mod auth;
pub mod session;
pub mod app;
pub mod portal;
pub mod router;
pub mod demo;
