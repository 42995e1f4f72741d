//! The access gate: classifies each route, checks the caller's credential (an API key or an
//! OIDC bearer token) and role, applies the per-key rate limit, and hands the handlers a
//! [`Principal`]. Credentials never reach a log or an error message.

use crate::auth::jwt::OidcVerifier;
use crate::auth::keycache::KeyCache;
use crate::auth::ratelimit::RateLimiter;
use crate::principal::Principal;
use crate::{ApiError, AppState};
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use lectern_core::{Coded, ErrorCode};
use lectern_store::{ApiKey, Role, Store};
use std::sync::atomic::{AtomicBool, Ordering};

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Health, server metadata, metrics, the OpenAPI file.
    Open,
    /// Inference and model metadata: any role (when inference is protected).
    Infer,
    /// Models and the repository: trainer or admin.
    Models,
    /// Keys and the audit log: admin.
    Admin,
}

/// The access a request needs.
pub fn access(method: &Method, path: &str) -> Access {
    let open = matches!(path, "/v2" | "/v2/health/live" | "/v2/health/ready" | "/metrics" | "/openapi.json");
    if open || *method == Method::OPTIONS {
        Access::Open
    } else if path.starts_with("/v1/pipelines/") && (*method == Method::PUT || *method == Method::DELETE) {
        Access::Models
    } else if path.starts_with("/v2/models/") || path == "/v1/pipelines" || path.starts_with("/v1/pipelines/") {
        Access::Infer
    } else if path == "/v1/models" || path.starts_with("/v1/models/") || path.starts_with("/v2/repository/") {
        Access::Models
    } else if path == "/v1/keys" || path.starts_with("/v1/keys/") || path == "/v1/audit" {
        Access::Admin
    } else {
        Access::Open
    }
}

fn allowed(access: Access, role: Role) -> bool {
    match access {
        Access::Open | Access::Infer => true,
        Access::Models => role >= Role::Trainer,
        Access::Admin => role == Role::Admin,
    }
}

/// How the gate is set up.
pub struct AuthSettings {
    /// `--auth none`: no checks at all.
    pub disabled: bool,
    pub oidc: Option<OidcVerifier>,
    /// Inference routes need a credential too.
    pub protect_inference: bool,
    pub limiter: Option<RateLimiter>,
}

/// The gate's state.
pub struct AuthState {
    settings: AuthSettings,
    /// At least one live API key exists: credentials are required.
    keys_live: AtomicBool,
    keys: KeyCache,
}

impl AuthState {
    pub fn new(settings: AuthSettings, keys_live: bool) -> Self {
        AuthState { settings, keys_live: AtomicBool::new(keys_live), keys: KeyCache::default() }
    }

    /// No checks at all (tests, `--auth none`).
    pub fn disabled() -> Self {
        Self::new(AuthSettings { disabled: true, oidc: None, protect_inference: false, limiter: None }, false)
    }

    /// Credentials are checked: auth is not disabled and a key or an issuer exists.
    pub fn enforced(&self) -> bool {
        !self.settings.disabled && (self.keys_live.load(Ordering::Relaxed) || self.settings.oidc.is_some())
    }

    /// Called after keys are created or revoked; `live`: whether any live key remains.
    pub fn keys_changed(&self, live: bool) {
        self.keys_live.store(live, Ordering::Relaxed);
        self.keys.clear();
    }

    async fn key(&self, store: &Store, presented: &str) -> Result<Option<ApiKey>, ApiError> {
        self.keys
            .get_or_verify(presented, store.verify_key(presented))
            .await
            .map_err(|e| ApiError::coded(e.code(), format!("cannot check credentials: {e}")))
    }

    /// Who presents `token`, or why they are refused.
    async fn principal(&self, store: &Store, token: &str) -> Result<Principal, ApiError> {
        if token.starts_with("lk_") {
            return match self.key(store, token).await? {
                Some(key) => Ok(Principal { actor: format!("key:{}", key.id), role: key.role }),
                None => Err(unauthorized("invalid or revoked API key")),
            };
        }
        let Some(oidc) = &self.settings.oidc else { return Err(unauthorized("invalid API key")) };
        let verified = oidc.verify(token).await.map_err(|e| {
            if e.is_unavailable() {
                ApiError::coded(ErrorCode::IdentityProviderUnavailable, format!("cannot check the token: {e}"))
            } else {
                unauthorized(&format!("invalid token: {e}"))
            }
        })?;
        let role = verified.roles.iter().filter_map(|r| r.parse::<Role>().ok()).max().ok_or_else(|| {
            ApiError::new(StatusCode::FORBIDDEN, "the token carries no Lectern role (admin, trainer or client)")
        })?;
        Ok(Principal { actor: format!("jwt:{}", verified.subject), role })
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, message.to_string())
}

/// The bearer credential of a request (`Authorization: Bearer ...` or `X-API-Key`).
fn credential(request: &Request) -> Option<&str> {
    let headers = request.headers();
    if let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let (scheme, token) = value.trim().split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty());
    }
    headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim).filter(|t| !t.is_empty())
}

/// Lets a request through (with its [`Principal`] when the route records who acted) or
/// answers it with the refusal.
pub async fn admit(state: &AppState, mut request: Request) -> Result<Request, Response> {
    let needed = access(request.method(), request.uri().path());
    let auth = &state.auth;
    let open = needed == Access::Open || (needed == Access::Infer && !auth.settings.protect_inference);
    if !auth.enforced() || open {
        // Only the routes that record who acted (models, keys) read the principal; inference,
        // the hot path, gets none and so costs no allocation here.
        if matches!(needed, Access::Models | Access::Admin) {
            request.extensions_mut().insert(Principal::local());
        }
        return Ok(request);
    }
    let Some(token) = credential(&request) else {
        return Err(with_challenge(unauthorized(
            "a credential is required: send Authorization: Bearer <API key or token>",
        )));
    };
    let who = match auth.principal(state.manager.store(), token).await {
        Ok(p) => p,
        Err(e) if e.status == StatusCode::UNAUTHORIZED => return Err(with_challenge(e)),
        Err(e) => return Err(e.into_response()),
    };
    if !allowed(needed, who.role) {
        let message =
            format!("the role '{}' may not use {} {}", who.role.as_str(), request.method(), request.uri().path());
        return Err(ApiError::new(StatusCode::FORBIDDEN, message).into_response());
    }
    if let Some(limiter) = &auth.settings.limiter {
        if let Err(wait) = limiter.check(&who.actor) {
            let mut response =
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded; retry later").into_response();
            let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            return Err(response);
        }
    }
    request.extensions_mut().insert(who);
    Ok(request)
}

fn with_challenge(error: ApiError) -> Response {
    let mut response = error.into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_classified() {
        assert_eq!(access(&Method::GET, "/v2/health/ready"), Access::Open);
        assert_eq!(access(&Method::POST, "/v2/models/iris/infer"), Access::Infer);
        assert_eq!(access(&Method::POST, "/v1/pipelines/x"), Access::Infer);
        assert_eq!(access(&Method::PUT, "/v1/pipelines/x"), Access::Models);
        assert_eq!(access(&Method::DELETE, "/v1/pipelines/x"), Access::Models);
        assert_eq!(access(&Method::POST, "/v2/repository/models/iris/load"), Access::Models);
        assert_eq!(access(&Method::DELETE, "/v1/models/iris"), Access::Models);
        assert_eq!(access(&Method::POST, "/v1/keys"), Access::Admin);
        assert_eq!(access(&Method::GET, "/v1/audit"), Access::Admin);
        assert!(allowed(Access::Models, Role::Trainer) && !allowed(Access::Models, Role::Client));
        assert!(!allowed(Access::Admin, Role::Trainer));
    }
}
