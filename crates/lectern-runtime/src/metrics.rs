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

/// A count of events and their summed duration in nanoseconds (Triton's `StatisticDuration`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeSum {
    pub count: u64,
    pub ns: u64,
}

impl TimeSum {
    /// Counts one event that took `d`.
    fn add(&mut self, d: Duration) {
        self.count += 1;
        self.ns = self.ns.saturating_add(nanos(d));
    }
}

/// A count of events and their summed duration, recorded with two atomic adds.
#[derive(Default)]
pub struct DurationSum {
    count: AtomicU64,
    ns: AtomicU64,
}

impl DurationSum {
    /// Counts `n` events that took `d` each.
    pub fn add(&self, n: u64, d: Duration) {
        self.add_sum(n, nanos(d).saturating_mul(n));
    }

    /// Counts `n` events that took `ns` nanoseconds in all.
    pub fn add_sum(&self, n: u64, ns: u64) {
        self.count.fetch_add(n, Relaxed);
        self.ns.fetch_add(ns, Relaxed);
    }

    pub fn total(&self) -> TimeSum {
        TimeSum { count: self.count.load(Relaxed), ns: self.ns.load(Relaxed) }
    }
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

/// The time one execution of `batch_size` rows spent in each part (Triton's batch statistics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStat {
    pub batch_size: u64,
    pub compute_input: TimeSum,
    pub compute_infer: TimeSum,
    pub compute_output: TimeSum,
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
    /// Per request: the whole time of those answered successfully, and of those that failed.
    pub success_time: DurationSum,
    pub failure_time: DurationSum,
    /// Per request answered by the engine (as Triton: successful executions only): the time
    /// queued, joining its inputs into the execution's, the execution, and taking its rows of
    /// the outputs (each request in a batch counts the batch's times).
    pub queue: DurationSum,
    pub compute_input: DurationSum,
    pub compute_infer: DurationSum,
    pub compute_output: DurationSum,
    /// Milliseconds since the Unix epoch of the last request answered; 0: none yet.
    pub last_inference_ms: AtomicU64,
    /// Per execution, by its exact number of rows.
    batches: Mutex<BTreeMap<u64, BatchStat>>,
}

/// The times of one execution's parts.
#[derive(Debug, Clone, Copy, Default)]
pub struct Execution {
    pub rows: u64,
    pub requests: u64,
    /// The time its requests waited in the queue, summed.
    pub queued: Duration,
    pub input: Duration,
    pub infer: Duration,
    pub output: Duration,
}

impl ModelMetrics {
    /// Counts one answered request that took `took` in all.
    pub fn answered(&self, ok: bool, took: Duration) {
        let (counter, time) =
            if ok { (&self.success, &self.success_time) } else { (&self.failure, &self.failure_time) };
        counter.fetch_add(1, Relaxed);
        time.add(1, took);
        self.request_duration.observe(took);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        self.last_inference_ms.store(now.as_millis() as u64, Relaxed);
    }

    /// Counts the parts of one successful execution, for each request in it and for its
    /// batch size.
    pub fn executed(&self, e: Execution) {
        self.queue.add_sum(e.requests, nanos(e.queued));
        self.compute_input.add(e.requests, e.input);
        self.compute_infer.add(e.requests, e.infer);
        self.compute_output.add(e.requests, e.output);
        let mut batches = self.batches.lock().unwrap_or_else(|p| p.into_inner());
        let stat = batches.entry(e.rows).or_insert(BatchStat { batch_size: e.rows, ..BatchStat::default() });
        stat.compute_input.add(e.input);
        stat.compute_infer.add(e.infer);
        stat.compute_output.add(e.output);
    }

    /// Per exact batch size, in size order.
    pub fn batch_stats(&self) -> Vec<BatchStat> {
        self.batches.lock().unwrap_or_else(|p| p.into_inner()).values().copied().collect()
    }
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

    #[test]
    fn executions_count_per_request_and_per_exact_batch_size() {
        let m = ModelMetrics::default();
        let ms = Duration::from_millis;
        m.executed(Execution { rows: 3, requests: 2, queued: ms(4), input: ms(1), infer: ms(10), output: ms(2) });
        m.executed(Execution { rows: 3, requests: 3, queued: ms(3), input: ms(1), infer: ms(20), output: ms(2) });
        m.executed(Execution { rows: 1, requests: 1, infer: ms(5), ..Execution::default() });
        assert_eq!(m.compute_infer.total(), TimeSum { count: 6, ns: 2 * 10_000_000 + 3 * 20_000_000 + 5_000_000 });
        assert_eq!(m.compute_input.total(), TimeSum { count: 6, ns: 5_000_000 });
        assert_eq!(m.queue.total(), TimeSum { count: 6, ns: 7_000_000 });
        let batches = m.batch_stats();
        assert_eq!(batches.iter().map(|b| b.batch_size).collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(batches[1].compute_infer, TimeSum { count: 2, ns: 30_000_000 });
        assert_eq!(batches[1].compute_output, TimeSum { count: 2, ns: 4_000_000 });
        m.answered(true, ms(3));
        m.answered(false, ms(1));
        assert_eq!(m.success_time.total(), TimeSum { count: 1, ns: 3_000_000 });
        assert_eq!(m.failure_time.total(), TimeSum { count: 1, ns: 1_000_000 });
        assert_eq!(m.success.load(Relaxed) + m.failure.load(Relaxed), 2);
        assert!(m.last_inference_ms.load(Relaxed) > 1_700_000_000_000);
    }
}
