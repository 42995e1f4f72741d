//! `/v1/collections`: named sets of texts with metadata, searched by meaning.

use crate::principal::Principal;
use crate::routes::manage::json_body;
use crate::routes::openapi::ErrorBody;
use crate::routes::Path;
use crate::{ApiError, AppState};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use lectern_collections::index::Hit;
use lectern_collections::{Search, Upsert};
use lectern_store::CollectionRecord;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use utoipa::ToSchema;

/// A collection as the API shows it.
#[derive(Serialize, ToSchema)]
pub struct CollectionView {
    name: String,
    /// The encoder that embeds its texts; `null` when clients give the vectors.
    model: Option<String>,
    dimension: u32,
    count: u64,
    created_at_ms: i64,
    updated_at_ms: i64,
    /// After an upsert: how many items it wrote.
    #[serde(skip_serializing_if = "Option::is_none")]
    upserted: Option<u64>,
    /// After a delete: how many items went.
    #[serde(skip_serializing_if = "Option::is_none")]
    deleted: Option<u64>,
}

impl From<CollectionRecord> for CollectionView {
    fn from(r: CollectionRecord) -> Self {
        CollectionView {
            name: r.name,
            model: r.model,
            dimension: r.dimension,
            count: r.count,
            created_at_ms: r.created_at_ms,
            updated_at_ms: r.updated_at_ms,
            upserted: None,
            deleted: None,
        }
    }
}

/// The answer of `GET /v1/collections`.
#[derive(Serialize, ToSchema)]
pub struct CollectionList {
    collections: Vec<CollectionView>,
}

/// The body of `POST /v1/collections/{name}/delete`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteItems {
    ids: Vec<String>,
}

/// One search result.
#[derive(Serialize, ToSchema)]
pub struct SearchHit {
    id: String,
    /// Cosine similarity, -1 to 1.
    score: f32,
    text: Option<String>,
    #[schema(value_type = Object)]
    metadata: Value,
}

/// The answer of a search.
#[derive(Serialize, ToSchema)]
pub struct SearchResults {
    results: Vec<SearchHit>,
}

impl From<Vec<Hit>> for SearchResults {
    fn from(hits: Vec<Hit>) -> Self {
        let results = hits
            .into_iter()
            .map(|h| SearchHit { id: h.id, score: h.score, text: h.text, metadata: h.metadata })
            .collect();
        SearchResults { results }
    }
}

/// Collection names follow the model names' rule.
fn check_name(name: &str) -> Result<(), ApiError> {
    lectern_manage::check_model_name(name).map_err(|_| {
        ApiError::bad_request(format!(
            "invalid collection name '{name}': use letters, digits, '-', '_' and '.', not starting with '.' (at most 128)"
        ))
    })
}

/// `PUT /v1/collections/{name}`
#[utoipa::path(put, path = "/v1/collections/{name}", tag = "text", operation_id = "upsertCollection",
    params(("name" = String, Path, description = "The collection's name.")),
    request_body = Upsert,
    responses(
        (status = 200, description = "Stored; the collection with `upserted`.", body = CollectionView),
        (status = 400, description = "A bad body or item (duplicate ids, no text and no vector, a wrong vector length, an empty text).", body = ErrorBody),
        (status = 404, description = "The model is not served.", body = ErrorBody),
        (status = 409, description = "The model or dimension differs from the collection's, or it would hold too many items.", body = ErrorBody),
    ))]
pub async fn upsert(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<CollectionView>, ApiError> {
    check_name(&name)?;
    let request: Upsert = json_body(&state, &headers, body).await?;
    let upserted = request.items.len() as u64;
    let record = state.collections.upsert(&who.actor, &name, request).await?;
    Ok(Json(CollectionView { upserted: Some(upserted), ..record.into() }))
}

/// `GET /v1/collections`
#[utoipa::path(get, path = "/v1/collections", tag = "text", operation_id = "listCollections",
    responses((status = 200, description = "Every collection, by name.", body = CollectionList)))]
pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<CollectionList>, ApiError> {
    let collections = state.collections.list().await?.into_iter().map(Into::into).collect();
    Ok(Json(CollectionList { collections }))
}

/// `GET /v1/collections/{name}`
#[utoipa::path(get, path = "/v1/collections/{name}", tag = "text", operation_id = "describeCollection",
    params(("name" = String, Path, description = "The collection's name.")),
    responses(
        (status = 200, description = "The collection.", body = CollectionView),
        (status = 404, description = "No such collection.", body = ErrorBody),
    ))]
pub async fn describe(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<CollectionView>, ApiError> {
    Ok(Json(state.collections.get(&name).await?.into()))
}

/// `DELETE /v1/collections/{name}`
#[utoipa::path(delete, path = "/v1/collections/{name}", tag = "text", operation_id = "deleteCollection",
    params(("name" = String, Path, description = "The collection's name.")),
    responses(
        (status = 204, description = "Gone, with its items."),
        (status = 404, description = "No such collection.", body = ErrorBody),
    ))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.collections.remove(&who.actor, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/collections/{name}/delete`
#[utoipa::path(post, path = "/v1/collections/{name}/delete", tag = "text", operation_id = "deleteCollectionItems",
    params(("name" = String, Path, description = "The collection's name.")),
    request_body = DeleteItems,
    responses(
        (status = 200, description = "The collection with `deleted` (unknown ids are skipped).", body = CollectionView),
        (status = 404, description = "No such collection.", body = ErrorBody),
    ))]
pub async fn delete_items(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<CollectionView>, ApiError> {
    let request: DeleteItems = json_body(&state, &headers, body).await?;
    let (record, deleted) = state.collections.delete_items(&who.actor, &name, &request.ids).await?;
    Ok(Json(CollectionView { deleted: Some(deleted), ..record.into() }))
}

/// `POST /v1/collections/{name}/search`
#[utoipa::path(post, path = "/v1/collections/{name}/search", tag = "text", operation_id = "searchCollection",
    params(("name" = String, Path, description = "The collection's name.")),
    request_body = Search,
    responses(
        (status = 200, description = "The best matches, best first.", body = SearchResults),
        (status = 400, description = "A bad k, filter, text or vector.", body = ErrorBody),
        (status = 404, description = "No such collection.", body = ErrorBody),
    ))]
pub async fn search(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<SearchResults>, ApiError> {
    let request: Search = json_body(&state, &headers, body).await?;
    Ok(Json(state.collections.search(&name, request).await?.into()))
}
