//! Access control building blocks: OIDC bearer-token verification and the API-key cache (the
//! per-key rate limiter lives in `lectern_core::ratelimit`, shared with the other listeners).

pub mod jwt;
pub mod keycache;
