//! Model metadata and readiness.

use super::openapi::ErrorBody;
use super::parse_version;
use super::Path;
use crate::{ApiError, AppState};
use axum::extract::State;
use axum::Json;
use lectern_runtime::{LoadedModel, TensorInfo};
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

/// One input or output of a model's signature.
#[derive(Serialize, ToSchema)]
pub struct TensorMetadata {
    pub name: String,
    #[schema(example = "FP32")]
    pub datatype: &'static str,
    /// `-1`: any size.
    pub shape: Vec<i64>,
}

/// The answer of `GET /v2/models/{model}[/versions/{version}]`.
#[derive(Serialize, ToSchema)]
pub struct ModelMetadata {
    pub name: String,
    /// The versions served (ready).
    pub versions: Vec<String>,
    pub platform: String,
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
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
    Ok(Json(model_metadata(&state, &model, None).await?))
}

/// A model's metadata: of `version`, or of the newest ready version with every version served.
/// A model that loads on demand is loaded first.
pub async fn model_metadata(state: &AppState, model: &str, version: Option<u64>) -> Result<ModelMetadata, ApiError> {
    if let Some(v) = version {
        let loaded = state.registry.model(model, Some(v)).await?;
        return Ok(describe(&loaded, vec![v.to_string()]));
    }
    let newest = state.registry.model(model, None).await?;
    let ready = state.registry.ready_versions(model)?;
    Ok(describe(&newest, ready.iter().map(|m| m.version.to_string()).collect()))
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
    Ok(Json(model_metadata(&state, &model, Some(v)).await?))
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
    state.registry.model(&model, None).await?;
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
    state.registry.model(&model, Some(v)).await?;
    Ok(Json(ModelReady { name: model, version: Some(v.to_string()), ready: true }))
}

/// One input or output in Triton's model configuration.
#[derive(Serialize, ToSchema)]
pub struct ConfigTensor {
    pub name: String,
    /// `TYPE_FP32`, `TYPE_INT64`, `TYPE_STRING` (BYTES), ...
    pub data_type: String,
    /// Without the batch dimension when `max_batch_size` > 0, as Triton.
    pub dims: Vec<i64>,
}

/// Triton's `dynamic_batching`, present when requests are batched.
#[derive(Serialize, ToSchema)]
pub struct DynamicBatching {
    pub max_queue_delay_microseconds: u64,
    pub preferred_batch_size: Vec<u64>,
}

/// Triton's `instance_group`: the model's parallel instances.
#[derive(Serialize, ToSchema)]
pub struct InstanceGroup {
    pub name: String,
    #[schema(example = "KIND_CPU")]
    pub kind: &'static str,
    pub count: usize,
}

/// The answer of `GET /v2/models/{model}[/versions/{version}]/config`: Triton's JSON model
/// configuration, as far as Lectern's model has its fields.
#[derive(Serialize, ToSchema)]
pub struct ModelConfiguration {
    pub name: String,
    /// `onnxruntime_onnx` for ONNX models, as Triton names them.
    pub platform: String,
    /// The engine: `tract` or `onnxruntime`.
    pub backend: String,
    /// `{"latest": {"num_versions": n}}` or `{"specific": {"versions": [..]}}`.
    #[schema(value_type = Object)]
    pub version_policy: serde_json::Value,
    pub max_batch_size: usize,
    pub input: Vec<ConfigTensor>,
    pub output: Vec<ConfigTensor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dynamic_batching: Option<DynamicBatching>,
    pub instance_group: Vec<InstanceGroup>,
    pub default_model_filename: &'static str,
}

/// Triton's configuration of `version` of `model`, or of its newest ready version (a model
/// that loads on demand is loaded first).
pub async fn model_config(state: &AppState, model: &str, version: Option<u64>) -> Result<ModelConfiguration, ApiError> {
    let loaded = state.registry.model(model, version).await?;
    Ok(configuration(&loaded))
}

fn configuration(model: &LoadedModel) -> ModelConfiguration {
    let batched = model.max_batch_size > 0;
    let tensors = |list: &[TensorInfo]| -> Vec<ConfigTensor> {
        list.iter()
            .map(|t| ConfigTensor {
                name: t.name.clone(),
                data_type: match t.datatype.as_str() {
                    "BYTES" => "TYPE_STRING".to_string(),
                    other => format!("TYPE_{other}"),
                },
                dims: if batched && !t.shape.is_empty() { t.shape[1..].to_vec() } else { t.shape.clone() },
            })
            .collect()
    };
    let config = model.config.as_deref();
    let platform = match model.platform() {
        "onnx" => "onnxruntime_onnx".to_string(),
        other => other.to_string(),
    };
    let backend = match config.map(|c| c.engine.as_str()) {
        Some("ort") => "onnxruntime",
        Some(engine) => engine,
        None => "remote",
    };
    let version_policy = match config.and_then(|c| c.versions.clone()) {
        Some(versions) => serde_json::json!({ "specific": { "versions": versions } }),
        None => serde_json::json!({ "latest": { "num_versions": config.and_then(|c| c.latest).unwrap_or(1) } }),
    };
    let batching_on = batched && config.is_some_and(|c| c.batching != lectern_core::BatchingMode::Off);
    ModelConfiguration {
        name: model.name.clone(),
        platform,
        backend: backend.to_string(),
        version_policy,
        max_batch_size: model.max_batch_size,
        input: tensors(&model.signature.inputs),
        output: tensors(&model.signature.outputs),
        dynamic_batching: config.filter(|_| batching_on).map(|c| DynamicBatching {
            max_queue_delay_microseconds: c.max_queue_delay_us,
            preferred_batch_size: Vec::new(),
        }),
        instance_group: config
            .map(|c| InstanceGroup { name: model.name.clone(), kind: "KIND_CPU", count: c.instance_count() })
            .into_iter()
            .collect(),
        default_model_filename: "model.onnx",
    }
}

/// `GET /v2/models/{model}/config`: the newest served version's configuration.
#[utoipa::path(get, path = "/v2/models/{model}/config", tag = "v2", operation_id = "modelConfig",
    params(("model" = String, Path, description = "The model's name.")),
    responses(
        (status = 200, description = "Triton's JSON model configuration.", body = ModelConfiguration),
        (status = 400, description = "The model is known but no version of it is ready.", body = ErrorBody),
        (status = 404, description = "No such model.", body = ErrorBody),
    ))]
pub async fn config(
    State(state): State<Arc<AppState>>,
    Path(model): Path<String>,
) -> Result<Json<ModelConfiguration>, ApiError> {
    Ok(Json(model_config(&state, &model, None).await?))
}

/// `GET /v2/models/{model}/versions/{version}/config`
#[utoipa::path(get, path = "/v2/models/{model}/versions/{version}/config", tag = "v2", operation_id = "modelVersionConfig",
    params(("model" = String, Path, description = "The model's name."),
           ("version" = String, Path, description = "A version number (a positive integer).")),
    responses(
        (status = 200, description = "Triton's JSON model configuration.", body = ModelConfiguration),
        (status = 400, description = "The model is known but this version is not ready.", body = ErrorBody),
        (status = 404, description = "No such model or version.", body = ErrorBody),
    ))]
pub async fn version_config(
    State(state): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
) -> Result<Json<ModelConfiguration>, ApiError> {
    let v = parse_version(&model, &version)?;
    Ok(Json(model_config(&state, &model, Some(v)).await?))
}
