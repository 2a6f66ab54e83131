//! Verifying tokens: the bearer tokens clients bring (`USER_SOURCE=bearer`), and our own tokens
//! (what `protected-echo`, `jwt-post` and the tests check), by a shared secret or by the public
//! keys of a JWKS. The algorithm always comes from the key, never from the token: a token whose
//! header names another algorithm than its key's is refused. Pure: no I/O.

use std::collections::HashMap;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

use crate::signing::key::{Alg, Key};

/// Inbound bearer tokens larger than this are refused before any parsing.
const MAX_BEARER_BYTES: usize = 8 * 1024;

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
        let mut validation = ours(Alg::Hs512);
        validation.algorithms = vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
        BearerVerifier {
            // An empty key is refused at config time; fall back to an unusable-but-valid one.
            key: DecodingKey::from_secret(key.bytes())
                .unwrap_or_else(|_| DecodingKey::from_secret(b"\0").expect("non-empty")),
            validation,
        }
    }

    /// The user a valid token names: its `user` claim, else its `sub` (an empty one names no
    /// one).
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
        // An empty or blank `user` names no user: `sub` then, else no user at all (never an
        // absence, which would give the default user).
        let named = |c: Option<serde_json::Value>| {
            c.filter(|v| v.as_str().is_none_or(|s| !s.trim_ascii().is_empty()))
        };
        match named(data.claims.user).or(named(data.claims.sub)) {
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

/// Checks our own tokens: with a shared HMAC secret (HS512, any `kid`) and/or the public keys
/// of a JWKS (by `kid`, each with its own `alg`). `exp` and `nbf` are checked when present,
/// with no leeway; `iat`, `jti` and `payload.user` must be there (every token we mint has
/// them; `exp` only when `JWT_TTL_SECS` is not 0).
#[derive(Default)]
pub struct TokenVerifier {
    secret: Option<DecodingKey>,
    public: HashMap<String, (DecodingKey, Alg)>,
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kids: Vec<&String> = self.public.keys().collect();
        kids.sort();
        write!(
            f,
            "TokenVerifier(secret: {}, kids: {kids:?})",
            self.secret.is_some()
        )
    }
}

/// Why one of our tokens did not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// Not three base64url parts with a JSON header.
    Malformed,
    /// The header names a `kid` we have no public key for (and no secret applies).
    UnknownKid(String),
    /// The header's `alg` is not the key's.
    WrongAlg { header: String, key: Alg },
    /// Signature, `exp` or `nbf` did not check out.
    Invalid(String),
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::Malformed => f.write_str("not a readable JWT"),
            VerifyError::UnknownKid(k) => write!(f, "no key for kid {k:?}"),
            VerifyError::WrongAlg { header, key } => {
                write!(f, "header alg {header:?} is not its key's ({key})")
            }
            VerifyError::Invalid(e) => f.write_str(e),
        }
    }
}

impl TokenVerifier {
    /// A verifier with a shared HS512 secret.
    pub(crate) fn with_secret(mut self, key: &Key) -> TokenVerifier {
        self.secret = DecodingKey::from_secret(key.bytes()).ok();
        self
    }

    /// Adds the public keys of a JWKS document (entries without a usable `kid`/`alg` are
    /// skipped); returns the kids taken.
    fn add_jwks(&mut self, jwks: &JwkSet) -> Vec<String> {
        let mut taken = Vec::new();
        for jwk in &jwks.keys {
            let kid = jwk.common.key_id.clone();
            let alg = jwk
                .common
                .key_algorithm
                .and_then(|a| Alg::parse(&format!("{a:?}")));
            let (Some(kid), Some(alg)) = (kid, alg) else {
                continue;
            };
            if let (true, Ok(key)) = (alg.is_asymmetric(), DecodingKey::from_jwk(jwk)) {
                self.public.insert(kid.clone(), (key, alg));
                taken.push(kid);
            }
        }
        taken
    }

    /// The JWKS document at `text` as a verifier's keys.
    pub(crate) fn from_jwks_text(text: &str) -> Result<TokenVerifier, String> {
        let set: JwkSet =
            serde_json::from_str(text).map_err(|e| format!("not a JWKS document: {e}"))?;
        let mut v = TokenVerifier::default();
        v.add_jwks(&set);
        Ok(v)
    }

    pub fn has_kid(&self, kid: &str) -> bool {
        self.public.contains_key(kid)
    }

    /// The claims of a token that verifies.
    pub fn verify(&self, token: &str) -> Result<Value, VerifyError> {
        let (header, _) = decode_parts(token).ok_or(VerifyError::Malformed)?;
        let header_alg = header["alg"].as_str().unwrap_or_default().to_string();
        let kid = header["kid"].as_str();
        // A kid the JWKS lists: its key. Otherwise the secret, for an HS512 token; any other
        // token names a kid we do not know (yet: a caller may fetch the JWKS again).
        let (key, alg) = match (kid.and_then(|k| self.public.get(k)), &self.secret) {
            (Some((key, alg)), _) => (key, *alg),
            (None, Some(secret)) if header_alg == Alg::Hs512.as_str() || kid.is_none() => {
                (secret, Alg::Hs512)
            }
            (None, _) => return Err(VerifyError::UnknownKid(kid.unwrap_or_default().into())),
        };
        if header_alg != alg.as_str() {
            return Err(VerifyError::WrongAlg {
                header: header_alg,
                key: alg,
            });
        }
        let claims = jsonwebtoken::decode::<Value>(token, key, &ours(alg))
            .map(|d| d.claims)
            .map_err(|e| VerifyError::Invalid(e.to_string()))?;
        // Every token we mint has these; one without them is not ours.
        let ours = claims["iat"].is_u64()
            && claims["jti"].is_string()
            && claims["payload"]["user"].is_string();
        if !ours {
            return Err(VerifyError::Invalid(
                "not one of our tokens: it needs iat, jti and payload.user".into(),
            ));
        }
        Ok(claims)
    }
}

/// How our tokens are validated: the key's algorithm only, `exp`/`nbf` when present, no leeway.
fn ours(alg: Alg) -> Validation {
    let mut v = Validation::new(alg.jsonwebtoken());
    v.algorithms = vec![alg.jsonwebtoken()];
    v.required_spec_claims.clear();
    v.validate_exp = true;
    v.validate_nbf = true;
    v.validate_aud = false;
    v.leeway = 0;
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::key::{KeyEncoding, PrivateKey, DEMO_SECRET};
    use crate::signing::minting::tests::demo_minter;
    use crate::signing::minting::{Jti, Minter, TokenSettings};
    use hmac::{Hmac, KeyInit, Mac};
    use sha2::Sha512;

    #[test]
    fn verifier_accepts_our_own_tokens() {
        let m = demo_minter(&TokenSettings {
            ttl_secs: Some(60),
            ..Default::default()
        });
        let now = crate::clock::unix_ms() / 1000;
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

    /// An HS512 token of exactly these claim bytes, signed with `key`.
    fn sign_hs512(key: &Key, claims: &[u8]) -> String {
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
    }

    #[test]
    fn signed_claims_that_are_not_utf8_are_malformed() {
        // Found by `make fuzz` (bearer): invalid UTF-8 inside a claim we do not read.
        let key = Key::decode(DEMO_SECRET, KeyEncoding::Text).unwrap();
        let sign = |claims: &[u8]| sign_hs512(&key, claims);
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

    /// Found by an outside attack: `{"user":"","sub":"s"}` gave "no identity" (the default
    /// user, or 401 `identity_required`), not `s`.
    #[test]
    fn an_empty_user_claim_names_no_one() {
        let key = Key::decode(DEMO_SECRET, KeyEncoding::Text).unwrap();
        let sign = |claims: &[u8]| sign_hs512(&key, claims);
        let v = BearerVerifier::new(&key);
        assert_eq!(v.verify(&sign(br#"{"user":"","sub":"s"}"#)), Ok("s".into()));
        assert_eq!(
            v.verify(&sign(br#"{"user":"  ","sub":"s"}"#)),
            Ok("s".into())
        );
        assert_eq!(
            v.verify(&sign(br#"{"user":" ","sub":"\t"}"#)),
            Err(BearerError::NoUser)
        );
        assert_eq!(v.verify(&sign(br#"{"user":""}"#)), Err(BearerError::NoUser));
        assert_eq!(
            v.verify(&sign(br#"{"user":"","sub":""}"#)),
            Err(BearerError::NoUser)
        );
        // Through the identity source: a refusal (401 invalid_bearer_token), never an absence.
        let token = sign(br#"{"user":""}"#);
        let auth = format!("Bearer {token}");
        let r = crate::http::identity::from_bearer(std::iter::once(auth.as_bytes()), &v);
        let r = r.unwrap_err();
        assert_eq!((r.status(), r.code()), (401, "invalid_bearer_token"));
    }

    #[test]
    fn the_known_answer_token_verifies_with_its_secret_only() {
        let v: Value =
            serde_json::from_str(include_str!("../../tests/data/test-vectors.json")).unwrap();
        let case = &v["signing"][1];
        let key = Key::decode(case["secret"].as_str().unwrap(), KeyEncoding::Hex).unwrap();
        let token = case["token"].as_str().unwrap();
        let claims = TokenVerifier::default()
            .with_secret(&key)
            .verify(token)
            .unwrap();
        assert_eq!(claims["payload"]["user"], "username");
        let wrong = Key::decode("wrong", KeyEncoding::Text).unwrap();
        assert!(TokenVerifier::default()
            .with_secret(&wrong)
            .verify(token)
            .is_err());
    }

    #[test]
    fn the_alg_comes_from_the_key_not_from_the_token() {
        use crate::signing::key::Alg;
        // An HS512 token signed with the *public* key bytes of an EdDSA key, named by its kid:
        // the classic alg-confusion forgery. The kid's key is EdDSA, so HS512 is refused.
        let ed = PrivateKey::generate(Alg::EdDsa);
        let jwk = ed.public_jwk("k2").unwrap();
        let jwks = serde_json::json!({"keys": [jwk.clone()]}).to_string();
        let public = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"HS512","typ":"JWT","kid":"k2"}"#),
            URL_SAFE_NO_PAD.encode(br#"{"payload":{"user":"mallory"}}"#)
        );
        let mut mac = <Hmac<Sha512> as KeyInit>::new_from_slice(&public).unwrap();
        mac.update(input.as_bytes());
        let forged = format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        );
        let v = TokenVerifier::from_jwks_text(&jwks).unwrap();
        assert_eq!(
            v.verify(&forged),
            Err(VerifyError::WrongAlg {
                header: "HS512".into(),
                key: Alg::EdDsa
            })
        );
        // Unknown kids are refused without a secret; with a secret, HS512 is checked with it.
        let other = Minter::new(
            &PrivateKey::generate(Alg::EdDsa),
            Some("k9"),
            &TokenSettings::default(),
        )
        .mint("u", 1, &Jti::from_bytes([1; 16]));
        assert_eq!(
            v.verify(&other.token),
            Err(VerifyError::UnknownKid("k9".into()))
        );
        // An EdDSA header on a token whose kid is an ES256 key: refused too.
        let es = PrivateKey::generate(Alg::Es256);
        let v = TokenVerifier::from_jwks_text(
            &serde_json::json!({"keys": [es.public_jwk("k9").unwrap()]}).to_string(),
        )
        .unwrap();
        assert!(matches!(
            v.verify(&other.token),
            Err(VerifyError::WrongAlg { .. })
        ));
    }
}
