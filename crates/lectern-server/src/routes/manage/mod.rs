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
    parse_json(&bytes).map_err(|e| ApiError::bad_request(format!("malformed request body: {e}")))
}

/// Reads a JSON body; an error names the field it is about (`'config.max_batch_size': ...`).
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let mut reader = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut reader).map_err(|e| {
        let path = e.path().to_string();
        match path.as_str() {
            "." | "" => e.into_inner().to_string(),
            _ => format!("'{path}': {}", e.into_inner()),
        }
    })?;
    reader.end().map_err(|e| e.to_string())?;
    Ok(value)
}
