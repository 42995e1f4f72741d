//! Importing a Triton-style repository folder into the store: the folder is the truth for the
//! models it holds, so configs, labels and versions are brought in line with it (only what
//! changed is written).

use crate::manager::release_artifact;
use crate::objects::{sha256, Objects};
use crate::ManageError;
use bytes::Bytes;
use lectern_core::{ModelConfig, MAX_WARMUP_REQUEST_BYTES};
use lectern_runtime::source::{read_version_file, version_folders, SourceError};
use lectern_store::{NewVersion, Store};
use std::collections::BTreeMap;
use std::path::Path;

/// Who the audit log names for imports.
pub const IMPORT_ACTOR: &str = "import";

/// The object key of a model's artifact: content-addressed within the model, named `.tar`
/// for a text encoder's bundle (its first bytes tell) and `.onnx` otherwise.
pub fn artifact_key(model: &str, sha256: &str, head: &[u8]) -> String {
    let extension = if lectern_backends::encoder::bundle::is_bundle(head) { "tar" } else { "onnx" };
    format!("models/{model}/{sha256}.{extension}")
}

/// Brings one model of the folder into the store. What changed in the folder since the last
/// import wins; changes made through the API to what the folder did not change are kept, and
/// versions uploaded through the API are never removed by an import.
pub async fn import_model(store: &Store, objects: &Objects, name: &str, folder: &Path) -> Result<(), ManageError> {
    let (config, labels, files) = read_model(folder).await?;
    let fingerprint = sha256(format!("{config}\0{}", labels.as_deref().unwrap_or("")).as_bytes());
    let config = store_config(&config);
    match store.model(name).await? {
        None => {
            store.create_model(IMPORT_ACTOR, name, &config, labels.as_deref()).await?;
            store.set_imported(name, &fingerprint).await?;
        }
        Some(m) if m.imported.as_deref() != Some(fingerprint.as_str()) => {
            store.set_config(IMPORT_ACTOR, name, &config, labels.as_deref()).await?;
            store.set_imported(name, &fingerprint).await?;
        }
        Some(_) => {}
    }
    let stored: BTreeMap<u64, (String, bool)> =
        store.versions(name).await?.into_iter().map(|v| (v.version, (v.sha256, v.from_folder))).collect();
    let on_disk: Vec<u64> = files.iter().map(|(v, _)| *v).collect();
    for (version, bytes) in files {
        let sha = sha256(&bytes);
        match stored.get(&version) {
            Some((existing, _)) if *existing == sha => continue,
            Some((_, false)) => {
                tracing::warn!(
                    model = name,
                    version,
                    "the folder's version has the number of an uploaded version; not imported"
                );
                continue;
            }
            Some((_, true)) => {
                let removed = store.delete_version(IMPORT_ACTOR, name, version).await?;
                release_artifact(store, objects, name, &removed.object_key).await;
            }
            None => {}
        }
        let key = artifact_key(name, &sha, &bytes);
        let size = bytes.len() as u64;
        let new = NewVersion {
            model: name.to_string(),
            version,
            sha256: sha,
            size,
            object_key: key.clone(),
            from_folder: true,
        };
        // Under the artifact lock, as an upload: a concurrent deletion cannot remove the object
        // between its write and its row.
        let mut lock = store.lock_artifacts(name).await?;
        lock.add_version(IMPORT_ACTOR, &new).await?;
        objects.put(&key, Bytes::from(bytes)).await?;
        lock.commit().await?;
    }
    for (version, _) in stored.iter().filter(|(v, (_, from_folder))| *from_folder && !on_disk.contains(v)) {
        let removed = store.delete_version(IMPORT_ACTOR, name, *version).await?;
        release_artifact(store, objects, name, &removed.object_key).await;
    }
    Ok(())
}

/// The config text, labels text and version files of a model folder.
type FolderModel = (String, Option<String>, Vec<(u64, Vec<u8>)>);

/// The config as the store keeps it: without the folder's `labels` file name, whose lines are
/// stored as the model's labels instead. Labels are not a config key in the store (the API
/// shows and takes them next to the config), so a config read back from the API can be sent
/// back as it is. Other text is kept as written; text that is not TOML is kept as it is (the
/// model then shows why it cannot load).
pub(crate) fn store_config(text: &str) -> String {
    match text.parse::<toml::Table>() {
        Ok(mut table) if table.contains_key("labels") => {
            table.remove("labels");
            toml::to_string(&table).unwrap_or_else(|_| text.into())
        }
        _ => text.to_string(),
    }
}

/// The config with each `[[warmup]]` sample's `file` (a V2 request in the model folder)
/// replaced by its text as `request`. A file that cannot be read (missing, outside the folder,
/// over [`MAX_WARMUP_REQUEST_BYTES`], not UTF-8) stays a `file`: the config then refuses to
/// load and says so. Text that is not TOML, or has no such sample, is kept as written.
fn inline_warmup_files(text: &str, folder: &Path) -> String {
    let Ok(mut table) = text.parse::<toml::Table>() else { return text.to_string() };
    let Some(toml::Value::Array(samples)) = table.get_mut("warmup") else { return text.to_string() };
    let mut changed = false;
    for sample in samples.iter_mut().filter_map(toml::Value::as_table_mut) {
        let Some(toml::Value::String(file)) = sample.get("file") else { continue };
        let Some(request) = read_warmup_file(folder, file) else { continue };
        sample.remove("file");
        sample.insert("request".into(), toml::Value::String(request));
        changed = true;
    }
    if !changed {
        return text.to_string();
    }
    toml::to_string(&table).unwrap_or_else(|_| text.into())
}

fn read_warmup_file(folder: &Path, file: &str) -> Option<String> {
    let path = Path::new(file);
    // a name inside the model folder only
    if path.is_absolute() || path.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        return None;
    }
    // a regular file whose real path is inside the folder (no symbolic link out, no pipe)
    let real = std::fs::canonicalize(folder.join(path)).ok()?;
    if !real.starts_with(std::fs::canonicalize(folder).ok()?) || !std::fs::metadata(&real).ok()?.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    let file = std::fs::File::open(real).ok()?;
    std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_WARMUP_REQUEST_BYTES as u64 + 1), &mut bytes).ok()?;
    (bytes.len() <= MAX_WARMUP_REQUEST_BYTES).then(|| String::from_utf8(bytes).ok()).flatten()
}

async fn read_model(folder: &Path) -> Result<FolderModel, ManageError> {
    let folder = folder.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let config = match std::fs::read_to_string(folder.join("config.toml")) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(ManageError::Invalid(format!("cannot read {}/config.toml: {e}", folder.display()))),
        };
        // Warmup files first: a config still naming one does not parse (its labels would be lost).
        let config = inline_warmup_files(&config, &folder);
        // A config that does not parse is stored as it is: the model then shows why it is unavailable.
        let labels = ModelConfig::parse(&config, "config.toml")
            .ok()
            .and_then(|c| c.labels)
            .and_then(|file| std::fs::read_to_string(folder.join(file)).ok());
        let versions = version_folders(&folder).map_err(|source| SourceError::Io {
            action: "list",
            path: folder.clone(),
            source,
        })?;
        let files = versions
            .into_iter()
            .map(|v| read_version_file(&folder, v).map(|bytes| (v, bytes)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((config, labels, files))
    })
    .await
    .map_err(SourceError::from)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_files_are_inlined_as_requests_and_unreadable_ones_stay_files() {
        let dir = std::env::temp_dir().join(format!("lectern-warmup-import-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let request = r#"{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}"#;
        std::fs::write(dir.join("sample.json"), request).unwrap();
        std::fs::write(dir.join("big.json"), vec![b' '; MAX_WARMUP_REQUEST_BYTES + 1]).unwrap();
        let outside = std::env::temp_dir().join(format!("lectern-warmup-outside-{}.json", std::process::id()));
        std::fs::write(&outside, request).unwrap();
        let _ = std::fs::remove_file(dir.join("link.json"));
        std::os::unix::fs::symlink(&outside, dir.join("link.json")).unwrap();
        let config = "max_batch_size = 4\n[[warmup]]\nfile = \"sample.json\"\ncount = 2\n[[warmup]]\ninputs = \"zeros\"\n\
                      [[warmup]]\nfile = \"missing.json\"\n[[warmup]]\nfile = \"../sample.json\"\n[[warmup]]\nfile = \"big.json\"\n[[warmup]]\nfile = \"link.json\"\n";
        let inlined = inline_warmup_files(config, &dir);
        let parsed = ModelConfig::parse(&inlined.replace("file = ", "# file = "), "config.toml").unwrap();
        assert_eq!(parsed.warmup[0].request.as_deref(), Some(request));
        assert_eq!(parsed.warmup[0].count, 2);
        assert_eq!(parsed.warmup[1].request, None);
        let table: toml::Table = inlined.parse().unwrap();
        let files: Vec<&str> =
            table["warmup"].as_array().unwrap().iter().filter_map(|w| w.get("file")?.as_str()).collect();
        assert_eq!(files, ["missing.json", "../sample.json", "big.json", "link.json"]);
        let refused = ModelConfig::parse(&inlined, "config.toml").unwrap_err().to_string();
        assert!(refused.contains("'missing.json' was not read"), "{refused}");
        // no file, or not TOML: the text as written
        assert_eq!(inline_warmup_files("max_batch_size = 4 # kept\n", &dir), "max_batch_size = 4 # kept\n");
        assert_eq!(inline_warmup_files("not toml [", &dir), "not toml [");
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_file(&outside).unwrap();
    }

    #[test]
    fn the_stored_config_has_no_labels_file_and_keeps_everything_else() {
        let stored = store_config(
            "labels = \"labels.txt\"\nmax_batch_size = 16\n[image]\nwidth = 8\nheight = 8\nmode = \"gray\"\n",
        );
        let table: toml::Table = stored.parse().unwrap();
        assert!(!table.contains_key("labels"), "{stored}");
        assert_eq!(table["max_batch_size"].as_integer(), Some(16));
        assert_eq!(table["image"]["mode"].as_str(), Some("gray"));
        ModelConfig::parse(&stored, "stored").unwrap();
        // Without labels, or not TOML at all: the text as it was.
        let plain = "# the batch\nmax_batch_size = 4\n";
        assert_eq!(store_config(plain), plain);
        assert_eq!(store_config("max_batch_size = ["), "max_batch_size = [");
    }
}
