//! `GET /v1/cluster`: the workers of the cluster this gateway belongs to, their models and load.

use super::openapi::ErrorBody;
use crate::{ApiError, AppState};
use axum::extract::State;
use axum::Json;
use lectern_cluster::ClusterStatus;
use lectern_core::ErrorCode;
use std::sync::Arc;

/// `GET /v1/cluster`
#[utoipa::path(get, path = "/v1/cluster", tag = "cluster", operation_id = "clusterStatus",
    responses(
        (status = 200, description = "Workers (labels, memory, load, models) and where each model is placed.", body = ClusterStatus),
        (status = 404, description = "This server is not part of a cluster (started without `--nats`).", body = ErrorBody),
    ))]
pub async fn status(State(state): State<Arc<AppState>>) -> Result<Json<ClusterStatus>, ApiError> {
    match &state.cluster {
        Some(gateway) => Ok(Json(gateway.status())),
        None => Err(ApiError::coded(
            ErrorCode::NotFound,
            "this server is not part of a cluster: start it with --nats URL (or [cluster] nats in its config)",
        )),
    }
}
