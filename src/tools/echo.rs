//! `protected-echo`: a demo and test upstream. `POST /protected` answers with a JSON echo of what
//! it received (method, path, headers, body size and SHA-256, and, when it has a key or a JWKS,
//! whether the `x-my-jwt` token verifies, and the peer address it came from). `GET /healthz` for health
//! checks, `GET /stats` counts requests (and, with `--track-jti`, distinct and duplicate token
//! jtis; with `--track-header NAME`, distinct and duplicate values of
//! that header). Query knobs for tests: `delay_ms=N` waits before answering
//! (at most 60 s), `status=N` answers with that status.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::signing::verification::decode_parts;
use crate::tools::jwks_client::JwksVerifier;
use crate::TOKEN_HEADER;

/// Bodies larger than this are refused with 413.
const MAX_ECHO_BODY: usize = 16 * 1024 * 1024;
const MAX_DELAY_MS: u64 = 60_000;

pub struct EchoApp {
    verify: Option<Arc<JwksVerifier>>,
    /// `POST /protected` requests received (see `GET /stats`): lets tests prove that nothing
    /// reached the upstream.
    received: AtomicU64,
    /// With `--track-header NAME`: every value of that header seen, to count duplicates (tests
    /// use it to prove each client request reached the upstream exactly once).
    tracked: Option<(http::HeaderName, Mutex<Tracked>)>,
    /// With `--track-jti`: every token's `jti` seen (soak runs prove none repeats).
    jtis: Option<Mutex<JtiTracked>>,
}

#[derive(Default)]
struct JtiTracked {
    seen: HashSet<u128>,
    duplicates: u64,
    /// Requests without a readable 32-hex-digit jti.
    missing: u64,
}

#[derive(Default)]
struct Tracked {
    seen: HashSet<Vec<u8>>,
    duplicates: u64,
}

impl EchoApp {
    /// With a verifier, every request's `x-my-jwt` is verified (by its kid against the JWKS,
    /// or with the secret; `exp`/`nbf` checked when present).
    pub fn new(
        verify: Option<Arc<JwksVerifier>>,
        track_header: Option<http::HeaderName>,
        track_jti: bool,
    ) -> EchoApp {
        EchoApp {
            verify,
            received: AtomicU64::new(0),
            tracked: track_header.map(|h| (h, Mutex::new(Tracked::default()))),
            jtis: track_jti.then(|| Mutex::new(JtiTracked::default())),
        }
    }

    async fn token_report(&self, values: &[String]) -> Value {
        let Some(token) = values.first() else {
            return json!({"present": false, "count": 0});
        };
        let mut report = json!({"present": true, "count": values.len()});
        if let Some((header, claims)) = decode_parts(token) {
            report["header"] = header;
            report["claims"] = claims;
        }
        if let Some(v) = &self.verify {
            // Verifying may fetch the JWKS: a blocking task, not this worker thread.
            let result = if v.uses_jwks() {
                let (v, t) = (v.clone(), token.clone());
                tokio::task::spawn_blocking(move || v.verify(&t).map_err(|e| e.to_string()))
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()))
            } else {
                v.verify(token).map_err(|e| e.to_string())
            };
            match result {
                Ok(_) => report["valid"] = true.into(),
                Err(e) => {
                    report["valid"] = false.into();
                    report["error"] = e.into();
                }
            }
        }
        report
    }
}

impl EchoApp {
    fn track(&self, req: &pingora::http::RequestHeader) {
        let Some((name, tracked)) = &self.tracked else {
            return;
        };
        let mut t = tracked.lock().unwrap_or_else(|p| p.into_inner());
        for v in req.headers.get_all(name) {
            if !t.seen.insert(v.as_bytes().to_vec()) {
                t.duplicates += 1;
            }
        }
    }

    fn track_jti(&self, req: &pingora::http::RequestHeader) {
        let Some(jtis) = &self.jtis else {
            return;
        };
        let jti = req
            .headers
            .get(TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(jti_of);
        let mut t = jtis.lock().unwrap_or_else(|p| p.into_inner());
        match jti {
            Some(j) if !t.seen.insert(j) => t.duplicates += 1,
            Some(_) => {}
            None => t.missing += 1,
        }
    }

    fn stats(&self) -> Value {
        let mut s = json!({"received": self.received.load(Relaxed)});
        if let Some((name, tracked)) = &self.tracked {
            let t = tracked.lock().unwrap_or_else(|p| p.into_inner());
            s["tracked_header"] = name.as_str().into();
            s["distinct"] = t.seen.len().into();
            s["duplicates"] = t.duplicates.into();
        }
        if let Some(jtis) = &self.jtis {
            let t = jtis.lock().unwrap_or_else(|p| p.into_inner());
            s["jti_distinct"] = t.seen.len().into();
            s["jti_duplicates"] = t.duplicates.into();
            s["jti_missing"] = t.missing.into();
        }
        s
    }
}

/// The `jti` claim of a token (32 hex digits) as a number.
fn jti_of(token: &str) -> Option<u128> {
    let (_, claims) = decode_parts(token)?;
    let hex = claims["jti"].as_str().filter(|j| j.len() == 32)?;
    u128::from_str_radix(hex, 16).ok()
}

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

fn json_response(status: u16, body: &Value) -> Response<Vec<u8>> {
    let body = serde_json::to_vec_pretty(body).unwrap_or_default();
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let len = r.body().len();
    r.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert("content-length", len.into());
    r
}

#[async_trait]
impl ServeHttp for EchoApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header().clone();
        match (req.method.clone(), req.uri.path()) {
            (Method::GET, "/healthz") => return json_response(200, &json!({"status": "ok"})),
            (Method::GET, "/stats") => return json_response(200, &self.stats()),
            (Method::POST, "/protected") => {
                self.received.fetch_add(1, Relaxed);
                self.track(&req);
                self.track_jti(&req);
            }
            (_, "/protected") => {
                return json_response(405, &json!({"error": "method_not_allowed"}))
            }
            _ => return json_response(404, &json!({"error": "not_found"})),
        }
        let mut hasher = Sha256::new();
        let mut size = 0usize;
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    size += chunk.len();
                    if size > MAX_ECHO_BODY {
                        session.set_keepalive(None);
                        return json_response(413, &json!({"error": "body_too_large"}));
                    }
                    hasher.update(&chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    return json_response(
                        400,
                        &json!({"error": "bad_body", "message": e.to_string()}),
                    )
                }
            }
        }
        let query = req.uri.query();
        if let Some(ms) = query_param(query, "delay_ms").and_then(|v| v.parse::<u64>().ok()) {
            tokio::time::sleep(Duration::from_millis(ms.min(MAX_DELAY_MS))).await;
        }
        let status = query_param(query, "status")
            .and_then(|v| v.parse::<u16>().ok())
            .filter(|s| (200..600).contains(s))
            .unwrap_or(200);
        let headers: Vec<(String, String)> = req
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let tokens: Vec<String> = headers
            .iter()
            .filter(|(k, _)| k == TOKEN_HEADER)
            .map(|(_, v)| v.clone())
            .collect();
        let digest = hasher.finalize();
        let body = json!({
            "peer": session.client_addr().map(|a| a.to_string()),
            "method": req.method.as_str(),
            "path": req.uri.path(),
            "query": query,
            "headers": headers,
            "body_bytes": size,
            "body_sha256": digest.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "x_my_jwt": self.token_report(&tokens).await,
        });
        json_response(status, &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params() {
        assert_eq!(query_param(Some("a=1&delay_ms=20"), "delay_ms"), Some("20"));
        assert_eq!(query_param(Some("xdelay_ms=20"), "delay_ms"), None);
        assert_eq!(query_param(None, "status"), None);
    }
}
