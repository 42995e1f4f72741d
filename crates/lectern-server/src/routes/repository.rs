//! The model repository extension: index, load, unload.

use super::infer::{read_body, read_decoded_body};
use super::openapi::ErrorBody;
use super::Path;
use crate::principal::Principal;
use crate::{ApiError, AppState};
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::{Extension, Json};
use lectern_core::{ConfigChange, ErrorCode};
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
    pub name: String,
    /// Absent for a model with no version at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[schema(pattern = "^(READY|UNAVAILABLE)$")]
    pub state: &'static str,
    pub reason: String,
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
    Ok(Json(repository_index(&state, &who, request.ready)))
}

/// Every model and version `who` may see, with its state (only the ready ones if `ready`).
pub fn repository_index(state: &AppState, who: &Principal, ready: bool) -> Vec<IndexEntry> {
    state
        .registry
        .index()
        .into_iter()
        .filter(|row| !ready || row.ready)
        .filter(|row| state.may_see(who, &row.name))
        .map(|row| IndexEntry {
            name: row.name,
            version: row.version.map(|v| v.to_string()),
            state: if row.ready { "READY" } else { "UNAVAILABLE" },
            reason: row.reason,
        })
        .collect()
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
    let load = async {
        let bytes = read_decoded_body(body, &headers, state.settings.max_body_bytes).await?;
        let request: LoadRequest = optional_json(&bytes)?;
        let config = match request.parameters.config {
            None => None,
            Some(Value::String(text)) => Some(text),
            Some(_) => {
                return Err(ApiError::coded(ErrorCode::ModelLoadFailed, "the config override must be JSON text"))
            }
        };
        load_model(&state, &who, &model, config.as_deref()).await
    };
    load.await.map_err(|e| failed_to_load(&model, e))?;
    Ok(Json(Empty {}))
}

/// Loads (or reloads) `model` from the store, with Triton's configuration override `config`
/// (JSON text) if given. Every error's message starts `failed to load '<model>'`.
pub async fn load_model(state: &AppState, who: &Principal, model: &str, config: Option<&str>) -> Result<(), ApiError> {
    let load = async {
        let change = config.map(|text| config_change(model, text)).transpose()?;
        Ok::<_, ApiError>(state.manager.load(&who.actor, model, change.as_ref()).await?)
    };
    load.await.map_err(|e| failed_to_load(model, e))
}

/// Triton's clients look for these words.
fn failed_to_load(model: &str, mut e: ApiError) -> ApiError {
    if !e.message.starts_with("failed to load") {
        e.message = format!("failed to load '{model}': {}", e.message);
    }
    e
}

/// The body of `load`: Triton's, whose `parameters.config` may override the model's config.
#[derive(Deserialize, Default)]
struct LoadRequest {
    #[serde(default)]
    parameters: LoadParameters,
}

#[derive(Deserialize, Default)]
struct LoadParameters {
    /// Triton's model configuration as JSON text.
    config: Option<Value>,
}

/// The parts of a Triton model configuration (JSON text) a Lectern model has:
/// `max_batch_size`, `dynamic_batching.max_queue_delay_microseconds`, `instance_group[].count`
/// (summed). Numbers may be strings, as protobuf's JSON writes 64-bit ones.
fn config_change(model: &str, text: &str) -> Result<ConfigChange, ApiError> {
    let refuse = |why: String| {
        ApiError::coded(ErrorCode::ModelLoadFailed, format!("failed to load '{model}': the config override {why}"))
    };
    let config: Value = serde_json::from_str(text).map_err(|e| refuse(format!("is not JSON: {e}")))?;
    let Value::Object(config) = config else { return Err(refuse("is not a JSON object".into())) };
    let number = |value: &Value, field: &str| -> Result<u64, ApiError> {
        match value {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
        .ok_or_else(|| refuse(format!("has '{field}' = {value}: not a non-negative integer")))
    };
    let mut change = ConfigChange::default();
    if let Some(v) = config.get("max_batch_size") {
        let n = number(v, "max_batch_size")?;
        if n > 65_536 {
            return Err(refuse(format!("has max_batch_size = {n}: at most 65536")));
        }
        change.max_batch_size = Some(n as usize);
    }
    if let Some(v) = config.get("dynamic_batching").and_then(|d| d.get("max_queue_delay_microseconds")) {
        let us = number(v, "max_queue_delay_microseconds")?;
        if us > 10_000_000 {
            return Err(refuse(format!("has max_queue_delay_microseconds = {us}: at most 10 s")));
        }
        change.max_queue_delay_us = Some(us);
    }
    if let Some(groups) = config.get("instance_group").and_then(Value::as_array) {
        let mut count = 0u64;
        for group in groups {
            let n = group.get("count").map(|c| number(c, "instance_group.count")).transpose()?.unwrap_or(1);
            count = count.saturating_add(n);
        }
        if count == 0 || count > 64 {
            return Err(refuse(format!("asks for {count} instances (1 to 64)")));
        }
        change.instances = Some(count as usize);
    }
    Ok(change)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_triton_config_override_becomes_a_config_change() {
        let change = config_change(
            "m",
            r#"{"max_batch_size": "16", "dynamic_batching": {"max_queue_delay_microseconds": 500},
                "instance_group": [{"count": 2, "kind": "KIND_CPU"}, {"kind": "KIND_CPU"}], "name": "ignored"}"#,
        )
        .unwrap();
        assert_eq!(
            change,
            ConfigChange { max_batch_size: Some(16), max_queue_delay_us: Some(500), instances: Some(3) }
        );
        assert_eq!(config_change("m", "{}").unwrap(), ConfigChange::default());
        for bad in [
            r#""parameters": {"config": {{"max_batch_size": "16"}}}"#,
            "[1]",
            r#"{"max_batch_size": -1}"#,
            r#"{"max_batch_size": "lots"}"#,
            r#"{"max_batch_size": 70000}"#,
            r#"{"instance_group": [{"count": 0}]}"#,
            r#"{"instance_group": [{"count": "18446744073709551615"}, {"count": 2}]}"#,
            r#"{"dynamic_batching": {"max_queue_delay_microseconds": 99999999999}}"#,
        ] {
            let e = config_change("m", bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::ModelLoadFailed, "{bad}");
            assert!(e.message.starts_with("failed to load 'm': the config override"), "{}", e.message);
        }
    }
}
