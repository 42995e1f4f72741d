//! Model metadata and readiness.

use super::parse_version;
use super::Path;
use crate::{ApiError, AppState};
use axum::extract::State;
use axum::Json;
use lectern_runtime::{LoadedModel, TensorInfo, VersionState};
use serde_json::{json, Value};
use std::sync::Arc;

fn describe(model: &LoadedModel, versions: Vec<String>) -> Value {
    let infos = |list: &[TensorInfo]| -> Vec<Value> {
        list.iter().map(|i| json!({ "name": i.name, "datatype": i.datatype.as_str(), "shape": i.shape })).collect()
    };
    json!({
        "name": model.name,
        "versions": versions,
        "platform": "onnx",
        "inputs": infos(&model.signature.inputs),
        "outputs": infos(&model.signature.outputs),
    })
}

/// `GET /v2/models/{model}`: the newest ready version's signature and every version served.
pub async fn metadata(State(state): State<Arc<AppState>>, Path(model): Path<String>) -> Result<Json<Value>, ApiError> {
    let versions = state.registry.versions(&model)?;
    let newest = state.registry.resolve(&model, None)?;
    let names =
        versions.iter().filter(|(_, s)| matches!(s, VersionState::Ready(_))).map(|(v, _)| v.to_string()).collect();
    Ok(Json(describe(&newest, names)))
}

/// `GET /v2/models/{model}/versions/{version}`
pub async fn version_metadata(
    State(state): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let v = parse_version(&model, &version)?;
    let loaded = state.registry.resolve(&model, Some(v))?;
    Ok(Json(describe(&loaded, vec![v.to_string()])))
}

/// `GET /v2/models/{model}/ready`
pub async fn ready(State(state): State<Arc<AppState>>, Path(model): Path<String>) -> Result<Json<Value>, ApiError> {
    state.registry.resolve(&model, None)?;
    Ok(Json(json!({ "name": model, "ready": true })))
}

/// `GET /v2/models/{model}/versions/{version}/ready`
pub async fn version_ready(
    State(state): State<Arc<AppState>>,
    Path((model, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let v = parse_version(&model, &version)?;
    state.registry.resolve(&model, Some(v))?;
    Ok(Json(json!({ "name": model, "version": v.to_string(), "ready": true })))
}
