//! The status page (`/status`): what `/status.json` holds, for a person. Charts of the last
//! minutes as inline SVG drawn here (the page runs no script), then grouped tables with units.
//! Everything shown is escaped.

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

use serde_json::Value;

use crate::observe::decisions::{OUTCOMES, REASONS};
use crate::observe::record::format_time;
use crate::observe::stats::{Group, Histogram, Stats, COUNTERS};

pub fn render(j: &Value, s: &Stats) -> String {
    let mut h = String::with_capacity(32 * 1024);
    h.push_str(PAGE_HEAD);
    header_html(&mut h, j, s);
    charts(&mut h, &j["timeline"]);
    traffic_html(&mut h, j, s);
    identity_html(&mut h, j, s);
    upstream_html(&mut h, j);
    refusals_html(&mut h, &j["decisions"], &group_rows(j, Group::Refusals));
    keys_html(&mut h, &j["keys"]);
    process_html(&mut h, j);
    recent_html(&mut h, j);
    h.push_str("</table></body></html>");
    h
}

/// Version, pid, uptime and whether the process is stopping.
fn header_html(h: &mut String, j: &Value, s: &Stats) {
    let state = if j["draining"] == true {
        " · <b class=\"warn\">draining: stopping or upgrading</b>"
    } else if s.stopping.load(Relaxed) {
        " · <b class=\"warn\">stopping: not ready, still accepting</b>"
    } else {
        ""
    };
    let _ = write!(
        h,
        "<p class=\"sub\">version {} · pid {} · up {} (since {}){state}</p>",
        esc(&plain(&j["version"])),
        esc(&plain(&j["pid"])),
        esc(&uptime_words(s.uptime_secs())),
        esc(&plain(&j["started_at"])),
    );
}

/// The counters of one section of the page, as `(label, value)` rows.
fn group_rows(j: &Value, g: Group) -> Vec<(String, String)> {
    COUNTERS
        .iter()
        .filter(|c| c.group == g)
        .map(|c| (c.label.to_string(), count_words(&j[c.name])))
        .collect()
}

/// A section of `rows`, then the counters of `group`.
fn grouped_section(
    h: &mut String,
    j: &Value,
    id: &str,
    title: &str,
    mut rows: Vec<(String, String)>,
    group: Group,
) {
    rows.extend(group_rows(j, group));
    section(h, id, title, &rows);
}

fn traffic_html(h: &mut String, j: &Value, s: &Stats) {
    let mut traffic = vec![
        ("requests".to_string(), count_words(&j["requests_total"])),
        ("in flight now".into(), count_words(&j["in_flight"])),
        (
            "client connections open".into(),
            count_words(&j["open_connections"]),
        ),
        (
            "request duration, average".into(),
            avg(&s.request_duration_us, 1000.0, "ms"),
        ),
    ];
    for o in OUTCOMES {
        traffic.push((
            format!("outcome: {}", o.as_str().replace('_', " ")),
            count_words(&j["outcomes"][o.as_str()]),
        ));
    }
    for (st, n) in j["by_status"].as_object().into_iter().flatten() {
        let what = if st == "0" { "no answer (0)" } else { st };
        traffic.push((format!("HTTP status {what}"), count_words(n)));
    }
    section(h, "traffic", "Traffic", &traffic);
}

fn identity_html(h: &mut String, j: &Value, s: &Stats) {
    let identity = vec![
        ("user from".to_string(), plain(&j["user_source"])),
        (
            "signing key fingerprint".into(),
            plain(&j["key_fingerprint"]),
        ),
        ("kid".into(), plain(&j["kid"])),
        (
            "public demo key".into(),
            if j["demo_key"] == true {
                "yes: anyone can forge these tokens".into()
            } else {
                "no".into()
            },
        ),
        (
            "token size, average".into(),
            avg(&s.token_bytes, 1.0, "bytes"),
        ),
        (
            "signing time, average".into(),
            avg(&s.signing_duration_ns, 1000.0, "µs"),
        ),
    ];
    grouped_section(
        h,
        j,
        "identity",
        "Identity and tokens",
        identity,
        Group::Identity,
    );
}

fn upstream_html(h: &mut String, j: &Value) {
    let upstream = vec![
        ("upstream".to_string(), plain(&j["upstream_url"])),
        ("address in use".into(), plain(&j["upstream_addr"])),
    ];
    grouped_section(h, j, "upstream", "Upstream", upstream, Group::Upstream);
}

fn process_html(h: &mut String, j: &Value) {
    let process = vec![
        ("listening on".to_string(), plain(&j["listen"])),
        ("worker threads".into(), plain(&j["worker_threads"])),
        (
            "recent requests kept".into(),
            format!(
                "{} ({})",
                j["recent"].as_array().map_or(0, Vec::len),
                kib(j["recent_bytes"].as_u64().unwrap_or(0))
            ),
        ),
    ];
    grouped_section(
        h,
        j,
        "process",
        "Configuration and process",
        process,
        Group::Process,
    );
}

/// The recent requests, newest first, each with its details folded.
fn recent_html(h: &mut String, j: &Value) {
    h.push_str(
        "<h2>Recent requests (newest first)</h2><table id=\"recent\"><tr>\
        <th>time</th><th>client</th><th>version</th><th>method</th><th>path</th><th>status</th>\
        <th>upstream</th><th>user</th><th>jti</th><th>duration ms</th><th>in/out bytes</th>\
        <th>details</th></tr>",
    );
    for r in j["recent"].as_array().into_iter().flatten() {
        let cell = |k: &str| esc(&plain(&r[k]));
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td>\
             <td>{}</td><td><code>{}</code></td><td>{:.3}</td><td>{}/{}</td><td><details><summary>more</summary>",
            cell("time"), cell("client"), cell("http_version"), cell("method"), cell("path"), cell("status"),
            cell("upstream_status"), cell("user"), cell("jti"),
            r["duration_us"].as_f64().unwrap_or(0.0) / 1000.0, cell("bytes_in"), cell("bytes_out"),
        );
        for k in [
            "reason",
            "content_type",
            "content_encoding",
            "iat",
            "exp",
            "spoofed",
            "error",
        ] {
            let _ = write!(h, "<div><b>{k}</b>: {}</div>", cell(k));
        }
        h.push_str("<b>request headers</b><table>");
        for pair in r["headers"].as_array().into_iter().flatten() {
            let _ = write!(
                h,
                "<tr><td>{}</td><td><code>{}</code></td></tr>",
                esc(&plain(&pair[0])),
                esc(&plain(&pair[1]))
            );
        }
        h.push_str("</table>");
        for k in ["token_header", "token_claims"] {
            let pretty = serde_json::to_string_pretty(&r[k]).unwrap_or_default();
            let _ = write!(h, "<b>{k}</b><pre>{}</pre>", esc(&pretty));
        }
        h.push_str("</details></td></tr>");
    }
}

const PAGE_HEAD: &str = "<!doctype html><html><head><meta charset=\"utf-8\">\
    <title>jwt-proxy status</title><style>\
    body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
    h1{margin-bottom:0}.sub{color:#555;margin-top:.3em}.warn{color:#b00}\
    h2{font-size:1.1em;margin:1.2em 0 .4em}\
    table{border-collapse:collapse;margin-bottom:1em}\
    td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top;font-size:13px}\
    th{background:#f5f5f5;font-weight:normal}td.n{text-align:right;font-variant-numeric:tabular-nums}\
    .charts{display:flex;flex-wrap:wrap;gap:1em}.chart{border:1px solid #ddd;padding:.3em .6em}\
    .chart h3{font-size:13px;margin:.2em 0}.chart text{font-size:10px;fill:#555}\
    .legend{font-size:12px;color:#555}\
    code,pre{font-size:12px;white-space:pre-wrap;word-break:break-all}</style></head>\
    <body><h1>jwt-proxy status</h1>";

/// A titled table of `label: value` rows; numbers are right-aligned.
fn section(h: &mut String, id: &str, title: &str, rows: &[(String, String)]) {
    let _ = write!(h, "<h2>{}</h2><table id=\"{id}\">", esc(title));
    for (label, value) in rows {
        let numeric = is_quantity(value);
        let _ = write!(
            h,
            "<tr><th>{}</th><td{}>{}</td></tr>",
            esc(label),
            if numeric { " class=\"n\"" } else { "" },
            esc(value)
        );
    }
    h.push_str("</table>");
}

/// `1\u{2009}234`, `16.9 µs`: a number with an optional unit (right-aligned), not an address
/// or a fingerprint.
fn is_quantity(v: &str) -> bool {
    let (num, unit) = v.split_once(' ').unwrap_or((v, ""));
    !num.is_empty()
        && num
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == '\u{2009}')
        && unit.chars().all(|c| c.is_alphabetic() || c == '%')
}

/// The refusals and failures that happened, by reason, with what each means; the reasons
/// never seen are listed in one line.
fn refusals_html(h: &mut String, decisions: &Value, connection_rows: &[(String, String)]) {
    h.push_str(
        "<h2>Refusals and failures, by reason</h2><table id=\"refusals\">\
         <tr><th>reason</th><th>outcome</th><th>count</th><th>what it means</th></tr>",
    );
    let mut unseen = Vec::new();
    for d in decisions.as_array().into_iter().flatten() {
        let reason = plain(&d["reason"]);
        if reason == "forwarded" {
            continue;
        }
        if d["count"].as_u64() == Some(0) {
            unseen.push(reason);
            continue;
        }
        let help = REASONS
            .iter()
            .find(|r| r.name == reason)
            .map_or(String::new(), |r| r.meaning());
        let _ = write!(
            h,
            "<tr><td><code>{}</code></td><td>{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            esc(&reason),
            esc(&plain(&d["outcome"]).replace('_', " ")),
            esc(&count_words(&d["count"])),
            esc(&help)
        );
    }
    for (label, value) in connection_rows {
        let _ = write!(
            h,
            "<tr><td colspan=\"2\">{}</td><td class=\"n\">{}</td><td>connection event, not a request</td></tr>",
            esc(label),
            esc(value)
        );
    }
    h.push_str("</table>");
    if !unseen.is_empty() {
        let _ = write!(
            h,
            "<p class=\"legend\" id=\"refusals-none\">none yet: {}</p>",
            esc(&unseen.join(", "))
        );
    }
}

/// `3 d 4 h 5 min`, `4 h 0 min`, `5 min 3 s`, `42 s`.
fn uptime_words(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, _) => format!("{m} min {s} s"),
        (0, _, _) => format!("{h} h {m} min"),
        _ => format!("{d} d {h} h {m} min"),
    }
}

/// A count with thousands separated: `1 234 567`.
fn count_words(v: &Value) -> String {
    let Some(n) = v.as_u64() else {
        return plain(v);
    };
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push('\u{2009}');
        }
        out.push(c);
    }
    out
}

fn kib(bytes: u64) -> String {
    format!("{:.1} KiB", bytes as f64 / 1024.0)
}

/// A histogram's mean in `unit` (its values divided by `per_unit`), or `-` when empty.
fn avg(hist: &Histogram, per_unit: f64, unit: &str) -> String {
    let (buckets, sum) = hist.snapshot();
    match buckets.last().map_or(0, |b| b.1) {
        0 => "-".into(),
        n => format!("{:.1} {unit}", sum as f64 / n as f64 / per_unit),
    }
}

const CHART_W: f64 = 300.0;
const CHART_H: f64 = 90.0;

/// The three charts of the last minutes: request rate, error rate, latency.
fn charts(h: &mut String, timeline: &Value) {
    let points = timeline.as_array().map(Vec::as_slice).unwrap_or_default();
    let series =
        |key: &str| -> Vec<Option<f64>> { points.iter().map(|p| p[key].as_f64()).collect() };
    let from = points
        .first()
        .and_then(|p| p["start"].as_str())
        .and_then(|t| t.get(11..16))
        .unwrap_or("");
    let _ = write!(
        h,
        "<h2>Last {} minutes <span class=\"legend\">(one point a minute, from {from} UTC to now)</span></h2>\
         <div class=\"charts\">",
        points.len()
    );
    chart(
        h,
        "chart-rate",
        "requests per second",
        &[("req/s", "#2563eb", series("rate_per_sec"))],
    );
    chart(
        h,
        "chart-errors",
        "errors, % of requests (upstream errors and failures)",
        &[("errors %", "#dc2626", series("error_percent"))],
    );
    chart(
        h,
        "chart-latency",
        "latency, ms",
        &[
            ("p50", "#16a34a", series("p50_ms")),
            ("p99", "#9333ea", series("p99_ms")),
        ],
    );
    h.push_str("</div>");
}

/// One inline SVG line chart; a point for each minute with a value (circles carry the value as
/// their title). Scaled from 0 to the largest value.
fn chart(h: &mut String, id: &str, title: &str, series: &[(&str, &str, Vec<Option<f64>>)]) {
    let n = series.iter().map(|s| s.2.len()).max().unwrap_or(0);
    let top = series
        .iter()
        .flat_map(|s| s.2.iter().flatten())
        .fold(0.0f64, |a, b| a.max(*b));
    let top = if top > 0.0 { top * 1.1 } else { 1.0 };
    let (left, bottom) = (34.0, CHART_H - 12.0);
    let x = |i: usize| left + (CHART_W - left - 4.0) * i as f64 / (n.max(2) - 1) as f64;
    let y = |v: f64| 4.0 + (bottom - 4.0) * (1.0 - v / top);
    let _ = write!(
        h,
        "<div class=\"chart\"><h3>{}</h3><svg id=\"{id}\" width=\"{CHART_W}\" height=\"{CHART_H}\" \
         viewBox=\"0 0 {CHART_W} {CHART_H}\" role=\"img\" aria-label=\"{}\">\
         <line x1=\"{left}\" y1=\"{bottom}\" x2=\"{CHART_W}\" y2=\"{bottom}\" stroke=\"#bbb\"/>\
         <line x1=\"{left}\" y1=\"4\" x2=\"{left}\" y2=\"{bottom}\" stroke=\"#bbb\"/>\
         <text x=\"{}\" y=\"12\" text-anchor=\"end\">{}</text>\
         <text x=\"{}\" y=\"{bottom}\" text-anchor=\"end\">0</text>\
         <text x=\"{left}\" y=\"{CHART_H}\">-{} min</text>\
         <text x=\"{CHART_W}\" y=\"{CHART_H}\" text-anchor=\"end\">now</text>",
        esc(title),
        esc(title),
        left - 3.0,
        short_number(top),
        left - 3.0,
        n.saturating_sub(1),
    );
    for (name, color, values) in series {
        let pts: Vec<(f64, f64, f64)> = values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| (x(i), y(v), v)))
            .collect();
        let line: Vec<String> = pts
            .iter()
            .map(|(px, py, _)| format!("{px:.1},{py:.1}"))
            .collect();
        let _ = write!(
            h,
            "<polyline class=\"series\" data-series=\"{}\" fill=\"none\" stroke=\"{color}\" \
             stroke-width=\"1.5\" points=\"{}\"/>",
            esc(name),
            line.join(" ")
        );
        for (px, py, v) in &pts {
            let _ = write!(
                h,
                "<circle class=\"point\" data-series=\"{}\" cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"2\" \
                 fill=\"{color}\"><title>{} {}</title></circle>",
                esc(name),
                esc(name),
                short_number(*v)
            );
        }
    }
    h.push_str("</svg><div class=\"legend\">");
    for (name, color, _) in series {
        let _ = write!(
            h,
            "<span style=\"color:{color}\">&#9632;</span> {} ",
            esc(name)
        );
    }
    h.push_str("</div></div>");
}

/// A value for an axis or tooltip: 3 significant digits at most.
fn short_number(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The keys table: each key's state in words, and when a pending switch or a retirement
/// happens.
fn keys_html(h: &mut String, k: &Value) {
    let when = |v: &Value| v.as_u64().map(format_time).unwrap_or("-".into());
    let _ = write!(
        h,
        "<h2>Signing keys</h2><p id=\"keys-source\">from {}; publish lead {} s</p>",
        esc(&plain(&k["source"])),
        esc(&plain(&k["publish_lead_secs"]))
    );
    if let Some(sw) = k["switch"].as_object() {
        let _ = write!(
            h,
            "<p id=\"keys-switch\">{} signs from {} (once published for the lead); until then \
             {} signs.</p>",
            esc(&plain(&sw["kid"])),
            esc(&when(&sw["signs_from_ms"])),
            esc(&plain(&k["signing"]))
        );
    }
    if let Some(e) = k["reload_error"].as_object() {
        let _ = write!(
            h,
            "<p id=\"keys-error\"><b>Last reload refused</b> at {}: {} (the keys below stay in \
             use)</p>",
            esc(&when(&e["at_ms"])),
            esc(&plain(&e["message"]))
        );
    }
    h.push_str(
        "<table id=\"keys\"><tr><th>kid</th><th>alg</th><th>fingerprint</th><th>state</th>\
         <th>published since</th><th>in JWKS</th><th>retired at</th></tr>",
    );
    for key in k["keys"].as_array().into_iter().flatten() {
        let _ =
            write!(
            h,
            "<tr><td><code>{}</code></td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td></tr>",
            esc(&plain(&key["kid"])),
            esc(&plain(&key["alg"])),
            esc(&plain(&key["fingerprint"])),
            esc(&plain(&key["state"])),
            esc(&when(&key["published_at_ms"])),
            if key["in_jwks"] == true { "yes" } else { "no (secret)" },
            esc(&when(&key["dropped_at_ms"])),
        );
    }
    h.push_str("</table>");
}

fn plain(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// HTML-escape text for element content and quoted attributes.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
    }

    #[test]
    fn units_read_as_people_write_them() {
        assert_eq!(uptime_words(42), "42 s");
        assert_eq!(uptime_words(3 * 60 + 5), "3 min 5 s");
        assert_eq!(uptime_words(2 * 3600 + 60), "2 h 1 min");
        assert_eq!(
            uptime_words(3 * 86_400 + 4 * 3600 + 5 * 60),
            "3 d 4 h 5 min"
        );
        assert_eq!(
            count_words(&Value::from(1_234_567u64)),
            "1\u{2009}234\u{2009}567"
        );
        assert_eq!(count_words(&Value::from(999u64)), "999");
        assert_eq!(kib(1536), "1.5 KiB");
        assert!(is_quantity("16.9 µs") && is_quantity("1\u{2009}234"));
        assert!(!is_quantity("127.0.0.1:9000") && !is_quantity("3b86dc0ab5e05236"));
    }
}
