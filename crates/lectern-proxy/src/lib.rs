//! Lectern's caching proxy: the named upstreams of the config file (`[proxy.NAME]`), served
//! under `/proxy/{name}/{path}` by the HTTP layer. Each upstream has its response cache (TTL
//! or Cache-Control, a size cap, stale-if-error), coalesces identical misses, limits its
//! rate and concurrency, and keeps its secret headers to itself. Nothing here knows the
//! HTTP server; requests and answers are `http` types.

mod cache;
mod coalesce;
mod config;
mod error;
mod headers;
mod metrics;
mod path;
mod upstream;

pub use config::{parse as parse_config, AccessLevel, UpstreamConfig};
pub use error::{ConfigError, ProxyError};
pub use metrics::{CacheStatus, MetricsSnapshot};

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use upstream::Upstream;

/// One request to an upstream.
pub struct ProxyRequest<'a> {
    pub method: &'a Method,
    /// The raw request target after `/proxy/{name}/`: the path, and `?query` when there is
    /// one, still percent-encoded (the cache key).
    pub target: &'a str,
    pub headers: &'a HeaderMap,
    pub body: Bytes,
}

/// The answer to a proxied request.
#[derive(Debug)]
pub struct ProxyResponse {
    pub status: StatusCode,
    /// The upstream's headers that may go back, and `x-lectern-cache`.
    pub headers: HeaderMap,
    pub body: Bytes,
    pub cache: CacheStatus,
}

/// Every upstream of the config file.
pub struct Proxy {
    upstreams: HashMap<String, Arc<Upstream>>,
    client: reqwest::Client,
}

impl Proxy {
    /// The proxy of a config file's text (`file` names it in errors); secret headers are read
    /// from the environment now.
    pub fn from_config(text: &str, file: &str) -> Result<Self, ConfigError> {
        Self::new(config::parse(text, file, |name| std::env::var(name).ok())?)
    }

    /// The proxy of checked upstreams.
    pub fn new(upstreams: Vec<UpstreamConfig>) -> Result<Self, ConfigError> {
        let client =
            reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).tcp_nodelay(true).build().map_err(
                |e| ConfigError::Parse { file: String::new(), message: format!("cannot build the HTTP client: {e}") },
            )?;
        let upstreams = upstreams.into_iter().map(|c| (c.name.clone(), Arc::new(Upstream::new(c)))).collect();
        Ok(Proxy { upstreams, client })
    }

    /// Who may call the upstream `name`; `None`: no such upstream.
    pub fn access(&self, name: &str) -> Option<AccessLevel> {
        self.upstreams.get(name).map(|u| u.config.access)
    }

    /// Answers `request` through the upstream `name`.
    pub async fn forward(&self, name: &str, request: ProxyRequest<'_>) -> Result<ProxyResponse, ProxyError> {
        let upstream = self.upstreams.get(name).ok_or_else(|| ProxyError::NotFound(name.to_string()))?;
        let result = upstream.forward(&self.client, request).await;
        match &result {
            Ok(response) => upstream.metrics.answered(response.cache),
            Err(_) => upstream.metrics.failed(),
        }
        result
    }

    /// Every upstream's settings (secret header names only) and statistics, by name.
    pub async fn list(&self) -> Vec<UpstreamInfo> {
        let mut list = Vec::with_capacity(self.upstreams.len());
        for upstream in self.by_name() {
            upstream.settle().await;
            list.push(info(upstream));
        }
        list
    }

    /// Every upstream's metrics and cache size, by name.
    pub async fn metrics(&self) -> Vec<(String, MetricsSnapshot, u64)> {
        let mut all = Vec::with_capacity(self.upstreams.len());
        for upstream in self.by_name() {
            upstream.settle().await;
            let bytes = upstream.cache().map_or(0, |c| c.bytes());
            all.push((upstream.config.name.clone(), upstream.metrics.snapshot(), bytes));
        }
        all
    }

    fn by_name(&self) -> Vec<&Upstream> {
        let mut upstreams: Vec<&Upstream> = self.upstreams.values().map(|u| u.as_ref()).collect();
        upstreams.sort_by(|a, b| a.config.name.cmp(&b.config.name));
        upstreams
    }
}

/// An upstream as `GET /v1/proxy` shows it.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpstreamInfo {
    pub name: String,
    pub url: String,
    /// `open`, `client`, `trainer` or `admin`.
    pub access: String,
    pub methods: Vec<String>,
    /// The plain headers sent upstream.
    pub headers: BTreeMap<String, String>,
    /// The names of the headers whose values come from the environment (never the values).
    pub secret_headers: Vec<String>,
    pub cache_ttl_ms: u64,
    pub honor_cache_control: bool,
    pub cache_max_bytes: u64,
    pub stale_if_error_ms: u64,
    pub max_response_bytes: u64,
    pub timeout_ms: u64,
    pub rate_limit: Option<f64>,
    pub rate_burst: Option<u32>,
    pub max_concurrency: usize,
    pub cache: CacheStats,
}

/// An upstream's cache and request counts.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CacheStats {
    /// Answers held (fresh or kept for stale-if-error).
    pub entries: u64,
    pub bytes: u64,
    pub hits: u64,
    pub misses: u64,
    pub stale: u64,
    pub bypass: u64,
    /// Requests answered with an error (unreachable, timeout, busy, refused path).
    pub errors: u64,
}

fn info(upstream: &Upstream) -> UpstreamInfo {
    let c = &upstream.config;
    let counts: HashMap<&str, u64> = upstream.metrics.snapshot().requests.into_iter().collect();
    let (entries, bytes) = upstream.cache().map_or((0, 0), |cache| (cache.entries(), cache.bytes()));
    UpstreamInfo {
        name: c.name.clone(),
        url: c.url.to_string(),
        access: c.access.as_str().to_string(),
        methods: c.methods.iter().map(|m| m.to_string()).collect(),
        headers: c.headers.iter().map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into())).collect(),
        secret_headers: c.secret_headers.keys().map(|n| n.to_string()).collect(),
        cache_ttl_ms: c.cache_ttl.as_millis() as u64,
        honor_cache_control: c.honor_cache_control,
        cache_max_bytes: c.cache_max_bytes,
        stale_if_error_ms: c.stale_if_error.as_millis() as u64,
        max_response_bytes: c.max_response_bytes,
        timeout_ms: c.timeout.as_millis() as u64,
        rate_limit: c.rate_limit.map(|r| r.per_second),
        rate_burst: c.rate_limit.map(|r| r.burst),
        max_concurrency: c.max_concurrency,
        cache: CacheStats {
            entries,
            bytes,
            hits: counts["hit"],
            misses: counts["miss"],
            stale: counts["stale"],
            bypass: counts["bypass"],
            errors: counts["error"],
        },
    }
}
