//! Checks of a request head before anything is read or forwarded: its size, its framing
//! (where its body ends) and its target. Pure functions of the parsed head and the raw bytes.

use http::header;
use pingora::http::{RequestHeader, ResponseHeader};

use crate::http::forwarding::same_variable;
use crate::http::reply::{self, ErrorReply};

/// Why this head is refused, if it is: too large (431), not a POST (405), an absolute-form or
/// `*` target, or ambiguous framing (400). `raw_head` is the head as received.
pub(crate) fn head_refusal(
    req: &RequestHeader,
    raw_head: &[u8],
    max_head_bytes: usize,
    owned: &[String],
) -> Option<ErrorReply> {
    if raw_head.len() > max_head_bytes {
        return Some(reply::HEADERS_TOO_LARGE);
    }
    if req.method != http::Method::POST {
        return Some(reply::METHOD_NOT_ALLOWED);
    }
    if !is_origin_form(req) {
        return Some(reply::INVALID_TARGET);
    }
    if let Some(problem) = framing_problem(req, raw_head) {
        return Some(reply::INVALID_FRAMING.because(problem));
    }
    nominates_protected(req, owned).then_some(
        reply::BAD_REQUEST
            .because("the Connection header names a header the proxy sets or frames by"),
    )
}

/// The client's `Connection` names a header we set (`owned`: our token, the forwarding headers,
/// the identity header) or frame by (`Content-Length`). Pingora would drop a nominated header
/// before the request goes upstream, after the identity was read from it: the upstream would get
/// a token for a user whose header it never saw. Pingora itself refuses `Connection: host` and
/// the `X-Forwarded-*` names the same way.
fn nominates_protected(req: &RequestHeader, owned: &[String]) -> bool {
    req.headers.get_all(header::CONNECTION).iter().any(|v| {
        v.as_bytes().split(|&b| b == b',').any(|token| {
            let token = token.trim_ascii();
            token.eq_ignore_ascii_case(b"content-length")
                || owned.iter().any(|o| same_variable(token, o))
        })
    })
}

/// A target in origin form (`/path?query`): not `http://host/…` (absolute form, which would
/// let a client name another host to an upstream that honours it) nor `*`.
/// Pingora keeps only the path of an absolute-form target in `uri`; the raw target tells.
fn is_origin_form(req: &RequestHeader) -> bool {
    req.raw_path().first() == Some(&b'/')
}

/// The number of a `Content-Length` that is valid but not canonical (`0010`), to forward as
/// `10`: an upstream reading a leading zero as octal would misjudge where the body ends.
pub(crate) fn noncanonical_length(req: &RequestHeader) -> Option<u64> {
    let v = req.headers.get(header::CONTENT_LENGTH)?.as_bytes();
    if v.len() > 1 && v[0] == b'0' {
        std::str::from_utf8(v).ok()?.parse().ok()
    } else {
        None
    }
}

/// Bytes of the body as framed on the wire when known without reading it: the declared
/// `Content-Length`, or 0 with neither it nor `Transfer-Encoding`. `None` for chunked bodies.
pub(crate) fn wire_body_len(req: &RequestHeader) -> Option<u64> {
    match req.headers.get(header::CONTENT_LENGTH) {
        Some(v) => std::str::from_utf8(v.as_bytes()).ok()?.parse().ok(),
        None if req.headers.contains_key(header::TRANSFER_ENCODING) => None,
        None => Some(0),
    }
}

/// Why the request's framing or routing headers are ambiguous, if they are. Intermediaries
/// that disagree on where a body ends are how requests get smuggled, so anything but one plain
/// `Content-Length` or one `Transfer-Encoding: chunked` is refused before we read or forward.
/// `raw_head` is the head as received: Pingora drops a `Content-Length` sent beside
/// `Transfer-Encoding` from its parsed copy (RFC 9112 6.3), so only the raw head shows both.
fn framing_problem(req: &RequestHeader, raw_head: &[u8]) -> Option<&'static str> {
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

/// `Expect: 100-continue` (case-insensitive).
pub(crate) fn expects_continue(req: &RequestHeader) -> bool {
    req.headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// The client asked to close after this request (`Connection: close`, or HTTP/1.0 without
/// `keep-alive`).
pub(crate) fn client_wants_close(req: &RequestHeader) -> bool {
    let conn = |token: &str| {
        req.headers.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    conn("close") || (req.version == http::Version::HTTP_10 && !conn("keep-alive"))
}

pub(crate) fn version_str(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_11 => "HTTP/1.1",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/?",
    }
}

/// Bytes of a response head as it would be written (status line, `name: value\r\n` lines).
pub(crate) fn response_head_len(resp: &ResponseHeader) -> usize {
    resp.headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + 16
        + resp.get_reason_phrase().map_or(0, str::len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_header_naming_a_header_we_set_is_refused() {
        let owned = ["x-my-jwt".to_string(), "x-user".to_string()];
        let with = |conn: &str| {
            let (req, raw) = head(
                http::Version::HTTP_11,
                &[("host", "h"), ("connection", conn)],
            );
            head_refusal(&req, &raw, 65536, &owned)
        };
        for conn in [
            "x-user",
            "close, X-User",
            "keep-alive,x-my-jwt",
            "Content-Length",
        ] {
            let r = with(conn).unwrap_or_else(|| panic!("{conn}: not refused"));
            assert_eq!((r.status, r.code()), (400, "bad_request"), "{conn}");
        }
        for conn in ["close", "keep-alive", "x-other", "x-user-agent"] {
            assert_eq!(with(conn), None, "{conn}");
        }
        // Other spellings of ours are ours too (CGI hands them over under one name).
        assert!(with("x_user").is_some() && with("X.My.Jwt").is_some());
    }

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

    #[test]
    fn only_origin_form_targets_pass() {
        for (target, ok) in [
            ("/", true),
            ("/a?b=c", true),
            ("http://h/evil?q=1", false),
            ("http://h", false),
            ("*", false),
        ] {
            let mut req = RequestHeader::build("POST", target.as_bytes(), None).expect("request");
            req.set_version(http::Version::HTTP_10);
            let raw = format!("POST {target} HTTP/1.0\r\n\r\n");
            assert_eq!(
                head_refusal(&req, raw.as_bytes(), 1024, &[]).is_none(),
                ok,
                "{target}"
            );
        }
        let req = RequestHeader::build("POST", b"/", None).expect("request");
        assert_eq!(
            head_refusal(&req, &[b'x'; 2000], 1024, &[]),
            Some(reply::HEADERS_TOO_LARGE)
        );
    }

    #[test]
    fn content_length_is_made_canonical_and_body_length_known() {
        let (req, _) = head(http::Version::HTTP_11, &[("content-length", "0010")]);
        assert_eq!(noncanonical_length(&req), Some(10));
        assert_eq!(wire_body_len(&req), Some(10));
        for v in ["10", "0"] {
            let (req, _) = head(http::Version::HTTP_11, &[("content-length", v)]);
            assert_eq!(noncanonical_length(&req), None, "{v}");
        }
        let (req, _) = head(http::Version::HTTP_11, &[("transfer-encoding", "chunked")]);
        assert_eq!(wire_body_len(&req), None);
        let (req, _) = head(http::Version::HTTP_11, &[]);
        assert_eq!(wire_body_len(&req), Some(0));
    }
}
