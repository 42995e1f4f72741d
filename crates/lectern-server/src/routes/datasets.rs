//! `/v1/datasets`: CSV or JSON files of labelled examples, streamed in, with their schema.

use crate::principal::Principal;
use crate::routes::openapi::ErrorBody;
use crate::routes::{Path, Query};
use crate::{ApiError, AppState};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::TryStreamExt;
use lectern_manage::DatasetView;
use lectern_train::dataset::Format;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// The query of an upload.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PushQuery {
    /// `csv` or `json` (else from `Content-Type`: `application/json` is JSON, anything else CSV).
    #[serde(default)]
    format: Option<String>,
}

/// The answer of `GET /v1/datasets`.
#[derive(Serialize, ToSchema)]
pub struct DatasetList {
    datasets: Vec<DatasetView>,
}

fn format_of(query: &PushQuery, headers: &HeaderMap) -> Result<Format, ApiError> {
    match query.format.as_deref() {
        Some(name) => lectern_train::job::parse_format(name)
            .map_err(|_| ApiError::bad_request(format!("format must be csv or json, not '{name}'"))),
        None => {
            let json = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("application/json"));
            Ok(if json { Format::Json } else { Format::Csv })
        }
    }
}

/// `POST /v1/datasets/{name}[?format=csv|json]`: the body is the file, streamed.
#[utoipa::path(post, path = "/v1/datasets/{name}", tag = "training", operation_id = "pushDataset",
    params(("name" = String, Path, description = "The dataset's name."), PushQuery),
    request_body(description = "The CSV or JSON file itself.", content = Vec<u8>, content_type = "text/csv"),
    responses(
        (status = 201, description = "Stored, with its schema and first rows.", body = DatasetView),
        (status = 200, description = "Stored in place of the dataset of that name.", body = DatasetView),
        (status = 400, description = "A file that cannot be read (`invalid_dataset`, with `line` and `column`), or a bad name.", body = ErrorBody),
        (status = 413, description = "The file is larger than `--max-upload-bytes`.", body = ErrorBody),
    ))]
pub async fn push(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    Query(query): Query<PushQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let format = format_of(&query, &headers)?;
    crate::routes::refuse_declared_oversize(&headers, state.manager.max_upload_bytes())?;
    let stream = body.into_data_stream().map_err(|e| e.to_string());
    let (view, replaced) = state.manager.push_dataset(&who.actor, &name, format, stream).await?;
    let status = if replaced { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(view)).into_response())
}

/// `GET /v1/datasets`
#[utoipa::path(get, path = "/v1/datasets", tag = "training", operation_id = "listDatasets",
    responses((status = 200, description = "Every dataset, by name (without previews).", body = DatasetList)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    who: Option<Extension<Principal>>,
) -> Result<Json<DatasetList>, ApiError> {
    let who = state.caller(who);
    let mut datasets = state.manager.datasets().await?;
    datasets.retain(|d| state.may_see(&who, &d.name));
    Ok(Json(DatasetList { datasets }))
}

/// `GET /v1/datasets/{name}`
#[utoipa::path(get, path = "/v1/datasets/{name}", tag = "training", operation_id = "describeDataset",
    params(("name" = String, Path, description = "The dataset's name.")),
    responses(
        (status = 200, description = "The dataset with its first rows.", body = DatasetView),
        (status = 404, description = "No such dataset.", body = ErrorBody),
    ))]
pub async fn describe(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<DatasetView>, ApiError> {
    Ok(Json(state.manager.dataset(&name).await?))
}

/// `DELETE /v1/datasets/{name}`
#[utoipa::path(delete, path = "/v1/datasets/{name}", tag = "training", operation_id = "deleteDataset",
    params(("name" = String, Path, description = "The dataset's name.")),
    responses(
        (status = 204, description = "Gone, with its file (jobs and models made from it stay)."),
        (status = 404, description = "No such dataset.", body = ErrorBody),
    ))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.manager.delete_dataset(&who.actor, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
