//! What a record may show of a request: the headers whose values are never shown, the
//! allow-list capture of the others, and the path with its query values redacted. Everything the
//! status service and the access log show of a request passes through here.

use std::borrow::Cow;

use http::{HeaderMap, HeaderName, Method};

use crate::TOKEN_HEADER;

/// The longest path (with query) a record keeps; longer ones are cut with a marker.
pub(crate) const MAX_PATH_BYTES: usize = 1024;
/// The longest header value a record keeps; longer ones are cut with a marker.
const MAX_HEADER_VALUE_BYTES: usize = 256;
/// Header lines a record keeps at most (the rest are counted, not kept).
const MAX_HEADERS: usize = 32;
/// Header text (names and values) a record keeps at most.
const MAX_SHOWN_HEADER_BYTES: usize = 4096;
/// The longest extension method a record keeps (longer ones are shown as `LONG-METHOD`).
const MAX_METHOD_BYTES: usize = 32;

/// Header names whose values are never kept, whatever the allow-list says.
pub(crate) const NEVER_SHOWN: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    TOKEN_HEADER,
];

const REDACTED: &str = "[redacted]";

/// Request headers as shown: `name: value` lines, values outside the allow-list redacted and
/// long ones cut, at most `MAX_HEADERS` lines and `MAX_SHOWN_HEADER_BYTES` of text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShownHeaders {
    text: String,
    /// Header lines received but not kept (over the limits).
    pub(crate) omitted: usize,
}

impl ShownHeaders {
    /// Capture `headers`, showing the values of the names in `shown` only.
    pub fn capture(headers: &HeaderMap, shown: &[HeaderName]) -> ShownHeaders {
        let mut out = ShownHeaders {
            text: String::with_capacity(256),
            omitted: 0,
        };
        for (i, (name, value)) in headers.iter().enumerate() {
            let name = name.as_str();
            let value: Cow<str> =
                if NEVER_SHOWN.contains(&name) || !shown.iter().any(|s| s.as_str() == name) {
                    Cow::Borrowed(REDACTED)
                } else {
                    truncated(value.as_bytes(), MAX_HEADER_VALUE_BYTES)
                };
            let line = name.len() + value.len() + 3;
            if i >= MAX_HEADERS || out.text.len() + line > MAX_SHOWN_HEADER_BYTES {
                out.omitted += 1;
                continue;
            }
            out.text.push_str(name);
            out.text.push_str(": ");
            out.text.push_str(&value);
            out.text.push('\n');
        }
        out
    }

    /// `(name, value)` pairs in the order received.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.text.lines().filter_map(|l| l.split_once(": "))
    }

    /// The shown value of `name` (lower case), if kept.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.text.capacity()
    }
}

/// Text of at most `max` bytes (lossy UTF-8), cut with a marker saying how much was left out.
/// Control characters are kept as they are: rendering escapes them.
pub fn truncated(bytes: &[u8], max: usize) -> Cow<'_, str> {
    if bytes.len() <= max {
        return String::from_utf8_lossy(bytes);
    }
    let mut cut = String::from_utf8_lossy(&bytes[..max]).into_owned();
    cut.push_str(&format!("…[+{} bytes]", bytes.len() - max));
    Cow::Owned(cut)
}

/// A path and query as shown: the path cut at `MAX_PATH_BYTES`, the query's values redacted
/// (`?access_token=[redacted]&page=[redacted]`): query strings carry credentials as often as
/// headers do, and a path is shown to whoever reads the status page or the access log.
pub(crate) fn shown_path(path_and_query: &[u8]) -> String {
    let (path, query) = match path_and_query.iter().position(|&b| b == b'?') {
        Some(i) => (&path_and_query[..i], Some(&path_and_query[i + 1..])),
        None => (path_and_query, None),
    };
    // `;name=value` path parameters (`;jsessionid=…`) carry credentials too, and so does what
    // follows a percent-encoded `;` or `?`, which a backend may decode into one (found by an
    // outside attack: `/a%3Btoken=SECRET` was shown whole).
    let encoded_mark =
        |w: &[u8]| w[0] == b'%' && w[1] == b'3' && matches!(w[2].to_ascii_lowercase(), b'b' | b'f');
    let cut = path
        .iter()
        .position(|&b| b == b';')
        .into_iter()
        .chain(path.windows(3).position(encoded_mark))
        .min();
    let (path, params) = match cut {
        Some(i) => (&path[..i], true),
        None => (path, false),
    };
    let mut out = truncated(path, MAX_PATH_BYTES).into_owned();
    if params {
        out.push(';');
        out.push_str(REDACTED);
    }
    if let Some(q) = query {
        out.push('?');
        for (i, pair) in q.split(|&b| b == b'&').enumerate() {
            if out.len() > 2 * MAX_PATH_BYTES {
                out.push('…');
                break;
            }
            if i > 0 {
                out.push('&');
            }
            // A bare item (`?SECRET`) may be the credential itself: only keys of `key=value`
            // items are shown.
            let key = pair.split(|&b| b == b'=').next().unwrap_or_default();
            if key.len() < pair.len() {
                out.push_str(&truncated(key, 64));
                out.push('=');
            }
            if !pair.is_empty() {
                out.push_str(REDACTED);
            }
        }
    }
    out
}

/// A method as shown: standard ones as they are, extension methods up to 32 bytes.
pub(crate) fn shown_method(m: &Method) -> Method {
    if m.as_str().len() <= MAX_METHOD_BYTES {
        m.clone()
    } else {
        Method::from_bytes(b"LONG-METHOD").unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&'static str]) -> Vec<HeaderName> {
        list.iter().map(|n| HeaderName::from_static(n)).collect()
    }

    #[test]
    fn only_allowed_values_are_kept_and_long_ones_are_cut() {
        let mut h = HeaderMap::new();
        h.insert("content-type", "application/json".parse().unwrap());
        h.insert("x-api-key", "s3cr3t".parse().unwrap());
        h.insert("authorization", "Bearer abc".parse().unwrap());
        h.insert("user-agent", "u".repeat(1000).parse().unwrap());
        let shown =
            ShownHeaders::capture(&h, &names(&["content-type", "user-agent", "authorization"]));
        assert_eq!(shown.get("content-type"), Some("application/json"));
        assert_eq!(shown.get("x-api-key"), Some("[redacted]"));
        assert_eq!(
            shown.get("authorization"),
            Some("[redacted]"),
            "never shown, even when allowed"
        );
        let ua = shown.get("user-agent").unwrap();
        assert!(
            ua.starts_with(&"u".repeat(256)) && ua.ends_with("…[+744 bytes]"),
            "{ua}"
        );
        assert!(!format!("{shown:?}").contains("s3cr3t"));
    }

    #[test]
    fn header_text_is_bounded() {
        let mut h = HeaderMap::new();
        for i in 0..500 {
            h.append(
                HeaderName::from_bytes(format!("x-h{i}").as_bytes()).unwrap(),
                "v".repeat(2000).parse().unwrap(),
            );
        }
        let all: Vec<HeaderName> = h.keys().cloned().collect();
        let shown = ShownHeaders::capture(&h, &all);
        assert!(shown.text.len() <= MAX_SHOWN_HEADER_BYTES);
        assert!(shown.pairs().count() <= MAX_HEADERS);
        assert_eq!(shown.pairs().count() + shown.omitted, 500);
    }

    #[test]
    fn query_values_are_redacted() {
        assert_eq!(shown_path(b"/a/b"), "/a/b");
        assert_eq!(shown_path(b"/a%3Btoken=S/b"), "/a;[redacted]");
        assert_eq!(shown_path(b"/a%3ftoken=S"), "/a;[redacted]");
        assert_eq!(shown_path(b"/a%20b%3"), "/a%20b%3");
        assert_eq!(
            shown_path(b"/p?access_token=SECRET&page=2&SECRET2"),
            "/p?access_token=[redacted]&page=[redacted]&[redacted]"
        );
        assert_eq!(
            shown_path(b"/a;jsessionid=S/b?x"),
            "/a;[redacted]?[redacted]"
        );
        let long = format!("/x?{}", "k=v&".repeat(2000));
        assert!(shown_path(long.as_bytes()).len() < 3 * MAX_PATH_BYTES);
    }

    #[test]
    fn truncation_marks_what_was_cut() {
        assert_eq!(truncated(b"abc", 3), "abc");
        assert_eq!(truncated(b"abcd", 3), "abc…[+1 bytes]");
        assert_eq!(
            shown_method(&Method::from_bytes(&[b'X'; 100]).unwrap()).as_str(),
            "LONG-METHOD"
        );
    }
}
