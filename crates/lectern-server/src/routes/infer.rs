//! `POST /v2/models/{model}[/versions/{version}]/infer`, with the binary tensor extension.

use super::openapi::ErrorBody;
use super::{parse_version, Params};
use crate::{encoding, ApiError, AppState};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use lectern_core::protocol::RequestJson;
use lectern_core::{decode_request, encode_response};
use serde_json::Value;
use std::sync::Arc;
use utoipa::ToSchema;

/// The header that gives the length of the JSON part of a binary request or response.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// One output tensor of an inference answer.
#[derive(ToSchema)]
#[schema(as = InferOutput)]
#[allow(dead_code)] // a schema: `lectern_core::encode_response` writes the answer
struct OutputSchema {
    name: String,
    #[schema(example = "FP32")]
    datatype: String,
    shape: Vec<i64>,
    /// `binary_data_size` when the data follows the JSON (binary tensor extension).
    parameters: Option<std::collections::HashMap<String, Value>>,
    /// Row-major, flat; absent when the data is binary.
    data: Option<Vec<Value>>,
}

/// The JSON of an inference answer (`lectern_core::encode_response` writes it).
#[derive(ToSchema)]
#[schema(as = InferResponse)]
#[allow(dead_code)] // a schema: `lectern_core::encode_response` writes the answer
struct ResponseSchema {
    model_name: String,
    model_version: String,
    /// The request's `id`, when it had one.
    id: Option<String>,
    outputs: Vec<OutputSchema>,
}

/// `POST /v2/models/{model}/infer`: inference on the newest ready version (or the default).
#[utoipa::path(post, path = "/v2/models/{model}/infer", tag = "v2", operation_id = "modelInfer",
    params(("model" = String, Path, description = "The model's name.")),
    request_body(description = "JSON, or JSON followed by binary tensors (`Inference-Header-Content-Length`).",
        content((RequestJson = "application/json"), (Vec<u8> = "application/octet-stream"))),
    responses(
        (status = 200, description = "The outputs (JSON, or JSON followed by binary tensors).",
            content((ResponseSchema = "application/json"), (Vec<u8> = "application/octet-stream"))),
        (status = 400, description = "A malformed request, or the model is not ready.", body = ErrorBody),
        (status = 404, description = "No such model.", body = ErrorBody),
        (status = 408, description = "The request's `timeout` passed while it was queued.", body = ErrorBody),
        (status = 413, description = "The body is larger than `--max-body-bytes`.", body = ErrorBody),
        (status = 503, description = "The model's queue is full (`queue_full`), or it loads on demand and was not \
            ready within `--model-load-wait-s` (`model_loading`); `Retry-After` says when to retry.", body = ErrorBody),
    ))]
pub async fn infer(state: State<Arc<AppState>>, params: Params, request: Request) -> Result<Response, ApiError> {
    infer_on(state, params, request).await
}

/// `POST /v2/models/{model}/versions/{version}/infer`
#[utoipa::path(post, path = "/v2/models/{model}/versions/{version}/infer", tag = "v2", operation_id = "modelVersionInfer",
    params(("model" = String, Path, description = "The model's name."),
           ("version" = String, Path, description = "A version number (a positive integer).")),
    request_body(description = "JSON, or JSON followed by binary tensors (`Inference-Header-Content-Length`).",
        content((RequestJson = "application/json"), (Vec<u8> = "application/octet-stream"))),
    responses(
        (status = 200, description = "The outputs (JSON, or JSON followed by binary tensors).",
            content((ResponseSchema = "application/json"), (Vec<u8> = "application/octet-stream"))),
        (status = 400, description = "A malformed request, or the version is not ready.", body = ErrorBody),
        (status = 404, description = "No such model or version.", body = ErrorBody),
        (status = 408, description = "The request's `timeout` passed while it was queued.", body = ErrorBody),
        (status = 413, description = "The body is larger than `--max-body-bytes`.", body = ErrorBody),
        (status = 503, description = "The model's queue is full (`queue_full`), or it loads on demand and was not \
            ready within `--model-load-wait-s` (`model_loading`); `Retry-After` says when to retry.", body = ErrorBody),
    ))]
pub async fn infer_version(
    state: State<Arc<AppState>>,
    params: Params,
    request: Request,
) -> Result<Response, ApiError> {
    infer_on(state, params, request).await
}

/// Inference on the newest ready version, or on the version the path names. The path
/// parameters and headers are borrowed from the request (no copies on the hot path).
async fn infer_on(State(state): State<Arc<AppState>>, params: Params, request: Request) -> Result<Response, ApiError> {
    let model = params.get("model").unwrap_or_default();
    let version = params.get("version").map(|v| parse_version(model, v)).transpose()?;
    let (parts, body) = request.into_parts();
    run(&state, model, version, &parts.headers, body).await
}

async fn run(
    state: &AppState,
    model: &str,
    version: Option<u64>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let loaded = state.registry.model(model, version).await?;
    let json_len = header_length(headers)?;
    let bytes = read_decoded_body(body, headers, state.settings.max_body_bytes).await?;
    let request = decode_request(&bytes, json_len)?;
    let response = loaded.infer(request).await?;
    let encoded = encode_response(&response);
    let mut answer = match encoding::accepted(headers) {
        None => encoded.body.into_response(),
        Some(coding) => {
            let (name, packed) =
                off_runtime_when_large(encoded.body.len(), move || encoding::compress(coding, &encoded.body)).await?;
            ([(header::CONTENT_ENCODING, name), (header::VARY, HeaderValue::from_static("accept-encoding"))], packed)
                .into_response()
        }
    };
    let answer_headers = answer.headers_mut();
    match encoded.json_len {
        None => {
            answer_headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        Some(n) => {
            answer_headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            answer_headers.insert(header::HeaderName::from_static(HEADER_LENGTH), HeaderValue::from(n));
        }
    }
    Ok(answer)
}

/// Reads the whole body (at most `limit` bytes) and inflates it when its `Content-Encoding`
/// is gzip or deflate (to at most `limit` bytes).
pub async fn read_decoded_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<bytes::Bytes, ApiError> {
    let bytes = read_body(body, headers, limit).await?;
    if !headers.contains_key(header::CONTENT_ENCODING) {
        return Ok(bytes);
    }
    let headers = headers.clone();
    // DEFLATE inflates at most 1032:1: what this body could become
    let inflated = bytes.len().saturating_mul(1032).min(limit);
    off_runtime_when_large(inflated, move || encoding::decode_body(&headers, bytes, limit)).await?
}

/// Bodies up to this size are (de)compressed on the async runtime; larger ones on the
/// blocking pool, so that no other request waits behind them.
const INLINE_CODING_BYTES: usize = 64 * 1024;

async fn off_runtime_when_large<T: Send + 'static>(
    size: usize,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    if size <= INLINE_CODING_BYTES {
        return Ok(work());
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::coded(lectern_core::ErrorCode::Unavailable, format!("compression failed: {e}")))
}

fn header_length(headers: &HeaderMap) -> Result<Option<usize>, ApiError> {
    let Some(value) = headers.get(HEADER_LENGTH) else { return Ok(None) };
    value
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .map(Some)
        .ok_or_else(|| ApiError::bad_request("Inference-Header-Content-Length must be a non-negative integer"))
}

/// Reads the whole body, refusing more than `limit` bytes with 413.
pub async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<bytes::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("request body is larger than the limit of {limit} bytes"))
    };
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|s| s.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(e) => Err(ApiError::bad_request(format!("cannot read the request body: {e}"))),
    }
}
