//! What the cluster keeps in its JetStream key-value bucket, and the names of its keys and
//! subjects. Every value is JSON; a value that does not parse is ignored and counted.

use lectern_core::ImageSpec;
use lectern_runtime::{RemoteVersion, Signature, TensorInfo};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The key of a worker's record (written by the worker every heartbeat).
pub fn worker_key(name: &str) -> String {
    format!("workers.{name}")
}

/// The key of a model's definition (written by the gateways).
pub fn model_key(name: &str) -> String {
    format!("models.{name}")
}

/// The key of the placement map (written by the gateways, compare-and-set).
pub const PLACEMENT_KEY: &str = "placement";
/// The key of the object store address the gateways use (a worker's default).
pub const OBJECTS_KEY: &str = "objects";

/// The subject a model's inference requests are sent on; its workers answer as one queue group.
pub fn infer_subject(cluster: &str, model: &str) -> String {
    // Model names hold letters, digits, '-', '_' and '.'; a '.' would split the subject's
    // tokens, so it travels as '~' (which names never hold).
    format!("{cluster}.infer.{}", model.replace('.', "~"))
}

/// Whether `name` can name a worker (and a key): letters, digits, '-' and '_', 1 to 64.
pub fn valid_worker_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What a worker says of itself every heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerRecord {
    pub name: String,
    /// Random per process: tells two processes that claim one name apart.
    pub instance: String,
    pub labels: BTreeMap<String, String>,
    /// Memory the worker offers to models.
    pub memory_bytes: u64,
    /// Memory its placed models are estimated to take.
    pub used_bytes: u64,
    pub cores: usize,
    /// Requests being answered now.
    pub inflight: u64,
    /// Requests answered since it started.
    pub answered: u64,
    /// Messages that were not what Lectern sends (ignored).
    pub invalid_messages: u64,
    pub models: BTreeMap<String, ServedModel>,
}

/// A model placed on a worker, with the state of each version.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ServedModel {
    /// The definition (its [`ModelSpec::digest`]) the worker loaded.
    pub digest: String,
    pub versions: BTreeMap<u64, ServedVersion>,
    /// Why nothing is served, when no version is listed.
    #[serde(default)]
    pub reason: String,
    /// The definition last tried (it differs from `digest` when its load failed and what was
    /// loaded before still serves), and why it failed ("" when it loaded).
    #[serde(default)]
    pub tried: String,
    #[serde(default)]
    pub failed: String,
}

/// One version on a worker: ready (with what a gateway needs to send it requests) or why not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServedVersion {
    pub ready: bool,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub meta: Option<VersionMeta>,
    /// The SHA-256 of the artifact it was loaded from.
    #[serde(default)]
    pub sha256: String,
}

/// A loaded version as a gateway sees it (a [`RemoteVersion`] in JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionMeta {
    pub platform: String,
    pub inputs: Vec<TensorMeta>,
    pub outputs: Vec<TensorMeta>,
    pub labels: Option<Vec<String>>,
    pub image: Option<ImageSpec>,
    pub max_batch_size: usize,
    pub matryoshka: bool,
    pub text: Option<TextMeta>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorMeta {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextMeta {
    pub max_tokens: usize,
    pub dimension: usize,
    pub normalized: bool,
    pub pooling: String,
}

impl VersionMeta {
    pub fn of(version: &RemoteVersion) -> Self {
        let infos = |list: &[TensorInfo]| {
            list.iter()
                .map(|i| TensorMeta {
                    name: i.name.clone(),
                    datatype: i.datatype.as_str().into(),
                    shape: i.shape.clone(),
                })
                .collect()
        };
        VersionMeta {
            platform: version.platform.clone(),
            inputs: infos(&version.signature.inputs),
            outputs: infos(&version.signature.outputs),
            labels: version.labels.clone(),
            image: version.image.clone(),
            max_batch_size: version.max_batch_size,
            matryoshka: version.matryoshka,
            text: version.text.as_ref().map(|t| TextMeta {
                max_tokens: t.max_tokens,
                dimension: t.dimension,
                normalized: t.normalized,
                pooling: t.pooling.to_string(),
            }),
        }
    }

    /// The version this describes; `None` when a datatype is unknown (not what Lectern wrote).
    pub fn to_remote(&self, name: &str, version: u64) -> Option<RemoteVersion> {
        let infos = |list: &[TensorMeta]| -> Option<Vec<TensorInfo>> {
            list.iter()
                .map(|t| {
                    Some(TensorInfo {
                        name: t.name.clone(),
                        datatype: t.datatype.parse().ok()?,
                        shape: t.shape.clone(),
                    })
                })
                .collect()
        };
        let text = self.text.as_ref().map(|t| lectern_runtime::TextEncoding {
            max_tokens: t.max_tokens,
            dimension: t.dimension,
            normalized: t.normalized,
            pooling: match t.pooling.as_str() {
                "cls" => "cls",
                "max" => "max",
                _ => "mean",
            },
        });
        Some(RemoteVersion {
            name: name.to_string(),
            version,
            platform: self.platform.clone(),
            signature: Signature { inputs: infos(&self.inputs)?, outputs: infos(&self.outputs)? },
            labels: self.labels.clone(),
            image: self.image.clone(),
            max_batch_size: self.max_batch_size,
            matryoshka: self.matryoshka,
            text,
        })
    }
}

/// A model as the gateways define it for the workers: its config, class names, and the
/// artifacts of the versions to serve (fetched from the object store, checked by SHA-256).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub name: String,
    /// The model's `config.toml` text.
    pub config: String,
    pub labels: Option<Vec<String>>,
    pub default_version: Option<u64>,
    pub versions: Vec<SpecVersion>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpecVersion {
    pub version: u64,
    pub key: String,
    pub sha256: String,
    pub size: u64,
}

impl ModelSpec {
    /// Names this definition: equal definitions, equal digests.
    pub fn digest(&self) -> String {
        let text = serde_json::to_vec(self).expect("serialising to a Vec cannot fail");
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for b in text {
            hash = (hash ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        format!("{hash:016x}")
    }

    /// Memory the model is estimated to take on a worker: twice its artifacts (the file, and
    /// the engine's optimised copy), at least 1 MiB.
    pub fn memory_bytes(&self) -> u64 {
        self.versions.iter().map(|v| v.size.saturating_mul(2)).sum::<u64>().max(1 << 20)
    }
}

/// Which workers serve which model, and why a model has none.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PlacementMap {
    pub models: BTreeMap<String, Placed>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Placed {
    pub workers: Vec<String>,
    /// Why fewer workers than asked serve it (empty when all replicas are placed).
    #[serde(default)]
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_and_keys_hold_model_names_whole() {
        assert_eq!(infer_subject("lectern", "iris.v2-a_b"), "lectern.infer.iris~v2-a_b");
        assert_eq!(model_key("iris.v2"), "models.iris.v2");
        assert!(valid_worker_name("gpu-box_1"));
        for bad in ["", "a.b", "a b", "a*", ">", &"x".repeat(65)] {
            assert!(!valid_worker_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_digest_changes_with_the_definition() {
        let spec = ModelSpec {
            name: "m".into(),
            config: String::new(),
            labels: None,
            default_version: None,
            versions: vec![],
        };
        let mut other = spec.clone();
        assert_eq!(spec.digest(), other.digest());
        other.default_version = Some(1);
        assert_ne!(spec.digest(), other.digest());
    }
}
