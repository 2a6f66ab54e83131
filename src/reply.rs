//! JSON error responses the proxy writes itself: one shape for every refusal and failure.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::Result;

/// One kind of error body: its HTTP status, fixed code, and the message for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorKind {
    pub status: u16,
    pub code: &'static str,
    pub message: &'static str,
}

impl ErrorKind {
    /// The same kind, saying more precisely what was wrong.
    pub const fn because(self, message: &'static str) -> ErrorKind {
        ErrorKind { message, ..self }
    }
}

pub const METHOD_NOT_ALLOWED: ErrorKind = ErrorKind {
    status: 405,
    code: "method_not_allowed",
    message: "only POST is accepted",
};
pub const BODY_TOO_LARGE: ErrorKind = ErrorKind {
    status: 413,
    code: "body_too_large",
    message: "request body is larger than the limit",
};
pub const HEADERS_TOO_LARGE: ErrorKind = ErrorKind {
    status: 431,
    code: "headers_too_large",
    message: "request line and headers are larger than the limit",
};
pub const INVALID_FRAMING: ErrorKind = ErrorKind {
    status: 400,
    code: "invalid_framing",
    message: "the request framing is ambiguous",
};
pub const BAD_GATEWAY: ErrorKind = ErrorKind {
    status: 502,
    code: "upstream_unavailable",
    message: "the upstream could not be reached",
};
pub const GATEWAY_TIMEOUT: ErrorKind = ErrorKind {
    status: 504,
    code: "upstream_timeout",
    message: "the upstream did not answer in time",
};
pub const BAD_REQUEST: ErrorKind = ErrorKind {
    status: 400,
    code: "bad_request",
    message: "the request could not be read",
};
pub const REQUEST_TIMEOUT: ErrorKind = ErrorKind {
    status: 408,
    code: "request_timeout",
    message: "the request was not received in time",
};
pub const INTERNAL: ErrorKind = ErrorKind {
    status: 500,
    code: "internal_error",
    message: "the request failed",
};

/// `{"error":CODE,"message":MESSAGE,"status":N,"request_id":ID}`.
pub fn error_body(kind: ErrorKind, request_id: &str) -> Bytes {
    let body = serde_json::json!({
        "error": kind.code,
        "message": kind.message,
        "status": kind.status,
        "request_id": request_id,
    });
    Bytes::from(body.to_string())
}

/// The response header of an error: JSON, no caching, the request id.
pub fn error_header(kind: ErrorKind, body_len: usize, request_id: &str) -> Result<ResponseHeader> {
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
    kind: ErrorKind,
    request_id: &str,
) -> Result<()> {
    let body = error_body(kind, request_id);
    let header = error_header(kind, body.len(), request_id)?;
    session.write_error_response(header, body).await
}
