//! The `ProxyHttp` implementation: thin phases that call `identity`, `token`, `reply` and
//! `stats`. One request: refuse what we must (405/413/400/401, nothing goes upstream), mint a
//! token, forward with our `x-my-jwt` only, hand the token back, log one record.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{Method, Uri};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType, Result};

use crate::access_log;
use crate::config::{Config, UpstreamUrl};
use crate::header_timeout;
use crate::identity::{self, Rejection, UserSource};
use crate::reply::{self, ErrorKind};
use crate::stats::{Outcome, Record, Stats};
use crate::token::{BearerVerifier, Jti, Minter};

/// The header carrying our token, upstream and back to the client.
pub const TOKEN_HEADER: &str = "x-my-jwt";

/// Pingora can replay a body read before the upstream request only from its retry buffer,
/// which holds 64 KiB; the `json:` source therefore caps bodies at this size.
pub const RETRY_BUFFER_LIMIT: u64 = 64 * 1024;

/// Upstream connections idle in the pool longer than this are closed (below common keep-alive
/// timeouts of upstream servers, so we rarely reuse a connection the upstream is closing).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

pub struct JwtProxy {
    minter: Minter,
    verifier: BearerVerifier,
    user_source: UserSource,
    user_default: Option<String>,
    /// Effective body limit (for `json:` at most the retry buffer).
    max_body: u64,
    upstream: UpstreamUrl,
    /// The upstream target when the client sent no query (the common case), parsed once.
    plain_target: Uri,
    host: HeaderValue,
    peer: HttpPeer,
    stats: Arc<Stats>,
    access_log: bool,
    client_keepalive_secs: u64,
    client_body_timeout: Duration,
    max_header_bytes: usize,
}

/// Per-request state.
pub struct Ctx {
    start: Instant,
    start_unix_ms: u64,
    jti: Jti,
    counted: bool,
    user: Option<String>,
    token: Option<HeaderValue>,
    iat: Option<u64>,
    exp: Option<u64>,
    spoofed: bool,
    /// The client's Authorization was its identity: do not forward it.
    drop_authorization: bool,
    body_bytes: u64,
    upstream_status: Option<u16>,
    outcome: Option<Outcome>,
    error: Option<Cow<'static, str>>,
}

impl JwtProxy {
    /// `upstream_addr` is the resolved `UPSTREAM_URL` host (resolved once at start-up).
    pub fn new(config: &Config, upstream_addr: SocketAddr, stats: Arc<Stats>) -> Result<JwtProxy> {
        let mut peer = HttpPeer::new(upstream_addr, false, String::new());
        peer.options.connection_timeout = Some(config.connect_timeout);
        peer.options.total_connection_timeout = Some(config.connect_timeout);
        peer.options.read_timeout = Some(config.upstream_timeout);
        peer.options.write_timeout = Some(config.upstream_timeout);
        peer.options.idle_timeout = Some(POOL_IDLE_TIMEOUT);
        let max_body = if config.user_source.reads_body() {
            config.max_body_bytes.min(RETRY_BUFFER_LIMIT)
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
        Ok(JwtProxy {
            minter: Minter::new(&config.key, &config.token),
            verifier: BearerVerifier::new(&config.key),
            user_source: config.user_source.clone(),
            user_default: config.user_default.clone(),
            max_body,
            upstream: config.upstream.clone(),
            plain_target,
            host,
            peer,
            stats,
            access_log: config.access_log,
            client_keepalive_secs: config.client_keepalive_secs,
            client_body_timeout: config.client_body_timeout,
            max_header_bytes: config.max_header_bytes,
        })
    }

    /// The user of this request, per `USER_SOURCE` (reading the body for `json:`).
    async fn identify(&self, session: &mut Session, ctx: &mut Ctx) -> Result<String, ErrorKind> {
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
                let found =
                    identity::from_bearer(auth.iter().map(HeaderValue::as_bytes), &self.verifier);
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
                .ok_or_else(|| refusal(&Rejection::Missing)),
            Err(r) => Err(refusal(&r)),
        }
    }

    /// Read the whole body into Pingora's retry buffer (which it replays upstream), refusing
    /// past `max_body`.
    async fn read_body(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Bytes, ErrorKind> {
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
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let minted = self.minter.mint(user, now, &ctx.jti);
        let value = HeaderValue::from_maybe_shared(Bytes::from(minted.token))
            .map_err(|e| Error::because(ErrorType::InternalError, "token header", e))?;
        self.stats
            .signing_duration_ns
            .observe(t0.elapsed().as_nanos() as u64);
        self.stats.tokens_minted.fetch_add(1, Relaxed);
        ctx.token = Some(value);
        ctx.iat = Some(minted.iat);
        ctx.exp = minted.exp;
        Ok(())
    }

    /// A refusal of the request head itself: too large, or framed ambiguously. Judged on the
    /// head as received (only HTTP/1 is served: no TLS, no h2c).
    fn head_refusal(&self, session: &Session) -> Option<ErrorKind> {
        let raw = session.as_downstream().as_http1()?.get_headers_raw_bytes();
        if raw.len() > self.max_header_bytes {
            return Some(reply::HEADERS_TOO_LARGE);
        }
        framing_problem(session.req_header(), &raw)
            .map(|problem| reply::INVALID_FRAMING.because(problem))
    }

    async fn refuse(&self, session: &mut Session, ctx: &mut Ctx, kind: ErrorKind) -> Result<bool> {
        ctx.outcome = Some(Outcome::Rejected);
        ctx.error = Some(Cow::Borrowed(kind.code));
        reply::write_error(session.as_downstream_mut(), kind, ctx.jti.as_str()).await?;
        Ok(true)
    }

    fn record(&self, session: &Session, ctx: &mut Ctx, status: u16) -> Record {
        let req = session.req_header();
        Record {
            time_unix_ms: ctx.start_unix_ms,
            client: session.client_addr().and_then(|a| a.as_inet()).copied(),
            http_version: version_str(req.version),
            method: req.method.clone(),
            uri: req.uri.clone(),
            status,
            upstream_status: ctx.upstream_status,
            duration_us: ctx.start.elapsed().as_micros() as u64,
            bytes_in: session.body_bytes_read() as u64,
            bytes_out: session.body_bytes_sent() as u64,
            headers: req.headers.clone(),
            user: ctx.user.take(),
            jti: ctx.jti,
            iat: ctx.iat,
            exp: ctx.exp,
            token_unsigned: ctx
                .token
                .as_ref()
                .and_then(|t| t.to_str().ok())
                .and_then(|t| t.rsplit_once('.'))
                .map(|(unsigned, _sig)| unsigned.to_string()),
            spoofed: ctx.spoofed,
            error: ctx.error.take(),
        }
    }
}

/// Why the request's framing or routing headers are ambiguous, if they are. Intermediaries
/// that disagree on where a body ends are how requests get smuggled, so anything but one plain
/// `Content-Length` or one `Transfer-Encoding: chunked` is refused before we read or forward.
/// `raw_head` is the head as received: Pingora drops a `Content-Length` sent beside
/// `Transfer-Encoding` from its parsed copy (RFC 9112 6.3), so only the raw head shows both.
pub fn framing_problem(req: &RequestHeader, raw_head: &[u8]) -> Option<&'static str> {
    let h = &req.headers;
    let mut lengths = h.get_all(header::CONTENT_LENGTH).iter();
    let length = lengths.next();
    if lengths.next().is_some() {
        return Some("more than one Content-Length header");
    }
    if length.is_some_and(|v| v.is_empty() || !v.as_bytes().iter().all(u8::is_ascii_digit)) {
        return Some("Content-Length is not a single decimal number");
    }
    let mut codings = h.get_all(header::TRANSFER_ENCODING).iter();
    if let Some(coding) = codings.next() {
        if length.is_some() || raw_has_header(raw_head, b"content-length") {
            return Some("both Content-Length and Transfer-Encoding");
        }
        if codings.next().is_some()
            || !coding
                .as_bytes()
                .trim_ascii()
                .eq_ignore_ascii_case(b"chunked")
        {
            return Some("Transfer-Encoding other than a single \"chunked\"");
        }
    }
    if req.version == http::Version::HTTP_11 && !h.contains_key(header::HOST) {
        return Some("HTTP/1.1 request without a Host header");
    }
    None
}

/// Whether a raw request head has a header line `name:` (`name` in lower case).
fn raw_has_header(raw: &[u8], name: &[u8]) -> bool {
    raw.split(|&b| b == b'\n').skip(1).any(|line| {
        line.len() > name.len()
            && line[name.len()] == b':'
            && line[..name.len()].eq_ignore_ascii_case(name)
    })
}

fn version_str(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_11 => "HTTP/1.1",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/?",
    }
}

/// Map a proxying failure to our error kind; `None`: the client is gone, write nothing.
pub fn classify_failure(e: &Error) -> Option<ErrorKind> {
    use ErrorType::*;
    match (e.esource(), e.etype()) {
        (_, HTTPStatus(413)) => Some(reply::BODY_TOO_LARGE),
        (_, HTTPStatus(s)) => Some(ErrorKind {
            status: *s,
            code: "error",
            message: "the request failed",
        }),
        (ErrorSource::Upstream, ReadTimedout | WriteTimedout) => Some(reply::GATEWAY_TIMEOUT),
        (ErrorSource::Upstream, _) => Some(reply::BAD_GATEWAY),
        (ErrorSource::Downstream, ReadError | WriteError | ConnectionClosed) => None,
        (ErrorSource::Downstream, ReadTimedout) => Some(reply::REQUEST_TIMEOUT),
        (ErrorSource::Downstream, _) => Some(reply::BAD_REQUEST),
        _ => Some(reply::INTERNAL),
    }
}

fn refusal(r: &Rejection) -> ErrorKind {
    ErrorKind {
        status: r.status(),
        code: r.code(),
        message: r.message(),
    }
}

#[async_trait]
impl ProxyHttp for JwtProxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            start: Instant::now(),
            start_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as u64,
            jti: Jti::random(),
            counted: false,
            user: None,
            token: None,
            iat: None,
            exp: None,
            spoofed: false,
            drop_authorization: false,
            body_bytes: 0,
            upstream_status: None,
            outcome: None,
            error: None,
        }
    }

    async fn early_request_filter(&self, session: &mut Session, _ctx: &mut Ctx) -> Result<()> {
        header_timeout::head_received(session);
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
        ctx.counted = true;
        ctx.spoofed = session.req_header().headers.contains_key(TOKEN_HEADER);
        if let Some(refusal) = self.head_refusal(session) {
            return self.refuse(session, ctx, refusal).await;
        }
        if session.req_header().method != Method::POST {
            return self.refuse(session, ctx, reply::METHOD_NOT_ALLOWED).await;
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

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        Ok(Box::new(self.peer.clone()))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        up: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        match session.req_header().uri.query() {
            None | Some("") if self.upstream.query.is_none() => {
                up.set_uri(self.plain_target.clone())
            }
            query => {
                let target = self.upstream.target(query);
                up.set_uri(
                    target
                        .parse()
                        .map_err(|e| Error::because(ErrorType::InvalidHTTPHeader, "target", e))?,
                );
            }
        }
        up.insert_header(header::HOST, self.host.clone())?;
        // `insert` replaces every value the client sent: exactly one x-my-jwt, ours, goes up.
        match &ctx.token {
            Some(token) => up.insert_header(TOKEN_HEADER, token.clone())?,
            None => {
                up.remove_header(TOKEN_HEADER);
            }
        }
        if ctx.drop_authorization {
            up.remove_header(&header::AUTHORIZATION);
        }
        if let Some(ip) = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
        {
            let forwarded = match up
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
            {
                Some(prior) => format!("{prior}, {ip}"),
                None => ip.to_string(),
            };
            up.insert_header("x-forwarded-for", forwarded)?;
        }
        up.insert_header("x-forwarded-proto", "http")?;
        Ok(())
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

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        ctx.upstream_status = Some(resp.status.as_u16());
        ctx.outcome = Some(Outcome::Proxied);
        if let Some(token) = &ctx.token {
            resp.insert_header(TOKEN_HEADER, token.clone())?;
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let Some(kind) = classify_failure(e) else {
            ctx.outcome = Some(Outcome::Failed);
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        };
        ctx.outcome = Some(match kind.status {
            502 | 504 => Outcome::UpstreamError,
            400..=499 => Outcome::Rejected,
            _ => Outcome::Failed,
        });
        ctx.error = Some(Cow::Owned(format!("{}: {}", kind.code, e.etype().as_str())));
        if let Err(we) =
            reply::write_error(session.as_downstream_mut(), kind, ctx.jti.as_str()).await
        {
            log::debug!("could not send {} to the client: {we}", kind.status);
        }
        FailToProxy {
            error_code: kind.status,
            can_reuse_downstream: false,
        }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &Ctx, _error: &Error) -> bool {
        // Every request already gets one access-log record, errors included.
        self.access_log
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        header_timeout::request_done(session);
        if !ctx.counted {
            return;
        }
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let outcome = ctx.outcome.unwrap_or(if status == 0 {
            Outcome::Failed
        } else {
            Outcome::Proxied
        });
        let record = self.record(session, ctx, status);
        if self.access_log {
            access_log::write(&record);
        }
        self.stats.request_finished(outcome, record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A parsed head and the raw bytes it came from.
    fn head(version: http::Version, headers: &[(&str, &str)]) -> (RequestHeader, Vec<u8>) {
        let mut req = RequestHeader::build("POST", b"/", None).expect("request");
        req.set_version(version);
        let mut raw = format!("POST / {version:?}\r\n");
        for (k, v) in headers {
            req.append_header(k.to_string(), *v).expect("header");
            raw.push_str(&format!("{k}: {v}\r\n"));
        }
        raw.push_str("\r\n");
        (req, raw.into_bytes())
    }

    fn problem(version: http::Version, headers: &[(&str, &str)]) -> Option<&'static str> {
        let (req, raw) = head(version, headers);
        framing_problem(&req, &raw)
    }

    #[test]
    fn only_unambiguous_framing_passes() {
        const HTTP_10: http::Version = http::Version::HTTP_10;
        const HTTP_11: http::Version = http::Version::HTTP_11;
        let ok: &[&[(&str, &str)]] = &[
            &[("host", "x")],
            &[("host", "x"), ("content-length", "12")],
            &[("host", "x"), ("transfer-encoding", "chunked")],
            &[("host", "x"), ("transfer-encoding", "CHUNKED")],
        ];
        for h in ok {
            assert_eq!(problem(HTTP_11, h), None, "{h:?}");
        }
        assert_eq!(problem(HTTP_10, &[]), None, "no Host in 1.0");
        let bad: &[&[(&str, &str)]] = &[
            &[],
            &[
                ("host", "x"),
                ("content-length", "2"),
                ("content-length", "2"),
            ],
            &[("host", "x"), ("content-length", "2, 2")],
            &[("host", "x"), ("content-length", "+2")],
            &[("host", "x"), ("content-length", "")],
            &[
                ("host", "x"),
                ("content-length", "4"),
                ("transfer-encoding", "chunked"),
            ],
            &[("host", "x"), ("transfer-encoding", "identity, chunked")],
            &[("host", "x"), ("transfer-encoding", "chunked, chunked")],
            &[
                ("host", "x"),
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked"),
            ],
            &[("host", "x"), ("transfer-encoding", "gzip")],
        ];
        for h in bad {
            assert!(problem(HTTP_11, h).is_some(), "{h:?}");
        }
        // What Pingora hands us for Content-Length + Transfer-Encoding: the parsed copy lost the
        // Content-Length, the raw head still has it.
        let (req, _) = head(HTTP_11, &[("host", "x"), ("transfer-encoding", "chunked")]);
        let raw = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(
            framing_problem(&req, raw),
            Some("both Content-Length and Transfer-Encoding")
        );
    }

    #[test]
    fn raw_header_lines_are_found_by_name() {
        let raw = b"POST /content-length: HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nX-A: content-length:\r\n\r\n";
        assert!(raw_has_header(raw, b"content-length"));
        assert!(raw_has_header(raw, b"host"));
        assert!(!raw_has_header(raw, b"transfer-encoding"));
        assert!(!raw_has_header(
            b"POST / HTTP/1.1\r\nX-A: content-length: 1\r\n\r\n",
            b"content-length"
        ));
    }
}
