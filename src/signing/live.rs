//! The live keys: the ring requests mint with, swapped whole when the keyset is reloaded (on
//! SIGHUP, or when the keyset file or a file it names changes, including Kubernetes' `..data`
//! symlink swap), and pruned as retiring keys expire. The ring's state is saved beside the pid
//! file after each change, so that the next process (an upgrade, a restart) resumes it. File
//! reads, writes and stats happen on the background watcher, never on a proxy worker thread.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::clock::unix_ms;
use crate::observe::stats::{Counter, Stats};
use crate::signing::jwks::Jwks;
use crate::signing::keyset::{self, Keyset};
use crate::signing::minting::{Jti, Minted, TokenSettings};
use crate::signing::ring::KeyRing;
use crate::signing::state::{read_state, write_private};
use crate::signing::KeyConfig;

/// How often the keyset's files are checked for changes.
pub(crate) const POLL_EVERY: Duration = Duration::from_millis(500);

/// The last reload that failed: when (Unix ms) and why (names files and entries, never
/// key material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadError {
    pub at_ms: u64,
    pub message: String,
}

pub struct LiveKeys {
    ring: RwLock<Arc<KeyRing>>,
    /// `JWT_KEYS`; `None`: a fixed one-key set.
    path: Option<PathBuf>,
    /// Where the ring's state is saved (with `JWT_KEYS` only), and what was saved last (a
    /// reload that changes nothing writes nothing: a SIGHUP storm costs no disk writes).
    state_path: Option<PathBuf>,
    saved: Mutex<String>,
    pub jwks_max_age_secs: u64,
    last_error: Mutex<Option<ReloadError>>,
    /// The set last applied (`JWT_KEYS` only); its `files` are what the watcher stats.
    applied: Mutex<Option<Keyset>>,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for LiveKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LiveKeys({:?}, from {:?})", self.ring(), self.path)
    }
}

impl LiveKeys {
    /// The keys at start: with `JWT_KEYS` and the state a previous process saved at
    /// `state_path`, resumed from it (an unreadable state is a first start, with a warning);
    /// refused when the file breaks a rotation rule against it (a held kid with other material).
    pub fn new(
        config: &KeyConfig,
        tokens: &TokenSettings,
        state_path: Option<PathBuf>,
        stats: Arc<Stats>,
    ) -> Result<LiveKeys, String> {
        let now = unix_ms();
        let state = match (&config.path, &state_path) {
            (Some(keyset), Some(p)) => read_state(p, keyset)?,
            _ => None,
        };
        let ring = match (state, &state_path) {
            (Some(state), Some(p)) => {
                KeyRing::resume(&state, &config.set, config.rotation, tokens, now).map_err(|e| {
                    format!(
                        "the keyset against the state of the keys in use ({}): {e}; if the \
                         state file is damaged, remove it to start with every key published \
                         from now",
                        p.display()
                    )
                })?
            }
            _ => KeyRing::new(&config.set, config.rotation, tokens, now),
        };
        Ok(LiveKeys {
            ring: RwLock::new(Arc::new(ring)),
            path: config.path.clone(),
            state_path: config.path.as_ref().and(state_path),
            saved: Mutex::new(String::new()),
            jwks_max_age_secs: config.jwks_max_age_secs,
            last_error: Mutex::new(None),
            applied: Mutex::new(config.path.as_ref().map(|_| config.set.clone())),
            stats,
        })
    }

    /// The ring now (an `Arc`: a reload never changes a ring a reader holds).
    pub fn ring(&self) -> Arc<KeyRing> {
        self.ring.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Mint with the key that signs at `now_ms` (`iat` is its second). The read lock is held
    /// only while signing (no await); a reload takes the write lock only to swap the pointer.
    pub fn mint(&self, user: &str, now_ms: u64, jti: &Jti) -> Minted {
        let ring = self.ring.read().unwrap_or_else(|p| p.into_inner());
        ring.minter_at(now_ms).mint(user, now_ms / 1000, jti)
    }

    pub fn jwks(&self) -> Jwks {
        self.ring().jwks().clone()
    }

    pub fn last_error(&self) -> Option<ReloadError> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn is_reloadable(&self) -> bool {
        self.path.is_some()
    }

    fn swap(&self, ring: KeyRing) {
        *self.ring.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(ring);
        self.save_state();
    }

    /// Save the ring's state for the next process (at start and after each change). A failure
    /// is logged: the next process then starts afresh, as before this file existed.
    pub fn save_state(&self) {
        let (Some(p), Some(keyset)) = (&self.state_path, &self.path) else {
            return;
        };
        let mut state = self.ring().state();
        state["keyset"] = keyset.display().to_string().into();
        let text = state.to_string();
        let mut saved = self.saved.lock().unwrap_or_else(|p| p.into_inner());
        if *saved == text {
            return;
        }
        match write_private(p, text.as_bytes()) {
            Ok(()) => *saved = text,
            Err(e) => log::warn!("cannot save the keys' state to {}: {e}", p.display()),
        }
    }

    /// Read the keyset file again and apply it at `now`. A set that does not load, or that a
    /// rotation rule refuses, changes nothing: the error is logged, counted and kept for the
    /// status page.
    pub fn reload(&self, now: u64) -> Result<(), String> {
        let Some(path) = &self.path else {
            return Err("no JWT_KEYS: the key is fixed (JWT_SECRET*)".into());
        };
        self.apply(path, keyset::load(path), now)
    }

    /// Apply what the keyset file holds now if it differs from the set last applied: the
    /// watcher's first step, for a change made between start-up's read and the watcher's start
    /// (during an upgrade's hand-over, say), which no later poll would see as a change.
    pub(crate) fn catch_up(&self, now: u64) {
        let Some(path) = &self.path else {
            return;
        };
        let loaded = keyset::load(path);
        let unchanged = matches!(
            (&loaded, &*self.applied.lock().unwrap_or_else(|p| p.into_inner())),
            (Ok(set), Some(applied)) if set == applied
        );
        if !unchanged {
            log::info!("the keyset changed since start-up");
            let _ = self.apply(path, loaded, now);
        }
    }

    fn apply(&self, path: &Path, loaded: Result<Keyset, String>, now: u64) -> Result<(), String> {
        let result = loaded.and_then(|set| Ok((self.ring().reload(&set, now)?, set)));
        match result {
            Ok((ring, set)) => {
                log::info!(
                    "keyset {} reloaded: signing {}, keys {:?}",
                    path.display(),
                    ring.signer_at(now),
                    ring.kids()
                        .iter()
                        .map(|(k, _)| k.as_str())
                        .collect::<Vec<_>>()
                );
                self.swap(ring);
                *self.applied.lock().unwrap_or_else(|p| p.into_inner()) = Some(set);
                self.stats.inc(Counter::KeyReloads);
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
                Ok(())
            }
            Err(message) => {
                log::warn!("keyset not reloaded, keeping the keys in use: {message}");
                self.stats.inc(Counter::KeyReloadFailures);
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(ReloadError {
                    at_ms: now,
                    message: message.clone(),
                });
                Err(message)
            }
        }
    }

    /// Drop retiring keys whose time is up.
    pub(crate) fn prune(&self, now: u64) {
        if let Some(ring) = self.ring().prune(now) {
            log::info!("retired keys dropped; now holding {:?}", ring.kids());
            self.swap(ring);
        }
    }

    /// What identifies the current contents of the watched files and their directories (a
    /// symlink swap changes the target's inode and the directory's mtime; a new file in the
    /// directory, its mtime).
    pub(crate) fn files_signature(&self) -> Vec<String> {
        let Some(path) = &self.path else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = vec![path.clone()];
        if let Some(set) = &*self.applied.lock().unwrap_or_else(|p| p.into_inner()) {
            paths.extend(set.files.iter().cloned());
        }
        let mut dirs: Vec<PathBuf> = paths
            .iter()
            .filter_map(|p| p.parent().map(|d| d.to_path_buf()))
            .collect();
        dirs.sort();
        dirs.dedup();
        paths.extend(dirs);
        paths.iter().map(|p| stat_line(p)).collect()
    }
}

fn stat_line(p: &std::path::Path) -> String {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(p) {
        Ok(m) => format!(
            "{} {} {} {} {}",
            m.dev(),
            m.ino(),
            m.mtime(),
            m.mtime_nsec(),
            m.len()
        ),
        Err(e) => format!("{}: {e}", p.display()),
    }
}
