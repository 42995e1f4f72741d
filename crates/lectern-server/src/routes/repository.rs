//! The model repository extension: index, load, unload.

use super::infer::read_body;
use super::Path;
use crate::principal::Principal;
use crate::{ApiError, AppState};
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::{Extension, Json};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

#[derive(Deserialize, Default)]
struct IndexRequest {
    #[serde(default)]
    ready: bool,
}

/// Parses a JSON body that may be left empty (then `T::default()`).
fn optional_json<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("malformed request body: {e}")))
}

/// `POST /v2/repository/index`
pub async fn index(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let bytes = read_body(body, &headers, state.settings.max_body_bytes).await?;
    let request: IndexRequest = optional_json(&bytes)?;
    let rows: Vec<Value> = state
        .registry
        .index()
        .into_iter()
        .filter(|row| !request.ready || row.ready)
        .map(|row| {
            let mut entry = json!({
                "name": row.name,
                "state": if row.ready { "READY" } else { "UNAVAILABLE" },
                "reason": row.reason,
            });
            if let Some(v) = row.version {
                entry["version"] = json!(v.to_string());
            }
            entry
        })
        .collect();
    Ok(Json(Value::Array(rows)))
}

/// `POST /v2/repository/models/{model}/load`: re-reads the model folder and loads it.
pub async fn load(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let bytes = read_body(body, &headers, state.settings.max_body_bytes).await?;
    optional_json::<Value>(&bytes)?;
    state.manager.load(&who.actor, &model).await?;
    Ok(Json(json!({})))
}

/// `POST /v2/repository/models/{model}/unload`
pub async fn unload(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(model): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state.manager.unload(&who.actor, &model).await?;
    Ok(Json(json!({})))
}
