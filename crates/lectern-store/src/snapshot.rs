//! Snapshots of the whole database, for `lectern backup` and `lectern restore`.
//!
//! Which tables a snapshot holds is decided by the migrations, not by a list in code: the
//! tables of a schema version are those its migrations create (applied to an in-memory
//! SQLite, see `migrate::schemas`), so a migration that adds a table adds it to backups and
//! restores with no other change. Likewise for objects: a column named `object_key` holds a
//! key of the object store, and the row's `sha256` column, when the table has one, that
//! object's SHA-256; a backup copies every object the snapshot's rows name.
//!
//! - **SQLite**: SQLite's online backup API copies the file in one read transaction (a
//!   consistent snapshot that does not hold up the server's writers; see `sqlite_copy`). A
//!   restore copies it back the same way, replacing the target file's content in one write
//!   transaction; the migrations newer than the backup then run as at any start-up.
//! - **PostgreSQL**: every table of the schema read in one `REPEATABLE READ` read-only
//!   transaction, written as one JSON line per row, `{"table": "models", "row": {...}}`, the row
//!   as PostgreSQL's `row_to_json` writes it (bytea as `"\\x…"` hex, timestamps in ISO 8601 with
//!   their offset, numbers as their exact text, NULL as `null`), tables after the tables their
//!   foreign keys name. A restore, in one transaction: drops Lectern's tables (those of any
//!   schema version this build knows), applies the migrations up to the backup's version,
//!   loads the rows with `json_populate_recordset` (each value converted back by its column
//!   type's own input function, so it round-trips exactly), moves every identity sequence past
//!   its column's largest value, and commits; the newer migrations then run.

use crate::migrate::{self, Migrations, Schema, BOOKKEEPING};
use crate::sqlite_copy::{self, CopyError};
use crate::{DatabaseKind, Store, StoreError};
use futures_util::TryStreamExt;
use serde::Deserialize;
use serde_json::value::RawValue;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyConnection, ConnectOptions, Connection, Row, SqliteConnection};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

/// The column that holds an object-store key.
pub const OBJECT_KEY_COLUMN: &str = "object_key";
/// The column that holds the SHA-256 of the row's object, when the table has one.
pub const SHA256_COLUMN: &str = "sha256";
/// At most this many rows, or about this many bytes, per `INSERT` of a PostgreSQL restore.
const BATCH_ROWS: usize = 500;
const BATCH_BYTES: usize = 4 << 20;
/// The migrations' advisory lock (`migrate::run`): a server starting during a restore waits.
const MIGRATION_LOCK: i64 = 7410001;

/// What a snapshot holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub kind: DatabaseKind,
    /// The newest migration applied to the snapshot's database.
    pub schema_version: i64,
    /// Every table with its row count, in the snapshot's order.
    pub tables: Vec<(String, u64)>,
    /// Every object the rows name, once each, by key.
    pub objects: Vec<ObjectRef>,
}

impl SnapshotInfo {
    /// Rows in every table.
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.1).sum()
    }
}

/// An object-store key that a row names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectRef {
    pub key: String,
    /// The object's SHA-256 as the row states it (when its table has a `sha256` column).
    pub sha256: Option<String>,
    /// The first table whose rows name it.
    pub table: String,
}

/// Why a snapshot cannot be taken, read or restored.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("there is no SQLite database at {}", .0.display())]
    Missing(PathBuf),
    #[error("SQLite cannot copy {}: {message}", .path.display())]
    Sqlite { path: PathBuf, message: String },
    /// The database has a schema newer than this build's migrations.
    #[error("{what} has schema version {found}, newer than this lectern knows ({known}): use a lectern that knows it")]
    TooNew { what: &'static str, found: i64, known: i64 },
    #[error("{0} holds no Lectern schema (no schema_migrations table)")]
    NotLectern(&'static str),
    /// A snapshot file that does not read as one.
    #[error("{0}")]
    Invalid(String),
    /// The restore target holds rows: (table, rows) for each table that does.
    #[error("the target database is not empty: it holds {}", describe(.0))]
    NotEmpty(Vec<(String, u64)>),
}

impl From<sqlx::Error> for SnapshotError {
    fn from(e: sqlx::Error) -> Self {
        SnapshotError::Store(e.into())
    }
}

fn describe(tables: &[(String, u64)]) -> String {
    tables.iter().map(|(t, n)| format!("{n} {t} row{}", if *n == 1 { "" } else { "s" })).collect::<Vec<_>>().join(", ")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io { path: path.to_path_buf(), source }
}

/// The engine a database URL names, without opening or creating anything.
pub fn engine(url: &str) -> Result<DatabaseKind, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(DatabaseKind::Postgres)
    } else if url.starts_with("sqlite://") {
        sqlite_file(url).map(|_| DatabaseKind::Sqlite)
    } else {
        Err(StoreError::Url("use sqlite://PATH or postgres://USER@HOST/DB".into()))
    }
}

/// The file of a `sqlite://PATH[?options]` URL.
fn sqlite_file(url: &str) -> Result<PathBuf, StoreError> {
    let path = url.strip_prefix("sqlite://").unwrap_or(url);
    let file = path.split('?').next().unwrap_or_default();
    if file.is_empty() {
        return Err(StoreError::Url("sqlite:// needs a file path".into()));
    }
    Ok(PathBuf::from(file))
}

/// The newest schema version this build knows.
pub fn schema_version() -> i64 {
    migrate::latest(migrate::migrations())
}

/// Lectern's tables at a schema version, in dependency order.
pub async fn tables(version: i64) -> Result<Vec<String>, SnapshotError> {
    Ok(schema_at(&migrate::schemas(migrate::migrations()).await?, version)?
        .tables
        .into_iter()
        .map(|t| t.name)
        .collect())
}

fn schema_at(schemas: &[Schema], version: i64) -> Result<Schema, SnapshotError> {
    schemas
        .iter()
        .find(|s| s.version == version)
        .cloned()
        .ok_or_else(|| SnapshotError::Invalid(format!("schema version {version} is not one this lectern knows")))
}

/// Writes a consistent copy of the database at `url` to `file` (a SQLite file, or JSON lines
/// for PostgreSQL) while the database keeps serving, and says what it holds.
pub async fn take(url: &str, file: &Path) -> Result<SnapshotInfo, SnapshotError> {
    let nothing = |_| std::future::ready(Ok::<(), std::convert::Infallible>(()));
    take_with(migrate::migrations(), url, file, nothing).await.map_err(|e| match e {
        TakeError::Snapshot(e) => e,
        TakeError::Objects(never) => match never {},
    })
}

/// As [`take`], handing the objects the snapshot names to `objects` as soon as the snapshot
/// is fixed, before the database is copied, in the same read transaction. A backup copies them
/// there: an object deleted after the snapshot named it (with the rows that did) can only be
/// missed in the moments between the snapshot and that copy, not during the whole copy of a
/// large database. An error of `objects` stops the snapshot.
pub async fn take_with_objects<F, Fut, E>(url: &str, file: &Path, objects: F) -> Result<SnapshotInfo, TakeError<E>>
where
    F: FnOnce(Vec<ObjectRef>) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
{
    take_with(migrate::migrations(), url, file, objects).await
}

/// Why [`take_with_objects`] stopped.
#[derive(Debug)]
pub enum TakeError<E> {
    Snapshot(SnapshotError),
    /// The error of the `objects` step.
    Objects(E),
}

impl<E> From<SnapshotError> for TakeError<E> {
    fn from(e: SnapshotError) -> Self {
        TakeError::Snapshot(e)
    }
}

impl<E> From<sqlx::Error> for TakeError<E> {
    fn from(e: sqlx::Error) -> Self {
        TakeError::Snapshot(e.into())
    }
}

impl<E> From<StoreError> for TakeError<E> {
    fn from(e: StoreError) -> Self {
        TakeError::Snapshot(e.into())
    }
}

async fn take_with<F, Fut, E>(
    m: Migrations<'_>,
    url: &str,
    file: &Path,
    objects: F,
) -> Result<SnapshotInfo, TakeError<E>>
where
    F: FnOnce(Vec<ObjectRef>) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
{
    match engine(url)? {
        DatabaseKind::Sqlite => take_sqlite(m, &sqlite_file(url)?, file, objects).await,
        DatabaseKind::Postgres => take_postgres(m, url, file, objects).await,
    }
}

/// Reads a snapshot file (it is checked, not loaded anywhere) and says what it holds.
pub async fn inspect(kind: DatabaseKind, file: &Path) -> Result<SnapshotInfo, SnapshotError> {
    let m = migrate::migrations();
    match kind {
        DatabaseKind::Sqlite => inspect_sqlite(m, file).await,
        DatabaseKind::Postgres => {
            let schemas = migrate::schemas(m).await?;
            let file = file.to_path_buf();
            let latest = migrate::latest(m);
            tokio::task::spawn_blocking(move || inspect_jsonl(&file, latest, &schemas))
                .await
                .expect("the reader thread")
        }
    }
}

/// The tables of the database at `url` that hold rows (the migrations' bookkeeping aside):
/// empty when a restore may go ahead without `force`. Creates nothing.
pub async fn occupied(url: &str) -> Result<Vec<(String, u64)>, SnapshotError> {
    occupied_with(migrate::migrations(), url).await
}

async fn occupied_with(m: Migrations<'_>, url: &str) -> Result<Vec<(String, u64)>, SnapshotError> {
    match engine(url)? {
        DatabaseKind::Sqlite => {
            let file = sqlite_file(url)?;
            if !file.exists() {
                return Ok(Vec::new());
            }
            let mut conn = open_sqlite(&file).await?;
            let mut out = Vec::new();
            for table in sqlite_tables(&mut conn).await? {
                let n = count(&mut conn, &table).await?;
                if table != BOOKKEEPING && n > 0 {
                    out.push((table, n));
                }
            }
            conn.close().await?;
            Ok(out)
        }
        DatabaseKind::Postgres => {
            let schemas = migrate::schemas(m).await?;
            let mut conn = connect_postgres(url).await?;
            let out = postgres_occupied(&mut conn, m, &schemas).await?;
            conn.close().await?;
            Ok(out)
        }
    }
}

/// Replaces the database at `url` with the snapshot `file` of engine `kind` (which must be
/// the URL's): one transaction, then the migrations newer than the snapshot. Without `force`
/// a target holding rows is refused (checked again inside the transaction on PostgreSQL).
pub async fn restore(url: &str, kind: DatabaseKind, file: &Path, force: bool) -> Result<SnapshotInfo, SnapshotError> {
    let info = restore_with(migrate::migrations(), url, kind, file, force).await?;
    // The migrations newer than the backup, as at any start-up.
    let store = Store::open(url).await?;
    store.pool.close().await;
    Ok(info)
}

async fn restore_with(
    m: Migrations<'_>,
    url: &str,
    kind: DatabaseKind,
    file: &Path,
    force: bool,
) -> Result<SnapshotInfo, SnapshotError> {
    let target = engine(url)?;
    if target != kind {
        return Err(SnapshotError::Invalid(format!(
            "a {} snapshot cannot be restored into a {} database",
            engine_name(kind),
            engine_name(target)
        )));
    }
    match kind {
        DatabaseKind::Sqlite => restore_sqlite(m, &sqlite_file(url)?, file, force).await,
        DatabaseKind::Postgres => restore_postgres(m, url, file, force).await,
    }
}

/// `sqlite` or `postgres`.
pub fn engine_name(kind: DatabaseKind) -> &'static str {
    match kind {
        DatabaseKind::Sqlite => "sqlite",
        DatabaseKind::Postgres => "postgres",
    }
}

/// A table or column name as an SQL identifier.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Gathers object references, checking that one key always comes with one SHA-256.
#[derive(Default)]
struct Objects(BTreeMap<String, ObjectRef>);

impl Objects {
    fn add(&mut self, key: String, sha256: Option<String>, table: &str) -> Result<(), SnapshotError> {
        if let Some(seen) = self.0.get_mut(&key) {
            match (&seen.sha256, sha256) {
                (Some(a), Some(b)) if *a != b => {
                    return Err(SnapshotError::Invalid(format!(
                        "object {key} is named with two different SHA-256 values ({a} and {b})"
                    )))
                }
                (None, Some(b)) => seen.sha256 = Some(b),
                _ => {}
            }
            return Ok(());
        }
        self.0.insert(key.clone(), ObjectRef { key, sha256, table: table.to_string() });
        Ok(())
    }

    fn into_vec(self) -> Vec<ObjectRef> {
        self.0.into_values().collect()
    }
}

// ------------------------------------------------------------------------------------ SQLite

async fn take_sqlite<F, Fut, E>(
    m: Migrations<'_>,
    database: &Path,
    file: &Path,
    objects: F,
) -> Result<SnapshotInfo, TakeError<E>>
where
    F: FnOnce(Vec<ObjectRef>) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
{
    if !database.is_file() {
        return Err(SnapshotError::Missing(database.to_path_buf()).into());
    }
    match std::fs::remove_file(file) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(file)(e).into()),
    }
    let mut conn = open_sqlite(database).await?;
    // One read transaction: its first read fixes the snapshot, the objects are named from it,
    // and the backup API copies the file in it (it uses the source's open read transaction).
    let mut tx = conn.begin().await?;
    let named = sqlite_contents(&mut tx, m, false).await?;
    objects(named.objects).await.map_err(TakeError::Objects)?;
    {
        let mut handle = tx.lock_handle().await?;
        let source = handle.as_raw_handle().as_ptr();
        // SAFETY: the handle is locked for us (sqlx's worker makes no call on it meanwhile)
        // and stays open until the copy returns.
        let copy = || unsafe { sqlite_copy::copy_from(source, file, true) };
        let copied = match tokio::runtime::Handle::current().runtime_flavor() {
            tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(copy),
            _ => copy(),
        };
        copied.map_err(|e| match e {
            CopyError::Source(message) => SnapshotError::Sqlite { path: database.to_path_buf(), message },
            CopyError::Destination(message) | CopyError::Copy(message) => {
                SnapshotError::Sqlite { path: file.to_path_buf(), message }
            }
        })?;
    }
    tx.rollback().await?;
    conn.close().await?;
    Ok(inspect_sqlite(m, file).await?)
}

async fn open_sqlite(file: &Path) -> Result<SqliteConnection, SnapshotError> {
    Ok(SqliteConnectOptions::new().filename(file).read_only(true).connect().await?)
}

async fn sqlite_tables(conn: &mut SqliteConnection) -> Result<Vec<String>, SnapshotError> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

async fn count(conn: &mut SqliteConnection, table: &str) -> Result<u64, SnapshotError> {
    let (n,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {}", quote(table))).fetch_one(&mut *conn).await?;
    Ok(n as u64)
}

async fn inspect_sqlite(m: Migrations<'_>, file: &Path) -> Result<SnapshotInfo, SnapshotError> {
    let mut conn = open_sqlite(file).await.map_err(|e| match e {
        SnapshotError::Store(e) => SnapshotError::Invalid(format!("not a SQLite database: {e}")),
        other => other,
    })?;
    let check: Vec<(String,)> = sqlx::query_as("PRAGMA quick_check").fetch_all(&mut conn).await?;
    if check.len() != 1 || check[0].0 != "ok" {
        let problems: Vec<String> = check.into_iter().take(5).map(|r| r.0).collect();
        return Err(SnapshotError::Invalid(format!("the SQLite file is damaged: {}", problems.join("; "))));
    }
    let info = sqlite_contents(&mut conn, m, true).await?;
    conn.close().await?;
    Ok(info)
}

/// A SQLite database's schema version, tables (with their rows when `counts`, else 0) and the
/// objects its rows name.
async fn sqlite_contents(
    conn: &mut SqliteConnection,
    m: Migrations<'_>,
    counts: bool,
) -> Result<SnapshotInfo, SnapshotError> {
    let names = sqlite_tables(conn).await?;
    if !names.iter().any(|t| t == BOOKKEEPING) {
        return Err(SnapshotError::NotLectern("the snapshot"));
    }
    let (version,): (i64,) =
        sqlx::query_as("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetch_one(&mut *conn).await?;
    if version > migrate::latest(m) {
        return Err(SnapshotError::TooNew { what: "the database", found: version, known: migrate::latest(m) });
    }
    let mut tables = Vec::new();
    let mut objects = Objects::default();
    for table in names {
        let columns: Vec<(String,)> =
            sqlx::query_as("SELECT name FROM pragma_table_info($1)").bind(&table).fetch_all(&mut *conn).await?;
        let has = |c: &str| columns.iter().any(|(name,)| name == c);
        if has(OBJECT_KEY_COLUMN) {
            let sha = if has(SHA256_COLUMN) { quote(SHA256_COLUMN) } else { "NULL".into() };
            let sql = format!(
                "SELECT {key}, {sha} FROM {t} WHERE {key} IS NOT NULL",
                key = quote(OBJECT_KEY_COLUMN),
                t = quote(&table)
            );
            let rows: Vec<(String, Option<String>)> = sqlx::query_as(&sql).fetch_all(&mut *conn).await?;
            for (key, sha256) in rows {
                objects.add(key, sha256, &table)?;
            }
        }
        let n = if counts { count(conn, &table).await? } else { 0 };
        tables.push((table, n));
    }
    Ok(SnapshotInfo { kind: DatabaseKind::Sqlite, schema_version: version, tables, objects: objects.into_vec() })
}

async fn restore_sqlite(
    m: Migrations<'_>,
    database: &Path,
    file: &Path,
    force: bool,
) -> Result<SnapshotInfo, SnapshotError> {
    let info = inspect_sqlite(m, file).await?;
    if !force {
        let url = format!("sqlite://{}", database.display());
        let held = occupied_with(m, &url).await?;
        if !held.is_empty() {
            return Err(SnapshotError::NotEmpty(held));
        }
    }
    if let Some(parent) = database.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let (from, to) = (file.to_path_buf(), database.to_path_buf());
    let copied = tokio::task::spawn_blocking(move || sqlite_copy::copy(&from, &to, false)).await.expect("copy thread");
    copied.map_err(|e| match e {
        CopyError::Source(message) => SnapshotError::Sqlite { path: file.to_path_buf(), message },
        CopyError::Destination(message) | CopyError::Copy(message) => {
            // SQLite's word for a WAL-mode destination of another page size.
            let message = if message.contains("readonly") {
                format!("{message} (a file that cannot be written, or a WAL database of another page size than the backup's: restore into a new file)")
            } else {
                message
            };
            SnapshotError::Sqlite { path: database.to_path_buf(), message }
        }
    })?;
    Ok(info)
}

// -------------------------------------------------------------------------------- PostgreSQL

async fn connect_postgres(url: &str) -> Result<AnyConnection, SnapshotError> {
    sqlx::any::install_default_drivers();
    Ok(AnyConnection::connect(url).await?)
}

/// The tables of the connection's current schema.
async fn postgres_tables(conn: &mut AnyConnection) -> Result<BTreeSet<String>, SnapshotError> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema()")
            .fetch_all(&mut *conn)
            .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// The schema version of a PostgreSQL database (0 without any migration).
async fn postgres_version(conn: &mut AnyConnection) -> Result<i64, SnapshotError> {
    let (version,): (i64,) =
        sqlx::query_as("SELECT COALESCE(MAX(version), 0)::bigint FROM schema_migrations").fetch_one(&mut *conn).await?;
    Ok(version)
}

/// Lectern's tables (of any version) in the current schema that hold rows, bookkeeping aside.
/// A database of a newer schema is refused: its tables are not all known here.
async fn postgres_occupied(
    conn: &mut AnyConnection,
    m: Migrations<'_>,
    schemas: &[Schema],
) -> Result<Vec<(String, u64)>, SnapshotError> {
    let existing = postgres_tables(conn).await?;
    if existing.contains(BOOKKEEPING) {
        let version = postgres_version(conn).await?;
        if version > migrate::latest(m) {
            return Err(SnapshotError::TooNew {
                what: "the target database",
                found: version,
                known: migrate::latest(m),
            });
        }
    }
    let mut out = Vec::new();
    for table in known_tables(schemas).intersection(&existing) {
        if table == BOOKKEEPING {
            continue;
        }
        let (n,): (i64,) =
            sqlx::query_as(&format!("SELECT COUNT(*)::bigint FROM {}", quote(table))).fetch_one(&mut *conn).await?;
        if n > 0 {
            out.push((table.clone(), n as u64));
        }
    }
    Ok(out)
}

/// Every table any schema version has.
fn known_tables(schemas: &[Schema]) -> BTreeSet<String> {
    schemas.iter().flat_map(|s| s.tables.iter().map(|t| t.name.clone())).chain([BOOKKEEPING.to_string()]).collect()
}

async fn take_postgres<F, Fut, E>(
    m: Migrations<'_>,
    url: &str,
    file: &Path,
    objects: F,
) -> Result<SnapshotInfo, TakeError<E>>
where
    F: FnOnce(Vec<ObjectRef>) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
{
    let schemas = migrate::schemas(m).await?;
    let mut conn = connect_postgres(url).await?;
    let mut tx = conn.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?;
    // Values in the forms that read back exactly, whatever the server's settings.
    for setting in [
        "SET LOCAL bytea_output = 'hex'",
        "SET LOCAL extra_float_digits = 3",
        "SET LOCAL TimeZone = 'UTC'",
        "SET LOCAL DateStyle = 'ISO, YMD'",
        "SET LOCAL IntervalStyle = 'iso_8601'",
    ] {
        sqlx::query(setting).execute(&mut *tx).await?;
    }
    // The first read fixes the snapshot.
    let existing = postgres_tables(&mut tx).await?;
    if !existing.contains(BOOKKEEPING) {
        return Err(SnapshotError::NotLectern("the database").into());
    }
    let version = postgres_version(&mut tx).await?;
    if version > migrate::latest(m) {
        return Err(SnapshotError::TooNew { what: "the database", found: version, known: migrate::latest(m) }.into());
    }
    let schema = schema_at(&schemas, version)?;
    if let Some(missing) = schema.tables.iter().find(|t| !existing.contains(&t.name)) {
        return Err(SnapshotError::Invalid(format!(
            "the database has schema version {version} but no table {}",
            missing.name
        ))
        .into());
    }
    // The objects the snapshot names, handed over before the rows are read.
    let mut named = Objects::default();
    for table in schema.tables.iter().filter(|t| t.columns.iter().any(|c| c == OBJECT_KEY_COLUMN)) {
        let has_sha = table.columns.iter().any(|c| c == SHA256_COLUMN);
        let sha = if has_sha { format!("{}::text", quote(SHA256_COLUMN)) } else { "NULL::text".into() };
        let sql = format!(
            "SELECT {key}::text, {sha} FROM {t} WHERE {key} IS NOT NULL",
            key = quote(OBJECT_KEY_COLUMN),
            t = quote(&table.name)
        );
        let rows: Vec<(String, Option<String>)> = sqlx::query_as(&sql).fetch_all(&mut *tx).await?;
        for (key, sha256) in rows {
            named.add(key, sha256, &table.name)?;
        }
    }
    let named = named.into_vec();
    objects(named.clone()).await.map_err(TakeError::Objects)?;
    let out = std::fs::File::create(file).map_err(io(file))?;
    let mut out = BufWriter::with_capacity(1 << 20, out);
    let mut tables = Vec::new();
    for table in &schema.tables {
        let prefix = format!("{{\"table\":{},\"row\":", serde_json::to_string(&table.name).expect("a string"));
        // A row is one line: `row_to_json` escapes line breaks in strings, and a `jsonb` value
        // prints on one line; only a `json` column keeps the line breaks between its tokens
        // (whitespace: made spaces here). Lectern's tables have none.
        let (json_columns,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*)::bigint FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 AND data_type = 'json'",
        )
        .bind(&table.name)
        .fetch_one(&mut *tx)
        .await?;
        let row =
            if json_columns > 0 { "translate(row_to_json(t)::text, E'\\n\\r', '  ')" } else { "row_to_json(t)::text" };
        let sql = format!("SELECT {row} FROM {} AS t", quote(&table.name));
        let mut rows = sqlx::query(&sql).fetch(&mut *tx);
        let mut n = 0u64;
        while let Some(row) = rows.try_next().await? {
            let json: String = row.try_get(0)?;
            out.write_all(prefix.as_bytes())
                .and_then(|_| out.write_all(json.as_bytes()))
                .and_then(|_| out.write_all(b"}\n"))
                .map_err(io(file))?;
            n += 1;
        }
        drop(rows);
        tables.push((table.name.clone(), n));
    }
    tx.rollback().await?;
    conn.close().await?;
    let out = out.into_inner().map_err(|e| io(file)(e.into_error()))?;
    out.sync_all().map_err(io(file))?;
    Ok(SnapshotInfo { kind: DatabaseKind::Postgres, schema_version: version, tables, objects: named })
}

/// One line of a PostgreSQL snapshot.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line<'a> {
    table: String,
    #[serde(borrow)]
    row: &'a RawValue,
}

/// Reads a PostgreSQL snapshot line by line, handing each (line number, table, row) to `each`
/// after checking that the table is one of `schema` (any version's, before the version is
/// known) and that the row has exactly its columns.
fn read_jsonl(
    file: &Path,
    schemas: &[Schema],
    mut each: impl FnMut(usize, &str, &BTreeMap<&str, &RawValue>, &RawValue) -> Result<(), SnapshotError>,
) -> Result<(), SnapshotError> {
    let reader = BufReader::with_capacity(1 << 20, std::fs::File::open(file).map_err(io(file))?);
    let bad = |n: usize, why: String| SnapshotError::Invalid(format!("line {n}: {why}"));
    for (i, line) in reader.lines().enumerate() {
        let n = i + 1;
        let line = line.map_err(io(file))?;
        let parsed: Line = serde_json::from_str(&line).map_err(|e| bad(n, format!("not a snapshot row ({e})")))?;
        let row: BTreeMap<&str, &RawValue> =
            serde_json::from_str(parsed.row.get()).map_err(|e| bad(n, format!("the row is not an object ({e})")))?;
        // Which version's table it is, and its columns, are checked once the version is
        // known (see `inspect_jsonl`).
        if !schemas.iter().any(|s| s.tables.iter().any(|t| t.name == parsed.table)) {
            return Err(bad(n, format!("table '{}' is not one of Lectern's", parsed.table)));
        }
        each(n, &parsed.table, &row, parsed.row)?;
    }
    Ok(())
}

fn inspect_jsonl(file: &Path, latest: i64, schemas: &[Schema]) -> Result<SnapshotInfo, SnapshotError> {
    let mut tables: Vec<(String, u64)> = Vec::new();
    let mut columns: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut objects = Objects::default();
    let mut version = 0i64;
    read_jsonl(file, schemas, |n, table, row, _| {
        let bad = |why: String| SnapshotError::Invalid(format!("line {n}: {why}"));
        match tables.last_mut() {
            Some((t, rows)) if t == table => *rows += 1,
            _ => {
                if tables.iter().any(|(t, _)| t == table) {
                    return Err(bad(format!("the rows of table '{table}' are not together")));
                }
                tables.push((table.to_string(), 1));
            }
        }
        let keys: BTreeSet<String> = row.keys().map(|k| k.to_string()).collect();
        match columns.get(table) {
            Some(seen) if *seen != keys => return Err(bad(format!("a row of table '{table}' has other columns"))),
            Some(_) => {}
            None => {
                columns.insert(table.to_string(), keys);
            }
        }
        let text = |column: &str| -> Result<Option<String>, SnapshotError> {
            match row.get(column) {
                None => Ok(None),
                Some(raw) => serde_json::from_str::<Option<String>>(raw.get())
                    .map_err(|_| bad(format!("{table}.{column} is not text"))),
            }
        };
        if let Some(key) = text(OBJECT_KEY_COLUMN)? {
            objects.add(key, text(SHA256_COLUMN)?, table)?;
        }
        if table == BOOKKEEPING {
            let v = row.get("version").and_then(|raw| serde_json::from_str::<i64>(raw.get()).ok());
            version = version.max(v.ok_or_else(|| bad("a schema_migrations row without a version".into()))?);
        }
        Ok(())
    })?;
    if version == 0 {
        return Err(SnapshotError::NotLectern("the snapshot"));
    }
    if version > latest {
        return Err(SnapshotError::TooNew { what: "the snapshot", found: version, known: latest });
    }
    // Every table is one of that version, with exactly its columns.
    let schema = schema_at(schemas, version)?;
    for (table, keys) in &columns {
        let Some(wanted) = schema.tables.iter().find(|t| &t.name == table) else {
            return Err(SnapshotError::Invalid(format!("table '{table}' is not in schema version {version}")));
        };
        let wanted: BTreeSet<String> = wanted.columns.iter().cloned().collect();
        if *keys != wanted {
            let extra: Vec<&String> = keys.difference(&wanted).collect();
            let missing: Vec<&String> = wanted.difference(keys).collect();
            return Err(SnapshotError::Invalid(format!(
                "the rows of table '{table}' do not have the columns of schema version {version} \
                 (unknown: {extra:?}, missing: {missing:?})"
            )));
        }
    }
    // Tables without rows are in the snapshot too (with none).
    let mut all = Vec::new();
    for table in &schema.tables {
        let n = tables.iter().find(|(t, _)| *t == table.name).map_or(0, |t| t.1);
        all.push((table.name.clone(), n));
    }
    Ok(SnapshotInfo { kind: DatabaseKind::Postgres, schema_version: version, tables: all, objects: objects.into_vec() })
}

async fn restore_postgres(
    m: Migrations<'_>,
    url: &str,
    file: &Path,
    force: bool,
) -> Result<SnapshotInfo, SnapshotError> {
    let schemas = migrate::schemas(m).await?;
    let info = {
        let (file, schemas, latest) = (file.to_path_buf(), schemas.clone(), migrate::latest(m));
        tokio::task::spawn_blocking(move || inspect_jsonl(&file, latest, &schemas)).await.expect("the reader thread")?
    };
    let schema = schema_at(&schemas, info.schema_version)?;
    let mut conn = connect_postgres(url).await?;
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(MIGRATION_LOCK).execute(&mut *tx).await?;
    let held = postgres_occupied(&mut tx, m, &schemas).await?;
    if !force && !held.is_empty() {
        return Err(SnapshotError::NotEmpty(held));
    }
    // Lectern's tables go, whatever version made them; then the backup's schema.
    let existing = postgres_tables(&mut tx).await?;
    let present: Vec<String> = known_tables(&schemas).intersection(&existing).map(|t| quote(t)).collect();
    if !present.is_empty() {
        sqlx::query(&format!("DROP TABLE IF EXISTS {} CASCADE", present.join(", "))).execute(&mut *tx).await?;
    }
    migrate::apply_up_to(&mut tx, DatabaseKind::Postgres, m, info.schema_version).await?;
    let all: Vec<String> = schema.tables.iter().map(|t| quote(&t.name)).collect();
    sqlx::query(&format!("TRUNCATE {}", all.join(", "))).execute(&mut *tx).await?;

    // The columns a row inserts (generated ones are computed by the database).
    let mut inserts = BTreeMap::new();
    for table in &schema.tables {
        let generated: Vec<(String,)> = sqlx::query_as(
            "SELECT a.attname::text FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = current_schema() AND c.relname = $1 AND a.attnum > 0 \
             AND NOT a.attisdropped AND a.attgenerated <> ''",
        )
        .bind(&table.name)
        .fetch_all(&mut *tx)
        .await?;
        let columns: Vec<String> =
            table.columns.iter().filter(|c| !generated.iter().any(|g| &g.0 == *c)).map(|c| quote(c)).collect();
        let list = columns.join(", ");
        let t = quote(&table.name);
        inserts.insert(
            table.name.clone(),
            format!(
                "INSERT INTO {t} ({list}) OVERRIDING SYSTEM VALUE SELECT {list} FROM json_populate_recordset(NULL::{t}, $1::json)"
            ),
        );
    }

    // Rows in the file's order (tables after those they refer to), in batches. The file is
    // read on a blocking thread and handed over in batches.
    let (sender, mut batches) = tokio::sync::mpsc::channel::<(String, String)>(2);
    let reader = {
        let (file, schemas) = (file.to_path_buf(), schemas.clone());
        tokio::task::spawn_blocking(move || {
            let mut current: Option<(String, String, usize)> = None;
            let send = |batch: (String, String, usize)| {
                let (table, mut json, _) = batch;
                json.push(']');
                sender.blocking_send((table, json)).map_err(|_| SnapshotError::Invalid("the restore stopped".into()))
            };
            read_jsonl(&file, &schemas, |_, table, _, row| {
                if let Some((t, json, n)) = &mut current {
                    if t == table && *n < BATCH_ROWS && json.len() < BATCH_BYTES {
                        json.push(',');
                        json.push_str(row.get());
                        *n += 1;
                        return Ok(());
                    }
                }
                if let Some(batch) = current.take() {
                    send(batch)?;
                }
                current = Some((table.to_string(), format!("[{}", row.get()), 1));
                Ok(())
            })?;
            if let Some(batch) = current.take() {
                send(batch)?;
            }
            Ok::<(), SnapshotError>(())
        })
    };
    let mut loaded = Ok(());
    while let Some((table, json)) = batches.recv().await {
        let Some(insert) = inserts.get(&table) else {
            loaded = Err(SnapshotError::Invalid(format!(
                "table '{table}' is not in schema version {}",
                info.schema_version
            )));
            break;
        };
        if let Err(e) = sqlx::query(insert).bind(json).execute(&mut *tx).await {
            loaded = Err(SnapshotError::Invalid(format!(
                "the rows of table '{table}' cannot be loaded: {}",
                StoreError::from(e)
            )));
            break;
        }
    }
    drop(batches);
    let read = reader.await.expect("the reader thread");
    loaded?;
    read?;

    // Identity columns: the next value comes after the largest restored one.
    let identities: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, a.attname::text FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped \
         AND pg_get_serial_sequence(quote_ident(c.relname), a.attname) IS NOT NULL",
    )
    .fetch_all(&mut *tx)
    .await?;
    for (table, column) in identities.iter().filter(|(t, _)| schema.tables.iter().any(|s| &s.name == t)) {
        let sql = format!(
            "SELECT setval(pg_get_serial_sequence($1, $2), COALESCE(MAX({c}), 0) + 1, false)::bigint FROM {t}",
            c = quote(column),
            t = quote(table)
        );
        sqlx::query(&sql).bind(quote(table)).bind(column).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    conn.close().await?;
    Ok(info)
}

#[cfg(test)]
mod tests {
    //! Exact round trips of PostgreSQL values through a snapshot, on tables of the test's own
    //! migrations (Lectern's tables hold only text and integers): every column type a
    //! migration may use, NULLs, extreme values, identity columns, foreign keys (the
    //! referring table sorts first by name), and a later migration run after the restore.
    use super::*;

    const TEST_MIGRATIONS: &[(i64, &str)] = &[
        (
            1,
            "CREATE TABLE things (
                id $IDENTITY,
                big BIGINT,
                small SMALLINT,
                flag BOOLEAN,
                body BYTEA,
                note TEXT,
                at TIMESTAMPTZ,
                local_at TIMESTAMP,
                day DATE,
                ratio DOUBLE PRECISION,
                single REAL,
                price NUMERIC(40, 12),
                doc JSONB,
                span INTERVAL,
                object_key TEXT,
                sha256 TEXT
            );
            CREATE TABLE a_children (
                parent BIGINT NOT NULL REFERENCES things(id) ON DELETE CASCADE,
                name TEXT NOT NULL,
                PRIMARY KEY (parent, name)
            );
            CREATE TABLE docs (id BIGINT PRIMARY KEY, raw JSON)",
        ),
        (2, "ALTER TABLE things ADD COLUMN extra TEXT NOT NULL DEFAULT 'x'"),
    ];

    fn admin_url() -> String {
        std::env::var("LECTERN_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
    }

    async fn database(admin: &mut AnyConnection, name: &str) -> String {
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut *admin).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut *admin).await.unwrap();
        let base = admin_url();
        format!("{}/{name}", &base[..base.rfind('/').unwrap()])
    }

    /// A snapshot with the test's migrations.
    async fn take_with(m: Migrations<'_>, url: &str, file: &Path) -> Result<SnapshotInfo, SnapshotError> {
        super::take_with(m, url, file, |_| std::future::ready(Ok::<(), ()>(()))).await.map_err(|e| match e {
            TakeError::Snapshot(e) => e,
            TakeError::Objects(()) => unreachable!(),
        })
    }

    async fn rows(url: &str, table: &str) -> Vec<String> {
        let mut conn = AnyConnection::connect(url).await.unwrap();
        let sql = format!("SELECT row_to_json(t)::text FROM {} t ORDER BY 1", quote(table));
        let out: Vec<(String,)> = sqlx::query_as(&sql).fetch_all(&mut conn).await.unwrap();
        conn.close().await.unwrap();
        out.into_iter().map(|r| r.0).collect()
    }

    #[tokio::test]
    async fn postgres_values_round_trip_exactly() {
        sqlx::any::install_default_drivers();
        let mut admin = AnyConnection::connect(&admin_url()).await.expect("PostgreSQL must run for these tests");
        let tag = std::process::id();
        let source = database(&mut admin, &format!("lectern_snapvalues_a_{tag}")).await;
        let target = database(&mut admin, &format!("lectern_snapvalues_b_{tag}")).await;
        let m = TEST_MIGRATIONS;

        let mut conn = AnyConnection::connect(&source).await.unwrap();
        let mut tx = conn.begin().await.unwrap();
        migrate::apply_up_to(&mut tx, DatabaseKind::Postgres, &m[..1], 1).await.unwrap();
        tx.commit().await.unwrap();
        let every_byte: String = (0..=255u8).map(|b| format!("{b:02x}")).collect();
        for sql in [
            format!(
                "INSERT INTO things (big, small, flag, body, note, at, local_at, day, ratio, single, price, doc, span, object_key, sha256) \
                 VALUES ({}, -32768, true, '\\x{every_byte}'::bytea, E'line\\nbreak \"quoted\" \\\\ back ünï 🦀', \
                 '2024-02-29 23:59:59.123456+05:30', '1999-12-31 23:59:59.999999', '0001-01-01', \
                 0.1, 3.4028235e38, 123456789012345678901234567.123456789012, \
                 '{{\"a\": [1, 2.50, {{\"b\": null}}], \"c\": \"d\\ne\"}}', '1 year 2 mons 3 days 04:05:06.789', \
                 'models/m/x.onnx', 'abc')",
                i64::MIN
            ),
            format!(
                "INSERT INTO things (big, small, flag, body, note, ratio, single, price) \
                 VALUES ({}, 32767, false, ''::bytea, '', 'NaN', '-Infinity', 'NaN')",
                i64::MAX
            ),
            "INSERT INTO things (big) VALUES (NULL)".to_string(),
            "INSERT INTO things (big, ratio) VALUES (0, 1e308)".to_string(),
            "DELETE FROM things WHERE big = 0".to_string(),
            "INSERT INTO a_children (parent, name) SELECT id, 'child of ' || id FROM things".to_string(),
            // A `json` value keeps its text, line breaks between tokens included.
            "INSERT INTO docs VALUES (1, E'{\\n  \"a\": [1,\\r\\n 2],\\n  \"b\": \"x\\\\ny\"\\n}'), (2, NULL)".to_string(),
        ] {
            sqlx::query(&sql).execute(&mut conn).await.unwrap();
        }
        conn.close().await.unwrap();

        let dir = std::env::temp_dir().join(format!("lectern-snapvalues-{tag}"));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("db.jsonl");
        let info = take_with(&m[..1], &source, &file).await.unwrap();
        assert_eq!(info.schema_version, 1);
        let names: Vec<&str> = info.tables.iter().map(|t| t.0.as_str()).collect();
        assert_eq!(names, ["schema_migrations", "docs", "things", "a_children"], "a table after the one it refers to");
        assert_eq!(
            info.objects,
            [ObjectRef { key: "models/m/x.onnx".into(), sha256: Some("abc".into()), table: "things".into() }]
        );
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text.lines().count() as u64, info.rows(), "one line per row");

        // The objects are handed over before the rows are read; an error there stops it all.
        let mut handed = Vec::new();
        let stopped = super::take_with(&m[..1], &source, &dir.join("other.jsonl"), |objects| {
            handed = objects;
            std::future::ready(Err::<(), _>("no room"))
        })
        .await;
        assert!(matches!(stopped, Err(TakeError::Objects("no room"))));
        assert_eq!(handed, info.objects);
        assert_eq!(std::fs::metadata(dir.join("other.jsonl")).map(|m| m.len()).unwrap_or(0), 0, "no rows written");

        // Restored by a build that knows migration 2 too: the rows land in the schema of
        // version 1, and the newer migration is left to the start-up that follows.
        let restored = restore_with(m, &target, DatabaseKind::Postgres, &file, false).await.unwrap();
        assert_eq!(restored, info);
        for table in ["schema_migrations", "things", "a_children"] {
            assert_eq!(rows(&source, table).await, rows(&target, table).await, "table {table}");
        }
        // A `json` column's line breaks became spaces (whitespace between tokens): the same
        // value.
        let mut conn = AnyConnection::connect(&target).await.unwrap();
        let docs: Vec<(String,)> =
            sqlx::query_as("SELECT raw::text FROM docs WHERE id = 1").fetch_all(&mut conn).await.unwrap();
        assert_eq!(docs[0].0, "{   \"a\": [1,   2],   \"b\": \"x\\ny\" }");
        conn.close().await.unwrap();
        let rows_of = rows(&target, "things").await;
        assert!(rows_of.iter().any(|r| r.contains(&format!("\\\\x{every_byte}"))), "{rows_of:?}");

        // The identity goes on after the largest restored id.
        let mut conn = AnyConnection::connect(&target).await.unwrap();
        let (max,): (i64,) = sqlx::query_as("SELECT MAX(id) FROM things").fetch_one(&mut conn).await.unwrap();
        let (id,): (i64,) =
            sqlx::query_as("INSERT INTO things (big) VALUES (7) RETURNING id").fetch_one(&mut conn).await.unwrap();
        assert_eq!(id, max + 1);
        conn.close().await.unwrap();

        // Not into a database that holds rows, unless forced; then replaced whole.
        match restore_with(m, &target, DatabaseKind::Postgres, &file, false).await {
            Err(SnapshotError::NotEmpty(held)) => {
                assert_eq!(held, [("a_children".into(), 3), ("docs".into(), 2), ("things".into(), 4)])
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(rows(&target, "things").await.len(), 4, "nothing changed");
        restore_with(m, &target, DatabaseKind::Postgres, &file, true).await.unwrap();
        assert_eq!(rows(&source, "things").await, rows(&target, "things").await);

        // A snapshot of a newer schema than the build knows is refused.
        let mut conn = AnyConnection::connect(&source).await.unwrap();
        migrate::apply_up_to(&mut conn, DatabaseKind::Postgres, &m[1..], 2).await.unwrap();
        conn.close().await.unwrap();
        match take_with(&m[..1], &source, &file).await {
            Err(SnapshotError::TooNew { found: 2, known: 1, .. }) => {}
            other => panic!("{other:?}"),
        }
        let info = take_with(m, &source, &file).await.unwrap();
        assert_eq!(info.schema_version, 2);
        let latest = migrate::latest(&m[..1]);
        let schemas = migrate::schemas(&m[..1]).await.unwrap();
        assert!(matches!(inspect_jsonl(&file, latest, &schemas), Err(SnapshotError::TooNew { .. })));

        std::fs::remove_dir_all(dir).unwrap();
        for name in ["a", "b"] {
            sqlx::query(&format!("DROP DATABASE IF EXISTS lectern_snapvalues_{name}_{tag} WITH (FORCE)"))
                .execute(&mut admin)
                .await
                .unwrap();
        }
    }
}

#[cfg(test)]
mod upgrade_tests {
    //! A snapshot of an older schema restores as it was taken, and the restore then brings it to
    //! the newest schema (as a start-up would).
    use super::*;

    async fn older_database(url: &str) -> i64 {
        let older = migrate::latest(migrate::migrations()) - 1;
        let mut conn = AnyConnection::connect(url).await.unwrap();
        let mut tx = conn.begin().await.unwrap();
        let kind = engine(url).unwrap();
        migrate::apply_up_to(&mut tx, kind, migrate::migrations(), older).await.unwrap();
        sqlx::query("INSERT INTO models (name, config, created_at, updated_at) VALUES ('old', '', 1, 2)")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        conn.close().await.unwrap();
        older
    }

    async fn check(source: &str, target: &str, dir: &Path) {
        let older = older_database(source).await;
        let file = dir.join("snapshot");
        let info = take(source, &file).await.unwrap();
        assert_eq!(info.schema_version, older);
        assert!(info.tables.len() < tables(schema_version()).await.unwrap().len());
        let restored = restore(target, info.kind, &file, false).await.unwrap();
        assert_eq!(restored.schema_version, older, "what the snapshot held");
        let store = Store::open(target).await.unwrap();
        assert_eq!(store.models().await.unwrap()[0].name, "old");
        let (version,): (i64,) =
            sqlx::query_as("SELECT MAX(version) FROM schema_migrations").fetch_one(&store.pool).await.unwrap();
        assert_eq!(version, schema_version(), "the newer migrations ran");
    }

    #[tokio::test]
    async fn an_older_sqlite_snapshot_is_migrated_after_its_restore() {
        sqlx::any::install_default_drivers();
        let dir = std::env::temp_dir().join(format!("lectern-snapupgrade-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let source = format!("sqlite://{}/a.db?mode=rwc", dir.display());
        let target = format!("sqlite://{}/b.db", dir.display());
        check(&source, &target, &dir).await;
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn an_older_postgres_snapshot_is_migrated_after_its_restore() {
        sqlx::any::install_default_drivers();
        let admin = std::env::var("LECTERN_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let mut conn = AnyConnection::connect(&admin).await.expect("PostgreSQL must run for these tests");
        let base = &admin[..admin.rfind('/').unwrap()];
        let names = [0, 1].map(|i| format!("lectern_snapupgrade_{i}_{}", std::process::id()));
        for name in &names {
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await.unwrap();
            sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
        }
        let dir = std::env::temp_dir().join(format!("lectern-snapupgrade-pg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        check(&format!("{base}/{}", names[0]), &format!("{base}/{}", names[1]), &dir).await;
        std::fs::remove_dir_all(dir).unwrap();
        for name in &names {
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await.unwrap();
        }
    }
}
