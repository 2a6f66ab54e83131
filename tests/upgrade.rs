//! Zero-downtime upgrades and key rotation through `scripts/supervise.sh` (what `make run`,
//! `make reload` and the container use), and draining on SIGTERM.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
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
            "version: 1\nthreads: 2\ngrace_period_seconds: 1\ngraceful_shutdown_timeout_seconds: 2\n\
             pid_file: {pid}\nupgrade_sock: {sock}\n\
             jwt_proxy:\n  listen_addr: 127.0.0.1\n  http_port: {port}\n  status_port: {status}\n  \
             upstream_url: {up}\n  jwt_secret_file: {key}\n  jwt_kid: {kid}\n  access_log: \"off\"\n",
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
    let mut cmd = Command::new(manifest_dir().join("scripts/supervise.sh"));
    // Only the config file speaks (`make test` exports HTTP_PORT, for one).
    for (k, _) in jwt_proxy::config::SETTINGS {
        cmd.env_remove(k);
    }
    let child = cmd
        .env("JWT_PROXY_BIN", env!("CARGO_BIN_EXE_jwt-proxy"))
        .env("JWT_PROXY_CONF", &setup.conf)
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
    }
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn key_for(kid: &str) -> &'static str {
    match kid {
        "k1" => "first-key-0123456789abcdef0123456789abcdef",
        _ => "second-key-fedcba9876543210fedcba9876543210",
    }
}

#[test]
fn three_upgrades_under_keep_alive_load_with_a_key_rotation() {
    let echo = start_echo(&[
        "--no-verify",
        "--track-header",
        "x-test-seq",
        "--threads",
        "2",
    ]);
    let setup = Setup::new("upgrade", &format!("http://{}/protected", echo.addr));
    setup.write(key_for("k1"), "k1");
    let sup = supervise(&setup);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", setup.port).parse().unwrap();
    wait_for_port(addr);
    wait_until("pid file", Duration::from_secs(10), || {
        setup.proxy_pid().is_some()
    });

    let stop = Arc::new(AtomicBool::new(false));
    // (client, seq, token, kid-era marker) for every answered request.
    let results: Arc<Mutex<Vec<(String, u8)>>> = Arc::default();
    let era = Arc::new(std::sync::atomic::AtomicU8::new(0)); // 0: before rotation, 1: during, 2: after
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (stop, results, failures, era) =
                (stop.clone(), results.clone(), failures.clone(), era.clone());
            std::thread::spawn(move || {
                let mut client = KeepAlive::new(addr);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let seq = format!("c{c}-{n}");
                    let sent_in = era.load(Ordering::SeqCst);
                    match client.post("/", &[("x-test-seq", &seq), ("x-user", "load")], b"{}") {
                        Ok(r) if r.status == 200 => {
                            let answered_in = era.load(Ordering::SeqCst);
                            // Only requests sent and answered within one era say which key to expect.
                            let marker = if sent_in == answered_in { sent_in } else { 1 };
                            results
                                .lock()
                                .unwrap()
                                .push((r.token().to_string(), marker));
                        }
                        Ok(r) => failures.lock().unwrap().push(format!(
                            "{seq}: status {} {}",
                            r.status,
                            r.text()
                        )),
                        Err(e) => failures.lock().unwrap().push(format!("{seq}: {e}")),
                    }
                    n += 1;
                }
                (n, client.resent)
            })
        })
        .collect();

    let upgrade = |rotate: bool| {
        let old = setup.proxy_pid().unwrap();
        if rotate {
            era.store(1, Ordering::SeqCst);
            setup.write(key_for("k2"), "k2");
        }
        signal(sup.proc.child.id(), "HUP");
        wait_until("new pid file", Duration::from_secs(15), || {
            setup.proxy_pid().is_some_and(|p| p != old)
        });
        wait_until("old process exit", Duration::from_secs(30), || !alive(old));
        if rotate {
            era.store(2, Ordering::SeqCst);
        }
    };
    std::thread::sleep(Duration::from_millis(800));
    upgrade(false);
    std::thread::sleep(Duration::from_millis(500));
    upgrade(true);
    std::thread::sleep(Duration::from_millis(500));
    upgrade(false);
    wait_until("2,000 requests", Duration::from_secs(60), || {
        results.lock().unwrap().len() >= 2000
    });
    stop.store(true, Ordering::Relaxed);
    let mut sent = 0;
    let mut resent = 0;
    for c in clients {
        let (n, r) = c.join().unwrap();
        sent += n;
        resent += r;
    }

    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed requests, first: {:?}",
        failures.len(),
        failures.first()
    );
    let results = results.lock().unwrap();
    assert_eq!(results.len() as u64, sent);
    assert!(sent >= 2000, "{sent}");

    // Every request reached the upstream exactly once.
    let stats = get(echo.addr, "/stats").json();
    assert_eq!(stats["received"], sent, "{stats}");
    assert_eq!(stats["distinct"], sent, "{stats}");
    assert_eq!(stats["duplicates"], 0, "{stats}");

    // Every token verifies with the key its kid names; before the rotation all are k1, after
    // the old process has gone all are k2.
    let mut counts = std::collections::BTreeMap::new();
    for (token, marker) in results.iter() {
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
    eprintln!("sent {sent}, re-sent after idle close {resent}, by (era, kid): {counts:?}");

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
fn a_request_in_flight_at_sigterm_still_gets_its_answer() {
    let (echo, proxy) = start_stack(&[]);
    let addr = proxy.addr;
    let slow =
        std::thread::spawn(move || post(addr, "/?delay_ms=1500", &[("x-user", "slow")], b"{}"));
    wait_until("request in flight", Duration::from_secs(5), || {
        status_json(&proxy)["in_flight"] == 1
    });
    let t0 = Instant::now();
    signal(proxy.proc.child.id(), "TERM");
    let r = slow.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["x_my_jwt"]["valid"], true);
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
