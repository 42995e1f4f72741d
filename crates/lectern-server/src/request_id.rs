//! Gives every request an id (the caller's `x-request-id`, or a new one), runs it inside a
//! tracing span carrying that id, and returns the id in the response header.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use tracing::Instrument;

/// The header that carries the request id.
pub const REQUEST_ID: &str = "x-request-id";

fn next_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static PREFIX: OnceLock<u32> = OnceLock::new();
    let prefix = PREFIX.get_or_init(|| {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        nanos ^ std::process::id()
    });
    format!("{prefix:08x}-{:012x}", COUNTER.fetch_add(1, Relaxed))
}

fn usable(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty() && bytes.len() <= 128 && bytes.iter().all(|b| b.is_ascii_graphic())
}

/// Middleware: assigns the id, opens the span, sets the response header.
pub async fn assign(request: Request, next: Next) -> Response {
    let id = match request.headers().get(REQUEST_ID) {
        Some(v) if usable(v) => v.clone(),
        _ => HeaderValue::from_str(&next_id()).expect("ascii id"),
    };
    let span = tracing::info_span!(
        "request",
        id = id.to_str().unwrap_or(""),
        method = %request.method(),
        path = request.uri().path()
    );
    let mut response = next.run(request).instrument(span).await;
    response.headers_mut().insert(REQUEST_ID, id);
    response
}
