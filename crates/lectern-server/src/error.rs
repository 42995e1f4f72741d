//! The one place where errors become HTTP answers. Every error body is
//! `{"error": "<message>", "code": "<code>"}`; the status comes from the error table of
//! lectern-core ([`ErrorCode::status`]), and every 503 carries `Retry-After: 1`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use lectern_core::{Coded, ErrorCode};
use lectern_runtime::RuntimeError;

/// An error answered to an HTTP client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    /// Fields of the body beside `error` and `code` (a dataset's `line` and `column`).
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl ApiError {
    /// An error with an explicit status and the generic code of that status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: ErrorCode::for_status(status.as_u16()),
            message: message.into(),
            fields: serde_json::Map::new(),
        }
    }

    /// An error with a specific code; the status is the code's.
    pub fn coded(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError { status: status_of(code), code, message: message.into(), fields: serde_json::Map::new() }
    }

    /// 400: the caller sent something wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::coded(ErrorCode::InvalidRequest, message)
    }

    /// Any classified error: its code, its status and its message.
    pub fn from_coded(error: &(impl Coded + std::fmt::Display)) -> Self {
        Self::coded(error.code(), error.to_string())
    }
}

/// The HTTP status of a code.
pub fn status_of(code: ErrorCode) -> StatusCode {
    StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> Self {
        ApiError::from_coded(&e)
    }
}

impl From<lectern_pipeline::PipelineError> for ApiError {
    fn from(e: lectern_pipeline::PipelineError) -> Self {
        ApiError::from_coded(&e)
    }
}

impl From<lectern_manage::ManageError> for ApiError {
    fn from(e: lectern_manage::ManageError) -> Self {
        let mut error = ApiError::from_coded(&e);
        if let Some((line, column)) = e.position() {
            error.fields.insert("line".into(), line.into());
            error.fields.insert("column".into(), column.into());
        }
        error
    }
}

impl From<lectern_jobs::JobsError> for ApiError {
    fn from(e: lectern_jobs::JobsError) -> Self {
        ApiError::from_coded(&e)
    }
}

impl From<lectern_collections::CollectionError> for ApiError {
    fn from(e: lectern_collections::CollectionError) -> Self {
        ApiError::from_coded(&e)
    }
}

impl From<lectern_proxy::ProxyError> for ApiError {
    fn from(e: lectern_proxy::ProxyError) -> Self {
        ApiError::from_coded(&e)
    }
}

impl From<lectern_store::StoreError> for ApiError {
    fn from(e: lectern_store::StoreError) -> Self {
        ApiError::from_coded(&e)
    }
}

impl From<lectern_core::ProtocolError> for ApiError {
    fn from(e: lectern_core::ProtocolError) -> Self {
        ApiError::from_coded(&e)
    }
}

impl ApiError {
    /// The answer, with `extra`'s fields beside `error` and `code` (readiness adds
    /// `"ready": false`).
    pub fn into_response_with(self, extra: serde_json::Map<String, serde_json::Value>) -> Response {
        let code = self.code.name();
        let mut extra = extra;
        extra.extend(self.fields);
        if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), code, error = %self.message, "request failed");
        } else {
            tracing::debug!(status = self.status.as_u16(), code, error = %self.message, "request rejected");
        }
        let mut fields = extra;
        fields.insert("error".into(), self.message.into());
        fields.insert("code".into(), code.into());
        let body = serde_json::to_vec(&fields).expect("json");
        let mut response =
            (self.status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.into_response_with(serde_json::Map::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn every_error_has_its_code_and_the_table_status() {
        let response = ApiError::from(RuntimeError::QueueFull("m".into())).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let json = body(response).await;
        assert_eq!(json["code"], "queue_full");
        assert!(json["error"].as_str().unwrap().contains("queue is full"));

        let unavailable = lectern_store::StoreError::Unavailable(None);
        let response = ApiError::from(lectern_manage::ManageError::from(unavailable)).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        assert_eq!(body(response).await["code"], "database_unavailable");

        let response = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "no").into_response();
        assert_eq!(body(response).await, serde_json::json!({ "error": "no", "code": "method_not_allowed" }));
        assert_eq!(ApiError::bad_request("x").status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn every_code_has_a_valid_status() {
        for code in ErrorCode::ALL {
            assert_eq!(status_of(*code).as_u16(), code.status(), "{code}");
        }
    }

    #[test]
    fn the_contract_and_the_openapi_document_list_every_code() {
        let contract = include_str!("../../../docs/contract.md");
        let openapi = serde_json::to_value(crate::routes::openapi::document()).unwrap();
        let listed: Vec<&str> = openapi["components"]["schemas"]["Error"]["properties"]["code"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let names: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(listed, names, "/openapi.json's Error.code enum");
        for code in ErrorCode::ALL {
            let row = format!("| `{}` | {} |", code.name(), code.status());
            assert!(contract.contains(&row), "docs/contract.md has no row {row}");
        }
    }
}
