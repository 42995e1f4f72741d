//! `GET /v1/pipelines` and `POST /v1/pipelines/{name}` (JSON or multipart/form-data).

use super::infer::{read_body, read_decoded_body};
use super::openapi::ErrorBody;
use super::Path;
use crate::principal::Principal;
use crate::{ApiError, AppState};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::{Extension, Json};
use lectern_pipeline::{Engine, Pipeline, PipelineRequest};
use serde::Serialize;
use serde_json::{Map, Value};
use std::sync::Arc;
use utoipa::ToSchema;

/// The text part of a multipart upload that carries a JSON object of fields.
const JSON_PART: &str = "json";

/// The answer of `GET /v1/pipelines`.
#[derive(Serialize, ToSchema)]
pub struct PipelineList {
    pipelines: Vec<Pipeline>,
}

/// The answer of `PUT /v1/pipelines/{name}`.
#[derive(Serialize, ToSchema)]
pub struct DefinedPipeline {
    pipeline: Option<Pipeline>,
}

/// `GET /v1/pipelines`: every pipeline with its steps.
#[utoipa::path(get, path = "/v1/pipelines", tag = "pipelines", operation_id = "listPipelines",
    responses((status = 200, description = "Every pipeline with its steps.", body = PipelineList)))]
pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<PipelineList>, ApiError> {
    let engine = engine(&state)?;
    Ok(Json(PipelineList { pipelines: engine.pipelines().iter().map(|p| Pipeline::clone(p)).collect() }))
}

/// `POST /v1/pipelines/{name}`: runs a pipeline on the request.
#[utoipa::path(post, path = "/v1/pipelines/{name}", tag = "pipelines", operation_id = "runPipeline",
    params(("name" = String, Path, description = "The pipeline's name.")),
    request_body(description = "The request's fields: a JSON object, or multipart/form-data (files by field \
        name, text parts as string fields, a part `json` holding an object of fields).",
        content((Object = "application/json"), (Object = "multipart/form-data"))),
    responses(
        (status = 200, description = "The answer, shaped by the pipeline's `shape`.", body = Object),
        (status = 400, description = "A malformed body, or a step that cannot run on it.", body = ErrorBody),
        (status = 404, description = "No such pipeline.", body = ErrorBody),
        (status = 408, description = "A model step timed out.", body = ErrorBody),
        (status = 413, description = "The body is larger than `--max-body-bytes`.", body = ErrorBody),
    ))]
pub async fn run(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let engine = engine(&state)?;
    let bytes = read_decoded_body(body, &headers, state.settings.max_body_bytes).await?;
    let request = match multipart_boundary(&headers) {
        Some(boundary) => multipart_request(bytes, boundary).await?,
        None => json_request(&bytes)?,
    };
    Ok(Json(engine.run(&name, request).await?))
}

fn engine(state: &AppState) -> Result<&Arc<Engine>, ApiError> {
    state.pipelines.get().ok_or_else(|| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "pipelines are not ready yet: the server is starting")
    })
}

fn json_request(bytes: &[u8]) -> Result<PipelineRequest, ApiError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(body)) => Ok(PipelineRequest { body, ..Default::default() }),
        Ok(_) => Err(ApiError::bad_request("the request body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!("malformed JSON body: {e}"))),
    }
}

fn multipart_boundary(headers: &HeaderMap) -> Option<String> {
    let content_type = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    if !content_type.trim_start().to_ascii_lowercase().starts_with("multipart/form-data") {
        return None;
    }
    multer::parse_boundary(content_type).ok()
}

/// File parts become files by field name; text parts become string fields, and the part
/// named `json` is merged in as an object of fields.
async fn multipart_request(bytes: bytes::Bytes, boundary: String) -> Result<PipelineRequest, ApiError> {
    let bad = |e: multer::Error| ApiError::bad_request(format!("malformed multipart body: {e}"));
    let stream = futures_util::stream::once(async move { Ok::<_, std::convert::Infallible>(bytes) });
    let mut parts = multer::Multipart::new(stream, boundary);
    let mut request = PipelineRequest::default();
    let mut merged = Map::new();
    while let Some(part) = parts.next_field().await.map_err(bad)? {
        let name = part.name().unwrap_or_default().to_string();
        if name.is_empty() {
            return Err(ApiError::bad_request("a multipart part has no name"));
        }
        let is_file = part.file_name().is_some();
        let data = part.bytes().await.map_err(bad)?;
        if is_file {
            request.files.insert(name, data.to_vec());
            continue;
        }
        let text = String::from_utf8(data.to_vec())
            .map_err(|_| ApiError::bad_request(format!("multipart field '{name}' is not UTF-8 text")))?;
        if name == JSON_PART {
            match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(fields)) => merged.extend(fields),
                _ => return Err(ApiError::bad_request("the multipart part 'json' must hold a JSON object")),
            }
        } else {
            request.body.insert(name, Value::String(text));
        }
    }
    request.body.extend(merged);
    Ok(request)
}

/// `PUT /v1/pipelines/{name}`: the body is the TOML of a `[pipelines.NAME]` table (its keys
/// `for_each`, `steps`, `shape`); checked against the loaded models, stored, then served.
#[utoipa::path(put, path = "/v1/pipelines/{name}", tag = "pipelines", operation_id = "definePipeline",
    params(("name" = String, Path, description = "The pipeline's name.")),
    request_body(description = "The TOML of a `[pipelines.NAME]` table (`for_each`, `steps`, `shape`).",
        content = String, content_type = "application/toml"),
    responses(
        (status = 200, description = "Defined (or replaced) and served.", body = DefinedPipeline),
        (status = 400, description = "Not UTF-8 TOML, does not fit the loaded models, or declared in the config file.", body = ErrorBody),
        (status = 413, description = "The body is larger than `--max-body-bytes`.", body = ErrorBody),
    ))]
pub async fn define(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<DefinedPipeline>, ApiError> {
    let engine = engine(&state)?;
    let bytes = read_body(body, &headers, state.settings.max_body_bytes).await?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| ApiError::bad_request("the pipeline definition must be UTF-8 TOML text"))?;
    if let Some(model) = engine.check(&name, text)?.models().into_iter().find(|m| !state.may_see(&who, m)) {
        return Err(lectern_runtime::RuntimeError::ModelNotFound(model.to_string()).into());
    }
    let pipeline = state.manager.define_pipeline(engine, &who.actor, &name, text).await?;
    Ok(Json(DefinedPipeline { pipeline: Some(Pipeline::clone(&pipeline)) }))
}

/// `DELETE /v1/pipelines/{name}`: removes a pipeline defined through the API.
#[utoipa::path(delete, path = "/v1/pipelines/{name}", tag = "pipelines", operation_id = "deletePipeline",
    params(("name" = String, Path, description = "The pipeline's name.")),
    responses(
        (status = 204, description = "Removed."),
        (status = 400, description = "Declared in the config file.", body = ErrorBody),
        (status = 404, description = "No such pipeline.", body = ErrorBody),
    ))]
pub async fn remove(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let engine = engine(&state)?;
    state.manager.remove_pipeline(engine, &who.actor, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
