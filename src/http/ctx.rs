//! One request's state between the phases, and what records it if Pingora never logs it (the
//! end of a drain dropped it in flight).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderValue;

use crate::http::reply::ErrorReply;
use crate::observe::access_log::AccessLog;
use crate::observe::decisions::Reason;
use crate::observe::record::Record;
use crate::observe::stats::{Counter, Stats};
use crate::signing::minting::Jti;

/// The token minted for this request, as it goes into headers, and the times it carries.
pub(super) struct MintedHeader {
    pub(super) value: HeaderValue,
    pub(super) iat: u64,
    pub(super) exp: Option<u64>,
}

/// Per-request state.
pub struct Ctx {
    pub(super) start: Instant,
    pub(super) start_unix_ms: u64,
    pub(super) jti: Jti,
    /// Set when the request is counted; taken when it is recorded. Still set when the request
    /// is dropped unrecorded (the end of a drain cut it): `Drop` records it then.
    pub(super) unrecorded: Option<Unrecorded>,
    pub(super) user: Option<String>,
    pub(super) minted: Option<MintedHeader>,
    pub(super) spoofed: bool,
    /// The client's Authorization was its identity: do not forward it.
    pub(super) drop_authorization: bool,
    pub(super) body_bytes: u64,
    pub(super) upstream_status: Option<u16>,
    /// The request's head and body as framed on the wire, when known without reading the body;
    /// taken from the head once, in `request_filter`.
    pub(super) wire_len: Option<u64>,
    /// The error reply we sent (a refusal or a failure): it decides the outcome.
    pub(super) reply: Option<ErrorReply>,
    pub(super) error: Option<Cow<'static, str>>,
    /// The upstream address a connect failed at; the one retry goes elsewhere or not at all.
    pub(super) connect_failed_at: Option<std::net::SocketAddr>,
}

/// What a request that is never logged by Pingora still needs to be recorded.
pub(super) struct Unrecorded {
    pub(super) stats: Arc<Stats>,
    pub(super) access_log: Option<AccessLog>,
    /// The record so far (request facts known at the start).
    pub(super) record: Record,
}

impl Drop for Ctx {
    fn drop(&mut self) {
        // Only reached with `unrecorded` set when the runtime is shut down at the end of a
        // drain with this request still in flight: it got no answer, but it is not silent.
        if let Some(u) = self.unrecorded.take() {
            let mut r = u.record;
            r.duration_us = self.start.elapsed().as_micros() as u64;
            r.user = self.user.take();
            r.reason = Reason::DrainCut;
            r.error = Some(Cow::Borrowed(
                "drain_cut: still in flight when the grace period ended",
            ));
            u.stats.inc(Counter::DrainCut);
            if let Some(log) = &u.access_log {
                log.write(&r);
                // The process is about to exit: see the line out.
                log.flush(Duration::from_millis(500));
            }
            u.stats.request_finished(r);
        }
    }
}
