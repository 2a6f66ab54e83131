//! What jwt-proxy asks of the operating system: its user id, a private runtime directory, and the
//! one hardened way secret files are read. Imports nothing of the crate, so every layer above
//! may use it.

use std::fmt;
use std::path::{Path, PathBuf};

/// `/tmp/jwt-proxy-<uid>`: where `pid_file` and `upgrade_sock` go unless the file says otherwise.
pub(crate) fn default_runtime_dir() -> Result<PathBuf, String> {
    Ok(PathBuf::from(format!(
        "/tmp/jwt-proxy-{}",
        effective_uid()?
    )))
}

/// This process's effective user id (Linux: from `/proc/self/status`, no unsafe code needed).
pub fn effective_uid() -> Result<u32, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot tell this process's user id (/proc/self/status: {e})"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
        .ok_or_else(|| "cannot tell this process's user id (/proc/self/status)".to_string())
}

pub fn private_dir(dir: &Path, uid: u32) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let shown = dir.display();
    let meta = match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("cannot create the directory {shown}: {e}"))?;
            std::fs::symlink_metadata(dir).map_err(|e| format!("cannot inspect {shown}: {e}"))?
        }
        Err(e) => return Err(format!("cannot inspect {shown}: {e}")),
        Ok(m) => m,
    };
    if !meta.is_dir() {
        return Err(format!(
            "{shown} is not a directory (a symbolic link is not accepted)"
        ));
    }
    if meta.uid() != uid {
        return Err(format!(
            "the directory {shown} belongs to uid {}, not to this user (uid {uid}); another user \
             could replace the pid file or the upgrade socket: use a directory of your own",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "the directory {shown} is writable by group or others (mode {:o}); they could \
             replace the pid file or the upgrade socket: use a directory only this user can \
             write (chmod 700)",
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// Why a secret file could not be read. Its text names the file and what to do, never the
/// file's contents; callers that only show it take it as a `String`.
#[derive(Debug)]
pub enum FileError {
    /// Opening or reading failed; `hint` says what to do about a permission error.
    Io {
        path: PathBuf,
        error: std::io::Error,
        hint: String,
    },
    /// A FIFO, a device or a directory: refused, never waited on.
    NotRegular(PathBuf),
    /// Opened by its path yet linked nowhere: a bind mount of a file since replaced.
    Replaced(PathBuf),
    TooLarge(PathBuf, u64),
    /// Empty (`true`) or only whitespace.
    Blank(PathBuf, bool),
}

impl FileError {
    /// No such file (a state file that was never written, say).
    pub fn is_not_found(&self) -> bool {
        matches!(self, FileError::Io { error, .. } if error.kind() == std::io::ErrorKind::NotFound)
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileError::Io { path, error, hint } => {
                write!(f, "cannot read {}: {error}{hint}", path.display())
            }
            FileError::NotRegular(path) => {
                write!(f, "cannot read {}: not a regular file", path.display())
            }
            FileError::Replaced(path) => write!(
                f,
                "cannot read {}: the file was replaced or deleted after it was mounted (link \
                 count 0), so this is the old contents: write the new contents into the same \
                 file (`cat NEW > FILE`, not `mv`), or recreate the container",
                path.display()
            ),
            FileError::TooLarge(path, max) => {
                write!(f, "{} is larger than {max} bytes", path.display())
            }
            FileError::Blank(path, empty) => write!(
                f,
                "{} is {}",
                path.display(),
                if *empty {
                    "empty"
                } else {
                    "blank (only whitespace)"
                }
            ),
        }
    }
}

impl std::error::Error for FileError {}

impl From<FileError> for String {
    fn from(e: FileError) -> String {
        e.to_string()
    }
}

/// The text of a secrets file (a key or a token). Empty or whitespace-only files are refused:
/// a secret that is not there must not read as one.
pub(crate) fn read_secret_file(path: &Path) -> Result<String, FileError> {
    let text = read_regular_file(path, MAX_KEY_FILE_BYTES)?;
    refuse_blank(path, &text)?;
    Ok(text)
}

/// What to do about a file this process may not read. The usual case is a container: a compose
/// secret or a bind mount keeps the host file's owner and mode, and the image runs as uid 10001.
fn permission_hint(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let uid = effective_uid().map_or("?".to_string(), |u| u.to_string());
    let whose = std::fs::metadata(path).map_or(String::new(), |m| {
        format!(" (owner uid {}, mode {:04o})", m.uid(), m.mode() & 0o7777)
    });
    let me = std::env::args_os()
        .next()
        .and_then(|a| {
            Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "this program".into());
    format!(
        ": {me} runs as uid {uid} and must be able to read the file{whose}: make uid {uid} \
         its owner and keep it private (`chown {uid} FILE && chmod 0400 FILE`); a compose \
         secret or a bind mount keeps the host file's owner and mode"
    )
}

/// Largest key, token or keyset file read.
pub(crate) const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// The text of a regular file of at most `max` bytes: the one way key material is read. A FIFO,
/// a device or a directory is refused, never waited on (opened non-blocking, then checked); the
/// error names the file, never its contents.
pub(crate) fn read_regular_file(path: &Path, max: u64) -> Result<String, FileError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |error: std::io::Error| FileError::Io {
        path: path.to_path_buf(),
        hint: match error.kind() {
            std::io::ErrorKind::PermissionDenied => permission_hint(path),
            _ => String::new(),
        },
        error,
    };
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io)?;
    let meta = f.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(FileError::NotRegular(path.to_path_buf()));
    }
    // Opened by its path yet linked nowhere: a bind mount (a compose secret) of a file that was
    // since replaced on the host, by a rename or a delete. Its contents are the old key.
    if std::os::unix::fs::MetadataExt::nlink(&meta) == 0 {
        return Err(FileError::Replaced(path.to_path_buf()));
    }
    let mut text = String::new();
    f.take(max + 1).read_to_string(&mut text).map_err(io)?;
    if text.len() as u64 > max {
        return Err(FileError::TooLarge(path.to_path_buf(), max));
    }
    Ok(text)
}

/// An empty or whitespace-only secret is an error, never a secret.
pub fn refuse_blank(path: &Path, text: &str) -> Result<(), FileError> {
    if text.trim().is_empty() {
        return Err(FileError::Blank(path.to_path_buf(), text.is_empty()));
    }
    Ok(())
}
