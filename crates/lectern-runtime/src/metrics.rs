//! Per model-version counters and histograms, shaped after Triton's `nv_inference_*` family.
//! Recording is a few atomic adds; rendering to text lives in the server.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds of the latency histogram buckets, in nanoseconds (100 µs .. 10 s).
pub const LATENCY_BUCKETS_NS: [u64; 16] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Upper bounds of the batch-size histogram buckets (rows per execution).
pub const BATCH_BUCKETS: [u64; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];

/// A fixed-bucket histogram of integer observations, shown divided by `unit`.
pub struct Buckets<const N: usize> {
    bounds: &'static [u64; N],
    unit: f64,
    counts: [AtomicU64; N],
    count: AtomicU64,
    sum: AtomicU64,
}

impl<const N: usize> Buckets<N> {
    const fn new(bounds: &'static [u64; N], unit: f64) -> Self {
        Buckets {
            bounds,
            unit,
            counts: [const { AtomicU64::new(0) }; N],
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }

    fn record(&self, value: u64) {
        if let Some(ix) = self.bounds.iter().position(|&b| value <= b) {
            self.counts[ix].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum.fetch_add(value, Relaxed);
    }

    /// Cumulative counts per bucket bound (Prometheus `le` semantics), total count and sum,
    /// all in display units.
    pub fn snapshot(&self) -> (Vec<(f64, u64)>, u64, f64) {
        let mut running = 0;
        let buckets = self
            .bounds
            .iter()
            .zip(&self.counts)
            .map(|(&le, c)| {
                running += c.load(Relaxed);
                (le as f64 / self.unit, running)
            })
            .collect();
        (buckets, self.count.load(Relaxed), self.sum.load(Relaxed) as f64 / self.unit)
    }
}

/// Durations, shown in seconds.
pub struct Histogram(Buckets<16>);

impl Default for Histogram {
    fn default() -> Self {
        Histogram(Buckets::new(&LATENCY_BUCKETS_NS, 1e9))
    }
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        self.0.record(d.as_nanos().min(u64::MAX as u128) as u64);
    }

    /// See [`Buckets::snapshot`].
    pub fn snapshot(&self) -> (Vec<(f64, u64)>, u64, f64) {
        self.0.snapshot()
    }
}

/// Rows per execution.
pub struct BatchHistogram(Buckets<9>);

impl Default for BatchHistogram {
    fn default() -> Self {
        BatchHistogram(Buckets::new(&BATCH_BUCKETS, 1.0))
    }
}

impl BatchHistogram {
    /// Records one execution of `rows` rows.
    pub fn observe(&self, rows: u64) {
        self.0.record(rows);
    }

    /// See [`Buckets::snapshot`].
    pub fn snapshot(&self) -> (Vec<(f64, u64)>, u64, f64) {
        self.0.snapshot()
    }
}

/// Counters of one model version; they survive reloads of the same version.
#[derive(Default)]
pub struct ModelMetrics {
    /// Requests answered successfully.
    pub success: AtomicU64,
    /// Requests that failed (bad input, expired, rejected, engine error).
    pub failure: AtomicU64,
    /// Rows inferred (a batch of 8 counts 8).
    pub inference_count: AtomicU64,
    /// Model executions (a batch counts 1).
    pub exec_count: AtomicU64,
    /// Requests turned away because the queue was full.
    pub queue_rejected: AtomicU64,
    /// Requests answered with an error because their deadline passed in the queue.
    pub deadline_expired: AtomicU64,
    /// Requests waiting in the queue now.
    pub queue_depth: AtomicU64,
    /// Whole request time, from arrival to answer.
    pub request_duration: Histogram,
    /// Time spent queued before an instance took the request.
    pub queue_duration: Histogram,
    /// Time the engine spent computing.
    pub compute_duration: Histogram,
    /// Rows per execution.
    pub batch_size: BatchHistogram,
}

/// All model metrics of the process, keyed by (model, version).
#[derive(Default)]
pub struct MetricsRegistry {
    models: Mutex<BTreeMap<(String, String), Arc<ModelMetrics>>>,
}

impl MetricsRegistry {
    /// The metrics of a model version, created on first use.
    pub fn model(&self, name: &str, version: &str) -> Arc<ModelMetrics> {
        let mut models = self.models.lock().unwrap_or_else(|e| e.into_inner());
        models.entry((name.to_string(), version.to_string())).or_default().clone()
    }

    /// Every model version's metrics, in name and version order.
    pub fn all(&self) -> Vec<((String, String), Arc<ModelMetrics>)> {
        let models = self.models.lock().unwrap_or_else(|e| e.into_inner());
        models.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_count_cumulatively_in_display_units() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_millis(2));
        let (buckets, count, sum) = h.snapshot();
        assert_eq!(buckets[0], (0.0001, 1));
        assert_eq!(buckets[4], (0.0025, 2));
        assert_eq!(count, 2);
        assert!((sum - 0.00205).abs() < 1e-12);
        let b = BatchHistogram::default();
        b.observe(3);
        assert_eq!(b.snapshot().0[2], (4.0, 1));
    }
}
