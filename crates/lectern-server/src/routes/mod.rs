//! The route table: every route is declared once, below, with who may call it. Its path,
//! method, parameters, bodies and statuses are the handler's `#[utoipa::path]`; the axum
//! router, the gate's [`AccessTable`] and the OpenAPI document are all derived from
//! [`table`]. Each resource has its own file.

mod cluster;
mod collections;
mod datasets;
mod embeddings;
mod extract;
mod health;
mod infer;
mod jobs;
mod manage;
mod metrics;
mod models;
pub(crate) mod openapi;
mod pipelines;
mod proxy;
mod repository;
mod stats;
mod training;

use crate::gate::Access;
use crate::{ApiError, AppState};
use axum::http::{Method, StatusCode, Uri};
use axum::routing::MethodRouter;
use axum::Router;
use extract::{Params, Path, Query};
use std::sync::Arc;
use utoipa::openapi::path::{Operation, PathItem, Paths};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;
use utoipa_axum::routes;

pub use metrics::inference_metrics;

/// The V2 (and Triton) answers as data, for the gRPC face to share with the HTTP routes.
pub mod v2 {
    pub use super::health::{readiness, server_metadata_of as server_metadata, ServerMetadata};
    pub use super::models::{
        model_config, model_metadata, ConfigTensor, DynamicBatching, InstanceGroup, ModelConfiguration, ModelMetadata,
        TensorMetadata,
    };
    pub use super::parse_version;
    pub use super::repository::{load_model, repository_index, IndexEntry};
    pub use super::stats::{
        model_statistics, Duration, InferBatchStatistics, InferStatistics, ModelStatistics, Statistics,
    };
}
pub use openapi::document as openapi_document;

/// One declared route: a handler at one path and method, and who may call it.
pub(crate) struct Route {
    pub access: Access,
    pub path: String,
    pub method: Method,
    /// What the handler's `#[utoipa::path]` documents.
    pub operation: Operation,
    /// The schemas its bodies name.
    pub schemas: Vec<(String, RefOr<Schema>)>,
    handler: MethodRouter<Arc<AppState>>,
}

/// What `utoipa_axum::routes!(handler)` gives: the schemas and path of its `#[utoipa::path]`,
/// and its method router.
type Documented = (Vec<(String, RefOr<Schema>)>, Paths, MethodRouter<Arc<AppState>>);

/// Declares a route: `access` and what `routes!(handler)` derives from the handler's
/// `#[utoipa::path]` (one handler, one method: a route needs its own access level).
fn route(access: Access, (schemas, paths, handler): Documented) -> Route {
    let mut items = paths.paths.into_iter();
    let (path, item) = items.next().expect("a handler documents its path");
    assert!(items.next().is_none(), "{path}: one handler per route");
    let mut operations = operations(item);
    let (method, operation) = operations.pop().expect("a handler documents its method");
    assert!(operations.is_empty(), "{path}: one method per handler");
    Route { access, path, method, operation, schemas, handler }
}

/// The operations of a path item with their methods.
fn operations(item: PathItem) -> Vec<(Method, Operation)> {
    [
        (Method::GET, item.get),
        (Method::POST, item.post),
        (Method::PUT, item.put),
        (Method::DELETE, item.delete),
        (Method::PATCH, item.patch),
        (Method::HEAD, item.head),
        (Method::OPTIONS, item.options),
        (Method::TRACE, item.trace),
    ]
    .into_iter()
    .filter_map(|(method, operation)| Some((method, operation?)))
    .collect()
}

/// Every route the server has. A route needs its [`Access`] to be declared at all.
pub(crate) fn table() -> Vec<Route> {
    use Access::{Admin, Client, Open, Trainer};
    vec![
        route(Open, routes!(health::server_metadata)),
        route(Open, routes!(health::live)),
        route(Open, routes!(health::ready)),
        route(Client, routes!(models::metadata)),
        route(Client, routes!(models::version_metadata)),
        route(Client, routes!(models::ready)),
        route(Client, routes!(models::version_ready)),
        route(Client, routes!(models::config)),
        route(Client, routes!(models::version_config)),
        route(Client, routes!(stats::all)),
        route(Client, routes!(stats::model)),
        route(Client, routes!(stats::version)),
        route(Client, routes!(infer::infer)),
        route(Client, routes!(infer::infer_version)),
        route(Trainer, routes!(repository::index)),
        route(Trainer, routes!(repository::load)),
        route(Trainer, routes!(repository::unload)),
        route(Trainer, routes!(cluster::status)),
        route(Client, routes!(pipelines::list)),
        route(Client, routes!(pipelines::run)),
        route(Trainer, routes!(pipelines::define)),
        route(Trainer, routes!(pipelines::remove)),
        route(Trainer, routes!(manage::models::list)),
        route(Trainer, routes!(manage::models::create)),
        route(Trainer, routes!(manage::models::describe)),
        route(Trainer, routes!(manage::models::delete)),
        route(Trainer, routes!(manage::models::set_config)),
        route(Trainer, routes!(manage::models::set_default)),
        route(Trainer, routes!(manage::models::upload)),
        route(Trainer, routes!(manage::models::delete_version)),
        route(Trainer, routes!(manage::models::artifact)),
        route(Client, routes!(datasets::list)),
        route(Client, routes!(datasets::describe)),
        route(Trainer, routes!(datasets::push)),
        route(Trainer, routes!(datasets::delete)),
        route(Client, routes!(training::list)),
        route(Client, routes!(training::describe)),
        route(Client, routes!(training::picture)),
        route(Trainer, routes!(training::create)),
        route(Trainer, routes!(training::cancel)),
        route(Client, routes!(embeddings::create)),
        route(Client, routes!(collections::list)),
        route(Client, routes!(collections::describe)),
        route(Client, routes!(collections::search)),
        route(Trainer, routes!(collections::upsert)),
        route(Trainer, routes!(collections::delete)),
        route(Trainer, routes!(collections::delete_items)),
        route(Trainer, routes!(jobs::list)),
        route(Trainer, routes!(jobs::create)),
        route(Trainer, routes!(jobs::describe)),
        route(Trainer, routes!(jobs::replace)),
        route(Trainer, routes!(jobs::delete)),
        route(Trainer, routes!(jobs::run)),
        route(Trainer, routes!(jobs::pause)),
        route(Trainer, routes!(jobs::resume)),
        route(Trainer, routes!(jobs::runs)),
        route(Admin, routes!(manage::keys::list)),
        route(Admin, routes!(manage::keys::create)),
        route(Admin, routes!(manage::keys::revoke)),
        route(Admin, routes!(manage::audit::list)),
        route(Admin, routes!(proxy::list)),
        // The proxy's access is each upstream's (the gate reads it from `{upstream}`); the
        // table's level is the default, `client`, as the document shows.
        route(Client, routes!(proxy::get)),
        route(Client, routes!(proxy::post)),
        route(Client, routes!(proxy::put)),
        route(Client, routes!(proxy::delete)),
        route(Client, routes!(proxy::patch)),
        route(Client, routes!(proxy::get_base)),
        route(Client, routes!(proxy::post_base)),
        route(Client, routes!(proxy::put_base)),
        route(Client, routes!(proxy::delete_base)),
        route(Client, routes!(proxy::patch_base)),
        route(Open, routes!(openapi::serve)),
        route(Open, routes!(metrics::render)),
    ]
}

/// The axum router of `table` (an undeclared path is 404, an undeclared method 405).
pub(crate) fn router(table: &[Route]) -> Router<Arc<AppState>> {
    let router = table.iter().fold(Router::new(), |router, r| router.route(&r.path, r.handler.clone()));
    router.fallback(not_found).method_not_allowed_fallback(method_not_allowed)
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no route for {}", uri.path()))
}

async fn method_not_allowed(uri: Uri) -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("method not allowed on {}", uri.path()))
}

/// Refuses an upload whose declared `Content-Length` is over `limit` before any of it is read.
pub(crate) fn refuse_declared_oversize(headers: &axum::http::HeaderMap, limit: u64) -> Result<(), ApiError> {
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok());
    match declared {
        Some(n) if n > limit => Err(lectern_manage::ManageError::TooLarge(limit).into()),
        _ => Ok(()),
    }
}

/// Parses a version number: a positive integer, or 404.
pub fn parse_version(model: &str, version: &str) -> Result<u64, ApiError> {
    match version.parse::<u64>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("model '{model}' has no version '{version}' (versions are positive integers)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_declared_once_and_the_gate_knows_it() {
        let table = table();
        let access = crate::gate::AccessTable::new(table.iter().map(|r| (r.path.as_str(), r.method.clone(), r.access)));
        let mut seen = std::collections::HashSet::new();
        for r in &table {
            assert!(seen.insert((r.path.clone(), r.method.clone())), "{} {} declared twice", r.method, r.path);
            let concrete = r.path.replace("{model}", "m").replace("{version}", "1").replace("{name}", "n");
            let concrete = concrete.replace("{id}", "k").replace("{upstream}", "u").replace("{*path}", "a/b");
            // a proxy route's access is its upstream's: none without upstreams
            let expected = (!r.path.contains("{upstream}")).then_some(r.access);
            assert_eq!(access.access(&r.method, &concrete), expected, "{} {}", r.method, r.path);
        }
        assert_eq!(access.access(&Method::POST, "/v2/models/m/infer"), Some(Access::Client));
        assert_eq!(access.access(&Method::GET, "/v1/keys"), Some(Access::Admin));
        assert_eq!(access.access(&Method::GET, "/v2/models"), None);
    }
}
