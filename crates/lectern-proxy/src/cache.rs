//! The response cache of one upstream: answers by request target, each fresh for its time
//! to live then kept as stale (for `stale_if_error`) until it expires; the total size is
//! capped, the least recently used answers leaving first. Also how long an answer may be
//! cached: the upstream's TTL, or its `Cache-Control` when told to honour it.

use bytes::Bytes;
use http::{header, HeaderMap, StatusCode};
use moka::future::Cache;
use moka::policy::EvictionPolicy;
use moka::Expiry;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One upstream answer, as it goes back to clients (headers already filtered).
#[derive(Debug)]
pub struct Entry {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Served as a hit until then.
    pub fresh_until: Instant,
    /// Served as stale (when the upstream fails) until then; gone after.
    pub keep_until: Instant,
}

impl Entry {
    /// Fresh now.
    pub fn is_fresh(&self, now: Instant) -> bool {
        now < self.fresh_until
    }

    /// May stand in for a failed upstream now.
    pub fn is_usable_stale(&self, now: Instant) -> bool {
        now < self.keep_until
    }

    /// The bytes it is counted as in the cache (body, headers, and a fixed overhead).
    fn weight(&self, key: &str) -> u32 {
        let headers: usize = self.headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 32).sum();
        u32::try_from(key.len() + self.body.len() + headers + 128).unwrap_or(u32::MAX)
    }
}

/// The statuses whose answers are cached.
pub fn cacheable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 200 | 203 | 204 | 300 | 301 | 404 | 410)
}

/// What a `Cache-Control` header says about storing an answer in a shared cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directive {
    /// `no-store` or `private`: never stored.
    NoStore,
    /// Fresh this long (`s-maxage`, else `max-age`; `no-cache`: zero).
    FreshFor(Duration),
    /// Nothing about freshness: the upstream's TTL applies.
    Unspecified,
}

/// Reads every `Cache-Control` header of an answer.
pub fn cache_control(headers: &HeaderMap) -> Directive {
    let (mut max_age, mut s_maxage, mut no_cache) = (None, None, false);
    for value in headers.get_all(header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            let (name, argument) = match directive.split_once('=') {
                Some((name, argument)) => (name.trim(), Some(argument.trim().trim_matches('"'))),
                None => (directive.trim(), None),
            };
            let seconds = || argument.and_then(|a| a.parse::<u64>().ok()).map(Duration::from_secs);
            match name.to_ascii_lowercase().as_str() {
                "no-store" | "private" => return Directive::NoStore,
                "no-cache" => no_cache = true,
                "max-age" => max_age = max_age.or(seconds()),
                "s-maxage" => s_maxage = s_maxage.or(seconds()),
                _ => {}
            }
        }
    }
    if no_cache {
        return Directive::FreshFor(Duration::ZERO);
    }
    s_maxage.or(max_age).map_or(Directive::Unspecified, Directive::FreshFor)
}

/// How an upstream caches.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub ttl: Duration,
    pub honor_cache_control: bool,
    pub stale_if_error: Duration,
}

impl Policy {
    /// How long an answer stays fresh; `None`: it is not stored at all.
    pub fn freshness(&self, status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
        if !cacheable_status(status) {
            return None;
        }
        let fresh = if self.honor_cache_control {
            match cache_control(headers) {
                Directive::NoStore => return None,
                _ if headers.get(header::VARY).is_some_and(|v| v.as_bytes().contains(&b'*')) => return None,
                Directive::FreshFor(d) => d,
                Directive::Unspecified => self.ttl,
            }
        } else {
            self.ttl
        };
        (!fresh.is_zero() || !self.stale_if_error.is_zero()).then_some(fresh)
    }
}

/// Entries leave when they can no longer serve, even as stale.
struct UntilUseless;

impl Expiry<String, Arc<Entry>> for UntilUseless {
    fn expire_after_create(&self, _: &String, entry: &Arc<Entry>, now: Instant) -> Option<Duration> {
        Some(entry.keep_until.saturating_duration_since(now))
    }

    fn expire_after_update(
        &self,
        _: &String,
        entry: &Arc<Entry>,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.keep_until.saturating_duration_since(now))
    }
}

/// The answers of one upstream, by request target.
pub struct ResponseCache {
    entries: Cache<String, Arc<Entry>>,
}

impl ResponseCache {
    /// A cache of at most `max_bytes` (as [`Entry::weight`] counts them).
    pub fn new(max_bytes: u64) -> Self {
        let entries = Cache::builder()
            .max_capacity(max_bytes)
            .eviction_policy(EvictionPolicy::lru())
            .weigher(|key: &String, entry: &Arc<Entry>| entry.weight(key))
            .expire_after(UntilUseless)
            .build();
        ResponseCache { entries }
    }

    /// The entry of a target, fresh or stale.
    pub async fn get(&self, key: &str) -> Option<Arc<Entry>> {
        self.entries.get(key).await
    }

    pub async fn insert(&self, key: String, entry: Arc<Entry>) {
        self.entries.insert(key, entry).await;
    }

    /// Bytes held now (approximate between maintenance runs).
    pub fn bytes(&self) -> u64 {
        self.entries.weighted_size()
    }

    /// Entries held now (approximate between maintenance runs).
    pub fn entries(&self) -> u64 {
        self.entries.entry_count()
    }

    /// Applies pending reads, writes and evictions, so that the counts are exact.
    pub async fn settle(&self) {
        self.entries.run_pending_tasks().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with_cache_control(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn cache_control_directives() {
        let cases = [
            ("max-age=60", Directive::FreshFor(Duration::from_secs(60))),
            ("public, max-age=60, s-maxage=5", Directive::FreshFor(Duration::from_secs(5))),
            ("S-MaxAge=\"7\"", Directive::FreshFor(Duration::from_secs(7))),
            ("no-cache, max-age=60", Directive::FreshFor(Duration::ZERO)),
            ("max-age=60, private", Directive::NoStore),
            ("no-store", Directive::NoStore),
            ("public", Directive::Unspecified),
            ("max-age=soon", Directive::Unspecified),
        ];
        for (value, expected) in cases {
            assert_eq!(cache_control(&with_cache_control(value)), expected, "{value}");
        }
        assert_eq!(cache_control(&HeaderMap::new()), Directive::Unspecified);
    }

    #[test]
    fn freshness_follows_the_policy() {
        let ttl = Duration::from_secs(30);
        let plain = Policy { ttl, honor_cache_control: false, stale_if_error: Duration::ZERO };
        let honour = Policy { honor_cache_control: true, ..plain };
        let no_store = with_cache_control("no-store");
        assert_eq!(plain.freshness(StatusCode::OK, &no_store), Some(ttl));
        assert_eq!(honour.freshness(StatusCode::OK, &no_store), None);
        assert_eq!(honour.freshness(StatusCode::OK, &with_cache_control("max-age=3")), Some(Duration::from_secs(3)));
        assert_eq!(honour.freshness(StatusCode::OK, &HeaderMap::new()), Some(ttl));
        assert_eq!(honour.freshness(StatusCode::OK, &with_cache_control("no-cache")), None);
        let stale_ok = Policy { stale_if_error: ttl, ..honour };
        assert_eq!(stale_ok.freshness(StatusCode::OK, &with_cache_control("no-cache")), Some(Duration::ZERO));
        for status in [500, 502, 201, 302, 403] {
            assert_eq!(plain.freshness(StatusCode::from_u16(status).unwrap(), &HeaderMap::new()), None, "{status}");
        }
        assert_eq!(plain.freshness(StatusCode::NOT_FOUND, &HeaderMap::new()), Some(ttl));
    }

    fn entry(bytes: usize, ttl: Duration) -> Arc<Entry> {
        let now = Instant::now();
        Arc::new(Entry {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::from(vec![b'x'; bytes]),
            fresh_until: now + ttl,
            keep_until: now + ttl,
        })
    }

    #[tokio::test]
    async fn the_size_cap_evicts_the_least_recently_used() {
        let cache = ResponseCache::new(10_000);
        let hour = Duration::from_secs(3600);
        for key in ["a", "b", "c"] {
            cache.insert(key.into(), entry(3000, hour)).await;
            cache.settle().await;
        }
        assert!(cache.get("a").await.is_some()); // a is now more recent than b
        cache.settle().await;
        cache.insert("d".into(), entry(3000, hour)).await;
        cache.settle().await;
        assert!(cache.bytes() <= 10_000, "{} bytes held", cache.bytes());
        assert!(cache.get("b").await.is_none(), "the least recently used stayed");
        for key in ["a", "c", "d"] {
            assert!(cache.get(key).await.is_some(), "{key} left");
        }
    }

    #[tokio::test]
    async fn entries_leave_once_useless() {
        let cache = ResponseCache::new(1 << 20);
        cache.insert("gone".into(), entry(10, Duration::from_millis(20))).await;
        assert!(cache.get("gone").await.is_some());
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(cache.get("gone").await.is_none());
    }
}
