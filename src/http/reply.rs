//! JSON error responses the proxy writes itself: one shape for every refusal and failure, and
//! the one place that decides which reply (and outcome) a proxying failure gets.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::{Error, ErrorSource, ErrorType, Result};

use crate::observe::decisions::Reason;

/// An error reply: why (its reason gives the `error` code and the outcome), its HTTP status
/// (the reason's, but for Pingora's own `error` refusals) and the message for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorReply {
    pub reason: Reason,
    pub status: u16,
    pub message: &'static str,
}

impl ErrorReply {
    /// A reply for `reason`, with its status.
    pub const fn of(reason: Reason, message: &'static str) -> ErrorReply {
        ErrorReply {
            reason,
            status: reason.status(),
            message,
        }
    }

    /// The same kind, saying more precisely what was wrong.
    pub const fn because(self, message: &'static str) -> ErrorReply {
        ErrorReply { message, ..self }
    }

    /// The `error` code of the JSON body.
    pub const fn code(self) -> &'static str {
        self.reason.as_str()
    }
}

/// Our own proxying errors, raised in the phases and classified below.
pub(crate) const UPSTREAM_UPGRADE: ErrorType = ErrorType::Custom("upstream_switched_protocols");
pub(crate) const UPSTREAM_HEAD_TOO_LARGE: ErrorType = ErrorType::Custom("upstream_head_too_large");

/// The reply for a failure while proxying; `None`: the client is gone, write nothing.
/// `body_done`: the client's whole request body had arrived. While it has not, an upstream
/// that times out is waiting for the client, so the client gets 408 and the upstream is not
/// blamed.
pub(crate) fn classify_failure(e: &Error, body_done: bool) -> Option<ErrorReply> {
    use ErrorType::*;
    match (e.esource(), e.etype()) {
        (_, HTTPStatus(413)) => Some(BODY_TOO_LARGE),
        (_, HTTPStatus(s)) => Some(ErrorReply {
            reason: Reason::HttpError,
            status: *s,
            message: "the request failed",
        }),
        (_, t) if *t == UPSTREAM_UPGRADE => Some(
            BAD_GATEWAY
                .because("the upstream tried to switch protocols; jwt-proxy never opens a tunnel"),
        ),
        (_, t) if *t == UPSTREAM_HEAD_TOO_LARGE => Some(
            BAD_GATEWAY
                .because("the upstream's response head is larger than MAX_UPSTREAM_HEADER_BYTES"),
        ),
        (ErrorSource::Upstream, ReadTimedout | WriteTimedout) if !body_done => {
            Some(REQUEST_TIMEOUT)
        }
        (ErrorSource::Upstream, ReadTimedout | WriteTimedout) => Some(GATEWAY_TIMEOUT),
        (ErrorSource::Upstream, _) => Some(BAD_GATEWAY),
        (ErrorSource::Downstream, ReadError | WriteError | ConnectionClosed) => None,
        (ErrorSource::Downstream, ReadTimedout) => Some(REQUEST_TIMEOUT),
        (ErrorSource::Downstream, _) => Some(BAD_REQUEST),
        _ => Some(INTERNAL),
    }
}

pub const METHOD_NOT_ALLOWED: ErrorReply =
    ErrorReply::of(Reason::MethodNotAllowed, "only POST is accepted");
pub(crate) const BODY_TOO_LARGE: ErrorReply = ErrorReply::of(
    Reason::BodyTooLarge,
    "request body is larger than the limit",
);
pub(crate) const HEADERS_TOO_LARGE: ErrorReply = ErrorReply::of(
    Reason::HeadersTooLarge,
    "request line and headers are larger than the limit",
);
pub(crate) const INVALID_FRAMING: ErrorReply =
    ErrorReply::of(Reason::InvalidFraming, "the request framing is ambiguous");
pub(crate) const INVALID_TARGET: ErrorReply = ErrorReply::of(
    Reason::InvalidTarget,
    "the request target must be a path (origin form), not an absolute URL or *",
);
const BAD_GATEWAY: ErrorReply = ErrorReply::of(
    Reason::UpstreamUnavailable,
    "the upstream could not be reached",
);
const GATEWAY_TIMEOUT: ErrorReply = ErrorReply::of(
    Reason::UpstreamTimeout,
    "the upstream did not answer in time",
);
pub(crate) const BAD_REQUEST: ErrorReply =
    ErrorReply::of(Reason::BadRequest, "the request could not be read");
pub(crate) const REQUEST_TIMEOUT: ErrorReply = ErrorReply::of(
    Reason::RequestTimeout,
    "the request was not received in time",
);
pub(crate) const INTERNAL: ErrorReply = ErrorReply::of(Reason::InternalError, "the request failed");

/// `{"error":CODE,"message":MESSAGE,"status":N,"request_id":ID}`.
fn error_body(kind: ErrorReply, request_id: &str) -> Bytes {
    let body = serde_json::json!({
        "error": kind.code(),
        "message": kind.message,
        "status": kind.status,
        "request_id": request_id,
    });
    Bytes::from(body.to_string())
}

/// The response header of an error: JSON, no caching, the request id.
fn error_header(kind: ErrorReply, body_len: usize, request_id: &str) -> Result<ResponseHeader> {
    let mut h = ResponseHeader::build(kind.status, Some(6))?;
    h.insert_header("content-type", "application/json")?;
    h.insert_header("content-length", body_len.to_string())?;
    h.insert_header("cache-control", "no-store")?;
    h.insert_header("x-request-id", request_id)?;
    if kind.reason == Reason::MethodNotAllowed {
        h.insert_header("allow", "POST")?;
    }
    Ok(h)
}

/// Write a complete error response on a session that has not answered yet. Pingora closes the
/// connection after it (the request body may be unread, so reuse would not be safe).
pub(crate) async fn write_error(
    session: &mut ServerSession,
    kind: ErrorReply,
    request_id: &str,
) -> Result<()> {
    let body = error_body(kind, request_id);
    let header = error_header(kind, body.len(), request_id)?;
    session.write_error_response(header, body).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::identity::Rejection;
    use crate::observe::decisions::Outcome;
    use crate::signing::verification::BearerError;

    #[test]
    fn every_reply_has_its_reasons_code_status_and_outcome() {
        let replies = [
            (
                METHOD_NOT_ALLOWED,
                "method_not_allowed",
                405,
                Outcome::Rejected,
            ),
            (BODY_TOO_LARGE, "body_too_large", 413, Outcome::Rejected),
            (
                HEADERS_TOO_LARGE,
                "headers_too_large",
                431,
                Outcome::Rejected,
            ),
            (INVALID_FRAMING, "invalid_framing", 400, Outcome::Rejected),
            (INVALID_TARGET, "invalid_target", 400, Outcome::Rejected),
            (
                BAD_GATEWAY,
                "upstream_unavailable",
                502,
                Outcome::UpstreamError,
            ),
            (
                GATEWAY_TIMEOUT,
                "upstream_timeout",
                504,
                Outcome::UpstreamError,
            ),
            (BAD_REQUEST, "bad_request", 400, Outcome::Rejected),
            (REQUEST_TIMEOUT, "request_timeout", 408, Outcome::Rejected),
            (INTERNAL, "internal_error", 500, Outcome::Failed),
        ];
        let rejections = [
            (Rejection::InvalidUser("x"), "invalid_user", 400),
            (Rejection::AmbiguousUser, "ambiguous_user", 400),
            (Rejection::BadJson("x"), "invalid_json", 400),
            (
                Rejection::Bearer(BearerError::BadUserClaim),
                "invalid_user",
                400,
            ),
            (
                Rejection::Bearer(BearerError::Expired),
                "invalid_bearer_token",
                401,
            ),
            (Rejection::Missing, "identity_required", 401),
        ];
        let all = replies.into_iter().chain(
            rejections
                .into_iter()
                .map(|(r, code, status)| (r.reply(), code, status, Outcome::Rejected)),
        );
        for (reply, code, status, outcome) in all {
            assert_eq!(reply.code(), code);
            assert_eq!(reply.status, status, "{code}");
            assert_eq!(reply.reason.outcome(), outcome, "{code}");
        }
    }
}
