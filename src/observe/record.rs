//! One finished request as the proxy remembers it, and its two renderings: the status
//! service's JSON and the access-log line.
//!
//! A `Record` owns bounded copies of what it shows, never a view into the request's read buffer:
//! a refused 1 MiB head must not stay pinned in memory by the record that explains the refusal.
//! Header values are captured already redacted (all but an allow-list) and truncated.

use std::borrow::Cow;
use std::net::SocketAddr;

use http::Method;
use serde_json::{json, Value};

use crate::observe::decisions::{Outcome, Reason};
use crate::observe::redact::ShownHeaders;
use crate::signing::minting::Jti;
use crate::signing::verification::decode_parts;

/// Everything known about one finished request.
#[derive(Debug, Clone)]
pub struct Record {
    /// Unix time the request started, in milliseconds.
    pub(crate) time_unix_ms: u64,
    pub client: Option<SocketAddr>,
    pub(crate) http_version: &'static str,
    pub(crate) method: Method,
    /// Path as the client sent it (cut at `MAX_PATH_BYTES`), query values redacted.
    pub path: String,
    /// Status sent to the client (0: none, the client went away or the drain cut it).
    pub status: u16,
    pub upstream_status: Option<u16>,
    pub(crate) duration_us: u64,
    pub bytes_in: u64,
    pub(crate) bytes_out: u64,
    /// Size of the request line and headers as received.
    pub head_bytes: usize,
    /// Request headers (none for a refused head: its size and the reason explain it).
    pub headers: ShownHeaders,
    pub user: Option<String>,
    /// Also the request id in error bodies.
    pub jti: Jti,
    pub iat: Option<u64>,
    pub exp: Option<u64>,
    /// `header.claims` of the minted token; the signature is never kept.
    pub(crate) token_unsigned: Option<String>,
    /// The client sent its own `x-my-jwt` (removed before forwarding).
    pub spoofed: bool,
    /// Why it ended so (`jwt_proxy_decisions_total`); its outcome is the reason's.
    pub reason: Reason,
    pub error: Option<Cow<'static, str>>,
}

/// RFC 3339 UTC with milliseconds: the one timestamp format of records and the access log.
pub(crate) fn format_time(unix_ms: u64) -> String {
    Rfc3339Ms(unix_ms).to_string()
}

/// A Unix time in milliseconds shown as `format_time` shows it, written without allocating.
struct Rfc3339Ms(pub u64);

impl Rfc3339Ms {
    /// The 24 bytes of `YYYY-MM-DDTHH:MM:SS.mmmZ` (years past 9999 are not shown faithfully).
    pub fn bytes(&self) -> [u8; 24] {
        use chrono::{Datelike, Timelike};
        let t = chrono::DateTime::from_timestamp_millis(self.0 as i64).unwrap_or_default();
        let mut out = *b"0000-00-00T00:00:00.000Z";
        let mut put = |at: usize, width: usize, mut v: u32| {
            for i in (at..at + width).rev() {
                out[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, 4, t.year().clamp(0, 9999) as u32);
        put(5, 2, t.month());
        put(8, 2, t.day());
        put(11, 2, t.hour());
        put(14, 2, t.minute());
        put(17, 2, t.second());
        put(20, 3, (self.0 % 1000) as u32);
        out
    }
}

impl std::fmt::Display for Rfc3339Ms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Only ASCII digits and separators.
        f.write_str(std::str::from_utf8(&self.bytes()).unwrap_or_default())
    }
}

impl Record {
    /// Heap and inline bytes this record holds: what the recent-requests ring budgets.
    /// How it ended: its reason's outcome.
    pub fn outcome(&self) -> Outcome {
        self.reason.outcome()
    }

    pub fn size_bytes(&self) -> usize {
        std::mem::size_of::<Record>()
            + self.path.capacity()
            + self.headers.heap_bytes()
            + self.user.as_ref().map_or(0, String::capacity)
            + self.token_unsigned.as_ref().map_or(0, String::capacity)
            + self.error.as_ref().map_or(0, |e| e.len())
    }

    /// The record as shown by the status service (field names documented in docs/status.md): its
    /// fields plus the token's decoded header and claims.
    pub(crate) fn to_json(&self) -> Value {
        let (token_header, token_claims) = self
            .token_unsigned
            .as_deref()
            .and_then(decode_parts)
            .unwrap_or((Value::Null, Value::Null));
        let headers: Vec<(&str, &str)> = self.headers.pairs().collect();
        json!({
            "time": format_time(self.time_unix_ms),
            "time_unix_ms": self.time_unix_ms,
            "client": self.client.map(|c| c.to_string()),
            "http_version": self.http_version,
            "method": self.method.as_str(),
            "path": self.path,
            "status": self.status,
            "upstream_status": self.upstream_status,
            "duration_us": self.duration_us,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "head_bytes": self.head_bytes,
            "headers": headers,
            "headers_omitted": self.headers.omitted,
            "content_type": self.headers.get("content-type"),
            "content_encoding": self.headers.get("content-encoding"),
            "user": self.user,
            "jti": self.jti,
            "iat": self.iat,
            "exp": self.exp,
            "token_header": token_header,
            "token_claims": token_claims,
            "spoofed": self.spoofed,
            "outcome": self.outcome().as_str(),
            "reason": self.reason.as_str(),
            "error": self.error,
        })
    }

    /// Append the access-log line (one JSON object, no newline) to `out`. Written by hand, field
    /// by field (strings escaped by serde_json): it runs once per request, and serde's derive
    /// with its number and address formatting cost three times as much.
    pub(crate) fn write_log_line(&self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        let mut num = itoa::Buffer::new();
        let mut put_u64 =
            |out: &mut Vec<u8>, v: u64| out.extend_from_slice(num.format(v).as_bytes());
        out.extend_from_slice(b"{\"time\":\"");
        out.extend_from_slice(&Rfc3339Ms(self.time_unix_ms).bytes());
        out.extend_from_slice(b"\",\"client\":");
        match self.client {
            // An address is digits, dots, colons and brackets: nothing to escape.
            Some(c) => {
                let _ = write!(out, "\"{c}\"");
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"method\":");
        push_json_str(out, self.method.as_str());
        out.extend_from_slice(b",\"path\":");
        push_json_str(out, &self.path);
        out.extend_from_slice(b",\"status\":");
        put_u64(out, u64::from(self.status));
        out.extend_from_slice(b",\"upstream_status\":");
        match self.upstream_status {
            Some(s) => put_u64(out, u64::from(s)),
            None => out.extend_from_slice(b"null"),
        }
        // Milliseconds with microsecond digits, as a JSON number.
        out.extend_from_slice(b",\"duration_ms\":");
        put_u64(out, self.duration_us / 1000);
        let frac = self.duration_us % 1000;
        out.extend_from_slice(&[
            b'.',
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ]);
        out.extend_from_slice(b",\"bytes_in\":");
        put_u64(out, self.bytes_in);
        out.extend_from_slice(b",\"bytes_out\":");
        put_u64(out, self.bytes_out);
        out.extend_from_slice(b",\"user\":");
        match &self.user {
            Some(u) => push_json_str(out, u),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"jti\":\"");
        out.extend_from_slice(self.jti.as_str().as_bytes());
        out.extend_from_slice(if self.spoofed {
            b"\",\"spoofed\":true,\"outcome\":\""
        } else {
            b"\",\"spoofed\":false,\"outcome\":\""
        });
        out.extend_from_slice(self.outcome().as_str().as_bytes());
        out.extend_from_slice(b"\",\"error\":");
        match &self.error {
            Some(e) => push_json_str(out, e),
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
    }
}

/// Append `s` as a JSON string (quoted and escaped). U+0085, U+2028 and U+2029 are escaped
/// too: valid in JSON, they end a line for many line readers (Python's `splitlines`, older
/// JavaScript).
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    if s.contains(['\u{85}', '\u{2028}', '\u{2029}']) {
        let mut escaped = Vec::with_capacity(s.len() + 16);
        let _ = serde_json::to_writer(&mut escaped, s);
        let text = String::from_utf8_lossy(&escaped)
            .replace('\u{85}', "\\u0085")
            .replace('\u{2028}', "\\u2028")
            .replace('\u{2029}', "\\u2029");
        out.extend_from_slice(text.as_bytes());
        return;
    }
    // Serializing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(out, s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::redact::*;
    use http::{HeaderMap, HeaderName};

    /// The log line as serde would write it: the oracle for the hand-written one.
    #[derive(serde::Serialize)]
    struct LogLine<'a> {
        time: String,
        client: Option<SocketAddr>,
        method: &'a str,
        path: &'a str,
        status: u16,
        upstream_status: Option<u16>,
        duration_ms: f64,
        bytes_in: u64,
        bytes_out: u64,
        user: Option<&'a str>,
        jti: &'a str,
        spoofed: bool,
        outcome: &'a str,
        error: Option<&'a str>,
    }

    #[test]
    fn the_log_line_is_the_json_of_the_record() {
        let base = Record {
            time_unix_ms: 1_764_446_838_251,
            client: Some("127.0.0.1:33488".parse().unwrap()),
            http_version: "HTTP/1.1",
            method: Method::POST,
            path: "/hello?x=[redacted]".into(),
            status: 200,
            upstream_status: Some(200),
            duration_us: 2613,
            bytes_in: 2,
            bytes_out: 1260,
            head_bytes: 80,
            headers: ShownHeaders::default(),
            user: Some("alice".into()),
            jti: crate::signing::minting::Jti::from_bytes([7; 16]),
            iat: None,
            exp: None,
            token_unsigned: None,
            spoofed: true,
            reason: Reason::Forwarded,
            error: None,
        };
        let odd = Record {
            client: Some("[2001:db8::1]:443".parse().unwrap()),
            method: Method::from_bytes(b"PURGE").unwrap(),
            path: "/a\"b\\c\u{1}\u{7f}é\u{85}\u{2028}\u{2029}".into(),
            status: 0,
            upstream_status: None,
            duration_us: 7,
            user: Some("ü\"\n\u{2028}".into()),
            spoofed: false,
            reason: Reason::DrainCut,
            error: Some(Cow::Borrowed("drain_cut: \"x\"")),
            ..base.clone()
        };
        let none = Record {
            client: None,
            user: None,
            duration_us: 123_456_789,
            ..base.clone()
        };
        for r in [base, odd, none] {
            let mut bytes = Vec::new();
            r.write_log_line(&mut bytes);
            let line = String::from_utf8(bytes).unwrap();
            let got: Value = serde_json::from_str(&line).unwrap();
            let want = serde_json::to_value(LogLine {
                time: format_time(r.time_unix_ms),
                client: r.client,
                method: r.method.as_str(),
                path: &r.path,
                status: r.status,
                upstream_status: r.upstream_status,
                duration_ms: r.duration_us as f64 / 1000.0,
                bytes_in: r.bytes_in,
                bytes_out: r.bytes_out,
                user: r.user.as_deref(),
                jti: r.jti.as_str(),
                spoofed: r.spoofed,
                outcome: r.outcome().as_str(),
                error: r.error.as_deref(),
            })
            .unwrap();
            assert_eq!(got, want, "{line}");
            assert!(
                !line.contains(['\n', '\u{85}', '\u{2028}', '\u{2029}']),
                "{line}"
            );
        }
    }

    #[test]
    fn the_timestamp_is_rfc3339_utc_with_milliseconds() {
        for ms in [
            0u64,
            999,
            1_764_446_838_251,
            1_709_164_800_000,
            4_102_444_799_999,
        ] {
            let chrono = chrono::DateTime::from_timestamp_millis(ms as i64)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            assert_eq!(format_time(ms), chrono);
        }
        assert_eq!(format_time(1_764_446_838_251), "2025-11-29T20:07:18.251Z");
    }

    /// docs/status.md: "the ring costs STATUS_RECENT_BYTES plus one record (under 8 KiB)".
    #[test]
    fn the_largest_record_is_under_8_kib() {
        let mut h = HeaderMap::new();
        for i in 0..100 {
            h.append(
                HeaderName::from_bytes(format!("x-{i}-{}", "n".repeat(200)).as_bytes()).unwrap(),
                "v".repeat(5000).parse().unwrap(),
            );
        }
        let shown: Vec<HeaderName> = h.keys().cloned().collect();
        let target = format!("/{}?{}", "p".repeat(5000), "k".repeat(100).repeat(100));
        let user = "u".repeat(256);
        let r = Record {
            time_unix_ms: 0,
            client: None,
            http_version: "HTTP/1.1",
            method: Method::POST,
            path: shown_path(target.as_bytes()),
            status: 200,
            upstream_status: Some(200),
            duration_us: 0,
            bytes_in: 0,
            bytes_out: 0,
            head_bytes: 0,
            headers: ShownHeaders::capture(&h, &shown),
            // header.claims of a token for a 256-byte user (about 600 bytes), with room for an
            // issuer and audience.
            token_unsigned: Some("t".repeat(800)),
            user: Some(user),
            jti: Jti::from_bytes([0; 16]),
            iat: None,
            exp: None,
            spoofed: false,
            reason: Reason::Forwarded,
            error: Some(Cow::Owned("e".repeat(200))),
        };
        assert!(r.size_bytes() < 8 * 1024, "{}", r.size_bytes());
    }
}
