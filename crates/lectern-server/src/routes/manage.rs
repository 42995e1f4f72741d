//! The management API: `/v1/models`, versions, config, default version; `/v1/keys`; `/v1/audit`.

use super::infer::read_body;
use super::{Path, Query};
use crate::principal::Principal;
use crate::{ApiError, AppState};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::TryStreamExt;
use lectern_store::Role;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// Parses a JSON body, with a clear 400 when it does not fit.
async fn json_body<T: DeserializeOwned>(state: &AppState, headers: &HeaderMap, body: Body) -> Result<T, ApiError> {
    let bytes = read_body(body, headers, state.settings.max_body_bytes).await?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("malformed request body: {e}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateModel {
    name: String,
    #[serde(default)]
    config: Option<Value>,
    #[serde(default)]
    labels: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetConfig {
    #[serde(default)]
    config: Option<Value>,
    #[serde(default)]
    labels: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetDefault {
    version: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    #[serde(default)]
    version: Option<u64>,
}

/// `GET /v1/models`
pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "models": state.manager.list().await? })))
}

/// `POST /v1/models`
pub async fn create(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let request: CreateModel = json_body(&state, &headers, body).await?;
    let view = state
        .manager
        .create_model(&who.actor, &request.name, request.config.as_ref(), request.labels.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// `GET /v1/models/{model}`
pub async fn describe(State(state): State<Arc<AppState>>, Path(model): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(state.manager.describe(&model).await?)))
}

/// `PUT /v1/models/{model}/config`
pub async fn set_config(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let request: SetConfig = json_body(&state, &headers, body).await?;
    let view = state.manager.set_config(&who.actor, &model, request.config.as_ref(), request.labels.as_deref()).await?;
    Ok(Json(json!(view)))
}

/// `POST /v1/models/{model}/versions[?version=N]`: the body is the model file, streamed.
pub async fn upload(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(model): Path<String>,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // Refuse a declared oversize body before reading any of it.
    let limit = state.manager.max_upload_bytes();
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(lectern_manage::ManageError::TooLarge(limit).into());
    }
    let stream = body.into_data_stream().map_err(|e| e.to_string());
    let (version, view) = state.manager.upload_version(&who.actor, &model, query.version, stream).await?;
    let uploaded = view.versions.iter().find(|v| v.version == version).cloned();
    Ok((StatusCode::CREATED, Json(json!({ "version": uploaded, "model": view }))).into_response())
}

/// `PUT /v1/models/{model}/default`
pub async fn set_default(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let request: SetDefault = json_body(&state, &headers, body).await?;
    Ok(Json(json!(state.manager.set_default(&who.actor, &model, request.version).await?)))
}

/// `DELETE /v1/models/{model}/versions/{version}`
pub async fn delete_version(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path((model, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let version = super::parse_version(&model, &version)?;
    Ok(Json(json!(state.manager.delete_version(&who.actor, &model, version).await?)))
}

/// `DELETE /v1/models/{model}`
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(model): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.manager.delete_model(&who.actor, &model).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: String,
    role: String,
}

/// `POST /v1/keys`: the key text is in this answer and nowhere else, ever.
pub async fn create_key(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let request: CreateKey = json_body(&state, &headers, body).await?;
    let role: Role =
        request.role.parse().map_err(|e: lectern_store::StoreError| ApiError::bad_request(e.to_string()))?;
    let name = request.name.trim();
    if name.is_empty() || name.len() > 128 {
        return Err(ApiError::bad_request("a key needs a name of 1 to 128 characters"));
    }
    let (key, secret) = state.manager.store().create_key(&who.actor, name, role).await.map_err(store_error)?;
    state.auth.keys_changed(true);
    let body = json!({ "id": key.id, "name": key.name, "role": key.role.as_str(), "created_at_ms": key.created_at_ms, "key": secret });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /v1/keys`
pub async fn list_keys(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let keys = state.manager.store().keys().await.map_err(store_error)?;
    let keys: Vec<Value> = keys
        .iter()
        .map(|k| json!({ "id": k.id, "name": k.name, "role": k.role.as_str(), "created_at_ms": k.created_at_ms, "revoked_at_ms": k.revoked_at_ms }))
        .collect();
    Ok(Json(json!({ "keys": keys })))
}

/// `DELETE /v1/keys/{id}`
pub async fn revoke_key(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.manager.store().revoke_key(&who.actor, &id).await.map_err(store_error)?;
    let live = state.manager.store().has_keys().await.map_err(store_error)?;
    state.auth.keys_changed(live);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    #[serde(default)]
    limit: Option<u32>,
}

/// `GET /v1/audit[?limit=N]`: newest first.
pub async fn audit(
    State(state): State<Arc<AppState>>,
    Query(query): Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = query.limit.unwrap_or(100).clamp(1, 10_000);
    let entries = state.manager.store().audit_log(limit).await.map_err(store_error)?;
    let entries: Vec<Value> = entries
        .iter()
        .map(|e| json!({ "id": e.id, "at_ms": e.at_ms, "actor": e.actor, "action": e.action, "target": e.target, "detail": e.detail }))
        .collect();
    Ok(Json(json!({ "entries": entries })))
}

fn store_error(e: lectern_store::StoreError) -> ApiError {
    lectern_manage::ManageError::from(e).into()
}
