//! jwt-proxy: a Pingora proxy that mints a JWT (HS512, EdDSA or ES256) for every request and
//! injects it into the request it forwards. See README.md for the user's manual, and
//! docs/layout.md for this tree: layers only point down, from `main` through `http`, `conn`
//! and `observe`, to `config` and `signing`, to `os` and `clock`.

pub mod cli;
pub mod clock;
pub mod config;
pub mod conn;
pub mod http;
pub mod observe;
pub mod os;
pub mod pingora_limits;
pub mod signing;
pub mod tools;

/// The header carrying our token: upstream, back to the client, and nowhere else.
pub const TOKEN_HEADER: &str = "x-my-jwt";
