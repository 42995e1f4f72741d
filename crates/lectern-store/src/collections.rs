//! The `collections` and `collection_items` tables: named sets of texts with metadata and
//! their vectors (little-endian float32 bytes), searched by the collections service.

use crate::audit::audit;
use crate::{now_ms, Store, StoreError};
use sqlx::any::AnyRow;
use sqlx::Row;

/// A collection as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionRecord {
    pub name: String,
    /// The encoder that embeds its texts; `None` when clients give the vectors.
    pub model: Option<String>,
    pub dimension: u32,
    pub count: u64,
    /// Grows with every change: a process's copy of the vectors is current while it matches.
    pub generation: i64,
    pub created_by: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// One item of a collection.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemRecord {
    pub id: String,
    pub text: Option<String>,
    /// A JSON object.
    pub metadata_json: String,
    /// `dimension` little-endian float32 values.
    pub vector: Vec<u8>,
}

/// What an upsert creates the collection with when it does not exist, and checks otherwise.
#[derive(Debug, Clone)]
pub struct CollectionSpec {
    pub name: String,
    pub model: Option<String>,
    pub dimension: u32,
}

fn collection_row(r: &AnyRow) -> Result<CollectionRecord, StoreError> {
    Ok(CollectionRecord {
        name: r.try_get("name")?,
        model: r.try_get("model")?,
        dimension: r.try_get::<i64, _>("dimension")? as u32,
        count: r.try_get::<i64, _>("item_count")? as u64,
        generation: r.try_get("generation")?,
        created_by: r.try_get("created_by")?,
        created_at_ms: r.try_get("created_at")?,
        updated_at_ms: r.try_get("updated_at")?,
    })
}

fn item_row(r: &AnyRow) -> Result<ItemRecord, StoreError> {
    Ok(ItemRecord {
        id: r.try_get("id")?,
        text: r.try_get("text")?,
        metadata_json: r.try_get("metadata_json")?,
        vector: r.try_get("vector")?,
    })
}

type Tx = sqlx::Transaction<'static, sqlx::Any>;

async fn locked_collection(tx: &mut Tx, name: &str) -> Result<Option<CollectionRecord>, StoreError> {
    sqlx::query("SELECT * FROM collections WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?
        .map(|r| collection_row(&r))
        .transpose()
}

/// Recounts the items and moves the generation on; the updated record.
async fn touch(tx: &mut Tx, name: &str) -> Result<CollectionRecord, StoreError> {
    let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM collection_items WHERE collection = $1")
        .bind(name)
        .fetch_one(&mut **tx)
        .await?;
    sqlx::query("UPDATE collections SET item_count = $1, generation = generation + 1, updated_at = $2 WHERE name = $3")
        .bind(count)
        .bind(now_ms())
        .bind(name)
        .execute(&mut **tx)
        .await?;
    locked_collection(tx, name).await?.ok_or_else(|| StoreError::CollectionNotFound(name.to_string()))
}

impl Store {
    /// One collection.
    pub async fn collection(&self, name: &str) -> Result<Option<CollectionRecord>, StoreError> {
        self.run(async {
            let row =
                sqlx::query("SELECT * FROM collections WHERE name = $1").bind(name).fetch_optional(&self.pool).await?;
            row.map(|r| collection_row(&r)).transpose()
        })
        .await
    }

    /// Every collection, by name.
    pub async fn collections(&self) -> Result<Vec<CollectionRecord>, StoreError> {
        self.run(async {
            let rows = sqlx::query("SELECT * FROM collections ORDER BY name").fetch_all(&self.pool).await?;
            rows.iter().map(collection_row).collect()
        })
        .await
    }

    /// Every item of a collection, by id.
    pub async fn collection_items(&self, name: &str) -> Result<Vec<ItemRecord>, StoreError> {
        self.run(async {
            let rows = sqlx::query(
                "SELECT id, text, metadata_json, vector FROM collection_items WHERE collection = $1 ORDER BY id",
            )
            .bind(name)
            .fetch_all(&self.pool)
            .await?;
            rows.iter().map(item_row).collect()
        })
        .await
    }

    /// Creates the collection when it does not exist (as `spec` says; else `spec` must agree
    /// with it), writes the items (replacing those with the same ids) and, with `replace`,
    /// removes every item not among them; refused as a whole when the collection would hold
    /// more than `max_items`. One transaction; the updated collection.
    pub async fn upsert_items(
        &self,
        actor: &str,
        spec: &CollectionSpec,
        items: &[ItemRecord],
        replace: bool,
        max_items: u64,
    ) -> Result<CollectionRecord, StoreError> {
        self.run(async {
            let mut tx = self.write_tx().await?;
            match locked_collection(&mut tx, &spec.name).await? {
                Some(old) => check_spec(&old, spec)?,
                None => {
                    let now = now_ms();
                    sqlx::query(
                        "INSERT INTO collections (name, model, dimension, item_count, generation, created_by, created_at, \
                         updated_at) VALUES ($1, $2, $3, 0, 0, $4, $5, $5)",
                    )
                    .bind(&spec.name)
                    .bind(&spec.model)
                    .bind(spec.dimension as i64)
                    .bind(actor)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            if replace {
                sqlx::query("DELETE FROM collection_items WHERE collection = $1").bind(&spec.name).execute(&mut *tx).await?;
            }
            for item in items {
                sqlx::query(
                    "INSERT INTO collection_items (collection, id, text, metadata_json, vector) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (collection, id) DO UPDATE SET text = excluded.text, \
                     metadata_json = excluded.metadata_json, vector = excluded.vector",
                )
                .bind(&spec.name)
                .bind(&item.id)
                .bind(&item.text)
                .bind(&item.metadata_json)
                .bind(&item.vector)
                .execute(&mut *tx)
                .await?;
            }
            let record = touch(&mut tx, &spec.name).await?;
            if record.count > max_items {
                return Err(StoreError::Conflict(format!(
                    "collection '{}' would hold {} items; at most {max_items} are allowed",
                    spec.name, record.count
                )));
            }
            let detail = format!("{} items upserted{}", items.len(), if replace { ", others removed" } else { "" });
            audit(&mut tx, actor, "collection.upsert", &spec.name, &detail).await?;
            tx.commit().await?;
            Ok(record)
        })
        .await
    }

    /// Removes items by id (unknown ids are skipped); the collection and how many went.
    pub async fn delete_items(
        &self,
        actor: &str,
        name: &str,
        ids: &[String],
    ) -> Result<(CollectionRecord, u64), StoreError> {
        self.run(async {
            let mut tx = self.write_tx().await?;
            let before = locked_collection(&mut tx, name)
                .await?
                .ok_or_else(|| StoreError::CollectionNotFound(name.to_string()))?;
            for id in ids {
                sqlx::query("DELETE FROM collection_items WHERE collection = $1 AND id = $2")
                    .bind(name)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            let record = touch(&mut tx, name).await?;
            let deleted = before.count.saturating_sub(record.count);
            audit(&mut tx, actor, "collection.delete_items", name, &format!("{deleted} items removed")).await?;
            tx.commit().await?;
            Ok((record, deleted))
        })
        .await
    }

    /// Deletes a collection and its items; false when there was none.
    pub async fn drop_collection(&self, actor: &str, name: &str) -> Result<bool, StoreError> {
        self.run(async {
            let mut tx = self.write_tx().await?;
            if locked_collection(&mut tx, name).await?.is_none() {
                return Ok(false);
            }
            sqlx::query("DELETE FROM collection_items WHERE collection = $1").bind(name).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM collections WHERE name = $1").bind(name).execute(&mut *tx).await?;
            audit(&mut tx, actor, "collection.delete", name, "").await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }
}

fn check_spec(old: &CollectionRecord, spec: &CollectionSpec) -> Result<(), StoreError> {
    if old.dimension != spec.dimension || old.model != spec.model {
        let show = |m: &Option<String>| m.as_deref().map_or("no model".to_string(), |m| format!("model '{m}'"));
        return Err(StoreError::Conflict(format!(
            "collection '{}' holds {}-dimensional vectors of {}, not {}-dimensional vectors of {}",
            old.name,
            old.dimension,
            show(&old.model),
            spec.dimension,
            show(&spec.model)
        )));
    }
    Ok(())
}
