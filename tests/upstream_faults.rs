//! A misbehaving upstream: each request's `mode=` query says how it fails. The proxy must answer
//! with its documented status (or close), never hang, and keep serving other requests.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::*;

fn serve(mut s: TcpStream) {
    let mut buf = [0u8; 256];
    // Read only the start of the request: enough for the request line.
    let n = s.read(&mut buf).unwrap_or(0);
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    let mode = head
        .split("mode=")
        .nth(1)
        .and_then(|m| m.split([' ', '&']).next())
        .unwrap_or("ok")
        .to_string();
    let _ = match mode.as_str() {
        "close" => Ok(()),
        "garbage" => s.write_all(b"this is not HTTP at all\r\n\r\n"),
        "reset" => {
            // Half a response, then close with the rest of the request unread: the kernel
            // answers with RST.
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Le");
            std::thread::sleep(Duration::from_millis(50));
            Ok(())
        }
        "huge_headers" => {
            let mut r = b"HTTP/1.1 200 OK\r\n".to_vec();
            for i in 0..2000 {
                r.extend_from_slice(format!("x-pad-{i}: {}\r\n", "v".repeat(60)).as_bytes());
            }
            r.extend_from_slice(b"Content-Length: 0\r\n\r\n");
            s.write_all(&r)
        }
        "stall_body" => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly ten b");
            std::thread::sleep(Duration::from_secs(5));
            Ok(())
        }
        _ => {
            let mut rest = [0u8; 4096];
            s.set_read_timeout(Some(Duration::from_millis(100))).ok();
            let _ = s.read(&mut rest);
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        }
    };
}

fn bad_upstream() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || serve(s));
        }
    });
    addr
}

#[test]
fn each_upstream_fault_gets_its_documented_answer() {
    let up = bad_upstream();
    let proxy = start_proxy(
        &format!("http://{up}/protected"),
        &[("UPSTREAM_TIMEOUT_MS", "1000")],
    );
    let body = vec![b'x'; 32 * 1024]; // more than the bad upstream reads
    for (mode, status) in [
        ("close", 502),
        ("garbage", 502),
        ("reset", 502),
        ("huge_headers", 502),
    ] {
        let t0 = Instant::now();
        let r = post(proxy.addr, &format!("/?mode={mode}"), &[], &body);
        assert_eq!(r.status, status, "{mode}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"), "{mode}");
        assert_eq!(r.json()["error"], "upstream_unavailable", "{mode}");
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "{mode} took {:?}",
            t0.elapsed()
        );
        // And the proxy keeps serving.
        assert_eq!(
            post(proxy.addr, "/?mode=ok", &[], b"{}").status,
            200,
            "after {mode}"
        );
    }
    // Stalls mid-body: the client already has the 200 header; after UPSTREAM_TIMEOUT_MS the
    // proxy closes the connection, so the client sees a short body, never a hang.
    let t0 = Instant::now();
    let mut s = TcpStream::connect(proxy.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"POST /?mode=stall_body HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}").unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.ends_with("only ten b"),
        "truncated body, then closed: {text}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(4),
        "closed at the upstream timeout, took {:?}",
        t0.elapsed()
    );
    assert_eq!(post(proxy.addr, "/?mode=ok", &[], b"{}").status, 200);

    let st = status_json(&proxy);
    assert_eq!(
        st["upstream_errors"].as_u64().unwrap(),
        5,
        "{}",
        st["by_status"]
    );
    assert_eq!(st["in_flight"], 0);
}

#[test]
fn other_clients_are_served_while_upstream_faults_are_in_progress() {
    let up = bad_upstream();
    let proxy = start_proxy(
        &format!("http://{up}/protected"),
        &[("UPSTREAM_TIMEOUT_MS", "2000"), ("ACCESS_LOG", "off")],
    );
    let addr = proxy.addr;
    // Eight faulty requests at once, two of each slow kind, all in flight together.
    let faulty: Vec<_> = ["stall_body", "stall_body", "huge_headers", "reset"]
        .iter()
        .cycle()
        .take(8)
        .map(|mode| {
            let path = format!("/?mode={mode}");
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let req = format!("POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{{}}");
                s.write_all(req.as_bytes()).unwrap();
                let mut out = Vec::new();
                let _ = s.read_to_end(&mut out);
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let in_flight = status_json(&proxy)["in_flight"].as_u64().unwrap();
    assert!(
        in_flight >= 2,
        "the stalls are in progress ({in_flight} in flight)"
    );
    // Meanwhile every other request is answered.
    for _ in 0..50 {
        assert_eq!(post(addr, "/?mode=ok", &[], b"{}").status, 200);
    }
    for t in faulty {
        t.join().unwrap();
    }
    let st = status_json(&proxy);
    assert_eq!(st["in_flight"], 0);
    assert_eq!(st["requests_total"], 58);
}
