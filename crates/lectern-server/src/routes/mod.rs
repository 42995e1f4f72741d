//! Route table. Each resource has its own file.

mod extract;
mod health;
mod infer;
mod manage;
mod metrics;
mod models;
mod pipelines;
mod repository;

use crate::{ApiError, AppState};
use axum::http::{StatusCode, Uri};
use axum::routing::{delete, get, post, put};
use axum::Router;
use extract::{Params, Path, Query};
use std::sync::Arc;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v2", get(health::server_metadata))
        .route("/v2/health/live", get(health::live))
        .route("/v2/health/ready", get(health::ready))
        .route("/v2/models/{model}", get(models::metadata))
        .route("/v2/models/{model}/versions/{version}", get(models::version_metadata))
        .route("/v2/models/{model}/ready", get(models::ready))
        .route("/v2/models/{model}/versions/{version}/ready", get(models::version_ready))
        .route("/v2/models/{model}/infer", post(infer::infer))
        .route("/v2/models/{model}/versions/{version}/infer", post(infer::infer))
        .route("/v2/repository/index", post(repository::index))
        .route("/v2/repository/models/{model}/load", post(repository::load))
        .route("/v2/repository/models/{model}/unload", post(repository::unload))
        .route("/v1/pipelines", get(pipelines::list))
        .route("/v1/pipelines/{name}", post(pipelines::run).put(pipelines::define).delete(pipelines::remove))
        .route("/v1/models", get(manage::list).post(manage::create))
        .route("/v1/models/{model}", get(manage::describe).delete(manage::delete))
        .route("/v1/models/{model}/config", put(manage::set_config))
        .route("/v1/models/{model}/default", put(manage::set_default))
        .route("/v1/models/{model}/versions", post(manage::upload))
        .route("/v1/models/{model}/versions/{version}", delete(manage::delete_version))
        .route("/v1/keys", get(manage::list_keys).post(manage::create_key))
        .route("/v1/keys/{id}", delete(manage::revoke_key))
        .route("/v1/audit", get(manage::audit))
        .route("/openapi.json", get(openapi))
        .route("/metrics", get(metrics::render))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

/// The OpenAPI description of the management and pipeline API.
async fn openapi() -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], include_str!("../../../../docs/openapi.json"))
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no route for {}", uri.path()))
}

async fn method_not_allowed(uri: Uri) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("method not allowed on {}", uri.path()))
}

/// Parses the `{version}` path segment.
pub(crate) fn parse_version(model: &str, version: &str) -> Result<u64, ApiError> {
    match version.parse::<u64>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("model '{model}' has no version '{version}' (versions are positive integers)"),
        )),
    }
}
