//! The access log: one JSON line per request (`Record::write_log_line`) on stdout.
//!
//! Lines are appended to a bounded in-memory buffer that one writer thread empties in batches.
//! A worker thread never writes to stdout itself, and never wakes the writer for a line: the
//! writer sleeps `BATCH_INTERVAL` after each write (so a busy proxy writes hundreds of lines per
//! `write(2)`, and pays no futex wake per request) and is woken only when the buffer goes from
//! empty to not empty while it waits. If stdout is a pipe whose reader stalls (a blocked log
//! collector, a paused terminal), the writer waits, the buffer fills, and further lines are
//! dropped and counted (`access_log_dropped_lines`) instead of stopping the proxy.

use std::cell::RefCell;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::observe::record::Record;
use crate::observe::stats::{Counter, Stats};

/// Bytes of lines the buffer holds (about 3,500 typical lines); past it, lines are dropped.
const QUEUE_BYTES: usize = 1 << 20;
/// How long the writer lets lines gather after a write: the longest a line waits before it is
/// written while the proxy is busy (an idle proxy's first line is written at once).
const BATCH_INTERVAL: Duration = Duration::from_millis(20);

/// A handle to the access log; cheap to clone.
#[derive(Clone)]
pub struct AccessLog(Arc<Inner>);

struct Inner {
    queue: Mutex<Queue>,
    /// Signalled when the buffer gets its first line while the writer waits for one.
    ready: Condvar,
    /// Signalled when the writer has written everything (for `flush`).
    drained: Condvar,
    /// Where the lines go, until the writer thread takes it. The thread is started by the first
    /// line, not at construction: Pingora's daemon mode forks after the services are built,
    /// and threads started before the fork do not survive it.
    out: Mutex<Option<Box<dyn Write + Send>>>,
    started: AtomicBool,
    stats: Arc<Stats>,
}

#[derive(Default)]
struct Queue {
    /// Lines not yet taken by the writer, each ending in `\n`.
    buf: Vec<u8>,
    /// The writer is parked waiting for a line (a line must wake it).
    writer_waiting: bool,
    /// The writer holds a batch it has not finished writing.
    writing: bool,
}

thread_local! {
    /// Each worker thread formats its lines here: no allocation per line.
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1024));
}

impl AccessLog {
    /// An access log writing to `out` (its writer thread starts with the first line).
    pub fn new(stats: Arc<Stats>, out: Box<dyn Write + Send>) -> AccessLog {
        AccessLog(Arc::new(Inner {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            drained: Condvar::new(),
            out: Mutex::new(Some(out)),
            started: AtomicBool::new(false),
            stats,
        }))
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.0.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn start_writer(&self) {
        let taken = self.0.out.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(out) = taken {
            let writer = self.clone();
            if let Err(e) = std::thread::Builder::new()
                .name("access-log".into())
                .spawn(move || writer.run(out))
            {
                log::error!("cannot start the access-log writer ({e}): lines will be dropped");
            }
        }
    }

    /// Queue the record's line; never waits for the writer.
    pub fn write(&self, r: &Record) {
        if !self.0.started.load(SeqCst) && !self.0.started.swap(true, SeqCst) {
            self.start_writer();
        }
        LINE.with_borrow_mut(|line| {
            line.clear();
            r.write_log_line(line);
            line.push(b'\n');
            let mut q = self.queue();
            if q.buf.len() + line.len() > QUEUE_BYTES {
                drop(q);
                self.0.stats.inc(Counter::AccessLogDropped);
                return;
            }
            q.buf.extend_from_slice(line);
            if q.writer_waiting {
                q.writer_waiting = false;
                self.0.ready.notify_one();
            }
        });
    }

    /// Wait (at most `limit`) until every queued line is written: before the process exits.
    /// Lines still queued after that are lost with the process: say how much, on stderr.
    pub(crate) fn flush(&self, limit: Duration) {
        let until = Instant::now() + limit;
        let mut q = self.queue();
        while !q.buf.is_empty() || q.writing {
            let Some(left) = until.checked_duration_since(Instant::now()) else {
                break;
            };
            if q.writer_waiting {
                q.writer_waiting = false;
                self.0.ready.notify_one();
            }
            q = self
                .0
                .drained
                .wait_timeout(q, left.min(Duration::from_millis(50)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let lost = q.buf.len();
        if lost > 0 {
            log::error!("{lost} bytes of access-log lines could not be written before exit");
        }
    }

    fn run(self, mut out: Box<dyn Write + Send>) {
        let mut batch: Vec<u8> = Vec::with_capacity(64 * 1024);
        loop {
            {
                let mut q = self.queue();
                q.writing = false;
                while q.buf.is_empty() {
                    self.0.drained.notify_all();
                    q.writer_waiting = true;
                    q = self.0.ready.wait(q).unwrap_or_else(|p| p.into_inner());
                }
                q.writer_waiting = false;
                q.writing = true;
                std::mem::swap(&mut q.buf, &mut batch);
            }
            // A closed stdout must not take the proxy down; the records are still in the stats.
            let _ = out.write_all(&batch).and_then(|()| out.flush());
            // Keep the larger buffer for the next swap, but not a huge one a burst left behind.
            batch.clear();
            if batch.capacity() > 4 * QUEUE_BYTES {
                batch.shrink_to(64 * 1024);
            }
            std::thread::sleep(BATCH_INTERVAL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::redact::ShownHeaders;
    use crate::signing::minting::Jti;

    /// A writer that blocks while `gate` is held, then keeps what it is given.
    struct Gated {
        gate: Arc<Mutex<()>>,
        got: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Gated {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let _open = self.gate.lock().unwrap();
            self.got.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn record(i: u8) -> Record {
        Record {
            time_unix_ms: 0,
            client: None,
            http_version: "HTTP/1.1",
            method: http::Method::POST,
            path: "/".into(),
            status: 200,
            upstream_status: Some(200),
            duration_us: 1,
            bytes_in: 0,
            bytes_out: 0,
            head_bytes: 0,
            headers: ShownHeaders::default(),
            user: None,
            jti: Jti::from_bytes([i; 16]),
            iat: None,
            exp: None,
            token_unsigned: None,
            spoofed: false,
            reason: crate::observe::decisions::Reason::Forwarded,
            error: None,
        }
    }

    #[test]
    fn a_stalled_writer_never_blocks_and_drops_are_counted() {
        let stats = Arc::new(Stats::new(1, 1 << 20));
        let gate = Arc::new(Mutex::new(()));
        let got: Arc<Mutex<Vec<u8>>> = Arc::default();
        let held = gate.lock().unwrap();
        let log = AccessLog::new(
            stats.clone(),
            Box::new(Gated {
                gate: gate.clone(),
                got: got.clone(),
            }),
        );
        let t0 = Instant::now();
        let lines_sent = QUEUE_BYTES / 100 + 2000;
        for i in 0..lines_sent {
            log.write(&record(i as u8));
        }
        assert!(t0.elapsed() < Duration::from_secs(2), "writes never wait");
        let dropped = stats.count(Counter::AccessLogDropped);
        assert!(dropped >= 1000, "{dropped}");
        drop(held);
        log.flush(Duration::from_secs(10));
        let lines = got.lock().unwrap().split(|&b| b == b'\n').count() - 1;
        assert_eq!(lines as u64 + dropped, lines_sent as u64);
        // And lines flow again once the reader is back.
        log.write(&record(7));
        log.flush(Duration::from_secs(5));
        assert_eq!(
            got.lock().unwrap().split(|&b| b == b'\n').count() - 1,
            lines + 1
        );
    }

    /// Counts the `write` calls it gets.
    struct Counting {
        writes: Arc<Mutex<usize>>,
        got: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Counting {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            *self.writes.lock().unwrap() += 1;
            self.got.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_written_in_batches() {
        let stats = Arc::new(Stats::new(1, 1 << 20));
        let writes = Arc::new(Mutex::new(0));
        let got: Arc<Mutex<Vec<u8>>> = Arc::default();
        let log = AccessLog::new(
            stats.clone(),
            Box::new(Counting {
                writes: writes.clone(),
                got: got.clone(),
            }),
        );
        for i in 0..2000 {
            log.write(&record(i as u8));
        }
        log.flush(Duration::from_secs(10));
        let text = String::from_utf8(got.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 2000);
        assert!(text.lines().all(|l| l.starts_with('{') && l.ends_with('}')));
        assert_eq!(stats.count(Counter::AccessLogDropped), 0);
        let writes = *writes.lock().unwrap();
        assert!(writes <= 20, "2,000 lines took {writes} writes");
    }
}
