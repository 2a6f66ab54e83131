//! End to end: the real jwt-proxy and protected-echo binaries on loopback ports, raw HTTP.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::json;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn upstream_gets_exactly_one_verified_token_and_client_gets_it_back() {
    let (echo, proxy) = start_stack(&[]);
    let body: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let r = post(
        proxy.addr,
        "/anything?a=1&b=two",
        &[
            ("x-user", "alice"),
            ("x-my-jwt", "forged.token.here"),
            ("x-my-jwt", "second"),
            ("content-type", "application/octet-stream"),
        ],
        &body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let echoed = r.json();
    let token = r.token();
    assert_eq!(r.headers_named("x-my-jwt").len(), 1);

    // The upstream saw exactly one x-my-jwt, ours, and it verified with the key.
    assert_eq!(echoed["x_my_jwt"]["count"], 1);
    assert_eq!(echoed["x_my_jwt"]["valid"], true);
    let upstream_tokens: Vec<&str> = echoed["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0] == "x-my-jwt")
        .map(|h| h[1].as_str().unwrap())
        .collect();
    assert_eq!(upstream_tokens, [token]);

    // Body byte-identical; path rewritten to the upstream's, query kept; forwarding headers.
    let sha: String = {
        use sha2::Digest;
        sha2::Sha256::digest(&body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    assert_eq!(echoed["body_sha256"], sha);
    assert_eq!(echoed["body_bytes"], body.len());
    assert_eq!(echoed["path"], "/protected");
    assert_eq!(echoed["query"], "a=1&b=two");
    let header = |name: &str| {
        echoed["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h[0] == name)
            .map(|h| h[1].as_str().unwrap().to_string())
    };
    assert_eq!(header("host").unwrap(), echo.addr.to_string());
    assert_eq!(header("x-forwarded-for").unwrap(), "127.0.0.1");
    assert_eq!(header("x-forwarded-proto").unwrap(), "http");
    assert_eq!(
        header("connection"),
        None,
        "hop-by-hop headers are not forwarded"
    );

    // Verified independently (jsonwebtoken), with the expected claims.
    let claims = verify_with_jsonwebtoken(token, DEMO_SECRET.as_bytes());
    let iat = claims["iat"].as_u64().unwrap();
    assert!(iat.abs_diff(now()) < 30);
    assert_eq!(claims["exp"].as_u64().unwrap(), iat + 300);
    assert_eq!(claims["jti"].as_str().unwrap().len(), 32);
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert_eq!(claims["payload"], json!({"user": "alice", "date": today}));

    // Counted as a spoofing attempt, logged as one line on stdout.
    let s = status_json(&proxy);
    assert_eq!(s["spoof_attempts"], 1);
    assert_eq!(s["tokens_minted"], 1);
    std::thread::sleep(Duration::from_millis(100));
    let log = proxy.proc.stdout();
    let line: serde_json::Value =
        serde_json::from_str(log.lines().next().expect("an access-log line")).unwrap();
    assert_eq!(line["spoofed"], true);
    assert_eq!(line["status"], 200);
    assert_eq!(line["upstream_status"], 200);
    assert_eq!(line["user"], "alice");
    assert_eq!(line["jti"], claims["jti"]);
    assert_eq!(
        line["path"], "/anything?a=[redacted]&b=[redacted]",
        "query values redacted"
    );
    assert_eq!(line["bytes_in"], body.len());
}

#[test]
fn tokens_are_fresh_per_request_and_default_user_applies() {
    let (_echo, proxy) = start_stack(&[]);
    let a = post(proxy.addr, "/", &[], b"{}");
    let b = post(proxy.addr, "/", &[], b"{}");
    assert_ne!(a.token(), b.token());
    let ca = verify_with_jsonwebtoken(a.token(), DEMO_SECRET.as_bytes());
    let cb = verify_with_jsonwebtoken(b.token(), DEMO_SECRET.as_bytes());
    assert_ne!(ca["jti"], cb["jti"]);
    assert_eq!(ca["payload"]["user"], "anonymous");
}

#[test]
fn refusals_are_json_and_nothing_goes_upstream() {
    let (echo, proxy) = start_stack(&[("MAX_BODY_BYTES", "1000")]);
    let check = |r: &Response, status: u16, code: &str| {
        assert_eq!(r.status, status, "{}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        let j = r.json();
        assert_eq!(j["error"], code);
        assert_eq!(j["status"], status);
        assert_eq!(j["request_id"].as_str().unwrap().len(), 32);
        assert_eq!(r.header("x-request-id"), j["request_id"].as_str());
        assert!(r.header("x-my-jwt").is_none());
    };
    let r = get(proxy.addr, "/");
    check(&r, 405, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("POST"));
    check(
        &raw(
            proxy.addr,
            b"PUT / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        ),
        405,
        "method_not_allowed",
    );
    check(
        &post(proxy.addr, "/", &[], &[b'x'; 1001]),
        413,
        "body_too_large",
    );
    check(
        &post(proxy.addr, "/", &[("x-user", "a\tb")], b"{}"),
        400,
        "invalid_user",
    );
    check(
        &post(proxy.addr, "/", &[("x-user", &"u".repeat(257))], b"{}"),
        400,
        "invalid_user",
    );
    check(
        &post(proxy.addr, "/", &[("x-user", "a"), ("x-user", "b")], b"{}"),
        400,
        "ambiguous_user",
    );
    assert_eq!(
        echo.received(),
        0,
        "no refused request reached the upstream"
    );
    // At the limit is fine.
    assert_eq!(post(proxy.addr, "/", &[], &[b'x'; 1000]).status, 200);
    assert_eq!(echo.received(), 1);
    let s = status_json(&proxy);
    assert_eq!(s["outcomes"]["rejected"], 6);
    assert_eq!(s["outcomes"]["proxied"], 1);
    assert_eq!(s["by_status"]["405"], 2);
}

#[test]
fn chunked_body_over_the_limit_is_413() {
    let (_echo, proxy) = start_stack(&[("MAX_BODY_BYTES", "1000")]);
    let chunk = "x".repeat(600);
    let req = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    let r = raw(proxy.addr, req.as_bytes());
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json()["error"], "body_too_large");
    // Under the limit, chunked goes through whole.
    let req = format!("POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n{chunk}\r\n0\r\n\r\n");
    let r = raw(proxy.addr, req.as_bytes());
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_bytes"], 600);
}

#[test]
fn identity_required_gives_401() {
    let (echo, proxy) = start_stack(&[("USER_DEFAULT", "none")]);
    let r = post(proxy.addr, "/", &[], b"{}");
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "identity_required");
    assert_eq!(
        post(proxy.addr, "/", &[("x-user", "carol")], b"{}").status,
        200
    );
    assert_eq!(echo.received(), 1);
}

#[test]
fn bearer_source_verifies_and_does_not_forward_authorization() {
    let vectors: serde_json::Value =
        serde_json::from_str(include_str!("data/test-vectors.json")).unwrap();
    let (echo, proxy) = start_stack(&[("USER_SOURCE", "bearer"), ("USER_DEFAULT", "none")]);
    for case in vectors["bearer"]["accept"].as_array().unwrap() {
        let auth = format!("Bearer {}", case["token"].as_str().unwrap());
        let r = post(proxy.addr, "/", &[("authorization", &auth)], b"{}");
        assert_eq!(r.status, 200, "{}: {}", case["why"], r.text());
        let claims = verify_with_jsonwebtoken(r.token(), DEMO_SECRET.as_bytes());
        assert_eq!(claims["payload"]["user"], case["user"]);
        let forwarded: Vec<_> = r.json()["headers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h[0] == "authorization")
            .cloned()
            .collect();
        assert!(
            forwarded.is_empty(),
            "the bearer token used as identity is not forwarded"
        );
    }
    let received = echo.received();
    for case in vectors["bearer"]["reject"].as_array().unwrap() {
        let auth = format!("Bearer {}", case["token"].as_str().unwrap());
        let r = post(proxy.addr, "/", &[("authorization", &auth)], b"{}");
        assert_eq!(r.status, 401, "{}: {}", case["why"], r.text());
        assert_eq!(r.json()["error"], "invalid_bearer_token");
    }
    assert_eq!(
        post(proxy.addr, "/", &[], b"{}").status,
        401,
        "no token, no default"
    );
    assert_eq!(
        echo.received(),
        received,
        "refused tokens never reach the upstream"
    );
}

#[test]
fn json_source_reads_user_and_forwards_body_unchanged() {
    let (echo, proxy) = start_stack(&[("USER_SOURCE", "json:user")]);
    let body = br#"{ "user" : "dave", "data": [1, 2, {"x": "y"}] }"#;
    let r = post(
        proxy.addr,
        "/",
        &[("content-type", "application/json")],
        body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        verify_with_jsonwebtoken(r.token(), DEMO_SECRET.as_bytes())["payload"]["user"],
        "dave"
    );
    let sha: String = {
        use sha2::Digest;
        sha2::Sha256::digest(body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    assert_eq!(r.json()["body_sha256"], sha);

    // Chunked body read through the retry buffer, also forwarded whole.
    let chunked = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{}\r\n0\r\n\r\n",
        body.len(),
        std::str::from_utf8(body).unwrap()
    );
    let r = raw(proxy.addr, chunked.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["body_sha256"], sha);

    // The json source caps bodies at Pingora's 64 KiB retry buffer.
    let mut big = br#"{"user":"dave","pad":""#.to_vec();
    big.extend(std::iter::repeat_n(b'p', 64 * 1024));
    big.extend_from_slice(b"\"}");
    assert_eq!(post(proxy.addr, "/", &[], &big).status, 413);
    let before = echo.received();
    for (bad, code) in [
        (&br#"{"user":"a","user":"b"}"#[..], "ambiguous_user"),
        (br#"{"user":42}"#, "invalid_user"),
        (br#"{"user":"#, "invalid_json"),
        (br#"["user"]"#, "invalid_json"),
    ] {
        let r = post(proxy.addr, "/", &[], bad);
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(bad));
        assert_eq!(r.json()["error"], code);
    }
    assert_eq!(echo.received(), before);
}

#[test]
fn upstream_down_is_502_with_request_id() {
    let dead = format!("http://127.0.0.1:{}/protected", free_port());
    let proxy = start_proxy(&dead, &[]);
    let r = post(proxy.addr, "/", &[("x-user", "erin")], b"{}");
    assert_eq!(r.status, 502, "{}", r.text());
    let j = r.json();
    assert_eq!(j["error"], "upstream_unavailable");
    assert_eq!(j["request_id"].as_str().unwrap().len(), 32);
    let s = status_json(&proxy);
    assert_eq!(s["upstream_errors"], 1);
    assert_eq!(s["outcomes"]["upstream_error"], 1);
    assert_eq!(s["recent"][0]["jti"], j["request_id"]);
    assert_eq!(get(proxy.status, "/readyz").status, 503);
    // The proxy keeps serving.
    assert_eq!(post(proxy.addr, "/", &[], b"{}").status, 502);
}

#[test]
fn slow_upstream_is_504() {
    let (echo, proxy) = start_stack(&[("UPSTREAM_TIMEOUT_MS", "300")]);
    let t0 = Instant::now();
    let r = post(proxy.addr, "/?delay_ms=3000", &[], b"{}");
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(r.json()["error"], "upstream_timeout");
    assert!(
        t0.elapsed() < Duration::from_millis(2500),
        "answered at the timeout, not after the upstream"
    );
    assert_eq!(echo.received(), 1);
    // An upstream 500 is passed through unchanged (502/504 are only the proxy's own).
    let r = post(proxy.addr, "/?status=500", &[], b"{}");
    assert_eq!(r.status, 500);
    assert!(r.header("x-my-jwt").is_some());
    assert_eq!(status_json(&proxy)["upstream_errors"], 1);
}

#[test]
fn status_service_counts_and_escapes() {
    let (_echo, proxy) = start_stack(&[]);
    let s0 = status_json(&proxy);
    assert_eq!(s0["requests_total"], 0);
    let hostile = "<script>document.title='pwned'</script>";
    let r = post(
        proxy.addr,
        "/x?q=%3Cb%3E",
        &[
            ("x-user", hostile),
            ("x-evil", "\"><img src=x onerror=alert(1)>"),
            ("authorization", "Basic c2VjcmV0"),
            ("cookie", "sid=secret"),
        ],
        b"{}",
    );
    assert_eq!(r.status, 200);
    post(proxy.addr, "/", &[], b"{}");
    get(proxy.addr, "/");
    let s = status_json(&proxy);
    assert_eq!(s["requests_total"], 3);
    assert_eq!(s["tokens_minted"], 2);
    assert_eq!(s["by_status"]["200"], 2);
    assert_eq!(s["in_flight"], 0);
    assert_eq!(s["demo_key"], true);
    assert_eq!(s["key_fingerprint"].as_str().unwrap().len(), 16);
    let rec = &s["recent"][2];
    assert_eq!(rec["user"], hostile);
    assert_eq!(rec["token_claims"]["payload"]["user"], hostile);
    assert_eq!(rec["token_header"]["alg"], "HS512");
    assert!(rec["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    let headers = rec["headers"].as_array().unwrap();
    let shown = |n: &str| {
        headers
            .iter()
            .find(|h| h[0] == n)
            .map(|h| h[1].clone())
            .unwrap()
    };
    assert_eq!(shown("authorization"), "[redacted]");
    assert_eq!(shown("cookie"), "[redacted]");
    let token = r.token();
    let signature = token.rsplit('.').next().unwrap();
    let page = get(proxy.status, "/status");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-security-policy"),
        Some("default-src 'none'; style-src 'unsafe-inline'")
    );
    let html = page.text();
    for raw_markup in ["<script>document", "<img src=x"] {
        assert!(!html.contains(raw_markup), "{raw_markup} shown unescaped");
    }
    assert!(html.contains("&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;"));
    assert!(
        !html.contains("c2VjcmV0") && !html.contains("sid=secret"),
        "secrets redacted"
    );
    assert!(
        !html.contains(signature) && !s.to_string().contains(signature),
        "the signature is never shown"
    );
    assert_eq!(get(proxy.status, "/healthz").status, 200);
    assert_eq!(get(proxy.status, "/readyz").status, 200);
    assert_eq!(get(proxy.status, "/nope").status, 404);
}

#[test]
fn metrics_parse_with_the_prometheus_parser() {
    let (_echo, proxy) = start_stack(&[]);
    for _ in 0..3 {
        post(proxy.addr, "/", &[("x-my-jwt", "spoof")], b"{}");
    }
    get(proxy.addr, "/");
    let text = get(proxy.status, "/metrics").text();
    let parsed: serde_json::Value =
        serde_json::from_str(&run_python("parse_metrics.py", &json!(text))).unwrap();
    assert_eq!(parsed["jwt_proxy_requests_total"]["status=200"], 3.0);
    assert_eq!(parsed["jwt_proxy_requests_total"]["status=405"], 1.0);
    assert_eq!(parsed["jwt_proxy_tokens_minted_total"][""], 3.0);
    assert_eq!(parsed["jwt_proxy_spoof_attempts_total"][""], 3.0);
    assert_eq!(parsed["jwt_proxy_request_duration_seconds_count"][""], 4.0);
    assert_eq!(
        parsed["jwt_proxy_request_duration_seconds_bucket"]["le=+Inf"],
        4.0
    );
    assert_eq!(parsed["jwt_proxy_signing_duration_seconds_count"][""], 3.0);
}

#[test]
fn pyjwt_verifies_tokens_under_every_key_encoding() {
    let vectors: serde_json::Value =
        serde_json::from_str(include_str!("data/test-vectors.json")).unwrap();
    for case in vectors["signing"].as_array().unwrap() {
        let secret = case["secret"].as_str().unwrap();
        let encoding = case["encoding"].as_str().unwrap();
        let (_echo, proxy) = start_stack(&[
            ("JWT_SECRET", secret),
            ("JWT_SECRET_ENCODING", encoding),
            ("JWT_ISSUER", "jwt-proxy-test"),
            ("JWT_AUDIENCE", "svc"),
            ("JWT_KID", "k-2026"),
            ("JWT_TTL_SECS", "120"),
        ]);
        let users = ["alice", "Zoë \"quoted\" <b>", "anonymous"];
        let tokens: Vec<String> = users
            .iter()
            .map(|u| {
                let headers: Vec<(&str, &str)> = if *u == "anonymous" {
                    vec![]
                } else {
                    vec![("x-user", u)]
                };
                let r = post(proxy.addr, "/", &headers, b"{}");
                assert_eq!(r.status, 200, "{}", r.text());
                // The echo verifies with the demo key as text: the same bytes only for `text`.
                assert_eq!(
                    r.json()["x_my_jwt"]["valid"],
                    encoding == "text",
                    "{encoding}"
                );
                r.token().to_string()
            })
            .collect();
        let out = run_python(
            "verify_pyjwt.py",
            &json!({
                "secret": secret, "encoding": encoding, "tokens": tokens,
                "expect": {"users": users, "ttl": 120, "iss": "jwt-proxy-test", "aud": "svc", "kid": "k-2026"},
            }),
        );
        let out: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(out["verified"], 3, "{encoding}");
    }
}

#[test]
fn pyjwt_verifies_default_tokens_without_ttl() {
    let (_echo, proxy) = start_stack(&[("JWT_TTL_SECS", "0")]);
    let r = post(proxy.addr, "/", &[("x-user", "frank")], b"{}");
    let out = run_python(
        "verify_pyjwt.py",
        &json!({"secret": DEMO_SECRET, "encoding": "text", "tokens": [r.token()], "expect": {"users": ["frank"], "ttl": null}}),
    );
    assert!(out.contains("\"verified\": 1"), "{out}");
}

#[test]
fn jwt_post_saves_and_verifies_the_token() {
    let (_echo, proxy) = start_stack(&[]);
    let dir = scratch_dir("jwt-post");
    let file = dir.join("token.jwt");
    let url = format!("http://{}/", proxy.addr);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_jwt-post"))
        .args([
            &url,
            "--user",
            "gina",
            "--data",
            r#"{"k":1}"#,
            "--save",
            file.to_str().unwrap(),
            "--secret",
            DEMO_SECRET,
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("200 OK")
            && stdout.contains("\"user\": \"gina\"")
            && stdout.contains("token verified"),
        "{stdout}"
    );
    let saved = std::fs::read_to_string(&file).unwrap();
    let claims = verify_with_jsonwebtoken(saved.trim(), DEMO_SECRET.as_bytes());
    assert_eq!(claims["payload"]["user"], "gina");

    // A wrong key: exit 4. A refused request: exit 1. Nothing listening: exit 1.
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_jwt-post"))
            .args(args)
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(run(&[&url, "--secret", "wrong"]), Some(4));
    assert_eq!(run(&[&url, "--user", "bad\tuser"]), Some(1));
    assert_eq!(
        run(&[&format!("http://127.0.0.1:{}/", free_port())]),
        Some(1)
    );
    assert_eq!(run(&[&url, "--data", "{not json"]), Some(2));
}

#[test]
fn config_errors_stop_startup_with_exit_2() {
    let bin = env!("CARGO_BIN_EXE_jwt-proxy");
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let mut cmd = std::process::Command::new(bin);
        cmd.current_dir(manifest_dir()).args(args);
        for (k, _) in jwt_proxy::config::SETTINGS {
            cmd.env_remove(k);
        }
        // No key is an error of its own (tests/operations.rs): the demo key, unless replaced.
        cmd.env("JWT_DEMO_KEY", "true").envs(env.iter().copied());
        cmd.output().unwrap()
    };
    for (env, setting) in [
        (&[("HTTP_PORT", "70000")][..], "HTTP_PORT"),
        (
            &[("JWT_SECRET_ENCODING", "rot13")][..],
            "JWT_SECRET_ENCODING",
        ),
        (
            &[("JWT_SECRET", "nothex"), ("JWT_SECRET_ENCODING", "hex")][..],
            "JWT_SECRET",
        ),
        (&[("USER_SOURCE", "cookie")][..], "USER_SOURCE"),
        (&[("UPSTREAM_URL", "nope")][..], "UPSTREAM_URL"),
    ] {
        let out = run(env, &["-t"]);
        assert_eq!(out.status.code(), Some(2), "{env:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.contains(&format!("config error: {setting}: ")),
            "{stderr}"
        );
    }
    let out = run(&[], &["-t"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&[], &["-t", "-c", "/nonexistent.yaml"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn static_source_names_every_request_and_ignores_the_header() {
    let (_echo, proxy) = start_stack(&[("USER_SOURCE", "static:batch-job")]);
    let r = post(proxy.addr, "/", &[("x-user", "mallory")], b"{}");
    assert_eq!(r.status, 200);
    assert_eq!(
        verify_with_jsonwebtoken(r.token(), DEMO_SECRET.as_bytes())["payload"]["user"],
        "batch-job"
    );
}

#[test]
fn existing_forwarded_for_is_extended() {
    let (_echo, proxy) = start_stack(&[]);
    let r = post(
        proxy.addr,
        "/",
        &[("x-forwarded-for", "203.0.113.7")],
        b"{}",
    );
    let xff: Vec<_> = r.json()["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0] == "x-forwarded-for")
        .map(|h| h[1].clone())
        .collect();
    assert_eq!(xff, [json!("203.0.113.7, 127.0.0.1")]);
}

#[test]
fn hop_by_hop_headers_are_dropped_and_upstream_connections_reused() {
    let (_echo, proxy) = start_stack(&[]);
    let peers: Vec<String> = (0..6)
        .map(|_| {
            let r = post(
                proxy.addr,
                "/",
                &[
                    ("keep-alive", "timeout=5"),
                    ("te", "trailers"),
                    ("proxy-connection", "keep-alive"),
                    ("x-hop", "1"),
                    ("connection", "x-hop"),
                ],
                b"{}",
            );
            assert_eq!(r.status, 200);
            let j = r.json();
            let names: Vec<&str> = j["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h[0].as_str().unwrap())
                .collect();
            for hop in [
                "keep-alive",
                "te",
                "proxy-connection",
                "x-hop",
                "connection",
            ] {
                assert!(!names.contains(&hop), "{hop} forwarded: {names:?}");
            }
            j["peer"].as_str().unwrap().to_string()
        })
        .collect();
    // Each client request came on a new connection; the upstream saw pooled ones: at most one
    // per worker thread (each thread keeps its own pool; the default is one per CPU).
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let distinct: std::collections::BTreeSet<&String> = peers.iter().collect();
    assert!(distinct.len() <= threads.min(5), "{peers:?}");
}

#[test]
fn idle_client_connections_are_closed_after_the_keepalive_timeout() {
    use std::io::Read;
    let (_echo, proxy) = start_stack(&[("CLIENT_KEEPALIVE_SECS", "1")]);
    let mut client = KeepAlive::new(proxy.addr);
    for _ in 0..2 {
        assert_eq!(client.post("/", &[], b"{}").unwrap().status, 200);
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(
        client.reopened, 0,
        "a connection idle for less than the timeout is kept"
    );

    // A raw keep-alive connection left idle: the proxy closes it after about a second.
    let mut s = std::net::TcpStream::connect(proxy.addr).unwrap();
    std::io::Write::write_all(
        &mut s,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let t0 = Instant::now();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf); // returns when the proxy closes the connection
    let waited = t0.elapsed();
    assert_eq!(parse_response(&buf).status, 200);
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
}

#[test]
fn echo_counts_distinct_and_repeated_jtis() {
    // The soak run's uniqueness check relies on this counter; prove it can see a repeat.
    let echo = start_echo(&["--track-jti"]);
    let proxy = start_proxy(&format!("http://{}/protected", echo.addr), &[]);
    let mut ka = KeepAlive::new(proxy.addr);
    let mut last = String::new();
    for _ in 0..50 {
        let r = ka.post("/", &[], b"{}").unwrap();
        assert_eq!(r.status, 200);
        last = r.token().to_string();
    }
    let stats = |echo: &Echo| get(echo.addr, "/stats").json();
    let s = stats(&echo);
    assert_eq!(
        (s["jti_distinct"].as_u64(), s["jti_duplicates"].as_u64()),
        (Some(50), Some(0))
    );
    // Replay the last token straight to the upstream, and send one without a token.
    assert_eq!(
        post(echo.addr, "/protected", &[("x-my-jwt", &last)], b"{}").status,
        200
    );
    assert_eq!(post(echo.addr, "/protected", &[], b"{}").status, 200);
    let s = stats(&echo);
    assert_eq!(s["jti_distinct"], 50);
    assert_eq!(s["jti_duplicates"], 1);
    assert_eq!(s["jti_missing"], 1);
}

/// Between requests a connection waits for its next one outside Pingora's parser and hands it
/// the bytes that arrived (up to 4 KiB per read): heads and bodies split anywhere, around that
/// size included, after idle pauses, and requests pipelined in one write, all arrive whole.
#[test]
fn requests_split_anywhere_on_an_idle_keepalive_connection_arrive_whole() {
    use sha2::Digest;
    use std::io::Write;
    let (_echo, proxy) = start_stack(&[]);
    let mut s = std::net::TcpStream::connect(proxy.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    let body: Vec<u8> = (0..20_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let sha: String = sha2::Sha256::digest(&body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let pad = "p".repeat(6000);
    let request = |user: &str| {
        let mut r = format!(
            "POST / HTTP/1.1\r\nHost: x\r\nx-user: {user}\r\nx-pad: {pad}\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(&body);
        r
    };
    let check = |resp: &Response, user: &str| {
        assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
        let j = resp.json();
        assert_eq!(j["body_sha256"], json!(sha), "{user}");
        let pads: Vec<_> = j["headers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h[0] == "x-pad")
            .collect();
        assert_eq!(pads.len(), 1);
        assert_eq!(pads[0][1].as_str().unwrap().len(), 6000);
        assert_eq!(j["x_my_jwt"]["count"], json!(1), "{j}");
    };
    for (i, cut) in [1usize, 4095, 4096, 4097, 6050, 26_000]
        .into_iter()
        .enumerate()
    {
        let user = format!("split-{i}");
        let bytes = request(&user);
        // Idle first: the connection is parked between requests when the bytes come.
        std::thread::sleep(Duration::from_millis(100));
        s.write_all(&bytes[..cut]).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        s.write_all(&bytes[cut..]).unwrap();
        let (resp, close) = read_one(&mut s).unwrap();
        check(&resp, &user);
        assert!(!close, "keep-alive goes on");
    }
    let two = [request("pipelined-1"), request("pipelined-2")].concat();
    s.write_all(&two).unwrap();
    let mut answers = ResponseReader::default();
    for user in ["pipelined-1", "pipelined-2"] {
        let (resp, _) = answers.next(&mut s).unwrap();
        check(&resp, user);
    }
}

/// Requests pipelined behind a chunked one are all answered at once: the proxy does not follow
/// chunked framing, so after such a request it never takes the connection for idle (it did,
/// and waited on the socket while Pingora held the rest: found by the attack).
#[test]
fn requests_pipelined_behind_a_chunked_one_are_answered_at_once() {
    use std::io::Write;
    let (echo, proxy) = start_stack(&[]);
    let mut s = std::net::TcpStream::connect(proxy.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let known = |n: u32| {
        format!("POST /x HTTP/1.1\r\nHost: x\r\nx-user: p{n}\r\nContent-Length: 2\r\n\r\n{{}}")
    };
    let chunked = "POST /ch HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
                   2\r\n{}\r\n0\r\n\r\n";
    // Chunked first, chunked in the middle, two chunked in a row.
    let batches = [
        [chunked.to_string(), known(1), known(2), known(3)].concat(),
        [known(4), chunked.to_string(), known(5), known(6)].concat(),
        [chunked.to_string(), chunked.to_string(), known(7), known(8)].concat(),
    ];
    let mut answered = 0;
    let mut answers = ResponseReader::default();
    for batch in batches {
        s.write_all(batch.as_bytes()).unwrap();
        for _ in 0..4 {
            let (resp, close) = answers
                .next(&mut s)
                .expect("every pipelined request is answered");
            assert_eq!(resp.status, 200);
            assert!(!close);
            answered += 1;
        }
    }
    assert_eq!(answered, 12);
    assert_eq!(echo.received(), 12);
}
