//! A model's `config.toml` in the model repository.

use crate::tensor::DataType;
use serde::Deserialize;
use std::path::Path;

/// Default bound of a model's request queue.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;

/// The declared name, datatype and shape of one input or output.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorSpec {
    pub name: String,
    #[serde(default, deserialize_with = "parse_datatype")]
    pub datatype: Option<DataType>,
    /// `-1` marks a dimension of any size.
    #[serde(default)]
    pub shape: Option<Vec<i64>>,
}

fn parse_datatype<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<DataType>, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map(Some).map_err(serde::de::Error::custom)
}

/// Which versions of a model are served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionPolicy {
    /// The newest N versions.
    Latest(usize),
    /// Exactly these versions.
    Specific(Vec<u64>),
}

impl VersionPolicy {
    /// Picks the versions to serve out of those present (any order).
    pub fn select(&self, available: &[u64]) -> Vec<u64> {
        let mut sorted = available.to_vec();
        sorted.sort_unstable();
        match self {
            VersionPolicy::Latest(n) => sorted.iter().rev().take(*n).rev().copied().collect(),
            VersionPolicy::Specific(wanted) => sorted.into_iter().filter(|v| wanted.contains(v)).collect(),
        }
    }
}

/// How requests are grouped into batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BatchingMode {
    /// Take what is queued; wait for more only when recent load says more is coming.
    #[default]
    Adaptive,
    /// Always wait up to `max_queue_delay_us` for the batch to fill.
    Fixed,
    /// One request per execution.
    Off,
}

/// Default cap of the batching window.
pub const DEFAULT_MAX_QUEUE_DELAY_US: u64 = 1000;
/// Default batch size for models whose inputs all have a free first dimension.
pub const DEFAULT_MAX_BATCH_SIZE: usize = 64;

/// Engines a model's config may name (a build may lack some: see lectern-backends' `ENGINES`).
pub const ENGINE_NAMES: [&str; 4] = ["tract", "ort", "tesseract", "french"];

/// The parsed `config.toml` of one model.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Engine; only `onnx` exists today.
    #[serde(default = "default_platform")]
    pub platform: String,
    /// Largest batch the model accepts along its first dimension (0: not batched).
    #[serde(default)]
    pub max_batch_size: Option<usize>,
    /// File (relative to the model folder) with one class name per line.
    #[serde(default)]
    pub labels: Option<String>,
    /// Serve the newest N versions.
    #[serde(default)]
    pub latest: Option<usize>,
    /// Serve exactly these versions.
    #[serde(default)]
    pub versions: Option<Vec<u64>>,
    /// Bound of the model's request queue.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// How requests are grouped into batches.
    #[serde(default)]
    pub batching: BatchingMode,
    /// Longest a request waits for others to join its batch, in microseconds.
    #[serde(default = "default_max_queue_delay_us")]
    pub max_queue_delay_us: u64,
    /// Parallel copies of the model (default: one per core, at most 4).
    #[serde(default)]
    pub instances: Option<usize>,
    /// Inference engine: `tract` (default), `ort`, `tesseract` (OCR) or `french` (text analysis).
    #[serde(default = "default_engine")]
    pub engine: String,
    /// Inputs, when the model file lacks names, datatypes or shapes.
    #[serde(default)]
    pub inputs: Vec<TensorSpec>,
    /// Outputs, when the model file lacks them.
    #[serde(default)]
    pub outputs: Vec<TensorSpec>,
    /// How an image becomes the model's input tensor (pipelines' image steps).
    #[serde(default)]
    pub image: Option<ImageSpec>,
    /// A text encoder trained for shorter vectors (Matryoshka): `/v1/embeddings` may ask
    /// for fewer `dimensions`, answered by the first ones, re-normalised.
    #[serde(default)]
    pub matryoshka: bool,
    /// In a cluster: the labels a worker must carry to serve this model
    /// (`placement = { region = "eu" }`); empty: any worker.
    #[serde(default)]
    pub placement: std::collections::BTreeMap<String, String>,
    /// In a cluster: how many workers serve the model (default 1).
    #[serde(default)]
    pub replicas: Option<usize>,
    /// Samples run on every instance of a version before it reports ready (`[[warmup]]`).
    #[serde(default)]
    pub warmup: Vec<WarmupSpec>,
    /// Not loaded at start-up (nor after a change): the first request loads it.
    #[serde(default)]
    pub lazy: bool,
    /// Never unloaded to keep within the server's memory budget.
    #[serde(default)]
    pub pinned: bool,
}

/// One warmup sample: every input filled with zeros or random values at its declared shape,
/// or a V2 inference request (`request`, JSON text; a folder's `file` becomes one at import).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarmupSpec {
    #[serde(default)]
    pub inputs: WarmupInputs,
    /// Rows, for a model with a batch dimension (default 1).
    #[serde(default = "one")]
    pub batch_size: usize,
    /// Runs of the sample per instance (default 1).
    #[serde(default = "one")]
    pub count: usize,
    /// A V2 inference request body (JSON, no binary part) whose inputs are the sample.
    #[serde(default)]
    pub request: Option<String>,
    /// In a model folder's config: a file of the folder holding such a request. The folder
    /// import replaces it with `request` (the store keeps no files beside the config).
    #[serde(default)]
    pub file: Option<String>,
}

/// Largest warmup request (`request`, or a folder's `file`), in bytes.
pub const MAX_WARMUP_REQUEST_BYTES: usize = 1 << 20;

fn one() -> usize {
    1
}

/// What a warmup sample's inputs hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WarmupInputs {
    /// Zeros (BYTES: the text "0").
    #[default]
    Zeros,
    /// Values from a fixed-seed generator: floats in [0, 1), integers 0..10, BYTES digits.
    Random,
}

/// Colour channels of an image input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ColorMode {
    Gray,
    Rgb,
}

impl ColorMode {
    /// Channels per pixel.
    pub fn channels(self) -> usize {
        match self {
            ColorMode::Gray => 1,
            ColorMode::Rgb => 3,
        }
    }
}

/// Order of the image tensor's dimensions after the batch dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageLayout {
    /// `[N, H*W*C]`, pixels row by row, channels interleaved.
    Flat,
    /// `[N, H, W, C]`.
    Nhwc,
    /// `[N, C, H, W]`.
    Nchw,
}

/// The `[image]` table of a model's config: how a decoded picture becomes an input row.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    pub width: u32,
    pub height: u32,
    pub mode: ColorMode,
    #[serde(default = "default_layout")]
    pub layout: ImageLayout,
    /// A pixel value 0..255 maps linearly onto `[low, high]`.
    #[serde(default = "default_range")]
    pub range: [f32; 2],
    /// `255 - pixel` first: dark ink on light paper becomes high values.
    #[serde(default)]
    pub invert: bool,
}

fn default_layout() -> ImageLayout {
    ImageLayout::Flat
}

fn default_range() -> [f32; 2] {
    [0.0, 1.0]
}

/// Largest image side accepted in a config (the tensor grows with its square).
pub const MAX_IMAGE_SIDE: u32 = 4096;

fn default_platform() -> String {
    "onnx".into()
}

fn default_max_queue_delay_us() -> u64 {
    DEFAULT_MAX_QUEUE_DELAY_US
}

fn default_engine() -> String {
    "tract".into()
}

fn default_queue_capacity() -> usize {
    DEFAULT_QUEUE_CAPACITY
}

impl Default for ModelConfig {
    fn default() -> Self {
        toml::from_str("").expect("empty config parses")
    }
}

/// A `config.toml` that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("invalid {path}: {message}")]
    Invalid { path: String, message: String },
}

impl ModelConfig {
    /// The version policy; Triton's default is the newest version only.
    pub fn version_policy(&self) -> VersionPolicy {
        match (&self.versions, self.latest) {
            (Some(v), _) => VersionPolicy::Specific(v.clone()),
            (None, Some(n)) => VersionPolicy::Latest(n),
            (None, None) => VersionPolicy::Latest(1),
        }
    }

    /// Parses a config from TOML text; `path` is only used in messages.
    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        let config: ModelConfig =
            toml::from_str(text).map_err(|e| ConfigError::Invalid { path: path.into(), message: e.to_string() })?;
        config.validate().map_err(|message| ConfigError::Invalid { path: path.into(), message })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        if !["onnx", "sentence_transformers"].contains(&self.platform.as_str()) {
            return Err(format!(
                "platform '{}' is not supported (only 'onnx' or 'sentence_transformers')",
                self.platform
            ));
        }
        if self.latest.is_some() && self.versions.is_some() {
            return Err("set either 'latest' or 'versions', not both".into());
        }
        if self.latest == Some(0) {
            return Err("'latest' must be at least 1".into());
        }
        if self.instances == Some(0) {
            return Err("'instances' must be at least 1".into());
        }
        if !ENGINE_NAMES.contains(&self.engine.as_str()) {
            return Err(format!("engine '{}' is not known (expected one of {})", self.engine, ENGINE_NAMES.join(", ")));
        }
        for w in &self.warmup {
            if !(1..=4096).contains(&w.batch_size) || !(1..=100).contains(&w.count) {
                return Err("a [[warmup]] sample's batch_size must be 1 to 4096 and its count 1 to 100".into());
            }
            if let Some(file) = &w.file {
                return Err(format!(
                    "the [[warmup]] file '{file}' was not read: a file is read by the model folder's import \
                     (a missing or unreadable file, or one over {MAX_WARMUP_REQUEST_BYTES} bytes, stays unread); \
                     through the API give the request itself as `request`"
                ));
            }
            if w.request.as_ref().is_some_and(|r| r.len() > MAX_WARMUP_REQUEST_BYTES) {
                return Err(format!("a [[warmup]] request is larger than {MAX_WARMUP_REQUEST_BYTES} bytes"));
            }
        }
        if self.replicas == Some(0) {
            return Err("'replicas' must be at least 1".into());
        }
        if self.placement.iter().any(|(k, v)| k.trim().is_empty() || v.trim().is_empty()) {
            return Err("'placement' labels must have a name and a value".into());
        }
        if self.queue_capacity == 0 {
            return Err("'queue_capacity' must be at least 1".into());
        }
        if let Some(image) = &self.image {
            let side_ok = |s: u32| (1..=MAX_IMAGE_SIDE).contains(&s);
            if !side_ok(image.width) || !side_ok(image.height) {
                return Err(format!("[image] width and height must be between 1 and {MAX_IMAGE_SIDE}"));
            }
            if !image.range.iter().all(|v| v.is_finite()) {
                return Err("[image] range must hold two finite numbers".into());
            }
        }
        if let Some(labels) = &self.labels {
            if labels.contains("..") || Path::new(labels).is_absolute() {
                return Err("'labels' must be a file inside the model folder".into());
            }
        }
        Ok(())
    }

    /// Instances to run: the configured number, else one per core (at most 4).
    pub fn instance_count(&self) -> usize {
        self.instances.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(4))
    }

    /// Reads `<folder>/config.toml`; a missing file gives the defaults.
    pub fn load(folder: &Path) -> Result<Self, ConfigError> {
        let path = folder.join("config.toml");
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(ConfigError::Read { path: path.display().to_string(), source }),
        }
    }

    /// Reads the labels file, one class name per line, if the config names one.
    pub fn load_labels(&self, folder: &Path) -> Result<Option<Vec<String>>, ConfigError> {
        let Some(file) = &self.labels else { return Ok(None) };
        let path = folder.join(file);
        let text = std::fs::read_to_string(&path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        Ok(Some(text.lines().map(|l| l.trim().to_string()).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_serve_the_newest_version_only() {
        let c = ModelConfig::default();
        assert_eq!(c.version_policy().select(&[3, 1, 2]), vec![3]);
        assert_eq!(c.queue_capacity, DEFAULT_QUEUE_CAPACITY);
    }

    #[test]
    fn policies_select_versions() {
        assert_eq!(VersionPolicy::Latest(2).select(&[1, 5, 3]), vec![3, 5]);
        assert_eq!(VersionPolicy::Specific(vec![1, 4]).select(&[1, 2, 3]), vec![1]);
    }

    #[test]
    fn a_config_with_both_policies_or_unknown_keys_is_rejected() {
        assert!(ModelConfig::parse("latest = 1\nversions = [1]", "c").is_err());
        assert!(ModelConfig::parse("lattest = 1", "c").is_err());
        assert!(ModelConfig::parse("[[inputs]]\nname='X'\ndatatype='FLOAT'", "c").is_err());
        assert!(ModelConfig::parse("[image]\nwidth=0\nheight=8\nmode='gray'", "c").is_err());
        assert!(ModelConfig::parse("[image]\nwidth=8\nheight=8\nmode='cmyk'", "c").is_err());
        let c = ModelConfig::parse("[image]\nwidth=8\nheight=8\nmode='gray'\nrange=[0.0,16.0]", "c").unwrap();
        assert_eq!(c.image.unwrap().layout, ImageLayout::Flat);
        let c = ModelConfig::parse("[[inputs]]\nname='X'\ndatatype='FP32'\nshape=[-1,4]", "c").unwrap();
        assert_eq!(c.inputs[0].datatype, Some(DataType::F32));
    }
}

/// Changes to a model's config for one load: Triton's `load` with a config override. They
/// hold until the model is loaded again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigChange {
    pub max_batch_size: Option<usize>,
    pub max_queue_delay_us: Option<u64>,
    pub instances: Option<usize>,
}

impl ConfigChange {
    /// `config` with these changes.
    pub fn apply(&self, config: &mut ModelConfig) {
        if let Some(n) = self.max_batch_size {
            config.max_batch_size = Some(n);
        }
        if let Some(us) = self.max_queue_delay_us {
            config.max_queue_delay_us = us;
        }
        if let Some(n) = self.instances {
            config.instances = Some(n);
        }
    }
}
