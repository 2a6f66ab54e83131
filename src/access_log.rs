//! One JSON line per request on stdout, written in one `write` so lines never interleave.

use std::io::Write;

use serde::Serialize;

use crate::stats::Record;

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    client: Option<String>,
    method: &'a str,
    path: &'a str,
    status: u16,
    upstream_status: Option<u16>,
    duration_ms: f64,
    bytes_in: u64,
    bytes_out: u64,
    user: Option<&'a str>,
    jti: &'a str,
    spoofed: bool,
    error: Option<&'a str>,
}

/// The access-log line of a record (without the trailing newline).
pub fn line(r: &Record) -> String {
    let time = chrono::DateTime::from_timestamp_millis(r.time_unix_ms as i64)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let line = Line {
        time,
        client: r.client.map(|c| c.to_string()),
        method: r.method.as_str(),
        path: r.path(),
        status: r.status,
        upstream_status: r.upstream_status,
        duration_ms: r.duration_us as f64 / 1000.0,
        bytes_in: r.bytes_in,
        bytes_out: r.bytes_out,
        user: r.user.as_deref(),
        jti: r.jti.as_str(),
        spoofed: r.spoofed,
        error: r.error.as_deref(),
    };
    serde_json::to_string(&line).unwrap_or_default()
}

pub fn write(r: &Record) {
    let mut text = line(r);
    text.push('\n');
    // A closed stdout must not take the proxy down; the record is still in the stats.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}
