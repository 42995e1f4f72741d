//! Per model-version counters and histograms, shaped after Triton's `nv_inference_*` family.
//! Recording is a few atomic adds; rendering to text lives in the server.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 16] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A fixed-bucket histogram of durations.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(ix) = LATENCY_BUCKETS.iter().position(|&b| secs <= b) {
            self.buckets[ix].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_nanos.fetch_add(d.as_nanos() as u64, Relaxed);
    }

    /// Cumulative counts per bucket (Prometheus `le` semantics), total count and sum in seconds.
    pub fn snapshot(&self) -> (Vec<(f64, u64)>, u64, f64) {
        let mut running = 0;
        let buckets = LATENCY_BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(&le, c)| {
                running += c.load(Relaxed);
                (le, running)
            })
            .collect();
        (buckets, self.count.load(Relaxed), self.sum_nanos.load(Relaxed) as f64 / 1e9)
    }
}

/// Upper bounds of the batch-size histogram buckets (rows per execution).
pub const BATCH_BUCKETS: [u64; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];

/// A fixed-bucket histogram of batch sizes.
#[derive(Default)]
pub struct BatchHistogram {
    buckets: [AtomicU64; BATCH_BUCKETS.len()],
    count: AtomicU64,
    sum: AtomicU64,
}

impl BatchHistogram {
    /// Records one execution of `rows` rows.
    pub fn observe(&self, rows: u64) {
        if let Some(ix) = BATCH_BUCKETS.iter().position(|&b| rows <= b) {
            self.buckets[ix].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum.fetch_add(rows, Relaxed);
    }

    /// Cumulative counts per bucket, total count and sum of rows.
    pub fn snapshot(&self) -> (Vec<(f64, u64)>, u64, f64) {
        let mut running = 0;
        let buckets = BATCH_BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(&le, c)| {
                running += c.load(Relaxed);
                (le as f64, running)
            })
            .collect();
        (buckets, self.count.load(Relaxed), self.sum.load(Relaxed) as f64)
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
