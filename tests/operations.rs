//! What an operator meets starting and running the real binaries: keys that fail closed, settings
//! that cannot pass silently, the command-line flags, and the README's verification snippets.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::*;
use serde_json::json;

/// A 64-byte text key (the HS512 minimum).
const KEY64: &str = "operations-test-key-0123456789abcdef0123456789abcdef0123456789ab";

fn jwt_proxy_cmd(env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jwt-proxy"));
    cmd.current_dir(manifest_dir()).args(args);
    for (k, _) in jwt_proxy::config::SETTINGS {
        cmd.env_remove(k);
    }
    cmd.env("RUST_LOG", "warn")
        .env("LISTEN_ADDR", "127.0.0.1")
        .env("HTTP_PORT", free_port().to_string())
        .env("STATUS_PORT", free_port().to_string())
        .envs(env.iter().copied());
    cmd
}

/// `jwt-proxy ARGS` with exactly these settings (and free ports); must exit within 10 s.
fn run(env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut child = jwt_proxy_cmd(env, args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("jwt-proxy {args:?} {env:?} did not exit: it started");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Exit 2 with one line on stderr naming `setting`, both for `-t` and for a real start.
fn refused(env: &[(&str, &str)], setting: &str) -> String {
    let mut last = String::new();
    for args in [&["-t"][..], &[]] {
        let out = run(env, args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{env:?} {args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(
            err.starts_with(&format!("jwt-proxy: config error: {setting}: ")),
            "{env:?} {args:?}: {err}"
        );
        last = err;
    }
    last
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    p
}

#[test]
fn version_flags_print_the_version() {
    for flag in ["--version", "-V"] {
        let out = run(&[], &[flag]);
        assert_success(&out, flag);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("jwt-proxy {}\n", env!("CARGO_PKG_VERSION"))
        );
    }
}

#[test]
fn without_a_key_it_refuses_to_start_unless_the_demo_key_is_asked_for() {
    let err = refused(&[], "JWT_SECRET");
    assert!(
        err.contains("JWT_SECRET_FILE") && err.contains("JWT_DEMO_KEY=true"),
        "says how to fix it: {err}"
    );
    refused(&[("JWT_DEMO_KEY", "false")], "JWT_SECRET");
    // Set but empty is unset: still no key.
    refused(&[("JWT_SECRET", ""), ("JWT_SECRET_FILE", "")], "JWT_SECRET");
    // Asked for: `-t` passes and warns on stderr.
    let out = run(&[("JWT_DEMO_KEY", "true")], &["-t"]);
    assert_success(&out, "-t with the demo key");
    assert!(
        stderr(&out).contains("warning: the signing key is the PUBLIC DEMO KEY"),
        "{}",
        stderr(&out)
    );
    // With a key of its own, `-t` says nothing on stderr.
    let out = run(&[("JWT_SECRET", KEY64)], &["-t"]);
    assert_success(&out, "-t with a key");
    assert_eq!(stderr(&out), "");
}

#[test]
fn short_blank_and_unreadable_keys_are_refused() {
    let dir = scratch_dir("ops-keys");
    refused(&[("JWT_SECRET", &KEY64[..63])], "JWT_SECRET");
    let short = write(&dir, "short", &format!("{}\n", &KEY64[..63]));
    refused(
        &[("JWT_SECRET_FILE", short.to_str().unwrap())],
        "JWT_SECRET_FILE",
    );
    // A blank key file is an error, never the demo key (even when it is allowed).
    for (i, blank) in ["", "\n", "  \n"].iter().enumerate() {
        let file = write(&dir, &format!("blank{i}"), blank);
        let err = refused(
            &[
                ("JWT_SECRET_FILE", file.to_str().unwrap()),
                ("JWT_DEMO_KEY", "true"),
            ],
            "JWT_SECRET_FILE",
        );
        assert!(err.contains("empty") || err.contains("blank"), "{err}");
    }
    refused(
        &[("JWT_SECRET", KEY64), ("BEARER_SECRET", &KEY64[..31])],
        "BEARER_SECRET",
    );
    let out = run(&[("JWT_SECRET_FILE", short.to_str().unwrap())], &["-t"]);
    assert!(!stderr(&out).contains(&KEY64[..63]), "never the key");
}

/// A key file this user may not read (a container's compose secret owned by root, mode 0600):
/// refused at start, with the file's owner and mode and the command that fixes it.
#[test]
fn an_unreadable_key_file_is_refused_with_how_to_fix_it() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dir = scratch_dir("ops-unreadable");
    let key = write(&dir, "key", &format!("{KEY64}\n"));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let me = jwt_proxy::os::effective_uid().unwrap();
    let root = me == 0;
    let (uid, out) = if root {
        // Root reads any file: run as the image's uid, from copies that uid can reach.
        let bin = dir.join("jwt-proxy");
        std::fs::copy(env!("CARGO_BIN_EXE_jwt-proxy"), &bin).unwrap();
        let conf = dir.join("jwt-proxy.yaml");
        std::fs::copy(manifest_dir().join("conf/jwt-proxy.yaml"), &conf).unwrap();
        for p in [&dir, &bin, &conf] {
            let mode = if p == &conf { 0o644 } else { 0o755 };
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let out = Command::new(&bin)
            .current_dir(&dir)
            .args(["-t", "-c", "jwt-proxy.yaml"])
            .env_clear()
            .env("JWT_SECRET_FILE", &key)
            .uid(10001)
            .gid(10001)
            .output()
            .unwrap();
        (10001, out)
    } else {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o000)).unwrap();
        (
            me,
            run(&[("JWT_SECRET_FILE", key.to_str().unwrap())], &["-t"]),
        )
    };
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let mode = if root { "0600" } else { "0000" };
    for part in [
        "jwt-proxy: config error: JWT_SECRET_FILE: cannot read ",
        "Permission denied",
        &format!("runs as uid {uid} and must be able to read the file"),
        &format!("mode {mode})"),
        &format!("`chown {uid} FILE && chmod 0400 FILE`"),
    ] {
        assert!(err.contains(part), "{part:?} in {err}");
    }
    assert!(!err.contains(KEY64), "never the key");
}

#[test]
fn nonsense_settings_are_refused_at_start() {
    for (env, setting) in [
        (&[("MAX_BODY_BYTES", "0")][..], "MAX_BODY_BYTES"),
        (&[("JWT_TTL_SECS", "31536001")][..], "JWT_TTL_SECS"),
        (
            &[("CLIENT_BODY_TIMEOUT_MS", "0")][..],
            "CLIENT_BODY_TIMEOUT_MS",
        ),
        (&[("DRAIN_IDLE_SECS", "0")][..], "DRAIN_IDLE_SECS"),
        (&[("STATUS_RECENT_BYTES", "1")][..], "STATUS_RECENT_BYTES"),
        (
            &[("MAX_UPSTREAM_HEADER_BYTES", "1")][..],
            "MAX_UPSTREAM_HEADER_BYTES",
        ),
        (
            &[("STATUS_SHOW_HEADERS", "authorization")][..],
            "STATUS_SHOW_HEADERS",
        ),
        (&[("STATUS_ADDR", "0.0.0.0")][..], "STATUS_TOKEN"),
        (&[("STATUS_TOKEN", "too-short")][..], "STATUS_TOKEN"),
        // The default grace period (35 s) cannot cover a 60 s upstream wait.
        (
            &[("UPSTREAM_TIMEOUT_MS", "60000")][..],
            "grace_period_seconds",
        ),
    ] {
        let mut env = env.to_vec();
        env.push(("JWT_SECRET", KEY64));
        refused(&env, setting);
    }
}

#[test]
fn a_misspelt_pingora_key_is_refused() {
    let dir = scratch_dir("ops-typo");
    let conf = write(&dir, "typo.yaml", "version: 1\ngrace_period_second: 30\n");
    let out = run(
        &[("JWT_SECRET", KEY64)],
        &["-t", "-c", conf.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(
            "config error: grace_period_second: unknown setting (did you mean grace_period_seconds?)"
        ),
        "{}",
        stderr(&out)
    );
}

#[test]
fn print_paths_shows_the_private_defaults_and_the_files_own() {
    let demo = [("JWT_DEMO_KEY", "true")];
    let out = run(&demo, &["--print-paths", "-c", "conf/jwt-proxy.yaml"]);
    assert_success(&out, "--print-paths");
    let uid = {
        use std::os::unix::fs::MetadataExt;
        let dir = scratch_dir("ops-uid");
        std::fs::metadata(write(&dir, "f", "")).unwrap().uid()
    };
    // And the signing key's kid (none: `-`) and fingerprint, for the supervisor.
    let signing = format!(
        "signing_key=- {}\n",
        jwt_proxy::signing::key::Key::demo().fingerprint()
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "pid_file=/tmp/jwt-proxy-{uid}/jwt-proxy.pid\nupgrade_sock=/tmp/jwt-proxy-{uid}/upgrade.sock\n{signing}"
        )
    );
    let dir = scratch_dir("ops-paths");
    let conf = write(
        &dir,
        "c.yaml",
        &format!(
            "pid_file: {0}/p.pid\nupgrade_sock: {0}/u.sock\n",
            dir.display()
        ),
    );
    let out = run(&demo, &["--print-paths", "-c", conf.to_str().unwrap()]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "pid_file={0}/p.pid\nupgrade_sock={0}/u.sock\n{signing}",
            dir.display()
        )
    );
    // After the whole configuration is read: an invalid one prints nothing and exits 2.
    let out = run(&[], &["--print-paths", "-c", conf.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

#[test]
fn pid_file_and_upgrade_socket_live_only_in_a_private_directory() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = scratch_dir("ops-private");
    let conf_for = |run_dir: &Path| {
        write(
            &dir,
            "c.yaml",
            &format!(
                "pid_file: {0}/p.pid\nupgrade_sock: {0}/u.sock\n",
                run_dir.display()
            ),
        )
    };
    // A shared, writable directory: refused.
    let shared = dir.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let conf = conf_for(&shared);
    let env = [("JWT_SECRET", KEY64)];
    for args in [&["-t", "-c"][..], &["-c"]] {
        let mut args = args.to_vec();
        args.push(conf.to_str().unwrap());
        let out = run(&env, &args);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("config error: pid_file: the directory")
                && stderr(&out).contains("writable by group or others"),
            "{}",
            stderr(&out)
        );
    }
    // A missing one is created, mode 0700, and the proxy starts and writes its pid file there.
    let private = dir.join("private");
    let _ = std::fs::remove_dir_all(&private);
    let conf = conf_for(&private);
    let port = free_port();
    let child = jwt_proxy_cmd(&env, &["-c", conf.to_str().unwrap()])
        .env("HTTP_PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let proxy = Proc {
        child,
        stdout_path: dir.join("none"),
    };
    wait_for_port(format!("127.0.0.1:{port}").parse().unwrap());
    let meta = std::fs::metadata(&private).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o700);
    let t0 = Instant::now();
    while !private.join("p.pid").exists() {
        assert!(t0.elapsed() < Duration::from_secs(5), "pid file");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        std::fs::read_to_string(private.join("p.pid"))
            .unwrap()
            .trim(),
        proxy.child.id().to_string()
    );
}

/// jwt-proxy with this YAML file and these settings, on free loopback ports.
fn start_with_conf(name: &str, yaml: &str, env: &[(&str, &str)]) -> (SocketAddr, Proc) {
    let dir = scratch_dir(name);
    let conf = write(&dir, "c.yaml", yaml);
    let port = free_port();
    let child = jwt_proxy_cmd(env, &["-c", conf.to_str().unwrap()])
        .env("HTTP_PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for_port(addr);
    (
        addr,
        Proc {
            child,
            stdout_path: dir.join("none"),
        },
    )
}

#[test]
fn an_empty_environment_variable_does_not_override_the_file() {
    let echo = start_echo(&[]);
    let yaml = format!(
        "jwt_proxy:\n  upstream_url: http://{}/protected\n  user_default: bob\n  jwt_demo_key: true\n",
        echo.addr
    );
    // `USER_DEFAULT=` (as `${USER_DEFAULT:-}` in compose gives): the file's `bob` stands.
    let (addr, _p) = start_with_conf("ops-empty", &yaml, &[("USER_DEFAULT", "")]);
    let r = post(addr, "/", &[], b"{}");
    assert_eq!(r.status, 200, "{}", r.text());
    let claims = verify_with_jsonwebtoken(r.token(), DEMO_SECRET.as_bytes());
    assert_eq!(claims["payload"]["user"], "bob");
    // `USER_DEFAULT=none` makes identity required from the environment.
    let (addr, _p) = start_with_conf("ops-none", &yaml, &[("USER_DEFAULT", "none")]);
    let r = post(addr, "/", &[], b"{}");
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["error"], "identity_required");
}

#[test]
fn bearer_tokens_are_verified_with_the_bearer_key() {
    let bearer_key = "bearer-key-of-the-identity-provider-0123";
    let (_echo, proxy) = start_stack(&[
        ("USER_SOURCE", "bearer"),
        ("USER_DEFAULT", "none"),
        ("JWT_SECRET", KEY64),
        ("BEARER_SECRET", bearer_key),
    ]);
    let sign = |key: &str| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &json!({"user": "carol"}),
            &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()).unwrap(),
        )
        .unwrap()
    };
    let r = post(
        proxy.addr,
        "/",
        &[("authorization", &format!("Bearer {}", sign(bearer_key)))],
        b"{}",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let claims = verify_with_jsonwebtoken(r.token(), KEY64.as_bytes());
    assert_eq!(claims["payload"]["user"], "carol");
    // A token signed with the signing key is no identity any more.
    let r = post(
        proxy.addr,
        "/",
        &[("authorization", &format!("Bearer {}", sign(KEY64)))],
        b"{}",
    );
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["error"], "invalid_bearer_token");
}

#[test]
fn jwt_post_usage_errors_exit_2_and_key_files_use_the_one_loader() {
    let (_echo, proxy) = start_stack(&[]);
    let url = format!("http://{}/", proxy.addr);
    let dir = scratch_dir("ops-jwt-post");
    let jwt_post = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_jwt-post"));
        cmd.env_remove("JWT_SECRET")
            .env_remove("JWT_SECRET_FILE")
            .env_remove("JWT_SECRET_ENCODING")
            .args(args);
        cmd.output().unwrap()
    };
    // A bad encoding is a usage error (it used to be "did not verify", 4).
    let out = jwt_post(&[&url, "--secret", DEMO_SECRET, "--secret-encoding", "rot13"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--secret-encoding"),
        "{}",
        stderr(&out)
    );
    let out = jwt_post(&[&url, "--secret", "zz", "--secret-encoding", "hex"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // --secret-file: one trailing newline is not part of a text key; a blank file is refused.
    let key = write(&dir, "key", &format!("{DEMO_SECRET}\n"));
    let out = jwt_post(&[&url, "--secret-file", key.to_str().unwrap()]);
    assert_success(&out, "jwt-post --secret-file");
    assert!(String::from_utf8_lossy(&out.stdout).contains("token verified"));
    let blank = write(&dir, "blank", "  \n");
    let out = jwt_post(&[&url, "--secret-file", blank.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // protected-echo reads key files with the same loader: a blank one is refused, not used
    // as a key of two spaces.
    let out = Command::new(env!("CARGO_BIN_EXE_protected-echo"))
        .env_remove("JWT_SECRET")
        .env_remove("JWT_SECRET_ENCODING")
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--secret-file", blank.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("blank"), "{}", stderr(&out));
}

/// The 64 key bytes behind the base64 test: chosen so that the standard alphabet needs `+`
/// and `/`, the URL-safe one `-` and `_`.
fn urlsafe_key_bytes() -> Vec<u8> {
    [0xfbu8, 0xff, 0xbf]
        .iter()
        .copied()
        .cycle()
        .take(64)
        .collect()
}

#[test]
fn readme_python_snippet_verifies_tokens_under_every_key_spelling() {
    let bytes = urlsafe_key_bytes();
    let urlsafe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes);
    let standard = base64::engine::general_purpose::STANDARD.encode(&bytes);
    assert!(urlsafe.contains('-') && urlsafe.contains('_') && standard.contains('+'));
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let (_echo, proxy) = start_stack(&[
        ("JWT_SECRET", &urlsafe),
        ("JWT_SECRET_ENCODING", "base64"),
        ("JWT_AUDIENCE", "svc"),
        ("JWT_ISSUER", "jwt-proxy-test"),
    ]);
    let tokens: Vec<String> = ["alice", "bob"]
        .iter()
        .map(|u| {
            post(proxy.addr, "/", &[("x-user", u)], b"{}")
                .token()
                .to_string()
        })
        .collect();
    let out = run_python(
        "readme_python.py",
        &json!({
            "readme": manifest_dir().join("README.md"),
            "keys": [[urlsafe, "base64"], [standard, "base64"], [hex, "hex"], [KEY64, "text"]],
            "tokens": tokens, "audience": "svc", "issuer": "jwt-proxy-test",
        }),
    );
    let out: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(out["users"], json!(["alice", "bob"]));
    let keys = out["keys_hex"].as_array().unwrap();
    for k in &keys[..3] {
        assert_eq!(k, &json!(hex));
    }
    let text_hex: String = KEY64.bytes().map(|b| format!("{b:02x}")).collect();
    assert_eq!(keys[3], json!(text_hex));
}

/// The README's Rust snippet, line for line (`readme_rust_snippet_is_this_code` keeps them equal).
const RUST_SNIPPET: &str = r#"use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
let key = DecodingKey::from_secret(secret.as_bytes())?;   // text encoding: the bytes of the text
let mut validation = Validation::new(Algorithm::HS512);   // requires and checks exp
validation.set_audience(&["svc"]);                        // when JWT_AUDIENCE is set (else InvalidAudience)
validation.set_issuer(&["jwt-proxy"]);                    // when JWT_ISSUER is set
let data = decode::<serde_json::Value>(token, &key, &validation)?;
let user = data.claims["payload"]["user"].as_str();
"#;

fn readme_rust_snippet(
    token: &str,
    secret: &str,
) -> Result<Option<String>, jsonwebtoken::errors::Error> {
    use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
    let key = DecodingKey::from_secret(secret.as_bytes())?; // text encoding: the bytes of the text
    let mut validation = Validation::new(Algorithm::HS512); // requires and checks exp
    validation.set_audience(&["svc"]); // when JWT_AUDIENCE is set (else InvalidAudience)
    validation.set_issuer(&["jwt-proxy"]); // when JWT_ISSUER is set
    let data = decode::<serde_json::Value>(token, &key, &validation)?;
    let user = data.claims["payload"]["user"].as_str();
    Ok(user.map(str::to_string))
}

#[test]
fn readme_rust_snippet_is_this_code_and_verifies_tokens_with_an_audience() {
    let readme = std::fs::read_to_string(manifest_dir().join("README.md")).unwrap();
    let section = readme
        .split("## Verifying the token in your service")
        .nth(1)
        .unwrap();
    let block = section
        .split("```rust\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap();
    assert_eq!(block, RUST_SNIPPET);

    let (_echo, proxy) = start_stack(&[
        ("JWT_SECRET", KEY64),
        ("JWT_AUDIENCE", "svc"),
        ("JWT_ISSUER", "jwt-proxy"),
    ]);
    let token = post(proxy.addr, "/", &[("x-user", "dora")], b"{}")
        .token()
        .to_string();
    assert_eq!(
        readme_rust_snippet(&token, KEY64).unwrap().as_deref(),
        Some("dora")
    );
    // Without set_audience, as the README had it, the same token fails.
    let plain = jsonwebtoken::decode::<serde_json::Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_secret(KEY64.as_bytes()).unwrap(),
        &jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS512),
    )
    .unwrap_err();
    assert_eq!(
        plain.kind(),
        &jsonwebtoken::errors::ErrorKind::InvalidAudience
    );
}

#[test]
fn a_status_port_in_use_is_refused_at_start_with_its_setting_named() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let t0 = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_jwt-proxy"))
        .current_dir(manifest_dir())
        .env("JWT_DEMO_KEY", "true")
        .env("HTTP_PORT", free_port().to_string())
        .env("STATUS_PORT", port.to_string())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("STATUS_PORT") && err.contains("cannot listen"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(30));
}

/// Run `f` with this thread (and so the processes it spawns) allowed on CPU 0 only.
fn on_cpu0<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: cpu_set_t is plain data; the calls only read and write the sets given.
    unsafe {
        let mut saved: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut saved),
            0
        );
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut one);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one),
            0
        );
        let out = f();
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &saved);
        out
    }
}

#[test]
fn worker_threads_default_to_the_cpus_the_process_may_use() {
    let echo = start_echo(&[]);
    let url = format!("http://{}/protected", echo.addr);
    let threads = |p: &Proxy| get(p.status, "/status.json").json()["worker_threads"].clone();
    let all = start_proxy(&url, &[]);
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(threads(&all), json!(cpus));
    let pinned = on_cpu0(|| start_proxy(&url, &[]));
    assert_eq!(
        threads(&pinned),
        json!(1),
        "one CPU allowed: one worker thread"
    );
    assert!(get(pinned.status, "/metrics")
        .text()
        .contains("\njwt_proxy_worker_threads 1\n"));
    let r = post(pinned.addr, "/", &[("x-user", "pinned")], b"{}");
    assert_eq!(r.status, 200);
}
