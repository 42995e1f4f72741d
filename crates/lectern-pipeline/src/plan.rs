//! Checked pipelines: every step's kind decided, every model, LLM, step id, expression and
//! route checked against what is loaded, with errors naming the config line.

use crate::expr::Evaluator;
use crate::spec::{line_of, PipelineFile, PipelineSpec, StepSpec};
use crate::PipelineError;
use lectern_core::DataType;
use lectern_runtime::{LoadedModel, Registry, RuntimeError};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// Entries of a classification result when a step does not say.
pub const DEFAULT_TOP_K: usize = 3;
/// Names every expression may read besides step ids.
const SCOPE_NAMES: [&str; 2] = ["input", "request"];
/// The extra name an LLM step's prompt may read.
const TOPIC: &str = "topic";

/// A checked pipeline.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Pipeline {
    pub name: String,
    /// The request field whose items each run the steps.
    pub for_each: Option<String>,
    pub steps: Vec<Step>,
    /// Answer field -> expression; `None`: every step result by id.
    #[serde(skip)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub shape: Option<Vec<(String, String)>>,
}

impl Pipeline {
    /// Every model the pipeline's steps may run.
    pub fn models(&self) -> Vec<&str> {
        let mut names = Vec::new();
        for step in &self.steps {
            match &step.kind {
                StepKind::Model { model, .. } => names.push(model.as_str()),
                StepKind::Ocr { ocr: model, .. } | StepKind::Analyze { analyze: model, .. } => {
                    names.push(model.as_str())
                }
                StepKind::Route { models, default, .. } => {
                    names.extend(models.values().map(String::as_str));
                    names.extend(default.as_deref());
                }
                _ => {}
            }
        }
        names
    }
}

/// One checked step.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Step {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    #[serde(flatten)]
    pub kind: StepKind,
}

/// What a step does.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum StepKind {
    /// Run one model.
    Model {
        model: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        version: Option<u64>,
        #[serde(flatten)]
        input: ModelInput,
        top_k: usize,
    },
    /// Pick the model by the value of an expression, then run it.
    Route {
        route: String,
        models: BTreeMap<String, String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        default: Option<String>,
        #[serde(flatten)]
        input: ModelInput,
        top_k: usize,
    },
    /// Ask an LLM for resources on a topic.
    Llm { llm: String, topic: String, prompt: String },
    /// A rendered text.
    Output { output: String },
    /// The nearest items of a collection to a text or a vector.
    Search {
        search: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        vector: Option<String>,
        k: u64,
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        filter: BTreeMap<String, String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        exclude_ids: Option<String>,
    },
    /// Read the words of a picture with an OCR model.
    Ocr {
        ocr: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        version: Option<u64>,
        image: String,
    },
    /// Analyse a text (or an OCR step's page) with a text-analysis model.
    Analyze {
        analyze: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        version: Option<u64>,
        text: String,
    },
    /// Look each word's lemma up in a collection: the exact lemma, else the nearest entry.
    Lookup { lookup: String, words: String, min_score: f64 },
}

/// Least score of the nearest entry for a word a lookup step did not find exactly.
pub const DEFAULT_MIN_SCORE: f64 = 0.75;

/// Results of a search step when it does not say.
pub const DEFAULT_K: u64 = 10;
/// Most results a search step may ask for.
pub const MAX_K: u64 = 1000;

/// Where a model step's input row comes from.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ModelInput {
    /// These fields of `input`, as one row.
    Inputs(Vec<String>),
    /// A picture in this field of `input`.
    Image(String),
}

/// Checks the names an expression reads (with extra names it may read).
type NameCheck<'a> = dyn Fn(&str, &[&str]) -> Result<(), String> + 'a;

/// Checks every pipeline of a config file.
pub struct Planner<'a> {
    pub text: &'a str,
    pub file: &'a str,
    pub evaluator: &'a Evaluator,
    pub registry: &'a Registry,
    pub llms: &'a HashSet<String>,
}

impl Planner<'_> {
    /// Every pipeline of `file`, checked.
    pub fn plan(&self, file: &PipelineFile) -> Result<BTreeMap<String, Pipeline>, PipelineError> {
        let mut plans = BTreeMap::new();
        for (name, spec) in &file.pipelines {
            let line = line_of(self.text, spec.span().start);
            let plan = self.pipeline(name, spec.get_ref(), line)?;
            plans.insert(name.clone(), plan);
        }
        Ok(plans)
    }

    /// One pipeline from the TOML body of its table (as the API receives it).
    pub fn plan_text(&self, name: &str, text: &str) -> Result<Pipeline, PipelineError> {
        let spec: PipelineSpec = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(1);
            self.error(line, e.message().to_string())
        })?;
        self.pipeline(name, &spec, 1)
    }

    fn error(&self, line: usize, message: String) -> PipelineError {
        PipelineError::Config { file: self.file.to_string(), line, message }
    }

    fn pipeline(&self, name: &str, spec: &PipelineSpec, line: usize) -> Result<Pipeline, PipelineError> {
        if let Some(field) = &spec.for_each {
            if field.get_ref().trim().is_empty() {
                return Err(self.error(
                    line_of(self.text, field.span().start),
                    format!("pipeline '{name}': for_each names no field"),
                ));
            }
        }
        if spec.steps.is_empty() {
            return Err(self.error(line, format!("pipeline '{name}' has no steps")));
        }
        let all_ids: Vec<&str> = spec.steps.iter().map(|s| s.get_ref().id.as_str()).collect();
        let mut steps: Vec<Step> = Vec::new();
        for step in &spec.steps {
            let line = line_of(self.text, step.span().start);
            let context = StepContext { earlier: &steps, all_ids: &all_ids };
            let checked = self
                .step(step.get_ref(), &context)
                .map_err(|m| self.error(line, format!("pipeline '{name}' step '{}': {m}", step.get_ref().id)))?;
            steps.push(checked);
        }
        let shape = match &spec.shape {
            None => None,
            Some(fields) => {
                let known: Vec<&str> = steps.iter().map(|s| s.id.as_str()).collect();
                let mut shape = Vec::new();
                for (field, expr) in fields {
                    let line = line_of(self.text, expr.span().start);
                    let names = self
                        .evaluator
                        .expression_names(expr.get_ref())
                        .map_err(|e| self.error(line, format!("pipeline '{name}' shape '{field}': {e}")))?;
                    check_names(&names, &known, &known, &[])
                        .map_err(|e| self.error(line, format!("pipeline '{name}' shape '{field}': {e}")))?;
                    shape.push((field.clone(), expr.get_ref().clone()));
                }
                Some(shape)
            }
        };
        Ok(Pipeline {
            name: name.to_string(),
            for_each: spec.for_each.as_ref().map(|f| f.get_ref().clone()),
            steps,
            shape,
        })
    }

    fn step(&self, spec: &StepSpec, cx: &StepContext) -> Result<Step, String> {
        check_id(&spec.id, cx.earlier)?;
        let earlier: Vec<&str> = cx.earlier.iter().map(|s| s.id.as_str()).collect();
        let expression = |source: &str, extra: &[&str]| -> Result<(), String> {
            let names = self.evaluator.expression_names(source)?;
            check_names(&names, &earlier, cx.all_ids, extra)
        };
        let template = |source: &str, extra: &[&str]| -> Result<(), String> {
            let names = self.evaluator.template_names(source)?;
            check_names(&names, &earlier, cx.all_ids, extra)
        };
        if let Some(when) = &spec.when {
            expression(when, &[]).map_err(|e| format!("when: {e}"))?;
        }
        let kinds = [
            spec.model.is_some(),
            spec.route.is_some(),
            spec.llm.is_some(),
            spec.output.is_some(),
            spec.search.is_some(),
            spec.ocr.is_some(),
            spec.analyze.is_some(),
            spec.lookup.is_some(),
        ];
        if kinds.iter().filter(|&&k| k).count() != 1 {
            return Err("set exactly one of model, route, llm, output, search, ocr, analyze or lookup".into());
        }
        if let Some(kind) = self.words_step(spec, &expression)? {
            return Ok(Step { id: spec.id.clone(), when: spec.when.clone(), kind });
        }
        if spec.words.is_some() || spec.min_score.is_some() {
            return Err(
                "has keys that do not belong to its kind of step (words and min_score are a lookup step's)".into()
            );
        }
        let search_keys = spec.text.is_some()
            || spec.vector.is_some()
            || spec.k.is_some()
            || spec.filter.is_some()
            || spec.exclude_ids.is_some();
        let kind = if let Some(collection) = &spec.search {
            let model_keys = spec.inputs.is_some()
                || spec.image.is_some()
                || spec.top_k.is_some()
                || spec.models.is_some()
                || spec.default.is_some()
                || spec.version.is_some()
                || spec.topic.is_some()
                || spec.prompt.is_some();
            if model_keys {
                return Err("has keys that do not belong to its kind of step".into());
            }
            return self.search(spec, collection, &expression).map(|kind| Step {
                id: spec.id.clone(),
                when: spec.when.clone(),
                kind,
            });
        } else if search_keys {
            return Err("has keys that do not belong to its kind of step (text, vector, k, filter and exclude_ids are a search step's)".into());
        } else if let Some(model) = &spec.model {
            let input = self.model_input(spec, model, spec.version)?;
            StepKind::Model { model: model.clone(), version: spec.version, input, top_k: top_k(spec)? }
        } else if let Some(route) = &spec.route {
            expression(route, &[]).map_err(|e| format!("route: {e}"))?;
            self.route(spec, route, cx)?
        } else if let Some(llm) = &spec.llm {
            if !self.llms.contains(llm) {
                return Err(format!("unknown llm '{llm}' (declare it in an [llm.{llm}] table)"));
            }
            let topic = spec.topic.clone().ok_or("an llm step needs a topic expression")?;
            let prompt = spec.prompt.clone().ok_or("an llm step needs a prompt template")?;
            expression(&topic, &[]).map_err(|e| format!("topic: {e}"))?;
            template(&prompt, &[TOPIC]).map_err(|e| format!("prompt: {e}"))?;
            StepKind::Llm { llm: llm.clone(), topic, prompt }
        } else {
            let output = spec.output.clone().unwrap_or_default();
            template(&output, &[]).map_err(|e| format!("output: {e}"))?;
            StepKind::Output { output }
        };
        let unused = match &kind {
            StepKind::Model { .. } => spec.route.is_some() || spec.models.is_some() || spec.default.is_some(),
            StepKind::Route { .. } => spec.version.is_some(),
            StepKind::Search { .. } | StepKind::Ocr { .. } | StepKind::Analyze { .. } | StepKind::Lookup { .. } => {
                false
            }
            StepKind::Llm { .. } | StepKind::Output { .. } => {
                spec.inputs.is_some()
                    || spec.image.is_some()
                    || spec.top_k.is_some()
                    || spec.models.is_some()
                    || spec.default.is_some()
                    || spec.version.is_some()
            }
        } || (!matches!(kind, StepKind::Llm { .. }) && (spec.topic.is_some() || spec.prompt.is_some()));
        if unused {
            return Err("has keys that do not belong to its kind of step".into());
        }
        Ok(Step { id: spec.id.clone(), when: spec.when.clone(), kind })
    }

    /// An `ocr`, `analyze` or `lookup` step (None for other kinds): only its own keys, its
    /// model known and of the right kind, its expression checked.
    fn words_step(&self, spec: &StepSpec, expression: &NameCheck<'_>) -> Result<Option<StepKind>, String> {
        let (allowed, kind): (&[&str], StepKind) = if let Some(model) = &spec.ocr {
            let image = spec.image.clone().ok_or("an ocr step needs an image field")?;
            self.words_model(model, spec.version, "an OCR", "page")?;
            (&["ocr", "version", "image"], StepKind::Ocr { ocr: model.clone(), version: spec.version, image })
        } else if let Some(model) = &spec.analyze {
            let text = spec.text.clone().ok_or("an analyze step needs a text expression")?;
            expression(&text, &[]).map_err(|e| format!("text: {e}"))?;
            self.words_model(model, spec.version, "a text-analysis", "analysis")?;
            (&["analyze", "version", "text"], StepKind::Analyze { analyze: model.clone(), version: spec.version, text })
        } else if let Some(collection) = &spec.lookup {
            if !lectern_core::is_plain_name(collection) {
                return Err(format!("'{collection}' is not a collection name"));
            }
            let words = spec.words.clone().ok_or("a lookup step needs a words expression")?;
            expression(&words, &[]).map_err(|e| format!("words: {e}"))?;
            let min_score = spec.min_score.unwrap_or(DEFAULT_MIN_SCORE);
            if !(-1.0..=1.0).contains(&min_score) {
                return Err(format!("min_score must be between -1 and 1, not {min_score}"));
            }
            (&["lookup", "words", "min_score"], StepKind::Lookup { lookup: collection.clone(), words, min_score })
        } else {
            return Ok(None);
        };
        if let Some(key) = spec.keys().into_iter().find(|k| !allowed.contains(k)) {
            return Err(format!("has the key '{key}', which does not belong to its kind of step"));
        }
        Ok(Some(kind))
    }

    /// Checks that an `ocr` or `analyze` step's model exists and gives `output` (when it is
    /// loaded now; a model not ready is checked when it serves).
    fn words_model(&self, model: &str, version: Option<u64>, what: &str, output: &str) -> Result<(), String> {
        match self.loaded_for_check(model, version)? {
            Some(loaded) if !loaded.signature.outputs.iter().any(|o| o.name == output) => {
                Err(format!("model '{model}' is not {what} model (it has no '{output}' output)"))
            }
            _ => Ok(()),
        }
    }

    /// The model a step names, to check the step against; `None` when it is known but not
    /// ready (it is checked when it serves); an error when it is unknown.
    fn loaded_for_check(&self, model: &str, version: Option<u64>) -> Result<Option<Arc<LoadedModel>>, String> {
        match self.registry.resolve(model, version) {
            Ok(loaded) => Ok(Some(loaded)),
            Err(RuntimeError::ModelNotFound(_)) => Err(format!("unknown model '{model}'")),
            Err(RuntimeError::VersionNotFound(..)) => {
                Err(format!("model '{model}' has no version {}", version.unwrap_or(0)))
            }
            Err(e) => {
                tracing::warn!(model, error = %e, "a pipeline names a model that is not ready; it is checked when it serves");
                Ok(None)
            }
        }
    }

    /// A search step: one of `text` and `vector`, `k` in range, every expression checked.
    fn search(&self, spec: &StepSpec, collection: &str, expression: &NameCheck<'_>) -> Result<StepKind, String> {
        if !lectern_core::is_plain_name(collection) {
            return Err(format!("'{collection}' is not a collection name"));
        }
        if spec.text.is_some() == spec.vector.is_some() {
            return Err("a search step needs either a text or a vector expression".into());
        }
        let k = spec.k.unwrap_or(DEFAULT_K);
        if !(1..=MAX_K).contains(&k) {
            return Err(format!("k must be between 1 and {MAX_K}, not {k}"));
        }
        for (key, source) in [("text", &spec.text), ("vector", &spec.vector), ("exclude_ids", &spec.exclude_ids)] {
            if let Some(source) = source {
                expression(source, &[]).map_err(|e| format!("{key}: {e}"))?;
            }
        }
        let filter = spec.filter.clone().unwrap_or_default();
        for (key, source) in &filter {
            expression(source, &[]).map_err(|e| format!("filter '{key}': {e}"))?;
        }
        Ok(StepKind::Search {
            search: collection.to_string(),
            text: spec.text.clone(),
            vector: spec.vector.clone(),
            k,
            filter,
            exclude_ids: spec.exclude_ids.clone(),
        })
    }

    fn route(&self, spec: &StepSpec, route: &str, cx: &StepContext) -> Result<StepKind, String> {
        let models = spec.models.clone().ok_or("a route step needs a models table")?;
        if models.is_empty() {
            return Err("the models table of a route is empty".into());
        }
        let mut input = None;
        for model in models.values().chain(spec.default.iter()) {
            input = Some(self.model_input(spec, model, None)?);
        }
        if let Some((source, labels)) = self.route_labels(route, cx.earlier) {
            if let Some(key) = models.keys().find(|k| !labels.contains(k)) {
                return Err(format!(
                    "route key '{key}' is not a label of model '{source}' (labels: {})",
                    labels.join(", ")
                ));
            }
            if spec.default.is_none() {
                if let Some(label) = labels.iter().find(|l| !models.contains_key(*l)) {
                    return Err(format!("label '{label}' of model '{source}' has no route and there is no default"));
                }
            }
        }
        Ok(StepKind::Route {
            route: route.to_string(),
            models,
            default: spec.default.clone(),
            input: input.expect("models is not empty"),
            top_k: top_k(spec)?,
        })
    }

    /// When a route reads `<step>.label` of an earlier model step whose model has labels:
    /// that model's name and labels.
    fn route_labels(&self, route: &str, earlier: &[Step]) -> Option<(String, Vec<String>)> {
        let id = route.trim().strip_suffix(".label")?;
        let step = earlier.iter().find(|s| s.id == id)?;
        let StepKind::Model { model, version, .. } = &step.kind else { return None };
        let loaded = self.registry.resolve(model, *version).ok()?;
        Some((model.clone(), loaded.labels.clone()?))
    }

    /// Checks the model exists and can take the step's input; the input the step reads.
    fn model_input(&self, spec: &StepSpec, model: &str, version: Option<u64>) -> Result<ModelInput, String> {
        let input = match (&spec.inputs, &spec.image) {
            (Some(fields), None) if !fields.is_empty() => ModelInput::Inputs(fields.clone()),
            (None, Some(field)) => ModelInput::Image(field.clone()),
            _ => return Err("a model step needs either a non-empty inputs list or an image field".into()),
        };
        let Some(loaded) = self.loaded_for_check(model, version)? else { return Ok(input) };
        let [only] = loaded.signature.inputs.as_slice() else {
            return Err(format!(
                "model '{model}' has {} inputs; pipeline steps feed models with one input",
                loaded.signature.inputs.len()
            ));
        };
        if only.datatype == DataType::Bytes {
            return Err(format!("model '{model}' takes BYTES, which a pipeline step cannot build"));
        }
        match &input {
            ModelInput::Inputs(fields) => {
                let fits = only.shape.len() == 2 && (only.shape[1] < 0 || only.shape[1] as usize == fields.len());
                if !fits {
                    return Err(format!(
                        "model '{model}' takes shape {:?}, not rows of {} fields",
                        only.shape,
                        fields.len()
                    ));
                }
            }
            ModelInput::Image(_) if loaded.image.is_none() => {
                return Err(format!(
                    "model '{model}' has no [image] table in its config.toml, so it cannot take an image"
                ));
            }
            ModelInput::Image(_) => {}
        }
        Ok(input)
    }
}

/// What a step is checked against: the steps before it and every id of its pipeline.
struct StepContext<'a> {
    earlier: &'a [Step],
    all_ids: &'a [&'a str],
}

fn top_k(spec: &StepSpec) -> Result<usize, String> {
    match spec.top_k {
        Some(0) => Err("top_k must be at least 1".into()),
        Some(k) => Ok(k),
        None => Ok(DEFAULT_TOP_K),
    }
}

fn check_id(id: &str, earlier: &[Step]) -> Result<(), String> {
    let mut chars = id.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err("ids are letters, digits and '_', starting with a letter".into());
    }
    if SCOPE_NAMES.contains(&id) || id == TOPIC {
        return Err(format!("'{id}' is a reserved name"));
    }
    if earlier.iter().any(|s| s.id == id) {
        return Err("this id is used by an earlier step".into());
    }
    Ok(())
}

/// Every name must be `input`, `request`, one of `extra` or an earlier step.
fn check_names(names: &HashSet<String>, earlier: &[&str], all_ids: &[&str], extra: &[&str]) -> Result<(), String> {
    let mut sorted: Vec<&String> = names.iter().collect();
    sorted.sort();
    for name in sorted {
        let n = name.as_str();
        if SCOPE_NAMES.contains(&n) || extra.contains(&n) || earlier.contains(&n) {
            continue;
        }
        if all_ids.contains(&n) {
            return Err(format!("refers to step '{n}', which does not run before it"));
        }
        return Err(format!(
            "refers to '{n}', which is not a step id (known: input, request{})",
            earlier.iter().map(|e| format!(", {e}")).collect::<String>()
        ));
    }
    Ok(())
}
