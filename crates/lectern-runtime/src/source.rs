//! Where the registry gets models from: a repository folder, or (in the binary) the store.

use lectern_backends::encoder::bundle;
use lectern_backends::french;
use lectern_core::{Coded, ConfigError, ErrorCode, ModelConfig};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

/// The file name of a version's model inside its folder.
pub const MODEL_FILE: &str = "model.onnx";
/// A version's file for engines that read settings rather than weights (`engine = "tesseract"`).
pub const SETTINGS_FILE: &str = "model.toml";

/// A boxed future, so that sources can be trait objects.
pub type SourceFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a source cannot give a model, a version's file, or its list of models.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A file or folder cannot be read.
    #[error("cannot {action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The model's config (or labels file) is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No version folder is selected by the version policy.
    #[error("no version folder with a {} matches the version policy (found {found:?})", MODEL_FILE)]
    NoVersion { found: Vec<u64> },
    /// The task reading the source crashed.
    #[error("reading the repository failed: {0}")]
    Crashed(#[from] tokio::task::JoinError),
    /// A failure of what the source reads from (a database, an object store), with its code.
    #[error("{source}")]
    Other {
        code: ErrorCode,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl SourceError {
    /// A failure of what the source reads from, classified by `code`.
    pub fn other(code: ErrorCode, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        SourceError::Other { code, source: source.into() }
    }
}

impl Coded for SourceError {
    fn code(&self) -> ErrorCode {
        match self {
            SourceError::Other { code, .. } => *code,
            SourceError::Io { .. }
            | SourceError::Config(_)
            | SourceError::NoVersion { .. }
            | SourceError::Crashed(_) => ErrorCode::ModelLoadFailed,
        }
    }
}

/// Everything needed to load a model: its config, labels, and the versions to serve.
pub struct ModelDefinition {
    pub config: ModelConfig,
    pub labels: Option<Vec<String>>,
    /// The version unversioned requests use; `None`: the newest ready one.
    pub default_version: Option<u64>,
    /// The versions to serve, each with its model file's bytes or why they cannot be read.
    pub versions: Vec<(u64, Result<Vec<u8>, SourceError>)>,
}

/// A place models are loaded from.
pub trait ModelSource: Send + Sync {
    /// The names of every model the source holds.
    fn names(&self) -> SourceFuture<'_, Result<Vec<String>, SourceError>>;

    /// A model's definition; `Ok(None)` when there is no such model, `Err` with the reason
    /// when it exists but cannot be read.
    fn definition<'a>(&'a self, name: &'a str) -> SourceFuture<'a, Result<Option<ModelDefinition>, SourceError>>;

    /// Told the outcome of loading each version (`Err` holds the reason, as the repository
    /// index shows it); a store keeps it.
    fn loaded<'a>(&'a self, _name: &'a str, _outcomes: Vec<(u64, Result<(), String>)>) -> SourceFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// Triton's layout: `<root>/<model>/<version>/model.onnx` and an optional
/// `<root>/<model>/config.toml`.
pub struct FolderSource {
    root: PathBuf,
}

impl FolderSource {
    pub fn new(root: PathBuf) -> Self {
        FolderSource { root }
    }

    /// The folder of a model, if `name` is a plain folder name that exists.
    pub fn model_folder(&self, name: &str) -> Option<PathBuf> {
        let valid = !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\\']);
        let folder = self.root.join(name);
        (valid && folder.is_dir()).then_some(folder)
    }
}

impl ModelSource for FolderSource {
    fn names(&self) -> SourceFuture<'_, Result<Vec<String>, SourceError>> {
        let root = self.root.clone();
        Box::pin(async move { off_runtime(move || model_folders(&root)).await? })
    }

    fn definition<'a>(&'a self, name: &'a str) -> SourceFuture<'a, Result<Option<ModelDefinition>, SourceError>> {
        let folder = self.model_folder(name);
        Box::pin(async move {
            let Some(folder) = folder else { return Ok(None) };
            off_runtime(move || read_folder(&folder).map(Some)).await?
        })
    }
}

async fn off_runtime<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, SourceError> {
    Ok(tokio::task::spawn_blocking(f).await?)
}

/// A model folder's config, labels and the files of the versions its policy selects.
pub fn read_folder(folder: &Path) -> Result<ModelDefinition, SourceError> {
    let config = ModelConfig::load(folder)?;
    let labels = config.load_labels(folder)?;
    let available = version_folders(folder).map_err(|source| SourceError::Io {
        action: "list",
        path: folder.to_path_buf(),
        source,
    })?;
    let selected = config.version_policy().select(&available);
    if selected.is_empty() {
        return Err(SourceError::NoVersion { found: available });
    }
    let versions = selected.into_iter().map(|v| (v, read_version_file(folder, v))).collect();
    Ok(ModelDefinition { config, labels, default_version: None, versions })
}

/// The model file of one version folder: its `model.onnx`; or a text encoder's folder, or a
/// spaCy French model's folder, packed into one bundle (see `lectern_backends::encoder::bundle`);
/// or the `model.toml` that an engine without a model file reads (OCR's settings).
pub fn read_version_file(folder: &Path, version: u64) -> Result<Vec<u8>, SourceError> {
    let version_folder = folder.join(version.to_string());
    let path = version_folder.join(MODEL_FILE);
    if path.is_file() {
        return std::fs::read(&path).map_err(|source| SourceError::Io { action: "read", path, source });
    }
    let packed = if bundle::is_encoder_folder(&version_folder) {
        Some(("pack the encoder folder", bundle::pack_folder(&version_folder)))
    } else if french::is_model_folder(&version_folder) {
        Some(("pack the spaCy model folder", french::pack_folder(&version_folder)))
    } else {
        None
    };
    if let Some((action, packed)) = packed {
        return packed.map_err(|source| SourceError::Io { action, path: version_folder, source });
    }
    let settings = version_folder.join(SETTINGS_FILE);
    if settings.is_file() {
        return std::fs::read(&settings).map_err(|source| SourceError::Io { action: "read", path: settings, source });
    }
    std::fs::read(&path).map_err(|source| SourceError::Io { action: "read", path, source })
}

/// True when a version folder holds a model: a `model.onnx`, a text encoder's files, a spaCy
/// French model's files, or an engine's `model.toml`.
fn holds_model(version_folder: &Path) -> bool {
    version_folder.join(MODEL_FILE).is_file()
        || bundle::is_encoder_folder(version_folder)
        || french::is_model_folder(version_folder)
        || version_folder.join(SETTINGS_FILE).is_file()
}

/// Names of the model folders under `root`, sorted.
pub fn model_folders(root: &Path) -> Result<Vec<String>, SourceError> {
    let read = std::fs::read_dir(root).map_err(|source| SourceError::Io {
        action: "read model repository",
        path: root.to_path_buf(),
        source,
    })?;
    let mut names: Vec<String> = read
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    Ok(names)
}

/// Version numbers of the folders holding a model (file), sorted.
pub fn version_folders(folder: &Path) -> std::io::Result<Vec<u64>> {
    let mut versions: Vec<u64> = std::fs::read_dir(folder)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u64 = e.file_name().to_str()?.parse().ok()?;
            (v > 0 && holds_model(&e.path())).then_some(v)
        })
        .collect();
    versions.sort_unstable();
    Ok(versions)
}
