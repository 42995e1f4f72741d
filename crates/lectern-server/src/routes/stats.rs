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
    count: u64,
    ns: u64,
}

impl From<TimeSum> for Duration {
    fn from(t: TimeSum) -> Self {
        Duration { count: t.count, ns: t.ns }
    }
}

/// Per request: answered, failed, queued, and the three parts of the computation.
#[derive(Serialize, ToSchema)]
pub struct InferStatistics {
    success: Duration,
    fail: Duration,
    queue: Duration,
    compute_input: Duration,
    compute_infer: Duration,
    compute_output: Duration,
    /// Lectern has no response cache: always zero.
    cache_hit: Duration,
    cache_miss: Duration,
}

/// Per execution of one exact batch size.
#[derive(Serialize, ToSchema)]
pub struct InferBatchStatistics {
    batch_size: u64,
    compute_input: Duration,
    compute_infer: Duration,
    compute_output: Duration,
}

/// One model version's statistics.
#[derive(Serialize, ToSchema)]
pub struct ModelStatistics {
    name: String,
    version: String,
    /// Milliseconds since the Unix epoch of the last request answered (0: none yet).
    last_inference: u64,
    /// Rows inferred (a batch of 8 counts 8).
    inference_count: u64,
    /// Executions of the model (a batch counts 1).
    execution_count: u64,
    inference_stats: InferStatistics,
    /// Triton's per-response statistics of decoupled models: always empty.
    #[schema(value_type = Object)]
    response_stats: serde_json::Map<String, serde_json::Value>,
    batch_stats: Vec<InferBatchStatistics>,
    /// Triton's per-device memory; empty.
    memory_usage: Vec<serde_json::Value>,
}

/// The answer of the statistics routes.
#[derive(Serialize, ToSchema)]
pub struct Statistics {
    model_stats: Vec<ModelStatistics>,
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
    let who = state.caller(who);
    let mut names: Vec<String> = state.registry.index().into_iter().map(|row| row.name).collect();
    names.dedup();
    let mut model_stats = Vec::new();
    for name in names.iter().filter(|n| state.may_see(&who, n)) {
        // a model removed since the index was read is left out
        model_stats.extend(state.registry.ready_versions(name).unwrap_or_default().iter().map(|m| statistics(m)));
    }
    Ok(Json(Statistics { model_stats }))
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
    Path(model): Path<String>,
) -> Result<Json<Statistics>, ApiError> {
    let ready = state.registry.ready_versions(&model)?;
    if ready.is_empty() {
        // the reason it is not ready; a version that became ready since is read again
        let newest = state.registry.resolve(&model, None)?;
        return Ok(Json(Statistics { model_stats: vec![statistics(&newest)] }));
    }
    Ok(Json(Statistics { model_stats: ready.iter().map(|m| statistics(m)).collect() }))
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
    Path((model, version)): Path<(String, String)>,
) -> Result<Json<Statistics>, ApiError> {
    let v = parse_version(&model, &version)?;
    let loaded = state.registry.resolve(&model, Some(v))?;
    Ok(Json(Statistics { model_stats: vec![statistics(&loaded)] }))
}
