//! The published JWKS (RFC 7517): the document and its entity tag, and the public JWKs read back
//! from a saved state.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The published JWKS document and its entity tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwks {
    pub body: String,
    pub etag: String,
}

impl Jwks {
    /// The document of `keys` (public JWKs), with a strong entity tag of its bytes.
    pub fn of<'a>(keys: impl Iterator<Item = &'a Value>) -> Jwks {
        let keys: Vec<&Value> = keys.collect();
        let body = json!({ "keys": keys }).to_string();
        let digest = Sha256::digest(body.as_bytes());
        let etag = format!(
            "\"{}\"",
            digest[..12]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        Jwks { body, etag }
    }
}

/// A JWK read back from a saved state, rebuilt from its public members only (a state file is
/// not trusted to hold only what this process wrote): `None` unless it is an Ed25519 or P-256
/// public key for this kid and algorithm.
pub(crate) fn public_jwk(jwk: &Value, kid: &str, alg: &str, fingerprint: &str) -> Option<Value> {
    let text = |k: &str| {
        jwk[k].as_str().filter(|v| {
            v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
    };
    if jwk["kid"].as_str() != Some(kid) || jwk["alg"].as_str() != Some(alg) {
        return None;
    }
    let mut out = match (alg, jwk["kty"].as_str(), jwk["crv"].as_str()) {
        ("EdDSA", Some("OKP"), Some("Ed25519")) => {
            json!({"kty": "OKP", "crv": "Ed25519", "x": text("x")?})
        }
        ("ES256", Some("EC"), Some("P-256")) => {
            json!({"kty": "EC", "crv": "P-256", "x": text("x")?, "y": text("y")?})
        }
        _ => return None,
    };
    // The key must be the one its fingerprint names (what the status page showed for it).
    let b64 = |k: &str| {
        URL_SAFE_NO_PAD
            .decode(out[k].as_str().unwrap_or_default())
            .ok()
    };
    let public = match alg {
        "EdDSA" => b64("x")?,
        _ => [vec![4u8], b64("x")?, b64("y")?].concat(),
    };
    if crate::signing::key::fingerprint_of(&public) != fingerprint {
        return None;
    }
    out["kid"] = kid.into();
    out["alg"] = alg.into();
    out["use"] = "sig".into();
    Some(out)
}
