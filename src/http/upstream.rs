//! Where requests go: the peer built from `UPSTREAM_URL`, re-resolved while the proxy runs so
//! that an upstream whose address changes (a container restarted under compose, a pod
//! rescheduled) is followed without a restart. The name is looked up again every
//! `REFRESH_EVERY`, and at once after a failed connect; a failed lookup keeps the last good
//! address. Lookups run on a background service, never on a proxy worker thread.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use pingora::prelude::HttpPeer;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::upstreams::peer::HttpUpstreamRequestPolicy;
use tokio::sync::Notify;

use crate::config::{Config, UpstreamUrl};
use crate::observe::stats::{Counter, Stats};

/// How often the upstream's name is looked up again.
const REFRESH_EVERY: Duration = Duration::from_secs(10);
/// Longest wait for one lookup.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// Upstream connections idle in the pool longer than this are closed (below common keep-alive
/// timeouts of upstream servers, so we rarely reuse a connection the upstream is closing).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Upstream({} at {})", self.url.url(), self.addr())
    }
}

pub struct Upstream {
    pub url: UpstreamUrl,
    /// The address in use and its peer.
    current: RwLock<(SocketAddr, HttpPeer)>,
    /// The host is an IP address: nothing to look up.
    literal: bool,
    connect_timeout: Duration,
    timeout: Duration,
    refresh_now: Notify,
    /// One lookup at a time, so that a slow, older answer never overwrites a newer one.
    lookup: tokio::sync::Mutex<()>,
    stats: Arc<Stats>,
}

impl Upstream {
    /// `addr`: the address the name resolved to at start-up.
    pub fn new(config: &Config, addr: SocketAddr, stats: Arc<Stats>) -> Upstream {
        let mut u = Upstream {
            url: config.upstream.clone(),
            current: RwLock::new((addr, HttpPeer::new(addr, false, String::new()))),
            literal: config.upstream.host.parse::<std::net::IpAddr>().is_ok(),
            connect_timeout: config.connect_timeout,
            timeout: config.upstream_timeout,
            refresh_now: Notify::new(),
            lookup: tokio::sync::Mutex::new(()),
            stats,
        };
        // The peer's options come from the fields above.
        *u.current.get_mut().unwrap_or_else(|p| p.into_inner()) = (addr, u.make_peer(addr));
        u
    }

    fn make_peer(&self, addr: SocketAddr) -> HttpPeer {
        let mut peer = HttpPeer::new(addr, false, String::new());
        let o = &mut peer.options;
        o.connection_timeout = Some(self.connect_timeout);
        o.total_connection_timeout = Some(self.connect_timeout);
        o.read_timeout = Some(self.timeout);
        o.write_timeout = Some(self.timeout);
        o.idle_timeout = Some(POOL_IDLE_TIMEOUT);
        // Never forward an upgrade handshake: a tunnel would carry requests past the token.
        o.http_upstream_request_policy = HttpUpstreamRequestPolicy::deny_upgrades();
        peer
    }

    /// The peer for one request.
    pub fn peer(&self) -> Box<HttpPeer> {
        Box::new(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .1
                .clone(),
        )
    }

    pub fn addr(&self) -> SocketAddr {
        self.current.read().unwrap_or_else(|p| p.into_inner()).0
    }

    /// The host is an IP address, never looked up.
    pub(crate) fn is_literal(&self) -> bool {
        self.literal
    }

    /// A connect failed: look the name up again soon.
    pub(crate) fn connect_failed(&self) {
        if !self.literal {
            self.refresh_now.notify_one();
        }
    }

    /// Look the name up now; `true` if the address changed.
    pub(crate) async fn refresh(&self) -> bool {
        if self.literal {
            return false;
        }
        let _one_at_a_time = self.lookup.lock().await;
        let target = (self.url.host.as_str(), self.url.port);
        let found = tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host(target)).await;
        let addr = match found {
            Ok(Ok(mut addrs)) => addrs.next(),
            _ => None,
        };
        let Some(addr) = addr else {
            self.stats.inc(Counter::UpstreamResolveFailures);
            log::warn!("cannot resolve {}; keeping {}", self.url.host, self.addr());
            return false;
        };
        if addr == self.addr() {
            return false;
        }
        log::info!("upstream {} now resolves to {addr}", self.url.host);
        let peer = self.make_peer(addr);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = (addr, peer);
        true
    }
}

/// The background service that keeps the upstream's address current.
pub struct Refresher(pub Arc<Upstream>);

#[async_trait]
impl BackgroundService for Refresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        if self.0.literal {
            return;
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep(REFRESH_EVERY) => {}
                _ = self.0.refresh_now.notified() => {}
                _ = shutdown.changed() => return,
            }
            self.0.refresh().await;
        }
    }
}
