//! `jwt-post`: POST JSON through the proxy and show what came back, the token decoded and,
//! with the key, verified. The pure parts (argument checks, report) live here; the binary
//! only parses arguments and does the I/O.

use serde_json::Value;

use crate::signing::verification::decode_parts;

/// Exit codes of `jwt-post`.
pub mod exit {
    /// A response came back with a token (and it verified, when asked to).
    pub const OK: u8 = 0;
    /// Could not connect, or the status was not 2xx.
    pub const REQUEST_FAILED: u8 = 1;
    /// Bad arguments.
    pub const USAGE: u8 = 2;
    /// The response carried no `x-my-jwt`.
    pub const NO_TOKEN: u8 = 3;
    /// The token did not verify with `--secret` or `--jwks`.
    pub const INVALID_TOKEN: u8 = 4;
}

/// Split `K:V` into a header name and value.
pub fn parse_header(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once(':')
        .ok_or_else(|| format!("header {s:?} is not NAME:VALUE"))?;
    let k = k.trim();
    http::HeaderName::from_bytes(k.as_bytes())
        .map_err(|_| format!("{k:?} is not a header name"))?;
    Ok((k.to_string(), v.trim().to_string()))
}

/// `--data` text, or the contents of the file after `@`; it must be JSON.
pub fn load_data(arg: &str) -> Result<Vec<u8>, String> {
    let bytes = match arg.strip_prefix('@') {
        Some(path) => std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?,
        None => arg.as_bytes().to_vec(),
    };
    serde_json::from_slice::<Value>(&bytes).map_err(|e| format!("--data is not JSON: {e}"))?;
    Ok(bytes)
}

/// The decoded header and claims, pretty-printed, or a note that the token is unreadable.
pub fn describe(token: &str) -> String {
    match decode_parts(token) {
        Some((h, c)) => format!(
            "token header: {}\ntoken claims: {}",
            serde_json::to_string_pretty(&h).unwrap_or_default(),
            serde_json::to_string_pretty(&c).unwrap_or_default()
        ),
        None => "token: not a readable JWT".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_data() {
        assert_eq!(
            parse_header("X-User: bob").unwrap(),
            ("X-User".into(), "bob".into())
        );
        assert!(parse_header("nocolon").is_err());
        assert!(parse_header("bad name: x").is_err());
        assert!(load_data("{\"a\":1}").is_ok());
        assert!(load_data("{nope").is_err());
        assert!(load_data("@/nonexistent").is_err());
    }
}
