//! Per-key rate limiting: one token bucket per key id.
//!
//! A bucket holds at most `burst` tokens and refills at `per_second` tokens a second; a request
//! takes one token, or is refused with how long until one is there (for `Retry-After`). A full
//! bucket is the same as no bucket, so idle buckets are dropped by a sweep that runs at most
//! once a minute from inside [`RateLimiter::check_at`]: memory stays bounded by the keys seen
//! recently, without a background task.
//!
//! The clock is passed in ([`RateLimiter::check_at`]), so tests need no sleeps.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often idle (full) buckets are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// A rate: `per_second` requests a second on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

/// A rate that cannot work (zero, negative or not a number).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RateLimitError {
    #[error("rate limit: requests per second must be a positive number, not {0}")]
    Rate(f64),
    #[error("rate limit: burst must be at least 1")]
    Burst,
}

impl RateLimit {
    /// A checked rate.
    pub fn new(per_second: f64, burst: u32) -> Result<Self, RateLimitError> {
        let limit = RateLimit { per_second, burst };
        limit.validate()?;
        Ok(limit)
    }

    /// Checks a rate built field by field (for example from a config file).
    pub fn validate(&self) -> Result<(), RateLimitError> {
        if !(self.per_second.is_finite() && self.per_second > 0.0) {
            return Err(RateLimitError::Rate(self.per_second));
        }
        if self.burst == 0 {
            return Err(RateLimitError::Burst);
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    /// The tokens at `now`, refilled since the last update and capped at the burst.
    fn refilled(&self, limit: &RateLimit, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        (self.tokens + elapsed * limit.per_second).min(f64::from(limit.burst))
    }
}

#[derive(Debug)]
struct Buckets {
    map: HashMap<String, Bucket>,
    last_sweep: Option<Instant>,
}

/// Token buckets per key id, behind one mutex (each check is a hash lookup and a few float
/// operations, so the lock is held for well under a microsecond).
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<Buckets>,
}

impl RateLimiter {
    /// A limiter whose keys all get `limit` (unless [`RateLimiter::check_with`] names another).
    pub fn new(limit: RateLimit) -> Result<Self, RateLimitError> {
        limit.validate()?;
        Ok(RateLimiter { limit, buckets: Mutex::new(Buckets { map: HashMap::new(), last_sweep: None }) })
    }

    /// The default rate of this limiter.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Takes a token for `key_id` now; `Err(wait)` says how long until one is available.
    pub fn check(&self, key_id: &str) -> Result<(), Duration> {
        self.check_at(key_id, Instant::now())
    }

    /// [`RateLimiter::check`] at an explicit instant.
    pub fn check_at(&self, key_id: &str, now: Instant) -> Result<(), Duration> {
        self.check_with(key_id, &self.limit, now)
    }

    /// Like [`RateLimiter::check_at`] with a rate of this key's own (a per-key override).
    /// The rate must be valid ([`RateLimit::validate`]); an invalid one refuses every request.
    pub fn check_with(&self, key_id: &str, limit: &RateLimit, now: Instant) -> Result<(), Duration> {
        if limit.validate().is_err() {
            return Err(Duration::MAX);
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        buckets.sweep(limit, now);
        if !buckets.map.contains_key(key_id) {
            buckets.map.insert(key_id.to_owned(), Bucket { tokens: f64::from(limit.burst), updated: now });
        }
        let bucket = buckets.map.get_mut(key_id).expect("inserted above");
        let tokens = bucket.refilled(limit, now);
        // An instant earlier than the last update (callers racing) does not move the clock back.
        bucket.updated = bucket.updated.max(now);
        if tokens >= 1.0 {
            bucket.tokens = tokens - 1.0;
            Ok(())
        } else {
            bucket.tokens = tokens;
            Err(Duration::from_secs_f64((1.0 - tokens) / limit.per_second))
        }
    }

    /// How many keys have a bucket (for tests and metrics).
    pub fn tracked_keys(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).map.len()
    }
}

impl Buckets {
    /// Drops the buckets that have refilled completely, at most once per [`SWEEP_EVERY`].
    /// Buckets are judged with the rate of the current call: a key with a slower override may
    /// be dropped a little early, which only ever gives it back its own full burst later than
    /// its own refill would have.
    fn sweep(&mut self, limit: &RateLimit, now: Instant) {
        match self.last_sweep {
            None => {
                self.last_sweep = Some(now);
                return;
            }
            Some(last) if now.saturating_duration_since(last) < SWEEP_EVERY => return,
            Some(_) => {}
        }
        self.last_sweep = Some(now);
        let full = f64::from(limit.burst);
        self.map.retain(|_, bucket| bucket.refilled(limit, now) < full);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Asserts a refusal whose wait is `expected`, to the nanosecond.
    fn assert_wait(result: Result<(), Duration>, expected: Duration) {
        let wait = result.expect_err("should be refused");
        assert!(wait.abs_diff(expected) <= Duration::from_nanos(1), "waited {wait:?}, expected {expected:?}");
    }

    #[test]
    fn a_burst_passes_then_the_rate_applies() {
        let limiter = RateLimiter::new(RateLimit::new(2.0, 3).unwrap()).unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check_at("k", t0), Ok(()));
        }
        // Empty: the next token comes in 1/2 s.
        assert_wait(limiter.check_at("k", t0), ms(500));
        // 250 ms later half a token has come back: 250 ms to go.
        assert_wait(limiter.check_at("k", t0 + ms(250)), ms(250));
        assert_eq!(limiter.check_at("k", t0 + ms(500)), Ok(()));
        assert!(limiter.check_at("k", t0 + ms(500)).is_err());
    }

    #[test]
    fn refused_requests_do_not_spend_tokens() {
        let limiter = RateLimiter::new(RateLimit::new(1.0, 1).unwrap()).unwrap();
        let t0 = Instant::now();
        assert!(limiter.check_at("k", t0).is_ok());
        for i in 1..10 {
            assert!(limiter.check_at("k", t0 + ms(i * 10)).is_err());
        }
        assert!(limiter.check_at("k", t0 + ms(1001)).is_ok());
    }

    #[test]
    fn keys_are_independent() {
        let limiter = RateLimiter::new(RateLimit::new(1.0, 1).unwrap()).unwrap();
        let t0 = Instant::now();
        assert!(limiter.check_at("a", t0).is_ok());
        assert!(limiter.check_at("a", t0).is_err());
        assert!(limiter.check_at("b", t0).is_ok());
        assert_eq!(limiter.tracked_keys(), 2);
    }

    #[test]
    fn refill_is_capped_at_the_burst() {
        let limiter = RateLimiter::new(RateLimit::new(10.0, 2).unwrap()).unwrap();
        let t0 = Instant::now();
        assert!(limiter.check_at("k", t0).is_ok());
        // An hour idle still gives only `burst` requests at once.
        let later = t0 + Duration::from_secs(3600);
        assert!(limiter.check_at("k", later).is_ok());
        assert!(limiter.check_at("k", later).is_ok());
        assert_wait(limiter.check_at("k", later), ms(100));
    }

    #[test]
    fn an_earlier_instant_does_not_refill_or_panic() {
        let limiter = RateLimiter::new(RateLimit::new(1.0, 1).unwrap()).unwrap();
        let t0 = Instant::now() + Duration::from_secs(10);
        assert!(limiter.check_at("k", t0).is_ok());
        assert!(limiter.check_at("k", t0 - Duration::from_secs(5)).is_err());
        assert!(limiter.check_at("k", t0 + ms(999)).is_err());
        assert!(limiter.check_at("k", t0 + ms(1001)).is_ok());
    }

    #[test]
    fn idle_buckets_are_swept() {
        let limiter = RateLimiter::new(RateLimit::new(1.0, 5).unwrap()).unwrap();
        let t0 = Instant::now();
        for key in ["a", "b", "c"] {
            assert!(limiter.check_at(key, t0).is_ok());
        }
        assert_eq!(limiter.tracked_keys(), 3);
        // Within the sweep interval nothing is dropped.
        assert!(limiter.check_at("busy", t0 + Duration::from_secs(30)).is_ok());
        assert_eq!(limiter.tracked_keys(), 4);
        // After it, a, b and c have refilled and are dropped; "busy" has spent tokens since.
        for _ in 0..5 {
            let _ = limiter.check_at("busy", t0 + Duration::from_secs(59));
        }
        assert!(limiter.check_at("new", t0 + Duration::from_secs(61)).is_ok());
        assert_eq!(limiter.tracked_keys(), 2, "only busy and new remain");
        // A dropped key starts again with a full burst.
        for _ in 0..5 {
            assert!(limiter.check_at("a", t0 + Duration::from_secs(61)).is_ok());
        }
        assert!(limiter.check_at("a", t0 + Duration::from_secs(61)).is_err());
    }

    #[test]
    fn per_key_overrides() {
        let limiter = RateLimiter::new(RateLimit::new(1.0, 1).unwrap()).unwrap();
        let generous = RateLimit::new(100.0, 10).unwrap();
        let t0 = Instant::now();
        for _ in 0..10 {
            assert!(limiter.check_with("vip", &generous, t0).is_ok());
        }
        assert_wait(limiter.check_with("vip", &generous, t0), ms(10));
        assert!(limiter.check_with("vip", &RateLimit { per_second: 0.0, burst: 1 }, t0).is_err());
    }

    #[test]
    fn invalid_rates_are_refused() {
        assert_eq!(RateLimit::new(0.0, 1), Err(RateLimitError::Rate(0.0)));
        assert!(RateLimit::new(f64::NAN, 1).is_err());
        assert!(RateLimit::new(-1.0, 1).is_err());
        assert_eq!(RateLimit::new(1.0, 0), Err(RateLimitError::Burst));
        assert!(RateLimiter::new(RateLimit { per_second: f64::INFINITY, burst: 1 }).is_err());
    }
}
