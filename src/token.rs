//! Keys, claims and HS512 signing of the tokens we mint, and verification of the bearer tokens
//! clients bring. Pure: no HTTP, no clock, no RNG of its own (callers pass `now` and the `jti`).

use std::cell::RefCell;
use std::fmt;
use std::path::Path;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256, Sha512};

/// The public demo key shipped in the docs. Anyone can mint tokens with it.
pub const DEMO_SECRET: &str = "a9ddbcaba8c0ac1a0a812dc0c2f08514b23f2db0a68343cb8199ebb38a6d91e4ebfb378e22ad39c2d01d0b4ec9c34aa91056862ddace3fbbd6852ee60c36acbf";

/// Inbound bearer tokens larger than this are refused before any parsing.
pub const MAX_BEARER_BYTES: usize = 8 * 1024;

/// Shortest signing key: HS512 needs a key at least as long as its hash (RFC 7518 §3.2).
pub const MIN_SIGNING_KEY_BYTES: usize = 64;

/// Shortest key for verifying inbound bearer tokens: HS256's minimum (RFC 7518 §3.2).
pub const MIN_BEARER_KEY_BYTES: usize = 32;

/// How the configured secret text is turned into key bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyEncoding {
    /// The UTF-8 bytes of the text, as PyJWT does with a `str` secret.
    Text,
    Hex,
    /// Standard or URL-safe alphabet, padded or not.
    Base64,
}

impl KeyEncoding {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Some(Self::Text),
            "hex" => Some(Self::Hex),
            "base64" => Some(Self::Base64),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Hex => "hex",
            Self::Base64 => "base64",
        }
    }
}

/// Decoded HMAC key bytes. Never printed: `Debug` shows only the fingerprint.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(Vec<u8>);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key(fingerprint {})", self.fingerprint())
    }
}

impl Key {
    /// Decode `secret` under `encoding`. The error says what is wrong, never the secret.
    /// `text` keys are taken byte for byte (a blank one is refused); `hex` and `base64` ignore
    /// surrounding ASCII whitespace.
    pub fn decode(secret: &str, encoding: KeyEncoding) -> Result<Key, String> {
        let bytes = match encoding {
            KeyEncoding::Text if !secret.is_empty() && secret.trim().is_empty() => {
                return Err("is blank (only whitespace)".into())
            }
            KeyEncoding::Text => secret.as_bytes().to_vec(),
            KeyEncoding::Hex => decode_hex(secret.trim_ascii())?,
            KeyEncoding::Base64 => {
                let s = secret.trim_ascii();
                [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
                    .iter()
                    .find_map(|e| e.decode(s).ok())
                    .ok_or_else(|| "is not valid base64".to_string())?
            }
        };
        if bytes.is_empty() {
            return Err("is empty".into());
        }
        Ok(Key(bytes))
    }

    /// The public demo key (`DEMO_SECRET` as text).
    pub fn demo() -> Key {
        Key(DEMO_SECRET.as_bytes().to_vec())
    }

    /// Read a key from a file: the one loader for key files (the proxy's `JWT_SECRET_FILE` and
    /// `BEARER_SECRET_FILE`, and the `--secret-file` of `protected-echo` and `jwt-post`). A `text`
    /// key loses one trailing `"\n"` or `"\r\n"` (what editors and `echo` add) and nothing
    /// else; `hex` and `base64` ignore surrounding ASCII whitespace. An empty or blank file is an
    /// error, never an empty key. The error names the file, never its contents.
    pub fn from_file(path: &Path, encoding: KeyEncoding) -> Result<Key, String> {
        let text = read_secret_file(path)?;
        let text = match encoding {
            KeyEncoding::Text => text
                .strip_suffix("\r\n")
                .or_else(|| text.strip_suffix('\n'))
                .unwrap_or(&text),
            KeyEncoding::Hex | KeyEncoding::Base64 => text.trim_ascii(),
        };
        Key::decode(text, encoding).map_err(|p| {
            format!(
                "the key in {} {p} (encoding {})",
                path.display(),
                encoding.as_str()
            )
        })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// First 16 hex digits of SHA-256 of the key bytes: identifies a key without revealing it.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(&self.0);
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn is_demo(&self) -> bool {
        self.0 == DEMO_SECRET.as_bytes()
    }
}

/// The text of a secrets file (a key or a token). Empty or whitespace-only files are refused:
/// a secret that is not there must not read as one.
pub fn read_secret_file(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if text.trim().is_empty() {
        return Err(format!(
            "{} is {}",
            path.display(),
            if text.is_empty() {
                "empty"
            } else {
                "blank (only whitespace)"
            }
        ));
    }
    Ok(text)
}

/// The key given to a command-line tool (`protected-echo`, `jwt-post`): `--secret-file` wins over
/// `--secret`; `None` when neither is given. Errors are usage errors and never show the key.
pub fn key_from_args(
    secret: Option<&str>,
    secret_file: Option<&Path>,
    encoding: &str,
) -> Result<Option<Key>, String> {
    let encoding = KeyEncoding::parse(encoding)
        .ok_or_else(|| format!("--secret-encoding {encoding:?} is not one of text, hex, base64"))?;
    match (secret_file, secret) {
        (Some(path), _) => Key::from_file(path, encoding).map(Some),
        (None, Some(s)) => Key::decode(s, encoding)
            .map(Some)
            .map_err(|p| format!("the key {p} (encoding {})", encoding.as_str())),
        (None, None) => Ok(None),
    }
}

fn decode_hex(s: &str) -> Result<Vec<u8>, String> {
    if s.len() % 2 != 0 {
        return Err("is not valid hex (odd number of digits)".into());
    }
    fn nibble(c: u8) -> Option<u8> {
        (c as char).to_digit(16).map(|d| d as u8)
    }
    s.as_bytes()
        .chunks(2)
        .map(|p| match (nibble(p[0]), nibble(p[1])) {
            (Some(h), Some(l)) => Ok(h << 4 | l),
            _ => Err("is not valid hex".to_string()),
        })
        .collect()
}

/// A token id: 128 bits from the caller's RNG, as 32 lowercase hex digits (no allocation).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Jti([u8; 32]);

impl Jti {
    pub fn from_bytes(raw: [u8; 16]) -> Jti {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 32];
        for (i, b) in raw.iter().enumerate() {
            out[2 * i] = HEX[(b >> 4) as usize];
            out[2 * i + 1] = HEX[(b & 15) as usize];
        }
        Jti(out)
    }

    /// A fresh id from the thread-local CSPRNG (ChaCha, seeded from the OS).
    pub fn random() -> Jti {
        Jti::from_bytes(rand::random())
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Debug for Jti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Jti {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for Jti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Settings of the tokens we mint.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenSettings {
    /// `exp = iat + ttl`; `None` mints without `exp`.
    pub ttl_secs: Option<u64>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub kid: Option<String>,
}

/// What `mint` returns: the compact token and the times it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Minted {
    pub token: String,
    pub iat: u64,
    pub exp: Option<u64>,
}

type HmacSha512 = Hmac<Sha512>;

/// Mints HS512 tokens. Built once at start-up: the key schedule, the encoded header and the
/// fixed claim fragments are prepared here so that minting is a few small copies and one HMAC.
#[derive(Clone)]
pub struct Minter {
    mac: HmacSha512,
    header_b64: String,
    ttl_secs: Option<u64>,
    /// `,"iss":"…","aud":"…"` already JSON-encoded, or empty.
    extra_claims: String,
}

impl fmt::Debug for Minter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Minter")
            .field("header_b64", &self.header_b64)
            .finish()
    }
}

thread_local! {
    // Reused scratch space for the claims JSON, so minting allocates only the token itself.
    static CLAIMS_BUF: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

impl Minter {
    pub fn new(key: &Key, settings: &TokenSettings) -> Minter {
        let mac = <HmacSha512 as KeyInit>::new_from_slice(key.bytes())
            .expect("HMAC takes keys of any length");
        let mut header = serde_json::Map::new();
        header.insert("alg".into(), "HS512".into());
        header.insert("typ".into(), "JWT".into());
        if let Some(kid) = &settings.kid {
            header.insert("kid".into(), kid.clone().into());
        }
        let header_json = serde_json::Value::Object(header).to_string();
        let mut extra_claims = String::new();
        for (name, value) in [("iss", &settings.issuer), ("aud", &settings.audience)] {
            if let Some(v) = value {
                extra_claims.push_str(&format!(
                    ",\"{name}\":{}",
                    serde_json::Value::from(v.as_str())
                ));
            }
        }
        Minter {
            mac,
            header_b64: URL_SAFE_NO_PAD.encode(header_json),
            ttl_secs: settings.ttl_secs,
            extra_claims,
        }
    }

    /// Mint a token for `user` at `now` (Unix seconds) with the given `jti`.
    ///
    /// Claims are compact JSON in the order `iat`, `exp`, `iss`, `aud`, `jti`, `payload`
    /// (absent ones left out), so with no TTL/iss/aud it matches the known-answer vectors.
    pub fn mint(&self, user: &str, now: u64, jti: &Jti) -> Minted {
        let exp = self.ttl_secs.map(|ttl| now.saturating_add(ttl));
        CLAIMS_BUF.with(|cell| {
            // Not re-entrant: nothing below calls `mint`, so the borrow is always free.
            let mut buf = cell.borrow_mut();
            buf.clear();
            write_claims(&mut buf, now, exp, &self.extra_claims, jti, user);
            let claims_len = base64::encoded_len(buf.len(), false).unwrap_or(0);
            let mut token = String::with_capacity(self.header_b64.len() + 1 + claims_len + 1 + 86);
            token.push_str(&self.header_b64);
            token.push('.');
            URL_SAFE_NO_PAD.encode_string(&buf[..], &mut token);
            let mut mac = self.mac.clone();
            mac.update(token.as_bytes());
            let sig = mac.finalize().into_bytes();
            token.push('.');
            URL_SAFE_NO_PAD.encode_string(sig, &mut token);
            Minted {
                token,
                iat: now,
                exp,
            }
        })
    }
}

fn write_claims(buf: &mut Vec<u8>, iat: u64, exp: Option<u64>, extra: &str, jti: &Jti, user: &str) {
    use std::io::Write;
    let _ = write!(buf, "{{\"iat\":{iat}");
    if let Some(exp) = exp {
        let _ = write!(buf, ",\"exp\":{exp}");
    }
    buf.extend_from_slice(extra.as_bytes());
    buf.extend_from_slice(b",\"jti\":\"");
    buf.extend_from_slice(jti.as_str().as_bytes());
    buf.extend_from_slice(b"\",\"payload\":{\"user\":");
    // A String always serializes; the writer is a Vec.
    let _ = serde_json::to_writer(&mut *buf, user);
    buf.extend_from_slice(b",\"date\":\"");
    buf.extend_from_slice(&utc_date(iat));
    buf.extend_from_slice(b"\"}}");
}

/// `YYYY-MM-DD` (UTC) of a Unix time, without allocating.
pub fn utc_date(unix_secs: u64) -> [u8; 10] {
    // Howard Hinnant's days-to-civil algorithm, for days since 1970-01-01.
    let z = (unix_secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = (yoe + era * 400 + i64::from(month <= 2)).clamp(0, 9999) as u32;
    let mut out = *b"0000-00-00";
    for (i, d) in [year / 1000, year / 100 % 10, year / 10 % 10, year % 10]
        .iter()
        .enumerate()
    {
        out[i] = b'0' + *d as u8;
    }
    out[5] = b'0' + (month / 10) as u8;
    out[6] = b'0' + (month % 10) as u8;
    out[8] = b'0' + (day / 10) as u8;
    out[9] = b'0' + (day % 10) as u8;
    out
}

/// Why an inbound bearer token was refused (each is a 401, except `BadUserClaim`: 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BearerError {
    TooLarge,
    Malformed,
    AlgorithmNotAllowed,
    BadSignature,
    Expired,
    NotYetValid,
    /// Verified, but carries neither a `user` nor a `sub` claim.
    NoUser,
    /// Verified, but `user`/`sub` is not a string.
    BadUserClaim,
}

impl BearerError {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::TooLarge => "bearer token larger than 8 KiB",
            Self::Malformed => "bearer token is malformed",
            Self::AlgorithmNotAllowed => {
                "bearer token algorithm not allowed (HS256/HS384/HS512 only)"
            }
            Self::BadSignature => "bearer token signature is invalid",
            Self::Expired => "bearer token has expired",
            Self::NotYetValid => "bearer token is not valid yet (nbf)",
            Self::NoUser => "bearer token has no user or sub claim",
            Self::BadUserClaim => "bearer token user claim is not a string",
        }
    }
}

/// Verifies clients' bearer tokens with the signing key: HS256/384/512 only, `exp`/`nbf`
/// checked when present (no leeway), `alg: none` and every other algorithm refused.
pub struct BearerVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for BearerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerVerifier")
    }
}

#[derive(Deserialize)]
struct BearerClaims {
    user: Option<serde_json::Value>,
    sub: Option<serde_json::Value>,
}

impl BearerVerifier {
    pub fn new(key: &Key) -> BearerVerifier {
        let mut validation = Validation::new(Algorithm::HS512);
        validation.algorithms = vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
        validation.required_spec_claims.clear();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.leeway = 0;
        BearerVerifier {
            // An empty key is refused at config time; fall back to an unusable-but-valid one.
            key: DecodingKey::from_secret(key.bytes())
                .unwrap_or_else(|_| DecodingKey::from_secret(b"\0").expect("non-empty")),
            validation,
        }
    }

    /// The user a valid token names: its `user` claim, else its `sub`.
    pub fn verify(&self, token: &str) -> Result<String, BearerError> {
        use jsonwebtoken::errors::ErrorKind as K;
        if token.len() > MAX_BEARER_BYTES {
            return Err(BearerError::TooLarge);
        }
        let data = jsonwebtoken::decode::<BearerClaims>(token, &self.key, &self.validation)
            .map_err(|e| match e.kind() {
                K::InvalidAlgorithm | K::InvalidAlgorithmName | K::MissingAlgorithm => {
                    BearerError::AlgorithmNotAllowed
                }
                K::InvalidSignature => BearerError::BadSignature,
                K::ExpiredSignature => BearerError::Expired,
                K::ImmatureSignature => BearerError::NotYetValid,
                _ => BearerError::Malformed,
            })?;
        // serde skips ignored claims without checking their UTF-8; a claims set must be
        // UTF-8 JSON (RFC 7519), so refuse the rest. Checked only once the signature is good.
        let claims_b64 = token.split('.').nth(1).unwrap_or_default();
        let claims_utf8 = URL_SAFE_NO_PAD
            .decode(claims_b64)
            .is_ok_and(|c| std::str::from_utf8(&c).is_ok());
        if !claims_utf8 {
            return Err(BearerError::Malformed);
        }
        match data.claims.user.or(data.claims.sub) {
            Some(serde_json::Value::String(u)) => Ok(u),
            Some(_) => Err(BearerError::BadUserClaim),
            None => Err(BearerError::NoUser),
        }
    }
}

/// The decoded header and claims of a token we minted (for display; the signature is not kept).
pub fn decode_parts(token: &str) -> Option<(serde_json::Value, serde_json::Value)> {
    let mut parts = token.split('.');
    let header = URL_SAFE_NO_PAD.decode(parts.next()?).ok()?;
    let claims = URL_SAFE_NO_PAD.decode(parts.next()?).ok()?;
    Some((
        serde_json::from_slice(&header).ok()?,
        serde_json::from_slice(&claims).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo_minter(settings: &TokenSettings) -> Minter {
        Minter::new(
            &Key::decode(DEMO_SECRET, KeyEncoding::Text).unwrap(),
            settings,
        )
    }

    #[test]
    fn key_decoding_errors_name_the_problem() {
        assert_eq!(Key::decode("", KeyEncoding::Text).unwrap_err(), "is empty");
        assert!(Key::decode("abc", KeyEncoding::Hex)
            .unwrap_err()
            .contains("odd"));
        assert!(Key::decode("zz", KeyEncoding::Hex)
            .unwrap_err()
            .contains("hex"));
        assert!(Key::decode("!!!", KeyEncoding::Base64)
            .unwrap_err()
            .contains("base64"));
        assert_eq!(
            Key::decode("", KeyEncoding::Base64).unwrap_err(),
            "is empty"
        );
        assert!(Key::decode(" \t ", KeyEncoding::Text)
            .unwrap_err()
            .contains("blank"));
    }

    #[test]
    fn key_files_trim_only_what_the_encoding_allows() {
        let dir = std::env::temp_dir().join(format!("jwt-proxy-keyfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("key");
        let load = |contents: &str, encoding| {
            std::fs::write(&file, contents).unwrap();
            Key::from_file(&file, encoding)
        };
        let text = |contents: &str| load(contents, KeyEncoding::Text).map(|k| k.bytes().to_vec());
        // text: one trailing "\n" or "\r\n" only; everything else is part of the key.
        assert_eq!(text("k-1\n").unwrap(), b"k-1");
        assert_eq!(text("k-1\r\n").unwrap(), b"k-1");
        assert_eq!(text("k-1").unwrap(), b"k-1");
        assert_eq!(text("k-1\n\n").unwrap(), b"k-1\n");
        assert_eq!(text(" k-1 \n").unwrap(), b" k-1 ");
        // hex and base64: surrounding ASCII whitespace.
        let hex = load(" \t00ff10\r\n\n", KeyEncoding::Hex).unwrap();
        assert_eq!(hex.bytes(), [0, 255, 16]);
        assert_eq!(load("\nAP8Q\n", KeyEncoding::Base64).unwrap(), hex);
        // Empty or blank: an error naming the file, in every encoding.
        for blank in ["", "\n", "\r\n", " \n", "\t\t"] {
            for encoding in [KeyEncoding::Text, KeyEncoding::Hex, KeyEncoding::Base64] {
                let e = load(blank, encoding).unwrap_err();
                assert!(e.contains(&file.display().to_string()), "{e}");
                assert!(e.contains("empty") || e.contains("blank"), "{blank:?}: {e}");
            }
        }
        let e = Key::from_file(&dir.join("missing"), KeyEncoding::Text).unwrap_err();
        assert!(e.starts_with("cannot read"), "{e}");
        // The command-line tools' loader: the file wins, a bad encoding is named.
        std::fs::write(&file, "from-file\n").unwrap();
        let k = key_from_args(Some("from-arg"), Some(&file), "text").unwrap();
        assert_eq!(k.unwrap().bytes(), b"from-file");
        assert_eq!(key_from_args(None, None, "hex"), Ok(None));
        assert!(key_from_args(Some("x"), None, "rot13")
            .unwrap_err()
            .contains("--secret-encoding"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hex_and_base64_agree() {
        let hex = Key::decode("00ff10", KeyEncoding::Hex).unwrap();
        assert_eq!(hex.bytes(), &[0, 255, 16]);
        assert_eq!(Key::decode("AP8Q", KeyEncoding::Base64).unwrap(), hex);
        assert_eq!(Key::decode("00FF10\n", KeyEncoding::Hex).unwrap(), hex);
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = Key::decode("super-secret", KeyEncoding::Text).unwrap();
        let shown = format!("{key:?}");
        assert!(!shown.contains("super-secret"));
        assert!(shown.contains(&key.fingerprint()));
        assert_eq!(key.fingerprint().len(), 16);
    }

    #[test]
    fn utc_date_matches_chrono() {
        for secs in [
            0u64,
            86_399,
            86_400,
            951_782_400,
            1_700_000_000,
            4_102_444_800,
            253_402_300_799,
        ]
        .into_iter()
        .chain((0..2000).map(|i| i * 7_777_777))
        {
            let expected = chrono::DateTime::from_timestamp(secs as i64, 0)
                .unwrap()
                .format("%Y-%m-%d")
                .to_string();
            assert_eq!(
                std::str::from_utf8(&utc_date(secs)).unwrap(),
                expected,
                "{secs}"
            );
        }
    }

    #[test]
    fn claim_shape_with_all_options() {
        let m = demo_minter(&TokenSettings {
            ttl_secs: Some(300),
            issuer: Some("jwt-proxy".into()),
            audience: Some("svc \"a\"".into()),
            kid: Some("k1".into()),
        });
        let jti = Jti::from_bytes([7; 16]);
        let minted = m.mint("zoë \"q\"", 1_700_000_000, &jti);
        assert_eq!(minted.exp, Some(1_700_000_300));
        let (header, claims) = decode_parts(&minted.token).unwrap();
        assert_eq!(
            header,
            serde_json::json!({"alg":"HS512","typ":"JWT","kid":"k1"})
        );
        assert_eq!(
            claims,
            serde_json::json!({
                "iat": 1_700_000_000u64, "exp": 1_700_000_300u64, "iss": "jwt-proxy",
                "aud": "svc \"a\"", "jti": "07070707070707070707070707070707",
                "payload": {"user": "zoë \"q\"", "date": "2023-11-14"}
            })
        );
    }

    #[test]
    fn known_answer_vectors_for_every_encoding() {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../tests/data/test-vectors.json")).unwrap();
        let claims = &v["claims"];
        let mut raw = [0u8; 16];
        let jti_hex = claims["jti"].as_str().unwrap();
        for (i, b) in raw.iter_mut().enumerate() {
            *b = u8::from_str_radix(&jti_hex[2 * i..2 * i + 2], 16).unwrap();
        }
        let jti = Jti::from_bytes(raw);
        for case in v["signing"].as_array().unwrap() {
            let encoding = KeyEncoding::parse(case["encoding"].as_str().unwrap()).unwrap();
            let key = Key::decode(case["secret"].as_str().unwrap(), encoding).unwrap();
            let hex: String = key.bytes().iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(hex, case["key_bytes_hex"].as_str().unwrap());
            let minted = Minter::new(&key, &TokenSettings::default()).mint(
                claims["payload"]["user"].as_str().unwrap(),
                claims["iat"].as_u64().unwrap(),
                &jti,
            );
            assert_eq!(minted.exp, None);
            let (signing_input, signature) = minted.token.rsplit_once('.').unwrap();
            assert_eq!(signing_input, v["signing_input"].as_str().unwrap());
            assert_eq!(
                signature,
                case["signature"].as_str().unwrap(),
                "{encoding:?}"
            );
            assert_eq!(minted.token, case["token"].as_str().unwrap());
        }
    }

    #[test]
    fn jti_unique_over_100k_tokens() {
        let m = demo_minter(&TokenSettings::default());
        let mut seen = std::collections::HashSet::with_capacity(100_000);
        for _ in 0..100_000 {
            let jti = Jti::random();
            let (_, claims) = decode_parts(&m.mint("u", 1, &jti).token).unwrap();
            let carried = claims["jti"].as_str().unwrap().to_string();
            assert_eq!(carried, jti.as_str());
            assert_eq!(carried.len(), 32);
            assert!(seen.insert(carried), "duplicate jti {jti}");
        }
    }

    #[test]
    fn jti_is_128_bits_of_hex() {
        let j = Jti::from_bytes([
            0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0, 0, 0, 0, 0, 0, 0, 0xff,
        ]);
        assert_eq!(j.as_str(), "0123456789abcdef00000000000000ff");
    }

    #[test]
    fn verifier_accepts_our_own_tokens() {
        let m = demo_minter(&TokenSettings {
            ttl_secs: Some(60),
            ..Default::default()
        });
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let minted = m.mint("alice", now, &Jti::random());
        let v = BearerVerifier::new(&Key::decode(DEMO_SECRET, KeyEncoding::Text).unwrap());
        // Our tokens carry the user inside `payload`, not as a top-level claim.
        assert_eq!(v.verify(&minted.token), Err(BearerError::NoUser));
    }

    #[test]
    fn oversized_bearer_is_refused_before_parsing() {
        let v = BearerVerifier::new(&Key::decode(DEMO_SECRET, KeyEncoding::Text).unwrap());
        assert_eq!(
            v.verify(&"a".repeat(MAX_BEARER_BYTES + 1)),
            Err(BearerError::TooLarge)
        );
    }

    #[test]
    fn signed_claims_that_are_not_utf8_are_malformed() {
        // Found by `make fuzz` (bearer): invalid UTF-8 inside a claim we do not read.
        let key = Key::decode(DEMO_SECRET, KeyEncoding::Text).unwrap();
        let sign = |claims: &[u8]| {
            let input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(br#"{"alg":"HS512","typ":"JWT"}"#),
                URL_SAFE_NO_PAD.encode(claims)
            );
            let mut mac = <Hmac<Sha512> as KeyInit>::new_from_slice(key.bytes()).unwrap();
            mac.update(input.as_bytes());
            format!(
                "{input}.{}",
                URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
            )
        };
        let v = BearerVerifier::new(&key);
        assert_eq!(
            v.verify(&sign(br#"{"user":"alice","x":"a"}"#)),
            Ok("alice".into())
        );
        assert_eq!(
            v.verify(&sign(b"{\"user\":\"alice\",\"x\":\"\x9b\"}")),
            Err(BearerError::Malformed)
        );
    }
}
