//! An upstream whose address changes (a container restarted under compose, a pod rescheduled)
//! is followed without a restart, and `/readyz` says when it cannot be reached. The name is
//! made ours with a line in /etc/hosts (root only; CI and the developers' machines run as root).

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const NAME: &str = "jwt-proxy-upstream-test.invalid";

/// /etc/hosts with our name pointing at an address; the original is put back on drop.
struct Hosts {
    original: String,
}

impl Hosts {
    fn take() -> Option<Hosts> {
        let original = std::fs::read_to_string("/etc/hosts").ok()?;
        let h = Hosts { original };
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

struct Echo(Child);

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn echo_on(addr: SocketAddr) -> Echo {
    let child = Command::new(env!("CARGO_BIN_EXE_protected-echo"))
        .args(["--listen", &addr.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(addr);
    Echo(child)
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
    let a = echo_on(first);
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
    let _b = echo_on(second);
    let t0 = Instant::now();
    let r = post(proxy.addr, "/", &[], b"{}");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), proxy.proc.stdout());
    assert!(t0.elapsed() < Duration::from_secs(5));
    let j = get(proxy.status, "/readyz").json();
    assert_eq!(j["ready"], true, "{j}");
    assert_eq!(j["upstream_addr"], second.to_string());
    let s = status_json(&proxy);
    assert_eq!(s["upstream_addr"], second.to_string());
}
