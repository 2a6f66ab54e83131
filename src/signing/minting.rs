//! Minting our tokens: the `jti`, the claims, and the signature by the key's algorithm. Pure: no
//! clock, no I/O; callers pass `now` and the `jti`. Everything fixed per key (header, claim
//! fragments, HMAC key schedule) is prepared once, so minting is a few copies and one signature.

use std::cell::RefCell;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha512;

use crate::signing::key::PrivateKey;

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

/// Settings of the tokens we mint (the same for every key).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenSettings {
    /// `exp = iat + ttl`; `None` mints without `exp`.
    pub ttl_secs: Option<u64>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// `nbf = iat - skew`, for verifiers whose clocks run behind; `None` mints without `nbf`.
    pub nbf_skew_secs: Option<u64>,
}

/// What `mint` returns: the compact token and the times it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Minted {
    pub token: String,
    pub iat: u64,
    pub exp: Option<u64>,
}

type HmacSha512 = Hmac<Sha512>;

/// The signing half of a key, ready to sign. The HMAC state stays inline (it is cloned per
/// token, the common case); there is one signer per key held, so the size does not matter.
#[derive(Clone)]
#[allow(clippy::large_enum_variant)]
enum Signer {
    /// The key schedule, cloned per token.
    Hs512(HmacSha512),
    EdDsa(Box<ed25519_dalek::SigningKey>),
    Es256(Box<p256::ecdsa::SigningKey>),
}

impl Signer {
    fn new(key: &PrivateKey) -> Signer {
        match key {
            PrivateKey::Hs512(k) => Signer::Hs512(
                <HmacSha512 as KeyInit>::new_from_slice(k.bytes())
                    .expect("HMAC takes keys of any length"),
            ),
            PrivateKey::EdDsa(k) => Signer::EdDsa(k.clone()),
            PrivateKey::Es256(k) => Signer::Es256(k.clone()),
        }
    }

    /// Append `.` and the base64url signature of `token` (the signing input) to it.
    fn sign_onto(&self, token: &mut String) {
        use ed25519_dalek::Signer as _;
        token.reserve(1 + 86);
        match self {
            Signer::Hs512(mac) => {
                let mut mac = mac.clone();
                mac.update(token.as_bytes());
                let sig = mac.finalize().into_bytes();
                token.push('.');
                URL_SAFE_NO_PAD.encode_string(sig, token);
            }
            Signer::EdDsa(k) => {
                let sig = k.sign(token.as_bytes()).to_bytes();
                token.push('.');
                URL_SAFE_NO_PAD.encode_string(sig, token);
            }
            Signer::Es256(k) => {
                // JWS wants the fixed-size r || s (RFC 7518 §3.4), which `to_bytes` is.
                let sig: p256::ecdsa::Signature =
                    p256::ecdsa::signature::Signer::sign(&**k, token.as_bytes());
                token.push('.');
                URL_SAFE_NO_PAD.encode_string(sig.to_bytes(), token);
            }
        }
    }
}

/// Mints tokens with one key. Built when the key is loaded: the signer, the encoded header (with
/// `alg` and `kid`) and the fixed claim fragments are prepared here.
#[derive(Clone)]
pub struct Minter {
    signer: Signer,
    header_b64: String,
    ttl_secs: Option<u64>,
    nbf_skew_secs: Option<u64>,
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
    /// A minter for `key`; `kid` goes in every token's header when given.
    pub fn new(key: &PrivateKey, kid: Option<&str>, settings: &TokenSettings) -> Minter {
        let mut header = serde_json::Map::new();
        header.insert("alg".into(), key.alg().as_str().into());
        header.insert("typ".into(), "JWT".into());
        if let Some(kid) = kid {
            header.insert("kid".into(), kid.into());
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
            signer: Signer::new(key),
            header_b64: URL_SAFE_NO_PAD.encode(header_json),
            ttl_secs: settings.ttl_secs,
            nbf_skew_secs: settings.nbf_skew_secs,
            extra_claims,
        }
    }

    /// Mint a token for `user` at `now` (Unix seconds) with the given `jti`.
    ///
    /// Claims are compact JSON in the order `iat`, `nbf`, `exp`, `iss`, `aud`, `jti`, `payload`
    /// (absent ones left out), so with no TTL/nbf/iss/aud it matches the known-answer vectors.
    pub fn mint(&self, user: &str, now: u64, jti: &Jti) -> Minted {
        let exp = self.ttl_secs.map(|ttl| now.saturating_add(ttl));
        let nbf = self.nbf_skew_secs.map(|skew| now.saturating_sub(skew));
        CLAIMS_BUF.with(|cell| {
            // Not re-entrant: nothing below calls `mint`, so the borrow is always free.
            let mut buf = cell.borrow_mut();
            buf.clear();
            write_claims(&mut buf, now, nbf, exp, &self.extra_claims, jti, user);
            let claims_len = base64::encoded_len(buf.len(), false).unwrap_or(0);
            let mut token = String::with_capacity(self.header_b64.len() + 1 + claims_len + 1 + 86);
            token.push_str(&self.header_b64);
            token.push('.');
            URL_SAFE_NO_PAD.encode_string(&buf[..], &mut token);
            self.signer.sign_onto(&mut token);
            Minted {
                token,
                iat: now,
                exp,
            }
        })
    }
}

fn write_claims(
    buf: &mut Vec<u8>,
    iat: u64,
    nbf: Option<u64>,
    exp: Option<u64>,
    extra: &str,
    jti: &Jti,
    user: &str,
) {
    use std::io::Write;
    let _ = write!(buf, "{{\"iat\":{iat}");
    if let Some(nbf) = nbf {
        let _ = write!(buf, ",\"nbf\":{nbf}");
    }
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
fn utc_date(unix_secs: u64) -> [u8; 10] {
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::signing::key::{Alg, Key, KeyEncoding};
    use crate::signing::verification::{decode_parts, TokenVerifier};

    pub(crate) fn demo_minter(settings: &TokenSettings) -> Minter {
        Minter::new(&PrivateKey::Hs512(Key::demo()), None, settings)
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
        let settings = TokenSettings {
            ttl_secs: Some(300),
            issuer: Some("jwt-proxy".into()),
            audience: Some("svc \"a\"".into()),
            nbf_skew_secs: Some(30),
        };
        let m = Minter::new(&PrivateKey::Hs512(Key::demo()), Some("k1"), &settings);
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
                "iat": 1_700_000_000u64, "nbf": 1_699_999_970u64, "exp": 1_700_000_300u64,
                "iss": "jwt-proxy",
                "aud": "svc \"a\"", "jti": "07070707070707070707070707070707",
                "payload": {"user": "zoë \"q\"", "date": "2023-11-14"}
            })
        );
    }

    #[test]
    fn known_answer_vectors_for_every_encoding() {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/data/test-vectors.json")).unwrap();
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
            let minted = Minter::new(&PrivateKey::Hs512(key), None, &TokenSettings::default())
                .mint(
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
    fn every_alg_signs_what_an_independent_verifier_accepts() {
        // jsonwebtoken (RustCrypto) checks our signatures against the public JWK alone.
        for alg in Alg::ALL {
            let key = PrivateKey::generate(alg);
            let m = Minter::new(
                &key,
                Some("k"),
                &TokenSettings {
                    ttl_secs: Some(60),
                    ..Default::default()
                },
            );
            let now = crate::clock::unix_ms() / 1000;
            let t = m.mint("alice", now, &Jti::from_bytes([9; 16])).token;
            let (header, _) = decode_parts(&t).unwrap();
            assert_eq!(header["alg"], alg.as_str());
            assert_eq!(header["kid"], "k");
            let verifier = match &key {
                PrivateKey::Hs512(k) => TokenVerifier::default().with_secret(k),
                _ => TokenVerifier::from_jwks_text(
                    &serde_json::json!({"keys": [key.public_jwk("k").unwrap()]}).to_string(),
                )
                .unwrap(),
            };
            let claims = verifier.verify(&t).unwrap_or_else(|e| panic!("{alg}: {e}"));
            assert_eq!(claims["payload"]["user"], "alice");
            // A flipped signature bit fails.
            let mut bad = t.clone().into_bytes();
            let n = bad.len() - 3;
            bad[n] = if bad[n] == b'A' { b'B' } else { b'A' };
            assert!(
                verifier.verify(std::str::from_utf8(&bad).unwrap()).is_err(),
                "{alg}"
            );
        }
    }
}
