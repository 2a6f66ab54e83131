//! jwt-proxy: a Pingora proxy that mints a JWT (HS512, EdDSA or ES256) for every request and
//! injects it into the request it forwards. See README.md for the user's manual.

pub mod access_log;
pub mod client;
pub mod config;
pub mod connection_cap;
pub mod decisions;
pub mod drain;
pub mod echo;
pub mod forwarding;
pub mod head_checks;
pub mod header_timeout;
pub mod identity;
pub mod jwks_client;
pub mod key_reload;
pub mod key_tool;
pub mod keys;
pub mod keyset;
pub mod listener;
pub mod minting;
pub mod proxy;
pub mod record;
pub mod reply;
pub mod rotation;
pub mod shutdown;
pub mod stats;
pub mod status;
pub mod status_page;
pub mod timeline;
pub mod upstream;
pub mod verification;

/// The header carrying our token: upstream, back to the client, and nowhere else.
pub const TOKEN_HEADER: &str = "x-my-jwt";
