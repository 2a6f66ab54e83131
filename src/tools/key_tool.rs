//! `jwt-proxy keys new --alg EdDSA|ES256|HS512 --kid K [--out FILE]`: write a new key file
//! (mode 0600, never over an existing file) and print the keyset entry that names it.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use clap::Parser;

use crate::signing::key::{Alg, Key, KeyEncoding, PrivateKey};
use crate::signing::keyset::check_kid;

/// Manage signing keys.
#[derive(Parser, Debug)]
#[command(name = "jwt-proxy keys", version)]
enum KeysCommand {
    /// Write a new key file (0600) and print its keyset entry.
    New {
        /// HS512, EdDSA (recommended) or ES256.
        #[arg(long)]
        alg: String,
        /// The key's id (goes in every token it signs).
        #[arg(long)]
        kid: String,
        /// Where to write it (default: <kid>.pem, or <kid>.key for HS512). A keyset names key
        /// files relative to its own directory.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// The keyset entry for a key file.
pub fn entry(kid: &str, alg: Alg, file: &str) -> String {
    let encoding = if alg == Alg::Hs512 {
        "\n    encoding: hex"
    } else {
        ""
    };
    format!(
        "  - kid: {}\n    alg: {alg}\n    file: {}{encoding}\n",
        yaml_text(kid),
        yaml_text(file)
    )
}

/// `v` as a YAML string: as it is where YAML reads it back as that string, else double-quoted
/// (a kid such as `null`, `#x` or `k:` would otherwise load as something else, or not at all).
fn yaml_text(v: &str) -> String {
    match serde_yaml::from_str::<serde_yaml::Value>(v) {
        Ok(serde_yaml::Value::String(s)) if s == v => v.to_string(),
        _ => serde_json::to_string(v).unwrap_or_default(),
    }
}

/// Run `jwt-proxy keys …` (`args` starts with `keys`). Returns the exit code.
pub fn run(args: Vec<OsString>) -> u8 {
    let cmd = match KeysCommand::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let KeysCommand::New { alg, kid, out } = cmd;
    let Some(alg) = Alg::parse(&alg) else {
        eprintln!("jwt-proxy keys new: --alg {alg:?} is not one of HS512, EdDSA, ES256");
        return 2;
    };
    if let Err(e) = check_kid(&kid) {
        eprintln!("jwt-proxy keys new: --kid: {e}");
        return 2;
    }
    // The default file name is the kid's: one naming a directory would write elsewhere (found by
    // an outside attack: `--kid ../../evil` wrote /tmp/evil.key).
    if out.is_none() && kid.contains('/') {
        eprintln!(
            "jwt-proxy keys new: --kid {kid:?} names a directory, so it cannot name the key file: \
             give --out FILE"
        );
        return 2;
    }
    let out = out.unwrap_or_else(|| {
        PathBuf::from(format!(
            "{kid}.{}",
            if alg == Alg::Hs512 { "key" } else { "pem" }
        ))
    });
    let key = PrivateKey::generate(alg);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&out)
        .and_then(|mut f| {
            f.write_all(key.to_file_text().as_bytes())?;
            f.sync_all()
        });
    if let Err(e) = written {
        eprintln!("jwt-proxy keys new: cannot write {}: {e}", out.display());
        return 1;
    }
    eprintln!(
        "wrote {} ({alg}, fingerprint {}); add this entry to the keyset's keys:",
        out.display(),
        key.fingerprint()
    );
    print!("{}", entry(&kid, alg, &out.display().to_string()));
    0
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by an outside attack: kids the rules accept (`null`, `#x`, `*a`, `k:`) printed an
    /// entry that did not load back as that kid.
    #[test]
    fn the_printed_entry_loads_back_as_the_kid() {
        for kid in [
            "k1", "e-1.b_2", "null", "~", "#x", "*a", "&a", "|", "@x", "k:", "?", "[x]", "{x}",
            "123", "true",
        ] {
            let text = entry(kid, Alg::EdDsa, &format!("{kid}.pem"));
            let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
            assert_eq!(doc[0]["kid"].as_str(), Some(kid), "{text}");
            assert_eq!(
                doc[0]["file"].as_str(),
                Some(format!("{kid}.pem").as_str()),
                "{text}"
            );
        }
        assert_eq!(
            entry("e1", Alg::EdDsa, "e1.pem"),
            "  - kid: e1\n    alg: EdDSA\n    file: e1.pem\n"
        );
    }

    #[test]
    fn a_kid_that_names_a_directory_needs_out() {
        let dir = std::env::temp_dir().join(format!("jwt-proxy-keytool-{}", std::process::id()));
        let kid = format!("../{}/evil", dir.file_name().unwrap().to_string_lossy());
        let evil = PathBuf::from(format!("{kid}.key"));
        let args = |extra: &[&str]| -> Vec<OsString> {
            ["keys", "new", "--alg", "HS512", "--kid", &kid]
                .iter()
                .chain(extra)
                .map(OsString::from)
                .collect()
        };
        assert_eq!(run(args(&[])), 2);
        assert!(!evil.exists());
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("given.key");
        assert_eq!(run(args(&["--out", out.to_str().unwrap()])), 0);
        assert!(out.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
