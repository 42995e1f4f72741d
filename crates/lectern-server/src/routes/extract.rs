//! Extractors whose rejection is an [`ApiError`] (`{"error": ...}`), not axum's plain text.

use crate::ApiError;
use axum::extract::rejection::{QueryRejection, RawPathParamsRejection};
use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

/// Like `axum::extract::Path`, answering a parameter that cannot be decoded with 400.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(e) => Err(rejected(&e)),
        }
    }
}

/// The parameters of the matched route, borrowed (no allocation), as `(name, value)`.
pub struct Params(RawPathParams);

impl Params {
    /// The value of the parameter `name`, when the route has it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(key, _)| *key == name).map(|(_, value)| value)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        RawPathParams::from_request_parts(parts, state)
            .await
            .map(Params)
            .map_err(|e: RawPathParamsRejection| rejected(&e))
    }
}

fn rejected(e: &dyn std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("cannot read the path: {e}"))
}

/// Like `axum::extract::Query`, answering a query string that does not parse with 400.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(e) => Err(bad_query(e)),
        }
    }
}

fn bad_query(e: QueryRejection) -> ApiError {
    ApiError::bad_request(format!("invalid query: {}", e.body_text()))
}
