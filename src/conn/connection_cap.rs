//! A cap on the connections one service holds at once, that never turns a new client away. The
//! status service answers a few cheap GETs (metrics scrapes, JWKS fetches, probes); without a
//! cap, clients that open connections and send nothing would each be held for Pingora's 60 s
//! first-read timeout and could use up the process's file descriptors, which the proxy port
//! needs too. At the cap, the oldest connection is closed to make room for the new one: a client
//! that connects and asks at once (every real one) is served, however many idle connections an
//! attacker keeps opening; to close it, the attacker would have to open the cap's worth of
//! connections between its connect and its request.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use tokio::sync::Notify;

/// Connections the status service holds at most.
pub const MAX_STATUS_CONNECTIONS: usize = 256;

pub struct Capped<A> {
    inner: Arc<A>,
    max: usize,
    /// The connections served now, oldest first: an id and what closes it.
    open: Arc<Mutex<Open>>,
}

#[derive(Default)]
struct Open {
    next_id: u64,
    conns: VecDeque<(u64, Arc<Notify>)>,
}

impl<A> Capped<A> {
    pub fn new(inner: A, max: usize) -> Capped<A> {
        Capped {
            inner: Arc::new(inner),
            max,
            open: Arc::new(Mutex::new(Open::default())),
        }
    }
}

/// One connection's place in the list, for as long as it is served.
struct Slot {
    id: u64,
    open: Arc<Mutex<Open>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.conns.retain(|(id, _)| *id != self.id);
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Capped<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let close = Arc::new(Notify::new());
        let slot = {
            let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
            while open.conns.len() >= self.max {
                if let Some((_, oldest)) = open.conns.pop_front() {
                    oldest.notify_one();
                }
            }
            open.next_id += 1;
            let id = open.next_id;
            open.conns.push_back((id, close.clone()));
            Slot {
                id,
                open: self.open.clone(),
            }
        };
        let reused = tokio::select! {
            r = self.inner.process_new(stream, shutdown) => r,
            // Made room for a newer connection: dropping the stream closes it.
            _ = close.notified() => None,
        };
        drop(slot);
        reused
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}
