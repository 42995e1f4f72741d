//! What a job does when it runs: one file per kind. Each kind's spec is read from the job's own
//! fields (`check` refuses what cannot run) and its `run` reports the items it touched through
//! the [`RunCtx`] as it goes, so a run that fails half-way still says how far it got.

mod batch;
mod cleanup;
mod ingest;
mod retrain;

pub use batch::BatchSpec;
pub use cleanup::CleanupSpec;
pub use ingest::IngestSpec;
pub use retrain::RetrainSpec;

use crate::spec::{JobDef, Kind};
use bytes::Bytes;
use lectern_manage::{Manager, Training};
use lectern_pipeline::Engine;
use lectern_store::Store;
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What the kinds use.
#[derive(Clone)]
pub struct Deps {
    pub manager: Arc<Manager>,
    pub training: Arc<Training>,
    pub pipelines: Arc<Engine>,
}

/// One run in progress.
pub struct RunCtx {
    pub job: String,
    pub run_id: String,
    pub store: Store,
    pub http: reqwest::Client,
    /// Items touched so far.
    pub items: AtomicU64,
}

impl RunCtx {
    /// The actor of the changes a job makes (in the audit log).
    pub fn actor(&self) -> String {
        format!("job:{}", self.job)
    }

    pub fn add_items(&self, n: u64) {
        self.items.fetch_add(n, Ordering::Relaxed);
    }
}

/// What a run that succeeded says of itself.
pub type Detail = String;

/// Runs the job's kind to its end.
pub async fn run(deps: Deps, def: Arc<JobDef>, ctx: Arc<RunCtx>) -> Result<Detail, String> {
    match &def.kind {
        Kind::Ingest(spec) => spec.run(&deps, &ctx).await,
        Kind::Cleanup(spec) => spec.run(&deps, &ctx).await,
        Kind::Retrain(spec) => spec.run(&deps, &ctx).await,
        Kind::Batch(spec) => spec.run(&deps, &ctx).await,
    }
}

/// A value as a flat dataset takes it: objects and lists as their JSON text.
pub(crate) fn flat(value: Value) -> Value {
    match value {
        Value::Object(_) | Value::Array(_) => Value::String(value.to_string()),
        other => other,
    }
}

/// Writes rows (flat objects) as the JSON dataset `name`: every row gets every column (`null`
/// where it has none); the columns of `first` lead, then the others as they first appear, and
/// an `error` column goes last.
pub(crate) async fn publish(
    deps: &Deps,
    actor: &str,
    name: &str,
    first: &[String],
    rows: Vec<Map<String, Value>>,
) -> Result<(), String> {
    let body = json_rows(first, &rows);
    let stream = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(Bytes::from(body))]);
    deps.manager
        .push_dataset(actor, name, lectern_train::dataset::Format::Json, stream)
        .await
        .map_err(|e| format!("cannot store the dataset '{name}': {e}"))?;
    Ok(())
}

/// The rows as a JSON array of objects whose keys are in column order (a JSON dataset's
/// columns are its first object's keys, in order).
fn json_rows(first: &[String], rows: &[Map<String, Value>]) -> Vec<u8> {
    let mut columns: Vec<&str> = first.iter().map(String::as_str).collect();
    for row in rows {
        for key in row.keys() {
            if key != "error" && !columns.contains(&key.as_str()) {
                columns.push(key);
            }
        }
    }
    if rows.iter().any(|r| r.contains_key("error")) && !columns.contains(&"error") {
        columns.push("error");
    }
    let mut out = String::from("[");
    for (i, row) in rows.iter().enumerate() {
        out.push_str(if i == 0 { "{" } else { ",{" });
        for (j, column) in columns.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            out.push_str(&Value::from(*column).to_string());
            out.push(':');
            out.push_str(&row.get(*column).unwrap_or(&Value::Null).to_string());
        }
        out.push('}');
    }
    out.push(']');
    out.into_bytes()
}

/// Republishes the rows an ingest job upserted into `dataset` (nothing when it has none), the
/// columns of `first` leading.
pub(crate) async fn publish_rows(deps: &Deps, ctx: &RunCtx, dataset: &str, first: &[String]) -> Result<usize, String> {
    let stored = ctx.store.dataset_rows(dataset).await.map_err(|e| e.to_string())?;
    if stored.is_empty() {
        return Ok(0);
    }
    let count = stored.len();
    let rows = stored
        .into_iter()
        .map(|(_, json)| match serde_json::from_str(&json) {
            Ok(Value::Object(row)) => Ok(row),
            _ => Err(format!("a stored row of '{dataset}' is not an object")),
        })
        .collect::<Result<Vec<_>, String>>()?;
    publish(deps, &ctx.actor(), dataset, first, rows).await?;
    Ok(count)
}

/// `*` wildcards, the rest literal.
pub(crate) fn matches(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || !name[first.len()..].ends_with(last) || name.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    #[test]
    fn rows_keep_their_column_order_with_the_error_last() {
        use serde_json::json;
        let rows: Vec<_> = [json!({"b": 1, "error": null, "a": 2}), json!({"z": [1], "error": "no"})]
            .into_iter()
            .map(|v| v.as_object().unwrap().clone())
            .collect();
        let text = String::from_utf8(super::json_rows(&["b".into(), "a".into()], &rows)).unwrap();
        assert_eq!(text, r#"[{"b":1,"a":2,"z":null,"error":null},{"b":null,"a":null,"z":[1],"error":"no"}]"#);
    }

    #[test]
    fn wildcards_match_names() {
        use super::matches;
        assert!(matches("kids-*", "kids-ana-birds"));
        assert!(!matches("kids-*", "adult-ana"));
        assert!(matches("*", "anything"));
        assert!(matches("a*c*e", "abcde"));
        assert!(!matches("a*c*e", "abde"));
        assert!(matches("exact", "exact"));
        assert!(!matches("ab*ba", "aba"));
    }
}
