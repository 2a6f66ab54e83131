//! The keyset file (`JWT_KEYS`): which keys exist, which one should sign, which are forced out.
//! Parsing and every rule are here, so that start-up, `-t` and a live reload refuse exactly the
//! same files; the one I/O is reading the files it names, through a reader the caller passes.
//!
//! ```yaml
//! signing: k2            # the kid that should sign
//! keys:
//!   - kid: k1
//!     alg: HS512
//!     file: k1.key         # relative to this file's directory
//!     encoding: hex        # HMAC only: text (default), hex, base64
//!   - kid: k2
//!     alg: EdDSA           # or ES256: a PEM PKCS#8 private key file
//!     file: k2.pem
//! revoked: [k0]          # forced out at once: neither signs nor is published
//! ```

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::os::{read_regular_file, MAX_KEY_FILE_BYTES};
use crate::signing::key::{Alg, Key, KeyEncoding, PrivateKey, MIN_SIGNING_KEY_BYTES};

/// Longest `kid`.
const MAX_KID_LEN: usize = 64;
/// Most keys in one set (a keyset is a handful of keys; this bounds what a reload can hold).
const MAX_KEYS: usize = 32;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKeyset {
    signing: Option<String>,
    #[serde(default)]
    keys: Vec<FileKey>,
    #[serde(default)]
    revoked: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKey {
    kid: Option<String>,
    alg: Option<String>,
    file: Option<String>,
    value: Option<String>,
    encoding: Option<String>,
}

/// One key of a loaded set.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyEntry {
    pub kid: String,
    pub key: PrivateKey,
}

/// A keyset that passed every rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Keyset {
    pub keys: Vec<KeyEntry>,
    /// The kid that should sign (one of `keys`).
    pub signing: String,
    /// Kids forced out at once (none of them is in `keys`).
    pub revoked: Vec<String>,
    /// Every file the set was read from (the keyset file first): what a reload watches.
    pub files: Vec<PathBuf>,
}

impl Keyset {
    pub fn get(&self, kid: &str) -> Option<&KeyEntry> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// A one-key set: `JWT_SECRET`/`JWT_SECRET_FILE`, with `JWT_KID` when set.
    pub fn single(key: PrivateKey, kid: Option<String>) -> Keyset {
        let kid = kid.unwrap_or_default();
        Keyset {
            keys: vec![KeyEntry {
                kid: kid.clone(),
                key,
            }],
            signing: kid,
            revoked: Vec::new(),
            files: Vec::new(),
        }
    }
}

/// Longest value an error message repeats: a key file put where YAML was expected (or a secret
/// typed into the wrong field) must never reach a log line or the status page. HS512 keys are
/// at least 64 bytes and PEM keys longer still, so nothing shown can be one.
const MAX_SHOWN: usize = 24;

/// `v` quoted for an error message when it is short printable ASCII, else only its length.
pub fn shown(v: &str) -> String {
    if v.len() <= MAX_SHOWN && v.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        format!("{v:?}")
    } else {
        format!("(a value of {} characters, not shown)", v.chars().count())
    }
}

/// A YAML parser's message without the values it quotes (it quotes whatever it met, key
/// material included), unless they are short enough to be [`shown`].
fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find(['"', '`']) {
        let quote = rest.as_bytes()[i] as char;
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match after.find(quote) {
            Some(j) => {
                let inner = &after[..j];
                if inner.len() <= MAX_SHOWN && inner.bytes().all(|b| b.is_ascii_graphic()) {
                    out.push(quote);
                    out.push_str(inner);
                    out.push(quote);
                } else {
                    out.push_str(&format!(
                        "(a value of {} characters, not shown)",
                        inner.chars().count()
                    ));
                }
                rest = &after[j + 1..];
            }
            None => {
                out.push_str("(a value, not shown)");
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// A `kid` we accept: 1 to 64 printable ASCII characters, no quotes or backslashes (it goes in
/// headers, JSON and log lines as it is).
pub(crate) fn check_kid(kid: &str) -> Result<(), String> {
    if kid.is_empty() || kid.len() > MAX_KID_LEN {
        return Err(format!("kid must be 1 to {MAX_KID_LEN} characters"));
    }
    if !kid
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    {
        return Err(format!(
            "kid {} must be printable ASCII without spaces, quotes or backslashes",
            shown(kid)
        ));
    }
    Ok(())
}

/// Load the keyset at `path` from disk (the one loader: regular files only, bounded in size;
/// errors name the file, never its contents).
pub fn load(path: &Path) -> Result<Keyset, String> {
    let read = |p: &Path| read_regular_file(p, MAX_KEY_FILE_BYTES).map_err(String::from);
    parse(path, &read(path)?, &read)
}

/// Parse and check the keyset text of the file at `path`, reading the key files it names with
/// `read`. The error names the file and the entry, never key material.
pub fn parse(
    path: &Path,
    text: &str,
    read: &dyn Fn(&Path) -> Result<String, String>,
) -> Result<Keyset, String> {
    let at = |what: String| format!("keyset {}: {what}", path.display());
    let file: FileKeyset = serde_yaml::from_str(text).map_err(|e| {
        at(format!(
            "is not a keyset: {}",
            without_values(&e.to_string())
        ))
    })?;
    if file.keys.is_empty() {
        return Err(at("lists no keys".into()));
    }
    if file.keys.len() > MAX_KEYS {
        return Err(at(format!("lists more than {MAX_KEYS} keys")));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut files = vec![path.to_path_buf()];
    let mut keys = Vec::new();
    let mut seen = HashSet::new();
    for (i, entry) in file.keys.iter().enumerate() {
        let kid = entry
            .kid
            .as_deref()
            .ok_or_else(|| at(format!("key #{} has no kid", i + 1)))?;
        check_kid(kid).map_err(|e| at(format!("key #{}: {e}", i + 1)))?;
        let in_entry = |what: String| at(format!("key {kid}: {what}"));
        if !seen.insert(kid.to_string()) {
            return Err(in_entry("listed twice".into()));
        }
        let key = entry_key(entry, dir, read, &mut files).map_err(in_entry)?;
        keys.push(KeyEntry {
            kid: kid.to_string(),
            key,
        });
    }
    let signing = file
        .signing
        .ok_or_else(|| at("has no signing: <kid>".into()))?;
    check_signing_and_revoked(&signing, &file.revoked, &seen).map_err(at)?;
    Ok(Keyset {
        keys,
        signing,
        revoked: file.revoked,
        files,
    })
}

/// The key of one entry: its algorithm, then its material from a file (named relative to the
/// keyset, and added to `files`) or, for HS512, a value.
fn entry_key(
    entry: &FileKey,
    dir: &Path,
    read: &dyn Fn(&Path) -> Result<String, String>,
    files: &mut Vec<PathBuf>,
) -> Result<PrivateKey, String> {
    let alg_name = entry.alg.as_deref().ok_or("has no alg")?;
    let alg = Alg::parse(alg_name)
        .ok_or_else(|| format!("alg {} is not one of HS512, EdDSA, ES256", shown(alg_name)))?;
    match (alg, &entry.file, &entry.value) {
        (_, Some(_), Some(_)) => Err("give file or value, not both".into()),
        (_, None, None) => Err("has no file (or value, for HS512)".into()),
        (Alg::Hs512, file, value) => hs512_key(entry, file, value, dir, read, files),
        (_, None, Some(_)) => Err(format!("an {alg} key is a PEM file: give file, not value")),
        (_, Some(f), None) => {
            if entry.encoding.is_some() {
                return Err("encoding is for HS512 keys only".into());
            }
            let p = dir.join(f);
            let pem = read(&p)?;
            files.push(p.clone());
            PrivateKey::from_pem(alg, &pem).map_err(|e| format!("{} {e}", p.display()))
        }
    }
}

/// An HS512 entry's secret, decoded under its encoding (text by default), long enough.
fn hs512_key(
    entry: &FileKey,
    file: &Option<String>,
    value: &Option<String>,
    dir: &Path,
    read: &dyn Fn(&Path) -> Result<String, String>,
    files: &mut Vec<PathBuf>,
) -> Result<PrivateKey, String> {
    let encoding = match entry.encoding.as_deref() {
        None => KeyEncoding::Text,
        Some(e) => KeyEncoding::parse(e)
            .ok_or_else(|| format!("encoding {} is not one of text, hex, base64", shown(e)))?,
    };
    let secret = match (file, value) {
        (Some(f), _) => {
            let p = dir.join(f);
            let text = read(&p)?;
            files.push(p.clone());
            Key::from_text_file(&p, &text, encoding)?
        }
        (None, Some(v)) => Key::decode(v, encoding)
            .map_err(|p| format!("the value {p} (encoding {})", encoding.as_str()))?,
        (None, None) => return Err("has no file (or value, for HS512)".into()),
    };
    if secret.len() < MIN_SIGNING_KEY_BYTES {
        return Err(format!(
            "the HS512 key is {} bytes; it needs at least {MIN_SIGNING_KEY_BYTES} \
             (RFC 7518 §3.2)",
            secret.len()
        ));
    }
    Ok(PrivateKey::Hs512(secret))
}

/// `signing` names a listed key, and no revoked kid is listed.
fn check_signing_and_revoked(
    signing: &str,
    revoked: &[String],
    listed: &HashSet<String>,
) -> Result<(), String> {
    if !listed.contains(signing) {
        return Err(format!(
            "signing names {}, which is not in keys",
            shown(signing)
        ));
    }
    for kid in revoked {
        if listed.contains(kid) {
            return Err(format!(
                "{} is both in keys and revoked; remove it from one",
                shown(kid)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const HEX64: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn with_files(files: &[(&str, String)]) -> impl Fn(&Path) -> Result<String, String> {
        let map: HashMap<PathBuf, String> = files
            .iter()
            .map(|(n, t)| (Path::new("/keys").join(n), t.clone()))
            .collect();
        move |p: &Path| {
            map.get(p)
                .cloned()
                .ok_or_else(|| format!("cannot read {}: not found", p.display()))
        }
    }

    fn parse_with(text: &str, files: &[(&str, String)]) -> Result<Keyset, String> {
        parse(Path::new("/keys/keyset.yaml"), text, &with_files(files))
    }

    #[test]
    fn a_mixed_set_loads_and_names_its_files() {
        let ed = PrivateKey::generate(Alg::EdDsa);
        let es = PrivateKey::generate(Alg::Es256);
        let set = parse_with(
            "signing: k2\nkeys:\n  - {kid: k1, alg: HS512, file: k1.key, encoding: hex}\n  \
             - {kid: k2, alg: EdDSA, file: k2.pem}\n  - {kid: k3, alg: ES256, file: k3.pem}\n  \
             - {kid: k4, alg: HS512, value: \"0123456789012345678901234567890123456789012345678901234567890123\"}\n\
             revoked: [k0]\n",
            &[
                ("k1.key", format!("{HEX64}\n")),
                ("k2.pem", ed.to_file_text()),
                ("k3.pem", es.to_file_text()),
            ],
        )
        .unwrap();
        assert_eq!(set.signing, "k2");
        assert_eq!(set.get("k2").unwrap().key, ed);
        assert_eq!(set.get("k3").unwrap().key, es);
        assert_eq!(set.get("k1").unwrap().key.alg(), Alg::Hs512);
        assert_eq!(set.revoked, ["k0"]);
        let files: Vec<String> = set.files.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(
            files,
            [
                "/keys/keyset.yaml",
                "/keys/k1.key",
                "/keys/k2.pem",
                "/keys/k3.pem"
            ]
        );
    }

    #[test]
    fn every_rule_refuses_the_whole_set_with_a_reason() {
        let ed = PrivateKey::generate(Alg::EdDsa).to_file_text();
        let files = [
            ("k1.key", HEX64.to_string()),
            ("ed.pem", ed.clone()),
            ("short.key", "too short\n".to_string()),
        ];
        for (text, why) in [
            ("signing: [", "expected a string"),
            ("keys: {", "keys"),
            ("signing: k1\n", "lists no keys"),
            ("keys:\n  - {kid: k1, alg: HS512, file: k1.key, encoding: hex}\n", "has no signing"),
            ("signing: k9\nkeys:\n  - {kid: k1, alg: HS512, file: k1.key, encoding: hex}\n", "not in keys"),
            ("signing: k1\nkeys:\n  - {kid: k1, alg: RS256, file: k1.key}\n", "is not one of HS512"),
            ("signing: k1\nkeys:\n  - {kid: k1, alg: hs512, file: k1.key}\n", "is not one of HS512"),
            ("signing: k1\nkeys:\n  - {kid: k1, alg: HS512, file: missing.key}\n", "cannot read /keys/missing.key"),
            ("signing: k1\nkeys:\n  - {kid: k1, alg: HS512, value: short}\n", "needs at least 64"),
            ("signing: k1\nkeys:\n  - {kid: k1, alg: HS512, file: short.key}\n", "needs at least 64"),
            ("signing: k1\nkeys:\n  - {kid: k1, alg: HS512, file: k1.key, encoding: rot13}\n", "encoding"),
            ("signing: k1\nkeys:\n  - {kid: k1, alg: EdDSA, file: k1.key}\n", "not a PEM PKCS#8 EdDSA"),
            ("signing: k1\nkeys:\n  - {kid: k1, alg: ES256, file: ed.pem}\n", "not a PEM PKCS#8 ES256"),
            ("signing: k1\nkeys:\n  - {kid: k1, alg: EdDSA, value: x}\n", "give file, not value"),
            ("signing: k1\nkeys:\n  - {kid: k1, alg: EdDSA, file: ed.pem, encoding: hex}\n", "HS512 keys only"),
            ("signing: k1\nkeys:\n  - {kid: k1, alg: HS512, file: k1.key, value: x}\n", "not both"),
            ("signing: k1\nkeys:\n  - {kid: k1, alg: HS512}\n", "has no file"),
            ("signing: k1\nkeys:\n  - {alg: HS512, file: k1.key}\n", "has no kid"),
            ("signing: k1\nkeys:\n  - {kid: \"a b\", alg: HS512, file: k1.key}\n", "printable ASCII"),
            ("signing: k1\nkeys:\n  - {kid: k1, alg: EdDSA, file: ed.pem}\n  - {kid: k1, alg: EdDSA, file: ed.pem}\n", "listed twice"),
            ("signing: k1\nkeys:\n  - {kid: k1, alg: EdDSA, file: ed.pem}\nrevoked: [k1]\n", "both in keys and revoked"),
            ("signing: k1\nkeys:\n  - {kid: k1, alg: EdDSA, file: ed.pem, extra: 1}\n", "unknown field"),
            ("signin: k1\nkeys:\n  - {kid: k1, alg: EdDSA, file: ed.pem}\n", "unknown field"),
        ] {
            let e = parse_with(text, &files).unwrap_err();
            assert!(e.contains(why), "{text:?}: {e}");
            assert!(e.starts_with("keyset /keys/keyset.yaml"), "{e}");
            assert!(!e.contains(HEX64) && !e.contains("PRIVATE KEY"), "never the key: {e}");
        }
    }

    #[test]
    fn no_error_repeats_key_material() {
        let ed = PrivateKey::generate(Alg::EdDsa).to_file_text();
        let files = [("ed.pem", ed.clone()), ("k1.key", HEX64.to_string())];
        let pem_line = ed.lines().nth(1).unwrap().to_string();
        // A key file where the keyset was expected, and secrets typed into every field.
        for text in [
            HEX64.to_string(),
            ed.clone(),
            format!("signing: k1\nkeys:\n  - {{kid: k1, alg: EdDSA, file: ed.pem}}\nrevoked: {HEX64}\n"),
            format!("signing: k1\nkeys:\n  - {{kid: k1, alg: {HEX64}, file: ed.pem}}\n"),
            format!("signing: k1\nkeys:\n  - {{kid: k1, alg: HS512, file: k1.key, encoding: {HEX64}}}\n"),
            format!("signing: {HEX64}\nkeys:\n  - {{kid: k1, alg: EdDSA, file: ed.pem}}\n"),
            format!("{HEX64}: 1\nsigning: k1\n"),
            format!("signing: k1\nkeys:\n  - {{kid: \"{HEX64} x\", alg: EdDSA, file: ed.pem}}\n"),
        ] {
            let e = parse_with(&text, &files).unwrap_err();
            assert!(!e.contains(&HEX64[..MAX_SHOWN + 1]), "{e}");
            assert!(!e.contains(&pem_line[..MAX_SHOWN + 1]), "{e}");
        }
        // Short names still read well.
        let e = parse_with(
            "signing: k1\nkeys:\n  - {kid: k1, alg: RS256, file: ed.pem}\n",
            &files,
        );
        assert!(e.unwrap_err().contains("alg \"RS256\" is not one of"));
    }
}
