//! Server liveness, readiness and metadata.

use crate::{ApiError, AppState};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use lectern_core::ErrorCode;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// `GET /v2/health/live`
pub async fn live() -> Json<Value> {
    Json(json!({ "live": true }))
}

/// `GET /v2/health/ready`: ready once the start-up load of the repository has finished, and
/// while the database answers (checked at most once a second, not on every probe).
/// Not ready: 503 `{"ready": false, "error", "code"}` with `Retry-After`.
pub async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let not_ready = if !state.ready.load(Ordering::Acquire) {
        ApiError::coded(ErrorCode::NotReady, "the server is still loading its models")
    } else if !state.manager.database_available().await {
        ApiError::coded(ErrorCode::DatabaseUnavailable, "the database is unavailable; retry later")
    } else {
        return Json(json!({ "ready": true })).into_response();
    };
    not_ready.into_response_with(serde_json::Map::from_iter([("ready".to_string(), Value::Bool(false))]))
}

/// `GET /v2`
pub async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": "lectern",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data", "model_repository", "classification", "schedule_policy"],
    }))
}
