//! The status page in a real browser (Debian's headless Chromium): after hostile requests, the
//! page still renders its tables, no injected element exists and no injected script ran.
//! `make test` installs Chromium; set `CHROMIUM` to use another binary.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn chromium() -> PathBuf {
    let p = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        p.exists(),
        "no Chromium at {} (run `make test`, which installs it)",
        p.display()
    );
    p
}

/// The DOM after the page's scripts (if any could run) had a second of virtual time.
fn rendered_dom(url: &str, profile: &Path) -> String {
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-extensions",
            "--no-first-run",
            "--virtual-time-budget=1000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .unwrap();
    assert_success(&out, "chromium");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn title(dom: &str) -> &str {
    let start = dom.find("<title>").expect("a title") + "<title>".len();
    &dom[start..start + dom[start..].find("</title>").unwrap()]
}

/// Each payload would add an element with an id `injected-*` or, run as script, set the title.
fn payload(tag: &str) -> String {
    format!(
        "</td></tr></table><b id=\"injected-{tag}\">x</b><script>document.title='pwned-{tag}'</script>\
         <img src=x onerror=\"document.title='pwned-{tag}'\"><!--"
    )
}

#[test]
fn the_harness_sees_injection_when_there_is_some() {
    // The same checks against a page that does embed the payloads raw, without CSP: they must
    // fire, or the real test below would prove nothing.
    let dir = scratch_dir("browser-control");
    let page = dir.join("unsafe.html");
    std::fs::write(
        &page,
        format!(
            "<!doctype html><html><head><title>jwt-proxy status</title></head><body><table><tr><td>{}</td></tr></table></body></html>",
            payload("user")
        ),
    )
    .unwrap();
    let dom = rendered_dom(&format!("file://{}", page.display()), &dir.join("profile"));
    assert_eq!(title(&dom), "pwned-user", "{dom}");
    assert!(dom.contains("<b id=\"injected-user\">"), "{dom}");
}

#[test]
fn hostile_values_are_inert_on_the_status_page() {
    // x-evil's value is shown only because it is allow-listed here (redacted by default).
    let (_echo, proxy) = start_stack(&[("STATUS_SHOW_HEADERS", "content-type,user-agent,x-evil")]);
    let dir = scratch_dir("browser");
    // Normal traffic first, so that the tables have ordinary rows too.
    for user in ["alice", "bob"] {
        assert_eq!(
            post(proxy.addr, "/", &[("x-user", user)], b"{}").status,
            200
        );
    }
    // User, header values, user agent; refused requests (their error field) too.
    let user = payload("user");
    assert!(user.len() <= 256);
    let header = payload("header");
    let agent = payload("agent");
    let r = post(
        proxy.addr,
        "/",
        &[
            ("x-user", &user),
            ("x-evil", &header),
            ("user-agent", &agent),
            ("content-type", &payload("ctype")),
        ],
        b"{}",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        verify_with_jsonwebtoken(r.token(), DEMO_SECRET.as_bytes())["payload"]["user"],
        user.as_str()
    );
    assert_eq!(
        post(
            proxy.addr,
            "/",
            &[("x-user", &format!("{user}{}", "x".repeat(300)))],
            b"{}"
        )
        .status,
        400,
        "refused, and shown"
    );
    // Path and query: quotes and ampersands arrive raw; '<' and '>' only with a space in the
    // target (the parser then percent-encodes all three; alone they are a 400).
    let path = "/'onmouseover='document.title=1'/x?q=a b</td><b id=\"injected-path\">&r=<script>document.title='pwned-path'</script>";
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    assert_eq!(raw(proxy.addr, req.as_bytes()).status, 200);

    let dom = rendered_dom(
        &format!("http://{}/status", proxy.status),
        &dir.join("profile"),
    );
    assert_eq!(title(&dom), "jwt-proxy status", "no injected script ran");
    assert!(
        !dom.contains("<b id=\"injected"),
        "no injected element: {dom}"
    );
    assert!(!dom.contains("<img"), "no injected element");
    assert!(!dom.contains("<script"), "no script element at all");
    // The payloads are there, as text.
    for tag in ["user", "header", "agent", "ctype"] {
        assert!(
            dom.contains(&format!("&lt;b id=\"injected-{tag}\"&gt;")),
            "{tag} shown as text"
        );
    }
    // And the page still renders its sections and one row per request.
    for id in [
        "traffic", "identity", "upstream", "refusals", "keys", "process",
    ] {
        assert!(dom.contains(&format!("<table id=\"{id}\">")), "{id}");
    }
    // The refused request is counted under its reason.
    assert!(
        dom.split("<table id=\"refusals\">")
            .nth(1)
            .unwrap()
            .split("</table>")
            .next()
            .unwrap()
            .contains("<code>invalid_user</code>"),
        "{dom}"
    );
    // The charts: a point a minute for the rates; latency points where there were requests.
    let status = status_json(&proxy);
    let timeline = status["timeline"].as_array().unwrap();
    assert_eq!(timeline.len(), 15);
    let minutes_with_requests = timeline
        .iter()
        .filter(|p| p["requests"].as_u64() > Some(0))
        .count();
    let total: u64 = timeline
        .iter()
        .map(|p| p["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(total, status["requests_total"].as_u64().unwrap());
    let points = |chart: &str, series: &str| {
        let svg = dom
            .split(&format!("<svg id=\"{chart}\""))
            .nth(1)
            .unwrap_or_else(|| panic!("{chart} missing: {dom}"));
        let svg = svg.split("</svg>").next().unwrap();
        svg.matches(&format!("<circle class=\"point\" data-series=\"{series}\""))
            .count()
    };
    assert_eq!(points("chart-rate", "req/s"), 15);
    assert_eq!(points("chart-errors", "errors %"), 15);
    assert_eq!(points("chart-latency", "p50"), minutes_with_requests);
    assert_eq!(points("chart-latency", "p99"), minutes_with_requests);
    assert!((1..=2).contains(&minutes_with_requests));
    assert!(dom.contains("<table id=\"recent\">"));
    let rows = dom
        .split("<table id=\"recent\">")
        .nth(1)
        .unwrap()
        .matches("<details>")
        .count();
    assert_eq!(rows, 5, "five requests, five rows");
    assert!(dom.contains("<td>alice</td>") && dom.contains("<td>bob</td>"));
}
