//! Hostile clients against the real binaries: malformed heads, smuggling shapes, oversized
//! heads, slowloris, stalled and vanishing clients, idle-connection floods and identity attacks.
//! Every case ends in its documented status (JSON body where the proxy answers) or a closed
//! connection, and nothing refused reaches the upstream.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use common::*;
use serde_json::json;

/// `(status, JSON error code or None for a bare answer)` of a response that ends in a close.
fn answer(addr: SocketAddr, request: &[u8]) -> (u16, Option<String>) {
    let t0 = Instant::now();
    let bytes = exchange(addr, request, Duration::from_secs(10));
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "the connection was not closed after the answer"
    );
    let r = parse_response(&bytes);
    let code = serde_json::from_slice::<serde_json::Value>(&r.body)
        .ok()
        .and_then(|j| j["error"].as_str().map(str::to_string));
    (r.status, code)
}

fn status_counter(proxy: &Proxy, name: &str) -> u64 {
    status_json(proxy)[name].as_u64().unwrap()
}

#[test]
fn malformed_heads_are_refused_with_400_and_counted() {
    let (echo, proxy) = start_stack(&[]);
    let cases: &[&[u8]] = &[
        b"GARBAGE\r\n\r\n",
        b"POST / HTTP/9.9\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nBad Header: x\r\nContent-Length: 0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nx-a: a\x00b\r\nContent-Length: 0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nx-user: a\x01b\r\nContent-Length: 0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nx-user: a\r\n b\r\nContent-Length: 0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nHost: b\r\nContent-Length: 0\r\n\r\n",
        b"POST http://elsewhere/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        b"POST / HTTP/1.1\r\n\xff\xfe: x\r\n\r\n",
        b"POST /x?a=<b> HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    ];
    for req in cases {
        let (status, code) = answer(proxy.addr, req);
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(req));
        assert_eq!(code, None, "Pingora's own 400 has no body");
    }
    // More than 256 header lines: Pingora's parser limit.
    let mut many = b"POST / HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..300 {
        many.extend_from_slice(format!("x-h{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    assert_eq!(answer(proxy.addr, &many).0, 400);

    assert_eq!(echo.received(), 0, "nothing malformed reached the upstream");
    let s = status_json(&proxy);
    assert_eq!(s["malformed_requests"], cases.len() as u64 + 1);
    assert_eq!(s["requests_total"], 0, "no request was ever parsed");

    // Illegal characters in the target are percent-encoded by Pingora: the upstream only ever
    // sees the encoded form, never the raw space.
    let r = raw(
        proxy.addr,
        b"POST /?a b<c> HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["query"], "a%20b%3Cc%3E");
}

#[test]
fn smuggling_shapes_are_refused_before_anything_is_forwarded() {
    let (echo, proxy) = start_stack(&[]);
    let head = "POST / HTTP/1.1\r\nHost: x\r\n";
    // (framing headers, the code of our JSON answer; None: Pingora refuses the head itself)
    let cases: &[(&str, Option<&str>)] = &[
        (
            "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
            Some("invalid_framing"),
        ),
        (
            "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
            Some("invalid_framing"),
        ),
        ("Content-Length: 2\r\nContent-Length: 3\r\n", None),
        (
            "Content-Length: 2\r\nContent-Length: 2\r\n",
            Some("invalid_framing"),
        ),
        ("Content-Length: 2, 2\r\n", Some("invalid_framing")),
        ("Content-Length: +2\r\n", None),
        ("Content-Length: 0x2\r\n", None),
        ("Transfer-Encoding: xchunked\r\n", None),
        ("Transfer-Encoding : chunked\r\n", None),
        ("Transfer-Encoding: chunked, identity\r\n", None),
        (
            "Transfer-Encoding: identity, chunked\r\n",
            Some("invalid_framing"),
        ),
        (
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            Some("invalid_framing"),
        ),
        ("Transfer-Encoding: gzip\r\n", None),
        ("Transfer-Encoding:\x0bchunked\r\n", None),
    ];
    for (framing, code) in cases {
        // A second request hidden where a proxy reading the other framing would see it.
        let req = format!(
            "{head}{framing}\r\n0\r\n\r\nPOST /smuggled HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        );
        let bytes = exchange(proxy.addr, req.as_bytes(), Duration::from_secs(10));
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(
            text.matches("HTTP/1.1 ").count(),
            1,
            "{framing:?}: one answer, then closed: {text}"
        );
        let r = parse_response(&bytes);
        assert_eq!(r.status, 400, "{framing:?}: {text}");
        match code {
            Some(code) => assert_eq!(r.json()["error"], *code, "{framing:?}"),
            None => assert!(r.body.is_empty(), "{framing:?}: {text}"),
        }
    }
    // HTTP/1.0 has no chunked encoding; HTTP/1.1 needs a Host.
    assert_eq!(
        answer(
            proxy.addr,
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        )
        .0,
        400
    );
    assert_eq!(
        answer(
            proxy.addr,
            b"POST / HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
        (400, Some("invalid_framing".into()))
    );
    assert_eq!(echo.received(), 0, "nothing ambiguous reached the upstream");
    // Plain framings still work, either case of "chunked".
    let r = raw(proxy.addr, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\nConnection: close\r\n\r\n2\r\n{}\r\n0\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_bytes"], 2);
    assert_eq!(echo.received(), 1);
}

#[test]
fn oversized_heads_get_431_or_400() {
    let (echo, proxy) = start_stack(&[]);
    let close = "Content-Length: 0\r\nConnection: close\r\n\r\n";
    // Many headers adding up to more than MAX_HEADER_BYTES (64 KiB).
    let mut block = String::from("POST / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..70 {
        block.push_str(&format!("x-h{i}: {}\r\n", "v".repeat(1000)));
    }
    block.push_str(close);
    assert_eq!(
        answer(proxy.addr, block.as_bytes()),
        (431, Some("headers_too_large".into()))
    );
    // One header longer than the limit on its own.
    let one = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nx-big: {}\r\n{close}",
        "v".repeat(70_000)
    );
    assert_eq!(
        answer(proxy.addr, one.as_bytes()),
        (431, Some("headers_too_large".into()))
    );
    // Past Pingora's own 1 MiB cap the head is never parsed: bare 400.
    let huge = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nx-big: {}\r\n{close}",
        "v".repeat(1_100_000)
    );
    assert_eq!(answer(proxy.addr, huge.as_bytes()), (400, None));
    // Just under the limit passes.
    let fits = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nx-big: {}\r\n{close}",
        "v".repeat(60_000)
    );
    assert_eq!(answer(proxy.addr, fits.as_bytes()).0, 200);
    assert_eq!(echo.received(), 1);

    // The limit is a setting.
    let (echo, proxy) = start_stack(&[("MAX_HEADER_BYTES", "2048")]);
    let small = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nx-big: {}\r\n{close}",
        "v".repeat(2100)
    );
    assert_eq!(answer(proxy.addr, small.as_bytes()).0, 431);
    assert_eq!(echo.received(), 0);
}

/// Trickle `bytes` one byte per `gap`; returns how long after connecting the server closed the
/// connection (a write failed or a read saw the end), or `None` if it never did.
fn trickle(addr: SocketAddr, bytes: &[u8], gap: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
    let mut sink = [0u8; 1024];
    for b in bytes {
        if s.write_all(&[*b]).is_err() {
            return Some(t0.elapsed());
        }
        match s.read(&mut sink) {
            Ok(0) => return Some(t0.elapsed()),
            Ok(_) => panic!("the proxy answered a head it never got whole"),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(t0.elapsed()),
            Err(_) => {}
        }
        std::thread::sleep(gap);
    }
    None
}

#[test]
fn slowloris_is_cut_off_at_the_header_timeout_while_others_are_served() {
    let (echo, proxy) = start_stack(&[("CLIENT_HEADER_TIMEOUT_MS", "1000")]);
    let head = b"POST / HTTP/1.1\r\nHost: x\r\nx-user: slow\r\nx-pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\nContent-Length: 0\r\n\r\n";
    let addr = proxy.addr;
    let slow: Vec<_> = (0..20)
        .map(|_| std::thread::spawn(move || trickle(addr, head, Duration::from_millis(100))))
        .collect();
    // Connections that never send a byte are closed too.
    let silent: Vec<_> = (0..5)
        .map(|_| {
            std::thread::spawn(move || {
                let t0 = Instant::now();
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut buf = [0u8; 16];
                let n = s.read(&mut buf).unwrap_or(0);
                (n, t0.elapsed())
            })
        })
        .collect();
    // Everyone else is served meanwhile.
    let mut served = 0;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(1500) {
        assert_eq!(post(addr, "/", &[("x-user", "fast")], b"{}").status, 200);
        served += 1;
    }
    for t in slow {
        let closed = t
            .join()
            .unwrap()
            .expect("a trickling client was never cut off");
        assert!(
            closed >= Duration::from_millis(900) && closed < Duration::from_secs(5),
            "cut off after {closed:?}"
        );
    }
    for t in silent {
        let (n, after) = t.join().unwrap();
        assert_eq!(n, 0, "closed without an answer");
        assert!(after >= Duration::from_millis(900) && after < Duration::from_secs(5));
    }
    let s = status_json(&proxy);
    assert_eq!(s["header_timeouts"], 25);
    assert_eq!(s["requests_total"], served);
    assert_eq!(echo.received(), served);
    assert_eq!(s["in_flight"], 0);

    // On a keep-alive connection the clock starts at a request's first byte: idling longer
    // than the header timeout is fine (CLIENT_KEEPALIVE_SECS governs), trickling is not.
    let mut ka = KeepAlive::new(addr);
    assert_eq!(ka.post("/", &[], b"{}").unwrap().status, 200);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(ka.post("/", &[], b"{}").unwrap().status, 200);
    assert_eq!(ka.reopened, 0, "the idle connection was kept");
    assert_eq!(status_counter(&proxy, "header_timeouts"), 25);
}

#[test]
fn a_client_that_stops_mid_body_gets_408() {
    for source in ["json:user", "header:x-user"] {
        let (echo, proxy) =
            start_stack(&[("CLIENT_BODY_TIMEOUT_MS", "500"), ("USER_SOURCE", source)]);
        let t0 = Instant::now();
        let bytes = exchange(
            proxy.addr,
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"user\":",
            Duration::from_secs(10),
        );
        let r = parse_response(&bytes);
        assert_eq!(r.status, 408, "{source}: {}", r.text());
        assert_eq!(r.json()["error"], "request_timeout");
        assert!(t0.elapsed() < Duration::from_secs(5), "{source}");
        if source.starts_with("json") {
            assert_eq!(echo.received(), 0, "the body was never complete");
        }
        let s = status_json(&proxy);
        assert_eq!(s["in_flight"], 0);
        assert_eq!(s["by_status"]["408"], 1);
        assert_eq!(post(proxy.addr, "/", &[], br#"{"user":"x"}"#).status, 200);
    }
}

#[test]
fn a_client_that_leaves_while_the_upstream_answers_is_accounted_for() {
    let (echo, proxy) = start_stack(&[]);
    let mut s = TcpStream::connect(proxy.addr).unwrap();
    s.write_all(b"POST /?delay_ms=1500 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    drop(s);
    // Others are served while it is pending.
    assert_eq!(post(proxy.addr, "/", &[], b"{}").status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    let s = loop {
        let s = status_json(&proxy);
        if s["in_flight"] == 0 && s["requests_total"] == 2 {
            break s;
        }
        assert!(Instant::now() < deadline, "never settled: {s}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let outcomes: u64 = s["outcomes"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(outcomes, 2, "every request has exactly one outcome: {s}");
    assert_eq!(echo.received(), 2);
    // The proxy keeps working, its upstream pool too.
    for _ in 0..5 {
        assert_eq!(post(proxy.addr, "/", &[], b"{}").status, 200);
    }
    // Half-closing after sending the request counts as leaving too (like nginx's 499): no
    // answer, the upstream wait is abandoned, the record says status 0.
    let mut s = TcpStream::connect(proxy.addr).unwrap();
    s.write_all(b"POST /?delay_ms=1500 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    s.shutdown(Shutdown::Write).unwrap();
    let t0 = Instant::now();
    let mut out = Vec::new();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.read_to_end(&mut out);
    assert!(out.is_empty());
    assert!(
        t0.elapsed() < Duration::from_millis(1000),
        "not held for the upstream"
    );
    let s = status_json(&proxy);
    assert_eq!(s["by_status"]["0"], 2, "{s}");
    assert_eq!(s["in_flight"], 0);
}

#[test]
fn a_client_leaving_releases_the_upstream_connection() {
    // An upstream that takes the request, never answers, and reports when the proxy hangs up.
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up_addr = upstream.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut s, _) = upstream.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = [0u8; 4096];
        let got_request = s.read(&mut buf).unwrap_or(0) > 0;
        // Read until the proxy closes its side (0) or the timeout.
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
        tx.send((got_request, Instant::now())).unwrap();
    });
    let proxy = start_proxy(&format!("http://{up_addr}/protected"), &[]);
    let mut c = TcpStream::connect(proxy.addr).unwrap();
    c.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let left = Instant::now();
    drop(c);
    let (got_request, closed) = rx.recv_timeout(Duration::from_secs(25)).unwrap();
    assert!(got_request);
    assert!(
        closed.duration_since(left) < Duration::from_secs(2),
        "the proxy dropped the upstream connection when the client left, not at a timeout"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while status_json(&proxy)["in_flight"] != 0 {
        assert!(Instant::now() < deadline, "the request never finished");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(status_json(&proxy)["by_status"]["0"], 1);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let (echo, proxy) = start_stack(&[]);
    let mut s = TcpStream::connect(proxy.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut all = Vec::new();
    for (i, user) in ["p1", "p2", "p3", "p4"].iter().enumerate() {
        let close = if i == 3 { "Connection: close\r\n" } else { "" };
        all.extend_from_slice(
            format!("POST /?n={i} HTTP/1.1\r\nHost: x\r\nx-user: {user}\r\n{close}Content-Length: 2\r\n\r\n{{}}").as_bytes(),
        );
    }
    s.write_all(&all).unwrap(); // one write: all four arrive together
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let users: Vec<String> = text
        .split("HTTP/1.1 ")
        .skip(1)
        .map(|r| {
            let r = parse_response(format!("HTTP/1.1 {r}").as_bytes());
            assert_eq!(r.status, 200);
            verify_with_jsonwebtoken(r.token(), DEMO_SECRET.as_bytes())["payload"]["user"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        users,
        ["p1", "p2", "p3", "p4"],
        "every request answered, in order"
    );
    assert_eq!(echo.received(), 4);
}

#[test]
fn a_thousand_idle_keepalive_connections_do_not_starve_active_clients() {
    let (echo, proxy) = start_stack(&[("ACCESS_LOG", "off")]);
    let mut idle: Vec<KeepAlive> = (0..1000).map(|_| KeepAlive::new(proxy.addr)).collect();
    for c in idle.iter_mut() {
        assert_eq!(c.post("/", &[], b"{}").unwrap().status, 200);
    }
    // 1,000 connections now sit idle. New clients are served in full.
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let addr = proxy.addr;
            std::thread::spawn(move || {
                let mut c = KeepAlive::new(addr);
                (0..100)
                    .map(|_| c.post("/", &[], b"{}").map(|r| r.status))
                    .filter(|r| r == &Ok(200))
                    .count()
            })
        })
        .collect();
    let ok: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(ok, 400);
    // And every idle connection is still open and usable.
    for c in idle.iter_mut() {
        assert_eq!(c.post("/", &[], b"{}").unwrap().status, 200);
        assert_eq!(c.reopened, 0);
    }
    assert_eq!(echo.received(), 2400);
    assert_eq!(status_counter(&proxy, "in_flight"), 0);
}

fn b64(v: &serde_json::Value) -> String {
    B64.encode(v.to_string())
}

/// A token with any header and claims, signed HMAC-SHA512 (or another MAC) with `key`.
fn forge(header: serde_json::Value, claims: serde_json::Value, key: &[u8], alg: &str) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let signing_input = format!("{}.{}", b64(&header), b64(&claims));
    let sig = match alg {
        "HS256" => {
            let mut m = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).unwrap();
            m.update(signing_input.as_bytes());
            m.finalize().into_bytes().to_vec()
        }
        "none" => Vec::new(),
        _ => {
            let mut m = <Hmac<sha2::Sha512> as KeyInit>::new_from_slice(key).unwrap();
            m.update(signing_input.as_bytes());
            m.finalize().into_bytes().to_vec()
        }
    };
    format!("{signing_input}.{}", B64.encode(sig))
}

#[test]
fn bearer_attacks_are_refused_and_never_forwarded() {
    let (echo, proxy) = start_stack(&[("USER_SOURCE", "bearer"), ("USER_DEFAULT", "none")]);
    let key = DEMO_SECRET.as_bytes();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let hs512 = json!({"alg": "HS512", "typ": "JWT"});
    let good = json!({"user": "mallory", "iat": now, "exp": now + 60});
    // Sanity: correct tokens pass, so the refusals below are about the attack. HMAC-SHA2 of
    // every size is accepted with our key (documented): the key is what makes them unforgeable.
    let ok = forge(hs512.clone(), good.clone(), key, "HS512");
    let hs256 = forge(json!({"alg": "HS256"}), good.clone(), key, "HS256");
    for t in [&ok, &hs256] {
        let r = post(
            proxy.addr,
            "/",
            &[("authorization", &format!("Bearer {t}"))],
            b"{}",
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(echo.received(), 2);

    let signed = |header: &serde_json::Value, claims: serde_json::Value| {
        forge(header.clone(), claims, key, "HS512")
    };
    // Each answered 401 invalid_bearer_token.
    let mut refused: Vec<(String, String)> = ["none", "None", "NONE"]
        .map(|alg| {
            let token = forge(json!({ "alg": alg }), good.clone(), key, "none");
            (format!("alg {alg}, unsigned"), token)
        })
        .into();
    // Algorithm confusion: another algorithm named over a valid HMAC-SHA512 signature.
    refused.extend(
        ["none", "RS256", "ES256", "PS512", "EdDSA", "HS256"].map(|alg| {
            let token = signed(&json!({ "alg": alg }), good.clone());
            (format!("alg {alg} over an HS512 signature"), token)
        }),
    );
    refused.extend(
        [
            (
                "wrong key",
                forge(hs512.clone(), good.clone(), b"not-the-key", "HS512"),
            ),
            (
                "expired",
                signed(&hs512, json!({"user": "mallory", "exp": now - 10})),
            ),
            (
                "nbf in the future",
                signed(&hs512, json!({"user": "mallory", "nbf": now + 3600})),
            ),
            (
                "oversized (over 8 KiB), validly signed",
                signed(&hs512, json!({"user": "mallory", "pad": "p".repeat(9000)})),
            ),
            ("claims not an object", signed(&hs512, json!(["user"]))),
            ("garbage", "!!!!".into()),
            ("two parts", "a.b".into()),
            ("four parts", "a.b.c.d".into()),
            (
                "header not JSON",
                format!("{}.{}.x", B64.encode("{{{"), b64(&good)),
            ),
        ]
        .map(|(why, token): (&str, String)| (why.to_string(), token)),
    );
    // Each answered 400 invalid_user.
    let bad_user: Vec<(&str, String)> = vec![
        (
            "user claim not a string",
            signed(&hs512, json!({"user": ["a"]})),
        ),
        (
            "user claim with control characters",
            signed(&hs512, json!({"user": "a\u{7}b"})),
        ),
    ];
    let attacks: Vec<(String, String, u16, &str)> = refused
        .into_iter()
        .map(|(why, token)| (why, token, 401, "invalid_bearer_token"))
        .chain(
            bad_user
                .into_iter()
                .map(|(why, token)| (why.to_string(), token, 400, "invalid_user")),
        )
        .collect();
    for (why, token, status, code) in &attacks {
        let r = post(
            proxy.addr,
            "/",
            &[("authorization", &format!("Bearer {token}"))],
            b"{}",
        );
        assert_eq!(r.status, *status, "{why}: {}", r.text());
        assert_eq!(r.json()["error"], *code, "{why}");
        assert!(r.header("x-my-jwt").is_none(), "{why}");
    }
    // Two Authorization headers: ambiguous.
    let r = post(
        proxy.addr,
        "/",
        &[
            ("authorization", &format!("Bearer {ok}")),
            ("authorization", &format!("Bearer {ok}")),
        ],
        b"{}",
    );
    assert_eq!(r.json()["error"], "ambiguous_user");
    assert_eq!(echo.received(), 2, "no attack reached the upstream");
    let s = status_json(&proxy);
    assert_eq!(s["outcomes"]["rejected"], attacks.len() as u64 + 1);
}

#[test]
fn json_identity_attacks_are_refused_and_never_forwarded() {
    let (echo, proxy) = start_stack(&[("USER_SOURCE", "json:user"), ("USER_DEFAULT", "none")]);
    let nested = |n: usize| {
        format!(r#"{{"user":"bob","x":{}{}}}"#, "[".repeat(n), "]".repeat(n)).into_bytes()
    };
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("nested 1,000 deep", nested(1000), 400, "invalid_json"),
        (
            "nested 100,000 deep",
            nested(100_000),
            413,
            "body_too_large",
        ),
        (
            "invalid UTF-8",
            b"{\"user\":\"a\xff\xfe\"}".to_vec(),
            400,
            "invalid_json",
        ),
        (
            "duplicate user",
            br#"{"user":"alice","user":"mallory"}"#.to_vec(),
            400,
            "ambiguous_user",
        ),
        (
            "duplicate user, escaped key",
            br#"{"user":"alice","\u0075ser":"mallory"}"#.to_vec(),
            400,
            "ambiguous_user",
        ),
        (
            "body an array",
            br#"["user","bob"]"#.to_vec(),
            400,
            "invalid_json",
        ),
        (
            "trailing data",
            br#"{"user":"bob"} {}"#.to_vec(),
            400,
            "invalid_json",
        ),
        (
            "truncated",
            br#"{"user":"bob""#.to_vec(),
            400,
            "invalid_json",
        ),
        (
            "no user",
            br#"{"name":"bob"}"#.to_vec(),
            401,
            "identity_required",
        ),
    ];
    // `user` values that are not a string, too long, or hold control characters (NUL, newline,
    // DEL, a C1 control).
    let long = format!(r#""{}""#, "u".repeat(257));
    let bad_users = [
        "42",
        "null",
        r#"{"name":"a"}"#,
        r#"["a"]"#,
        long.as_str(),
        r#""a\u0000b""#,
        r#""a\nb""#,
        r#""a\u007fb""#,
        r#""a\u0085b""#,
    ];
    let cases = cases.into_iter().chain(bad_users.iter().map(|v| {
        let body = format!(r#"{{"user":{v}}}"#).into_bytes();
        (*v, body, 400, "invalid_user")
    }));
    for (why, body, status, code) in cases {
        let r = post(proxy.addr, "/", &[], &body);
        assert_eq!(r.status, status, "{why}: {}", r.text());
        assert_eq!(r.json()["error"], code, "{why}");
    }
    // The same 100,000-deep body sent chunked (no Content-Length) is cut off at the limit.
    let body = nested(100_000);
    let mut req =
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
    for chunk in body.chunks(8192) {
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(
        answer(proxy.addr, &req),
        (413, Some("body_too_large".into()))
    );
    assert_eq!(echo.received(), 0, "no attack reached the upstream");
    // 128 levels (the object and 127 arrays) are accepted.
    assert_eq!(post(proxy.addr, "/", &[], &nested(127)).status, 200);
    assert_eq!(echo.received(), 1);
}

/// A client's `Connection` cannot make Pingora drop a header we set or read the identity from
/// (found by an outside attack: `Connection: x-user` got a token for the user while the upstream
/// never saw the header): 400 `bad_request`, counted, nothing forwarded.
#[test]
fn a_connection_header_naming_a_header_we_set_is_refused() {
    let (echo, proxy) = start_stack(&[]);
    let before = status_json(&proxy)["decisions"].clone();
    let url = format!("http://{}/", proxy.addr);
    for conn in [
        "x-user",
        "close, X-User",
        "x-my-jwt",
        "x-real-ip",
        "content-length",
    ] {
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "-o",
                "-",
                "-w",
                "\n%{http_code}",
                "-X",
                "POST",
                "--data",
                "{}",
            ])
            .args([
                "-H",
                "x-user: bob",
                "-H",
                &format!("Connection: {conn}"),
                &url,
            ])
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout);
        let (body, code) = text.rsplit_once('\n').unwrap();
        assert_eq!(code, "400", "{conn}: {text}");
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"], "bad_request", "{conn}");
    }
    assert_eq!(echo.received(), 0, "nothing went upstream");
    let count = |d: &serde_json::Value| {
        d.as_array()
            .unwrap()
            .iter()
            .find(|r| r["reason"] == "bad_request")
            .map_or(0, |r| r["count"].as_u64().unwrap())
    };
    assert_eq!(count(&status_json(&proxy)["decisions"]) - count(&before), 5);
    // A Connection header naming only itself, or another header, is served as before.
    let (s, _) = answer(
        proxy.addr,
        b"POST / HTTP/1.1\r\nHost: x\r\nx-user: bob\r\nConnection: x-other, close\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(s, 200);
    assert_eq!(echo.received(), 1);
}

/// An identity header spelled with underscores has its dash and dot spellings removed too, and
/// a Connection header cannot name them (found by the second outside attack: with
/// `header:x_user`, `x-user: admin` reached the upstream beside the token for `alice`).
#[test]
fn other_spellings_of_an_underscore_identity_header_never_reach_the_upstream() {
    let (echo, proxy) = start_stack(&[("USER_SOURCE", "header:x_user")]);
    let url = format!("http://{}/", proxy.addr);
    let out = std::process::Command::new("curl")
        .args(["-s", "-X", "POST", "--data", "{}", "-H", "x_user: alice"])
        .args(["-H", "x-user: admin", "-H", "x.user: admin", &url])
        .output()
        .expect("curl");
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = seen["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h[0].as_str())
        .filter(|n| n.replace(['-', '.'], "_") == "x_user")
        .collect();
    assert_eq!(names, ["x_user"], "{seen}");
    assert_eq!(
        seen["x_my_jwt"]["claims"]["payload"]["user"], "alice",
        "{seen}"
    );
    let (s, c) = answer(
        proxy.addr,
        b"POST / HTTP/1.1\r\nHost: x\r\nx_user: alice\r\nConnection: x-user, close\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!((s, c.as_deref()), (400, Some("bad_request")));
    assert_eq!(echo.received(), 1);
}

#[test]
fn header_identity_attacks_are_refused_and_never_forwarded() {
    let (echo, proxy) = start_stack(&[]);
    for (why, req, status, code) in [
        (
            "invalid UTF-8",
            &b"POST / HTTP/1.1\r\nHost: x\r\nx-user: a\xff\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"[..],
            400,
            Some("invalid_user"),
        ),
        (
            "DEL",
            b"POST / HTTP/1.1\r\nHost: x\r\nx-user: a\x7fb\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            400,
            None,
        ),
        (
            "C1 control as UTF-8",
            "POST / HTTP/1.1\r\nHost: x\r\nx-user: a\u{85}b\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".as_bytes(),
            400,
            Some("invalid_user"),
        ),
        (
            "tab inside",
            b"POST / HTTP/1.1\r\nHost: x\r\nx-user: a\tb\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            400,
            Some("invalid_user"),
        ),
    ] {
        let (s, c) = answer(proxy.addr, req);
        assert_eq!((s, c.as_deref()), (status, code), "{why}");
    }
    assert_eq!(echo.received(), 0);
    // Our own header names cannot be smuggled in with different case or twice.
    let r = post(
        proxy.addr,
        "/",
        &[("X-My-JWT", "forged"), ("x-my-jwt", "forged2")],
        b"{}",
    );
    assert_eq!(r.status, 200);
    let tokens: Vec<_> = r.json()["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0] == "x-my-jwt")
        .map(|h| h[1].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        tokens,
        vec![r.token().to_string()],
        "only our token went up"
    );
}

#[test]
fn idle_connections_to_the_status_port_are_capped_and_never_lock_out_a_real_client() {
    // Connections that send nothing are held by Pingora for its 60 s first-read timeout. The
    // status service holds at most 256: each new one closes the oldest, so the idle flood can
    // use up neither the file descriptors the proxy port needs nor the slots a real client
    // (connect, then ask at once) needs.
    let (_echo, proxy) = start_stack(&[]);
    let cap = jwt_proxy::conn::connection_cap::MAX_STATUS_CONNECTIONS;
    let get_on_new_connection = |path: &str| {
        let mut s = TcpStream::connect(proxy.status).unwrap();
        s.write_all(
            // No `Connection: close` from the client: the status service closes after one
            // answer (read_all reads to the end), so no status connection lives long enough to
            // be the oldest while a request is under way.
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        )
        .unwrap();
        parse_response(&read_all(s)).status
    };
    let mut held = Vec::new();
    for round in 0..3 {
        for _ in 0..cap {
            held.push(TcpStream::connect(proxy.status).unwrap());
        }
        // With the slots full of idle connections, real requests are answered.
        assert_eq!(
            get_on_new_connection("/.well-known/jwks.json"),
            200,
            "round {round}"
        );
        assert_eq!(get_on_new_connection("/healthz"), 200, "round {round}");
    }
    std::thread::sleep(Duration::from_millis(300));
    // The oldest were closed by the server (read returns 0), the newest are still open.
    let mut closed = 0;
    for s in held.iter_mut() {
        s.set_nonblocking(true).unwrap();
        if matches!(s.read(&mut [0u8; 1]), Ok(0)) {
            closed += 1;
        }
    }
    let total = held.len();
    assert!(closed >= total - cap, "{closed} of {total} closed");
    assert!(closed < total, "the newest connections stay open");
    assert_eq!(
        post(proxy.addr, "/", &[], b"{}").status,
        200,
        "the proxy port serves"
    );
}

/// Everything the server sends until it closes the connection (a panic if it keeps it open).
fn read_all(mut s: TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.read_to_end(&mut buf)
        .expect("the server closes the connection after its answer");
    buf
}
