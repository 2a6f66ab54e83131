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

use crate::decisions::REASONS;
use crate::key_reload::{unix_ms, LiveKeys};
use crate::record::{format_time, Record, OUTCOMES};
use crate::stats::{Group, Histogram, Stats, COUNTERS};
use crate::upstream::Upstream;

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
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

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
            .filter_map(|v| crate::identity::bearer_token(v.as_bytes()))
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

    /// The `/status.json` document (field names documented in the README).
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
        let s = &self.stats;
        let mut out = String::with_capacity(4096);
        family(
            &mut out,
            "jwt_proxy_requests_total",
            "counter",
            "Requests answered, by HTTP status (0: client gone before an answer).",
        );
        for (status, n) in s.status_counts() {
            let _ = writeln!(out, "jwt_proxy_requests_total{{status=\"{status}\"}} {n}");
        }
        family(
            &mut out,
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
            &mut out,
            "jwt_proxy_decisions_total",
            "counter",
            "Requests by outcome and the reason for it (README: Decisions); malformed heads and \
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
        for c in COUNTERS {
            let name = format!("jwt_proxy_{}_total", c.name);
            family(&mut out, &name, "counter", c.help);
            let _ = writeln!(out, "{name} {}", s.count(c.counter));
        }
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
            family(&mut out, name, "gauge", help);
            let _ = writeln!(out, "{name} {v}");
        }
        histogram(
            &mut out,
            "jwt_proxy_request_duration_seconds",
            "Time from request start to the end of the response.",
            &s.request_duration_us,
            6,
        );
        histogram(
            &mut out,
            "jwt_proxy_signing_duration_seconds",
            "Time to mint and sign one token.",
            &s.signing_duration_ns,
            9,
        );
        histogram(
            &mut out,
            "jwt_proxy_token_bytes",
            "Size of each minted token, bytes.",
            &s.token_bytes,
            0,
        );
        out
    }

    pub fn html(&self) -> String {
        let j = self.json();
        let s = &self.stats;
        let mut h = String::with_capacity(32 * 1024);
        h.push_str(PAGE_HEAD);
        let state = if j["draining"] == true {
            " · <b class=\"warn\">draining: stopping or upgrading</b>"
        } else if s.stopping.load(Relaxed) {
            " · <b class=\"warn\">stopping: not ready, still accepting</b>"
        } else {
            ""
        };
        let _ = write!(
            h,
            "<p class=\"sub\">version {} · pid {} · up {} (since {}){state}</p>",
            esc(&plain(&j["version"])),
            esc(&plain(&j["pid"])),
            esc(&uptime_words(s.uptime_secs())),
            esc(&plain(&j["started_at"])),
        );
        charts(&mut h, &j["timeline"]);

        let group_rows = |g: Group| -> Vec<(String, String)> {
            COUNTERS
                .iter()
                .filter(|c| c.group == g)
                .map(|c| (c.label.to_string(), count_words(&j[c.name])))
                .collect()
        };
        let mut traffic = vec![
            ("requests".to_string(), count_words(&j["requests_total"])),
            ("in flight now".into(), count_words(&j["in_flight"])),
            (
                "client connections open".into(),
                count_words(&j["open_connections"]),
            ),
            (
                "request duration, average".into(),
                avg(&s.request_duration_us, 1000.0, "ms"),
            ),
        ];
        for o in OUTCOMES {
            traffic.push((
                format!("outcome: {}", o.as_str().replace('_', " ")),
                count_words(&j["outcomes"][o.as_str()]),
            ));
        }
        for (st, n) in j["by_status"].as_object().into_iter().flatten() {
            let what = if st == "0" { "no answer (0)" } else { st };
            traffic.push((format!("HTTP status {what}"), count_words(n)));
        }
        section(&mut h, "traffic", "Traffic", &traffic);

        let mut identity = vec![
            ("user from".to_string(), plain(&j["user_source"])),
            (
                "signing key fingerprint".into(),
                plain(&j["key_fingerprint"]),
            ),
            ("kid".into(), plain(&j["kid"])),
            (
                "public demo key".into(),
                if j["demo_key"] == true {
                    "yes: anyone can forge these tokens".into()
                } else {
                    "no".into()
                },
            ),
            (
                "token size, average".into(),
                avg(&s.token_bytes, 1.0, "bytes"),
            ),
            (
                "signing time, average".into(),
                avg(&s.signing_duration_ns, 1000.0, "µs"),
            ),
        ];
        identity.extend(group_rows(Group::Identity));
        section(&mut h, "identity", "Identity and tokens", &identity);

        let mut upstream = vec![
            ("upstream".to_string(), plain(&j["upstream_url"])),
            ("address in use".into(), plain(&j["upstream_addr"])),
        ];
        upstream.extend(group_rows(Group::Upstream));
        section(&mut h, "upstream", "Upstream", &upstream);

        refusals_html(&mut h, &j["decisions"], &group_rows(Group::Refusals));

        keys_html(&mut h, &j["keys"]);

        let mut process = vec![
            ("listening on".to_string(), plain(&j["listen"])),
            ("worker threads".into(), plain(&j["worker_threads"])),
            (
                "recent requests kept".into(),
                format!(
                    "{} ({})",
                    j["recent"].as_array().map_or(0, Vec::len),
                    kib(j["recent_bytes"].as_u64().unwrap_or(0))
                ),
            ),
        ];
        process.extend(group_rows(Group::Process));
        section(&mut h, "process", "Configuration and process", &process);

        h.push_str(
            "<h2>Recent requests (newest first)</h2><table id=\"recent\"><tr>\
            <th>time</th><th>client</th><th>version</th><th>method</th><th>path</th><th>status</th>\
            <th>upstream</th><th>user</th><th>jti</th><th>duration ms</th><th>in/out bytes</th>\
            <th>details</th></tr>",
        );
        for r in j["recent"].as_array().into_iter().flatten() {
            let cell = |k: &str| esc(&plain(&r[k]));
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td>\
                 <td>{}</td><td><code>{}</code></td><td>{:.3}</td><td>{}/{}</td><td><details><summary>more</summary>",
                cell("time"), cell("client"), cell("http_version"), cell("method"), cell("path"), cell("status"),
                cell("upstream_status"), cell("user"), cell("jti"),
                r["duration_us"].as_f64().unwrap_or(0.0) / 1000.0, cell("bytes_in"), cell("bytes_out"),
            );
            for k in [
                "reason",
                "content_type",
                "content_encoding",
                "iat",
                "exp",
                "spoofed",
                "error",
            ] {
                let _ = write!(h, "<div><b>{k}</b>: {}</div>", cell(k));
            }
            h.push_str("<b>request headers</b><table>");
            for pair in r["headers"].as_array().into_iter().flatten() {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td><code>{}</code></td></tr>",
                    esc(&plain(&pair[0])),
                    esc(&plain(&pair[1]))
                );
            }
            h.push_str("</table>");
            for k in ["token_header", "token_claims"] {
                let pretty = serde_json::to_string_pretty(&r[k]).unwrap_or_default();
                let _ = write!(h, "<b>{k}</b><pre>{}</pre>", esc(&pretty));
            }
            h.push_str("</details></td></tr>");
        }
        h.push_str("</table></body></html>");
        h
    }
}

const PAGE_HEAD: &str = "<!doctype html><html><head><meta charset=\"utf-8\">\
    <title>jwt-proxy status</title><style>\
    body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
    h1{margin-bottom:0}.sub{color:#555;margin-top:.3em}.warn{color:#b00}\
    h2{font-size:1.1em;margin:1.2em 0 .4em}\
    table{border-collapse:collapse;margin-bottom:1em}\
    td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top;font-size:13px}\
    th{background:#f5f5f5;font-weight:normal}td.n{text-align:right;font-variant-numeric:tabular-nums}\
    .charts{display:flex;flex-wrap:wrap;gap:1em}.chart{border:1px solid #ddd;padding:.3em .6em}\
    .chart h3{font-size:13px;margin:.2em 0}.chart text{font-size:10px;fill:#555}\
    .legend{font-size:12px;color:#555}\
    code,pre{font-size:12px;white-space:pre-wrap;word-break:break-all}</style></head>\
    <body><h1>jwt-proxy status</h1>";

/// A titled table of `label: value` rows; numbers are right-aligned.
fn section(h: &mut String, id: &str, title: &str, rows: &[(String, String)]) {
    let _ = write!(h, "<h2>{}</h2><table id=\"{id}\">", esc(title));
    for (label, value) in rows {
        let numeric = is_quantity(value);
        let _ = write!(
            h,
            "<tr><th>{}</th><td{}>{}</td></tr>",
            esc(label),
            if numeric { " class=\"n\"" } else { "" },
            esc(value)
        );
    }
    h.push_str("</table>");
}

/// `1\u{2009}234`, `16.9 µs`: a number with an optional unit (right-aligned), not an address
/// or a fingerprint.
fn is_quantity(v: &str) -> bool {
    let (num, unit) = v.split_once(' ').unwrap_or((v, ""));
    !num.is_empty()
        && num
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == '\u{2009}')
        && unit.chars().all(|c| c.is_alphabetic() || c == '%')
}

/// The refusals and failures that happened, by reason, with what each means; the reasons
/// never seen are listed in one line.
fn refusals_html(h: &mut String, decisions: &Value, connection_rows: &[(String, String)]) {
    h.push_str(
        "<h2>Refusals and failures, by reason</h2><table id=\"refusals\">\
         <tr><th>reason</th><th>outcome</th><th>count</th><th>what it means</th></tr>",
    );
    let mut unseen = Vec::new();
    for d in decisions.as_array().into_iter().flatten() {
        let reason = plain(&d["reason"]);
        if reason == "forwarded" {
            continue;
        }
        if d["count"].as_u64() == Some(0) {
            unseen.push(reason);
            continue;
        }
        let help = REASONS
            .iter()
            .find(|r| r.name == reason)
            .map_or("", |r| r.help);
        let _ = write!(
            h,
            "<tr><td><code>{}</code></td><td>{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            esc(&reason),
            esc(&plain(&d["outcome"]).replace('_', " ")),
            esc(&count_words(&d["count"])),
            esc(help)
        );
    }
    for (label, value) in connection_rows {
        let _ = write!(
            h,
            "<tr><td colspan=\"2\">{}</td><td class=\"n\">{}</td><td>connection event, not a request</td></tr>",
            esc(label),
            esc(value)
        );
    }
    h.push_str("</table>");
    if !unseen.is_empty() {
        let _ = write!(
            h,
            "<p class=\"legend\" id=\"refusals-none\">none yet: {}</p>",
            esc(&unseen.join(", "))
        );
    }
}

/// `3 d 4 h 5 min`, `4 h 0 min`, `5 min 3 s`, `42 s`.
fn uptime_words(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, _) => format!("{m} min {s} s"),
        (0, _, _) => format!("{h} h {m} min"),
        _ => format!("{d} d {h} h {m} min"),
    }
}

/// A count with thousands separated: `1 234 567`.
fn count_words(v: &Value) -> String {
    let Some(n) = v.as_u64() else {
        return plain(v);
    };
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push('\u{2009}');
        }
        out.push(c);
    }
    out
}

fn kib(bytes: u64) -> String {
    format!("{:.1} KiB", bytes as f64 / 1024.0)
}

/// A histogram's mean in `unit` (its values divided by `per_unit`), or `-` when empty.
fn avg(hist: &Histogram, per_unit: f64, unit: &str) -> String {
    let (buckets, sum) = hist.snapshot();
    match buckets.last().map_or(0, |b| b.1) {
        0 => "-".into(),
        n => format!("{:.1} {unit}", sum as f64 / n as f64 / per_unit),
    }
}

const CHART_W: f64 = 300.0;
const CHART_H: f64 = 90.0;

/// The three charts of the last minutes: request rate, error rate, latency.
fn charts(h: &mut String, timeline: &Value) {
    let points = timeline.as_array().map(Vec::as_slice).unwrap_or_default();
    let series =
        |key: &str| -> Vec<Option<f64>> { points.iter().map(|p| p[key].as_f64()).collect() };
    let from = points
        .first()
        .and_then(|p| p["start"].as_str())
        .and_then(|t| t.get(11..16))
        .unwrap_or("");
    let _ = write!(
        h,
        "<h2>Last {} minutes <span class=\"legend\">(one point a minute, from {from} UTC to now)</span></h2>\
         <div class=\"charts\">",
        points.len()
    );
    chart(
        h,
        "chart-rate",
        "requests per second",
        &[("req/s", "#2563eb", series("rate_per_sec"))],
    );
    chart(
        h,
        "chart-errors",
        "errors, % of requests (upstream errors and failures)",
        &[("errors %", "#dc2626", series("error_percent"))],
    );
    chart(
        h,
        "chart-latency",
        "latency, ms",
        &[
            ("p50", "#16a34a", series("p50_ms")),
            ("p99", "#9333ea", series("p99_ms")),
        ],
    );
    h.push_str("</div>");
}

/// One inline SVG line chart; a point for each minute with a value (circles carry the value as
/// their title). Scaled from 0 to the largest value.
fn chart(h: &mut String, id: &str, title: &str, series: &[(&str, &str, Vec<Option<f64>>)]) {
    let n = series.iter().map(|s| s.2.len()).max().unwrap_or(0);
    let top = series
        .iter()
        .flat_map(|s| s.2.iter().flatten())
        .fold(0.0f64, |a, b| a.max(*b));
    let top = if top > 0.0 { top * 1.1 } else { 1.0 };
    let (left, bottom) = (34.0, CHART_H - 12.0);
    let x = |i: usize| left + (CHART_W - left - 4.0) * i as f64 / (n.max(2) - 1) as f64;
    let y = |v: f64| 4.0 + (bottom - 4.0) * (1.0 - v / top);
    let _ = write!(
        h,
        "<div class=\"chart\"><h3>{}</h3><svg id=\"{id}\" width=\"{CHART_W}\" height=\"{CHART_H}\" \
         viewBox=\"0 0 {CHART_W} {CHART_H}\" role=\"img\" aria-label=\"{}\">\
         <line x1=\"{left}\" y1=\"{bottom}\" x2=\"{CHART_W}\" y2=\"{bottom}\" stroke=\"#bbb\"/>\
         <line x1=\"{left}\" y1=\"4\" x2=\"{left}\" y2=\"{bottom}\" stroke=\"#bbb\"/>\
         <text x=\"{}\" y=\"12\" text-anchor=\"end\">{}</text>\
         <text x=\"{}\" y=\"{bottom}\" text-anchor=\"end\">0</text>\
         <text x=\"{left}\" y=\"{CHART_H}\">-{} min</text>\
         <text x=\"{CHART_W}\" y=\"{CHART_H}\" text-anchor=\"end\">now</text>",
        esc(title),
        esc(title),
        left - 3.0,
        short_number(top),
        left - 3.0,
        n.saturating_sub(1),
    );
    for (name, color, values) in series {
        let pts: Vec<(f64, f64, f64)> = values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| (x(i), y(v), v)))
            .collect();
        let line: Vec<String> = pts
            .iter()
            .map(|(px, py, _)| format!("{px:.1},{py:.1}"))
            .collect();
        let _ = write!(
            h,
            "<polyline class=\"series\" data-series=\"{}\" fill=\"none\" stroke=\"{color}\" \
             stroke-width=\"1.5\" points=\"{}\"/>",
            esc(name),
            line.join(" ")
        );
        for (px, py, v) in &pts {
            let _ = write!(
                h,
                "<circle class=\"point\" data-series=\"{}\" cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"2\" \
                 fill=\"{color}\"><title>{} {}</title></circle>",
                esc(name),
                esc(name),
                short_number(*v)
            );
        }
    }
    h.push_str("</svg><div class=\"legend\">");
    for (name, color, _) in series {
        let _ = write!(
            h,
            "<span style=\"color:{color}\">&#9632;</span> {} ",
            esc(name)
        );
    }
    h.push_str("</div></div>");
}

/// A value for an axis or tooltip: 3 significant digits at most.
fn short_number(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The keys table: each key's state in words, and when a pending switch or a retirement
/// happens.
fn keys_html(h: &mut String, k: &Value) {
    let when = |v: &Value| v.as_u64().map(format_time).unwrap_or("-".into());
    let _ = write!(
        h,
        "<h2>Signing keys</h2><p id=\"keys-source\">from {}; publish lead {} s</p>",
        esc(&plain(&k["source"])),
        esc(&plain(&k["publish_lead_secs"]))
    );
    if let Some(sw) = k["switch"].as_object() {
        let _ = write!(
            h,
            "<p id=\"keys-switch\">{} signs from {} (once published for the lead); until then \
             {} signs.</p>",
            esc(&plain(&sw["kid"])),
            esc(&when(&sw["signs_from_ms"])),
            esc(&plain(&k["signing"]))
        );
    }
    if let Some(e) = k["reload_error"].as_object() {
        let _ = write!(
            h,
            "<p id=\"keys-error\"><b>Last reload refused</b> at {}: {} (the keys below stay in \
             use)</p>",
            esc(&when(&e["at_ms"])),
            esc(&plain(&e["message"]))
        );
    }
    h.push_str(
        "<table id=\"keys\"><tr><th>kid</th><th>alg</th><th>fingerprint</th><th>state</th>\
         <th>published since</th><th>in JWKS</th><th>retired at</th></tr>",
    );
    for key in k["keys"].as_array().into_iter().flatten() {
        let _ =
            write!(
            h,
            "<tr><td><code>{}</code></td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td></tr>",
            esc(&plain(&key["kid"])),
            esc(&plain(&key["alg"])),
            esc(&plain(&key["fingerprint"])),
            esc(&plain(&key["state"])),
            esc(&when(&key["published_at_ms"])),
            if key["in_jwks"] == true { "yes" } else { "no (secret)" },
            esc(&when(&key["dropped_at_ms"])),
        );
    }
    h.push_str("</table>");
}

fn plain(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// HTML-escape text for element content and quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
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

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
    }
}
