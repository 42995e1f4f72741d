//! The HTTP access gate (`lectern_server::gate::admit`) in front of the gRPC methods: the same
//! credentials (`authorization: Bearer ...` or `x-api-key` metadata), roles, rate limit and
//! `--open-inference`, with each method's access declared once, here.

use crate::status;
use lectern_server::gate::{admit, percent_decoded, Access, AccessTable, Refusal};
use lectern_server::AppState;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The service's path prefix: `/<package>.<service>/<method>`.
pub const SERVICE: &str = "/inference.GRPCInferenceService/";

/// Who may call each method, as the matching HTTP route. Undeclared methods (Triton's shared
/// memory, trace and log settings) need a credential once checks apply, then are UNIMPLEMENTED.
pub const METHODS: [(&str, Access); 12] = [
    ("ServerLive", Access::Open),
    ("ServerReady", Access::Open),
    ("ServerMetadata", Access::Open),
    ("ModelReady", Access::Client),
    ("ModelMetadata", Access::Client),
    ("ModelConfig", Access::Client),
    ("ModelStatistics", Access::Client),
    ("ModelInfer", Access::Client),
    ("ModelStreamInfer", Access::Client),
    ("RepositoryIndex", Access::Trainer),
    ("RepositoryModelLoad", Access::Trainer),
    ("RepositoryModelUnload", Access::Trainer),
];

/// The access table of [`METHODS`] (gRPC calls are HTTP/2 POSTs to `/<service>/<method>`).
pub fn table() -> AccessTable {
    let paths: Vec<String> = METHODS.iter().map(|(method, _)| format!("{SERVICE}{method}")).collect();
    AccessTable::new(paths.iter().zip(METHODS).map(|(path, (_, access))| (path.as_str(), http::Method::POST, access)))
}

/// The gate as a tower layer around tonic's routes.
#[derive(Clone)]
pub struct GateLayer {
    pub state: Arc<AppState>,
    pub table: Arc<AccessTable>,
}

impl<S> tower_layer::Layer<S> for GateLayer {
    type Service = Gated<S>;

    fn layer(&self, inner: S) -> Gated<S> {
        Gated { inner, state: self.state.clone(), table: self.table.clone() }
    }
}

#[derive(Clone)]
pub struct Gated<S> {
    inner: S,
    state: Arc<AppState>,
    table: Arc<AccessTable>,
}

type Answer = http::Response<tonic::body::Body>;

impl<S, B> tower_service::Service<http::Request<B>> for Gated<S>
where
    S: tower_service::Service<http::Request<B>, Response = Answer, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Answer;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Answer, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // the clone is not ready: keep the ready one for this call (tower's rule)
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let (state, table) = (self.state.clone(), self.table.clone());
        Box::pin(async move {
            match admit(&state, &table, request).await {
                Ok(request) => inner.call(request).await.map(client_errors_recoded),
                Err(refused) => Ok(refusal(refused)),
            }
        })
    }
}

/// tonic answers a few client errors before the call starts (trailers-only answers, the code
/// in the headers) with codes that blame the server: recoded by [`status::client_code`].
fn client_errors_recoded(mut answer: Answer) -> Answer {
    let headers = answer.headers_mut();
    let (Some(code), Some(message)) = (headers.get("grpc-status"), headers.get("grpc-message")) else {
        return answer;
    };
    let code = match code.as_bytes() {
        b"11" => tonic::Code::OutOfRange,
        b"13" => tonic::Code::Internal,
        _ => return answer,
    };
    // grpc-message is percent-encoded
    let message = percent_decoded(message.to_str().unwrap_or_default());
    if let Some(recoded) = status::client_code(code, &message) {
        headers.insert("grpc-status", http::HeaderValue::from(recoded as i32));
    }
    answer
}

/// The gate's refusal (401, 403, 429, or a hidden model's 404) as a gRPC status.
fn refusal(refused: Refusal) -> Answer {
    let mut refusal = status::status(refused.error);
    if let Some(seconds) = refused.retry_after {
        refusal.metadata_mut().insert("retry-after", seconds.into());
    }
    refusal.into_http()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_of_the_proto_is_declared_once() {
        let proto = include_str!("../proto/inference.proto");
        let declared: Vec<&str> =
            proto.lines().filter_map(|l| l.trim().strip_prefix("rpc ")).map(|l| l.split('(').next().unwrap()).collect();
        let listed: Vec<&str> = METHODS.iter().map(|(m, _)| *m).collect();
        let (mut a, mut b) = (declared.clone(), listed.clone());
        a.sort();
        b.sort();
        assert_eq!(a, b);
        let t = table();
        assert_eq!(t.access(&http::Method::POST, "/inference.GRPCInferenceService/ModelInfer"), Some(Access::Client));
        assert_eq!(
            t.access(&http::Method::POST, "/inference.GRPCInferenceService/RepositoryModelLoad"),
            Some(Access::Trainer)
        );
        assert_eq!(t.access(&http::Method::POST, "/inference.GRPCInferenceService/SystemSharedMemoryStatus"), None);
    }
}
