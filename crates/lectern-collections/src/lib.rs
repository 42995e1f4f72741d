//! Collections: named sets of texts (with ids and metadata) and their vectors, stored in the
//! database and searched by meaning. Texts are embedded by a served text encoder; vectors are
//! kept at unit length so that the cosine similarity is their dot product. Each process keeps
//! the vectors of the collections it searched in memory and checks, on every search, that the
//! database has not moved on (a generation number), so that several processes stay correct.

pub mod index;

use index::{Filter, Hit, Index, Item, Query};
use lectern_core::{Coded, ErrorCode};
use lectern_runtime::text::embed;
use lectern_runtime::{Registry, RuntimeError};
use lectern_store::{CollectionRecord, CollectionSpec, ItemRecord, Store, StoreError};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

/// Most items one upsert may carry (as OpenAI's limit on inputs per embeddings request).
pub const MAX_ITEMS_PER_REQUEST: usize = 2048;
/// Most items a collection holds (exact search stays in the milliseconds below it).
pub const MAX_ITEMS: u64 = 100_000;
/// Longest item id, in bytes.
pub const MAX_ID_BYTES: usize = 256;
/// Largest metadata object, in bytes of JSON.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Widest vector a collection without a model takes.
pub const MAX_DIMENSION: u32 = 4096;
/// Most results a search gives.
pub const MAX_K: usize = 1000;

/// What can go wrong with collections.
#[derive(Debug, thiserror::Error)]
pub enum CollectionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("unknown collection '{0}'")]
    NotFound(String),
    /// The request is malformed or does not fit the collection.
    #[error("{0}")]
    Invalid(String),
    /// The request conflicts with the collection as it is.
    #[error("{0}")]
    Conflict(String),
}

impl Coded for CollectionError {
    fn code(&self) -> ErrorCode {
        match self {
            CollectionError::Store(e) => e.code(),
            CollectionError::Runtime(e) => e.code(),
            CollectionError::NotFound(_) => ErrorCode::CollectionNotFound,
            CollectionError::Invalid(_) => ErrorCode::InvalidRequest,
            CollectionError::Conflict(_) => ErrorCode::Conflict,
        }
    }
}

fn invalid(message: impl Into<String>) -> CollectionError {
    CollectionError::Invalid(message.into())
}

/// One item of an upsert, as the client sends it.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewItem {
    /// 1 to 256 bytes.
    pub id: String,
    /// Embedded by the collection's model unless `vector` is given.
    #[serde(default)]
    pub text: Option<String>,
    /// A JSON object (default `{}`), at most 16 KiB.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: Option<Value>,
    /// The vector itself (length = the dimension); normalised by the server.
    #[serde(default)]
    pub vector: Option<Vec<f32>>,
}

/// `PUT /v1/collections/{name}`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Upsert {
    /// The encoder that embeds the texts (given when the collection is created, or the same).
    #[serde(default)]
    pub model: Option<String>,
    /// Without a model: the length of the vectors clients give (1-4096).
    #[serde(default)]
    pub dimension: Option<u32>,
    pub items: Vec<NewItem>,
    /// Remove every item the request does not name.
    #[serde(default)]
    pub replace: bool,
}

/// `POST /v1/collections/{name}/search`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Search {
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub vector: Option<Vec<f32>>,
    /// 1-1000 (default 10).
    #[serde(default)]
    pub k: Option<u64>,
    /// Metadata keys, each a value or `{"$in"|"$nin": [..]}` or `{"$ne": value}`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub filter: Option<Value>,
    #[serde(default)]
    pub exclude_ids: Vec<String>,
}

/// The collections service.
pub struct Collections {
    store: Store,
    registry: Arc<Registry>,
    cache: Mutex<HashMap<String, Arc<RwLock<Index>>>>,
    /// One load from the database at a time (a big collection is read once, not per search).
    loading: tokio::sync::Mutex<()>,
}

impl Collections {
    pub fn new(store: Store, registry: Arc<Registry>) -> Self {
        Collections { store, registry, cache: Mutex::new(HashMap::new()), loading: tokio::sync::Mutex::new(()) }
    }

    pub async fn list(&self) -> Result<Vec<CollectionRecord>, CollectionError> {
        Ok(self.store.collections().await?)
    }

    pub async fn get(&self, name: &str) -> Result<CollectionRecord, CollectionError> {
        self.store.collection(name).await?.ok_or_else(|| CollectionError::NotFound(name.to_string()))
    }

    /// Creates the collection if needed and writes the items; the collection after.
    pub async fn upsert(&self, actor: &str, name: &str, request: Upsert) -> Result<CollectionRecord, CollectionError> {
        check_items(&request.items)?;
        let existing = self.store.collection(name).await?;
        let spec = self.spec(name, &request, existing.as_ref()).await?;
        let texts: Vec<(usize, String)> = request
            .items
            .iter()
            .enumerate()
            .filter(|(_, item)| item.vector.is_none())
            .map(|(i, item)| (i, item.text.clone().unwrap_or_default()))
            .collect();
        let embedded = match (&spec.model, texts.is_empty()) {
            (_, true) => None,
            (Some(model), false) => {
                let model = self.registry.model(model, None).await?;
                Some(embed(model, texts.iter().map(|(_, t)| t.clone()).collect(), false).await?)
            }
            (None, false) => {
                let (i, _) = texts[0];
                return Err(invalid(format!(
                    "item {i} has no vector, and the collection has no model to embed its text"
                )));
            }
        };
        let mut vectors: Vec<Option<Vec<f32>>> = request.items.iter().map(|item| item.vector.clone()).collect();
        if let Some(embedded) = &embedded {
            for (row, (i, _)) in texts.iter().enumerate() {
                vectors[*i] = Some(embedded.row(row).to_vec());
            }
        }
        let mut items = Vec::with_capacity(request.items.len());
        for (i, (item, vector)) in request.items.into_iter().zip(vectors).enumerate() {
            let mut vector = vector.expect("every item has a vector by now");
            if vector.len() != spec.dimension as usize {
                return Err(invalid(format!(
                    "item {i} has a vector of {} values; the collection's dimension is {}",
                    vector.len(),
                    spec.dimension
                )));
            }
            unit(&mut vector).map_err(|why| invalid(format!("item {i}: the vector {why}")))?;
            let metadata = item.metadata.unwrap_or_else(|| Value::Object(Default::default()));
            items.push(Item { id: item.id, text: item.text, metadata, vector });
        }
        let records: Vec<ItemRecord> = items.iter().map(to_record).collect();
        let record =
            self.store.upsert_items(actor, &spec, &records, request.replace, MAX_ITEMS).await.map_err(conflict)?;
        self.apply(name, &record, |index| {
            if request.replace {
                return false;
            }
            items.into_iter().for_each(|item| index.put(item));
            true
        });
        Ok(record)
    }

    /// Removes items by id; the collection after and how many went.
    pub async fn delete_items(
        &self,
        actor: &str,
        name: &str,
        ids: &[String],
    ) -> Result<(CollectionRecord, u64), CollectionError> {
        let (record, deleted) = self.store.delete_items(actor, name, ids).await.map_err(not_found)?;
        self.apply(name, &record, |index| {
            ids.iter().for_each(|id| index.remove(id));
            true
        });
        Ok((record, deleted))
    }

    /// Deletes a collection.
    pub async fn remove(&self, actor: &str, name: &str) -> Result<(), CollectionError> {
        let dropped = self.store.drop_collection(actor, name).await?;
        self.cache.lock().expect("cache lock").remove(name);
        if dropped {
            Ok(())
        } else {
            Err(CollectionError::NotFound(name.to_string()))
        }
    }

    /// The best matches for a text or a vector.
    pub async fn search(&self, name: &str, request: Search) -> Result<Vec<Hit>, CollectionError> {
        let k = request.k.unwrap_or(10);
        if k == 0 || k > MAX_K as u64 {
            return Err(invalid(format!("'k' must be between 1 and {MAX_K}, not {k}")));
        }
        let filter = request.filter.as_ref().map(Filter::parse).transpose().map_err(invalid)?.unwrap_or_default();
        let record = self.get(name).await?;
        let mut vector = match (request.text, request.vector) {
            (Some(_), Some(_)) | (None, None) => return Err(invalid("give either 'text' or 'vector'")),
            (Some(text), None) => {
                let Some(model) = &record.model else {
                    return Err(invalid(format!(
                        "collection '{name}' has no model to embed a text: search with a vector"
                    )));
                };
                let model = self.registry.model(model, None).await?;
                embed(model, vec![text], false).await?.vectors
            }
            (None, Some(vector)) => vector,
        };
        if vector.len() != record.dimension as usize {
            return Err(invalid(format!(
                "the vector has {} values; the collection's dimension is {}",
                vector.len(),
                record.dimension
            )));
        }
        unit(&mut vector).map_err(|why| invalid(format!("the vector {why}")))?;
        let index = self.index(&record).await?;
        let exclude_ids: HashSet<String> = request.exclude_ids.into_iter().collect();
        let search = move || {
            let query = Query { vector: &vector, k: k as usize, filter, exclude_ids };
            index.read().expect("index lock").search(&query)
        };
        tokio::task::spawn_blocking(search).await.map_err(|e| invalid(format!("the search failed: {e}")))
    }

    /// The collection's index at the record's generation: the cached one, or read again.
    async fn index(&self, record: &CollectionRecord) -> Result<Arc<RwLock<Index>>, CollectionError> {
        if let Some(index) = self.cached(record) {
            return Ok(index);
        }
        let _one_load = self.loading.lock().await;
        if let Some(index) = self.cached(record) {
            return Ok(index);
        }
        let rows = self.store.collection_items(&record.name).await?;
        let (generation, dimension) = (record.generation, record.dimension as usize);
        let build = move || {
            // A row that does not decode is skipped; the rows' count sizes the arrays.
            let capacity = rows.len();
            let items = rows.into_iter().filter_map(|r| from_record(r, dimension));
            Index::with_capacity(generation, dimension, capacity, items)
        };
        let index = tokio::task::spawn_blocking(build).await.map_err(|e| invalid(format!("loading failed: {e}")))?;
        let index = Arc::new(RwLock::new(index));
        self.cache.lock().expect("cache lock").insert(record.name.clone(), index.clone());
        Ok(index)
    }

    fn cached(&self, record: &CollectionRecord) -> Option<Arc<RwLock<Index>>> {
        let cache = self.cache.lock().expect("cache lock");
        let index = cache.get(&record.name)?.clone();
        let current = index.read().expect("index lock").generation == record.generation;
        current.then_some(index)
    }

    /// After this process's own change: updates the cached index in place when it was at the
    /// generation just before (`change` returns false to drop it instead); else drops it.
    fn apply(&self, name: &str, record: &CollectionRecord, change: impl FnOnce(&mut Index) -> bool) {
        let mut cache = self.cache.lock().expect("cache lock");
        let Some(index) = cache.get(name).cloned() else { return };
        let mut index = index.write().expect("index lock");
        if index.generation + 1 == record.generation && change(&mut index) {
            index.generation = record.generation;
        } else {
            cache.remove(name);
        }
    }

    /// The collection an upsert writes to: the existing one (what the request says must
    /// match it) or a new one as the request describes.
    async fn spec(
        &self,
        name: &str,
        request: &Upsert,
        existing: Option<&CollectionRecord>,
    ) -> Result<CollectionSpec, CollectionError> {
        if let Some(old) = existing {
            let model = request.model.clone().or_else(|| old.model.clone());
            let dimension = match (&request.model, request.dimension) {
                (Some(m), _) if Some(m) != old.model.as_ref() => self.model_dimension(m).await?,
                (_, Some(d)) => d,
                _ => old.dimension,
            };
            return Ok(CollectionSpec { name: name.to_string(), model, dimension });
        }
        match (&request.model, request.dimension) {
            (Some(model), given) => {
                let dimension = self.model_dimension(model).await?;
                if given.is_some_and(|d| d != dimension) {
                    return Err(invalid(format!(
                        "model '{model}' gives {dimension}-dimensional vectors, not {}",
                        given.unwrap_or(0)
                    )));
                }
                Ok(CollectionSpec { name: name.to_string(), model: Some(model.clone()), dimension })
            }
            (None, Some(d)) if (1..=MAX_DIMENSION).contains(&d) => {
                Ok(CollectionSpec { name: name.to_string(), model: None, dimension: d })
            }
            (None, Some(d)) => Err(invalid(format!("'dimension' must be between 1 and {MAX_DIMENSION}, not {d}"))),
            (None, None) => Err(invalid(format!(
                "collection '{name}' does not exist: give 'model' (a text encoder) or 'dimension' to create it"
            ))),
        }
    }

    async fn model_dimension(&self, model: &str) -> Result<u32, CollectionError> {
        let loaded = self.registry.model(model, None).await?;
        let text = loaded.text().ok_or_else(|| RuntimeError::NotAnEncoder(model.to_string()))?;
        Ok(text.dimension as u32)
    }
}

/// Search steps of pipelines search the collections.
impl lectern_pipeline::Searcher for Collections {
    fn search<'a>(
        &'a self,
        collection: &'a str,
        query: Value,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Value, String>> + Send + 'a>> {
        Box::pin(async move {
            let request: Search = serde_json::from_value(query).map_err(|e| format!("a bad search: {e}"))?;
            let hits = Collections::search(self, collection, request).await.map_err(|e| e.to_string())?;
            let results = hits
                .into_iter()
                .map(|h| serde_json::json!({"id": h.id, "score": h.score, "text": h.text, "metadata": h.metadata}))
                .collect();
            Ok(Value::Array(results))
        })
    }
}

fn check_items(items: &[NewItem]) -> Result<(), CollectionError> {
    if items.is_empty() || items.len() > MAX_ITEMS_PER_REQUEST {
        return Err(invalid(format!("'items' must hold 1 to {MAX_ITEMS_PER_REQUEST} items, not {}", items.len())));
    }
    let mut seen = HashSet::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if item.id.is_empty() || item.id.len() > MAX_ID_BYTES {
            return Err(invalid(format!("item {i}: 'id' must be 1 to {MAX_ID_BYTES} bytes")));
        }
        if !seen.insert(item.id.as_str()) {
            return Err(invalid(format!("item {i}: the id '{}' appears twice in the request", item.id)));
        }
        match (&item.text, &item.vector) {
            (None, None) => return Err(invalid(format!("item {i} ('{}') has neither 'text' nor 'vector'", item.id))),
            (Some(t), _) if t.is_empty() => return Err(invalid(format!("item {i} ('{}') has an empty text", item.id))),
            _ => {}
        }
        if let Some(metadata) = &item.metadata {
            if !metadata.is_object() {
                return Err(invalid(format!("item {i}: 'metadata' must be a JSON object")));
            }
            if metadata.to_string().len() > MAX_METADATA_BYTES {
                return Err(invalid(format!("item {i}: 'metadata' is over {MAX_METADATA_BYTES} bytes")));
            }
        }
    }
    Ok(())
}

/// Scales a vector to unit length; refuses one of zeros or with values that are not finite.
fn unit(vector: &mut [f32]) -> Result<(), &'static str> {
    if vector.iter().any(|x| !x.is_finite()) {
        return Err("holds a value that is not a finite number");
    }
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return Err("is all zeros (it has no direction)");
    }
    vector.iter_mut().for_each(|x| *x /= norm);
    Ok(())
}

fn to_record(item: &Item) -> ItemRecord {
    ItemRecord {
        id: item.id.clone(),
        text: item.text.clone(),
        metadata_json: item.metadata.to_string(),
        vector: item.vector.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}

/// An item read back; a row that does not decode (a vector of another length) is skipped.
fn from_record(record: ItemRecord, dimension: usize) -> Option<Item> {
    if record.vector.len() != dimension * 4 {
        tracing::warn!(id = %record.id, "skipping a stored vector of the wrong length");
        return None;
    }
    let vector = record.vector.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    let metadata = serde_json::from_str(&record.metadata_json).unwrap_or(Value::Null);
    Some(Item { id: record.id, text: record.text, metadata, vector })
}

fn conflict(e: StoreError) -> CollectionError {
    match e {
        StoreError::Conflict(message) => CollectionError::Conflict(message),
        other => other.into(),
    }
}

fn not_found(e: StoreError) -> CollectionError {
    match e {
        StoreError::CollectionNotFound(name) => CollectionError::NotFound(name),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_checked_before_anything_is_embedded_or_stored() {
        let item = |id: &str, text: Option<&str>| NewItem {
            id: id.into(),
            text: text.map(String::from),
            ..Default::default()
        };
        let twice = check_items(&[item("a", Some("x")), item("a", Some("y"))]).unwrap_err().to_string();
        assert!(twice.contains("appears twice"), "{twice}");
        assert!(check_items(&[item("a", None)]).unwrap_err().to_string().contains("neither"));
        assert!(check_items(&[item("a", Some(""))]).unwrap_err().to_string().contains("empty text"));
        assert!(check_items(&[]).is_err());
        assert!(check_items(&[item(&"x".repeat(257), Some("t"))]).is_err());
        check_items(&[item("a", Some("x")), item("b", Some("y"))]).unwrap();
    }

    #[test]
    fn vectors_become_unit_length_and_zeros_are_refused() {
        let mut v = [3.0, 4.0];
        unit(&mut v).unwrap();
        assert_eq!(v, [0.6, 0.8]);
        assert!(unit(&mut [0.0, 0.0]).is_err());
        assert!(unit(&mut [f32::NAN, 1.0]).is_err());
    }

    #[test]
    fn stored_vectors_round_trip() {
        let item = Item {
            id: "a".into(),
            text: Some("t".into()),
            metadata: serde_json::json!({"k": 1}),
            vector: vec![0.6, -0.8],
        };
        assert_eq!(from_record(to_record(&item), 2), Some(item.clone()));
        assert_eq!(from_record(to_record(&item), 3), None);
    }
}
