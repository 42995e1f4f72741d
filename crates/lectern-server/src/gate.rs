//! The access gate: classifies each route, checks the caller's credential (an API key or an
//! OIDC bearer token) and role, applies the per-key rate limit, and hands the handlers a
//! [`Principal`]. Credentials never reach a log or an error message.

use crate::auth::jwt::OidcVerifier;
use crate::auth::keycache::KeyCache;
use crate::principal::Principal;
use crate::{ApiError, AppState};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use lectern_core::ratelimit::RateLimiter;
use lectern_core::{Coded, ErrorCode};
use lectern_manage::Manager;
use lectern_store::{ApiKey, Role};
use std::sync::atomic::{AtomicBool, Ordering};

/// Who may call a route: every route of the table (`routes::table`) declares one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// Anyone, always: health, server metadata, metrics, the OpenAPI document.
    Open,
    /// Any role (`client`, `trainer`, `admin`); anyone with `--open-inference`: inference,
    /// model metadata, running and listing pipelines.
    Client,
    /// `trainer` or `admin`: models, the repository, defining pipelines.
    Trainer,
    /// `admin`: keys and the audit log.
    Admin,
}

impl Access {
    /// The name the OpenAPI document (`x-lectern-access`) and the contract use.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Open => "open",
            Access::Client => "client",
            Access::Trainer => "trainer",
            Access::Admin => "admin",
        }
    }
}

/// The path parameter naming a proxy upstream: a route with it takes its access from the
/// upstream's config (`access = ...`), not from the route table.
pub const UPSTREAM_PARAM: &str = "upstream";

/// Who may call each proxy upstream; `None`: no such upstream.
pub type UpstreamAccess = Box<dyn Fn(&str) -> Option<Access> + Send + Sync>;

impl From<lectern_proxy::AccessLevel> for Access {
    fn from(level: lectern_proxy::AccessLevel) -> Self {
        match level {
            lectern_proxy::AccessLevel::Open => Access::Open,
            lectern_proxy::AccessLevel::Client => Access::Client,
            lectern_proxy::AccessLevel::Trainer => Access::Trainer,
            lectern_proxy::AccessLevel::Admin => Access::Admin,
        }
    }
}

/// The access of every declared route and method, matched with the router axum uses inside,
/// so that the gate and the router read a path alike. A path or method that is not declared
/// has no access level: it is refused without a valid credential (once checks apply); so is
/// a proxy route naming no configured upstream.
pub struct AccessTable {
    paths: matchit::Router<Vec<(Method, Access)>>,
    upstreams: Option<UpstreamAccess>,
}

impl AccessTable {
    /// The table of `routes`: `(path, method, access)` (paths in axum's `{param}` syntax).
    pub fn new<'a>(routes: impl IntoIterator<Item = (&'a str, Method, Access)>) -> Self {
        let mut by_path: Vec<(&str, Vec<(Method, Access)>)> = Vec::new();
        for (path, method, access) in routes {
            match by_path.iter_mut().find(|(p, _)| *p == path) {
                Some((_, methods)) => methods.push((method, access)),
                None => by_path.push((path, vec![(method, access)])),
            }
        }
        let mut paths = matchit::Router::new();
        for (path, methods) in by_path {
            // The route table is fixed at build time; the router refuses the same paths.
            paths.insert(path, methods).unwrap_or_else(|e| panic!("route {path}: {e}"));
        }
        AccessTable { paths, upstreams: None }
    }

    /// The table with the access of each proxy upstream (routes with an `{upstream}` parameter).
    pub fn with_upstreams(mut self, upstreams: UpstreamAccess) -> Self {
        self.upstreams = Some(upstreams);
        self
    }

    /// The private name a path acts on: its `{model}` parameter (a model), or the `{name}` of a
    /// `/v1/datasets/{name}` route (a dataset).
    fn named(&self, path: &str) -> Option<Named> {
        let matched = self.paths.at(path).ok()?;
        // The handlers read parameters percent-decoded: so does this check.
        if let Some(model) = matched.params.get("model") {
            return Some(Named::Model(percent_decoded(model)));
        }
        let name = matched.params.get("name")?;
        path.starts_with("/v1/datasets/").then(|| Named::Dataset(percent_decoded(name)))
    }

    /// The access `method path` needs; `None`: not a declared route. `HEAD` is `GET`'s (axum
    /// answers it with the `GET` handler). A proxy route needs what its upstream's config says.
    pub fn access(&self, method: &Method, path: &str) -> Option<Access> {
        let matched = self.paths.at(path).ok()?;
        let method = if method == Method::HEAD { &Method::GET } else { method };
        let declared = matched.value.iter().find(|(m, _)| m == method).map(|(_, access)| *access)?;
        match matched.params.get(UPSTREAM_PARAM) {
            Some(upstream) => self.upstreams.as_ref().and_then(|access_of| access_of(upstream)),
            None => Some(declared),
        }
    }
}

/// A path segment as axum's `Path` extractor gives it to the handler (`%XX` a byte; a `%`
/// without two hex digits stays as it is).
pub fn percent_decoded(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).and_then(|b| hex(*b)), bytes.get(i + 2).and_then(|b| hex(*b))) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a route names in its path, when projects are private.
enum Named {
    Model(String),
    Dataset(String),
}

/// A route naming a model or dataset of another user's projects answers as if it did not
/// exist (`[dashboard] projects`; nothing to check without it).
fn hidden(state: &AppState, table: &AccessTable, path: &str, who: &Principal) -> Option<ApiError> {
    let prefix = state.projects.as_deref()?;
    let error: ApiError = match table.named(path)? {
        Named::Model(name) if !who.may_see(Some(prefix), &name) => {
            lectern_runtime::RuntimeError::ModelNotFound(name).into()
        }
        Named::Dataset(name) if !who.may_see(Some(prefix), &name) => {
            lectern_manage::ManageError::DatasetNotFound(name).into()
        }
        _ => return None,
    };
    Some(error)
}

fn allowed(access: Access, role: Role) -> bool {
    match access {
        Access::Open | Access::Client => true,
        Access::Trainer => role >= Role::Trainer,
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
    secure: AtomicBool,
}

impl AuthState {
    pub fn new(settings: AuthSettings, keys_live: bool) -> Self {
        AuthState {
            settings,
            keys_live: AtomicBool::new(keys_live),
            keys: KeyCache::default(),
            secure: AtomicBool::new(false),
        }
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

    async fn key(&self, manager: &Manager, presented: &str) -> Result<Option<ApiKey>, ApiError> {
        self.keys
            .get_or_verify(presented, manager.verify_key(presented))
            .await
            .map_err(|e| ApiError::coded(e.code(), format!("cannot check credentials: {e}")))
    }

    /// One request of `who` against the per-key rate limit (if one is set): past it, 429 and
    /// the seconds to wait. The gate calls it per request; a gRPC stream per message.
    pub fn check_rate(&self, who: &Principal) -> Result<(), (ApiError, u64)> {
        let Some(limiter) = &self.settings.limiter else { return Ok(()) };
        limiter.check(&who.actor).map_err(|wait| {
            let refused = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded; retry later");
            (refused, wait.as_secs_f64().ceil().max(1.0) as u64)
        })
    }

    /// The OIDC issuer whose tokens are accepted, if one is configured.
    pub fn oidc(&self) -> Option<&OidcVerifier> {
        self.settings.oidc.as_ref()
    }

    /// Served over TLS: the dashboard's cookies are `Secure`. Set once at start-up.
    pub fn set_secure(&self, secure: bool) {
        self.secure.store(secure, Ordering::Relaxed);
    }

    pub fn secure(&self) -> bool {
        self.secure.load(Ordering::Relaxed)
    }

    /// Who presents `token` (an API key or an OIDC access token), or why they are refused.
    pub async fn principal(&self, manager: &Manager, token: &str) -> Result<Principal, ApiError> {
        if token.starts_with("lk_") {
            return match self.key(manager, token).await? {
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
fn credential<B>(request: &axum::http::Request<B>) -> Option<&str> {
    let headers = request.headers();
    if let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let (scheme, token) = value.trim().split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty());
    }
    headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim).filter(|t| !t.is_empty())
}

/// Lets a request through (with its [`Principal`] when the route records who acted) or
/// answers it with the refusal. A request for an undeclared route or method is let through
/// (to its 404 or 405) only without checks or with a valid credential of any role.
/// Generic over the body, which it does not read: the gRPC face passes its requests too.
pub async fn admit<B>(
    state: &AppState,
    table: &AccessTable,
    mut request: axum::http::Request<B>,
) -> Result<axum::http::Request<B>, Refusal> {
    let needed = table.access(request.method(), request.uri().path());
    let auth = &state.auth;
    let open = match needed {
        Some(Access::Open) => true,
        Some(Access::Client) => !auth.settings.protect_inference,
        _ => false,
    };
    if auth.enforced() && open {
        let anonymous = Principal { actor: "anonymous".into(), role: Role::Client };
        if let Some(refused) = hidden(state, table, request.uri().path(), &anonymous) {
            return Err(refused.into());
        }
    }
    if !auth.enforced() || open {
        // Only the routes that record who acted (models, keys) read the principal; inference,
        // the hot path, gets none and so costs no allocation here.
        if matches!(needed, Some(Access::Trainer | Access::Admin)) {
            request.extensions_mut().insert(Principal::local());
        }
        return Ok(request);
    }
    let Some(token) = credential(&request) else {
        return Err(with_challenge(unauthorized(
            "a credential is required: send Authorization: Bearer <API key or token>",
        )));
    };
    let who = match auth.principal(&state.manager, token).await {
        Ok(p) => p,
        Err(e) if e.status == StatusCode::UNAUTHORIZED => return Err(with_challenge(e)),
        Err(e) => return Err(e.into()),
    };
    if needed.is_some_and(|access| !allowed(access, who.role)) {
        let message =
            format!("the role '{}' may not use {} {}", who.role.as_str(), request.method(), request.uri().path());
        return Err(ApiError::new(StatusCode::FORBIDDEN, message).into());
    }
    if let Some(refused) = hidden(state, table, request.uri().path(), &who) {
        return Err(refused.into());
    }
    if let Err((refused, seconds)) = auth.check_rate(&who) {
        return Err(Refusal { error: refused, challenge: false, retry_after: Some(seconds) });
    }
    request.extensions_mut().insert(who);
    Ok(request)
}

fn with_challenge(error: ApiError) -> Refusal {
    Refusal { error, challenge: true, retry_after: None }
}

/// Why the gate refused a request: the error, and what its HTTP answer says beside it. The
/// gRPC face answers the same refusal as a status.
#[derive(Debug)]
pub struct Refusal {
    pub error: ApiError,
    /// `WWW-Authenticate: Bearer`: no credential, or not a valid one.
    pub challenge: bool,
    /// `Retry-After` (seconds): over the rate limit.
    pub retry_after: Option<u64>,
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Self {
        Refusal { error, challenge: false, retry_after: None }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = self.error.into_response();
        if self.challenge {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> AccessTable {
        AccessTable::new([
            ("/v2/health/ready", Method::GET, Access::Open),
            ("/v2/models/{model}/infer", Method::POST, Access::Client),
            ("/v1/pipelines/{name}", Method::POST, Access::Client),
            ("/v1/pipelines/{name}", Method::PUT, Access::Trainer),
            ("/v1/keys", Method::GET, Access::Admin),
        ])
    }

    #[test]
    fn declared_routes_have_their_access_and_others_none() {
        let t = table();
        assert_eq!(t.access(&Method::GET, "/v2/health/ready"), Some(Access::Open));
        assert_eq!(t.access(&Method::HEAD, "/v2/health/ready"), Some(Access::Open));
        assert_eq!(t.access(&Method::POST, "/v2/models/iris/infer"), Some(Access::Client));
        assert_eq!(t.access(&Method::POST, "/v1/pipelines/x"), Some(Access::Client));
        assert_eq!(t.access(&Method::PUT, "/v1/pipelines/x"), Some(Access::Trainer));
        assert_eq!(t.access(&Method::GET, "/v1/keys"), Some(Access::Admin));
        // undeclared methods and paths, including prefixes and extensions of declared ones
        assert_eq!(t.access(&Method::DELETE, "/v1/pipelines/x"), None);
        assert_eq!(t.access(&Method::OPTIONS, "/v2/health/ready"), None);
        for path in ["/", "/v2/health", "/v2/health/ready/", "/v2/models/iris", "/v1/keys/x", "/v1/pipelines", "/x"] {
            assert_eq!(t.access(&Method::GET, path), None, "{path}");
        }
    }

    #[test]
    fn proxy_routes_take_their_upstream_access() {
        let routes =
            [("/proxy/{upstream}/{*path}", Method::GET, Access::Client), ("/v1/keys", Method::GET, Access::Admin)];
        let t = AccessTable::new(routes.clone()).with_upstreams(Box::new(|name| match name {
            "public" => Some(Access::Open),
            "internal" => Some(Access::Trainer),
            _ => None,
        }));
        assert_eq!(t.access(&Method::GET, "/proxy/public/a/b"), Some(Access::Open));
        assert_eq!(t.access(&Method::HEAD, "/proxy/internal/x"), Some(Access::Trainer));
        assert_eq!(t.access(&Method::GET, "/proxy/unknown/x"), None);
        assert_eq!(t.access(&Method::POST, "/proxy/public/x"), None);
        assert_eq!(t.access(&Method::GET, "/v1/keys"), Some(Access::Admin));
        let without = AccessTable::new(routes);
        assert_eq!(without.access(&Method::GET, "/proxy/public/a"), None);
    }

    #[test]
    fn named_routes_are_read_as_the_handlers_read_them() {
        let t = AccessTable::new([
            ("/v2/models/{model}/infer", Method::POST, Access::Client),
            ("/v1/datasets/{name}", Method::GET, Access::Client),
            ("/v1/pipelines/{name}", Method::POST, Access::Client),
        ]);
        let model = |p: &str| match t.named(p) {
            Some(Named::Model(m)) => Some(m),
            _ => None,
        };
        assert_eq!(model("/v2/models/%6Bids-a-x/infer").as_deref(), Some("kids-a-x"));
        assert_eq!(model("/v2/models/kids%2Da-x/infer").as_deref(), Some("kids-a-x"));
        assert!(matches!(t.named("/v1/datasets/%6bids-a"), Some(Named::Dataset(d)) if d == "kids-a"));
        assert!(t.named("/v1/pipelines/kids-a").is_none());
        assert_eq!(percent_decoded("a%zz%4"), "a%zz%4");
    }

    #[test]
    fn roles_reach_their_levels_and_those_below() {
        assert!(allowed(Access::Client, Role::Client));
        assert!(allowed(Access::Trainer, Role::Trainer) && !allowed(Access::Trainer, Role::Client));
        assert!(allowed(Access::Admin, Role::Admin) && !allowed(Access::Admin, Role::Trainer));
    }
}
