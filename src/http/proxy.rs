//! The `ProxyHttp` implementation: thin phases that call `head_checks`, `identity`, `token`,
//! `forwarding`, `reply` and `stats`. One request: refuse what we must (405/413/400/401,
//! nothing goes upstream), mint a token, forward with our `x-my-jwt` only, hand the token back,
//! record the request once.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::Uri;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::Peer;
use pingora::{Error, ErrorType, Result};

use crate::clock::unix_ms;
use crate::config::Config;
use crate::conn::header_timeout;
use crate::http::ctx::{Ctx, MintedHeader, Unrecorded};
use crate::http::forwarding::{self, remove_aliases, set_forwarding_headers};
use crate::http::head_checks::{
    client_wants_close, expects_continue, head_refusal, noncanonical_length, response_head_len,
    version_str, wire_body_len,
};
use crate::http::identity::{self, Rejection, UserSource};
use crate::http::reply::{self, ErrorReply};
use crate::http::upstream::Upstream;
use crate::observe::access_log::AccessLog;
use crate::observe::decisions::Reason;
use crate::observe::record::Record;
use crate::observe::redact::{self, ShownHeaders};
use crate::observe::stats::{Counter, Stats};
use crate::pingora_limits::RETRY_BUFFER_BYTES;
use crate::signing::live::LiveKeys;
use crate::signing::minting::Jti;
use crate::signing::verification::{BearerError, BearerVerifier};
use crate::TOKEN_HEADER;

pub struct JwtProxy {
    /// The signing keys (swapped whole on a keyset reload).
    keys: Arc<LiveKeys>,
    /// `USER_SOURCE=bearer` only (config guarantees a key then).
    verifier: Option<BearerVerifier>,
    user_source: UserSource,
    user_default: Option<String>,
    /// Effective body limit (for `json:` at most the retry buffer).
    max_body: u64,
    upstream: Arc<Upstream>,
    /// The upstream target when the client sent no query (the common case), parsed once.
    plain_target: Uri,
    host: HeaderValue,
    stats: Arc<Stats>,
    access_log: Option<AccessLog>,
    client_keepalive_secs: u64,
    client_body_timeout: Duration,
    max_header_bytes: usize,
    max_upstream_header_bytes: usize,
    /// Request headers whose values the status service may show.
    shown_headers: Vec<HeaderName>,
    /// Headers whose underscore spellings are removed: the token, the forwarding headers we
    /// set, the identity header.
    owned_headers: Vec<String>,
}

impl JwtProxy {
    pub fn new(
        config: &Config,
        upstream: Arc<Upstream>,
        keys: Arc<LiveKeys>,
        stats: Arc<Stats>,
        access_log: Option<AccessLog>,
    ) -> Result<JwtProxy> {
        let max_body = if config.user_source.reads_body() {
            config.max_body_bytes.min(RETRY_BUFFER_BYTES)
        } else {
            config.max_body_bytes
        };
        let plain_target = config
            .upstream
            .target(None)
            .parse()
            .map_err(|e| Error::because(ErrorType::InternalError, "upstream path", e))?;
        let host = HeaderValue::from_str(&config.upstream.authority)
            .map_err(|e| Error::because(ErrorType::InternalError, "upstream host", e))?;
        let shown_headers = config
            .status_show_headers
            .iter()
            .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
            .collect();
        let mut owned_headers: Vec<String> = forwarding::OWNED_HEADERS
            .iter()
            .map(|h| h.to_string())
            .collect();
        if let UserSource::Header(name) = &config.user_source {
            owned_headers.push(name.as_str().to_string());
        }
        Ok(JwtProxy {
            owned_headers,
            keys,
            verifier: config.bearer_key.as_ref().map(BearerVerifier::new),
            user_source: config.user_source.clone(),
            user_default: config.user_default.clone(),
            max_body,
            upstream,
            plain_target,
            host,
            stats,
            access_log,
            client_keepalive_secs: config.client_keepalive_secs,
            client_body_timeout: config.client_body_timeout,
            max_header_bytes: config.max_header_bytes,
            max_upstream_header_bytes: config.max_upstream_header_bytes,
            shown_headers,
        })
    }

    /// The user of this request, per `USER_SOURCE` (reading the body for `json:`).
    async fn identify(&self, session: &mut Session, ctx: &mut Ctx) -> Result<String, ErrorReply> {
        let found = match &self.user_source {
            UserSource::Header(name) => identity::from_header(
                session
                    .req_header()
                    .headers
                    .get_all(name)
                    .iter()
                    .map(HeaderValue::as_bytes),
            ),
            UserSource::Bearer => {
                let auth = session.req_header().headers.get_all(header::AUTHORIZATION);
                let found = match &self.verifier {
                    Some(v) => identity::from_bearer(auth.iter().map(HeaderValue::as_bytes), v),
                    None => Err(Rejection::Bearer(BearerError::BadSignature)),
                };
                ctx.drop_authorization = matches!(found, Ok(Some(_)));
                found
            }
            UserSource::Json(field) => {
                let body = self.read_body(session, ctx).await?;
                identity::from_json(&body, field)
            }
            UserSource::Static(user) => Ok(Some(user.clone())),
        };
        match found {
            Ok(Some(user)) => Ok(user),
            Ok(None) => self
                .user_default
                .clone()
                .ok_or_else(|| Rejection::Missing.reply()),
            Err(r) => Err(r.reply()),
        }
    }

    /// Read the whole body into Pingora's retry buffer (which it replays upstream), refusing
    /// past `max_body`.
    async fn read_body(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Bytes, ErrorReply> {
        // We read the body before the upstream is contacted, so the `100 Continue` a client
        // waits for must come from us (else it waits out its own timeout, ~1 s for curl).
        if expects_continue(session.req_header()) {
            let go_on = ResponseHeader::build(100, Some(0)).map_err(|_| reply::INTERNAL)?;
            session
                .write_response_header(Box::new(go_on), false)
                .await
                .map_err(|_| reply::BAD_REQUEST)?;
        }
        session.enable_retry_buffering();
        let mut body = BytesMut::new();
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    ctx.body_bytes += chunk.len() as u64;
                    if ctx.body_bytes > self.max_body {
                        return Err(reply::BODY_TOO_LARGE);
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(body.freeze()),
                Err(e) if e.etype() == &ErrorType::ReadTimedout => {
                    return Err(reply::REQUEST_TIMEOUT)
                }
                Err(_) => return Err(reply::BAD_REQUEST),
            }
        }
    }

    fn mint(&self, user: &str, ctx: &mut Ctx) -> Result<()> {
        let t0 = Instant::now();
        let minted = self.keys.mint(user, unix_ms(), &ctx.jti);
        let value = HeaderValue::from_maybe_shared(Bytes::from(minted.token))
            .map_err(|e| Error::because(ErrorType::InternalError, "token header", e))?;
        self.stats
            .signing_duration_ns
            .observe(t0.elapsed().as_nanos() as u64);
        self.stats.inc(Counter::TokensMinted);
        self.stats.token_bytes.observe(value.len() as u64);
        ctx.minted = Some(MintedHeader {
            value,
            iat: minted.iat,
            exp: minted.exp,
        });
        Ok(())
    }

    /// Once a drain has begun every answer closes its connection, so the client moves on
    /// (Pingora does this only for requests that began after the drain did; one in flight at
    /// that moment would be answered keep-alive and then cut). Requests the client already
    /// pipelined behind it (received, never answered) would be dropped by that close: while
    /// more are buffered, the connection is kept for them and the last one gets the close.
    /// The wait of `SHUTDOWN_DELAY_SECS` changes nothing here: connections kept open through
    /// it are drained like any other, and closing them early would only send their clients
    /// to connect again just before the listeners close.
    fn keep_open_for_pipelined(&self, session: &mut Session, wire_len: Option<u64>) {
        if !self
            .stats
            .draining
            .load(std::sync::atomic::Ordering::Relaxed)
            || client_wants_close(session.req_header())
        {
            return;
        }
        session.set_keepalive(None);
        // A chunked request's length on the wire is not counted, so whether requests were
        // pipelined behind it cannot be told: its connection is kept (a close would drop them),
        // and closed with the idle ones. (Taking "the last bytes read end a chunked body" as
        // "nothing follows" dropped pipelined chunked requests: found by the second attack.)
        if wire_len.is_none_or(|n| header_timeout::more_buffered(session, n)) {
            session.set_keepalive(Some(self.client_keepalive_secs));
        }
    }

    async fn refuse(&self, session: &mut Session, ctx: &mut Ctx, r: ErrorReply) -> Result<bool> {
        ctx.reply = Some(r);
        ctx.error = Some(Cow::Borrowed(r.code()));
        reply::write_error(session.as_downstream_mut(), r, ctx.jti.as_str()).await?;
        Ok(true)
    }

    /// The record of this request as far as its head tells (`headers`: show them or not).
    fn start_record(
        &self,
        session: &Session,
        ctx: &Ctx,
        head_bytes: usize,
        headers: bool,
    ) -> Record {
        let req = session.req_header();
        Record {
            time_unix_ms: ctx.start_unix_ms,
            client: session.client_addr().and_then(|a| a.as_inet()).copied(),
            http_version: version_str(req.version),
            method: redact::shown_method(&req.method),
            path: redact::shown_path(
                req.uri
                    .path_and_query()
                    .map_or(b"", |p| p.as_str().as_bytes()),
            ),
            status: 0,
            upstream_status: None,
            duration_us: 0,
            bytes_in: 0,
            bytes_out: 0,
            head_bytes,
            headers: if headers {
                ShownHeaders::capture(&req.headers, &self.shown_headers)
            } else {
                ShownHeaders::default()
            },
            user: None,
            jti: ctx.jti,
            iat: None,
            exp: None,
            token_unsigned: None,
            spoofed: ctx.spoofed,
            reason: Reason::ClientGone,
            error: None,
        }
    }

    /// Complete the record at the end of the request (status 0: no answer was sent).
    fn finish_record(&self, session: &Session, ctx: &mut Ctx, mut r: Record) -> Record {
        r.status = session.response_written().map_or(0, |w| w.status.as_u16());
        r.upstream_status = ctx.upstream_status;
        r.duration_us = ctx.start.elapsed().as_micros() as u64;
        r.bytes_in = session.body_bytes_read() as u64;
        r.bytes_out = session.body_bytes_sent() as u64;
        r.user = ctx.user.take();
        if let Some(m) = &ctx.minted {
            r.iat = Some(m.iat);
            r.exp = m.exp;
            r.token_unsigned = m
                .value
                .to_str()
                .ok()
                .and_then(|t| t.rsplit_once('.'))
                .map(|(unsigned, _sig)| unsigned.to_string());
        }
        r.reason = match (ctx.reply, ctx.upstream_status) {
            (Some(reply), _) => reply.reason,
            (None, Some(_)) if r.status != 0 => Reason::Forwarded,
            (None, _) => Reason::ClientGone,
        };
        r.error = ctx.error.take();
        r
    }
}

/// The request head as received (only HTTP/1 is served: no TLS, no h2c).
fn raw_head(session: &Session) -> Option<Bytes> {
    Some(session.as_downstream().as_http1()?.get_headers_raw_bytes())
}

#[async_trait]
impl ProxyHttp for JwtProxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            start: Instant::now(),
            start_unix_ms: unix_ms(),
            jti: Jti::random(),
            unrecorded: None,
            user: None,
            minted: None,
            spoofed: false,
            drop_authorization: false,
            body_bytes: 0,
            upstream_status: None,
            wire_len: None,
            reply: None,
            error: None,
            connect_failed_at: None,
        }
    }

    async fn early_request_filter(&self, session: &mut Session, _ctx: &mut Ctx) -> Result<()> {
        header_timeout::head_received(session);
        // Without an Upgrade in the client's request, no 101 can turn this connection into a
        // tunnel (the upstream never sees one either, see `Upstream`).
        session.req_header_mut().remove_header(&header::UPGRADE);
        // Answer pipelined requests in order (RFC 9112 9.3.2) instead of Pingora's default of
        // closing after the first and dropping the rest.
        session.as_downstream_mut().set_pipelining_enabled(true);
        session
            .as_downstream_mut()
            .set_read_timeout(Some(self.client_body_timeout));
        // Pingora keeps idle client connections forever by default (`Some(0)`); bound them.
        // Keep-alive that is off (client asked to close, process shutting down) stays off.
        if session.get_keepalive() == Some(0) {
            session.set_keepalive(Some(self.client_keepalive_secs));
        }
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        self.stats.request_started();
        ctx.spoofed = session
            .req_header()
            .headers
            .keys()
            .any(|k| k == TOKEN_HEADER || forwarding::is_alias_of(k.as_str(), TOKEN_HEADER));
        let raw = raw_head(session).unwrap_or_default();
        let refused_head = head_refusal(
            session.req_header(),
            &raw,
            self.max_header_bytes,
            &self.owned_headers,
        );
        ctx.wire_len = wire_body_len(session.req_header()).map(|body| raw.len() as u64 + body);
        // A refused head's headers are not kept: its size and the reason explain it.
        let record = self.start_record(session, ctx, raw.len(), refused_head.is_none());
        ctx.unrecorded = Some(Unrecorded {
            stats: self.stats.clone(),
            access_log: self.access_log.clone(),
            record,
        });
        if let Some(r) = refused_head {
            return self.refuse(session, ctx, r).await;
        }
        let declared = session.req_header().headers.get(header::CONTENT_LENGTH);
        if declared
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
            .is_some_and(|n| n > self.max_body)
        {
            return self.refuse(session, ctx, reply::BODY_TOO_LARGE).await;
        }
        let user = match self.identify(session, ctx).await {
            Ok(user) => user,
            Err(refusal) => return self.refuse(session, ctx, refusal).await,
        };
        self.mint(&user, ctx)?;
        ctx.user = Some(user);
        Ok(false)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        if let Some(failed) = ctx.connect_failed_at {
            self.upstream.refresh().await;
            if self.upstream.addr() != failed {
                return Ok(self.upstream.peer());
            }
            // The name still points where the connect just failed: fail now, not twice.
            let mut e = Error::explain(
                ErrorType::ConnectError,
                "upstream unreachable and its address unchanged",
            );
            e.as_up();
            return Err(e);
        }
        Ok(self.upstream.peer())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        self.upstream.connect_failed();
        // Nothing was sent: safe to try once more if the upstream has moved. The address that
        // failed is the peer's, not the current one: a lookup may have moved it meanwhile.
        if ctx.connect_failed_at.is_none() && !self.upstream.is_literal() {
            if let Some(failed) = peer.address().as_inet() {
                ctx.connect_failed_at = Some(*failed);
                e.set_retry(true);
            }
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        up: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        match session.req_header().uri.query() {
            None | Some("") if self.upstream.url.query.is_none() => {
                up.set_uri(self.plain_target.clone())
            }
            query => {
                let target = self.upstream.url.target(query);
                up.set_uri(
                    target
                        .parse()
                        .map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "target", e))?,
                );
            }
        }
        up.insert_header(header::HOST, self.host.clone())?;
        // `insert` replaces every value the client sent: exactly one x-my-jwt, ours, goes up.
        match &ctx.minted {
            Some(m) => up.insert_header(TOKEN_HEADER, m.value.clone())?,
            None => {
                up.remove_header(TOKEN_HEADER);
            }
        }
        if ctx.drop_authorization {
            up.remove_header(&header::AUTHORIZATION);
        }
        remove_aliases(up, &self.owned_headers);
        // The body was read already (json:) and the client got its 100 from us.
        if self.user_source.reads_body() {
            up.remove_header(&header::EXPECT);
        }
        // No upgrade handshake of any kind goes upstream (Pingora's policy already drops them).
        up.remove_header(&header::UPGRADE);
        up.remove_header(&header::CONNECTION);
        up.remove_header("http2-settings");
        if let Some(n) = noncanonical_length(session.req_header()) {
            up.insert_header(header::CONTENT_LENGTH, n.to_string())?;
        }
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        set_forwarding_headers(up, client, session.req_header().headers.get(header::HOST))
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // Streaming sources: enforce the limit on bodies sent without a Content-Length.
        if !self.user_source.reads_body() {
            ctx.body_bytes += body.as_ref().map_or(0, |b| b.len() as u64);
            if ctx.body_bytes > self.max_body {
                return Error::e_explain(
                    ErrorType::HTTPStatus(413),
                    "request body is larger than the limit",
                );
            }
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        _ctx: &mut Ctx,
    ) -> Result<()> {
        if resp.status == http::StatusCode::SWITCHING_PROTOCOLS {
            return Error::e_explain(reply::UPSTREAM_UPGRADE, "upstream answered 101");
        }
        if response_head_len(resp) > self.max_upstream_header_bytes {
            return Error::e_explain(
                reply::UPSTREAM_HEAD_TOO_LARGE,
                "upstream response head over the limit",
            );
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        ctx.upstream_status = Some(resp.status.as_u16());
        if let Some(m) = &ctx.minted {
            resp.insert_header(TOKEN_HEADER, m.value.clone())?;
        }
        self.keep_open_for_pipelined(session, ctx.wire_len);
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let body_done = session.as_downstream_mut().is_body_done();
        let Some(r) = reply::classify_failure(e, body_done) else {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        };
        ctx.reply = Some(r);
        ctx.error = Some(Cow::Owned(format!("{}: {}", r.code(), e.etype().as_str())));
        if let Err(we) = reply::write_error(session.as_downstream_mut(), r, ctx.jti.as_str()).await
        {
            log::debug!("could not send {} to the client: {we}", r.status);
        }
        FailToProxy {
            error_code: r.status,
            can_reuse_downstream: false,
        }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &Ctx, _error: &Error) -> bool {
        // Every request already gets one access-log record, errors included.
        self.access_log.is_some()
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        header_timeout::request_done(session, ctx.wire_len);
        let Some(u) = ctx.unrecorded.take() else {
            return;
        };
        let record = self.finish_record(session, ctx, u.record);
        if let Some(log) = &self.access_log {
            log.write(&record);
        }
        self.stats.request_finished(record);
    }
}
