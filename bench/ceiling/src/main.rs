//! The ceiling for bench/infer.sh: the same HTTP stack a Rust V2 server would use
//! (axum + tokio + serde_json), doing only the unavoidable work: read the body,
//! parse it as JSON, answer a fixed V2 response. No model, no validation.
//!
//! Usage: lectern-bench-ceiling [ADDR]   (default 127.0.0.1:8090)

use axum::{
    body::Bytes,
    http::{header, StatusCode},
    response::IntoResponse,
    routing::{get, post},
    Router,
};

const RESPONSE: &str = r#"{"model_name":"iris-logreg","model_version":"1","outputs":[{"name":"output_label","datatype":"INT64","shape":[1],"data":[0]},{"name":"output_probability","datatype":"FP32","shape":[1,3],"data":[0.98157942,0.01842056,1.4595696e-8]}]}"#;

async fn infer(body: Bytes) -> impl IntoResponse {
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(v) if v.get("inputs").is_some() => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            RESPONSE,
        ),
        _ => (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"error":"bad request"}"#,
        ),
    }
}

async fn ready() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], r#"{"ready":true}"#)
}

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8090".to_string());
    let app = Router::new()
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/{model}/infer", post(infer));
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    println!("ceiling listening on http://{}", listener.local_addr().unwrap());
    axum::serve(listener, app).await.expect("serve");
}
