//! `scripts/supervise.sh` and `scripts/reload.sh` (what `make run`, `make reload` and the
//! container use): upgrades one at a time, every jwt-proxy accounted for, stops that leave
//! nothing running.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// The tests here time upgrades and count processes: run them one at a time, so that they do
/// not starve each other's processes on a 2-core machine.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// A 64-byte text key (the HS512 minimum).
const KEY: &str = "supervisor-test-key-0123456789abcdef0123456789abcdef0123456789ab";

struct Setup {
    dir: PathBuf,
    conf: PathBuf,
    addr: SocketAddr,
    status_port: u16,
}

impl Setup {
    /// A config with short drain figures: upstream timeout 2 s, so a grace period of 3 s.
    fn new(name: &str, upstream: SocketAddr) -> Setup {
        let dir = scratch_dir(name);
        let port = free_port();
        let status_port = free_port();
        std::fs::write(dir.join("key"), format!("{KEY}\n")).unwrap();
        let setup = Setup {
            conf: dir.join("jwt-proxy.yaml"),
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
            status_port,
            dir,
        };
        setup.write_conf(&format!("http://{upstream}/protected"));
        setup
    }

    fn write_conf(&self, upstream_url: &str) {
        let yaml = format!(
            "version: 1\nthreads: 2\ngrace_period_seconds: 3\ngraceful_shutdown_timeout_seconds: 1\n\
             pid_file: {dir}/jwt-proxy.pid\nupgrade_sock: {dir}/upgrade.sock\n\
             jwt_proxy:\n  listen_addr: 127.0.0.1\n  http_port: {port}\n  status_port: {status}\n  \
             upstream_url: {upstream_url}\n  upstream_timeout_ms: 2000\n  drain_idle_secs: 1\n  \
             jwt_secret_file: {dir}/key\n  access_log: \"off\"\n",
            dir = self.dir.display(),
            port = self.addr.port(),
            status = self.status_port,
        );
        std::fs::write(&self.conf, yaml).unwrap();
    }

    fn proxy_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.join("jwt-proxy.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The supervisor's upgrade counts: (started, finished, result of the last finished).
    fn upgrades(&self) -> Option<(u32, u32, String)> {
        let text = std::fs::read_to_string(self.dir.join("jwt-proxy.pid.upgrades")).ok()?;
        let mut f = text.split_whitespace();
        Some((
            f.next()?.parse().ok()?,
            f.next()?.parse().ok()?,
            f.next()?.to_string(),
        ))
    }

    /// Every live jwt-proxy server started with this setup's config file.
    fn running(&self) -> Vec<u32> {
        self.servers().into_iter().map(|p| p.pid).collect()
    }

    fn servers(&self) -> Vec<ProcInfo> {
        let conf = self.conf.to_string_lossy().into_owned();
        processes()
            .into_iter()
            .filter(|p| p.is_server() && p.cmdline.contains(&conf))
            .collect()
    }
}

/// Kills whatever a failed test left running.
impl Drop for Setup {
    fn drop(&mut self) {
        for pid in self.running() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

struct ProcInfo {
    pid: u32,
    comm: String,
    state: char,
    ppid: u32,
    /// The arguments, separated by spaces.
    cmdline: String,
}

impl ProcInfo {
    /// A live (not zombie) jwt-proxy server: not a `-t` or `--print-paths` run of the
    /// supervisor's.
    fn is_server(&self) -> bool {
        self.comm == "jwt-proxy"
            && self.state != 'Z'
            // A process that is exiting has already let go of its arguments: an empty command
            // line is a `-t` or `--print-paths` run on its way out, not a server.
            && !self.cmdline.is_empty()
            && !self
                .cmdline
                .split(' ')
                .any(|a| a == "-t" || a == "--print-paths")
    }
}

/// The processes in /proc (those that vanish while read are skipped).
fn processes() -> Vec<ProcInfo> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let mut rest = stat[close + 1..].split_whitespace();
        let state = rest.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = rest.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        let cmdline = std::fs::read(entry.path().join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .unwrap_or_default();
        out.push(ProcInfo {
            pid,
            comm: stat[open + 1..close].to_string(),
            state,
            ppid,
            cmdline,
        });
    }
    out
}

/// The live jwt-proxy server children of `parent`.
fn jwt_children(parent: u32) -> Vec<u32> {
    processes()
        .into_iter()
        .filter(|p| p.ppid == parent && p.is_server())
        .map(|p| p.pid)
        .collect()
}

fn supervise(setup: &Setup, bin: &Path) -> Proc {
    let out = setup.dir.join("supervise.out");
    let mut cmd = Command::new(manifest_dir().join("scripts/supervise.sh"));
    // Only the config file speaks (`make test` exports HTTP_PORT, for one).
    for (k, _) in jwt_proxy::config::SETTINGS {
        cmd.env_remove(k);
    }
    let child = cmd
        .env("JWT_PROXY_BIN", bin)
        .env("JWT_PROXY_CONF", &setup.conf)
        .env("SUPERVISOR_PID_FILE", setup.dir.join("supervisor.pid"))
        .env("RUST_LOG", "warn")
        .current_dir(manifest_dir())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(setup.dir.join("supervise.err")).unwrap())
        .spawn()
        .unwrap();
    let sup = Proc {
        child,
        stdout_path: out,
    };
    wait_for_port(setup.addr);
    wait_until("the first pid file", Duration::from_secs(10), || {
        setup.proxy_pid().is_some()
    });
    sup
}

/// TERM to the supervisor, and wait for it to exit.
fn stop_supervisor(sup: &mut Proc, limit: Duration) {
    signal(sup.child.id(), "TERM");
    wait_until("supervisor exit", limit, || {
        sup.child.try_wait().unwrap().is_some()
    });
}

fn supervisor_log(setup: &Setup) -> String {
    std::fs::read_to_string(setup.dir.join("supervise.err")).unwrap_or_default()
}

#[test]
fn ten_hups_in_a_second_under_keep_alive_load_make_two_serial_upgrades() {
    let _serial = serial();
    let echo = start_tracking_echo();
    let setup = Setup::new("sup-hups", echo.addr);
    let mut sup = supervise(&setup, Path::new(env!("CARGO_BIN_EXE_jwt-proxy")));
    let sup_pid = sup.child.id();
    let first = setup.proxy_pid().unwrap();

    // Watch the supervisor's jwt-proxy children the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<(usize, Vec<u32>)>> = Arc::default(); // (most at once, every pid)
    let watcher = {
        let (stop, seen) = (stop.clone(), seen.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let now = jwt_children(sup_pid);
                let mut s = seen.lock().unwrap();
                s.0 = s.0.max(now.len());
                for p in now {
                    if !s.1.contains(&p) {
                        s.1.push(p);
                    }
                }
                drop(s);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (stop, failures, addr) = (stop.clone(), failures.clone(), setup.addr);
            std::thread::spawn(move || {
                let mut client = KeepAlive::new(addr);
                let mut sent = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let seq = format!("c{c}-{sent}");
                    match client.post("/", &[("x-user", "load"), ("x-test-seq", &seq)], b"{}") {
                        Ok(r) if r.status == 200 => {}
                        Ok(r) => failures.lock().unwrap().push(format!(
                            "{seq}: status {} {}",
                            r.status,
                            r.text()
                        )),
                        Err(e) => failures.lock().unwrap().push(format!("{seq}: {e}")),
                    }
                    sent += 1;
                }
                sent
            })
        })
        .collect();

    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..10 {
        signal(sup_pid, "HUP");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The first HUP starts an upgrade; the other nine queue exactly one more. (No panic on
    // a timeout here: the counts below say what went wrong.)
    let two_done = || {
        setup
            .upgrades()
            .is_some_and(|(_, finished, _)| finished >= 2)
    };
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(30) && !two_done() {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let sent: u64 = clients.into_iter().map(|c| c.join().unwrap()).sum();
    watcher.join().unwrap();
    let log = supervisor_log(&setup);

    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed, first: {:?}\n{log}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let stats = get(echo.addr, "/stats").json();
    assert_eq!(stats["received"], sent, "{stats}");
    assert_eq!(stats["duplicates"], 0, "{stats}");
    assert!(sent > 100, "{sent}");

    assert_eq!(
        setup.upgrades(),
        Some((2, 2, "ok".to_string())),
        "ten HUPs, two upgrades\n{log}"
    );
    let (most_at_once, all_pids) = seen.lock().unwrap().clone();
    assert_eq!(
        most_at_once, 2,
        "one upgrade at a time: {all_pids:?}\n{log}"
    );
    assert_eq!(all_pids.len(), 3, "{all_pids:?}\n{log}");
    assert_eq!(all_pids[0], first);
    // Exactly one jwt-proxy left, the one in the pid file; the supervisor lives on.
    let last = setup.proxy_pid().unwrap();
    assert_eq!(jwt_children(sup_pid), [last], "{log}");
    assert_eq!(setup.running(), [last]);
    assert!(sup.child.try_wait().unwrap().is_none(), "supervisor alive");
    assert_eq!(post(setup.addr, "/", &[], b"{}").status, 200);

    // TERM: every jwt-proxy ends, then the supervisor, with the proxy's status.
    signal(sup_pid, "TERM");
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = sup.child.try_wait().unwrap() {
            break s;
        }
        assert!(t0.elapsed() < Duration::from_secs(15), "supervisor exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(setup.running().is_empty(), "{:?}", setup.running());
    assert_eq!(status.code(), Some(0), "{}", supervisor_log(&setup));
}

#[test]
fn term_during_an_upgrade_leaves_no_jwt_proxy_running() {
    let _serial = serial();
    let echo = start_echo(&["--no-verify"]);
    // TERM while the new process waits for the hand-over, and while the old one drains.
    for moment in ["new process started", "old process draining"] {
        let setup = Setup::new("sup-term", echo.addr);
        let mut sup = supervise(&setup, Path::new(env!("CARGO_BIN_EXE_jwt-proxy")));
        let sup_pid = sup.child.id();
        let old = setup.proxy_pid().unwrap();
        signal(sup_pid, "HUP");
        wait_until(moment, Duration::from_secs(10), || match moment {
            "new process started" => setup
                .servers()
                .iter()
                .any(|p| p.ppid == sup_pid && p.cmdline.contains(" -u ")),
            _ => setup.proxy_pid().is_some_and(|p| p != old),
        });
        let pids = setup.running();
        assert_eq!(pids.len(), 2, "{moment}: {pids:?}");
        signal(sup_pid, "TERM");
        if moment == "new process started" {
            // TERM reaches the new process too: it does not wait out its hand-over (~6 s).
            let new = *pids.iter().find(|p| **p != old).unwrap();
            wait_until("the new process's exit", Duration::from_secs(2), || {
                !setup.running().contains(&new)
            });
        }
        // More signals while it stops (HUP, another TERM): no new upgrade, and the supervisor
        // still waits for every jwt-proxy to exit.
        let t0 = Instant::now();
        let mut n = 0;
        while sup.child.try_wait().unwrap().is_none() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "{moment}: supervisor exit\n{}",
                supervisor_log(&setup)
            );
            let now = setup.running();
            assert!(
                now.iter().all(|p| pids.contains(p)),
                "{moment}: started {now:?} after TERM (had {pids:?})"
            );
            signal(sup_pid, if n % 5 == 4 { "TERM" } else { "HUP" });
            n += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        // Nothing outlives the supervisor: it waited for each one.
        assert!(
            setup.running().is_empty(),
            "{moment}: still running {:?}\n{}",
            setup.running(),
            supervisor_log(&setup)
        );
        assert!(
            supervisor_log(&setup).contains("stopped by SIGTERM"),
            "{moment}: {}",
            supervisor_log(&setup)
        );
    }
}

/// `scripts/reload.sh` as `make reload` runs it.
fn reload(setup: &Setup, bin: &Path) -> std::process::Output {
    let mut cmd = Command::new(manifest_dir().join("scripts/reload.sh"));
    for (k, _) in jwt_proxy::config::SETTINGS {
        cmd.env_remove(k);
    }
    cmd.env("JWT_PROXY_BIN", bin)
        .env("JWT_PROXY_CONF", &setup.conf)
        .env("SUPERVISOR_PID_FILE", setup.dir.join("supervisor.pid"))
        .current_dir(manifest_dir())
        .output()
        .unwrap()
}

#[test]
fn reload_returns_once_the_upgrade_is_complete_and_fails_when_it_cannot_be() {
    let _serial = serial();
    let echo = start_echo(&["--no-verify"]);
    let setup = Setup::new("sup-reload", echo.addr);
    // The binary behind a wrapper that makes `-u` fail while DIR/fail-upgrade exists: a new
    // process that dies before the hand-over.
    let wrapper = setup.dir.join("jwt-proxy");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nif [ \"$1\" = -u ] && [ -e {dir}/fail-upgrade ]; then exit 1; fi\nexec {bin} \"$@\"\n",
            dir = setup.dir.display(),
            bin = env!("CARGO_BIN_EXE_jwt-proxy"),
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut sup = supervise(&setup, &wrapper);

    // A good reload: when it returns, the new process serves and the old one is gone.
    let old = setup.proxy_pid().unwrap();
    let out = reload(&setup, &wrapper);
    assert_success(&out, "reload.sh");
    let new = setup.proxy_pid().unwrap();
    assert_ne!(new, old);
    assert!(
        !alive(old),
        "the old process has exited when reload returns"
    );
    assert!(alive(new));
    assert_eq!(post(setup.addr, "/", &[], b"{}").status, 200);

    // The new process dies before the hand-over: exit 1, and the old one keeps serving.
    std::fs::write(setup.dir.join("fail-upgrade"), "").unwrap();
    let out = reload(&setup, &wrapper);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("upgrade failed"),
        "{out:?}"
    );
    assert!(
        supervisor_log(&setup).contains(&format!("pid {new} keeps serving")),
        "{}",
        supervisor_log(&setup)
    );
    assert_eq!(setup.proxy_pid(), Some(new));
    assert_eq!(setup.running(), [new]);
    assert_eq!(post(setup.addr, "/", &[], b"{}").status, 200);

    // An invalid new configuration: the supervisor keeps the old process; reload says so.
    std::fs::remove_file(setup.dir.join("fail-upgrade")).unwrap();
    std::fs::write(&setup.conf, "grace_period_second: 3\n").unwrap();
    let out = reload(&setup, &wrapper);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    signal(sup.child.id(), "HUP");
    wait_until("the refused upgrade", Duration::from_secs(10), || {
        setup.upgrades().is_some_and(|(s, f, _)| s == 3 && f == 3)
    });
    assert_eq!(setup.upgrades().unwrap().2, "failed");
    assert!(supervisor_log(&setup).contains("the new configuration is invalid"));
    assert_eq!(setup.running(), [new]);
    assert_eq!(post(setup.addr, "/", &[], b"{}").status, 200);

    stop_supervisor(&mut sup, Duration::from_secs(15));
    assert!(setup.running().is_empty());
}

#[test]
fn reload_works_after_the_supervisor_was_restarted() {
    let _serial = serial();
    let echo = start_echo(&[]);
    let setup = Setup::new("sup-restart", echo.addr);
    let bin = Path::new(env!("CARGO_BIN_EXE_jwt-proxy"));
    let mut sup = supervise(&setup, bin);
    assert!(reload(&setup, bin).status.success());
    assert_eq!(setup.upgrades().unwrap(), (1, 1, "ok".to_string()));
    stop_supervisor(&mut sup, Duration::from_secs(15));
    // A new supervisor starts counting from 0: the state it finds must not make reload.sh
    // wait for the old count (it used to wait 300 s and report a failure).
    let mut sup = supervise(&setup, bin);
    let t0 = Instant::now();
    let out = reload(&setup, bin);
    assert!(out.status.success(), "{out:?}");
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
    stop_supervisor(&mut sup, Duration::from_secs(15));
}

#[test]
fn a_new_process_dying_after_the_hand_over_is_replaced() {
    let _serial = serial();
    let echo = start_echo(&[]);
    let setup = Setup::new("sup-crash", echo.addr);
    let mut sup = supervise(&setup, Path::new(env!("CARGO_BIN_EXE_jwt-proxy")));
    let first = setup.proxy_pid().unwrap();
    signal(sup.child.id(), "HUP");
    let mut new = 0;
    wait_until("the hand-over", Duration::from_secs(15), || {
        let log = supervisor_log(&setup);
        new = log
            .split("hands over to pid ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        new != 0
    });
    signal(new, "KILL");
    // The old process drains and exits; a fresh one takes the listeners.
    wait_until("a replacement", Duration::from_secs(40), || {
        setup
            .proxy_pid()
            .is_some_and(|p| p != first && p != new && alive(p))
            // The pid file comes just before the listeners accept.
            && std::net::TcpStream::connect(setup.addr).is_ok()
            && post(setup.addr, "/", &[], b"{}").status == 200
    });
    assert!(supervisor_log(&setup).contains("starting a new jwt-proxy"));
    assert_eq!(setup.running().len(), 1, "{:?}", setup.running());
    stop_supervisor(&mut sup, Duration::from_secs(15));
    assert!(setup.running().is_empty());
}

#[test]
fn term_while_a_crashed_proxy_is_being_replaced_stops_everything() {
    let _serial = serial();
    let echo = start_echo(&[]);
    let setup = Setup::new("sup-crash-term", echo.addr);
    let mut sup = supervise(&setup, Path::new(env!("CARGO_BIN_EXE_jwt-proxy")));
    let first = setup.proxy_pid().unwrap();
    signal(first, "KILL");
    wait_until("the restart", Duration::from_secs(10), || {
        supervisor_log(&setup).contains("starting a new jwt-proxy")
    });
    stop_supervisor(&mut sup, Duration::from_secs(30));
    wait_until("no jwt-proxy left", Duration::from_secs(5), || {
        setup.running().is_empty()
    });
}

/// A refused configuration is not retried, and the supervisor's exit waits
/// `START_ERROR_PAUSE_SECS` (a TERM ends the wait), so that a container restart policy without
/// back-off does not restart it in a tight loop. Both ways a start is refused: a configuration
/// that does not load (the short key), and one that loads but cannot listen (the port is taken).
#[test]
fn a_refused_configuration_is_not_retried_and_the_exit_waits_the_pause() {
    let _serial = serial();
    let setup = Setup::new("sup-refused", "127.0.0.1:9".parse().unwrap());
    let start = |pause: &str| {
        let mut cmd = Command::new(manifest_dir().join("scripts/supervise.sh"));
        for (k, _) in jwt_proxy::config::SETTINGS {
            cmd.env_remove(k);
        }
        cmd.env("JWT_PROXY_BIN", env!("CARGO_BIN_EXE_jwt-proxy"))
            .env("JWT_PROXY_CONF", &setup.conf)
            .env("START_ERROR_PAUSE_SECS", pause)
            .current_dir(manifest_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(setup.dir.join("supervise.err")).unwrap())
            .spawn()
            .unwrap()
    };
    let exit = |child: &mut std::process::Child, limit: Duration| {
        let t0 = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return (status.code(), t0.elapsed());
            }
            assert!(
                t0.elapsed() < limit,
                "supervisor still running after {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // The pause, then exit 2; jwt-proxy was started once (it waits 15 s for a taken port).
    let refused_after = |pause: u64, limit: u64| {
        let (code, took) = exit(&mut start(&pause.to_string()), Duration::from_secs(limit));
        let log = supervisor_log(&setup);
        assert_eq!(code, Some(2), "{log}");
        assert!(took >= Duration::from_secs(pause), "exited after {took:?}");
        assert_eq!(log.matches("config error").count(), 1, "tried once: {log}");
        took
    };
    let taken = std::net::TcpListener::bind(setup.addr).unwrap();
    refused_after(2, 30);
    drop(taken);
    std::fs::write(setup.dir.join("key"), "short\n").unwrap();
    refused_after(2, 10);
    assert!(supervisor_log(&setup).contains("exiting in 2 s"));
    // No pause by default (`make run`).
    assert!(refused_after(0, 10) < Duration::from_secs(2));
    // A TERM ends the pause.
    let mut sup = start("60");
    wait_until("the refusal", Duration::from_secs(10), || {
        supervisor_log(&setup).contains("exiting in 60 s")
    });
    signal(sup.id(), "TERM");
    exit(&mut sup, Duration::from_secs(3));
}

/// A HUP whose configuration names a new kid but still reads the same key (a container's bind
/// mount still showing the old key file, or an environment variable shadowing the file's key)
/// is refused: tokens would carry the new kid signed with the old key. With the new key read
/// too, the same change goes through.
#[test]
fn an_upgrade_to_a_new_kid_with_the_old_key_is_refused() {
    let _serial = serial();
    let echo = start_echo(&["--no-verify"]);
    let setup = Setup::new("sup-kid", echo.addr);
    let with_kid = |kid: &str| {
        setup.write_conf(&format!("http://{}/protected", echo.addr));
        let yaml = std::fs::read_to_string(&setup.conf).unwrap();
        std::fs::write(&setup.conf, format!("{yaml}  jwt_kid: {kid}\n")).unwrap();
    };
    with_kid("k1");
    let mut sup = supervise(&setup, Path::new(env!("CARGO_BIN_EXE_jwt-proxy")));
    let kid_of = |r: &Response| jsonwebtoken::decode_header(r.token()).unwrap().kid;
    let hup_until = |want: (u32, u32, &str)| {
        signal(sup.child.id(), "HUP");
        wait_until("the upgrade's outcome", Duration::from_secs(30), || {
            setup.upgrades() == Some((want.0, want.1, want.2.to_string()))
        });
    };

    with_kid("k2");
    hup_until((1, 1, "failed"));
    let log = supervisor_log(&setup);
    assert!(
        log.contains("the kid changes (k1 to k2) but the signing key does not"),
        "{log}"
    );
    let r = post(setup.addr, "/", &[], b"{}");
    assert_eq!(
        kid_of(&r).as_deref(),
        Some("k1"),
        "the old process serves on, with its kid"
    );
    verify_with_jsonwebtoken(r.token(), KEY.as_bytes());

    // The new key in the same file: the upgrade goes through, and tokens carry both new.
    let key2 = "supervisor-test-key-2-0123456789abcdef0123456789abcdef0123456789ab";
    std::fs::write(setup.dir.join("key"), format!("{key2}\n")).unwrap();
    hup_until((2, 2, "ok"));
    let r = post(setup.addr, "/", &[], b"{}");
    assert_eq!(kid_of(&r).as_deref(), Some("k2"));
    verify_with_jsonwebtoken(r.token(), key2.as_bytes());
    stop_supervisor(&mut sup, Duration::from_secs(15));
}
