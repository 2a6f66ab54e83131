//! The status service (its own port): `/status` (HTML), `/status.json`, `/healthz`, `/readyz`,
//! `/metrics` (Prometheus text), `/.well-known/jwks.json` (the public keys). Reads `stats` and
//! the live keys only; everything shown is escaped. Per-request detail (`/status`,
//! `/status.json`) needs `Authorization: Bearer <STATUS_TOKEN>` when a token is configured;
//! health, readiness, metrics and the JWKS stay open. No HMAC secret is ever shown.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::{json, Value};

use crate::clock::unix_ms;
use crate::http::upstream::Upstream;
use crate::observe::decisions::OUTCOMES;
use crate::observe::record::{format_time, Record};
use crate::observe::stats::{Histogram, Stats, COUNTERS};
use crate::signing::live::LiveKeys;

/// Facts fixed at start-up that the status service shows.
#[derive(Debug, Clone)]
pub struct Info {
    pub version: &'static str,
    pub pid: u32,
    /// Worker threads of the proxy service (`threads`; by default one per usable CPU).
    pub worker_threads: usize,
    pub listen: SocketAddr,
    pub upstream_url: String,
    pub upstream: Arc<Upstream>,
    pub connect_timeout: Duration,
    /// Required as a bearer token for per-request detail, when set.
    pub status_token: Option<String>,
    /// The signing key is the public demo key (fixed: demo keys are never reloaded).
    pub demo_key: bool,
    pub keys: Arc<LiveKeys>,
    /// `JWT_KEYS`, when the keys come from a keyset file.
    pub keyset_path: Option<String>,
    pub user_source: String,
}

pub struct StatusApp {
    pub stats: Arc<Stats>,
    pub info: Info,
}

#[async_trait]
impl ServeHttp for StatusApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        // One request per connection: status clients (scrapes, JWKS fetches, probes) are
        // occasional, and a connection is then never long-lived enough to be the oldest one
        // the connection cap closes while a request is under way.
        session.set_keepalive(None);
        let req = session.req_header();
        if req.method != Method::GET && req.method != Method::HEAD {
            return respond(
                405,
                "application/json",
                br#"{"error":"method_not_allowed","status":405}"#.to_vec(),
            );
        }
        let path = req.uri.path();
        if path == JWKS_PATH {
            return self.jwks(session);
        }
        if matches!(path, "/status" | "/" | "/status.json") && !self.authorized(session) {
            let mut r = respond(
                401,
                "application/json",
                br#"{"error":"status_token_required","status":401}"#.to_vec(),
            );
            r.headers_mut().insert(
                "www-authenticate",
                http::HeaderValue::from_static("Bearer realm=\"jwt-proxy status\""),
            );
            return r;
        }
        match path {
            "/status" | "/" => respond(200, "text/html; charset=utf-8", self.html().into_bytes()),
            "/status.json" => respond(
                200,
                "application/json",
                self.json().to_string().into_bytes(),
            ),
            "/healthz" => respond(200, "application/json", br#"{"status":"ok"}"#.to_vec()),
            "/readyz" => {
                // 503 from the first moment of a stop (SIGTERM), while the proxy still accepts.
                let stopping = self.stats.stopping.load(Relaxed);
                let draining = self.stats.draining.load(Relaxed);
                let ready = !stopping && !draining && self.upstream_accepts().await;
                let body = json!({
                    "ready": ready,
                    "stopping": stopping,
                    "draining": draining,
                    "upstream": self.info.upstream_url,
                    "upstream_addr": self.info.upstream.addr().to_string(),
                });
                respond(
                    if ready { 200 } else { 503 },
                    "application/json",
                    body.to_string().into_bytes(),
                )
            }
            "/metrics" => respond(
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                self.metrics().into_bytes(),
            ),
            _ => respond(
                404,
                "application/json",
                br#"{"error":"not_found","status":404}"#.to_vec(),
            ),
        }
    }
}

fn respond(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let len = r.body().len();
    let h = r.headers_mut();
    h.insert(
        "content-type",
        content_type
            .parse()
            .unwrap_or(http::HeaderValue::from_static("text/plain")),
    );
    h.insert("content-length", len.into());
    h.insert("cache-control", http::HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        http::HeaderValue::from_static("nosniff"),
    );
    // The page needs no script at all; forbid it outright as a second line of defence.
    h.insert(
        "content-security-policy",
        http::HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    r
}

/// Where the public keys are published.
const JWKS_PATH: &str = "/.well-known/jwks.json";

/// `If-None-Match` lists `etag` (or is `*`); weak tags compare equal (RFC 9110 §13.1.2).
fn matches_etag(if_none_match: &[u8], etag: &str) -> bool {
    let etag = etag.as_bytes();
    if_none_match.split(|&b| b == b',').any(|t| {
        let t = t.trim_ascii();
        t == b"*" || t.strip_prefix(b"W/").unwrap_or(t) == etag
    })
}

/// Equal without an early exit on the first difference (no timing hint about the token).
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl StatusApp {
    fn authorized(&self, session: &ServerSession) -> bool {
        let Some(token) = &self.info.status_token else {
            return true;
        };
        session
            .req_header()
            .headers
            .get_all(http::header::AUTHORIZATION)
            .iter()
            .filter_map(|v| crate::http::identity::bearer_token(v.as_bytes()))
            .any(|given| same_secret(given, token.as_bytes()))
    }

    async fn upstream_accepts(&self) -> bool {
        let connect = tokio::net::TcpStream::connect(self.info.upstream.addr());
        let ok = matches!(
            tokio::time::timeout(self.info.connect_timeout, connect).await,
            Ok(Ok(_))
        );
        if !ok {
            // The upstream may have moved: look its name up again, as a failed request does.
            self.info.upstream.connect_failed();
        }
        ok
    }

    /// `GET /.well-known/jwks.json`: cacheable for the JWKS max-age (never longer than the
    /// publish lead), with an ETag and 304 for a match.
    fn jwks(&self, session: &ServerSession) -> Response<Vec<u8>> {
        let jwks = self.info.keys.jwks();
        let fresh = session
            .req_header()
            .headers
            .get_all(http::header::IF_NONE_MATCH)
            .iter()
            .any(|v| matches_etag(v.as_bytes(), &jwks.etag));
        let mut r = if fresh {
            let mut r = respond(304, "application/jwk-set+json", Vec::new());
            r.headers_mut().remove("content-length");
            r
        } else {
            respond(200, "application/jwk-set+json", jwks.body.into_bytes())
        };
        let h = r.headers_mut();
        if let Ok(v) = format!("public, max-age={}", self.info.keys.jwks_max_age_secs).parse() {
            h.insert("cache-control", v);
        }
        if let Ok(v) = jwks.etag.parse() {
            h.insert("etag", v);
        }
        r
    }

    /// The keys held and the last reload, for `/status.json` and the page.
    fn keys_json(&self) -> Value {
        let now = unix_ms();
        let mut k = self.info.keys.ring().describe(now);
        k["source"] = match &self.info.keyset_path {
            Some(p) => json!(p),
            None => json!("JWT_SECRET"),
        };
        k["reload_error"] = match self.info.keys.last_error() {
            Some(e) => json!({"at_ms": e.at_ms, "message": e.message}),
            None => Value::Null,
        };
        k
    }

    fn started_at(&self) -> String {
        chrono::DateTime::<chrono::Utc>::from(self.stats.started_at)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    /// The `/status.json` document (field names documented in docs/status.md).
    pub fn json(&self) -> Value {
        let s = &self.stats;
        let outcomes: serde_json::Map<String, Value> = OUTCOMES
            .iter()
            .map(|o| (o.as_str().to_string(), s.outcome_count(*o).into()))
            .collect();
        let by_status: serde_json::Map<String, Value> = s
            .status_counts()
            .into_iter()
            .map(|(st, n)| (st.to_string(), n.into()))
            .collect();
        let mut doc = json!({
            "service": "jwt-proxy",
            "version": self.info.version,
            "pid": self.info.pid,
            "worker_threads": self.info.worker_threads,
            "started_at": self.started_at(),
            "uptime_secs": s.uptime_secs(),
            "listen": self.info.listen.to_string(),
            "upstream_url": self.info.upstream_url,
            "user_source": self.info.user_source,
            "demo_key": self.info.demo_key,
            "upstream_addr": self.info.upstream.addr().to_string(),
            "requests_total": s.requests.load(Relaxed),
            "in_flight": s.in_flight.load(Relaxed),
            "open_connections": s.open_connections.load(Relaxed),
            "draining": s.draining.load(Relaxed),
            "recent_bytes": s.recent_usage().1,
            "outcomes": outcomes,
            "by_status": by_status,
            "decisions": s.decision_counts().into_iter().map(|(o, info, n)| json!({
                "outcome": o.as_str(), "reason": info.name, "count": n,
            })).collect::<Vec<_>>(),
            "recent": s.recent().iter().map(Record::to_json).collect::<Vec<_>>(),
            "timeline": s.timeline(unix_ms()).iter().map(|p| json!({
                "start": format_time(p.start_unix_ms),
                "seconds": p.seconds,
                "requests": p.requests,
                "rate_per_sec": p.rate_per_sec(),
                "rejected": p.rejected,
                "errors": p.errors,
                "error_percent": p.error_percent(),
                "p50_ms": p.p50_ms,
                "p99_ms": p.p99_ms,
            })).collect::<Vec<_>>(),
        });
        for c in COUNTERS {
            doc[c.name] = s.count(c.counter).into();
        }
        let keys = self.keys_json();
        let signer = keys["keys"]
            .as_array()
            .and_then(|a| a.iter().find(|k| k["state"] == "signing"))
            .cloned()
            .unwrap_or_default();
        doc["key_fingerprint"] = signer["fingerprint"].clone();
        doc["kid"] = match signer["kid"].as_str() {
            Some("") | None => Value::Null,
            Some(k) => k.into(),
        };
        doc["keys"] = keys;
        doc
    }

    pub fn metrics(&self) -> String {
        let mut out = String::with_capacity(4096);
        self.request_metrics(&mut out);
        self.counter_metrics(&mut out);
        self.gauge_metrics(&mut out);
        self.histogram_metrics(&mut out);
        out
    }

    /// Requests by status, by outcome, and by outcome and reason.
    fn request_metrics(&self, out: &mut String) {
        let s = &self.stats;
        family(
            out,
            "jwt_proxy_requests_total",
            "counter",
            "Requests answered, by HTTP status (0: client gone before an answer).",
        );
        for (status, n) in s.status_counts() {
            let _ = writeln!(out, "jwt_proxy_requests_total{{status=\"{status}\"}} {n}");
        }
        family(
            out,
            "jwt_proxy_requests_by_outcome_total",
            "counter",
            "Requests by outcome.",
        );
        for o in OUTCOMES {
            let _ = writeln!(
                out,
                "jwt_proxy_requests_by_outcome_total{{outcome=\"{}\"}} {}",
                o.as_str(),
                s.outcome_count(o)
            );
        }
        family(
            out,
            "jwt_proxy_decisions_total",
            "counter",
            "Requests by outcome and the reason for it (docs/status.md: Decisions); malformed heads and \
             head timeouts are connection events, counted apart.",
        );
        for (o, info, n) in s.decision_counts() {
            let _ = writeln!(
                out,
                "jwt_proxy_decisions_total{{outcome=\"{}\",reason=\"{}\"}} {n}",
                o.as_str(),
                info.name
            );
        }
    }

    /// The event counters, one family each.
    fn counter_metrics(&self, out: &mut String) {
        let s = &self.stats;
        for c in COUNTERS {
            let name = format!("jwt_proxy_{}_total", c.name);
            family(out, &name, "counter", c.help);
            let _ = writeln!(out, "{name} {}", s.count(c.counter));
        }
    }

    fn gauge_metrics(&self, out: &mut String) {
        let s = &self.stats;
        for (name, help, v) in [
            (
                "jwt_proxy_in_flight_requests",
                "Requests being handled now.",
                s.in_flight.load(Relaxed),
            ),
            (
                "jwt_proxy_open_connections",
                "Client connections open now.",
                s.open_connections.load(Relaxed),
            ),
            (
                "jwt_proxy_draining",
                "1 while a stop or upgrade drains this process (its listeners are closed).",
                u64::from(s.draining.load(Relaxed)),
            ),
            (
                "jwt_proxy_uptime_seconds",
                "Seconds since this process started.",
                s.uptime_secs(),
            ),
            (
                "jwt_proxy_process_id",
                "This process's pid: during an upgrade two processes answer; tell them apart.",
                u64::from(self.info.pid),
            ),
            (
                "jwt_proxy_worker_threads",
                "Worker threads of the proxy service (by default one per CPU it may use).",
                self.info.worker_threads as u64,
            ),
        ] {
            family(out, name, "gauge", help);
            let _ = writeln!(out, "{name} {v}");
        }
    }

    fn histogram_metrics(&self, out: &mut String) {
        let s = &self.stats;
        histogram(
            out,
            "jwt_proxy_request_duration_seconds",
            "Time from request start to the end of the response.",
            &s.request_duration_us,
            6,
        );
        histogram(
            out,
            "jwt_proxy_signing_duration_seconds",
            "Time to mint and sign one token.",
            &s.signing_duration_ns,
            9,
        );
        histogram(
            out,
            "jwt_proxy_token_bytes",
            "Size of each minted token, bytes.",
            &s.token_bytes,
            0,
        );
    }

    pub fn html(&self) -> String {
        crate::observe::status_page::render(&self.json(), &self.stats)
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// `value` × 10^-`digits` as an exact decimal (no float noise in `le` labels).
fn decimal(value: u64, digits: u32) -> String {
    let unit = 10u64.pow(digits);
    let frac = format!("{:0width$}", value % unit, width = digits as usize);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        (value / unit).to_string()
    } else {
        format!("{}.{frac}", value / unit)
    }
}

fn histogram(out: &mut String, name: &str, help: &str, h: &Histogram, digits: u32) {
    let (buckets, sum) = h.snapshot();
    family(out, name, "histogram", help);
    let mut count = 0;
    for (bound, c) in buckets {
        let le = bound.map_or_else(|| "+Inf".to_string(), |b| decimal(b, digits));
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {c}");
        count = c;
    }
    let _ = writeln!(
        out,
        "{name}_sum {}\n{name}_count {count}",
        decimal(sum, digits)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_decimal_labels() {
        assert_eq!(decimal(500, 9), "0.0000005");
        assert_eq!(decimal(2_500_000, 6), "2.5");
        assert_eq!(decimal(30_000_000, 6), "30");
        assert_eq!(decimal(0, 6), "0");
    }
}
