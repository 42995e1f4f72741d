//! `/v1/training-jobs`: train a model from a dataset in the background, follow it, cancel
//! it, and look at the pictures of what it learned.

use crate::principal::Principal;
use crate::routes::manage::json_body;
use crate::routes::openapi::ErrorBody;
use crate::routes::{Path, Query};
use crate::{ApiError, AppState};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use lectern_manage::training::TrainingRequest;
use lectern_manage::JobView;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// The query of `GET /v1/training-jobs`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this model's jobs.
    #[serde(default)]
    model: Option<String>,
    /// At most this many (default 100, at most 1000).
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

/// The answer of `GET /v1/training-jobs`.
#[derive(Serialize, ToSchema)]
pub struct JobList {
    jobs: Vec<JobView>,
}

/// `POST /v1/training-jobs`
#[utoipa::path(post, path = "/v1/training-jobs", tag = "training", operation_id = "createTrainingJob",
    request_body = TrainingRequest,
    responses(
        (status = 202, description = "Checked against the dataset and queued.", body = JobView),
        (status = 400, description = "A malformed body or model name (`invalid_request`), or a request that does not fit the dataset (`invalid_training_request`).", body = ErrorBody),
        (status = 404, description = "No such dataset.", body = ErrorBody),
        (status = 503, description = "100 jobs are waiting already (`queue_full`).", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let request: TrainingRequest = json_body(&state, &headers, body).await?;
    state.check_dataset(&who, &request.dataset)?;
    state.check_owner(&who, &request.model)?;
    let job = state.training.submit(&who.actor, request).await?;
    Ok((StatusCode::ACCEPTED, Json(job)).into_response())
}

/// `GET /v1/training-jobs`
#[utoipa::path(get, path = "/v1/training-jobs", tag = "training", operation_id = "listTrainingJobs",
    params(ListQuery),
    responses(
        (status = 200, description = "The newest jobs first.", body = JobList),
        (status = 400, description = "A bad query.", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    who: Option<Extension<Principal>>,
    Query(query): Query<ListQuery>,
) -> Result<Json<JobList>, ApiError> {
    let who = state.caller(who);
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit must be from 1 to 1000, got {limit}")));
    }
    Ok(Json(JobList { jobs: state.visible_training_jobs(&who, query.model.as_deref(), limit).await? }))
}

/// `GET /v1/training-jobs/{id}`
#[utoipa::path(get, path = "/v1/training-jobs/{id}", tag = "training", operation_id = "describeTrainingJob",
    params(("id" = String, Path, description = "The job's id.")),
    responses(
        (status = 200, description = "The job: state, stage, progress, and once done its metrics and version.", body = JobView),
        (status = 404, description = "No such job.", body = ErrorBody),
    ))]
pub async fn describe(
    State(state): State<Arc<AppState>>,
    who: Option<Extension<Principal>>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let who = state.caller(who);
    Ok(Json(visible_job(&state, &who, &id).await?))
}

/// A training job, if `who` may see its dataset; else "no such job".
async fn visible_job(state: &AppState, who: &Principal, id: &str) -> Result<JobView, ApiError> {
    let job = state.training.job(id).await?;
    if !state.may_see(who, &job.dataset) {
        return Err(lectern_manage::ManageError::JobNotFound(id.to_string()).into());
    }
    Ok(job)
}

/// `DELETE /v1/training-jobs/{id}`
#[utoipa::path(delete, path = "/v1/training-jobs/{id}", tag = "training", operation_id = "cancelTrainingJob",
    params(("id" = String, Path, description = "The job's id.")),
    responses(
        (status = 200, description = "Cancelled (a running job's process is killed); nothing is registered.", body = JobView),
        (status = 404, description = "No such job.", body = ErrorBody),
        (status = 409, description = "The job had already ended (`job_finished`).", body = ErrorBody),
    ))]
pub async fn cancel(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    visible_job(&state, &who, &id).await?;
    Ok(Json(state.training.cancel(&who.actor, &id).await?))
}

/// `GET /v1/training-jobs/{id}/pictures/{name}`: `tree.svg`, `importance.svg`, `confusion.svg`.
#[utoipa::path(get, path = "/v1/training-jobs/{id}/pictures/{name}", tag = "training", operation_id = "trainingPicture",
    params(("id" = String, Path, description = "The job's id."),
           ("name" = String, Path, description = "`tree.svg`, `importance.svg` or `confusion.svg`.")),
    responses(
        (status = 200, description = "The picture.", content_type = "image/svg+xml", body = String),
        (status = 404, description = "No such job (`job_not_found`) or picture (`picture_not_found`).", body = ErrorBody),
    ))]
pub async fn picture(
    State(state): State<Arc<AppState>>,
    who: Option<Extension<Principal>>,
    Path((id, picture)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let who = state.caller(who);
    visible_job(&state, &who, &id).await?;
    let Some(name) = picture.strip_suffix(".svg") else {
        return Err(ApiError::from(lectern_manage::ManageError::PictureNotFound(format!(
            "there is no picture '{picture}': the pictures are tree.svg, importance.svg, confusion.svg"
        ))));
    };
    let svg = state.training.picture(&id, name).await?;
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("image/svg+xml"))], svg).into_response())
}
