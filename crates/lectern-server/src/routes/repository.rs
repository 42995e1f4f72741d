//! The model repository extension: index, load, unload.

use super::infer::read_body;
use super::openapi::ErrorBody;
use super::Path;
use crate::principal::Principal;
use crate::{ApiError, AppState};
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::{Extension, Json};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use utoipa::ToSchema;

/// The body of `POST /v2/repository/index` (may be empty).
#[derive(Deserialize, Default, ToSchema)]
pub struct IndexRequest {
    /// Only the versions that are ready.
    #[serde(default)]
    ready: bool,
}

/// One row of the repository index.
#[derive(Serialize, ToSchema)]
pub struct IndexEntry {
    name: String,
    /// Absent for a model with no version at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[schema(pattern = "^(READY|UNAVAILABLE)$")]
    state: &'static str,
    reason: String,
}

/// The answer of load and unload.
#[derive(Serialize, ToSchema)]
pub struct Empty {}

/// Parses a JSON body that may be left empty (then `T::default()`).
fn optional_json<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("malformed request body: {e}")))
}

/// `POST /v2/repository/index`
#[utoipa::path(post, path = "/v2/repository/index", tag = "repository", operation_id = "repositoryIndex",
    request_body(content = Option<IndexRequest>, content_type = "application/json", description = "May be empty."),
    responses(
        (status = 200, description = "Every model and version with its state.", body = Vec<IndexEntry>),
        (status = 400, description = "A malformed body.", body = ErrorBody),
        (status = 413, description = "The body is larger than `--max-body-bytes`.", body = ErrorBody),
    ))]
pub async fn index(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Vec<IndexEntry>>, ApiError> {
    let bytes = read_body(body, &headers, state.settings.max_body_bytes).await?;
    let request: IndexRequest = optional_json(&bytes)?;
    let rows = state
        .registry
        .index()
        .into_iter()
        .filter(|row| !request.ready || row.ready)
        .filter(|row| state.may_see(&who, &row.name))
        .map(|row| IndexEntry {
            name: row.name,
            version: row.version.map(|v| v.to_string()),
            state: if row.ready { "READY" } else { "UNAVAILABLE" },
            reason: row.reason,
        })
        .collect();
    Ok(Json(rows))
}

/// `POST /v2/repository/models/{model}/load`: re-reads the model folder and loads it.
#[utoipa::path(post, path = "/v2/repository/models/{model}/load", tag = "repository", operation_id = "repositoryLoad",
    params(("model" = String, Path, description = "The model's name.")),
    request_body(content = Option<Object>, content_type = "application/json", description = "May be empty; not read."),
    responses(
        (status = 200, description = "Loaded.", body = Empty),
        (status = 400, description = "A malformed body, or the model cannot be loaded.", body = ErrorBody),
        (status = 404, description = "No such model.", body = ErrorBody),
        (status = 413, description = "The body is larger than `--max-body-bytes`.", body = ErrorBody),
    ))]
pub async fn load(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Empty>, ApiError> {
    let bytes = read_body(body, &headers, state.settings.max_body_bytes).await?;
    optional_json::<Value>(&bytes)?;
    state.manager.load(&who.actor, &model).await?;
    Ok(Json(Empty {}))
}

/// `POST /v2/repository/models/{model}/unload`
#[utoipa::path(post, path = "/v2/repository/models/{model}/unload", tag = "repository", operation_id = "repositoryUnload",
    params(("model" = String, Path, description = "The model's name.")),
    responses(
        (status = 200, description = "Unloaded.", body = Empty),
        (status = 404, description = "No such model.", body = ErrorBody),
    ))]
pub async fn unload(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(model): Path<String>,
) -> Result<Json<Empty>, ApiError> {
    state.manager.unload(&who.actor, &model).await?;
    Ok(Json(Empty {}))
}
