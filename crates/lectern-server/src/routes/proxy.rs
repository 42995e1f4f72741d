//! `/proxy/{name}/{path}`: the caching proxy's upstreams (any method the upstream's config
//! forwards; who may call is the upstream's `access`, checked by the gate), and
//! `GET /v1/proxy`: the upstreams with their cache statistics.

use super::infer::read_body;
use super::openapi::ErrorBody;
use crate::{ApiError, AppState};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::response::Response;
use axum::Json;
use lectern_proxy::{ProxyRequest, UpstreamInfo};
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

/// The answer of `GET /v1/proxy`.
#[derive(Serialize, ToSchema)]
pub struct UpstreamList {
    upstreams: Vec<UpstreamInfo>,
}

/// `GET /v1/proxy`: every upstream with its settings (secret header names only) and cache statistics.
#[utoipa::path(get, path = "/v1/proxy", tag = "proxy", operation_id = "listUpstreams",
    responses((status = 200, description = "The upstreams by name.", body = UpstreamList)))]
pub async fn list(State(state): State<Arc<AppState>>) -> Json<UpstreamList> {
    Json(UpstreamList { upstreams: state.proxy.list().await })
}

/// Forwards a request to its upstream, or answers it from the cache.
async fn forward(state: Arc<AppState>, request: Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let target = parts.uri.path_and_query().map_or(parts.uri.path(), |pq| pq.as_str());
    // The router matched `/proxy/{upstream}/{*path}`: the name, then the raw path and query.
    let (name, target) = target
        .strip_prefix("/proxy/")
        .and_then(|rest| rest.split_once('/'))
        .ok_or_else(|| ApiError::bad_request("a proxy path is /proxy/{name}/{path}"))?;
    let body = match parts.method {
        Method::GET | Method::HEAD => bytes::Bytes::new(),
        _ => read_body(body, &parts.headers, state.settings.max_body_bytes).await?,
    };
    let request = ProxyRequest { method: &parts.method, target, headers: &parts.headers, body };
    let answer = state.proxy.forward(name, request).await?;
    let mut response = Response::new(Body::from(answer.body));
    *response.status_mut() = answer.status;
    *response.headers_mut() = answer.headers;
    Ok(response)
}

/// The proxy route's documentation, the same for every method.
macro_rules! proxy_route {
    ($method:ident, $handler:ident, $path:literal, $id:literal $(, $param:tt)?) => {
        #[doc = concat!("`", stringify!($method), " ", $path, "`: through the upstream `name`.")]
        #[utoipa::path($method, path = $path, tag = "proxy", operation_id = $id,
            params(
                ("upstream" = String, Path, description = "A configured upstream (`[proxy.NAME]`); its `access` says who may call it."),
                $($param)?
            ),
            responses(
                (status = 200, description = "The upstream's answer, passed through (any status), with \
                    `x-lectern-cache: hit|miss|stale|bypass`.", body = Object),
                (status = 400, description = "A path that would leave the base URL.", body = ErrorBody),
                (status = 404, description = "No such upstream (`upstream_not_found`).", body = ErrorBody),
                (status = 405, description = "The upstream does not forward this method.", body = ErrorBody),
                (status = 502, description = "The upstream cannot be reached, does not speak HTTP, or answers \
                    more than `max_response_bytes` (`upstream_error`).", body = ErrorBody),
                (status = 504, description = "The upstream did not answer within its timeout (`upstream_timeout`).", body = ErrorBody),
            ))]
        pub async fn $handler(State(state): State<Arc<AppState>>, request: Request) -> Result<Response, ApiError> {
            forward(state, request).await
        }
    };
}

proxy_route!(
    get,
    get,
    "/proxy/{upstream}/{*path}",
    "proxyGet",
    ("path" = String, Path, description = "Appended to the upstream's base URL; the query string is forwarded.")
);
proxy_route!(
    post,
    post,
    "/proxy/{upstream}/{*path}",
    "proxyPost",
    ("path" = String, Path, description = "Appended to the upstream's base URL; the query string is forwarded.")
);
proxy_route!(
    put,
    put,
    "/proxy/{upstream}/{*path}",
    "proxyPut",
    ("path" = String, Path, description = "Appended to the upstream's base URL; the query string is forwarded.")
);
proxy_route!(
    delete,
    delete,
    "/proxy/{upstream}/{*path}",
    "proxyDelete",
    ("path" = String, Path, description = "Appended to the upstream's base URL; the query string is forwarded.")
);
proxy_route!(
    patch,
    patch,
    "/proxy/{upstream}/{*path}",
    "proxyPatch",
    ("path" = String, Path, description = "Appended to the upstream's base URL; the query string is forwarded.")
);
// The base URL itself (`/proxy/NAME/`): a wildcard needs at least one character.
proxy_route!(get, get_base, "/proxy/{upstream}/", "proxyGetBase");
proxy_route!(post, post_base, "/proxy/{upstream}/", "proxyPostBase");
proxy_route!(put, put_base, "/proxy/{upstream}/", "proxyPutBase");
proxy_route!(delete, delete_base, "/proxy/{upstream}/", "proxyDeleteBase");
proxy_route!(patch, patch_base, "/proxy/{upstream}/", "proxyPatchBase");
