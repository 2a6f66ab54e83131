//! Which signal stops the process, and how: Pingora's own mapping (SIGQUIT upgrade, SIGTERM
//! graceful stop, SIGINT fast stop) with one step added before a graceful stop. On SIGTERM
//! `/readyz` answers 503 at once while the listeners keep accepting for `SHUTDOWN_DELAY_SECS`;
//! only then does Pingora close them and the drain begin. A balancer (or Kubernetes) that
//! probes readiness takes the replica out of rotation before connections to it are refused.
//! An upgrade (SIGQUIT) needs no such step: the listeners pass to the new process, which
//! answers `/readyz` for the same address.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::observe::stats::Stats;

pub struct DelayedStop {
    pub delay: Duration,
    pub stats: Arc<Stats>,
}

/// A signal stream, or one that never fires when the handler cannot be installed (the process
/// then keeps Pingora's behaviour for the others).
fn watch(kind: SignalKind, name: &str) -> Option<Signal> {
    signal(kind)
        .map_err(|e| log::error!("cannot watch {name}: {e}"))
        .ok()
}

async fn next(s: &mut Option<Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

#[async_trait]
impl ShutdownSignalWatch for DelayedStop {
    async fn recv(&self) -> ShutdownSignal {
        let mut quit = watch(SignalKind::quit(), "SIGQUIT");
        let mut term = watch(SignalKind::terminate(), "SIGTERM");
        let mut int = watch(SignalKind::interrupt(), "SIGINT");
        tokio::select! {
            _ = next(&mut quit) => return ShutdownSignal::GracefulUpgrade,
            _ = next(&mut int) => return ShutdownSignal::FastShutdown,
            _ = next(&mut term) => {}
        }
        if self.delay.is_zero() {
            return ShutdownSignal::GracefulTerminate;
        }
        self.stats.stopping.store(true, Relaxed);
        log::info!(
            "SIGTERM: /readyz answers 503; still accepting for {:?} (SHUTDOWN_DELAY_SECS), then draining",
            self.delay
        );
        // A second SIGTERM skips the rest of the wait; SIGINT still stops at once.
        tokio::select! {
            _ = tokio::time::sleep(self.delay) => ShutdownSignal::GracefulTerminate,
            _ = next(&mut term) => ShutdownSignal::GracefulTerminate,
            _ = next(&mut int) => ShutdownSignal::FastShutdown,
        }
    }
}
