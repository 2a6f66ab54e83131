//! `jwt_proxy_decisions_total{outcome,reason}`: one request of each kind moves its own counter
//! exactly once, and nothing else.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;

type Counts = BTreeMap<(String, String), u64>;

fn decisions(status: SocketAddr) -> Counts {
    get(status, "/metrics")
        .text()
        .lines()
        .filter_map(|l| l.strip_prefix("jwt_proxy_decisions_total{outcome=\""))
        .map(|rest| {
            let (outcome, rest) = rest.split_once("\",reason=\"").unwrap();
            let (reason, n) = rest.split_once("\"} ").unwrap();
            (
                (outcome.to_string(), reason.to_string()),
                n.parse().unwrap(),
            )
        })
        .collect()
}

/// Run `send`, then wait until the decisions moved, and check that exactly `want` moved by 1.
fn moves_once(status: SocketAddr, want: (&str, &str), send: impl FnOnce()) {
    let before = decisions(status);
    send();
    let mut after = before.clone();
    wait_until(
        &format!("{want:?} counted"),
        Duration::from_secs(10),
        || {
            after = decisions(status);
            after != before
        },
    );
    // A little longer: a second, wrong count would show now.
    std::thread::sleep(Duration::from_millis(100));
    after = decisions(status);
    let moved: BTreeMap<_, _> = after
        .iter()
        .filter(|(k, n)| before.get(*k).copied().unwrap_or(0) != **n)
        .map(|(k, n)| (k.clone(), n - before.get(k).copied().unwrap_or(0)))
        .collect();
    let want = (want.0.to_string(), want.1.to_string());
    assert_eq!(moved, BTreeMap::from([(want, 1)]));
}

#[track_caller]
fn expect(want: u16, r: Response) {
    assert_eq!(r.status, want, "{}", r.text());
}

fn send_raw(addr: SocketAddr, bytes: &[u8]) -> Response {
    parse_response(&exchange(addr, bytes, Duration::from_secs(10)))
}

#[test]
fn each_kind_of_request_moves_its_own_decision_counter_once() {
    let (_echo, proxy) = start_stack(&[
        ("USER_SOURCE", "json:user"),
        ("USER_DEFAULT", "none"),
        ("MAX_BODY_BYTES", "1000"),
        ("MAX_HEADER_BYTES", "4096"),
        ("CLIENT_BODY_TIMEOUT_MS", "500"),
        ("UPSTREAM_TIMEOUT_MS", "500"),
    ]);
    let (a, s) = (proxy.addr, proxy.status);
    // Every reason is listed from the start, at 0.
    let listed = decisions(s);
    for reason in [
        "forwarded",
        "invalid_json",
        "upstream_timeout",
        "client_gone",
        "drain_cut",
    ] {
        assert!(
            listed.keys().any(|(_, r)| r == reason),
            "{reason} missing: {listed:?}"
        );
    }
    assert!(listed.values().all(|n| *n == 0), "{listed:?}");

    moves_once(s, ("proxied", "forwarded"), || {
        expect(200, post(a, "/", &[], br#"{"user":"alice"}"#))
    });
    moves_once(s, ("rejected", "identity_required"), || {
        expect(401, post(a, "/", &[], b"{}"))
    });
    moves_once(s, ("rejected", "invalid_json"), || {
        expect(400, post(a, "/", &[], b"not json"))
    });
    moves_once(s, ("rejected", "ambiguous_user"), || {
        expect(400, post(a, "/", &[], br#"{"user":"a","user":"b"}"#))
    });
    moves_once(s, ("rejected", "invalid_user"), || {
        expect(400, post(a, "/", &[], br#"{"user":"a\u0001"}"#))
    });
    moves_once(s, ("rejected", "method_not_allowed"), || {
        expect(405, get(a, "/"))
    });
    moves_once(s, ("rejected", "body_too_large"), || {
        expect(413, post(a, "/", &[], &[b'x'; 2000]))
    });
    moves_once(s, ("rejected", "headers_too_large"), || {
        expect(431, post(a, "/", &[("x-big", &"b".repeat(5000))], b"{}"))
    });
    // Raw heads the helpers cannot send: (reason, status, bytes).
    let raw_cases: [(&str, u16, &[u8]); 4] = [
        (
            "invalid_framing",
            400,
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "invalid_target",
            400,
            b"POST http://h/ HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        ),
        (
            "bad_request",
            400,
            b"POST / HTTP/1.1\r\nHost: h\r\nConnection: x-forwarded-for\r\nContent-Length: 12\r\n\r\n{\"user\":\"u\"}",
        ),
        (
            "request_timeout",
            408,
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"user\":",
        ),
    ];
    for (reason, status, bytes) in raw_cases {
        moves_once(s, ("rejected", reason), || {
            expect(status, send_raw(a, bytes))
        });
    }
    moves_once(s, ("upstream_error", "upstream_timeout"), || {
        expect(504, post(a, "/?delay_ms=3000", &[], br#"{"user":"u"}"#))
    });
    moves_once(s, ("failed", "client_gone"), || {
        let mut c = TcpStream::connect(a).unwrap();
        let body = br#"{"user":"u"}"#;
        write!(
            c,
            "POST /?delay_ms=300 HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .unwrap();
        c.write_all(body).unwrap();
        drop(c);
    });
}

#[test]
fn refusals_of_the_bearer_source_and_a_dead_upstream_have_their_reasons() {
    let dead = format!("http://127.0.0.1:{}/protected", free_port());
    let proxy = start_proxy(
        &dead,
        &[
            ("USER_SOURCE", "bearer"),
            ("BEARER_SECRET", "bearer-key-of-the-identity-provider-0123"),
        ],
    );
    moves_once(proxy.status, ("rejected", "invalid_bearer_token"), || {
        let r = post(proxy.addr, "/", &[("authorization", "Bearer x.y.z")], b"{}");
        assert_eq!(r.status, 401, "{}", r.text());
    });
    moves_once(
        proxy.status,
        ("upstream_error", "upstream_unavailable"),
        || {
            let r = post(proxy.addr, "/", &[], b"{}");
            assert_eq!(r.status, 502, "{}", r.text());
        },
    );
}

#[test]
fn minted_token_sizes_are_counted() {
    let (_echo, proxy) = start_stack(&[]);
    for user in ["a", &"u".repeat(200)] {
        let r = post(proxy.addr, "/", &[("x-user", user)], b"{}");
        assert_eq!(r.status, 200);
    }
    let metrics = get(proxy.status, "/metrics").text();
    let line = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("{name} missing"))
            .trim()
            .to_string()
    };
    assert_eq!(line("jwt_proxy_token_bytes_count "), "2");
    assert_eq!(line("jwt_proxy_token_bytes_bucket{le=\"256\"} "), "0");
    assert_eq!(line("jwt_proxy_token_bytes_bucket{le=\"384\"} "), "1");
    assert_eq!(line("jwt_proxy_token_bytes_bucket{le=\"+Inf\"} "), "2");
}
