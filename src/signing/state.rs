//! The saved state of the keys in use, on disk: where it lives (beside the pid file, in the
//! private runtime directory), reading it back (failing closed on a damaged one) and writing it
//! whole. Its format is `ring`'s (`KeyRing::state`, `KeyRing::resume`).

use std::path::{Path, PathBuf};

/// The state file of the keyset at `keyset` for the process whose pid file is `pid_file`: in
/// the same private directory, named after the keyset's path (two keysets never share one).
pub fn state_path(pid_file: &Path, keyset: &Path) -> PathBuf {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(keyset.as_os_str().as_encoded_bytes());
    let tag: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    let mut name = pid_file.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".keys-{tag}"));
    pid_file.with_file_name(name)
}

/// The saved state at `p` if there is one for `keyset`; `None` if there is none. A state file
/// that cannot be read is an error (failing closed: see `KeyRing::resume`).
pub(crate) fn read_state(p: &Path, keyset: &Path) -> Result<Option<serde_json::Value>, String> {
    let damaged = |why: String| {
        format!(
            "the state of the keys in use ({}) cannot be read: {why}; remove it to start with \
             every key published from now",
            p.display()
        )
    };
    let text = match crate::os::read_regular_file(p, crate::os::MAX_KEY_FILE_BYTES) {
        Ok(t) => t,
        // Not there (a dangling link is: it is damaged).
        Err(e) if e.is_not_found() && p.symlink_metadata().is_err() => return Ok(None),
        Err(e) => return Err(damaged(e.to_string())),
    };
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| damaged(e.to_string()))?;
    // Named after the keyset's path: a state for another path is not one this process wrote.
    if v["keyset"].as_str() != Some(&keyset.display().to_string()) {
        return Err(damaged("it is the state of another keyset".into()));
    }
    Ok(Some(v))
}

/// Replace `p` whole with `bytes`, mode 0600 (a reader sees the old file or the new).
pub(crate) fn write_private(p: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = p.with_extension(format!("tmp-{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, p)
}
