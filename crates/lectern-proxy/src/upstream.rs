//! One upstream: its cache, its in-flight misses, its limits, and the exchange with it
//! (redirects not followed, a timeout on the whole exchange, the answer read up to
//! `max_response_bytes`).

use crate::cache::{Entry, Policy, ResponseCache};
use crate::coalesce::Coalescer;
use crate::config::UpstreamConfig;
use crate::error::ProxyError;
use crate::headers::{self, ToClient};
use crate::metrics::{CacheStatus, UpstreamMetrics};
use crate::path;
use crate::{ProxyRequest, ProxyResponse};
use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, HeaderValue, Method};
use lectern_core::ratelimit::RateLimiter;
use reqwest::Url;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Semaphore;

/// What a coalesced miss shares: the answer, or why there is none.
type Outcome = Result<Arc<Entry>, ProxyError>;

/// A configured upstream and its state.
pub struct Upstream {
    pub config: UpstreamConfig,
    /// `None`: the upstream caches nothing (`cache_ttl = 0`, Cache-Control not honoured).
    cache: Option<ResponseCache>,
    policy: Policy,
    inflight: Coalescer<Outcome>,
    limiter: Option<RateLimiter>,
    slots: Semaphore,
    pub metrics: UpstreamMetrics,
}

impl Upstream {
    pub fn new(config: UpstreamConfig) -> Self {
        let caches = !config.cache_ttl.is_zero() || config.honor_cache_control;
        let policy = Policy {
            ttl: config.cache_ttl,
            honor_cache_control: config.honor_cache_control,
            stale_if_error: config.stale_if_error,
        };
        // The rate was checked when the config was read.
        let limiter = config.rate_limit.and_then(|limit| RateLimiter::new(limit).ok());
        Upstream {
            cache: caches.then(|| ResponseCache::new(config.cache_max_bytes)),
            policy,
            inflight: Coalescer::default(),
            limiter,
            slots: Semaphore::new(config.max_concurrency),
            metrics: UpstreamMetrics::default(),
            config,
        }
    }

    pub fn cache(&self) -> Option<&ResponseCache> {
        self.cache.as_ref()
    }

    /// Brings the cache's counts up to date (before they are shown).
    pub async fn settle(&self) {
        if let Some(cache) = &self.cache {
            cache.settle().await;
        }
    }

    /// Answers one request: from the cache, or from the upstream.
    pub async fn forward(
        &self,
        client: &reqwest::Client,
        request: ProxyRequest<'_>,
    ) -> Result<ProxyResponse, ProxyError> {
        if !self.config.methods.contains(request.method) {
            let method = request.method.to_string();
            return Err(ProxyError::MethodNotAllowed { upstream: self.config.name.clone(), method });
        }
        path::check(split_target(request.target).0)?;
        let cache = match &self.cache {
            Some(cache) if matches!(*request.method, Method::GET | Method::HEAD) => cache,
            _ => {
                let entry = self.fetch(client, &request, Instant::now()).await?;
                return Ok(respond(&entry, CacheStatus::Bypass, request.method));
            }
        };
        let now = Instant::now();
        let cached = self.lookup(cache, &request).await;
        if let Some(entry) = cached.as_ref().filter(|e| e.is_fresh(now)) {
            return Ok(respond(entry, CacheStatus::Hit, request.method));
        }
        let key = cache_key(&request);
        let (outcome, _) = self.inflight.run(&key, || self.fetch_and_store(client, cache, &request, &key)).await;
        let stale = cached.filter(|e| e.is_usable_stale(Instant::now()));
        match (outcome, stale) {
            (Ok(entry), Some(stale)) if entry.status.is_server_error() => {
                Ok(respond(&stale, CacheStatus::Stale, request.method))
            }
            (Err(ProxyError::Upstream { .. } | ProxyError::Timeout { .. }), Some(stale)) => {
                Ok(respond(&stale, CacheStatus::Stale, request.method))
            }
            (Ok(entry), _) => Ok(respond(&entry, CacheStatus::Miss, request.method)),
            (Err(e), _) => Err(e),
        }
    }

    /// The cached answer of the target: a GET answer serves a HEAD too.
    async fn lookup(&self, cache: &ResponseCache, request: &ProxyRequest<'_>) -> Option<Arc<Entry>> {
        match cache.get(request.target).await {
            Some(entry) => Some(entry),
            None if request.method == Method::HEAD => cache.get(&cache_key(request)).await,
            None => None,
        }
    }

    async fn fetch_and_store(
        &self,
        client: &reqwest::Client,
        cache: &ResponseCache,
        request: &ProxyRequest<'_>,
        key: &str,
    ) -> Outcome {
        let started = Instant::now();
        let entry = self.fetch(client, request, started).await?;
        if entry.keep_until > started {
            cache.insert(key.to_owned(), entry.clone()).await;
        }
        Ok(entry)
    }

    /// One exchange with the upstream, within its limits; the answer as an entry whose
    /// freshness the cache policy gives (none when it is not to be stored).
    async fn fetch(&self, client: &reqwest::Client, request: &ProxyRequest<'_>, now: Instant) -> Outcome {
        let (path, query) = split_target(request.target);
        let url = path::upstream_url(&self.config.url, path, query)?;
        self.admit()?;
        let _slot = tokio::time::timeout(self.config.timeout, self.slots.acquire())
            .await
            .map_err(|_| self.busy("every concurrency slot stayed taken for the timeout"))?
            .map_err(|_| self.busy("closed"))?;
        let headers = headers::to_upstream(request.headers, &self.config.headers, &self.config.secret_headers);
        let started = Instant::now();
        let exchange = self.exchange(client, request.method.clone(), url.clone(), headers, request.body.clone());
        let result = tokio::time::timeout(self.config.timeout, exchange).await;
        self.metrics.exchanged(started.elapsed());
        let (status, upstream_headers, body) = result.map_err(|_| ProxyError::Timeout {
            upstream: self.config.name.clone(),
            seconds: self.config.timeout.as_secs_f64(),
        })??;
        let filter = ToClient {
            secret: &self.config.secret_headers,
            base: &self.config.url,
            name: &self.config.name,
            requested: &url,
            keep_length: request.method == Method::HEAD,
        };
        let headers = filter.filter(&upstream_headers);
        let cacheable = matches!(*request.method, Method::GET | Method::HEAD) && self.cache.is_some();
        let fresh = if cacheable { self.policy.freshness(status, &upstream_headers) } else { None };
        let (fresh_until, keep_until) = match fresh {
            Some(fresh) => (now + fresh, now + fresh + self.policy.stale_if_error),
            None => (now, now),
        };
        Ok(Arc::new(Entry { status, headers, body, fresh_until, keep_until }))
    }

    /// The rate limit: misses only.
    fn admit(&self) -> Result<(), ProxyError> {
        match &self.limiter {
            Some(limiter) => limiter
                .check("")
                .map_err(|wait| self.busy(&format!("over its rate limit for {:.1} s more", wait.as_secs_f64()))),
            None => Ok(()),
        }
    }

    fn busy(&self, reason: &str) -> ProxyError {
        ProxyError::Busy { upstream: self.config.name.clone(), reason: reason.to_string() }
    }

    fn failed(&self, reason: String) -> ProxyError {
        ProxyError::Upstream { upstream: self.config.name.clone(), reason }
    }

    /// Sends the request and reads the whole answer, refusing one over `max_response_bytes`
    /// as soon as its declared length or what arrived says so.
    async fn exchange(
        &self,
        client: &reqwest::Client,
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<(http::StatusCode, HeaderMap, Bytes), ProxyError> {
        let limit = self.config.max_response_bytes;
        let too_large = |n: &dyn std::fmt::Display| {
            self.failed(format!("it answered {n} bytes, more than max_response_bytes ({limit})"))
        };
        let mut request = client.request(method.clone(), url).headers(headers);
        if !body.is_empty() {
            request = request.body(body);
        }
        let mut response = request.send().await.map_err(|e| self.failed(describe(&e)))?;
        let declared = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if method != Method::HEAD {
            if let Some(n) = declared.filter(|&n| n > limit) {
                return Err(too_large(&n));
            }
        }
        let mut body = BytesMut::with_capacity(declared.unwrap_or(0).min(limit).min(1 << 20) as usize);
        while let Some(chunk) = response.chunk().await.map_err(|e| self.failed(describe(&e)))? {
            if body.len() as u64 + chunk.len() as u64 > limit {
                return Err(too_large(&format!("more than {limit}")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((response.status(), std::mem::take(response.headers_mut()), body.freeze()))
    }
}

/// A reqwest error without the URL (errors go back to clients), with its causes.
fn describe(error: &reqwest::Error) -> String {
    let what = if error.is_connect() {
        "cannot connect"
    } else if error.is_body() || error.is_decode() {
        "cannot read its answer"
    } else {
        "the exchange failed"
    };
    let mut reason = what.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    reason
}

/// The path and the query of a request target (`a/b?x=1`).
fn split_target(target: &str) -> (&str, Option<&str>) {
    match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    }
}

/// The cache key of a request: the target for GET; HEAD answers apart.
fn cache_key(request: &ProxyRequest<'_>) -> String {
    if request.method == Method::HEAD {
        format!("HEAD {}", request.target)
    } else {
        request.target.to_owned()
    }
}

/// The answer to the client from an entry: the same status, headers and body (none for
/// HEAD, with the length it would have), and `x-lectern-cache`.
fn respond(entry: &Entry, cache: CacheStatus, method: &Method) -> ProxyResponse {
    let mut headers = entry.headers.clone();
    headers.insert(headers::CACHE_HEADER, HeaderValue::from_static(cache.as_str()));
    let body = if method == Method::HEAD {
        if !headers.contains_key(header::CONTENT_LENGTH) {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(entry.body.len()));
        }
        Bytes::new()
    } else {
        entry.body.clone()
    };
    ProxyResponse { status: entry.status, headers, body, cache }
}
