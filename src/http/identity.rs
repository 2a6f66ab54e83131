//! Who sent a request: the `user` that goes into the token's payload, taken from a header, a
//! verified bearer token, a JSON body field or a fixed value, with the limits every user value
//! must meet and the typed rejections when it does not. Pure: works on header bytes and body
//! bytes, knows nothing of Pingora.

use std::cell::Cell;
use std::fmt;

use http::HeaderName;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::http::reply::ErrorReply;
use crate::observe::decisions::Reason;
use crate::signing::verification::{BearerError, BearerVerifier};

/// Longest accepted user value, in bytes.
const MAX_USER_BYTES: usize = 256;

/// Where `payload.user` comes from (`USER_SOURCE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserSource {
    /// `header:NAME`: the value of one request header.
    Header(HeaderName),
    /// `bearer`: the `user` (else `sub`) claim of a verified `Authorization: Bearer` token.
    Bearer,
    /// `json:FIELD`: a top-level string field of a JSON request body.
    Json(String),
    /// `static:VALUE`: the same user for every request.
    Static(String),
}

/// Headers that cannot carry the identity (`header:NAME`): they frame the request or are
/// hop-by-hop (Pingora drops or rewrites them), or the proxy sets them (`forwarding`'s own list).
const NOT_AN_IDENTITY: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "expect",
    "http2-settings",
    "forwarded",
];

impl UserSource {
    /// Parse `header:NAME`, `bearer`, `json:FIELD` or `static:VALUE`.
    pub fn parse(s: &str) -> Result<UserSource, String> {
        let (kind, arg) = match s.split_once(':') {
            Some((k, a)) => (k, Some(a)),
            None => (s, None),
        };
        match (kind, arg) {
            ("header", Some(name)) => {
                let h = HeaderName::from_bytes(name.trim().as_bytes())
                    .map_err(|_| format!("{name:?} is not a valid header name"))?;
                // A credential as the user would put it in every token, log line and status
                // record (where that header is otherwise redacted).
                let credential = |n: &&str| {
                    *n == h.as_str() || crate::http::forwarding::is_alias_of(h.as_str(), n)
                };
                if crate::observe::redact::NEVER_SHOWN.iter().any(credential) {
                    return Err(format!(
                        "{h} carries credentials, which would be copied into every token and \
                         log line: use bearer for Authorization tokens, or a header of its own"
                    ));
                }
                // A header the proxy sets, or one that frames or hops the request: the token
                // would name a user the upstream never sees (found by an outside attack:
                // `header:x-real-ip` signed the client's value, the upstream got ours).
                let ours =
                    |n: &&str| crate::http::forwarding::same_variable(h.as_str().as_bytes(), n);
                if crate::http::forwarding::OWNED_HEADERS.iter().any(ours)
                    || NOT_AN_IDENTITY.iter().any(ours)
                {
                    return Err(format!(
                        "{h} is a header the proxy sets or that frames the request, so the \
                         upstream would not see the value the token names: use a header of its own"
                    ));
                }
                Ok(UserSource::Header(h))
            }
            ("bearer", None) => Ok(UserSource::Bearer),
            ("json", Some(field)) if !field.is_empty() => Ok(UserSource::Json(field.to_string())),
            ("static", Some(value)) => {
                check_user(value).map_err(|r| format!("static user {}", r.message()))?;
                Ok(UserSource::Static(value.to_string()))
            }
            _ => Err(format!(
                "{s:?} is not one of header:NAME, bearer, json:FIELD, static:VALUE"
            )),
        }
    }

    pub fn reads_body(&self) -> bool {
        matches!(self, UserSource::Json(_))
    }
}

impl fmt::Display for UserSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserSource::Header(h) => write!(f, "header:{h}"),
            UserSource::Bearer => f.write_str("bearer"),
            UserSource::Json(field) => write!(f, "json:{field}"),
            UserSource::Static(v) => write!(f, "static:{v}"),
        }
    }
}

/// Why a request's identity was refused. Each maps to one status and one error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The user value breaks the rules (not UTF-8, control characters, too long): 400.
    InvalidUser(&'static str),
    /// More than one candidate user (repeated header, duplicate JSON key): 400.
    AmbiguousUser,
    /// The JSON body could not be read as an object: 400.
    BadJson(&'static str),
    /// The bearer token was refused: 401 (400 when its user claim is not a string).
    Bearer(BearerError),
    /// No identity found and `USER_DEFAULT` is empty: 401.
    Missing,
}

impl Rejection {
    /// Why, as counted and answered (its code and status are the reason's).
    pub fn reason(&self) -> Reason {
        match self {
            Rejection::InvalidUser(_) => Reason::InvalidUser,
            Rejection::AmbiguousUser => Reason::AmbiguousUser,
            Rejection::BadJson(_) => Reason::InvalidJson,
            Rejection::Bearer(BearerError::BadUserClaim) => Reason::InvalidUser,
            Rejection::Bearer(_) => Reason::InvalidBearerToken,
            Rejection::Missing => Reason::IdentityRequired,
        }
    }

    /// The JSON refusal this rejection is answered with.
    pub(crate) fn reply(&self) -> ErrorReply {
        ErrorReply::of(self.reason(), self.message())
    }

    /// The status and code it is answered with (the reason's), for tests.
    #[cfg(test)]
    pub(crate) fn status(&self) -> u16 {
        self.reason().status()
    }

    #[cfg(test)]
    pub(crate) fn code(&self) -> &'static str {
        self.reason().as_str()
    }

    pub fn message(&self) -> &'static str {
        match self {
            Rejection::InvalidUser(why) | Rejection::BadJson(why) => why,
            Rejection::AmbiguousUser => "more than one user value in the request",
            Rejection::Bearer(e) => e.as_str(),
            Rejection::Missing => "no identity in the request and no default user configured",
        }
    }
}

/// A user value must be 1..=256 bytes of UTF-8 with no control characters and no invisible
/// format characters (zero-width, bidi overrides): a user that renders like another is refused.
pub fn check_user(user: &str) -> Result<(), Rejection> {
    if user.len() > MAX_USER_BYTES {
        return Err(Rejection::InvalidUser("user is longer than 256 bytes"));
    }
    if user.chars().any(char::is_control) {
        return Err(Rejection::InvalidUser("user contains control characters"));
    }
    if user.chars().any(is_invisible) {
        return Err(Rejection::InvalidUser(
            "user contains invisible format, separator or filler characters",
        ));
    }
    Ok(())
}

/// Characters that render as nothing, or as a blank that passes for nothing next to a name:
/// every space but U+0020 (Zs: no-break, em, ideographic...), the Braille blank and the
/// musical and Khitan fillers, Unicode general category Cf (zero-width spaces and
/// joiners, bidi embeddings, overrides and isolates, the BOM, tags...), the line and paragraph
/// separators (Zl, Zp), and the other default-ignorable code points (Hangul fillers, variation
/// selectors, the combining grapheme joiner), as of Unicode 15. Visible look-alikes (Cyrillic
/// `а` for Latin `a`, combining accents) are not judged here.
fn is_invisible(c: char) -> bool {
    matches!(c as u32,
        0x00A0 | 0x1680 | 0x2000..=0x200A | 0x202F | 0x205F | 0x3000
        | 0x2800 | 0x1D159 | 0x16FE4
        | 0x00AD | 0x034F | 0x0600..=0x0605 | 0x061C | 0x06DD | 0x070F | 0x0890..=0x0891 | 0x08E2
        | 0x115F..=0x1160 | 0x17B4..=0x17B5 | 0x180B..=0x180F | 0x200B..=0x200F
        | 0x2028..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F | 0xFEFF | 0xFFA0
        | 0xFFF0..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3
        | 0x1D173..=0x1D17A | 0xE0000..=0xE0FFF)
}

/// The user in a header, from all its values: none or empty means absent; two is ambiguous.
pub(crate) fn from_header<'a>(
    mut values: impl Iterator<Item = &'a [u8]>,
) -> Result<Option<String>, Rejection> {
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Rejection::AmbiguousUser);
    }
    // ASCII whitespace only (what HTTP allows around a field value): a Unicode space is part
    // of the value, so the token names exactly what the upstream sees.
    let user = std::str::from_utf8(first.trim_ascii())
        .map_err(|_| Rejection::InvalidUser("user is not valid UTF-8"))?;
    if user.is_empty() {
        return Ok(None);
    }
    check_user(user)?;
    Ok(Some(user.to_string()))
}

/// The user named by a `Bearer` token in the `Authorization` header values. A header with another
/// scheme (e.g. Basic) is not an identity and is left alone; a bearer token must verify.
pub fn from_bearer<'a>(
    mut values: impl Iterator<Item = &'a [u8]>,
    verifier: &BearerVerifier,
) -> Result<Option<String>, Rejection> {
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Rejection::AmbiguousUser);
    }
    let Some(token) = bearer_token(first) else {
        return Ok(None);
    };
    let token =
        std::str::from_utf8(token).map_err(|_| Rejection::Bearer(BearerError::Malformed))?;
    let user = verifier.verify(token).map_err(Rejection::Bearer)?;
    check_user(&user)?;
    Ok(Some(user))
}

/// The token of an `Authorization: Bearer <token>` value (scheme case-insensitive).
/// Any value whose scheme reads `Bearer` is a bearer attempt, whatever follows it (a tab, `:`,
/// nothing): otherwise `Bearer\t<forged>` would pass as another scheme, forwarded unchecked
/// under the default user (found by an outside attack). What follows is then the token, which
/// must verify.
pub(crate) fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let scheme = value.get(..6)?;
    let rest = &value[6..];
    if !scheme.eq_ignore_ascii_case(b"bearer")
        || rest.first().is_some_and(u8::is_ascii_alphanumeric)
    {
        return None;
    }
    Some(rest.strip_prefix(b" ").unwrap_or(rest).trim_ascii())
}

/// Deepest JSON nesting we accept in a body we read: serde_json's own default limit, which
/// common upstream parsers also handle (Python's json recurses, ~1,000 levels at most).
const MAX_JSON_DEPTH: usize = 128;

/// Whether `[`/`{` nest deeper than `limit` outside strings: one pass, no recursion. Only
/// the depth is judged here; syntax is the parser's business.
fn nests_deeper_than(body: &[u8], limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// The user in top-level string field `field` of a JSON object body. A missing, empty or blank
/// field is absent;
/// the field given twice is ambiguous; a non-string value is invalid; a body that is not a JSON
/// object (an empty one included) is invalid.
pub fn from_json(body: &[u8], field: &str) -> Result<Option<String>, Rejection> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Rejection::BadJson("request body is not a JSON object"));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| Rejection::BadJson("request body is not valid UTF-8"))?;
    if nests_deeper_than(body, MAX_JSON_DEPTH) {
        return Err(Rejection::BadJson(
            "request body nests JSON deeper than 128 levels",
        ));
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let problem = Cell::new(None);
    let found = FieldSeed {
        field,
        problem: &problem,
    }
    .deserialize(&mut de)
    .map_err(|e| match (problem.take(), e.classify()) {
        (Some(rejection), _) => rejection,
        (None, serde_json::error::Category::Data) => {
            Rejection::BadJson("request body is not a JSON object")
        }
        (None, _) => Rejection::BadJson("request body is not valid JSON"),
    })?;
    de.end()
        .map_err(|_| Rejection::BadJson("request body is not valid JSON"))?;
    match found {
        // Blank is absent, as a blank header is.
        Some(u) if u.trim_ascii().is_empty() => Ok(None),
        Some(u) => check_user(&u).map(|()| Some(u)),
        None => Ok(None),
    }
}

/// Walks only the top level of the object: other values are skipped without being built.
struct FieldSeed<'f> {
    field: &'f str,
    /// Why the visitor stopped, when it was our rule and not JSON syntax.
    problem: &'f Cell<Option<Rejection>>,
}

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FieldSeed<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found: Option<String> = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key != self.field {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            if found.is_some() {
                self.problem.set(Some(Rejection::AmbiguousUser));
                return Err(de::Error::custom("duplicate user field"));
            }
            match map.next_value::<serde_json::Value>()? {
                serde_json::Value::String(s) => found = Some(s),
                _ => {
                    self.problem
                        .set(Some(Rejection::InvalidUser("user is not a string")));
                    return Err(de::Error::custom("user field is not a string"));
                }
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::key::{Key, KeyEncoding, DEMO_SECRET};

    fn one(v: &str) -> std::iter::Once<&[u8]> {
        std::iter::once(v.as_bytes())
    }

    #[test]
    fn headers_we_set_or_that_frame_the_request_are_no_identity() {
        for name in [
            "x-real-ip",
            "X-Forwarded-For",
            "x_forwarded_host",
            "forwarded",
            "host",
            "content-length",
            "transfer-encoding",
            "connection",
            "te",
        ] {
            let e = UserSource::parse(&format!("header:{name}")).unwrap_err();
            assert!(e.contains("the proxy sets"), "{name}: {e}");
        }
        assert!(UserSource::parse("header:x-user-id").is_ok());
    }

    #[test]
    fn parses_every_source() {
        assert_eq!(
            UserSource::parse("header:X-User").unwrap(),
            UserSource::Header(HeaderName::from_static("x-user"))
        );
        assert_eq!(UserSource::parse("bearer").unwrap(), UserSource::Bearer);
        assert_eq!(
            UserSource::parse("json:user").unwrap(),
            UserSource::Json("user".into())
        );
        assert_eq!(
            UserSource::parse("static:svc").unwrap(),
            UserSource::Static("svc".into())
        );
        for bad in [
            "",
            "header:",
            "header:bad name",
            "json:",
            "bearer:x",
            "cookie:a",
            "static:a\nb",
            "header:Authorization",
            "header:proxy-authorization",
            "header:cookie",
            "header:x-my-jwt",
            "header:x_my_jwt",
            "header:proxy_authorization",
        ] {
            assert!(UserSource::parse(bad).is_err(), "{bad:?} should not parse");
        }
        assert_eq!(
            UserSource::parse("header:x-user").unwrap().to_string(),
            "header:x-user"
        );
    }

    #[test]
    fn user_rules() {
        assert!(check_user("alice").is_ok());
        assert!(check_user("Zoë Ångström <z@example.com>").is_ok());
        assert!(check_user(&"a".repeat(256)).is_ok());
        assert_eq!(check_user(&"a".repeat(257)).unwrap_err().status(), 400);
        assert_eq!(check_user("a\u{7f}").unwrap_err().code(), "invalid_user");
        assert_eq!(check_user("a\tb").unwrap_err().code(), "invalid_user");
        // Invisible characters that make one user look like another are refused.
        for sneaky in [
            "ad\u{200b}min",
            "\u{202e}nimda",
            "admin\u{2066}",
            "\u{feff}admin",
            "a\u{ad}b",
            "alice\u{3164}",
            "ali\u{2028}ce",
            "a\u{fe0f}lice",
        ] {
            assert_eq!(
                check_user(sneaky).unwrap_err().code(),
                "invalid_user",
                "{sneaky:?}"
            );
        }
        // Blanks other than the ASCII space are refused; visible non-ASCII letters are not.
        for blank in [
            "\u{a0}admin",
            "alice\u{2800}",
            "a\u{3000}b",
            "alice\u{200a}",
        ] {
            assert!(check_user(blank).is_err(), "{blank:?}");
        }
        assert!(check_user("Zoë Ångström").is_ok());
    }

    #[test]
    fn header_source() {
        assert_eq!(from_header(one(" alice\t")).unwrap(), Some("alice".into()));
        // Only ASCII whitespace is trimmed: the token names exactly the value the upstream sees.
        assert_eq!(
            from_header(one("\u{a0}admin\u{a0}")).unwrap_err().code(),
            "invalid_user",
            "not trimmed to admin, and not a user of its own"
        );
        assert_eq!(
            from_header(one("ad\u{200b}min")).unwrap_err().code(),
            "invalid_user"
        );
        assert_eq!(from_header(one("")).unwrap(), None);
        assert_eq!(from_header(std::iter::empty()).unwrap(), None);
        let two = [b"a".as_slice(), b"b".as_slice()];
        assert_eq!(
            from_header(two.into_iter()).unwrap_err(),
            Rejection::AmbiguousUser
        );
        let latin1 = [0xe9u8];
        assert_eq!(
            from_header(std::iter::once(&latin1[..]))
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn json_source() {
        assert_eq!(
            from_json(br#"{"user":"bob","x":[1,{"y":2}]}"#, "user").unwrap(),
            Some("bob".into())
        );
        assert_eq!(from_json(br#"{"other":"bob"}"#, "user").unwrap(), None);
        // README: a body that is not a JSON object is invalid_json, an empty one included.
        for empty in [&b""[..], b" \r\n"] {
            assert_eq!(from_json(empty, "user").unwrap_err().code(), "invalid_json");
        }
        assert_eq!(from_json(br#"{"user":""}"#, "user").unwrap(), None);
        // Blank is absent too (found by an outside attack: "   " was a user).
        assert_eq!(from_json(br#"{"user":"  \t"}"#, "user").unwrap(), None);
        assert_eq!(
            from_json(br#"{"user":"a","user":"b"}"#, "user").unwrap_err(),
            Rejection::AmbiguousUser
        );
        assert_eq!(
            from_json(br#"{"user":1}"#, "user").unwrap_err().code(),
            "invalid_user"
        );
        assert_eq!(
            from_json(br#"{"user":"a\u0000"}"#, "user")
                .unwrap_err()
                .code(),
            "invalid_user"
        );
        assert_eq!(
            from_json(br#"["user"]"#, "user").unwrap_err().code(),
            "invalid_json"
        );
        assert_eq!(
            from_json(br#"{"user":"a"} x"#, "user").unwrap_err().code(),
            "invalid_json"
        );
        assert_eq!(
            from_json(b"{\"user\":\"\xff\"}", "user")
                .unwrap_err()
                .code(),
            "invalid_json"
        );
        // Nesting deeper than 128 anywhere is refused without recursing; 128 is fine.
        let deep = |k: &str, n: usize| {
            format!(
                "{{\"user\":\"bob\",\"{k}\":{}{}}}",
                "[".repeat(n),
                "]".repeat(n)
            )
        };
        for (k, n) in [("a", 100_000), ("user", 100_000), ("a", 128)] {
            let r = from_json(deep(k, n).as_bytes(), "user");
            assert_eq!(
                r.unwrap_err(),
                Rejection::BadJson("request body nests JSON deeper than 128 levels"),
                "{k} {n}"
            );
        }
        assert_eq!(
            from_json(deep("a", 127).as_bytes(), "user").unwrap(),
            Some("bob".into()),
            "the object itself is level 1"
        );
        // Brackets inside strings do not count.
        let in_string = format!(r#"{{"user":"bob","s":"{}"}}"#, "[".repeat(1000));
        assert_eq!(
            from_json(in_string.as_bytes(), "user").unwrap(),
            Some("bob".into())
        );
        let escaped = format!(r#"{{"user":"bob","s":"\\\"{}"}}"#, "[".repeat(1000));
        assert_eq!(
            from_json(escaped.as_bytes(), "user").unwrap(),
            Some("bob".into())
        );
    }

    /// A value whose scheme reads `Bearer` is verified whatever separates the token (found by an
    /// outside attack: `Bearer\t<forged>` passed as another scheme, unverified, forwarded).
    #[test]
    fn every_spelling_of_the_bearer_scheme_is_verified() {
        let vectors: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/data/test-vectors.json")).unwrap();
        let verifier = BearerVerifier::new(&Key::decode(DEMO_SECRET, KeyEncoding::Text).unwrap());
        let good = vectors["bearer"]["accept"][0]["token"].as_str().unwrap();
        let forged = vectors["bearer"]["reject"][1]["token"].as_str().unwrap();
        for sep in ["\t", ":", "=", ",", "%20", "  "] {
            let e = from_bearer(one(&format!("Bearer{sep}{forged}")), &verifier).unwrap_err();
            assert_eq!(e.code(), "invalid_bearer_token", "{sep:?}");
        }
        for empty in ["Bearer", "bearer ", "BEARER\t"] {
            let e = from_bearer(one(empty), &verifier).unwrap_err();
            assert_eq!(e.code(), "invalid_bearer_token", "{empty:?}");
        }
        let ok = from_bearer(one(&format!("Bearer\t{good}")), &verifier).unwrap();
        assert_eq!(ok.as_deref(), Some("alice"));
        // Another scheme is no identity, and is forwarded untouched.
        assert_eq!(from_bearer(one("Basic YTpi"), &verifier), Ok(None));
        assert_eq!(from_bearer(one("Bearerx abc"), &verifier), Ok(None));
    }

    #[test]
    fn bearer_source_with_shared_vectors() {
        let vectors: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/data/test-vectors.json")).unwrap();
        let verifier = BearerVerifier::new(&Key::decode(DEMO_SECRET, KeyEncoding::Text).unwrap());
        for case in vectors["bearer"]["accept"].as_array().unwrap() {
            let header = format!("Bearer {}", case["token"].as_str().unwrap());
            assert_eq!(
                from_bearer(one(&header), &verifier).unwrap().as_deref(),
                case["user"].as_str(),
                "{}",
                case["why"]
            );
        }
        for case in vectors["bearer"]["reject"].as_array().unwrap() {
            let header = format!("Bearer {}", case["token"].as_str().unwrap());
            let err = from_bearer(one(&header), &verifier).unwrap_err();
            assert_eq!(err.status(), 401, "{}: {err:?}", case["why"]);
        }
        // Not a bearer scheme: not an identity, left for the upstream.
        assert_eq!(
            from_bearer(one("Basic YWxpY2U6eA=="), &verifier).unwrap(),
            None
        );
        assert_eq!(from_bearer(std::iter::empty(), &verifier).unwrap(), None);
    }
}
