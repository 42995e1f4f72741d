//! LLM helpers: ask an Ollama or OpenAI-compatible server for resources on a topic, with a
//! timeout, retries, a concurrency limit, a response cache that also shares calls in flight,
//! and the local catalog when the LLM cannot answer.

mod answer;
mod wire;

pub use answer::parse_resources;
pub use wire::endpoint;

use crate::catalog::{Catalog, Resource};
use crate::spec::{LlmSpec, Provider};
use futures_util::future::{BoxFuture, FutureExt, Shared};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use wire::CallError;

/// Cached answers kept before expired ones are swept.
const CACHE_SWEEP_AT: usize = 10_000;

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

type Answer = Result<Arc<Vec<Resource>>, Arc<str>>;

struct CacheEntry {
    started: Instant,
    answer: Shared<BoxFuture<'static, Answer>>,
}

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
    cache_ttl: Duration,
    http: reqwest::Client,
    permits: Semaphore,
    cache: Mutex<HashMap<String, CacheEntry>>,
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
            cache_ttl: Duration::from_secs(spec.cache_ttl_s),
            http,
            permits: Semaphore::new(spec.concurrency),
            cache: Mutex::new(HashMap::new()),
            catalog,
        })
    }

    /// Resources on `topic`: the LLM's answer to `prompt`, else the catalog's rows for `topic`.
    pub async fn advise(self: &Arc<Self>, topic: &str, prompt: &str) -> Advice {
        match self.shared_answer(prompt).await {
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

    /// The answer to `prompt`: cached, or shared with an identical call in flight, or new.
    async fn shared_answer(self: &Arc<Self>, prompt: &str) -> Answer {
        let answer = {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            match cache.get(prompt) {
                Some(entry) if self.usable(entry) => entry.answer.clone(),
                _ => {
                    if cache.len() >= CACHE_SWEEP_AT {
                        cache.retain(|_, e| self.usable(e));
                    }
                    let this = self.clone();
                    let owned = prompt.to_string();
                    let answer = async move { this.ask(&owned).await }.boxed().shared();
                    cache.insert(prompt.to_string(), CacheEntry { started: Instant::now(), answer: answer.clone() });
                    answer
                }
            }
        };
        answer.await
    }

    /// An entry is reused while its call is in flight, and after it for the TTL if it succeeded.
    fn usable(&self, entry: &CacheEntry) -> bool {
        match entry.answer.peek() {
            None => true,
            Some(Ok(_)) => entry.started.elapsed() < self.cache_ttl,
            Some(Err(_)) => false,
        }
    }

    /// Asks the LLM: retries transient failures with backoff, asks again once after a
    /// malformed answer, and gives up after the timeout of an attempt.
    async fn ask(&self, prompt: &str) -> Answer {
        let _permit = self.permits.acquire().await.map_err(|_| Arc::<str>::from("the LLM client is closed"))?;
        let body = wire::request_body(self.provider, &self.model, prompt);
        let (mut transient_left, mut malformed_left, mut delay) = (self.retries, 1u32, self.backoff);
        loop {
            let call = wire::chat(&self.http, self.provider, &self.url, self.key.as_deref(), &body);
            let failure = match tokio::time::timeout(self.timeout, call).await {
                Err(_) => return Err(format!("no answer within {} ms", self.timeout.as_millis()).into()),
                Ok(Ok(text)) => match parse_resources(&text) {
                    Ok(resources) => return Ok(Arc::new(resources)),
                    Err(e) if malformed_left > 0 => {
                        malformed_left -= 1;
                        tracing::debug!(llm = %self.name, error = %e, "malformed answer; asking again");
                        continue;
                    }
                    Err(e) => return Err(format!("malformed answer: {e}").into()),
                },
                Ok(Err(CallError::Transient(e))) if transient_left > 0 => e,
                Ok(Err(e)) => return Err(e.to_string().into()),
            };
            transient_left -= 1;
            tracing::debug!(llm = %self.name, error = %failure, retry_in_ms = delay.as_millis() as u64, "LLM call failed; retrying");
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }
}
