//! Server liveness, readiness and metadata.

use super::openapi::ErrorBody;
use crate::{ApiError, AppState};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use lectern_core::ErrorCode;
use serde::Serialize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use utoipa::ToSchema;

/// The answer of `GET /v2/health/live`.
#[derive(Serialize, ToSchema)]
pub struct Live {
    live: bool,
}

/// The answer of `GET /v2/health/ready`.
#[derive(Serialize, ToSchema)]
pub struct Ready {
    ready: bool,
}

/// The answer of `GET /v2`.
#[derive(Serialize, ToSchema)]
pub struct ServerMetadata {
    pub name: String,
    pub version: &'static str,
    pub extensions: [&'static str; 6],
}

/// `GET /v2/health/live`
#[utoipa::path(get, path = "/v2/health/live", tag = "v2", operation_id = "serverLive",
    responses((status = 200, description = "The process is up.", body = Live)))]
pub async fn live() -> Json<Live> {
    Json(Live { live: true })
}

/// `GET /v2/health/ready`: ready once the start-up load of the repository has finished, and
/// while the database answers (checked at most once a second, not on every probe).
/// Not ready: 503 `{"ready": false, "error", "code"}` with `Retry-After`.
#[utoipa::path(get, path = "/v2/health/ready", tag = "v2", operation_id = "serverReady",
    responses(
        (status = 200, description = "The start-up load of the models has finished and the database answers.", body = Ready),
        (status = 503, description = "Still loading, or the database is unavailable (`ready` is false).", body = ErrorBody),
    ))]
pub async fn ready(State(state): State<Arc<AppState>>) -> Response {
    match readiness(&state).await {
        Ok(()) => Json(Ready { ready: true }).into_response(),
        Err(not_ready) => not_ready
            .into_response_with(serde_json::Map::from_iter([("ready".to_string(), serde_json::Value::Bool(false))])),
    }
}

/// Ready: the start-up load of the repository has finished and the database answers.
pub async fn readiness(state: &AppState) -> Result<(), ApiError> {
    if !state.ready.load(Ordering::Acquire) {
        return Err(ApiError::coded(ErrorCode::NotReady, "the server is still loading its models"));
    }
    if !state.manager.database_available().await {
        return Err(ApiError::coded(ErrorCode::DatabaseUnavailable, "the database is unavailable; retry later"));
    }
    Ok(())
}

/// `GET /v2`
#[utoipa::path(get, path = "/v2", tag = "v2", operation_id = "serverMetadata",
    responses((status = 200, description = "Name, version and protocol extensions.", body = ServerMetadata)))]
pub async fn server_metadata(State(state): State<Arc<AppState>>) -> Json<ServerMetadata> {
    Json(server_metadata_of(&state))
}

/// The server's name, version and protocol extensions.
pub fn server_metadata_of(state: &AppState) -> ServerMetadata {
    ServerMetadata {
        name: state.settings.server_name.clone(),
        version: env!("CARGO_PKG_VERSION"),
        extensions: [
            "binary_tensor_data",
            "model_repository",
            "classification",
            "schedule_policy",
            "statistics",
            "model_configuration",
        ],
    }
}
