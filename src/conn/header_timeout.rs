//! A deadline for receiving a whole request head (slowloris protection).
//!
//! Pingora times each read of a request head separately (60 s), so a client that trickles one
//! byte every few seconds holds a connection forever. The proxy service wraps every
//! accepted connection (see `drain::ProxyApp`) in a [`HeadGuard`]: from the connection's start
//! (first request), from the first byte of a later keep-alive request, or from the end of the
//! previous request when bytes of the next one were already received with it (pipelining), the
//! head must be complete within the limit, else the next read fails and Pingora closes the
//! connection. The proxy's phases mark the head complete (`early_request_filter`) and the
//! request finished (`logging`) through [`head_received`] and [`request_done`]; body reads and
//! idle keep-alive time are not limited here (`CLIENT_BODY_TIMEOUT_MS` and
//! `CLIENT_KEEPALIVE_SECS` are). Being the one place that sees a connection before a head is
//! parsed, the guard also counts heads Pingora refuses.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, Stream, UniqueID,
    UniqueIDType,
};
use pingora::protocols::{SocketDigest, TimingDigest};
use pingora::proxy::Session;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::observe::stats::{Counter, Stats};

/// Between requests: the keep-alive timeout applies, no head deadline.
const IDLE: u8 = 0;
/// A head is being received: the deadline applies.
const HEAD: u8 = 1;
/// The head is complete: the rest of the request is not limited here.
const BODY: u8 = 2;
/// The previous request is done and bytes of the next head are already buffered: its deadline
/// starts at the next read.
const HEAD_BUFFERED: u8 = 3;

/// A connection whose request heads must each arrive within a time limit.
pub struct HeadGuard {
    inner: Stream,
    limit: Duration,
    /// `IDLE`, `HEAD` or `BODY`; set by reads and by the proxy's phases (through `&self`).
    phase: AtomicU8,
    /// When the head being received is due.
    head_deadline: Instant,
    /// The timer, moved to `head_deadline` only when a head read has to wait (most heads
    /// arrive in one read, so keep-alive requests rarely touch the timer wheel).
    timer: Pin<Box<Sleep>>,
    /// Bytes read from the client so far.
    read_total: AtomicU64,
    /// Bytes of the requests finished so far (heads and framed bodies).
    consumed: AtomicU64,
    /// Part of a head has arrived and is counted in `Stats::heads_in_progress` (a drain waits
    /// for it instead of closing the connection as idle).
    partial: AtomicBool,
    /// Bytes `wait_for_request` read (and counted) before the session that parses them existed;
    /// the next reads return them first. `has_unread` avoids the lock on every other read.
    unread: Mutex<Vec<u8>>,
    has_unread: AtomicBool,
    /// A request of unknown length on the wire (chunked) has ended on this connection: from
    /// then on, how much Pingora holds past the requests it has finished is not known (it may
    /// hold several pipelined requests), so the connection is never taken for idle, and takes
    /// "nothing more buffered" only from an exact byte count (`more_buffered`).
    framing_lost: AtomicBool,
    /// How many of the last bytes read are CR or LF. Empty lines between requests are ignored
    /// (RFC 9112 2.2, and Pingora does): a surplus of only these is no next request.
    blank_tail: AtomicU64,
    stats: Arc<Stats>,
}

impl HeadGuard {
    pub fn new(inner: Stream, limit: Duration, stats: Arc<Stats>) -> HeadGuard {
        let head_deadline = Instant::now() + limit;
        HeadGuard {
            inner,
            limit,
            // A new connection is receiving its first head from the moment it is accepted.
            phase: AtomicU8::new(HEAD),
            head_deadline,
            timer: Box::pin(tokio::time::sleep_until(head_deadline)),
            read_total: AtomicU64::new(0),
            consumed: AtomicU64::new(0),
            partial: AtomicBool::new(false),
            unread: Mutex::new(Vec::new()),
            has_unread: AtomicBool::new(false),
            framing_lost: AtomicBool::new(false),
            blank_tail: AtomicU64::new(0),
            stats,
        }
    }

    /// Nothing of a next request has been received on this connection (its previous request,
    /// if any, is finished): the connection is idle.
    /// Derived from the counts: every byte read (bytes kept unread included) belongs to a
    /// finished request (a new connection has read none), and the count is exact (no chunked
    /// request has broken it).
    pub(crate) fn is_idle(&self) -> bool {
        !self.framing_lost.load(Relaxed) && !self.more_after(self.consumed.load(Relaxed))
    }

    /// Bytes beyond stream offset `end` were read that are not just empty lines.
    fn more_after(&self, end: u64) -> bool {
        self.read_total.load(Relaxed) > end + self.blank_tail.load(Relaxed)
    }

    /// Pingora writes while a head is still being received only to refuse a head it could not
    /// parse (its bare 400): count those, as our phases never see them.
    fn note_write(&self) {
        if self.phase.load(Relaxed) == HEAD {
            self.head_over();
            self.stats.inc(Counter::MalformedRequests);
        }
    }

    /// Bytes of a head have arrived: it is in progress until parsed, refused or cut.
    fn head_begun(&self) {
        if !self.partial.swap(true, Relaxed) {
            self.stats.heads_in_progress.fetch_add(1, Relaxed);
        }
    }

    /// The head is parsed (or refused, or cut): leave the head phase.
    fn head_over(&self) {
        self.phase.store(BODY, Relaxed);
        if self.partial.swap(false, Relaxed) {
            self.stats.heads_in_progress.fetch_sub(1, Relaxed);
        }
    }

    fn guard_of(session: &Session) -> Option<&HeadGuard> {
        session
            .as_downstream()
            .stream()?
            .as_any()
            .downcast_ref::<HeadGuard>()
    }
}

/// Wait on an idle connection (see `HeadGuard::is_idle`) until bytes of its next request
/// arrive; they are kept for the session that will parse them. False: the client closed the
/// connection, or the read failed (the head deadline of a new connection included).
///
/// The wait holds no buffer: each poll reads into a stack buffer, and only bytes that arrived
/// are kept. This is what lets an idle keep-alive connection cost a few KiB instead of the
/// whole request future Pingora would keep parked in its own read.
pub(crate) async fn wait_for_request(stream: &mut Stream) -> bool {
    let got = std::future::poll_fn(|cx| {
        // Not zeroed: this runs at least once per request.
        let mut tmp = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
        let mut rb = ReadBuf::uninit(&mut tmp);
        match Pin::new(&mut *stream).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => Poll::Ready(Some(rb.filled().to_vec())),
            Poll::Ready(Err(_)) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await;
    match got {
        Some(bytes) if !bytes.is_empty() => {
            if let Some(g) = stream.as_any().downcast_ref::<HeadGuard>() {
                *g.unread.lock().unwrap_or_else(|p| p.into_inner()) = bytes;
                g.has_unread.store(true, Relaxed);
                true
            } else {
                false
            }
        }
        _ => false,
    }
}

/// The proxy parsed a request head on this session's connection: lift the deadline.
pub(crate) fn head_received(session: &Session) {
    if let Some(g) = HeadGuard::guard_of(session) {
        g.head_over();
    }
}

/// Whether bytes beyond a request of `wire_len` bytes (head and body) have been received on
/// this session's connection: requests pipelined behind it.
///
/// After a chunked request the count of consumed bytes is an estimate that may include bytes
/// pipelined behind it, so only an exact match says "nothing more": a sequential client (the
/// common case) still gets its close in a drain, a pipelining one is kept open.
pub(crate) fn more_buffered(session: &Session, wire_len: u64) -> bool {
    HeadGuard::guard_of(session).is_some_and(|g| {
        let end = g.consumed.load(Relaxed) + wire_len;
        if g.framing_lost.load(Relaxed) {
            g.read_total.load(Relaxed) < end || g.more_after(end)
        } else {
            g.more_after(end)
        }
    })
}

/// The request is finished: the next byte on this connection starts a new head. `wire_len`:
/// the request's head and body as framed on the wire, when known; with it, bytes already
/// received beyond this request are the start of the next head, whose deadline starts now.
pub(crate) fn request_done(session: &Session, wire_len: Option<u64>) {
    let Some(g) = HeadGuard::guard_of(session) else {
        return;
    };
    let read = g.read_total.load(Relaxed);
    let consumed = match wire_len {
        Some(n) => g.consumed.load(Relaxed) + n,
        None => read,
    };
    g.consumed.store(consumed, Relaxed);
    if wire_len.is_none() {
        g.framing_lost.store(true, Relaxed);
    }
    if read > consumed {
        g.phase.store(HEAD_BUFFERED, Relaxed);
        g.head_begun();
    } else {
        g.phase.store(IDLE, Relaxed);
    }
}

impl AsyncRead for HeadGuard {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.has_unread.load(Relaxed) {
            let mut unread = this.unread.lock().unwrap_or_else(|p| p.into_inner());
            let n = unread.len().min(buf.remaining());
            buf.put_slice(&unread[..n]);
            unread.drain(..n);
            if unread.is_empty() {
                *unread = Vec::new();
                this.has_unread.store(false, Relaxed);
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        let got = (buf.filled().len() - before) as u64;
        if got > 0 {
            this.read_total.fetch_add(got, Relaxed);
            let new = &buf.filled()[before..];
            let blank = new
                .iter()
                .rev()
                .take_while(|b| matches!(b, b'\r' | b'\n'))
                .count() as u64;
            let tail = if blank == got {
                this.blank_tail.load(Relaxed) + blank
            } else {
                blank
            };
            this.blank_tail.store(tail, Relaxed);
        }
        if this.phase.load(Relaxed) == HEAD_BUFFERED {
            this.phase.store(HEAD, Relaxed);
            this.head_deadline = Instant::now() + this.limit;
        }
        if got > 0 && matches!(this.phase.load(Relaxed), IDLE | HEAD) {
            this.head_begun();
        }
        match this.phase.load(Relaxed) {
            IDLE => {
                if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
                    this.phase.store(HEAD, Relaxed);
                    this.head_deadline = Instant::now() + this.limit;
                }
                res
            }
            // Only a read that would wait needs the timer: it wakes us at the deadline.
            HEAD if res.is_pending() => {
                if this.timer.deadline() != this.head_deadline {
                    this.timer.as_mut().reset(this.head_deadline);
                }
                match this.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.head_over(); // count once
                        this.stats.inc(Counter::HeaderTimeouts);
                        Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "request head not received within CLIENT_HEADER_TIMEOUT_MS",
                        )))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
            _ => res,
        }
    }
}

impl AsyncWrite for HeadGuard {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.note_write();
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.note_write();
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for HeadGuard {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for HeadGuard {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for HeadGuard {}

impl GetTimingDigest for HeadGuard {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for HeadGuard {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for HeadGuard {
    // The client address (X-Forwarded-For, logs) comes from here.
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }
    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for HeadGuard {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

impl Drop for HeadGuard {
    fn drop(&mut self) {
        self.head_over();
    }
}

impl fmt::Debug for HeadGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeadGuard")
            .field("inner", &self.inner)
            .field("phase", &self.phase.load(Relaxed))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn guard(limit_ms: u64) -> (HeadGuard, tokio::io::DuplexStream, Arc<Stats>) {
        let (ours, theirs) = tokio::io::duplex(1024);
        let stats = Arc::new(Stats::new(1, 1 << 20));
        let g = HeadGuard::new(
            Box::new(ours),
            Duration::from_millis(limit_ms),
            stats.clone(),
        );
        (g, theirs, stats)
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickled_head_times_out_at_the_limit() {
        let (mut g, mut client, stats) = guard(1000);
        let mut buf = [0u8; 64];
        for _ in 0..5 {
            client.write_all(b"P").await.unwrap();
            assert_eq!(g.read(&mut buf).await.unwrap(), 1);
            tokio::time::advance(Duration::from_millis(150)).await;
        }
        let t0 = Instant::now();
        let e = g.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(
            t0.elapsed(),
            Duration::from_millis(250),
            "fires at the deadline"
        );
        assert_eq!(stats.count(Counter::HeaderTimeouts), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn body_and_idle_reads_are_not_limited() {
        let (mut g, mut client, stats) = guard(1000);
        let mut buf = [0u8; 64];
        client.write_all(b"POST / HTTP/1.1\r\n\r\n").await.unwrap();
        assert!(g.read(&mut buf).await.unwrap() > 0);
        g.phase.store(BODY, Relaxed); // what `head_received` does
        tokio::time::advance(Duration::from_secs(5)).await;
        client.write_all(b"body").await.unwrap();
        assert_eq!(g.read(&mut buf).await.unwrap(), 4);
        g.phase.store(IDLE, Relaxed); // what `request_done` does
        tokio::time::advance(Duration::from_secs(5)).await;
        // The next head's clock starts at its first byte.
        client.write_all(b"P").await.unwrap();
        assert_eq!(g.read(&mut buf).await.unwrap(), 1);
        assert_eq!(g.phase.load(Relaxed), HEAD);
        tokio::time::advance(Duration::from_millis(900)).await;
        client.write_all(b"O").await.unwrap();
        assert_eq!(g.read(&mut buf).await.unwrap(), 1);
        let e = g.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(stats.count(Counter::HeaderTimeouts), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_buffered_partial_head_is_timed_from_the_end_of_the_previous_request() {
        let (mut g, mut client, stats) = guard(1000);
        let mut buf = [0u8; 64];
        client.write_all(b"0123456789").await.unwrap();
        assert_eq!(g.read(&mut buf).await.unwrap(), 10);
        assert_eq!(g.read_total.load(Relaxed), 10);
        // The first request was 7 bytes: 3 bytes of the next head are already buffered.
        g.consumed.store(7, Relaxed);
        g.phase.store(HEAD_BUFFERED, Relaxed);
        tokio::time::advance(Duration::from_secs(5)).await;
        let t0 = Instant::now();
        let e = g.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(t0.elapsed(), Duration::from_millis(1000));
        assert_eq!(stats.count(Counter::HeaderTimeouts), 1);
    }
}
