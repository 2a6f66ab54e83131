//! Zero-downtime upgrades and key rotation through `scripts/supervise.sh` (what `make run`,
//! `make reload` and the container use), and draining on SIGTERM.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

struct Setup {
    dir: PathBuf,
    conf: PathBuf,
    port: u16,
    status_port: u16,
    upstream: String,
}

impl Setup {
    fn new(name: &str, upstream: &str) -> Setup {
        let dir = scratch_dir(name);
        Setup {
            conf: dir.join("jwt-proxy.yaml"),
            dir,
            port: free_port(),
            status_port: free_port(),
            upstream: upstream.into(),
        }
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("jwt-proxy.pid")
    }

    /// Write the config with this key file and kid (a reload picks up both).
    fn write(&self, key: &str, kid: &str) {
        let key_file = self.dir.join(format!("key-{kid}"));
        std::fs::write(&key_file, format!("{key}\n")).unwrap();
        let yaml = format!(
            "version: 1\nthreads: 2\ngrace_period_seconds: 3\ngraceful_shutdown_timeout_seconds: 2\n\
             pid_file: {pid}\nupgrade_sock: {sock}\n\
             jwt_proxy:\n  listen_addr: 127.0.0.1\n  http_port: {port}\n  status_port: {status}\n  \
             upstream_url: {up}\n  upstream_timeout_ms: 2000\n  drain_idle_secs: 1\n  \
             jwt_secret_file: {key}\n  jwt_kid: {kid}\n  access_log: \"off\"\n",
            pid = self.pid_file().display(),
            sock = self.dir.join("upgrade.sock").display(),
            port = self.port,
            status = self.status_port,
            up = self.upstream,
            key = key_file.display(),
        );
        std::fs::write(&self.conf, yaml).unwrap();
    }

    fn proxy_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

/// The supervisor; on drop (a failed test included) its current jwt-proxy is killed too.
struct Supervised {
    proc: Proc,
    pid_file: PathBuf,
    sup_pid_file: PathBuf,
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if let Some(pid) = std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
        {
            if alive(pid) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
    }
}

fn supervise(setup: &Setup) -> Supervised {
    let out = setup.dir.join("supervise.out");
    let sup_pid_file = setup.dir.join("supervisor.pid");
    let mut cmd = Command::new(manifest_dir().join("scripts/supervise.sh"));
    // Only the config file speaks (`make test` exports HTTP_PORT, for one).
    for (k, _) in jwt_proxy::config::SETTINGS {
        cmd.env_remove(k);
    }
    let child = cmd
        .env("JWT_PROXY_BIN", env!("CARGO_BIN_EXE_jwt-proxy"))
        .env("JWT_PROXY_CONF", &setup.conf)
        .env("SUPERVISOR_PID_FILE", &sup_pid_file)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(setup.dir.join("supervise.err")).unwrap())
        .spawn()
        .unwrap();
    Supervised {
        proc: Proc {
            child,
            stdout_path: out,
        },
        pid_file: setup.pid_file(),
        sup_pid_file,
    }
}

fn key_for(kid: &str) -> String {
    // HS512 keys are at least 64 bytes (RFC 7518 3.2).
    match kid {
        "k1" => "first-key-0123456789abcdef".repeat(3),
        _ => "second-key-fedcba9876543210".repeat(3),
    }
}

/// `make reload`: HUP the supervisor and return once the new process serves and the old one
/// has exited.
fn reload(setup: &Setup, sup: &Supervised) {
    let out = Command::new(manifest_dir().join("scripts/reload.sh"))
        .env("SUPERVISOR_PID_FILE", &sup.sup_pid_file)
        .env("JWT_PROXY_BIN", env!("CARGO_BIN_EXE_jwt-proxy"))
        .env("JWT_PROXY_CONF", &setup.conf)
        .output()
        .unwrap();
    assert_success(&out, "scripts/reload.sh");
}

/// What the clients saw: answered requests `(token, era marker)` and failures.
#[derive(Default)]
struct Seen {
    answered: Vec<(String, u8)>,
    failures: Vec<String>,
}

/// Keep-alive clients that never re-send (a request that fails is a failure), busy ones with
/// random 0-20 ms gaps and idle ones that wait `idle_gap` (and up to 0.5 s more) between
/// requests.
fn load(
    addr: std::net::SocketAddr,
    busy: usize,
    idle: usize,
    idle_gap: Duration,
    stop: &Arc<AtomicBool>,
    era: &Arc<AtomicU8>,
    seen: &Arc<Mutex<Seen>>,
) -> Vec<std::thread::JoinHandle<(u64, u64)>> {
    (0..busy + idle)
        .map(|c| {
            let (stop, era, seen) = (stop.clone(), era.clone(), seen.clone());
            std::thread::spawn(move || {
                let mut client = KeepAlive::new(addr);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let seq = format!("c{c}-{n}");
                    let sent_in = era.load(Ordering::SeqCst);
                    let result =
                        client.post("/", &[("x-test-seq", &seq), ("x-user", "load")], b"{}");
                    let answered_in = era.load(Ordering::SeqCst);
                    let mut seen = seen.lock().unwrap();
                    match result {
                        Ok(r) if r.status == 200 => {
                            // Only requests sent and answered within one era say which key to expect.
                            let marker = if sent_in == answered_in { sent_in } else { 1 };
                            seen.answered.push((r.token().to_string(), marker));
                        }
                        Ok(r) => {
                            seen.failures
                                .push(format!("{seq}: status {} {}", r.status, r.text()))
                        }
                        Err(e) => seen.failures.push(format!("{seq}: {e}")),
                    }
                    drop(seen);
                    n += 1;
                    let gap = if c < busy {
                        Duration::from_millis(rand::random::<u64>() % 21)
                    } else {
                        idle_gap + Duration::from_millis(rand::random::<u64>() % 500)
                    };
                    let until = Instant::now() + gap;
                    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(gap.min(Duration::from_millis(50)));
                    }
                }
                (n, client.reopened)
            })
        })
        .collect()
}

#[test]
fn ten_upgrades_under_load_lose_no_request_of_clients_that_never_retry() {
    let echo = start_tracking_echo();
    let setup = Setup::new("upgrade", &format!("http://{}/protected", echo.addr));
    setup.write(&key_for("k1"), "k1");
    let sup = supervise(&setup);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", setup.port).parse().unwrap();
    wait_for_port(addr);
    wait_until("pid file", Duration::from_secs(10), || {
        setup.proxy_pid().is_some()
    });

    let stop = Arc::new(AtomicBool::new(false));
    let era = Arc::new(AtomicU8::new(0)); // 0: before rotation, 1: during, 2: after
    let seen: Arc<Mutex<Seen>> = Arc::default();
    // Idle clients wait longer than the grace period (3 s) between their requests.
    let clients = load(addr, 8, 2, Duration::from_secs(4), &stop, &era, &seen);

    // A balancer probing readiness through the upgrades: the status port passes to the new
    // process with the proxy port, and the address never stops being ready.
    let status: std::net::SocketAddr = format!("127.0.0.1:{}", setup.status_port).parse().unwrap();
    let probe = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut ok, mut not) = (0u64, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                match std::panic::catch_unwind(|| get(status, "/readyz")) {
                    Ok(r) if r.status == 200 => ok += 1,
                    Ok(r) => not.push(format!("{} {}", r.status, r.text())),
                    Err(_) => not.push("no answer".to_string()),
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            (ok, not)
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let mut pids = vec![setup.proxy_pid().unwrap()];
    for i in 0..10 {
        let rotate = i == 4;
        if rotate {
            era.store(1, Ordering::SeqCst);
            setup.write(&key_for("k2"), "k2");
        }
        reload(&setup, &sup);
        if rotate {
            era.store(2, Ordering::SeqCst);
        }
        let pid = setup.proxy_pid().unwrap();
        assert!(!pids.contains(&pid), "upgrade {i} started a new process");
        assert!(!alive(*pids.last().unwrap()), "the old process has exited");
        pids.push(pid);
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let mut sent = 0;
    let mut reopened = 0;
    for c in clients {
        let (n, r) = c.join().unwrap();
        sent += n;
        reopened += r;
    }

    let (ready, not_ready) = probe.join().unwrap();
    assert!(
        not_ready.is_empty() && ready > 20,
        "readiness through the upgrades: {ready} ready, not: {not_ready:?}"
    );
    let seen = seen.lock().unwrap();
    assert!(
        seen.failures.is_empty(),
        "{} failed requests of {sent}, first: {:?}",
        seen.failures.len(),
        seen.failures.first()
    );
    assert_eq!(seen.answered.len() as u64, sent);
    assert!(sent >= 2000, "{sent}");

    // Every request reached the upstream exactly once.
    let stats = get(echo.addr, "/stats").json();
    assert_eq!(stats["received"], sent, "{stats}");
    assert_eq!(stats["distinct"], sent, "{stats}");
    assert_eq!(stats["duplicates"], 0, "{stats}");

    // Every token verifies with the key its kid names; before the rotation all are k1, after
    // the old process has gone all are k2.
    let mut counts = std::collections::BTreeMap::new();
    for (token, marker) in seen.answered.iter() {
        let kid = jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
        verify_with_jsonwebtoken(token, key_for(&kid).as_bytes());
        match marker {
            0 => assert_eq!(kid, "k1"),
            2 => assert_eq!(kid, "k2"),
            _ => {}
        }
        *counts.entry((*marker, kid)).or_insert(0u64) += 1;
    }
    assert!(
        counts.get(&(0, "k1".to_string())).is_some_and(|n| *n > 0),
        "{counts:?}"
    );
    assert!(
        counts.get(&(2, "k2".to_string())).is_some_and(|n| *n > 0),
        "{counts:?}"
    );
    eprintln!(
        "sent {sent} through 10 upgrades, 0 failed; idle connections closed by a drain and reopened before sending: {reopened}; by (era, kid): {counts:?}"
    );

    // SIGTERM to the supervisor: the proxy drains and exits, and so does the supervisor.
    let last = setup.proxy_pid().unwrap();
    signal(sup.proc.child.id(), "TERM");
    wait_until("proxy exit", Duration::from_secs(15), || !alive(last));
    let mut sup = sup;
    wait_until("supervisor exit", Duration::from_secs(5), || {
        sup.proc.child.try_wait().unwrap().is_some()
    });
}

#[test]
fn a_sigterm_drain_answers_every_request_sent_during_the_grace_period() {
    let (echo, proxy) = start_stack(&[("UPSTREAM_TIMEOUT_MS", "2000"), ("DRAIN_IDLE_SECS", "2")]);
    let stop = Arc::new(AtomicBool::new(false));
    let era = Arc::new(AtomicU8::new(0));
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let clients = load(proxy.addr, 8, 0, Duration::ZERO, &stop, &era, &seen);
    // One more client is idle when the drain starts and sends its next request 1 s into it.
    let mut idle = KeepAlive::new(proxy.addr);
    assert_eq!(idle.post("/", &[], b"{}").unwrap().status, 200);
    std::thread::sleep(Duration::from_millis(500));
    signal(proxy.proc.child.id(), "TERM");
    std::thread::sleep(Duration::from_secs(1));
    let late = idle
        .post("/", &[], b"{}")
        .expect("a request sent during the drain");
    assert_eq!(late.status, 200);
    assert_eq!(late.header("connection"), Some("close"), "told to go away");
    assert_eq!(idle.reopened, 0, "on the connection it already had");
    // Clients keep sending on their connections until each is answered with Connection: close.
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let seen = seen.lock().unwrap();
    // Once a connection is closed after its last answer, no new one can be made (the process
    // is stopping): such a request was never sent. Any other failure is a lost request.
    let lost: Vec<_> = seen
        .failures
        .iter()
        .filter(|f| !f.contains(": connect: "))
        .collect();
    assert!(
        lost.is_empty(),
        "{} lost, first: {:?}",
        lost.len(),
        lost.first()
    );
    assert!(seen.answered.len() > 50, "{}", seen.answered.len());
    assert_eq!(echo.received(), seen.answered.len() as u64 + 2);
    let mut proxy = proxy;
    wait_until("proxy exit", Duration::from_secs(10), || {
        proxy.proc.child.try_wait().unwrap().is_some()
    });
}

#[test]
fn a_request_cut_at_the_end_of_the_drain_is_logged_and_counted() {
    // A short grace period (35 s by default) needs a config file; the rest is environment.
    let dir = scratch_dir("drain-cut");
    let conf = dir.join("jwt-proxy.yaml");
    std::fs::write(&conf, "grace_period_seconds: 2\n").unwrap();
    let echo = start_echo(&[]);
    let port = free_port();
    let out = dir.join("proxy.out");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jwt-proxy"));
    for (k, _) in jwt_proxy::config::SETTINGS {
        cmd.env_remove(k);
    }
    let mut child = cmd
        .args(["-c", conf.to_str().unwrap()])
        .envs([
            ("LISTEN_ADDR", "127.0.0.1".to_string()),
            ("HTTP_PORT", port.to_string()),
            ("STATUS_PORT", free_port().to_string()),
            ("UPSTREAM_URL", format!("http://{}/protected", echo.addr)),
            ("UPSTREAM_TIMEOUT_MS", "1000".into()),
            ("CLIENT_BODY_TIMEOUT_MS", "2000".into()),
            ("DRAIN_IDLE_SECS", "1".into()),
            ("JWT_DEMO_KEY", "true".into()),
        ])
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for_port(addr);
    // A client trickling its body (each byte within the body timeout) for longer than the
    // grace period: still in flight when the drain ends.
    let trickle = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n")
            .unwrap();
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(400));
            if s.write_all(b"x").is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(600));
    let t0 = Instant::now();
    signal(child.id(), "TERM");
    wait_until("proxy exit", Duration::from_secs(15), || {
        child.try_wait().unwrap().is_some()
    });
    let took = t0.elapsed();
    trickle.join().unwrap();
    let log = std::fs::read_to_string(&out).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("drain_cut"))
        .unwrap_or_else(|| panic!("no access-log line for the cut request: {log}"));
    let rec: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(rec["status"], 0);
    assert_eq!(rec["outcome"], "failed");
    assert!(
        took >= Duration::from_secs(2),
        "the grace period was waited for: {took:?}"
    );
}

#[test]
fn a_request_in_flight_at_sigterm_still_gets_its_answer() {
    let (echo, proxy) = start_stack(&[]);
    let addr = proxy.addr;
    let slow =
        // A keep-alive client: it does not ask for the close itself.
        std::thread::spawn(move || {
            KeepAlive::new(addr)
                .post("/?delay_ms=1500", &[("x-user", "slow")], b"{}")
                .unwrap()
        });
    wait_until("request in flight", Duration::from_secs(5), || {
        status_json(&proxy)["in_flight"] == 1
    });
    let t0 = Instant::now();
    signal(proxy.proc.child.id(), "TERM");
    let r = slow.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["x_my_jwt"]["valid"], true);
    // Answered after the drain's idle window: keep-alive would be a promise the drain breaks.
    assert_eq!(r.header("connection"), Some("close"), "{:?}", r.headers);
    assert!(
        t0.elapsed() >= Duration::from_millis(1000),
        "it really was in flight when TERM came"
    );
    assert_eq!(echo.received(), 1);
    // New connections are refused once it drains; the process exits on its own.
    let mut proxy = proxy;
    wait_until("proxy exit", Duration::from_secs(20), || {
        proxy.proc.child.try_wait().unwrap().is_some()
    });
}

/// A stack whose drain keeps idle connections 3 s.
fn drain_stack() -> (Echo, Proxy) {
    start_stack(&[("UPSTREAM_TIMEOUT_MS", "2000"), ("DRAIN_IDLE_SECS", "3")])
}

/// Read from `s` until it closes or 10 s pass.
fn read_all(s: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn requests_pipelined_during_a_drain_are_all_answered() {
    let (echo, proxy) = drain_stack();
    let mut s = std::net::TcpStream::connect(proxy.addr).unwrap();
    let one = |seq: &str| {
        format!("POST / HTTP/1.1\r\nHost: x\r\nx-user: {seq}\r\nContent-Length: 2\r\n\r\n{{}}")
    };
    // One request, then the drain starts while the connection is idle...
    s.write_all(one("first").as_bytes()).unwrap();
    let mut seen = String::new();
    while seen.matches("HTTP/1.1 200").count() < 1 {
        let mut b = [0u8; 65536];
        let n = std::io::Read::read(&mut s, &mut b).unwrap();
        seen.push_str(&String::from_utf8_lossy(&b[..n]));
    }
    signal(proxy.proc.child.id(), "TERM");
    std::thread::sleep(Duration::from_millis(300));
    // ...and three requests arrive pipelined in one write.
    s.write_all(format!("{}{}{}", one("p1"), one("p2"), one("p3")).as_bytes())
        .unwrap();
    let out = read_all(&mut s);
    assert_eq!(out.matches("HTTP/1.1 200").count(), 3, "{out}");
    assert_eq!(
        out.to_ascii_lowercase()
            .matches("connection: close")
            .count(),
        1,
        "only the last answer closes: {out}"
    );
    assert_eq!(echo.received(), 4);
}

#[test]
fn a_head_arriving_across_the_idle_drain_is_answered() {
    let (echo, proxy) = drain_stack();
    let mut s = std::net::TcpStream::connect(proxy.addr).unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    signal(proxy.proc.child.id(), "TERM");
    // The rest of the head comes after DRAIN_IDLE_SECS (3 s), within the 10 s head deadline.
    std::thread::sleep(Duration::from_secs(4));
    s.write_all(b"Content-Length: 2\r\n\r\n{}").unwrap();
    let out = read_all(&mut s);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert_eq!(echo.received(), 1);
}

#[test]
fn a_request_pipelined_behind_a_chunked_one_during_a_drain_is_answered() {
    let (echo, proxy) = drain_stack();
    let mut s = std::net::TcpStream::connect(proxy.addr).unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        .unwrap();
    let mut b = [0u8; 65536];
    let _ = std::io::Read::read(&mut s, &mut b).unwrap();
    signal(proxy.proc.child.id(), "TERM");
    std::thread::sleep(Duration::from_millis(300));
    // Two requests behind the chunked one (one behind it was answered even when the known
    // length of that one made the proxy think nothing more was buffered: the attack found it).
    s.write_all(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n\
POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}\
POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
    )
    .unwrap();
    // The chunked request's length is not known, so its connection stays open: read the three
    // answers, not to the end.
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = String::new();
    while out.matches("HTTP/1.1 200").count() < 3 {
        let n = std::io::Read::read(&mut s, &mut b).unwrap_or(0);
        assert!(n > 0, "closed after: {out}");
        out.push_str(&String::from_utf8_lossy(&b[..n]));
    }
    assert_eq!(echo.received(), 4);
}

/// A sequential client whose connection once carried a chunked request still gets
/// `Connection: close` on its next answer in a drain, and loses nothing (the second attack
/// found every such connection kept open to the end of the idle window, then cut mid-use).
#[test]
fn a_connection_that_carried_a_chunked_request_gets_its_close_in_a_drain() {
    let (echo, proxy) = drain_stack();
    let mut s = std::net::TcpStream::connect(proxy.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    )
    .unwrap();
    let (first, close) = read_one(&mut s).unwrap();
    assert_eq!(first.status, 200);
    assert!(!close);
    signal(proxy.proc.child.id(), "TERM");
    std::thread::sleep(Duration::from_millis(300));
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        .unwrap();
    let (next, close) = read_one(&mut s).expect("answered");
    assert_eq!(next.status, 200);
    assert!(close, "the answer in the drain closes: {:?}", next.headers);
    assert_eq!(echo.received(), 2);
}

#[test]
fn after_sigterm_readyz_says_503_while_the_proxy_still_accepts_for_the_shutdown_delay() {
    let (echo, proxy) = start_stack(&[("SHUTDOWN_DELAY_SECS", "3"), ("DRAIN_IDLE_SECS", "1")]);
    let ready = get(proxy.status, "/readyz");
    assert_eq!(ready.status, 200, "{}", ready.text());
    let mut kept = KeepAlive::new(proxy.addr);
    let before = kept.post("/", &[], b"{}").unwrap();
    assert_eq!(before.status, 200);
    assert_ne!(before.header("connection"), Some("close"));
    let t0 = Instant::now();
    signal(proxy.proc.child.id(), "TERM");
    std::thread::sleep(Duration::from_millis(300));
    // Not ready at once, while both listeners still answer.
    let r = get(proxy.status, "/readyz");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["stopping"], true, "{}", r.text());
    assert_eq!(r.json()["draining"], false, "{}", r.text());
    // A request on a kept connection is answered, and the connection kept: closing it now
    // would only send the client to connect again just before the listeners close.
    let on_kept = kept.post("/", &[], b"{}").expect("on the kept connection");
    assert_eq!(on_kept.status, 200);
    assert_ne!(on_kept.header("connection"), Some("close"));
    assert_eq!(kept.reopened, 0);
    // New connections are still accepted and served.
    let mut answered = 0;
    while t0.elapsed() < Duration::from_millis(2_500) {
        let r = post(proxy.addr, "/", &[], b"{}");
        assert_eq!(r.status, 200, "{}", r.text());
        verify_with_jsonwebtoken(r.token(), DEMO_SECRET.as_bytes());
        answered += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(answered >= 10, "{answered}");
    // The kept connection is drained like any other: its next answer closes it.
    std::thread::sleep(Duration::from_millis(800));
    let drained = kept.post("/", &[], b"{}").expect("in the drain");
    assert_eq!(drained.status, 200);
    assert_eq!(drained.header("connection"), Some("close"));
    assert_eq!(kept.reopened, 0);
    // After the delay the listeners close and the process exits once drained.
    wait_until("listener closed", Duration::from_secs(3), || {
        std::net::TcpStream::connect(proxy.addr).is_err()
    });
    assert!(t0.elapsed() >= Duration::from_secs(3), "{:?}", t0.elapsed());
    let mut proxy = proxy;
    wait_until("proxy exit", Duration::from_secs(10), || {
        proxy.proc.child.try_wait().unwrap().is_some()
    });
    assert_eq!(echo.received(), answered + 3);
}

#[test]
fn without_a_shutdown_delay_sigterm_closes_the_listeners_at_once() {
    let (_echo, proxy) = start_stack(&[("DRAIN_IDLE_SECS", "1")]);
    let t0 = Instant::now();
    signal(proxy.proc.child.id(), "TERM");
    wait_until("listener closed", Duration::from_secs(2), || {
        std::net::TcpStream::connect(proxy.addr).is_err()
    });
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
}

#[test]
fn chunked_requests_pipelined_during_a_drain_are_all_answered() {
    let (echo, proxy) = drain_stack();
    let mut s = std::net::TcpStream::connect(proxy.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let chunked =
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
    s.write_all(chunked.as_bytes()).unwrap();
    assert_eq!(read_one(&mut s).unwrap().0.status, 200);
    signal(proxy.proc.child.id(), "TERM");
    std::thread::sleep(Duration::from_millis(300));
    // Three chunked requests in one write: none may be dropped by a close after the first.
    s.write_all(chunked.repeat(3).as_bytes()).unwrap();
    let mut answers = ResponseReader::default();
    for i in 0..3 {
        let (r, _) = answers
            .next(&mut s)
            .unwrap_or_else(|e| panic!("pipelined chunked request {i} lost: {e:?}"));
        assert_eq!(r.status, 200);
    }
    assert_eq!(echo.received(), 4);
}

#[test]
fn a_client_ending_each_request_with_an_empty_line_gets_its_close_in_a_drain() {
    // RFC 9112 2.2: an empty line before a request is ignored; it is no next request, so
    // it must not keep the connection open through the drain (it did, until the drain cut it).
    let (echo, proxy) = drain_stack();
    let mut s = std::net::TcpStream::connect(proxy.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}\r\n";
    for _ in 0..3 {
        s.write_all(req).unwrap();
        let (r, close) = read_one(&mut s).unwrap();
        assert_eq!(r.status, 200);
        assert!(!close);
    }
    signal(proxy.proc.child.id(), "TERM");
    std::thread::sleep(Duration::from_millis(300));
    s.write_all(req).unwrap();
    let (next, close) = read_one(&mut s).expect("answered");
    assert_eq!(next.status, 200);
    assert!(close, "the answer in the drain closes: {:?}", next.headers);
    assert_eq!(echo.received(), 4);
}
