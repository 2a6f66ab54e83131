//! The access log: one JSON line per request (`Record::log_line`) on stdout.
//!
//! Lines go through a bounded queue to one writer thread, which writes them in batches. A
//! worker thread never writes to stdout itself: if stdout is a pipe whose reader stalls (a
//! blocked log collector, a paused terminal), the writer waits, the queue fills, and further
//! lines are dropped and counted (`access_log_dropped_lines`) instead of stopping the proxy.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::record::Record;
use crate::stats::{Counter, Stats};

/// Lines the queue holds (about 1 MiB of typical lines).
pub const QUEUE_LINES: usize = 4096;
/// Lines written with one `write`, at most.
const BATCH_LINES: usize = 256;

/// The writer thread's two ends: the queue it empties and where the lines go.
type Writer = (Receiver<String>, Box<dyn Write + Send>);

/// A handle to the access log; cheap to clone.
#[derive(Clone)]
pub struct AccessLog(Arc<Inner>);

struct Inner {
    tx: SyncSender<String>,
    /// The queue's other end and the output, until the writer thread takes them. The thread is
    /// started by the first line, not at construction: Pingora's daemon mode forks after the
    /// services are built, and threads started before the fork do not survive it.
    writer: Mutex<Option<Writer>>,
    started: AtomicBool,
    /// Lines queued and not yet written out.
    pending: AtomicUsize,
    stats: Arc<Stats>,
}

impl AccessLog {
    /// An access log writing to `out` (its writer thread starts with the first line).
    pub fn new(stats: Arc<Stats>, out: Box<dyn Write + Send>) -> AccessLog {
        let (tx, rx) = sync_channel(QUEUE_LINES);
        AccessLog(Arc::new(Inner {
            tx,
            writer: Mutex::new(Some((rx, out))),
            started: AtomicBool::new(false),
            pending: AtomicUsize::new(0),
            stats,
        }))
    }

    fn start_writer(&self) {
        let taken = self
            .0
            .writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some((rx, out)) = taken {
            let writer = self.clone();
            if let Err(e) = std::thread::Builder::new()
                .name("access-log".into())
                .spawn(move || writer.run(rx, out))
            {
                log::error!("cannot start the access-log writer ({e}): lines will be dropped");
            }
        }
    }

    /// Queue the record's line; never waits.
    pub fn write(&self, r: &Record) {
        if !self.0.started.load(SeqCst) && !self.0.started.swap(true, SeqCst) {
            self.start_writer();
        }
        let mut line = r.log_line();
        line.push('\n');
        self.0.pending.fetch_add(1, SeqCst);
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.0.tx.try_send(line)
        {
            self.0.pending.fetch_sub(1, SeqCst);
            self.0.stats.inc(Counter::AccessLogDropped);
        }
    }

    /// Wait (at most `limit`) until every queued line is written: before the process exits.
    /// Lines still queued after that are lost with the process: say how many, on stderr.
    pub fn flush(&self, limit: Duration) {
        let until = Instant::now() + limit;
        while self.0.pending.load(SeqCst) > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        let lost = self.0.pending.load(SeqCst);
        if lost > 0 {
            log::error!(
                "{lost} access-log lines could not be written before exit (stdout too slow)"
            );
        }
    }

    fn run(self, rx: Receiver<String>, mut out: Box<dyn Write + Send>) {
        let mut batch = String::with_capacity(64 * 1024);
        loop {
            let first = match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(line) => line,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            batch.clear();
            batch.push_str(&first);
            let mut n = 1;
            while n < BATCH_LINES {
                match rx.try_recv() {
                    Ok(line) => {
                        batch.push_str(&line);
                        n += 1;
                    }
                    Err(_) => break,
                }
            }
            // A closed stdout must not take the proxy down; the records are still in the stats.
            let _ = out.write_all(batch.as_bytes()).and_then(|()| out.flush());
            self.0.pending.fetch_sub(n, SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::minting::Jti;
    use crate::record::{Outcome, ShownHeaders};

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
            outcome: Outcome::Proxied,
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
        for i in 0..(QUEUE_LINES + 2000) {
            log.write(&record(i as u8));
        }
        assert!(t0.elapsed() < Duration::from_secs(2), "writes never wait");
        let dropped = stats.count(Counter::AccessLogDropped);
        assert!(dropped >= 1000, "{dropped}");
        drop(held);
        log.flush(Duration::from_secs(10));
        let lines = got.lock().unwrap().split(|&b| b == b'\n').count() - 1;
        assert_eq!(lines as u64 + dropped, (QUEUE_LINES + 2000) as u64);
        // And lines flow again once the reader is back.
        log.write(&record(7));
        log.flush(Duration::from_secs(5));
        assert_eq!(
            got.lock().unwrap().split(|&b| b == b'\n').count() - 1,
            lines + 1
        );
    }
}
