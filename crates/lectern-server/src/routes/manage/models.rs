//! `/v1/models`: models, their versions (uploaded as raw files), config and default version.

use super::json_body;
use crate::principal::Principal;
use crate::routes::openapi::ErrorBody;
use crate::routes::{Path, Query};
use crate::{ApiError, AppState};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::TryStreamExt;
use lectern_manage::{ModelView, VersionView};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// The body of `POST /v1/models`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateModel {
    /// Letters, digits, `-`, `_`, `.` (not first), at most 128 bytes.
    name: String,
    /// The keys of `config.toml`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    config: Option<Value>,
    #[serde(default)]
    labels: Option<Vec<String>>,
}

/// The body of `PUT /v1/models/{model}/config`: replaces both (absent: defaults, no labels).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetConfig {
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    config: Option<Value>,
    #[serde(default)]
    labels: Option<Vec<String>>,
}

/// The body of `PUT /v1/models/{model}/default`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetDefault {
    /// `null`: the newest ready version.
    #[schema(minimum = 1)]
    version: Option<u64>,
}

/// The query of an upload.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// The version's number (else the newest + 1).
    #[serde(default)]
    #[param(minimum = 1)]
    version: Option<u64>,
}

/// The answer of `GET /v1/models`.
#[derive(Serialize, ToSchema)]
pub struct ModelList {
    models: Vec<ModelView>,
}

/// The answer of an upload.
#[derive(Serialize, ToSchema)]
pub struct Uploaded {
    version: Option<VersionView>,
    model: ModelView,
}

/// `GET /v1/models`
#[utoipa::path(get, path = "/v1/models", tag = "models", operation_id = "listModels",
    responses((status = 200, description = "Every model, by name.", body = ModelList)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
) -> Result<Json<ModelList>, ApiError> {
    let mut models = state.manager.list().await?;
    models.retain(|m| state.may_see(&who, &m.name));
    Ok(Json(ModelList { models }))
}

/// `POST /v1/models`
#[utoipa::path(post, path = "/v1/models", tag = "models", operation_id = "createModel",
    request_body = CreateModel,
    responses(
        (status = 201, description = "Created (no version yet).", body = ModelView),
        (status = 400, description = "A malformed body, a bad name or config.", body = ErrorBody),
        (status = 409, description = "The model exists.", body = ErrorBody),
        (status = 413, description = "The body is larger than `--max-body-bytes`.", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let request: CreateModel = json_body(&state, &headers, body).await?;
    state.check_owner(&who, &request.name)?;
    let view = state
        .manager
        .create_model(&who.actor, &request.name, request.config.as_ref(), request.labels.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// `GET /v1/models/{model}`
#[utoipa::path(get, path = "/v1/models/{model}", tag = "models", operation_id = "describeModel",
    params(("model" = String, Path, description = "The model's name.")),
    responses(
        (status = 200, description = "The model.", body = ModelView),
        (status = 404, description = "No such model.", body = ErrorBody),
    ))]
pub async fn describe(
    State(state): State<Arc<AppState>>,
    Path(model): Path<String>,
) -> Result<Json<ModelView>, ApiError> {
    Ok(Json(state.manager.describe(&model).await?))
}

/// `PUT /v1/models/{model}/config`
#[utoipa::path(put, path = "/v1/models/{model}/config", tag = "models", operation_id = "setModelConfig",
    params(("model" = String, Path, description = "The model's name.")),
    request_body = SetConfig,
    responses(
        (status = 200, description = "The model, reloaded (versions that cannot load say why).", body = ModelView),
        (status = 400, description = "A malformed body or config.", body = ErrorBody),
        (status = 404, description = "No such model.", body = ErrorBody),
        (status = 413, description = "The body is larger than `--max-body-bytes`.", body = ErrorBody),
    ))]
pub async fn set_config(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ModelView>, ApiError> {
    let request: SetConfig = json_body(&state, &headers, body).await?;
    let view = state.manager.set_config(&who.actor, &model, request.config.as_ref(), request.labels.as_deref()).await?;
    Ok(Json(view))
}

/// `POST /v1/models/{model}/versions[?version=N]`: the body is the model file, streamed.
#[utoipa::path(post, path = "/v1/models/{model}/versions", tag = "models", operation_id = "uploadVersion",
    params(("model" = String, Path, description = "The model's name."), UploadQuery),
    request_body(description = "The model file itself.", content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 201, description = "Stored, then loaded: `version.state` says whether it serves.", body = Uploaded),
        (status = 400, description = "An empty body, version 0, or a bad query.", body = ErrorBody),
        (status = 404, description = "No such model.", body = ErrorBody),
        (status = 409, description = "The version number is taken.", body = ErrorBody),
        (status = 413, description = "The body is larger than `--max-upload-bytes`.", body = ErrorBody),
    ))]
pub async fn upload(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(model): Path<String>,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    crate::routes::refuse_declared_oversize(&headers, state.manager.max_upload_bytes())?;
    let stream = body.into_data_stream().map_err(|e| e.to_string());
    let (version, view) = state.manager.upload_version(&who.actor, &model, query.version, stream).await?;
    let uploaded = view.versions.iter().find(|v| v.version == version).cloned();
    Ok((StatusCode::CREATED, Json(Uploaded { version: uploaded, model: view })).into_response())
}

/// `PUT /v1/models/{model}/default`
#[utoipa::path(put, path = "/v1/models/{model}/default", tag = "models", operation_id = "setDefaultVersion",
    params(("model" = String, Path, description = "The model's name.")),
    request_body = SetDefault,
    responses(
        (status = 200, description = "The model, reloaded.", body = ModelView),
        (status = 400, description = "A malformed body.", body = ErrorBody),
        (status = 404, description = "No such model or version.", body = ErrorBody),
        (status = 413, description = "The body is larger than `--max-body-bytes`.", body = ErrorBody),
    ))]
pub async fn set_default(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ModelView>, ApiError> {
    let request: SetDefault = json_body(&state, &headers, body).await?;
    Ok(Json(state.manager.set_default(&who.actor, &model, request.version).await?))
}

/// `DELETE /v1/models/{model}/versions/{version}`
#[utoipa::path(delete, path = "/v1/models/{model}/versions/{version}", tag = "models", operation_id = "deleteVersion",
    params(("model" = String, Path, description = "The model's name."),
           ("version" = String, Path, description = "A version number (a positive integer).")),
    responses(
        (status = 200, description = "The model, reloaded without the version.", body = ModelView),
        (status = 404, description = "No such model or version.", body = ErrorBody),
    ))]
pub async fn delete_version(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path((model, version)): Path<(String, String)>,
) -> Result<Json<ModelView>, ApiError> {
    let version = crate::routes::parse_version(&model, &version)?;
    Ok(Json(state.manager.delete_version(&who.actor, &model, version).await?))
}

/// `DELETE /v1/models/{model}`
#[utoipa::path(delete, path = "/v1/models/{model}", tag = "models", operation_id = "deleteModel",
    params(("model" = String, Path, description = "The model's name.")),
    responses(
        (status = 204, description = "Gone, with its versions and files; it stops serving at once."),
        (status = 404, description = "No such model.", body = ErrorBody),
    ))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(model): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.manager.delete_model(&who.actor, &model).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The query of an artifact download.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ArtifactQuery {
    /// `onnx`: the file must be an ONNX model (400 if it is not).
    #[serde(default)]
    format: Option<String>,
}

/// `GET /v1/models/{model}/versions/{version}/artifact[?format=onnx]`
#[utoipa::path(get, path = "/v1/models/{model}/versions/{version}/artifact", tag = "models", operation_id = "downloadArtifact",
    params(("model" = String, Path, description = "The model's name."),
           ("version" = String, Path, description = "A version number (a positive integer)."),
           ArtifactQuery),
    responses(
        (status = 200, description = "The version's file, as uploaded or trained.", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 400, description = "A `format` other than `onnx`, or a file that is not ONNX.", body = ErrorBody),
        (status = 404, description = "No such model or version.", body = ErrorBody),
    ))]
pub async fn artifact(
    State(state): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
    Query(query): Query<ArtifactQuery>,
) -> Result<Response, ApiError> {
    let version = crate::routes::parse_version(&model, &version)?;
    let onnx = match query.format.as_deref() {
        None => false,
        Some(f) if f.eq_ignore_ascii_case("onnx") => true,
        Some(other) => return Err(ApiError::bad_request(format!("format must be onnx, not '{other}'"))),
    };
    let bytes = state.manager.artifact(&model, version).await?;
    if onnx && !lectern_train::onnx::is_onnx(&bytes) {
        return Err(ApiError::bad_request(format!(
            "version {version} of model '{model}' is not an ONNX file and cannot be converted to one"
        )));
    }
    let disposition = format!("attachment; filename=\"{model}-{version}.onnx\"");
    let mut response = ([(axum::http::header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response();
    if let Ok(value) = axum::http::HeaderValue::from_str(&disposition) {
        response.headers_mut().insert(axum::http::header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}
