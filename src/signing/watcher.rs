//! The background service that reloads the keyset on SIGHUP and when its files change, and
//! drops retired keys: file reads and stats run on the blocking pool, never on a proxy worker.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::clock::unix_ms;
use crate::signing::live::{LiveKeys, POLL_EVERY};

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
        // What the files look like now, then what they hold: a change after this is a poll's,
        // one before it (since start-up read the file) is the catch-up's.
        let mut seen = sig_of(keys.clone()).await;
        let _ = tokio::task::spawn_blocking({
            let k = keys.clone();
            move || k.catch_up(unix_ms())
        })
        .await;
        loop {
            let hup_now = tokio::select! {
                _ = tokio::time::sleep(POLL_EVERY) => false,
                Some(_) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
                _ = shutdown.changed() => return,
            };
            let k = keys.clone();
            let now = unix_ms();
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
                move || k.reload(unix_ms())
            })
            .await;
            seen = sig_of(k).await;
        }
    }
}
