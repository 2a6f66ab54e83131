//! JSON error responses the proxy writes itself: one shape for every refusal and failure.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::Result;

/// The fixed codes of our error bodies, with their HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorKind {
    pub status: u16,
    pub code: &'static str,
}

pub const METHOD_NOT_ALLOWED: ErrorKind = ErrorKind {
    status: 405,
    code: "method_not_allowed",
};
pub const BODY_TOO_LARGE: ErrorKind = ErrorKind {
    status: 413,
    code: "body_too_large",
};
pub const HEADERS_TOO_LARGE: ErrorKind = ErrorKind {
    status: 431,
    code: "headers_too_large",
};
pub const INVALID_FRAMING: ErrorKind = ErrorKind {
    status: 400,
    code: "invalid_framing",
};
pub const BAD_GATEWAY: ErrorKind = ErrorKind {
    status: 502,
    code: "upstream_unavailable",
};
pub const GATEWAY_TIMEOUT: ErrorKind = ErrorKind {
    status: 504,
    code: "upstream_timeout",
};
pub const BAD_REQUEST: ErrorKind = ErrorKind {
    status: 400,
    code: "bad_request",
};
pub const REQUEST_TIMEOUT: ErrorKind = ErrorKind {
    status: 408,
    code: "request_timeout",
};
pub const INTERNAL: ErrorKind = ErrorKind {
    status: 500,
    code: "internal_error",
};

/// `{"error":CODE,"message":MESSAGE,"status":N,"request_id":ID}`.
pub fn error_body(kind: ErrorKind, message: &str, request_id: &str) -> Bytes {
    let body = serde_json::json!({
        "error": kind.code,
        "message": message,
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
    if kind == METHOD_NOT_ALLOWED {
        h.insert_header("allow", "POST")?;
    }
    Ok(h)
}

/// Write a complete error response on a session that has not answered yet. Pingora closes the
/// connection after it (the request body may be unread, so reuse would not be safe).
pub async fn write_error(
    session: &mut ServerSession,
    kind: ErrorKind,
    message: &str,
    request_id: &str,
) -> Result<()> {
    let body = error_body(kind, message, request_id);
    let header = error_header(kind, body.len(), request_id)?;
    session.write_error_response(header, body).await
}
