//! A cap on the connections one service holds at once. The status service answers a few cheap
//! GETs (metrics scrapes, JWKS fetches, probes); without a cap, clients that open connections and
//! send nothing would hold them for Pingora's 60 s first-read timeout each and could use up the
//! process's file descriptors, which the proxy port needs too. Past the cap, a new connection is
//! closed at once.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;

/// Connections the status service holds at most.
pub const MAX_STATUS_CONNECTIONS: usize = 256;

pub struct Capped<A> {
    inner: Arc<A>,
    max: usize,
    open: Arc<AtomicUsize>,
}

impl<A> Capped<A> {
    pub fn new(inner: A, max: usize) -> Capped<A> {
        Capped {
            inner: Arc::new(inner),
            max,
            open: Arc::new(AtomicUsize::new(0)),
        }
    }
}

/// One connection counted for as long as it is served.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Capped<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        if self.open.fetch_add(1, Relaxed) >= self.max {
            self.open.fetch_sub(1, Relaxed);
            return None; // dropped: closed
        }
        let _slot = Slot(self.open.clone());
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}
