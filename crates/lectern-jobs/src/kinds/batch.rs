//! `pipeline-batch`: runs a pipeline over every row of a dataset (each row's columns are the
//! pipeline's body) and stores the rows with the pipeline's answers as another dataset. A row
//! the pipeline refuses keeps its error in an `error` column; the others go on.

use super::{flat, publish, Deps, Detail, RunCtx};
use futures_util::StreamExt;
use lectern_pipeline::PipelineRequest;
use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchSpec {
    pub pipeline: String,
    pub dataset: String,
    pub output: String,
    #[serde(default = "concurrency")]
    pub concurrency: usize,
}

fn concurrency() -> usize {
    4
}

impl BatchSpec {
    pub fn check(&self) -> Result<(), String> {
        for (field, name) in [("dataset", &self.dataset), ("output", &self.output)] {
            lectern_manage::check_model_name(name).map_err(|_| format!("invalid '{field}' name '{name}'"))?;
        }
        if self.dataset == self.output {
            return Err("'output' must differ from 'dataset'".into());
        }
        if !(1..=256).contains(&self.concurrency) {
            return Err("'concurrency' must be 1 to 256".into());
        }
        Ok(())
    }

    pub async fn run(&self, deps: &Deps, ctx: &RunCtx) -> Result<Detail, String> {
        if !deps.pipelines.pipelines().iter().any(|p| p.name == self.pipeline) {
            return Err(format!("unknown pipeline '{}'", self.pipeline));
        }
        let data =
            deps.manager.read_dataset(&self.dataset).await.map_err(|e| format!("dataset '{}': {e}", self.dataset))?;
        let inputs: Vec<Map<String, Value>> = (0..data.rows).map(|row| data.row_object(row)).collect();
        let columns: Vec<String> = data.columns.iter().map(|c| c.schema.name.clone()).collect();
        let total = inputs.len();
        let answers: Vec<(Map<String, Value>, Result<Value, String>)> = futures_util::stream::iter(inputs)
            .map(|row| async move {
                let request = PipelineRequest { body: row.clone(), files: Default::default() };
                let answer = deps.pipelines.run(&self.pipeline, request).await.map_err(|e| e.to_string());
                ctx.add_items(1);
                (row, answer)
            })
            .buffered(self.concurrency)
            .collect()
            .await;
        let failed = answers.iter().filter(|(_, a)| a.is_err()).count();
        if total > 0 && failed == total {
            let first = answers.into_iter().find_map(|(_, a)| a.err()).unwrap_or_default();
            return Err(format!("the pipeline refused every row ({total}); the first: {first}"));
        }
        let rows = answers.into_iter().map(|(row, answer)| output_row(row, answer)).collect();
        publish(deps, &ctx.actor(), &self.output, &columns, rows).await?;
        Ok(format!(
            "{total} rows of '{}' through '{}' into '{}' ({failed} refused)",
            self.dataset, self.pipeline, self.output
        ))
    }
}

/// The input row, then the answer's top-level fields (or its error).
fn output_row(mut row: Map<String, Value>, answer: Result<Value, String>) -> Map<String, Value> {
    match answer {
        Ok(Value::Object(fields)) => {
            for (k, v) in fields {
                row.insert(k, flat(v));
            }
            row.insert("error".into(), Value::Null);
        }
        Ok(other) => {
            row.insert("answer".into(), flat(other));
            row.insert("error".into(), Value::Null);
        }
        Err(e) => {
            row.insert("error".into(), Value::String(e));
        }
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_join_their_rows_flat() {
        let row = json!({"a": 1}).as_object().unwrap().clone();
        let out = output_row(row.clone(), Ok(json!({"label": "x", "scores": [0.1, 0.9]})));
        assert_eq!(Value::Object(out), json!({"a": 1, "label": "x", "scores": "[0.1,0.9]", "error": null}));
        let out = output_row(row, Err("bad row".into()));
        assert_eq!(Value::Object(out), json!({"a": 1, "error": "bad row"}));
    }
}
