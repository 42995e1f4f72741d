//! `POST /v2/models/{model}[/versions/{version}]/infer`, with the binary tensor extension.

use super::{parse_version, Params};
use crate::{ApiError, AppState};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use lectern_core::{decode_request, encode_response};
use std::sync::Arc;

/// The header that gives the length of the JSON part of a binary request or response.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// Inference on the newest ready version, or on the version the path names. The path
/// parameters and headers are borrowed from the request (no copies on the hot path).
pub async fn infer(State(state): State<Arc<AppState>>, params: Params, request: Request) -> Result<Response, ApiError> {
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
    let loaded = state.registry.resolve(model, version)?;
    let json_len = header_length(headers)?;
    let bytes = read_body(body, headers, state.settings.max_body_bytes).await?;
    let request = decode_request(&bytes, json_len)?;
    let response = loaded.infer(request).await?;
    let encoded = encode_response(&response);
    Ok(match encoded.json_len {
        None => ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], encoded.body).into_response(),
        Some(n) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream")),
                (header::HeaderName::from_static(HEADER_LENGTH), HeaderValue::from(n)),
            ],
            encoded.body,
        )
            .into_response(),
    })
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
