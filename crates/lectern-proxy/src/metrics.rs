//! Counters of one upstream: requests by cache outcome, and the upstream's answer times.
//! Recording is an atomic add; the server renders them.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// How a proxied request was answered (the `x-lectern-cache` header and the metric's label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// From the cache, fresh.
    Hit,
    /// Fetched from the upstream (and stored when cacheable).
    Miss,
    /// From the cache, past its freshness, because the upstream failed.
    Stale,
    /// Not a cached method, or the upstream caches nothing.
    Bypass,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Stale => "stale",
            CacheStatus::Bypass => "bypass",
        }
    }
}

/// The `cache` labels of `lectern_proxy_requests_total`, in order.
pub const OUTCOMES: [&str; 5] = ["hit", "miss", "stale", "bypass", "error"];

/// Upper bounds of the upstream time buckets, in seconds.
pub const SECONDS_BUCKETS: [f64; 14] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// One upstream's counters.
#[derive(Default)]
pub struct UpstreamMetrics {
    /// By [`OUTCOMES`].
    requests: [AtomicU64; 5],
    /// Per bucket of [`SECONDS_BUCKETS`] (not cumulative), then the count and the sum in ns.
    buckets: [AtomicU64; 14],
    exchanges: AtomicU64,
    nanos: AtomicU64,
}

/// A copy of the counters.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsSnapshot {
    /// `(label, count)` in [`OUTCOMES`] order.
    pub requests: Vec<(&'static str, u64)>,
    /// Cumulative `(le, count)`; then the total count and the sum in seconds.
    pub upstream_seconds: (Vec<(f64, u64)>, u64, f64),
}

impl UpstreamMetrics {
    pub fn answered(&self, status: CacheStatus) {
        self.requests[status as usize].fetch_add(1, Relaxed);
    }

    pub fn failed(&self) {
        self.requests[4].fetch_add(1, Relaxed);
    }

    /// One upstream exchange (answered or not) took `elapsed`.
    pub fn exchanged(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(ix) = SECONDS_BUCKETS.iter().position(|&le| seconds <= le) {
            self.buckets[ix].fetch_add(1, Relaxed);
        }
        self.exchanges.fetch_add(1, Relaxed);
        self.nanos.fetch_add(elapsed.as_nanos().min(u64::MAX as u128) as u64, Relaxed);
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        let requests = OUTCOMES.iter().zip(&self.requests).map(|(label, n)| (*label, n.load(Relaxed))).collect();
        let mut running = 0;
        let buckets = SECONDS_BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(&le, n)| {
                running += n.load(Relaxed);
                (le, running)
            })
            .collect();
        let upstream_seconds = (buckets, self.exchanges.load(Relaxed), self.nanos.load(Relaxed) as f64 / 1e9);
        MetricsSnapshot { requests, upstream_seconds }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_buckets() {
        let m = UpstreamMetrics::default();
        m.answered(CacheStatus::Hit);
        m.answered(CacheStatus::Hit);
        m.answered(CacheStatus::Stale);
        m.failed();
        m.exchanged(Duration::from_millis(3));
        m.exchanged(Duration::from_secs(60));
        let s = m.snapshot();
        assert_eq!(s.requests, vec![("hit", 2), ("miss", 0), ("stale", 1), ("bypass", 0), ("error", 1)]);
        let (buckets, count, sum) = s.upstream_seconds;
        assert_eq!(buckets[1], (0.0025, 0));
        assert_eq!(buckets[2], (0.005, 1));
        assert_eq!(buckets.last(), Some(&(30.0, 1)));
        assert_eq!(count, 2);
        assert!((sum - 60.003).abs() < 1e-6);
    }
}
