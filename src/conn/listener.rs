//! How client connections are accepted: the proxy listener's buffers.
//!
//! Pingora gives each accepted connection a 64 KiB read buffer by default (zero-filled, so all
//! of it is resident): with keep-alive clients, idle connections are most of what a proxy
//! holds, and that buffer was two thirds of each one's memory. Without it, reads go straight
//! into the HTTP session's own buffers (a 4 KiB head buffer, the body reader's), which is one
//! copy less per request; `loadtest/idle-memory.sh` and `make compare` (bodies of 200 B,
//! 16 KB and 256 KB) measure both sides of the trade.

use pingora::listeners::ListenerConfig;
use pingora::protocols::l4::stream::L4BufferSettings;

/// Read buffer in front of each client connection: none.
const CLIENT_READ_BUFFER: usize = 0;
/// Write buffer of each client connection: one TCP segment (Pingora's default), so a response
/// head and a small body go out in one `send`.
const CLIENT_WRITE_BUFFER: usize = 1460;

/// The proxy's listener on `addr`.
pub fn proxy_listener(addr: &str) -> ListenerConfig {
    ListenerConfig::tcp(addr).l4_buffer(L4BufferSettings::new(
        CLIENT_READ_BUFFER,
        CLIENT_WRITE_BUFFER,
    ))
}
