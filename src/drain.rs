//! The proxy service's connections, and how a stop or an upgrade drains them without losing a
//! request.
//!
//! Pingora, when it shuts down, wakes every keep-alive connection parked between requests and
//! closes it at once. A client that sent its next request at that moment loses it (it cannot
//! know the request was not processed; a POST is not retried). [`ProxyApp`] instead keeps idle
//! connections through the drain, as HAProxy's `idle-close-on-response` does: each one's next
//! request is served and answered with `Connection: close` (Pingora turns keep-alive off once
//! shutdown has begun), so the client reconnects, to the new process after an upgrade. Only
//! connections still idle after `DRAIN_IDLE_SECS` are closed; by then every client that was
//! active has moved (a connection in the middle of sending a head is not idle: it is given the
//! rest of its head deadline). In-flight requests go on until the grace period ends, and the process
//! exits as soon as its last connection has closed instead of sleeping out the grace period.
//!
//! The same wrapper puts a [`HeadGuard`] on each connection (request-head deadline).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use tokio::time::Instant;

use crate::access_log::AccessLog;
use crate::header_timeout::HeadGuard;
use crate::stats::Stats;

/// How often the drain looks at the open-connection count.
const POLL: Duration = Duration::from_millis(20);

/// The proxy app with guarded, counted connections and a lossless drain.
pub struct ProxyApp<A> {
    inner: Arc<A>,
    head_limit: Duration,
    drain_idle: Duration,
    stats: Arc<Stats>,
    /// Flushed before the process exits.
    access_log: Option<AccessLog>,
}

impl<A> ProxyApp<A> {
    pub fn new(
        inner: A,
        head_limit: Duration,
        drain_idle: Duration,
        stats: Arc<Stats>,
        access_log: Option<AccessLog>,
    ) -> Self {
        ProxyApp {
            inner: Arc::new(inner),
            head_limit,
            drain_idle,
            stats,
            access_log,
        }
    }
}

/// Counts a client connection as open for as long as it lives (dropped on close or cancel).
struct OpenConnection(Arc<Stats>);

impl OpenConnection {
    fn new(stats: &Arc<Stats>) -> OpenConnection {
        stats.open_connections.fetch_add(1, Relaxed);
        OpenConnection(stats.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Relaxed);
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for ProxyApp<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let _open = OpenConnection::new(&self.stats);
        let guarded = HeadGuard::new(stream, self.head_limit, self.stats.clone());
        self.inner.process_new(Box::new(guarded), shutdown).await
    }

    /// Called by Pingora once the listeners have stopped (a stop, or the end of an upgrade's
    /// hand-over).
    async fn cleanup(&self) {
        self.stats.draining.store(true, Relaxed);
        log::info!(
            "draining: {} client connections open; idle ones are kept for {:?}, each next request is answered with Connection: close",
            self.stats.open_connections.load(Relaxed),
            self.drain_idle
        );
        let idle_until = Instant::now() + self.drain_idle;
        while self.stats.open_connections.load(Relaxed) > 0 && Instant::now() < idle_until {
            tokio::time::sleep(POLL).await;
        }
        // A head being received is not idle: let it arrive (the head deadline bounds this).
        while self.stats.heads_in_progress.load(Relaxed) > 0 {
            tokio::time::sleep(POLL).await;
        }
        // Close the connections still idle (Pingora's own cleanup wakes their parked reads).
        self.inner.cleanup().await;
        while self.stats.open_connections.load(Relaxed) > 0 {
            tokio::time::sleep(POLL).await;
        }
        log::info!("drained: every client connection is closed; exiting");
        if let Some(log) = &self.access_log {
            log.flush(Duration::from_secs(10));
        }
        // Pingora would sleep out the rest of the grace period with nothing left to do.
        std::process::exit(0);
    }
}
