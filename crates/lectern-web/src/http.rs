//! What every page shares: its headers, cookies, the CSRF check, form bodies, and how a page
//! or an error page is answered.

use crate::templates::{ErrorPage, Nav};
use crate::viewer::Viewer;
use askama::Template;
use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use bytes::Bytes;
use std::collections::HashMap;

pub const SESSION_COOKIE: &str = "lectern_session";
pub const CSRF_COOKIE: &str = "lectern_csrf";
pub const OIDC_COOKIE: &str = "lectern_oidc";

const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                   frame-ancestors 'none'; form-action 'self'";

/// The CSRF token of this request: the cookie's, or a new one the answer sets.
#[derive(Clone)]
pub struct CsrfToken(pub String);

/// Every page's answer gets the security headers; a browser without a CSRF cookie gets one.
pub async fn page_layer(
    axum::extract::State(state): axum::extract::State<std::sync::Arc<lectern_server::AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let existing = cookie(request.headers(), CSRF_COOKIE).filter(|t| is_token(t)).map(str::to_string);
    let (token, new) = match existing {
        Some(token) => (token, false),
        None => (random_token(), true),
    };
    let secure = state.auth.secure();
    request.extensions_mut().insert(CsrfToken(token.clone()));
    let started = std::time::Instant::now();
    let (parts, body) = request.into_parts();
    let mut asked = parts.clone();
    let mut response = next.run(Request::from_parts(parts, body)).await;
    // A handler's error page is drawn again with the viewer's navigation (the error itself does
    // not know who was looking).
    if let Some(error) = response.extensions_mut().remove::<PageError>() {
        use axum::extract::FromRequestParts;
        if let Ok(viewer) = Viewer::from_request_parts(&mut asked, &state).await {
            response = error_page(Some(&viewer), &error);
        }
    }
    let headers = response.headers_mut();
    // How long the page took on the server (bench/dashboard.py reads it; browsers show it).
    let took = format!("app;dur={:.2}", started.elapsed().as_secs_f64() * 1000.0);
    if let Ok(value) = HeaderValue::from_str(&took) {
        headers.insert("server-timing", value);
    }
    for (name, value) in [
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::CONTENT_SECURITY_POLICY, CSP),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if new {
        let cookie = set_cookie(CSRF_COOKIE, &token, "Strict", None, secure);
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    response
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// A `Set-Cookie` value: HttpOnly always, `Secure` over TLS; `max_age` None: a browser session.
pub fn set_cookie(name: &str, value: &str, same_site: &str, max_age: Option<u64>, secure: bool) -> String {
    let mut text = format!("{name}={value}; Path=/; HttpOnly; SameSite={same_site}");
    if let Some(age) = max_age {
        text.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        text.push_str("; Secure");
    }
    text
}

/// A cookie that is cleared.
pub fn clear_cookie(name: &str, secure: bool) -> String {
    set_cookie(name, "", "Lax", Some(0), secure)
}

/// 256 random bits as hex.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).expect("the operating system's random numbers");
    lectern_store::hex(&bytes)
}

fn is_token(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Compares in time that does not depend on where the texts differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a page could not be answered: its status and message, shown on an error page (or as
/// the message on the page the form came from).
#[derive(Debug, Clone)]
pub struct PageError {
    pub status: StatusCode,
    pub message: String,
}

impl PageError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        PageError { status, message: message.into() }
    }
    pub fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, what)
    }
    pub fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN, "your role may not use this page")
    }
}

/// Errors of the domain crates get the status the API would give them (one error table).
impl From<lectern_server::ApiError> for PageError {
    fn from(api: lectern_server::ApiError) -> Self {
        if api.status.is_server_error() && api.status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(status = %api.status, error = %api.message, "dashboard page failed");
        }
        PageError { status: api.status, message: api.message }
    }
}

macro_rules! through_the_error_table {
    ($($error:ty),*) => {$(
        impl From<$error> for PageError {
            fn from(error: $error) -> Self {
                lectern_server::ApiError::from(error).into()
            }
        }
    )*};
}

through_the_error_table!(
    lectern_manage::ManageError,
    lectern_runtime::RuntimeError,
    lectern_pipeline::PipelineError,
    lectern_jobs::JobsError,
    lectern_store::StoreError,
    lectern_core::ProtocolError
);

/// A page's answer: HTML with its status, or the error page.
pub type PageResult = Result<Response, PageError>;

/// Renders a template as the answer.
pub fn html(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(text) => (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a dashboard template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "page error").into_response()
        }
    }
}

/// Renders a template with status 200.
pub fn ok(page: &impl Template) -> PageResult {
    Ok(html(StatusCode::OK, page))
}

/// The error page for `viewer`.
pub fn error_page(viewer: Option<&Viewer>, error: &PageError) -> Response {
    let nav = viewer.map(Nav::of).unwrap_or_default();
    html(error.status, &ErrorPage { nav, title: status_title(error.status), message: &error.message })
}

fn status_title(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "That did not work",
        401 => "Please sign in",
        403 => "Not allowed",
        404 => "Not found",
        413 => "Too large",
        503 => "Unavailable",
        _ => "Something went wrong",
    }
}

/// A redirect after a form (303: the browser follows with GET).
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// A form's fields and files, read from an urlencoded or multipart body.
#[derive(Default, Debug)]
pub struct Posted {
    pub fields: HashMap<String, String>,
    pub files: HashMap<String, Bytes>,
}

impl Posted {
    /// A field's text, trimmed; "" when missing.
    pub fn text(&self, name: &str) -> &str {
        self.fields.get(name).map(|s| s.trim()).unwrap_or("")
    }

    /// A file that was chosen (not empty).
    pub fn file(&self, name: &str) -> Option<&Bytes> {
        self.files.get(name).filter(|b| !b.is_empty())
    }
}

/// The largest form without files.
pub const SMALL_FORM: usize = 64 * 1024;

/// Reads a posted form of at most `limit` bytes and checks its CSRF token and origin.
pub async fn read_form(csrf: &str, request: Request, limit: usize) -> Result<Posted, PageError> {
    let (parts, body) = request.into_parts();
    let public_url = parts.extensions.get::<std::sync::Arc<crate::Web>>().and_then(|w| w.config.public_url.clone());
    let too_large =
        || PageError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the upload is over the limit of {}", size(limit)));
    if let Some(length) = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok()) {
        if length > limit as u64 {
            return Err(too_large());
        }
    }
    check_origin(&parts.headers, public_url.as_deref())?;
    let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let posted = if let Ok(boundary) = multer::parse_boundary(content_type) {
        read_multipart(body, boundary, limit).await?
    } else {
        let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| too_large())?;
        Posted { fields: form_pairs(&bytes).into_iter().collect(), files: HashMap::new() }
    };
    let header_token = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or("");
    let given = posted.fields.get("csrf").map(String::as_str).unwrap_or(header_token);
    if given.is_empty() || !same(given, csrf) {
        return Err(csrf_refused());
    }
    Ok(posted)
}

/// The refusal of a post without the page's CSRF token.
pub fn csrf_refused() -> PageError {
    PageError::new(StatusCode::FORBIDDEN, "the form has expired or did not come from this site; reload the page")
}

/// A request with an `Origin` must come from this site: its origin's host is the `Host`, or
/// the origin is `[dashboard] public_url` (behind a proxy that rewrites `Host`).
pub fn check_origin(headers: &HeaderMap, public_url: Option<&str>) -> Result<(), PageError> {
    let Some(origin) = headers.get(header::ORIGIN) else { return Ok(()) };
    let origin = origin.to_str().unwrap_or("");
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let authority = origin.split_once("://").map(|(_, rest)| rest).unwrap_or("");
    let same_host = !host.is_empty() && authority.eq_ignore_ascii_case(host);
    if same_host || public_url.is_some_and(|url| url.eq_ignore_ascii_case(origin)) {
        return Ok(());
    }
    Err(csrf_refused())
}

async fn read_multipart(body: Body, boundary: String, limit: usize) -> Result<Posted, PageError> {
    let constraints = multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(limit as u64));
    let mut multipart = multer::Multipart::with_constraints(body.into_data_stream(), boundary, constraints);
    let mut posted = Posted::default();
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(multer::Error::StreamSizeExceeded { .. }) | Err(multer::Error::FieldSizeExceeded { .. }) => {
                return Err(PageError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the upload is over the limit of {}", size(limit)),
                ))
            }
            Err(e) => return Err(PageError::bad(format!("the form could not be read: {e}"))),
        };
        let name = field.name().unwrap_or("").to_string();
        let is_file = field.file_name().is_some();
        let bytes = field.bytes().await.map_err(|e| match e {
            multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => PageError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the upload is over the limit of {}", size(limit)),
            ),
            other => PageError::bad(format!("the form could not be read: {other}")),
        })?;
        if is_file {
            posted.files.insert(name, bytes);
        } else {
            let text =
                String::from_utf8(bytes.to_vec()).map_err(|_| PageError::bad(format!("field '{name}' is not text")))?;
            posted.fields.insert(name, text);
        }
    }
    Ok(posted)
}

/// A byte count for people.
pub fn size(bytes: usize) -> String {
    const MB: usize = 1024 * 1024;
    if bytes >= MB {
        format!("{} MB", bytes / MB)
    } else {
        format!("{} KB", bytes.div_ceil(1024))
    }
}

/// A JSON answer for the script.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], value.to_string()).into_response()
}

/// The form-urlencoded pairs of a body or query.
pub fn form_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    url_decode_pairs(std::str::from_utf8(bytes).unwrap_or(""))
}

fn url_decode_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// A form value: `+` is a space, `%XX` a byte (the gate's decoder, which the handlers' path
/// parameters also go through).
fn decode(text: &str) -> String {
    lectern_server::gate::percent_decoded(&text.replace('+', " "))
}

/// Percent-encodes a query value.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let mut response = error_page(None, &self);
        // The page layer draws it again with the viewer's navigation.
        response.extensions_mut().insert(self);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies_are_decoded() {
        let pairs = form_pairs(b"a=1+2&b=%2B%26x&c=&d&e=%zz");
        let want = [("a", "1 2"), ("b", "+&x"), ("c", ""), ("d", ""), ("e", "%zz")];
        assert_eq!(pairs, want.map(|(k, v)| (k.to_string(), v.to_string())));
    }
}
