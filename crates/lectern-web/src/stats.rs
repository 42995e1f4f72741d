//! The models page's live numbers: request rate and p99 latency over the last minute, from
//! the server's own metrics (the same histograms `/metrics` exports). Snapshots are taken when
//! a page or the script asks, at most one a second, and kept for a minute.

use lectern_runtime::MetricsRegistry;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
const MIN_GAP: Duration = Duration::from_secs(1);

/// Per model: the request-duration histogram's cumulative bucket counts, with their upper
/// bounds in seconds, and the request count.
#[derive(Clone, Default)]
struct Counts {
    buckets: Vec<(f64, u64)>,
    requests: u64,
}

/// A model's numbers over the window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Live {
    /// Requests a second.
    pub rate: f64,
    /// The 99th percentile latency in ms (a bucket's upper bound); `None` without requests.
    pub p99_ms: Option<f64>,
    /// Requests since the server started.
    pub requests: u64,
}

#[derive(Default)]
pub struct Sampler {
    samples: Mutex<VecDeque<(Instant, HashMap<String, Counts>)>>,
}

impl Sampler {
    /// The live numbers of every model with metrics, sampling now if a second has passed.
    pub fn live(&self, metrics: &MetricsRegistry) -> HashMap<String, Live> {
        let now = Instant::now();
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        if samples.back().is_none_or(|(at, _)| now.duration_since(*at) >= MIN_GAP) {
            samples.push_back((now, snapshot(metrics)));
        }
        while samples.len() > 2 && samples.front().is_some_and(|(at, _)| now.duration_since(*at) > WINDOW) {
            samples.pop_front();
        }
        let (Some((first_at, first)), Some((last_at, last))) = (samples.front(), samples.back()) else {
            return HashMap::new();
        };
        let seconds = last_at.duration_since(*first_at).as_secs_f64();
        last.iter().map(|(name, now)| (name.clone(), live(first.get(name), now, seconds))).collect()
    }
}

impl Sampler {
    /// A model's request rate between consecutive samples of the last minute: (seconds before
    /// now, requests a second), oldest first.
    pub fn series(&self, metrics: &MetricsRegistry, model: &str) -> Vec<(f64, f64)> {
        self.live(metrics);
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let Some((newest, _)) = samples.back() else { return Vec::new() };
        let count = |counts: &HashMap<String, Counts>| counts.get(model).map_or(0, |c| c.requests);
        samples
            .iter()
            .zip(samples.iter().skip(1))
            .map(|((t0, c0), (t1, c1))| {
                let seconds = t1.duration_since(*t0).as_secs_f64().max(1e-3);
                let rate = count(c1).saturating_sub(count(c0)) as f64 / seconds;
                (-newest.duration_since(*t1).as_secs_f64(), rate)
            })
            .collect()
    }
}

fn snapshot(metrics: &MetricsRegistry) -> HashMap<String, Counts> {
    let mut by_model: HashMap<String, Counts> = HashMap::new();
    for ((model, _version), m) in metrics.all() {
        let (buckets, count, _) = m.request_duration.snapshot();
        let entry = by_model.entry(model).or_default();
        if entry.buckets.is_empty() {
            entry.buckets = buckets;
        } else {
            for (sum, (_, c)) in entry.buckets.iter_mut().zip(buckets) {
                sum.1 += c;
            }
        }
        entry.requests += count;
    }
    by_model
}

fn live(before: Option<&Counts>, now: &Counts, seconds: f64) -> Live {
    let empty = Counts::default();
    let before = before.unwrap_or(&empty);
    let requests = now.requests.saturating_sub(before.requests);
    let rate = if seconds > 0.0 { requests as f64 / seconds } else { 0.0 };
    let bucket_diff = |i: usize| now.buckets[i].1.saturating_sub(before.buckets.get(i).map_or(0, |b| b.1));
    let p99_ms = (requests > 0)
        .then(|| {
            let wanted = (requests as f64 * 0.99).ceil() as u64;
            (0..now.buckets.len()).find(|&i| bucket_diff(i) >= wanted).map(|i| now.buckets[i].0 * 1000.0)
        })
        .flatten();
    Live { rate, p99_ms, requests: now.requests }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(buckets: &[u64], requests: u64) -> Counts {
        let bounds = [0.001, 0.01, 0.1];
        Counts { buckets: bounds.iter().copied().zip(buckets.iter().copied()).collect(), requests }
    }

    #[test]
    fn the_series_is_the_rate_between_samples() {
        let sampler = Sampler::default();
        let start = Instant::now() - Duration::from_secs(3);
        let at = |n: u64, requests: u64| {
            (start + Duration::from_secs(n), HashMap::from([("m".to_string(), counts(&[0, 0, requests], requests))]))
        };
        sampler.samples.lock().unwrap().extend([at(0, 0), at(1, 10), at(2, 40)]);
        let metrics = MetricsRegistry::default();
        let series = sampler.series(&metrics, "m");
        assert_eq!(series.len(), 3, "{series:?}"); // the sample taken now adds one more step
        assert_eq!((series[0].1, series[1].1), (10.0, 30.0));
        assert!(series[0].0 < series[1].0 && series[1].0 <= 0.0);
        assert!(sampler.series(&metrics, "other").iter().all(|p| p.1 == 0.0));
    }

    #[test]
    fn rate_and_p99_come_from_the_window() {
        let before = counts(&[10, 10, 10], 10);
        let now = counts(&[10 + 90, 10 + 99, 10 + 100], 110);
        let l = live(Some(&before), &now, 10.0);
        assert_eq!(l.rate, 10.0);
        assert_eq!(l.p99_ms, Some(10.0));
        assert_eq!(l.requests, 110);
        let idle = live(Some(&now), &now, 5.0);
        assert_eq!((idle.rate, idle.p99_ms), (0.0, None));
    }
}
