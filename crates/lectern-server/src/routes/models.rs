//! Model metadata and readiness.

use super::openapi::ErrorBody;
use super::parse_version;
use super::Path;
use crate::{ApiError, AppState};
use axum::extract::State;
use axum::Json;
use lectern_runtime::{LoadedModel, TensorInfo, VersionState};
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

/// One input or output of a model's signature.
#[derive(Serialize, ToSchema)]
pub struct TensorMetadata {
    name: String,
    #[schema(example = "FP32")]
    datatype: &'static str,
    /// `-1`: any size.
    shape: Vec<i64>,
}

/// The answer of `GET /v2/models/{model}[/versions/{version}]`.
#[derive(Serialize, ToSchema)]
pub struct ModelMetadata {
    name: String,
    /// The versions served (ready).
    versions: Vec<String>,
    platform: String,
    inputs: Vec<TensorMetadata>,
    outputs: Vec<TensorMetadata>,
}

/// The answer of `GET /v2/models/{model}[/versions/{version}]/ready`.
#[derive(Serialize, ToSchema)]
pub struct ModelReady {
    name: String,
    /// Only when the path names a version.
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    ready: bool,
}

fn describe(model: &LoadedModel, versions: Vec<String>) -> ModelMetadata {
    let infos = |list: &[TensorInfo]| -> Vec<TensorMetadata> {
        list.iter()
            .map(|i| TensorMetadata { name: i.name.clone(), datatype: i.datatype.as_str(), shape: i.shape.clone() })
            .collect()
    };
    ModelMetadata {
        name: model.name.clone(),
        versions,
        platform: model.platform().to_string(),
        inputs: infos(&model.signature.inputs),
        outputs: infos(&model.signature.outputs),
    }
}

/// `GET /v2/models/{model}`: the newest ready version's signature and every version served.
#[utoipa::path(get, path = "/v2/models/{model}", tag = "v2", operation_id = "modelMetadata",
    params(("model" = String, Path, description = "The model's name.")),
    responses(
        (status = 200, description = "The newest served version's signature.", body = ModelMetadata),
        (status = 400, description = "The model is known but no version of it is ready.", body = ErrorBody),
        (status = 404, description = "No such model.", body = ErrorBody),
    ))]
pub async fn metadata(
    State(state): State<Arc<AppState>>,
    Path(model): Path<String>,
) -> Result<Json<ModelMetadata>, ApiError> {
    let versions = state.registry.versions(&model)?;
    let newest = state.registry.resolve(&model, None)?;
    let names =
        versions.iter().filter(|(_, s)| matches!(s, VersionState::Ready(_))).map(|(v, _)| v.to_string()).collect();
    Ok(Json(describe(&newest, names)))
}

/// `GET /v2/models/{model}/versions/{version}`
#[utoipa::path(get, path = "/v2/models/{model}/versions/{version}", tag = "v2", operation_id = "modelVersionMetadata",
    params(("model" = String, Path, description = "The model's name."),
           ("version" = String, Path, description = "A version number (a positive integer).")),
    responses(
        (status = 200, description = "The version's signature.", body = ModelMetadata),
        (status = 400, description = "The model is known but this version is not ready.", body = ErrorBody),
        (status = 404, description = "No such model or version.", body = ErrorBody),
    ))]
pub async fn version_metadata(
    State(state): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
) -> Result<Json<ModelMetadata>, ApiError> {
    let v = parse_version(&model, &version)?;
    let loaded = state.registry.resolve(&model, Some(v))?;
    Ok(Json(describe(&loaded, vec![v.to_string()])))
}

/// `GET /v2/models/{model}/ready`
#[utoipa::path(get, path = "/v2/models/{model}/ready", tag = "v2", operation_id = "modelReady",
    params(("model" = String, Path, description = "The model's name.")),
    responses(
        (status = 200, description = "A version of the model is ready.", body = ModelReady),
        (status = 400, description = "The model is known but no version of it is ready.", body = ErrorBody),
        (status = 404, description = "No such model.", body = ErrorBody),
    ))]
pub async fn ready(
    State(state): State<Arc<AppState>>,
    Path(model): Path<String>,
) -> Result<Json<ModelReady>, ApiError> {
    state.registry.resolve(&model, None)?;
    Ok(Json(ModelReady { name: model, version: None, ready: true }))
}

/// `GET /v2/models/{model}/versions/{version}/ready`
#[utoipa::path(get, path = "/v2/models/{model}/versions/{version}/ready", tag = "v2", operation_id = "modelVersionReady",
    params(("model" = String, Path, description = "The model's name."),
           ("version" = String, Path, description = "A version number (a positive integer).")),
    responses(
        (status = 200, description = "The version is ready.", body = ModelReady),
        (status = 400, description = "The model is known but this version is not ready.", body = ErrorBody),
        (status = 404, description = "No such model or version.", body = ErrorBody),
    ))]
pub async fn version_ready(
    State(state): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
) -> Result<Json<ModelReady>, ApiError> {
    let v = parse_version(&model, &version)?;
    state.registry.resolve(&model, Some(v))?;
    Ok(Json(ModelReady { name: model, version: Some(v.to_string()), ready: true }))
}
