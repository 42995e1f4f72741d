//! A sentence-transformers folder as one artifact: a tar archive of the files an encoder needs,
//! packed the same way every time (sorted entries, no timestamps or owners), so that the same
//! folder gives the same bytes and checksum.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// The weights file that marks a version folder as an encoder (with `tokenizer.json`).
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The tokenizer file an encoder folder must have.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// The files of a bundle by their path inside it (`/`-separated).
pub type Files = BTreeMap<String, Vec<u8>>;

/// True when `folder` holds an encoder: the weights and the tokenizer.
pub fn is_encoder_folder(folder: &Path) -> bool {
    folder.join(WEIGHTS_FILE).is_file() && folder.join(TOKENIZER_FILE).is_file()
}

/// True when `bytes` start like a tar archive (the `ustar` magic of the first header).
pub fn is_bundle(bytes: &[u8]) -> bool {
    bytes.len() >= 512 && &bytes[257..262] == b"ustar"
}

/// The paths of the folder's files that a bundle carries: the weights, the top-level `.json`
/// and `.txt` files, and the `config.json` of each module folder (`1_Pooling/`, ...).
pub fn bundle_paths(folder: &Path) -> std::io::Result<Vec<String>> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(folder)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let kind = entry.file_type()?;
        if kind.is_file() && (name == WEIGHTS_FILE || name.ends_with(".json") || name.ends_with(".txt")) {
            paths.push(name);
        } else if kind.is_dir() && is_module_folder(&name) && entry.path().join("config.json").is_file() {
            paths.push(format!("{name}/config.json"));
        }
    }
    paths.sort();
    Ok(paths)
}

/// Module folders of sentence-transformers are named `<index>_<Kind>` (`1_Pooling`).
fn is_module_folder(name: &str) -> bool {
    name.split_once('_')
        .is_some_and(|(index, kind)| !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()) && !kind.is_empty())
}

/// Packs an encoder folder into a bundle.
pub fn pack_folder(folder: &Path) -> std::io::Result<Vec<u8>> {
    let mut files = Files::new();
    for path in bundle_paths(folder)? {
        let bytes = std::fs::read(folder.join(&path))?;
        files.insert(path, bytes);
    }
    pack(&files)
}

/// Packs files into a bundle, in path order, with fixed metadata.
pub fn pack(files: &Files) -> std::io::Result<Vec<u8>> {
    let size: usize = files.values().map(|b| b.len() + 1024).sum();
    let mut builder = tar::Builder::new(Vec::with_capacity(size + 1024));
    for (path, bytes) in files {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, path, bytes.as_slice())?;
    }
    builder.into_inner()
}

/// The regular files of a bundle. Paths that are absolute or climb out (`..`) are refused.
pub fn unpack(bytes: &[u8]) -> Result<Files, String> {
    let mut files = Files::new();
    let mut archive = tar::Archive::new(bytes);
    let entries = archive.entries().map_err(|e| format!("not a readable tar archive: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("not a readable tar archive: {e}"))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().map_err(|e| format!("a bad path in the archive: {e}"))?;
        let path = path.to_string_lossy().trim_start_matches("./").to_string();
        if path.starts_with('/') || path.split('/').any(|part| part == "..") {
            return Err(format!("the archive holds a path outside its folder: {path}"));
        }
        let mut data = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut data).map_err(|e| format!("cannot read {path} from the archive: {e}"))?;
        files.insert(path, data);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_files_pack_to_the_same_bytes_and_unpack_back() {
        let mut files = Files::new();
        files.insert("config.json".into(), b"{}".to_vec());
        files.insert("1_Pooling/config.json".into(), b"{\"pooling_mode_mean_tokens\": true}".to_vec());
        let packed = pack(&files).unwrap();
        assert!(is_bundle(&packed));
        assert_eq!(packed, pack(&files).unwrap());
        assert_eq!(unpack(&packed).unwrap(), files);
        assert!(!is_bundle(b"\x08\x01onnx"));
    }

    #[test]
    fn a_folder_packs_its_weights_configs_and_module_configs_only() {
        let dir = std::env::temp_dir().join(format!("lectern-bundle-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
        std::fs::create_dir_all(dir.join("onnx")).unwrap();
        for (path, text) in [
            ("model.safetensors", "w"),
            ("tokenizer.json", "t"),
            ("vocab.txt", "v"),
            ("pytorch_model.bin", "big"),
            ("1_Pooling/config.json", "p"),
            ("onnx/model.onnx", "o"),
        ] {
            std::fs::write(dir.join(path), text).unwrap();
        }
        assert!(is_encoder_folder(&dir));
        let paths = bundle_paths(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(paths, ["1_Pooling/config.json", "model.safetensors", "tokenizer.json", "vocab.txt"]);
    }
}
