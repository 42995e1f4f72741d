//! `GET /v1/pipelines` and `POST /v1/pipelines/{name}` (JSON or multipart/form-data).

use super::infer::read_body;
use super::Path;
use crate::principal::Principal;
use crate::{ApiError, AppState};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::{Extension, Json};
use lectern_pipeline::{Engine, PipelineRequest};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// The text part of a multipart upload that carries a JSON object of fields.
const JSON_PART: &str = "json";

/// `GET /v1/pipelines`: every pipeline with its steps.
pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let engine = engine(&state)?;
    let pipelines: Vec<Value> = engine.pipelines().iter().map(|p| json!(p.as_ref())).collect();
    Ok(Json(json!({ "pipelines": pipelines })))
}

/// `POST /v1/pipelines/{name}`: runs a pipeline on the request.
pub async fn run(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let engine = engine(&state)?;
    let bytes = read_body(body, &headers, state.settings.max_body_bytes).await?;
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
pub async fn define(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let engine = engine(&state)?;
    let bytes = read_body(body, &headers, state.settings.max_body_bytes).await?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| ApiError::bad_request("the pipeline definition must be UTF-8 TOML text"))?;
    engine.define(&name, text)?;
    if let Err(e) = state.manager.store().put_pipeline(&who.actor, &name, text).await {
        engine.undefine(&name)?;
        return Err(lectern_manage::ManageError::from(e).into());
    }
    let pipeline = engine.pipelines().into_iter().find(|p| p.name == name);
    Ok(Json(json!({ "pipeline": pipeline.as_deref() })))
}

/// `DELETE /v1/pipelines/{name}`: removes a pipeline defined through the API.
pub async fn remove(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let engine = engine(&state)?;
    let served = engine.undefine(&name)?;
    let stored =
        state.manager.store().delete_pipeline(&who.actor, &name).await.map_err(lectern_manage::ManageError::from)?;
    if !served && !stored {
        return Err(lectern_pipeline::PipelineError::UnknownPipeline(name).into());
    }
    Ok(StatusCode::NO_CONTENT)
}
