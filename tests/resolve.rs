//! An upstream whose address changes (a container restarted under compose, a pod rescheduled)
//! is followed without a restart, and `/readyz` says when it cannot be reached. The name is
//! made ours with a line in /etc/hosts (root only; CI and the developers' machines run as root).

mod common;

use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;

const NAME: &str = "jwt-proxy-upstream-test.invalid";

/// The tests here share /etc/hosts: one at a time.
static HOSTS: Mutex<()> = Mutex::new(());

/// /etc/hosts with our name pointing at an address; the original is put back on drop.
struct Hosts {
    original: String,
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
}

impl Hosts {
    fn take() -> Option<Hosts> {
        let guard = HOSTS.lock().unwrap_or_else(|p| p.into_inner());
        let original = std::fs::read_to_string("/etc/hosts").ok()?;
        let h = Hosts {
            original,
            _one_at_a_time: guard,
        };
        h.point_to("127.0.0.2").ok()?;
        Some(h)
    }

    fn point_to(&self, ip: &str) -> std::io::Result<()> {
        let kept: String = self
            .original
            .lines()
            .filter(|l| !l.contains(NAME))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write("/etc/hosts", format!("{kept}{ip} {NAME}\n"))
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        let _ = std::fs::write("/etc/hosts", &self.original);
    }
}

/// A listener whose accept queue is full: the kernel drops further SYNs, so a connect to it
/// hangs (retransmitting) until the listener closes, when the next SYN is answered with a reset.
struct Tarpit {
    _listener: socket2::Socket,
    _queued: Vec<TcpStream>,
}

fn tarpit(addr: SocketAddr) -> Tarpit {
    use socket2::{Domain, Socket, Type};
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    listener.set_reuse_address(true).unwrap();
    listener.bind(&addr.into()).unwrap();
    listener.listen(0).unwrap();
    let mut queued = Vec::new();
    // Fill the queue: once full, a connect times out instead of completing.
    while let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
        queued.push(s);
        assert!(queued.len() < 64, "the accept queue never filled");
    }
    Tarpit {
        _listener: listener,
        _queued: queued,
    }
}

/// Connections from this machine still in SYN-SENT towards `addr`.
fn syn_sent_to(addr: SocketAddr) -> usize {
    let std::net::IpAddr::V4(ip) = addr.ip() else {
        return 0;
    };
    let want = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(ip.octets()),
        addr.port()
    );
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[2] == want && f[3] == "02"
        })
        .count()
}

/// A request whose connect was still pending when another request moved the proxy to the
/// name's new address: when that connect fails, its retry goes to the new address (the one
/// that failed is the old one, not the address now current).
#[test]
fn a_connect_failing_after_the_name_moved_is_retried_at_the_new_address() {
    let Some(hosts) = Hosts::take() else {
        eprintln!("SKIPPED: /etc/hosts is not writable here (run as root to test re-resolution)");
        return;
    };
    let port = free_port();
    let old: SocketAddr = format!("127.0.0.2:{port}").parse().unwrap();
    let new: SocketAddr = format!("127.0.0.3:{port}").parse().unwrap();
    let _b = start_echo_at(new, &[]);
    let pit = tarpit(old);
    let before = syn_sent_to(old);
    let proxy = start_proxy(
        &format!("http://{NAME}:{port}/protected"),
        &[("UPSTREAM_CONNECT_TIMEOUT_MS", "10000")],
    );
    let addr = proxy.addr;
    let slow = std::thread::spawn(move || post(addr, "/", &[], b"{}"));
    wait_until(
        "the first request's connect to the old address",
        Duration::from_secs(10),
        || syn_sent_to(old) > before,
    );

    // The name moves; the old address stops listening; a second request finds the new one.
    hosts.point_to("127.0.0.3").unwrap();
    drop(pit);
    let r = post(proxy.addr, "/", &[], b"{}");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), proxy.proc.stdout());
    assert_eq!(
        get(proxy.status, "/readyz").json()["upstream_addr"],
        new.to_string()
    );

    // The first request's connect is now refused (its next SYN meets a closed port): it is
    // retried at the new address, not given up because "the address did not change".
    let r = slow.join().unwrap();
    assert_eq!(r.status, 200, "{}\n{}", r.text(), proxy.proc.stdout());
}

#[test]
fn a_moved_upstream_is_followed_without_a_restart() {
    let Some(hosts) = Hosts::take() else {
        eprintln!("SKIPPED: /etc/hosts is not writable here (run as root to test re-resolution)");
        return;
    };
    let port = free_port();
    let first: SocketAddr = format!("127.0.0.2:{port}").parse().unwrap();
    let second: SocketAddr = format!("127.0.0.3:{port}").parse().unwrap();
    let a = start_echo_at(first, &[]);
    let proxy = start_proxy(&format!("http://{NAME}:{port}/protected"), &[]);
    let r = post(proxy.addr, "/", &[], b"{}");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(get(proxy.status, "/readyz").status, 200);

    // The upstream goes away: not ready, and requests get 502 (nothing listens anywhere).
    drop(a);
    let ready = get(proxy.status, "/readyz");
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert_eq!(post(proxy.addr, "/", &[], b"{}").status, 502);

    // It comes back at another address: the next request finds it, no restart.
    hosts.point_to("127.0.0.3").unwrap();
    let _b = start_echo_at(second, &[]);
    let t0 = Instant::now();
    let r = post(proxy.addr, "/", &[], b"{}");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), proxy.proc.stdout());
    assert!(t0.elapsed() < Duration::from_secs(5));
    let j = get(proxy.status, "/readyz").json();
    assert_eq!(j["ready"], true, "{j}");
    assert_eq!(j["upstream_addr"], second.to_string());
    let s = status_json(&proxy);
    assert_eq!(s["upstream_addr"], second.to_string());

    // It moves again while no request comes: a failed readiness check looks the name up, so
    // the proxy is ready again at once, not at the next periodic lookup (10 s).
    let third: SocketAddr = format!("127.0.0.4:{port}").parse().unwrap();
    hosts.point_to("127.0.0.4").unwrap();
    let _c = start_echo_at(third, &[]);
    drop(_b);
    assert_eq!(get(proxy.status, "/readyz").status, 503);
    wait_until("ready at the new address", Duration::from_secs(3), || {
        get(proxy.status, "/readyz").status == 200
    });
    assert_eq!(
        get(proxy.status, "/readyz").json()["upstream_addr"],
        third.to_string()
    );
}
