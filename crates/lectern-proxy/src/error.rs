//! What can go wrong with a proxied request, each with its stable error code. Messages name
//! the upstream, never its secret headers (nor, for connection errors, its URL).

use lectern_core::{Coded, ErrorCode};

/// A proxied request that could not be answered by the upstream's own answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProxyError {
    /// No upstream of that name in the config file.
    #[error("no proxy upstream '{0}'")]
    NotFound(String),
    /// The path would leave the base URL, or cannot be forwarded as it is.
    #[error("invalid proxy path: {0}")]
    InvalidPath(String),
    /// The upstream's `methods` do not include this one.
    #[error("proxy upstream '{upstream}' does not take {method}")]
    MethodNotAllowed { upstream: String, method: String },
    /// Unreachable, not HTTP, or an answer larger than allowed.
    #[error("proxy upstream '{upstream}' failed: {reason}")]
    Upstream { upstream: String, reason: String },
    /// No whole answer within the upstream's `timeout`.
    #[error("proxy upstream '{upstream}' did not answer within {seconds} s")]
    Timeout { upstream: String, seconds: f64 },
    /// Over the rate limit, or no concurrency slot free within the timeout.
    #[error("proxy upstream '{upstream}' is busy: {reason}; retry later")]
    Busy { upstream: String, reason: String },
}

impl Coded for ProxyError {
    fn code(&self) -> ErrorCode {
        match self {
            ProxyError::NotFound(_) => ErrorCode::UpstreamNotFound,
            ProxyError::InvalidPath(_) => ErrorCode::InvalidRequest,
            ProxyError::MethodNotAllowed { .. } => ErrorCode::MethodNotAllowed,
            ProxyError::Upstream { .. } => ErrorCode::UpstreamError,
            ProxyError::Timeout { .. } => ErrorCode::UpstreamTimeout,
            ProxyError::Busy { .. } => ErrorCode::UpstreamBusy,
        }
    }
}

/// A config file's `[proxy]` tables that cannot be used (a start-up error).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// The TOML does not fit the schema (unknown field, wrong type, bad duration).
    #[error("{file}: [proxy]: {message}")]
    Parse { file: String, message: String },
    /// One upstream's settings cannot work.
    #[error("{file}: [proxy.{upstream}]: {message}")]
    Upstream { file: String, upstream: String, message: String },
}
