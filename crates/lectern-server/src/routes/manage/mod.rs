//! The management API, one file per resource: `/v1/models` (with versions, config and the
//! default version), `/v1/keys`, `/v1/audit`.

pub mod audit;
pub mod keys;
pub mod models;

use super::infer::read_body;
use crate::{ApiError, AppState};
use axum::body::Body;
use axum::http::HeaderMap;
use serde::de::DeserializeOwned;

/// Parses a JSON body, with a clear 400 when it does not fit.
pub(crate) async fn json_body<T: DeserializeOwned>(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<T, ApiError> {
    let bytes = read_body(body, headers, state.settings.max_body_bytes).await?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("malformed request body: {e}")))
}
