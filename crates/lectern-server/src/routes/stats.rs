//! Triton's statistics extension: `GET /v2/models[/{model}[/versions/{version}]]/stats`,
//! with Triton's JSON shape, from the per-version metrics the runtime records.

use super::openapi::ErrorBody;
use super::{parse_version, Path};
use crate::principal::Principal;
use crate::{ApiError, AppState};
use axum::extract::State;
use axum::{Extension, Json};
use lectern_runtime::metrics::{BatchStat, TimeSum};
use lectern_runtime::LoadedModel;
use serde::Serialize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use utoipa::ToSchema;

/// A count and the nanoseconds those events took in all (Triton's `StatisticDuration`).
#[derive(Serialize, ToSchema, Clone, Copy)]
pub struct Duration {
    pub count: u64,
    pub ns: u64,
}

impl From<TimeSum> for Duration {
    fn from(t: TimeSum) -> Self {
        Duration { count: t.count, ns: t.ns }
    }
}

/// Per request: answered, failed, queued, and the three parts of the computation.
#[derive(Serialize, ToSchema)]
pub struct InferStatistics {
    pub success: Duration,
    pub fail: Duration,
    pub queue: Duration,
    pub compute_input: Duration,
    pub compute_infer: Duration,
    pub compute_output: Duration,
    /// Lectern has no response cache: always zero.
    pub cache_hit: Duration,
    pub cache_miss: Duration,
}

/// Per execution of one exact batch size.
#[derive(Serialize, ToSchema)]
pub struct InferBatchStatistics {
    pub batch_size: u64,
    pub compute_input: Duration,
    pub compute_infer: Duration,
    pub compute_output: Duration,
}

/// One model version's statistics.
#[derive(Serialize, ToSchema)]
pub struct ModelStatistics {
    pub name: String,
    pub version: String,
    /// Milliseconds since the Unix epoch of the last request answered (0: none yet).
    pub last_inference: u64,
    /// Rows inferred (a batch of 8 counts 8).
    pub inference_count: u64,
    /// Executions of the model (a batch counts 1).
    pub execution_count: u64,
    pub inference_stats: InferStatistics,
    /// Triton's per-response statistics of decoupled models: always empty.
    #[schema(value_type = Object)]
    pub response_stats: serde_json::Map<String, serde_json::Value>,
    pub batch_stats: Vec<InferBatchStatistics>,
    /// Triton's per-device memory; empty.
    pub memory_usage: Vec<serde_json::Value>,
}

/// The answer of the statistics routes.
#[derive(Serialize, ToSchema)]
pub struct Statistics {
    pub model_stats: Vec<ModelStatistics>,
}

fn statistics(model: &LoadedModel) -> ModelStatistics {
    let m = &model.metrics;
    let zero = Duration { count: 0, ns: 0 };
    ModelStatistics {
        name: model.name.clone(),
        version: model.version.to_string(),
        last_inference: m.last_inference_ms.load(Relaxed),
        inference_count: m.inference_count.load(Relaxed),
        execution_count: m.exec_count.load(Relaxed),
        inference_stats: InferStatistics {
            success: m.success_time.total().into(),
            fail: m.failure_time.total().into(),
            queue: m.queue.total().into(),
            compute_input: m.compute_input.total().into(),
            compute_infer: m.compute_infer.total().into(),
            compute_output: m.compute_output.total().into(),
            cache_hit: zero,
            cache_miss: zero,
        },
        response_stats: serde_json::Map::new(),
        batch_stats: m.batch_stats().into_iter().map(batch).collect(),
        memory_usage: Vec::new(),
    }
}

fn batch(b: BatchStat) -> InferBatchStatistics {
    InferBatchStatistics {
        batch_size: b.batch_size,
        compute_input: b.compute_input.into(),
        compute_infer: b.compute_infer.into(),
        compute_output: b.compute_output.into(),
    }
}

/// `GET /v2/models/stats`: every ready version of every model the caller may see.
#[utoipa::path(get, path = "/v2/models/stats", tag = "v2", operation_id = "modelStatisticsAll",
    responses((status = 200, description = "Every ready model version's statistics.", body = Statistics)))]
pub async fn all(
    State(state): State<Arc<AppState>>,
    who: Option<Extension<Principal>>,
) -> Result<Json<Statistics>, ApiError> {
    Ok(Json(model_statistics(&state, &state.caller(who), None, None)?))
}

/// `GET /v2/models/{model}/stats`: every ready version of the model.
#[utoipa::path(get, path = "/v2/models/{model}/stats", tag = "v2", operation_id = "modelStatistics",
    params(("model" = String, Path, description = "The model's name.")),
    responses(
        (status = 200, description = "The statistics of each ready version.", body = Statistics),
        (status = 400, description = "The model is known but no version of it is ready.", body = ErrorBody),
        (status = 404, description = "No such model.", body = ErrorBody),
    ))]
pub async fn model(
    State(state): State<Arc<AppState>>,
    who: Option<Extension<Principal>>,
    Path(model): Path<String>,
) -> Result<Json<Statistics>, ApiError> {
    Ok(Json(model_statistics(&state, &state.caller(who), Some(&model), None)?))
}

/// `GET /v2/models/{model}/versions/{version}/stats`
#[utoipa::path(get, path = "/v2/models/{model}/versions/{version}/stats", tag = "v2", operation_id = "modelVersionStatistics",
    params(("model" = String, Path, description = "The model's name."),
           ("version" = String, Path, description = "A version number (a positive integer).")),
    responses(
        (status = 200, description = "The version's statistics.", body = Statistics),
        (status = 400, description = "The model is known but this version is not ready.", body = ErrorBody),
        (status = 404, description = "No such model or version.", body = ErrorBody),
    ))]
pub async fn version(
    State(state): State<Arc<AppState>>,
    who: Option<Extension<Principal>>,
    Path((model, version)): Path<(String, String)>,
) -> Result<Json<Statistics>, ApiError> {
    let v = parse_version(&model, &version)?;
    Ok(Json(model_statistics(&state, &state.caller(who), Some(&model), Some(v))?))
}

/// The statistics of `version` of `model`; of every ready version of `model` without a
/// version; of every ready version of every model `who` may see without a model.
pub fn model_statistics(
    state: &AppState,
    who: &Principal,
    model: Option<&str>,
    version: Option<u64>,
) -> Result<Statistics, ApiError> {
    let Some(model) = model else {
        let mut names: Vec<String> = state.registry.index().into_iter().map(|row| row.name).collect();
        names.dedup();
        let mut model_stats = Vec::new();
        for name in names.iter().filter(|n| state.may_see(who, n)) {
            // a model removed since the index was read is left out
            model_stats.extend(state.registry.ready_versions(name).unwrap_or_default().iter().map(|m| statistics(m)));
        }
        return Ok(Statistics { model_stats });
    };
    if !state.may_see(who, model) {
        return Err(lectern_runtime::RuntimeError::ModelNotFound(model.to_string()).into());
    }
    if version.is_some() {
        let loaded = state.registry.resolve(model, version)?;
        return Ok(Statistics { model_stats: vec![statistics(&loaded)] });
    }
    let ready = state.registry.ready_versions(model)?;
    if ready.is_empty() {
        // the reason it is not ready; a version that became ready since is read again
        let newest = state.registry.resolve(model, None)?;
        return Ok(Statistics { model_stats: vec![statistics(&newest)] });
    }
    Ok(Statistics { model_stats: ready.iter().map(|m| statistics(m)).collect() })
}
