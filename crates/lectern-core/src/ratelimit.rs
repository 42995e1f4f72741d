//! Per-key rate limits, for every door a caller comes in by (the HTTP gate today; the gRPC
//! listener and the proxy's upstreams next). Nothing here knows about HTTP.
//!
//! Each key gets `burst` requests at once and `per_second` requests a second on average:
//! governor's keyed GCRA limiter, which is a token bucket of `burst` tokens refilled at
//! `per_second` a second. A refused request spends nothing and learns how long until it
//! would pass (for `Retry-After`). Keys whose bucket has refilled are indistinguishable from
//! keys never seen, so at most once per [`SWEEP_EVERY`] a check drops them: memory stays
//! bounded by the keys seen recently, without a background task.

use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::Quota;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How often keys whose bucket has refilled are dropped.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// The longest a full refill of the bucket may take (the limiter counts in u64 nanoseconds).
const MAX_REFILL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A rate: `per_second` requests a second on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

/// A rate that cannot work (zero, negative, not a number, or too slow to count).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RateLimitError {
    #[error("rate limit: requests per second must be a positive number, not {0}")]
    Rate(f64),
    #[error("rate limit: burst must be at least 1")]
    Burst,
    #[error("rate limit: {0} requests per second with a burst of {1} takes more than 100 years to refill")]
    TooSlow(f64, u32),
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
        self.quota().map(|_| ())
    }

    /// The governor quota: one request back every `1 / per_second` (at least a nanosecond:
    /// faster rates are as good as unlimited), `burst` at once.
    fn quota(&self) -> Result<Quota, RateLimitError> {
        if !(self.per_second.is_finite() && self.per_second > 0.0) {
            return Err(RateLimitError::Rate(self.per_second));
        }
        let burst = NonZeroU32::new(self.burst).ok_or(RateLimitError::Burst)?;
        let too_slow = RateLimitError::TooSlow(self.per_second, self.burst);
        let period = Duration::try_from_secs_f64(1.0 / self.per_second)
            .map_err(|_| too_slow.clone())?
            .max(Duration::from_nanos(1));
        if period.checked_mul(self.burst).is_none_or(|refill| refill > MAX_REFILL) {
            return Err(too_slow);
        }
        Ok(Quota::with_period(period).expect("the period is at least 1 ns").allow_burst(burst))
    }
}

/// Rate limits per key (an API key id, a token subject, an upstream name), all keys with
/// the same [`RateLimit`]. Generic over the clock so that tests can move time.
pub struct RateLimiter<C: Clock = DefaultClock> {
    limit: RateLimit,
    keys: governor::RateLimiter<String, DefaultKeyedStateStore<String>, C, NoOpMiddleware<C::Instant>>,
    start: C::Instant,
    /// Nanoseconds from `start` to the last sweep.
    swept_at: AtomicU64,
}

impl RateLimiter {
    /// A limiter on the monotonic clock.
    pub fn new(limit: RateLimit) -> Result<Self, RateLimitError> {
        Self::with_clock(limit, DefaultClock::default())
    }
}

impl<C: Clock> RateLimiter<C> {
    /// A limiter on `clock`.
    pub fn with_clock(limit: RateLimit, clock: C) -> Result<Self, RateLimitError> {
        let quota = limit.quota()?;
        let start = clock.now();
        let keys = governor::RateLimiter::hashmap_with_clock(quota, clock);
        Ok(RateLimiter { limit, keys, start, swept_at: AtomicU64::new(0) })
    }

    /// The rate every key gets.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Takes one request for `key` now; `Err(wait)` says how long until one would pass.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.sweep_if_due();
        match self.keys.check_key(&key.to_owned()) {
            Ok(()) => Ok(()),
            Err(not_until) => Err(not_until.wait_time_from(self.keys.clock().now())),
        }
    }

    /// How many keys are tracked (for tests and metrics).
    pub fn tracked_keys(&self) -> usize {
        self.keys.len()
    }

    /// Drops the keys whose bucket has refilled, when the last sweep is [`SWEEP_EVERY`] old
    /// (one caller sweeps; the others go on).
    fn sweep_if_due(&self) {
        let now = u64::from(self.keys.clock().now().duration_since(self.start));
        let last = self.swept_at.load(Ordering::Relaxed);
        if now.saturating_sub(last) < SWEEP_EVERY.as_nanos() as u64 {
            return;
        }
        if self.swept_at.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            self.keys.retain_recent();
            self.keys.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn limiter(per_second: f64, burst: u32) -> (RateLimiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (RateLimiter::with_clock(RateLimit::new(per_second, burst).unwrap(), clock.clone()).unwrap(), clock)
    }

    /// Asserts a refusal whose wait is `expected`, to the nanosecond.
    fn assert_wait(result: Result<(), Duration>, expected: Duration) {
        let wait = result.expect_err("should be refused");
        assert!(wait.abs_diff(expected) <= Duration::from_nanos(1), "waited {wait:?}, expected {expected:?}");
    }

    #[test]
    fn a_burst_passes_then_the_rate_applies() {
        let (limiter, clock) = limiter(2.0, 3);
        for _ in 0..3 {
            assert_eq!(limiter.check("k"), Ok(()));
        }
        // Empty: the next request passes in 1/2 s.
        assert_wait(limiter.check("k"), ms(500));
        // 250 ms later: 250 ms to go.
        clock.advance(ms(250));
        assert_wait(limiter.check("k"), ms(250));
        clock.advance(ms(250));
        assert_eq!(limiter.check("k"), Ok(()));
        assert!(limiter.check("k").is_err());
    }

    #[test]
    fn refused_requests_do_not_spend_anything() {
        let (limiter, clock) = limiter(1.0, 1);
        assert!(limiter.check("k").is_ok());
        for _ in 1..10 {
            clock.advance(ms(10));
            assert!(limiter.check("k").is_err());
        }
        clock.advance(ms(910));
        assert!(limiter.check("k").is_ok(), "refusals pushed the next pass back");
    }

    #[test]
    fn keys_are_independent() {
        let (limiter, _) = limiter(1.0, 1);
        assert!(limiter.check("a").is_ok());
        assert!(limiter.check("a").is_err());
        assert!(limiter.check("b").is_ok());
        assert_eq!(limiter.tracked_keys(), 2);
    }

    #[test]
    fn refill_is_capped_at_the_burst() {
        let (limiter, clock) = limiter(10.0, 2);
        assert!(limiter.check("k").is_ok());
        // An hour idle still gives only `burst` requests at once.
        clock.advance(Duration::from_secs(3600));
        assert!(limiter.check("k").is_ok());
        assert!(limiter.check("k").is_ok());
        assert_wait(limiter.check("k"), ms(100));
    }

    #[test]
    fn fractional_rates_wait_whole_periods() {
        // One request every 4 s.
        let (limiter, clock) = limiter(0.25, 1);
        assert!(limiter.check("k").is_ok());
        assert_wait(limiter.check("k"), Duration::from_secs(4));
        clock.advance(Duration::from_secs(3));
        assert_wait(limiter.check("k"), Duration::from_secs(1));
    }

    #[test]
    fn idle_keys_are_swept_and_start_again_with_a_full_burst() {
        let (limiter, clock) = limiter(1.0, 5);
        for key in ["a", "b", "c"] {
            assert!(limiter.check(key).is_ok());
        }
        assert_eq!(limiter.tracked_keys(), 3);
        // Within the sweep interval nothing is dropped.
        clock.advance(Duration::from_secs(30));
        assert!(limiter.check("busy").is_ok());
        assert_eq!(limiter.tracked_keys(), 4);
        // After it, a, b and c have refilled and are dropped; "busy" has spent its burst since.
        clock.advance(Duration::from_secs(29));
        for _ in 0..5 {
            let _ = limiter.check("busy");
        }
        clock.advance(Duration::from_secs(2));
        assert!(limiter.check("new").is_ok());
        assert_eq!(limiter.tracked_keys(), 2, "only busy and new remain");
        // A dropped key starts again with a full burst, and no more.
        for _ in 0..5 {
            assert!(limiter.check("a").is_ok());
        }
        assert!(limiter.check("a").is_err());
    }

    #[test]
    fn memory_stays_bounded_by_the_keys_seen_recently() {
        let (limiter, clock) = limiter(100.0, 1);
        for round in 0..5 {
            for i in 0..20_000 {
                let _ = limiter.check(&format!("key-{round}-{i}"));
            }
            assert!(limiter.tracked_keys() <= 20_001, "round {round}: {} keys", limiter.tracked_keys());
            clock.advance(SWEEP_EVERY);
        }
        let _ = limiter.check("last");
        assert_eq!(limiter.tracked_keys(), 1);
    }

    #[test]
    fn invalid_rates_are_refused() {
        assert_eq!(RateLimit::new(0.0, 1), Err(RateLimitError::Rate(0.0)));
        assert!(RateLimit::new(f64::NAN, 1).is_err());
        assert!(RateLimit::new(-1.0, 1).is_err());
        assert_eq!(RateLimit::new(1.0, 0), Err(RateLimitError::Burst));
        assert!(RateLimiter::new(RateLimit { per_second: f64::INFINITY, burst: 1 }).is_err());
        // Too slow to count in nanoseconds: refused, not a panic or an overflow.
        assert!(matches!(RateLimit::new(1e-30, 1), Err(RateLimitError::TooSlow(..))));
        assert!(matches!(RateLimit::new(1e-6, u32::MAX), Err(RateLimitError::TooSlow(..))));
        // Faster than a request a nanosecond is accepted (as good as unlimited).
        let limiter = RateLimiter::new(RateLimit::new(1e12, u32::MAX).unwrap()).unwrap();
        assert!(limiter.check("k").is_ok());
    }
}
