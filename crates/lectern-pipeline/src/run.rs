//! Running pipelines: one request (or each item of its `for_each` list) goes through the
//! steps in order; the answer is shaped from the step results.

use crate::catalog::Catalog;
use crate::expr::{to_json, to_key, Evaluator, Scope};
use crate::image::{decode_base64, image_row};
use crate::llm::LlmClient;
use crate::plan::{ModelInput, Pipeline, Planner, Step, StepKind};
use crate::spec::{line_of, PipelineFile};
use crate::words;
use crate::PipelineError;
use futures_util::{StreamExt, TryStreamExt};
use lectern_core::{DataType, InferRequest, InferResponse, Tensor, TensorData};
use lectern_runtime::{LoadedModel, Registry};
use minijinja::value::Value;
use serde_json::{json, Map, Value as Json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, RwLock};

/// Items of one `for_each` list in flight at once (the rest wait; order is kept).
const PARALLEL_ITEMS: usize = 256;

/// A request to a pipeline: a JSON object, and the files of a multipart upload by field.
#[derive(Debug, Default)]
pub struct PipelineRequest {
    pub body: Map<String, Json>,
    pub files: HashMap<String, Vec<u8>>,
}

/// What a search step calls: the collections service, given by the binary (the pipeline
/// crate does not know the store).
pub trait Searcher: Send + Sync {
    /// Searches `collection` with `query` (`{"text"|"vector", "k", "filter", "exclude_ids"}`, as
    /// `POST /v1/collections/{name}/search` takes); the results list, or why it failed.
    fn search<'a>(
        &'a self,
        collection: &'a str,
        query: Json,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Json, String>> + Send + 'a>>;
}

/// Every pipeline of a config file with the LLM clients they use.
pub struct Engine {
    registry: Arc<Registry>,
    evaluator: Evaluator,
    pipelines: RwLock<BTreeMap<String, Arc<Pipeline>>>,
    /// Pipelines of the config file: the API cannot replace or delete them.
    from_config: HashSet<String>,
    llms: HashMap<String, Arc<LlmClient>>,
    /// Runs search steps, once the binary has given it.
    searcher: std::sync::OnceLock<Arc<dyn Searcher>>,
}

impl Engine {
    /// Reads the `[llm.*]` and `[pipelines.*]` tables of a config file and checks them against
    /// the models in `registry`. `file` names the config in messages; `base` is its folder.
    pub fn build(text: &str, file: &str, base: &Path, registry: Arc<Registry>) -> Result<Self, PipelineError> {
        let parsed = PipelineFile::parse(text, file)?;
        let mut llms = HashMap::new();
        for (name, spec) in &parsed.llm {
            let config_error = |message: String| PipelineError::Config {
                file: file.to_string(),
                line: line_of(text, spec.span().start),
                message,
            };
            let catalog = match &spec.get_ref().catalog {
                Some(path) => {
                    Catalog::load(&base.join(path)).map_err(|e| config_error(format!("llm '{name}': {e}")))?
                }
                None => Catalog::default(),
            };
            let client = LlmClient::new(name, spec.get_ref(), catalog)
                .map_err(|m| config_error(format!("llm '{name}': {m}")))?;
            llms.insert(name.clone(), Arc::new(client));
        }
        let evaluator = Evaluator::default();
        let names: HashSet<String> = llms.keys().cloned().collect();
        let planner = Planner { text, file, evaluator: &evaluator, registry: &registry, llms: &names };
        let pipelines: BTreeMap<String, Arc<Pipeline>> =
            planner.plan(&parsed)?.into_iter().map(|(name, p)| (name, Arc::new(p))).collect();
        let from_config = pipelines.keys().cloned().collect();
        Ok(Engine {
            registry,
            evaluator,
            pipelines: RwLock::new(pipelines),
            from_config,
            llms,
            searcher: std::sync::OnceLock::new(),
        })
    }

    /// Gives the search steps their collections (once; later calls are ignored).
    pub fn set_searcher(&self, searcher: Arc<dyn Searcher>) {
        let _ = self.searcher.set(searcher);
    }

    /// The pipelines, by name.
    pub fn pipelines(&self) -> Vec<Arc<Pipeline>> {
        self.read().values().cloned().collect()
    }

    /// True when the config file declares the pipeline `name` (the API may not change it).
    pub fn is_from_config(&self, name: &str) -> bool {
        self.from_config.contains(name)
    }

    /// Checks a pipeline definition (the body of a `[pipelines.NAME]` table, as TOML) against
    /// the models and LLMs there are now, and serves it under `name`.
    pub fn define(&self, name: &str, text: &str) -> Result<Arc<Pipeline>, PipelineError> {
        let pipeline = self.check(name, text)?;
        Ok(self.serve(pipeline))
    }

    /// Checks a pipeline definition against the models and LLMs there are now, without serving
    /// it (see [`Engine::serve`]): a caller can make it durable in between.
    pub fn check(&self, name: &str, text: &str) -> Result<Pipeline, PipelineError> {
        self.changeable(name)?;
        if !lectern_core::is_plain_name(name) {
            return Err(PipelineError::Input(format!(
                "invalid pipeline name '{name}': letters, digits, '-', '_' and '.'"
            )));
        }
        let file = format!("pipeline '{name}'");
        let names: HashSet<String> = self.llms.keys().cloned().collect();
        let planner = Planner { text, file: &file, evaluator: &self.evaluator, registry: &self.registry, llms: &names };
        planner.plan_text(name, text).map_err(|e| match e {
            PipelineError::Config { line, message, .. } => PipelineError::Input(format!("line {line}: {message}")),
            other => PipelineError::Input(other.to_string()),
        })
    }

    /// Serves a checked pipeline under its name (replacing one of that name).
    pub fn serve(&self, pipeline: Pipeline) -> Arc<Pipeline> {
        let pipeline = Arc::new(pipeline);
        self.write().insert(pipeline.name.clone(), pipeline.clone());
        pipeline
    }

    /// Refuses a change to a pipeline of the config file (only the file changes those).
    pub fn changeable(&self, name: &str) -> Result<(), PipelineError> {
        if self.is_from_config(name) {
            return Err(PipelineError::Input(format!(
                "pipeline '{name}' is declared in the config file; change it there"
            )));
        }
        Ok(())
    }

    /// Stops serving a pipeline defined through the API; false when there was none.
    pub fn undefine(&self, name: &str) -> Result<bool, PipelineError> {
        self.changeable(name)?;
        Ok(self.write().remove(name).is_some())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Pipeline>>> {
        self.pipelines.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Pipeline>>> {
        self.pipelines.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs the pipeline `name` on one request.
    pub async fn run(&self, name: &str, request: PipelineRequest) -> Result<Json, PipelineError> {
        let pipeline =
            self.read().get(name).cloned().ok_or_else(|| PipelineError::UnknownPipeline(name.to_string()))?;
        let pipeline = pipeline.as_ref();
        let whole = Value::from_serialize(&request.body);
        let Some(field) = &pipeline.for_each else {
            let input = Json::Object(request.body);
            return self.run_item(pipeline, &input, &whole, &request.files).await;
        };
        let items = match request.body.get(field) {
            Some(Json::Array(items)) => items,
            Some(other) => {
                return Err(PipelineError::Input(format!("field '{field}' must be a list, not {}", type_name(other))))
            }
            None => return Err(PipelineError::Input(format!("field '{field}' is missing"))),
        };
        let no_files = HashMap::new();
        // The futures are made up front: a stream of plain futures keeps the handler `Send`.
        let runs: Vec<_> = items
            .iter()
            .enumerate()
            .map(|(index, item)| self.run_listed(pipeline, field, index, item, &whole, &no_files))
            .collect();
        let results: Vec<Json> = futures_util::stream::iter(runs).buffered(PARALLEL_ITEMS).try_collect().await?;
        Ok(json!({ "results": results }))
    }

    /// One item of a `for_each` list; errors name the item.
    async fn run_listed(
        &self,
        pipeline: &Pipeline,
        field: &str,
        index: usize,
        item: &Json,
        whole: &Value,
        no_files: &HashMap<String, Vec<u8>>,
    ) -> Result<Json, PipelineError> {
        let wrap = |e: PipelineError| PipelineError::Item { field: field.to_string(), index, source: Box::new(e) };
        if !item.is_object() {
            return Err(wrap(PipelineError::Input(format!("must be an object, not {}", type_name(item)))));
        }
        self.run_item(pipeline, item, whole, no_files).await.map_err(wrap)
    }

    async fn run_item(
        &self,
        pipeline: &Pipeline,
        input: &Json,
        whole: &Value,
        files: &HashMap<String, Vec<u8>>,
    ) -> Result<Json, PipelineError> {
        let mut scope = Scope::new();
        scope.insert("input".into(), Value::from_serialize(input));
        scope.insert("request".into(), whole.clone());
        let mut results = Map::new();
        for step in &pipeline.steps {
            let failed = |message: String| PipelineError::Step { step: step.id.clone(), message };
            if let Some(when) = &step.when {
                if !self.evaluator.eval(when, &scope).map_err(failed)?.is_true() {
                    continue;
                }
            }
            let item = Item { input, files, scope: &scope };
            let result = self.run_step(step, &item).await?;
            scope.insert(step.id.clone(), Value::from_serialize(&result));
            results.insert(step.id.clone(), result);
        }
        let Some(shape) = &pipeline.shape else { return Ok(Json::Object(results)) };
        let mut answer = Map::new();
        for (field, expr) in shape {
            let value = self
                .evaluator
                .eval(expr, &scope)
                .map_err(|m| PipelineError::Step { step: format!("shape.{field}"), message: m })?;
            answer.insert(field.clone(), to_json(&value));
        }
        Ok(Json::Object(answer))
    }

    async fn run_step(&self, step: &Step, item: &Item<'_>) -> Result<Json, PipelineError> {
        let failed = |message: String| PipelineError::Step { step: step.id.clone(), message };
        match &step.kind {
            StepKind::Model { model, version, input, top_k } => {
                self.model_step(step, model, *version, input, *top_k, item).await
            }
            StepKind::Route { route, models, default, input, top_k } => {
                let key = to_key(&self.evaluator.eval(route, item.scope).map_err(failed)?);
                let model = key.as_ref().and_then(|k| models.get(k)).or(default.as_ref()).ok_or_else(|| {
                    let routes = models.keys().cloned().collect::<Vec<_>>().join(", ");
                    let key = key.as_deref().unwrap_or("(undefined)");
                    PipelineError::Input(format!("step '{}': no route for '{key}' (routes: {routes})", step.id))
                })?;
                self.model_step(step, model, None, input, *top_k, item).await
            }
            StepKind::Llm { llm, topic, prompt } => {
                let topic = to_key(&self.evaluator.eval(topic, item.scope).map_err(failed)?)
                    .ok_or_else(|| failed("its topic is undefined for this input".into()))?;
                let mut scope = item.scope.clone();
                scope.insert("topic".into(), Value::from(topic.as_str()));
                let prompt = self.evaluator.render(prompt, &scope).map_err(failed)?;
                let client = self.llms.get(llm).expect("checked at start-up");
                let advice = client.advise(&topic, &prompt).await;
                Ok(serde_json::to_value(advice).expect("advice serialises"))
            }
            StepKind::Output { output } => Ok(Json::String(self.evaluator.render(output, item.scope).map_err(failed)?)),
            StepKind::Search { search, text, vector, k, filter, exclude_ids } => {
                let value = |source: &str| self.evaluator.eval(source, item.scope).map(|v| to_json(&v)).map_err(failed);
                let mut query = Map::new();
                query.insert("k".into(), json!(k));
                if let Some(text) = text {
                    match value(text)? {
                        Json::String(t) => query.insert("text".into(), Json::String(t)),
                        other => return Err(failed(format!("its text must be a string, not {}", type_name(&other)))),
                    };
                }
                if let Some(vector) = vector {
                    query.insert("vector".into(), value(vector)?);
                }
                if !filter.is_empty() {
                    let mut conditions = Map::new();
                    for (key, source) in filter {
                        conditions.insert(key.clone(), value(source)?);
                    }
                    query.insert("filter".into(), Json::Object(conditions));
                }
                if let Some(ids) = exclude_ids {
                    match value(ids)? {
                        Json::Null => {}
                        list @ Json::Array(_) => {
                            query.insert("exclude_ids".into(), list);
                        }
                        other => {
                            return Err(failed(format!("its exclude_ids must be a list, not {}", type_name(&other))))
                        }
                    }
                }
                let searcher =
                    self.searcher.get().ok_or_else(|| failed("collections are not available here".into()))?;
                let results = searcher.search(search, Json::Object(query)).await.map_err(failed)?;
                Ok(json!({ "collection": search, "results": results }))
            }
            StepKind::Ocr { ocr, version, image } => {
                let bytes =
                    image_bytes(item, image).map_err(|m| PipelineError::Input(format!("step '{}': {m}", step.id)))?;
                let page = self.bytes_model(step, ocr, *version, bytes, "page").await?;
                words::ocr_result(ocr, &page).map_err(failed)
            }
            StepKind::Analyze { analyze, version, text } => {
                let value = to_json(&self.evaluator.eval(text, item.scope).map_err(failed)?);
                let (text, ocr_words) = words::analysis_input(&value).map_err(failed)?;
                let analysis = self.bytes_model(step, analyze, *version, text.clone().into_bytes(), "analysis").await?;
                words::analysis_result(analyze, &text, &analysis, &ocr_words).map_err(failed)
            }
            StepKind::Lookup { lookup, words, min_score } => {
                let value = to_json(&self.evaluator.eval(words, item.scope).map_err(failed)?);
                let wanted = words::wanted_words(&value).map_err(failed)?;
                let searcher =
                    self.searcher.get().ok_or_else(|| failed("collections are not available here".into()))?;
                let found = lookup_words(searcher.as_ref(), lookup, &wanted, *min_score).await.map_err(failed)?;
                Ok(json!({ "collection": lookup, "words": found }))
            }
        }
    }

    /// Runs a model with one BYTES row (an image, a text) and gives the first row of `output`.
    async fn bytes_model(
        &self,
        step: &Step,
        model: &str,
        version: Option<u64>,
        row: Vec<u8>,
        output: &str,
    ) -> Result<Vec<u8>, PipelineError> {
        let model_error = |source| PipelineError::Model { step: step.id.clone(), source };
        let loaded = self.registry.model(model, version).await.map_err(model_error)?;
        let failed = |message: String| PipelineError::Step { step: step.id.clone(), message };
        let [info] = loaded.signature.inputs.as_slice() else {
            return Err(failed(format!("model '{model}' does not have exactly one input")));
        };
        let tensor = Tensor { name: info.name.clone(), shape: vec![1], data: TensorData::Bytes(vec![row]) };
        let request = InferRequest { inputs: vec![tensor], ..Default::default() };
        let response = loaded.infer(request).await.map_err(model_error)?;
        let first = response.outputs.into_iter().find(|o| o.tensor.name == output).and_then(|o| match o.tensor.data {
            TensorData::Bytes(rows) => rows.into_iter().next(),
            _ => None,
        });
        first.ok_or_else(|| failed(format!("model '{model}' gave no BYTES output '{output}'")))
    }

    async fn model_step(
        &self,
        step: &Step,
        model: &str,
        version: Option<u64>,
        input: &ModelInput,
        top_k: usize,
        item: &Item<'_>,
    ) -> Result<Json, PipelineError> {
        let loaded = self
            .registry
            .model(model, version)
            .await
            .map_err(|source| PipelineError::Model { step: step.id.clone(), source })?;
        let bad_input = |m: String| PipelineError::Input(format!("step '{}': {m}", step.id));
        let tensor = input_tensor(&loaded, input, item).await.map_err(bad_input)?;
        let request = InferRequest { inputs: vec![tensor], ..Default::default() };
        let response =
            loaded.infer(request).await.map_err(|source| PipelineError::Model { step: step.id.clone(), source })?;
        Ok(classification(&loaded, &response, top_k))
    }
}

/// Looks each word up in `collection`: one exact search for all the lemmas (metadata `lemma`),
/// then, for each lemma not found, the nearest entry by meaning when its score is at least
/// `min_score`. The words in order, each with how it was found.
async fn lookup_words(
    searcher: &dyn Searcher,
    collection: &str,
    wanted: &[words::Wanted],
    min_score: f64,
) -> Result<Vec<Json>, String> {
    let mut exact = Vec::new();
    for query in words::exact_queries(wanted, "lemma") {
        if let Json::Array(results) = searcher.search(collection, query).await? {
            exact.extend(results);
        }
    }
    let exact = words::entries_by_key(&exact, "lemma");
    let mut nearest: HashMap<&str, Option<Json>> = HashMap::new();
    for w in wanted.iter().filter(|w| !exact.contains_key(&w.key)) {
        if nearest.contains_key(w.key.as_str()) {
            continue;
        }
        let results = searcher.search(collection, json!({ "text": w.key, "k": 1 })).await?;
        let best = results.get(0).filter(|h| h.get("score").and_then(Json::as_f64).is_some_and(|s| s >= min_score));
        nearest.insert(w.key.as_str(), best.cloned());
    }
    let answer = wanted
        .iter()
        .map(|w| {
            let pos = w.token.get("pos").and_then(Json::as_str);
            let found = match (exact.get(&w.key), nearest.get(w.key.as_str())) {
                (Some(entries), _) => {
                    words::best_entry(entries, pos, "pos").map_or(words::Found::Unknown, words::Found::Exact)
                }
                (None, Some(Some(hit))) => words::Found::Nearest(hit),
                _ => words::Found::Unknown,
            };
            words::looked_up(w, found)
        })
        .collect();
    Ok(answer)
}

/// What one run of the steps reads.
struct Item<'a> {
    input: &'a Json,
    files: &'a HashMap<String, Vec<u8>>,
    scope: &'a Scope,
}

/// The one-row input tensor of a model step.
async fn input_tensor(model: &LoadedModel, input: &ModelInput, item: &Item<'_>) -> Result<Tensor, String> {
    let [info] = model.signature.inputs.as_slice() else {
        return Err(format!("model '{}' does not have exactly one input", model.name));
    };
    let (values, row_shape) = match input {
        ModelInput::Inputs(fields) => {
            let values = fields.iter().map(|f| number(item.input, f)).collect::<Result<Vec<f64>, String>>()?;
            let n = values.len();
            (values, vec![n])
        }
        ModelInput::Image(field) => {
            let spec = model.image.clone().ok_or_else(|| format!("model '{}' has no [image] config", model.name))?;
            let bytes = image_bytes(item, field)?;
            tokio::task::spawn_blocking(move || image_row(&bytes, &spec))
                .await
                .map_err(|_| "the image decoder failed".to_string())?
                .map_err(|e| format!("field '{field}' {e}"))?
        }
    };
    let data = TensorData::from_f64(info.datatype, &values)
        .ok_or_else(|| format!("model '{}' takes {}, which a pipeline cannot build", model.name, info.datatype))?;
    let shape = std::iter::once(1).chain(row_shape).collect();
    Ok(Tensor { name: info.name.clone(), shape, data })
}

/// The picture in `field`: an uploaded file, or base64 text in the JSON input.
fn image_bytes(item: &Item<'_>, field: &str) -> Result<Vec<u8>, String> {
    if let Some(bytes) = item.files.get(field) {
        return Ok(bytes.clone());
    }
    match item.input.get(field) {
        Some(Json::String(text)) => decode_base64(text).map_err(|e| format!("field '{field}' {e}")),
        Some(other) => {
            Err(format!("field '{field}' must be a base64 image or an uploaded file, not {}", type_name(other)))
        }
        None => Err(format!("field '{field}' is missing")),
    }
}

/// A number field of the input: a JSON number, or text holding one.
fn number(input: &Json, field: &str) -> Result<f64, String> {
    let value = match input.get(field) {
        None | Some(Json::Null) => return Err(format!("field '{field}' is missing")),
        Some(Json::Number(n)) => n.as_f64(),
        Some(Json::String(s)) => s.trim().parse::<f64>().ok(),
        Some(Json::Bool(b)) => Some(f64::from(u8::from(*b))),
        Some(other) => return Err(format!("field '{field}' must be a number, not {}", type_name(other))),
    };
    match value {
        Some(v) if v.is_finite() => Ok(v),
        _ => Err(format!("field '{field}' must be a finite number, not {}", input[field])),
    }
}

pub(crate) fn type_name(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "text",
        Json::Array(_) => "a list",
        Json::Object(_) => "an object",
    }
}

/// A model step's result: the class with its probability and the top k, plus every output.
fn classification(model: &LoadedModel, response: &InferResponse, top_k: usize) -> Json {
    let mut outputs = Map::new();
    for output in &response.outputs {
        let t = &output.tensor;
        let values: Vec<Json> = match &t.data {
            TensorData::Bytes(items) => {
                items.iter().map(|b| Json::String(String::from_utf8_lossy(b).into_owned())).collect()
            }
            data => data.to_f64_vec().unwrap_or_default().into_iter().map(Json::from).collect(),
        };
        outputs.insert(t.name.clone(), Json::Array(values));
    }
    let mut result = json!({ "model": model.name, "version": model.version, "outputs": outputs });
    let Some(scores) = probabilities(response) else {
        // No per-class scores (a regressor, or labels only): the first output's first value.
        let first = response.outputs.first().and_then(|o| outputs.get(&o.tensor.name)).and_then(|v| v.get(0)).cloned();
        let label = first.map(|v| match v {
            Json::String(s) => s,
            other => other.to_string(),
        });
        result["label"] = json!(label);
        return result;
    };
    let label_of = |ix: usize| model.labels.as_ref().and_then(|l| l.get(ix)).cloned().unwrap_or_else(|| ix.to_string());
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let top: Vec<Json> =
        order.iter().take(top_k).map(|&ix| json!({ "label": label_of(ix), "probability": scores[ix] })).collect();
    let best = order[0];
    result["label"] = json!(label_of(best));
    result["index"] = json!(best);
    result["probability"] = json!(scores[best]);
    result["top_k"] = Json::Array(top);
    result
}

/// The first row of the output with one float score per class (the probabilities), preferring
/// an output whose name says so.
fn probabilities(response: &InferResponse) -> Option<Vec<f64>> {
    let per_class = |t: &Tensor| {
        matches!(t.datatype(), DataType::F16 | DataType::F32 | DataType::F64) && t.shape.len() == 2 && t.shape[1] > 1
    };
    let candidates: Vec<&Tensor> = response.outputs.iter().map(|o| &o.tensor).filter(|t| per_class(t)).collect();
    let chosen = candidates.iter().find(|t| t.name.contains("prob")).or(candidates.first())?;
    let classes = chosen.shape[1];
    let mut values = chosen.data.to_f64_vec()?;
    values.truncate(classes);
    (!values.is_empty()).then_some(values)
}
