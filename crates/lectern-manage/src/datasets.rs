//! Datasets: a CSV or JSON file streamed to the object store while a parser reads it on the
//! blocking pool (the schema and the first rows come from that one pass); a file the parser
//! refuses is not stored, and a dataset of that name is left as it was.

use crate::manager::lectern_now_ms;
use crate::objects::UploadError;
use crate::{check_model_name, ManageError, Manager};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use lectern_store::DatasetRecord;
use lectern_train::dataset::{Dataset, Format};
use lectern_train::TrainError;
use serde::Serialize;
use serde_json::Value;
use std::io::Read;
use std::sync::atomic::Ordering;

/// A dataset as the API shows it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DatasetView {
    pub name: String,
    /// `csv` or `json`.
    pub format: String,
    pub rows: u64,
    /// Bytes of the file.
    pub size: u64,
    pub sha256: String,
    /// Per column: `name`, `type` (number, integer, category, text), `missing`, `distinct`.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub columns: Value,
    pub created_by: String,
    pub created_at_ms: i64,
    /// The first 10 rows (only when one dataset is asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<Object>>))]
    pub preview: Option<Value>,
}

impl DatasetView {
    fn new(record: DatasetRecord, with_preview: bool) -> Self {
        let parse = |text: &str| serde_json::from_str(text).unwrap_or(Value::Null);
        DatasetView {
            columns: parse(&record.schema_json),
            preview: with_preview.then(|| parse(&record.preview_json)),
            name: record.name,
            format: record.format,
            rows: record.rows,
            size: record.size,
            sha256: record.sha256,
            created_by: record.created_by,
            created_at_ms: record.created_at_ms,
        }
    }
}

/// Reads the chunks a channel brings, as `std::io::Read` for the parser.
struct ChannelReader {
    chunks: tokio::sync::mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len());
        out[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// The object key of a dataset file.
fn dataset_key(name: &str, sha256: &str, format: &str) -> String {
    format!("datasets/{name}/{sha256}.{format}")
}

impl Manager {
    /// Streams a dataset file into the object store while reading its schema; returns the
    /// dataset and whether it replaced one of that name.
    pub async fn push_dataset<S, E>(
        &self,
        actor: &str,
        name: &str,
        format: Format,
        body: S,
    ) -> Result<(DatasetView, bool), ManageError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        check_model_name(name).map_err(|_| {
            ManageError::Invalid(format!(
                "invalid dataset name '{name}': use letters, digits, '-', '_' and '.', not starting with '.' (at most 128)"
            ))
        })?;
        let (sender, chunks) = tokio::sync::mpsc::channel::<Bytes>(8);
        let parser =
            tokio::task::spawn_blocking(move || Dataset::scan(ChannelReader { chunks, current: Bytes::new() }, format));
        // Every chunk goes to the parser and to the object store; when the parser has stopped
        // (a malformed file), the upload stops too.
        let tee = body.then(move |chunk| {
            let sender = sender.clone();
            async move {
                let chunk = chunk.map_err(|e| e.to_string())?;
                sender.send(chunk.clone()).await.map_err(|_| "the file cannot be read".to_string())?;
                Ok::<Bytes, String>(chunk)
            }
        });
        let staging = format!(
            "uploads/dataset-{}-{}-{}",
            std::process::id(),
            lectern_now_ms(),
            self.uploads.fetch_add(1, Ordering::Relaxed)
        );
        let staged = self.objects.put_stream(&staging, Box::pin(tee), self.max_upload_bytes).await;
        let parsed = parser.await.map_err(|e| ManageError::Invalid(format!("the dataset reader stopped: {e}")))?;
        let stored = match (staged, parsed) {
            (Err(UploadError::TooLarge(limit)), _) => Err(ManageError::TooLarge(limit)),
            (_, Err(TrainError::Io(e))) => Err(ManageError::Invalid(format!("the upload broke off: {e}"))),
            (_, Err(e)) => Err(ManageError::BadDataset(e)),
            (Err(UploadError::Body(m)), _) => Err(ManageError::Invalid(format!("the upload broke off: {m}"))),
            (Err(UploadError::Store(e)), _) => Err(e),
            (Ok(stored), Ok(dataset)) => Ok((stored, dataset)),
        };
        let (stored, dataset) = match stored {
            Ok(ok) => ok,
            Err(e) => {
                if let Err(e) = self.objects.delete(&staging).await {
                    tracing::warn!(dataset = name, error = %e, "cannot delete a staged upload");
                }
                return Err(e);
            }
        };
        let format_name = match format {
            Format::Csv => "csv",
            Format::Json => "json",
        };
        let key = dataset_key(name, &stored.sha256, format_name);
        self.objects.promote(&staging, &key).await?;
        let record = DatasetRecord {
            name: name.to_string(),
            format: format_name.to_string(),
            object_key: key.clone(),
            sha256: stored.sha256,
            size: stored.size,
            rows: dataset.schema.rows,
            schema_json: serde_json::to_string(&dataset.schema.columns).expect("json"),
            preview_json: serde_json::to_string(&dataset.preview).expect("json"),
            created_by: actor.to_string(),
            created_at_ms: lectern_now_ms() as i64,
        };
        drop(dataset);
        let replaced = match self.store.put_dataset(actor, &record).await {
            Ok(replaced) => replaced,
            Err(e) => {
                let previous = self.store.dataset(name).await.ok().flatten();
                if previous.is_none_or(|p| p.object_key != key) {
                    let _ = self.objects.delete(&key).await;
                }
                return Err(e.into());
            }
        };
        if let Some(old) = &replaced {
            if old.object_key != key {
                if let Err(e) = self.objects.delete(&old.object_key).await {
                    tracing::warn!(dataset = name, error = %e, "cannot delete the replaced dataset file");
                }
            }
        }
        Ok((DatasetView::new(record, true), replaced.is_some()))
    }

    /// Every dataset, by name, without previews.
    pub async fn datasets(&self) -> Result<Vec<DatasetView>, ManageError> {
        Ok(self.store.datasets().await?.into_iter().map(|d| DatasetView::new(d, false)).collect())
    }

    /// One dataset with its preview.
    pub async fn dataset(&self, name: &str) -> Result<DatasetView, ManageError> {
        let record = self.store.dataset(name).await?.ok_or_else(|| ManageError::DatasetNotFound(name.to_string()))?;
        Ok(DatasetView::new(record, true))
    }

    /// Deletes a dataset and its file.
    pub async fn delete_dataset(&self, actor: &str, name: &str) -> Result<(), ManageError> {
        let old = self
            .store
            .delete_dataset(actor, name)
            .await?
            .ok_or_else(|| ManageError::DatasetNotFound(name.to_string()))?;
        if let Err(e) = self.objects.delete(&old.object_key).await {
            tracing::warn!(dataset = name, error = %e, "cannot delete the dataset file; it stays in the object store");
        }
        Ok(())
    }

    /// A dataset's record (for training).
    /// A dataset read whole into typed columns (its file checked against its SHA-256).
    pub async fn read_dataset(&self, name: &str) -> Result<Dataset, ManageError> {
        let record = self.dataset_record(name).await?;
        let bytes = self.objects.get_checked(&record.object_key, &record.sha256).await.map_err(|e| {
            tracing::warn!(dataset = %name, error = %e, "cannot read a dataset file");
            ManageError::Objects(format!("the file of dataset '{name}' cannot be read"))
        })?;
        let format = if record.format == "json" { Format::Json } else { Format::Csv };
        tokio::task::spawn_blocking(move || Dataset::read(bytes.as_slice(), format).map_err(ManageError::BadDataset))
            .await
            .map_err(|e| ManageError::Invalid(format!("reading the dataset stopped: {e}")))?
    }

    pub(crate) async fn dataset_record(&self, name: &str) -> Result<DatasetRecord, ManageError> {
        self.store.dataset(name).await?.ok_or_else(|| ManageError::DatasetNotFound(name.to_string()))
    }
}
