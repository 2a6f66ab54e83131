//! The live keys: the ring requests mint with, swapped whole when the keyset is reloaded (on
//! SIGHUP, or when the keyset file or a file it names changes, including Kubernetes' `..data`
//! symlink swap), and pruned as retiring keys expire. File reads and stats happen on the
//! background watcher, never on a proxy worker thread.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::config::KeyConfig;
use crate::keyset;
use crate::minting::{Jti, Minted, TokenSettings};
use crate::rotation::{Jwks, KeyRing};
use crate::stats::{Counter, Stats};

/// How often the keyset's files are checked for changes.
pub const POLL_EVERY: Duration = Duration::from_millis(500);

/// The last reload that failed: when (Unix seconds) and why (names files and entries, never
/// key material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadError {
    pub at: u64,
    pub message: String,
}

pub struct LiveKeys {
    ring: RwLock<Arc<KeyRing>>,
    /// `JWT_KEYS`; `None`: a fixed one-key set.
    path: Option<PathBuf>,
    pub jwks_max_age_secs: u64,
    last_error: Mutex<Option<ReloadError>>,
    /// The files of the last set loaded (the keyset file first).
    watched: Mutex<Vec<PathBuf>>,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for LiveKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LiveKeys({:?}, from {:?})", self.ring(), self.path)
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl LiveKeys {
    pub fn new(config: &KeyConfig, tokens: &TokenSettings, stats: Arc<Stats>) -> LiveKeys {
        LiveKeys {
            ring: RwLock::new(Arc::new(KeyRing::new(
                &config.set,
                config.rotation,
                tokens,
                unix_now(),
            ))),
            path: config.path.clone(),
            jwks_max_age_secs: config.jwks_max_age_secs,
            last_error: Mutex::new(None),
            watched: Mutex::new(config.set.files.clone()),
            stats,
        }
    }

    /// The ring now (an `Arc`: a reload never changes a ring a reader holds).
    pub fn ring(&self) -> Arc<KeyRing> {
        self.ring.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Mint with the key that signs at `now`. The read lock is held only while signing (no
    /// await); a reload takes the write lock only to swap the pointer.
    pub fn mint(&self, user: &str, now: u64, jti: &Jti) -> Minted {
        let ring = self.ring.read().unwrap_or_else(|p| p.into_inner());
        ring.minter_at(now).mint(user, now, jti)
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
    }

    /// Read the keyset file again and apply it at `now`. A set that does not load, or that a
    /// rotation rule refuses, changes nothing: the error is logged, counted and kept for the
    /// status page.
    pub fn reload(&self, now: u64) -> Result<(), String> {
        let Some(path) = &self.path else {
            return Err("no JWT_KEYS: the key is fixed (JWT_SECRET*)".into());
        };
        let result =
            keyset::load(path).and_then(|set| Ok((self.ring().reload(&set, now)?, set.files)));
        match result {
            Ok((ring, files)) => {
                *self.watched.lock().unwrap_or_else(|p| p.into_inner()) = files;
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
                self.stats.inc(Counter::KeyReloads);
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
                Ok(())
            }
            Err(message) => {
                log::warn!("keyset not reloaded, keeping the keys in use: {message}");
                self.stats.inc(Counter::KeyReloadFailures);
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(ReloadError {
                    at: now,
                    message: message.clone(),
                });
                Err(message)
            }
        }
    }

    /// Drop retiring keys whose time is up.
    fn prune(&self, now: u64) {
        if let Some(ring) = self.ring().prune(now) {
            log::info!("retired keys dropped; now holding {:?}", ring.kids());
            self.swap(ring);
        }
    }

    /// What identifies the current contents of the watched files and their directories (a
    /// symlink swap changes the target's inode and the directory's mtime; a new file in the
    /// directory, its mtime).
    fn files_signature(&self) -> Vec<String> {
        let Some(path) = &self.path else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = vec![path.clone()];
        paths.extend(
            self.watched
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned(),
        );
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

/// The background service that reloads the keyset on SIGHUP and when its files change, and
/// drops retired keys.
pub struct KeyWatcher(pub Arc<LiveKeys>);

#[async_trait]
impl BackgroundService for KeyWatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use tokio::signal::unix::{signal, SignalKind};
        let keys = &self.0;
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                log::warn!("cannot listen for SIGHUP ({e}); keyset changes are still watched");
                None
            }
        };
        // Signatures are computed on the blocking pool: they read and stat files.
        let sig_of = |k: Arc<LiveKeys>| async move {
            tokio::task::spawn_blocking(move || k.files_signature())
                .await
                .unwrap_or_default()
        };
        let mut seen = sig_of(keys.clone()).await;
        loop {
            let hup_now = tokio::select! {
                _ = tokio::time::sleep(POLL_EVERY) => false,
                Some(_) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
                _ = shutdown.changed() => return,
            };
            let k = keys.clone();
            let now = unix_now();
            if hup_now {
                log::info!("SIGHUP: reloading the keyset");
                let k2 = k.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    if k2.is_reloadable() {
                        let _ = k2.reload(now);
                    } else {
                        log::info!("no JWT_KEYS: nothing to reload");
                    }
                })
                .await;
                seen = sig_of(k).await;
                continue;
            }
            let _ = tokio::task::spawn_blocking({
                let k = k.clone();
                move || k.prune(now)
            })
            .await;
            if !k.is_reloadable() {
                continue;
            }
            let current = sig_of(k.clone()).await;
            if current == seen {
                continue;
            }
            // Changed: let a writer finish (wait until it stays the same for one poll).
            tokio::time::sleep(POLL_EVERY / 2).await;
            let settled = sig_of(k.clone()).await;
            if settled != current {
                continue;
            }
            let _ = tokio::task::spawn_blocking({
                let k = k.clone();
                move || k.reload(unix_now())
            })
            .await;
            seen = sig_of(k).await;
        }
    }
}
