//! Lectern's HTTP layer: the V2 (Open Inference Protocol) routes, the repository extension,
//! Prometheus metrics and request ids, over the runtime.

pub mod auth;
mod error;
pub mod gate;
mod principal;
mod request_id;
mod routes;

pub use error::{status_of, ApiError};
pub use principal::Principal;

use axum::Router;
use lectern_manage::Manager;
use lectern_pipeline::Engine;
use lectern_runtime::Registry;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

/// How the HTTP layer behaves (not what it serves).
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
}

/// What every handler can reach.
pub struct AppState {
    pub registry: Arc<Registry>,
    /// Model management over the store (the registry's source).
    pub manager: Arc<Manager>,
    /// Who may do what.
    pub auth: gate::AuthState,
    pub settings: HttpSettings,
    /// Set once the start-up load of the repository has finished.
    pub ready: AtomicBool,
    /// The pipelines of the config file, set once the models they name are loaded.
    pub pipelines: OnceLock<Arc<Engine>>,
}

/// The whole HTTP application.
pub fn router(state: Arc<AppState>) -> Router {
    routes::router()
        .layer(axum::middleware::from_fn_with_state(state.clone(), gate::check))
        .layer(axum::middleware::from_fn(request_id::assign))
        .with_state(state)
}
