//! Texts to vectors with a loaded text encoder: what `/v1/embeddings`, collections and the
//! pipelines' search step share. A long list is cut into requests of at most the model's
//! batch size, which run at once and are batched with other callers' by the model's queue.

use crate::{LoadedModel, RuntimeError};
pub use lectern_backends::encoder::normalize;
use lectern_backends::encoder::{EMBEDDING_OUTPUT, TEXT_INPUT, TOKEN_COUNT_OUTPUT};
use lectern_core::{InferRequest, Tensor, TensorData};
use std::sync::Arc;

/// Vectors and token counts, one per text, in the texts' order.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedded {
    /// `texts.len() x dimension` values, row after row.
    pub vectors: Vec<f32>,
    pub dimension: usize,
    /// Each text's tokens, special tokens included, before truncation.
    pub token_counts: Vec<u64>,
}

impl Embedded {
    /// The vector of text `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.vectors[i * self.dimension..(i + 1) * self.dimension]
    }
}

/// Embeds `texts` with `model`, which must be a text encoder. Texts over the model's length
/// are truncated, or refused with `refuse_over_length`. Errors name texts by their index.
pub async fn embed(
    model: Arc<LoadedModel>,
    texts: Vec<String>,
    refuse_over_length: bool,
) -> Result<Embedded, RuntimeError> {
    let Some(text) = model.text() else {
        return Err(RuntimeError::NotAnEncoder(model.name.clone()));
    };
    let (dimension, max_tokens) = (text.dimension, text.max_tokens);
    if let Some(i) = texts.iter().position(String::is_empty) {
        return Err(RuntimeError::BadRequest(format!("text {i} is empty")));
    }
    let chunk = model.max_batch_size.max(1);
    let mut parts = Vec::new();
    let mut texts = texts.into_iter().peekable();
    while texts.peek().is_some() {
        let rows: Vec<Vec<u8>> = texts.by_ref().take(chunk).map(String::into_bytes).collect();
        let model = model.clone();
        parts.push(tokio::spawn(async move { run_chunk(&model, rows).await }));
    }
    let mut embedded = Embedded { vectors: Vec::new(), dimension, token_counts: Vec::new() };
    for part in parts {
        let (vectors, counts) =
            part.await.map_err(|e| RuntimeError::Inference(model.name.clone(), e.to_string()))??;
        embedded.vectors.extend(vectors);
        embedded.token_counts.extend(counts);
    }
    if refuse_over_length {
        crate::model::refuse_over_length(&model.name, embedded.token_counts.iter().copied(), max_tokens)?;
    }
    Ok(embedded)
}

async fn run_chunk(model: &LoadedModel, rows: Vec<Vec<u8>>) -> Result<(Vec<f32>, Vec<u64>), RuntimeError> {
    let n = rows.len();
    let input = Tensor { name: TEXT_INPUT.into(), shape: vec![n], data: TensorData::Bytes(rows) };
    let response = model.infer(InferRequest { inputs: vec![input], ..Default::default() }).await?;
    let mut vectors: Option<Vec<f32>> = None;
    let mut counts: Option<Vec<u64>> = None;
    for output in response.outputs {
        match (output.tensor.name.as_str(), output.tensor.data) {
            (EMBEDDING_OUTPUT, TensorData::F32(v)) => vectors = Some(v),
            (TOKEN_COUNT_OUTPUT, TensorData::I64(c)) => counts = Some(c.into_iter().map(|c| c.max(0) as u64).collect()),
            _ => {}
        }
    }
    // A remote encoder's answer is checked like any input from the network.
    let dimension = model.text().map_or(0, |t| t.dimension);
    match (vectors, counts) {
        (Some(v), Some(c)) if c.len() == n && v.len() == n * dimension => Ok((v, c)),
        (Some(_), Some(_)) => Err(RuntimeError::Inference(
            model.name.clone(),
            format!("the encoder's answer does not hold {n} vectors of {dimension} values"),
        )),
        _ => Err(RuntimeError::Inference(model.name.clone(), "the encoder gave no embedding".into())),
    }
}
