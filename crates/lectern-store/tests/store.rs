//! The store's behaviour, run against SQLite and against the machine's PostgreSQL
//! (`LECTERN_TEST_POSTGRES`, default `postgres://postgres@127.0.0.1:5432/postgres`); each
//! PostgreSQL test creates its own database and drops it.

use lectern_store::{NewVersion, Role, Store, StoreError, VersionState};
use sqlx::Connection;
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn admin_url() -> String {
    std::env::var("LECTERN_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A throw-away database of each engine.
enum TestDb {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl TestDb {
    async fn sqlite() -> (Self, String) {
        let dir = std::env::temp_dir().join(unique("lectern_store_test"));
        let url = format!("sqlite://{}/lectern.db", dir.display());
        (TestDb::Sqlite(dir), url)
    }

    async fn postgres() -> (Self, String) {
        sqlx::any::install_default_drivers();
        let name = unique("lectern_test");
        let mut admin = sqlx::AnyConnection::connect(&admin_url()).await.expect("PostgreSQL must run for these tests");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.unwrap();
        let base = admin_url();
        let url = format!("{}/{name}", &base[..base.rfind('/').unwrap()]);
        (TestDb::Postgres(name), url)
    }

    async fn drop(self) {
        match self {
            TestDb::Sqlite(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            TestDb::Postgres(name) => {
                let mut admin = sqlx::AnyConnection::connect(&admin_url()).await.unwrap();
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut admin).await.unwrap();
            }
        }
    }
}

/// Runs `check` against a fresh SQLite store and a fresh PostgreSQL store.
macro_rules! both_engines {
    ($name:ident, $check:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let (db, url) = super::TestDb::sqlite().await;
                super::$check(&url).await;
                db.drop().await;
            }
            #[tokio::test]
            async fn postgres() {
                let (db, url) = super::TestDb::postgres().await;
                super::$check(&url).await;
                db.drop().await;
            }
        }
    };
}

fn version(model: &str, v: u64) -> NewVersion {
    NewVersion {
        model: model.into(),
        version: v,
        sha256: format!("{v:064x}"),
        size: 10 * v,
        object_key: format!("models/{model}/{v}"),
        from_folder: v == 1,
    }
}

async fn models_versions_and_defaults(url: &str) {
    let store = Store::open(url).await.unwrap();
    store.create_model("alice", "iris", "latest = 1\n", Some("a\nb\n")).await.unwrap();
    assert!(matches!(store.create_model("alice", "iris", "", None).await, Err(StoreError::ModelExists(_))));
    assert_eq!(store.next_version("iris").await.unwrap(), 1);
    store.add_version("alice", &version("iris", 1)).await.unwrap();
    store.add_version("alice", &version("iris", 2)).await.unwrap();
    assert!(matches!(store.add_version("alice", &version("iris", 2)).await, Err(StoreError::VersionExists(..))));
    assert!(matches!(store.add_version("alice", &version("nope", 1)).await, Err(StoreError::ModelNotFound(_))));
    assert_eq!(store.next_version("iris").await.unwrap(), 3);

    store.set_version_state("iris", 2, VersionState::Unavailable, "bad file").await.unwrap();
    let versions = store.versions("iris").await.unwrap();
    assert_eq!(versions.iter().map(|v| v.version).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!((versions[1].state, versions[1].reason.as_str()), (VersionState::Unavailable, "bad file"));
    assert_eq!(versions[0].state, VersionState::Pending);
    assert!(versions[0].from_folder && !versions[1].from_folder);
    store.set_imported("iris", "abc").await.unwrap();
    assert_eq!(store.model("iris").await.unwrap().unwrap().imported.as_deref(), Some("abc"));

    store.set_default_version("bob", "iris", Some(1)).await.unwrap();
    assert!(matches!(store.set_default_version("bob", "iris", Some(9)).await, Err(StoreError::VersionNotFound(..))));
    assert_eq!(store.model("iris").await.unwrap().unwrap().default_version, Some(1));
    store.delete_version("bob", "iris", 1).await.unwrap();
    assert_eq!(store.model("iris").await.unwrap().unwrap().default_version, None, "deleting the default clears it");

    let updated = store.set_config("bob", "iris", "latest = 2\n", None).await.unwrap();
    assert_eq!((updated.config.as_str(), updated.labels), ("latest = 2\n", None));
    assert_eq!(store.models().await.unwrap().len(), 1);
    let removed = store.delete_model("bob", "iris").await.unwrap();
    assert_eq!(removed.len(), 1);
    assert!(store.model("iris").await.unwrap().is_none());
    assert!(matches!(store.delete_model("bob", "iris").await, Err(StoreError::ModelNotFound(_))));

    let log = store.audit_log(100).await.unwrap();
    let actions: Vec<&str> = log.iter().rev().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "model.create",
            "version.create",
            "version.create",
            "model.default",
            "version.delete",
            "model.config",
            "model.delete"
        ]
    );
    assert_eq!(log[0].actor, "bob");
}
both_engines!(models, models_versions_and_defaults);

async fn keys_are_hashed_verified_and_revoked(url: &str) {
    let store = Store::open(url).await.unwrap();
    assert!(!store.has_keys().await.unwrap());
    let (key, secret) = store.create_key("startup", "ci", Role::Trainer).await.unwrap();
    assert!(store.has_keys().await.unwrap());
    assert_eq!(store.verify_key(&secret).await.unwrap().unwrap().role, Role::Trainer);
    let mut forged = secret.clone();
    forged.pop();
    forged.push(if secret.ends_with('0') { '1' } else { '0' });
    assert!(store.verify_key(&forged).await.unwrap().is_none());
    assert!(store.verify_key("Bearer nonsense").await.unwrap().is_none());
    store.revoke_key("admin", &key.id).await.unwrap();
    assert!(store.verify_key(&secret).await.unwrap().is_none());
    assert!(matches!(store.revoke_key("admin", &key.id).await, Err(StoreError::KeyNotFound(_))));
    let listed = store.keys().await.unwrap();
    assert!(listed[0].revoked_at_ms.is_some());
    // The secret is nowhere in the audit log.
    assert!(store.audit_log(10).await.unwrap().iter().all(|e| !e.detail.contains(&secret)));
}
both_engines!(keys, keys_are_hashed_verified_and_revoked);

async fn reopening_keeps_everything_and_migrates_once(url: &str) {
    {
        let store = Store::open(url).await.unwrap();
        store.create_model("a", "m", "", None).await.unwrap();
    }
    let store = Store::open(url).await.unwrap();
    assert!(store.ping().await);
    assert_eq!(store.models().await.unwrap()[0].name, "m");
}
both_engines!(reopen, reopening_keeps_everything_and_migrates_once);

#[tokio::test]
async fn bad_urls_are_refused_without_echoing_them() {
    let e = Store::open("mysql://root:hunter2@x/db").await.err().unwrap().to_string();
    assert!(!e.contains("hunter2"), "{e}");
    let e = Store::open("postgres://u:hunter2@127.0.0.1:1/db").await.err().unwrap().to_string();
    assert!(!e.contains("hunter2"), "{e}");
}

fn job(id: &str) -> lectern_store::JobRecord {
    lectern_store::JobRecord {
        id: id.into(),
        model: "m".into(),
        dataset: "d".into(),
        dataset_sha256: None,
        request_json: "{}".into(),
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

fn end<'a>(state: &'a str, error: Option<&'a str>, only_queued: bool) -> lectern_store::JobEnd<'a> {
    lectern_store::JobEnd { state, percent: 40, error, result_json: None, version: None, actor: None, only_queued }
}

async fn datasets_and_training_jobs(url: &str) {
    let store = Store::open(url).await.unwrap();
    let d = lectern_store::DatasetRecord {
        name: "d".into(),
        format: "csv".into(),
        object_key: "datasets/d/1.csv".into(),
        sha256: "1".into(),
        size: 10,
        rows: 3,
        schema_json: "[]".into(),
        preview_json: "[]".into(),
        created_by: "key:1".into(),
        created_at_ms: 5,
    };
    assert_eq!(store.put_dataset("key:1", &d).await.unwrap(), None);
    let replacement = lectern_store::DatasetRecord { object_key: "datasets/d/2.csv".into(), rows: 4, ..d.clone() };
    assert_eq!(store.put_dataset("key:1", &replacement).await.unwrap(), Some(d.clone()), "the replaced one");
    assert_eq!(store.dataset("d").await.unwrap().unwrap().rows, 4);
    assert_eq!(store.datasets().await.unwrap().len(), 1);

    for id in ["a", "b", "c"] {
        store.insert_job(&job(id)).await.unwrap();
    }
    assert_eq!(store.queued_jobs().await.unwrap(), vec!["a", "b", "c"]);
    let newest: Vec<String> = store.jobs(None, 2).await.unwrap().into_iter().map(|j| j.id).collect();
    assert_eq!(newest, vec!["c", "b"], "newest first");
    assert!(store.start_job("a").await.unwrap());
    assert!(!store.start_job("a").await.unwrap(), "only a queued job starts");
    store.job_progress("a", "training", 40, Some("sha")).await.unwrap();
    let a = store.job("a").await.unwrap().unwrap();
    assert_eq!(
        (a.state.as_str(), a.stage.as_str(), a.percent, a.dataset_sha256.as_deref()),
        ("running", "training", 40, Some("sha"))
    );
    assert!(!store.finish_job("a", &end("cancelled", Some("x"), true), &[]).await.unwrap(), "running, not queued");
    assert!(store.finish_job("b", &end("cancelled", Some("by key:1"), true), &[]).await.unwrap());
    assert!(
        !store.finish_job("b", &end("failed", Some("late"), false), &[]).await.unwrap(),
        "an ended job stays ended"
    );
    let pictures = vec![("tree".to_string(), "<svg/>".to_string())];
    assert!(store.start_job("c").await.unwrap());
    let done = lectern_store::JobEnd {
        state: "succeeded",
        result_json: Some("{}"),
        version: Some(3),
        ..end("succeeded", None, false)
    };
    assert!(store.finish_job("c", &done, &pictures).await.unwrap());
    let c = store.job("c").await.unwrap().unwrap();
    assert_eq!((c.state.as_str(), c.stage.as_str(), c.percent, c.version), ("succeeded", "done", 100, Some(3)));
    assert_eq!(store.picture("c", "tree").await.unwrap().as_deref(), Some("<svg/>"));
    assert_eq!(store.picture("c", "confusion").await.unwrap(), None);
    assert_eq!(store.fail_running_jobs("stopped").await.unwrap(), 1);
    let a = store.job("a").await.unwrap().unwrap();
    assert_eq!((a.state.as_str(), a.error.as_deref()), ("failed", Some("stopped")));
    assert!(store.queued_jobs().await.unwrap().is_empty());
    assert_eq!(store.delete_dataset("key:1", "d").await.unwrap().map(|d| d.rows), Some(4));
    assert_eq!(store.delete_dataset("key:1", "d").await.unwrap(), None);
}
both_engines!(training, datasets_and_training_jobs);
