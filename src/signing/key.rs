//! Key material: HMAC secrets (decoded under an encoding, from a value or a file), the
//! asymmetric private keys (Ed25519, P-256) read from PEM, their public JWKs, fingerprints and
//! generation. No signing here (`minting`), no verification (`verification`).

use std::fmt;
use std::path::Path;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::os::{read_regular_file, refuse_blank, MAX_KEY_FILE_BYTES};

/// The public demo key shipped in the docs. Anyone can mint tokens with it.
pub const DEMO_SECRET: &str = "a9ddbcaba8c0ac1a0a812dc0c2f08514b23f2db0a68343cb8199ebb38a6d91e4ebfb378e22ad39c2d01d0b4ec9c34aa91056862ddace3fbbd6852ee60c36acbf";

/// Shortest signing key: HS512 needs a key at least as long as its hash (RFC 7518 §3.2).
pub(crate) const MIN_SIGNING_KEY_BYTES: usize = 64;

/// Shortest key for verifying inbound bearer tokens: HS256's minimum (RFC 7518 §3.2).
pub(crate) const MIN_BEARER_KEY_BYTES: usize = 32;

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
        let text = read_regular_file(path, MAX_KEY_FILE_BYTES)?;
        Key::from_text_file(path, &text, encoding)
    }

    /// [`Key::from_file`] for a file already read (`text`), e.g. one a keyset names.
    pub(crate) fn from_text_file(
        path: &Path,
        text: &str,
        encoding: KeyEncoding,
    ) -> Result<Key, String> {
        refuse_blank(path, text)?;
        let text = match encoding {
            KeyEncoding::Text => text
                .strip_suffix("\r\n")
                .or_else(|| text.strip_suffix('\n'))
                .unwrap_or(text),
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
        fingerprint_of(&self.0)
    }

    pub fn is_demo(&self) -> bool {
        self.0 == DEMO_SECRET.as_bytes()
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

/// First 16 hex digits of SHA-256 of `bytes`.
pub(crate) fn fingerprint_of(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The signing algorithms of our tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    Hs512,
    /// Ed25519 (RFC 8037).
    EdDsa,
    /// ECDSA P-256 with SHA-256.
    Es256,
}

impl Alg {
    pub const ALL: [Alg; 3] = [Alg::Hs512, Alg::EdDsa, Alg::Es256];

    /// The JOSE name, exactly (`HS512`, `EdDSA`, `ES256`).
    pub fn parse(s: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Hs512 => "HS512",
            Alg::EdDsa => "EdDSA",
            Alg::Es256 => "ES256",
        }
    }

    /// A public key can be published (HMAC keys are secrets).
    pub(crate) fn is_asymmetric(self) -> bool {
        self != Alg::Hs512
    }

    pub fn jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        match self {
            Alg::Hs512 => jsonwebtoken::Algorithm::HS512,
            Alg::EdDsa => jsonwebtoken::Algorithm::EdDSA,
            Alg::Es256 => jsonwebtoken::Algorithm::ES256,
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key that signs: an HMAC secret or an asymmetric private key. `Debug` shows the algorithm
/// and fingerprint only.
#[derive(Clone)]
pub enum PrivateKey {
    Hs512(Key),
    EdDsa(Box<ed25519_dalek::SigningKey>),
    Es256(Box<p256::ecdsa::SigningKey>),
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({}, {})", self.alg(), self.fingerprint())
    }
}

impl PartialEq for PrivateKey {
    fn eq(&self, other: &PrivateKey) -> bool {
        // The public key determines an asymmetric key; an HMAC fingerprint hashes the secret.
        self.alg() == other.alg() && self.fingerprint() == other.fingerprint()
    }
}

impl PrivateKey {
    pub fn alg(&self) -> Alg {
        match self {
            PrivateKey::Hs512(_) => Alg::Hs512,
            PrivateKey::EdDsa(_) => Alg::EdDsa,
            PrivateKey::Es256(_) => Alg::Es256,
        }
    }

    /// An asymmetric private key from PEM (PKCS#8, `-----BEGIN PRIVATE KEY-----`). The error says
    /// what is wrong, never the key.
    pub(crate) fn from_pem(alg: Alg, pem: &str) -> Result<PrivateKey, String> {
        use ed25519_dalek::pkcs8::DecodePrivateKey as _;
        let bad = |e: &dyn fmt::Display| format!("is not a PEM PKCS#8 {alg} private key ({e})");
        match alg {
            Alg::Hs512 => Err("HS512 keys are secrets, not PEM".into()),
            Alg::EdDsa => ed25519_dalek::SigningKey::from_pkcs8_pem(pem.trim_ascii())
                .map(|k| PrivateKey::EdDsa(Box::new(k)))
                .map_err(|e| bad(&e)),
            Alg::Es256 => p256::ecdsa::SigningKey::from_pkcs8_pem(pem.trim_ascii())
                .map(|k| PrivateKey::Es256(Box::new(k)))
                .map_err(|e| bad(&e)),
        }
    }

    /// A fresh key from the OS-seeded CSPRNG (`jwt-proxy keys new`): 64 random bytes for HS512.
    pub fn generate(alg: Alg) -> PrivateKey {
        match alg {
            Alg::Hs512 => PrivateKey::Hs512(Key((0..MIN_SIGNING_KEY_BYTES)
                .map(|_| rand::random())
                .collect())),
            Alg::EdDsa => PrivateKey::EdDsa(Box::new(ed25519_dalek::SigningKey::from_bytes(
                &rand::random(),
            ))),
            Alg::Es256 => loop {
                // All but a negligible fraction of 32-byte strings are valid scalars.
                let bytes: [u8; 32] = rand::random();
                if let Ok(k) = p256::ecdsa::SigningKey::from_slice(&bytes) {
                    break PrivateKey::Es256(Box::new(k));
                }
            },
        }
    }

    /// The text of a key file for this key: PEM PKCS#8, or hex for an HMAC secret.
    pub(crate) fn to_file_text(&self) -> String {
        use ed25519_dalek::pkcs8::EncodePrivateKey as _;
        let lf = ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF;
        match self {
            PrivateKey::Hs512(k) => {
                let mut s: String = k.bytes().iter().map(|b| format!("{b:02x}")).collect();
                s.push('\n');
                s
            }
            PrivateKey::EdDsa(k) => k
                .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
                .map(|p| p.to_string())
                .unwrap_or_default(),
            PrivateKey::Es256(k) => k
                .to_pkcs8_pem(lf)
                .map(|p| p.to_string())
                .unwrap_or_default(),
        }
    }

    /// The public key's bytes (for asymmetric keys): Ed25519's 32 bytes, P-256's uncompressed
    /// SEC1 point.
    fn public_bytes(&self) -> Option<Vec<u8>> {
        match self {
            PrivateKey::Hs512(_) => None,
            PrivateKey::EdDsa(k) => Some(k.verifying_key().to_bytes().to_vec()),
            PrivateKey::Es256(k) => {
                Some(k.verifying_key().to_sec1_point(false).as_bytes().to_vec())
            }
        }
    }

    /// Identifies the key without revealing it: for an asymmetric key, of its public key (what a
    /// verifier can check against the JWKS); for HMAC, of the secret (as before).
    pub fn fingerprint(&self) -> String {
        match (self, self.public_bytes()) {
            (_, Some(public)) => fingerprint_of(&public),
            (PrivateKey::Hs512(k), None) => k.fingerprint(),
            _ => String::new(),
        }
    }

    /// The public JWK (RFC 7517; OKP per RFC 8037, EC per RFC 7518 §6.2), or `None` for an
    /// HMAC secret, which is never published.
    pub(crate) fn public_jwk(&self, kid: &str) -> Option<Value> {
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let public = self.public_bytes()?;
        let mut jwk = match self {
            PrivateKey::EdDsa(_) => json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&public)}),
            PrivateKey::Es256(_) => json!({
                "kty": "EC", "crv": "P-256", "x": b64(&public[1..33]), "y": b64(&public[33..65]),
            }),
            PrivateKey::Hs512(_) => return None,
        };
        jwk["kid"] = kid.into();
        jwk["alg"] = self.alg().as_str().into();
        jwk["use"] = "sig".into();
        Some(jwk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::key_tool::key_from_args;

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
    fn only_regular_files_are_read_and_a_fifo_never_blocks() {
        let dir = std::env::temp_dir().join(format!("jwt-proxy-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("keyset.yaml");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // No writer ever opens it: a blocking open would hang here.
        let e = read_regular_file(&fifo, 1024).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        let e = read_regular_file(&dir, 1024).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        let e = Key::from_file(&fifo, KeyEncoding::Text).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        let big = dir.join("big");
        std::fs::write(&big, vec![b'a'; 2048]).unwrap();
        assert!(read_regular_file(&big, 1024)
            .unwrap_err()
            .to_string()
            .contains("larger than 1024"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
