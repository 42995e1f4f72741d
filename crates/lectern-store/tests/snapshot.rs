//! Database snapshots for backups (`lectern_store::snapshot`), on SQLite and on the machine's
//! PostgreSQL (`LECTERN_TEST_POSTGRES`, default `postgres://postgres@127.0.0.1:5432/postgres`;
//! each test creates its databases and drops them): a snapshot of every table restores to the
//! same rows, names the objects the rows refer to, is consistent while writers write, refuses
//! a target that holds rows unless forced, and leaves identity columns ready for new rows.
//! Exact round trips of every column type (bytea, timestamps, NULLs, ...) on PostgreSQL are
//! tested in `snapshot.rs` itself, with migrations of the test's own.

use lectern_store::snapshot::{self, ObjectRef, SnapshotError};
use lectern_store::{CollectionSpec, DatabaseKind, DatasetRecord, ItemRecord, JobRecord, NewVersion, Role, Store};
use sqlx::{AnyConnection, Connection};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn admin_url() -> String {
    std::env::var("LECTERN_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A throw-away folder (for snapshot files and SQLite databases), removed on drop.
struct Folder(PathBuf);

impl Folder {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(unique("lectern_snapshot_test"));
        std::fs::create_dir_all(&dir).unwrap();
        Folder(dir)
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Throw-away databases of one engine.
struct Databases {
    kind: DatabaseKind,
    folder: Folder,
    postgres: Vec<String>,
}

impl Databases {
    fn new(kind: DatabaseKind) -> Self {
        Databases { kind, folder: Folder::new(), postgres: Vec::new() }
    }

    async fn create(&mut self) -> String {
        match self.kind {
            DatabaseKind::Sqlite => format!("sqlite://{}/{}.db", self.folder.0.display(), unique("db")),
            DatabaseKind::Postgres => {
                sqlx::any::install_default_drivers();
                let name = unique("lectern_snap");
                let mut admin =
                    AnyConnection::connect(&admin_url()).await.expect("PostgreSQL must run for these tests");
                sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.unwrap();
                self.postgres.push(name.clone());
                let base = admin_url();
                format!("{}/{name}", &base[..base.rfind('/').unwrap()])
            }
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.folder.0.join(name)
    }

    async fn drop_all(self) {
        if !self.postgres.is_empty() {
            let mut admin = AnyConnection::connect(&admin_url()).await.unwrap();
            for name in &self.postgres {
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut admin).await.unwrap();
            }
        }
    }
}

macro_rules! both_engines {
    ($name:ident, $check:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let mut dbs = super::Databases::new(lectern_store::DatabaseKind::Sqlite);
                super::$check(&mut dbs).await;
                dbs.drop_all().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let mut dbs = super::Databases::new(lectern_store::DatabaseKind::Postgres);
                super::$check(&mut dbs).await;
                dbs.drop_all().await;
            }
        }
    };
}

fn sha(n: u64) -> String {
    format!("{n:064x}")
}

fn version(model: &str, v: u64, content: u64) -> NewVersion {
    NewVersion {
        model: model.into(),
        version: v,
        sha256: sha(content),
        size: 10 * v,
        object_key: format!("models/{model}/{}.onnx", sha(content)),
        from_folder: false,
    }
}

fn dataset(name: &str, content: u64) -> DatasetRecord {
    DatasetRecord {
        name: name.into(),
        format: "csv".into(),
        object_key: format!("datasets/{name}/{}.csv", sha(content)),
        sha256: sha(content),
        size: 42,
        rows: 3,
        schema_json: r#"[{"name":"a","type":"number"}]"#.into(),
        preview_json: r#"[{"a":1.5}]"#.into(),
        created_by: "key:1".into(),
        created_at_ms: 1_700_000_000_123,
    }
}

fn job(id: &str) -> JobRecord {
    JobRecord {
        id: id.into(),
        model: "iris".into(),
        dataset: "iris".into(),
        dataset_sha256: None,
        request_json: r#"{"target": "species", "note": "quotes \" and \\ and 'single' and ünïcödé"}"#.into(),
        state: "queued".into(),
        stage: "queued".into(),
        percent: 0,
        error: None,
        result_json: None,
        version: None,
        created_by: "key:1".into(),
        created_at_ms: 1,
        started_at_ms: None,
        finished_at_ms: None,
    }
}

/// A store with rows in every table: models and versions (two sharing one artifact), a
/// revoked and a live key, a pipeline, two datasets, jobs (one finished with pictures).
/// Returns the live key's secret.
async fn fill(store: &Store) -> String {
    store.create_model("alice", "iris", "latest = 1\n", Some("setosa\nversicolor\n")).await.unwrap();
    store.create_model("alice", "empty", "", None).await.unwrap();
    store.add_version("alice", &version("iris", 1, 1)).await.unwrap();
    store.add_version("alice", &version("iris", 2, 2)).await.unwrap();
    store.add_version("alice", &version("iris", 3, 1)).await.unwrap();
    store.set_default_version("alice", "iris", Some(2)).await.unwrap();
    let (revoked, _) = store.create_key("cli", "old", Role::Client).await.unwrap();
    store.revoke_key("alice", &revoked.id).await.unwrap();
    let (_, secret) = store.create_key("cli", "ci\nnewline", Role::Admin).await.unwrap();
    store.put_pipeline("alice", "p", "[[steps]]\nid = \"a\"\nmodel = \"iris\"\n").await.unwrap();
    store.put_dataset("key:1", &dataset("iris", 10)).await.unwrap();
    store.put_dataset("key:1", &dataset("other", 11)).await.unwrap();
    store.insert_job(&job("j1")).await.unwrap();
    store.insert_job(&job("j2")).await.unwrap();
    assert!(store.start_job("j1").await.unwrap());
    let done = lectern_store::JobEnd {
        state: "succeeded",
        percent: 100,
        error: None,
        result_json: Some(r#"{"accuracy": 0.97}"#),
        version: Some(3),
        actor: Some("key:1"),
        only_queued: false,
    };
    let pictures = vec![("tree".to_string(), "<svg>\n<g/></svg>".to_string())];
    assert!(store.finish_job("j1", &done, &pictures).await.unwrap());
    // A collection: vectors are bytes (every byte value, NUL included), a text may be absent.
    let spec = CollectionSpec { name: "words".into(), model: None, dimension: 64 };
    let items: Vec<ItemRecord> = (0..4u8)
        .map(|i| ItemRecord {
            id: format!("w{i}"),
            text: (i % 2 == 0).then(|| format!("word {i}")),
            metadata_json: format!(r#"{{"level": {i}}}"#),
            vector: (0..=255u8).map(|b| b.wrapping_add(i)).collect(),
        })
        .collect();
    store.upsert_items("alice", &spec, &items, false, 1000).await.unwrap();
    secret
}

/// Every row of a table as text, sorted: SQLite's `quote()` of each column, PostgreSQL's
/// `row_to_json`.
async fn rows(url: &str, table: &str) -> Vec<String> {
    sqlx::any::install_default_drivers();
    let mut conn = AnyConnection::connect(url).await.unwrap();
    let sql = if url.starts_with("sqlite://") {
        let columns: Vec<(String,)> =
            sqlx::query_as("SELECT name FROM pragma_table_info($1)").bind(table).fetch_all(&mut conn).await.unwrap();
        let parts: Vec<String> = columns.iter().map(|(c,)| format!("quote(\"{c}\")")).collect();
        format!("SELECT {} FROM \"{table}\"", parts.join(" || '|' || "))
    } else {
        format!("SELECT row_to_json(t)::text FROM \"{table}\" t")
    };
    let mut out: Vec<String> =
        sqlx::query_as::<_, (String,)>(&sql).fetch_all(&mut conn).await.unwrap().into_iter().map(|r| r.0).collect();
    conn.close().await.unwrap();
    out.sort();
    out
}

fn snapshot_name(kind: DatabaseKind) -> &'static str {
    match kind {
        DatabaseKind::Sqlite => "db.sqlite",
        DatabaseKind::Postgres => "db.jsonl",
    }
}

async fn round_trip(dbs: &mut Databases) {
    let source = dbs.create().await;
    let store = Store::open(&source).await.unwrap();
    let secret = fill(&store).await;
    let file = dbs.file(snapshot_name(dbs.kind));
    let info = snapshot::take(&source, &file).await.unwrap();

    // Every table of the schema, with its rows, and every object the rows name.
    assert_eq!((info.kind, info.schema_version), (dbs.kind, snapshot::schema_version()));
    let tables: BTreeSet<String> = info.tables.iter().map(|t| t.0.clone()).collect();
    let expected: BTreeSet<String> = snapshot::tables(snapshot::schema_version()).await.unwrap().into_iter().collect();
    assert_eq!(tables, expected);
    for table in [
        "models",
        "model_versions",
        "api_keys",
        "audit_log",
        "pipelines",
        "datasets",
        "training_jobs",
        "training_pictures",
        "collections",
        "collection_items",
    ] {
        assert!(info.tables.iter().any(|(t, n)| t == table && *n > 0), "{table} in {:?}", info.tables);
    }
    let objects: Vec<(String, Option<String>)> =
        info.objects.iter().map(|o| (o.key.clone(), o.sha256.clone())).collect();
    let mut wanted = vec![
        (format!("datasets/iris/{}.csv", sha(10)), Some(sha(10))),
        (format!("datasets/other/{}.csv", sha(11)), Some(sha(11))),
        (format!("models/iris/{}.onnx", sha(1)), Some(sha(1))),
        (format!("models/iris/{}.onnx", sha(2)), Some(sha(2))),
    ];
    wanted.sort();
    assert_eq!(objects, wanted, "each object once, with its SHA-256");
    assert_eq!(snapshot::inspect(dbs.kind, &file).await.unwrap(), info, "the file reads back as what was taken");

    // Restored into a fresh database: the same rows in every table.
    let target = dbs.create().await;
    assert!(snapshot::occupied(&target).await.unwrap().is_empty());
    let restored = snapshot::restore(&target, dbs.kind, &file, false).await.unwrap();
    assert_eq!(restored.rows(), info.rows());
    for table in &expected {
        assert_eq!(rows(&source, table).await, rows(&target, table).await, "table {table}");
    }

    // The restored store works, and new rows do not collide with restored ones.
    let copy = Store::open(&target).await.unwrap();
    assert_eq!(copy.verify_key(&secret).await.unwrap().unwrap().role, Role::Admin);
    assert_eq!(copy.model("iris").await.unwrap().unwrap().default_version, Some(2));
    assert_eq!(copy.picture("j1", "tree").await.unwrap().as_deref(), Some("<svg>\n<g/></svg>"));
    assert_eq!(copy.collection_items("words").await.unwrap(), store.collection_items("words").await.unwrap());
    assert_eq!(copy.collection_items("words").await.unwrap()[3].vector[0], 3);
    let before = copy.audit_log(1).await.unwrap()[0].id;
    copy.create_key("cli", "after", Role::Client).await.unwrap();
    copy.add_version("bob", &version("iris", 4, 4)).await.unwrap();
    copy.insert_job(&job("j3")).await.unwrap();
    let log = copy.audit_log(2).await.unwrap();
    assert!(log[1].id > before && log[0].id > log[1].id, "audit ids go on after the restored ones");
    let newest: Vec<String> = copy.jobs(None, 10).await.unwrap().into_iter().map(|j| j.id).collect();
    assert_eq!(newest, ["j3", "j2", "j1"], "job order (by their identity) goes on too");

    // A target with rows is refused unless forced, and is then replaced.
    match snapshot::restore(&target, dbs.kind, &file, false).await {
        Err(SnapshotError::NotEmpty(held)) => {
            assert!(held.iter().any(|(t, n)| t == "models" && *n == 2), "{held:?}");
            assert!(!held.iter().any(|(t, _)| t == "schema_migrations"), "{held:?}");
        }
        other => panic!("a full target was not refused: {other:?}"),
    }
    assert_eq!(copy.versions("iris").await.unwrap().len(), 4, "the refused restore changed nothing");
    drop(copy);
    snapshot::restore(&target, dbs.kind, &file, true).await.unwrap();
    for table in &expected {
        assert_eq!(rows(&source, table).await, rows(&target, table).await, "table {table} after --force");
    }

    // A snapshot of one engine does not go into the other.
    let other = match dbs.kind {
        DatabaseKind::Sqlite => DatabaseKind::Postgres,
        DatabaseKind::Postgres => DatabaseKind::Sqlite,
    };
    assert!(matches!(snapshot::restore(&target, other, &file, true).await, Err(SnapshotError::Invalid(_))));
}
both_engines!(round_trip, round_trip);

/// A snapshot taken while writers commit is one moment of the database: each model was created
/// in one transaction with its audit row and its first version, so the snapshot holds as many
/// `model.create` audit rows as models, and a version for each.
async fn consistent_under_writes(dbs: &mut Databases) {
    let source = dbs.create().await;
    let store = Store::open(&source).await.unwrap();
    fill(&store).await;
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            let stop = std::time::Instant::now() + std::time::Duration::from_secs(3);
            while std::time::Instant::now() < stop {
                n += 1;
                let name = format!("m{n}");
                store.create_model("w", &name, "", None).await.unwrap();
                store.add_version("w", &version(&name, 1, 1000 + n)).await.unwrap();
                store.create_key("w", &name, Role::Client).await.unwrap();
            }
            n
        })
    };
    let mut files = Vec::new();
    // Snapshots while the writer writes.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for i in 0..3 {
        let file = dbs.file(&format!("{i}-{}", snapshot_name(dbs.kind)));
        let info = snapshot::take(&source, &file).await.unwrap();
        files.push((file, info));
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    }
    let written = writer.await.unwrap();
    assert!(written > 5, "the writer wrote ({written} models)");
    for (file, info) in files {
        let target = dbs.create().await;
        snapshot::restore(&target, dbs.kind, &file, false).await.unwrap();
        let copy = Store::open(&target).await.unwrap();
        let models = copy.models().await.unwrap();
        let creates = copy.audit_log(100_000).await.unwrap().iter().filter(|e| e.action == "model.create").count();
        assert_eq!(models.len(), creates, "models and their audit rows from one moment");
        for model in models.iter().filter(|m| m.name.starts_with('m')) {
            // A model without its version can only be the one whose version was being added.
            let versions = copy.versions(&model.name).await.unwrap().len();
            assert!(versions <= 1);
        }
        let keys = copy.keys().await.unwrap().len();
        let named: usize = info.objects.len();
        assert!(keys >= 1 && named >= 4, "{keys} keys, {named} objects");
        let refs: Vec<&ObjectRef> = info.objects.iter().filter(|o| o.table == "model_versions").collect();
        let mut versions = 0;
        for model in &models {
            for v in copy.versions(&model.name).await.unwrap() {
                assert!(refs.iter().any(|o| o.key == v.object_key), "version {} {} named", model.name, v.version);
                versions += 1;
            }
        }
        assert!(versions >= 3);
        drop(copy);
    }
}
both_engines!(consistent_under_writes, consistent_under_writes);

#[tokio::test]
async fn a_missing_database_or_a_bad_file_is_a_clear_error() {
    let folder = Folder::new();
    let missing = format!("sqlite://{}/nothing-here.db", folder.0.display());
    let file = folder.0.join("s.sqlite");
    match snapshot::take(&missing, &file).await {
        Err(e @ SnapshotError::Missing(_)) => assert!(e.to_string().contains("nothing-here.db"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(!folder.0.join("nothing-here.db").exists(), "a backup creates no database");
    std::fs::write(&file, b"not a database at all").unwrap();
    assert!(snapshot::inspect(DatabaseKind::Sqlite, &file).await.is_err());
    let lines = folder.0.join("s.jsonl");
    for (text, why) in [
        ("{\"table\": \"models\"}\n", "not a snapshot row"),
        ("{\"table\": \"nope\", \"row\": {}}\n", "not one of Lectern's"),
        ("{\"table\": \"models\", \"row\": []}\n", "not an object"),
        ("", "no Lectern schema"),
        (
            "{\"table\": \"schema_migrations\", \"row\": {\"version\": 1, \"applied_at\": 1}}\n\
             {\"table\": \"models\", \"row\": {\"name\": \"m\"}}\n",
            "do not have the columns",
        ),
        (
            "{\"table\": \"schema_migrations\", \"row\": {\"version\": 99999, \"applied_at\": 1}}\n",
            "newer than this lectern",
        ),
    ] {
        std::fs::write(&lines, text).unwrap();
        let err = snapshot::inspect(DatabaseKind::Postgres, &lines).await.unwrap_err().to_string();
        assert!(err.contains(why), "{text:?}: {err}");
    }
    assert!(snapshot::engine("mysql://x").is_err());
    assert_eq!(snapshot::engine("sqlite://a/b.db?mode=rwc").unwrap(), DatabaseKind::Sqlite);
}

/// The objects a snapshot names are handed over once the snapshot is fixed, before the
/// database is copied, and the copy is of that same moment: a change committed meanwhile (here,
/// by the step that receives the objects) is not in it.
async fn objects_and_copy_are_one_moment(dbs: &mut Databases) {
    let source = dbs.create().await;
    let store = Store::open(&source).await.unwrap();
    fill(&store).await;
    let file = dbs.file(snapshot_name(dbs.kind));
    let mut handed = Vec::new();
    let info = snapshot::take_with_objects(&source, &file, |objects| {
        handed = objects;
        let store = store.clone();
        async move {
            store.create_model("meanwhile", "late", "", None).await.unwrap();
            store.add_version("meanwhile", &version("late", 1, 77)).await.unwrap();
            Ok::<(), ()>(())
        }
    })
    .await
    .unwrap();
    assert_eq!(handed, info.objects);
    assert!(!info.objects.iter().any(|o| o.key.contains("/late/")));
    let target = dbs.create().await;
    snapshot::restore(&target, dbs.kind, &file, false).await.unwrap();
    let copy = Store::open(&target).await.unwrap();
    assert!(copy.model("late").await.unwrap().is_none(), "a change after the snapshot is not in its copy");
    assert!(store.model("late").await.unwrap().is_some());
    assert_eq!(copy.models().await.unwrap().len(), 2);

    // An error of the objects step stops the snapshot.
    let stopped = snapshot::take_with_objects(&source, &dbs.file("stopped"), |_| async { Err::<(), _>("full") }).await;
    assert!(matches!(stopped, Err(snapshot::TakeError::Objects("full"))));
}
both_engines!(objects_and_copy_are_one_moment, objects_and_copy_are_one_moment);
