//! Access control building blocks: OIDC bearer-token verification, the API-key cache, and
//! per-key rate limits (the limiter lives in lectern-core, shared with the other listeners).

pub mod jwt;
pub mod keycache;
pub use lectern_core::ratelimit;
