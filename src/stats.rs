//! Shared, process-wide state the proxy writes and the status service reads: atomic counters,
//! fixed-bucket histograms and a ring of the most recent request records.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use std::borrow::Cow;

use http::{header, HeaderMap, Method, Uri};
use serde_json::{json, Value};

use crate::token::{decode_parts, Jti};

/// Everything known about one finished request. Built on every request, so it holds cheap
/// clones (the header map, method and URI share the request's buffers) and is turned into
/// text only when the status service shows it (`to_json`).
#[derive(Debug, Clone)]
pub struct Record {
    /// Unix time the request started, in milliseconds.
    pub time_unix_ms: u64,
    pub client: Option<SocketAddr>,
    pub http_version: &'static str,
    pub method: Method,
    /// Path and query as the client sent them.
    pub uri: Uri,
    /// Status sent to the client (0: none, the client went away first).
    pub status: u16,
    pub upstream_status: Option<u16>,
    pub duration_us: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Request headers as received (shown with `REDACTED_HEADERS` values hidden).
    pub headers: HeaderMap,
    pub user: Option<String>,
    /// Also the request id in error bodies.
    pub jti: Jti,
    pub iat: Option<u64>,
    pub exp: Option<u64>,
    /// `header.claims` of the minted token; the signature is never kept.
    pub token_unsigned: Option<String>,
    /// The client sent its own `x-my-jwt` (removed before forwarding).
    pub spoofed: bool,
    pub error: Option<Cow<'static, str>>,
}

impl Record {
    /// Path and query as the client sent them.
    pub fn path(&self) -> &str {
        self.uri
            .path_and_query()
            .map_or_else(|| self.uri.path(), |p| p.as_str())
    }

    fn header_text(&self, name: header::HeaderName) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }

    /// The record as shown by the status service (field names documented in the README): its
    /// fields plus the token's decoded header and claims.
    pub fn to_json(&self) -> Value {
        let (token_header, token_claims) = self
            .token_unsigned
            .as_deref()
            .and_then(decode_parts)
            .unwrap_or((Value::Null, Value::Null));
        let time = chrono::DateTime::from_timestamp_millis(self.time_unix_ms as i64)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let headers: Vec<(&str, Cow<str>)> = self
            .headers
            .iter()
            .map(|(name, value)| {
                let shown = if REDACTED_HEADERS.contains(&name.as_str()) {
                    Cow::Borrowed("[redacted]")
                } else {
                    String::from_utf8_lossy(value.as_bytes())
                };
                (name.as_str(), shown)
            })
            .collect();
        json!({
            "time": time,
            "time_unix_ms": self.time_unix_ms,
            "client": self.client.map(|c| c.to_string()),
            "http_version": self.http_version,
            "method": self.method.as_str(),
            "path": self.path(),
            "status": self.status,
            "upstream_status": self.upstream_status,
            "duration_us": self.duration_us,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "headers": headers,
            "content_type": self.header_text(header::CONTENT_TYPE),
            "content_encoding": self.header_text(header::CONTENT_ENCODING),
            "user": self.user,
            "jti": self.jti,
            "iat": self.iat,
            "exp": self.exp,
            "token_header": token_header,
            "token_claims": token_claims,
            "spoofed": self.spoofed,
            "error": self.error,
        })
    }
}

/// Header names whose values are never shown.
pub const REDACTED_HEADERS: &[&str] =
    &["authorization", "cookie", "x-my-jwt", "proxy-authorization"];

/// Cumulative histogram with fixed upper bounds (in the unit the caller records in).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    /// One per bound, plus the +Inf bucket. Not cumulative; rendering sums them.
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [u64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: u64) {
        let i = self.bounds.partition_point(|b| *b < value);
        self.counts[i].fetch_add(1, Relaxed);
        self.sum.fetch_add(value, Relaxed);
    }

    /// `(upper bound or None for +Inf, cumulative count)` per bucket, then the sum.
    pub fn snapshot(&self) -> (Vec<(Option<u64>, u64)>, u64) {
        let mut acc = 0;
        let buckets = self
            .counts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                acc += c.load(Relaxed);
                (self.bounds.get(i).copied(), acc)
            })
            .collect();
        (buckets, self.sum.load(Relaxed))
    }
}

/// Request duration bucket bounds, microseconds.
pub const DURATION_BOUNDS_US: &[u64] = &[
    250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000, 30_000_000,
];
/// Signing duration bucket bounds, nanoseconds.
pub const SIGNING_BOUNDS_NS: &[u64] = &[
    500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 1_000_000,
];

/// How a request ended, for the outcome counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered (whatever its status).
    Proxied,
    /// Refused by the proxy before anything went upstream (4xx).
    Rejected,
    /// The upstream could not be reached or did not answer in time (502/504).
    UpstreamError,
    /// The client went away before an answer, or another failure (5xx of our own).
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Proxied => "proxied",
            Outcome::Rejected => "rejected",
            Outcome::UpstreamError => "upstream_error",
            Outcome::Failed => "failed",
        }
    }
}

pub const OUTCOMES: [Outcome; 4] = [
    Outcome::Proxied,
    Outcome::Rejected,
    Outcome::UpstreamError,
    Outcome::Failed,
];

pub struct Stats {
    pub started_at: SystemTime,
    started: Instant,
    pub requests: AtomicU64,
    outcomes: [AtomicU64; 4],
    /// Indexed by status code 0..=599 (0: no response was sent).
    by_status: Box<[AtomicU64]>,
    pub tokens_minted: AtomicU64,
    pub spoof_attempts: AtomicU64,
    pub upstream_errors: AtomicU64,
    pub in_flight: AtomicU64,
    /// Connections closed because a request head did not arrive in time (no request counted).
    pub header_timeouts: AtomicU64,
    /// Request heads Pingora could not parse and refused with its own 400 (no request counted).
    pub malformed_requests: AtomicU64,
    pub request_duration_us: Histogram,
    pub signing_duration_ns: Histogram,
    recent: Mutex<VecDeque<Record>>,
    recent_cap: usize,
}

impl std::fmt::Debug for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stats")
            .field("requests", &self.requests)
            .finish()
    }
}

impl Stats {
    pub fn new(recent_cap: usize) -> Stats {
        Stats {
            started_at: SystemTime::now(),
            started: Instant::now(),
            requests: AtomicU64::new(0),
            outcomes: Default::default(),
            by_status: (0..600).map(|_| AtomicU64::new(0)).collect(),
            tokens_minted: AtomicU64::new(0),
            spoof_attempts: AtomicU64::new(0),
            upstream_errors: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            header_timeouts: AtomicU64::new(0),
            malformed_requests: AtomicU64::new(0),
            request_duration_us: Histogram::new(DURATION_BOUNDS_US),
            signing_duration_ns: Histogram::new(SIGNING_BOUNDS_NS),
            recent: Mutex::new(VecDeque::with_capacity(recent_cap)),
            recent_cap,
        }
    }

    pub fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    pub fn request_started(&self) {
        self.in_flight.fetch_add(1, Relaxed);
    }

    /// Count a finished request and keep its record (building the record happens outside the
    /// lock; the critical section is one push and at most one pop).
    pub fn request_finished(&self, outcome: Outcome, record: Record) {
        self.in_flight.fetch_sub(1, Relaxed);
        self.requests.fetch_add(1, Relaxed);
        self.outcomes[outcome as usize].fetch_add(1, Relaxed);
        if let Some(c) = self.by_status.get(record.status as usize) {
            c.fetch_add(1, Relaxed);
        }
        if outcome == Outcome::UpstreamError {
            self.upstream_errors.fetch_add(1, Relaxed);
        }
        if record.spoofed {
            self.spoof_attempts.fetch_add(1, Relaxed);
        }
        self.request_duration_us.observe(record.duration_us);
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == self.recent_cap {
            recent.pop_front();
        }
        recent.push_back(record);
    }

    pub fn outcome_count(&self, o: Outcome) -> u64 {
        self.outcomes[o as usize].load(Relaxed)
    }

    /// `(status, count)` for every status seen.
    pub fn status_counts(&self) -> Vec<(u16, u64)> {
        self.by_status
            .iter()
            .enumerate()
            .filter_map(|(s, c)| Some((s as u16, c.load(Relaxed))).filter(|(_, n)| *n > 0))
            .collect()
    }

    /// The recent records, newest first.
    pub fn recent(&self) -> Vec<Record> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: u16) -> Record {
        Record {
            time_unix_ms: 0,
            client: None,
            http_version: "HTTP/1.1",
            method: Method::POST,
            uri: Uri::from_static("/"),
            status,
            upstream_status: None,
            duration_us: 700,
            bytes_in: 0,
            bytes_out: 0,
            headers: HeaderMap::new(),
            user: None,
            jti: Jti::from_bytes([(status % 256) as u8; 16]),
            iat: None,
            exp: None,
            token_unsigned: None,
            spoofed: status == 200,
            error: None,
        }
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::new(&[10, 100]);
        for v in [1, 10, 11, 1000] {
            h.observe(v);
        }
        assert_eq!(
            h.snapshot(),
            (vec![(Some(10), 2), (Some(100), 3), (None, 4)], 1022)
        );
    }

    #[test]
    fn ring_keeps_the_newest() {
        let s = Stats::new(3);
        for st in [200, 201, 202, 502] {
            s.request_started();
            s.request_finished(
                if st == 502 {
                    Outcome::UpstreamError
                } else {
                    Outcome::Proxied
                },
                record(st),
            );
        }
        let statuses: Vec<_> = s.recent().into_iter().map(|r| r.status).collect();
        assert_eq!(statuses, [502, 202, 201]);
        assert_eq!(s.requests.load(Relaxed), 4);
        assert_eq!(s.in_flight.load(Relaxed), 0);
        assert_eq!(s.upstream_errors.load(Relaxed), 1);
        assert_eq!(s.spoof_attempts.load(Relaxed), 1);
        assert_eq!(
            s.status_counts(),
            vec![(200, 1), (201, 1), (202, 1), (502, 1)]
        );
        assert_eq!(s.outcome_count(Outcome::Proxied), 3);
    }
}
