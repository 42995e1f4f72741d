//! Server liveness, readiness and metadata.

use crate::{ApiError, AppState};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// `GET /v2/health/live`
pub async fn live() -> Json<Value> {
    Json(json!({ "live": true }))
}

/// `GET /v2/health/ready`: ready once the start-up load of the repository has finished.
pub async fn ready(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    if state.ready.load(Ordering::Acquire) {
        Ok(Json(json!({ "ready": true })))
    } else {
        Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is still loading its models"))
    }
}

/// `GET /v2`
pub async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": "lectern",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data", "model_repository", "classification", "schedule_policy"],
    }))
}
