//! The two chat wire protocols: Ollama's `/api/chat` (NDJSON stream) and OpenAI's
//! `/v1/chat/completions` (server-sent events).

use crate::spec::Provider;
use futures_util::StreamExt;
use serde_json::{json, Value};

/// Most bytes of answer text read from one call.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Why one call produced no text.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Worth another attempt: no connection, 429, 5xx, a broken stream.
    #[error("{0}")]
    Transient(String),
    /// Another attempt would fail the same way.
    #[error("{0}")]
    Permanent(String),
}

/// The endpoint of a provider under its base URL.
pub fn endpoint(provider: Provider, base: &str) -> String {
    let base = base.trim_end_matches('/');
    match provider {
        Provider::Ollama => format!("{base}/api/chat"),
        Provider::Openai if base.ends_with("/v1") => format!("{base}/chat/completions"),
        Provider::Openai => format!("{base}/v1/chat/completions"),
    }
}

/// The streaming chat request body with one user message.
pub fn request_body(provider: Provider, model: &str, prompt: &str) -> Value {
    let messages = json!([{ "role": "user", "content": prompt }]);
    match provider {
        Provider::Ollama => json!({ "model": model, "messages": messages, "stream": true, "format": "json" }),
        Provider::Openai => json!({ "model": model, "messages": messages, "stream": true }),
    }
}

/// Sends one chat request and collects the streamed answer text.
pub async fn chat(
    http: &reqwest::Client,
    provider: Provider,
    url: &str,
    key: Option<&str>,
    body: &Value,
) -> Result<String, CallError> {
    let mut request = http.post(url).json(body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.map_err(|e| CallError::Transient(describe(&e)))?;
    let status = response.status();
    if status.as_u16() == 429 || status.is_server_error() {
        return Err(CallError::Transient(format!("the LLM server answered {status}")));
    }
    if !status.is_success() {
        return Err(CallError::Permanent(format!("the LLM server answered {status}")));
    }
    let mut text = String::new();
    let mut lines = LineBuffer::default();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| CallError::Transient(format!("the answer stream broke: {}", describe(&e))))?;
        for line in lines.push(&chunk) {
            if apply_line(provider, &line, &mut text)? == Flow::Done {
                drain(stream).await;
                return Ok(text);
            }
        }
        if text.len() > MAX_ANSWER_BYTES {
            return Err(CallError::Permanent("the answer is longer than 1 MiB".into()));
        }
    }
    if let Some(line) = lines.rest() {
        apply_line(provider, &line, &mut text)?;
    }
    Ok(text)
}

/// Reads what is left of a response after the answer's end (bounded), so that the call is
/// over for the server too when it returns, and the connection can be reused.
async fn drain(mut stream: impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin) {
    let mut left = MAX_ANSWER_BYTES;
    while let Some(Ok(chunk)) = stream.next().await {
        if chunk.len() >= left {
            break;
        }
        left -= chunk.len();
    }
}

/// A reqwest error without the URL it carries (the URL is in the config, not a secret, but the
/// message reads better without it).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "bad answer body"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut root = None;
    while let Some(s) = source {
        root = Some(s.to_string());
        source = s.source();
    }
    match root {
        Some(r) => format!("{kind}: {r}"),
        None => kind.to_string(),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Flow {
    More,
    Done,
}

/// Adds one line of the stream to the answer text.
fn apply_line(provider: Provider, line: &str, text: &mut String) -> Result<Flow, CallError> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(Flow::More);
    }
    let bad = |what: &str| CallError::Permanent(format!("malformed stream from the LLM server: {what}"));
    let payload = match provider {
        Provider::Ollama => line,
        Provider::Openai => match line.strip_prefix("data:") {
            Some(data) if data.trim() == "[DONE]" => return Ok(Flow::Done),
            Some(data) => data.trim(),
            // SSE comments, `event:` and `id:` lines carry no text.
            None => return Ok(Flow::More),
        },
    };
    let event: Value = serde_json::from_str(payload).map_err(|_| bad("a line is not JSON"))?;
    if let Some(error) = event.get("error") {
        let message = error.get("message").and_then(Value::as_str).or(error.as_str()).unwrap_or("unknown error");
        return Err(CallError::Permanent(format!("the LLM server reported an error: {message}")));
    }
    let piece = match provider {
        Provider::Ollama => event.pointer("/message/content"),
        Provider::Openai => event.pointer("/choices/0/delta/content").or(event.pointer("/choices/0/message/content")),
    };
    if let Some(piece) = piece.and_then(Value::as_str) {
        text.push_str(piece);
    }
    let done = match provider {
        Provider::Ollama => event.get("done").and_then(Value::as_bool) == Some(true),
        Provider::Openai => false,
    };
    Ok(if done { Flow::Done } else { Flow::More })
}

/// Splits a byte stream into lines, keeping a partial line across chunks.
#[derive(Default)]
struct LineBuffer {
    pending: Vec<u8>,
}

impl LineBuffer {
    fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(chunk);
        let mut lines = Vec::new();
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            lines.push(String::from_utf8_lossy(&line).into_owned());
        }
        lines
    }

    fn rest(&mut self) -> Option<String> {
        (!self.pending.is_empty()).then(|| String::from_utf8_lossy(&std::mem::take(&mut self.pending)).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_follow_each_provider() {
        assert_eq!(endpoint(Provider::Ollama, "http://h:11434/"), "http://h:11434/api/chat");
        assert_eq!(endpoint(Provider::Openai, "https://api.x.com"), "https://api.x.com/v1/chat/completions");
        assert_eq!(endpoint(Provider::Openai, "https://api.x.com/v1"), "https://api.x.com/v1/chat/completions");
    }

    #[test]
    fn ollama_lines_accumulate_until_done() {
        let mut text = String::new();
        let mut buf = LineBuffer::default();
        let mut lines = buf.push(b"{\"message\":{\"role\":\"assistant\",\"content\":\"Hel\"},\"done\":false}\n{\"mess");
        lines.extend(buf.push(b"age\":{\"content\":\"lo\"},\"done\":true}\n"));
        let flows: Vec<Flow> = lines.iter().map(|l| apply_line(Provider::Ollama, l, &mut text).unwrap()).collect();
        assert_eq!(flows, vec![Flow::More, Flow::Done]);
        assert_eq!(text, "Hello");
    }

    #[test]
    fn openai_events_accumulate_until_done() {
        let mut text = String::new();
        for line in [
            ": keep-alive",
            "data: {\"choices\":[{\"delta\":{\"content\":\"A\"}}]}",
            "",
            "data: {\"choices\":[{\"delta\":{}}]}",
        ] {
            assert_eq!(apply_line(Provider::Openai, line, &mut text).unwrap(), Flow::More);
        }
        assert_eq!(apply_line(Provider::Openai, "data: [DONE]", &mut text).unwrap(), Flow::Done);
        assert_eq!(text, "A");
        assert!(apply_line(Provider::Openai, "data: {\"error\":{\"message\":\"no\"}}", &mut text).is_err());
        assert!(apply_line(Provider::Ollama, "not json", &mut text).is_err());
    }
}
