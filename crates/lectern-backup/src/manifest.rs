//! `manifest.json`: what a backup holds, with each file's size and SHA-256. Written last, so a
//! backup without one did not finish.

use lectern_store::snapshot;
use lectern_store::DatabaseKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The manifest's file name.
pub const MANIFEST: &str = "manifest.json";
/// The layout this build writes and reads.
pub const FORMAT: u32 = 1;
/// Where the objects go, under their own keys.
pub const OBJECTS_PREFIX: &str = "objects/";
/// The database file of a SQLite backup.
pub const SQLITE_FILE: &str = "database.sqlite";
/// The database file of a PostgreSQL backup.
pub const JSONL_FILE: &str = "database.jsonl";

/// The database file of a backup of `kind`.
pub fn database_file(kind: DatabaseKind) -> &'static str {
    match kind {
        DatabaseKind::Sqlite => SQLITE_FILE,
        DatabaseKind::Postgres => JSONL_FILE,
    }
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    /// The version of the lectern that wrote it.
    pub lectern: String,
    pub created_at_ms: i64,
    /// `sqlite` or `postgres`.
    pub engine: String,
    pub schema_version: i64,
    /// Every file but the manifest, by path.
    pub files: Vec<FileEntry>,
}

/// One file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Relative to the backup's root, `/`-separated.
    pub path: String,
    pub size: u64,
    /// Lower-case hex.
    pub sha256: String,
}

impl Manifest {
    /// Reads and checks a manifest: its format, its engine, its schema version, and paths that
    /// are the database file or objects, each once, with well-formed checksums.
    pub fn parse(bytes: &[u8]) -> Result<(Manifest, DatabaseKind), String> {
        let manifest: Manifest = serde_json::from_slice(bytes).map_err(|e| format!("it is not a manifest: {e}"))?;
        if manifest.format != FORMAT {
            return Err(format!("its format is {}, this lectern reads format {FORMAT}", manifest.format));
        }
        let kind = match manifest.engine.as_str() {
            "sqlite" => DatabaseKind::Sqlite,
            "postgres" => DatabaseKind::Postgres,
            other => return Err(format!("unknown engine '{other}'")),
        };
        let known = snapshot::schema_version();
        if manifest.schema_version < 1 {
            return Err(format!("schema version {} is not one", manifest.schema_version));
        }
        if manifest.schema_version > known {
            return Err(format!(
                "the backup has schema version {}, newer than this lectern knows ({known}): restore it with a newer lectern",
                manifest.schema_version
            ));
        }
        let database = database_file(kind);
        let mut seen = BTreeSet::new();
        for file in &manifest.files {
            if !seen.insert(file.path.as_str()) {
                return Err(format!("{} is listed twice", file.path));
            }
            let is_object = file.path.strip_prefix(OBJECTS_PREFIX).is_some_and(valid_key);
            if file.path != database && !is_object {
                return Err(format!("{} is neither the {} file nor an object", file.path, manifest.engine));
            }
            if file.sha256.len() != 64 || !file.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(format!("the SHA-256 of {} is not 64 lower-case hex digits", file.path));
            }
        }
        if !seen.contains(database) {
            return Err(format!("it lists no {database}"));
        }
        Ok((manifest, kind))
    }

    /// The entry of a path.
    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.path == path)
    }
}

/// An object key a backup may hold: relative, `/`-separated, no empty, `.` or `..` part.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.split('/').all(|part| !part.is_empty() && part != "." && part != ".." && !part.contains('\\'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(files: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "format": 1, "lectern": "0.1.0", "created_at_ms": 1, "engine": "sqlite", "schema_version": 1,
            "files": files,
        }))
        .unwrap()
    }

    #[test]
    fn manifests_are_checked() {
        let sha = "a".repeat(64);
        let good = manifest(serde_json::json!([
            {"path": "database.sqlite", "size": 1, "sha256": sha},
            {"path": "objects/models/m/x.onnx", "size": 2, "sha256": sha},
        ]));
        let (m, kind) = Manifest::parse(&good).unwrap();
        assert_eq!((kind, m.files.len()), (DatabaseKind::Sqlite, 2));
        for (files, why) in [
            (serde_json::json!([]), "lists no database.sqlite"),
            (serde_json::json!([{"path": "database.jsonl", "size": 1, "sha256": sha}]), "neither"),
            (serde_json::json!([{"path": "objects/../etc/passwd", "size": 1, "sha256": sha}]), "neither"),
            (serde_json::json!([{"path": "objects//x", "size": 1, "sha256": sha}]), "neither"),
            (serde_json::json!([{"path": "database.sqlite", "size": 1, "sha256": "ABC"}]), "hex"),
            (
                serde_json::json!([{"path": "database.sqlite", "size": 1, "sha256": sha},
                                   {"path": "database.sqlite", "size": 1, "sha256": sha}]),
                "twice",
            ),
        ] {
            let err = Manifest::parse(&manifest(files)).unwrap_err();
            assert!(err.contains(why), "{err}");
        }
        assert!(Manifest::parse(b"{\"format\": 1").unwrap_err().contains("not a manifest"));
        let mut newer: serde_json::Value = serde_json::from_slice(&good).unwrap();
        newer["schema_version"] = serde_json::json!(snapshot::schema_version() + 1);
        assert!(Manifest::parse(&serde_json::to_vec(&newer).unwrap()).unwrap_err().contains("newer"));
        newer["format"] = serde_json::json!(2);
        assert!(Manifest::parse(&serde_json::to_vec(&newer).unwrap()).unwrap_err().contains("format"));
    }
}
