//! Shared, process-wide state the proxy writes and the status service reads: counters (one
//! table, [`COUNTERS`], drives their JSON, metrics and HTML), fixed-bucket histograms, gauges
//! and a ring of the most recent request records bounded by count and by bytes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use crate::observe::decisions::{Outcome, ReasonInfo, OUTCOMES, REASONS};
use crate::observe::record::Record;
use crate::observe::timeline::{Point, Timeline};

/// A monotonic event counter. Each has one row in [`COUNTERS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    TokensMinted,
    SpoofAttempts,
    UpstreamErrors,
    HeaderTimeouts,
    MalformedRequests,
    DrainCut,
    UpstreamResolveFailures,
    AccessLogDropped,
    KeyReloads,
    KeyReloadFailures,
}

/// How a counter is shown: `name` in `/status.json`, `jwt_proxy_<name>_total` in `/metrics`,
/// `label` on the status page.
#[derive(Debug)]
pub struct CounterInfo {
    pub counter: Counter,
    pub name: &'static str,
    pub label: &'static str,
    pub help: &'static str,
    /// The status page section it is shown in.
    pub group: Group,
}

/// The sections of the status page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Traffic,
    Identity,
    Upstream,
    Refusals,
    Process,
}

pub const COUNTERS: &[CounterInfo] = &[
    CounterInfo {
        counter: Counter::TokensMinted,
        name: "tokens_minted",
        label: "tokens minted",
        help: "Tokens minted.",
        group: Group::Identity,
    },
    CounterInfo {
        counter: Counter::SpoofAttempts,
        name: "spoof_attempts",
        label: "requests carrying their own x-my-jwt (removed)",
        help: "Requests that carried their own x-my-jwt (removed).",
        group: Group::Identity,
    },
    CounterInfo {
        counter: Counter::UpstreamErrors,
        name: "upstream_errors",
        label: "upstream errors (502/504)",
        help: "Requests answered 502/504 because of the upstream.",
        group: Group::Upstream,
    },
    CounterInfo {
        counter: Counter::HeaderTimeouts,
        name: "header_timeouts",
        label: "connections cut: head not received in time",
        help: "Connections closed because a request head did not arrive within CLIENT_HEADER_TIMEOUT_MS.",
        group: Group::Refusals,
    },
    CounterInfo {
        counter: Counter::MalformedRequests,
        name: "malformed_requests",
        label: "unparseable request heads (bare 400)",
        help: "Request heads that could not be parsed (answered 400 by Pingora, not in requests_total).",
        group: Group::Refusals,
    },
    CounterInfo {
        counter: Counter::DrainCut,
        name: "drain_cut_requests",
        label: "requests cut at the end of a drain",
        help: "Requests still in flight when a stop or upgrade's grace period ended (no answer sent).",
        group: Group::Process,
    },
    CounterInfo {
        counter: Counter::UpstreamResolveFailures,
        name: "upstream_resolve_failures",
        label: "failed re-resolutions of the upstream name",
        help: "Re-resolutions of the UPSTREAM_URL host that failed (the last good address is kept).",
        group: Group::Upstream,
    },
    CounterInfo {
        counter: Counter::AccessLogDropped,
        name: "access_log_dropped_lines",
        label: "access-log lines dropped (stdout not keeping up)",
        help: "Access-log lines dropped because stdout did not take them fast enough (the queue was full).",
        group: Group::Process,
    },
    CounterInfo {
        counter: Counter::KeyReloads,
        name: "key_reloads",
        label: "keyset reloads applied",
        help: "Keyset reloads applied (SIGHUP or a change of the JWT_KEYS files).",
        group: Group::Identity,
    },
    CounterInfo {
        counter: Counter::KeyReloadFailures,
        name: "key_reload_failures",
        label: "keyset reloads refused (the keys in use were kept)",
        help: "Keyset reloads refused: the file did not load or broke a rotation rule; the keys in use were kept.",
        group: Group::Identity,
    },
];

/// Cumulative histogram with fixed upper bounds (in the unit the caller records in).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    /// One per bound, plus the +Inf bucket. Not cumulative; rendering sums them.
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [u64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: u64) {
        let i = self.bounds.partition_point(|b| *b < value);
        self.counts[i].fetch_add(1, Relaxed);
        self.sum.fetch_add(value, Relaxed);
    }

    /// `(upper bound or None for +Inf, cumulative count)` per bucket, then the sum.
    pub(crate) fn snapshot(&self) -> (Vec<(Option<u64>, u64)>, u64) {
        let mut acc = 0;
        let buckets = self
            .counts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                acc += c.load(Relaxed);
                (self.bounds.get(i).copied(), acc)
            })
            .collect();
        (buckets, self.sum.load(Relaxed))
    }
}

/// Request duration bucket bounds, microseconds.
const DURATION_BOUNDS_US: &[u64] = &[
    250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000, 30_000_000,
];
/// Minted token size bucket bounds, bytes (a default token is about 330; a 256-byte user,
/// issuer and audience take it past 1 KiB).
const TOKEN_BYTES_BOUNDS: &[u64] = &[256, 320, 384, 448, 512, 768, 1_024, 1_536, 2_048, 4_096];
/// Signing duration bucket bounds, nanoseconds.
const SIGNING_BOUNDS_NS: &[u64] = &[
    500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 1_000_000,
];

/// The recent-requests ring: at most `cap` records and `budget` bytes (`Record::size_bytes`).
struct Ring {
    records: VecDeque<Record>,
    bytes: usize,
    /// Per-minute totals, kept under the same lock.
    timeline: Timeline,
}

pub struct Stats {
    pub(crate) started_at: SystemTime,
    started: Instant,
    pub requests: AtomicU64,
    outcomes: [AtomicU64; 4],
    /// Indexed by outcome × reason (`decisions` table order).
    decisions: Box<[AtomicU64]>,
    /// Indexed by status code 0..=599 (0: no response was sent).
    by_status: Box<[AtomicU64]>,
    counters: [AtomicU64; COUNTERS.len()],
    pub in_flight: AtomicU64,
    /// Client connections open now (the drain waits for this to reach 0).
    pub(crate) open_connections: AtomicU64,
    /// Connections with part of a request head received (a drain lets them finish it).
    pub(crate) heads_in_progress: AtomicU64,
    /// A stop or upgrade has begun: listeners closed, `/readyz` says 503.
    pub draining: AtomicBool,
    /// SIGTERM arrived: `/readyz` says 503 while the listeners stay open for
    /// `SHUTDOWN_DELAY_SECS`, then the drain begins.
    pub stopping: AtomicBool,
    pub(crate) request_duration_us: Histogram,
    pub(crate) signing_duration_ns: Histogram,
    pub(crate) token_bytes: Histogram,
    recent: Mutex<Ring>,
    recent_cap: usize,
    recent_budget: usize,
}

impl std::fmt::Debug for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stats")
            .field("requests", &self.requests)
            .finish()
    }
}

impl Stats {
    /// A ring of at most `recent_cap` records holding at most `recent_budget` bytes.
    pub fn new(recent_cap: usize, recent_budget: usize) -> Stats {
        Stats {
            started_at: SystemTime::now(),
            started: Instant::now(),
            requests: AtomicU64::new(0),
            outcomes: Default::default(),
            decisions: (0..REASONS.len()).map(|_| AtomicU64::new(0)).collect(),
            by_status: (0..600).map(|_| AtomicU64::new(0)).collect(),
            counters: Default::default(),
            in_flight: AtomicU64::new(0),
            open_connections: AtomicU64::new(0),
            heads_in_progress: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            request_duration_us: Histogram::new(DURATION_BOUNDS_US),
            signing_duration_ns: Histogram::new(SIGNING_BOUNDS_NS),
            token_bytes: Histogram::new(TOKEN_BYTES_BOUNDS),
            recent: Mutex::new(Ring {
                records: VecDeque::with_capacity(recent_cap.min(1024)),
                bytes: 0,
                timeline: Timeline::default(),
            }),
            recent_cap,
            recent_budget,
        }
    }

    pub fn inc(&self, c: Counter) {
        self.counters[c as usize].fetch_add(1, Relaxed);
    }

    pub fn count(&self, c: Counter) -> u64 {
        match c {
            // Not a counter of its own: the outcome counts it, once.
            Counter::UpstreamErrors => self.outcome_count(Outcome::UpstreamError),
            c => self.counters[c as usize].load(Relaxed),
        }
    }

    pub fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    pub fn request_started(&self) {
        self.in_flight.fetch_add(1, Relaxed);
    }

    /// Count a finished request and keep its record (building the record happens outside the
    /// lock; the critical section is one push and a few pops).
    pub(crate) fn request_finished(&self, record: Record) {
        self.in_flight.fetch_sub(1, Relaxed);
        self.requests.fetch_add(1, Relaxed);
        self.outcomes[record.outcome() as usize].fetch_add(1, Relaxed);
        self.decisions[record.reason as usize].fetch_add(1, Relaxed);
        if let Some(c) = self.by_status.get(record.status as usize) {
            c.fetch_add(1, Relaxed);
        }
        if record.spoofed {
            self.inc(Counter::SpoofAttempts);
        }
        self.request_duration_us.observe(record.duration_us);
        let size = record.size_bytes();
        let mut ring = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        ring.timeline
            .record(record.time_unix_ms, record.outcome(), record.duration_us);
        ring.bytes += size;
        ring.records.push_back(record);
        while ring.records.len() > self.recent_cap
            || (ring.bytes > self.recent_budget && ring.records.len() > 1)
        {
            if let Some(old) = ring.records.pop_front() {
                ring.bytes -= old.size_bytes();
            }
        }
    }

    pub fn outcome_count(&self, o: Outcome) -> u64 {
        self.outcomes[o as usize].load(Relaxed)
    }

    /// `(outcome, reason, count)`: each reason under its own outcome, zero included (so that
    /// rates work from the start), grouped by outcome.
    pub(crate) fn decision_counts(&self) -> Vec<(Outcome, &'static ReasonInfo, u64)> {
        let mut out = Vec::new();
        for o in OUTCOMES {
            for info in REASONS.iter().filter(|i| i.outcome == o) {
                out.push((o, info, self.decisions[info.reason as usize].load(Relaxed)));
            }
        }
        out
    }

    /// `(status, count)` for every status seen.
    pub(crate) fn status_counts(&self) -> Vec<(u16, u64)> {
        self.by_status
            .iter()
            .enumerate()
            .filter_map(|(s, c)| Some((s as u16, c.load(Relaxed))).filter(|(_, n)| *n > 0))
            .collect()
    }

    /// The recent records, newest first.
    pub fn recent(&self) -> Vec<Record> {
        let ring = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        ring.records.iter().rev().cloned().collect()
    }

    /// The last minutes, oldest first, up to `now_ms`'s.
    pub fn timeline(&self, now_ms: u64) -> Vec<Point> {
        let ring = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        ring.timeline.points(now_ms)
    }

    /// `(records, bytes)` held by the recent-requests ring.
    pub(crate) fn recent_usage(&self) -> (usize, usize) {
        let ring = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        (ring.records.len(), ring.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::redact::ShownHeaders;
    use crate::signing::minting::Jti;
    use http::Method;

    fn record(status: u16, path_len: usize) -> Record {
        Record {
            time_unix_ms: 0,
            client: None,
            http_version: "HTTP/1.1",
            method: Method::POST,
            path: "/".repeat(path_len),
            status,
            upstream_status: None,
            duration_us: 700,
            bytes_in: 0,
            bytes_out: 0,
            head_bytes: 0,
            headers: ShownHeaders::default(),
            user: None,
            jti: Jti::from_bytes([(status % 256) as u8; 16]),
            iat: None,
            exp: None,
            token_unsigned: None,
            spoofed: status == 200,
            reason: if status == 502 {
                crate::observe::decisions::Reason::UpstreamUnavailable
            } else {
                crate::observe::decisions::Reason::Forwarded
            },
            error: None,
        }
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::new(&[10, 100]);
        for v in [1, 10, 11, 1000] {
            h.observe(v);
        }
        assert_eq!(
            h.snapshot(),
            (vec![(Some(10), 2), (Some(100), 3), (None, 4)], 1022)
        );
    }

    #[test]
    fn ring_keeps_the_newest() {
        let s = Stats::new(3, 1 << 20);
        for st in [200, 201, 202, 502] {
            s.request_started();
            s.request_finished(record(st, 1));
        }
        let statuses: Vec<_> = s.recent().into_iter().map(|r| r.status).collect();
        assert_eq!(statuses, [502, 202, 201]);
        assert_eq!(s.requests.load(Relaxed), 4);
        assert_eq!(s.in_flight.load(Relaxed), 0);
        assert_eq!(s.count(Counter::UpstreamErrors), 1);
        assert_eq!(s.count(Counter::SpoofAttempts), 1);
        assert_eq!(
            s.status_counts(),
            vec![(200, 1), (201, 1), (202, 1), (502, 1)]
        );
        assert_eq!(s.outcome_count(Outcome::Proxied), 3);
    }

    #[test]
    fn ring_stays_within_its_byte_budget() {
        let one = record(200, 1000).size_bytes();
        let s = Stats::new(10_000, 10 * one);
        for _ in 0..1000 {
            s.request_started();
            s.request_finished(record(200, 1000));
        }
        let (n, bytes) = s.recent_usage();
        assert_eq!(n, 10);
        assert!(bytes <= 10 * one, "{bytes}");
        // A record larger than the whole budget is still kept alone (the newest is always shown).
        s.request_finished(record(201, 20 * 1000));
        assert_eq!(s.recent_usage().0, 1);
    }

    #[test]
    fn every_counter_has_one_row() {
        for (i, row) in COUNTERS.iter().enumerate() {
            assert_eq!(row.counter as usize, i, "{} out of order", row.name);
        }
    }
}
