//! JSON error responses the proxy writes itself: one shape for every refusal and failure, and
//! the one place that decides which reply (and outcome) a proxying failure gets.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::{Error, ErrorSource, ErrorType, Result};

use crate::observe::record::Outcome;

/// An error reply: its HTTP status, fixed code, and the message for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorReply {
    pub status: u16,
    pub code: &'static str,
    pub message: &'static str,
}

impl ErrorReply {
    /// The same kind, saying more precisely what was wrong.
    pub const fn because(self, message: &'static str) -> ErrorReply {
        ErrorReply { message, ..self }
    }

    /// How a request answered with this reply ended.
    pub fn outcome(self) -> Outcome {
        match self.status {
            502 | 504 => Outcome::UpstreamError,
            400..=499 => Outcome::Rejected,
            _ => Outcome::Failed,
        }
    }
}

/// Our own proxying errors, raised in the phases and classified below.
pub const UPSTREAM_UPGRADE: ErrorType = ErrorType::Custom("upstream_switched_protocols");
pub const UPSTREAM_HEAD_TOO_LARGE: ErrorType = ErrorType::Custom("upstream_head_too_large");

/// The reply for a failure while proxying; `None`: the client is gone, write nothing.
/// `body_done`: the client's whole request body had arrived. While it has not, an upstream
/// that times out is waiting for the client, so the client gets 408 and the upstream is not
/// blamed.
pub fn classify_failure(e: &Error, body_done: bool) -> Option<ErrorReply> {
    use ErrorType::*;
    match (e.esource(), e.etype()) {
        (_, HTTPStatus(413)) => Some(BODY_TOO_LARGE),
        (_, HTTPStatus(s)) => Some(ErrorReply {
            status: *s,
            code: "error",
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

pub const METHOD_NOT_ALLOWED: ErrorReply = ErrorReply {
    status: 405,
    code: "method_not_allowed",
    message: "only POST is accepted",
};
pub const BODY_TOO_LARGE: ErrorReply = ErrorReply {
    status: 413,
    code: "body_too_large",
    message: "request body is larger than the limit",
};
pub const HEADERS_TOO_LARGE: ErrorReply = ErrorReply {
    status: 431,
    code: "headers_too_large",
    message: "request line and headers are larger than the limit",
};
pub const INVALID_FRAMING: ErrorReply = ErrorReply {
    status: 400,
    code: "invalid_framing",
    message: "the request framing is ambiguous",
};
pub const INVALID_TARGET: ErrorReply = ErrorReply {
    status: 400,
    code: "invalid_target",
    message: "the request target must be a path (origin form), not an absolute URL or *",
};
pub const BAD_GATEWAY: ErrorReply = ErrorReply {
    status: 502,
    code: "upstream_unavailable",
    message: "the upstream could not be reached",
};
pub const GATEWAY_TIMEOUT: ErrorReply = ErrorReply {
    status: 504,
    code: "upstream_timeout",
    message: "the upstream did not answer in time",
};
pub const BAD_REQUEST: ErrorReply = ErrorReply {
    status: 400,
    code: "bad_request",
    message: "the request could not be read",
};
pub const REQUEST_TIMEOUT: ErrorReply = ErrorReply {
    status: 408,
    code: "request_timeout",
    message: "the request was not received in time",
};
pub const INTERNAL: ErrorReply = ErrorReply {
    status: 500,
    code: "internal_error",
    message: "the request failed",
};

/// `{"error":CODE,"message":MESSAGE,"status":N,"request_id":ID}`.
pub fn error_body(kind: ErrorReply, request_id: &str) -> Bytes {
    let body = serde_json::json!({
        "error": kind.code,
        "message": kind.message,
        "status": kind.status,
        "request_id": request_id,
    });
    Bytes::from(body.to_string())
}

/// The response header of an error: JSON, no caching, the request id.
pub fn error_header(kind: ErrorReply, body_len: usize, request_id: &str) -> Result<ResponseHeader> {
    let mut h = ResponseHeader::build(kind.status, Some(6))?;
    h.insert_header("content-type", "application/json")?;
    h.insert_header("content-length", body_len.to_string())?;
    h.insert_header("cache-control", "no-store")?;
    h.insert_header("x-request-id", request_id)?;
    if kind.code == METHOD_NOT_ALLOWED.code {
        h.insert_header("allow", "POST")?;
    }
    Ok(h)
}

/// Write a complete error response on a session that has not answered yet. Pingora closes the
/// connection after it (the request body may be unread, so reuse would not be safe).
pub async fn write_error(
    session: &mut ServerSession,
    kind: ErrorReply,
    request_id: &str,
) -> Result<()> {
    let body = error_body(kind, request_id);
    let header = error_header(kind, body.len(), request_id)?;
    session.write_error_response(header, body).await
}
