//! The last [`MINUTES`] minutes, one minute at a time: requests, refusals, errors and latency,
//! for the status page's charts and `/status.json`. Pure (times are passed in); `Stats` updates
//! it inside the critical section it already takes for the recent-requests ring, so it adds no
//! lock to a request.

use crate::observe::decisions::Outcome;

pub const MINUTES: usize = 15;
/// Latency buckets per doubling: each bucket spans a factor of 2^(1/4), so a quantile read from
/// them is within about 19% of the true value.
const PER_DOUBLING: f64 = 4.0;
/// Up to 2^28 µs (4.5 minutes); longer durations land in the last bucket.
const BUCKETS: usize = 4 * 28;

#[derive(Clone)]
struct Minute {
    /// Unix minute this slot holds (slots are reused every `MINUTES`).
    at: u64,
    requests: u64,
    rejected: u64,
    errors: u64,
    latency: [u32; BUCKETS],
}

impl Minute {
    fn empty(at: u64) -> Minute {
        Minute {
            at,
            requests: 0,
            rejected: 0,
            errors: 0,
            latency: [0; BUCKETS],
        }
    }
}

/// One minute of the chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub(crate) start_unix_ms: u64,
    /// Seconds of this minute that have passed (60, less for the current one).
    pub seconds: f64,
    pub requests: u64,
    /// Refused by the proxy or the client's own fault (4xx).
    pub rejected: u64,
    /// Upstream errors (502/504) and failures (no answer, drain cut).
    pub errors: u64,
    /// Estimated from the latency buckets; `None` without requests.
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p99_ms: Option<f64>,
}

impl Point {
    pub(crate) fn rate_per_sec(&self) -> f64 {
        self.requests as f64 / self.seconds.max(1.0)
    }

    /// Errors as a percentage of requests (0 without requests).
    pub(crate) fn error_percent(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            100.0 * self.errors as f64 / self.requests as f64
        }
    }
}

pub struct Timeline {
    slots: Vec<Minute>,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline {
            slots: vec![Minute::empty(u64::MAX); MINUTES],
        }
    }
}

fn bucket(us: u64) -> usize {
    if us <= 1 {
        return 0;
    }
    ((us as f64).log2() * PER_DOUBLING) as usize
}

/// `[lower, upper)` bound of a bucket, µs.
fn bounds(i: usize) -> (f64, f64) {
    let at = |i: usize| 2f64.powf(i as f64 / PER_DOUBLING);
    (if i == 0 { 0.0 } else { at(i) }, at(i + 1))
}

fn quantile(latency: &[u32; BUCKETS], n: u64, q: f64) -> Option<f64> {
    if n == 0 {
        return None;
    }
    let rank = q * n as f64;
    let mut seen = 0.0;
    for (i, &c) in latency.iter().enumerate() {
        let c = f64::from(c);
        if c > 0.0 && seen + c >= rank {
            let (lo, hi) = bounds(i);
            let us = lo + (hi - lo) * ((rank - seen) / c).clamp(0.0, 1.0);
            return Some(us / 1000.0);
        }
        seen += c;
    }
    None
}

impl Timeline {
    /// Count one request that started at `unix_ms`.
    pub fn record(&mut self, unix_ms: u64, outcome: Outcome, duration_us: u64) {
        let at = unix_ms / 60_000;
        let slot = &mut self.slots[(at % MINUTES as u64) as usize];
        if slot.at != at {
            if slot.at != u64::MAX && slot.at > at {
                return; // older than the window
            }
            *slot = Minute::empty(at);
        }
        slot.requests += 1;
        match outcome {
            Outcome::Rejected => slot.rejected += 1,
            Outcome::UpstreamError | Outcome::Failed => slot.errors += 1,
            Outcome::Proxied => {}
        }
        let b = bucket(duration_us).min(BUCKETS - 1);
        slot.latency[b] = slot.latency[b].saturating_add(1);
    }

    /// The `MINUTES` minutes up to and including `now_ms`'s, oldest first.
    pub fn points(&self, now_ms: u64) -> Vec<Point> {
        let now = now_ms / 60_000;
        (0..MINUTES as u64)
            .rev()
            .filter_map(|back| now.checked_sub(back))
            .map(|at| {
                let start_unix_ms = at * 60_000;
                let seconds = if at == now {
                    (now_ms - start_unix_ms) as f64 / 1000.0
                } else {
                    60.0
                };
                let slot = &self.slots[(at % MINUTES as u64) as usize];
                let empty = Minute::empty(at);
                let m = if slot.at == at { slot } else { &empty };
                Point {
                    start_unix_ms,
                    seconds,
                    requests: m.requests,
                    rejected: m.rejected,
                    errors: m.errors,
                    p50_ms: quantile(&m.latency, m.requests, 0.5),
                    p99_ms: quantile(&m.latency, m.requests, 0.99),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_764_432_000_000; // a minute boundary

    #[test]
    fn minutes_are_counted_apart_and_age_out() {
        let mut t = Timeline::default();
        t.record(T0 + 1_000, Outcome::Proxied, 800);
        t.record(T0 + 59_999, Outcome::Rejected, 100);
        t.record(T0 + 60_000, Outcome::UpstreamError, 30_000);
        let p = t.points(T0 + 90_000);
        assert_eq!(p.len(), MINUTES);
        let (prev, now) = (&p[MINUTES - 2], &p[MINUTES - 1]);
        assert_eq!(prev.start_unix_ms, T0);
        assert_eq!((prev.requests, prev.rejected, prev.errors), (2, 1, 0));
        assert_eq!(prev.seconds, 60.0);
        assert_eq!((now.requests, now.errors), (1, 1));
        assert_eq!(now.seconds, 30.0);
        assert!((now.rate_per_sec() - 1.0 / 30.0).abs() < 1e-9);
        assert_eq!(now.error_percent(), 100.0);
        assert!(p[..MINUTES - 2]
            .iter()
            .all(|x| x.requests == 0 && x.p50_ms.is_none()));
        // 15 minutes later the first minute has left the window, and its slot is reused.
        let later = T0 + 15 * 60_000;
        t.record(later + 5, Outcome::Proxied, 1_000);
        let p = t.points(later + 10);
        assert_eq!(p[0].start_unix_ms, T0 + 60_000);
        assert_eq!(p[0].requests, 1);
        assert_eq!(p[MINUTES - 1].requests, 1);
        assert_eq!(p.iter().map(|x| x.requests).sum::<u64>(), 2);
        // A record older than the window does not touch the newer minute in its slot.
        t.record(T0 + 1, Outcome::Proxied, 1);
        assert_eq!(t.points(later + 10)[MINUTES - 1].requests, 1);
    }

    #[test]
    fn quantiles_are_within_a_bucket() {
        let mut t = Timeline::default();
        for i in 1..=1000u64 {
            t.record(T0, Outcome::Proxied, i * 10); // 10 µs .. 10 ms, uniform
        }
        let p = &t.points(T0 + 1)[MINUTES - 1];
        let (p50, p99) = (p.p50_ms.unwrap(), p.p99_ms.unwrap());
        assert!((p50 / 5.0 - 1.0).abs() < 0.19, "{p50}");
        assert!((p99 / 9.9 - 1.0).abs() < 0.19, "{p99}");
    }
}
