//! A bare Pingora pass-through with the same dependencies as jwt-proxy: the baseline that
//! `loadtest/compare.sh` measures jwt-proxy against. No token, no stats, no logging.
//! Env: LISTEN (127.0.0.1:8180), UPSTREAM (127.0.0.1:9000), THREADS (1), READ_BUFFER (bytes
//! of each client connection's read buffer; unset: Pingora's default, 64 KiB).

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

// glibc malloc showed up at ~13% of the proxy's CPU in profiles; mimalloc is cheaper per call.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Passthrough {
    peer: HttpPeer,
}

#[async_trait]
impl ProxyHttp for Passthrough {
    type CTX = ();
    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _s: &mut Session, _c: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(self.peer.clone()))
    }
}

fn main() {
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let upstream: std::net::SocketAddr =
        env("UPSTREAM", "127.0.0.1:9000").parse().expect("UPSTREAM");
    let conf = ServerConf {
        threads: env("THREADS", "1").parse().expect("THREADS"),
        work_stealing: env("WORK_STEALING", "true") == "true",
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut svc = http_proxy_service(
        &server.configuration,
        Passthrough {
            peer: HttpPeer::new(upstream, false, String::new()),
        },
    );
    let mut listener = pingora::listeners::ListenerConfig::tcp(env("LISTEN", "127.0.0.1:8180"));
    if let Ok(read) = std::env::var("READ_BUFFER") {
        let read = read.parse().expect("READ_BUFFER");
        listener = listener
            .l4_buffer(pingora::protocols::l4::stream::L4BufferSettings::default().read(read));
    }
    svc.add_listener(listener);
    server.add_service(svc);
    server.run_forever()
}
