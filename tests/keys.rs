//! Keysets: `jwt-proxy keys new`, every algorithm verified through the JWKS alone (PyJWT and
//! jsonwebtoken, by the README's own code), the JWKS endpoint's caching, refused keysets, SIGHUP,
//! and a rotation under load that fails no request.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};

const PROXY: &str = env!("CARGO_BIN_EXE_jwt-proxy");

fn unix_ms() -> u64 {
    // (the proxy's clock for keys is Unix milliseconds too)
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// `jwt-proxy keys new` into `dir`: the entry it prints (file names relative to `dir`).
fn keys_new(dir: &Path, alg: &str, kid: &str) -> String {
    let file = if alg == "HS512" {
        format!("{kid}.key")
    } else {
        format!("{kid}.pem")
    };
    let out = Command::new(PROXY)
        .args(["keys", "new", "--alg", alg, "--kid", kid, "--out", &file])
        .current_dir(dir)
        .output()
        .unwrap();
    assert_success(&out, "jwt-proxy keys new");
    String::from_utf8(out.stdout).unwrap()
}

fn keyset(signing: &str, entries: &[&str]) -> String {
    format!("signing: {signing}\nkeys:\n{}", entries.concat())
}

/// Replace `path` whole (what an editor or `mv` does): a reader sees the old file or the new.
fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn fresh_dir(tag: &str) -> PathBuf {
    let dir = scratch_dir(tag);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn jwks_url(proxy: &Proxy) -> String {
    format!("http://{}/.well-known/jwks.json", proxy.status)
}

fn kid_of(token: &str) -> String {
    let (h, _) = jwt_proxy::signing::verification::decode_parts(token).unwrap();
    h["kid"].as_str().unwrap_or_default().to_string()
}

fn iat_of(token: &str) -> u64 {
    let (_, c) = jwt_proxy::signing::verification::decode_parts(token).unwrap();
    c["iat"].as_u64().unwrap()
}

fn metric(proxy: &Proxy, name: &str) -> u64 {
    let text = get(proxy.status, "/metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// Verify with the independent implementation (jsonwebtoken) and the public JWK alone.
fn verify_with_jwks(token: &str, jwks: &JwkSet) -> Result<Value, String> {
    let kid = kid_of(token);
    let jwk = jwks
        .find(&kid)
        .ok_or_else(|| format!("kid {kid} not in the JWKS"))?;
    let alg = Algorithm::try_from(jwk.common.key_algorithm.ok_or("no alg")?)
        .map_err(|e| e.to_string())?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    jsonwebtoken::decode::<Value>(token, &key, &Validation::new(alg))
        .map(|d| d.claims)
        .map_err(|e| e.to_string())
}

/// Run jwt-proxy (a start, or `-t`) with these settings and free ports: its exit code and
/// stderr.
fn run_proxy(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = Command::new(PROXY)
        .args(args)
        .env("HTTP_PORT", free_port().to_string())
        .env("STATUS_PORT", free_port().to_string())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn keys_new_writes_a_private_key_file_and_never_overwrites() {
    let dir = fresh_dir("keys-new");
    for (alg, kid, marker) in [
        ("EdDSA", "e1", "-----BEGIN PRIVATE KEY-----"),
        ("ES256", "p1", "-----BEGIN PRIVATE KEY-----"),
        ("HS512", "h1", ""),
    ] {
        let entry = keys_new(&dir, alg, kid);
        let file = if alg == "HS512" {
            "h1.key".to_string()
        } else {
            format!("{kid}.pem")
        };
        let file = file.as_str();
        assert!(
            entry.contains(&format!("- kid: {kid}\n    alg: {alg}\n    file: {file}")),
            "{entry}"
        );
        let meta = std::fs::metadata(dir.join(file)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{file}");
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        assert!(text.starts_with(marker), "{text}");
        if alg == "HS512" {
            assert!(entry.contains("encoding: hex"));
            assert_eq!(text.trim().len(), 128, "64 random bytes in hex");
        }
        // Never over an existing file.
        let again = Command::new(PROXY)
            .args(["keys", "new", "--alg", alg, "--kid", kid, "--out", file])
            .current_dir(&dir)
            .output()
            .unwrap();
        assert_eq!(again.status.code(), Some(1));
        assert_eq!(std::fs::read_to_string(dir.join(file)).unwrap(), text);
    }
    for args in [
        &["keys", "new", "--alg", "RS256", "--kid", "x"][..],
        &["keys", "new", "--alg", "EdDSA", "--kid", "a b"],
        &["keys", "new", "--kid", "x"],
    ] {
        let out = Command::new(PROXY)
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
    // The three entries make a keyset the proxy accepts (`-t`).
    let set = keyset(
        "e1",
        &[
            "  - kid: e1\n    alg: EdDSA\n    file: e1.pem\n",
            "  - kid: p1\n    alg: ES256\n    file: p1.pem\n",
            "  - kid: h1\n    alg: HS512\n    file: h1.key\n    encoding: hex\n",
        ],
    );
    std::fs::write(dir.join("keyset.yaml"), set).unwrap();
    let out = Command::new(PROXY)
        .arg("-t")
        .env("JWT_KEYS", dir.join("keyset.yaml"))
        .env("UPSTREAM_URL", "http://127.0.0.1:9/protected")
        .output()
        .unwrap();
    assert_success(&out, "jwt-proxy -t with the new keys");
}

/// The README's Rust snippet, line for line (checked against the README below).
const RUST_SNIPPET: &str = r#"use jsonwebtoken::{decode, decode_header, jwk::JwkSet, Algorithm, DecodingKey, Validation};
let jwks: JwkSet = serde_json::from_str(&jwks_json)?;                 // GET /.well-known/jwks.json
let kid = decode_header(token)?.kid.ok_or("token without kid")?;
let jwk = jwks.find(&kid).ok_or("unknown kid: fetch the JWKS again")?;
let alg = Algorithm::try_from(jwk.common.key_algorithm.ok_or("JWK without alg")?)?; // the key's alg
let data = decode::<serde_json::Value>(token, &DecodingKey::from_jwk(jwk)?, &Validation::new(alg))?;
let user = data.claims["payload"]["user"].as_str();
"#;

fn readme_rust_snippet(
    token: &str,
    jwks_json: &str,
) -> Result<Option<String>, Box<dyn std::error::Error>> {
    use jsonwebtoken::{decode, decode_header, jwk::JwkSet, Algorithm, DecodingKey, Validation};
    let jwks: JwkSet = serde_json::from_str(jwks_json)?; // GET /.well-known/jwks.json
    let kid = decode_header(token)?.kid.ok_or("token without kid")?;
    let jwk = jwks.find(&kid).ok_or("unknown kid: fetch the JWKS again")?;
    let alg = Algorithm::try_from(jwk.common.key_algorithm.ok_or("JWK without alg")?)?; // the key's alg
    let data =
        decode::<serde_json::Value>(token, &DecodingKey::from_jwk(jwk)?, &Validation::new(alg))?;
    let user = data.claims["payload"]["user"].as_str();
    Ok(user.map(str::to_string))
}

fn readme_section() -> String {
    let doc = std::fs::read_to_string(manifest_dir().join("docs/keys.md")).unwrap();
    doc.split("## Rotating keys").nth(1).unwrap().to_string()
}

#[test]
fn every_alg_verifies_through_the_jwks_alone_with_the_readme_code() {
    let block = readme_section()
        .split("```rust\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap()
        .to_string();
    assert_eq!(block, RUST_SNIPPET);

    let dir = fresh_dir("every-alg");
    let entries = [
        keys_new(&dir, "EdDSA", "ed-1"),
        keys_new(&dir, "ES256", "es-1"),
        keys_new(&dir, "HS512", "hs-1"),
    ];
    let secret = std::fs::read_to_string(dir.join("hs-1.key")).unwrap();
    for (signing, alg) in [("ed-1", "EdDSA"), ("es-1", "ES256"), ("hs-1", "HS512")] {
        let path = dir.join(format!("{signing}.yaml"));
        std::fs::write(
            &path,
            keyset(
                signing,
                &entries.iter().map(String::as_str).collect::<Vec<_>>(),
            ),
        )
        .unwrap();
        let echo = start_echo(&["--no-verify"]);
        let proxy = start_proxy(
            &format!("http://{}/protected", echo.addr),
            &[
                ("JWT_KEYS", path.to_str().unwrap()),
                ("JWT_NBF_SKEW_SECS", "30"),
            ],
        );
        let tokens: Vec<String> = ["alice", "bob"]
            .iter()
            .map(|u| {
                post(proxy.addr, "/", &[("x-user", u)], b"{}")
                    .token()
                    .to_string()
            })
            .collect();
        let jwks_body = get(proxy.status, "/.well-known/jwks.json").text();
        let jwks: JwkSet = serde_json::from_str(&jwks_body).unwrap();
        let kids: Vec<&str> = jwks
            .keys
            .iter()
            .filter_map(|k| k.common.key_id.as_deref())
            .collect();
        assert_eq!(kids, ["ed-1", "es-1"], "asymmetric keys only");
        assert!(!jwks_body.contains(secret.trim()), "never an HMAC secret");
        for t in &tokens {
            let (h, c) = jwt_proxy::signing::verification::decode_parts(t).unwrap();
            assert_eq!(h["alg"], alg);
            assert_eq!(h["kid"], signing);
            assert_eq!(c["nbf"].as_u64().unwrap() + 30, c["iat"].as_u64().unwrap());
        }
        if alg == "HS512" {
            // Not in the JWKS: the secret verifies it (kid ignored), and the JWKS does not.
            let key = DecodingKey::from_secret(&hex_bytes(secret.trim())).unwrap();
            for t in &tokens {
                jsonwebtoken::decode::<Value>(t, &key, &Validation::new(Algorithm::HS512)).unwrap();
                assert!(verify_with_jwks(t, &jwks).is_err());
            }
            continue;
        }
        // Rust, the README's code.
        for (t, u) in tokens.iter().zip(["alice", "bob"]) {
            assert_eq!(
                readme_rust_snippet(t, &jwks_body).unwrap().as_deref(),
                Some(u)
            );
        }
        // Python, the README's code (PyJWT + cryptography), fetching the JWKS from the proxy.
        let out = run_python(
            "readme_jwks.py",
            &json!({"readme": manifest_dir().join("docs/keys.md"), "jwks_url": jwks_url(&proxy), "tokens": tokens}),
        );
        let out: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(out["users"], json!(["alice", "bob"]));
        assert_eq!(out["algs"], json!([alg, alg]));
        // jwt-post verifies by the JWKS too, and refuses with the wrong key set.
        let ok = Command::new(env!("CARGO_BIN_EXE_jwt-post"))
            .args([
                &format!("http://{}/", proxy.addr),
                "--jwks",
                &jwks_url(&proxy),
                "--quiet",
            ])
            .output()
            .unwrap();
        assert_success(&ok, "jwt-post --jwks");
    }
}

fn hex_bytes(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

#[test]
fn a_token_naming_another_alg_than_its_key_is_refused_by_protected_echo() {
    // The alg-confusion forgery: HS512 "signed" with the public key of an EdDSA kid.
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use hmac::{Hmac, KeyInit, Mac};
    let dir = fresh_dir("alg-confusion");
    let entry = keys_new(&dir, "EdDSA", "k2");
    std::fs::write(dir.join("keyset.yaml"), keyset("k2", &[&entry])).unwrap();
    let port = free_port();
    let proxy = start_proxy(
        &format!("http://127.0.0.1:{port}/protected"),
        &[("JWT_KEYS", dir.join("keyset.yaml").to_str().unwrap())],
    );
    let echo_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let _echo = start_echo_at(echo_addr, &["--jwks", &jwks_url(&proxy)]);
    let jwks: Value = get(proxy.status, "/.well-known/jwks.json").json();
    let public = URL_SAFE_NO_PAD
        .decode(jwks["keys"][0]["x"].as_str().unwrap())
        .unwrap();
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"HS512","typ":"JWT","kid":"k2"}"#),
        URL_SAFE_NO_PAD.encode(br#"{"iat":1,"payload":{"user":"mallory"}}"#)
    );
    let mut mac = <Hmac<sha2::Sha512> as KeyInit>::new_from_slice(&public).unwrap();
    mac.update(input.as_bytes());
    let forged = format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    );
    let r = post(echo_addr, "/protected", &[("x-my-jwt", &forged)], b"{}").json();
    assert_eq!(r["x_my_jwt"]["valid"], false, "{r}");
    assert!(
        r["x_my_jwt"]["error"]
            .as_str()
            .unwrap()
            .contains("not its key's"),
        "{r}"
    );
    // The proxy's own token, through the proxy, verifies.
    let r = post(proxy.addr, "/", &[], b"{}").json();
    assert_eq!(r["x_my_jwt"]["valid"], true, "{r}");
}

#[test]
fn the_jwks_is_open_cacheable_and_revalidates() {
    let dir = fresh_dir("jwks-http");
    let ed = keys_new(&dir, "EdDSA", "k2");
    let hs = keys_new(&dir, "HS512", "k1");
    std::fs::write(dir.join("keyset.yaml"), keyset("k1", &[&hs, &ed])).unwrap();
    let secret = std::fs::read_to_string(dir.join("k1.key")).unwrap();
    let echo = start_echo(&["--no-verify"]);
    let token = "s3cret-status-token-0123456789";
    let proxy = start_proxy(
        &format!("http://{}/protected", echo.addr),
        &[
            ("JWT_KEYS", dir.join("keyset.yaml").to_str().unwrap()),
            ("JWT_JWKS_MAX_AGE_SECS", "120"),
            ("STATUS_TOKEN", token),
        ],
    );
    let r = get(proxy.status, "/.well-known/jwks.json");
    assert_eq!(r.status, 200, "open without the status token");
    assert_eq!(r.header("cache-control"), Some("public, max-age=120"));
    assert_eq!(r.header("content-type"), Some("application/jwk-set+json"));
    let etag = r.header("etag").unwrap().to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let jwk = &r.json()["keys"][0];
    assert_eq!(jwk["kid"], "k2");
    assert_eq!(jwk["kty"], "OKP");
    assert_eq!(jwk["crv"], "Ed25519");
    assert_eq!(jwk["alg"], "EdDSA");
    assert_eq!(jwk["use"], "sig");
    assert!(jwk.get("d").is_none());
    let conditional = |inm: &str| {
        raw(
            proxy.status,
            format!(
                "GET /.well-known/jwks.json HTTP/1.1\r\nHost: x\r\nIf-None-Match: {inm}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
    };
    for inm in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"x\", {etag}"),
        "*".into(),
    ] {
        let r = conditional(&inm);
        assert_eq!(r.status, 304, "{inm}");
        assert!(r.body.is_empty());
        assert_eq!(r.header("etag"), Some(etag.as_str()));
        assert_eq!(r.header("cache-control"), Some("public, max-age=120"));
    }
    assert_eq!(conditional("\"other\"").status, 200);
    // No HMAC secret anywhere on the status service (with the token, for the detailed pages).
    let auth = format!("Bearer {token}");
    for path in [
        "/status",
        "/status.json",
        "/metrics",
        "/.well-known/jwks.json",
    ] {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
        );
        let r = raw(proxy.status, req.as_bytes());
        assert_eq!(r.status, 200, "{path}");
        let body = r.text();
        assert!(
            !body.contains(secret.trim()),
            "{path} shows the HMAC secret"
        );
        assert!(
            !body.to_lowercase().contains(&secret.trim()[..32]),
            "{path}"
        );
    }
}

#[test]
fn a_keyset_that_does_not_load_is_refused_at_start_and_by_dash_t() {
    let dir = fresh_dir("bad-keyset");
    let ed = keys_new(&dir, "EdDSA", "k2");
    std::fs::write(dir.join("short.key"), "too short\n").unwrap();
    let cases = [
        (keyset("k9", &[&ed]), "signing names \"k9\""),
        (
            keyset(
                "k1",
                &["  - kid: k1\n    alg: HS512\n    file: short.key\n"],
            ),
            "needs at least 64",
        ),
        (
            keyset("k2", &[&ed.replace("EdDSA", "ES256")]),
            "not a PEM PKCS#8 ES256",
        ),
        (
            keyset("k2", &[&ed.replace("k2.pem", "missing.pem")]),
            "cannot read",
        ),
        ("signing: [".to_string(), "keyset"),
    ];
    for (text, why) in cases {
        std::fs::write(dir.join("keyset.yaml"), &text).unwrap();
        for args in [&["-t"][..], &[]] {
            let keys = dir.join("keyset.yaml");
            let (code, err) = run_proxy(
                args,
                &[
                    ("JWT_KEYS", keys.to_str().unwrap()),
                    ("UPSTREAM_URL", "http://127.0.0.1:9/protected"),
                ],
            );
            assert_eq!(code, Some(2), "{args:?} {text:?}: {err}");
            assert!(
                err.contains("JWT_KEYS: keyset") && err.contains(why),
                "{err}"
            );
        }
    }
    // A key file given as the keyset: refused without repeating it; a FIFO: refused at once.
    let pem = std::fs::read_to_string(dir.join("k2.pem")).unwrap();
    let fifo = dir.join("fifo.yaml");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    for keys in [dir.join("k2.pem"), fifo] {
        let (code, err) = run_proxy(
            &["-t"],
            &[
                ("JWT_KEYS", keys.to_str().unwrap()),
                ("UPSTREAM_URL", "http://127.0.0.1:9/protected"),
            ],
        );
        assert_eq!(code, Some(2), "{err}");
        for line in pem.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!err.contains(line), "the key is repeated: {err}");
        }
    }
    // A keyset with a key of its own next to JWT_SECRET: which one signs? Refused.
    std::fs::write(dir.join("keyset.yaml"), keyset("k2", &[&ed])).unwrap();
    let keys = dir.join("keyset.yaml");
    let secret = "x".repeat(64);
    let (code, err) = run_proxy(
        &["-t"],
        &[
            ("JWT_KEYS", keys.to_str().unwrap()),
            ("JWT_SECRET", &secret),
        ],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("not both"), "{err}");
}

#[test]
fn sighup_reloads_the_keyset_and_never_ends_the_process() {
    let dir = fresh_dir("sighup");
    let ed = keys_new(&dir, "EdDSA", "k2");
    std::fs::write(dir.join("keyset.yaml"), keyset("k2", &[&ed])).unwrap();
    let echo = start_echo(&["--no-verify"]);
    let upstream = format!("http://{}/protected", echo.addr);
    let with_keys = start_proxy(
        &upstream,
        &[("JWT_KEYS", dir.join("keyset.yaml").to_str().unwrap())],
    );
    let fixed = start_proxy(&upstream, &[]);
    for _ in 0..3 {
        let before = metric(&with_keys, "jwt_proxy_key_reloads_total");
        for p in [&with_keys, &fixed] {
            let pid = p.proc.child.id().to_string();
            assert!(Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .unwrap()
                .success());
        }
        wait_until("a reload after SIGHUP", Duration::from_secs(5), || {
            metric(&with_keys, "jwt_proxy_key_reloads_total") > before
        });
    }
    for p in [&with_keys, &fixed] {
        assert_eq!(
            post(p.addr, "/", &[], b"{}").status,
            200,
            "still serving after SIGHUP"
        );
    }
    assert_eq!(
        metric(&fixed, "jwt_proxy_key_reloads_total"),
        0,
        "nothing to reload"
    );
}

#[test]
fn protected_echo_follows_the_jwks_it_verifies_with() {
    // A revoked key stops verifying once the cached set is stale (max-age), a kid revoked and
    // re-added with new material verifies again, and a token lacking our claims is refused.
    let dir = fresh_dir("echo-follows");
    let a = keys_new(&dir, "EdDSA", "a");
    let b = keys_new(&dir, "EdDSA", "b");
    let path = dir.join("keyset.yaml");
    write_atomic(&path, &keyset("a", &[&a, &b]));
    let port = free_port();
    let proxy = start_proxy(
        &format!("http://127.0.0.1:{port}/protected"),
        &[
            ("JWT_KEYS", path.to_str().unwrap()),
            ("JWT_JWKS_MAX_AGE_SECS", "1"),
            ("JWT_KEY_PUBLISH_LEAD_SECS", "1"),
        ],
    );
    let echo_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let _echo = start_echo_at(echo_addr, &["--jwks", &jwks_url(&proxy)]);
    let r = post(proxy.addr, "/", &[], b"{}");
    assert_eq!(r.json()["x_my_jwt"]["valid"], true);
    let a_token = r.token().to_string();
    let direct = |token: &str| post(echo_addr, "/protected", &[("x-my-jwt", token)], b"{}").json();
    assert_eq!(direct(&a_token)["x_my_jwt"]["valid"], true);

    // Revoke a: gone from the JWKS at once; the echo's copy is stale after max-age (1 s).
    write_atomic(&path, &format!("{}revoked: [a]\n", keyset("b", &[&b])));
    wait_until("a revoked", Duration::from_secs(10), || {
        metric(&proxy, "jwt_proxy_key_reloads_total") >= 1
    });
    std::thread::sleep(Duration::from_millis(2100));
    let r = direct(&a_token);
    assert_eq!(
        r["x_my_jwt"]["valid"], false,
        "a revoked key still verifies: {r}"
    );

    // a comes back with new material (allowed once revoked): after the lead, its tokens verify.
    std::fs::remove_file(dir.join("a.pem")).unwrap();
    let a2 = keys_new(&dir, "EdDSA", "a");
    write_atomic(&path, &keyset("a", &[&a2, &b]));
    wait_until("the new a signs", Duration::from_secs(10), || {
        let r = post(proxy.addr, "/", &[], b"{}");
        kid_of(r.token()) == "a" && {
            assert_eq!(r.json()["x_my_jwt"]["valid"], true, "{}", r.text());
            true
        }
    });

    // Signed by b's key but without our claims: not ours.
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    use ed25519_dalek::Signer;
    let pem = std::fs::read_to_string(dir.join("b.pem")).unwrap();
    let key = ed25519_dalek::SigningKey::from_pkcs8_pem(&pem).unwrap();
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA","typ":"JWT","kid":"b"}"#),
        URL_SAFE_NO_PAD.encode(br#"{"payload":{"user":"x"}}"#)
    );
    let bare = format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(key.sign(input.as_bytes()).to_bytes())
    );
    let r = direct(&bare);
    assert_eq!(r["x_my_jwt"]["valid"], false, "{r}");
    assert!(
        r["x_my_jwt"]["error"]
            .as_str()
            .unwrap()
            .contains("iat, jti"),
        "{r}"
    );
}

/// Stop a proxy the way a stop or an upgrade does (SIGTERM, drain, exit).
fn stop(proxy: &mut Proxy) {
    let pid = proxy.proc.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    proxy.proc.child.wait().unwrap();
}

#[test]
fn a_new_process_resumes_the_keys_in_use() {
    // What an upgrade or a restart must not break: a pending switch keeps its time, a key
    // removed after the switch stays published until its tokens expired, and a kid cannot
    // change its material between processes.
    let dir = fresh_dir("resume");
    let old = keys_new(&dir, "EdDSA", "old");
    let new = keys_new(&dir, "EdDSA", "new");
    let path = dir.join("keyset.yaml");
    write_atomic(&path, &keyset("old", &[&old]));
    let echo = start_echo(&["--no-verify"]);
    let upstream = format!("http://{}/protected", echo.addr);
    let env = [
        ("JWT_KEYS", path.to_str().unwrap()),
        ("JWT_TTL_SECS", "300"),
        ("JWT_JWKS_MAX_AGE_SECS", "1"),
        ("JWT_KEY_PUBLISH_LEAD_SECS", "3"),
    ];
    let mut p1 = start_proxy(&upstream, &env);
    let old_token = post(p1.addr, "/", &[], b"{}").token().to_string();
    assert_eq!(kid_of(&old_token), "old");
    write_atomic(&path, &keyset("new", &[&old, &new]));
    wait_until("signing: new read", Duration::from_secs(10), || {
        metric(&p1, "jwt_proxy_key_reloads_total") >= 1
    });
    let switch = status_json(&p1)["keys"]["switch"].clone();
    assert_eq!(switch["kid"], "new", "the lead holds new back");
    let signs_from = switch["signs_from_ms"].as_u64().unwrap();
    stop(&mut p1);

    // The next process: same pending switch, old signs until then.
    let mut p2 = start_proxy(&upstream, &env);
    let s = status_json(&p2);
    if unix_ms() + 200 < signs_from {
        assert_eq!(s["keys"]["switch"]["signs_from_ms"], signs_from, "{s}");
        assert_eq!(kid_of(post(p2.addr, "/", &[], b"{}").token()), "old");
    }
    wait_until("new signs", Duration::from_secs(10), || {
        kid_of(post(p2.addr, "/", &[], b"{}").token()) == "new"
    });
    assert!(unix_ms() >= signs_from, "new signed before its switch time");
    // Remove old after the switch; then another process: old is still published.
    write_atomic(&path, &keyset("new", &[&new]));
    wait_until("old removed", Duration::from_secs(10), || {
        metric(&p2, "jwt_proxy_key_reloads_total") >= 1
    });
    stop(&mut p2);
    let mut p3 = start_proxy(&upstream, &env);
    let jwks: JwkSet =
        serde_json::from_str(&get(p3.status, "/.well-known/jwks.json").text()).unwrap();
    verify_with_jwks(&old_token, &jwks).expect("old's token verifies from the JWKS");
    let s = status_json(&p3);
    let old_state = s["keys"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == "old")
        .cloned()
        .unwrap();
    assert_eq!(old_state["state"], "retiring", "{s}");
    let dropped = old_state["dropped_at_ms"].as_u64().unwrap();
    assert!(
        dropped >= signs_from + 360_000,
        "old stays for TTL + 60 s after it last signed: {s}"
    );
    stop(&mut p3);

    // A damaged state file: refused (failing open would drop old's publication), saying how
    // to start afresh.
    let paths = Command::new(PROXY)
        .arg("--print-paths")
        .env("JWT_KEYS", &path)
        .env("UPSTREAM_URL", &upstream)
        .output()
        .unwrap();
    let pid_file = String::from_utf8_lossy(&paths.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("pid_file=").map(str::to_string))
        .unwrap();
    let state = jwt_proxy::signing::state::state_path(Path::new(&pid_file), &path);
    let good = std::fs::read_to_string(&state).expect("the state file exists");
    assert!(
        good.contains("\"old\"") && !good.contains("PRIVATE"),
        "{good}"
    );
    std::fs::write(&state, "{\"version\":1,").unwrap();
    let (code, err) = run_proxy(
        &["-t"],
        &[&env[..], &[("UPSTREAM_URL", &upstream)]].concat(),
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("cannot be read") && err.contains("remove it"),
        "{err}"
    );
    // A state that names another keyset (not what this process would have written): refused
    // too, not taken for a first start.
    let other_keyset = good.replace(&path.display().to_string(), "/etc/other-keyset.yaml");
    std::fs::write(&state, other_keyset).unwrap();
    let (code, err) = run_proxy(
        &["-t"],
        &[&env[..], &[("UPSTREAM_URL", &upstream)]].concat(),
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("another keyset"), "{err}");
    std::fs::write(&state, good).unwrap();

    // A kid whose material changed between processes: refused at start and by -t.
    let other = fresh_dir("resume-other");
    keys_new(&other, "EdDSA", "new");
    std::fs::copy(other.join("new.pem"), dir.join("new.pem")).unwrap();
    for args in [&["-t"][..], &[]] {
        let (code, err) = run_proxy(args, &[&env[..], &[("UPSTREAM_URL", &upstream)]].concat());
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains("other key material"), "{err}");
    }
}

#[test]
fn a_keyset_change_during_an_upgrade_is_applied_by_the_new_process() {
    // The new process reads the keyset at its start, then waits for the old one's listeners;
    // a change in between (a revocation, here) must not be lost.
    let dir = fresh_dir("upgrade-change");
    let k1 = keys_new(&dir, "EdDSA", "k1");
    let k2 = keys_new(&dir, "EdDSA", "k2");
    let path = dir.join("keyset.yaml");
    write_atomic(&path, &keyset("k1", &[&k1, &k2]));
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
    let conf = dir.join("jwt-proxy.yaml");
    std::fs::write(
        &conf,
        format!(
            "pid_file: {0}/p.pid\nupgrade_sock: {0}/u.sock\ngrace_period_seconds: 35\n",
            run.display()
        ),
    )
    .unwrap();
    let echo = start_echo(&["--no-verify"]);
    let (port, status_port) = (free_port(), free_port());
    let spawn = |args: &[&str]| {
        Command::new(PROXY)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("JWT_KEYS", &path)
            .env("UPSTREAM_URL", format!("http://{}/protected", echo.addr))
            .env("LISTEN_ADDR", "127.0.0.1")
            .env("HTTP_PORT", port.to_string())
            .env("STATUS_PORT", status_port.to_string())
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let conf_arg = conf.to_str().unwrap();
    let mut old = spawn(&["-c", conf_arg]);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for_port(addr);
    assert_eq!(kid_of(post(addr, "/", &[], b"{}").token()), "k1");
    let mut new = spawn(&["-c", conf_arg, "-u"]);
    wait_until(
        "the new process waiting for the listeners",
        Duration::from_secs(10),
        || run.join("u.sock").exists(),
    );
    std::thread::sleep(Duration::from_millis(300));
    // Revoke k1 while the new process waits.
    write_atomic(&path, &format!("{}revoked: [k1]\n", keyset("k2", &[&k2])));
    std::thread::sleep(Duration::from_millis(300));
    assert!(Command::new("kill")
        .args(["-QUIT", &old.id().to_string()])
        .status()
        .unwrap()
        .success());
    old.wait().unwrap();
    wait_until(
        "the new process signing with k2",
        Duration::from_secs(10),
        || kid_of(post(addr, "/", &[], b"{}").token()) == "k2",
    );
    let status: SocketAddr = format!("127.0.0.1:{status_port}").parse().unwrap();
    let jwks: Value = get(status, "/.well-known/jwks.json").json();
    assert_eq!(
        jwks["keys"].as_array().unwrap().len(),
        1,
        "k1 revoked: {jwks}"
    );
    let _ = new.kill();
    let _ = new.wait();
}

/// One answered request of a rotation client.
#[derive(Debug, Clone)]
struct Seen {
    client: usize,
    token: String,
    kid: String,
    iat: u64,
    at_ms: u64,
}

#[test]
fn keys_rotate_under_load_without_a_failed_request() {
    const LEAD: u64 = 3;
    // Kubernetes' layout of a mounted secret: root/keyset.yaml -> ..data/keyset.yaml and
    // ..data -> ..v1, a directory holding the files.
    let root = fresh_dir("rotation");
    let v1 = root.join("..v1");
    std::fs::create_dir_all(&v1).unwrap();
    let k1 = keys_new(&v1, "HS512", "k1");
    let k2 = keys_new(&v1, "EdDSA", "k2");
    std::fs::write(v1.join("keyset.yaml"), keyset("k1", &[&k1])).unwrap();
    std::os::unix::fs::symlink("..v1", root.join("..data")).unwrap();
    for f in ["keyset.yaml", "k1.key", "k2.pem", "k3.pem"] {
        std::os::unix::fs::symlink(format!("..data/{f}"), root.join(f)).unwrap();
    }
    let k1_secret = hex_bytes(std::fs::read_to_string(v1.join("k1.key")).unwrap().trim());

    let port = free_port();
    let lead = LEAD.to_string();
    let proxy = start_proxy(
        &format!("http://127.0.0.1:{port}/protected"),
        &[
            ("JWT_KEYS", root.join("keyset.yaml").to_str().unwrap()),
            ("JWT_JWKS_MAX_AGE_SECS", "1"),
            ("JWT_KEY_PUBLISH_LEAD_SECS", &lead),
            ("JWT_TTL_SECS", "5"),
        ],
    );
    let echo_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let k1_file = root.join("k1.key");
    let _echo = start_echo_at(
        echo_addr,
        &[
            "--jwks",
            &jwks_url(&proxy),
            "--secret-file",
            k1_file.to_str().unwrap(),
            "--secret-encoding",
            "hex",
            "--track-jti",
            "--threads",
            "2",
        ],
    );

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    // The JWKS as the world saw it: (time, document), every 50 ms.
    let snapshots = Arc::new(Mutex::new(Vec::<(u64, String)>::new()));
    let mut threads = Vec::new();
    for client in 0..3 {
        let (stop, seen, failures) = (stop.clone(), seen.clone(), failures.clone());
        let addr = proxy.addr;
        threads.push(std::thread::spawn(move || {
            let mut c = KeepAlive::new(addr);
            let user = format!("user-{client}");
            while !stop.load(Ordering::Relaxed) {
                match c.post("/", &[("x-user", &user)], b"{}") {
                    Err(e) => failures
                        .lock()
                        .unwrap()
                        .push(format!("client {client}: {e}")),
                    Ok(r) if r.status != 200 => failures.lock().unwrap().push(format!(
                        "client {client}: {} {}",
                        r.status,
                        r.text()
                    )),
                    Ok(r) => {
                        let body = r.json();
                        let report = &body["x_my_jwt"];
                        if report["valid"] != true || report["count"] != 1 {
                            failures
                                .lock()
                                .unwrap()
                                .push(format!("client {client}: upstream says {report}"));
                        }
                        let token = r.token().to_string();
                        seen.lock().unwrap().push(Seen {
                            client,
                            kid: kid_of(&token),
                            iat: iat_of(&token),
                            token,
                            at_ms: unix_ms(),
                        });
                    }
                }
            }
        }));
    }
    {
        let (stop, snapshots) = (stop.clone(), snapshots.clone());
        let status = proxy.status;
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let r = get(status, "/.well-known/jwks.json");
                snapshots.lock().unwrap().push((unix_ms(), r.text()));
                std::thread::sleep(Duration::from_millis(50));
            }
        }));
    }
    let count_kid = |kid: &str| seen.lock().unwrap().iter().filter(|s| s.kid == kid).count();
    let reloads = || metric(&proxy, "jwt_proxy_key_reloads_total");
    let published_at = |kid: &str| -> u64 {
        let s = status_json(&proxy);
        s["keys"]["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid)
            .map(|k| k["published_at_ms"].as_u64().unwrap())
            .unwrap_or_else(|| panic!("{kid} not held: {s}"))
    };
    let long = Duration::from_secs(20);
    wait_until("tokens signed by k1", long, || count_kid("k1") >= 20);

    // 1. Add k2 (EdDSA), k1 still signing: rewrite the file.
    write_atomic(&v1.join("keyset.yaml"), &keyset("k1", &[&k1, &k2]));
    wait_until("k2 published", long, || reloads() >= 1);
    let k2_published = published_at("k2");
    let t_added = Instant::now();
    // 2. Name k2 signing: it signs only once published for the lead.
    write_atomic(&v1.join("keyset.yaml"), &keyset("k2", &[&k1, &k2]));
    wait_until("signing: k2 read", long, || reloads() >= 2);
    let s = status_json(&proxy);
    if t_added.elapsed() < Duration::from_secs(LEAD - 1) {
        assert_eq!(s["keys"]["switch"]["kid"], "k2", "{s}");
        assert_eq!(
            s["keys"]["switch"]["signs_from_ms"],
            k2_published + LEAD * 1000,
            "{s}"
        );
        assert_eq!(s["keys"]["signing"], "k1");
    }
    wait_until("tokens signed by k2", long, || count_kid("k2") >= 20);
    // 3. Remove k1: it stays held, retiring, until its tokens expired.
    write_atomic(&v1.join("keyset.yaml"), &keyset("k2", &[&k2]));
    wait_until("k1 removed", long, || reloads() >= 3);
    let s = status_json(&proxy);
    let k1_state = s["keys"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == "k1")
        .cloned();
    assert_eq!(
        k1_state.map(|k| k["state"].clone()),
        Some(json!("retiring")),
        "{s}"
    );
    // 4. A broken file mid-run: refused whole, counted, shown; the keys in use stay.
    let failed_before = metric(&proxy, "jwt_proxy_key_reload_failures_total");
    write_atomic(&v1.join("keyset.yaml"), "signing: k2\nkeys: [broken\n");
    wait_until("the broken keyset refused", long, || {
        metric(&proxy, "jwt_proxy_key_reload_failures_total") > failed_before
    });
    let s = status_json(&proxy);
    assert_eq!(s["keys"]["signing"], "k2");
    assert!(
        s["keys"]["reload_error"]["message"]
            .as_str()
            .unwrap()
            .contains("keyset"),
        "{s}"
    );
    let page = get(proxy.status, "/status").text();
    assert!(page.contains("Last reload refused"), "the page shows it");
    let k2_before = count_kid("k2");
    wait_until("requests go on with the broken file in place", long, || {
        count_kid("k2") >= k2_before + 20
    });
    write_atomic(&v1.join("keyset.yaml"), &keyset("k2", &[&k2]));
    wait_until("the good file back", long, || reloads() >= 4);
    assert_eq!(status_json(&proxy)["keys"]["reload_error"], Value::Null);
    // 5. Kubernetes' way: a new directory, then the ..data symlink swapped at once; it adds
    //    ES256 k3 and names it signing in one step (the lead still applies).
    let v2 = root.join("..v2");
    std::fs::create_dir_all(&v2).unwrap();
    std::fs::copy(v1.join("k2.pem"), v2.join("k2.pem")).unwrap();
    std::fs::copy(v1.join("k1.key"), v2.join("k1.key")).unwrap();
    let k3 = keys_new(&v2, "ES256", "k3");
    std::fs::write(v2.join("keyset.yaml"), keyset("k3", &[&k2, &k3])).unwrap();
    std::os::unix::fs::symlink("..v2", root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    wait_until("tokens signed by k3", long, || count_kid("k3") >= 20);
    let k3_published = published_at("k3");
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }

    let failures = failures.lock().unwrap();
    let seen = seen.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} failed of {}: {:?}",
        failures.len(),
        seen.len() + failures.len(),
        &failures[..failures.len().min(5)]
    );
    let snapshots = snapshots.lock().unwrap();
    let parsed: Vec<(u64, JwkSet)> = snapshots
        .iter()
        .map(|(t, body)| (*t, serde_json::from_str(body).unwrap()))
        .collect();
    let first_seen = |kid: &str| {
        parsed
            .iter()
            .find(|(_, s)| s.find(kid).is_some())
            .map(|(t, _)| *t)
    };
    let mut by_kid: HashMap<&str, usize> = HashMap::new();
    for s in seen.iter() {
        *by_kid.entry(s.kid.as_str()).or_default() += 1;
        match s.kid.as_str() {
            "k1" => {
                let key = DecodingKey::from_secret(&k1_secret).unwrap();
                jsonwebtoken::decode::<Value>(&s.token, &key, &Validation::new(Algorithm::HS512))
                    .unwrap_or_else(|e| panic!("k1 token: {e}"));
            }
            kid @ ("k2" | "k3") => {
                // The JWKS as it was when the token arrived.
                let (_, jwks) = parsed
                    .iter()
                    .rev()
                    .find(|(t, set)| *t <= s.at_ms && set.find(kid).is_some())
                    .unwrap_or_else(|| panic!("{kid} token before the JWKS had {kid}"));
                verify_with_jwks(&s.token, jwks).unwrap_or_else(|e| panic!("{kid}: {e}"));
                // Never signed by a key published for less than the lead: by the proxy's own
                // publish time (ms), and by when the JWKS first showed it (polled every 50 ms).
                let published = if kid == "k2" {
                    k2_published
                } else {
                    k3_published
                };
                let lead_ms = LEAD * 1000;
                assert!(
                    s.iat >= (published + lead_ms) / 1000,
                    "{kid}: iat {} but published at {published} ms",
                    s.iat
                );
                assert!(
                    s.at_ms >= published + lead_ms,
                    "{kid}: answered at {} ms, published at {published} ms",
                    s.at_ms
                );
                let seen_ms = first_seen(kid).unwrap();
                assert!(
                    s.at_ms + 1000 >= seen_ms + lead_ms,
                    "{kid}: answered at {} ms, first in the JWKS at {seen_ms} ms",
                    s.at_ms
                );
            }
            other => panic!("token with kid {other:?}"),
        }
    }
    // Once a client has seen the next key, it never sees an older one again.
    for client in 0..3 {
        let kids: Vec<&str> = seen
            .iter()
            .filter(|s| s.client == client)
            .map(|s| s.kid.as_str())
            .collect();
        let rank = |k: &str| ["k1", "k2", "k3"].iter().position(|x| *x == k).unwrap();
        assert!(
            kids.windows(2).all(|w| rank(w[0]) <= rank(w[1])),
            "client {client}: {kids:?}"
        );
    }
    let echo_stats = get(echo_addr, "/stats").json();
    assert_eq!(echo_stats["jti_duplicates"], 0);
    assert_eq!(echo_stats["jti_missing"], 0);
    assert_eq!(
        echo_stats["received"].as_u64().unwrap(),
        seen.len() as u64,
        "each request reached the upstream once"
    );
    eprintln!(
        "rotation: {} requests, 0 failed, by kid {by_kid:?}",
        seen.len()
    );
}
