//! Access control building blocks: OIDC bearer-token verification and per-key rate limits.

pub mod jwt;
pub mod ratelimit;
