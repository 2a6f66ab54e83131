//! The image and the compose stack, run for real: `scripts/container.sh` (Docker where its
//! engine answers, else podman and podman-compose, with stand-in base images where none can be
//! pulled) builds the image from the Dockerfile and brings `docker-compose.yml` up on free host
//! ports. Then, with clients that never re-send a request:
//! - both health checks pass; a POST through the published port gets a token that verifies with
//!   the compose secret and that the upstream received; the status port is on the host's
//!   loopback only;
//! - the kid and user source change the two ways the README gives: a variable under
//!   `environment:` (a new container), and a mounted configuration file plus a HUP (an upgrade
//!   in place, under load: nothing fails);
//! - `scripts/container.sh down` (what `make down` runs) under load: every request sent is
//!   answered, the proxy exits within `stop_grace_period`, and nothing of the stack is left;
//! - a key file only root may read: the proxy refuses to start and its log says what to do.
//!
//! Skipped, saying so, only where neither a Docker engine nor podman is present (`make test`
//! installs podman where there is no Docker engine).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

const CLIENTS: usize = 6;

fn script() -> PathBuf {
    manifest_dir().join("scripts/container.sh")
}

/// `scripts/container.sh ARGS` in `dir`, with the test venv's podman-compose.
fn container_sh(dir: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(script());
    cmd.args(args).current_dir(dir);
    if let Some(venv) = std::env::var_os("JWT_PROXY_PYTHON").map(PathBuf::from) {
        cmd.env(
            "PODMAN_COMPOSE",
            venv.parent().unwrap().join("podman-compose"),
        );
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// One compose project on its own host ports, in a directory of its own holding a copy of
/// `docker-compose.yml` and `conf/` (and an override file when one is written), as a user's
/// checkout would.
struct Stack {
    engine: String,
    project: String,
    dir: PathBuf,
    env: Vec<(&'static str, String)>,
    http: SocketAddr,
    status: SocketAddr,
}

impl Stack {
    fn new(engine: &str, name: &str, env: &[(&'static str, String)]) -> Stack {
        let (http, status) = (free_port(), free_port());
        let mut all = vec![
            ("HTTP_PORT", http.to_string()),
            ("STATUS_PORT", status.to_string()),
        ];
        all.extend_from_slice(env);
        let dir = scratch_dir(&format!("stack-{name}"));
        std::fs::copy(
            manifest_dir().join("docker-compose.yml"),
            dir.join("docker-compose.yml"),
        )
        .unwrap();
        std::fs::create_dir_all(dir.join("conf")).unwrap();
        for f in std::fs::read_dir(manifest_dir().join("conf")).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), dir.join("conf").join(f.file_name())).unwrap();
        }
        Stack {
            engine: engine.to_string(),
            project: format!("jwtp-{name}-{}", std::process::id()),
            dir,
            env: all,
            http: ([127, 0, 0, 1], http).into(),
            status: ([127, 0, 0, 1], status).into(),
        }
    }

    /// `scripts/container.sh VERB -p PROJECT ARGS` in the stack's directory.
    fn run(&self, verb: &str, args: &[&str]) -> Output {
        let mut all = vec![verb, "-p", &self.project];
        all.extend_from_slice(args);
        container_sh(&self.dir, &all, &self.env)
    }

    /// `docker-compose.override.yml` beside the compose file (both engines read it with it).
    fn set_override(&self, yaml: &str) {
        write(&self.dir.join("docker-compose.override.yml"), yaml);
    }

    fn compose(&self, args: &[&str]) -> Output {
        let out = self.run("compose", args);
        assert_success(&out, &format!("compose {args:?}"));
        out
    }

    fn engine(&self, args: &[&str]) -> Output {
        Command::new(&self.engine).args(args).output().unwrap()
    }

    /// The IDs of a service's containers, running ones or (`-a`) all (compose labels them the
    /// same way on both engines).
    fn service_ids(&self, service: &str, which: &str) -> String {
        let out = self.engine(&[
            "ps",
            which,
            "--filter",
            &format!("label=com.docker.compose.project={}", self.project),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The running container of a service.
    fn container(&self, service: &str) -> String {
        let ids = self.service_ids(service, "-q");
        assert!(
            !ids.is_empty() && !ids.contains('\n'),
            "one running {service} container, got {ids:?}"
        );
        ids
    }

    /// Every container of the project, running or not.
    fn all_containers(&self) -> String {
        let out = self.engine(&[
            "ps",
            "-a",
            "--format",
            "{{.Names}} {{.Status}}",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.project),
        ]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The service's compose health check passes. podman without systemd schedules no checks,
    /// so there the check is run on demand (`podman healthcheck run`); Docker runs its own.
    fn healthy(&self, service: &str) -> bool {
        let id = self.container(service);
        if self.engine == "podman" {
            self.engine(&["healthcheck", "run", &id]).status.success()
        } else {
            let out = self.engine(&["inspect", "-f", "{{.State.Health.Status}}", &id]);
            String::from_utf8_lossy(&out.stdout).trim() == "healthy"
        }
    }

    fn wait_healthy(&self) {
        let t0 = Instant::now();
        for service in ["upstream", "proxy"] {
            while !self.healthy(service) {
                assert!(
                    t0.elapsed() < Duration::from_secs(90),
                    "{service} not healthy after 90 s; logs:\n{}",
                    self.logs(service)
                );
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }

    /// Wait for the supervisor's upgrade record to read `want`.
    fn wait_upgrades(&self, pid_file: &str, want: &str) {
        let t0 = Instant::now();
        while self.upgrades(pid_file) != want {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "upgrades {:?}, not {want:?}\n{}",
                self.upgrades(pid_file),
                self.logs("proxy")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The mounted configuration (in `local`) with a new kid, then a HUP; wait for the upgrade
    /// record to read `want`.
    fn new_kid_and_hup(&self, local: &Path, kid: &str, pid_file: &str, want: &str) {
        write(
            &local.join("jwt-proxy.yaml"),
            &config_with(kid, "header:x-client"),
        );
        self.compose(&["kill", "-s", "HUP", "proxy"]);
        self.wait_upgrades(pid_file, want);
    }

    /// How often the engine has restarted the service's container.
    fn restarts(&self, service: &str) -> u64 {
        let id = self.service_ids(service, "-aq");
        let out = self.engine(&["inspect", "--format", "{{.RestartCount}}", &id]);
        let count = String::from_utf8_lossy(&out.stdout).trim().to_string();
        count
            .parse()
            .unwrap_or_else(|_| panic!("restart count {count:?} of {id:?}"))
    }

    /// The size at which the engine cuts the service's log.
    fn log_limit(&self, service: &str) -> String {
        let format = if self.engine == "podman" {
            "{{.HostConfig.LogConfig.Size}}"
        } else {
            "{{index .HostConfig.LogConfig.Config \"max-size\"}}"
        };
        let out = self.engine(&["inspect", "--format", format, &self.container(service)]);
        let size = String::from_utf8_lossy(&out.stdout).trim().to_string();
        // Docker keeps compose's spelling.
        if size == "10m" {
            "10MB".into()
        } else {
            size
        }
    }

    fn logs(&self, service: &str) -> String {
        text(&self.run("compose", &["logs", service]))
    }

    fn exec(&self, service: &str, cmd: &[&str]) -> String {
        let id = self.container(service);
        let mut args = vec!["exec", id.as_str()];
        args.extend_from_slice(cmd);
        let out = self.engine(&args);
        assert_success(&out, &format!("exec {cmd:?}"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The proxy's pid file in its container, as `conf` gives it.
    fn pid_file(&self, conf: &str) -> String {
        let paths = self.exec("proxy", &["jwt-proxy", "--print-paths", "-c", conf]);
        let pid_file = paths.lines().find_map(|l| l.strip_prefix("pid_file="));
        pid_file.expect("pid_file in --print-paths").to_string()
    }

    /// The supervisor's upgrade record in the proxy container: "STARTED FINISHED RESULT".
    fn upgrades(&self, pid_file: &str) -> String {
        // No file yet: no upgrade has started (as scripts/reload.sh reads it).
        let read = format!("cat '{pid_file}.upgrades' 2>/dev/null || echo 0 0 none");
        self.exec("proxy", &["sh", "-c", &read]).trim().to_string()
    }
}

impl Drop for Stack {
    /// Leave nothing behind, also when the test failed half-way.
    fn drop(&mut self) {
        // A container being restarted by its policy can escape one removal: try a few times.
        let _ = self.run("compose", &["down", "-t", "0"]);
        for _ in 0..10 {
            let left = self.all_containers();
            if left.is_empty() {
                break;
            }
            for name in left.lines().filter_map(|l| l.split_whitespace().next()) {
                let _ = self.engine(&["rm", "-f", "-t", "0", name]);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

fn demo_key() -> String {
    let k = std::fs::read_to_string(manifest_dir().join("conf/demo-secret.txt")).unwrap();
    k.trim_end_matches('\n').to_string()
}

fn status_token() -> String {
    let t = std::fs::read_to_string(manifest_dir().join("conf/demo-status-token.txt")).unwrap();
    t.trim().to_string()
}

fn kid(token: &str) -> Option<String> {
    jsonwebtoken::decode_header(token).unwrap().kid
}

/// One POST with both identity headers: (kid, payload.user) of its token, checked with the
/// independent verifier and against what the upstream received.
fn identity_of(r: &Response, key: &str) -> (Option<String>, String) {
    assert_eq!(r.status, 200, "{}", r.text());
    let claims = verify_with_jsonwebtoken(r.token(), key.as_bytes());
    let body = r.json();
    assert_eq!(
        body["x_my_jwt"]["valid"], true,
        "the upstream verified it: {body}"
    );
    assert_eq!(body["x_my_jwt"]["count"], 1, "one token upstream: {body}");
    let upstream_got = body["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0] == "x-my-jwt");
    assert_eq!(
        upstream_got.unwrap()[1],
        r.token(),
        "the upstream got this token"
    );
    (
        kid(r.token()),
        claims["payload"]["user"].as_str().unwrap().to_string(),
    )
}

/// A 200 whose token verifies with `key` (independently), and that alone reached the upstream
/// (which verifies with the key it read at its start, so not after a rotation): its kid.
fn signed_with(r: &Response, key: &str) -> Option<String> {
    assert_eq!(r.status, 200, "{}", r.text());
    verify_with_jsonwebtoken(r.token(), key.as_bytes());
    assert_eq!(r.json()["x_my_jwt"]["count"], 1);
    kid(r.token())
}

/// A key file as the image's user must have it: owner uid 10001, mode 0400.
fn write_key(path: &Path, key: &str) {
    use std::os::unix::fs::PermissionsExt;
    // In place when it exists (the same file, as a bind mount needs).
    std::fs::write(path, format!("{key}\n")).unwrap();
    std::os::unix::fs::chown(path, Some(10001), Some(10001)).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o400)).unwrap();
}

fn post_as(addr: SocketAddr, user: &str, client: &str) -> Response {
    post(addr, "/", &[("x-user", user), ("x-client", client)], b"{}")
}

#[derive(Default)]
struct Tally {
    sent: u64,
    answered: Vec<Response>,
    refused: u64,
    failures: Vec<String>,
}

/// Keep-alive clients that never re-send, each until `stop` is set, or until a new connection
/// is refused once `going_away` is set (the stack is being removed: such a request was never
/// sent). A refused connection before that is a failure.
fn load(
    addr: SocketAddr,
    stop: &Arc<AtomicBool>,
    going_away: &Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<Tally>> {
    (0..CLIENTS)
        .map(|c| {
            let stop = stop.clone();
            let going_away = going_away.clone();
            std::thread::spawn(move || {
                let mut client = KeepAlive::new(addr);
                let mut t = Tally::default();
                let (user, other) = (format!("alice-{c}"), format!("bob-{c}"));
                while !stop.load(Ordering::Relaxed) {
                    let r = client.post("/", &[("x-user", &user), ("x-client", &other)], b"{}");
                    match r {
                        Err(e)
                            if going_away.load(Ordering::Relaxed) && e.starts_with("connect:") =>
                        {
                            t.refused += 1;
                            break;
                        }
                        Err(e) => t.failures.push(format!("request {}: {e}", t.sent)),
                        Ok(r) if r.status == 200 => t.answered.push(r),
                        Ok(r) => t.failures.push(format!(
                            "request {}: {} {}",
                            t.sent,
                            r.status,
                            r.text()
                        )),
                    }
                    t.sent += 1;
                    std::thread::sleep(Duration::from_millis(2));
                }
                t
            })
        })
        .collect()
}

/// The clients' results; every request sent must have had its 200.
fn collect(handles: Vec<std::thread::JoinHandle<Tally>>, during: &str) -> Tally {
    let mut all = Tally::default();
    for h in handles {
        let t = h.join().unwrap();
        all.sent += t.sent;
        all.refused += t.refused;
        all.answered.extend(t.answered);
        all.failures.extend(t.failures);
    }
    assert!(
        all.failures.is_empty(),
        "{} of {} requests failed during {during}: {:?}",
        all.failures.len(),
        all.sent,
        &all.failures[..all.failures.len().min(10)]
    );
    assert_eq!(all.answered.len() as u64, all.sent);
    all
}

/// The image's configuration with our kid (none: "-") and user source under `jwt_proxy:`.
fn config_with(kid: &str, user_source: &str) -> String {
    // The stock file sets nothing under `jwt_proxy:` (its lines show the defaults, commented
    // out): what follows it is ours.
    let base = std::fs::read_to_string(manifest_dir().join("conf/jwt-proxy.yaml")).unwrap();
    assert!(base.contains("\n  # user_source: header:x-user"));
    let base = format!("{base}\n  user_source: {user_source}\n");
    if kid == "-" {
        return base;
    }
    format!("{base}  jwt_kid: {kid}\n")
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[test]
fn the_compose_stack_serves_upgrades_reconfigures_and_stops_without_losing_a_request() {
    let engine = match Command::new(script()).arg("engine").output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        _ => {
            eprintln!("SKIPPED: neither a Docker engine nor podman here (`make test-deps` installs podman)");
            return;
        }
    };
    let t0 = Instant::now();
    for step in ["setup", "build"] {
        let out = container_sh(&manifest_dir(), &[step], &[]);
        assert_success(&out, &format!("scripts/container.sh {step}"));
    }
    eprintln!("{engine}: set up and built in {:.0?}", t0.elapsed());
    let key = demo_key();
    let dir = scratch_dir("container");

    // 1. The stack as `make up` brings it.
    let mut stack = Stack::new(&engine, "main", &[]);
    let t_up = Instant::now();
    stack.compose(&["up", "-d"]);
    stack.wait_healthy();
    eprintln!("up and healthy in {:.1?}", t_up.elapsed());
    let r = post_as(stack.http, "alice", "bob");
    assert_eq!(identity_of(&r, &key), (None, "alice".to_string()));
    for service in ["proxy", "upstream"] {
        assert_eq!(
            stack.log_limit(service),
            "10MB",
            "{service}'s log is bounded"
        );
    }
    let port = text(&stack.engine(&["port", &stack.container("proxy"), "8081"]));
    assert_eq!(
        port.trim(),
        format!("127.0.0.1:{}", stack.status.port()),
        "status published on the host's loopback only"
    );
    assert_eq!(get(stack.status, "/status.json").status, 401);
    let auth = format!("Bearer {}", status_token());
    let s = raw(
        stack.status,
        format!("GET /status.json HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(s.status, 200, "{}", s.text());
    assert!(s.json()["requests_total"].as_u64().unwrap() >= 1);

    // 2. Variables under the proxy's `environment:`, in an override file: a new container.
    stack.set_override(
        "services:\n  proxy:\n    environment:\n      JWT_KID: k-env\n      USER_SOURCE: header:x-client\n",
    );
    stack.compose(&["up", "-d"]);
    stack.wait_healthy();
    let r = post_as(stack.http, "alice", "bob");
    assert_eq!(identity_of(&r, &key), (Some("k-env".into()), "bob".into()));

    // 3. A mounted configuration directory, changed, then a HUP under load.
    let local = stack.dir.join("my-conf");
    std::fs::create_dir_all(&local).unwrap();
    let conf = "/etc/jwt-proxy/local/jwt-proxy.yaml";
    write(
        &local.join("jwt-proxy.yaml"),
        &config_with("-", "header:x-user"),
    );
    stack.set_override(&format!(
        "services:\n  proxy:\n    environment:\n      JWT_PROXY_CONF: {conf}\n    volumes:\n      - ./my-conf:/etc/jwt-proxy/local:ro\n"
    ));
    stack.compose(&["up", "-d"]);
    stack.wait_healthy();
    let r = post_as(stack.http, "alice", "bob");
    assert_eq!(identity_of(&r, &key), (None, "alice".into()));
    let pid_file = stack.pid_file(conf);
    assert_eq!(stack.upgrades(&pid_file), "0 0 none");

    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(stack.http, &stop, &Arc::new(AtomicBool::new(false)));
    std::thread::sleep(Duration::from_secs(1));
    write(
        &local.join("jwt-proxy.yaml"),
        &config_with("k-file-2", "header:x-client"),
    );
    stack.compose(&["kill", "-s", "HUP", "proxy"]);
    let t_hup = Instant::now();
    stack.wait_upgrades(&pid_file, "1 1 ok");
    eprintln!("HUP upgrade done in {:.1?}", t_hup.elapsed());
    std::thread::sleep(Duration::from_secs(1));
    let after_upgrade = Instant::now();
    let r = post_as(stack.http, "alice", "bob");
    assert_eq!(
        identity_of(&r, &key),
        (Some("k-file-2".into()), "bob".into())
    );
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let hup = collect(clients, "the HUP upgrade");
    let (mut old, mut new) = (0, 0);
    for r in &hup.answered {
        let (kid, user) = identity_of(r, &key);
        match kid.as_deref() {
            None => {
                assert!(user.starts_with("alice-"), "old config, {user}");
                old += 1
            }
            Some("k-file-2") => {
                assert!(user.starts_with("bob-"), "new config, {user}");
                new += 1
            }
            other => panic!("kid {other:?}"),
        }
    }
    assert!(old > 0 && new > 0, "old {old}, new {new}");
    eprintln!(
        "HUP under load: {} sent, {} answered, 0 failed ({old} under the old config, {new} under the new); load went on {:.1?} after the upgrade",
        hup.sent,
        hup.answered.len(),
        after_upgrade.elapsed()
    );

    // 3b. A key file of one's own: a new JWT_SECRET_PATH and `up -d` give new containers.
    let keys = stack.dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let key_file = keys.join("key");
    let key2 = "container-test-key-2:0123456789abcdef0123456789abcdef0123456789abcdef0123";
    write_key(&key_file, key2);
    stack
        .env
        .push(("JWT_SECRET_PATH", key_file.display().to_string()));
    let before = stack.container("proxy");
    stack.compose(&["up", "-d"]);
    stack.wait_healthy();
    assert_ne!(stack.container("proxy"), before, "a new proxy container");
    let r = post_as(stack.http, "alice", "bob");
    assert_eq!(
        identity_of(&r, key2),
        (Some("k-file-2".into()), "bob".into())
    );
    let s = raw(
        stack.status,
        format!("GET /status.json HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(s.json()["demo_key"], false, "{}", s.text());

    // 3c. Key rotation the way SECURITY.md gives it for a container: the new key written into the
    // same file, the new kid in the mounted configuration, a HUP.
    let key3 = "container-test-key-3:0123456789abcdef0123456789abcdef0123456789abcdef0123";
    write_key(&key_file, key3);
    stack.new_kid_and_hup(&local, "k-file-3", &pid_file, "1 1 ok");
    let r = post_as(stack.http, "alice", "bob");
    assert_eq!(signed_with(&r, key3), Some("k-file-3".into()));

    // 3d. A rotation by renaming a new file over the key, the old one kept as a backup: the
    // mount still shows the old file (now the backup), so the new kid would come with the old
    // key. The supervisor refuses the upgrade (the old process serves on) and says why.
    let key4 = "container-test-key-4:0123456789abcdef0123456789abcdef0123456789abcdef0123";
    let backup = keys.join("key.old");
    std::fs::rename(&key_file, &backup).unwrap();
    write_key(&keys.join("key.new"), key4);
    std::fs::rename(keys.join("key.new"), &key_file).unwrap();
    let refused = |kid: &str, want: &str, why: &str| {
        stack.new_kid_and_hup(&local, kid, &pid_file, want);
        let r = post_as(stack.http, "alice", "bob");
        assert_eq!(signed_with(&r, key3), Some("k-file-3".into()), "served on");
        let logs = stack.logs("proxy");
        assert!(logs.contains(why), "{why:?} in {logs}");
    };
    refused(
        "k-file-4",
        "2 2 failed",
        "the kid changes (k-file-3 to k-file-4) but the signing key does not",
    );
    // 3e. The backup deleted too: the file the mount shows is linked nowhere; refused as well.
    std::fs::remove_file(&backup).unwrap();
    refused(
        "k-file-5",
        "3 3 failed",
        "replaced or deleted after it was mounted",
    );

    // 4. `make down` under load.
    let stop = Arc::new(AtomicBool::new(false));
    let going_away = Arc::new(AtomicBool::new(false));
    let clients = load(stack.http, &stop, &going_away);
    // And one request the upstream takes 3 s to answer, in flight when the stop comes.
    let http = stack.http;
    let slow =
        std::thread::spawn(move || post(http, "/?delay_ms=3000", &[("x-client", "slow")], b"{}"));
    std::thread::sleep(Duration::from_secs(2));
    let t_down = Instant::now();
    going_away.store(true, Ordering::Relaxed);
    let out = stack.run("down", &[]);
    let took = t_down.elapsed();
    assert_success(&out, "scripts/container.sh down");
    let slow = slow.join().unwrap();
    assert_eq!(
        signed_with(&slow, key3),
        Some("k-file-3".into()),
        "the slow request was answered"
    );
    stop.store(true, Ordering::Relaxed);
    let down = collect(clients, "`down`");
    assert_eq!(
        down.refused, CLIENTS as u64,
        "every client ran until refused"
    );
    assert!(!text(&out).contains("SIGKILL"), "{}", text(&out));
    assert!(
        took < Duration::from_secs(45),
        "down took {took:?}, past stop_grace_period"
    );
    assert_eq!(stack.all_containers(), "", "nothing of the stack left");
    eprintln!(
        "down under load: {} sent, all answered, in {took:.1?}",
        down.sent
    );

    // 5. A key file only root may read (a compose secret keeps the host file's owner and mode).
    let root_key = dir.join("root-key.txt");
    write(&root_key, &format!("{key}\n"));
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&root_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let locked = Stack::new(
        &engine,
        "locked",
        &[("JWT_SECRET_PATH", root_key.display().to_string())],
    );
    locked.compose(&["up", "-d"]);
    let t_locked = Instant::now();
    let hint = "must be able to read the file (owner uid";
    while !locked.logs("proxy").contains(hint) {
        assert!(
            t_locked.elapsed() < Duration::from_secs(60),
            "no permission hint in the proxy's log:\n{}",
            locked.logs("proxy")
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let logs = locked.logs("proxy");
    assert!(
        logs.contains("chown 10001 FILE && chmod 0400 FILE"),
        "{logs}"
    );
    assert!(
        std::net::TcpStream::connect(locked.http)
            .and_then(|mut s| {
                use std::io::{Read, Write};
                s.set_read_timeout(Some(Duration::from_secs(5)))?;
                s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")?;
                let mut b = [0u8; 1];
                s.read(&mut b)
            })
            .map_or(true, |n| n == 0),
        "nothing may answer without the key"
    );
    // Refused, each service waits 10 s (START_ERROR_PAUSE_SECS) before it exits: the engine's
    // restart policy (podman's has no back-off) must not restart it in a tight loop.
    while t_locked.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(500));
    }
    for service in ["proxy", "upstream"] {
        let restarts = locked.restarts(service);
        assert!(
            restarts <= 2,
            "{service} restarted {restarts} times in 15 s"
        );
    }
    let out = locked.run("down", &[]);
    assert_success(&out, "scripts/container.sh down");
    assert_eq!(locked.all_containers(), "", "nothing of the stack left");
}
