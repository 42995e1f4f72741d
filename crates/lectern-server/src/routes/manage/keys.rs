//! `/v1/keys`: API keys. The key text is in the answer that creates it and nowhere else, ever.

use super::json_body;
use crate::principal::Principal;
use crate::routes::openapi::ErrorBody;
use crate::routes::Path;
use crate::{ApiError, AppState};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use lectern_store::{ApiKey, Role};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

/// The body of `POST /v1/keys`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// 1 to 128 characters.
    name: String,
    /// `admin`, `trainer` or `client`.
    #[schema(example = "client")]
    role: String,
}

/// A key as listed (never its secret).
#[derive(Serialize, ToSchema)]
pub struct Key {
    id: String,
    name: String,
    #[schema(pattern = "^(admin|trainer|client)$")]
    role: &'static str,
    created_at_ms: i64,
    revoked_at_ms: Option<i64>,
}

/// A key just made: its text is in this answer and nowhere else, ever.
#[derive(Serialize, ToSchema)]
pub struct CreatedKey {
    id: String,
    name: String,
    #[schema(pattern = "^(admin|trainer|client)$")]
    role: &'static str,
    created_at_ms: i64,
    /// `lk_<id>_<48 hex>`: send it as `Authorization: Bearer <key>`.
    key: String,
}

/// The answer of `GET /v1/keys`.
#[derive(Serialize, ToSchema)]
pub struct KeyList {
    keys: Vec<Key>,
}

impl From<&ApiKey> for Key {
    fn from(k: &ApiKey) -> Self {
        Key {
            id: k.id.clone(),
            name: k.name.clone(),
            role: k.role.as_str(),
            created_at_ms: k.created_at_ms,
            revoked_at_ms: k.revoked_at_ms,
        }
    }
}

/// `POST /v1/keys`: the key text is in this answer and nowhere else, ever.
#[utoipa::path(post, path = "/v1/keys", tag = "keys", operation_id = "createKey",
    request_body = CreateKey,
    responses(
        (status = 201, description = "The key, with its text.", body = CreatedKey),
        (status = 400, description = "A malformed body, an unknown role, or a bad name.", body = ErrorBody),
        (status = 413, description = "The body is larger than `--max-body-bytes`.", body = ErrorBody),
    ))]
pub async fn create(
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
    let (key, secret) = state.manager.create_key(&who.actor, name, role).await?;
    state.auth.keys_changed(true);
    let body = CreatedKey {
        id: key.id,
        name: key.name,
        role: key.role.as_str(),
        created_at_ms: key.created_at_ms,
        key: secret,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /v1/keys`
#[utoipa::path(get, path = "/v1/keys", tag = "keys", operation_id = "listKeys",
    responses((status = 200, description = "Every key, live and revoked, without secrets.", body = KeyList)))]
pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<KeyList>, ApiError> {
    let keys = state.manager.keys().await?;
    Ok(Json(KeyList { keys: keys.iter().map(Key::from).collect() }))
}

/// `DELETE /v1/keys/{id}`
#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "keys", operation_id = "revokeKey",
    params(("id" = String, Path, description = "The key's id (the 12 hex digits after `lk_`).")),
    responses(
        (status = 204, description = "Revoked, at once."),
        (status = 404, description = "No such key, or already revoked.", body = ErrorBody),
    ))]
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let live = state.manager.revoke_key(&who.actor, &id).await?;
    state.auth.keys_changed(live);
    Ok(StatusCode::NO_CONTENT)
}
