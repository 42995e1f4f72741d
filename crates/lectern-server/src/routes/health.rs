//! Server liveness, readiness and metadata.

use super::openapi::ErrorBody;
use crate::{ApiError, AppState};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
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
    name: &'static str,
    version: &'static str,
    extensions: [&'static str; 4],
}

/// `GET /v2/health/live`
#[utoipa::path(get, path = "/v2/health/live", tag = "v2", operation_id = "serverLive",
    responses((status = 200, description = "The process is up.", body = Live)))]
pub async fn live() -> Json<Live> {
    Json(Live { live: true })
}

/// `GET /v2/health/ready`: ready once the start-up load of the repository has finished.
#[utoipa::path(get, path = "/v2/health/ready", tag = "v2", operation_id = "serverReady",
    responses(
        (status = 200, description = "The start-up load of the models has finished.", body = Ready),
        (status = 503, description = "Still loading.", body = ErrorBody),
    ))]
pub async fn ready(State(state): State<Arc<AppState>>) -> Result<Json<Ready>, ApiError> {
    if state.ready.load(Ordering::Acquire) {
        Ok(Json(Ready { ready: true }))
    } else {
        Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is still loading its models"))
    }
}

/// `GET /v2`
#[utoipa::path(get, path = "/v2", tag = "v2", operation_id = "serverMetadata",
    responses((status = 200, description = "Name, version and protocol extensions.", body = ServerMetadata)))]
pub async fn server_metadata() -> Json<ServerMetadata> {
    Json(ServerMetadata {
        name: "lectern",
        version: env!("CARGO_PKG_VERSION"),
        extensions: ["binary_tensor_data", "model_repository", "classification", "schedule_policy"],
    })
}
