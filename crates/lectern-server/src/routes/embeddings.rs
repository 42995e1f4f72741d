//! `POST /v1/embeddings`: OpenAI's embeddings API over the served text encoders, so that the
//! `openai` client and the RAG tools built on it work unchanged.

use crate::routes::manage::json_body;
use crate::routes::openapi::ErrorBody;
use crate::{ApiError, AppState};
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use base64::Engine as _;
use lectern_core::ErrorCode;
use lectern_runtime::text::{embed, normalize, Embedded};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use utoipa::ToSchema;

/// Most texts in one request (OpenAI's limit).
pub const MAX_INPUTS: usize = 2048;

/// The request, as OpenAI defines it (plus `truncate`).
#[derive(Deserialize, ToSchema)]
pub struct EmbeddingsRequest {
    /// A served text encoder: `name`, or `name:N` for version N.
    model: String,
    /// A string, or a list of 1-2048 strings.
    #[schema(value_type = Object)]
    input: Value,
    /// `float` (default) or `base64` (little-endian float32 bytes).
    #[serde(default)]
    encoding_format: Option<String>,
    /// The model's width, or fewer for a Matryoshka model.
    #[serde(default)]
    dimensions: Option<u64>,
    /// Accepted and ignored.
    #[serde(default)]
    #[allow(dead_code)]
    user: Option<String>,
    /// `false`: refuse texts over the model's length instead of truncating them.
    #[serde(default)]
    truncate: Option<bool>,
}

/// One vector of the answer.
#[derive(Serialize, ToSchema)]
pub struct EmbeddingData {
    object: &'static str,
    index: usize,
    /// A list of numbers, or base64 text.
    #[schema(value_type = Object)]
    embedding: Value,
}

/// Tokens the request used.
#[derive(Serialize, ToSchema)]
pub struct Usage {
    prompt_tokens: u64,
    total_tokens: u64,
}

/// The answer, as OpenAI defines it.
#[derive(Serialize, ToSchema)]
pub struct EmbeddingsResponse {
    object: &'static str,
    data: Vec<EmbeddingData>,
    model: String,
    usage: Usage,
}

/// `POST /v1/embeddings`
#[utoipa::path(post, path = "/v1/embeddings", tag = "text", operation_id = "createEmbeddings",
    request_body = EmbeddingsRequest,
    responses(
        (status = 200, description = "One vector per input, in order.", body = EmbeddingsResponse),
        (status = 400, description = "A bad body, a model that is not a text encoder (`invalid_request`), or an empty or over-long text (`invalid_input`).", body = ErrorBody),
        (status = 404, description = "No such model or version.", body = ErrorBody),
        (status = 503, description = "The model's queue is full (`queue_full`).", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<EmbeddingsResponse>, ApiError> {
    let request: EmbeddingsRequest = json_body(&state, &headers, body).await?;
    let texts = texts_of(request.input)?;
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!("encoding_format must be float or base64, not '{other}'")))
        }
    };
    let (name, version) = model_and_version(&request.model)?;
    let model = state.registry.model(name, version).await?;
    let matryoshka = model.matryoshka;
    let embedded = embed(model, texts, request.truncate == Some(false)).await?;
    let width = dimensions(request.dimensions, embedded.dimension, matryoshka, name)?;
    Ok(Json(answer(&embedded, width, base64, request.model)))
}

/// The inputs as texts: a string or a list of strings (token ids are refused).
fn texts_of(input: Value) -> Result<Vec<String>, ApiError> {
    let list = match input {
        Value::String(text) => vec![Value::String(text)],
        Value::Array(list) => list,
        _ => return Err(ApiError::bad_request("'input' must be a string or a list of strings")),
    };
    if list.is_empty() || list.len() > MAX_INPUTS {
        return Err(ApiError::bad_request(format!("'input' must hold 1 to {MAX_INPUTS} texts, not {}", list.len())));
    }
    list.into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(text) if text.is_empty() => {
                Err(ApiError::coded(ErrorCode::InvalidInput, format!("input {i} is an empty string")))
            }
            Value::String(text) => Ok(text),
            Value::Number(_) | Value::Array(_) => {
                Err(ApiError::bad_request("token ids are not accepted: send the texts themselves"))
            }
            _ => Err(ApiError::bad_request(format!("input {i} is not a string"))),
        })
        .collect()
}

/// `name` or `name:N`.
fn model_and_version(model: &str) -> Result<(&str, Option<u64>), ApiError> {
    match model.rsplit_once(':') {
        None => Ok((model, None)),
        Some((name, version)) => match version.parse::<u64>() {
            Ok(v) if v > 0 => Ok((name, Some(v))),
            _ => {
                Err(ApiError::bad_request(format!("model '{model}': the version after ':' must be a positive integer")))
            }
        },
    }
}

/// How many values each vector keeps.
fn dimensions(asked: Option<u64>, width: usize, matryoshka: bool, model: &str) -> Result<usize, ApiError> {
    match asked {
        None => Ok(width),
        Some(d) if d as usize == width => Ok(width),
        Some(d) if matryoshka && d >= 1 && (d as usize) < width => Ok(d as usize),
        Some(d) if matryoshka => {
            Err(ApiError::bad_request(format!("dimensions must be between 1 and {width}, not {d}")))
        }
        Some(d) => Err(ApiError::bad_request(format!(
            "model '{model}' gives {width}-dimensional vectors and was not trained for fewer \
             (its config.toml does not say matryoshka = true): dimensions must be {width}, not {d}"
        ))),
    }
}

fn answer(embedded: &Embedded, width: usize, base64: bool, model: String) -> EmbeddingsResponse {
    let data = (0..embedded.token_counts.len())
        .map(|i| {
            let mut vector = embedded.row(i)[..width].to_vec();
            if width < embedded.dimension {
                normalize(&mut vector);
            }
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                Value::from(vector)
            };
            EmbeddingData { object: "embedding", index: i, embedding }
        })
        .collect();
    let tokens = embedded.token_counts.iter().sum();
    EmbeddingsResponse { object: "list", data, model, usage: Usage { prompt_tokens: tokens, total_tokens: tokens } }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inputs_are_a_string_or_a_list_of_strings() {
        assert_eq!(texts_of(json!("a")).unwrap(), ["a"]);
        assert_eq!(texts_of(json!(["a", "b"])).unwrap(), ["a", "b"]);
        assert!(texts_of(json!([])).is_err());
        assert!(texts_of(json!([1, 2])).is_err());
        assert!(texts_of(json!([[1, 2]])).is_err());
        assert!(texts_of(json!(["a", ""])).is_err());
        assert!(texts_of(json!(vec!["a"; MAX_INPUTS + 1])).is_err());
    }

    #[test]
    fn a_version_follows_a_colon() {
        assert_eq!(model_and_version("minilm").unwrap(), ("minilm", None));
        assert_eq!(model_and_version("minilm:2").unwrap(), ("minilm", Some(2)));
        assert!(model_and_version("minilm:x").is_err());
    }

    #[test]
    fn fewer_dimensions_only_for_matryoshka_models() {
        assert_eq!(dimensions(None, 384, false, "m").unwrap(), 384);
        assert_eq!(dimensions(Some(384), 384, false, "m").unwrap(), 384);
        assert!(dimensions(Some(100), 384, false, "m").is_err());
        assert_eq!(dimensions(Some(100), 384, true, "m").unwrap(), 100);
        assert!(dimensions(Some(0), 384, true, "m").is_err());
        assert!(dimensions(Some(500), 384, true, "m").is_err());
    }

    #[test]
    fn base64_is_little_endian_float32() {
        let embedded = Embedded { vectors: vec![1.0, 0.0], dimension: 2, token_counts: vec![3] };
        let answer = answer(&embedded, 2, true, "m".into());
        let text = answer.data[0].embedding.as_str().unwrap().to_string();
        let bytes = base64::engine::general_purpose::STANDARD.decode(text).unwrap();
        assert_eq!(bytes, [0, 0, 128, 63, 0, 0, 0, 0]);
        assert_eq!(answer.usage.total_tokens, 3);
    }
}
