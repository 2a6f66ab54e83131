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
//! The same wrapper puts a [`HeadGuard`] on each connection (request-head deadline), and runs
//! Pingora's HTTP/1 keep-alive loop itself with one change: a connection with nothing of a next
//! request received waits for it here (`header_timeout::wait_for_request`), in a future of a few
//! hundred bytes, instead of inside Pingora's request future, which is allocated whole (tens of
//! KiB) for as long as the connection is parked in it. Idle keep-alive connections are most of
//! what a proxy in front of many clients holds (`loadtest/idle-memory.sh`).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::conn::header_timeout::{self, HeadGuard};
use crate::observe::access_log::AccessLog;
use crate::observe::stats::Stats;

/// How often the drain looks at the open-connection count.
const POLL: Duration = Duration::from_millis(20);

/// The proxy app with guarded, counted connections and a lossless drain.
pub struct ProxyApp<A> {
    inner: Arc<A>,
    head_limit: Duration,
    drain_idle: Duration,
    /// How long a connection may idle between requests (`CLIENT_KEEPALIVE_SECS`).
    keepalive: Duration,
    stats: Arc<Stats>,
    /// Flushed before the process exits.
    access_log: Option<AccessLog>,
    /// Set at the end of the drain's idle window: connections waiting here close.
    close_idle: watch::Sender<bool>,
}

impl<A> ProxyApp<A> {
    pub fn new(
        inner: A,
        head_limit: Duration,
        drain_idle: Duration,
        keepalive: Duration,
        stats: Arc<Stats>,
        access_log: Option<AccessLog>,
    ) -> Self {
        ProxyApp {
            inner: Arc::new(inner),
            head_limit,
            drain_idle,
            keepalive,
            stats,
            access_log,
            close_idle: watch::channel(false).0,
        }
    }

    /// Wait for the next request on an idle connection: false when it should be closed (the
    /// client closed it, the keep-alive timeout or the head deadline passed, the drain ended).
    async fn next_request(&self, stream: &mut Stream) -> bool {
        let mut close = self.close_idle.subscribe();
        if *close.borrow() {
            return false;
        }
        tokio::select! {
            got = header_timeout::wait_for_request(stream) => got,
            _ = tokio::time::sleep(self.keepalive) => false,
            _ = close.changed() => false,
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
impl<A: HttpServerApp + Send + Sync + 'static> ServerApp for ProxyApp<A> {
    /// Pingora's HTTP/1 loop (`ServerApp for HttpServerApp` in pingora-core 0.9.1; we serve
    /// neither h2c nor custom protocols), waiting for each request outside its request future.
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let _open = OpenConnection::new(&self.stats);
        let mut stream: Stream =
            Box::new(HeadGuard::new(stream, self.head_limit, self.stats.clone()));
        let mut settings: Option<HttpPersistentSettings> = None;
        let mut first = true;
        loop {
            let idle = stream
                .as_any()
                .downcast_ref::<HeadGuard>()
                .is_some_and(HeadGuard::is_idle);
            if idle && !self.next_request(&mut stream).await {
                return None;
            }
            let mut session = ServerSession::new_http1(stream);
            if first {
                first = false;
                if *shutdown.borrow() {
                    // Stop the client from reusing a connection to a process that is stopping.
                    session.set_keepalive(None);
                } else {
                    session.set_keepalive(Some(self.keepalive.as_secs()));
                }
                session.set_keepalive_reuses_remaining(
                    self.inner
                        .server_options()
                        .and_then(|o| o.keepalive_request_limit),
                );
            } else if let Some(s) = settings.take() {
                s.apply_to_session(&mut session);
            }
            let reused = self.inner.process_new_http(session, shutdown).await?;
            (stream, settings) = reused.consume();
        }
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
        // Close the connections still idle: ours, and any parked in Pingora's own read (its
        // cleanup wakes them).
        self.close_idle.send_replace(true);
        self.inner.http_cleanup().await;
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
