//! The forwarding headers of the request we send upstream. The ones that describe our own hop
//! (`X-Real-IP`, `X-Forwarded-Host`, `X-Forwarded-Proto`) are set, whatever the client sent;
//! the two that are lists of hops (`X-Forwarded-For`, `Forwarded`, RFC 7239) get our hop
//! appended to every value the client sent, folded into one line.

use std::net::IpAddr;

use http::header::HeaderValue;
use pingora::http::RequestHeader;
use pingora::Result;

use crate::TOKEN_HEADER;

pub const X_FORWARDED_FOR: &str = "x-forwarded-for";
const X_FORWARDED_HOST: &str = "x-forwarded-host";
const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
const X_REAL_IP: &str = "x-real-ip";
const FORWARDED: &str = "forwarded";

/// The headers we set on the request upstream, whose other spellings ([`is_alias_of`]) are
/// removed from it: our token and the forwarding headers of our own hop (the identity header of
/// `USER_SOURCE=header:` joins them). `forwarded` has no dash, so no other spelling.
pub(crate) const OWNED_HEADERS: &[&str] = &[
    TOKEN_HEADER,
    X_FORWARDED_FOR,
    X_FORWARDED_HOST,
    X_FORWARDED_PROTO,
    X_REAL_IP,
];

/// Set the forwarding headers on `up` for a client at `client` that asked for `host`.
pub(crate) fn set_forwarding_headers(
    up: &mut RequestHeader,
    client: Option<IpAddr>,
    host: Option<&HeaderValue>,
) -> Result<()> {
    // The client address is written once and reused by the three headers that carry it.
    let ip = client.map(|ip| ip.to_string());
    match &ip {
        Some(ip) => {
            let xff = appended(up, X_FORWARDED_FOR, ip);
            up.insert_header(X_FORWARDED_FOR, xff)?;
            up.insert_header(X_REAL_IP, ip.as_str())?;
        }
        None => {
            up.remove_header(X_REAL_IP);
        }
    }
    let host = host.map(|h| String::from_utf8_lossy(h.as_bytes()));
    let mut hop = String::with_capacity(96);
    if let (Some(ip), Some(addr)) = (&ip, client) {
        hop.push_str("for=");
        if addr.is_ipv6() {
            hop.push_str("\"[");
            hop.push_str(ip);
            hop.push_str("]\"");
        } else {
            hop.push_str(ip);
        }
        hop.push(';');
    }
    if let Some(h) = &host {
        hop.push_str("host=");
        push_quoted(&mut hop, h);
        hop.push(';');
    }
    hop.push_str("proto=http");
    let forwarded = appended(up, FORWARDED, &hop);
    up.insert_header(FORWARDED, forwarded)?;
    match host {
        Some(h) => up.insert_header(X_FORWARDED_HOST, h.as_ref())?,
        None => {
            up.remove_header(X_FORWARDED_HOST);
        }
    }
    up.insert_header(X_FORWARDED_PROTO, HeaderValue::from_static("http"))?;
    Ok(())
}

/// Whether `name` (lower case) is `ours` spelled with other punctuation for some or all of its
/// dashes, underscores or dots (`x_my_jwt`, `x-my_jwt`, `x.my.jwt`; `x-user` for an identity
/// header `x_user`): CGI, WSGI and PHP hand such spellings to the application under one name
/// (`HTTP_X_MY_JWT`), so a client could slip its own value in.
pub(crate) fn is_alias_of(name: &str, ours: &str) -> bool {
    name != ours && same_variable(name.as_bytes(), ours)
}

/// `name` (any case) and `ours` name the same CGI variable: equal but where both have
/// punctuation (PHP folds `.` and other punctuation into `_`, as CGI does `-`).
pub(crate) fn same_variable(name: &[u8], ours: &str) -> bool {
    name.len() == ours.len()
        && name.iter().zip(ours.bytes()).all(|(a, b)| {
            a.eq_ignore_ascii_case(&b) || (!a.is_ascii_alphanumeric() && !b.is_ascii_alphanumeric())
        })
}

/// Remove every client header that is an underscore spelling of one of `owned`.
pub(crate) fn remove_aliases<S: AsRef<str>>(up: &mut RequestHeader, owned: &[S]) {
    let aliases: Vec<http::HeaderName> = up
        .headers
        .keys()
        .filter(|k| owned.iter().any(|o| is_alias_of(k.as_str(), o.as_ref())))
        .cloned()
        .collect();
    for name in aliases {
        up.remove_header(&name);
    }
}

/// Every value of `name` the client sent, in order, then `ours`, as one comma-separated line.
fn appended(up: &RequestHeader, name: &str, ours: &str) -> String {
    let mut out = String::new();
    for v in up.headers.get_all(name) {
        let v = String::from_utf8_lossy(v.as_bytes());
        let v = v.trim();
        if !v.is_empty() {
            out.push_str(v);
            out.push_str(", ");
        }
    }
    out.push_str(ours);
    out
}

/// Append `s` as an RFC 7230 quoted-string.
fn push_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("POST", b"/", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn all(r: &RequestHeader, name: &str) -> Vec<String> {
        r.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn lists_are_appended_across_lines_and_our_hop_is_set() {
        let mut r = req(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2, 3.3.3.3"),
            ("forwarded", "for=1.1.1.1"),
            ("x-real-ip", "6.6.6.6"),
            ("x-forwarded-host", "evil"),
            ("x-forwarded-proto", "https"),
        ]);
        let host = HeaderValue::from_static("proxy.example:8080");
        set_forwarding_headers(&mut r, Some("10.0.0.1".parse().unwrap()), Some(&host)).unwrap();
        assert_eq!(
            all(&r, "x-forwarded-for"),
            ["1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.1"]
        );
        assert_eq!(
            all(&r, "forwarded"),
            ["for=1.1.1.1, for=10.0.0.1;host=\"proxy.example:8080\";proto=http"]
        );
        assert_eq!(all(&r, "x-real-ip"), ["10.0.0.1"]);
        assert_eq!(all(&r, "x-forwarded-host"), ["proxy.example:8080"]);
        assert_eq!(all(&r, "x-forwarded-proto"), ["http"]);
    }

    #[test]
    fn underscore_spellings_of_our_headers_are_removed() {
        assert!(is_alias_of("x_my_jwt", "x-my-jwt"));
        assert!(is_alias_of("x-my_jwt", "x-my-jwt"));
        assert!(
            !is_alias_of("x-my-jwt", "x-my-jwt"),
            "ours is replaced, not removed"
        );
        assert!(is_alias_of("x.my.jwt", "x-my-jwt"), "PHP folds dots too");
        assert!(!is_alias_of("x_my_jwx", "x-my-jwt"));
        assert!(!is_alias_of("xamyajwt", "x-my-jwt"));
        // An identity header spelled with underscores has its dash and dot spellings too (found
        // by an outside attack: `header:x_user` let `x-user: admin` through beside it).
        assert!(is_alias_of("x-user", "x_user"));
        assert!(is_alias_of("x.user", "x_user"));
        assert!(!is_alias_of("x_user", "x_user"));
        assert!(!is_alias_of("xauser", "x_user"));
        let mut r = req(&[
            ("x_my_jwt", "EVIL"),
            ("x_real_ip", "6.6.6.6"),
            ("x_other", "ok"),
        ]);
        remove_aliases(&mut r, &["x-my-jwt", X_REAL_IP]);
        assert!(all(&r, "x_my_jwt").is_empty() && all(&r, "x_real_ip").is_empty());
        assert_eq!(all(&r, "x_other"), ["ok"]);
    }

    #[test]
    fn ipv6_is_quoted_and_missing_facts_are_not_invented() {
        let mut r = req(&[("x-forwarded-host", "evil"), ("x-real-ip", "6.6.6.6")]);
        set_forwarding_headers(&mut r, Some("::1".parse().unwrap()), None).unwrap();
        assert_eq!(all(&r, "forwarded"), ["for=\"[::1]\";proto=http"]);
        assert!(all(&r, "x-forwarded-host").is_empty());
        let mut r = req(&[("x-real-ip", "6.6.6.6")]);
        set_forwarding_headers(&mut r, None, None).unwrap();
        assert!(all(&r, "x-real-ip").is_empty());
        assert_eq!(all(&r, "forwarded"), ["proto=http"]);
    }
}
