//! Portcullis: a two-factor authentication gateway. It runs as a reverse proxy in
//! front of an application (or as the forward-auth server of nginx, Traefik or
//! Caddy), serves its own login and one-time-code pages, and forwards
//! authenticated traffic with identity headers.

pub mod config;
pub mod store;
pub mod assets;
pub mod mail;
pub mod render;
