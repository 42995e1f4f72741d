//! Backups of a Lectern deployment, and their restore (`lectern backup`, `lectern restore`).
//!
//! A backup is a folder, or a prefix of an S3 bucket, holding:
//! - `database.sqlite` or `database.jsonl`: a consistent snapshot of the database, taken while
//!   the server keeps serving and writing (`lectern_store::snapshot`);
//! - `objects/<key>`: every object of the object store that the snapshot's rows name (model
//!   artifacts, dataset files), each checked against the SHA-256 its row states;
//! - `manifest.json`, written last: the format, the lectern version, the engine, the schema
//!   version, and every file with its size and SHA-256 ([`manifest`]).
//!
//! A restore checks the manifest and every file (size and SHA-256), and that every object the
//! snapshot names is there with the checksum its row states, before it touches anything; it
//! refuses a target database that holds rows unless forced; it then writes the objects (each
//! checked again as it is written, and only made visible when it matches) and replaces the
//! database in one transaction. When anything fails, the objects it wrote are removed again.

pub mod manifest;

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use lectern_manage::{ManageError, Objects, UploadError};
use lectern_store::hex;
use lectern_store::snapshot::{self, ObjectRef, SnapshotError, SnapshotInfo, TakeError};
use lectern_store::DatabaseKind;
use manifest::{database_file, FileEntry, Manifest, MANIFEST, OBJECTS_PREFIX};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Snapshots taken before giving up when objects keep disappearing under a backup (each one
/// deleted, with its rows, after the snapshot that named it).
const ATTEMPTS: u32 = 5;
/// Local objects opened at once, ahead of their copy.
const OPEN_AHEAD: usize = 128;
/// A file written and removed first, to find out at once that the backup location cannot be
/// written.
const PROBE: &str = ".lectern-backup-probe";

/// What can go wrong backing up or restoring.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The backup location cannot be used (not writable, not empty, not there).
    #[error("{0}")]
    Location(String),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The object store (Lectern's, or the backup's on S3) failed.
    #[error("{0}")]
    Objects(String),
    /// An object the database names is missing or does not have its SHA-256.
    #[error("{0}")]
    Source(String),
    /// The backup is incomplete or altered: every problem found.
    #[error("the backup at {place} does not verify, nothing was restored: {}", .problems.join("; "))]
    Unverified { place: String, problems: Vec<String> },
    #[error("{0}")]
    Io(String),
}

/// What a backup wrote.
#[derive(Debug, Clone)]
pub struct BackupReport {
    pub snapshot: SnapshotInfo,
    /// Objects copied, and their bytes.
    pub objects: usize,
    pub object_bytes: u64,
    pub database_bytes: u64,
    /// Snapshots taken (more than one when objects disappeared under the first).
    pub attempts: u32,
    pub seconds: f64,
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    pub manifest: Manifest,
    pub snapshot: SnapshotInfo,
    /// Objects in the backup, those written (the others were in the store already with their
    /// content), and the bytes written.
    pub objects: usize,
    pub objects_written: usize,
    pub bytes_written: u64,
    pub seconds: f64,
}

/// A backup location: a folder (`DIR` or `file://DIR`) or `s3://BUCKET/PREFIX`.
struct Location {
    objects: Objects,
    name: String,
}

impl Location {
    fn open(place: &str) -> Result<Self, BackupError> {
        let objects = Objects::open(place)
            .map_err(|e| BackupError::Location(format!("cannot use the backup location {place}: {}", message(e))))?;
        Ok(Location { objects, name: place.to_string() })
    }

    fn local_file(&self, path: &str) -> Option<PathBuf> {
        self.objects.local_root().map(|root| root.join(path))
    }
}

/// An error's text without the `object store: ` prefix of `ManageError::Objects`.
fn message(e: ManageError) -> String {
    match e {
        ManageError::Objects(m) => m,
        other => other.to_string(),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A folder of its own under the system's temporary folder, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Result<Self, BackupError> {
        let dir = std::env::temp_dir().join(format!("lectern-{what}-{}-{}", std::process::id(), now_ms()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| BackupError::Io(format!("cannot create a temporary folder {}: {e}", dir.display())))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A stream of an object's bytes that fails at its end (so that an upload of it is aborted,
/// never completed) unless the bytes have the expected size and SHA-256.
fn checked(
    body: BoxStream<'static, Result<Bytes, ManageError>>,
    expected_sha256: Option<String>,
    expected_size: Option<u64>,
    what: String,
) -> BoxStream<'static, Result<Bytes, String>> {
    let state = Some((body, Sha256::new(), 0u64));
    futures_util::stream::unfold(state, move |state| {
        let (expected_sha256, expected_size, what) = (expected_sha256.clone(), expected_size, what.clone());
        async move {
            let (mut body, mut hasher, mut size) = state?;
            match body.next().await {
                Some(Ok(chunk)) => {
                    hasher.update(&chunk);
                    size += chunk.len() as u64;
                    Some((Ok(chunk), Some((body, hasher, size))))
                }
                Some(Err(e)) => Some((Err(format!("cannot read {what}: {}", message(e))), None)),
                None => {
                    if let Some(expected) = expected_size.filter(|&e| e != size) {
                        return Some((Err(format!("{what} has {size} bytes, {expected} were expected")), None));
                    }
                    let actual = hex(&hasher.finalize());
                    match expected_sha256 {
                        Some(expected) if expected != actual => {
                            Some((Err(format!("{what} has SHA-256 {actual}, {expected} was expected")), None))
                        }
                        _ => None,
                    }
                }
            }
        }
    })
    .boxed()
}

/// Size and SHA-256 of a stream, read to its end.
async fn digest(mut body: BoxStream<'static, Result<Bytes, ManageError>>) -> Result<(u64, String), ManageError> {
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        hasher.update(&chunk);
        size += chunk.len() as u64;
    }
    Ok((size, hex(&hasher.finalize())))
}

/// Size and SHA-256 of a local file.
async fn file_digest(path: &Path) -> Result<(u64, String), BackupError> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| BackupError::Io(format!("cannot read {}: {e}", path.display())))?;
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20)
        .map(|c| c.map_err(|e| ManageError::Objects(e.to_string())))
        .boxed();
    digest(stream).await.map_err(|e| BackupError::Io(format!("cannot read {}: {}", path.display(), message(e))))
}

/// A local file as a stream.
async fn file_stream(path: &Path) -> Result<BoxStream<'static, Result<Bytes, ManageError>>, BackupError> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| BackupError::Io(format!("cannot read {}: {e}", path.display())))?;
    Ok(tokio_util::io::ReaderStream::with_capacity(file, 1 << 20)
        .map(|c| c.map_err(|e| ManageError::Objects(e.to_string())))
        .boxed())
}

/// Writes a stream to `key`, completing the write only when it has the expected checksum (the
/// caller flushes a local file to disk with `Objects::sync`).
async fn write_checked(
    objects: &Objects,
    key: &str,
    body: BoxStream<'static, Result<Bytes, ManageError>>,
    expected_sha256: Option<String>,
    expected_size: Option<u64>,
    what: String,
    place: &str,
) -> Result<lectern_manage::Stored, BackupError> {
    let stored = objects.put_stream(key, checked(body, expected_sha256, expected_size, what), u64::MAX).await;
    let stored = stored.map_err(|e| match e {
        UploadError::Body(m) => BackupError::Source(m),
        UploadError::Store(e) => BackupError::Objects(format!("cannot write {key} to {place}: {}", message(e))),
        UploadError::TooLarge(_) => unreachable!("no limit"),
    })?;
    Ok(stored)
}

// ------------------------------------------------------------------------------------ backup

/// Backs up the database at `database` and the objects it names from the object store at
/// `objects` to `to`, which must be empty (or not exist yet). On failure what was written is
/// removed again.
pub async fn backup(database: &str, objects: &str, to: &str) -> Result<BackupReport, BackupError> {
    let started = Instant::now();
    let kind = snapshot::engine(database).map_err(SnapshotError::from)?;
    let local = !to.starts_with("s3://");
    let folder = local.then(|| PathBuf::from(to.strip_prefix("file://").unwrap_or(to)));
    let created = folder.as_ref().is_some_and(|f| !f.exists());
    let target = Location::open(to)?;
    let holds_files = match &folder {
        Some(folder) => std::fs::read_dir(folder)
            .map_err(|e| BackupError::Location(format!("cannot use the backup location {to}: {e}")))?
            .next()
            .is_some(),
        None => target
            .objects
            .holds_any()
            .await
            .map_err(|e| BackupError::Location(format!("cannot use the backup location {to}: {}", message(e))))?,
    };
    if holds_files {
        return Err(BackupError::Location(format!(
            "the backup location {to} is not empty: back up into a new folder or prefix"
        )));
    }
    let mut written = Written { target: &target, keys: Vec::new(), folder: folder.map(|f| (f, created)) };
    let outcome = backup_into(database, objects, kind, &target, &mut written).await;
    match outcome {
        Ok(mut report) => {
            report.seconds = started.elapsed().as_secs_f64();
            Ok(report)
        }
        Err(e) => {
            written.undo().await;
            Err(e)
        }
    }
}

/// What a backup wrote, removed again when it fails.
struct Written<'a> {
    target: &'a Location,
    /// The keys written (on S3).
    keys: Vec<String>,
    /// A backup folder, and whether the backup created it (else it was empty).
    folder: Option<(PathBuf, bool)>,
}

impl Written<'_> {
    async fn undo(&mut self) {
        if let Some((folder, created)) = self.folder.take() {
            if created {
                let _ = std::fs::remove_dir_all(folder);
            } else if let Ok(entries) = std::fs::read_dir(&folder) {
                for entry in entries.flatten() {
                    let path = entry.path();
                    let _ = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
                }
            }
            return;
        }
        for key in self.keys.drain(..) {
            if let Err(e) = self.target.objects.delete(&key).await {
                tracing::warn!(key, error = %e, "cannot remove a file of a failed backup");
            }
        }
    }
}

async fn backup_into(
    database: &str,
    objects: &str,
    kind: DatabaseKind,
    target: &Location,
    written: &mut Written<'_>,
) -> Result<BackupReport, BackupError> {
    let place = target.name.as_str();
    // The location must take a file before anything else is done.
    written.keys.push(PROBE.to_string());
    target
        .objects
        .put(PROBE, Bytes::new())
        .await
        .map_err(|e| BackupError::Location(format!("cannot write to the backup location {place}: {}", message(e))))?;
    target.objects.delete(PROBE).await.map_err(|e| BackupError::Location(message(e)))?;
    written.keys.pop();

    let database_name = database_file(kind);
    // The snapshot is written in place in a backup folder, else in a temporary one and then
    // uploaded.
    let scratch = if target.objects.local_root().is_some() { None } else { Some(Scratch::new("backup")?) };
    let snapshot_file = match &scratch {
        Some(scratch) => scratch.0.join(database_name),
        None => target.local_file(database_name).expect("a local backup folder"),
    };
    if scratch.is_none() {
        written.keys.push(database_name.to_string());
    }
    let mut copied: BTreeMap<String, FileEntry> = BTreeMap::new();
    let mut source: Option<Objects> = None;
    let mut attempts = 0;
    let info = loop {
        attempts += 1;
        // The objects are copied as soon as the snapshot names them, before its database is.
        let (source, copied, keys) = (&mut source, &mut copied, &mut written.keys);
        let taken = snapshot::take_with_objects(database, &snapshot_file, move |named| {
            copy_objects(source, objects, target, named, copied, keys)
        })
        .await;
        match taken {
            Ok(info) => break info,
            Err(TakeError::Objects(Copy::Vanished(key))) if attempts < ATTEMPTS => {
                tracing::warn!(key, "an object was deleted after the snapshot named it: taking a new snapshot");
                eprintln!(
                    "warning: object {key}, which the snapshot names, is not in the object store \
                     (deleted since, with its rows?): taking a new snapshot"
                );
            }
            Err(TakeError::Objects(Copy::Vanished(key))) => {
                return Err(BackupError::Source(format!(
                    "object {key}, which the database names, is not in the object store \
                     (after {attempts} snapshots: objects keep being deleted, or the store lost it)"
                )))
            }
            Err(TakeError::Objects(Copy::Failed(e))) => return Err(e),
            Err(TakeError::Snapshot(e)) => return Err(e.into()),
        }
    };
    // Every copied file on disk before the manifest says the backup is whole.
    for path in copied.keys() {
        target
            .objects
            .sync(path)
            .map_err(|e| BackupError::Objects(format!("cannot write {path} to {place}: {}", message(e))))?;
    }
    // Objects copied for an earlier snapshot that this one does not name.
    let named: std::collections::BTreeSet<String> =
        info.objects.iter().map(|o| format!("{OBJECTS_PREFIX}{}", o.key)).collect();
    for path in copied.keys().filter(|p| !named.contains(*p)).cloned().collect::<Vec<_>>() {
        target.objects.delete(&path).await.map_err(|e| BackupError::Objects(message(e)))?;
        copied.remove(&path);
    }
    let database_entry = match &scratch {
        None => {
            target.objects.sync(database_name).map_err(|e| BackupError::Objects(message(e)))?;
            let (size, sha256) = file_digest(&snapshot_file).await?;
            FileEntry { path: database_name.to_string(), size, sha256 }
        }
        Some(_) => {
            written.keys.push(database_name.to_string());
            let body = file_stream(&snapshot_file).await?;
            let what = format!("the snapshot {}", snapshot_file.display());
            let stored = write_checked(&target.objects, database_name, body, None, None, what, place).await?;
            FileEntry { path: database_name.to_string(), size: stored.size, sha256: stored.sha256 }
        }
    };
    let mut files: Vec<FileEntry> = copied.values().cloned().collect();
    let (objects_count, object_bytes) = (files.len(), files.iter().map(|f| f.size).sum());
    let database_bytes = database_entry.size;
    files.push(database_entry);
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let manifest = Manifest {
        format: manifest::FORMAT,
        lectern: env!("CARGO_PKG_VERSION").to_string(),
        created_at_ms: now_ms(),
        engine: snapshot::engine_name(kind).to_string(),
        schema_version: info.schema_version,
        files,
    };
    let text = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
    written.keys.push(MANIFEST.to_string());
    target
        .objects
        .put(MANIFEST, Bytes::from(text))
        .await
        .map_err(|e| BackupError::Objects(format!("cannot write {MANIFEST} to {place}: {}", message(e))))?;
    Ok(BackupReport { snapshot: info, objects: objects_count, object_bytes, database_bytes, attempts, seconds: 0.0 })
}

/// Why copying a snapshot's objects stopped.
enum Copy {
    /// The object is gone: deleted (with the rows naming it) after the snapshot was taken.
    Vanished(String),
    Failed(BackupError),
}

impl From<BackupError> for Copy {
    fn from(e: BackupError) -> Self {
        Copy::Failed(e)
    }
}

async fn copy_objects(
    source: &mut Option<Objects>,
    objects: &str,
    target: &Location,
    named: Vec<ObjectRef>,
    copied: &mut BTreeMap<String, FileEntry>,
    written: &mut Vec<String>,
) -> Result<(), Copy> {
    // Opened once there is a database (a local store's folder would be created).
    if source.is_none() {
        let opened =
            Objects::open(objects).map_err(|e| BackupError::Objects(format!("the object store: {}", message(e))))?;
        *source = Some(opened);
    }
    let source = source.as_ref().expect("opened");
    let mut needed = Vec::new();
    for object in named {
        let path = format!("{OBJECTS_PREFIX}{}", object.key);
        if !manifest::valid_key(&object.key) {
            return Err(Copy::Failed(BackupError::Source(format!(
                "table {} names an object key that cannot be a file name: {:?}",
                object.table, object.key
            ))));
        }
        // Copied for an earlier snapshot (keys are content-addressed; the checksum says so).
        if copied.get(&path).is_some_and(|f| object.sha256.as_ref().is_none_or(|s| *s == f.sha256)) {
            continue;
        }
        needed.push((path, object));
    }
    // Local files are opened by the hundred before they are read: an open file stays readable
    // when it is deleted, so deletions after that cannot take it from the backup. S3 objects
    // are read one at a time.
    let batch = if source.local_root().is_some() { OPEN_AHEAD } else { 1 };
    for chunk in needed.chunks(batch) {
        let mut bodies = Vec::with_capacity(chunk.len());
        for (_, object) in chunk {
            let body = source
                .get_stream(&object.key)
                .await
                .map_err(|e| BackupError::Objects(format!("the object store: {}", message(e))))?;
            let Some(body) = body else {
                return Err(Copy::Vanished(object.key.clone()));
            };
            bodies.push(body);
        }
        for ((path, object), body) in chunk.iter().zip(bodies) {
            let what = format!("object {} (named in table {})", object.key, object.table);
            written.push(path.clone());
            let stored =
                write_checked(&target.objects, path, body, object.sha256.clone(), None, what, &target.name).await?;
            copied.insert(path.clone(), FileEntry { path: path.clone(), size: stored.size, sha256: stored.sha256 });
        }
    }
    Ok(())
}

// ----------------------------------------------------------------------------------- restore

/// Restores the backup at `from` into the database at `database` and the object store at
/// `objects`. Every file is checked before anything is touched; a target database holding
/// rows is refused unless `force`.
pub async fn restore(database: &str, objects: &str, from: &str, force: bool) -> Result<RestoreReport, BackupError> {
    let started = Instant::now();
    let kind = snapshot::engine(database).map_err(SnapshotError::from)?;
    if !from.starts_with("s3://") {
        let folder = Path::new(from.strip_prefix("file://").unwrap_or(from));
        if !folder.is_dir() {
            return Err(BackupError::Location(format!("there is no backup at {from}: no such folder")));
        }
    }
    let backup = Location::open(from)?;
    let place = backup.name.as_str();

    // The manifest.
    let manifest_bytes = match backup.objects.get_stream(MANIFEST).await {
        Ok(Some(body)) => read_all(body)
            .await
            .map_err(|e| BackupError::Location(format!("cannot read {MANIFEST} at {place}: {}", message(e))))?,
        Ok(None) => {
            return Err(BackupError::Unverified {
                place: place.to_string(),
                problems: vec![format!("there is no {MANIFEST} (not a backup, or one that did not finish)")],
            })
        }
        Err(e) => return Err(BackupError::Location(format!("cannot read the backup at {place}: {}", message(e)))),
    };
    let unverified = |problems: Vec<String>| BackupError::Unverified { place: place.to_string(), problems };
    let (manifest, backup_kind) =
        Manifest::parse(&manifest_bytes).map_err(|why| unverified(vec![format!("{MANIFEST}: {why}")]))?;
    if backup_kind != kind {
        return Err(BackupError::Location(format!(
            "the backup at {place} is of a {} database and cannot be restored into a {} one",
            snapshot::engine_name(backup_kind),
            snapshot::engine_name(kind)
        )));
    }

    // Every file, before anything is touched; the database file is kept aside meanwhile.
    let scratch = Scratch::new("restore")?;
    let database_name = database_file(kind);
    let snapshot_file = scratch.0.join(database_name);
    let mut problems = Vec::new();
    for file in &manifest.files {
        let body = match backup.objects.get_stream(&file.path).await {
            Ok(Some(body)) => body,
            Ok(None) => {
                problems.push(format!("{} is missing", file.path));
                continue;
            }
            Err(e) => {
                return Err(BackupError::Location(format!("cannot read {} at {place}: {}", file.path, message(e))))
            }
        };
        let found = if file.path == database_name {
            save(body, &snapshot_file).await
        } else {
            digest(body)
                .await
                .map_err(|e| BackupError::Location(format!("cannot read {} at {place}: {}", file.path, message(e))))
        };
        let (size, sha256) = found?;
        if size != file.size {
            problems.push(format!(
                "{} has {size} bytes, the manifest says {} (truncated or altered)",
                file.path, file.size
            ));
        } else if sha256 != file.sha256 {
            problems.push(format!("{} does not have the SHA-256 the manifest gives (altered)", file.path));
        }
    }
    if !problems.is_empty() {
        return Err(unverified(problems));
    }
    // The snapshot reads, is of the manifest's schema version, and every object it names is
    // in the backup with the checksum its row states.
    let info =
        snapshot::inspect(kind, &snapshot_file).await.map_err(|e| unverified(vec![format!("{database_name}: {e}")]))?;
    if info.schema_version != manifest.schema_version {
        problems.push(format!(
            "{database_name} has schema version {}, the manifest says {}",
            info.schema_version, manifest.schema_version
        ));
    }
    for object in &info.objects {
        let path = format!("{OBJECTS_PREFIX}{}", object.key);
        match (manifest.file(&path), &object.sha256) {
            (None, _) => problems.push(format!("{path} is not in the backup, but table {} names it", object.table)),
            (Some(entry), Some(sha256)) if entry.sha256 != *sha256 => {
                problems.push(format!("{path} does not have the SHA-256 that table {} gives it", object.table))
            }
            _ => {}
        }
    }
    if !problems.is_empty() {
        return Err(unverified(problems));
    }

    // The target.
    if !force {
        let held = snapshot::occupied(database).await?;
        if !held.is_empty() {
            return Err(SnapshotError::NotEmpty(held).into());
        }
    }
    let local_objects =
        (!objects.starts_with("s3://")).then(|| PathBuf::from(objects.strip_prefix("file://").unwrap_or(objects)));
    let root_existed = local_objects.as_ref().is_none_or(|root| root.exists());
    let store =
        Objects::open(objects).map_err(|e| BackupError::Objects(format!("the object store: {}", message(e))))?;
    let mut new_keys = Vec::new();
    let outcome = restore_into(database, kind, &snapshot_file, force, &manifest, &backup, &store, &mut new_keys).await;
    match outcome {
        Ok((snapshot, written, bytes)) => Ok(RestoreReport {
            objects: manifest.files.len() - 1,
            objects_written: written,
            bytes_written: bytes,
            manifest,
            snapshot,
            seconds: started.elapsed().as_secs_f64(),
        }),
        Err(e) => {
            for key in &new_keys {
                if let Err(e) = store.delete(key).await {
                    tracing::warn!(key, error = %e, "cannot remove an object of a failed restore");
                }
            }
            if let Some(root) = store.local_root() {
                prune(root, &new_keys, !root_existed);
            }
            Err(e)
        }
    }
}

/// Removes the folders of a local object store that removed objects leave empty (and the
/// store's own folder when it was made for them).
fn prune(root: &Path, keys: &[String], with_root: bool) {
    for key in keys {
        let mut folder = root.join(key);
        while folder.pop() && folder.starts_with(root) && folder != root {
            if std::fs::remove_dir(&folder).is_err() {
                break;
            }
        }
    }
    if with_root {
        let _ = std::fs::remove_dir(root);
    }
}

#[allow(clippy::too_many_arguments)]
async fn restore_into(
    database: &str,
    kind: DatabaseKind,
    snapshot_file: &Path,
    force: bool,
    manifest: &Manifest,
    backup: &Location,
    store: &Objects,
    new_keys: &mut Vec<String>,
) -> Result<(SnapshotInfo, usize, u64), BackupError> {
    let (mut written, mut bytes) = (0, 0);
    for file in manifest.files.iter().filter(|f| f.path.starts_with(OBJECTS_PREFIX)) {
        let key = &file.path[OBJECTS_PREFIX.len()..];
        let existing =
            store.size(key).await.map_err(|e| BackupError::Objects(format!("the object store: {}", message(e))))?;
        if existing == Some(file.size) {
            // Already there (a restore into the store the backup came from): kept when its
            // content is the backup's.
            let body = store.get_stream(key).await.map_err(|e| BackupError::Objects(message(e)))?;
            if let Some(body) = body {
                if digest(body).await.map_err(|e| BackupError::Objects(message(e)))?.1 == file.sha256 {
                    continue;
                }
            }
        }
        let body =
            backup.objects.get_stream(&file.path).await.map_err(|e| BackupError::Location(message(e)))?.ok_or_else(
                || BackupError::Source(format!("{} disappeared from the backup while restoring", file.path)),
            )?;
        if existing.is_none() {
            new_keys.push(key.to_string());
        }
        let what = format!("{} of the backup", file.path);
        write_checked(store, key, body, Some(file.sha256.clone()), Some(file.size), what, "the object store").await?;
        store.sync(key).map_err(|e| BackupError::Objects(format!("cannot write {key}: {}", message(e))))?;
        written += 1;
        bytes += file.size;
    }
    let info = snapshot::restore(database, kind, snapshot_file, force).await?;
    Ok((info, written, bytes))
}

/// Reads a (small) stream whole.
async fn read_all(mut body: BoxStream<'static, Result<Bytes, ManageError>>) -> Result<Vec<u8>, ManageError> {
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// Writes a stream to a local file; its size and SHA-256.
async fn save(
    mut body: BoxStream<'static, Result<Bytes, ManageError>>,
    file: &Path,
) -> Result<(u64, String), BackupError> {
    use tokio::io::AsyncWriteExt;
    let fail = |e: String| BackupError::Io(format!("cannot write {}: {e}", file.display()));
    let mut out = tokio::fs::File::create(file).await.map_err(|e| fail(e.to_string()))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| BackupError::Location(format!("cannot read the backup: {}", message(e))))?;
        hasher.update(&chunk);
        size += chunk.len() as u64;
        out.write_all(&chunk).await.map_err(|e| fail(e.to_string()))?;
    }
    out.flush().await.map_err(|e| fail(e.to_string()))?;
    Ok((size, hex(&hasher.finalize())))
}
