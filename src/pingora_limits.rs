//! Pingora 0.9.1's own limits that jwt-proxy must mirror (they are private to Pingora), each with
//! the source line it copies. A Pingora upgrade must check each against the new source.

/// Largest request or response head Pingora's HTTP/1 parser accepts: our header limits cannot
/// exceed it. `pingora-core/src/protocols/http/v1/common.rs:30`, `MAX_HEADER_SIZE`.
pub const MAX_HEADER_BYTES: usize = 1_048_575;

/// Pingora's retry buffer: a request body read before the upstream request can be replayed from
/// it up to this size, so the `json:` identity source caps bodies here.
/// `pingora-core/src/protocols/http/v1/common.rs:32`, `BODY_BUF_LIMIT`.
pub(crate) const RETRY_BUFFER_BYTES: u64 = 64 * 1024;

/// Pingora's grace period when `grace_period_seconds` is not set (`null` in the file).
/// `pingora-core/src/server/mod.rs:63`, `EXIT_TIMEOUT`.
pub(crate) const DEFAULT_GRACE_SECS: u64 = 300;
