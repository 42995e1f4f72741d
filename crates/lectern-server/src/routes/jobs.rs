//! `/v1/jobs`: scheduled jobs — list, define, change, delete, pause, resume, run now, and
//! their history.

use crate::principal::Principal;
use crate::routes::manage::json_body;
use crate::routes::openapi::ErrorBody;
use crate::routes::{Path, Query};
use crate::{ApiError, AppState};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use lectern_jobs::{JobView, Jobs, RunView};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// The answer of `GET /v1/jobs`.
#[derive(Serialize, ToSchema)]
pub struct JobList {
    jobs: Vec<JobView>,
}

/// The answer of `GET /v1/jobs/{name}/runs`.
#[derive(Serialize, ToSchema)]
pub struct RunList {
    runs: Vec<RunView>,
}

/// The query of `GET /v1/jobs/{name}/runs`.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// At most this many (default 100, at most 1000).
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

fn jobs(state: &AppState) -> Result<&Arc<Jobs>, ApiError> {
    state
        .jobs
        .get()
        .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "jobs are not ready yet: the server is starting"))
}

/// `GET /v1/jobs`
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", operation_id = "listJobs",
    responses((status = 200, description = "Every job, by name.", body = JobList)))]
pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<JobList>, ApiError> {
    Ok(Json(JobList { jobs: jobs(&state)?.list().await? }))
}

/// `POST /v1/jobs`: `{"name", "kind", "every" | "cron", ...}`.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", operation_id = "createJob",
    request_body(content = Object, description = "`name` and the job's fields (see the contract)."),
    responses(
        (status = 201, description = "Stored; it fires on its schedule.", body = JobView),
        (status = 400, description = "A definition that cannot run.", body = ErrorBody),
        (status = 409, description = "A job of that name exists (`job_exists`).", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let mut given: Map<String, Value> = json_body(&state, &headers, body).await?;
    let name = match given.remove("name") {
        Some(Value::String(name)) => name,
        Some(_) => return Err(ApiError::bad_request("'name' must be a string")),
        None => return Err(ApiError::bad_request("a job needs a 'name'")),
    };
    check_names(&state, &who, &given)?;
    let job = jobs(&state)?.create(&who.actor, &name, &Value::Object(given)).await?;
    Ok((StatusCode::CREATED, Json(job)).into_response())
}

/// `GET /v1/jobs/{name}`
#[utoipa::path(get, path = "/v1/jobs/{name}", tag = "jobs", operation_id = "describeJob",
    params(("name" = String, Path, description = "The job's name.")),
    responses(
        (status = 200, description = "The job with its next firing, its run in progress and its last run.", body = JobView),
        (status = 404, description = "No such job.", body = ErrorBody),
    ))]
pub async fn describe(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Result<Json<JobView>, ApiError> {
    Ok(Json(jobs(&state)?.get(&name).await?))
}

/// `PUT /v1/jobs/{name}`
#[utoipa::path(put, path = "/v1/jobs/{name}", tag = "jobs", operation_id = "replaceJob",
    params(("name" = String, Path, description = "The job's name.")),
    request_body(content = Object, description = "The job's fields (without `name`)."),
    responses(
        (status = 200, description = "Replaced; a changed schedule starts over from now.", body = JobView),
        (status = 400, description = "A definition that cannot run.", body = ErrorBody),
        (status = 404, description = "No such job.", body = ErrorBody),
        (status = 409, description = "The job comes from the config file (`job_from_config`).", body = ErrorBody),
    ))]
pub async fn replace(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<JobView>, ApiError> {
    let given: Map<String, Value> = json_body(&state, &headers, body).await?;
    if given.contains_key("name") {
        return Err(ApiError::bad_request("the name is in the URL; leave 'name' out of the body"));
    }
    check_names(&state, &who, &given)?;
    Ok(Json(jobs(&state)?.replace(&who.actor, &name, &Value::Object(given)).await?))
}

/// A job may not read or write another user's project (its `dataset` and `model`).
fn check_names(state: &AppState, who: &Principal, given: &Map<String, Value>) -> Result<(), ApiError> {
    for field in ["dataset", "model"] {
        if let Some(Value::String(name)) = given.get(field) {
            state.check_owner(who, name)?;
        }
    }
    Ok(())
}

/// `DELETE /v1/jobs/{name}`
#[utoipa::path(delete, path = "/v1/jobs/{name}", tag = "jobs", operation_id = "deleteJob",
    params(("name" = String, Path, description = "The job's name.")),
    responses(
        (status = 204, description = "Deleted with its history."),
        (status = 404, description = "No such job.", body = ErrorBody),
        (status = 409, description = "The job comes from the config file (`job_from_config`).", body = ErrorBody),
    ))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    jobs(&state)?.delete(&who.actor, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/jobs/{name}/run`
#[utoipa::path(post, path = "/v1/jobs/{name}/run", tag = "jobs", operation_id = "runJob",
    params(("name" = String, Path, description = "The job's name.")),
    responses(
        (status = 202, description = "The run, started.", body = RunView),
        (status = 404, description = "No such job.", body = ErrorBody),
        (status = 409, description = "A run is in progress (`job_running`).", body = ErrorBody),
    ))]
pub async fn run(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let run = jobs(&state)?.run_now(&who.actor, &name).await?;
    Ok((StatusCode::ACCEPTED, Json(run)).into_response())
}

/// `POST /v1/jobs/{name}/pause`
#[utoipa::path(post, path = "/v1/jobs/{name}/pause", tag = "jobs", operation_id = "pauseJob",
    params(("name" = String, Path, description = "The job's name.")),
    responses(
        (status = 200, description = "Paused: it does not fire until resumed.", body = JobView),
        (status = 404, description = "No such job.", body = ErrorBody),
    ))]
pub async fn pause(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    Ok(Json(jobs(&state)?.pause(&who.actor, &name, true).await?))
}

/// `POST /v1/jobs/{name}/resume`
#[utoipa::path(post, path = "/v1/jobs/{name}/resume", tag = "jobs", operation_id = "resumeJob",
    params(("name" = String, Path, description = "The job's name.")),
    responses(
        (status = 200, description = "Resumed: the schedule starts over from now.", body = JobView),
        (status = 404, description = "No such job.", body = ErrorBody),
    ))]
pub async fn resume(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    Ok(Json(jobs(&state)?.pause(&who.actor, &name, false).await?))
}

/// `GET /v1/jobs/{name}/runs`
#[utoipa::path(get, path = "/v1/jobs/{name}/runs", tag = "jobs", operation_id = "jobRuns",
    params(("name" = String, Path, description = "The job's name."), RunsQuery),
    responses(
        (status = 200, description = "The newest runs first.", body = RunList),
        (status = 400, description = "A bad query.", body = ErrorBody),
        (status = 404, description = "No such job.", body = ErrorBody),
    ))]
pub async fn runs(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(query): Query<RunsQuery>,
) -> Result<Json<RunList>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit must be from 1 to 1000, got {limit}")));
    }
    Ok(Json(RunList { runs: jobs(&state)?.runs(&name, limit).await? }))
}
