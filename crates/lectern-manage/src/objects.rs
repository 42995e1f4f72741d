//! Model artifacts in an object store: a folder under the data directory by default, or any
//! S3-compatible bucket (`s3://bucket/prefix`, credentials and endpoint from the usual `AWS_*`
//! environment variables). Every artifact is checksummed (SHA-256) as it is written and
//! again when it is read.

use crate::ManageError;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use lectern_store::hex;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, WriteMultipart};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;

/// Bytes buffered per part of a streamed upload.
const PART_BYTES: usize = 8 * 1024 * 1024;

/// An artifact just written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub key: String,
    pub sha256: String,
    pub size: u64,
    /// The first bytes (up to 512): enough to tell what kind of file it is.
    pub head: Vec<u8>,
}

/// How many of an upload's first bytes [`Stored::head`] keeps.
const HEAD_BYTES: usize = 512;

/// Where artifacts live.
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    /// The root folder when local: written files are synced to disk there.
    local_root: Option<PathBuf>,
    prefix: String,
}

/// Why a streamed upload stopped.
#[derive(Debug)]
pub enum UploadError {
    /// The body was larger than allowed.
    TooLarge(u64),
    /// The client's stream broke.
    Body(String),
    Store(ManageError),
}

/// Why a stored artifact cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("cannot read artifact {key}: {source}")]
    Read {
        key: String,
        #[source]
        source: object_store::Error,
    },
    #[error("artifact {key} is corrupt: its SHA-256 is {actual}, expected {expected}")]
    Corrupt { key: String, actual: String, expected: String },
}

impl Objects {
    /// Opens `file://PATH` (or a plain path) or `s3://bucket[/prefix]`.
    pub fn open(url: &str) -> Result<Self, ManageError> {
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let store = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()
                .map_err(|e| ManageError::Objects(format!("cannot use bucket '{bucket}': {e}")))?;
            return Ok(Objects {
                store: Arc::new(store),
                local_root: None,
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        let path = PathBuf::from(url.strip_prefix("file://").unwrap_or(url));
        std::fs::create_dir_all(&path)
            .map_err(|e| ManageError::Objects(format!("cannot create object folder {}: {e}", path.display())))?;
        let root = path.canonicalize().map_err(|e| ManageError::Objects(format!("{}: {e}", path.display())))?;
        let store = LocalFileSystem::new_with_prefix(&root).map_err(|e| ManageError::Objects(e.to_string()))?;
        Ok(Objects { store: Arc::new(store), local_root: Some(root), prefix: String::new() })
    }

    /// Checks the store answers (a bucket that exists, credentials that work), so that a
    /// misconfigured store stops start-up instead of failing every import and upload.
    pub async fn check(&self) -> Result<(), ManageError> {
        if self.local_root.is_some() {
            return Ok(());
        }
        let prefix = (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.as_str()));
        self.store.list_with_delimiter(prefix.as_ref()).await.map(|_| ()).map_err(|e| {
            let hint = match std::env::var("AWS_ENDPOINT").or_else(|_| std::env::var("AWS_ENDPOINT_URL")) {
                Ok(endpoint) if endpoint.starts_with("http://") && std::env::var("AWS_ALLOW_HTTP").is_err() => {
                    " (the endpoint is plain http: set AWS_ALLOW_HTTP=true)"
                }
                _ => "",
            };
            ManageError::Objects(format!("the bucket cannot be listed: {e}{hint}"))
        })
    }

    fn path(&self, key: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(key)
        } else {
            ObjectPath::from(format!("{}/{key}", self.prefix))
        }
    }

    /// Writes a stream under a staging key while hashing it; [`Objects::promote`] then moves it
    /// to its content-addressed key. The returned `key` is the staging key.
    pub async fn put_stream<S, E>(&self, staging_key: &str, mut body: S, limit: u64) -> Result<Stored, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let staging = self.path(staging_key);
        let store_error = |e: object_store::Error| UploadError::Store(ManageError::Objects(e.to_string()));
        let upload = self.store.put_multipart(&staging).await.map_err(store_error)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut head = Vec::with_capacity(HEAD_BYTES);
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(UploadError::Body(e.to_string()));
                }
            };
            size += chunk.len() as u64;
            if size > limit {
                let _ = writer.abort().await;
                return Err(UploadError::TooLarge(limit));
            }
            hasher.update(&chunk);
            let wanted = HEAD_BYTES.saturating_sub(head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..wanted]);
            writer.wait_for_capacity(2).await.map_err(store_error)?;
            writer.put(chunk);
        }
        writer.finish().await.map_err(store_error)?;
        Ok(Stored { key: staging_key.to_string(), sha256: hex(&hasher.finalize()), size, head })
    }

    /// Moves a staged object to `key` (replacing what is there) and makes it durable.
    pub async fn promote(&self, staging_key: &str, key: &str) -> Result<(), ManageError> {
        self.store
            .rename(&self.path(staging_key), &self.path(key))
            .await
            .map_err(|e| ManageError::Objects(e.to_string()))?;
        self.sync(key)
    }

    /// Writes bytes under `key` (used by the folder import).
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), ManageError> {
        self.store.put(&self.path(key), bytes.into()).await.map_err(|e| ManageError::Objects(e.to_string()))?;
        self.sync(key)
    }

    /// Reads an artifact and checks its SHA-256.
    pub async fn get_checked(&self, key: &str, sha256: &str) -> Result<Vec<u8>, ArtifactError> {
        let read = |source| ArtifactError::Read { key: key.to_string(), source };
        let bytes = self.store.get(&self.path(key)).await.map_err(read)?.bytes().await.map_err(read)?;
        let actual = hex(&Sha256::digest(&bytes));
        if actual != sha256 {
            return Err(ArtifactError::Corrupt { key: key.to_string(), actual, expected: sha256.to_string() });
        }
        Ok(bytes.to_vec())
    }

    /// Streams an object into a local file, checking its SHA-256 on the way.
    pub async fn download(&self, key: &str, sha256: &str, file: &std::path::Path) -> Result<(), ArtifactError> {
        use tokio::io::AsyncWriteExt;
        let read = |source| ArtifactError::Read { key: key.to_string(), source };
        let local = |e: std::io::Error| read(object_store::Error::Generic { store: "local file", source: Box::new(e) });
        let mut stream = self.store.get(&self.path(key)).await.map_err(read)?.into_stream();
        let mut out = tokio::fs::File::create(file).await.map_err(local)?;
        let mut hasher = Sha256::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(read)?;
            hasher.update(&chunk);
            out.write_all(&chunk).await.map_err(local)?;
        }
        out.flush().await.map_err(local)?;
        let actual = hex(&hasher.finalize());
        if actual != sha256 {
            return Err(ArtifactError::Corrupt { key: key.to_string(), actual, expected: sha256.to_string() });
        }
        Ok(())
    }

    /// Streams the object at `key`; `None` when there is none.
    pub async fn get_stream(
        &self,
        key: &str,
    ) -> Result<Option<BoxStream<'static, Result<Bytes, ManageError>>>, ManageError> {
        match self.store.get(&self.path(key)).await {
            Ok(found) => {
                Ok(Some(found.into_stream().map(|c| c.map_err(|e| ManageError::Objects(e.to_string()))).boxed()))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(ManageError::Objects(e.to_string())),
        }
    }

    /// The size of the object at `key`; `None` when there is none.
    pub async fn size(&self, key: &str) -> Result<Option<u64>, ManageError> {
        match self.store.head(&self.path(key)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(ManageError::Objects(e.to_string())),
        }
    }

    /// True when the store (under its prefix) holds any object.
    pub async fn holds_any(&self) -> Result<bool, ManageError> {
        let prefix = (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.as_str()));
        let mut listing = self.store.list(prefix.as_ref());
        match listing.next().await {
            None => Ok(false),
            Some(Ok(_)) => Ok(true),
            Some(Err(e)) => Err(ManageError::Objects(e.to_string())),
        }
    }

    /// The root folder of a local store (`None` for S3).
    pub fn local_root(&self) -> Option<&std::path::Path> {
        self.local_root.as_deref()
    }

    /// Removes an artifact; a missing one is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), ManageError> {
        match self.store.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(ManageError::Objects(e.to_string())),
        }
    }

    /// On a local folder, flushes the file and its folder to disk so that a machine crash
    /// cannot lose an artifact whose version was acknowledged.
    pub fn sync(&self, key: &str) -> Result<(), ManageError> {
        let Some(root) = &self.local_root else { return Ok(()) };
        let file = root.join(key);
        let sync = |p: &std::path::Path| std::fs::File::open(p).and_then(|f| f.sync_all());
        sync(&file)
            .and_then(|_| file.parent().map(sync).unwrap_or(Ok(())))
            .map_err(|e| ManageError::Objects(format!("cannot sync {}: {e}", file.display())))
    }
}

/// SHA-256 of bytes, lower-case hex.
pub fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn streamed_uploads_are_hashed_moved_and_checked() {
        let dir = std::env::temp_dir().join(format!("lectern-objects-{}", std::process::id()));
        let objects = Objects::open(&format!("file://{}", dir.display())).unwrap();
        let chunks = vec![Ok::<_, String>(Bytes::from_static(b"hello ")), Ok(Bytes::from_static(b"world"))];
        let stored = objects.put_stream("uploads/1", futures_util::stream::iter(chunks), 100).await.unwrap();
        assert_eq!(stored.sha256, sha256(b"hello world"));
        assert_eq!(stored.size, 11);
        assert_eq!(stored.key, "uploads/1");
        let key = format!("models/m/1-{}.onnx", &stored.sha256[..8]);
        objects.promote(&stored.key, &key).await.unwrap();
        let stored = Stored { key, ..stored };
        assert_eq!(objects.get_checked(&stored.key, &stored.sha256).await.unwrap(), b"hello world");
        assert!(matches!(objects.get_checked(&stored.key, &sha256(b"x")).await, Err(ArtifactError::Corrupt { .. })));
        assert!(!dir.join("uploads/1").exists(), "the staging object is gone");

        let big = vec![Ok::<_, String>(Bytes::from(vec![0u8; 64]))];
        let err = objects.put_stream("uploads/2", futures_util::stream::iter(big), 10).await.unwrap_err();
        assert!(matches!(err, UploadError::TooLarge(10)));
        objects.delete(&stored.key).await.unwrap();
        objects.delete(&stored.key).await.unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }
}
