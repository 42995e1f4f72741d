//! Who is looking at a page: the signed-in session's actor and role, or `local` when the
//! server runs without checks. Every page handler takes a [`Viewer`], so no page is reachable
//! without signing in once checks apply.

use crate::http::{cookie, encode, error_page, html, json, CsrfToken, PageError, SESSION_COOKIE};
use crate::templates::{LoginPage, Nav};
use crate::Web;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use lectern_server::{AppState, Principal};
use lectern_store::Role;
use std::sync::Arc;

/// The caller of a page.
#[derive(Clone)]
pub struct Viewer {
    pub principal: Principal,
    /// The CSRF token every form of the page carries.
    pub csrf: String,
    /// Signed in with a session (not `local`): the page offers to sign out.
    pub signed_in: bool,
    /// The session's token hash (`None` without sessions).
    session: Option<String>,
    /// The dashboard's own state.
    pub web: Arc<Web>,
}

impl Viewer {
    pub fn role(&self) -> Role {
        self.principal.role
    }

    pub fn actor(&self) -> &str {
        &self.principal.actor
    }

    /// Who owns what this viewer keeps on the server (pipeline results): the session (its
    /// token's hash), or the actor when there are no sessions.
    pub fn owner(&self) -> String {
        self.session.clone().unwrap_or_else(|| self.principal.actor.clone())
    }

    /// Checks a button's post (a form of its CSRF token only) from a caller of at least `role`.
    pub async fn pressed(&self, role: Role, request: axum::extract::Request) -> Result<(), PageError> {
        self.require(role)?;
        crate::http::read_form(&self.csrf, request, crate::http::SMALL_FORM).await.map(drop)
    }

    /// Refuses a caller below `role`.
    pub fn require(&self, role: Role) -> Result<(), PageError> {
        if self.principal.role >= role {
            Ok(())
        } else {
            Err(PageError::forbidden())
        }
    }
}

impl FromRequestParts<Arc<AppState>> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let csrf = parts.extensions.get::<CsrfToken>().map(|t| t.0.clone()).unwrap_or_default();
        let web = parts.extensions.get::<Arc<Web>>().cloned().expect("the pages' router adds the dashboard's state");
        if !state.auth.enforced() {
            return Ok(Viewer { principal: Principal::local(), csrf, signed_in: false, session: None, web });
        }
        if let Some(token) = cookie(&parts.headers, SESSION_COOKIE) {
            match state.manager.store().session(token).await {
                Ok(Some(session)) => {
                    let principal = Principal { actor: session.actor, role: session.role };
                    let session = Some(lectern_store::key_fingerprint(token));
                    return Ok(Viewer { principal, csrf, signed_in: true, session, web });
                }
                Ok(None) => {}
                Err(e) => return Err(error_page(None, &PageError::from(e))),
            }
        }
        let oidc = state.auth.oidc().is_some() && web.config.oidc_client.is_some();
        Err(signed_out(parts, &csrf, oidc))
    }
}

/// The answer to a caller without a session: pages send them to sign in; forms and the
/// script's JSON get 401.
fn signed_out(parts: &Parts, csrf: &str, oidc: bool) -> Response {
    let path = parts.uri.path();
    let is_json = path == "/ui/stats" || path.ends_with("/status");
    if is_json {
        return json(StatusCode::UNAUTHORIZED, &serde_json::json!({"error": "sign in first"}));
    }
    if parts.method == Method::GET || parts.method == Method::HEAD {
        let next = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        return Redirect::to(&format!("/ui/login?next={}", encode(next))).into_response();
    }
    let page = LoginPage {
        nav: Nav::anonymous(csrf),
        error: Some("your session has ended; sign in again"),
        oidc,
        next: "/",
        next_query: "/".into(),
    };
    html(StatusCode::UNAUTHORIZED, &page)
}

/// Where to go after signing in: a local path only, else `/`.
pub fn safe_next(next: &str) -> &str {
    let local = next.starts_with('/') && !next.starts_with("//");
    // Browsers drop tabs and new lines and read `\` as `/`: `/\tevil.com` would leave the site.
    if local && !next.chars().any(|c| c == '\\' || c.is_whitespace() || c.is_control()) {
        next
    } else {
        "/"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(safe_next("/ui/models?x=1"), "/ui/models?x=1");
        for bad in ["//evil.com", "https://evil.com", "/\\evil.com", "/\t/evil.com", "evil", "", "/a\r\nSet-Cookie: x"]
        {
            assert_eq!(safe_next(bad), "/", "{bad}");
        }
    }
}
