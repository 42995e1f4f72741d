//! `GET /v1/audit`: who changed what, newest first.

use crate::routes::openapi::ErrorBody;
use crate::routes::Query;
use crate::{ApiError, AppState};
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// The query of `GET /v1/audit`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// At most this many entries (default 100; 1 to 10000).
    #[serde(default)]
    limit: Option<u32>,
}

/// One change.
#[derive(Serialize, ToSchema)]
pub struct AuditEntry {
    id: i64,
    at_ms: i64,
    /// `key:<id>`, `jwt:<subject>`, `local`, `import` or `cli`.
    actor: String,
    /// `model.create`, `version.delete`, `key.revoke`, ...
    action: String,
    target: String,
    detail: String,
}

/// The answer of `GET /v1/audit`.
#[derive(Serialize, ToSchema)]
pub struct AuditLog {
    entries: Vec<AuditEntry>,
}

/// `GET /v1/audit[?limit=N]`: newest first.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", operation_id = "auditLog",
    params(AuditQuery),
    responses(
        (status = 200, description = "The newest entries first.", body = AuditLog),
        (status = 400, description = "A query that does not parse.", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Query(query): Query<AuditQuery>,
) -> Result<Json<AuditLog>, ApiError> {
    let limit = query.limit.unwrap_or(100).clamp(1, 10_000);
    let entries = state.manager.audit_log(limit).await?;
    let entries = entries
        .into_iter()
        .map(|e| AuditEntry {
            id: e.id,
            at_ms: e.at_ms,
            actor: e.actor,
            action: e.action,
            target: e.target,
            detail: e.detail,
        })
        .collect();
    Ok(Json(AuditLog { entries }))
}
