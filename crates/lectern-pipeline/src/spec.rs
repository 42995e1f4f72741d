//! The `[llm.*]` and `[pipelines.*]` tables of the config file, as written, with the position
//! of each part so that start-up errors can name the line.

use crate::PipelineError;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use toml::Spanned;

/// The pipeline-related tables of a config file; its other tables are ignored here.
#[derive(Debug, Deserialize, Default)]
pub struct PipelineFile {
    #[serde(default)]
    pub llm: BTreeMap<String, Spanned<LlmSpec>>,
    #[serde(default)]
    pub pipelines: BTreeMap<String, Spanned<PipelineSpec>>,
}

/// Which wire protocol an LLM server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// `POST {url}/api/chat`, NDJSON stream.
    Ollama,
    /// `POST {url}/v1/chat/completions`, server-sent events.
    Openai,
}

/// One `[llm.<name>]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmSpec {
    pub provider: Provider,
    pub url: String,
    pub model: String,
    /// Name of the environment variable that holds the API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_retries")]
    pub retries: u32,
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    #[serde(default = "default_cache_ttl_s")]
    pub cache_ttl_s: u64,
    /// Most answers the cache keeps (0: none).
    #[serde(default = "default_cache_max_entries")]
    pub cache_max_entries: u64,
    /// Fallback resource catalog (.toml or .csv), relative to the config file.
    #[serde(default)]
    pub catalog: Option<PathBuf>,
}

fn default_timeout_ms() -> u64 {
    8000
}
fn default_retries() -> u32 {
    1
}
fn default_backoff_ms() -> u64 {
    200
}
fn default_concurrency() -> usize {
    4
}
fn default_cache_ttl_s() -> u64 {
    3600
}
fn default_cache_max_entries() -> u64 {
    10_000
}

/// One `[pipelines.<name>]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    #[serde(default)]
    pub for_each: Option<Spanned<String>>,
    pub steps: Vec<Spanned<StepSpec>>,
    #[serde(default)]
    pub shape: Option<BTreeMap<String, Spanned<String>>>,
}

/// One step as written; which of `model`, `route`, `llm`, `output` and `search` is set says
/// its kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    pub id: String,
    #[serde(default)]
    pub when: Option<String>,
    // Model and route steps.
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub version: Option<u64>,
    #[serde(default)]
    pub inputs: Option<Vec<String>>,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub top_k: Option<usize>,
    #[serde(default)]
    pub route: Option<String>,
    #[serde(default)]
    pub models: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub default: Option<String>,
    // LLM steps.
    #[serde(default)]
    pub llm: Option<String>,
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub prompt: Option<String>,
    // Output steps.
    #[serde(default)]
    pub output: Option<String>,
    // Search steps: the collection, then expressions for the query.
    #[serde(default)]
    pub search: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub vector: Option<String>,
    #[serde(default)]
    pub k: Option<u64>,
    #[serde(default)]
    pub filter: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub exclude_ids: Option<String>,
    // Words from a photo: an OCR model on `image`, an analysis model on `text`, a collection
    // looked up for `words`.
    #[serde(default)]
    pub ocr: Option<String>,
    #[serde(default)]
    pub analyze: Option<String>,
    #[serde(default)]
    pub lookup: Option<String>,
    #[serde(default)]
    pub words: Option<String>,
    #[serde(default)]
    pub min_score: Option<f64>,
}

impl StepSpec {
    /// The names of the optional keys the step sets (besides `id` and `when`).
    pub fn keys(&self) -> Vec<&'static str> {
        let set = [
            ("model", self.model.is_some()),
            ("version", self.version.is_some()),
            ("inputs", self.inputs.is_some()),
            ("image", self.image.is_some()),
            ("top_k", self.top_k.is_some()),
            ("route", self.route.is_some()),
            ("models", self.models.is_some()),
            ("default", self.default.is_some()),
            ("llm", self.llm.is_some()),
            ("topic", self.topic.is_some()),
            ("prompt", self.prompt.is_some()),
            ("output", self.output.is_some()),
            ("search", self.search.is_some()),
            ("text", self.text.is_some()),
            ("vector", self.vector.is_some()),
            ("k", self.k.is_some()),
            ("filter", self.filter.is_some()),
            ("exclude_ids", self.exclude_ids.is_some()),
            ("ocr", self.ocr.is_some()),
            ("analyze", self.analyze.is_some()),
            ("lookup", self.lookup.is_some()),
            ("words", self.words.is_some()),
            ("min_score", self.min_score.is_some()),
        ];
        set.iter().filter(|(_, on)| *on).map(|(name, _)| *name).collect()
    }
}

impl PipelineFile {
    /// Parses the pipeline tables of a config file; `file` names it in messages.
    pub fn parse(text: &str, file: &str) -> Result<Self, PipelineError> {
        toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(1);
            PipelineError::Config { file: file.to_string(), line, message: e.message().to_string() }
        })
    }
}

/// The 1-based line of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_keep_their_lines() {
        let text = "[server]\nlisten='x'\n[pipelines.p]\nsteps = [\n  { id = 'a', output = 'hi' },\n  { id = 'b', output = 'yo' },\n]\n";
        let file = PipelineFile::parse(text, "f.toml").unwrap();
        let p = file.pipelines["p"].get_ref();
        assert_eq!(line_of(text, p.steps[1].span().start), 6);
    }

    #[test]
    fn an_unknown_step_key_names_its_line() {
        let text = "[pipelines.p]\nsteps = [\n  { id = 'a', modle = 'x' },\n]\n";
        let err = PipelineFile::parse(text, "f.toml").unwrap_err().to_string();
        assert!(err.starts_with("f.toml:3:"), "{err}");
        assert!(err.contains("modle"), "{err}");
    }
}
