//! Signing in and out: with an API key, or with the OIDC issuer (authorization-code flow with
//! PKCE, S256). A signed-in browser holds a session cookie; the store keeps its hash.

use crate::http::{
    clear_cookie, cookie, encode, error_page, html, random_token, read_form, see_other, set_cookie, CsrfToken,
    PageError, OIDC_COOKIE, SESSION_COOKIE,
};
use crate::templates::{LoginPage, Nav};
use crate::viewer::{safe_next, Viewer};
use crate::Web;
use axum::extract::{Query, Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use base64::Engine as _;
use lectern_server::{AppState, Principal};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How long an OIDC sign-in may take between leaving for the issuer and coming back.
const OIDC_LOGIN_SECONDS: u64 = 600;

#[derive(Deserialize)]
pub struct NextQuery {
    #[serde(default)]
    next: String,
}

/// `GET /ui/login`
pub async fn login_page(
    State(state): State<Arc<AppState>>,
    Extension(web): Extension<Arc<Web>>,
    Extension(csrf): Extension<CsrfToken>,
    Query(query): Query<NextQuery>,
) -> Response {
    let next = safe_next(&query.next);
    if !state.auth.enforced() {
        return see_other(next);
    }
    login_form(&state, &web, &csrf.0, next, StatusCode::OK, None)
}

fn login_form(
    state: &AppState,
    web: &Web,
    csrf: &str,
    next: &str,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    let oidc = state.auth.oidc().is_some() && web.config.oidc_client.is_some();
    let page = LoginPage { nav: Nav::anonymous(csrf), error, oidc, next, next_query: encode(next) };
    html(status, &page)
}

/// `POST /ui/login`: an API key signs in with its role.
pub async fn login(
    State(state): State<Arc<AppState>>,
    Extension(web): Extension<Arc<Web>>,
    Extension(csrf): Extension<CsrfToken>,
    request: Request,
) -> Response {
    let form = match read_form(&csrf.0, request, crate::http::SMALL_FORM).await {
        Ok(form) => form,
        Err(e) => return login_form(&state, &web, &csrf.0, "/", e.status, Some(&e.message)),
    };
    let next = safe_next(form.text("next")).to_string();
    if !state.auth.enforced() {
        return see_other(&next);
    }
    let key = form.text("api_key");
    if key.is_empty() {
        return login_form(&state, &web, &csrf.0, &next, StatusCode::BAD_REQUEST, Some("enter an API key"));
    }
    match state.auth.principal(&state.manager, key).await {
        Ok(who) => start_session(&state, &web, who, &next).await,
        Err(e) if e.status == StatusCode::UNAUTHORIZED => {
            login_form(&state, &web, &csrf.0, &next, StatusCode::UNAUTHORIZED, Some("invalid or revoked API key"))
        }
        Err(e) => login_form(&state, &web, &csrf.0, &next, e.status, Some(&e.message)),
    }
}

/// Records a session for `who` and sends the browser on with its cookie.
async fn start_session(state: &AppState, web: &Web, who: Principal, next: &str) -> Response {
    let ttl = web.config.session_ttl;
    let token = match state.manager.store().create_session(&who.actor, who.role, ttl.as_millis() as i64).await {
        Ok(token) => token,
        Err(e) => return error_page(None, &PageError::from(e)),
    };
    tracing::info!(actor = %who.actor, role = who.role.as_str(), "dashboard sign-in");
    let mut response = see_other(next);
    let secure = state.auth.secure();
    add_cookie(response.headers_mut(), &set_cookie(SESSION_COOKIE, &token, "Lax", Some(ttl.as_secs()), secure));
    add_cookie(response.headers_mut(), &clear_cookie(OIDC_COOKIE, secure));
    response
}

fn add_cookie(headers: &mut HeaderMap, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.append(header::SET_COOKIE, value);
    }
}

/// `POST /ui/logout`
pub async fn logout(State(state): State<Arc<AppState>>, viewer: Viewer, request: Request) -> Response {
    let token = cookie(request.headers(), SESSION_COOKIE).map(str::to_string);
    if let Err(e) = read_form(&viewer.csrf, request, crate::http::SMALL_FORM).await {
        return error_page(Some(&viewer), &e);
    }
    if let Some(token) = token {
        if let Err(e) = state.manager.store().delete_session(&token).await {
            return error_page(Some(&viewer), &PageError::from(e));
        }
    }
    let mut response = see_other("/ui/login");
    add_cookie(response.headers_mut(), &clear_cookie(SESSION_COOKIE, state.auth.secure()));
    response
}

/// The issuer's endpoints, from its discovery document.
#[derive(Debug, Clone, Deserialize)]
pub struct Endpoints {
    authorization_endpoint: String,
    token_endpoint: String,
}

async fn endpoints(web: &Web, issuer: &str) -> Result<Endpoints, PageError> {
    if let Some(found) = web.discovery.lock().await.clone() {
        return Ok(found);
    }
    let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
    let unavailable = |e: String| {
        tracing::warn!(error = %e, "cannot read the OIDC issuer's discovery document");
        PageError::new(StatusCode::SERVICE_UNAVAILABLE, "the identity provider cannot be reached; try again later")
    };
    let response = web.http.get(&url).send().await.map_err(|e| unavailable(e.to_string()))?;
    let response = response.error_for_status().map_err(|e| unavailable(e.to_string()))?;
    let found: Endpoints = response.json().await.map_err(|e| unavailable(e.to_string()))?;
    *web.discovery.lock().await = Some(found.clone());
    Ok(found)
}

/// The base URL the issuer sends the browser back to.
fn base_url(state: &AppState, web: &Web, headers: &HeaderMap) -> String {
    if let Some(url) = &web.config.public_url {
        return url.clone();
    }
    let scheme = if state.auth.secure() { "https" } else { "http" };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost");
    format!("{scheme}://{host}")
}

/// What the `lectern_oidc` cookie carries between leaving and coming back.
struct Pending {
    state: String,
    verifier: String,
    next: String,
}

impl Pending {
    fn to_cookie(&self) -> String {
        let next = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.next.as_bytes());
        format!("{}.{}.{next}", self.state, self.verifier)
    }

    fn from_cookie(text: &str) -> Option<Pending> {
        let mut parts = text.split('.');
        let (state, verifier, next) = (parts.next()?, parts.next()?, parts.next()?);
        let next = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(next).ok()?;
        let next = String::from_utf8(next).ok()?;
        Some(Pending { state: state.into(), verifier: verifier.into(), next: safe_next(&next).to_string() })
    }
}

fn challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// `GET /ui/oidc/start`: leaves for the issuer's sign-in page.
pub async fn oidc_start(
    State(state): State<Arc<AppState>>,
    Extension(web): Extension<Arc<Web>>,
    Query(query): Query<NextQuery>,
    headers: HeaderMap,
) -> Response {
    let (Some(verifier_config), Some(client)) = (state.auth.oidc(), web.config.oidc_client.as_ref()) else {
        return error_page(None, &PageError::not_found("sign-in with an identity provider is not configured"));
    };
    let found = match endpoints(&web, &verifier_config.config().issuer).await {
        Ok(found) => found,
        Err(e) => return error_page(None, &e),
    };
    let pending = Pending { state: random_token(), verifier: random_token(), next: safe_next(&query.next).into() };
    let redirect_uri = format!("{}/ui/oidc/callback", base_url(&state, &web, &headers));
    let separator = if found.authorization_endpoint.contains('?') { '&' } else { '?' };
    let location = format!(
        "{}{separator}response_type=code&client_id={}&redirect_uri={}&scope=openid%20profile&state={}&nonce={}\
         &code_challenge={}&code_challenge_method=S256",
        found.authorization_endpoint,
        encode(&client.client_id),
        encode(&redirect_uri),
        pending.state,
        random_token(),
        challenge(&pending.verifier),
    );
    let mut response = see_other(&location);
    let cookie = set_cookie(OIDC_COOKIE, &pending.to_cookie(), "Lax", Some(OIDC_LOGIN_SECONDS), state.auth.secure());
    add_cookie(response.headers_mut(), &cookie);
    response
}

/// `GET /ui/oidc/callback`: the issuer sends the browser back with a code.
pub async fn oidc_callback(
    State(state): State<Arc<AppState>>,
    Extension(web): Extension<Arc<Web>>,
    Extension(csrf): Extension<CsrfToken>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let refuse = |status: StatusCode, message: &str| login_form(&state, &web, &csrf.0, "/", status, Some(message));
    let (Some(verifier_config), Some(client)) = (state.auth.oidc(), web.config.oidc_client.as_ref()) else {
        return error_page(None, &PageError::not_found("sign-in with an identity provider is not configured"));
    };
    if let Some(error) = query.get("error") {
        // Only the OAuth error code, as its word characters: a link cannot put text on the page.
        let code: String = error.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(40).collect();
        return refuse(StatusCode::BAD_REQUEST, &format!("the identity provider did not sign you in ({code})"));
    }
    let Some(pending) = cookie(&headers, OIDC_COOKIE).and_then(Pending::from_cookie) else {
        return refuse(StatusCode::BAD_REQUEST, "the sign-in took too long or was started elsewhere; try again");
    };
    let (Some(code), Some(given_state)) = (query.get("code"), query.get("state")) else {
        return refuse(StatusCode::BAD_REQUEST, "the identity provider sent no code");
    };
    if !crate::http::same(given_state, &pending.state) {
        return refuse(StatusCode::BAD_REQUEST, "the sign-in does not match the one this browser started; try again");
    }
    let found = match endpoints(&web, &verifier_config.config().issuer).await {
        Ok(found) => found,
        Err(e) => return error_page(None, &e),
    };
    let redirect_uri = format!("{}/ui/oidc/callback", base_url(&state, &web, &headers));
    let token = match exchange(&web, &found, client, code, &redirect_uri, &pending.verifier).await {
        Ok(token) => token,
        Err(message) => return refuse(StatusCode::UNAUTHORIZED, &message),
    };
    match state.auth.principal(&state.manager, &token).await {
        Ok(who) => start_session(&state, &web, who, &pending.next).await,
        Err(e) => refuse(e.status, &e.message),
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
}

/// Trades the code for an access token at the issuer's token endpoint.
async fn exchange(
    web: &Web,
    found: &Endpoints,
    client: &crate::config::OidcClient,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
) -> Result<String, String> {
    let mut body = format!(
        "grant_type=authorization_code&code={}&redirect_uri={}&client_id={}&code_verifier={}",
        encode(code),
        encode(redirect_uri),
        encode(&client.client_id),
        encode(verifier)
    );
    if let Some(secret) = &client.client_secret {
        body.push_str(&format!("&client_secret={}", encode(secret)));
    }
    let sent = web
        .http
        .post(&found.token_endpoint)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "application/json")
        .timeout(Duration::from_secs(10))
        .body(body)
        .send()
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "the OIDC token endpoint cannot be reached");
            "the identity provider cannot be reached; try again later".to_string()
        })?;
    let status = sent.status();
    if !status.is_success() {
        tracing::warn!(%status, "the OIDC token endpoint refused the code");
        return Err(format!("the identity provider refused the sign-in ({status})"));
    }
    let answer: TokenAnswer =
        sent.json().await.map_err(|_| "the identity provider answered no access token".to_string())?;
    Ok(answer.access_token)
}
