//! LLM helpers: ask an Ollama or OpenAI-compatible server for resources on a topic, with a
//! timeout, retries, a concurrency limit, a bounded response cache that also shares calls in
//! flight, and the local catalog when the LLM cannot answer.

mod answer;
mod cache;
mod wire;

pub use answer::parse_resources;
pub use wire::endpoint;

use crate::catalog::{Catalog, Resource};
use crate::spec::{LlmSpec, Provider};
use cache::AnswerCache;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use wire::CallError;

/// Where an LLM step's resources came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Llm,
    Catalog,
}

/// The result of an LLM step.
#[derive(Debug, Clone, Serialize)]
pub struct Advice {
    pub source: Source,
    pub resources: Vec<Resource>,
    /// Why the LLM's answer was not used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What one call to the LLM gives: its resources, or why there are none.
type Answer = Result<Arc<Vec<Resource>>, String>;

/// One configured LLM server.
pub struct LlmClient {
    name: String,
    provider: Provider,
    url: String,
    model: String,
    key: Option<String>,
    timeout: Duration,
    retries: u32,
    backoff: Duration,
    http: reqwest::Client,
    permits: Semaphore,
    cache: AnswerCache<Arc<Vec<Resource>>>,
    catalog: Catalog,
}

impl LlmClient {
    /// A client for `spec`; the key is read from the environment variable the spec names.
    pub fn new(name: &str, spec: &LlmSpec, catalog: Catalog) -> Result<Self, String> {
        let key = match &spec.api_key_env {
            Some(var) => Some(std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))?),
            None => None,
        };
        if spec.concurrency == 0 {
            return Err("concurrency must be at least 1".into());
        }
        if spec.timeout_ms == 0 {
            return Err("timeout_ms must be at least 1".into());
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(spec.timeout_ms))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(LlmClient {
            name: name.to_string(),
            provider: spec.provider,
            url: endpoint(spec.provider, &spec.url),
            model: spec.model.clone(),
            key,
            timeout: Duration::from_millis(spec.timeout_ms),
            retries: spec.retries,
            backoff: Duration::from_millis(spec.backoff_ms),
            http,
            permits: Semaphore::new(spec.concurrency),
            cache: AnswerCache::new(Duration::from_secs(spec.cache_ttl_s), spec.cache_max_entries),
            catalog,
        })
    }

    /// Resources on `topic`: the LLM's answer to `prompt`, else the catalog's rows for `topic`.
    pub async fn advise(&self, topic: &str, prompt: &str) -> Advice {
        match self.cache.get_or_ask(prompt, self.ask(prompt)).await {
            Ok(resources) => Advice { source: Source::Llm, resources: resources.as_ref().clone(), reason: None },
            Err(reason) => {
                tracing::warn!(llm = %self.name, %reason, "LLM unavailable; answering from the catalog");
                Advice {
                    source: Source::Catalog,
                    resources: self.catalog.lookup(topic).to_vec(),
                    reason: Some(reason.to_string()),
                }
            }
        }
    }

    /// Asks the LLM: retries transient failures with backoff, asks again once after a
    /// malformed answer, and gives up after the timeout of an attempt.
    async fn ask(&self, prompt: &str) -> Answer {
        let _permit = self.permits.acquire().await.map_err(|_| "the LLM client is closed".to_string())?;
        let body = wire::request_body(self.provider, &self.model, prompt);
        let (mut transient_left, mut malformed_left, mut delay) = (self.retries, 1u32, self.backoff);
        loop {
            let call = wire::chat(&self.http, self.provider, &self.url, self.key.as_deref(), &body);
            let failure = match tokio::time::timeout(self.timeout, call).await {
                Err(_) => return Err(format!("no answer within {} ms", self.timeout.as_millis())),
                Ok(Ok(text)) => match parse_resources(&text) {
                    Ok(resources) => return Ok(Arc::new(resources)),
                    Err(e) if malformed_left > 0 => {
                        malformed_left -= 1;
                        tracing::debug!(llm = %self.name, error = %e, "malformed answer; asking again");
                        continue;
                    }
                    Err(e) => return Err(format!("malformed answer: {e}")),
                },
                Ok(Err(CallError::Transient(e))) if transient_left > 0 => e,
                Ok(Err(e)) => return Err(e.to_string()),
            };
            transient_left -= 1;
            tracing::debug!(llm = %self.name, error = %failure, retry_in_ms = delay.as_millis() as u64, "LLM call failed; retrying");
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }
}
