//! The `[proxy.NAME]` tables of the config file: parsed (unknown fields refused), checked,
//! and resolved (secret header values read from the environment) at start-up.

use crate::error::ConfigError;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use lectern_core::ratelimit::RateLimit;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Who may call an upstream: the levels of the access gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLevel {
    Open,
    #[default]
    Client,
    Trainer,
    Admin,
}

impl AccessLevel {
    /// The level's name in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessLevel::Open => "open",
            AccessLevel::Client => "client",
            AccessLevel::Trainer => "trainer",
            AccessLevel::Admin => "admin",
        }
    }
}

/// The methods an upstream may forward.
const KNOWN_METHODS: [Method; 6] =
    [Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::DELETE, Method::PATCH];

/// One `[proxy.NAME]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpstreamSpec {
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    secret_headers: BTreeMap<String, String>,
    #[serde(default)]
    access: AccessLevel,
    methods: Option<Vec<String>>,
    #[serde(default, deserialize_with = "lectern_core::duration::deserialize")]
    cache_ttl: Option<Duration>,
    #[serde(default)]
    honor_cache_control: bool,
    cache_max_bytes: Option<u64>,
    #[serde(default, deserialize_with = "lectern_core::duration::deserialize")]
    stale_if_error: Option<Duration>,
    max_response_bytes: Option<u64>,
    #[serde(default, deserialize_with = "lectern_core::duration::deserialize")]
    timeout: Option<Duration>,
    rate_limit: Option<f64>,
    rate_burst: Option<u32>,
    max_concurrency: Option<usize>,
}

/// The config file as the proxy reads it: only `[proxy]`.
#[derive(Debug, Deserialize)]
struct ProxyFile {
    #[serde(default)]
    proxy: BTreeMap<String, UpstreamSpec>,
}

/// One upstream's checked settings, its secrets resolved.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub name: String,
    /// The base URL, its path ending in `/`.
    pub url: reqwest::Url,
    /// Headers sent upstream with every request (plain values, shown by `GET /v1/proxy`).
    pub headers: HeaderMap,
    /// Headers whose values came from the environment (marked sensitive; never shown).
    pub secret_headers: HeaderMap,
    pub access: AccessLevel,
    pub methods: Vec<Method>,
    pub cache_ttl: Duration,
    pub honor_cache_control: bool,
    pub cache_max_bytes: u64,
    pub stale_if_error: Duration,
    pub max_response_bytes: u64,
    pub timeout: Duration,
    pub rate_limit: Option<RateLimit>,
    pub max_concurrency: usize,
}

/// Defaults of the contract.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60);
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 64 << 20;
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 10 << 20;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_CONCURRENCY: usize = 16;

/// The upstreams of a config file's text; `env` reads an environment variable.
pub fn parse(text: &str, file: &str, env: impl Fn(&str) -> Option<String>) -> Result<Vec<UpstreamConfig>, ConfigError> {
    let parsed: ProxyFile =
        toml::from_str(text).map_err(|e| ConfigError::Parse { file: file.to_string(), message: e.to_string() })?;
    parsed
        .proxy
        .into_iter()
        .map(|(name, spec)| {
            resolve(&name, spec, &env).map_err(|message| ConfigError::Upstream {
                file: file.to_string(),
                upstream: name.clone(),
                message,
            })
        })
        .collect()
}

fn resolve(name: &str, spec: UpstreamSpec, env: &impl Fn(&str) -> Option<String>) -> Result<UpstreamConfig, String> {
    if !lectern_core::is_plain_name(name) || name.starts_with('.') {
        return Err("invalid upstream name: use letters, digits, '-', '_' and '.', not starting with '.'".into());
    }
    let rate_limit = match spec.rate_limit {
        Some(rate) => {
            let burst = spec.rate_burst.unwrap_or_else(|| (rate.ceil() as u32).max(1));
            Some(RateLimit::new(rate, burst).map_err(|e| e.to_string())?)
        }
        None if spec.rate_burst.is_some() => return Err("rate_burst needs rate_limit".into()),
        None => None,
    };
    let max_concurrency = spec.max_concurrency.unwrap_or(DEFAULT_MAX_CONCURRENCY);
    if max_concurrency == 0 {
        return Err("max_concurrency must be at least 1".into());
    }
    let max_response_bytes = spec.max_response_bytes.unwrap_or(DEFAULT_MAX_RESPONSE_BYTES);
    if max_response_bytes == 0 {
        return Err("max_response_bytes must be at least 1".into());
    }
    let timeout = spec.timeout.unwrap_or(DEFAULT_TIMEOUT);
    if timeout.is_zero() {
        return Err("timeout must be more than 0".into());
    }
    Ok(UpstreamConfig {
        name: name.to_string(),
        url: base_url(&spec.url)?,
        headers: plain_headers(&spec.headers)?,
        secret_headers: secret_headers(&spec.secret_headers, env)?,
        access: spec.access,
        methods: methods(spec.methods)?,
        cache_ttl: spec.cache_ttl.unwrap_or(DEFAULT_CACHE_TTL),
        honor_cache_control: spec.honor_cache_control,
        cache_max_bytes: spec.cache_max_bytes.unwrap_or(DEFAULT_CACHE_MAX_BYTES),
        stale_if_error: spec.stale_if_error.unwrap_or(Duration::ZERO),
        max_response_bytes,
        timeout,
        rate_limit,
        max_concurrency,
    })
}

/// An http(s) URL without credentials, query or fragment; its path made to end in `/`.
fn base_url(text: &str) -> Result<reqwest::Url, String> {
    let mut url = reqwest::Url::parse(text).map_err(|e| format!("url: invalid URL '{text}': {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!("url: '{text}' is not an http or https URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("url: credentials do not belong in the URL; use secret_headers".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("url: '{text}' has a query or a fragment"));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

fn header_name(name: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("invalid header name '{name}'"))
}

fn plain_headers(headers: &BTreeMap<String, String>) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let value = HeaderValue::from_str(value).map_err(|_| format!("headers: invalid value for '{name}'"))?;
        map.insert(header_name(name)?, value);
    }
    Ok(map)
}

/// The secret headers, their values read from the environment. Errors name the variable,
/// never a value.
fn secret_headers(
    variables: &BTreeMap<String, String>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, variable) in variables {
        let name = header_name(name)?;
        let value = env(variable)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("secret_headers: the environment variable {variable} is not set"))?;
        let mut value = HeaderValue::from_str(&value).map_err(|_| {
            format!("secret_headers: the environment variable {variable} does not hold a valid header value")
        })?;
        value.set_sensitive(true);
        map.insert(name, value);
    }
    Ok(map)
}

fn methods(names: Option<Vec<String>>) -> Result<Vec<Method>, String> {
    let Some(names) = names else { return Ok(vec![Method::GET, Method::HEAD]) };
    let mut methods = Vec::new();
    for name in names {
        let method = KNOWN_METHODS
            .iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(&name))
            .ok_or_else(|| format!("methods: '{name}' is not one of GET, HEAD, POST, PUT, DELETE, PATCH"))?;
        if !methods.contains(method) {
            methods.push(method.clone());
        }
    }
    if methods.is_empty() {
        return Err("methods: at least one method".into());
    }
    Ok(methods)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "WEATHER_KEY").then(|| "s3cret-value".to_string())
    }

    #[test]
    fn a_full_table_resolves_with_its_defaults() {
        let text = r#"
[server]
listen = "x"
[proxy.weather]
url = "https://api.example.com/v1"
headers = { Accept = "application/json" }
secret_headers = { "X-Api-Key" = "WEATHER_KEY" }
access = "trainer"
cache_ttl = "5m"
stale_if_error = 3600
rate_limit = 2.5
"#;
        let upstreams = parse(text, "f.toml", env).unwrap();
        let w = &upstreams[0];
        assert_eq!(w.url.as_str(), "https://api.example.com/v1/");
        assert_eq!(w.access, AccessLevel::Trainer);
        assert_eq!(w.cache_ttl, Duration::from_secs(300));
        assert_eq!(w.stale_if_error, Duration::from_secs(3600));
        assert_eq!(w.methods, vec![Method::GET, Method::HEAD]);
        assert_eq!(w.rate_limit, Some(RateLimit { per_second: 2.5, burst: 3 }));
        assert_eq!(w.secret_headers["x-api-key"], "s3cret-value");
        assert!(w.secret_headers["x-api-key"].is_sensitive());
        assert_eq!(w.timeout, DEFAULT_TIMEOUT);
    }

    #[test]
    fn bad_tables_are_refused_with_the_upstream_named() {
        let cases = [
            ("url = 'https://a/'\ncolour = 1", "colour"),
            ("url = 'ftp://a/'", "not an http"),
            ("url = 'https://u:p@a/'", "credentials"),
            ("url = 'https://a/'\ncache_ttl = '5 parsecs'", "invalid duration"),
            ("url = 'https://a/'\nmethods = ['BREW']", "BREW"),
            ("url = 'https://a/'\naccess = 'root'", "root"),
            ("url = 'https://a/'\nmax_concurrency = 0", "max_concurrency"),
            ("url = 'https://a/'\nrate_limit = -1.0", "rate limit"),
        ];
        for (table, expected) in cases {
            let text = format!("[proxy.w]\n{table}\n");
            let error = parse(&text, "f.toml", env).unwrap_err().to_string();
            assert!(error.contains(expected), "{table}: {error}");
        }
    }

    #[test]
    fn a_missing_secret_names_its_variable_and_no_value() {
        let text = "[proxy.w]\nurl = 'https://a/'\nsecret_headers = { Authorization = 'NOT_SET_ANYWHERE' }\n";
        let error = parse(text, "f.toml", env).unwrap_err().to_string();
        assert!(error.contains("NOT_SET_ANYWHERE") && error.contains("[proxy.w]"), "{error}");
    }
}
