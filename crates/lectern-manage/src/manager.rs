//! The management operations. Each change is written to the store (and the object store)
//! before the registry reloads the model, so an acknowledged change survives a crash; the
//! registry swaps versions only once the new ones are loaded.

use crate::import::{artifact_key, import_model};
use crate::objects::{Objects, Stored, UploadError};
use crate::views::ModelView;
use crate::{check_model_name, ManageError};
use bytes::Bytes;
use futures_util::Stream;
use lectern_core::{Coded, ConfigChange, ErrorCode, ModelConfig};
use lectern_runtime::source::{model_folders, FolderSource};
use lectern_runtime::{Registry, RuntimeError};
use lectern_store::{NewVersion, Store, StoreError};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Management of the models in the store and the registry that serves them.
pub struct Manager {
    pub(crate) store: Store,
    pub(crate) objects: Arc<Objects>,
    registry: Arc<Registry>,
    folder: Option<FolderSource>,
    pub(crate) max_upload_bytes: u64,
    pub(crate) uploads: AtomicU64,
    /// Pipeline definitions and removals take turns (see `pipelines.rs`).
    pub(crate) pipeline_changes: tokio::sync::Mutex<()>,
}

impl Manager {
    /// `folder`: the repository folder imported at start-up and re-read by V2 `load`.
    pub fn new(
        store: Store,
        objects: Arc<Objects>,
        registry: Arc<Registry>,
        folder: Option<PathBuf>,
        max_upload_bytes: u64,
    ) -> Self {
        Manager {
            store,
            objects,
            registry,
            folder: folder.map(FolderSource::new),
            max_upload_bytes,
            uploads: AtomicU64::new(0),
            pipeline_changes: tokio::sync::Mutex::new(()),
        }
    }

    /// Largest artifact accepted.
    pub fn max_upload_bytes(&self) -> u64 {
        self.max_upload_bytes
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// True when the store's database is believed to answer (cheap: at most one round trip
    /// a second, none while it is known to be down).
    pub async fn database_available(&self) -> bool {
        self.store.available().await
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Imports every model of the repository folder; a model that cannot be imported is
    /// logged and skipped (the folder's other models still come in).
    pub async fn import_folder(&self, root: &std::path::Path) -> Result<usize, ManageError> {
        let names = model_folders(root)?;
        let mut imported = 0;
        for name in names {
            if let Err(e) = check_model_name(&name) {
                tracing::warn!(model = %name, error = %e, "not imported");
                continue;
            }
            match import_model(&self.store, &self.objects, &name, &root.join(&name)).await {
                Ok(()) => imported += 1,
                Err(e) => tracing::warn!(model = %name, error = %e, "not imported"),
            }
        }
        Ok(imported)
    }

    /// V2 repository `load`: re-reads the model's folder (when it comes from one), then loads it.
    pub async fn load(&self, actor: &str, name: &str, change: Option<&ConfigChange>) -> Result<(), ManageError> {
        if let Some(folder) = self.folder.as_ref().and_then(|f| f.model_folder(name)) {
            check_model_name(name)?;
            import_model(&self.store, &self.objects, name, &folder).await?;
        }
        let result = self.registry.load_changed(name, change).await;
        if !matches!(result, Err(RuntimeError::ModelNotFound(_))) {
            self.audit(actor, "model.load", name, result.as_ref().err().map(|e| e.to_string())).await;
        }
        Ok(result?)
    }

    /// V2 repository `unload`: the model stops serving until it is loaded again.
    pub async fn unload(&self, actor: &str, name: &str) -> Result<(), ManageError> {
        self.registry.unload(name).await?;
        self.audit(actor, "model.unload", name, None).await;
        Ok(())
    }

    /// Records an action that changed no row; a failure to record is logged.
    async fn audit(&self, actor: &str, action: &str, target: &str, failure: Option<String>) {
        let detail = failure.map(|f| format!("failed: {f}")).unwrap_or_default();
        if let Err(e) = self.store.record(actor, action, target, &detail).await {
            tracing::warn!(action, target, error = %e, "cannot write the audit log");
        }
    }

    /// Every model.
    pub async fn list(&self) -> Result<Vec<ModelView>, ManageError> {
        let mut versions = self.store.all_versions().await?;
        let models = self.store.models().await?;
        Ok(models
            .into_iter()
            .map(|model| {
                let own = versions.remove(&model.name).unwrap_or_default();
                ModelView::new(model, own, &self.registry)
            })
            .collect())
    }

    /// One model.
    pub async fn describe(&self, name: &str) -> Result<ModelView, ManageError> {
        let model = self.store.model(name).await?.ok_or_else(|| StoreError::ModelNotFound(name.to_string()))?;
        let versions = self.store.versions(name).await?;
        Ok(ModelView::new(model, versions, &self.registry))
    }

    /// Registers a model with no versions yet.
    pub async fn create_model(
        &self,
        actor: &str,
        name: &str,
        config: Option<&Value>,
        labels: Option<&[String]>,
    ) -> Result<ModelView, ManageError> {
        check_model_name(name)?;
        let config = config_text(config)?;
        self.store.create_model(actor, name, &config, labels_text(labels)?.as_deref()).await?;
        self.reload(name).await?;
        self.describe(name).await
    }

    /// Replaces a model's config and labels, then reloads it (a failed reload keeps the
    /// versions that were serving).
    pub async fn set_config(
        &self,
        actor: &str,
        name: &str,
        config: Option<&Value>,
        labels: Option<&[String]>,
    ) -> Result<ModelView, ManageError> {
        let config = config_text(config)?;
        self.store.set_config(actor, name, &config, labels_text(labels)?.as_deref()).await?;
        self.reload(name).await?;
        self.describe(name).await
    }

    /// Streams a new version into the object store, registers it, and loads it; returns the
    /// version number given to it.
    pub async fn upload_version<S, E>(
        &self,
        actor: &str,
        name: &str,
        version: Option<u64>,
        body: S,
    ) -> Result<(u64, ModelView), ManageError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        if version == Some(0) {
            return Err(ManageError::Invalid("versions are positive integers".into()));
        }
        if self.store.model(name).await?.is_none() {
            return Err(StoreError::ModelNotFound(name.to_string()).into());
        }
        let staging = format!(
            "uploads/{}-{}-{}",
            std::process::id(),
            lectern_now_ms(),
            self.uploads.fetch_add(1, Ordering::Relaxed)
        );
        let staged = self.objects.put_stream(&staging, body, self.max_upload_bytes).await.map_err(|e| match e {
            UploadError::TooLarge(limit) => ManageError::TooLarge(limit),
            UploadError::Body(m) => ManageError::Invalid(format!("the upload broke off: {m}")),
            UploadError::Store(e) => e,
        });
        let registered = match staged {
            Ok(staged) if staged.size == 0 => {
                Err(ManageError::Invalid("the upload is empty: send the model file as the request body".into()))
            }
            Ok(staged) => self.register_upload(actor, name, version, &staged).await,
            Err(e) => Err(e),
        };
        if registered.is_err() {
            // Whatever is left under the staging key (a missing one is not an error).
            if let Err(e) = self.objects.delete(&staging).await {
                tracing::warn!(model = name, error = %e, "cannot delete a staged upload");
            }
        }
        let version = registered?;
        self.reload(name).await?;
        Ok((version, self.describe(name).await?))
    }

    /// Numbers and registers a staged upload and moves it to its content-addressed key, under
    /// the model's artifact lock: a deletion of a version with the same bytes either finishes
    /// before (and the object is put back) or sees this version's row (and keeps the object).
    async fn register_upload(
        &self,
        actor: &str,
        name: &str,
        version: Option<u64>,
        staged: &Stored,
    ) -> Result<u64, ManageError> {
        let mut lock = self.store.lock_artifacts(name).await?;
        let version = match version {
            Some(v) => v,
            None => lock.next_version(name).await?,
        };
        let key = artifact_key(name, &staged.sha256, &staged.head);
        let new = NewVersion {
            model: name.to_string(),
            version,
            sha256: staged.sha256.clone(),
            size: staged.size,
            object_key: key.clone(),
            from_folder: false,
        };
        lock.add_version(actor, &new).await?;
        self.objects.promote(&staged.key, &key).await?;
        lock.commit().await?;
        Ok(version)
    }

    /// The file of one version, checked against its SHA-256.
    pub async fn artifact(&self, name: &str, version: u64) -> Result<Vec<u8>, ManageError> {
        if self.store.model(name).await?.is_none() {
            return Err(StoreError::ModelNotFound(name.to_string()).into());
        }
        let versions = self.store.versions(name).await?;
        let record = versions
            .iter()
            .find(|v| v.version == version)
            .ok_or_else(|| StoreError::VersionNotFound(name.to_string(), version))?;
        self.objects.get_checked(&record.object_key, &record.sha256).await.map_err(|e| {
            tracing::warn!(model = name, version, error = %e, "cannot read an artifact");
            ManageError::Objects(format!("the file of version {version} of model '{name}' cannot be read"))
        })
    }

    /// Sets (or with `None` clears) the version unversioned requests use.
    pub async fn set_default(&self, actor: &str, name: &str, version: Option<u64>) -> Result<ModelView, ManageError> {
        self.store.set_default_version(actor, name, version).await?;
        self.reload(name).await?;
        self.describe(name).await
    }

    /// Deletes one version, and its artifact when no other version has the same bytes; the
    /// model reloads without it.
    pub async fn delete_version(&self, actor: &str, name: &str, version: u64) -> Result<ModelView, ManageError> {
        let removed = self.store.delete_version(actor, name, version).await?;
        release_artifact(&self.store, &self.objects, name, &removed.object_key).await;
        self.reload(name).await?;
        self.describe(name).await
    }

    /// Deletes a model, its versions and artifacts; it stops serving at once.
    pub async fn delete_model(&self, actor: &str, name: &str) -> Result<(), ManageError> {
        let versions = self.store.delete_model(actor, name).await?;
        self.registry.remove(name).await;
        let keys: BTreeSet<String> = versions.into_iter().map(|v| v.object_key).collect();
        for key in keys {
            release_artifact(&self.store, &self.objects, name, &key).await;
        }
        Ok(())
    }

    /// Serves a model as another process (a gateway on the same database) left it: reloaded,
    /// or forgotten when deleted. Nothing is audited: the change was, where it was made.
    pub async fn follow_model(&self, name: &str) {
        match self.store.model(name).await {
            Ok(None) => self.registry.remove(name).await,
            Ok(Some(_)) => {
                if let Err(e) = self.reload(name).await {
                    tracing::warn!(model = name, error = %e, "cannot follow a model another gateway changed");
                }
            }
            Err(e) => tracing::warn!(model = name, error = %e, "cannot read a model another gateway changed"),
        }
    }

    /// Reloads a model after a change. A failed load keeps what was serving (the versions'
    /// states say why); a model left with no version stops serving.
    async fn reload(&self, name: &str) -> Result<(), ManageError> {
        if self.store.versions(name).await?.is_empty() {
            let reason = format!("model '{name}' has no versions yet: upload one to /v1/models/{name}/versions");
            self.registry.set_unavailable(name, &reason).await;
            return Ok(());
        }
        match self.registry.refresh(name).await {
            Ok(()) => Ok(()),
            Err(e) if e.code() == ErrorCode::ModelLoadFailed => {
                tracing::warn!(model = name, reason = %e, "the change is stored; the versions that were serving still serve");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Deletes the object `key` of `model` unless a version row refers to it, decided and done
/// under the model's artifact lock (so not between an upload putting it back and registering
/// it). A failure leaves the object in place and is logged: the deletion it follows stands.
pub(crate) async fn release_artifact(store: &Store, objects: &Objects, model: &str, key: &str) {
    let released = async {
        let mut lock = store.lock_artifacts(model).await?;
        if !lock.is_referenced(key).await? {
            objects.delete(key).await?;
        }
        lock.commit().await?;
        Ok::<_, ManageError>(())
    };
    if let Err(e) = released.await {
        tracing::warn!(model, key, error = %e, "cannot delete an unused artifact; it stays in the object store");
    }
}

/// A config given as JSON (the keys of `config.toml`) as TOML text, checked.
fn config_text(config: Option<&Value>) -> Result<String, ManageError> {
    let text = match config {
        None | Some(Value::Null) => String::new(),
        Some(Value::Object(map)) => {
            if map.contains_key("labels") {
                return Err(ManageError::Invalid(
                    "give labels as the 'labels' list next to 'config', not inside it".into(),
                ));
            }
            toml::to_string(map).map_err(|e| ManageError::Invalid(format!("config cannot be written as TOML: {e}")))?
        }
        Some(_) => {
            return Err(ManageError::Invalid("config must be a JSON object with the keys of config.toml".into()))
        }
    };
    ModelConfig::parse(&text, "config").map_err(|e| ManageError::Invalid(e.to_string()))?;
    Ok(text)
}

fn labels_text(labels: Option<&[String]>) -> Result<Option<String>, ManageError> {
    let Some(labels) = labels else { return Ok(None) };
    if labels.iter().any(|l| l.contains('\n') || l.contains('\r')) {
        return Err(ManageError::Invalid("a label cannot contain a line break".into()));
    }
    Ok(Some(labels.join("\n")))
}

pub(crate) fn lectern_now_ms() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
}
